//! `lora experiment`: the LoRA paper's tables on real data.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use lora_eval::experiment::{ExperimentConfig, Preset, TableKind, run_experiment};

/// Runs the method comparison, the rank ablation, the latency table and the bbc-news comparison.
#[derive(Args)]
pub struct ExperimentArgs {
    /// A smoke run of a few minutes.
    #[arg(long, conflicts_with = "full")]
    quick: bool,
    /// Full data, more epochs and seeds (meant for a GPU).
    #[arg(long)]
    full: bool,
    /// Backend: flex, ndarray, wgpu, cuda or cuda:N.
    #[arg(long)]
    device: Option<String>,
    /// Seeds, comma-separated.
    #[arg(long, value_delimiter = ',')]
    seeds: Option<Vec<u64>>,
    /// Output directory (default: results/PRESET).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Only these tables, comma-separated: comparison, ablation, latency, bbc (the encoder);
    /// decoder, decoder-latency, instruct (the decoder).
    #[arg(long, value_delimiter = ',')]
    only: Option<Vec<String>>,
    /// A TOML file overriding any setting of the preset.
    #[arg(long)]
    config: Option<PathBuf>,
}

pub fn experiment(args: ExperimentArgs, quiet: bool) -> Result<()> {
    let preset = if args.quick {
        Preset::Quick
    } else if args.full {
        Preset::Full
    } else {
        Preset::Default
    };
    let mut config = ExperimentConfig::preset(preset);
    if let Some(path) = &args.config {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        config = config
            .merge_toml(&text)
            .with_context(|| format!("in {}", path.display()))?;
    }
    if let Some(seeds) = args.seeds {
        config.seeds = seeds;
    }
    if args.device.is_some() {
        config.device = args.device;
    }
    if let Some(only) = args.only {
        config.tables = only
            .iter()
            .map(|t| TableKind::from_name(t.trim()))
            .collect::<Result<_, _>>()?;
    }
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from("results").join(&config.name));
    tracing::info!(
        "experiment '{}': seeds {:?}, tables {:?}\n  movie-sentiment: {:?}\n  bbc-news: {:?}\n  ablation: ranks {:?}, fixed α {:?}, {:?}",
        config.name,
        config.seeds,
        config.tables,
        config.movie,
        config.bbc,
        config.ablation.ranks,
        config.ablation.fixed_alphas,
        config.ablation.budget
    );
    tracing::info!(
        "  decoder {}: {} seeds {:?}, {:?}; {} {:?}; latency {:?}",
        config.decoder.model,
        config.decoder.task,
        config.decoder.seeds,
        config.decoder.budget,
        config.decoder.instruct_task,
        config.decoder.instruct_budget,
        config.decoder.latency
    );
    let (results, report) = run_experiment(&config, &out)?;
    if !quiet {
        println!("{}", std::fs::read_to_string(&report).unwrap_or_default());
    }
    println!(
        "finished {} training runs in {:.1} min; report: {}",
        results.runs.len()
            + results
                .decoder
                .runs
                .iter()
                .filter(|r| r.skipped.is_none() && r.lr > 0.0)
                .count(),
        results.wall_seconds / 60.0,
        report.display()
    );
    Ok(())
}
