//! The LoRA paper's comparison, measured on real data: methods against each other, LoRA's rank
//! ablation, inference latency, and the comparison again on a five-class task, on an encoder;
//! then the same methods instruction-tuning a decoder on a generation task, the decoder's
//! per-token decoding latency, and a decoder instruction-tuned on the classification task.
//!
//! - [`config`]: what to run (presets, TOML overrides, the models);
//! - [`plan`](mod@plan): the encoder's training runs that follow from it;
//! - [`run`](mod@run): one encoder training run and the encoder latency measurements;
//! - [`decoder`]: the decoder's runs and latency;
//! - [`report`]: the tables, CSVs, plots and `results.json`.
//!
//! Every training run writes its own directory under `<out>/runs/` and a `result.json` when it
//! is done; an interrupted experiment skips finished runs and resumes an unfinished one from its
//! checkpoint. The report is rebuilt from the results at the end.

pub mod config;
pub mod decoder;
pub mod plan;
pub mod report;
pub mod run;

use std::path::{Path, PathBuf};
use std::time::Instant;

use lora_assets::{AssetCache, BuiltinTask};
use lora_data::TaskSplits;
use lora_models::{ModelSource, load_encoder};
use serde::{Deserialize, Serialize};

pub use config::{
    ALL_TABLES, AblationConfig, DecoderLatencyConfig, DecoderSection, ExperimentConfig,
    LatencyConfig, MethodRun, Preset, TABLE_NAMES, TableKind, TaskBudget,
};
pub use decoder::{DecoderResults, GenerationRunResult};
pub use plan::{PlannedRun, plan};
pub use report::write_report;
pub use run::{LatencyResult, RunResult};

use crate::error::{EvalError, Result};
use crate::report::MachineInfo;
use decoder::{DecoderParts, run_decoder_section};
use run::{Loaded, measure_latency, train_run};

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
    /// The decoder's runs and latency.
    #[serde(default)]
    pub decoder: DecoderResults,
    /// Wall time of this invocation, seconds.
    pub wall_seconds: f64,
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

    let plan = plan(config);
    let mut runs = Vec::new();
    let mut latency = Vec::new();
    let mut full_model_bytes = 0;
    if !plan.is_empty() || config.tables.contains(&TableKind::Latency) {
        let encoder_dir = lora_assets::resolve_model(&cache, &config.encoder)?;
        let train_device = device.clone().autodiff();
        let (encoder, tokenizer) = load_encoder(&ModelSource::path(&encoder_dir), &train_device)?;
        let pad_id = encoder.config().pad_token_id as u32;
        full_model_bytes =
            std::fs::metadata(encoder_dir.join("model.safetensors")).map_or(0, |m| m.len());
        let loaded = Loaded {
            encoder,
            tokenizer,
            pad_id,
            name: config.encoder.clone(),
        };
        let mut data: Vec<(BuiltinTask, TaskSplits)> = Vec::new();
        for (i, run) in plan.iter().enumerate() {
            if !data.iter().any(|(t, _)| *t == run.task) {
                data.push((run.task, run.task.load(&cache)?));
            }
            let splits: &TaskSplits = data
                .iter()
                .find(|(t, _)| *t == run.task)
                .map(|(_, s)| s)
                .expect("loaded above");
            let b = &run.budget;
            let splits = splits.clone().truncate(b.train, b.dev, b.test);
            tracing::info!(
                "[{}/{}] {} · {} · seed {} · {} train / {} test examples",
                i + 1,
                plan.len(),
                run.task.name(),
                run.label,
                run.seed,
                splits.train.len(),
                splits.test.len()
            );
            let dir = out
                .join("runs")
                .join(run.task.name())
                .join(slug(&run.label))
                .join(format!("seed-{}", run.seed));
            runs.push(train_run(
                &loaded,
                &train_device,
                &splits,
                &run.label,
                &run.method,
                run.lr,
                run.seed,
                &run.budget,
                &dir,
            )?);
        }
        if config.tables.contains(&TableKind::Latency) {
            let splits = match data.iter().find(|(t, _)| *t == BuiltinTask::MovieSentiment) {
                Some((_, s)) => s.clone(),
                None => BuiltinTask::MovieSentiment.load(&cache)?,
            };
            latency = measure_latency(
                &loaded,
                &device,
                &splits,
                &config.latency,
                config.movie.max_len,
            )?;
        }
    }
    let parts = DecoderParts {
        comparison: config.tables.contains(&TableKind::Decoder),
        instruct: config.tables.contains(&TableKind::Instruct),
        latency: config.tables.contains(&TableKind::DecoderLatency),
    };
    let decoder = if parts.comparison || parts.instruct || parts.latency {
        run_decoder_section(&config.decoder, parts, &cache, &device, out)?
    } else {
        DecoderResults::default()
    };
    let results = ExperimentResults {
        config: config.clone(),
        machine,
        runs,
        latency,
        full_model_bytes,
        decoder,
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

pub(crate) fn write_err(path: &Path, e: impl std::fmt::Display) -> EvalError {
    EvalError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

pub(crate) fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    Ok(lora_core::io::write_atomic(&dir.join(name), bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_file_names() {
        assert_eq!(slug("LoRA r=8 (q,v)"), "lora-r-8-q-v");
        assert_eq!(slug("ablation r=4 alpha=16"), "ablation-r-4-alpha-16");
    }
}
