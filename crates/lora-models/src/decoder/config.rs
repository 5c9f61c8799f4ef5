//! [`DecoderConfig`]: one description of every supported decoder family, read from its
//! `config.json` (or GGUF metadata) with transformers' defaults and rules.

use serde_json::{Map, Value, json};

use crate::activation::Activation;
use crate::config_json::ConfigJson;
use crate::error::Result;
use crate::layers::norm::NormKind;
use crate::layers::rope::{RopeConfig, parse_rope};

/// The decoder families (`model_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecoderFamily {
    /// `llama` (Llama 2/3, SmolLM2, TinyLlama, …).
    Llama,
    /// `mistral`: Llama with an optional sliding window.
    Mistral,
    /// `qwen2` (Qwen2, Qwen2.5): q/k/v biases.
    Qwen2,
    /// `qwen3`: q/k RMSNorm per head, explicit `head_dim`.
    Qwen3,
    /// `gemma2`: (1 + w) RMSNorm, sandwich norms, GeGLU, soft-capping, alternating windows.
    Gemma2,
    /// `gemma3_text`: Gemma 2's layout with q/k norms and per-layer-type RoPE.
    Gemma3,
    /// `phi3`: fused `qkv_proj` and `gate_up_proj`, LongRoPE.
    Phi3,
    /// `gpt2`: learned positions, LayerNorm, fused `c_attn`, `Conv1D` weights `[in, out]`.
    Gpt2,
}

impl DecoderFamily {
    /// Every family with its `model_type`.
    pub const ALL: [(DecoderFamily, &'static str); 8] = [
        (Self::Llama, "llama"),
        (Self::Mistral, "mistral"),
        (Self::Qwen2, "qwen2"),
        (Self::Qwen3, "qwen3"),
        (Self::Gemma2, "gemma2"),
        (Self::Gemma3, "gemma3_text"),
        (Self::Phi3, "phi3"),
        (Self::Gpt2, "gpt2"),
    ];

    /// The family of a `model_type`.
    pub fn from_model_type(model_type: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(_, name)| *name == model_type)
            .map(|(f, _)| *f)
    }

    /// The `model_type` string.
    pub fn model_type(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(f, _)| *f == self)
            .map(|(_, n)| *n)
            .expect("every family is listed")
    }

    /// The transformers class of the causal LM (`architectures` of a saved config).
    pub fn causal_lm_class(self) -> &'static str {
        match self {
            Self::Llama => "LlamaForCausalLM",
            Self::Mistral => "MistralForCausalLM",
            Self::Qwen2 => "Qwen2ForCausalLM",
            Self::Qwen3 => "Qwen3ForCausalLM",
            Self::Gemma2 => "Gemma2ForCausalLM",
            Self::Gemma3 => "Gemma3ForCausalLM",
            Self::Phi3 => "Phi3ForCausalLM",
            Self::Gpt2 => "GPT2LMHeadModel",
        }
    }

    /// Whether the family stores its projections as `Conv1D` (`[in, out]`): PEFT's
    /// `fan_in_fan_out`.
    pub fn conv1d(self) -> bool {
        self == Self::Gpt2
    }
}

/// Whether a layer attends to everything before it or to a sliding window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    /// `full_attention`.
    Full,
    /// `sliding_attention`.
    Sliding,
}

/// How a decoder embeds positions.
#[derive(Debug, Clone, PartialEq)]
pub enum Positions {
    /// Learned absolute positions (`wpe`, GPT-2), at most this many.
    Learned(usize),
    /// Rotary embeddings: the settings of full layers and (Gemma 3) of sliding layers.
    Rope {
        /// Full-attention layers (and all layers of a family with one RoPE).
        full: RopeConfig,
        /// Sliding-window layers, when they use other settings (Gemma 3's local base).
        sliding: Option<RopeConfig>,
    },
}

/// Everything the decoder forward needs, with the original config kept for saving.
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderConfig {
    /// The family.
    pub family: DecoderFamily,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads.
    pub num_kv_heads: usize,
    /// Per-head width.
    pub head_dim: usize,
    /// The normalisation.
    pub norm: NormKind,
    /// Its epsilon.
    pub norm_eps: f64,
    /// Biases on q, k and v.
    pub qkv_bias: bool,
    /// Bias on the attention output.
    pub o_bias: bool,
    /// Biases on the MLP.
    pub mlp_bias: bool,
    /// RMSNorm of q and k per head, before RoPE (Qwen3, Gemma 3).
    pub qk_norm: bool,
    /// MLP activation.
    pub activation: Activation,
    /// `down(act(gate(x)) · up(x))`; else `down(act(up(x)))` (GPT-2).
    pub gated_mlp: bool,
    /// Position embedding.
    pub positions: Positions,
    /// Each layer's attention kind.
    pub layer_kinds: Vec<LayerKind>,
    /// Window of sliding layers.
    pub sliding_window: Option<usize>,
    /// Attention score scale (`head_dim^-½`, or `query_pre_attn_scalar^-½`).
    pub attention_scale: f64,
    /// Divide each layer's scale by its index + 1 (GPT-2's `scale_attn_by_inverse_layer_idx`).
    pub scale_by_inverse_layer: bool,
    /// `tanh` soft-capping of attention scores (Gemma 2).
    pub attn_softcap: Option<f64>,
    /// `tanh` soft-capping of the output logits (Gemma 2, Gemma 3).
    pub final_softcap: Option<f64>,
    /// The factor of the token embeddings (Gemma: `√hidden`, rounded to `f32`).
    pub embed_scale: Option<f32>,
    /// Norms after the attention and MLP outputs too (Gemma 2 and 3).
    pub sandwich_norms: bool,
    /// `lm_head` shares `embed_tokens`' weight.
    pub tie_word_embeddings: bool,
    /// Longest sequence.
    pub max_position_embeddings: usize,
    /// Beginning-of-sequence token.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence tokens.
    pub eos_token_ids: Vec<u32>,
    /// Padding token.
    pub pad_token_id: Option<u32>,
    /// The config as read (written back, with `architectures`, when the model is saved).
    pub raw: Map<String, Value>,
}

/// Reads the RoPE settings of a family with one rotary embedding: `rope_parameters`, else the
/// legacy `rope_scaling` merged with `rope_theta`.
fn single_rope(
    c: &ConfigJson,
    head_dim: usize,
    max_pos: usize,
    default_theta: f64,
) -> Result<RopeConfig> {
    let legacy = c.opt_object("rope_scaling")?;
    let mut params = match c.opt_object("rope_parameters")? {
        Some(p) => {
            // Both present: transformers standardises `rope_scaling` into `rope_parameters`;
            // a legacy field saying something else is never silently dropped.
            let kind = |m: &Map<String, Value>| {
                m.get("rope_type")
                    .or_else(|| m.get("type"))
                    .and_then(Value::as_str)
                    .unwrap_or("default")
                    .to_string()
            };
            if let Some(legacy) = legacy
                && kind(legacy) != kind(p)
            {
                return Err(c.error(format!(
                    "'rope_scaling' (type '{}') contradicts 'rope_parameters' (type '{}'); \
                     keep one of them",
                    kind(legacy),
                    kind(p)
                )));
            }
            p.clone()
        }
        None => legacy.cloned().unwrap_or_default(),
    };
    if !params.contains_key("rope_theta")
        && let Some(theta) = c.opt_f64("rope_theta")?
    {
        params.insert("rope_theta".into(), json!(theta));
    }
    parse_rope(&params, &c.map, head_dim, max_pos, default_theta).map_err(|e| c.error(e))
}

/// `layer_types` from the config, or from a family rule when absent.
fn layer_kinds(
    c: &ConfigJson,
    layers: usize,
    rule: impl Fn(usize) -> LayerKind,
) -> Result<Vec<LayerKind>> {
    match c.opt_strings("layer_types")? {
        Some(types) => {
            if types.len() != layers {
                return Err(c.error(format!(
                    "'layer_types' lists {} layers, but num_hidden_layers is {layers}",
                    types.len()
                )));
            }
            types
                .iter()
                .map(|t| match t.as_str() {
                    "full_attention" | "attention" => Ok(LayerKind::Full),
                    "sliding_attention" => Ok(LayerKind::Sliding),
                    other => Err(c.error(format!(
                        "layer type '{other}' is not supported (supported: full_attention, \
                         sliding_attention)"
                    ))),
                })
                .collect()
        }
        None => Ok((0..layers).map(rule).collect()),
    }
}

impl DecoderConfig {
    /// Reads a decoder config (its `model_type` must be one of [`DecoderFamily::ALL`]).
    pub fn from_config(c: ConfigJson) -> Result<Self> {
        let model_type = c.model_type().unwrap_or("").to_string();
        let family = DecoderFamily::from_model_type(&model_type).ok_or_else(|| {
            c.error(format!(
                "model_type \"{model_type}\" is not a supported decoder (supported: {})",
                DecoderFamily::ALL.map(|(_, n)| n).join(", ")
            ))
        })?;
        let config = match family {
            DecoderFamily::Gpt2 => Self::gpt2(&c)?,
            _ => Self::llama_like(family, &c)?,
        };
        config.validate(&c)?;
        Ok(config)
    }

    fn llama_like(family: DecoderFamily, c: &ConfigJson) -> Result<Self> {
        use DecoderFamily::*;
        let hidden = c.required_usize("hidden_size")?;
        let layers = c.required_usize("num_hidden_layers")?;
        let heads = c.required_usize("num_attention_heads")?;
        let kv_heads = c.usize_or("num_key_value_heads", heads)?;
        let gemma = matches!(family, Gemma2 | Gemma3);
        let head_dim = match (family, c.opt_usize("head_dim")?) {
            (_, Some(d)) => d,
            (Qwen3, None) => 128,
            (Gemma2 | Gemma3, None) => 256,
            _ => hidden / heads.max(1),
        };
        let max_pos = c.usize_or(
            "max_position_embeddings",
            match family {
                Llama => 2048,
                Mistral => 131_072,
                Qwen2 | Qwen3 => 32_768,
                Gemma2 => 8192,
                Gemma3 => 131_072,
                Phi3 => 4096,
                Gpt2 => unreachable!(),
            },
        )?;
        let act_key = if gemma {
            "hidden_activation"
        } else {
            "hidden_act"
        };
        let act_default = if gemma { "gelu_pytorch_tanh" } else { "silu" };
        let activation = Activation::parse(c.opt_str(act_key)?.unwrap_or(act_default))?;
        let attention_bias = c.bool_or("attention_bias", false)?;
        let (qkv_bias, o_bias) = match family {
            Qwen2 => (true, false),
            Phi3 => (false, false),
            _ => (attention_bias, attention_bias),
        };
        let mlp_bias = family == Llama && c.bool_or("mlp_bias", false)?;
        let sliding_window = match family {
            Mistral => match c.map.get("sliding_window") {
                None => Some(4096),
                Some(_) => c.opt_usize("sliding_window")?,
            },
            Qwen2 | Qwen3 => {
                if c.bool_or("use_sliding_window", false)? {
                    Some(c.usize_or("sliding_window", 4096)?)
                } else {
                    None
                }
            }
            Gemma2 | Gemma3 => Some(c.usize_or("sliding_window", 4096)?),
            Phi3 => c.opt_usize("sliding_window")?,
            Llama | Gpt2 => None,
        };
        let max_window_layers = c.usize_or("max_window_layers", 28)?;
        let layer_kinds = match family {
            Qwen2 | Qwen3 => layer_kinds(c, layers, |i| {
                if sliding_window.is_some() && i >= max_window_layers {
                    LayerKind::Sliding
                } else {
                    LayerKind::Full
                }
            })?,
            Gemma2 => layer_kinds(c, layers, |i| {
                if (i + 1) % 2 == 1 {
                    LayerKind::Sliding
                } else {
                    LayerKind::Full
                }
            })?,
            Gemma3 => {
                let pattern = c.usize_or("sliding_window_pattern", 6)?.max(1);
                layer_kinds(c, layers, |i| {
                    if (i + 1) % pattern != 0 {
                        LayerKind::Sliding
                    } else {
                        LayerKind::Full
                    }
                })?
            }
            _ => {
                let kind = if sliding_window.is_some() {
                    LayerKind::Sliding
                } else {
                    LayerKind::Full
                };
                vec![kind; layers]
            }
        };
        let positions = if family == Gemma3 {
            Self::gemma3_rope(c, head_dim, max_pos)?
        } else {
            let full = single_rope(c, head_dim, max_pos, 10_000.0)?;
            if family == Phi3
                && !matches!(
                    full.scaling,
                    crate::layers::rope::RopeScaling::Default
                        | crate::layers::rope::RopeScaling::LongRope { .. }
                )
            {
                return Err(c.error(
                    "Phi-3 supports the rope types 'default' and 'longrope' ('su' and 'yarn' \
                     are read as 'longrope', as transformers does)",
                ));
            }
            Positions::Rope {
                full,
                sliding: None,
            }
        };
        let attention_scale = if gemma {
            c.positive_f64_or("query_pre_attn_scalar", 256.0)?
                .powf(-0.5)
        } else {
            (head_dim as f64).powf(-0.5)
        };
        let attn_softcap = match family {
            Gemma2 => {
                c.opt_f64("attn_logit_softcapping")?
                    .or(match c.map.get("attn_logit_softcapping") {
                        None => Some(50.0),
                        Some(_) => None,
                    })
            }
            // Gemma 3 stores the field but transformers never applies it.
            _ => None,
        };
        let final_softcap = match family {
            Gemma2 => c.opt_f64("final_logit_softcapping")?.or(
                match c.map.get("final_logit_softcapping") {
                    None => Some(30.0),
                    Some(_) => None,
                },
            ),
            Gemma3 => c.opt_f64("final_logit_softcapping")?,
            _ => None,
        };
        if family == Gemma3 {
            c.refuse_if(
                "use_bidirectional_attention",
                |v| v.as_bool() == Some(true),
                "only causal Gemma 3 language models are supported",
            )?;
        }
        Ok(Self {
            family,
            vocab_size: c.required_usize("vocab_size")?,
            hidden_size: hidden,
            intermediate_size: c.required_usize("intermediate_size")?,
            num_layers: layers,
            num_heads: heads,
            num_kv_heads: kv_heads,
            head_dim,
            norm: if gemma {
                NormKind::RmsNormPlusOne
            } else {
                NormKind::RmsNorm
            },
            norm_eps: c
                .positive_f64_or("rms_norm_eps", if family == Phi3 { 1e-5 } else { 1e-6 })?,
            qkv_bias,
            o_bias,
            mlp_bias,
            qk_norm: matches!(family, Qwen3 | Gemma3),
            activation,
            gated_mlp: true,
            positions,
            layer_kinds,
            sliding_window,
            attention_scale,
            scale_by_inverse_layer: false,
            attn_softcap,
            final_softcap,
            embed_scale: gemma.then(|| (hidden as f64).sqrt() as f32),
            sandwich_norms: gemma,
            tie_word_embeddings: c.bool_or("tie_word_embeddings", gemma)?,
            max_position_embeddings: max_pos,
            bos_token_id: c.token_ids("bos_token_id")?.first().copied(),
            eos_token_ids: c.token_ids("eos_token_id")?,
            pad_token_id: c.token_ids("pad_token_id")?.first().copied(),
            raw: c.map.clone(),
        })
    }

    /// Gemma 3's two rotary embeddings: `rope_parameters` per layer type (transformers 5), or
    /// the legacy `rope_theta` + `rope_scaling` (full layers) and `rope_local_base_freq`
    /// (sliding layers).
    fn gemma3_rope(c: &ConfigJson, head_dim: usize, max_pos: usize) -> Result<Positions> {
        let parse = |params: &Map<String, Value>, theta: f64| {
            parse_rope(params, &c.map, head_dim, max_pos, theta).map_err(|e| c.error(e))
        };
        if let Some(nested) = c.opt_object("rope_parameters")?
            && (nested.contains_key("full_attention") || nested.contains_key("sliding_attention"))
        {
            let get = |key: &str| {
                nested
                    .get(key)
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default()
            };
            return Ok(Positions::Rope {
                full: parse(&get("full_attention"), 1_000_000.0)?,
                sliding: Some(parse(&get("sliding_attention"), 10_000.0)?),
            });
        }
        let mut full = c
            .opt_object("rope_parameters")?
            .or(c.opt_object("rope_scaling")?)
            .cloned()
            .unwrap_or_default();
        if let Some(theta) = c.opt_f64("rope_theta")? {
            full.entry("rope_theta").or_insert(json!(theta));
        }
        let mut local = Map::new();
        local.insert(
            "rope_theta".into(),
            json!(c.f64_or("rope_local_base_freq", 10_000.0)?),
        );
        Ok(Positions::Rope {
            full: parse(&full, 1_000_000.0)?,
            sliding: Some(parse(&local, 10_000.0)?),
        })
    }

    fn gpt2(c: &ConfigJson) -> Result<Self> {
        let hidden = c.required_usize(c.alias(&["n_embd", "hidden_size"]))?;
        let heads = c.required_usize(c.alias(&["n_head", "num_attention_heads"]))?;
        let layers = c.required_usize(c.alias(&["n_layer", "num_hidden_layers"]))?;
        let max_pos = c.usize_or(c.alias(&["n_positions", "max_position_embeddings"]), 1024)?;
        c.refuse_if(
            "add_cross_attention",
            |v| v.as_bool() == Some(true),
            "GPT-2 with cross-attention is an encoder-decoder; only the causal LM is supported",
        )?;
        let scale = if c.bool_or("scale_attn_weights", true)? {
            ((hidden / heads.max(1)) as f64).powf(-0.5)
        } else {
            1.0
        };
        let inner = c.opt_usize("n_inner")?.unwrap_or(4 * hidden);
        Ok(Self {
            family: DecoderFamily::Gpt2,
            vocab_size: c.required_usize("vocab_size")?,
            hidden_size: hidden,
            intermediate_size: inner,
            num_layers: layers,
            num_heads: heads,
            num_kv_heads: heads,
            head_dim: hidden / heads.max(1),
            norm: NormKind::LayerNorm,
            norm_eps: c.positive_f64_or("layer_norm_epsilon", 1e-5)?,
            qkv_bias: true,
            o_bias: true,
            mlp_bias: true,
            qk_norm: false,
            activation: Activation::parse(c.opt_str("activation_function")?.unwrap_or("gelu_new"))?,
            gated_mlp: false,
            positions: Positions::Learned(max_pos),
            layer_kinds: vec![LayerKind::Full; layers],
            sliding_window: None,
            attention_scale: scale,
            scale_by_inverse_layer: c.bool_or("scale_attn_by_inverse_layer_idx", false)?,
            attn_softcap: None,
            final_softcap: None,
            embed_scale: None,
            sandwich_norms: false,
            tie_word_embeddings: c.bool_or("tie_word_embeddings", true)?,
            max_position_embeddings: max_pos,
            bos_token_id: c.token_ids("bos_token_id")?.first().copied(),
            eos_token_ids: c.token_ids("eos_token_id")?,
            pad_token_id: c.token_ids("pad_token_id")?.first().copied(),
            raw: c.map.clone(),
        })
    }

    fn validate(&self, c: &ConfigJson) -> Result<()> {
        let (h, kv) = (self.num_heads, self.num_kv_heads);
        if h == 0 || kv == 0 || !h.is_multiple_of(kv) {
            return Err(c.error(format!(
                "num_attention_heads {h} must be a positive multiple of num_key_value_heads {kv}"
            )));
        }
        if self.head_dim == 0
            || (self.family == DecoderFamily::Gpt2 && !self.hidden_size.is_multiple_of(h))
        {
            return Err(c.error(format!(
                "the hidden size {} does not split into {h} heads",
                self.hidden_size
            )));
        }
        if self.sliding_window == Some(0) {
            return Err(c.error("'sliding_window' must be at least 1"));
        }
        if self.intermediate_size == 0 || self.vocab_size == 0 {
            return Err(c.error("intermediate_size and vocab_size must be at least 1"));
        }
        Ok(())
    }

    /// The RoPE settings of layer `layer` (`None` for learned positions).
    pub fn rope_for(&self, layer: usize) -> Option<&RopeConfig> {
        match &self.positions {
            Positions::Learned(_) => None,
            Positions::Rope { full, sliding } => Some(match (self.layer_kinds[layer], sliding) {
                (LayerKind::Sliding, Some(sliding)) => sliding,
                _ => full,
            }),
        }
    }

    /// The `config.json` of a model with this config: the original fields, with
    /// `architectures` naming the causal-LM class.
    pub fn hf_config(&self) -> Value {
        let mut map = self.raw.clone();
        map.insert("model_type".into(), json!(self.family.model_type()));
        map.insert(
            "architectures".into(),
            json!([self.family.causal_lm_class()]),
        );
        Value::Object(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(value: Value) -> Result<DecoderConfig> {
        DecoderConfig::from_config(ConfigJson::from_value(Path::new("config.json"), value)?)
    }

    fn base(model_type: &str) -> Value {
        json!({"model_type": model_type, "vocab_size": 32, "hidden_size": 16,
               "intermediate_size": 32, "num_hidden_layers": 4, "num_attention_heads": 4,
               "num_key_value_heads": 2})
    }

    #[test]
    fn family_defaults_follow_transformers() {
        let qwen3 = config(base("qwen3")).unwrap();
        assert_eq!(qwen3.head_dim, 128);
        assert!(qwen3.qk_norm);
        let gemma2 = config(base("gemma2")).unwrap();
        assert_eq!(
            gemma2.layer_kinds,
            [
                LayerKind::Sliding,
                LayerKind::Full,
                LayerKind::Sliding,
                LayerKind::Full
            ]
        );
        assert_eq!(gemma2.attn_softcap, Some(50.0));
        assert_eq!(gemma2.final_softcap, Some(30.0));
        assert!(gemma2.tie_word_embeddings);
        assert_eq!(gemma2.embed_scale, Some(4.0));
        let mistral = config(base("mistral")).unwrap();
        assert_eq!(mistral.sliding_window, Some(4096));
        let mut off = base("mistral");
        off["sliding_window"] = Value::Null;
        assert_eq!(config(off).unwrap().sliding_window, None);
        let mut qwen2 = base("qwen2");
        qwen2["use_sliding_window"] = json!(true);
        qwen2["sliding_window"] = json!(3);
        qwen2["max_window_layers"] = json!(2);
        let q = config(qwen2).unwrap();
        assert_eq!(q.layer_kinds[1..3], [LayerKind::Full, LayerKind::Sliding]);
        assert!(q.qkv_bias && !q.o_bias);
    }

    #[test]
    fn gemma3_reads_both_rope_forms() {
        let mut legacy = base("gemma3_text");
        legacy["rope_theta"] = json!(1_000_000.0);
        legacy["rope_scaling"] = json!({"rope_type": "linear", "factor": 8.0});
        legacy["rope_local_base_freq"] = json!(10_000.0);
        let a = config(legacy).unwrap();
        let mut modern = base("gemma3_text");
        modern["rope_parameters"] = json!({
            "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1_000_000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0}});
        let b = config(modern).unwrap();
        assert_eq!(a.positions, b.positions);
        assert_eq!(a.rope_for(0).unwrap().theta, 10_000.0);
    }

    #[test]
    fn unsupported_things_are_named() {
        let e = config(base("falcon")).unwrap_err().to_string();
        assert!(e.contains("\"falcon\" is not a supported decoder"), "{e}");
        assert!(e.contains("gemma3_text"), "{e}");
        let mut bad = base("llama");
        bad["rope_scaling"] = json!({"rope_type": "proportional"});
        assert!(
            config(bad)
                .unwrap_err()
                .to_string()
                .contains("'proportional'")
        );
        let mut bad = base("llama");
        bad["num_key_value_heads"] = json!(3);
        assert!(config(bad).is_err());
        let mut bad = base("llama");
        bad["hidden_size"] = json!("16");
        assert!(
            config(bad)
                .unwrap_err()
                .to_string()
                .contains("'hidden_size'")
        );
    }
}
