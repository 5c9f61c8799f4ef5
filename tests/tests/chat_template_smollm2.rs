//! SmolLM2-135M-Instruct's own chat template and tokenizer, read from its GGUF through the
//! project's asset code, render and tokenize conversations exactly as transformers'
//! `apply_chat_template(..., tokenize=True)` does on the same file
//! (`tests/fixtures/smollm2/chat_template.json`, written by
//! `xtask/fixtures/chat_template_fixture.py`).

use lora_data::sft::Message;
use lora_models::{GgufFile, ModelSource, tokenizer::tokenizer_from_gguf};

fn messages_of(value: &serde_json::Value) -> Vec<Message> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let content = m["content"].as_str().unwrap();
            match m["role"].as_str().unwrap() {
                "system" => Message::system(content),
                "user" => Message::user(content),
                "assistant" => Message::assistant(content),
                other => panic!("unexpected role {other}"),
            }
        })
        .collect()
}

fn ids_of(value: &serde_json::Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn smollm2_template_and_tokens_match_transformers() {
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(lora_tests::fixtures_dir().join("smollm2/chat_template.json"))
            .unwrap(),
    )
    .unwrap();
    let gguf = lora_tests::asset("smollm2");
    assert_eq!(
        gguf.file_name().unwrap().to_str().unwrap(),
        fixture["gguf"].as_str().unwrap()
    );
    let tokenizer = tokenizer_from_gguf(&GgufFile::open(&gguf).unwrap()).unwrap();
    let template =
        lora_eval::chat::model_chat_template(&ModelSource::path(&gguf), &tokenizer, None)
            .unwrap()
            .expect("SmolLM2's GGUF carries a chat template");
    let encode = |text: &str| tokenizer.encode(text, false).unwrap().get_ids().to_vec();
    let renders = fixture["renders"].as_object().unwrap();
    assert_eq!(renders.len(), 2);
    for (name, expected) in renders {
        let messages = messages_of(&fixture["conversations"][name]);
        let text = template.render(&messages, false).unwrap();
        assert_eq!(text, expected["text"].as_str().unwrap(), "{name}");
        assert_eq!(encode(&text), ids_of(&expected["ids"]), "{name} ids");
        let prefixes = expected["prefixes"].as_array().unwrap();
        assert_eq!(prefixes.len(), 2, "{name}: one prompt per assistant turn");
        for prefix in prefixes {
            let turn = prefix["turn"].as_u64().unwrap() as usize;
            let text = template.render(&messages[..turn], true).unwrap();
            assert_eq!(
                text,
                prefix["text"].as_str().unwrap(),
                "{name} prefix {turn}"
            );
            assert_eq!(
                encode(&text),
                ids_of(&prefix["ids"]),
                "{name} prefix {turn} ids"
            );
        }
    }
}
