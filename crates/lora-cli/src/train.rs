//! `lora train`: fine-tune a model from flags or a TOML config.
//!
//! Settings come from `--config FILE` (TOML), then from flags, which win. A run records its
//! merged settings in `<out>/run.toml`, so `lora train --out DIR --resume` continues it with no
//! other flag.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use lora_assets::tasks::SPLIT_SEED;
use lora_assets::{AssetCache, BuiltinTask};
use lora_core::{LoraConfig, ParamCount};
use lora_data::dataset::split_seeded;
use lora_data::readers::{Columns, read_examples};
use lora_data::sft::SftOptions;
use lora_data::{Example, TaskSplits};
use lora_models::Family;
use lora_surgery::TargetSpec;
use lora_train::{
    CausalLmTask, ClassificationTask, LrSchedule, METHOD_NAMES, Method, OptimizerKind, SftTask,
    TrainConfig, TrainOutcome, Trainer, prepare_causal_lm, prepare_classifier,
};
use serde::{Deserialize, Serialize};

use crate::data::ColumnArgs;
use crate::model::{resolve_model, target_pattern, write_labels};
use crate::sft::SftDataArgs;

/// The file in the output directory that records a run's settings.
pub const RUN_FILE: &str = "run.toml";

#[derive(Args, Default)]
pub struct TrainArgs {
    /// A TOML file with any of these settings (flags override it); see docs/guide.md.
    #[arg(long)]
    config: Option<PathBuf>,
    /// A Hugging Face directory, a .gguf file, or an asset name (minilm, smollm2).
    #[arg(long)]
    model: Option<String>,
    /// Backend: flex, ndarray, wgpu, cuda or cuda:N (default: BURN_DEVICE, else the first compiled).
    #[arg(long)]
    device: Option<String>,
    /// A built-in task: movie-sentiment, bbc-news (classification), bbc-headlines,
    /// movie-sentiment-instruct (instruction tuning of a decoder).
    #[arg(long, conflicts_with = "train_file")]
    data: Option<String>,
    /// Training data: .tsv, .csv or .jsonl with a header / keys (a classifier's texts and labels,
    /// or a decoder's prompt / completion pairs or {"messages": [...]} conversations), or a .txt
    /// corpus (one document per line) for a causal LM.
    #[arg(long = "train")]
    train_file: Option<PathBuf>,
    /// Dev data in the same format (default: a seeded 10 % of --train).
    #[arg(long = "dev")]
    dev_file: Option<PathBuf>,
    #[command(flatten)]
    columns: ColumnArgs,
    /// Use at most this many training examples (documents for a causal LM).
    #[arg(long)]
    max_train: Option<usize>,
    /// Use at most this many dev examples.
    #[arg(long)]
    max_dev: Option<usize>,
    /// Method: lora, ft, adapter-h, adapter-l, bitfit, head, last-layers.
    #[arg(long)]
    method: Option<String>,
    /// LoRA rank.
    #[arg(long)]
    r: Option<usize>,
    /// LoRA alpha (default: r).
    #[arg(long)]
    alpha: Option<f64>,
    /// LoRA dropout on the adapter input.
    #[arg(long)]
    dropout: Option<f64>,
    /// LoRA target_modules: a comma-separated list or all-linear (default: PEFT's default for
    /// the model's family, e.g. query,value for BERT, q_proj,v_proj for Llama, c_attn for GPT-2).
    #[arg(long, conflicts_with = "targets_regex")]
    targets: Option<String>,
    /// LoRA target_modules as a full-match regular expression.
    #[arg(long)]
    targets_regex: Option<String>,
    /// rsLoRA scaling alpha/sqrt(r).
    #[arg(long)]
    rslora: bool,
    /// Bottleneck width of adapter-h / adapter-l (default 16).
    #[arg(long)]
    bottleneck: Option<usize>,
    /// Number of top layers that train with --method last-layers (default 2).
    #[arg(long)]
    last_layers: Option<usize>,
    /// Passes over the training data.
    #[arg(long)]
    epochs: Option<usize>,
    /// Peak learning rate (default: 1e-3, or 5e-5 for ft; the LoRA paper used 1e-4).
    #[arg(long)]
    lr: Option<f64>,
    /// Examples per batch.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Batches per optimizer step.
    #[arg(long)]
    grad_accum: Option<usize>,
    /// Truncate inputs to this many tokens (for a causal LM: the block length).
    #[arg(long)]
    max_len: Option<usize>,
    /// Seed of initialisation, data order and dropout.
    #[arg(long)]
    seed: Option<u64>,
    /// adam or adamw.
    #[arg(long)]
    optimizer: Option<String>,
    /// Weight decay (L2 for adam, decoupled for adamw).
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Linear warm-up over this fraction of the steps, then linear decay (default: constant).
    #[arg(long)]
    warmup_ratio: Option<f64>,
    /// Clip the global gradient norm (0 turns clipping off; default 1).
    #[arg(long)]
    max_grad_norm: Option<f64>,
    /// Also evaluate every N steps.
    #[arg(long)]
    eval_every: Option<usize>,
    /// Stop after N evaluations without improvement.
    #[arg(long)]
    patience: Option<usize>,
    /// Metric for the best checkpoint and early stopping (accuracy, f1, loss, perplexity, ...).
    #[arg(long)]
    metric: Option<String>,
    /// Output directory.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run whose checkpoint is in --out.
    #[arg(long)]
    resume: bool,
    #[command(flatten)]
    sft: SftDataArgs,
    /// Take the loss on prompts too (default: completions / assistant turns only, as TRL).
    #[arg(long)]
    train_on_prompt: bool,
    /// Pack several examples into each row of --max-len tokens (attention never crosses them).
    #[arg(long)]
    packing: bool,
}

/// Everything a run needs, as the TOML config and `run.toml` hold it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RunSpec {
    model: Option<String>,
    device: Option<String>,
    data: Option<String>,
    train: Option<PathBuf>,
    dev: Option<PathBuf>,
    text_col: Option<String>,
    text_pair_col: Option<String>,
    label_col: Option<String>,
    max_train: Option<usize>,
    max_dev: Option<usize>,
    max_len: Option<usize>,
    prompt_col: Option<String>,
    completion_col: Option<String>,
    chat_template: Option<PathBuf>,
    train_on_prompt: bool,
    packing: bool,
    out: Option<PathBuf>,
    training: Option<TrainConfig>,
}

impl RunSpec {
    /// The instruction-data flags recorded in the spec.
    fn sft(&self) -> SftDataArgs {
        SftDataArgs {
            prompt_col: self.prompt_col.clone(),
            completion_col: self.completion_col.clone(),
            chat_template: self.chat_template.clone(),
        }
    }

    /// Whether a decoder trains on supervised (prompt / completion or chat) data rather than a
    /// text corpus: a built-in generation task, or a JSONL / CSV / TSV file without
    /// `--text-col`.
    fn is_sft(&self) -> bool {
        match (&self.data, &self.train) {
            (Some(name), _) => lora_assets::BuiltinSftTask::from_name(name).is_ok(),
            (None, Some(path)) => crate::sft::is_sft_file(path) && self.text_col.is_none(),
            (None, None) => false,
        }
    }
}

fn read_toml(path: &Path) -> Result<RunSpec> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config {}", path.display()))
}

impl TrainArgs {
    /// The method from `--method` and the method flags, on top of `base`.
    fn method(&self, base: Option<&Method>, family: Family) -> Result<Method> {
        let lora_flags = self.r.is_some()
            || self.alpha.is_some()
            || self.dropout.is_some()
            || self.targets.is_some()
            || self.targets_regex.is_some()
            || self.rslora;
        let name = match (&self.method, base) {
            (Some(name), _) => name.as_str(),
            (None, Some(base))
                if !lora_flags && self.bottleneck.is_none() && self.last_layers.is_none() =>
            {
                return Ok(base.clone());
            }
            (None, Some(base)) => base.name(),
            (None, None) => "lora",
        };
        let (base_lora, base_targets) = match base {
            Some(Method::Lora { lora, targets }) => (Some(*lora), Some(targets.clone())),
            _ => (None, None),
        };
        let base_bottleneck = match base {
            Some(Method::AdapterH { bottleneck } | Method::AdapterL { bottleneck }) => {
                Some(*bottleneck)
            }
            _ => None,
        };
        let bottleneck = self.bottleneck.or(base_bottleneck).unwrap_or(16);
        if !matches!(name, "lora") && lora_flags {
            bail!("--r, --alpha, --dropout, --targets and --rslora only apply to --method lora");
        }
        Ok(match name {
            "lora" => {
                let mut lora = base_lora.unwrap_or_else(|| LoraConfig::new(8));
                if let Some(r) = self.r {
                    lora.r = r;
                    lora.alpha = r as f64;
                }
                if let Some(alpha) = self.alpha {
                    lora.alpha = alpha;
                }
                if let Some(dropout) = self.dropout {
                    lora.dropout = dropout;
                }
                if self.rslora {
                    lora.use_rslora = true;
                }
                lora.validate()?;
                let default_targets = family.default_targets();
                let mut targets = base_targets.unwrap_or_else(|| TargetSpec {
                    target_modules: Some(lora_surgery::ModulePattern::list(default_targets)),
                    ..Default::default()
                });
                if let Some(pattern) =
                    target_pattern(self.targets.as_deref(), self.targets_regex.as_deref())
                {
                    targets.target_modules = Some(pattern);
                }
                Method::Lora { lora, targets }
            }
            "ft" => Method::FullFineTuning,
            "adapter-h" => Method::AdapterH { bottleneck },
            "adapter-l" => Method::AdapterL { bottleneck },
            "bitfit" => Method::BitFit,
            "head" => Method::HeadOnly,
            "last-layers" => Method::LastLayers {
                layers: self.last_layers.unwrap_or(2),
            },
            other => bail!(
                "unknown method '{other}'; choose one of {}",
                METHOD_NAMES.join(", ")
            ),
        })
    }

    /// The training settings: `base`, then the flags.
    fn training(
        &self,
        base: Option<TrainConfig>,
        family: Family,
        quiet: bool,
    ) -> Result<TrainConfig> {
        let mut c = base.clone().unwrap_or_default();
        c.method = self.method(base.as_ref().map(|b| &b.method), family)?;
        macro_rules! set {
            ($flag:expr => $field:expr) => {
                if let Some(v) = $flag.clone() {
                    $field = v;
                }
            };
        }
        set!(self.epochs => c.epochs);
        set!(self.batch_size => c.batch_size);
        set!(self.grad_accum => c.grad_accum);
        set!(self.seed => c.seed);
        set!(self.weight_decay => c.optimizer.weight_decay);
        if self.lr.is_some() {
            c.lr = self.lr;
        }
        if let Some(kind) = &self.optimizer {
            c.optimizer.kind = match kind.as_str() {
                "adam" => OptimizerKind::Adam,
                "adamw" => OptimizerKind::AdamW,
                other => bail!("unknown optimizer '{other}'; choose adam or adamw"),
            };
        }
        if let Some(warmup_ratio) = self.warmup_ratio {
            if !(0.0..1.0).contains(&warmup_ratio) {
                bail!("--warmup-ratio must be in [0, 1), got {warmup_ratio}");
            }
            c.schedule = LrSchedule::LinearWarmupDecay { warmup_ratio };
        }
        if let Some(norm) = self.max_grad_norm {
            c.max_grad_norm = (norm > 0.0).then_some(norm);
        }
        if self.eval_every.is_some() {
            c.eval_every_steps = self.eval_every;
        }
        if self.patience.is_some() {
            c.early_stopping_patience = self.patience;
        }
        if self.metric.is_some() {
            c.select_metric = self.metric.clone();
        }
        c.progress = !quiet;
        Ok(c)
    }
}

pub fn train(args: TrainArgs, quiet: bool) -> Result<()> {
    // The base settings: the run being resumed, else the config file, else nothing.
    let mut spec = match &args.config {
        Some(path) => read_toml(path)?,
        None => RunSpec::default(),
    };
    let out =
        args.out.clone().or(spec.out.clone()).context(
            "--out is required (the directory for the adapter, metrics and checkpoints)",
        )?;
    if !args.resume
        && lora_train::checkpoint::existing_dir(&out.join(lora_train::trainer::CHECKPOINT_DIR))
            .is_some()
    {
        bail!(
            "{} already holds a checkpoint; pass --resume to continue it, or choose another \
             --out (nothing was changed there)",
            out.display()
        );
    }
    if args.resume {
        let saved = out.join(RUN_FILE);
        if !saved.is_file() {
            bail!("nothing to resume: {} does not exist", saved.display());
        }
        spec = read_toml(&saved)?;
    }
    macro_rules! flag {
        ($name:ident) => {
            if args.$name.is_some() {
                spec.$name = args.$name.clone();
            }
        };
    }
    flag!(model);
    flag!(device);
    flag!(data);
    let c = &args.columns;
    for (flag, field) in [
        (&c.text_col, &mut spec.text_col),
        (&c.text_pair_col, &mut spec.text_pair_col),
        (&c.label_col, &mut spec.label_col),
    ] {
        if flag.is_some() {
            field.clone_from(flag);
        }
    }
    flag!(max_train);
    flag!(max_dev);
    flag!(max_len);
    if args.train_file.is_some() {
        spec.train = args.train_file.clone();
        spec.data = None;
    }
    if args.dev_file.is_some() {
        spec.dev = args.dev_file.clone();
    }
    if args.data.is_some() {
        spec.train = None;
        spec.dev = None;
    }
    let sft = &args.sft;
    if sft.prompt_col.is_some() {
        spec.prompt_col.clone_from(&sft.prompt_col);
    }
    if sft.completion_col.is_some() {
        spec.completion_col.clone_from(&sft.completion_col);
    }
    if sft.chat_template.is_some() {
        spec.chat_template.clone_from(&sft.chat_template);
    }
    spec.train_on_prompt |= args.train_on_prompt;
    spec.packing |= args.packing;
    spec.out = Some(out.clone());

    let model_spec = spec
        .model
        .clone()
        .context("--model is required: a Hugging Face directory, a .gguf file, or an asset name")?;
    let source = resolve_model(&model_spec)?;
    let family = source.family()?;
    let config = args.training(spec.training.clone(), family, quiet)?;
    spec.training = Some(config.clone());
    let device = lora_core::select_device(spec.device.as_deref())?;
    let train_device = device.clone().autodiff();

    // Nothing is written to --out until the data, the model and the method are ready, so a
    // mistake leaves no half-made run behind.
    let write_run_file = || -> Result<()> {
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        let text = toml::to_string_pretty(&spec).context("recording the run settings")?;
        lora_core::io::write_atomic(&out.join(RUN_FILE), text.as_bytes())?;
        Ok(())
    };
    let base_name = source.as_path().display().to_string();
    match family {
        Family::Encoder(_) => {
            let splits = classification_data(&spec)?;
            let (bert, tokenizer) = lora_models::load_encoder(&source, &train_device)?;
            let pad_id = bert.config().pad_token_id as u32;
            let max_len = spec.max_len.unwrap_or(128);
            eprintln!(
                "{}: {} train / {} dev examples, {} labels ({}), max_len {max_len}",
                splits.name,
                splits.train.len(),
                splits.dev.len(),
                splits.labels.len(),
                splits.labels.names().join(", ")
            );
            let task: ClassificationTask =
                ClassificationTask::new(&tokenizer, &splits, max_len, pad_id)?;
            let model = prepare_classifier(
                bert,
                task.num_labels(),
                &config.method,
                config.seed,
                &train_device,
            )?;
            print_params(&config.method, &ParamCount::of(&model), quiet);
            if !args.resume {
                write_run_file()?;
            }
            write_labels(&out, splits.labels.names())?;
            let trainer = Trainer::new(&task, config, &out).with_base_model(base_name);
            let outcome = run(&trainer, model, args.resume)?;
            report(&outcome, quiet);
        }
        Family::Decoder(_) if spec.is_sft() => {
            let flags = spec.sft();
            let splits = crate::sft::sft_splits(
                spec.data.as_deref(),
                spec.train.as_deref(),
                spec.dev.as_deref(),
                &flags.columns(),
            )?
            .truncate(spec.max_train, spec.max_dev, None);
            let (decoder, tokenizer) = lora_models::load_causal_lm(&source, &train_device)?;
            let template =
                crate::sft::chat_template(&source, &tokenizer, flags.chat_template.as_deref())?;
            let max_len = spec.max_len.unwrap_or(512);
            let options = SftOptions {
                max_len,
                train_on_prompt: spec.train_on_prompt,
            };
            let encode = |examples: &[lora_data::SftExample], what: &str| {
                crate::sft::encode(
                    &tokenizer,
                    template.as_ref(),
                    examples,
                    options,
                    what,
                    quiet,
                )
            };
            let (train_set, dev_set) = (
                encode(&splits.train, "training")?,
                encode(&splits.dev, "dev")?,
            );
            let pad_id = decoder
                .config()
                .pad_token_id
                .or(decoder.config().eos_token_ids.first().copied())
                .unwrap_or(0);
            let task: SftTask =
                SftTask::new(train_set, dev_set, pad_id, spec.packing.then_some(max_len))?;
            if !quiet {
                eprintln!(
                    "{}: {} train / {} dev examples ({} rows{}), {} loss, max_len {max_len}{}",
                    splits.name,
                    splits.train.len(),
                    splits.dev.len(),
                    task.train_rows(),
                    if spec.packing { ", packed" } else { "" },
                    if spec.train_on_prompt {
                        "full-sequence"
                    } else {
                        "completion-only"
                    },
                    template.as_ref().map_or(String::new(), |t| format!(
                        ", chat template from {}",
                        t.origin()
                    ))
                );
            }
            let model = prepare_causal_lm(decoder, &config.method, config.seed, &train_device)?;
            print_params(&config.method, &ParamCount::of(&model), quiet);
            if !args.resume {
                write_run_file()?;
            }
            let trainer = Trainer::new(&task, config, &out).with_base_model(base_name);
            let outcome = run(&trainer, model, args.resume)?;
            report(&outcome, quiet);
        }
        Family::Decoder(_) => {
            let (train_docs, dev_docs) = lm_documents(&spec)?;
            let (decoder, tokenizer) = lora_models::load_causal_lm(&source, &train_device)?;
            let block = spec.max_len.unwrap_or(64);
            let eos = decoder.config().eos_token_ids.first().copied();
            let task: CausalLmTask =
                CausalLmTask::new(&tokenizer, &train_docs, &dev_docs, block, eos)?;
            if !quiet {
                eprintln!(
                    "{} training blocks of {block} tokens from {} documents ({} dev documents)",
                    task.train_blocks(),
                    train_docs.len(),
                    dev_docs.len()
                );
            }
            let model = prepare_causal_lm(decoder, &config.method, config.seed, &train_device)?;
            print_params(&config.method, &ParamCount::of(&model), quiet);
            if !args.resume {
                write_run_file()?;
            }
            let trainer = Trainer::new(&task, config, &out).with_base_model(base_name);
            let outcome = run(&trainer, model, args.resume)?;
            report(&outcome, quiet);
        }
    }
    Ok(())
}

fn run<T: lora_train::TrainTask>(
    trainer: &Trainer<'_, T>,
    model: T::Model,
    resume: bool,
) -> Result<TrainOutcome<T::Model>> {
    let outcome = if resume {
        trainer.resume(model)
    } else {
        trainer.fit(model)
    };
    outcome.map_err(|e| match e {
        lora_train::TrainError::Config(m) if m.contains("already holds a checkpoint") => {
            anyhow::anyhow!("{m} (pass --resume to continue it)")
        }
        other => other.into(),
    })
}

fn print_params(method: &Method, params: &ParamCount, quiet: bool) {
    if !quiet {
        eprintln!(
            "method {}: {} trainable of {} parameters ({:.3} %)",
            method.name(),
            params.trainable,
            params.total,
            params.trainable_percent()
        );
    }
}

fn report<M>(outcome: &TrainOutcome<M>, quiet: bool) {
    if !quiet {
        print!("{}", outcome.summary());
    }
}

fn columns(spec: &RunSpec) -> Columns {
    crate::data::columns(
        spec.text_col.as_deref(),
        spec.text_pair_col.as_deref(),
        spec.label_col.as_deref(),
    )
}

/// The classification data: a built-in task, or training (and dev) files.
fn classification_data(spec: &RunSpec) -> Result<TaskSplits> {
    let splits = match (&spec.data, &spec.train) {
        (Some(name), _) => BuiltinTask::from_name(name)?.load(&AssetCache::from_env())?,
        (None, Some(train)) => {
            let columns = columns(spec);
            let (examples, labels) = read_examples(train, &columns, None)?;
            let (train_examples, dev) = match &spec.dev {
                Some(dev) => {
                    let (dev, _) = read_examples(dev, &columns, Some(&labels))?;
                    (examples, dev)
                }
                None => {
                    let (train, dev, _) = split_seeded(examples, 0.1, 0.0, SPLIT_SEED)?;
                    (train, dev)
                }
            };
            TaskSplits {
                name: train
                    .file_name()
                    .map_or_else(|| "data".into(), |n| n.to_string_lossy().into_owned()),
                train: train_examples,
                dev,
                test: Vec::new(),
                labels,
            }
        }
        (None, None) => bail!(
            "no data: pass --data with a built-in task ({}) or --train FILE",
            lora_assets::tasks::TASK_NAMES.join(", ")
        ),
    };
    Ok(splits.truncate(spec.max_train, spec.max_dev, None))
}

/// Documents for causal-LM training: a built-in task's texts, a .txt corpus (one document per
/// line) or a table's text column.
fn lm_documents(spec: &RunSpec) -> Result<(Vec<String>, Vec<String>)> {
    let texts = |examples: &[Example]| examples.iter().map(|e| e.text.clone()).collect::<Vec<_>>();
    let read = |path: &Path| crate::data::read_documents(path, &columns(spec).text);
    let (mut train, mut dev) = match (&spec.data, &spec.train) {
        (Some(name), _) => {
            let task = BuiltinTask::from_name(name)?.load(&AssetCache::from_env())?;
            (texts(&task.train), texts(&task.dev))
        }
        (None, Some(path)) => {
            let docs = read(path)?;
            match &spec.dev {
                Some(dev) => (docs, read(dev)?),
                None => {
                    // Reuse the seeded split on documents wrapped as unlabelled examples.
                    let examples: Vec<Example> = docs
                        .into_iter()
                        .map(|text| Example {
                            text,
                            text_pair: None,
                            label: 0,
                        })
                        .collect();
                    let (train, dev, _) = split_seeded(examples, 0.1, 0.0, SPLIT_SEED)?;
                    (texts(&train), texts(&dev))
                }
            }
        }
        (None, None) => bail!(
            "no data: pass --data with a built-in task or --train FILE (.txt, one document per line)"
        ),
    };
    if let Some(n) = spec.max_train {
        train.truncate(n);
    }
    if let Some(n) = spec.max_dev {
        dev.truncate(n);
    }
    Ok((train, dev))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The TOML example of the README parses into the settings it describes.
    #[test]
    fn the_readme_config_example_is_valid() {
        let readme = include_str!("../../../README.md");
        let start = readme
            .find("```toml\n")
            .expect("the README has a TOML example")
            + 8;
        let end = start + readme[start..].find("```").unwrap();
        let spec: RunSpec = toml::from_str(&readme[start..end]).unwrap();
        assert_eq!(spec.model.as_deref(), Some("minilm"));
        let training = spec.training.unwrap();
        assert_eq!(training.epochs, 3);
        assert_eq!(
            training.schedule,
            LrSchedule::LinearWarmupDecay { warmup_ratio: 0.06 }
        );
        let Method::Lora { lora, targets } = training.method else {
            panic!("the example trains LoRA");
        };
        assert_eq!((lora.r, lora.alpha, lora.dropout), (8, 16.0, 0.1));
        assert_eq!(
            targets.target_modules,
            Some(lora_surgery::ModulePattern::list(&["query", "value"]))
        );
    }
}
