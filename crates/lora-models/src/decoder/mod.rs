//! Decoder language models: Llama, Mistral, Qwen2, Qwen3, Gemma 2, Gemma 3, Phi-3 and GPT-2,
//! as one [`DecoderForCausalLM`] configured by a [`DecoderConfig`].
//!
//! - [`config`]: the family and every setting, read from `config.json` with transformers'
//!   defaults (RoPE variants, sliding windows, soft-capping, biases, norms);
//! - [`names`]: each family's Hugging Face module names, one table per family;
//! - [`cache`]: the keys and values of earlier positions, for decoding;
//! - [`pass`]: the RoPE tables and masks one forward pass shares between its layers;
//! - [`model`]: the layers and the forward pass (grouped-query attention, fused or separate
//!   projections, gated or plain MLP, tied or untied head, KV cache);
//! - [`generate`]: greedy and sampled generation;
//! - [`gguf`]: the same models from llama.cpp's GGUF files.

pub mod cache;
pub mod config;
pub mod generate;
pub mod gguf;
pub mod gguf_adapter;
pub mod model;
pub mod names;
pub mod pass;

pub use cache::KvCache;
pub use config::{DecoderConfig, DecoderFamily, LayerKind, Positions};
pub use generate::GenerationConfig;
pub use model::{DecoderBatch, DecoderForCausalLM, DecoderLayer, ids_tensor};
pub use names::DecoderNames;
pub use pass::DecoderPass;
