//! Tokenizers: Hugging Face `tokenizer.json` files (with their padding / truncation presets
//! switched off, because batching is ours), and byte-level BPE tokenizers rebuilt from a GGUF
//! file's `tokenizer.ggml.*` metadata.

use std::path::Path;

use serde_json::{Value, json};
use tokenizers::Tokenizer;

use crate::error::{ModelError, Result};
use crate::gguf::{GgufFile, GgufValue};

/// Loads a `tokenizer.json`, turning off any padding and truncation it presets (MiniLM's pads
/// to 128 and truncates at 128): callers pad per batch and truncate to their own `max_len`.
pub fn load_tokenizer_json(path: &Path) -> Result<Tokenizer> {
    let context = || format!("reading {}", path.display());
    // The tokenizers crate panics on some malformed files (a `decoder` object of no known
    // shape, found by fuzzing) instead of returning its error: that panic becomes this error.
    let loaded = std::panic::catch_unwind(|| Tokenizer::from_file(path)).map_err(|_| {
        ModelError::Tokenizer {
            context: context(),
            reason: "the file is not a valid tokenizer.json (the tokenizers library could \
                     not read it)"
                .into(),
        }
    })?;
    let mut tokenizer = loaded.map_err(|e| ModelError::Tokenizer {
        context: context(),
        reason: e.to_string(),
    })?;
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(None)
        .map_err(|e| ModelError::Tokenizer {
            context: "disabling truncation".into(),
            reason: e.to_string(),
        })?;
    usable(tokenizer, &context())
}

/// Checks that a loaded tokenizer encodes a text and a pair of texts. The tokenizers crate
/// accepts files it then panics on when encoding (a post-processor template naming a token
/// the vocabulary lacks, found by fuzzing); such a file is refused here, once, instead of
/// failing in the middle of a run.
fn usable(tokenizer: Tokenizer, context: &str) -> Result<Tokenizer> {
    let probe = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        tokenizer
            .encode("Hello, world: 12 tokens.", true)
            .and_then(|_| tokenizer.encode(("A first text.", "A second one."), true))
            .map(|_| ())
    }));
    match probe {
        Ok(Ok(())) => Ok(tokenizer),
        Ok(Err(e)) => Err(ModelError::Tokenizer {
            context: context.to_string(),
            reason: format!("it cannot encode a plain text: {e}"),
        }),
        Err(_) => Err(ModelError::Tokenizer {
            context: context.to_string(),
            reason: "it is inconsistent: the tokenizers library fails encoding a plain text \
                     with it (a post-processor or special token that the vocabulary lacks?)"
                .into(),
        }),
    }
}

/// Pre-tokenizers for the `tokenizer.ggml.pre` values we know, as `tokenizer.json` fragments.
fn pre_tokenizer(pre: &str) -> Option<Value> {
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    match pre {
        // SmolLM2 (and its tokenizer.json): single digits first, then GPT-2's byte-level split.
        "smollm" => Some(json!({
            "type": "Sequence",
            "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level]
        })),
        // llama.cpp writes "gpt-2" for GPT-2's own split.
        "default" | "gpt2" | "gpt-2" => Some(byte_level),
        _ => None,
    }
}

const SUPPORTED_PRE: &str = "smollm, gpt2 (gpt-2), default";

/// Rebuilds the tokenizer stored in a GGUF file's metadata: a byte-level BPE (`gpt2` model)
/// with its vocabulary, merges and special tokens. No post-processor is added, so no BOS is
/// inserted, as with the `tokenizer.json` that Hugging Face converts from the same file.
pub fn tokenizer_from_gguf(file: &GgufFile) -> Result<Tokenizer> {
    let err = |reason: String| ModelError::Tokenizer {
        context: "rebuilding the tokenizer from GGUF metadata".into(),
        reason,
    };
    let model = file
        .get("tokenizer.ggml.model")
        .and_then(GgufValue::as_str)
        .ok_or_else(|| err("no tokenizer.ggml.model".into()))?;
    if model != "gpt2" {
        return Err(err(format!(
            "tokenizer.ggml.model '{model}' is not supported (only 'gpt2', byte-level BPE)"
        )));
    }
    let pre_name = file
        .get("tokenizer.ggml.pre")
        .and_then(GgufValue::as_str)
        .unwrap_or("default");
    let pre = pre_tokenizer(pre_name).ok_or_else(|| {
        err(format!(
            "tokenizer.ggml.pre '{pre_name}' is not supported (supported: {SUPPORTED_PRE})"
        ))
    })?;
    let strings = |key: &str| -> Result<Vec<String>> {
        file.get(key)
            .and_then(GgufValue::as_array)
            .ok_or_else(|| err(format!("no {key} array")))?
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| err(format!("{key} holds a non-string")))
            })
            .collect()
    };
    let tokens = strings("tokenizer.ggml.tokens")?;
    let merges = strings("tokenizer.ggml.merges")?;
    let types: Vec<u64> = file
        .get("tokenizer.ggml.token_type")
        .and_then(GgufValue::as_array)
        .map(|a| a.iter().map(|v| v.as_u64().unwrap_or(1)).collect())
        .unwrap_or_default();
    let vocab: serde_json::Map<String, Value> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), json!(i)))
        .collect();
    // ggml token types: 3 = control (special), 4 = user-defined (added, not special).
    let added: Vec<Value> = types
        .iter()
        .enumerate()
        .filter(|(_, ty)| **ty == 3 || **ty == 4)
        .map(|(id, ty)| {
            json!({
                "id": id, "content": tokens[id], "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": *ty == 4, "special": *ty == 3
            })
        })
        .collect();
    let spec = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre,
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
            "ignore_merges": false, "vocab": vocab, "merges": merges
        }
    });
    let tokenizer = spec
        .to_string()
        .parse::<Tokenizer>()
        .map_err(|e| err(e.to_string()))?;
    usable(tokenizer, "the GGUF file's tokenizer")
}
