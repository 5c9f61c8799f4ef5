//! [`Encoder`] and [`EncoderForSequenceClassification`]: BERT-style bidirectional encoders of
//! every supported family, built from LoRA-adaptable linear layers; match transformers'
//! `*Model` and `*ForSequenceClassification`.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Embedding};
use burn::tensor::activation::{relu, tanh};
use burn::tensor::{Device, Int, Tensor, TensorData};
use lora_core::{BaseDType, BottleneckAdapter, LoraLinear};

use super::config::{EncoderConfig, EncoderFamily};
use super::names::EncoderNames;
use super::pass::{EncoderPass, Packing};
use crate::error::{ModelError, Result};
use crate::export::{NamedHostTensors, embedding_tensor, linear_tensors, norm_tensors};
use crate::layers::attention::{MaskSpec, attend};
use crate::layers::norm::{Norm, NormKind};
use crate::weights::{StoredAs, WeightSource, load_embedding, load_linear, load_norm};

/// A batch of tokenized inputs: ids, attention mask (1 = token, 0 = padding) and token types,
/// all `[batch, seq]`.
#[derive(Debug, Clone)]
pub struct TokenBatch {
    /// Token ids.
    pub input_ids: Tensor<2, Int>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Tensor<2, Int>,
    /// Segment ids.
    pub token_type_ids: Tensor<2, Int>,
}

impl TokenBatch {
    /// Builds the tensors from row-major `i64` data of shape `[batch, seq]`.
    pub fn from_ids(
        input_ids: Vec<i64>,
        attention_mask: Vec<i64>,
        token_type_ids: Vec<i64>,
        shape: [usize; 2],
        device: &Device,
    ) -> Result<Self> {
        let n = shape[0] * shape[1];
        for (what, v) in [
            ("input_ids", &input_ids),
            ("attention_mask", &attention_mask),
            ("token_type_ids", &token_type_ids),
        ] {
            if v.len() != n {
                return Err(ModelError::Input(format!(
                    "{what} has {} values, but the shape {shape:?} needs {n}",
                    v.len()
                )));
            }
        }
        let make = |v: Vec<i64>| Tensor::<2, Int>::from_data(TensorData::new(v, shape), device);
        Ok(Self {
            input_ids: make(input_ids),
            attention_mask: make(attention_mask),
            token_type_ids: make(token_type_ids),
        })
    }
}

/// Token, position and (optionally) token-type embeddings, summed and normalised.
#[derive(Module, Debug)]
pub struct EncoderEmbeddings {
    /// Token embeddings.
    pub word_embeddings: Embedding,
    /// Position embeddings.
    pub position_embeddings: Embedding,
    /// Token-type embeddings.
    pub token_type_embeddings: Option<Embedding>,
    /// The LayerNorm.
    pub norm: Norm,
    /// Hidden dropout.
    pub dropout: Dropout,
}

/// One post-LN encoder layer. The optional bottleneck adapters are the AdapterH (after
/// attention and after the FFN) and AdapterL (after the FFN) baselines, on each sub-layer's
/// output before the residual add and LayerNorm, as in Houlsby et al.
#[derive(Module, Debug)]
pub struct EncoderLayer {
    /// Query projection.
    pub query: LoraLinear,
    /// Key projection.
    pub key: LoraLinear,
    /// Value projection.
    pub value: LoraLinear,
    /// Attention output projection.
    pub attention_output: LoraLinear,
    /// LayerNorm after attention.
    pub attention_norm: Norm,
    /// First feed-forward projection.
    pub intermediate: LoraLinear,
    /// Second feed-forward projection.
    pub output: LoraLinear,
    /// LayerNorm after the feed-forward block.
    pub output_norm: Norm,
    /// Adapter after the attention block (AdapterH).
    pub attention_adapter: Option<BottleneckAdapter>,
    /// Adapter after the feed-forward block (AdapterH and AdapterL).
    pub ffn_adapter: Option<BottleneckAdapter>,
    /// Hidden dropout.
    pub dropout: Dropout,
    /// Attention-probability dropout.
    pub attention_dropout: Dropout,
}

impl EncoderLayer {
    /// The six linear layers, in [`EncoderNames::layer_linears`] order.
    pub fn linears(&self) -> [&LoraLinear; 6] {
        [
            &self.query,
            &self.key,
            &self.value,
            &self.attention_output,
            &self.intermediate,
            &self.output,
        ]
    }

    /// [`EncoderLayer::linears`], mutably.
    pub fn linears_mut(&mut self) -> [&mut LoraLinear; 6] {
        [
            &mut self.query,
            &mut self.key,
            &mut self.value,
            &mut self.attention_output,
            &mut self.intermediate,
            &mut self.output,
        ]
    }
}

/// A bidirectional encoder: embeddings, layers and the optional pooler.
#[derive(Module, Debug)]
pub struct Encoder {
    /// Embeddings.
    pub embeddings: EncoderEmbeddings,
    /// The layers.
    pub layers: Vec<EncoderLayer>,
    /// The pooler `tanh(dense(h₀))` (BERT).
    pub pooler: Option<LoraLinear>,
    #[module(skip)]
    config: EncoderConfig,
}

impl Encoder {
    /// The key prefix of this encoder's tensors in `source`: `""` for a bare-model checkpoint
    /// (MiniLM's `BertModel`), `"{base}."` inside a classifier checkpoint.
    pub fn prefix_in(config: &EncoderConfig, source: &dyn WeightSource) -> String {
        let names = config.family.names();
        let nested = format!("{}.{}.weight", names.base, names.word_embeddings);
        if source.contains(&nested) {
            format!("{}.", names.base)
        } else {
            String::new()
        }
    }

    /// Loads an encoder from Hugging Face weights (keys with or without the `{base}.` prefix).
    /// Every weight is frozen; training methods choose what to unfreeze.
    pub fn load(
        config: &EncoderConfig,
        source: &dyn WeightSource,
        device: &Device,
    ) -> Result<Self> {
        let names = config.family.names();
        let prefix = Self::prefix_in(config, source);
        let key = |k: &str| format!("{prefix}{k}");
        let (d, ff) = (config.hidden_size, config.intermediate_size);
        let eps = config.layer_norm_eps;
        let norm = |k: &str| load_norm(source, &key(k), NormKind::LayerNorm, d, eps, device);
        let dropout = DropoutConfig::new(config.hidden_dropout);
        let token_type_embeddings = match names.token_type_embeddings {
            Some(name) if config.type_vocab_size > 0 => Some(load_embedding(
                source,
                &key(&format!("{name}.weight")),
                config.type_vocab_size,
                d,
                device,
            )?),
            _ => None,
        };
        let embeddings = EncoderEmbeddings {
            word_embeddings: load_embedding(
                source,
                &key(&format!("{}.weight", names.word_embeddings)),
                config.vocab_size,
                d,
                device,
            )?,
            position_embeddings: load_embedding(
                source,
                &key(&format!("{}.weight", names.position_embeddings)),
                config.max_position_embeddings,
                d,
                device,
            )?,
            token_type_embeddings,
            norm: norm(names.embeddings_norm)?,
            dropout: dropout.init(),
        };
        let mut layers = Vec::with_capacity(config.num_layers);
        for i in 0..config.num_layers {
            let p = key(&format!("{}.{i}", names.layers));
            let linear = |name: &str, d_in: usize, d_out: usize| {
                load_linear(source, &format!("{p}.{name}"), d_in, d_out, true, device)
            };
            let layer_norm = |name: &str| {
                load_norm(
                    source,
                    &format!("{p}.{name}"),
                    NormKind::LayerNorm,
                    d,
                    eps,
                    device,
                )
            };
            layers.push(EncoderLayer {
                query: linear(names.query, d, d)?,
                key: linear(names.key, d, d)?,
                value: linear(names.value, d, d)?,
                attention_output: linear(names.attention_output, d, d)?,
                attention_norm: layer_norm(names.attention_norm)?,
                intermediate: linear(names.intermediate, d, ff)?,
                output: linear(names.output, ff, d)?,
                output_norm: layer_norm(names.output_norm)?,
                attention_adapter: None,
                ffn_adapter: None,
                dropout: dropout.init(),
                attention_dropout: DropoutConfig::new(config.attention_dropout).init(),
            });
        }
        let pooler = match names.pooler {
            Some(name) if source.contains(&key(&format!("{name}.weight"))) => {
                Some(load_linear(source, &key(name), d, d, true, device)?)
            }
            _ => None,
        };
        Ok(Self {
            embeddings,
            layers,
            pooler,
            config: config.clone(),
        })
    }

    /// The config the model was built from.
    pub fn config(&self) -> &EncoderConfig {
        &self.config
    }

    /// The family's module names.
    pub fn names(&self) -> &'static EncoderNames {
        self.config.family.names()
    }

    /// The hidden states entering the first layer: word, position and token-type embeddings,
    /// normalised (and dropped out in training).
    pub fn embed(&self, input: &TokenBatch) -> Tensor<3> {
        let [batch, seq] = input.input_ids.dims();
        let device = input.input_ids.device();
        let positions = if self.config.family.padding_aware_positions() {
            // transformers' create_position_ids_from_input_ids: non-padding tokens count from
            // padding_idx + 1, padding stays at padding_idx.
            let pad = self.config.pad_token_id as i64;
            let real = input.input_ids.clone().not_equal_elem(pad).int();
            (real.clone().cumsum(1) * real).add_scalar(pad)
        } else {
            Tensor::<1, Int>::arange(0..seq as i64, &device)
                .unsqueeze::<2>()
                .expand([batch, seq])
        };
        let e = &self.embeddings;
        let mut x = e.word_embeddings.forward(input.input_ids.clone())
            + e.position_embeddings.forward(positions);
        if let Some(types) = &e.token_type_embeddings {
            x = x + types.forward(input.token_type_ids.clone());
        }
        e.dropout.forward(e.norm.forward(x))
    }

    /// The last hidden state `[batch, seq, hidden]`; zero at padding positions. The layers run
    /// on the real tokens only (see [`EncoderPass`]).
    pub fn forward(&self, input: &TokenBatch) -> Result<Tensor<3>> {
        let pass = self.pass(input, true)?;
        let mut x = pass.packed(self.embed(input));
        for layer in &self.layers {
            x = self.layer_forward(layer, x, &pass);
        }
        Ok(pass.padded(x))
    }

    /// Checks the batch's length against the model's positions and builds what every layer of
    /// a pass over it reads: the additive attention mask of its padding, and (with `pack`,
    /// where the batch has padding) the packing of its real tokens. A pass that packs takes the
    /// hidden states as `[1, tokens, hidden]` ([`EncoderPass::packed`] of the embeddings).
    pub fn pass(&self, input: &TokenBatch, pack: bool) -> Result<EncoderPass> {
        let [batch, seq] = input.input_ids.dims();
        let offset = if self.config.family.padding_aware_positions() {
            self.config.pad_token_id + 1
        } else {
            0
        };
        if seq + offset > self.config.max_position_embeddings {
            return Err(ModelError::Input(format!(
                "sequence length {seq} exceeds the {} positions of this model",
                self.config.max_position_embeddings - offset
            )));
        }
        let device = input.input_ids.device();
        let padding: Vec<i64> = input
            .attention_mask
            .clone()
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .map_err(|e| ModelError::Input(format!("cannot read the attention mask: {e:?}")))?;
        let key_padding: Vec<Vec<bool>> = padding
            .chunks(seq.max(1))
            .map(|row| row.iter().map(|&m| m != 0).collect())
            .collect();
        let packing = if pack {
            Packing::of(&key_padding, &device)
        } else {
            None
        };
        let mask = MaskSpec {
            key_padding,
            ..Default::default()
        }
        .build(batch, 0, seq, &device);
        Ok(EncoderPass { mask, packing })
    }

    /// Runs `layer` (one of [`Encoder::layers`], or a copy of one) on `x`, the hidden states
    /// in the layout of `pass` (see [`Encoder::pass`]).
    pub fn layer_forward(
        &self,
        layer: &EncoderLayer,
        x: Tensor<3>,
        pass: &EncoderPass,
    ) -> Tensor<3> {
        let heads = self.config.num_heads;
        let split = |t: Tensor<3>| {
            let t = pass.padded(t);
            let [batch, seq, hidden] = t.dims();
            t.reshape([batch, seq, heads, hidden / heads])
                .swap_dims(1, 2)
        };
        let q = split(layer.query.forward(x.clone()));
        let k = split(layer.key.forward(x.clone()));
        let v = split(layer.value.forward(x.clone()));
        let head_dim = q.dims()[3];
        let scale = (head_dim as f64).powf(-0.5);
        let mask = pass.mask.as_ref();
        let context = attend(q, k, v, scale, None, mask, Some(&layer.attention_dropout));
        let context = pass.packed(context);
        let mut attended = layer
            .dropout
            .forward(layer.attention_output.forward(context));
        if let Some(adapter) = &layer.attention_adapter {
            attended = adapter.forward(attended);
        }
        let h = layer.attention_norm.forward(attended + x);
        let inner = self
            .config
            .activation
            .forward(layer.intermediate.forward(h.clone()));
        let mut out = layer.dropout.forward(layer.output.forward(inner));
        if let Some(adapter) = &layer.ffn_adapter {
            out = adapter.forward(out);
        }
        layer.output_norm.forward(out + h)
    }

    /// `tanh(pooler(h[:, 0]))`, `[batch, hidden]`; an error if the checkpoint has no pooler.
    pub fn pool(&self, hidden: Tensor<3>) -> Result<Tensor<2>> {
        let pooler = self.pooler.as_ref().ok_or_else(|| {
            ModelError::Input("this checkpoint has no pooler (pooler.dense.weight)".into())
        })?;
        Ok(tanh(pooler.forward(first_token(hidden))))
    }

    /// Every weight under its Hugging Face key (after `prefix`: `""` for a bare encoder,
    /// `"{base}."` inside a classifier), in PyTorch's layout: what [`Encoder::load`] reads back.
    /// Layers must be plain: unmerged adapters and bottleneck adapters are refused.
    pub fn hf_tensors(&self, prefix: &str) -> Result<NamedHostTensors> {
        let names = self.names();
        let key = |k: &str| format!("{prefix}{k}");
        let e = &self.embeddings;
        let mut out = vec![
            embedding_tensor(
                &key(&format!("{}.weight", names.word_embeddings)),
                &e.word_embeddings,
            )?,
            embedding_tensor(
                &key(&format!("{}.weight", names.position_embeddings)),
                &e.position_embeddings,
            )?,
        ];
        if let (Some(types), Some(name)) = (&e.token_type_embeddings, names.token_type_embeddings) {
            out.push(embedding_tensor(&key(&format!("{name}.weight")), types)?);
        }
        out.extend(norm_tensors(&key(names.embeddings_norm), &e.norm)?);
        for (i, layer) in self.layers.iter().enumerate() {
            let p = key(&format!("{}.{i}", names.layers));
            if layer.attention_adapter.is_some() || layer.ffn_adapter.is_some() {
                return Err(ModelError::NotExportable(format!(
                    "{p} has bottleneck adapters (AdapterH / AdapterL), for which transformers' \
                     {} has no place",
                    self.config.family.model_class()
                )));
            }
            for (name, linear) in names.layer_linears().into_iter().zip(layer.linears()) {
                out.extend(linear_tensors(&format!("{p}.{name}"), linear)?);
            }
            out.extend(norm_tensors(
                &format!("{p}.{}", names.attention_norm),
                &layer.attention_norm,
            )?);
            out.extend(norm_tensors(
                &format!("{p}.{}", names.output_norm),
                &layer.output_norm,
            )?);
        }
        if let (Some(pooler), Some(name)) = (&self.pooler, names.pooler) {
            out.extend(linear_tensors(&key(name), pooler)?);
        }
        Ok(out)
    }
}

/// `h[:, 0]`, `[batch, hidden]`.
fn first_token(hidden: Tensor<3>) -> Tensor<2> {
    let [batch, _, d] = hidden.dims();
    hidden.slice([0..batch, 0..1, 0..d]).reshape([batch, d])
}

/// Mean of the hidden states over real tokens (mask 1), `[batch, hidden]`: the
/// sentence-transformers embedding before normalisation.
pub fn mean_pool(hidden: Tensor<3>, attention_mask: Tensor<2, Int>) -> Tensor<2> {
    let mask = attention_mask.float().unsqueeze_dim::<3>(2);
    let summed = (hidden * mask.clone()).sum_dim(1).squeeze_dim::<2>(1);
    let counts = mask.sum_dim(1).squeeze_dim::<2>(1).clamp_min(1e-9);
    summed / counts
}

/// A sequence classifier: an encoder and its family's head (BERT: pooler and `classifier`;
/// RoBERTa: `classifier.dense` → tanh → `classifier.out_proj`; DistilBERT: `pre_classifier`
/// → ReLU → `classifier`), all on the first token.
#[derive(Module, Debug)]
pub struct EncoderForSequenceClassification {
    /// The encoder.
    pub encoder: Encoder,
    /// The head's first projection (RoBERTa, DistilBERT).
    pub head_dense: Option<LoraLinear>,
    /// The head's output projection, `[hidden, num_labels]`.
    pub classifier: LoraLinear,
    /// Dropout before the head's projections.
    pub dropout: Dropout,
}

impl EncoderForSequenceClassification {
    /// Adds a classification head to an encoder. `head` holds PyTorch's `[out, in]` weights and
    /// biases of the head's layers in order (the dense layer first, where the family has one);
    /// `None` initialises a fresh head like `nn.Linear`.
    pub fn new(
        encoder: Encoder,
        num_labels: usize,
        head: Option<Vec<(Tensor<2>, Tensor<1>)>>,
        device: &Device,
    ) -> Result<Self> {
        let names = encoder.names();
        let hidden = encoder.config.hidden_size;
        if encoder.config.family == EncoderFamily::Bert && encoder.pooler.is_none() {
            return Err(ModelError::Input(
                "a sequence classifier needs the pooler (pooler.dense.weight)".into(),
            ));
        }
        let shapes: Vec<(&str, [usize; 2])> = names
            .head_dense
            .map(|n| (n, [hidden, hidden]))
            .into_iter()
            .chain(std::iter::once((names.head_out, [num_labels, hidden])))
            .collect();
        let mut layers = Vec::new();
        match head {
            Some(weights) => {
                if weights.len() != shapes.len() {
                    return Err(ModelError::Input(format!(
                        "a {} head has {} layers, {} were given",
                        encoder.config.family.model_type(),
                        shapes.len(),
                        weights.len()
                    )));
                }
                for ((name, shape), (w, b)) in shapes.iter().zip(weights) {
                    if w.dims() != *shape {
                        return Err(ModelError::ShapeMismatch {
                            key: format!("{name}.weight"),
                            expected: shape.to_vec(),
                            actual: w.dims().to_vec(),
                        });
                    }
                    layers.push(LoraLinear::from_weights(w.transpose(), Some(b))?);
                }
            }
            None => {
                for (_, [out, inp]) in &shapes {
                    layers.push(lora_core::LoraLinearConfig::new(*inp, *out).init(device));
                }
            }
        }
        let classifier = layers.pop().expect("the output layer");
        Ok(Self {
            dropout: DropoutConfig::new(encoder.config.classifier_dropout).init(),
            head_dense: layers.pop(),
            encoder,
            classifier,
        })
    }

    /// Loads a `*ForSequenceClassification` checkpoint: the encoder under `{base}.` and the
    /// head, whose output layer's shape gives the number of labels.
    pub fn load(
        config: &EncoderConfig,
        source: &dyn WeightSource,
        device: &Device,
    ) -> Result<Self> {
        let encoder = Encoder::load(config, source, device)?;
        let names = config.family.names();
        let hidden = config.hidden_size;
        let out_key = format!("{}.weight", names.head_out);
        let labels = match source.read(&out_key)?.shape[..] {
            [labels, h] if h == hidden && labels > 0 => labels,
            ref other => {
                return Err(ModelError::ShapeMismatch {
                    key: out_key,
                    expected: vec![config.label_names().map_or(2, |l| l.len()), hidden],
                    actual: other.to_vec(),
                });
            }
        };
        let mut head = Vec::new();
        for (name, out) in names
            .head_dense
            .map(|n| (n, hidden))
            .into_iter()
            .chain(std::iter::once((names.head_out, labels)))
        {
            let head_source = StoredAs::new(source, BaseDType::F32);
            let linear = load_linear(&head_source, name, hidden, out, true, device)?;
            head.push((
                linear.weight.val().transpose(),
                linear.bias.expect("loaded with a bias").val(),
            ));
        }
        Self::new(encoder, labels, Some(head), device)
    }

    /// Number of labels.
    pub fn num_labels(&self) -> usize {
        self.classifier.out_features()
    }

    /// Logits `[batch, num_labels]`.
    pub fn forward(&self, input: &TokenBatch) -> Result<Tensor<2>> {
        self.head(self.encoder.forward(input)?)
    }

    /// Logits `[batch, num_labels]` from the encoder's last hidden state: the family's pooling
    /// and classifier.
    pub fn head(&self, hidden: Tensor<3>) -> Result<Tensor<2>> {
        let pooled = match self.encoder.config.family {
            EncoderFamily::Bert => self.encoder.pool(hidden)?,
            EncoderFamily::Roberta | EncoderFamily::XlmRoberta => {
                let dense = self
                    .head_dense
                    .as_ref()
                    .expect("RoBERTa's head has a dense layer");
                tanh(dense.forward(self.dropout.forward(first_token(hidden))))
            }
            EncoderFamily::DistilBert => {
                let dense = self
                    .head_dense
                    .as_ref()
                    .expect("DistilBERT's head has a dense layer");
                relu(dense.forward(first_token(hidden)))
            }
        };
        Ok(self.classifier.forward(self.dropout.forward(pooled)))
    }

    /// The `config.json` of this classifier: the encoder's config with `architectures`,
    /// `id2label` and `label2id` from `label_names` (one per label).
    pub fn hf_config(&self, label_names: &[String]) -> Result<serde_json::Value> {
        if label_names.len() != self.num_labels() {
            return Err(ModelError::Input(format!(
                "{} label names for a classifier with {} labels",
                label_names.len(),
                self.num_labels()
            )));
        }
        Ok(self.encoder.config().classifier_config(label_names))
    }

    /// Every weight under the keys transformers' `*ForSequenceClassification` uses
    /// (`{base}.…` and the head): what [`EncoderForSequenceClassification::load`] reads back.
    pub fn hf_tensors(&self) -> Result<NamedHostTensors> {
        let names = self.encoder.names();
        let mut out = self.encoder.hf_tensors(&format!("{}.", names.base))?;
        if let (Some(dense), Some(name)) = (&self.head_dense, names.head_dense) {
            out.extend(linear_tensors(name, dense)?);
        }
        out.extend(linear_tensors(names.head_out, &self.classifier)?);
        Ok(out)
    }
}
