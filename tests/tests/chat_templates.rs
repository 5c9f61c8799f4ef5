//! Chat templates render and tokenize conversations exactly as transformers'
//! `apply_chat_template(..., tokenize=True)` does (`xtask/fixtures/chat_template_fixture.py`):
//! every tiny decoder fixture's real template with its `tokenizer.json`, and SmolLM2-135M-Instruct's
//! own template and tokenizer, read from its GGUF through the project's asset code.

use lora_data::ChatTemplate;
use lora_models::{GgufFile, ModelSource, tokenizer::tokenizer_from_gguf};
use lora_tests::{check_chat_renders, fixtures_dir};

fn read_json(relative: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures_dir().join(relative)).unwrap()).unwrap()
}

#[test]
fn every_family_s_template_matches_transformers() {
    let fixture = read_json("chat_templates.json");
    let families = fixture["fixtures"].as_object().unwrap();
    assert!(families.len() >= 11, "{}", families.len());
    let mut checked = 0;
    for (dir, cases) in families {
        let model = fixtures_dir().join(dir).join("model");
        let template = ChatTemplate::from_model_dir(&model, None).unwrap();
        let tokenizer = tokenizers::Tokenizer::from_file(model.join("tokenizer.json")).unwrap();
        let encode = |text: &str| tokenizer.encode(text, false).unwrap().get_ids().to_vec();
        checked += check_chat_renders(dir, &template, encode, &fixture["conversations"], cases);
    }
    assert_eq!(checked, 2 * families.len());
}

#[test]
fn smollm2_s_own_template_and_tokens_match_transformers() {
    let fixture = read_json("smollm2/chat_template.json");
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
    let checked = check_chat_renders(
        "smollm2",
        &template,
        encode,
        &fixture["conversations"],
        &fixture["renders"],
    );
    assert_eq!(checked, 2);
    // Both conversations have two assistant turns, so four generation prompts were checked.
    for case in fixture["renders"].as_object().unwrap().values() {
        assert_eq!(case["prefixes"].as_array().unwrap().len(), 2);
    }
}
