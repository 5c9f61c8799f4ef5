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
    let mut tokenizer = Tokenizer::from_file(path).map_err(|e| ModelError::Tokenizer {
        context: format!("reading {}", path.display()),
        reason: e.to_string(),
    })?;
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(None)
        .map_err(|e| ModelError::Tokenizer {
            context: "disabling truncation".into(),
            reason: e.to_string(),
        })?;
    Ok(tokenizer)
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
        "default" | "gpt2" => Some(byte_level),
        _ => None,
    }
}

const SUPPORTED_PRE: &str = "smollm, gpt2, default";

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
    spec.to_string()
        .parse::<Tokenizer>()
        .map_err(|e| err(e.to_string()))
}

/// A tokenized batch, right-padded to its longest sequence, row-major `[batch, seq]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedBatch {
    /// Token ids (padding positions hold the pad id).
    pub input_ids: Vec<i64>,
    /// 1 for tokens, 0 for padding.
    pub attention_mask: Vec<i64>,
    /// Segment ids (0 for padding).
    pub token_type_ids: Vec<i64>,
    /// Number of sequences.
    pub batch: usize,
    /// Length of the longest sequence.
    pub seq: usize,
}

/// Makes `tokenizer` truncate every encoding to `max_len` tokens (special tokens included), or
/// stop truncating with `None`.
pub fn set_max_len(tokenizer: &mut Tokenizer, max_len: Option<usize>) -> Result<()> {
    let params = max_len.map(|max_length| tokenizers::TruncationParams {
        max_length,
        ..Default::default()
    });
    tokenizer
        .with_truncation(params)
        .map(|_| ())
        .map_err(|e| ModelError::Tokenizer {
            context: format!("setting max_len {max_len:?}"),
            reason: e.to_string(),
        })
}

/// Encodes texts (or text pairs) with special tokens and pads them on the right with `pad_id`
/// to the longest in the batch: dynamic padding, whatever the tokenizer file presets.
pub fn encode_batch(
    tokenizer: &Tokenizer,
    texts: &[(&str, Option<&str>)],
    pad_id: u32,
) -> Result<EncodedBatch> {
    let encodings = texts
        .iter()
        .map(|(a, b)| match b {
            Some(b) => tokenizer.encode((*a, *b), true),
            None => tokenizer.encode(*a, true),
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| ModelError::Tokenizer {
            context: "encoding a batch".into(),
            reason: e.to_string(),
        })?;
    let seq = encodings.iter().map(|e| e.len()).max().unwrap_or(0);
    let batch = encodings.len();
    let mut out = EncodedBatch {
        input_ids: Vec::with_capacity(batch * seq),
        attention_mask: Vec::with_capacity(batch * seq),
        token_type_ids: Vec::with_capacity(batch * seq),
        batch,
        seq,
    };
    for e in &encodings {
        let pad = seq - e.len();
        out.input_ids.extend(e.get_ids().iter().map(|&i| i as i64));
        out.input_ids
            .extend(std::iter::repeat_n(pad_id as i64, pad));
        out.attention_mask.extend(std::iter::repeat_n(1, e.len()));
        out.attention_mask.extend(std::iter::repeat_n(0, pad));
        out.token_type_ids
            .extend(e.get_type_ids().iter().map(|&i| i as i64));
        out.token_type_ids.extend(std::iter::repeat_n(0, pad));
    }
    Ok(out)
}
