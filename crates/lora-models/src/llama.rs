//! A Llama decoder (SmolLM2, Llama 2/3, …) built from LoRA-adaptable linear layers: grouped-query
//! attention, rotate-half RoPE, RMSNorm, a SiLU-gated MLP, tied or untied LM head, a causal mask,
//! a training forward and greedy / sampled generation with a KV cache. Matches Hugging Face
//! `LlamaForCausalLM`.

use std::path::Path;

use burn::module::Module;
use burn::nn::{Embedding, RmsNorm, RmsNormConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use lora_core::LoraLinear;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::activation::Activation;
use crate::error::{ModelError, Result, read_json_config};
use crate::export::{NamedHostTensors, embedding_tensor, linear_tensors, rms_norm_tensor};
use crate::gguf::{GgufFile, GgufValue};
use crate::weights::{HostTensor, WeightSource, frozen, load_embedding, load_linear, load_tensor};

/// A Hugging Face Llama `config.json`: the fields the architecture needs, and every other field
/// kept as it was so that a saved model's config is the original one.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct LlamaConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention); defaults to the query heads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_key_value_heads: Option<usize>,
    /// Per-head width; defaults to `hidden_size / num_attention_heads`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    /// RMSNorm epsilon.
    #[serde(default = "default_rms_eps")]
    pub rms_norm_eps: f64,
    /// RoPE base.
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    /// Longest supported sequence.
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    /// Whether `lm_head` shares `embed_tokens`' weight.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// MLP activation; only `silu` is used by Llama.
    #[serde(default = "default_llama_act")]
    pub hidden_act: String,
    /// RoPE scaling: only `null` (none) is supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<serde_json::Value>,
    /// Beginning-of-sequence token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token(s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token_id: Option<EosTokens>,
    /// Every other field (`model_type`, `architectures`, `torch_dtype`, …), as read.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `eos_token_id` is a single id or a list in Hugging Face configs.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum EosTokens {
    /// One id.
    One(u32),
    /// Several ids.
    Many(Vec<u32>),
}

fn default_rms_eps() -> f64 {
    1e-6
}
fn default_rope_theta() -> f64 {
    10_000.0
}
fn default_max_positions() -> usize {
    2048
}
fn default_llama_act() -> String {
    "silu".into()
}

impl LlamaConfig {
    /// Reads and validates a `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let config: LlamaConfig = read_json_config(path)?;
        config.validate(path)?;
        Ok(config)
    }

    /// Builds the config from a GGUF file's `llama.*` metadata.
    pub fn from_gguf(file: &GgufFile, path: &Path) -> Result<Self> {
        let arch = file
            .get("general.architecture")
            .and_then(GgufValue::as_str)
            .unwrap_or("");
        let bad = |reason: String| ModelError::Config {
            path: path.to_path_buf(),
            reason,
        };
        if arch != "llama" {
            return Err(bad(format!(
                "general.architecture is '{arch}', but only 'llama' GGUF files are supported"
            )));
        }
        let int = |key: &str| -> Result<usize> {
            file.get(key)
                .and_then(GgufValue::as_u64)
                .map(|v| v as usize)
                .ok_or_else(|| bad(format!("missing integer metadata '{key}'")))
        };
        let float =
            |key: &str, default: f64| file.get(key).and_then(GgufValue::as_f64).unwrap_or(default);
        let vocab_size = match file.get("llama.vocab_size").and_then(GgufValue::as_u64) {
            Some(v) => v as usize,
            None => file
                .get("tokenizer.ggml.tokens")
                .and_then(GgufValue::as_array)
                .map(|a| a.len())
                .ok_or_else(|| bad("no llama.vocab_size and no tokenizer.ggml.tokens".into()))?,
        };
        let heads = int("llama.attention.head_count")?;
        let token = |key: &str| file.get(key).and_then(GgufValue::as_u64).map(|v| v as u32);
        let config = LlamaConfig {
            vocab_size,
            hidden_size: int("llama.embedding_length")?,
            intermediate_size: int("llama.feed_forward_length")?,
            num_hidden_layers: int("llama.block_count")?,
            num_attention_heads: heads,
            num_key_value_heads: Some(int("llama.attention.head_count_kv").unwrap_or(heads)),
            head_dim: None,
            // GGUF stores f32: 1e-5 reads back as 9.999999747378752e-06, like HF's config.
            rms_norm_eps: float("llama.attention.layer_norm_rms_epsilon", 1e-5),
            rope_theta: float("llama.rope.freq_base", 10_000.0),
            max_position_embeddings: int("llama.context_length").unwrap_or(2048),
            tie_word_embeddings: file.tensor_info("output.weight").is_none(),
            hidden_act: "silu".into(),
            rope_scaling: None,
            bos_token_id: token("tokenizer.ggml.bos_token_id"),
            eos_token_id: token("tokenizer.ggml.eos_token_id").map(EosTokens::One),
            extra: Map::new(),
        };
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let bad = |reason: String| ModelError::Config {
            path: path.to_path_buf(),
            reason,
        };
        let kv = self.kv_heads();
        if self.num_attention_heads == 0 || kv == 0 || !self.num_attention_heads.is_multiple_of(kv)
        {
            return Err(bad(format!(
                "num_attention_heads {} must be a positive multiple of num_key_value_heads {kv}",
                self.num_attention_heads
            )));
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(bad(format!(
                "head_dim {} must be even for RoPE",
                self.head_dim()
            )));
        }
        if self.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(bad("rope_scaling is not supported".into()));
        }
        Activation::parse(&self.hidden_act)?;
        Ok(())
    }

    /// Key/value heads.
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Per-head width.
    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// End-of-sequence ids.
    pub fn eos_ids(&self) -> Vec<u32> {
        match &self.eos_token_id {
            Some(EosTokens::One(id)) => vec![*id],
            Some(EosTokens::Many(ids)) => ids.clone(),
            None => Vec::new(),
        }
    }
}

/// The Hugging Face names of each decoder layer's linear layers, in one table used by the
/// loaders and by model surgery (`q_proj`, `v_proj`, … work as PEFT `target_modules`).
pub const LLAMA_LAYER_LINEARS: [&str; 7] = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
];

/// The Hugging Face names of the global tensors and the per-layer norms, shared by the loader
/// and [`LlamaForCausalLM::hf_tensors`].
const EMBED_TOKENS: &str = "model.embed_tokens.weight";
const FINAL_NORM: &str = "model.norm.weight";
const LM_HEAD: &str = "lm_head";
const INPUT_NORM: &str = "input_layernorm.weight";
const POST_ATTENTION_NORM: &str = "post_attention_layernorm.weight";

/// llama.cpp's tensor names against Hugging Face's, in one table: per layer (`blk.N.` /
/// `model.layers.N.`) and global.
const GGUF_LAYER_NAMES: [(&str, &str); 9] = [
    ("attn_norm.weight", "input_layernorm.weight"),
    ("attn_q.weight", "self_attn.q_proj.weight"),
    ("attn_k.weight", "self_attn.k_proj.weight"),
    ("attn_v.weight", "self_attn.v_proj.weight"),
    ("attn_output.weight", "self_attn.o_proj.weight"),
    ("ffn_norm.weight", "post_attention_layernorm.weight"),
    ("ffn_gate.weight", "mlp.gate_proj.weight"),
    ("ffn_up.weight", "mlp.up_proj.weight"),
    ("ffn_down.weight", "mlp.down_proj.weight"),
];
const GGUF_GLOBAL_NAMES: [(&str, &str); 3] = [
    ("token_embd.weight", "model.embed_tokens.weight"),
    ("output_norm.weight", "model.norm.weight"),
    ("output.weight", "lm_head.weight"),
];

/// A GGUF Llama file seen through Hugging Face tensor names, with llama.cpp's Q/K row
/// permutation undone, so the same loader serves both formats.
pub struct GgufLlamaWeights<'a> {
    file: &'a GgufFile,
    heads: usize,
    kv_heads: usize,
}

impl<'a> GgufLlamaWeights<'a> {
    /// Wraps a parsed GGUF file.
    pub fn new(file: &'a GgufFile, config: &LlamaConfig) -> Self {
        Self {
            file,
            heads: config.num_attention_heads,
            kv_heads: config.kv_heads(),
        }
    }

    fn gguf_name(hf: &str) -> Option<String> {
        translate(hf, "model.layers.", "blk.", |(gguf, hf)| (hf, gguf))
    }

    fn hf_name(gguf: &str) -> Option<String> {
        translate(gguf, "blk.", "model.layers.", |pair| pair)
    }
}

/// Renames a tensor through the GGUF↔HF tables. `orient` turns a `(gguf, hf)` row into
/// `(from, to)`; per-layer names swap `from_layers` for `to_layers` and keep the index.
fn translate(
    name: &str,
    from_layers: &str,
    to_layers: &str,
    orient: fn((&'static str, &'static str)) -> (&'static str, &'static str),
) -> Option<String> {
    let lookup = |table: &[(&'static str, &'static str)], key: &str| {
        table
            .iter()
            .map(|&row| orient(row))
            .find(|(from, _)| *from == key)
            .map(|(_, to)| to)
    };
    if let Some(to) = lookup(&GGUF_GLOBAL_NAMES, name) {
        return Some(to.to_string());
    }
    let (index, suffix) = name.strip_prefix(from_layers)?.split_once('.')?;
    Some(format!(
        "{to_layers}{index}.{}",
        lookup(&GGUF_LAYER_NAMES, suffix)?
    ))
}

impl WeightSource for GgufLlamaWeights<'_> {
    fn source_name(&self) -> String {
        self.file.source_name()
    }

    fn keys(&self) -> Vec<String> {
        self.file
            .tensors
            .iter()
            .filter_map(|t| Self::hf_name(&t.name))
            .collect()
    }

    fn contains(&self, key: &str) -> bool {
        Self::gguf_name(key).is_some_and(|g| self.file.tensor_info(&g).is_some())
    }

    fn read(&self, key: &str) -> Result<HostTensor> {
        let gguf = Self::gguf_name(key).ok_or_else(|| ModelError::MissingTensor {
            key: key.to_string(),
            source_name: self.source_name(),
        })?;
        let mut tensor = self.file.read_tensor(&gguf)?;
        if key.ends_with("self_attn.q_proj.weight") {
            tensor.data = unpermute_rows(&tensor, self.heads)?;
        } else if key.ends_with("self_attn.k_proj.weight") {
            tensor.data = unpermute_rows(&tensor, self.kv_heads)?;
        }
        Ok(tensor)
    }
}

/// Undoes llama.cpp's `permute` of Q/K weights: within each head, GGUF row `2·i + j` is
/// Hugging Face row `j·(head_dim/2) + i`.
fn unpermute_rows(tensor: &HostTensor, heads: usize) -> Result<Vec<f32>> {
    let [rows, cols] = tensor.shape[..] else {
        return Err(ModelError::Input(format!(
            "expected a 2-D attention weight, got shape {:?}",
            tensor.shape
        )));
    };
    if heads == 0 || rows % (2 * heads) != 0 {
        return Err(ModelError::Input(format!(
            "{rows} attention rows do not split into {heads} heads of even width"
        )));
    }
    let head_dim = rows / heads;
    let half = head_dim / 2;
    let mut out = vec![0.0; tensor.data.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let src = h * head_dim + 2 * i + j;
                let dst = h * head_dim + j * half + i;
                out[dst * cols..(dst + 1) * cols]
                    .copy_from_slice(&tensor.data[src * cols..(src + 1) * cols]);
            }
        }
    }
    Ok(out)
}

/// Self-attention with grouped-query heads and rotary position embeddings.
#[derive(Module, Debug)]
pub struct LlamaAttention {
    /// `q_proj`.
    pub q_proj: LoraLinear,
    /// `k_proj`.
    pub k_proj: LoraLinear,
    /// `v_proj`.
    pub v_proj: LoraLinear,
    /// `o_proj`.
    pub o_proj: LoraLinear,
}

/// The SiLU-gated MLP: `down(silu(gate(x)) · up(x))`.
#[derive(Module, Debug)]
pub struct LlamaMlp {
    /// `gate_proj`.
    pub gate_proj: LoraLinear,
    /// `up_proj`.
    pub up_proj: LoraLinear,
    /// `down_proj`.
    pub down_proj: LoraLinear,
}

/// One decoder layer.
#[derive(Module, Debug)]
pub struct LlamaLayer {
    /// `self_attn`.
    pub self_attn: LlamaAttention,
    /// `mlp`.
    pub mlp: LlamaMlp,
    /// `input_layernorm`.
    pub input_layernorm: RmsNorm,
    /// `post_attention_layernorm`.
    pub post_attention_layernorm: RmsNorm,
}

impl LlamaLayer {
    /// Every linear layer with its Hugging Face suffix, in [`LLAMA_LAYER_LINEARS`] order.
    pub fn linears_mut(&mut self) -> [(&'static str, &mut LoraLinear); 7] {
        let [q, k, v, o, g, u, d] = LLAMA_LAYER_LINEARS;
        let (a, m) = (&mut self.self_attn, &mut self.mlp);
        [
            (q, &mut a.q_proj),
            (k, &mut a.k_proj),
            (v, &mut a.v_proj),
            (o, &mut a.o_proj),
            (g, &mut m.gate_proj),
            (u, &mut m.up_proj),
            (d, &mut m.down_proj),
        ]
    }

    /// Every linear layer with its Hugging Face suffix, in [`LLAMA_LAYER_LINEARS`] order.
    pub fn linears(&self) -> [(&'static str, &LoraLinear); 7] {
        let [q, k, v, o, g, u, d] = LLAMA_LAYER_LINEARS;
        let (a, m) = (&self.self_attn, &self.mlp);
        [
            (q, &a.q_proj),
            (k, &a.k_proj),
            (v, &a.v_proj),
            (o, &a.o_proj),
            (g, &m.gate_proj),
            (u, &m.up_proj),
            (d, &m.down_proj),
        ]
    }
}

/// Cached keys and values of earlier positions, one entry per layer, `[batch, kv_heads, past,
/// head_dim]`.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor<4>, Tensor<4>)>>,
}

impl KvCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .map(|(k, _)| k.dims()[2])
            .unwrap_or(0)
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `LlamaForCausalLM`.
#[derive(Module, Debug)]
pub struct LlamaForCausalLM {
    /// `model.embed_tokens`.
    pub embed_tokens: Embedding,
    /// `model.layers.N`.
    pub layers: Vec<LlamaLayer>,
    /// `model.norm`.
    pub norm: RmsNorm,
    /// `lm_head`; `None` when tied to `embed_tokens`.
    pub lm_head: Option<LoraLinear>,
    #[module(skip)]
    config: LlamaConfig,
}

/// How [`LlamaForCausalLM::generate`] picks tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationConfig {
    /// Most new tokens to produce.
    pub max_new_tokens: usize,
    /// `0` for greedy decoding, otherwise the softmax temperature.
    pub temperature: f64,
    /// Sample only among the `top_k` most likely tokens (`0`: all).
    pub top_k: usize,
    /// Seed of the sampler (ignored when greedy).
    pub seed: u64,
    /// Stop at any of these ids (in addition to the config's `eos_token_id`).
    pub stop_tokens: Vec<u32>,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            max_new_tokens: 32,
            temperature: 0.0,
            top_k: 0,
            seed: 0,
            stop_tokens: Vec::new(),
        }
    }
}

impl LlamaForCausalLM {
    /// Loads a model from Hugging Face-named weights (a safetensors directory, or a GGUF file
    /// through [`GgufLlamaWeights`]). Every weight is frozen.
    pub fn load(config: &LlamaConfig, source: &dyn WeightSource, device: &Device) -> Result<Self> {
        let d = config.hidden_size;
        let hd = config.head_dim();
        let (q_out, kv_out) = (config.num_attention_heads * hd, config.kv_heads() * hd);
        let ff = config.intermediate_size;
        let norm = |key: &str| -> Result<RmsNorm> {
            let gamma = load_tensor(source, key, [d], device)?;
            let mut norm = RmsNormConfig::new(d)
                .with_epsilon(config.rms_norm_eps)
                .init(device);
            norm.gamma = frozen(gamma);
            Ok(norm)
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let linear = |name: &str, d_in: usize, d_out: usize| {
                load_linear(source, &format!("{p}.{name}"), d_in, d_out, false, device)
            };
            let [q, k, v, o, g, u, dn] = LLAMA_LAYER_LINEARS;
            layers.push(LlamaLayer {
                self_attn: LlamaAttention {
                    q_proj: linear(q, d, q_out)?,
                    k_proj: linear(k, d, kv_out)?,
                    v_proj: linear(v, d, kv_out)?,
                    o_proj: linear(o, q_out, d)?,
                },
                mlp: LlamaMlp {
                    gate_proj: linear(g, d, ff)?,
                    up_proj: linear(u, d, ff)?,
                    down_proj: linear(dn, ff, d)?,
                },
                input_layernorm: norm(&format!("{p}.{INPUT_NORM}"))?,
                post_attention_layernorm: norm(&format!("{p}.{POST_ATTENTION_NORM}"))?,
            });
        }
        let lm_head = if config.tie_word_embeddings {
            None
        } else {
            Some(load_linear(
                source,
                LM_HEAD,
                d,
                config.vocab_size,
                false,
                device,
            )?)
        };
        Ok(Self {
            embed_tokens: load_embedding(source, EMBED_TOKENS, config.vocab_size, d, device)?,
            layers,
            norm: norm(FINAL_NORM)?,
            lm_head,
            config: config.clone(),
        })
    }

    /// The config the model was built from.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// Every weight under its Hugging Face key, in PyTorch's layout (no `lm_head.weight` when
    /// the head is tied): what [`LlamaForCausalLM::load`] reads back. Layers must be plain:
    /// unmerged LoRA adapters are refused.
    pub fn hf_tensors(&self) -> Result<NamedHostTensors> {
        let mut out = vec![embedding_tensor(EMBED_TOKENS, &self.embed_tokens)?];
        for (i, layer) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{i}");
            for (name, linear) in layer.linears() {
                out.extend(linear_tensors(&format!("{p}.{name}"), linear)?);
            }
            out.push(rms_norm_tensor(
                &format!("{p}.{INPUT_NORM}"),
                &layer.input_layernorm,
            )?);
            out.push(rms_norm_tensor(
                &format!("{p}.{POST_ATTENTION_NORM}"),
                &layer.post_attention_layernorm,
            )?);
        }
        out.push(rms_norm_tensor(FINAL_NORM, &self.norm)?);
        if let Some(head) = &self.lm_head {
            out.extend(linear_tensors(LM_HEAD, head)?);
        }
        Ok(out)
    }

    /// The `config.json` of this model (also for one read from GGUF metadata):
    /// `model_type: "llama"`, `architectures: ["LlamaForCausalLM"]`.
    pub fn hf_config(&self) -> Value {
        let mut config = self.config.clone();
        let extra = &mut config.extra;
        extra.insert("model_type".into(), json!("llama"));
        extra.insert("architectures".into(), json!(["LlamaForCausalLM"]));
        serde_json::to_value(&config).expect("a config serialises")
    }

    /// Logits `[batch, seq, vocab]` for a batch of equal-length sequences (training and
    /// scoring; no padding).
    pub fn forward(&self, input_ids: Tensor<2, Int>) -> Result<Tensor<3>> {
        let hidden = self.hidden_states(input_ids, &mut KvCache::new())?;
        Ok(self.logits(hidden))
    }

    /// Runs `input_ids` after the positions already in `cache`, appends their keys and values
    /// to it, and returns the logits of the last position, `[batch, vocab]`.
    pub fn forward_cached(
        &self,
        input_ids: Tensor<2, Int>,
        cache: &mut KvCache,
    ) -> Result<Tensor<2>> {
        let hidden = self.hidden_states(input_ids, cache)?;
        let [batch, seq, d] = hidden.dims();
        let last = hidden.slice([0..batch, seq - 1..seq, 0..d]);
        Ok(self.logits(last).reshape([batch, self.config.vocab_size]))
    }

    fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => {
                // Tied head: `hidden · Eᵀ` computed as `(E · hiddenᵀ)ᵀ`, so the big
                // `[vocab, hidden]` table is never transposed (a copy of it per call would
                // dominate a decode step); only the small activations are.
                let [batch, seq, d] = hidden.dims();
                let weight = self.embed_tokens.weight.val();
                let vocab = weight.dims()[0];
                let columns = hidden.reshape([batch * seq, d]).transpose();
                weight
                    .matmul(columns)
                    .transpose()
                    .reshape([batch, seq, vocab])
            }
        }
    }

    fn hidden_states(&self, input_ids: Tensor<2, Int>, cache: &mut KvCache) -> Result<Tensor<3>> {
        let [batch, seq] = input_ids.dims();
        let past = cache.len();
        if seq == 0 {
            return Err(ModelError::Input("empty input sequence".into()));
        }
        if past + seq > self.config.max_position_embeddings {
            return Err(ModelError::Input(format!(
                "{} positions exceed max_position_embeddings {}",
                past + seq,
                self.config.max_position_embeddings
            )));
        }
        let device = input_ids.device();
        let (cos, sin) = rope_tables(&self.config, past, seq, &device);
        let mask = causal_mask(past, seq, &device);
        if cache.layers.len() != self.layers.len() {
            cache.layers = vec![None; self.layers.len()];
        }
        let mut x = self.embed_tokens.forward(input_ids);
        for (layer, entry) in self.layers.iter().zip(cache.layers.iter_mut()) {
            let h = layer.input_layernorm.forward(x.clone());
            let attn = self.attention(&layer.self_attn, h, &cos, &sin, &mask, entry, batch, seq);
            x = x + attn;
            let h = layer.post_attention_layernorm.forward(x.clone());
            let gate = burn::tensor::activation::silu(layer.mlp.gate_proj.forward(h.clone()));
            x = x + layer
                .mlp
                .down_proj
                .forward(gate * layer.mlp.up_proj.forward(h));
        }
        Ok(self.norm.forward(x))
    }

    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        attn: &LlamaAttention,
        h: Tensor<3>,
        cos: &Tensor<4>,
        sin: &Tensor<4>,
        mask: &Tensor<4>,
        cache: &mut Option<(Tensor<4>, Tensor<4>)>,
        batch: usize,
        seq: usize,
    ) -> Tensor<3> {
        let (heads, kv_heads, hd) = (
            self.config.num_attention_heads,
            self.config.kv_heads(),
            self.config.head_dim(),
        );
        let split = |t: Tensor<3>, n: usize| t.reshape([batch, seq, n, hd]).swap_dims(1, 2);
        let q = rotate(split(attn.q_proj.forward(h.clone()), heads), cos, sin);
        let mut k = rotate(split(attn.k_proj.forward(h.clone()), kv_heads), cos, sin);
        let mut v = split(attn.v_proj.forward(h), kv_heads);
        if let Some((past_k, past_v)) = cache.take() {
            k = Tensor::cat(vec![past_k, k], 2);
            v = Tensor::cat(vec![past_v, v], 2);
        }
        *cache = Some((k.clone().detach(), v.clone().detach()));
        let total = k.dims()[2];
        let repeat = |t: Tensor<4>| {
            let n_rep = heads / kv_heads;
            t.unsqueeze_dim::<5>(2)
                .expand([batch, kv_heads, n_rep, total, hd])
                .reshape([batch, heads, total, hd])
        };
        let (k, v) = (repeat(k), repeat(v));
        let scores = q.matmul(k.swap_dims(2, 3)).div_scalar((hd as f64).sqrt()) + mask.clone();
        let context =
            softmax(scores, 3)
                .matmul(v)
                .swap_dims(1, 2)
                .reshape([batch, seq, heads * hd]);
        attn.o_proj.forward(context)
    }

    /// Generates up to `config.max_new_tokens` tokens after `prompt`, greedily or by sampling,
    /// with a KV cache; stops early at an end-of-sequence token (which is not returned).
    pub fn generate(
        &self,
        prompt: &[u32],
        config: &GenerationConfig,
        device: &Device,
    ) -> Result<Vec<u32>> {
        if prompt.is_empty() {
            return Err(ModelError::Input(
                "generation needs a non-empty prompt".into(),
            ));
        }
        let vocab = self.config.vocab_size;
        if let Some(bad) = prompt.iter().find(|&&t| t as usize >= vocab) {
            return Err(ModelError::Input(format!(
                "token id {bad} is out of range for a vocabulary of {vocab}"
            )));
        }
        let mut stops = self.config.eos_ids();
        stops.extend(&config.stop_tokens);
        let mut rng = SplitMix64(config.seed);
        let mut cache = KvCache::new();
        let mut next_input = prompt.to_vec();
        let mut out = Vec::new();
        for _ in 0..config.max_new_tokens {
            let ids = ids_tensor(&next_input, device);
            let logits = self.forward_cached(ids, &mut cache)?;
            let logits = logits
                .into_data()
                .try_to_vec::<f32>()
                .map_err(|e| ModelError::Input(format!("cannot read logits back: {e:?}")))?;
            let token = pick_token(&logits, config, &mut rng);
            if stops.contains(&token) {
                break;
            }
            out.push(token);
            next_input = vec![token];
        }
        Ok(out)
    }

    /// The Hugging Face name and layer of every adaptable linear layer (e.g.
    /// `model.layers.3.self_attn.q_proj`), from [`LLAMA_LAYER_LINEARS`]; the untied `lm_head`
    /// comes last.
    pub fn linears_mut(&mut self) -> Vec<(String, &mut LoraLinear)> {
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter_mut().enumerate() {
            for (name, linear) in layer.linears_mut() {
                out.push((format!("model.layers.{i}.{name}"), linear));
            }
        }
        if let Some(head) = &mut self.lm_head {
            out.push(("lm_head".to_string(), head));
        }
        out
    }
}

/// `[1, seq]` token ids on `device`.
pub fn ids_tensor(ids: &[u32], device: &Device) -> Tensor<2, Int> {
    let data: Vec<i64> = ids.iter().map(|&t| t as i64).collect();
    Tensor::from_data(TensorData::new(data, [1, ids.len()]), device)
}

/// `cos` and `sin` of the rotary angles for positions `past..past + seq`, `[1, 1, seq, head_dim]`
/// (each frequency repeated over both halves, as Hugging Face's rotate-half form needs).
fn rope_tables(
    config: &LlamaConfig,
    past: usize,
    seq: usize,
    device: &Device,
) -> (Tensor<4>, Tensor<4>) {
    let hd = config.head_dim();
    let half = hd / 2;
    // Hugging Face computes inv_freq and the angles in f32; so do we, for the same rounding.
    let inv_freq: Vec<f32> = (0..half)
        .map(|i| 1.0 / (config.rope_theta as f32).powf((2 * i) as f32 / hd as f32))
        .collect();
    let mut cos = Vec::with_capacity(seq * hd);
    let mut sin = Vec::with_capacity(seq * hd);
    for pos in past..past + seq {
        for _half in 0..2 {
            for f in &inv_freq {
                let angle = pos as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
    }
    let make = |v: Vec<f32>| Tensor::<4>::from_data(TensorData::new(v, [1, 1, seq, hd]), device);
    (make(cos), make(sin))
}

/// `x·cos + rotate_half(x)·sin` with `rotate_half([x1, x2]) = [-x2, x1]`.
fn rotate(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
    let [b, h, s, d] = x.dims();
    let x1 = x.clone().slice([0..b, 0..h, 0..s, 0..d / 2]);
    let x2 = x.clone().slice([0..b, 0..h, 0..s, d / 2..d]);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    x * cos.clone() + rotated * sin.clone()
}

/// Additive causal mask `[1, 1, seq, past + seq]`: position `past + i` sees keys `0..=past + i`.
fn causal_mask(past: usize, seq: usize, device: &Device) -> Tensor<4> {
    let total = past + seq;
    let data: Vec<f32> = (0..seq)
        .flat_map(|i| (0..total).map(move |j| if j > past + i { -1.0e9 } else { 0.0 }))
        .collect();
    Tensor::from_data(TensorData::new(data, [1, 1, seq, total]), device)
}

/// Greedy argmax (ties go to the lowest id) or temperature / top-k sampling.
fn pick_token(logits: &[f32], config: &GenerationConfig, rng: &mut SplitMix64) -> u32 {
    if config.temperature <= 0.0 {
        let mut best = 0;
        for (i, &l) in logits.iter().enumerate() {
            if l > logits[best] {
                best = i;
            }
        }
        return best as u32;
    }
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    if config.top_k > 0 {
        order.truncate(config.top_k);
    }
    let max = logits[order[0]] as f64;
    let weights: Vec<f64> = order
        .iter()
        .map(|&i| ((logits[i] as f64 - max) / config.temperature).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let mut u = rng.next_f64() * total;
    for (&i, w) in order.iter().zip(&weights) {
        if u < *w {
            return i as u32;
        }
        u -= w;
    }
    order[order.len() - 1] as u32
}

/// A tiny deterministic generator for sampling (SplitMix64).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
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
                    let src = h * hd + j * (hd / 2) + i; // [h, j, i]
                    let dst = h * hd + i * 2 + j; // [h, i, j]
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
    fn gguf_and_hf_names_map_both_ways() {
        for (gguf, hf) in [
            (
                "blk.7.attn_q.weight",
                "model.layers.7.self_attn.q_proj.weight",
            ),
            (
                "blk.0.ffn_down.weight",
                "model.layers.0.mlp.down_proj.weight",
            ),
            ("token_embd.weight", "model.embed_tokens.weight"),
            ("output_norm.weight", "model.norm.weight"),
        ] {
            assert_eq!(GgufLlamaWeights::gguf_name(hf).as_deref(), Some(gguf));
            assert_eq!(GgufLlamaWeights::hf_name(gguf).as_deref(), Some(hf));
        }
        assert_eq!(
            GgufLlamaWeights::gguf_name("model.layers.1.bogus.weight"),
            None
        );
    }

    #[test]
    fn sampling_is_seeded_and_respects_top_k() {
        let logits = [0.0f32, 5.0, 4.9, -3.0];
        let greedy = GenerationConfig::default();
        assert_eq!(pick_token(&logits, &greedy, &mut SplitMix64(1)), 1);
        let top2 = GenerationConfig {
            temperature: 1.0,
            top_k: 2,
            ..Default::default()
        };
        let draw = |seed| {
            let mut rng = SplitMix64(seed);
            (0..200)
                .map(|_| pick_token(&logits, &top2, &mut rng))
                .collect::<Vec<_>>()
        };
        let a = draw(7);
        assert_eq!(a, draw(7));
        assert!(a.iter().all(|&t| t == 1 || t == 2));
        assert!(a.contains(&1) && a.contains(&2));
    }

    lora_core::backend_test!(fn causal_mask_hides_the_future(device) {
        let mask = causal_mask(2, 2, &device).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(mask, vec![0.0, 0.0, 0.0, -1.0e9, 0.0, 0.0, 0.0, 0.0]);
    });
}
