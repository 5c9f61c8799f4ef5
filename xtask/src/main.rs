//! `cargo xtask`: the project's automation, in Rust (rust-analyzer's habit).
//!
//! - `cargo xtask ci`: formatting, clippy, then the test suite on every backend this machine can
//!   run, ending with a matrix of what ran, passed or was skipped, and why.
//! - `cargo xtask experiment [--quick|--full] [...]`: the LoRA paper's tables on real data
//!   (`lora experiment` with the release `lora`; `--help` lists its options).
//! - `cargo xtask fixtures`: regenerate `tests/fixtures` with the pinned Python environment.
//! - `cargo xtask bench`: criterion benchmarks; `--vs-pytorch`: lora against PyTorch + PEFT,
//!   and `--vs-llama-cpp`: decoding against llama.cpp, side by side, into `docs/performance.md`.
//! - `cargo xtask package [--allow-dirty]`: `cargo package` of every published crate, verified.
//! - `cargo xtask interop`: transformers and PEFT load what `lora merge` / `lora export` write.
//! - `cargo xtask fetch [NAME...]`: the pinned real assets, ahead of time.
//! - `cargo xtask gpu-bundle [--check]`: the folder a lent GPU machine runs (`run.sh`).
//! - `cargo xtask fuzz [--seconds N]`: every `cargo fuzz` target over its seed corpus.

mod bench;
mod bench_llama_cpp;
mod bench_memory;
mod cargo;
mod ci;
mod fixtures;
mod fuzz;
mod gpu_bundle;
mod interop;
mod python;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <task> [options]

tasks:
  ci           fmt --check, clippy -D warnings, rustdoc -D warnings, cargo package, the tests
               on every backend this machine can run, and the transformers/PEFT interop check
  experiment [--quick|--full] [--device D] [--seeds 1,2] [--only TABLES] [--out DIR] [--config F]
               the LoRA paper's tables on real data: methods compared, rank ablation,
               latency, bbc-news; writes results/<preset>/report.md (about 20 min on 2 cores);
               runs `lora experiment` with the installed or freshly built release lora
  fixtures [--only NAME...] [--compare-with DIR|none]
               regenerate tests/fixtures (tiny random checkpoints of every family, PEFT
               adapters, reference outputs) with the pinned Python environment
  bench        criterion benchmarks: the LoRA layer, and model forward throughput;
               --vs-pytorch [--threads 1,2] [--repeats N] [--rounds R]: lora and PyTorch + PEFT
               side by side
               --vs-llama-cpp [--threads 1,2] [--repeats N] [--rounds R]: SmolLM2 decoding, lora
               (base q4/q8/f32) and llama.cpp (llama-cpp-python, own environment) side by side
               --memory [--repeats N]: SmolLM2 LoRA steps with the base as f32/f16/bf16/q8/q4,
               with and without activation checkpointing: peak RSS and step time
  package [--allow-dirty] [--no-verify]
               cargo package of every published crate, each built on its own
  interop      transformers and PEFT (pip-installed into target/interop) load what lora merge
               and lora export write, for MiniLM, SmolLM2 and every family fixture, and agree
               with lora's outputs (also run by ci)
  fetch [--cache DIR] [NAME...]
               fetch the pinned real assets (minilm, smollm2, movie-sentiment, bbc-news)
  fuzz [--seconds N] [--only T,...]
               every cargo fuzz target of fuzz/ (nightly, libFuzzer) for N seconds (default 60)
               over its committed seed corpus; a table of executions, coverage and peak memory
               (ci runs 5 s per target)
  gpu-bundle [--out DIR] [--without-loaders] [--test-build] [--check]
               gather gpu-bundle/ (release wgpu lora, fixtures, real-size configs, benchmark
               tokens, Vulkan loaders, run.sh) for a lent GPU machine; --check runs
               run.sh --small here (lavapipe) and checks its report (ci runs it with
               --test-build: the test build's lora instead of a release build)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci::run(&args[1..]),
        Some("bench") => bench::bench(&args[1..]),
        Some("package") => ci::package(&args[1..]),
        Some("interop") => interop::run(),
        Some("fetch") => cargo::fetch(&args[1..]),
        Some("experiment") => cargo::experiment(&args[1..]),
        Some("fixtures") => fixtures::run_fixtures(&args[1..]),
        Some("gpu-bundle") => gpu_bundle::run(&args[1..]),
        Some("fuzz") => fuzz::run(&args[1..]),
        Some("-h" | "--help" | "help") | None => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(anyhow::anyhow!("unknown task '{other}'\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
