//! `lora`: the command line of lora-burn.
//!
//! - `lora train`: fine-tune a model on a built-in task or your own TSV / CSV / JSONL (or text)
//!   files with LoRA or a baseline method; writes a PEFT adapter, metrics and a summary.
//! - `lora eval`: accuracy, precision, recall, F1, MCC and the confusion matrix of a classifier
//!   (perplexity of a causal LM) on a built-in split or your file.
//! - `lora predict`: run a sequence classifier or a causal LM (optionally with a PEFT adapter,
//!   optionally merged) on texts; print labels and probabilities, or the top next tokens;
//!   `--json` prints everything, including raw logits.
//! - `lora generate`: continue prompts with a decoder model and an optional adapter.
//! - `lora inspect`: the model summary and the dry-run report of which modules a LoRA config
//!   would adapt.
//! - `lora merge`: fold an adapter into its base and write a Hugging Face model directory.
//! - `lora export`: write an adapter as a clean PEFT directory with a model card.
//! - `lora experiment`: the LoRA paper's comparison on real data (`cargo xtask experiment` runs
//!   it).
//! - `lora bench`: time one workload on a token file (`cargo xtask bench`, the GPU bundle).
//! - `lora conformance`: every family's fixtures checked against transformers and PEFT on a
//!   device.
//! - `lora device`: what a backend's device says about itself.

mod bench;
mod conformance;
mod data;
mod device;
mod eval;
mod experiment;
mod export;
mod generate;
mod inspect;
mod merge;
mod model;
mod predict;
mod sft;
mod train;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use bench::{BenchArgs, bench};
use conformance::{ConformanceArgs, conformance};
use device::{DeviceArgs, device};
use eval::{EvalArgs, eval};
use experiment::{ExperimentArgs, experiment};
use export::{ExportArgs, export};
use generate::{GenerateArgs, generate};
use inspect::{InspectArgs, inspect};
use merge::{MergeArgs, merge};
use predict::{PredictArgs, predict};
use train::{TrainArgs, train};

#[derive(Parser)]
#[command(
    name = "lora",
    version,
    about = "Fine-tune and run transformers with LoRA on Burn",
    after_help = "Exit status: 0 on success; 1 when the command failed (the message says what \
        was wrong and what to do); 2 for invalid arguments.\n\
        Models: a Hugging Face directory, a .gguf file, a Hugging Face id (org/name[@revision]: \
        from the Hugging Face cache, HF_HOME / HF_HUB_CACHE, or downloaded), or an asset name \
        (minilm, smollm2), fetched and cached in ~/.cache/lora-burn (LORA_BURN_CACHE moves it)."
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
        lora train --model smollm2 --data bbc-headlines --max-len 256 --out runs/headlines\n  \
        lora train --model ./Qwen2.5-0.5B-Instruct --train chats.jsonl --packing --out runs/chat\n  \
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
    /// Measure a model (and adapter) on a built-in split or your file.
    #[command(after_help = "Examples:\n  \
        lora eval --model minilm --adapter runs/lora --data movie-sentiment --split test\n  \
        lora eval --model ./merged --file test.csv --text-col review --label-col stars --json\n  \
        lora eval --model smollm2 --adapter runs/lm --file held-out.txt --max-len 64\n  \
        lora eval --model smollm2 --adapter runs/headlines --data bbc-headlines --split test --generations out.jsonl")]
    Eval(EvalArgs),
    /// Continue prompts with a causal LM (any supported decoder), optionally with a LoRA adapter.
    #[command(after_help = "Examples:\n  \
        lora generate --model smollm2 --prompt \"The capital of France is\"\n  \
        lora generate --model smollm2 --adapter runs/lm --merge --prompt \"Once\" --max-new-tokens 64\n  \
        lora generate --model ./SmolLM2.gguf --prompt \"Hi\" --temperature 0.8 --top-k 40 --seed 7 --json\n  \
        lora generate --model smollm2 --adapter runs/headlines --chat --prompt \"Write a headline: ...\"")]
    Generate(GenerateArgs),
    /// Merge a LoRA adapter into its base and write a Hugging Face model directory.
    #[command(after_help = "Examples:\n  \
        lora merge --model minilm --adapter runs/lora --out merged-minilm\n  \
        lora merge --model smollm2 --adapter runs/lm --out merged-smollm2\n\n\
        The directory holds config.json, model.safetensors (f32) and tokenizer.json: transformers\n\
        loads it with from_pretrained, and lora loads it with --model and no --adapter.")]
    Merge(MergeArgs),
    /// The LoRA paper's tables on real data: methods compared, rank ablation, latency, bbc-news,
    /// and the methods instruction-tuning a decoder with its decoding latency.
    #[command(after_help = "Examples:\n  \
        lora experiment                      # every table, about 20 minutes on 2 CPU cores\n  \
        lora experiment --quick              # a run of a few minutes\n  \
        lora experiment --only ablation --seeds 1,2,3\n  \
        lora experiment --only decoder,decoder-latency,instruct\n  \
        lora experiment --full --device cuda # full data, more epochs and seeds\n\n\
        Results go to results/PRESET (--out): report.md, results.json, CSV tables and SVG plots.\n\
        An interrupted experiment resumes: finished runs are reused, an unfinished one continues\n\
        from its checkpoint.")]
    Experiment(ExperimentArgs),
    /// Write a LoRA adapter as a clean PEFT directory (with a model card) or a llama.cpp GGUF
    /// adapter, checked against its base.
    #[command(after_help = "Examples:\n  \
        lora export --model minilm --adapter runs/lora/best --out sentiment-adapter\n  \
        lora export --model smollm2 --adapter runs/lm --out lm-adapter --base-model-name HuggingFaceTB/SmolLM2-135M-Instruct\n  \
        lora export --model smollm2 --adapter runs/lm --format gguf --out lm-adapter.gguf   # llama.cpp --lora")]
    Export(ExportArgs),
    /// Time one workload (training step, forward pass, decoding) on a token file, as JSON.
    #[command(after_help = "Examples:\n  \
        lora bench --write-tokens bench-tokens\n  \
        lora bench --workload encoder-lora-step --model minilm --tokens bench-tokens/encoder-b32.json\n  \
        lora bench --workload decoder-decode --config Llama-3.2-1B/config.json --random-init \\\n    \
          --tokens bench-tokens/decoder-prompt.json --device wgpu\n\n\
        Prints one JSON object: the median time (unit ms/step, ms/batch, ms/token or ms), tokens per\n\
        second, peak resident memory, and CPU seconds of the timed runs. RAYON_NUM_THREADS sets the\n\
        CPU threads. cargo xtask bench --vs-pytorch runs every workload here and in PyTorch.")]
    Bench(BenchArgs),
    /// Check every family against transformers and PEFT on a device, from the conformance
    /// fixtures (base, adapter active / disabled / merged, greedy decoding), as JSON lines.
    #[command(after_help = "Examples:\n  \
        lora conformance tests/fixtures --device wgpu\n  \
        lora conformance tests/fixtures --only tiny_llama --tolerance 1e-5\n\n\
        Exit status 1 when any check fails; each line says which and by how much.")]
    Conformance(ConformanceArgs),
    /// Open a backend's device, check one product on it, and print its name, compile target
    /// and memory as JSON.
    #[command(after_help = "Examples:\n  \
        lora device --device wgpu\n  \
        lora device --device cuda:1")]
    Device(DeviceArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Freed tensors stay with the allocator for the next step instead of being unmapped and
    // faulted in again (25-30 % of a CPU training step; see lora_core::host_memory).
    lora_core::host_memory::keep_freed_memory();
    // Past a file-size limit (`ulimit -f`), a write fails with an error the command reports,
    // instead of the signal killing the process mid-write.
    let _ = signal_hook::flag::register(
        signal_hook::consts::SIGXFSZ,
        std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
    );
    // The experiment reports its progress (a line per run) unless asked to be quiet.
    let progress = matches!(cli.command, Command::Experiment(_));
    init_logging(cli.quiet, cli.verbose, progress);
    // Every command runs on a thread of the compute pool, so that this thread takes a share of
    // each parallel tensor operation instead of waiting for the pool (lora_core::compute_pool).
    let result = lora_core::compute_pool::run_on_compute_pool(move || run(cli.command, cli.quiet));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one command.
fn run(command: Command, quiet: bool) -> anyhow::Result<()> {
    match command {
        Command::Train(args) => train(*args, quiet),
        Command::Predict(args) => predict(args),
        Command::Inspect(args) => inspect(args),
        Command::Eval(args) => eval(args, quiet),
        Command::Generate(args) => generate(args),
        Command::Merge(args) => merge(args, quiet),
        Command::Export(args) => export(args, quiet),
        Command::Experiment(args) => experiment(args, quiet),
        Command::Bench(args) => bench(args),
        Command::Conformance(args) => conformance(args),
        Command::Device(args) => device(args),
    }
}

/// A spinner on stderr for work a person waits for (hidden with `--quiet` or when stderr is not
/// a terminal); finish it with `finish_and_clear`.
pub fn spinner(message: impl Into<String>, quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner().with_message(message.into());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

fn init_logging(quiet: bool, verbose: u8, progress: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) if progress => "warn,lora_eval=info,lora_cli=info",
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
