//! `lora experiment --quick` end to end (what `cargo xtask experiment --quick` runs): every
//! table is produced from real training runs on real data, LoRA and full fine-tuning learn the
//! task, the instruction-tuned decoder learns to answer in one word, and a second invocation
//! reuses the finished runs instead of training again.

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
        "Instruction tuning a decoder: smollm2 on bbc-headlines",
        "Decoding latency: smollm2",
        "One task, two models: movie-sentiment-instruct",
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
        "decoder.csv",
        "decoder_latency.csv",
        "instruct.csv",
        "loss_decoder.svg",
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

    // The decoder: the untrained model and LoRA on each generation task, every generation kept.
    let decoder = results["decoder"]["runs"].as_array().unwrap();
    assert_eq!(decoder.len(), 4, "{decoder:?}");
    let metric = |task: &str, label: &str, name: &str| {
        let run = decoder
            .iter()
            .find(|r| r["task"] == task && r["label"] == label)
            .unwrap_or_else(|| panic!("no {label} run on {task}"));
        run["test"][name].as_f64().unwrap()
    };
    for task in ["bbc-headlines", "movie-sentiment-instruct"] {
        let generations = out
            .join("runs")
            .join(task)
            .join("untrained")
            .join("generations.jsonl");
        let lines = std::fs::read_to_string(&generations).unwrap();
        assert_eq!(lines.lines().count(), 8, "{}", generations.display());
    }
    // The untrained instruct model answers in sentences, never the bare label; sixteen examples
    // of LoRA teach it the one-word answer.
    let task = "movie-sentiment-instruct";
    let (untrained, tuned) = (
        metric(task, "Untrained", "exact_match"),
        metric(task, "LoRA r=8 (q,v)", "exact_match"),
    );
    assert!(
        tuned >= 0.5 && tuned > untrained,
        "exact match {untrained} -> {tuned}"
    );
    assert!(metric("bbc-headlines", "LoRA r=8 (q,v)", "rouge_l_f1") > 0.0);
    let decoder_latency = results["decoder"]["latency"].as_array().unwrap();
    assert_eq!(
        decoder_latency.len(),
        5 * 2,
        "five variants at two batch sizes"
    );

    // A second invocation finds every run done and only rebuilds the report.
    let second = experiment(&out);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{stderr}");
    assert_eq!(
        stderr.matches("done before").count(),
        runs.len() + decoder.len(),
        "{stderr}"
    );
}
