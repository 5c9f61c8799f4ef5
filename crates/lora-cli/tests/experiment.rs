//! `lora experiment --quick` end to end (what `cargo xtask experiment --quick` runs): every
//! table is produced from real training runs on real data, LoRA and full fine-tuning learn the
//! task, and a second invocation reuses the finished runs instead of training again.

use std::process::Command;

fn experiment(out: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lora"))
        .args(["experiment", "--quick", "--device", "flex", "--out"])
        .arg(out)
        .output()
        .expect("the lora binary runs")
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
        assert!(run["params"]["trainable"].as_u64().unwrap() > 0);
        assert!(run["seconds_per_epoch"].as_f64().unwrap() > 0.0);
        assert!(!run["step_losses"].as_array().unwrap().is_empty());
    }
    // The quick preset is sized so the comparison means something: LoRA and full fine-tuning
    // clearly beat the majority class (about 52 % of the test reviews) on movie-sentiment.
    for method in ["lora", "ft"] {
        let run = runs
            .iter()
            .find(|r| r["task"] == "movie-sentiment" && r["method"] == method)
            .unwrap();
        let accuracy = run["test"]["accuracy"].as_f64().unwrap();
        assert!(accuracy >= 0.65, "{method}: test accuracy {accuracy}");
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
