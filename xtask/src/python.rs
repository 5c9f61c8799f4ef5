//! The pinned Python environments, as virtual environments under the target directory installed
//! from the package registry on first use: `xtask/interop/requirements.txt` (torch,
//! transformers, PEFT, …; about 6 GB) for `cargo xtask fixtures`, `interop` and
//! `bench --vs-pytorch`, and `xtask/bench/llama-cpp-requirements.txt` (llama-cpp-python) for
//! `bench --vs-llama-cpp`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cargo::target_dir;

/// The environment's Python, installing the environment first when it is missing or its pins
/// changed.
pub fn pinned_python(root: &Path) -> Result<PathBuf> {
    pinned_env(root, "xtask/interop/requirements.txt", "interop")
}

/// The Python of the llama.cpp benchmark's own environment (`xtask/bench/llama-cpp-requirements.txt`:
/// llama-cpp-python, which compiles llama.cpp from its sdist on first use, about 12 minutes on two
/// cores; kept apart so that the interop environment CI builds does not pay for it).
pub fn llama_cpp_python(root: &Path) -> Result<PathBuf> {
    pinned_env(
        root,
        "xtask/bench/llama-cpp-requirements.txt",
        "bench-llama-cpp",
    )
}

/// The Python of a virtual environment `<target>/<name>/venv` holding the pins of
/// `requirements` (relative to the workspace root), installed first when missing or when the
/// pins changed.
fn pinned_env(root: &Path, requirements: &str, name: &str) -> Result<PathBuf> {
    let requirements = root.join(requirements);
    let pins = std::fs::read_to_string(&requirements)
        .with_context(|| format!("reading {}", requirements.display()))?;
    let venv = target_dir(root).join(name).join("venv");
    let python = venv.join("bin").join("python");
    let stamp = venv.join("requirements.installed");
    let current = std::fs::read_to_string(&stamp).is_ok_and(|s| s == pins);
    if !(current && python.is_file()) {
        eprintln!(
            "xtask: installing the pinned Python environment {} into {}",
            requirements.display(),
            venv.display()
        );
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        run(Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&requirements))?;
        std::fs::write(&stamp, &pins)?;
    }
    Ok(python)
}

/// Runs a command, failing loudly when it cannot start or fails (used by every xtask that runs
/// a tool other than cargo).
pub fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("could not start {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}
