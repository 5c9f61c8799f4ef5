//! The `lora` binary as a user runs it: `predict --json` reproduces PEFT's logits through the
//! command line, `inspect` prints the dry-run report, and mistakes give clear messages and a
//! non-zero exit code.

use std::process::{Command, Output};

use lora_tests::{asset, fixture_sentences, fixtures_dir, max_abs_diff, read_fixture};

fn lora(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lora"))
        .args(args)
        .env("BURN_DEVICE", "flex")
        .output()
        .expect("the lora binary runs")
}

fn json_of(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "lora failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("--json prints JSON")
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn predict_json_reproduces_peft_seq_cls_logits() {
    let minilm = asset("minilm");
    let adapter = fixtures_dir().join("peft_bert_seqcls/adapter");
    let logits = read_fixture("peft_bert_seqcls/logits.safetensors");
    for (merge, key) in [(false, "logits_adapter_active"), (true, "logits_merged")] {
        let mut args = vec![
            "predict",
            "--model",
            minilm.to_str().unwrap(),
            "--adapter",
            adapter.to_str().unwrap(),
            "--json",
        ];
        if merge {
            args.push("--merge");
        }
        let texts = fixture_sentences();
        for t in &texts {
            args.push("--text");
            args.push(t);
        }
        let out = json_of(&lora(&args));
        let ours: Vec<f32> = out["predictions"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| floats(&p["logits"]))
            .collect();
        let diff = max_abs_diff(&ours, logits[key].f32());
        assert!(diff < 1e-4, "{key} through the CLI differs by {diff}");
        let p = floats(&out["predictions"][0]["probabilities"]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
}

#[test]
fn predict_json_reproduces_peft_causal_lm_logits() {
    let fixture = read_fixture("smollm2/smollm2.safetensors");
    let adapter = fixtures_dir().join("smollm2/adapter");
    let out = json_of(&lora(&[
        "predict",
        "--model",
        "smollm2",
        "--adapter",
        adapter.to_str().unwrap(),
        "--json",
        "--text",
        "The capital of France is",
    ]));
    let last = floats(&out["predictions"][0]["last_logits"]);
    let diff = max_abs_diff(&last, fixture["prompt0.lora_last_logits"].f32());
    assert!(
        diff < 1e-3,
        "adapter logits through the CLI differ by {diff}"
    );

    // Without an adapter, plain text output names " Paris" first.
    let out = lora(&[
        "predict",
        "--model",
        "smollm2",
        "--text",
        "The capital of France is",
        "--top-k",
        "3",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().nth(1).unwrap_or_default();
    assert!(first.contains("\" Paris\""), "{text}");
}

#[test]
fn inspect_prints_the_dry_run_report() {
    let out = lora(&[
        "inspect",
        "--model",
        "minilm",
        "--targets",
        "query,value",
        "--r",
        "4",
        "--alpha",
        "8",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("BERT encoder: 6 layers, hidden 384"),
        "{text}"
    );
    assert!(
        text.contains("encoder.layer.5.attention.self.value"),
        "{text}"
    );
    assert!(
        text.contains("12 modules targeted, 36864 parameters added"),
        "{text}"
    );
}

#[test]
fn user_mistakes_are_clear_errors_with_a_failing_exit_code() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["predict", "--model", "/no/such/model", "--text", "x"],
            "neither an existing path nor a known asset",
        ),
        (
            &["inspect", "--model", "minilm", "--targets", "q_proj"],
            "no module matched target_modules",
        ),
        (
            &[
                "inspect",
                "--model",
                "minilm",
                "--targets",
                "query",
                "--r",
                "0",
            ],
            "r = 0",
        ),
        (
            &["predict", "--model", "minilm", "--text", "x"],
            "bare encoder without a classification head",
        ),
    ];
    for (args, expected) in cases {
        let out = lora(args);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
