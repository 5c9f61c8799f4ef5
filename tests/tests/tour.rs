//! The README's five-minute tour, run as a user runs it: train a LoRA adapter on real movie
//! reviews, predict and evaluate with it, merge it into a Hugging Face directory whose outputs
//! equal the adapter's, and export it as a PEFT adapter that re-imports bit for bit. Then the
//! same merge for a Llama model (SmolLM2 with PEFT's adapter), whose tokenizer also goes
//! through the saved `tokenizer.json`.

use std::path::Path;

use lora_tests::cli::{floats, json_of, lora, succeeded};
use lora_tests::{FixtureTensorExt, fixtures_dir, max_abs_diff, read_fixture, read_safetensors};

const TEXTS: [&str; 3] = [
    "A gripping, beautifully acted film.",
    "Dull, predictable and far too long.",
    "The soundtrack is fine.",
];

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// `lora predict --json` logits of every text, flattened.
fn predicted_logits(model: &str, adapter: Option<&Path>) -> (Vec<f32>, Vec<String>) {
    let mut args = vec!["predict", "--model", model, "--json"];
    if let Some(adapter) = adapter {
        args.extend(["--adapter", path(adapter)]);
    }
    for t in TEXTS {
        args.extend(["--text", t]);
    }
    let out = json_of(&lora(&args));
    let predictions = out["predictions"].as_array().expect("predictions");
    let logits = predictions
        .iter()
        .flat_map(|p| floats(&p["logits"]))
        .collect();
    let labels = predictions
        .iter()
        .map(|p| p["label"].as_str().expect("a label").to_string())
        .collect();
    (logits, labels)
}

#[test]
fn five_minute_tour_train_predict_eval_merge_export() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let merged = dir.path().join("merged");
    let exported = dir.path().join("exported");

    // 1. Train LoRA (r = 8 on query and value) on real movie reviews.
    let out = lora(&[
        "train",
        "--model",
        "minilm",
        "--data",
        "movie-sentiment",
        "--max-train",
        "160",
        "--max-dev",
        "40",
        "--max-len",
        "48",
        "--epochs",
        "1",
        "--out",
        path(&run),
    ]);
    let summary = succeeded(&out);
    assert!(summary.contains("epoch 1:"), "{summary}");
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
    let last = &metrics["epochs"][0]["dev"];
    for key in ["accuracy", "precision", "recall", "f1", "loss"] {
        assert!(last[key].is_number(), "metrics.json lacks {key}: {metrics}");
    }

    // 2. Predict with the adapter: the task's label names come back.
    let (adapter_logits, labels) = predicted_logits("minilm", Some(&run));
    assert_eq!(adapter_logits.len(), 2 * TEXTS.len());
    assert!(
        labels.iter().all(|l| l == "negative" || l == "positive"),
        "{labels:?}"
    );

    // 3. Evaluate on 100 test reviews.
    let out = json_of(&lora(&[
        "eval",
        "--model",
        "minilm",
        "--adapter",
        path(&run),
        "--data",
        "movie-sentiment",
        "--split",
        "test",
        "--max-examples",
        "100",
        "--json",
    ]));
    let m = &out["metrics"];
    assert_eq!(m["examples"], 100);
    let confusion = &m["confusion"]["counts"];
    let total: u64 = confusion
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|c| c.as_u64().unwrap()))
        .sum();
    assert_eq!(total, 100);
    let accuracy = m["accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&accuracy), "{out}");

    // 4. Merge into a Hugging Face directory: the merged model (no adapter) gives the adapter's
    //    outputs, under transformers' names and config.
    let merge = [
        "merge",
        "--model",
        "minilm",
        "--adapter",
        path(&run),
        "--out",
        path(&merged),
    ];
    succeeded(&lora(&merge));
    let (merged_logits, merged_labels) = predicted_logits(path(&merged), None);
    let diff = max_abs_diff(&merged_logits, &adapter_logits);
    assert!(
        diff < 1e-4,
        "merged outputs differ from the adapter's by {diff}"
    );
    assert_eq!(merged_labels, labels);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(merged.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["architectures"][0], "BertForSequenceClassification");
    assert_eq!(config["model_type"], "bert");
    assert_eq!(config["id2label"]["1"], "positive");
    assert_eq!(config["label2id"]["negative"], 0);
    assert_eq!(config["num_hidden_layers"], 6);
    let weights = read_safetensors(&merged.join("model.safetensors"));
    assert_eq!(
        weights["bert.encoder.layer.0.attention.self.query.weight"].shape(),
        [384, 384]
    );
    assert_eq!(weights["classifier.weight"].shape(), [2, 384]);
    assert_eq!(weights["bert.pooler.dense.bias"].shape(), [384]);
    assert!(weights.keys().all(|k| !k.contains("lora")));
    assert!(merged.join("tokenizer.json").is_file());

    // The same in half precision: half the bytes, the logits within f16's rounding.
    let merged_f16 = dir.path().join("merged-f16");
    succeeded(&lora(&[
        "merge",
        "--model",
        "minilm",
        "--adapter",
        path(&run),
        "--dtype",
        "f16",
        "--out",
        path(&merged_f16),
    ]));
    let size = |d: &Path| {
        std::fs::metadata(d.join("model.safetensors"))
            .unwrap()
            .len()
    };
    assert!((size(&merged_f16) as f64) < 0.51 * size(&merged) as f64);
    let (f16_logits, _) = predicted_logits(path(&merged_f16), None);
    let diff = max_abs_diff(&f16_logits, &adapter_logits);
    assert!(diff < 2e-2, "f16 merged outputs differ by {diff}");

    // 5. Export as a PEFT adapter: the tensors are the trained ones bit for bit, and predicting
    //    with the export gives exactly the same logits.
    succeeded(&lora(&[
        "export",
        "--model",
        "minilm",
        "--adapter",
        path(&run),
        "--out",
        path(&exported),
    ]));
    let original = read_safetensors(&run.join("adapter_model.safetensors"));
    let again = read_safetensors(&exported.join("adapter_model.safetensors"));
    assert_eq!(
        original, again,
        "the exported adapter differs from the trained one"
    );
    let card = std::fs::read_to_string(exported.join("README.md")).unwrap();
    assert!(card.contains("library_name: peft"), "{card}");
    let (exported_logits, _) = predicted_logits("minilm", Some(&exported));
    assert_eq!(exported_logits, adapter_logits);

    // Merging into the same, now non-empty, directory is refused: nothing is overwritten.
    let out = lora(&merge);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists and is not empty"));
}

#[test]
fn a_merged_llama_reloads_with_the_adapters_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let merged = dir.path().join("merged-smollm2");
    let adapter = fixtures_dir().join("smollm2/adapter");
    let prompt = "The capital of France is";
    let last_logits = |args: &[&str]| -> (Vec<f32>, serde_json::Value) {
        let mut all = vec!["predict", "--json", "--text", prompt];
        all.extend_from_slice(args);
        let out = json_of(&lora(&all));
        let p = &out["predictions"][0];
        (floats(&p["last_logits"]), p["input_ids"].clone())
    };
    let (with_adapter, ids) = last_logits(&["--model", "smollm2", "--adapter", path(&adapter)]);
    succeeded(&lora(&[
        "merge",
        "--model",
        "smollm2",
        "--adapter",
        path(&adapter),
        "--out",
        path(&merged),
    ]));
    let (from_merged, merged_ids) = last_logits(&["--model", path(&merged)]);
    // The tokenizer rebuilt from GGUF and saved as tokenizer.json encodes the same ids.
    assert_eq!(merged_ids, ids);
    let diff = max_abs_diff(&from_merged, &with_adapter);
    assert!(diff < 1e-4, "merged Llama logits differ by {diff}");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(merged.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["architectures"][0], "LlamaForCausalLM");
    assert_eq!(config["tie_word_embeddings"], true);
    // PEFT's reference for the adapter (computed by transformers) still holds after the merge.
    let fixture = read_fixture("smollm2/smollm2.safetensors");
    let diff = max_abs_diff(&from_merged, fixture["prompt0.lora_last_logits"].f32());
    assert!(diff < 1e-3, "merged logits differ from PEFT's by {diff}");
}
