//! Instruction tuning through the command line on the tiny Llama fixture (its tokenizer carries
//! Llama 3's chat template): train on prompt / completion JSONL with completion-only loss,
//! evaluate by generation, chat with the adapter, and the mistakes a user makes with such data.

use std::path::{Path, PathBuf};

use lora_tests::cli::{fails_with, json_of, lora, succeeded};
use lora_tests::fixtures_dir;

fn model() -> String {
    fixtures_dir()
        .join("tiny_llama/model")
        .to_string_lossy()
        .into_owned()
}

fn write(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// Questions whose answer is always "yes": a tiny random model learns it in a few steps.
fn questions(range: std::ops::Range<usize>) -> Vec<String> {
    range
        .map(|i| format!(r#"{{"prompt": "Is {i} a number?", "completion": "yes"}}"#))
        .collect()
}

#[test]
fn train_on_prompt_completion_data_then_generate_the_learned_answers() {
    let dir = tempfile::tempdir().unwrap();
    let train = write(dir.path(), "train.jsonl", &questions(0..40));
    let test = write(dir.path(), "test.jsonl", &questions(100..108));
    let out = dir.path().join("run");
    let (train, test, out) = (
        train.to_str().unwrap(),
        test.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    let model = model();
    let eval = |adapter: Option<&str>| {
        let mut args = vec![
            "eval",
            "--model",
            &model,
            "--file",
            test,
            "--max-new-tokens",
            "3",
            "--json",
        ];
        if let Some(a) = adapter {
            args.extend(["--adapter", a]);
        }
        let args: Vec<String> = args.into_iter().map(str::to_string).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        json_of(&lora(&args))["generation"]["exact_match"]
            .as_f64()
            .unwrap()
    };
    let before = eval(None);
    let log = succeeded(&lora(&[
        "train",
        "--model",
        &model,
        "--train",
        train,
        "--max-len",
        "48",
        "--epochs",
        "3",
        "--batch-size",
        "8",
        "--lr",
        "0.01",
        "--r",
        "8",
        "--targets",
        "q_proj,v_proj,o_proj",
        "--out",
        out,
        "--quiet",
    ]));
    assert!(log.is_empty(), "--quiet prints nothing: {log}");
    assert!(Path::new(out).join("adapter_model.safetensors").is_file());
    let after = eval(Some(out));
    assert!(
        before < 0.5 && after >= 0.99,
        "exact match before {before}, after {after}"
    );
    let reply = succeeded(&lora(&[
        "generate",
        "--model",
        &model,
        "--adapter",
        out,
        "--chat",
        "--prompt",
        "Is 7 a number?",
        "--max-new-tokens",
        "3",
    ]));
    assert_eq!(reply.trim(), "yes");
}

#[test]
fn packing_and_conversations_train_too() {
    let dir = tempfile::tempdir().unwrap();
    let chats: Vec<String> = (0..24)
        .map(|i| {
            format!(
                r#"{{"messages": [{{"role": "user", "content": "Is {i} a number?"}}, {{"role": "assistant", "content": "yes"}}]}}"#
            )
        })
        .collect();
    let train = write(dir.path(), "chats.jsonl", &chats);
    let out = dir.path().join("run");
    let text = succeeded(&lora(&[
        "train",
        "--model",
        &model(),
        "--train",
        train.to_str().unwrap(),
        "--max-len",
        "48",
        "--packing",
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(text.contains("perplexity"), "{text}");
}

#[test]
fn bad_instruction_data_is_a_clear_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = out.to_str().unwrap().to_string();
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "malformed.jsonl",
            vec![
                questions(0..3)[0].clone(),
                r#"{"prompt": "x", "completion": "#.into(),
            ],
            "malformed.jsonl, line 2: invalid JSON",
        ),
        (
            "missing.jsonl",
            vec![r#"{"prompt": "x", "answer": "y"}"#.into()],
            "line 1: no 'completion' field",
        ),
        (
            "role.jsonl",
            vec![r#"{"messages": [{"role": "robot", "content": "x"}]}"#.into()],
            "message 1 has role 'robot'; valid roles: system, user, assistant",
        ),
        (
            "empty.jsonl",
            vec![r#"{"messages": []}"#.into()],
            "line 1: the conversation is empty",
        ),
    ];
    for (name, lines, expected) in cases {
        let file = write(dir.path(), name, &lines);
        fails_with(
            &[
                "train",
                "--model",
                &model(),
                "--train",
                file.to_str().unwrap(),
                "--out",
                &o,
            ],
            expected,
        );
        assert!(!out.exists(), "{name}: nothing may be written to --out");
    }
    // Gemma 2's template refuses a system turn, by raising.
    let gemma = fixtures_dir().join("tiny_gemma2/model");
    let system = write(
        dir.path(),
        "system.jsonl",
        &vec![r#"{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}"#.to_string(); 3],
    );
    fails_with(
        &[
            "train",
            "--model",
            gemma.to_str().unwrap(),
            "--train",
            system.to_str().unwrap(),
            "--out",
            &o,
        ],
        "System role not supported",
    );
    assert!(!out.exists());
    // Conversations need a template: GPT-2 has none.
    let gpt2 = fixtures_dir().join("tiny_gpt2/model");
    let chats = write(
        dir.path(),
        "chats.jsonl",
        &vec![r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}"#.to_string(); 3],
    );
    fails_with(
        &[
            "train",
            "--model",
            gpt2.to_str().unwrap(),
            "--train",
            chats.to_str().unwrap(),
            "--out",
            &o,
        ],
        "chat template",
    );
    assert!(!out.exists());
}

#[test]
fn examples_longer_than_max_len_keep_their_answers_and_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = questions(0..20);
    let long_prompt =
        "Is this a very long question that goes on and on and on and on and on ".repeat(3);
    lines.push(format!(
        r#"{{"prompt": "{long_prompt}?", "completion": "yes"}}"#
    ));
    let train = write(dir.path(), "train.jsonl", &lines);
    let out = lora(&[
        "train",
        "--model",
        &model(),
        "--train",
        train.to_str().unwrap(),
        "--max-len",
        "32",
        "--epochs",
        "1",
        "--out",
        dir.path().join("run").to_str().unwrap(),
    ]);
    succeeded(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "were longer than --max-len 32: their prompts were cut from the left (answers kept)"
        ),
        "{stderr}"
    );
}
