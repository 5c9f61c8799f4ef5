//! The Hugging Face module names of each decoder family, in one table: the loader reads weights
//! by them, saving writes them, and model surgery matches PEFT's `target_modules` against them.

use super::config::DecoderFamily;

/// The module names of one family (per-layer names are relative to `{layers}.{i}.`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderNames {
    /// Token embeddings.
    pub embed_tokens: &'static str,
    /// Learned position embeddings (GPT-2).
    pub embed_positions: Option<&'static str>,
    /// The list of layers.
    pub layers: &'static str,
    /// The final norm.
    pub final_norm: &'static str,
    /// The output head.
    pub lm_head: &'static str,
    /// Separate q, k, v projections (`None` when fused).
    pub q: Option<&'static str>,
    /// The key projection.
    pub k: Option<&'static str>,
    /// The value projection.
    pub v: Option<&'static str>,
    /// The fused q|k|v projection (Phi-3 `qkv_proj`, GPT-2 `c_attn`).
    pub qkv: Option<&'static str>,
    /// The attention output projection.
    pub o: &'static str,
    /// Per-head query norm.
    pub q_norm: &'static str,
    /// Per-head key norm.
    pub k_norm: &'static str,
    /// The MLP gate.
    pub gate: Option<&'static str>,
    /// The MLP up projection (GPT-2's `c_fc`).
    pub up: Option<&'static str>,
    /// The fused gate|up projection (Phi-3).
    pub gate_up: Option<&'static str>,
    /// The MLP down projection.
    pub down: &'static str,
    /// The norm before attention.
    pub input_norm: &'static str,
    /// The norm on the attention output (Gemma's sandwich).
    pub post_attention_norm: Option<&'static str>,
    /// The norm before the MLP.
    pub pre_mlp_norm: &'static str,
    /// The norm on the MLP output (Gemma's sandwich).
    pub post_mlp_norm: Option<&'static str>,
}

const LLAMA: DecoderNames = DecoderNames {
    embed_tokens: "model.embed_tokens",
    embed_positions: None,
    layers: "model.layers",
    final_norm: "model.norm",
    lm_head: "lm_head",
    q: Some("self_attn.q_proj"),
    k: Some("self_attn.k_proj"),
    v: Some("self_attn.v_proj"),
    qkv: None,
    o: "self_attn.o_proj",
    q_norm: "self_attn.q_norm",
    k_norm: "self_attn.k_norm",
    gate: Some("mlp.gate_proj"),
    up: Some("mlp.up_proj"),
    gate_up: None,
    down: "mlp.down_proj",
    input_norm: "input_layernorm",
    post_attention_norm: None,
    pre_mlp_norm: "post_attention_layernorm",
    post_mlp_norm: None,
};

const GEMMA: DecoderNames = DecoderNames {
    post_attention_norm: Some("post_attention_layernorm"),
    pre_mlp_norm: "pre_feedforward_layernorm",
    post_mlp_norm: Some("post_feedforward_layernorm"),
    ..LLAMA
};

const PHI3: DecoderNames = DecoderNames {
    q: None,
    k: None,
    v: None,
    qkv: Some("self_attn.qkv_proj"),
    gate: None,
    up: None,
    gate_up: Some("mlp.gate_up_proj"),
    ..LLAMA
};

const GPT2: DecoderNames = DecoderNames {
    embed_tokens: "transformer.wte",
    embed_positions: Some("transformer.wpe"),
    layers: "transformer.h",
    final_norm: "transformer.ln_f",
    lm_head: "lm_head",
    q: None,
    k: None,
    v: None,
    qkv: Some("attn.c_attn"),
    o: "attn.c_proj",
    q_norm: "attn.q_norm",
    k_norm: "attn.k_norm",
    gate: None,
    up: Some("mlp.c_fc"),
    gate_up: None,
    down: "mlp.c_proj",
    input_norm: "ln_1",
    post_attention_norm: None,
    pre_mlp_norm: "ln_2",
    post_mlp_norm: None,
};

impl DecoderFamily {
    /// The family's module names.
    pub fn names(self) -> &'static DecoderNames {
        match self {
            Self::Gemma2 | Self::Gemma3 => &GEMMA,
            Self::Phi3 => &PHI3,
            Self::Gpt2 => &GPT2,
            Self::Llama | Self::Mistral | Self::Qwen2 | Self::Qwen3 => &LLAMA,
        }
    }

    /// PEFT 0.21's default `target_modules` for the family
    /// (`TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING`). Phi-3 is not in PEFT's table (PEFT
    /// then requires explicit targets); its fused attention projection is the natural default.
    pub fn default_targets(self) -> &'static [&'static str] {
        match self {
            Self::Gpt2 => &["c_attn"],
            Self::Phi3 => &["qkv_proj"],
            _ => &["q_proj", "v_proj"],
        }
    }

    /// Whether PEFT's table has the family (so omitting `target_modules` works in PEFT).
    pub fn in_peft_table(self) -> bool {
        self != Self::Phi3
    }
}
