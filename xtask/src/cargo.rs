//! Running cargo from xtask: the workspace's paths, one step at a time with its timing, the
//! test build (every testable backend compiled in, shared with `cargo xtask ci`), the release
//! `lora` binary, and the asset fetcher.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// Backends the test build compiles in. `cuda` is only compile-checked (see `ci::cuda_rows`).
pub const TEST_FEATURES: &str = "flex,ndarray,wgpu";

/// Runs `cargo ARGS` in the workspace root with `env`, failing when cargo fails.
pub fn step(root: &Path, label: &str, args: &[&str], env: &[(&str, &str)]) -> Result<()> {
    eprintln!("xtask: {label}: cargo {}", args.join(" "));
    let started = Instant::now();
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .envs(env.iter().copied())
        .current_dir(root)
        .status()
        .with_context(|| format!("could not start cargo for {label}"))?;
    eprintln!(
        "xtask: {label}: {} in {:.0} s",
        if status.success() { "ok" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    if !status.success() {
        bail!("{label} failed ({status})");
    }
    Ok(())
}

/// Runs the test build (`cargo test --workspace --features flex,ndarray,wgpu --no-run`, a no-op
/// when it is current) and returns the path of one of the binaries it builds (`lora`,
/// `lora-experiment`): running them this way never recompiles Burn for another feature set.
pub fn test_build_binary(root: &Path, name: &str) -> Result<PathBuf> {
    step(
        root,
        "build (the test build, shared with cargo xtask ci)",
        &[
            "test",
            "--workspace",
            "--features",
            TEST_FEATURES,
            "--no-run",
            "--quiet",
        ],
        &[],
    )?;
    let binary = target_dir(root).join("debug").join(name);
    if !binary.is_file() {
        bail!("{} was not built", binary.display());
    }
    Ok(binary)
}

/// The release `lora` binary with the default backend: the installed one when `lora` on `PATH`
/// is this workspace's version (after the README's `cargo install --path crates/lora-cli`),
/// else built here with `cargo build --release --bin lora`: the same build the install does,
/// and nothing else (no test matrix).
pub fn release_lora(root: &Path) -> Result<PathBuf> {
    let want = format!("lora {}", workspace_version(root)?);
    let installed = Command::new("lora").arg("--version").output();
    if let Ok(out) = installed
        && out.status.success()
        && String::from_utf8_lossy(&out.stdout).trim() == want
    {
        eprintln!("xtask: using the installed {want}");
        return Ok(PathBuf::from("lora"));
    }
    step(
        root,
        "build the release lora",
        &["build", "--release", "--bin", "lora"],
        &[],
    )?;
    let binary = target_dir(root).join("release").join("lora");
    if !binary.is_file() {
        bail!("{} was not built", binary.display());
    }
    Ok(binary)
}

/// The `[workspace.package]` version.
pub fn workspace_version(root: &Path) -> Result<String> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml"))?;
    manifest
        .lines()
        .skip_while(|l| l.trim() != "[workspace.package]")
        .find_map(|l| l.trim().strip_prefix("version = "))
        .map(|v| v.trim_matches('"').to_string())
        .context("no version in [workspace.package]")
}

/// `cargo` arguments that run lora-assets' `fetch` example (asset names follow); it prints
/// `NAME  PATH` per asset.
pub const FETCH_EXAMPLE: [&str; 7] = [
    "run",
    "--quiet",
    "-p",
    "lora-assets",
    "--example",
    "fetch",
    "--",
];

/// Fetches assets through lora-assets' own code (the `fetch` example), so xtask stays free of
/// heavy dependencies.
pub fn fetch(args: &[String]) -> Result<()> {
    let root = workspace_root()?;
    let mut cmd_args = FETCH_EXAMPLE.to_vec();
    cmd_args.extend(args.iter().map(String::as_str));
    step(&root, "fetch assets", &cmd_args, &[])
}

/// Fetches the named assets through lora-assets' own code and returns each one's path.
pub fn fetch_assets(root: &Path, names: &[&str]) -> Result<Vec<PathBuf>> {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(FETCH_EXAMPLE)
        .args(names)
        .current_dir(root)
        .output()
        .context("running the fetch example")?;
    if !out.status.success() {
        bail!(
            "fetching {names:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    names
        .iter()
        .map(|name| {
            stdout
                .lines()
                .find_map(|l| {
                    let (n, path) = l.split_once(char::is_whitespace)?;
                    (n == *name).then(|| PathBuf::from(path.trim()))
                })
                .with_context(|| format!("the fetch example did not print the path of {name}"))
        })
        .collect()
}

/// Runs `lora experiment ARGS` with the release `lora` (see [`release_lora`]).
pub fn experiment(args: &[String]) -> Result<()> {
    let root = workspace_root()?;
    let lora = release_lora(&root)?;
    eprintln!("xtask: {} experiment {}", lora.display(), args.join(" "));
    let status = Command::new(&lora)
        .arg("experiment")
        .args(args)
        .current_dir(&root)
        .status()
        .with_context(|| format!("running {}", lora.display()))?;
    if !status.success() {
        bail!("the experiment failed ({status})");
    }
    Ok(())
}

/// The workspace root (the parent of xtask's manifest directory).
pub fn workspace_root() -> Result<PathBuf> {
    // `cargo run` sets it at run time too: prefer that, since a target directory shared by two
    // checkouts may hold an xtask built in the other one.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    Ok(manifest
        .parent()
        .context("xtask has no parent directory")?
        .to_path_buf())
}

/// Cargo's target directory (`CARGO_TARGET_DIR`, else `target/`).
pub fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}
