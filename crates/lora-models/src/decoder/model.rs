//! [`DecoderForCausalLM`]: one decoder for every supported family, built from LoRA-adaptable
//! linear layers and configured by a [`DecoderConfig`]; matches transformers' `*ForCausalLM`.

use burn::module::Module;
use burn::nn::Embedding;
use burn::tensor::{Device, Int, Tensor, TensorData};
use lora_core::{BaseDType, BottleneckAdapter, LoraLinear};

use super::cache::{KvCache, LayerCache, extend};
use super::config::{DecoderConfig, DecoderFamily, Positions};
use super::names::DecoderNames;
use super::pass::DecoderPass;
use crate::error::{ModelError, Result};
use crate::export::{NamedHostTensors, embedding_tensor, linear_tensors_oriented, norm_tensors};
use crate::layers::attention::attend;
use crate::layers::norm::Norm;
use crate::layers::rope::apply_rope;
use crate::weights::{StoredAs, WeightSource, load_embedding, load_linear_oriented, load_norm};

/// Self-attention: separate or fused projections, optional per-head q/k norms.
#[derive(Module, Debug)]
pub struct DecoderAttention {
    /// The query projection (absent when fused).
    pub q_proj: Option<LoraLinear>,
    /// The key projection.
    pub k_proj: Option<LoraLinear>,
    /// The value projection.
    pub v_proj: Option<LoraLinear>,
    /// The fused q|k|v projection (Phi-3 `qkv_proj`, GPT-2 `c_attn`).
    pub qkv_proj: Option<LoraLinear>,
    /// The output projection.
    pub o_proj: LoraLinear,
    /// Per-head RMSNorm of the queries (Qwen3, Gemma 3).
    pub q_norm: Option<Norm>,
    /// Per-head RMSNorm of the keys.
    pub k_norm: Option<Norm>,
}

/// The feed-forward block: gated (`down(act(gate(x)) · up(x))`, gate and up possibly fused) or
/// plain (`down(act(up(x)))`, GPT-2).
#[derive(Module, Debug)]
pub struct DecoderMlp {
    /// The gate projection.
    pub gate_proj: Option<LoraLinear>,
    /// The up projection (GPT-2's `c_fc`).
    pub up_proj: Option<LoraLinear>,
    /// The fused gate|up projection (Phi-3).
    pub gate_up_proj: Option<LoraLinear>,
    /// The down projection.
    pub down_proj: LoraLinear,
}

/// One decoder layer. The optional bottleneck adapters are the AdapterH (after attention and
/// after the MLP) and AdapterL (after the MLP) baselines, on each sub-layer's output before the
/// residual add.
#[derive(Module, Debug)]
pub struct DecoderLayer {
    /// Self-attention.
    pub self_attn: DecoderAttention,
    /// Feed-forward.
    pub mlp: DecoderMlp,
    /// The norm before attention.
    pub input_norm: Norm,
    /// The norm on the attention output (Gemma).
    pub post_attention_norm: Option<Norm>,
    /// The norm before the MLP.
    pub pre_mlp_norm: Norm,
    /// The norm on the MLP output (Gemma).
    pub post_mlp_norm: Option<Norm>,
    /// Adapter after the attention block (AdapterH).
    pub attention_adapter: Option<BottleneckAdapter>,
    /// Adapter after the MLP (AdapterH and AdapterL).
    pub ffn_adapter: Option<BottleneckAdapter>,
}

/// A batch for the decoder: token ids and, optionally, which keys are padding, each token's
/// position, and packed segments (several examples in a row that must not attend to each
/// other). Host-side vectors cover the whole key range (cached positions first).
#[derive(Debug, Clone)]
pub struct DecoderBatch {
    /// Token ids `[batch, seq]`.
    pub input_ids: Tensor<2, Int>,
    /// Per row, `true` for real tokens over every key position; empty: no padding.
    pub key_padding: Vec<Vec<bool>>,
    /// Per row, the position id of each new token (`batch · seq` values); empty:
    /// `past..past + seq` for every row.
    pub positions: Vec<usize>,
    /// Per row, the segment of each key position; empty: one segment per row.
    pub segments: Vec<Vec<u32>>,
}

impl DecoderBatch {
    /// Plain ids: no padding, positions counting on from the cache, one segment.
    pub fn ids(input_ids: Tensor<2, Int>) -> Self {
        Self {
            input_ids,
            key_padding: Vec::new(),
            positions: Vec::new(),
            segments: Vec::new(),
        }
    }
}

/// A causal language model of any supported family.
#[derive(Module, Debug)]
pub struct DecoderForCausalLM {
    /// Token embeddings.
    pub embed_tokens: Embedding,
    /// Learned position embeddings (GPT-2).
    pub embed_positions: Option<Embedding>,
    /// The layers.
    pub layers: Vec<DecoderLayer>,
    /// The final norm.
    pub norm: Norm,
    /// The output head; `None` when tied to the token embeddings.
    pub lm_head: Option<LoraLinear>,
    #[module(skip)]
    config: DecoderConfig,
}

impl DecoderForCausalLM {
    /// Loads a model from Hugging Face-named weights (a safetensors directory, or a GGUF file
    /// seen through its family's name map). Every weight is frozen.
    pub fn load(
        config: &DecoderConfig,
        source: &dyn WeightSource,
        device: &Device,
    ) -> Result<Self> {
        let names = config.family.names();
        let conv1d = config.family.conv1d();
        // Original GPT-2 checkpoints name their tensors without the `transformer.` prefix.
        let bare_gpt2 = config.family == DecoderFamily::Gpt2
            && !source.contains(&format!("{}.weight", names.embed_tokens));
        let key = |name: &str| -> String {
            match name.strip_prefix("transformer.") {
                Some(rest) if bare_gpt2 => rest.to_string(),
                _ => name.to_string(),
            }
        };
        let (d, hd, ff) = (
            config.hidden_size,
            config.head_dim,
            config.intermediate_size,
        );
        let (q_out, kv_out) = (config.num_heads * hd, config.num_kv_heads * hd);
        let norm = |name: &str, dim: usize| {
            load_norm(
                source,
                &key(name),
                config.norm,
                dim,
                config.norm_eps,
                device,
            )
        };
        let mut layers = Vec::with_capacity(config.num_layers);
        for i in 0..config.num_layers {
            let p = format!("{}.{i}", names.layers);
            let linear = |name: &str, d_in: usize, d_out: usize, bias: bool| {
                load_linear_oriented(
                    source,
                    &key(&format!("{p}.{name}")),
                    d_in,
                    d_out,
                    bias,
                    conv1d,
                    device,
                )
            };
            let opt_linear = |name: Option<&str>, d_in: usize, d_out: usize, bias: bool| {
                name.map(|n| linear(n, d_in, d_out, bias)).transpose()
            };
            let head_norm = |name: &str| -> Result<Option<Norm>> {
                config
                    .qk_norm
                    .then(|| norm(&format!("{p}.{name}"), hd))
                    .transpose()
            };
            let self_attn = DecoderAttention {
                q_proj: opt_linear(names.q, d, q_out, config.qkv_bias)?,
                k_proj: opt_linear(names.k, d, kv_out, config.qkv_bias)?,
                v_proj: opt_linear(names.v, d, kv_out, config.qkv_bias)?,
                qkv_proj: opt_linear(names.qkv, d, q_out + 2 * kv_out, config.qkv_bias)?,
                o_proj: linear(names.o, q_out, d, config.o_bias)?,
                q_norm: head_norm(names.q_norm)?,
                k_norm: head_norm(names.k_norm)?,
            };
            let mlp = DecoderMlp {
                gate_proj: opt_linear(names.gate, d, ff, config.mlp_bias)?,
                up_proj: opt_linear(names.up, d, ff, config.mlp_bias)?,
                gate_up_proj: opt_linear(names.gate_up, d, 2 * ff, config.mlp_bias)?,
                down_proj: linear(names.down, ff, d, config.mlp_bias)?,
            };
            let layer_norm = |name: Option<&str>| -> Result<Option<Norm>> {
                name.map(|n| norm(&format!("{p}.{n}"), d)).transpose()
            };
            layers.push(DecoderLayer {
                self_attn,
                mlp,
                input_norm: norm(&format!("{p}.{}", names.input_norm), d)?,
                post_attention_norm: layer_norm(names.post_attention_norm)?,
                pre_mlp_norm: norm(&format!("{p}.{}", names.pre_mlp_norm), d)?,
                post_mlp_norm: layer_norm(names.post_mlp_norm)?,
                attention_adapter: None,
                ffn_adapter: None,
            });
        }
        let head_key = format!("{}.weight", names.lm_head);
        // transformers ties the head only when the checkpoint does not carry its own.
        let lm_head = if source.contains(&head_key) || !config.tie_word_embeddings {
            Some(load_linear_oriented(
                &StoredAs::new(source, BaseDType::F32),
                names.lm_head,
                d,
                config.vocab_size,
                false,
                false,
                device,
            )?)
        } else {
            None
        };
        let embed_positions = match &config.positions {
            Positions::Learned(n) => Some(load_embedding(
                source,
                &key(&format!(
                    "{}.weight",
                    names.embed_positions.unwrap_or("transformer.wpe")
                )),
                *n,
                d,
                device,
            )?),
            Positions::Rope { .. } => None,
        };
        Ok(Self {
            embed_tokens: load_embedding(
                source,
                &key(&format!("{}.weight", names.embed_tokens)),
                config.vocab_size,
                d,
                device,
            )?,
            embed_positions,
            layers,
            norm: norm(names.final_norm, d)?,
            lm_head,
            config: config.clone(),
        })
    }

    /// The config the model was built from.
    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    /// The `config.json` of this model: the original fields with `architectures` naming the
    /// family's causal-LM class.
    pub fn hf_config(&self) -> serde_json::Value {
        self.config.hf_config()
    }

    /// The family's module names.
    pub fn names(&self) -> &'static DecoderNames {
        self.config.family.names()
    }

    /// Logits `[batch, seq, vocab]` for a batch of equal-length sequences without padding.
    pub fn forward(&self, input_ids: Tensor<2, Int>) -> Result<Tensor<3>> {
        self.forward_batch(&DecoderBatch::ids(input_ids))
    }

    /// Logits `[batch, seq, vocab]` for a batch with optional padding, positions and segments.
    pub fn forward_batch(&self, batch: &DecoderBatch) -> Result<Tensor<3>> {
        let hidden = self.hidden_states(batch, &mut KvCache::new())?;
        Ok(self.logits(hidden))
    }

    /// Runs `input_ids` after the positions already in `cache`, appends their keys and values
    /// to it, and returns the logits of the last position, `[batch, vocab]`.
    pub fn forward_cached(
        &self,
        input_ids: Tensor<2, Int>,
        cache: &mut KvCache,
    ) -> Result<Tensor<2>> {
        let hidden = self.hidden_states(&DecoderBatch::ids(input_ids), cache)?;
        let [batch, seq, d] = hidden.dims();
        let last = hidden.slice([0..batch, seq - 1..seq, 0..d]);
        Ok(self.logits(last).reshape([batch, self.config.vocab_size]))
    }

    /// The next-token logits `[1, vocab]` after the sequence `ids`, running only the positions
    /// `cache` does not hold yet and appending them to it. A model with LongRoPE recomputes the
    /// whole sequence once, when it first grows past `original_max_position_embeddings`
    /// (transformers' Phi-3 does the same, so that every key uses the long factors).
    pub fn next_logits(
        &self,
        ids: &[u32],
        cache: &mut KvCache,
        device: &Device,
    ) -> Result<Tensor<2>> {
        if let Some(crate::layers::rope::RopeScaling::LongRope { original_max, .. }) =
            self.config.rope_for(0).map(|r| &r.scaling)
        {
            let past = cache.len();
            if past > 0 && past <= *original_max && ids.len() > *original_max {
                *cache = KvCache::new();
            }
        }
        let past = cache.len();
        if past >= ids.len() {
            return Err(ModelError::Input(format!(
                "the cache already holds {past} positions of a {}-token sequence",
                ids.len()
            )));
        }
        self.forward_cached(ids_tensor(&ids[past..], device), cache)
    }

    /// The final hidden states `[batch, seq, hidden]` after the final norm (the input of the
    /// head), appending keys and values to `cache`.
    pub fn hidden_states(&self, batch: &DecoderBatch, cache: &mut KvCache) -> Result<Tensor<3>> {
        let pass = DecoderPass::new(&self.config, batch, cache.len())?;
        if cache.layers.len() != self.layers.len() {
            cache.layers = vec![None; self.layers.len()];
        }
        let mut x = self.embed(batch, &pass);
        for (i, (layer, entry)) in self.layers.iter().zip(cache.layers.iter_mut()).enumerate() {
            x = self.layer_forward(i, layer, x, &pass, entry);
        }
        Ok(self.norm.forward(x))
    }

    /// The hidden states entering the first layer, `[batch, seq, hidden]`: token embeddings
    /// (scaled, plus learned positions where the family has them).
    pub fn embed(&self, batch: &DecoderBatch, pass: &DecoderPass) -> Tensor<3> {
        let mut x = self.embed_tokens.forward(batch.input_ids.clone());
        if let Some(scale) = self.config.embed_scale {
            x = x.mul_scalar(scale);
        }
        if let Some(wpe) = &self.embed_positions {
            x = x + wpe.forward(pass.position_ids());
        }
        x
    }

    /// Runs `layer` as the model's layer `index` on `x` (`[batch, seq, hidden]`, the previous
    /// layer's output), appending its keys and values to `cache`. `layer` is normally
    /// `&self.layers[index]`; layer-wise recomputation passes a copy whose trainable parameters
    /// are detached.
    pub fn layer_forward(
        &self,
        index: usize,
        layer: &DecoderLayer,
        x: Tensor<3>,
        pass: &DecoderPass,
        cache: &mut Option<LayerCache>,
    ) -> Tensor<3> {
        let (tables, mask) = pass.for_layer(self.config.layer_kinds[index]);
        let h = layer.input_norm.forward(x.clone());
        let mut a = self.attention(index, &layer.self_attn, h, tables, mask, cache);
        if let Some(norm) = &layer.post_attention_norm {
            a = norm.forward(a);
        }
        if let Some(adapter) = &layer.attention_adapter {
            a = adapter.forward(a);
        }
        let x = x + a;
        let h = layer.pre_mlp_norm.forward(x.clone());
        let mut m = self.mlp(&layer.mlp, h);
        if let Some(norm) = &layer.post_mlp_norm {
            m = norm.forward(m);
        }
        if let Some(adapter) = &layer.ffn_adapter {
            m = adapter.forward(m);
        }
        x + m
    }

    /// Output logits from final hidden states (the head, then Gemma's soft-capping).
    pub fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        let logits = match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => {
                // Tied head: `hidden · Eᵀ` computed as `(E · hiddenᵀ)ᵀ`, so the big
                // `[vocab, hidden]` table is never transposed; only the small activations are.
                let [batch, seq, d] = hidden.dims();
                let weight = self.embed_tokens.weight.val();
                let vocab = weight.dims()[0];
                let columns = hidden.reshape([batch * seq, d]).transpose();
                weight
                    .matmul(columns)
                    .transpose()
                    .reshape([batch, seq, vocab])
            }
        };
        match self.config.final_softcap {
            Some(cap) => logits.div_scalar(cap).tanh().mul_scalar(cap),
            None => logits,
        }
    }

    fn attention(
        &self,
        index: usize,
        attn: &DecoderAttention,
        h: Tensor<3>,
        tables: Option<&(Tensor<4>, Tensor<4>)>,
        mask: Option<&Tensor<4>>,
        cache: &mut Option<LayerCache>,
    ) -> Tensor<3> {
        let c = &self.config;
        let [b, s, _] = h.dims();
        let (heads, kv_heads, hd) = (c.num_heads, c.num_kv_heads, c.head_dim);
        let (q, k, v) = match &attn.qkv_proj {
            Some(qkv) => {
                let t = qkv.forward(h);
                let (qw, kw) = (heads * hd, kv_heads * hd);
                (
                    t.clone().slice([0..b, 0..s, 0..qw]),
                    t.clone().slice([0..b, 0..s, qw..qw + kw]),
                    t.slice([0..b, 0..s, qw + kw..qw + 2 * kw]),
                )
            }
            None => {
                let proj = |l: &Option<LoraLinear>| {
                    l.as_ref()
                        .expect("separate projections exist when not fused")
                        .forward(h.clone())
                };
                (proj(&attn.q_proj), proj(&attn.k_proj), proj(&attn.v_proj))
            }
        };
        let split = |t: Tensor<3>, n: usize, norm: &Option<Norm>| {
            let t = t.reshape([b, s, n, hd]);
            let t = match norm {
                Some(norm) => norm.forward(t),
                None => t,
            };
            t.swap_dims(1, 2)
        };
        let mut q = split(q, heads, &attn.q_norm);
        let mut k = split(k, kv_heads, &attn.k_norm);
        let v = split(v, kv_heads, &None);
        if let Some((cos, sin)) = tables {
            q = apply_rope(q, cos, sin);
            k = apply_rope(k, cos, sin);
        }
        let (k, v) = extend(cache, k, v);
        let mut scale = c.attention_scale;
        if c.scale_by_inverse_layer {
            scale /= (index + 1) as f64;
        }
        let context = attend(q, k, v, scale, c.attn_softcap, mask, None);
        attn.o_proj.forward(context)
    }

    fn mlp(&self, mlp: &DecoderMlp, h: Tensor<3>) -> Tensor<3> {
        let act = self.config.activation;
        let inner = match (&mlp.gate_up_proj, &mlp.gate_proj, &mlp.up_proj) {
            (Some(fused), _, _) => {
                let t = fused.forward(h);
                let [b, s, two_ff] = t.dims();
                let ff = two_ff / 2;
                let gate = t.clone().slice([0..b, 0..s, 0..ff]);
                let up = t.slice([0..b, 0..s, ff..two_ff]);
                act.gated(gate, up)
            }
            (None, Some(gate), Some(up)) => act.gated(gate.forward(h.clone()), up.forward(h)),
            (None, None, Some(up)) => act.forward(up.forward(h)),
            _ => unreachable!("every family has an up projection"),
        };
        mlp.down_proj.forward(inner)
    }

    /// Every weight under its Hugging Face key, in PyTorch's layout (GPT-2's `Conv1D` weights
    /// `[in, out]`; no `lm_head.weight` when tied): what [`DecoderForCausalLM::load`] reads
    /// back. Layers must be plain: unmerged adapters and bottleneck adapters are refused.
    pub fn hf_tensors(&self) -> Result<NamedHostTensors> {
        let names = self.names();
        let conv1d = self.config.family.conv1d();
        let mut out = vec![embedding_tensor(
            &format!("{}.weight", names.embed_tokens),
            &self.embed_tokens,
        )?];
        if let (Some(wpe), Some(name)) = (&self.embed_positions, names.embed_positions) {
            out.push(embedding_tensor(&format!("{name}.weight"), wpe)?);
        }
        for (i, layer) in self.layers.iter().enumerate() {
            let p = format!("{}.{i}", names.layers);
            if layer.attention_adapter.is_some() || layer.ffn_adapter.is_some() {
                return Err(ModelError::NotExportable(format!(
                    "{p} has bottleneck adapters (AdapterH / AdapterL), for which transformers' \
                     {} has no place",
                    self.config.family.causal_lm_class()
                )));
            }
            for (name, linear) in layer_linears(names, layer) {
                out.extend(linear_tensors_oriented(
                    &format!("{p}.{name}"),
                    linear,
                    conv1d,
                )?);
            }
            let a = &layer.self_attn;
            for (name, norm) in [(names.q_norm, &a.q_norm), (names.k_norm, &a.k_norm)] {
                if let Some(norm) = norm {
                    out.extend(norm_tensors(&format!("{p}.{name}"), norm)?);
                }
            }
            out.extend(norm_tensors(
                &format!("{p}.{}", names.input_norm),
                &layer.input_norm,
            )?);
            out.extend(norm_tensors(
                &format!("{p}.{}", names.pre_mlp_norm),
                &layer.pre_mlp_norm,
            )?);
            for (name, norm) in [
                (names.post_attention_norm, &layer.post_attention_norm),
                (names.post_mlp_norm, &layer.post_mlp_norm),
            ] {
                if let (Some(name), Some(norm)) = (name, norm) {
                    out.extend(norm_tensors(&format!("{p}.{name}"), norm)?);
                }
            }
        }
        out.extend(norm_tensors(names.final_norm, &self.norm)?);
        if let Some(head) = &self.lm_head {
            out.extend(linear_tensors_oriented(names.lm_head, head, false)?);
        }
        Ok(out)
    }
}

/// A layer's linear layers with their names relative to the layer, in a fixed order.
pub(crate) fn layer_linears<'a>(
    names: &DecoderNames,
    layer: &'a DecoderLayer,
) -> Vec<(&'static str, &'a LoraLinear)> {
    let a = &layer.self_attn;
    let m = &layer.mlp;
    [
        (names.q, a.q_proj.as_ref()),
        (names.k, a.k_proj.as_ref()),
        (names.v, a.v_proj.as_ref()),
        (names.qkv, a.qkv_proj.as_ref()),
        (Some(names.o), Some(&a.o_proj)),
        (names.gate, m.gate_proj.as_ref()),
        (names.up, m.up_proj.as_ref()),
        (names.gate_up, m.gate_up_proj.as_ref()),
        (Some(names.down), Some(&m.down_proj)),
    ]
    .into_iter()
    .filter_map(|(n, l)| Some((n?, l?)))
    .collect()
}

/// [`layer_linears`] of a layer's attention and MLP, mutably, in the same order (taking the two
/// blocks lets callers borrow the layer's norms at the same time).
pub(crate) fn block_linears_mut<'a>(
    names: &DecoderNames,
    a: &'a mut DecoderAttention,
    m: &'a mut DecoderMlp,
) -> Vec<(&'static str, &'a mut LoraLinear)> {
    [
        (names.q, a.q_proj.as_mut()),
        (names.k, a.k_proj.as_mut()),
        (names.v, a.v_proj.as_mut()),
        (names.qkv, a.qkv_proj.as_mut()),
        (Some(names.o), Some(&mut a.o_proj)),
        (names.gate, m.gate_proj.as_mut()),
        (names.up, m.up_proj.as_mut()),
        (names.gate_up, m.gate_up_proj.as_mut()),
        (Some(names.down), Some(&mut m.down_proj)),
    ]
    .into_iter()
    .filter_map(|(n, l)| Some((n?, l?)))
    .collect()
}

/// `[1, seq]` token ids on `device`.
pub fn ids_tensor(ids: &[u32], device: &Device) -> Tensor<2, Int> {
    let data: Vec<i64> = ids.iter().map(|&t| t as i64).collect();
    Tensor::from_data(TensorData::new(data, [1, ids.len()]), device)
}
