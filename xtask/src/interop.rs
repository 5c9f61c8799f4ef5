//! `cargo xtask interop`: Hugging Face transformers and PEFT load what `lora merge` and
//! `lora export` write, and agree with lora-burn's outputs.
//!
//! Uses the pinned Python environment (`xtask/interop/requirements.txt`, see `python.rs`), runs
//! the `lora` binary of the test build to train a small adapter, merge and export it (and to
//! merge PEFT's SmolLM2 adapter), then runs `interop/check_transformers.py`; and for every tiny
//! family fixture in `tests/fixtures`, merges and exports PEFT's adapter with `lora` and checks
//! both with `fixtures/check_family.py` (transformers and PEFT alone, logits within 1e-4).
//! `cargo xtask ci` runs it as the last row of its matrix.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cargo::{fetch_assets, target_dir, test_build_binary, workspace_root};
use crate::python::{pinned_python, run as run_command};

pub fn run() -> Result<()> {
    let root = workspace_root()?;
    let target = target_dir(&root);
    let python = pinned_python(&root)?;
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
    let minilm = fetch_assets(&root, &["minilm"])?.remove(0);
    run_command(
        Command::new(&python)
            .arg(root.join("xtask/interop/check_transformers.py"))
            .arg(&work)
            .arg(minilm),
    )?;
    families(&root, &python, &lora, &work)
}

/// Every tiny family fixture: `lora merge` and `lora export` of PEFT's adapter, each loaded by
/// transformers / PEFT and compared with the fixture's reference logits.
fn families(
    root: &std::path::Path,
    python: &std::path::Path,
    lora: &std::path::Path,
    work: &std::path::Path,
) -> Result<()> {
    let fixtures = root.join("tests/fixtures");
    let mut names: Vec<String> = std::fs::read_dir(&fixtures)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("tiny_"))
        .collect();
    names.sort();
    let mut failed = Vec::new();
    for name in &names {
        let fixture = fixtures.join(name);
        let (model, adapter) = (fixture.join("model"), fixture.join("adapter"));
        // `lora <command…> --model <model> --adapter <adapter> --out <out>`, quietly, on flex.
        let lora_to = |command: &[&str], out: &std::path::Path| -> Result<bool> {
            Ok(Command::new(lora)
                .args(command)
                .arg("--model")
                .arg(&model)
                .arg("--adapter")
                .arg(&adapter)
                .arg("--out")
                .arg(out)
                .args(["--quiet", "--force"])
                .env("BURN_DEVICE", "flex")
                .status()?
                .success())
        };
        for (command, out) in [
            ("merge", work.join(format!("{name}-merged"))),
            ("export", work.join(format!("{name}-exported"))),
        ] {
            eprintln!("xtask: lora {command} {name}");
            let checked = lora_to(&[command], &out)?
                && Command::new(python)
                    .arg(root.join("xtask/fixtures/check_family.py"))
                    .arg(&fixture)
                    .arg(&out)
                    .status()?
                    .success();
            if !checked {
                failed.push(format!("{name} ({command})"));
            }
        }
        // Decoders: the GGUF adapter, read by llama.cpp's own gguf reader and compared with
        // what llama.cpp's converter wrote for the same PEFT adapter.
        let reference = fixture.join("adapter.gguf");
        if reference.is_file() {
            let out = work.join(format!("{name}-adapter.gguf"));
            eprintln!("xtask: lora export --format gguf {name}");
            let checked = lora_to(&["export", "--format", "gguf"], &out)?
                && Command::new(python)
                    .arg(root.join("xtask/interop/check_gguf_adapter.py"))
                    .arg(&out)
                    .arg(&reference)
                    .arg(name)
                    .status()?
                    .success();
            if !checked {
                failed.push(format!("{name} (export --format gguf)"));
            }
        }
    }
    if !failed.is_empty() {
        bail!(
            "transformers / PEFT disagree with lora on: {}",
            failed.join(", ")
        );
    }
    eprintln!(
        "xtask: {} family fixtures merged and exported, all within 1e-4",
        names.len()
    );
    Ok(())
}
