//! The LoRA paper's comparison, measured on real data: methods against each other, LoRA's rank
//! ablation, inference latency, and the comparison again on a five-class task.
//!
//! Every training run writes its own directory under `<out>/runs/` and a `result.json` when it
//! is done; an interrupted experiment skips finished runs and resumes an unfinished one from its
//! checkpoint. The report (`report.md`, `results.json`, one CSV per table and SVG plots) is
//! rebuilt from the results at the end.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;
use lora_assets::{AssetCache, BuiltinTask};
use lora_core::{LoraConfig, ParamCount};
use lora_data::batching::{EncodedBatch, tokenize_examples};
use lora_data::{TaskSplits, TokenizedExample};
use lora_models::{Encoder, ModelSource, load_encoder};
use lora_surgery::{ModulePattern, TargetSpec};
use lora_train::checkpoint::existing_dir;
use lora_train::trainer::CHECKPOINT_DIR;
use lora_train::{
    ClassificationTask, EvalMetrics, Method, TrainConfig, Trainer, evaluate_classifier,
    prepare_classifier,
};
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::error::{EvalError, Result};
use crate::latency::{Latency, measure};
use crate::plot::{Series, line_plot_svg, moving_average};
use crate::report::{MachineInfo, Table};
use crate::stats::{MeanStd, bootstrap_ci};

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

fn lora_qv(r: usize, alpha: f64) -> Method {
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
                seeds: vec![1],
                device: None,
                tables: ALL_TABLES.to_vec(),
                methods,
                movie: budget(Some(160), Some(48), Some(96), 1, 16, 48),
                bbc: budget(Some(60), Some(30), Some(60), 1, 10, 96),
                ablation: ablation(
                    vec![1, 8],
                    vec![],
                    1e-3,
                    budget(Some(96), Some(48), Some(96), 1, 16, 48),
                ),
                latency: latency(3),
            },
            Preset::Default => Self {
                name: "default".into(),
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

    fn validate(&self) -> Result<()> {
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

/// Everything an experiment produced, as `results.json` holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExperimentResults {
    /// The settings.
    pub config: ExperimentConfig,
    /// The machine.
    pub machine: MachineInfo,
    /// Every training run.
    pub runs: Vec<RunResult>,
    /// Latency measurements.
    pub latency: Vec<LatencyResult>,
    /// Size of the full model's weights file in bytes.
    pub full_model_bytes: u64,
    /// Wall time of this invocation, seconds.
    pub wall_seconds: f64,
}

struct Loaded {
    bert: Encoder,
    tokenizer: Tokenizer,
    pad_id: u32,
    model_bytes: u64,
}

/// Runs an experiment, writing everything to `out`; returns the results and the report path.
pub fn run_experiment(
    config: &ExperimentConfig,
    out: &Path,
) -> Result<(ExperimentResults, PathBuf)> {
    config.validate()?;
    let started = Instant::now();
    let cache = AssetCache::from_env();
    let device = lora_core::select_device(config.device.as_deref())
        .map_err(|e| EvalError::Config(e.to_string()))?;
    let machine = MachineInfo::collect(&format!("{device:?}"));
    std::fs::create_dir_all(out).map_err(|e| write_err(out, e))?;
    write_file(
        out,
        "config.toml",
        toml::to_string_pretty(config)
            .map_err(|e| EvalError::Config(e.to_string()))?
            .as_bytes(),
    )?;

    let minilm = cache.fetch("minilm")?;
    let train_device = device.clone().autodiff();
    let (bert, tokenizer) = load_encoder(&ModelSource::path(&minilm.main), &train_device)?;
    let pad_id = bert.config().pad_token_id as u32;
    let model_bytes =
        std::fs::metadata(minilm.main.join("model.safetensors")).map_or(0, |m| m.len());
    let loaded = Loaded {
        bert,
        tokenizer,
        pad_id,
        model_bytes,
    };

    let wants = |t: TableKind| config.tables.contains(&t);
    let mut plan: Vec<(BuiltinTask, String, Method, f64, u64, TaskBudget)> = Vec::new();
    if wants(TableKind::Comparison) {
        for seed in &config.seeds {
            for m in &config.methods {
                plan.push((
                    BuiltinTask::MovieSentiment,
                    m.label.clone(),
                    m.method.clone(),
                    m.lr,
                    *seed,
                    config.movie.clone(),
                ));
            }
        }
    }
    if wants(TableKind::Ablation) {
        let a = &config.ablation;
        for seed in &config.seeds {
            for &r in &a.ranks {
                let alphas = std::iter::once(r as f64).chain(a.fixed_alphas.iter().copied());
                for alpha in alphas {
                    let method = Method::Lora {
                        lora: LoraConfig::new(r).with_alpha(alpha),
                        targets: TargetSpec {
                            target_modules: Some(ModulePattern::list(&a.targets)),
                            ..Default::default()
                        },
                    };
                    let label = format!("ablation r={r} alpha={alpha}");
                    if !plan.iter().any(|p| p.1 == label && p.4 == *seed) {
                        plan.push((
                            BuiltinTask::MovieSentiment,
                            label,
                            method,
                            a.lr,
                            *seed,
                            a.budget.clone(),
                        ));
                    }
                }
            }
        }
    }
    if wants(TableKind::Bbc) {
        for seed in &config.seeds {
            for m in &config.methods {
                plan.push((
                    BuiltinTask::BbcNews,
                    m.label.clone(),
                    m.method.clone(),
                    m.lr,
                    *seed,
                    config.bbc.clone(),
                ));
            }
        }
    }

    let mut runs = Vec::new();
    let mut data: Vec<(BuiltinTask, TaskSplits)> = Vec::new();
    for (i, (task, label, method, lr, seed, budget)) in plan.iter().enumerate() {
        if !data.iter().any(|(t, _)| t == task) {
            data.push((*task, task.load(&cache)?));
        }
        let splits: &TaskSplits = data
            .iter()
            .find(|(t, _)| t == task)
            .map(|(_, s)| s)
            .expect("loaded above");
        let splits = splits
            .clone()
            .truncate(budget.train, budget.dev, budget.test);
        eprintln!(
            "[{}/{}] {} · {label} · seed {seed} · {} train / {} test examples",
            i + 1,
            plan.len(),
            task.name(),
            splits.train.len(),
            splits.test.len()
        );
        let dir = out
            .join("runs")
            .join(task.name())
            .join(slug(label))
            .join(format!("seed-{seed}"));
        runs.push(train_run(
            &loaded,
            &train_device,
            &splits,
            label,
            method,
            *lr,
            *seed,
            budget,
            &dir,
        )?);
    }

    let latency = if wants(TableKind::Latency) {
        let splits = match data.iter().find(|(t, _)| *t == BuiltinTask::MovieSentiment) {
            Some((_, s)) => s.clone(),
            None => BuiltinTask::MovieSentiment.load(&cache)?,
        };
        measure_latency(
            &loaded,
            &device,
            &splits,
            &config.latency,
            config.movie.max_len,
        )?
    } else {
        Vec::new()
    };
    let results = ExperimentResults {
        config: config.clone(),
        machine,
        runs,
        latency,
        full_model_bytes: loaded.model_bytes,
        wall_seconds: started.elapsed().as_secs_f64(),
    };
    let report = write_report(&results, out)?;
    Ok((results, report))
}

fn slug(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect::<String>()
        .split('-')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

fn write_err(path: &Path, e: impl std::fmt::Display) -> EvalError {
    EvalError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    Ok(lora_core::io::write_atomic(&dir.join(name), bytes)?)
}

#[allow(clippy::too_many_arguments)]
fn train_run(
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
    // A run is reused (finished, or resumed from its checkpoint) only if it was started with
    // the same settings; otherwise its directory is stale and the run starts again.
    let settings = serde_json::json!({
        "method": method, "lr": lr, "seed": seed, "budget": budget,
    });
    let settings_path = dir.join("settings.json");
    let recorded = std::fs::read_to_string(&settings_path)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok());
    if recorded.as_ref() != Some(&settings) && dir.exists() {
        eprintln!("    settings differ from the last invocation's: starting this run again");
        std::fs::remove_dir_all(dir).map_err(|e| write_err(dir, e))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| write_err(dir, e))?;
    let text = serde_json::to_vec_pretty(&settings).map_err(|e| write_err(&settings_path, e))?;
    write_file(dir, "settings.json", &text)?;
    let result_path = dir.join("result.json");
    if let Ok(text) = std::fs::read_to_string(&result_path)
        && let Ok(done) = serde_json::from_str::<RunResult>(&text)
    {
        eprintln!(
            "    done before: test accuracy {:.4}",
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
    let model = prepare_classifier(loaded.bert.clone(), task.num_labels(), method, seed, device)?;
    let trainer = Trainer::new(&task, config, dir).with_base_model("all-MiniLM-L6-v2");
    let outcome = if existing_dir(&dir.join(CHECKPOINT_DIR)).is_some() {
        eprintln!("    resuming from {}", dir.join(CHECKPOINT_DIR).display());
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
        checkpoint_bytes: std::fs::metadata(&weights).map_or(0, |m| m.len()),
        step_losses: outcome.state.step_losses.clone(),
    };
    eprintln!(
        "    test accuracy {:.4} (95 % CI {:.4}–{:.4}) · {:.1} s/epoch",
        result.test.get("accuracy").unwrap_or(f64::NAN),
        ci.0,
        ci.1,
        result.seconds_per_epoch
    );
    let json = serde_json::to_vec_pretty(&result).map_err(|e| write_err(&result_path, e))?;
    write_file(dir, "result.json", &json)?;
    // The resumable state is no longer needed once the result is recorded.
    let _ = std::fs::remove_dir_all(dir.join(CHECKPOINT_DIR));
    Ok(result)
}

fn measure_latency(
    loaded: &Loaded,
    device: &Device,
    splits: &TaskSplits,
    config: &LatencyConfig,
    max_len: usize,
) -> Result<Vec<LatencyResult>> {
    let bert = loaded.bert.valid().fork(device);
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
    let mut out = Vec::new();
    for (name, method, merge) in variants {
        let mut model = prepare_classifier(bert.clone(), 2, &method, 0, device)?;
        if merge {
            lora_surgery::merge_and_unload(&mut model)?;
        }
        let model = model.valid();
        for &batch in &config.batch_sizes {
            let picked: Vec<&TokenizedExample> = pool.iter().cycle().take(batch).collect();
            let encoded = EncodedBatch::from_sequences(
                picked
                    .iter()
                    .map(|e| (e.ids.as_slice(), e.type_ids.as_slice())),
                loaded.pad_id,
            );
            let input = lora_train::token_batch(&encoded, device)?;
            let latency = measure(config.warmup, config.repeats, || -> Result<()> {
                let logits = model.forward(&input)?;
                let _ = logits.into_data();
                Ok(())
            })?;
            eprintln!(
                "    latency {name} batch {batch}: {:.2} ms",
                latency.median_ms
            );
            out.push(LatencyResult {
                variant: name.to_string(),
                batch,
                seq_len: encoded.seq,
                latency,
            });
        }
    }
    Ok(out)
}

fn human_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else {
        format!("{:.1} KiB", b / 1024.0)
    }
}

fn metric_stats(runs: &[&RunResult], name: &str) -> MeanStd {
    MeanStd::of(
        &runs
            .iter()
            .filter_map(|r| r.test.get(name))
            .collect::<Vec<_>>(),
    )
}

/// The comparison table of one task: a row per method, metrics as mean ± std over seeds.
fn comparison_table(results: &ExperimentResults, task: &str, title: &str) -> Table {
    let mut table = Table::new(
        title,
        [
            "method",
            "trainable params",
            "% of model",
            "accuracy %",
            "precision %",
            "recall %",
            "F1 %",
            "s / epoch",
            "peak MiB",
            "checkpoint",
            "% of model file",
        ],
    );
    for m in &results.config.methods {
        let runs: Vec<&RunResult> = results
            .runs
            .iter()
            .filter(|r| r.task == task && r.label == m.label)
            .collect();
        let Some(first) = runs.first() else { continue };
        let f = |name| metric_stats(&runs, name).percent(1);
        let peak = runs.iter().filter_map(|r| r.peak_rss_mib).reduce(f64::max);
        table.push([
            m.label.clone(),
            first.params.trainable.to_string(),
            format!("{:.3}", first.params.trainable_percent()),
            f("accuracy"),
            f("precision"),
            f("recall"),
            f("f1"),
            MeanStd::of(&runs.iter().map(|r| r.seconds_per_epoch).collect::<Vec<_>>()).format(1),
            peak.map_or("-".into(), |p| format!("{p:.0}")),
            human_bytes(first.checkpoint_bytes),
            format!(
                "{:.2}",
                100.0 * first.checkpoint_bytes as f64 / results.full_model_bytes.max(1) as f64
            ),
        ]);
    }
    let seeds = results.config.seeds.len();
    table.note = Some(format!(
        "Test-set metrics, mean ± std over {seeds} seed(s){}. Precision/recall/F1: of the positive \
         class for binary tasks, macro-averaged otherwise. Peak MiB is the process's peak resident \
         memory while training (model, data and framework included).",
        if seeds == 1 {
            " (one seed: no spread)"
        } else {
            ""
        }
    ));
    table
}

fn ablation_rows(results: &ExperimentResults) -> (Table, Vec<Series>) {
    let a = &results.config.ablation;
    let mut table = Table::new(
        "Rank ablation: LoRA on (query, value), movie-sentiment",
        [
            "r",
            "α",
            "trainable params",
            "accuracy %",
            "precision %",
            "recall %",
            "F1 %",
        ],
    );
    let mut same = Series {
        label: "α = r".into(),
        points: Vec::new(),
    };
    let mut fixed = Series {
        label: "best fixed α".into(),
        points: Vec::new(),
    };
    for &r in &a.ranks {
        let of = |alpha: f64| -> Vec<&RunResult> {
            results
                .runs
                .iter()
                .filter(|run| run.lora == Some((r, alpha)) && run.label.starts_with("ablation"))
                .collect()
        };
        let mut row = |alpha: f64, runs: &[&RunResult], note: &str| {
            if let Some(first) = runs.first() {
                let f = |name| metric_stats(runs, name).percent(1);
                table.push([
                    r.to_string(),
                    format!("{alpha}{note}"),
                    first.params.trainable.to_string(),
                    f("accuracy"),
                    f("precision"),
                    f("recall"),
                    f("f1"),
                ]);
            }
        };
        let same_runs = of(r as f64);
        row(r as f64, &same_runs, "");
        if !same_runs.is_empty() {
            let s = metric_stats(&same_runs, "accuracy");
            same.points.push((r as f64, s.mean, s.std));
        }
        let best = a
            .fixed_alphas
            .iter()
            .filter(|&&alpha| alpha != r as f64)
            .map(|&alpha| (alpha, of(alpha)))
            .filter(|(_, runs)| !runs.is_empty())
            .max_by(|x, y| {
                metric_stats(&x.1, "accuracy")
                    .mean
                    .total_cmp(&metric_stats(&y.1, "accuracy").mean)
            });
        if let Some((alpha, runs)) = best {
            row(alpha, &runs, " (fixed)");
            let s = metric_stats(&runs, "accuracy");
            fixed.points.push((r as f64, s.mean, s.std));
        }
    }
    table.note = Some(format!(
        "Test-set metrics, mean ± std over {} seed(s); {} training examples, lr {:e}. Rows marked \
         (fixed) use the best of the fixed α values {:?} at that rank.",
        results.config.seeds.len(),
        a.budget.train.map_or("all".into(), |n| n.to_string()),
        a.lr,
        a.fixed_alphas
    ));
    let series = [same, fixed]
        .into_iter()
        .filter(|s| !s.points.is_empty())
        .collect();
    (table, series)
}

fn latency_table(results: &ExperimentResults) -> Table {
    let batches = &results.config.latency.batch_sizes;
    let mut header = vec!["variant".to_string()];
    header.extend(batches.iter().map(|b| format!("batch {b} (ms)")));
    let mut table = Table::new("Inference latency (median)", header);
    let mut variants: Vec<&str> = Vec::new();
    for l in &results.latency {
        if !variants.contains(&l.variant.as_str()) {
            variants.push(&l.variant);
        }
    }
    for v in variants {
        let mut row = vec![v.to_string()];
        for b in batches {
            row.push(
                results
                    .latency
                    .iter()
                    .find(|l| l.variant == v && l.batch == *b)
                    .map_or("-".into(), |l| format!("{:.2}", l.latency.median_ms)),
            );
        }
        table.push(row);
    }
    let seq = results
        .latency
        .iter()
        .map(|l| format!("batch {} × {} tokens", l.batch, l.seq_len));
    let mut seen: Vec<String> = Vec::new();
    for s in seq {
        if !seen.contains(&s) {
            seen.push(s);
        }
    }
    table.note = Some(format!(
        "Median of {} runs after {} warm-up runs, MiniLM forward with a 2-class head; inputs: {}.",
        results.config.latency.repeats,
        results.config.latency.warmup,
        seen.join(", ")
    ));
    table
}

/// Writes `report.md`, `results.json`, the CSV tables and the plots; returns the report path.
pub fn write_report(results: &ExperimentResults, out: &Path) -> Result<PathBuf> {
    let mut tables = Vec::new();
    let mut plots = Vec::new();
    let wants = |t: TableKind| results.config.tables.contains(&t);
    if wants(TableKind::Comparison) {
        tables.push((
            "comparison",
            comparison_table(
                results,
                "movie-sentiment",
                "Method comparison: movie-sentiment (binary)",
            ),
        ));
        plots.push(("loss_movie.svg", loss_plot(results, "movie-sentiment")?));
    }
    if wants(TableKind::Ablation) {
        let (table, series) = ablation_rows(results);
        tables.push(("ablation", table));
        if !series.is_empty() {
            plots.push((
                "rank_ablation.svg",
                line_plot_svg(
                    "Test accuracy against LoRA rank",
                    "r",
                    "accuracy",
                    &series,
                    true,
                )?,
            ));
        }
    }
    if wants(TableKind::Latency) {
        tables.push(("latency", latency_table(results)));
    }
    if wants(TableKind::Bbc) {
        tables.push((
            "bbc",
            comparison_table(
                results,
                "bbc-news",
                "Method comparison: bbc-news (5 classes)",
            ),
        ));
        plots.push(("loss_bbc.svg", loss_plot(results, "bbc-news")?));
    }
    let mut md = format!(
        "# Experiment `{}`\n\nMiniLM (all-MiniLM-L6-v2) fine-tuned with each method; machine: {}.\n\
         Wall time of this invocation: {:.1} min. Settings: `config.toml`; every number: `results.json`.\n\n",
        results.config.name,
        results.machine.describe(),
        results.wall_seconds / 60.0
    );
    for (file, table) in &tables {
        md += &format!("## {}\n\n{}\n", table.title, table.to_markdown());
        if let Some(note) = &table.note {
            md += &format!("{note}\n\n");
        }
        write_file(out, &format!("{file}.csv"), table.to_csv().as_bytes())?;
    }
    for (file, svg) in &plots {
        write_file(out, file, svg.as_bytes())?;
        md += &format!("![{file}]({file})\n\n");
    }
    let json = serde_json::to_vec_pretty(results).map_err(|e| write_err(out, e))?;
    write_file(out, "results.json", &json)?;
    write_file(out, "report.md", md.as_bytes())?;
    Ok(out.join("report.md"))
}

fn loss_plot(results: &ExperimentResults, task: &str) -> Result<String> {
    let seed = results.config.seeds[0];
    let series: Vec<Series> = results
        .config
        .methods
        .iter()
        .filter_map(|m| {
            let run = results
                .runs
                .iter()
                .find(|r| r.task == task && r.label == m.label && r.seed == seed)?;
            let smooth = moving_average(&run.step_losses, 10);
            Some(Series {
                label: m.label.clone(),
                points: smooth
                    .iter()
                    .enumerate()
                    .map(|(i, &l)| ((i + 1) as f64, l, 0.0))
                    .collect(),
            })
        })
        .collect();
    if series.is_empty() {
        return Ok(String::new());
    }
    line_plot_svg(
        &format!("Training loss on {task} (seed {seed}, 10-step average)"),
        "step",
        "loss",
        &series,
        false,
    )
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
        assert_eq!(slug("LoRA r=8 (q,v)"), "lora-r-8-q-v");
    }
}
