//! `cargo xtask fixtures`: regenerates the conformance fixtures in `tests/fixtures` with the
//! pinned Python environment: the MiniLM / SmolLM2 / PEFT fixtures from the real assets (fetched
//! through lora-assets), and a tiny random checkpoint, PEFT adapter and reference outputs of
//! every supported family (`xtask/fixtures/make_fixtures.py`), then the GGUF files llama.cpp's
//! own converters write for the decoder fixtures (`xtask/fixtures/make_gguf_fixtures.py`, with
//! the converters taken from the hash-pinned `llama-cpp-python` source distribution), and what
//! transformers' `apply_chat_template` renders (`xtask/fixtures/chat_template_fixture.py`).

use std::process::Command;

use anyhow::Result;

use crate::cargo::{fetch_assets, workspace_root};
use crate::python::{pinned_python, run};

/// Runs the generator; extra arguments (`--only tiny_gpt2 …`, `--compare-with DIR`) go to it.
pub fn run_fixtures(args: &[String]) -> Result<()> {
    let root = workspace_root()?;
    let python = pinned_python(&root)?;
    let assets = fetch_assets(&root, &["minilm", "smollm2"])?;
    run(Command::new(&python)
        .arg(root.join("xtask/fixtures/make_fixtures.py"))
        .arg("--out")
        .arg(root.join("tests/fixtures"))
        .arg("--minilm")
        .arg(&assets[0])
        .arg("--smollm2-gguf")
        .arg(&assets[1])
        .args(args)
        .current_dir(&root))?;
    // What transformers' `apply_chat_template` renders with every tiny fixture's template (as
    // make_fixtures.py just wrote them) and with SmolLM2's own, read from its GGUF.
    run(Command::new(&python)
        .arg(root.join("xtask/fixtures/chat_template_fixture.py"))
        .arg("--fixtures")
        .arg(root.join("tests/fixtures"))
        .arg("--smollm2-gguf")
        .arg(&assets[1])
        .current_dir(&root))?;
    // Last: make_fixtures.py rewrites the tiny fixtures, README and manifest, and this one
    // refreshes both from what is on disk (it takes the same arguments, and ignores
    // `--compare-with`).
    run(Command::new(&python)
        .arg(root.join("xtask/fixtures/make_gguf_fixtures.py"))
        .arg("--out")
        .arg(root.join("tests/fixtures"))
        .args(args)
        .current_dir(&root))
}
