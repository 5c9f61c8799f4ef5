//! `lora-experiment`: the LoRA paper's tables on real data (what `cargo xtask experiment` runs).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use lora_eval::experiment::{ExperimentConfig, Preset, TableKind, run_experiment};

/// Runs the method comparison, the rank ablation, the latency table and the bbc-news comparison.
#[derive(Parser)]
#[command(
    name = "lora-experiment",
    version,
    after_help = "Examples:\n  \
    cargo xtask experiment                      # every table, about 20 minutes on 2 CPU cores\n  \
    cargo xtask experiment --quick              # a smoke run of a few minutes\n  \
    cargo xtask experiment --only ablation --seeds 1,2,3\n  \
    cargo xtask experiment --full --device cuda # full data, more epochs and seeds"
)]
struct Args {
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
    /// Only these tables (comparison, ablation, latency, bbc), comma-separated.
    #[arg(long, value_delimiter = ',')]
    only: Option<Vec<String>>,
    /// A TOML file overriding any setting of the preset.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Only print errors and the final summary.
    #[arg(long)]
    quiet: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
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
    eprintln!(
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
    let (results, report) = run_experiment(&config, &out)?;
    if !args.quiet {
        println!("{}", std::fs::read_to_string(&report).unwrap_or_default());
    }
    println!(
        "finished {} training runs in {:.1} min; report: {}",
        results.runs.len(),
        results.wall_seconds / 60.0,
        report.display()
    );
    Ok(())
}
