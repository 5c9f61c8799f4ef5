//! The pinned Python environment (`xtask/interop/requirements.txt`: torch, transformers, PEFT,
//! …) that `cargo xtask fixtures` and `cargo xtask interop` use, as a virtual environment under
//! the target directory, installed from the package registry on first use (about 6 GB).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cargo::target_dir;

/// The environment's Python, installing the environment first when it is missing or its pins
/// changed.
pub fn pinned_python(root: &Path) -> Result<PathBuf> {
    let requirements = root.join("xtask/interop/requirements.txt");
    let pins = std::fs::read_to_string(&requirements)
        .with_context(|| format!("reading {}", requirements.display()))?;
    let venv = target_dir(root).join("interop").join("venv");
    let python = venv.join("bin").join("python");
    let stamp = venv.join("requirements.installed");
    let current = std::fs::read_to_string(&stamp).is_ok_and(|s| s == pins);
    if !(current && python.is_file()) {
        eprintln!(
            "xtask: installing the pinned Python environment into {}",
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
