//! `lora conformance`: the conformance fixtures (tiny random checkpoints of every family, a PEFT
//! adapter each, and what transformers and PEFT computed) checked on a device: base logits, the
//! adapter active, disabled and merged, greedy decoding. One JSON line per fixture; exit status
//! 1 when any check fails.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use lora_eval::conformance::{check_fixture, fixture_dirs};

#[derive(Args)]
pub struct ConformanceArgs {
    /// The fixtures directory (the repository's tests/fixtures, or a GPU bundle's fixtures).
    fixtures: PathBuf,
    /// Backend: flex, ndarray, wgpu, cuda or cuda:N.
    #[arg(long)]
    device: Option<String>,
    /// Largest absolute difference of a logit allowed (default: 1e-4 on a CPU backend, 1e-3
    /// on a GPU).
    #[arg(long)]
    tolerance: Option<f32>,
    /// Only the fixtures whose directory name contains this.
    #[arg(long)]
    only: Option<String>,
}

pub fn conformance(args: ConformanceArgs) -> Result<()> {
    let backend = lora_core::select_backend(args.device.as_deref())?;
    let device = backend.device()?;
    let tolerance = args.tolerance.unwrap_or(match backend {
        lora_core::Backend::Wgpu | lora_core::Backend::Cuda(_) => 1e-3,
        _ => 1e-4,
    });
    if !(tolerance.is_finite() && tolerance >= 0.0) {
        bail!("--tolerance must be a non-negative number, not {tolerance}");
    }
    let dirs: Vec<PathBuf> = fixture_dirs(&args.fixtures)?
        .into_iter()
        .filter(|d| {
            args.only
                .as_deref()
                .is_none_or(|o| d.to_string_lossy().contains(o))
        })
        .collect();
    if dirs.is_empty() {
        bail!(
            "no fixture matches --only {:?}",
            args.only.unwrap_or_default()
        );
    }
    let mut failed = Vec::new();
    for dir in &dirs {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
        let line = match check_fixture(dir, &device, tolerance) {
            Ok(report) => {
                if !report.passed {
                    failed.push(report.fixture.clone());
                }
                serde_json::to_value(&report)?
            }
            Err(e) => {
                failed.push(name.clone().unwrap_or_default());
                serde_json::json!({"fixture": name, "passed": false, "error": format!("{e}")})
            }
        };
        println!("{}", serde_json::to_string(&line)?);
    }
    if !failed.is_empty() {
        bail!(
            "{} of {} fixtures failed on {backend}: {}",
            failed.len(),
            dirs.len(),
            failed.join(", ")
        );
    }
    Ok(())
}
