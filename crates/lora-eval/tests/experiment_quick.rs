//! `cargo xtask experiment --quick` end to end (the binary as CI and users run it): every table
//! is produced from real training runs on real data, and a second invocation reuses the
//! finished runs instead of training again.

use std::process::Command;

fn experiment(out: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lora-experiment"))
        .args(["--quick", "--quiet", "--device", "flex", "--out"])
        .arg(out)
        .output()
        .expect("the experiment binary runs")
}

#[test]
fn quick_experiment_produces_every_table_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("quick");
    let first = experiment(&out);
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        stdout
            .trim_end()
            .ends_with(&format!("report: {}", out.join("report.md").display())),
        "{stdout}"
    );

    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    for heading in [
        "Method comparison: movie-sentiment",
        "Rank ablation",
        "Inference latency",
        "Method comparison: bbc-news",
    ] {
        assert!(report.contains(heading), "missing {heading}:\n{report}");
    }
    for file in [
        "results.json",
        "comparison.csv",
        "ablation.csv",
        "latency.csv",
        "bbc.csv",
        "rank_ablation.svg",
        "loss_movie.svg",
        "config.toml",
    ] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let runs = results["runs"].as_array().unwrap();
    // 6 methods on each task, and ranks 1 and 8 (r = 8 with α = 8 is also the comparison's LoRA,
    // but the ablation has its own budget, so it is its own run).
    assert_eq!(runs.len(), 6 + 2 + 6);
    for run in runs {
        let accuracy = run["test"]["accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&accuracy), "{run}");
        assert!(run["params"]["trainable"].as_u64().unwrap() > 0);
        assert!(run["seconds_per_epoch"].as_f64().unwrap() > 0.0);
        assert!(!run["step_losses"].as_array().unwrap().is_empty());
    }
    let latency = results["latency"].as_array().unwrap();
    assert_eq!(latency.len(), 5 * 2, "five variants at two batch sizes");
    assert!(
        latency
            .iter()
            .all(|l| l["latency"]["median_ms"].as_f64().unwrap() > 0.0)
    );

    // A second invocation finds every run done and only rebuilds the report.
    let second = experiment(&out);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{stderr}");
    assert_eq!(
        stderr.matches("done before").count(),
        runs.len(),
        "{stderr}"
    );
}
