//! `cargo xtask fuzz [--seconds N] [--only TARGET,...]`: every `cargo fuzz` target of `fuzz/`
//! (libFuzzer, the nightly toolchain), each for N seconds over a working copy of its committed
//! seed corpus (`fuzz/corpus/<target>`, never written to), with debug assertions (overflow
//! checks) on; prints executions, new coverage, peak memory and crashes per target as a
//! Markdown table, and fails on any crash, timeout or out-of-memory.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::cargo::{target_dir, workspace_root};

/// The targets, in `fuzz/Cargo.toml` order.
pub const TARGETS: [&str; 9] = [
    "gguf",
    "gguf_tokenizer",
    "safetensors",
    "adapter_config",
    "model_config",
    "tokenizer_json",
    "table_readers",
    "sft_readers",
    "train_toml",
];

/// The largest memory a target may use (libFuzzer's `-rss_limit_mb`), and the longest one
/// input may take (`-timeout`, seconds).
const RSS_LIMIT_MB: u32 = 2048;
const TIMEOUT_S: u32 = 10;

struct Outcome {
    target: &'static str,
    executions: u64,
    coverage: u64,
    peak_rss_mb: u64,
    seconds: f64,
    failed: bool,
}

pub fn run(args: &[String]) -> Result<()> {
    let mut seconds = 60u64;
    let mut only: Option<Vec<String>> = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                seconds = args
                    .next()
                    .context("--seconds needs a number")?
                    .parse()
                    .context("--seconds needs a whole number")?
            }
            "--only" => {
                only = Some(
                    args.next()
                        .context("--only needs target names")?
                        .split(',')
                        .map(str::to_string)
                        .collect(),
                )
            }
            other => bail!(
                "unknown fuzz option '{other}' (valid: --seconds N, --only {})",
                TARGETS.join(",")
            ),
        }
    }
    if let Some(names) = &only
        && let Some(bad) = names.iter().find(|n| !TARGETS.contains(&n.as_str()))
    {
        bail!(
            "unknown fuzz target '{bad}'; the targets are {}",
            TARGETS.join(", ")
        );
    }
    let root = workspace_root()?;
    let fuzz_dir = root.join("fuzz");
    let work = target_dir(&root).join("fuzz-corpus");
    // The instrumented nightly build has a target directory of its own: it never waits on,
    // nor invalidates, the main build.
    let builds = target_dir(&root).join("fuzz");
    let mut outcomes = Vec::new();
    for target in TARGETS {
        if only
            .as_ref()
            .is_some_and(|o| !o.iter().any(|n| n == target))
        {
            continue;
        }
        outcomes.push(fuzz_one(&fuzz_dir, &work, &builds, target, seconds)?);
    }
    println!("| target | executions | coverage (edges) | peak RSS MiB | seconds | result |");
    println!("|---|---|---|---|---|---|");
    for o in &outcomes {
        println!(
            "| {} | {} | {} | {} | {:.0} | {} |",
            o.target,
            o.executions,
            o.coverage,
            o.peak_rss_mb,
            o.seconds,
            if o.failed { "FAILED" } else { "0 crashes" }
        );
    }
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.failed)
        .map(|o| o.target)
        .collect();
    if !failed.is_empty() {
        bail!(
            "fuzzing found crashes, timeouts or excess memory in: {} (inputs under fuzz/artifacts)",
            failed.join(", ")
        );
    }
    Ok(())
}

fn fuzz_one(
    fuzz_dir: &Path,
    work: &Path,
    builds: &Path,
    target: &'static str,
    seconds: u64,
) -> Result<Outcome> {
    let corpus = work.join(target);
    std::fs::create_dir_all(&corpus)?;
    let seeds = fuzz_dir.join("corpus").join(target);
    eprintln!("xtask: fuzz {target} for {seconds} s");
    let started = Instant::now();
    let output = Command::new("cargo")
        .current_dir(fuzz_dir)
        .args([
            "+nightly",
            "fuzz",
            "run",
            "--sanitizer",
            "none",
            "--debug-assertions",
            "--target-dir",
        ])
        .arg(builds)
        .arg(target)
        .arg(&corpus)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
        .arg(format!("-timeout={TIMEOUT_S}"))
        .arg("-print_final_stats=1")
        .output()
        .context("running cargo +nightly fuzz (install it with `cargo install cargo-fuzz`)")?;
    let log = String::from_utf8_lossy(&output.stderr);
    let stat = |name: &str| -> u64 {
        log.lines()
            .rev()
            .find_map(|l| l.strip_prefix(&format!("stat::{name}:")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let coverage = log
        .lines()
        .rev()
        .find_map(|l| l.split_once(" cov: "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let failed = !output.status.success();
    if failed {
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        eprintln!(
            "xtask: fuzz {target} FAILED:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    Ok(Outcome {
        target,
        executions: stat("number_of_executed_units"),
        coverage,
        peak_rss_mb: stat("peak_rss_mb"),
        seconds: started.elapsed().as_secs_f64(),
        failed,
    })
}
