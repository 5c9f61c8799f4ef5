//! `cargo xtask ci` (formatting, lints, packaging and the backend matrix), `bench` and
//! `package`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::cargo::{TEST_FEATURES, step, target_dir, workspace_root};

/// The outcome of one row of the backend matrix.
enum Outcome {
    Passed,
    Failed,
    Skipped(String),
}

struct Row {
    backend: &'static str,
    what: &'static str,
    outcome: Outcome,
    seconds: f64,
}

pub fn run(args: &[String]) -> Result<()> {
    let quick = args.iter().any(|a| a == "--no-lint");
    let root = workspace_root()?;
    let started = Instant::now();
    if !quick {
        step(
            &root,
            "cargo fmt --check",
            &["fmt", "--all", "--check"],
            &[],
        )?;
        step(
            &root,
            "cargo clippy",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--features",
                TEST_FEATURES,
                "--",
                "-D",
                "warnings",
            ],
            &[],
        )?;
        step(
            &root,
            "cargo doc",
            &[
                "doc",
                "--workspace",
                "--no-deps",
                "--features",
                TEST_FEATURES,
            ],
            &[("RUSTDOCFLAGS", "-D warnings")],
        )?;
        package(&[])?;
        check_layering(&root)?;
    }

    // Build every test binary once, with every testable backend compiled in.
    step(
        &root,
        "build tests",
        &[
            "test",
            "--workspace",
            "--features",
            TEST_FEATURES,
            "--no-run",
        ],
        &[],
    )?;

    let mut rows = Vec::new();
    let skip_others = [
        "--skip",
        "::ndarray",
        "--skip",
        "::wgpu",
        "--skip",
        "::cuda",
    ];
    rows.push(test_row(
        &root,
        "flex",
        "all tests, doctests, flex backend",
        &skip_others,
        &[],
    ));
    rows.push(test_row(
        &root,
        "ndarray",
        "numerical tests",
        &["::ndarray"],
        &[],
    ));
    match vulkan_driver() {
        Some(icd) => {
            eprintln!("xtask: Vulkan driver found ({icd}); wgpu tests must find a device");
            rows.push(test_row(
                &root,
                "wgpu",
                "numerical tests (Vulkan)",
                &["::wgpu", "--test-threads=1"],
                &[("LORA_REQUIRE_GPU", "1")],
            ));
        }
        None => rows.push(Row {
            backend: "wgpu",
            what: "numerical tests",
            outcome: Outcome::Skipped(
                "no Vulkan driver (install mesa-vulkan-drivers and libvulkan1)".into(),
            ),
            seconds: 0.0,
        }),
    }
    if vulkan_driver().is_some() {
        // The GPU bundle, built as for a lent GPU (the loaders aside: this machine has them)
        // and run in its --small mode on lavapipe, so it is known to work before a GPU comes.
        let started_bundle = Instant::now();
        let outcome = match crate::gpu_bundle::run(&[
            "--without-loaders".into(),
            "--test-build".into(),
            "--check".into(),
        ]) {
            Ok(()) => Outcome::Passed,
            Err(e) => {
                eprintln!("xtask: gpu-bundle: {e:#}");
                Outcome::Failed
            }
        };
        rows.push(Row {
            backend: "wgpu",
            what: "GPU bundle: run.sh --small (parity on every fixture, every benchmark)",
            outcome,
            seconds: started_bundle.elapsed().as_secs_f64(),
        });
    }
    // Every fuzz target builds and runs a few seconds over its seed corpus (the long runs and
    // their figures: `cargo xtask fuzz`, docs/reliability.md).
    let started_fuzz = Instant::now();
    let outcome = match crate::fuzz::run(&["--seconds".into(), "5".into()]) {
        Ok(()) => Outcome::Passed,
        Err(e) => {
            eprintln!("xtask: fuzz: {e:#}");
            Outcome::Failed
        }
    };
    rows.push(Row {
        backend: "flex",
        what: "fuzz smoke: every cargo fuzz target, 5 s each",
        outcome,
        seconds: started_fuzz.elapsed().as_secs_f64(),
    });
    rows.extend(cuda_rows(&root));
    let started_interop = Instant::now();
    let outcome = match crate::interop::run() {
        Ok(()) => Outcome::Passed,
        Err(e) => {
            eprintln!("xtask: interop: {e:#}");
            Outcome::Failed
        }
    };
    rows.push(Row {
        backend: "flex",
        what: "transformers + PEFT load lora merge / export output",
        outcome,
        seconds: started_interop.elapsed().as_secs_f64(),
    });

    print_matrix(&rows, started.elapsed().as_secs_f64());
    let failed: Vec<&str> = rows
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Failed))
        .map(|r| r.backend)
        .collect();
    if !failed.is_empty() {
        bail!("tests failed on: {}", failed.join(", "));
    }
    Ok(())
}

/// Dependencies point one way: each crate below may not depend (normally) on the crates
/// listed with it. `cargo tree` reads the lock file only; nothing is built.
const LAYERING: [(&str, &[&str]); 4] = [
    (
        "lora-example-custom-model",
        &[
            "lora-models",
            "lora-data",
            "lora-assets",
            "lora-train",
            "lora-eval",
        ],
    ),
    (
        "lora-surgery",
        &[
            "lora-models",
            "lora-data",
            "lora-assets",
            "lora-train",
            "lora-eval",
        ],
    ),
    (
        "lora-models",
        &["lora-data", "lora-assets", "lora-train", "lora-eval"],
    ),
    (
        "lora-data",
        &["burn", "lora-core", "lora-models", "lora-train"],
    ),
];

/// Checks [`LAYERING`] with `cargo tree -e normal`.
fn check_layering(root: &Path) -> Result<()> {
    for (krate, forbidden) in LAYERING {
        let out = Command::new("cargo")
            .current_dir(root)
            .args(["tree", "-e", "normal", "--prefix", "none", "-p", krate])
            .output()?;
        if !out.status.success() {
            bail!(
                "cargo tree -p {krate} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let tree = String::from_utf8_lossy(&out.stdout);
        let names: Vec<&str> = tree
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        let bad: Vec<&&str> = forbidden.iter().filter(|f| names.contains(f)).collect();
        if !bad.is_empty() {
            bail!("{krate} depends on {bad:?}: the layering of docs/architecture.md is broken");
        }
        eprintln!("xtask: {krate} depends on none of {forbidden:?}");
    }
    Ok(())
}

/// The crates that are published: every library crate and the two binaries' crates.
const PUBLISHED: [&str; 9] = [
    "lora-core",
    "lora-data",
    "lora-assets",
    "lora-derive",
    "lora-models",
    "lora-surgery",
    "lora-train",
    "lora-eval",
    "lora-cli",
];

/// `cargo package` for every published crate, in dependency order, each verified by building
/// the packaged sources on their own with default features (siblings resolve to the packages
/// just made, by version); extra arguments (`--allow-dirty`, `--no-verify`) go to cargo.
pub fn package(args: &[String]) -> Result<()> {
    let root = workspace_root()?;
    remove_stale_extractions(&root)?;
    let verify = verify_dir(&root).display().to_string();
    let mut cmd_args = vec!["package", "--target-dir", verify.as_str()];
    for name in PUBLISHED {
        cmd_args.extend(["-p", name]);
    }
    cmd_args.extend(args.iter().map(String::as_str));
    step(&root, "cargo package", &cmd_args, &[])
}

/// `cargo package` verifies each crate against the others' fresh tarballs through a local
/// registry, and cargo takes registry crates to be immutable: it reuses an extraction under
/// `$CARGO_HOME/registry/src/<registry>/<name>-<version>` while one exists, and a build of
/// such sources while its fingerprint holds (their files carry the archive's fixed mtime, so
/// they never look newer than the build). With our version unchanged, yesterday's crate would
/// stand in for today's. So the verification builds in a target directory of its own
/// ([`verify_dir`]), and both the extractions and the fingerprints of our crates there are
/// removed first; the dependencies' builds stay.
fn remove_stale_extractions(root: &Path) -> Result<()> {
    let ours = |name: &str| {
        PUBLISHED.iter().any(|p| {
            name.strip_prefix(p)
                .is_some_and(|rest| rest.starts_with('-'))
        })
    };
    let fingerprints = verify_dir(root).join("debug").join(".fingerprint");
    if let Ok(entries) = std::fs::read_dir(&fingerprints) {
        for entry in entries.flatten() {
            if ours(&entry.file_name().to_string_lossy()) {
                std::fs::remove_dir_all(entry.path())
                    .with_context(|| format!("removing {}", entry.path().display()))?;
            }
        }
    }
    let version = crate::cargo::workspace_version(root)?;
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    let Ok(registries) = std::fs::read_dir(home.join("registry/src")) else {
        return Ok(());
    };
    for registry in registries.flatten() {
        for name in PUBLISHED {
            let dir = registry.path().join(format!("{name}-{version}"));
            if dir.is_dir() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("removing {}", dir.display()))?;
            }
        }
    }
    Ok(())
}

/// The target directory of `cargo package`'s verification builds.
fn verify_dir(root: &Path) -> PathBuf {
    target_dir(root).join("package-verify")
}

fn test_row(
    root: &Path,
    backend: &'static str,
    what: &'static str,
    filter: &[&str],
    env: &[(&str, &str)],
) -> Row {
    let started = Instant::now();
    // Every test binary runs even after one fails, so one row reports all of its failures.
    let mut args = vec![
        "test",
        "--no-fail-fast",
        "--workspace",
        "--features",
        TEST_FEATURES,
        "--",
    ];
    args.extend_from_slice(filter);
    let ok = step(root, &format!("tests on {backend}"), &args, env).is_ok();
    Row {
        backend,
        what,
        outcome: if ok { Outcome::Passed } else { Outcome::Failed },
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// `cuda` cannot be built here (cubecl's LLVM download needs the internet), but it can be
/// compile-checked with a local LLVM standing in, as `../shared/design.md` describes. It runs
/// only where a GPU exists.
fn cuda_rows(root: &Path) -> Vec<Row> {
    let started = Instant::now();
    let check = match llvm_prefix(root) {
        Ok(data_home) => {
            let data_home = data_home.display().to_string();
            let ok = step(
                root,
                "cargo check --features cuda",
                &[
                    "check",
                    "-p",
                    "lora-core",
                    "--no-default-features",
                    "--features",
                    "cuda",
                ],
                &[("XDG_DATA_HOME", &data_home)],
            )
            .is_ok();
            if ok { Outcome::Passed } else { Outcome::Failed }
        }
        Err(e) => Outcome::Skipped(format!("no local LLVM to stand in for cubecl's: {e:#}")),
    };
    let gpu = Command::new("nvidia-smi")
        .arg("-L")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    vec![
        Row {
            backend: "cuda",
            what: "compile check",
            outcome: check,
            seconds: started.elapsed().as_secs_f64(),
        },
        Row {
            backend: "cuda",
            what: "numerical tests",
            outcome: Outcome::Skipped(if gpu {
                "a GPU is present, but cuda cannot be linked offline (cubecl-llvm); run the \
                 device script on a machine with internet"
                    .into()
            } else {
                "no NVIDIA GPU on this machine".into()
            }),
            seconds: 0.0,
        },
    ]
}

/// Builds `target/llvm-shim/tracel/tracel-llvm-23.1.0-4/` around Debian's `llvm-config-14`, so
/// that `cubecl-llvm`'s build script finds an "installed" LLVM instead of downloading one.
fn llvm_prefix(root: &Path) -> Result<PathBuf> {
    let real = ["llvm-config-14", "/usr/lib/llvm-14/bin/llvm-config"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        })
        .context("llvm-config-14 not found (apt-get install llvm-14-dev)")?;
    let data_home = target_dir(root).join("llvm-shim");
    let prefix = data_home.join("tracel/tracel-llvm-23.1.0-4");
    std::fs::create_dir_all(prefix.join("bin"))?;
    std::fs::write(prefix.join(".tracel-llvm-installed"), "")?;
    let wrapper = prefix.join("bin/llvm-config");
    let script = format!(
        "#!/bin/sh\nout=$({real} \"$@\") || exit $?\n\
         printf '%s\\n' \"$out\" | sed -e 's/-lPollyISL//g' -e 's/-lPolly//g' \
         -e 's#[^ ]*/libz3[^ ]*\\.so[^ ]*#-lz3#g'\n"
    );
    std::fs::write(&wrapper, script)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(data_home)
}

fn vulkan_driver() -> Option<String> {
    ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d"]
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| p.display().to_string())
}

fn print_matrix(rows: &[Row], total: f64) {
    println!();
    println!("backend matrix ({total:.0} s in all)");
    println!("| backend | what | result | time |");
    println!("|---|---|---|---|");
    for row in rows {
        let result = match &row.outcome {
            Outcome::Passed => "passed".to_string(),
            Outcome::Failed => "FAILED".to_string(),
            Outcome::Skipped(why) => format!("skipped: {why}"),
        };
        println!(
            "| {} | {} | {} | {:.0} s |",
            row.backend, row.what, result, row.seconds
        );
    }
    println!();
}
