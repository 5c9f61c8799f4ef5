//! A BERT encoder (MiniLM, BERT-base, …) built from LoRA-adaptable linear layers, with the
//! pooler, mean pooling and a sequence-classification head, matching Hugging Face
//! `BertModel` / `BertForSequenceClassification`.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Embedding, LayerNorm};
use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Device, Int, Tensor};
use lora_core::{BottleneckAdapter, LoraLinear};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::activation::Activation;
use crate::error::{ModelError, Result, read_json_config};
use crate::export::{NamedHostTensors, embedding_tensor, layer_norm_tensors, linear_tensors};
use crate::weights::{WeightSource, load_embedding, load_layer_norm, load_linear, load_tensor};

/// A Hugging Face BERT `config.json`: the fields the architecture needs, and every other field
/// kept as it was so that a saved model's config is the original one.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct BertConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer.
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Feed-forward activation (`hidden_act`).
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Longest supported sequence.
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    /// Number of token types (segments).
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "default_ln_eps")]
    pub layer_norm_eps: f64,
    /// Dropout on hidden states during training.
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities during training.
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
    /// Padding token id.
    #[serde(default)]
    pub pad_token_id: usize,
    /// Only `"absolute"` is supported.
    #[serde(default = "default_position_type")]
    pub position_embedding_type: String,
    /// Label names by id, when the checkpoint is a classifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id2label: Option<BTreeMap<String, String>>,
    /// Every other field (`model_type`, `architectures`, `label2id`, …), as read.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_max_positions() -> usize {
    512
}
fn default_type_vocab() -> usize {
    2
}
fn default_ln_eps() -> f64 {
    1e-12
}
fn default_dropout() -> f64 {
    0.1
}
fn default_position_type() -> String {
    "absolute".into()
}

impl BertConfig {
    /// Reads and validates a `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let config: BertConfig = read_json_config(path)?;
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let bad = |reason: String| ModelError::Config {
            path: path.to_path_buf(),
            reason,
        };
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(bad(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            )));
        }
        if self.position_embedding_type != "absolute" {
            return Err(bad(format!(
                "position_embedding_type '{}' is not supported (only \"absolute\")",
                self.position_embedding_type
            )));
        }
        Activation::parse(&self.hidden_act)?;
        Ok(())
    }

    /// Whether `architectures` names `BertForSequenceClassification` (a checkpoint with a
    /// `classifier` head, such as one `lora merge` wrote).
    pub fn is_sequence_classifier(&self) -> bool {
        self.extra
            .get("architectures")
            .and_then(Value::as_array)
            .is_some_and(|a| {
                a.iter()
                    .any(|v| v.as_str() == Some("BertForSequenceClassification"))
            })
    }

    /// The label names of `id2label`, in id order, when it names every id `0..n`.
    pub fn label_names(&self) -> Option<Vec<String>> {
        let map = self.id2label.as_ref()?;
        (0..map.len())
            .map(|i| map.get(&i.to_string()).cloned())
            .collect()
    }

    fn activation(&self) -> Activation {
        Activation::parse(&self.hidden_act).expect("validated when the config was read")
    }
}

/// The Hugging Face names of the linear layers inside each encoder layer, in one table: the
/// loader, `BertLayer::linears_mut` and (through `BertModel::linears_mut`) model surgery use it,
/// so PEFT's `target_modules` names (`query`, `value`, `dense`, …) work as they are.
pub const BERT_LAYER_LINEARS: [&str; 6] = [
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
];

/// The Hugging Face names of the embeddings, norms, pooler and head, shared by the loaders and
/// the `hf_tensors` writers so that a saved model reloads under the same keys.
const WORD_EMBEDDINGS: &str = "embeddings.word_embeddings.weight";
const POSITION_EMBEDDINGS: &str = "embeddings.position_embeddings.weight";
const TOKEN_TYPE_EMBEDDINGS: &str = "embeddings.token_type_embeddings.weight";
const EMBEDDINGS_NORM: &str = "embeddings.LayerNorm";
const ATTENTION_NORM: &str = "attention.output.LayerNorm";
const OUTPUT_NORM: &str = "output.LayerNorm";
const POOLER: &str = "pooler.dense";
const CLASSIFIER: &str = "classifier";
/// The key prefix of the encoder inside a `BertForSequenceClassification` checkpoint.
const CLASSIFIER_ENCODER_PREFIX: &str = "bert.";

/// Token, position and token-type embeddings, summed and normalised.
#[derive(Module, Debug)]
pub struct BertEmbeddings {
    /// `word_embeddings`.
    pub word_embeddings: Embedding,
    /// `position_embeddings`.
    pub position_embeddings: Embedding,
    /// `token_type_embeddings`.
    pub token_type_embeddings: Embedding,
    /// `LayerNorm`.
    pub layer_norm: LayerNorm,
    /// Hidden dropout.
    pub dropout: Dropout,
}

impl BertEmbeddings {
    fn forward(&self, input_ids: Tensor<2, Int>, token_type_ids: Tensor<2, Int>) -> Tensor<3> {
        let [batch, seq] = input_ids.dims();
        let device = input_ids.device();
        let positions = Tensor::<1, Int>::arange(0..seq as i64, &device)
            .unsqueeze::<2>()
            .expand([batch, seq]);
        let x = self.word_embeddings.forward(input_ids)
            + self.position_embeddings.forward(positions)
            + self.token_type_embeddings.forward(token_type_ids);
        self.dropout.forward(self.layer_norm.forward(x))
    }
}

/// One encoder layer. The optional bottleneck adapters are the AdapterH (after attention and
/// after the FFN) and AdapterL (after the FFN only) baselines; they sit on each sub-layer's
/// output before the residual add and LayerNorm, as in Houlsby et al.
#[derive(Module, Debug)]
pub struct BertLayer {
    /// `attention.self.query`.
    pub query: LoraLinear,
    /// `attention.self.key`.
    pub key: LoraLinear,
    /// `attention.self.value`.
    pub value: LoraLinear,
    /// `attention.output.dense`.
    pub attention_output: LoraLinear,
    /// `attention.output.LayerNorm`.
    pub attention_norm: LayerNorm,
    /// `intermediate.dense`.
    pub intermediate: LoraLinear,
    /// `output.dense`.
    pub output: LoraLinear,
    /// `output.LayerNorm`.
    pub output_norm: LayerNorm,
    /// Adapter after the attention block (AdapterH).
    pub attention_adapter: Option<BottleneckAdapter>,
    /// Adapter after the feed-forward block (AdapterH and AdapterL).
    pub ffn_adapter: Option<BottleneckAdapter>,
    /// Hidden dropout.
    pub dropout: Dropout,
    /// Attention-probability dropout.
    pub attention_dropout: Dropout,
    #[module(skip)]
    num_heads: usize,
    #[module(skip)]
    activation: Activation,
}

impl BertLayer {
    /// Every linear layer with its Hugging Face suffix, in [`BERT_LAYER_LINEARS`] order.
    pub fn linears_mut(&mut self) -> [(&'static str, &mut LoraLinear); 6] {
        let [q, k, v, ao, i, o] = BERT_LAYER_LINEARS;
        [
            (q, &mut self.query),
            (k, &mut self.key),
            (v, &mut self.value),
            (ao, &mut self.attention_output),
            (i, &mut self.intermediate),
            (o, &mut self.output),
        ]
    }

    /// Every linear layer with its Hugging Face suffix, in [`BERT_LAYER_LINEARS`] order.
    pub fn linears(&self) -> [(&'static str, &LoraLinear); 6] {
        let [q, k, v, ao, i, o] = BERT_LAYER_LINEARS;
        [
            (q, &self.query),
            (k, &self.key),
            (v, &self.value),
            (ao, &self.attention_output),
            (i, &self.intermediate),
            (o, &self.output),
        ]
    }

    fn forward(&self, x: Tensor<3>, mask_bias: Tensor<4>) -> Tensor<3> {
        let [batch, seq, hidden] = x.dims();
        let heads = self.num_heads;
        let head_dim = hidden / heads;
        let split = |t: Tensor<3>| t.reshape([batch, seq, heads, head_dim]).swap_dims(1, 2);
        let q = split(self.query.forward(x.clone()));
        let k = split(self.key.forward(x.clone()));
        let v = split(self.value.forward(x.clone()));
        let scores = q
            .matmul(k.swap_dims(2, 3))
            .div_scalar((head_dim as f64).sqrt())
            + mask_bias;
        let probs = self.attention_dropout.forward(softmax(scores, 3));
        let context = probs
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([batch, seq, hidden]);
        let mut attended = self.dropout.forward(self.attention_output.forward(context));
        if let Some(adapter) = &self.attention_adapter {
            attended = adapter.forward(attended);
        }
        let h = self.attention_norm.forward(attended + x);
        let inner = self
            .activation
            .forward(self.intermediate.forward(h.clone()));
        let mut out = self.dropout.forward(self.output.forward(inner));
        if let Some(adapter) = &self.ffn_adapter {
            out = adapter.forward(out);
        }
        self.output_norm.forward(out + h)
    }
}

/// The BERT encoder: embeddings, layers and the optional pooler.
#[derive(Module, Debug)]
pub struct BertModel {
    /// `embeddings`.
    pub embeddings: BertEmbeddings,
    /// `encoder.layer.N`.
    pub layers: Vec<BertLayer>,
    /// `pooler.dense` (followed by tanh).
    pub pooler: Option<LoraLinear>,
    #[module(skip)]
    config: BertConfig,
}

/// A batch of tokenized inputs: ids, attention mask (1 = token, 0 = padding) and token types,
/// all `[batch, seq]`.
#[derive(Debug, Clone)]
pub struct BertInput {
    /// Token ids.
    pub input_ids: Tensor<2, Int>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Tensor<2, Int>,
    /// Segment ids.
    pub token_type_ids: Tensor<2, Int>,
}

impl BertInput {
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
        let make = |v: Vec<i64>| {
            Tensor::<2, Int>::from_data(burn::tensor::TensorData::new(v, shape), device)
        };
        Ok(Self {
            input_ids: make(input_ids),
            attention_mask: make(attention_mask),
            token_type_ids: make(token_type_ids),
        })
    }
}

impl BertInput {
    /// Uploads a tokenized batch.
    pub fn from_encoded(batch: &crate::tokenizer::EncodedBatch, device: &Device) -> Result<Self> {
        Self::from_ids(
            batch.input_ids.clone(),
            batch.attention_mask.clone(),
            batch.token_type_ids.clone(),
            [batch.batch, batch.seq],
            device,
        )
    }
}

impl BertModel {
    /// Loads a BERT encoder from Hugging Face weights. Keys may carry a `bert.` prefix (as in
    /// `BertForSequenceClassification` checkpoints) or not (as in `BertModel` checkpoints such
    /// as MiniLM). Every weight is frozen; training methods choose what to unfreeze.
    pub fn load(config: &BertConfig, source: &dyn WeightSource, device: &Device) -> Result<Self> {
        let prefix = if source.contains(&format!("{CLASSIFIER_ENCODER_PREFIX}{WORD_EMBEDDINGS}")) {
            CLASSIFIER_ENCODER_PREFIX
        } else {
            ""
        };
        let d = config.hidden_size;
        let eps = config.layer_norm_eps;
        let key = |k: &str| format!("{prefix}{k}");
        let dropout = DropoutConfig::new(config.hidden_dropout_prob);
        let embeddings = BertEmbeddings {
            word_embeddings: load_embedding(
                source,
                &key(WORD_EMBEDDINGS),
                config.vocab_size,
                d,
                device,
            )?,
            position_embeddings: load_embedding(
                source,
                &key(POSITION_EMBEDDINGS),
                config.max_position_embeddings,
                d,
                device,
            )?,
            token_type_embeddings: load_embedding(
                source,
                &key(TOKEN_TYPE_EMBEDDINGS),
                config.type_vocab_size,
                d,
                device,
            )?,
            layer_norm: load_layer_norm(source, &key(EMBEDDINGS_NORM), d, eps, device)?,
            dropout: dropout.init(),
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = key(&format!("encoder.layer.{i}"));
            let linear = |name: &str| {
                let (d_in, d_out) = match name {
                    "intermediate.dense" => (d, config.intermediate_size),
                    "output.dense" => (config.intermediate_size, d),
                    _ => (d, d),
                };
                load_linear(source, &format!("{p}.{name}"), d_in, d_out, true, device)
            };
            let layer = BertLayer {
                query: linear(BERT_LAYER_LINEARS[0])?,
                key: linear(BERT_LAYER_LINEARS[1])?,
                value: linear(BERT_LAYER_LINEARS[2])?,
                attention_output: linear(BERT_LAYER_LINEARS[3])?,
                attention_norm: load_layer_norm(
                    source,
                    &format!("{p}.{ATTENTION_NORM}"),
                    d,
                    eps,
                    device,
                )?,
                intermediate: linear(BERT_LAYER_LINEARS[4])?,
                output: linear(BERT_LAYER_LINEARS[5])?,
                output_norm: load_layer_norm(
                    source,
                    &format!("{p}.{OUTPUT_NORM}"),
                    d,
                    eps,
                    device,
                )?,
                attention_adapter: None,
                ffn_adapter: None,
                dropout: dropout.init(),
                attention_dropout: DropoutConfig::new(config.attention_probs_dropout_prob).init(),
                num_heads: config.num_attention_heads,
                activation: config.activation(),
            };
            layers.push(layer);
        }
        let pooler = if source.contains(&key(&format!("{POOLER}.weight"))) {
            Some(load_linear(source, &key(POOLER), d, d, true, device)?)
        } else {
            None
        };
        Ok(Self {
            embeddings,
            layers,
            pooler,
            config: config.clone(),
        })
    }

    /// The config the model was built from.
    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// The last hidden state `[batch, seq, hidden]`.
    pub fn forward(&self, input: &BertInput) -> Result<Tensor<3>> {
        let [batch, seq] = input.input_ids.dims();
        if seq > self.config.max_position_embeddings {
            return Err(ModelError::Input(format!(
                "sequence length {seq} exceeds max_position_embeddings {}",
                self.config.max_position_embeddings
            )));
        }
        let mut x = self
            .embeddings
            .forward(input.input_ids.clone(), input.token_type_ids.clone());
        // Additive mask on the keys: 0 for tokens, a large negative number for padding.
        let padding: Tensor<2, Bool> = input.attention_mask.clone().equal_elem(0);
        let mask_bias = Tensor::<2>::zeros([batch, seq], &x.device())
            .mask_fill(padding, -1.0e9)
            .reshape([batch, 1, 1, seq]);
        for layer in &self.layers {
            x = layer.forward(x, mask_bias.clone());
        }
        Ok(x)
    }

    /// `tanh(pooler.dense(h[:, 0]))`, `[batch, hidden]`; an error if the checkpoint has no
    /// pooler.
    pub fn pool(&self, hidden: Tensor<3>) -> Result<Tensor<2>> {
        let pooler = self.pooler.as_ref().ok_or_else(|| {
            ModelError::Input("this checkpoint has no pooler (pooler.dense.weight)".into())
        })?;
        let [batch, _, d] = hidden.dims();
        let first = hidden.slice([0..batch, 0..1, 0..d]).reshape([batch, d]);
        Ok(burn::tensor::activation::tanh(pooler.forward(first)))
    }

    /// Every weight under its Hugging Face key (after `prefix`: `""` for a `BertModel`
    /// checkpoint, `"bert."` inside a classifier), in PyTorch's layout: what [`BertModel::load`]
    /// reads back. Layers must be plain: unmerged LoRA adapters and bottleneck adapters are
    /// refused.
    pub fn hf_tensors(&self, prefix: &str) -> Result<NamedHostTensors> {
        let key = |k: &str| format!("{prefix}{k}");
        let e = &self.embeddings;
        let mut out = vec![
            embedding_tensor(&key(WORD_EMBEDDINGS), &e.word_embeddings)?,
            embedding_tensor(&key(POSITION_EMBEDDINGS), &e.position_embeddings)?,
            embedding_tensor(&key(TOKEN_TYPE_EMBEDDINGS), &e.token_type_embeddings)?,
        ];
        out.extend(layer_norm_tensors(&key(EMBEDDINGS_NORM), &e.layer_norm)?);
        for (i, layer) in self.layers.iter().enumerate() {
            if layer.attention_adapter.is_some() || layer.ffn_adapter.is_some() {
                return Err(ModelError::NotExportable(format!(
                    "encoder.layer.{i} has bottleneck adapters (AdapterH / AdapterL), for which \
                     Hugging Face's BertModel has no place"
                )));
            }
            let p = key(&format!("encoder.layer.{i}"));
            for (name, linear) in layer.linears() {
                out.extend(linear_tensors(&format!("{p}.{name}"), linear)?);
            }
            out.extend(layer_norm_tensors(
                &format!("{p}.{ATTENTION_NORM}"),
                &layer.attention_norm,
            )?);
            out.extend(layer_norm_tensors(
                &format!("{p}.{OUTPUT_NORM}"),
                &layer.output_norm,
            )?);
        }
        if let Some(pooler) = &self.pooler {
            out.extend(linear_tensors(&key(POOLER), pooler)?);
        }
        Ok(out)
    }

    /// The Hugging Face name and layer of every linear layer (e.g.
    /// `encoder.layer.3.attention.self.query`), built from [`BERT_LAYER_LINEARS`].
    pub fn linears_mut(&mut self) -> Vec<(String, &mut LoraLinear)> {
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter_mut().enumerate() {
            for (name, linear) in layer.linears_mut() {
                out.push((format!("encoder.layer.{i}.{name}"), linear));
            }
        }
        if let Some(pooler) = &mut self.pooler {
            out.push(("pooler.dense".to_string(), pooler));
        }
        out
    }
}

/// Mean of the hidden states over real tokens (mask 1), `[batch, hidden]`: the
/// sentence-transformers embedding before normalisation.
pub fn mean_pool(hidden: Tensor<3>, attention_mask: Tensor<2, Int>) -> Tensor<2> {
    let mask = attention_mask.float().unsqueeze_dim::<3>(2);
    let summed = (hidden * mask.clone()).sum_dim(1).squeeze_dim::<2>(1);
    let counts = mask.sum_dim(1).squeeze_dim::<2>(1).clamp_min(1e-9);
    summed / counts
}

/// `BertForSequenceClassification`: the encoder, the pooler, and a linear `classifier`.
#[derive(Module, Debug)]
pub struct BertForSequenceClassification {
    /// `bert`.
    pub bert: BertModel,
    /// Dropout before the classifier (`classifier_dropout` or the hidden dropout).
    pub dropout: Dropout,
    /// `classifier`, `[hidden, num_labels]`.
    pub classifier: LoraLinear,
}

impl BertForSequenceClassification {
    /// Adds a classification head to an encoder. `classifier_weight` is PyTorch's
    /// `classifier.weight` `[num_labels, hidden]` with its bias; pass `None` for a fresh head
    /// initialised like `nn.Linear`.
    pub fn new(
        bert: BertModel,
        num_labels: usize,
        classifier: Option<(Tensor<2>, Tensor<1>)>,
        device: &Device,
    ) -> Result<Self> {
        let hidden = bert.config.hidden_size;
        if bert.pooler.is_none() {
            return Err(ModelError::Input(
                "a sequence classifier needs the pooler (pooler.dense.weight)".into(),
            ));
        }
        let classifier = match classifier {
            Some((weight, bias)) => {
                let dims = weight.dims();
                if dims != [num_labels, hidden] {
                    return Err(ModelError::ShapeMismatch {
                        key: "classifier.weight".into(),
                        expected: vec![num_labels, hidden],
                        actual: dims.to_vec(),
                    });
                }
                LoraLinear::from_weights(weight.transpose(), Some(bias))?
            }
            None => lora_core::LoraLinearConfig::new(hidden, num_labels).init(device),
        };
        Ok(Self {
            dropout: DropoutConfig::new(bert.config.hidden_dropout_prob).init(),
            bert,
            classifier,
        })
    }

    /// Loads a `BertForSequenceClassification` checkpoint: the encoder under `bert.` and the
    /// `classifier` head, whose shape gives the number of labels.
    pub fn load(config: &BertConfig, source: &dyn WeightSource, device: &Device) -> Result<Self> {
        let bert = BertModel::load(config, source, device)?;
        let weight_key = format!("{CLASSIFIER}.weight");
        let weight = source.read(&weight_key)?;
        let labels = match weight.shape[..] {
            [labels, hidden] if hidden == config.hidden_size && labels > 0 => labels,
            _ => {
                return Err(ModelError::ShapeMismatch {
                    key: weight_key,
                    expected: vec![
                        config.id2label.as_ref().map_or(2, |m| m.len()),
                        config.hidden_size,
                    ],
                    actual: weight.shape,
                });
            }
        };
        let weight = weight.into_tensor(&weight_key, [labels, config.hidden_size], device)?;
        let bias = load_tensor(source, &format!("{CLASSIFIER}.bias"), [labels], device)?;
        Self::new(bert, labels, Some((weight, bias)), device)
    }

    /// Every weight under the key `transformers`' `BertForSequenceClassification` uses
    /// (`bert.…`, `classifier.…`): what [`BertForSequenceClassification::load`] reads back.
    pub fn hf_tensors(&self) -> Result<NamedHostTensors> {
        let mut out = self.bert.hf_tensors(CLASSIFIER_ENCODER_PREFIX)?;
        out.extend(linear_tensors(CLASSIFIER, &self.classifier)?);
        Ok(out)
    }

    /// The `config.json` of this classifier: the encoder's config with
    /// `architectures: ["BertForSequenceClassification"]` and `id2label` / `label2id` from
    /// `label_names` (one per label).
    pub fn hf_config(&self, label_names: &[String]) -> Result<Value> {
        if label_names.len() != self.num_labels() {
            return Err(ModelError::Input(format!(
                "{} label names for a classifier with {} labels",
                label_names.len(),
                self.num_labels()
            )));
        }
        let mut config = self.bert.config.clone();
        config.id2label = Some(
            label_names
                .iter()
                .enumerate()
                .map(|(i, n)| (i.to_string(), n.clone()))
                .collect(),
        );
        let label2id: Map<String, Value> = label_names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), json!(i)))
            .collect();
        let extra = &mut config.extra;
        extra.insert("model_type".into(), json!("bert"));
        extra.insert(
            "architectures".into(),
            json!(["BertForSequenceClassification"]),
        );
        extra.insert("label2id".into(), Value::Object(label2id));
        Ok(serde_json::to_value(&config).expect("a config serialises"))
    }

    /// Number of labels.
    pub fn num_labels(&self) -> usize {
        self.classifier.out_features()
    }

    /// Logits `[batch, num_labels]`.
    pub fn forward(&self, input: &BertInput) -> Result<Tensor<2>> {
        let hidden = self.bert.forward(input)?;
        let pooled = self.bert.pool(hidden)?;
        Ok(self.classifier.forward(self.dropout.forward(pooled)))
    }
}
