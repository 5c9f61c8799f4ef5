//! The Hugging Face module names of each encoder family, in one table: the loader reads weights
//! by them, saving writes them, and model surgery matches PEFT's `target_modules` against them.

use super::config::EncoderFamily;

/// The module names of one family (per-layer names are relative to `{layers}.{i}.`; encoder
/// names are relative to the encoder, which a classifier keeps under `{base}.`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderNames {
    /// The encoder's attribute in the classifier (`bert`, `roberta`, `distilbert`).
    pub base: &'static str,
    /// Token embeddings.
    pub word_embeddings: &'static str,
    /// Position embeddings.
    pub position_embeddings: &'static str,
    /// Token-type embeddings (none in DistilBERT).
    pub token_type_embeddings: Option<&'static str>,
    /// The embeddings' LayerNorm.
    pub embeddings_norm: &'static str,
    /// The list of layers.
    pub layers: &'static str,
    /// Query projection.
    pub query: &'static str,
    /// Key projection.
    pub key: &'static str,
    /// Value projection.
    pub value: &'static str,
    /// Attention output projection.
    pub attention_output: &'static str,
    /// The LayerNorm after attention.
    pub attention_norm: &'static str,
    /// The first feed-forward projection.
    pub intermediate: &'static str,
    /// The second feed-forward projection.
    pub output: &'static str,
    /// The LayerNorm after the feed-forward block.
    pub output_norm: &'static str,
    /// The pooler (BERT).
    pub pooler: Option<&'static str>,
    /// The head's first projection (RoBERTa `classifier.dense`, DistilBERT `pre_classifier`).
    pub head_dense: Option<&'static str>,
    /// The head's output projection.
    pub head_out: &'static str,
}

const BERT: EncoderNames = EncoderNames {
    base: "bert",
    word_embeddings: "embeddings.word_embeddings",
    position_embeddings: "embeddings.position_embeddings",
    token_type_embeddings: Some("embeddings.token_type_embeddings"),
    embeddings_norm: "embeddings.LayerNorm",
    layers: "encoder.layer",
    query: "attention.self.query",
    key: "attention.self.key",
    value: "attention.self.value",
    attention_output: "attention.output.dense",
    attention_norm: "attention.output.LayerNorm",
    intermediate: "intermediate.dense",
    output: "output.dense",
    output_norm: "output.LayerNorm",
    pooler: Some("pooler.dense"),
    head_dense: None,
    head_out: "classifier",
};

const ROBERTA: EncoderNames = EncoderNames {
    base: "roberta",
    head_dense: Some("classifier.dense"),
    head_out: "classifier.out_proj",
    ..BERT
};

const DISTILBERT: EncoderNames = EncoderNames {
    base: "distilbert",
    word_embeddings: "embeddings.word_embeddings",
    position_embeddings: "embeddings.position_embeddings",
    token_type_embeddings: None,
    embeddings_norm: "embeddings.LayerNorm",
    layers: "transformer.layer",
    query: "attention.q_lin",
    key: "attention.k_lin",
    value: "attention.v_lin",
    attention_output: "attention.out_lin",
    attention_norm: "sa_layer_norm",
    intermediate: "ffn.lin1",
    output: "ffn.lin2",
    output_norm: "output_layer_norm",
    pooler: None,
    head_dense: Some("pre_classifier"),
    head_out: "classifier",
};

impl EncoderFamily {
    /// The family's module names.
    pub fn names(self) -> &'static EncoderNames {
        match self {
            Self::Bert => &BERT,
            Self::Roberta | Self::XlmRoberta => &ROBERTA,
            Self::DistilBert => &DISTILBERT,
        }
    }
}

impl EncoderNames {
    /// The six linear layers of an encoder layer, in the order the loader and surgery use.
    pub fn layer_linears(&self) -> [&'static str; 6] {
        [
            self.query,
            self.key,
            self.value,
            self.attention_output,
            self.intermediate,
            self.output,
        ]
    }
}
