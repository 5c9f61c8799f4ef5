//! A model's chat template and the tokens that end its turns, read from a Hugging Face
//! directory (`tokenizer_config.json`, `chat_template.jinja`, `generation_config.json`) or a
//! GGUF file (`tokenizer.chat_template`, `tokenizer.ggml.*_token_id`).

use std::path::Path;

use lora_data::chat::{ChatTemplate, SpecialTokens};
use lora_models::ModelSource;
use tokenizers::Tokenizer;

use crate::error::Result;

/// The chat template of a model: `file` when given (a Jinja template, `--chat-template`), else
/// the model's own
/// (`tokenizer_config.json` / `chat_template.jinja` of a directory, `tokenizer.chat_template` of
/// a GGUF file); `None` when the model has none.
pub fn model_chat_template(
    source: &ModelSource,
    tokenizer: &Tokenizer,
    file: Option<&Path>,
) -> Result<Option<ChatTemplate>> {
    let special = || special_tokens(source, tokenizer);
    if let Some(file) = file {
        return Ok(Some(ChatTemplate::from_file(file, special()?)?));
    }
    match source {
        ModelSource::HfDir(dir) => {
            let has = dir.join("chat_template.jinja").is_file()
                || dir.join("chat_template.json").is_file()
                || std::fs::read_to_string(dir.join("tokenizer_config.json"))
                    .is_ok_and(|t| t.contains("\"chat_template\""));
            if !has {
                return Ok(None);
            }
            Ok(Some(ChatTemplate::from_model_dir(dir, None)?))
        }
        ModelSource::Gguf(path) => {
            let file = lora_models::GgufFile::open(path)?;
            let Some(source) = file
                .get("tokenizer.chat_template")
                .and_then(lora_models::gguf::GgufValue::as_str)
            else {
                return Ok(None);
            };
            Ok(Some(ChatTemplate::new(
                source,
                format!("{}, tokenizer.chat_template", path.display()),
                special()?,
            )?))
        }
    }
}

/// The special tokens templates see (`bos_token`, `eos_token`): from `tokenizer_config.json`,
/// or from a GGUF file's `tokenizer.ggml.*_token_id`.
fn special_tokens(source: &ModelSource, tokenizer: &Tokenizer) -> Result<SpecialTokens> {
    match source {
        ModelSource::HfDir(dir) => {
            let config = dir.join("tokenizer_config.json");
            Ok(if config.is_file() {
                SpecialTokens::from_tokenizer_config(&config)?
            } else {
                SpecialTokens::default()
            })
        }
        ModelSource::Gguf(path) => {
            let file = lora_models::GgufFile::open(path)?;
            let token = |key: &str| {
                file.get(key)
                    .and_then(lora_models::gguf::GgufValue::as_u64)
                    .and_then(|id| tokenizer.id_to_token(id as u32))
            };
            Ok(SpecialTokens {
                bos: token("tokenizer.ggml.bos_token_id"),
                eos: token("tokenizer.ggml.eos_token_id"),
                ..SpecialTokens::default()
            })
        }
    }
}

/// The ids that end generation: the model's `eos_token_id`s, the `eos_token_id`s of
/// `generation_config.json`, and the chat template's end token (`<|im_end|>`, `<|eot_id|>`, …).
pub fn stop_tokens(
    source: &ModelSource,
    tokenizer: &Tokenizer,
    template: Option<&ChatTemplate>,
) -> Vec<u32> {
    let mut stops = Vec::new();
    if let ModelSource::HfDir(dir) = source
        && let Ok(text) = std::fs::read_to_string(dir.join("generation_config.json"))
        && let Ok(json) = serde_json::from_str::<serde_json::Value>(&text)
    {
        match &json["eos_token_id"] {
            serde_json::Value::Number(n) => stops.extend(n.as_u64().map(|v| v as u32)),
            serde_json::Value::Array(a) => {
                stops.extend(a.iter().filter_map(|v| v.as_u64()).map(|v| v as u32))
            }
            _ => {}
        }
    }
    if let Some(eos) = template.and_then(|t| t.special_tokens().eos.as_deref())
        && let Some(id) = tokenizer.token_to_id(eos)
    {
        stops.push(id);
    }
    stops.sort_unstable();
    stops.dedup();
    stops
}
