//! `lora`: the command line of lora-burn.
//!
//! - `lora train`: fine-tune a model on a built-in task or your own TSV / CSV / JSONL (or text)
//!   files with LoRA or a baseline method; writes a PEFT adapter, metrics and a summary.
//! - `lora predict`: run a sequence classifier or a causal LM (optionally with a PEFT adapter,
//!   optionally merged) on texts; print labels and probabilities, or the top next tokens;
//!   `--json` prints everything, including raw logits.
//! - `lora inspect`: the model summary and the dry-run report of which modules a LoRA config
//!   would adapt.

mod inspect;
mod model;
mod predict;
mod train;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use inspect::{InspectArgs, inspect};
use predict::{PredictArgs, predict};
use train::{TrainArgs, train};

#[derive(Parser)]
#[command(
    name = "lora",
    version,
    about = "Fine-tune and run transformers with LoRA on Burn"
)]
struct Cli {
    /// Only print errors.
    #[arg(long, global = true)]
    quiet: bool,
    /// More logging (-v info, -vv debug); RUST_LOG also works.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fine-tune a model (LoRA, full fine-tuning, adapters, BitFit, head-only).
    #[command(after_help = "Examples:\n  \
        lora train --model minilm --data movie-sentiment --method lora --r 8 --targets query,value --out runs/lora\n  \
        lora train --model ./my-bert --train train.csv --text-col review --label-col stars --out runs/mine\n  \
        lora train --model smollm2 --train corpus.txt --max-len 64 --out runs/lm\n  \
        lora train --config train.toml --resume")]
    Train(Box<TrainArgs>),
    /// Run a model (and adapter) on texts.
    #[command(after_help = "Examples:\n  \
        lora predict --model minilm --adapter ./sentiment-adapter --text \"A gripping film.\"\n  \
        lora predict --model smollm2 --text \"The capital of France is\" --top-k 5\n  \
        lora predict --model ./SmolLM2.gguf --adapter ./adapter --merge --text \"Hi\" --json")]
    Predict(PredictArgs),
    /// Summarise a model and show which modules a LoRA config would adapt (a dry run).
    #[command(after_help = "Examples:\n  \
        lora inspect --model minilm --targets query,value --r 8\n  \
        lora inspect --model smollm2 --targets all-linear\n  \
        lora inspect --model smollm2 --targets-regex '.*layers\\.1[0-9]\\..*q_proj'")]
    Inspect(InspectArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.quiet, cli.verbose);
    let result = match cli.command {
        Command::Train(args) => train(*args, cli.quiet),
        Command::Predict(args) => predict(args),
        Command::Inspect(args) => inspect(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(quiet: bool, verbose: u8) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
