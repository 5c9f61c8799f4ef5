//! The `lora` binary as a user runs it: `predict --json` reproduces PEFT's logits through the
//! command line, `inspect` prints the dry-run report, and mistakes give clear messages and a
//! non-zero exit code.

use lora_tests::cli::{fails_with, floats, json_of, lora, succeeded};
use lora_tests::{
    FixtureTensorExt, asset, fixture_sentences, fixtures_dir, max_abs_diff, read_fixture,
};

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
    let text = succeeded(&out);
    let first = text.lines().nth(1).unwrap_or_default();
    assert!(first.contains("\" Paris\""), "{text}");
}

#[test]
fn generate_continues_a_prompt_and_eval_measures_perplexity() {
    // Greedy decoding with SmolLM2 names Paris, with and without PEFT's adapter merged.
    let adapter = fixtures_dir().join("smollm2/adapter");
    for extra in [
        vec![],
        vec!["--adapter", adapter.to_str().unwrap(), "--merge"],
    ] {
        let mut args = vec![
            "generate",
            "--model",
            "smollm2",
            "--prompt",
            "The capital of France is",
            "--max-new-tokens",
            "3",
            "--json",
        ];
        args.extend(extra);
        let out = json_of(&lora(&args));
        let completion = out["generations"][0]["completion"].as_str().unwrap();
        assert!(completion.starts_with(" Paris"), "{out}");
        assert!(out["generations"][0]["token_ids"].as_array().unwrap().len() <= 3);
    }

    // Perplexity: 40 real movie reviews (the built-in task's test split, and the same reviews
    // as a .txt corpus) read as far more likely than the same words in reverse order. That
    // That `lora eval` computes perplexity as transformers does is `cargo xtask interop`'s check;
    // here the numbers must rank real text far above scrambled text, and both data routes (a
    // built-in task, a .txt file) must agree.
    let dir = tempfile::tempdir().unwrap();
    let task = lora_assets::BuiltinTask::MovieSentiment
        .load_from(&asset("movie-sentiment"))
        .unwrap();
    let reviews: Vec<&str> = task.test.iter().take(40).map(|e| e.text.as_str()).collect();
    let reversed: Vec<String> = reviews
        .iter()
        .map(|r| r.split_whitespace().rev().collect::<Vec<_>>().join(" "))
        .collect();
    let (real, scrambled) = (
        dir.path().join("real.txt"),
        dir.path().join("scrambled.txt"),
    );
    std::fs::write(&real, reviews.join("\n")).unwrap();
    std::fs::write(&scrambled, reversed.join("\n")).unwrap();
    let perplexity = |source: &[&str]| {
        let mut args = vec!["eval", "--model", "smollm2", "--max-len", "32", "--json"];
        args.extend_from_slice(source);
        let out = json_of(&lora(&args));
        out["metrics"]["perplexity"].as_f64().unwrap()
    };
    let from_task = perplexity(&["--data", "movie-sentiment", "--max-examples", "40"]);
    let real = perplexity(&["--file", real.to_str().unwrap()]);
    let scrambled = perplexity(&["--file", scrambled.to_str().unwrap()]);
    assert!(
        (from_task - real).abs() < 1e-6 * real,
        "{from_task} vs {real}"
    );
    // SmolLM2-135M (from its Q4_1 GGUF) on 32-token blocks of short snippets: about 300.
    assert!(
        real > 1.0 && real < 1000.0,
        "perplexity of real reviews: {real}"
    );
    assert!(scrambled > 5.0 * real, "real {real}, scrambled {scrambled}");
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
    let text = succeeded(&out);
    assert!(
        text.contains("BertModel encoder (bert): 6 layers, hidden 384"),
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
    let cases: [(&[&str], &str); 5] = [
        (
            &["predict", "--model", "/no/such/model", "--text", "x"],
            "model '/no/such/model' is neither an existing path, a known model asset (minilm, \
             smollm2) nor a Hugging Face model id",
        ),
        (
            &["inspect", "--model", "minilm", "--targets-regex", "(query"],
            "invalid regular expression in target_modules: '(query'",
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
        fails_with(args, expected);
    }
}

#[test]
fn an_adapter_for_another_base_is_refused_naming_its_base() {
    let llama_adapter = fixtures_dir().join("smollm2/adapter");
    let bert_adapter = fixtures_dir().join("peft_bert_seqcls/adapter");
    let (llama_adapter, bert_adapter) = (
        llama_adapter.to_str().unwrap(),
        bert_adapter.to_str().unwrap(),
    );
    fails_with(
        &[
            "predict",
            "--model",
            "minilm",
            "--adapter",
            llama_adapter,
            "--text",
            "x",
        ],
        "it is a CAUSAL_LM adapter; a bare encoder takes a SEQ_CLS adapter (the adapter was made \
         for base model 'HuggingFaceTB/SmolLM2-135M-Instruct')",
    );
    fails_with(
        &[
            "generate",
            "--model",
            "smollm2",
            "--adapter",
            bert_adapter,
            "--prompt",
            "x",
        ],
        "which matches none of this model's layers (the adapter was made for base model",
    );
    fails_with(
        &[
            "merge",
            "--model",
            "smollm2",
            "--adapter",
            bert_adapter,
            "--out",
            "/tmp/never-written",
        ],
        "does not fit this model",
    );
    assert!(!std::path::Path::new("/tmp/never-written").exists());
}

#[test]
fn eval_generate_merge_and_export_mistakes_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("test.csv");
    std::fs::write(&data, "text,label\nfine film,positive\nodd film,meh\n").unwrap();
    let adapter = fixtures_dir().join("peft_bert_seqcls/adapter");
    let (data, adapter) = (data.to_str().unwrap(), adapter.to_str().unwrap());
    let with_adapter = |command: &'static str, rest: &[&'static str]| {
        let mut args = vec![command, "--model", "minilm", "--adapter", adapter];
        args.extend_from_slice(rest);
        args
    };
    let never = "/tmp/never-written";
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            [with_adapter("eval", &["--file"]), vec![data]].concat(),
            "label 'positive' is not one of the labels: LABEL_0, LABEL_1",
        ),
        (
            [
                with_adapter("eval", &["--text-col", "review", "--file"]),
                vec![data],
            ]
            .concat(),
            "no column 'review'; its columns are: text, label",
        ),
        (
            with_adapter("eval", &["--data", "movie-sentiment"]),
            "the model's labels (LABEL_0, LABEL_1) are not movie-sentiment's (negative, positive)",
        ),
        (
            with_adapter("generate", &["--prompt", "x"]),
            "does not generate text",
        ),
        (
            // Writing over an input is refused, even with --force.
            [with_adapter("merge", &["--force", "--out"]), vec![adapter]].concat(),
            "is one of the input directories",
        ),
        (
            with_adapter("merge", &["--dtype", "f8", "--out", never]),
            "unknown dtype 'f8'; choose one of f32, f16, bf16",
        ),
        (
            vec![
                "export",
                "--model",
                "minilm",
                "--adapter",
                data,
                "--out",
                never,
            ],
            "is not a LoRA adapter directory",
        ),
    ];
    for (args, expected) in cases {
        fails_with(&args, expected);
    }
    assert!(!std::path::Path::new(never).exists());
    // Invalid arguments are clap's: exit code 2 and the usage.
    let out = lora(&["eval", "--model", "minilm"]);
    assert_eq!(out.status.code(), Some(2));
}

/// A small labelled CSV of real movie-review snippets, with the user's own column and label
/// names.
fn write_movie_csv(dir: &std::path::Path, name: &str, n: usize, skip: usize) -> std::path::PathBuf {
    let task = lora_assets::BuiltinTask::MovieSentiment
        .load_from(&asset("movie-sentiment"))
        .unwrap();
    let mut text = String::from("review,sentiment\n");
    for e in task.train.iter().skip(skip).take(n) {
        let label = if e.label == 1 { "pos" } else { "neg" };
        text += &format!("\"{}\",{label}\n", e.text.replace('"', "\"\""));
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn train_on_a_csv_then_predict_with_the_trained_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let train = write_movie_csv(dir.path(), "train.csv", 64, 0);
    let dev = write_movie_csv(dir.path(), "dev.csv", 32, 64);
    let out = dir.path().join("run");
    let common = [
        "train",
        "--model",
        "minilm",
        "--train",
        train.to_str().unwrap(),
        "--dev",
        dev.to_str().unwrap(),
        "--text-col",
        "review",
        "--label-col",
        "sentiment",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--max-len",
        "32",
        "--out",
        out.to_str().unwrap(),
    ];
    let run = lora(&common);
    let summary = succeeded(&run);
    assert!(
        summary.contains("method lora") && summary.contains("accuracy"),
        "{summary}"
    );
    for file in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "metrics.json",
        "summary.txt",
        "labels.json",
        "run.toml",
    ] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    let dev_metrics = &metrics["epochs"][0]["dev"];
    for key in ["accuracy", "precision", "recall", "f1", "loss"] {
        assert!(dev_metrics[key].is_number(), "{key}: {dev_metrics}");
    }
    assert_eq!(
        metrics["params"]["trainable"],
        6 * 2 * 8 * 768 + 2 * 384 + 2
    );

    // The output directory is an adapter `predict` understands, with the user's label names.
    let predicted = json_of(&lora(&[
        "predict",
        "--model",
        "minilm",
        "--adapter",
        out.to_str().unwrap(),
        "--text",
        "A warm, funny and moving film.",
        "--json",
    ]));
    let label = predicted["predictions"][0]["label"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(label == "neg" || label == "pos", "{label}");

    // A second run into the same directory must not overwrite it.
    fails_with(&common, "already holds a checkpoint");
    fails_with(&common, "pass --resume to continue it");
}

#[test]
fn train_from_a_toml_config() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("head");
    let config = dir.path().join("train.toml");
    std::fs::write(
        &config,
        format!(
            "model = \"minilm\"\ndata = \"movie-sentiment\"\nmax_train = 32\nmax_dev = 16\nmax_len = 32\n\
             out = \"{}\"\n\n[training]\nepochs = 1\nbatch_size = 8\nlr = 0.001\n\n\
             [training.method]\nmethod = \"head\"\n",
            out.display()
        ),
    )
    .unwrap();
    let run = lora(&["train", "--config", config.to_str().unwrap(), "--quiet"]);
    succeeded(&run);
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["config"]["method"]["method"], "head");
    assert_eq!(metrics["params"]["trainable"], 2 * 384 + 2);
    assert_eq!(metrics["config"]["batch_size"], 8);
}

#[test]
fn train_mistakes_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let train = write_movie_csv(dir.path(), "train.csv", 16, 0);
    let bad_dev = dir.path().join("dev.csv");
    std::fs::write(&bad_dev, "review,sentiment\nfine,pos\nodd,meh\n").unwrap();
    let out = dir.path().join("out");
    let (t, d, o) = (
        train.to_str().unwrap(),
        bad_dev.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "train",
                "--model",
                "minilm",
                "--train",
                t,
                "--text-col",
                "txt",
                "--label-col",
                "sentiment",
                "--out",
                o,
            ],
            "no column 'txt'; its columns are: review, sentiment",
        ),
        (
            vec![
                "train",
                "--model",
                "minilm",
                "--train",
                t,
                "--dev",
                d,
                "--text-col",
                "review",
                "--label-col",
                "sentiment",
                "--out",
                o,
            ],
            "line 3: label 'meh' is not one of the labels: neg, pos",
        ),
        (
            vec![
                "train",
                "--model",
                "minilm",
                "--data",
                "movie-sentiment",
                "--r",
                "0",
                "--out",
                o,
            ],
            "r = 0",
        ),
        (
            vec![
                "train",
                "--model",
                "minilm",
                "--data",
                "movie-sentiment",
                "--method",
                "prefix",
                "--out",
                o,
            ],
            "unknown method 'prefix'; choose one of lora, ft",
        ),
        (
            vec!["train", "--model", "minilm", "--data", "imdb", "--out", o],
            "unknown task 'imdb'",
        ),
        (
            vec![
                "train",
                "--model",
                "minilm",
                "--data",
                "movie-sentiment",
                "--targets",
                "q_proj",
                "--out",
                o,
            ],
            "no module matched target_modules",
        ),
        (
            vec![
                "train",
                "--model",
                "/no/such/dir",
                "--data",
                "movie-sentiment",
                "--out",
                o,
            ],
            "model '/no/such/dir' is neither an existing path, a known model asset (minilm, \
             smollm2) nor a Hugging Face model id",
        ),
        (
            vec!["train", "--model", "minilm", "--out", o, "--resume"],
            "nothing to resume",
        ),
    ];
    for (args, expected) in cases {
        fails_with(&args, expected);
    }
}

/// `--model org/name` from a Hugging Face cache directory laid out as `huggingface_hub` does
/// (`models--org--name/refs/main`, `snapshots/<commit>/` with links to `blobs/`), offline.
#[test]
fn a_hugging_face_id_resolves_from_the_cache_offline() {
    let minilm = asset("minilm");
    let cache = tempfile::tempdir().unwrap();
    let repo = cache
        .path()
        .join("models--sentence-transformers--all-MiniLM-L6-v2");
    let commit = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf";
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    for (i, file) in ["config.json", "tokenizer.json", "model.safetensors"]
        .iter()
        .enumerate()
    {
        let blob = repo.join("blobs").join(format!("blob{i}"));
        std::fs::copy(minilm.join(file), &blob).unwrap();
        std::os::unix::fs::symlink(format!("../../blobs/blob{i}"), snapshot.join(file)).unwrap();
    }
    let adapter = fixtures_dir().join("peft_bert_seqcls/adapter");
    let run = |model: &str| {
        let out = std::process::Command::new(lora_tests::cli::lora_binary())
            .args(["predict", "--model", model, "--adapter"])
            .arg(&adapter)
            .args(["--json", "--text", "A gripping, beautifully acted film."])
            .env("BURN_DEVICE", "flex")
            .env("HF_HUB_CACHE", cache.path())
            .env("HF_HUB_OFFLINE", "1")
            .output()
            .unwrap();
        floats(&json_of(&out)["predictions"][0]["logits"])
    };
    let by_id = run("sentence-transformers/all-MiniLM-L6-v2");
    let by_path = run(minilm.to_str().unwrap());
    assert_eq!(by_id, by_path);
    // An id that is not in the cache, offline, names the cache it looked in.
    let out = std::process::Command::new(lora_tests::cli::lora_binary())
        .args(["inspect", "--model", "org/absent"])
        .env("HF_HUB_CACHE", cache.path())
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Hugging Face model org/absent@main"), "{err}");
    assert!(err.contains("HF_HUB_OFFLINE is set"), "{err}");
}

/// Every family through the command line: `inspect` names the family and lists its modules
/// under Hugging Face's names, and decoders `generate` and report perplexity with `eval`.
#[test]
fn every_family_is_inspected_and_decoders_generate_and_evaluate() {
    let families = [
        (
            "tiny_bert",
            "BertForSequenceClassification",
            "bert.encoder.layer.1.attention.self.query",
        ),
        (
            "tiny_roberta",
            "RobertaForSequenceClassification",
            "classifier.out_proj",
        ),
        (
            "tiny_xlm_roberta",
            "XLMRobertaForSequenceClassification",
            "roberta.encoder.layer.0.output.dense",
        ),
        (
            "tiny_distilbert",
            "DistilBertForSequenceClassification",
            "distilbert.transformer.layer.0.attention.q_lin",
        ),
        (
            "tiny_llama",
            "LlamaForCausalLM",
            "model.layers.1.mlp.down_proj",
        ),
        (
            "tiny_gpt2",
            "GPT2LMHeadModel",
            "transformer.h.0.attn.c_attn",
        ),
        (
            "tiny_qwen2",
            "Qwen2ForCausalLM",
            "model.layers.0.self_attn.q_proj",
        ),
        (
            "tiny_qwen3",
            "Qwen3ForCausalLM",
            "model.layers.0.self_attn.k_proj",
        ),
        (
            "tiny_mistral",
            "MistralForCausalLM",
            "model.layers.0.mlp.gate_proj",
        ),
        (
            "tiny_gemma2",
            "Gemma2ForCausalLM",
            "model.layers.2.self_attn.o_proj",
        ),
        (
            "tiny_gemma3",
            "Gemma3ForCausalLM",
            "model.layers.0.mlp.up_proj",
        ),
        (
            "tiny_phi3",
            "Phi3ForCausalLM",
            "model.layers.1.self_attn.qkv_proj",
        ),
    ];
    let corpus = tempfile::tempdir().unwrap();
    let text = corpus.path().join("corpus.txt");
    std::fs::write(
        &text,
        "The model is the one that reads the text.\nOnce upon a time the model wrote a story.\n",
    )
    .unwrap();
    for (fixture, class, module) in families {
        let model = fixtures_dir().join(fixture).join("model");
        let model = model.to_str().unwrap();
        let out = succeeded(&lora(&["inspect", "--model", model]));
        assert!(out.contains(class), "{fixture}: {out}");
        assert!(out.contains(module), "{fixture}: {out}");
        if class.ends_with("ForCausalLM") || class == "GPT2LMHeadModel" {
            let generated = json_of(&lora(&[
                "generate",
                "--model",
                model,
                "--prompt",
                "The model is",
                "--max-new-tokens",
                "4",
                "--json",
            ]));
            assert!(
                generated.to_string().contains("The model is"),
                "{fixture}: {generated}"
            );
            let eval = json_of(&lora(&[
                "eval",
                "--model",
                model,
                "--file",
                text.to_str().unwrap(),
                "--max-len",
                "8",
                "--json",
            ]));
            let ppl = eval["metrics"]["perplexity"]
                .as_f64()
                .unwrap_or_else(|| panic!("{fixture}: {eval}"));
            assert!(ppl.is_finite() && ppl > 1.0, "{fixture}: perplexity {ppl}");
        }
    }
}

/// `lora conformance` checks a family against transformers and PEFT on a device and fails,
/// naming the fixture, when held to a tolerance no f32 computation meets.
#[test]
fn conformance_checks_fixtures_and_reports_failures() {
    let fixtures = fixtures_dir();
    let fixtures = fixtures.to_str().unwrap();
    let out = succeeded(&lora(&[
        "conformance",
        fixtures,
        "--only",
        "tiny_gpt2",
        "--device",
        "flex",
    ]));
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["fixture"], "tiny_gpt2");
    assert_eq!(report["passed"], true);
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for expected in [
        "prompt 0: adapter active",
        "prompt 1: merged",
        "prompt 0: greedy adapter continuation",
        "adapter tensors written back bit for bit",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    fails_with(
        &[
            "conformance",
            fixtures,
            "--only",
            "tiny_gpt2",
            "--tolerance",
            "1e-12",
        ],
        "1 of 1 fixtures failed on flex: tiny_gpt2",
    );
    fails_with(
        &["conformance", fixtures, "--only", "no_such_family"],
        "no fixture matches",
    );
    fails_with(
        &["conformance", "/nonexistent-fixtures"],
        "reading fixtures /nonexistent-fixtures",
    );
}

/// `lora device` opens the backend, checks a product on it and says what it is.
#[test]
fn device_reports_the_backend() {
    let json = json_of(&lora(&["device", "--device", "flex"]));
    assert!(
        json["info"]["device"].as_str().unwrap().contains("Flex"),
        "{json}"
    );
    assert!(
        json["compiled_backends"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("flex"))
    );
    fails_with(&["device", "--device", "tpu"], "valid choices");
}

#[test]
fn a_quantized_base_trains_generates_and_refuses_to_merge() {
    // QLoRA's recipe on the tiny Llama checkpoint: the frozen base held as q8, activations
    // recomputed in the backward pass; the loss falls, the summary says where the memory went,
    // the adapter generates on the q8 base, merging into it is refused, and methods that
    // train the base are refused a quantized one.
    let model = fixtures_dir().join("tiny_llama/model");
    let model = model.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus.txt");
    let lines: Vec<String> = (0..16)
        .map(|i| format!("the quick brown fox {i} jumps over the lazy dog {i}"))
        .collect();
    std::fs::write(&corpus, lines.join("\n")).unwrap();
    let out = dir.path().join("run");
    let (c, o) = (corpus.to_str().unwrap(), out.to_str().unwrap());
    let train = [
        "train",
        "--model",
        model,
        "--train",
        c,
        "--max-len",
        "16",
        "--batch-size",
        "4",
        "--epochs",
        "3",
        "--lr",
        "1e-2",
        "--base-dtype",
        "q8",
        "--checkpoint-activations",
        "--out",
        o,
        "--quiet",
    ];
    succeeded(&lora(&train));
    let summary = std::fs::read_to_string(out.join("summary.txt")).unwrap();
    assert!(summary.contains("memory: base"), "{summary}");
    assert!(
        summary.contains("base weights held as q8 · activations recomputed"),
        "{summary}"
    );
    let losses: Vec<f64> = summary
        .lines()
        .filter_map(|l| l.split("train loss ").nth(1))
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(losses.len(), 3, "{summary}");
    assert!(losses[2] < losses[0], "the loss did not fall: {losses:?}");

    let generated = json_of(&lora(&[
        "generate",
        "--model",
        model,
        "--adapter",
        o,
        "--base-dtype",
        "q8",
        "--prompt",
        "the quick",
        "--max-new-tokens",
        "4",
        "--json",
    ]));
    assert!(
        generated["generations"][0]["token_ids"]
            .as_array()
            .is_some(),
        "{generated}"
    );

    let merged = dir.path().join("merged");
    fails_with(
        &[
            "merge",
            "--model",
            model,
            "--adapter",
            o,
            "--base-dtype",
            "q8",
            "--out",
            merged.to_str().unwrap(),
        ],
        "the base weight is stored as q8 and merging needs an f32 base",
    );
    // The same adapter merges onto the f32 base.
    succeeded(&lora(&[
        "merge",
        "--model",
        model,
        "--adapter",
        o,
        "--out",
        merged.to_str().unwrap(),
    ]));

    let ft_out = dir.path().join("ft");
    fails_with(
        &[
            "train",
            "--model",
            model,
            "--train",
            c,
            "--method",
            "ft",
            "--base-dtype",
            "q4",
            "--out",
            ft_out.to_str().unwrap(),
        ],
        "trains the base weights, which need --base-dtype f32",
    );
    let bad = lora(&[
        "train",
        "--model",
        model,
        "--train",
        c,
        "--base-dtype",
        "int3",
    ]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("valid choices: f32, f16, bf16, q8, q4"),
        "{err}"
    );
}
