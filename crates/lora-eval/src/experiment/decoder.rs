//! The experiment on a decoder: each method instruction-tunes the decoder on a generation task
//! (ROUGE-L, BLEU and exact match of greedy generations on the test split, beside the untrained
//! model), LoRA instruction-tunes it on a one-word classification task (exact match, beside the
//! encoder's accuracy), and the paper's latency setting: milliseconds per generated token for the
//! base model, LoRA merged and unmerged, and the bottleneck adapters.

use std::path::Path;

use burn::module::Module;
use burn::tensor::Device;
use lora_assets::{AssetCache, BuiltinSftTask};
use lora_core::ParamCount;
use lora_data::SftSplits;
use lora_data::chat::ChatTemplate;
use lora_data::sft::{SftEncoded, SftEncoder, SftOptions};
use lora_models::{DecoderForCausalLM, GenerationConfig, ModelSource, load_causal_lm};
use lora_train::trainer::CHECKPOINT_DIR;
use lora_train::{Method, SftTask, TrainConfig, TrainError, Trainer, prepare_causal_lm};
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use super::config::{DecoderLatencyConfig, DecoderSection, MethodRun, TaskBudget};
use super::run::{LatencyResult, LatencyTiming, latency_table, record_result, reuse_run_dir};
use super::{slug, write_err, write_file};
use crate::error::{EvalError, Result};
use crate::generation::{GenerationSettings, evaluate_generation, prompt_ids, prompt_text};
use lora_train::metrics::generation::GenerationMetrics;

/// The label of the untrained model's row.
pub const UNTRAINED: &str = "Untrained";

/// What one decoder run measured: a method fine-tuned on a generation task, the untrained model,
/// or a method this decoder cannot take (with the reason).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationRunResult {
    /// Task name.
    pub task: String,
    /// Row label.
    pub label: String,
    /// Seed.
    pub seed: u64,
    /// Learning rate (0 for the untrained model).
    pub lr: f64,
    /// Trainable and total parameters.
    pub params: ParamCount,
    /// Scores of the greedy generations on the test split (`None` when skipped).
    pub test: Option<GenerationMetrics>,
    /// Why the method was not run on this model.
    pub skipped: Option<String>,
    /// Training seconds per epoch (mean; 0 for the untrained model).
    pub seconds_per_epoch: f64,
    /// Training throughput, tokens per second.
    pub tokens_per_second: f64,
    /// Peak resident memory while training, MiB.
    pub peak_rss_mib: Option<f64>,
    /// Where the first epoch's memory went (base, trainable, optimizer, activations).
    #[serde(default)]
    pub memory: Option<lora_train::memory::MemoryBreakdown>,
    /// Bytes of the saved trainable weights (the PEFT adapter for LoRA).
    pub checkpoint_bytes: u64,
    /// Generation: new tokens per second over the test split.
    pub generation_tokens_per_second: f64,
    /// Mean training loss of every step.
    pub step_losses: Vec<f64>,
}

/// The decoder every run starts from, its tokenizer and chat template.
struct LoadedDecoder {
    model: DecoderForCausalLM,
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
    stop_tokens: Vec<u32>,
    pad_id: u32,
    name: String,
}

/// What the decoder section measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DecoderResults {
    /// Every run of the comparison and of the instruction task, with the untrained rows.
    pub runs: Vec<GenerationRunResult>,
    /// Decoding latency.
    pub latency: Vec<LatencyResult>,
    /// Size of the decoder's weights file in bytes.
    pub model_bytes: u64,
}

/// Which parts of the decoder section to run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DecoderParts {
    pub(crate) comparison: bool,
    pub(crate) instruct: bool,
    pub(crate) latency: bool,
}

/// Runs the decoder section's parts, writing every run under `<out>/runs/<task>/`.
pub(crate) fn run_decoder_section(
    section: &DecoderSection,
    parts: DecoderParts,
    cache: &AssetCache,
    device: &Device,
    out: &Path,
) -> Result<DecoderResults> {
    let dir = lora_assets::resolve_model(cache, &section.model)?;
    let source = ModelSource::path(&dir);
    let train_device = device.clone().autodiff();
    let (model, tokenizer) = load_causal_lm(&source, &train_device)?;
    let template = crate::chat::model_chat_template(&source, &tokenizer, None)?;
    let stop_tokens = crate::chat::stop_tokens(&source, &tokenizer, template.as_ref());
    let pad_id = model
        .config()
        .pad_token_id
        .or(model.config().eos_token_ids.first().copied())
        .unwrap_or(0);
    let model_bytes = weights_bytes(&dir);
    let loaded = LoadedDecoder {
        model,
        tokenizer,
        template,
        stop_tokens,
        pad_id,
        name: section.model.clone(),
    };
    let mut results = DecoderResults {
        model_bytes,
        ..DecoderResults::default()
    };
    let task_runs = |task: &str,
                     methods: &[MethodRun],
                     budget: &TaskBudget,
                     max_new_tokens: usize|
     -> Result<Vec<GenerationRunResult>> {
        let splits = BuiltinSftTask::from_name(task)?.load(cache)?.truncate(
            budget.train,
            budget.dev,
            budget.test,
        );
        let settings = GenerationSettings {
            max_new_tokens,
            batch_size: section.eval_batch,
            stop_tokens: loaded.stop_tokens.clone(),
        };
        let task_dir = out.join("runs").join(task);
        let mut runs = vec![untrained_run(
            &loaded,
            &splits,
            &settings,
            device,
            &task_dir.join("untrained"),
        )?];
        let total = methods.len() * section.seeds.len();
        for (i, (seed, run)) in section
            .seeds
            .iter()
            .flat_map(|s| methods.iter().map(move |m| (*s, m)))
            .enumerate()
        {
            tracing::info!(
                "[decoder {}/{total}] {task} · {} · seed {seed} · {} train / {} test examples",
                i + 1,
                run.label,
                splits.train.len(),
                splits.test.len()
            );
            let run_dir = task_dir.join(slug(&run.label)).join(format!("seed-{seed}"));
            runs.push(train_generation_run(
                &loaded,
                &train_device,
                device,
                &splits,
                run,
                seed,
                budget,
                &settings,
                &run_dir,
            )?);
        }
        Ok(runs)
    };
    if parts.comparison {
        let runs = task_runs(
            &section.task,
            &section.methods,
            &section.budget,
            section.max_new_tokens,
        )?;
        results.runs.extend(runs);
    }
    if parts.instruct {
        let lora = instruct_method(section)?;
        let runs = task_runs(
            &section.instruct_task,
            std::slice::from_ref(&lora),
            &section.instruct_budget,
            section.instruct_max_new_tokens,
        )?;
        results.runs.extend(runs);
    }
    if parts.latency {
        results.latency = measure_decoder_latency(&loaded, &section.latency, device)?;
    }
    Ok(results)
}

/// The LoRA row of the comparison, trained on the instruction task at its learning rate.
pub(crate) fn instruct_method(section: &DecoderSection) -> Result<MethodRun> {
    let lora = section
        .methods
        .iter()
        .find(|m| matches!(m.method, Method::Lora { .. }))
        .ok_or_else(|| {
            EvalError::Config(
                "the decoder's instruction table trains the comparison's first LoRA method; \
                 decoder.methods has none"
                    .into(),
            )
        })?;
    Ok(MethodRun {
        lr: section.instruct_lr,
        ..lora.clone()
    })
}

/// Bytes of a model directory's weights (`*.safetensors`), or of a GGUF file.
fn weights_bytes(path: &Path) -> u64 {
    if path.is_file() {
        return std::fs::metadata(path).map_or(0, |m| m.len());
    }
    std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "safetensors"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

fn encode(
    loaded: &LoadedDecoder,
    examples: &[lora_data::SftExample],
    max_len: usize,
) -> Result<Vec<SftEncoded>> {
    let options = SftOptions {
        max_len,
        train_on_prompt: false,
    };
    let encoder = SftEncoder::new(&loaded.tokenizer, loaded.template.as_ref(), options)?;
    let (encoded, stats) = encoder.encode_all(examples)?;
    if stats.truncated > 0 {
        tracing::info!(
            "{} of {} examples longer than {max_len} tokens: prompts cut from the left",
            stats.truncated,
            stats.examples
        );
    }
    Ok(encoded)
}

/// Scores `model`'s generations on the test split, writing them to `generations.jsonl`.
fn generate_and_score(
    loaded: &LoadedDecoder,
    model: &DecoderForCausalLM,
    splits: &SftSplits,
    settings: &GenerationSettings,
    device: &Device,
    dir: &Path,
) -> Result<(GenerationMetrics, f64)> {
    let eval = evaluate_generation(
        model,
        &loaded.tokenizer,
        loaded.template.as_ref(),
        &splits.test,
        settings,
        device,
    )?;
    let mut jsonl = String::new();
    for record in &eval.records {
        jsonl += &serde_json::to_string(record).map_err(|e| write_err(dir, e))?;
        jsonl.push('\n');
    }
    write_file(dir, "generations.jsonl", jsonl.as_bytes())?;
    tracing::info!(
        "ROUGE-L {:.4} · BLEU {:.2} · exact match {:.4} · {:.1} new tokens/s",
        eval.metrics.rouge_l_f1,
        eval.metrics.bleu.score,
        eval.metrics.exact_match,
        eval.new_tokens as f64 / eval.seconds.max(1e-9)
    );
    Ok((
        eval.metrics,
        eval.new_tokens as f64 / eval.seconds.max(1e-9),
    ))
}

fn untrained_run(
    loaded: &LoadedDecoder,
    splits: &SftSplits,
    settings: &GenerationSettings,
    device: &Device,
    dir: &Path,
) -> Result<GenerationRunResult> {
    let recorded = serde_json::json!({
        "model": loaded.name, "test": splits.test.len(), "max_new_tokens": settings.max_new_tokens,
        "batch": settings.batch_size,
    });
    if let Some(done) = reuse_run_dir::<GenerationRunResult>(dir, &recorded)? {
        tracing::info!("{} · untrained model: done before", splits.name);
        return Ok(done);
    }
    tracing::info!("[decoder] {} · untrained model", splits.name);
    let model = loaded.model.valid();
    let (test, speed) = generate_and_score(loaded, &model, splits, settings, device, dir)?;
    let result = GenerationRunResult {
        task: splits.name.clone(),
        label: UNTRAINED.into(),
        seed: 0,
        lr: 0.0,
        params: ParamCount {
            trainable: 0,
            ..ParamCount::of(&model)
        },
        test: Some(test),
        skipped: None,
        seconds_per_epoch: 0.0,
        tokens_per_second: 0.0,
        peak_rss_mib: None,
        memory: None,
        checkpoint_bytes: 0,
        generation_tokens_per_second: speed,
        step_losses: Vec::new(),
    };
    record_result(dir, &result)?;
    Ok(result)
}

#[allow(clippy::too_many_arguments)]
fn train_generation_run(
    loaded: &LoadedDecoder,
    train_device: &Device,
    device: &Device,
    splits: &SftSplits,
    run: &MethodRun,
    seed: u64,
    budget: &TaskBudget,
    settings: &GenerationSettings,
    dir: &Path,
) -> Result<GenerationRunResult> {
    let recorded = serde_json::json!({
        "model": loaded.name, "method": run.method, "lr": run.lr, "seed": seed, "budget": budget,
        "max_new_tokens": settings.max_new_tokens, "batch": settings.batch_size,
    });
    if let Some(done) = reuse_run_dir::<GenerationRunResult>(dir, &recorded)? {
        tracing::info!("done before");
        return Ok(done);
    }
    let skipped = |reason: String| GenerationRunResult {
        task: splits.name.clone(),
        label: run.label.clone(),
        seed,
        lr: run.lr,
        params: ParamCount::default(),
        test: None,
        skipped: Some(reason),
        seconds_per_epoch: 0.0,
        tokens_per_second: 0.0,
        peak_rss_mib: None,
        memory: None,
        checkpoint_bytes: 0,
        generation_tokens_per_second: 0.0,
        step_losses: Vec::new(),
    };
    let model = match prepare_causal_lm(loaded.model.clone(), &run.method, seed, train_device) {
        Ok(model) => model,
        Err(e @ TrainError::UnsupportedMethod { .. }) => {
            tracing::info!("skipped: {e}");
            let result = skipped(e.to_string());
            record_result(dir, &result)?;
            return Ok(result);
        }
        Err(e) => return Err(e.into()),
    };
    let task: SftTask = SftTask::new(
        encode(loaded, &splits.train, budget.max_len)?,
        encode(loaded, &splits.dev, budget.max_len)?,
        loaded.pad_id,
        None,
    )?;
    let config = TrainConfig {
        epochs: budget.epochs,
        batch_size: budget.batch_size,
        lr: Some(run.lr),
        seed,
        checkpoint_every_steps: Some(50),
        ..TrainConfig::new(run.method.clone())
    };
    let trainer = Trainer::new(&task, config, dir).with_base_model(loaded.name.clone());
    let outcome = if lora_train::checkpoint::existing_dir(&dir.join(CHECKPOINT_DIR)).is_some() {
        tracing::info!("resuming from {}", dir.join(CHECKPOINT_DIR).display());
        trainer.resume(model)?
    } else {
        trainer.fit(model)?
    };
    let model = outcome.model.valid();
    let (test, speed) = generate_and_score(loaded, &model, splits, settings, device, dir)?;
    let history = &outcome.state.history;
    let epochs = history.len().max(1) as f64;
    let weights = if matches!(run.method, Method::Lora { .. }) {
        dir.join("adapter_model.safetensors")
    } else {
        dir.join(lora_train::checkpoint::TRAINABLE_FILE)
    };
    let result = GenerationRunResult {
        params: outcome.params,
        test: Some(test),
        skipped: None,
        seconds_per_epoch: history.iter().map(|e| e.train_seconds).sum::<f64>() / epochs,
        tokens_per_second: history.iter().map(|e| e.tokens_per_second).sum::<f64>() / epochs,
        peak_rss_mib: history
            .iter()
            .filter_map(|e| e.peak_rss_mib)
            .reduce(f64::max),
        memory: history.first().and_then(|e| e.memory),
        checkpoint_bytes: std::fs::metadata(&weights).map_or(0, |m| m.len()),
        generation_tokens_per_second: speed,
        step_losses: outcome.state.step_losses.clone(),
        ..skipped(String::new())
    };
    record_result(dir, &result)?;
    Ok(result)
}

/// Milliseconds per generated token (greedy, end-of-sequence ignored, KV cache), for the base
/// model, LoRA merged and unmerged, AdapterH and AdapterL, at each batch size.
fn measure_decoder_latency(
    loaded: &LoadedDecoder,
    config: &DecoderLatencyConfig,
    device: &Device,
) -> Result<Vec<LatencyResult>> {
    if config.new_tokens == 0 || config.prompt_tokens == 0 {
        return Err(EvalError::Config(
            "decoder latency needs prompt_tokens and new_tokens of at least 1".into(),
        ));
    }
    let base = loaded.model.valid().fork(device);
    let lora = Method::lora(config.rank, &["q_proj", "v_proj"]);
    let variants: Vec<(&str, Option<Method>, bool)> = vec![
        ("Base model (no adapter)", None, false),
        ("LoRA merged", Some(lora.clone()), true),
        ("LoRA unmerged", Some(lora), false),
        (
            "AdapterH",
            Some(Method::AdapterH {
                bottleneck: config.bottleneck,
            }),
            false,
        ),
        (
            "AdapterL",
            Some(Method::AdapterL {
                bottleneck: config.bottleneck,
            }),
            false,
        ),
    ];
    let prompts = latency_prompts(loaded, config)?;
    let generation = GenerationConfig {
        max_new_tokens: config.new_tokens,
        min_new_tokens: config.new_tokens,
        ..GenerationConfig::default()
    };
    let mut models = Vec::with_capacity(variants.len());
    for (name, method, merge) in variants {
        // The variants share the base's frozen tensors (a clone of a module shares them).
        let mut model = match &method {
            Some(method) => prepare_causal_lm(base.clone(), method, 0, device)?,
            None => base.clone(),
        };
        if merge {
            lora_surgery::merge_and_unload(&mut model)?;
        }
        models.push((name, model));
    }
    let timing = LatencyTiming {
        warmup: 1,
        repeats: config.repeats,
        per: config.new_tokens,
        unit: "ms / token",
    };
    latency_table(
        &models,
        &config.batch_sizes,
        &timing,
        |batch| {
            let ids: Vec<Vec<u32>> = prompts.iter().cycle().take(batch).cloned().collect();
            Ok((ids, config.prompt_tokens))
        },
        |model, ids| {
            let generated = model.generate_batch(ids, &generation, device)?;
            debug_assert!(generated.iter().all(|g| g.len() == config.new_tokens));
            Ok(())
        },
    )
}

/// Prompts of exactly `prompt_tokens` tokens: test prompts of the generation task, rendered and
/// cut to length (repeated when short).
fn latency_prompts(loaded: &LoadedDecoder, config: &DecoderLatencyConfig) -> Result<Vec<Vec<u32>>> {
    let largest = config.batch_sizes.iter().copied().max().unwrap_or(1);
    let texts = [
        "Write a short headline for this news story about a football club that won its league.",
        "Summarise the following paragraph about interest rates and the housing market in one line.",
        "Is this review positive or negative? The film was long, but the acting kept me watching.",
        "Translate into French: the weather is fine today and the trains are running on time.",
    ];
    let mut prompts = Vec::with_capacity(largest);
    for text in texts.iter().cycle().take(largest) {
        let example = lora_data::SftExample::prompt_completion(*text, "");
        let rendered = prompt_text(&example, loaded.template.as_ref())?;
        let ids = prompt_ids(&loaded.tokenizer, &rendered, loaded.template.is_some())?;
        if ids.is_empty() {
            return Err(EvalError::Config(
                "a latency prompt encoded to no tokens".into(),
            ));
        }
        let ids: Vec<u32> = ids
            .iter()
            .cycle()
            .take(config.prompt_tokens)
            .copied()
            .collect();
        prompts.push(ids);
    }
    Ok(prompts)
}
