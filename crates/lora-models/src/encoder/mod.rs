//! Bidirectional encoders for sequence classification and embeddings: BERT (MiniLM, …),
//! RoBERTa, XLM-RoBERTa and DistilBERT, as one [`Encoder`] configured by an [`EncoderConfig`],
//! with each family's classification head ([`EncoderForSequenceClassification`]).

pub mod config;
pub mod model;
pub mod names;
pub mod pass;

pub use config::{EncoderConfig, EncoderFamily};
pub use model::{Encoder, EncoderForSequenceClassification, EncoderLayer, TokenBatch, mean_pool};
pub use names::EncoderNames;
pub use pass::{EncoderPass, Packing};
