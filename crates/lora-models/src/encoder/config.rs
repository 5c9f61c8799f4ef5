//! [`EncoderConfig`]: BERT, RoBERTa, XLM-RoBERTa and DistilBERT described by one config, read
//! from their `config.json` with transformers' defaults.

use serde_json::{Map, Value, json};

use crate::activation::Activation;
use crate::config_json::ConfigJson;
use crate::error::Result;

/// The encoder families (`model_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EncoderFamily {
    /// `bert` (BERT, MiniLM, …): pooler `tanh(dense(h₀))` before the classifier.
    Bert,
    /// `roberta`: positions offset by `pad_token_id + 1`; head `out_proj(tanh(dense(h₀)))`.
    Roberta,
    /// `xlm-roberta`: RoBERTa's architecture.
    XlmRoberta,
    /// `distilbert`: no token types; head `classifier(relu(pre_classifier(h₀)))`.
    DistilBert,
}

impl EncoderFamily {
    /// Every family with its `model_type`.
    pub const ALL: [(EncoderFamily, &'static str); 4] = [
        (Self::Bert, "bert"),
        (Self::Roberta, "roberta"),
        (Self::XlmRoberta, "xlm-roberta"),
        (Self::DistilBert, "distilbert"),
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

    /// The transformers class of the bare encoder.
    pub fn model_class(self) -> &'static str {
        match self {
            Self::Bert => "BertModel",
            Self::Roberta => "RobertaModel",
            Self::XlmRoberta => "XLMRobertaModel",
            Self::DistilBert => "DistilBertModel",
        }
    }

    /// The transformers class of the sequence classifier.
    pub fn classifier_class(self) -> &'static str {
        match self {
            Self::Bert => "BertForSequenceClassification",
            Self::Roberta => "RobertaForSequenceClassification",
            Self::XlmRoberta => "XLMRobertaForSequenceClassification",
            Self::DistilBert => "DistilBertForSequenceClassification",
        }
    }

    /// Whether positions count from `pad_token_id + 1` over non-padding tokens (RoBERTa).
    pub fn padding_aware_positions(self) -> bool {
        matches!(self, Self::Roberta | Self::XlmRoberta)
    }

    /// PEFT 0.21's default `target_modules` for the family. DistilBERT is not in PEFT's table
    /// (PEFT then requires explicit targets); its attention's `q_lin` / `v_lin` mirror the
    /// others' defaults.
    pub fn default_targets(self) -> &'static [&'static str] {
        match self {
            Self::DistilBert => &["q_lin", "v_lin"],
            _ => &["query", "value"],
        }
    }

    /// Whether PEFT's table has the family.
    pub fn in_peft_table(self) -> bool {
        self != Self::DistilBert
    }
}

/// Everything the encoder forward needs, with the original config kept for saving.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderConfig {
    /// The family.
    pub family: EncoderFamily,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Encoder layers.
    pub num_layers: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Feed-forward activation.
    pub activation: Activation,
    /// Learned positions.
    pub max_position_embeddings: usize,
    /// Token types (0: none, DistilBERT).
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Dropout on hidden states during training.
    pub hidden_dropout: f64,
    /// Dropout on attention probabilities during training.
    pub attention_dropout: f64,
    /// Dropout before the classification head.
    pub classifier_dropout: f64,
    /// Padding token.
    pub pad_token_id: usize,
    /// The config as read.
    pub raw: Map<String, Value>,
}

impl EncoderConfig {
    /// Reads an encoder config (its `model_type` must be one of [`EncoderFamily::ALL`]).
    pub fn from_config(c: ConfigJson) -> Result<Self> {
        let model_type = c.model_type().unwrap_or("").to_string();
        let family = EncoderFamily::from_model_type(&model_type).ok_or_else(|| {
            c.error(format!(
                "model_type \"{model_type}\" is not a supported encoder (supported: {})",
                EncoderFamily::ALL.map(|(_, n)| n).join(", ")
            ))
        })?;
        let config = if family == EncoderFamily::DistilBert {
            let hidden = c.required_usize(c.alias(&["dim", "hidden_size"]))?;
            let dropout = c.f64_or("dropout", 0.1)?;
            Self {
                family,
                vocab_size: c.required_usize("vocab_size")?,
                hidden_size: hidden,
                num_layers: c.required_usize(c.alias(&["n_layers", "num_hidden_layers"]))?,
                num_heads: c.required_usize(c.alias(&["n_heads", "num_attention_heads"]))?,
                intermediate_size: c
                    .required_usize(c.alias(&["hidden_dim", "intermediate_size"]))?,
                activation: Activation::parse(c.opt_str("activation")?.unwrap_or("gelu"))?,
                max_position_embeddings: c.usize_or("max_position_embeddings", 512)?,
                type_vocab_size: 0,
                // DistilBERT's LayerNorms hard-code 1e-12.
                layer_norm_eps: 1e-12,
                hidden_dropout: dropout,
                attention_dropout: c.f64_or("attention_dropout", 0.1)?,
                classifier_dropout: c.f64_or("seq_classif_dropout", 0.2)?,
                pad_token_id: c.usize_or("pad_token_id", 0)?,
                raw: c.map.clone(),
            }
        } else {
            let roberta = family != EncoderFamily::Bert;
            c.refuse_if(
                "position_embedding_type",
                |v| v.as_str() != Some("absolute"),
                "only absolute position embeddings are supported",
            )?;
            let hidden_dropout = c.f64_or("hidden_dropout_prob", 0.1)?;
            Self {
                family,
                vocab_size: c.required_usize("vocab_size")?,
                hidden_size: c.required_usize("hidden_size")?,
                num_layers: c.required_usize("num_hidden_layers")?,
                num_heads: c.required_usize("num_attention_heads")?,
                intermediate_size: c.required_usize("intermediate_size")?,
                activation: Activation::parse(c.opt_str("hidden_act")?.unwrap_or("gelu"))?,
                max_position_embeddings: c.usize_or("max_position_embeddings", 512)?,
                type_vocab_size: c.usize_or("type_vocab_size", 2)?,
                layer_norm_eps: c.positive_f64_or("layer_norm_eps", 1e-12)?,
                hidden_dropout,
                attention_dropout: c.f64_or("attention_probs_dropout_prob", 0.1)?,
                classifier_dropout: c.f64_or("classifier_dropout", hidden_dropout)?,
                pad_token_id: c.usize_or("pad_token_id", if roberta { 1 } else { 0 })?,
                raw: c.map.clone(),
            }
        };
        let bad_prob = |p: f64| !(0.0..1.0).contains(&p);
        if config.num_heads == 0 || !config.hidden_size.is_multiple_of(config.num_heads) {
            return Err(c.error(format!(
                "hidden size {} is not divisible by the {} attention heads",
                config.hidden_size, config.num_heads
            )));
        }
        if [
            config.hidden_dropout,
            config.attention_dropout,
            config.classifier_dropout,
        ]
        .into_iter()
        .any(bad_prob)
        {
            return Err(c.error("dropout probabilities must lie in [0, 1)"));
        }
        if config.family.padding_aware_positions()
            && config.max_position_embeddings <= config.pad_token_id + 1
        {
            return Err(c.error(format!(
                "max_position_embeddings {} leaves no position after the padding offset {}",
                config.max_position_embeddings,
                config.pad_token_id + 1
            )));
        }
        Ok(config)
    }

    /// Whether the config names a sequence-classification class in `architectures`.
    pub fn is_sequence_classifier(&self) -> bool {
        self.raw
            .get("architectures")
            .and_then(Value::as_array)
            .is_some_and(|a| {
                a.iter().any(|v| {
                    v.as_str()
                        .is_some_and(|s| s.ends_with("ForSequenceClassification"))
                })
            })
    }

    /// The label names of `id2label`, in id order, when it names every id `0..n`.
    pub fn label_names(&self) -> Option<Vec<String>> {
        let map = self.raw.get("id2label")?.as_object()?;
        (0..map.len())
            .map(|i| map.get(&i.to_string())?.as_str().map(str::to_string))
            .collect()
    }

    /// The `config.json` of a classifier with these label names: the original fields with
    /// `architectures`, `id2label` and `label2id` set.
    pub fn classifier_config(&self, label_names: &[String]) -> Value {
        let mut map = self.raw.clone();
        let id2label: Map<String, Value> = label_names
            .iter()
            .enumerate()
            .map(|(i, n)| (i.to_string(), json!(n)))
            .collect();
        let label2id: Map<String, Value> = label_names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), json!(i)))
            .collect();
        map.insert("model_type".into(), json!(self.family.model_type()));
        map.insert(
            "architectures".into(),
            json!([self.family.classifier_class()]),
        );
        map.insert("id2label".into(), Value::Object(id2label));
        map.insert("label2id".into(), Value::Object(label2id));
        Value::Object(map)
    }
}
