//! Running the plan: one training run (resumable, skipped when already done with the same
//! settings) and the latency measurements, each producing the records the report reads.

use std::path::Path;

use burn::module::Module;
use burn::tensor::Device;
use lora_core::ParamCount;
use lora_data::batching::{EncodedBatch, tokenize_examples};
use lora_data::{TaskSplits, TokenizedExample};
use lora_models::Encoder;
use lora_train::checkpoint::existing_dir;
use lora_train::trainer::CHECKPOINT_DIR;
use lora_train::{
    ClassificationTask, EvalMetrics, Method, TrainConfig, Trainer, evaluate_classifier,
    prepare_classifier,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use super::config::{LatencyConfig, TaskBudget, lora_qv};
use super::{write_err, write_file};
use crate::error::Result;
use crate::latency::{Latency, measure_interleaved};
use crate::stats::bootstrap_ci;

/// What one training run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// Task name.
    pub task: String,
    /// Row label.
    pub label: String,
    /// Method name.
    pub method: String,
    /// LoRA rank and alpha, for LoRA runs.
    pub lora: Option<(usize, f64)>,
    /// Seed.
    pub seed: u64,
    /// Learning rate.
    pub lr: f64,
    /// Trainable and total parameters.
    pub params: ParamCount,
    /// Test-set metrics of the final model.
    pub test: EvalMetrics,
    /// 95 % bootstrap interval of the test accuracy.
    pub test_accuracy_ci: (f64, f64),
    /// Training seconds per epoch (mean).
    pub seconds_per_epoch: f64,
    /// Training throughput.
    pub examples_per_second: f64,
    /// Peak resident memory during training, MiB.
    pub peak_rss_mib: Option<f64>,
    /// Where the first epoch's memory went (base, trainable, optimizer, activations).
    #[serde(default)]
    pub memory: Option<lora_train::memory::MemoryBreakdown>,
    /// Bytes of the saved trainable weights (the PEFT adapter for LoRA).
    pub checkpoint_bytes: u64,
    /// Mean training loss of every step.
    pub step_losses: Vec<f64>,
}

/// Inference latency of one model variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyResult {
    /// Variant (`base`, `LoRA merged`, ...).
    pub variant: String,
    /// Batch size.
    pub batch: usize,
    /// Padded sequence length of the batch.
    pub seq_len: usize,
    /// The timings.
    pub latency: Latency,
}

/// The encoder every classification run starts from, with its tokenizer.
pub(crate) struct Loaded {
    pub(crate) encoder: Encoder,
    pub(crate) tokenizer: Tokenizer,
    pub(crate) pad_id: u32,
    pub(crate) name: String,
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn train_run(
    loaded: &Loaded,
    device: &Device,
    splits: &TaskSplits,
    label: &str,
    method: &Method,
    lr: f64,
    seed: u64,
    budget: &TaskBudget,
    dir: &Path,
) -> Result<RunResult> {
    let settings = serde_json::json!({
        "method": method, "lr": lr, "seed": seed, "budget": budget,
    });
    if let Some(done) = reuse_run_dir::<RunResult>(dir, &settings)? {
        tracing::info!(
            "done before: test accuracy {:.4}",
            done.test.get("accuracy").unwrap_or(f64::NAN)
        );
        return Ok(done);
    }
    let task: ClassificationTask =
        ClassificationTask::new(&loaded.tokenizer, splits, budget.max_len, loaded.pad_id)?;
    let config = TrainConfig {
        epochs: budget.epochs,
        batch_size: budget.batch_size,
        lr: Some(lr),
        seed,
        // Checkpoints every 50 steps let an interrupted experiment resume inside a run.
        checkpoint_every_steps: Some(50),
        ..TrainConfig::new(method.clone())
    };
    let model = prepare_classifier(
        loaded.encoder.clone(),
        task.num_labels(),
        method,
        seed,
        device,
    )?;
    let trainer = Trainer::new(&task, config, dir).with_base_model(loaded.name.clone());
    let outcome = if existing_dir(&dir.join(CHECKPOINT_DIR)).is_some() {
        tracing::info!("resuming from {}", dir.join(CHECKPOINT_DIR).display());
        trainer.resume(model)?
    } else {
        trainer.fit(model)?
    };
    let test_examples = tokenize_examples(&loaded.tokenizer, &splits.test, budget.max_len)?;
    let test = evaluate_classifier(
        &outcome.model.valid(),
        &test_examples,
        task.num_labels(),
        loaded.pad_id,
        64,
    )?;
    let confusion = &test
        .classification
        .as_ref()
        .expect("a classifier's metrics")
        .confusion;
    let ci = bootstrap_ci(
        confusion,
        lora_train::ConfusionMatrix::accuracy,
        1000,
        0.95,
        seed,
    );
    let history = &outcome.state.history;
    let epochs = history.len().max(1) as f64;
    let weights = if matches!(method, Method::Lora { .. }) {
        dir.join("adapter_model.safetensors")
    } else {
        dir.join(lora_train::checkpoint::TRAINABLE_FILE)
    };
    let result = RunResult {
        task: splits.name.clone(),
        label: label.to_string(),
        method: method.name().to_string(),
        lora: match method {
            Method::Lora { lora, .. } => Some((lora.r, lora.alpha)),
            _ => None,
        },
        seed,
        lr,
        params: outcome.params,
        test,
        test_accuracy_ci: ci,
        seconds_per_epoch: history.iter().map(|e| e.train_seconds).sum::<f64>() / epochs,
        examples_per_second: history.iter().map(|e| e.examples_per_second).sum::<f64>() / epochs,
        peak_rss_mib: history
            .iter()
            .filter_map(|e| e.peak_rss_mib)
            .reduce(f64::max),
        memory: history.first().and_then(|e| e.memory),
        checkpoint_bytes: std::fs::metadata(&weights).map_or(0, |m| m.len()),
        step_losses: outcome.state.step_losses.clone(),
    };
    tracing::info!(
        "test accuracy {:.4} (95 % CI {:.4}–{:.4}) · {:.1} s/epoch",
        result.test.get("accuracy").unwrap_or(f64::NAN),
        ci.0,
        ci.1,
        result.seconds_per_epoch
    );
    record_result(dir, &result)?;
    Ok(result)
}

/// Prepares the directory of a run started with `settings`: a run is reused (its recorded
/// result returned, or left to resume from its checkpoint) only if it was started with the same
/// settings; otherwise its directory is stale and the run starts again.
pub(crate) fn reuse_run_dir<T: DeserializeOwned>(
    dir: &Path,
    settings: &serde_json::Value,
) -> Result<Option<T>> {
    let settings_path = dir.join("settings.json");
    let recorded = std::fs::read_to_string(&settings_path)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok());
    if recorded.as_ref() != Some(settings) && dir.exists() {
        tracing::info!(dir = %dir.display(), "settings differ from the last invocation's: starting this run again");
        std::fs::remove_dir_all(dir).map_err(|e| write_err(dir, e))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| write_err(dir, e))?;
    let text = serde_json::to_vec_pretty(settings).map_err(|e| write_err(&settings_path, e))?;
    write_file(dir, "settings.json", &text)?;
    Ok(std::fs::read_to_string(dir.join(RESULT_FILE))
        .ok()
        .and_then(|text| serde_json::from_str::<T>(&text).ok()))
}

/// Records a finished run's result; its resumable state is no longer needed after that.
pub(crate) fn record_result<T: Serialize>(dir: &Path, result: &T) -> Result<()> {
    let json = serde_json::to_vec_pretty(result).map_err(|e| write_err(dir, e))?;
    write_file(dir, RESULT_FILE, &json)?;
    let _ = std::fs::remove_dir_all(dir.join(CHECKPOINT_DIR));
    Ok(())
}

/// The file a finished run records its result in.
const RESULT_FILE: &str = "result.json";

pub(crate) fn measure_latency(
    loaded: &Loaded,
    device: &Device,
    splits: &TaskSplits,
    config: &LatencyConfig,
    max_len: usize,
) -> Result<Vec<LatencyResult>> {
    let bert = loaded.encoder.valid().fork(device);
    let variants: Vec<(&str, Method, bool)> = vec![
        ("Base model (no adapter)", Method::HeadOnly, false),
        (
            "LoRA merged",
            lora_qv(config.rank, config.rank as f64),
            true,
        ),
        (
            "LoRA unmerged",
            lora_qv(config.rank, config.rank as f64),
            false,
        ),
        (
            "AdapterH",
            Method::AdapterH {
                bottleneck: config.bottleneck,
            },
            false,
        ),
        (
            "AdapterL",
            Method::AdapterL {
                bottleneck: config.bottleneck,
            },
            false,
        ),
    ];
    let largest = config.batch_sizes.iter().copied().max().unwrap_or(1);
    let pool: Vec<TokenizedExample> = tokenize_examples(
        &loaded.tokenizer,
        &splits.test[..largest.min(splits.test.len())],
        max_len,
    )?;
    let mut models = Vec::with_capacity(variants.len());
    for (name, method, merge) in variants {
        let mut model = prepare_classifier(bert.clone(), 2, &method, 0, device)?;
        if merge {
            lora_surgery::merge_and_unload(&mut model)?;
        }
        models.push((name, model.valid()));
    }
    let timing = LatencyTiming {
        warmup: config.warmup,
        repeats: config.repeats,
        per: 1,
        unit: "ms",
    };
    latency_table(
        &models,
        &config.batch_sizes,
        &timing,
        |batch| {
            let picked: Vec<&TokenizedExample> = pool.iter().cycle().take(batch).collect();
            let encoded = EncodedBatch::from_sequences(
                picked
                    .iter()
                    .map(|e| (e.ids.as_slice(), e.type_ids.as_slice())),
                loaded.pad_id,
            );
            Ok((lora_train::token_batch(&encoded, device)?, encoded.seq))
        },
        |model, input| {
            let _ = model.forward(input)?.into_data();
            Ok(())
        },
    )
}

/// How [`latency_table`] times: untimed and timed rounds, and the unit results are divided
/// into (`per` generated tokens, say) with its name for the log.
pub(crate) struct LatencyTiming {
    pub(crate) warmup: usize,
    pub(crate) repeats: usize,
    pub(crate) per: usize,
    pub(crate) unit: &'static str,
}

/// The latency of every named model at every batch size, variant by variant. At each batch
/// size the models are timed in alternation (each timed round runs every one,
/// [`measure_interleaved`]), so that a slow spell of the machine falls on all of them and the
/// table compares like with like (merged against base above all: the same computation).
/// `input` builds a batch's input and its sequence length; `run` runs a model on it and waits
/// for the result.
pub(crate) fn latency_table<M, I>(
    models: &[(&str, M)],
    batch_sizes: &[usize],
    timing: &LatencyTiming,
    input: impl Fn(usize) -> Result<(I, usize)>,
    run: impl Fn(&M, &I) -> Result<()>,
) -> Result<Vec<LatencyResult>> {
    let mut by_batch = Vec::with_capacity(batch_sizes.len());
    for &batch in batch_sizes {
        let (input, seq_len) = input(batch)?;
        let mut runs: Vec<_> = models
            .iter()
            .map(|(_, model)| {
                let (input, run) = (&input, &run);
                move || run(model, input)
            })
            .collect();
        let mut fs: Vec<&mut dyn FnMut() -> Result<()>> = runs
            .iter_mut()
            .map(|f| f as &mut dyn FnMut() -> Result<()>)
            .collect();
        let latencies = measure_interleaved(timing.warmup, timing.repeats, &mut fs)?;
        by_batch.push((batch, seq_len, latencies));
    }
    let mut out = Vec::new();
    for (i, (name, _)) in models.iter().enumerate() {
        for (batch, seq_len, latencies) in &by_batch {
            let latency = latencies[i].per(timing.per);
            tracing::info!(
                "latency {name} batch {batch}: {:.2} {}",
                latency.median_ms,
                timing.unit
            );
            out.push(LatencyResult {
                variant: name.to_string(),
                batch: *batch,
                seq_len: *seq_len,
                latency,
            });
        }
    }
    Ok(out)
}
