//! `cargo xtask bench --memory`: SmolLM2-135M LoRA training steps (batch 4 × ≤128 tokens) with
//! the frozen base held as f32, f16, bf16, q8 and q4, with and without activation
//! checkpointing, each in its own process: peak resident memory and step time side by side,
//! written to `docs/results.md`. A benchmark: CI measures nothing.

use std::process::Command;

use anyhow::Result;

use crate::bench::{BenchTokens, flag, json_of, machine, number, replace_marked, today};
use crate::cargo::{release_lora, workspace_root};

/// The settings measured: base dtype and whether activations are recomputed.
const SETTINGS: [(&str, bool); 9] = [
    ("f32", false),
    ("bf16", false),
    ("f16", false),
    ("q8", false),
    ("q4", false),
    ("f32", true),
    ("bf16", true),
    ("q8", true),
    ("q4", true),
];

/// `cargo xtask bench --memory [--repeats N]`.
pub fn memory(args: &[String]) -> Result<()> {
    let root = workspace_root()?;
    let repeats = flag(args, "--repeats").unwrap_or("3").to_string();
    let lora = release_lora(&root)?;
    let tokens = BenchTokens::write(&root, &lora)?;
    let model = tokens.model("smollm2")?;
    let mut rows = Vec::new();
    for (dtype, checkpoint) in SETTINGS {
        eprintln!("xtask: SmolLM2 LoRA step, base {dtype}, checkpointing {checkpoint}");
        let mut cmd = Command::new(&lora);
        cmd.args([
            "--quiet",
            "bench",
            "--workload",
            "decoder-lora-step",
            "--model",
        ])
        .arg(model)
        .arg("--tokens")
        .arg(tokens.dir.join("decoder-b4.json"))
        .args([
            "--repeats",
            &repeats,
            "--device",
            "flex",
            "--base-dtype",
            dtype,
        ]);
        if checkpoint {
            cmd.arg("--checkpoint-activations");
        }
        rows.push((dtype, checkpoint, json_of(&mut cmd)?));
    }
    let report = report(&rows)?;
    let path = root.join("docs/results.md");
    let existing = std::fs::read_to_string(&path).unwrap_or_default();
    std::fs::write(
        &path,
        replace_marked(&existing, "memory", &report, "# Results"),
    )?;
    println!("{report}");
    eprintln!("xtask: wrote {}", path.display());
    Ok(())
}

fn report(rows: &[(&str, bool, serde_json::Value)]) -> Result<String> {
    let baseline = rows
        .iter()
        .find(|(d, c, _)| *d == "f32" && !c)
        .map(|(_, _, r)| r);
    let ratio = |r: &serde_json::Value, key: &str| match (
        number(r, key),
        baseline.and_then(|b| number(b, key)),
    ) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".into(),
    };
    let mut md = format!(
        "## Memory-lean training: the frozen base as f32, half or quantized\n\n\
         Measured by `cargo xtask bench --memory` on {} ({}), release `lora`, flex backend: \
         SmolLM2-135M, LoRA r = 8 on q_proj / v_proj, one training step on batch 4 × ≤128 \
         tokens (the `decoder-b4.json` batch of `--vs-pytorch`), each setting in its own \
         process. Peak RSS is the whole process (model loading included); ratios are to the \
         f32 row.\n\n\
         | base | activations | peak RSS MiB | × f32 | ms / step | × f32 |\n\
         |---|---|---|---|---|---|\n",
        machine(),
        today()?
    );
    for (dtype, checkpoint, r) in rows {
        md += &format!(
            "| {dtype} | {} | {} | {} | {} | {} |\n",
            if *checkpoint { "recomputed" } else { "kept" },
            number(r, "peak_rss_mib").map_or("-".into(), |v| format!("{v:.0}")),
            ratio(r, "peak_rss_mib"),
            number(r, "value").map_or("-".into(), |v| format!("{v:.0}")),
            ratio(r, "value"),
        );
    }
    Ok(md)
}
