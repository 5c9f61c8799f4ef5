//! Decoders from GGUF files (llama.cpp's format): the config rebuilt from the file's
//! `{arch}.*` metadata as a Hugging Face `config.json`, and the tensors seen through Hugging Face
//! names, with what llama.cpp's converter changed undone (Llama's Q/K row permutation, Gemma's
//! `1 + w` norm weights, GPT-2's transposed `Conv1D` weights).

use std::path::Path;

use lora_core::QuantBlocks;
use serde_json::{Map, Value, json};

use super::config::{DecoderConfig, DecoderFamily};
use crate::config_json::ConfigJson;
use crate::error::{ModelError, Result};
use crate::gguf::{GgufFile, GgufValue};
use crate::weights::{HostTensor, WeightSource};

/// The GGUF architectures read here, with the family each becomes.
pub const GGUF_ARCHITECTURES: [(&str, DecoderFamily); 7] = [
    ("llama", DecoderFamily::Llama),
    ("qwen2", DecoderFamily::Qwen2),
    ("qwen3", DecoderFamily::Qwen3),
    ("gemma2", DecoderFamily::Gemma2),
    ("gemma3", DecoderFamily::Gemma3),
    ("phi3", DecoderFamily::Phi3),
    ("gpt2", DecoderFamily::Gpt2),
];

/// llama.cpp's per-block tensor names against Hugging Face's (relative to `blk.N.` and the
/// family's layer list). Which rows apply depends on the family's names.
fn layer_names(family: DecoderFamily) -> Vec<(&'static str, String)> {
    let n = family.names();
    let mut rows: Vec<(&'static str, Option<&'static str>)> = vec![
        ("attn_norm", Some(n.input_norm)),
        ("attn_q", n.q),
        ("attn_k", n.k),
        ("attn_v", n.v),
        ("attn_qkv", n.qkv),
        ("attn_output", Some(n.o)),
        ("attn_q_norm", Some(n.q_norm)),
        ("attn_k_norm", Some(n.k_norm)),
        ("ffn_gate", n.gate),
        ("ffn_down", Some(n.down)),
        ("post_attention_norm", n.post_attention_norm),
        ("post_ffw_norm", n.post_mlp_norm),
        ("ffn_norm", Some(n.pre_mlp_norm)),
    ];
    // Phi-3 keeps gate|up fused under llama.cpp's `ffn_up`.
    rows.push(("ffn_up", n.up.or(n.gate_up)));
    rows.into_iter()
        .filter_map(|(g, h)| Some((g, h?.to_string())))
        .collect()
}

fn global_names(family: DecoderFamily) -> Vec<(&'static str, String)> {
    let n = family.names();
    let mut rows = vec![
        ("token_embd", n.embed_tokens.to_string()),
        ("output_norm", n.final_norm.to_string()),
        ("output", n.lm_head.to_string()),
    ];
    if let Some(pos) = n.embed_positions {
        rows.push(("position_embd", pos.to_string()));
    }
    rows
}

/// llama.cpp's name of a Hugging Face tensor key of a `family` model (`….weight` / `….bias`),
/// e.g. `model.layers.3.self_attn.q_proj.weight` → `blk.3.attn_q.weight`.
pub fn gguf_tensor_name(family: DecoderFamily, hf: &str) -> Option<String> {
    let (module, param) = hf.rsplit_once('.')?;
    for (g, h) in global_names(family) {
        if h == module {
            return Some(format!("{g}.{param}"));
        }
    }
    let layers = family.names().layers;
    let (index, rest) = module
        .strip_prefix(layers)?
        .strip_prefix('.')?
        .split_once('.')?;
    let (g, _) = layer_names(family).into_iter().find(|(_, h)| h == rest)?;
    Some(format!("blk.{index}.{g}.{param}"))
}

/// A GGUF decoder file seen through Hugging Face tensor names.
pub struct GgufDecoderWeights<'a> {
    file: &'a GgufFile,
    family: DecoderFamily,
    heads: usize,
    kv_heads: usize,
}

impl<'a> GgufDecoderWeights<'a> {
    /// Wraps a parsed GGUF file of a model with `config`.
    pub fn new(file: &'a GgufFile, config: &DecoderConfig) -> Self {
        Self {
            file,
            family: config.family,
            heads: config.num_heads,
            kv_heads: config.num_kv_heads,
        }
    }

    /// The GGUF name of a Hugging Face tensor key (`….weight` / `….bias`).
    fn gguf_name(&self, hf: &str) -> Option<String> {
        gguf_tensor_name(self.family, hf)
    }

    /// The heads of `key` when llama.cpp permuted its rows for its interleaved RoPE (Llama's and
    /// Mistral's q/k projections).
    fn permuted_heads(&self, key: &str) -> Option<usize> {
        let n = self.family.names();
        match self.family {
            DecoderFamily::Llama | DecoderFamily::Mistral if module_of(key, n.q) => {
                Some(self.heads)
            }
            DecoderFamily::Llama | DecoderFamily::Mistral if module_of(key, n.k) => {
                Some(self.kv_heads)
            }
            _ => None,
        }
    }

    /// The Hugging Face key of a GGUF tensor name.
    fn hf_name(&self, gguf: &str) -> Option<String> {
        let (module, param) = gguf.rsplit_once('.')?;
        for (g, h) in global_names(self.family) {
            if g == module {
                return Some(format!("{h}.{param}"));
            }
        }
        let (index, rest) = module.strip_prefix("blk.")?.split_once('.')?;
        let (_, h) = layer_names(self.family)
            .into_iter()
            .find(|(g, _)| *g == rest)?;
        Some(format!(
            "{}.{index}.{h}.{param}",
            self.family.names().layers
        ))
    }
}

impl WeightSource for GgufDecoderWeights<'_> {
    fn source_name(&self) -> String {
        self.file.source_name()
    }

    fn keys(&self) -> Vec<String> {
        let names = self
            .file
            .tensors
            .iter()
            .filter_map(|t| self.hf_name(&t.name));
        names.collect()
    }

    fn contains(&self, key: &str) -> bool {
        self.gguf_name(key)
            .is_some_and(|g| self.file.tensor_info(&g).is_some())
    }

    fn read(&self, key: &str) -> Result<HostTensor> {
        let gguf = self
            .gguf_name(key)
            .ok_or_else(|| ModelError::MissingTensor {
                key: key.to_string(),
                source_name: self.source_name(),
            })?;
        let mut tensor = self.file.read_tensor(&gguf)?;
        let n = self.family.names();
        let is = |module: Option<&str>| module_of(key, module);
        if let Some(heads) = self.permuted_heads(key) {
            tensor.data = unpermute_rows(&tensor, heads)?;
        }
        match self.family {
            // llama.cpp stores Gemma's RMSNorm weights as `1 + w`.
            DecoderFamily::Gemma2 | DecoderFamily::Gemma3 if key.ends_with("norm.weight") => {
                tensor.data.iter_mut().for_each(|w| *w -= 1.0);
            }
            // llama.cpp stores GPT-2's Conv1D weights as Linear ones (`[out, in]`).
            DecoderFamily::Gpt2 => {
                let conv = [n.qkv, Some(n.o), n.up, Some(n.down)];
                if key.ends_with(".weight") && conv.iter().any(|m| is(*m)) {
                    tensor = tensor.transposed();
                }
            }
            _ => {}
        }
        Ok(tensor)
    }

    fn read_blocks(&self, key: &str) -> Result<Option<QuantBlocks>> {
        let Some(gguf) = self.gguf_name(key) else {
            return Ok(None);
        };
        let Some(blocks) = self.file.read_blocks(&gguf)? else {
            return Ok(None);
        };
        match self.permuted_heads(key) {
            Some(heads) => {
                let order = row_order(blocks.shape()[0], heads, false)?;
                Ok(Some(blocks.reorder_rows(&order)?))
            }
            None => Ok(Some(blocks)),
        }
    }
}

/// Whether `key` is the weight or bias of `module`.
fn module_of(key: &str, module: Option<&str>) -> bool {
    module.is_some_and(|m| {
        key.ends_with(&format!(".{m}.weight")) || key.ends_with(&format!(".{m}.bias"))
    })
}

/// Undoes llama.cpp's `permute` of Llama's Q/K weights: within each head, GGUF row `2·i + j`
/// is Hugging Face row `j·(head_dim/2) + i`.
pub(crate) fn unpermute_rows(tensor: &HostTensor, heads: usize) -> Result<Vec<f32>> {
    move_rows(tensor, heads, false)
}

/// llama.cpp's `permute` of Llama's Q/K rows (the inverse of [`unpermute_rows`]), for writing.
pub(crate) fn permute_rows(tensor: &HostTensor, heads: usize) -> Result<Vec<f32>> {
    move_rows(tensor, heads, true)
}

fn move_rows(tensor: &HostTensor, heads: usize, to_gguf: bool) -> Result<Vec<f32>> {
    let rows = tensor.shape[0];
    let cols: usize = tensor.shape[1..].iter().product();
    let order = row_order(rows, heads, to_gguf)?;
    let mut out = Vec::with_capacity(tensor.data.len());
    for src in order {
        out.extend_from_slice(&tensor.data[src * cols..(src + 1) * cols]);
    }
    Ok(out)
}

/// For each row of the result, the row it comes from: llama.cpp's Q/K `permute` (`to_gguf`) or
/// its inverse, over `rows` rows of `heads` heads.
fn row_order(rows: usize, heads: usize, to_gguf: bool) -> Result<Vec<usize>> {
    if heads == 0 || !rows.is_multiple_of(2 * heads) {
        return Err(ModelError::Input(format!(
            "{rows} attention rows do not split into {heads} heads of even width"
        )));
    }
    let head_dim = rows / heads;
    let half = head_dim / 2;
    let mut order = vec![0; rows];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let gguf = h * head_dim + 2 * i + j;
                let hf = h * head_dim + j * half + i;
                let (src, dst) = if to_gguf { (hf, gguf) } else { (gguf, hf) };
                order[dst] = src;
            }
        }
    }
    Ok(order)
}

/// Rebuilds the Hugging Face `config.json` of a GGUF decoder from its metadata, and reads it as
/// a [`DecoderConfig`].
pub fn decoder_config_from_gguf(file: &GgufFile, path: &Path) -> Result<DecoderConfig> {
    let bad = |reason: String| ModelError::Config {
        path: path.to_path_buf(),
        reason,
    };
    let arch = file
        .get("general.architecture")
        .and_then(GgufValue::as_str)
        .unwrap_or("");
    let family = GGUF_ARCHITECTURES
        .iter()
        .find(|(a, _)| *a == arch)
        .map(|(_, f)| *f)
        .ok_or_else(|| {
            bad(format!(
                "general.architecture is '{arch}'; supported GGUF architectures: {}",
                GGUF_ARCHITECTURES.map(|(a, _)| a).join(", ")
            ))
        })?;
    if file.tensor_info("rope_freqs.weight").is_some() {
        return Err(bad(
            "the file carries rope_freqs.weight (Llama 3.1-style RoPE scaling baked into the \
             GGUF), which is not supported; load the Hugging Face directory instead"
                .into(),
        ));
    }
    let key = |k: &str| format!("{arch}.{k}");
    let int = |k: &str| file.get(&key(k)).and_then(GgufValue::as_u64);
    let float = |k: &str| file.get(&key(k)).and_then(GgufValue::as_f64);
    let need =
        |k: &str| int(k).ok_or_else(|| bad(format!("missing integer metadata '{}'", key(k))));
    let vocab = match int("vocab_size") {
        Some(v) => v,
        None => file
            .get("tokenizer.ggml.tokens")
            .and_then(GgufValue::as_array)
            .map(|a| a.len() as u64)
            .ok_or_else(|| {
                bad(format!(
                    "no {} and no tokenizer.ggml.tokens",
                    key("vocab_size")
                ))
            })?,
    };
    let token = |k: &str| file.get(k).and_then(GgufValue::as_u64);
    let mut m = Map::new();
    m.insert("model_type".into(), json!(family.model_type()));
    m.insert("vocab_size".into(), json!(vocab));
    let heads = need("attention.head_count")?;
    let hidden = need("embedding_length")?;
    if family == DecoderFamily::Gpt2 {
        m.insert("n_embd".into(), json!(hidden));
        m.insert("n_layer".into(), json!(need("block_count")?));
        m.insert("n_head".into(), json!(heads));
        m.insert("n_inner".into(), json!(need("feed_forward_length")?));
        m.insert("n_positions".into(), json!(need("context_length")?));
        if let Some(eps) = float("attention.layer_norm_epsilon") {
            m.insert("layer_norm_epsilon".into(), json!(eps));
        }
    } else {
        m.insert("hidden_size".into(), json!(hidden));
        m.insert(
            "intermediate_size".into(),
            json!(need("feed_forward_length")?),
        );
        m.insert("num_hidden_layers".into(), json!(need("block_count")?));
        m.insert("num_attention_heads".into(), json!(heads));
        m.insert(
            "num_key_value_heads".into(),
            json!(int("attention.head_count_kv").unwrap_or(heads)),
        );
        if let Some(hd) = int("attention.key_length") {
            m.insert("head_dim".into(), json!(hd));
        }
        if let Some(ctx) = int("context_length") {
            m.insert("max_position_embeddings".into(), json!(ctx));
        }
        if let Some(eps) = float("attention.layer_norm_rms_epsilon") {
            m.insert("rms_norm_eps".into(), json!(eps));
        }
        let theta = float("rope.freq_base").unwrap_or(match family {
            DecoderFamily::Gemma3 => 1_000_000.0,
            _ => 10_000.0,
        });
        let mut rope = Map::new();
        rope.insert("rope_theta".into(), json!(theta));
        match file
            .get(&key("rope.scaling.type"))
            .and_then(GgufValue::as_str)
        {
            None | Some("none") => {}
            Some("linear") => {
                rope.insert("rope_type".into(), json!("linear"));
                rope.insert(
                    "factor".into(),
                    json!(float("rope.scaling.factor").unwrap_or(1.0)),
                );
            }
            Some(other) => {
                return Err(bad(format!(
                    "{} '{other}' is not supported for GGUF files (only 'linear'); load the \
                     Hugging Face directory instead",
                    key("rope.scaling.type")
                )));
            }
        }
        match family {
            DecoderFamily::Gemma3 => {
                let local = float("rope.freq_base_swa").unwrap_or(10_000.0);
                m.insert(
                    "rope_parameters".into(),
                    json!({"full_attention": rope, "sliding_attention": {"rope_type": "default", "rope_theta": local}}),
                );
                m.insert(
                    "final_logit_softcapping".into(),
                    json!(float("final_logit_softcapping")),
                );
            }
            _ => {
                m.insert("rope_parameters".into(), Value::Object(rope));
            }
        }
        if family == DecoderFamily::Gemma2 {
            m.insert(
                "attn_logit_softcapping".into(),
                json!(float("attn_logit_softcapping")),
            );
            m.insert(
                "final_logit_softcapping".into(),
                json!(float("final_logit_softcapping")),
            );
            // llama.cpp scales by 1/sqrt(head_dim) (1/sqrt(hidden/heads) for the 46-layer 27B).
            let layers = need("block_count")?;
            let scalar = if layers == 46 {
                hidden
                    .checked_div(heads)
                    .ok_or_else(|| bad("attention.head_count is 0".into()))?
            } else {
                int("attention.key_length").unwrap_or(256)
            };
            m.insert("query_pre_attn_scalar".into(), json!(scalar));
        }
        if matches!(
            family,
            DecoderFamily::Gemma2 | DecoderFamily::Gemma3 | DecoderFamily::Phi3
        ) {
            let window = int("attention.sliding_window").filter(|w| *w > 0);
            m.insert("sliding_window".into(), json!(window));
        }
        if family == DecoderFamily::Phi3 {
            if file.tensor_info("rope_factors_long.weight").is_some() {
                return Err(bad(
                    "LongRoPE factors in a GGUF file are not supported; load the Hugging Face \
                     directory instead"
                        .into(),
                ));
            }
            if let Some(dims) = int("rope.dimension_count") {
                m.insert(
                    "partial_rotary_factor".into(),
                    json!(dims as f64 * heads as f64 / hidden as f64),
                );
            }
        }
    }
    m.insert(
        "tie_word_embeddings".into(),
        json!(file.tensor_info("output.weight").is_none()),
    );
    if let Some(bos) = token("tokenizer.ggml.bos_token_id") {
        m.insert("bos_token_id".into(), json!(bos));
    }
    if let Some(eos) = token("tokenizer.ggml.eos_token_id") {
        m.insert("eos_token_id".into(), json!(eos));
    }
    if let Some(pad) = token("tokenizer.ggml.padding_token_id") {
        m.insert("pad_token_id".into(), json!(pad));
    }
    DecoderConfig::from_config(ConfigJson::from_value(path, Value::Object(m))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        // llama.cpp: w.reshape(heads, 2, hd/2, cols).swapaxes(1, 2).reshape(rows, cols)
        let (heads, hd, cols) = (3, 4, 2);
        let rows = heads * hd;
        let hf: Vec<f32> = (0..rows * cols).map(|v| v as f32).collect();
        let mut permuted = vec![0.0; hf.len()];
        for h in 0..heads {
            for j in 0..2 {
                for i in 0..hd / 2 {
                    let src = h * hd + j * (hd / 2) + i;
                    let dst = h * hd + i * 2 + j;
                    permuted[dst * cols..(dst + 1) * cols]
                        .copy_from_slice(&hf[src * cols..(src + 1) * cols]);
                }
            }
        }
        let t = HostTensor {
            shape: vec![rows, cols],
            data: permuted,
        };
        assert_eq!(unpermute_rows(&t, heads).unwrap(), hf);
        assert!(unpermute_rows(&t, 5).is_err());
    }

    #[test]
    fn names_map_both_ways_for_every_family() {
        let file = GgufFile::parse(Path::new("x.gguf"), minimal_gguf()).unwrap();
        for (arch, family) in GGUF_ARCHITECTURES {
            let weights = GgufDecoderWeights {
                file: &file,
                family,
                heads: 1,
                kv_heads: 1,
            };
            for (g, _) in layer_names(family) {
                let gguf = format!("blk.3.{g}.weight");
                let hf = weights
                    .hf_name(&gguf)
                    .unwrap_or_else(|| panic!("{arch}: {gguf}"));
                assert_eq!(
                    weights.gguf_name(&hf).as_deref(),
                    Some(gguf.as_str()),
                    "{arch}"
                );
            }
        }
    }

    /// An empty GGUF v3 file: magic, version, no tensors, no metadata.
    fn minimal_gguf() -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b
    }
}
