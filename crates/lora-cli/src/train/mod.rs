//! `lora train`: fine-tune a model from flags or a TOML config. This module holds the
//! settings (flags, the TOML run spec they merge into); [`run`] runs them.
//!
//! Settings come from `--config FILE` (TOML), then from flags, which win. A run records its
//! merged settings in `<out>/run.toml`, so `lora train --out DIR --resume` continues it with no
//! other flag.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use lora_core::LoraConfig;
use lora_models::Family;
use lora_surgery::TargetSpec;
use lora_train::{LrSchedule, METHOD_NAMES, Method, OptimizerKind, TrainConfig};
use serde::{Deserialize, Serialize};

use crate::data::ColumnArgs;
use crate::model::target_pattern;
use crate::sft::SftDataArgs;

mod run;

pub use run::train;

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
    /// How the frozen base weights are held: f32 (default), f16, bf16, q8 or q4 (QLoRA's
    /// frozen base; adapters, norms and heads stay f32). lora, adapter-h/-l, bitfit, head-only.
    #[arg(long)]
    base_dtype: Option<lora_core::BaseDType>,
    /// Recompute activations in the backward pass instead of keeping them, one layer at a time
    /// (less memory, about one more forward pass per step).
    #[arg(long)]
    checkpoint_activations: bool,
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
    /// Also write the resumable checkpoint every N steps (it is always written at the end of
    /// each epoch and when the run is interrupted).
    #[arg(long)]
    checkpoint_every: Option<usize>,
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
        if self.checkpoint_every.is_some() {
            c.checkpoint_every_steps = self.checkpoint_every;
        }
        if self.patience.is_some() {
            c.early_stopping_patience = self.patience;
        }
        if self.metric.is_some() {
            c.select_metric = self.metric.clone();
        }
        set!(self.base_dtype => c.base_dtype);
        c.checkpoint_activations |= self.checkpoint_activations;
        c.progress = !quiet;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The TOML example of the README parses into the settings it describes.
    #[test]
    fn the_readme_config_example_is_valid() {
        let readme = include_str!("../../../../README.md");
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
