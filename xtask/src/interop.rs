//! `cargo xtask interop`: Hugging Face transformers and PEFT load what `lora merge` and
//! `lora export` write, and agree with lora-burn's outputs.
//!
//! Installs pinned torch / transformers / peft into a virtual environment under the target dir
//! (once; about 6 GB), runs the `lora` binary of the test build to train a small adapter, merge
//! and export it (and to merge PEFT's SmolLM2 adapter), then runs `interop/check_transformers.py`.
//! `cargo xtask ci` runs it as the last row of its matrix (the environment is kept in the
//! target dir, so only the first run installs it).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::ci::{FETCH_EXAMPLE, target_dir, test_build_binary, workspace_root};

/// The versions the check was last run with.
const PYTHON_PACKAGES: [&str; 3] = ["torch==2.15.0", "transformers==5.24.0", "peft==0.21.2"];

pub fn run() -> Result<()> {
    let root = workspace_root()?;
    let target = target_dir(&root);
    let venv = target.join("interop").join("venv");
    let python = venv.join("bin").join("python");
    let ready = |python: &Path| {
        Command::new(python)
            .args(["-c", "import torch, transformers, peft"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ready(&python) {
        run_command(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        run_command(
            Command::new(&python)
                .args(["-m", "pip", "install", "--quiet"])
                .args(PYTHON_PACKAGES),
        )?;
    }
    let lora = test_build_binary(&root, "lora")?;
    let work = target.join("interop").join("work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let fixtures = std::env::var_os("LORA_BURN_FIXTURES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("tests/fixtures"));
    let lm_adapter = fixtures.join("smollm2/adapter");
    let lora_in = |args: &[&str]| -> Result<Vec<u8>> {
        let out = Command::new(&lora)
            .args(args)
            .current_dir(&work)
            .env("BURN_DEVICE", "flex")
            .output()
            .with_context(|| format!("running {}", lora.display()))?;
        if !out.status.success() {
            bail!(
                "lora {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(out.stdout)
    };
    let lm_adapter = lm_adapter.to_str().context("a UTF-8 fixtures path")?;
    #[rustfmt::skip]
    let setup: [&[&str]; 4] = [
        &["train", "--model", "minilm", "--data", "movie-sentiment", "--max-train", "160",
          "--max-dev", "40", "--max-len", "48", "--epochs", "1", "--out", "run", "--quiet"],
        &["merge", "--model", "minilm", "--adapter", "run", "--out", "merged", "--quiet"],
        &["export", "--model", "minilm", "--adapter", "run", "--out", "exported", "--quiet"],
        &["merge", "--model", "smollm2", "--adapter", lm_adapter, "--out", "merged-lm", "--quiet"],
    ];
    for args in setup {
        eprintln!("xtask: lora {}", args.join(" "));
        lora_in(args)?;
    }
    let cls = lora_in(&[
        "predict",
        "--model",
        "minilm",
        "--adapter",
        "run",
        "--json",
        "--text",
        "A gripping, beautifully acted film.",
        "--text",
        "Dull, predictable and far too long.",
    ])?;
    std::fs::write(work.join("ours_cls.json"), cls)?;
    let lm = lora_in(&[
        "predict",
        "--model",
        "merged-lm",
        "--json",
        "--text",
        "The capital of France is",
    ])?;
    std::fs::write(work.join("ours_lm.json"), lm)?;
    // Perplexity on a small corpus (one document per line), in blocks of 16 tokens.
    std::fs::write(
        work.join("corpus.txt"),
        "A gripping, beautifully acted film.\nThe plot was dull and the dialogue made me cringe \
         for two hours.\nLoRA freezes the pre-trained weights and trains two small matrices.\n",
    )?;
    let ppl = lora_in(&[
        "eval",
        "--model",
        "merged-lm",
        "--file",
        "corpus.txt",
        "--max-len",
        "16",
        "--json",
    ])?;
    std::fs::write(work.join("ours_ppl.json"), ppl)?;
    // The base encoder's directory, for PEFT: where lora-data's cache keeps the minilm asset.
    let fetched = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(FETCH_EXAMPLE)
        .arg("minilm")
        .current_dir(&root)
        .output()?;
    let minilm = String::from_utf8_lossy(&fetched.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("minilm").map(|p| p.trim().to_string()))
        .context("the fetch example did not print the minilm path")?;
    run_command(
        Command::new(&python)
            .arg(root.join("xtask/interop/check_transformers.py"))
            .arg(&work)
            .arg(minilm),
    )
}

fn run_command(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("could not start {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}
