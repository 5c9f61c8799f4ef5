//! `cargo xtask gpu-bundle`: everything a lent GPU machine needs to turn a few minutes into
//! parity checks and speed figures, gathered into one git-ignored folder (`gpu-bundle/`) that
//! travels with the working tree (at most 64 MiB):
//!
//! - `lora.gz`: the release build with the `wgpu` backend (and `flex`), stripped and
//!   gzipped (`run.sh` unpacks it);
//! - `fixtures/`: the tiny conformance fixtures of every family (checkpoint, PEFT adapter,
//!   transformers' and PEFT's outputs);
//! - `configs/`: the `config.json` of real-size models, without weights (all-MiniLM-L6-v2,
//!   SmolLM2-135M, Llama-3.2-1B), built there with seeded random weights;
//! - `tokens/`: the benchmark batches (`lora bench --write-tokens`);
//! - `gl/`: the Vulkan loader packages the device documentation asks to carry (not with
//!   `--without-loaders`);
//! - `run.sh` (from `xtask/gpu-bundle/run.sh`) and `BUNDLE.json` (what was built, when, from
//!   which commit).
//!
//! `cargo xtask gpu-bundle --check` then runs `run.sh --small` on this machine (lavapipe in
//! CI) and checks its report. CI passes `--test-build` too: the bundle then carries the test
//! build's `lora` (the same code, dependencies optimised, our crates not), which CI has built
//! anyway, instead of a second build of Burn in release mode.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cargo::{step, target_dir, test_build_binary, workspace_root};

/// The folder's name under the workspace root (git-ignored).
pub const BUNDLE_DIR: &str = "gpu-bundle";

/// The most the bundle may weigh: the device tool carries at most 64 MiB with the tree.
const MAX_MIB: f64 = 60.0;

/// The Vulkan and GL loader packages the device documentation names.
const LOADER_PACKAGES: [&str; 7] = [
    "libvulkan1",
    "libegl1",
    "libglvnd0",
    "libopengl0",
    "libgl1",
    "libglx0",
    "libgles2",
];

struct Options {
    out: PathBuf,
    loaders: bool,
    check: bool,
    test_build: bool,
}

fn parse(args: &[String], root: &Path) -> Result<Options> {
    let mut options = Options {
        out: root.join(BUNDLE_DIR),
        loaders: true,
        check: false,
        test_build: false,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => options.out = PathBuf::from(args.next().context("--out needs a directory")?),
            "--without-loaders" => options.loaders = false,
            "--check" => options.check = true,
            "--test-build" => options.test_build = true,
            other => bail!(
                "unknown gpu-bundle option '{other}' (valid: --out DIR, --without-loaders, \
                 --check, --test-build)"
            ),
        }
    }
    Ok(options)
}

pub fn run(args: &[String]) -> Result<()> {
    let root = workspace_root()?;
    let options = parse(args, &root)?;
    build(&root, &options)?;
    if options.check {
        check(&options.out, &target_dir(&root).join("gpu-bundle-check"))?;
    }
    Ok(())
}

/// Builds the bundle into `options.out` and prints its size.
fn build(root: &Path, options: &Options) -> Result<()> {
    let out = &options.out;
    // Only a folder this task wrote (it holds BUNDLE.json) is replaced: nothing else is lost.
    if out.exists() {
        if !out.join("BUNDLE.json").is_file() {
            bail!(
                "{} exists and is not a GPU bundle (no BUNDLE.json): choose another --out",
                out.display()
            );
        }
        std::fs::remove_dir_all(out).with_context(|| format!("removing {}", out.display()))?;
    }
    std::fs::create_dir_all(out)?;

    let (built, features) = if options.test_build {
        // CI's way: the test build's lora (flex, ndarray and wgpu; dependencies optimised),
        // so that checking the bundle costs no second build of Burn.
        (
            test_build_binary(root, "lora")?,
            "flex,ndarray,wgpu (test build)",
        )
    } else {
        step(
            root,
            "build the release lora with wgpu",
            &[
                "build",
                "--release",
                "--bin",
                "lora",
                "--features",
                "flex,wgpu",
            ],
            &[],
        )?;
        (
            target_dir(root).join("release").join("lora"),
            "flex,wgpu (release)",
        )
    };
    // The binary travels stripped and gzipped (run.sh unpacks it); a copy stays unpacked here
    // to write the token files.
    let lora = target_dir(root).join("gpu-bundle-lora");
    std::fs::copy(&built, &lora).with_context(|| format!("copying {}", built.display()))?;
    match Command::new("strip").arg(&lora).status() {
        Ok(s) if s.success() => {}
        other => eprintln!("xtask: strip did not run ({other:?}); the binary stays unstripped"),
    }
    let packed = std::fs::File::create(out.join("lora.gz"))?;
    crate::python::run(Command::new("gzip").arg("-c").arg(&lora).stdout(packed))
        .context("gzip of the lora binary")?;

    let fixtures = copy_fixtures(&root.join("tests/fixtures"), &out.join("fixtures"))?;

    // The benchmark batches and the real models' configurations, written by this very binary.
    let tokens = out.join("tokens");
    crate::python::run(
        Command::new(&lora)
            .args(["bench", "--write-tokens"])
            .arg(&tokens)
            .env("BURN_DEVICE", "flex"),
    )
    .context("lora bench --write-tokens")?;
    std::fs::remove_file(tokens.join("models.json")).ok();
    let configs = out.join("configs");
    std::fs::create_dir_all(&configs)?;
    for name in ["minilm.config.json", "smollm2.config.json"] {
        std::fs::rename(tokens.join(name), configs.join(name))?;
    }
    std::fs::copy(
        root.join("xtask/gpu-bundle/llama-3.2-1b.config.json"),
        configs.join("llama-3.2-1b.config.json"),
    )?;

    if options.loaders {
        download_loaders(&out.join("gl"))?;
    }
    let script = out.join("run.sh");
    std::fs::copy(root.join("xtask/gpu-bundle/run.sh"), &script)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    }

    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(root)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let manifest = serde_json::json!({
        "commit": commit,
        "built": utc_now(),
        "features": features,
        "fixtures": fixtures,
        "loaders": options.loaders,
    });
    std::fs::write(out.join("BUNDLE.json"), serde_json::to_string(&manifest)?)?;

    let mib = dir_bytes(out)? as f64 / 1048576.0;
    println!(
        "xtask: GPU bundle at {}: {mib:.1} MiB ({} fixtures; the limit is {MAX_MIB} MiB)",
        out.display(),
        fixtures.len()
    );
    if mib > MAX_MIB {
        bail!("the bundle weighs {mib:.1} MiB, over the {MAX_MIB} MiB the device tool carries");
    }
    println!(
        "xtask: on the GPU machine: run with carry [\"{BUNDLE_DIR}\"] and the command \
         `bash {BUNDLE_DIR}/run.sh` (it writes gpu-report.json and gpu-run.log into $OUT)"
    );
    Ok(())
}

/// Copies every fixture directory with a `reference.json` (model, adapter, reference outputs;
/// the GGUF files stay behind) and returns their names.
fn copy_fixtures(from: &Path, to: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(from)
        .with_context(|| format!("reading {}", from.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|d| d.join("reference.json").is_file() && d.join("model").is_dir())
        .collect();
    entries.sort();
    for dir in entries {
        let name = dir
            .file_name()
            .context("a fixture directory has a name")?
            .to_string_lossy()
            .into_owned();
        let target = to.join(&name);
        for part in ["model", "adapter"] {
            copy_dir(&dir.join(part), &target.join(part))?;
        }
        for file in ["reference.json", "reference.safetensors"] {
            std::fs::copy(dir.join(file), target.join(file))
                .with_context(|| format!("copying {}/{file}", dir.display()))?;
        }
        names.push(name);
    }
    if names.is_empty() {
        bail!(
            "no fixtures under {} (cargo xtask fixtures writes them)",
            from.display()
        );
    }
    Ok(names)
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let path = entry?.path();
        let target = to.join(path.file_name().context("a file has a name")?);
        if path.is_dir() {
            copy_dir(&path, &target)?;
        } else {
            std::fs::copy(&path, &target).with_context(|| format!("copying {}", path.display()))?;
        }
    }
    Ok(())
}

/// `apt-get download` of [`LOADER_PACKAGES`] for amd64, with package lists of its own (the
/// device documentation's recipe).
fn download_loaders(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let lists = std::env::temp_dir().join("lora-burn-apt-amd64");
    std::fs::create_dir_all(lists.join("partial"))?;
    let options = [
        "-oAPT::Architecture=amd64".to_string(),
        "-oAPT::Architectures=amd64".to_string(),
        format!("-oDir::State::Lists={}", lists.display()),
    ];
    crate::python::run(
        Command::new("apt-get")
            .args(&options)
            .args(["-qq", "update"]),
    )
    .context("apt-get update (amd64 lists)")?;
    crate::python::run(
        Command::new("apt-get")
            .args(&options)
            .arg("download")
            .args(LOADER_PACKAGES)
            .current_dir(dir),
    )
    .context("apt-get download of the Vulkan loaders")
}

/// Runs `run.sh --small` of the bundle on this machine's wgpu (lavapipe without a GPU) and
/// checks its report (written into `out`): the device opened, parity passed on every fixture,
/// every benchmark ran.
fn check(bundle: &Path, out: &Path) -> Result<()> {
    if out.exists() {
        std::fs::remove_dir_all(out)?;
    }
    eprintln!("xtask: {}/run.sh --small", bundle.display());
    let status = Command::new("bash")
        .arg(bundle.join("run.sh"))
        .arg("--small")
        .env("OUT", out)
        .env("LORA_BUNDLE_BUDGET_S", "1800")
        .status()
        .context("running run.sh")?;
    let path = out.join("gpu-report.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("run.sh wrote no report at {}", path.display()))?;
    let report: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let fixtures = report["parity"]["fixtures"].as_array().map_or(0, Vec::len);
    let expected = std::fs::read_dir(bundle.join("fixtures"))?.count();
    let benchmarks = report["benchmarks"].as_array().cloned().unwrap_or_default();
    let measured = benchmarks
        .iter()
        .filter(|b| b["result"].is_object())
        .count();
    eprintln!(
        "xtask: run.sh --small: device {}, parity {} ({fixtures} of {expected} fixtures), {measured} of {} benchmarks measured, {} s",
        report["device"]["info"]["name"]
            .as_str()
            .or(report["device"]["info"]["device"].as_str())
            .unwrap_or("none"),
        report["parity"]["passed"],
        benchmarks.len(),
        report["seconds"]
    );
    if !status.success()
        || report["parity"]["passed"] != true
        || fixtures != expected
        || benchmarks.is_empty()
        || measured != benchmarks.len()
    {
        bail!(
            "run.sh --small failed ({status}); see {} and gpu-run.log beside it",
            path.display()
        );
    }
    Ok(())
}

fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// The current UTC time, `YYYY-MM-DDTHH:MM:SSZ` (from `date`, keeping xtask free of a time
/// crate).
fn utc_now() -> Option<String> {
    Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
}
