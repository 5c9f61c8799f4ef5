//! What an experiment does: the tables, the base model, the methods and their learning rates,
//! each task's data budget, and the presets (`quick`, `default`, `full`) a TOML file can
//! override field by field.

use lora_core::LoraConfig;
use lora_surgery::{ModulePattern, TargetSpec};
use lora_train::Method;
use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};

/// The tables an experiment can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TableKind {
    /// Every method on movie-sentiment.
    Comparison,
    /// LoRA's rank ablation on movie-sentiment.
    Ablation,
    /// Inference latency of the base model, LoRA merged / unmerged and the adapters.
    Latency,
    /// Every method on bbc-news (5 classes).
    Bbc,
}

/// Every table, in report order.
pub const ALL_TABLES: [TableKind; 4] = [
    TableKind::Comparison,
    TableKind::Ablation,
    TableKind::Latency,
    TableKind::Bbc,
];

impl TableKind {
    /// Parses `comparison`, `ablation`, `latency` or `bbc`.
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "comparison" => Ok(Self::Comparison),
            "ablation" => Ok(Self::Ablation),
            "latency" => Ok(Self::Latency),
            "bbc" => Ok(Self::Bbc),
            other => Err(EvalError::Config(format!(
                "unknown table '{other}'; choose comparison, ablation, latency or bbc"
            ))),
        }
    }
}

/// How much of a task to use and how long to train on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskBudget {
    /// Training examples (`None`: the whole split).
    pub train: Option<usize>,
    /// Dev examples.
    pub dev: Option<usize>,
    /// Test examples.
    pub test: Option<usize>,
    /// Epochs.
    pub epochs: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Token limit per example.
    pub max_len: usize,
}

/// One method of the comparison, with its learning rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodRun {
    /// Row label (`LoRA r=8 (q,v)`).
    pub label: String,
    /// The method.
    pub method: Method,
    /// Peak learning rate.
    pub lr: f64,
}

/// The rank ablation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AblationConfig {
    /// Ranks to try, each with α = r.
    pub ranks: Vec<usize>,
    /// Fixed α values also tried at every rank (the report shows the best one per rank).
    pub fixed_alphas: Vec<f64>,
    /// Modules LoRA adapts.
    pub targets: Vec<String>,
    /// Learning rate.
    pub lr: f64,
    /// Data budget (the ablation has many runs, so it may use less data).
    pub budget: TaskBudget,
}

/// Latency measurement settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyConfig {
    /// Batch sizes to time.
    pub batch_sizes: Vec<usize>,
    /// Untimed runs first.
    pub warmup: usize,
    /// Timed runs (the median is reported).
    pub repeats: usize,
    /// Bottleneck width of the adapters timed.
    pub bottleneck: usize,
    /// LoRA rank timed.
    pub rank: usize,
}

/// Everything an experiment does. Presets fill it; a TOML file may override any field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// Name of the results directory (`results/<name>`).
    pub name: String,
    /// The encoder every classification table fine-tunes: an asset name (`minilm`), a Hugging
    /// Face directory, or a Hugging Face model id.
    pub encoder: String,
    /// Seeds; every training run is repeated once per seed.
    pub seeds: Vec<u64>,
    /// Backend (`None`: `BURN_DEVICE`, else the first compiled).
    pub device: Option<String>,
    /// Which tables to produce.
    pub tables: Vec<TableKind>,
    /// The methods compared.
    pub methods: Vec<MethodRun>,
    /// Budget on movie-sentiment.
    pub movie: TaskBudget,
    /// Budget on bbc-news.
    pub bbc: TaskBudget,
    /// The rank ablation.
    pub ablation: AblationConfig,
    /// Latency settings.
    pub latency: LatencyConfig,
}

/// The size presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// A smoke run of a few minutes on 2 CPU cores (CI runs it).
    Quick,
    /// Every table in about 20 minutes on 2 CPU cores.
    Default,
    /// Full data, more epochs and seeds: meant for a GPU.
    Full,
}

/// LoRA of rank `r` with `alpha` on the query and value projections (BERT's names).
pub(crate) fn lora_qv(r: usize, alpha: f64) -> Method {
    Method::Lora {
        lora: LoraConfig::new(r).with_alpha(alpha),
        targets: TargetSpec {
            target_modules: Some(ModulePattern::list(&["query", "value"])),
            ..Default::default()
        },
    }
}

impl ExperimentConfig {
    /// The settings of a preset.
    pub fn preset(preset: Preset) -> Self {
        let m = 16;
        let methods = vec![
            MethodRun {
                label: "FT".into(),
                method: Method::FullFineTuning,
                lr: 5e-5,
            },
            MethodRun {
                label: format!("AdapterH (m={m})"),
                method: Method::AdapterH { bottleneck: m },
                lr: 1e-3,
            },
            MethodRun {
                label: format!("AdapterL (m={m})"),
                method: Method::AdapterL { bottleneck: m },
                lr: 1e-3,
            },
            MethodRun {
                label: "BitFit".into(),
                method: Method::BitFit,
                lr: 1e-3,
            },
            MethodRun {
                label: "Head only".into(),
                method: Method::HeadOnly,
                lr: 1e-3,
            },
            MethodRun {
                label: "LoRA r=8 (q,v)".into(),
                method: lora_qv(8, 8.0),
                lr: 1e-3,
            },
        ];
        let budget = |train, dev, test, epochs, batch_size, max_len| TaskBudget {
            train,
            dev,
            test,
            epochs,
            batch_size,
            max_len,
        };
        let latency = |repeats| LatencyConfig {
            batch_sizes: vec![1, 32],
            warmup: 2,
            repeats,
            bottleneck: m,
            rank: 8,
        };
        let ablation = |ranks: Vec<usize>, fixed_alphas: Vec<f64>, lr, budget| AblationConfig {
            ranks,
            fixed_alphas,
            targets: vec!["query".into(), "value".into()],
            lr,
            budget,
        };
        match preset {
            Preset::Quick => Self {
                name: "quick".into(),
                encoder: "minilm".into(),
                seeds: vec![1],
                device: None,
                tables: ALL_TABLES.to_vec(),
                // Forty steps on 320 reviews: the sizing probes found every parameter-efficient
                // method at chance after them with lr 1e-3, and LoRA at 76-80 % with 3e-3.
                methods: methods
                    .iter()
                    .map(|m| MethodRun {
                        lr: if m.method == Method::FullFineTuning {
                            1e-4
                        } else {
                            3e-3
                        },
                        ..m.clone()
                    })
                    .collect(),
                movie: budget(Some(320), Some(48), Some(200), 1, 8, 48),
                bbc: budget(Some(60), Some(30), Some(60), 1, 10, 96),
                ablation: ablation(
                    vec![1, 8],
                    vec![],
                    3e-3,
                    budget(Some(96), Some(48), Some(96), 1, 16, 48),
                ),
                latency: latency(3),
            },
            Preset::Default => Self {
                name: "default".into(),
                encoder: "minilm".into(),
                seeds: vec![1, 2],
                device: None,
                tables: ALL_TABLES.to_vec(),
                methods,
                movie: budget(Some(800), Some(200), Some(400), 1, 8, 64),
                // News topics show in an article's first sentences; batch 4 gives the
                // parameter-efficient methods 80 steps, which they need to leave the
                // majority class at lr 1e-3.
                bbc: budget(Some(320), Some(50), Some(150), 1, 4, 48),
                // Forty steps: at lr 1e-3 every rank is still at chance after them, so the
                // ablation takes a larger step (the paper tunes the learning rate per task).
                ablation: ablation(
                    vec![1, 2, 4, 8, 16, 32, 64],
                    vec![16.0],
                    3e-3,
                    budget(Some(320), Some(50), Some(200), 1, 8, 64),
                ),
                latency: latency(7),
            },
            Preset::Full => Self {
                name: "full".into(),
                encoder: "minilm".into(),
                seeds: vec![1, 2, 3],
                device: None,
                tables: ALL_TABLES.to_vec(),
                methods,
                movie: budget(None, None, None, 3, 16, 128),
                bbc: budget(None, None, None, 3, 8, 256),
                ablation: ablation(
                    vec![1, 2, 4, 8, 16, 32, 64],
                    vec![8.0, 16.0, 32.0],
                    1e-3,
                    budget(None, None, None, 3, 16, 128),
                ),
                latency: latency(20),
            },
        }
    }

    /// Applies a TOML document's fields over these settings (a partial config).
    pub fn merge_toml(&self, text: &str) -> Result<Self> {
        let mut base = toml::Value::try_from(self).map_err(|e| EvalError::Config(e.to_string()))?;
        let overlay: toml::Value =
            toml::from_str(text).map_err(|e| EvalError::Config(format!("invalid TOML: {e}")))?;
        merge_values(&mut base, overlay);
        base.try_into()
            .map_err(|e| EvalError::Config(format!("invalid experiment config: {e}")))
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.seeds.is_empty() {
            return Err(EvalError::Config("at least one seed is needed".into()));
        }
        if self.tables.is_empty() {
            return Err(EvalError::Config("no table selected".into()));
        }
        Ok(())
    }
}

fn merge_values(base: &mut toml::Value, overlay: toml::Value) {
    match (base, overlay) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) if existing.is_table() && v.is_table() => {
                        merge_values(existing, v)
                    }
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_toml_overrides_fields() {
        for p in [Preset::Quick, Preset::Default, Preset::Full] {
            ExperimentConfig::preset(p).validate().unwrap();
        }
        let base = ExperimentConfig::preset(Preset::Quick);
        let merged = base
            .merge_toml("seeds = [3, 4]\n[movie]\nepochs = 2\n")
            .unwrap();
        assert_eq!(merged.seeds, [3, 4]);
        assert_eq!(merged.movie.epochs, 2);
        assert_eq!(merged.movie.batch_size, base.movie.batch_size);
        let err = base
            .merge_toml("[movie]\nepochz = 2\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("epochz"), "{err}");
    }
}
