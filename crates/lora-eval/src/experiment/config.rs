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
    /// Every method instruction-tuning a decoder on a generation task (bbc-headlines).
    Decoder,
    /// Decoding latency of the decoder: base, LoRA merged / unmerged and the adapters.
    DecoderLatency,
    /// The decoder instruction-tuned on movie-sentiment-instruct, beside the encoder.
    Instruct,
}

/// Every table, in report order.
pub const ALL_TABLES: [TableKind; 7] = [
    TableKind::Comparison,
    TableKind::Ablation,
    TableKind::Latency,
    TableKind::Bbc,
    TableKind::Decoder,
    TableKind::DecoderLatency,
    TableKind::Instruct,
];

/// The names `--only` takes, in [`ALL_TABLES`] order.
pub const TABLE_NAMES: [&str; 7] = [
    "comparison",
    "ablation",
    "latency",
    "bbc",
    "decoder",
    "decoder-latency",
    "instruct",
];

impl TableKind {
    /// Parses one of [`TABLE_NAMES`].
    pub fn from_name(name: &str) -> Result<Self> {
        TABLE_NAMES
            .iter()
            .position(|n| *n == name)
            .map(|i| ALL_TABLES[i])
            .ok_or_else(|| {
                EvalError::Config(format!(
                    "unknown table '{name}'; choose {}",
                    TABLE_NAMES.join(", ")
                ))
            })
    }
}

/// Instruction tuning of a decoder on a generation task, and its decoding latency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecoderSection {
    /// The decoder: an asset name (`smollm2`), a Hugging Face directory or id, or a GGUF file.
    pub model: String,
    /// The generation task of the comparison (`bbc-headlines`).
    pub task: String,
    /// The methods compared (with the untrained model as the baseline row).
    pub methods: Vec<MethodRun>,
    /// Seeds of every decoder training run.
    pub seeds: Vec<u64>,
    /// Data and epochs of the comparison (`max_len`: the training sequence length).
    pub budget: TaskBudget,
    /// Most new tokens per generated answer.
    pub max_new_tokens: usize,
    /// Prompts generated together when evaluating.
    pub eval_batch: usize,
    /// The instruction task answered in one word, beside the encoder's classification.
    pub instruct_task: String,
    /// Its data and epochs (LoRA only).
    pub instruct_budget: TaskBudget,
    /// LoRA's learning rate there.
    pub instruct_lr: f64,
    /// Most new tokens per answer there.
    pub instruct_max_new_tokens: usize,
    /// Decoding latency.
    pub latency: DecoderLatencyConfig,
}

/// How decoding latency is measured: the paper's setting, per generated token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecoderLatencyConfig {
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// New tokens generated (greedy, end-of-sequence ignored).
    pub new_tokens: usize,
    /// Batch sizes.
    pub batch_sizes: Vec<usize>,
    /// Timed runs (the median is reported) after one warm-up.
    pub repeats: usize,
    /// Bottleneck width of the adapters timed.
    pub bottleneck: usize,
    /// LoRA rank timed (q, v).
    pub rank: usize,
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
    /// The decoder tables.
    pub decoder: DecoderSection,
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
        let decoder_methods = |m: usize, lr: f64, ft_lr: f64| {
            let lora = |label: &str, targets: &[&str]| MethodRun {
                label: label.into(),
                method: Method::Lora {
                    lora: LoraConfig::new(8).with_alpha(16.0),
                    targets: TargetSpec {
                        target_modules: Some(ModulePattern::list(targets)),
                        ..Default::default()
                    },
                },
                lr,
            };
            vec![
                MethodRun {
                    label: "FT".into(),
                    method: Method::FullFineTuning,
                    lr: ft_lr,
                },
                MethodRun {
                    label: format!("AdapterH (m={m})"),
                    method: Method::AdapterH { bottleneck: m },
                    lr,
                },
                MethodRun {
                    label: format!("AdapterL (m={m})"),
                    method: Method::AdapterL { bottleneck: m },
                    lr,
                },
                MethodRun {
                    label: "BitFit".into(),
                    method: Method::BitFit,
                    lr,
                },
                MethodRun {
                    label: "Last 2 layers".into(),
                    method: Method::LastLayers { layers: 2 },
                    lr: ft_lr,
                },
                lora("LoRA r=8 (q,v)", &["q_proj", "v_proj"]),
                lora(
                    "LoRA r=8 (all linear)",
                    &[
                        "q_proj",
                        "k_proj",
                        "v_proj",
                        "o_proj",
                        "gate_proj",
                        "up_proj",
                        "down_proj",
                    ],
                ),
            ]
        };
        // One decoder setting per preset: the comparison's budget, its test prompts and answer
        // length, the instruction task's budget and the latency repeats.
        let decoder = |budget: TaskBudget,
                       max_new_tokens: usize,
                       instruct_budget: TaskBudget,
                       seeds: Vec<u64>,
                       latency: DecoderLatencyConfig| DecoderSection {
            model: "smollm2".into(),
            task: "bbc-headlines".into(),
            methods: decoder_methods(m, 1e-3, 5e-5),
            seeds,
            budget,
            max_new_tokens,
            eval_batch: 8,
            instruct_task: "movie-sentiment-instruct".into(),
            instruct_budget,
            instruct_lr: 1e-3,
            instruct_max_new_tokens: 4,
            latency,
        };
        let decoder_latency = |new_tokens, repeats| DecoderLatencyConfig {
            prompt_tokens: 32,
            new_tokens,
            batch_sizes: vec![1, 8],
            repeats,
            bottleneck: m,
            rank: 8,
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
                decoder: DecoderSection {
                    methods: decoder_methods(m, 1e-3, 5e-5)
                        .into_iter()
                        .filter(|r| r.label == "LoRA r=8 (q,v)")
                        .collect(),
                    ..decoder(
                        budget(Some(16), Some(8), Some(8), 1, 4, 96),
                        8,
                        budget(Some(16), Some(8), Some(8), 1, 4, 96),
                        vec![1],
                        decoder_latency(8, 1),
                    )
                },
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
                // Sized for the 20-minute budget: twelve decoder runs of 12 steps each, their
                // test generations (32 articles, 20 new tokens) included, take about half of it.
                decoder: decoder(
                    budget(Some(48), Some(16), Some(32), 1, 4, 128),
                    20,
                    budget(Some(64), Some(16), Some(64), 1, 8, 128),
                    vec![1, 2],
                    decoder_latency(64, 2),
                ),
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
                decoder: decoder(
                    budget(Some(2000), Some(200), Some(222), 2, 8, 256),
                    32,
                    budget(None, Some(200), None, 1, 16, 256),
                    vec![1, 2, 3],
                    decoder_latency(64, 10),
                ),
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
        let d = &self.decoder;
        if d.seeds.is_empty() {
            return Err(EvalError::Config(
                "decoder.seeds: at least one seed is needed".into(),
            ));
        }
        if d.max_new_tokens == 0 || d.instruct_max_new_tokens == 0 || d.eval_batch == 0 {
            return Err(EvalError::Config(
                "decoder.max_new_tokens, decoder.instruct_max_new_tokens and decoder.eval_batch \
                 must be at least 1"
                    .into(),
            ));
        }
        if self.tables.contains(&TableKind::Instruct) {
            super::decoder::instruct_method(d)?;
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
