#![warn(missing_docs)]
//! # lora-models
//!
//! Pre-trained transformer families for `lora-burn`, built so that every linear layer is a
//! [`lora_core::LoraLinear`] carrying its Hugging Face name, and each family implements
//! [`lora_surgery::Adaptable`]:
//!
//! - [`encoder`]: BERT (MiniLM, …), RoBERTa, XLM-RoBERTa and DistilBERT, with each family's
//!   sequence-classification head, matching transformers' `*Model` /
//!   `*ForSequenceClassification`;
//! - [`decoder`]: Llama, Mistral, Qwen2, Qwen3, Gemma 2, Gemma 3 (text), Phi-3 and GPT-2 causal
//!   language models with grouped-query attention, RoPE variants, sliding windows, a KV cache
//!   and greedy / sampled generation, matching `*ForCausalLM`;
//! - loaders for Hugging Face directories ([`weights::SafetensorsWeights`], `config.json`,
//!   `tokenizer.json`) and GGUF files ([`gguf::GgufFile`], F32/F16/BF16/Q8_0/Q4_0/Q4_1
//!   dequantised, the tokenizer rebuilt from the file's metadata);
//! - [`export`]: writing a (merged) model back as a Hugging Face directory.
//!
//! A sentence embedding from MiniLM (fetched once into the asset cache):
//!
//! ```
//! use lora_models::{ModelSource, TokenBatch, load_encoder, mean_pool};
//!
//! let device = lora_core::select_device(Some("flex"))?;
//! let dir = lora_assets::AssetCache::from_env().fetch("minilm")?.main;
//! let (encoder, tokenizer) = load_encoder(&ModelSource::path(dir), &device)?;
//! let encoding = tokenizer
//!     .encode("LoRA trains two small matrices.", true)
//!     .map_err(|e| e.to_string())?;
//! let ids: Vec<i64> = encoding.get_ids().iter().map(|&id| id as i64).collect();
//! let n = ids.len();
//! let input = TokenBatch::from_ids(ids, vec![1; n], vec![0; n], [1, n], &device)?;
//! let embedding = mean_pool(encoder.forward(&input)?, input.attention_mask.clone());
//! assert_eq!(embedding.dims(), [1, 384]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Text from SmolLM2 given as a GGUF file:
//!
//! ```no_run
//! use lora_models::{ModelSource, load_causal_lm};
//!
//! let device = lora_core::select_device(None)?;
//! let (model, tokenizer) = load_causal_lm(&ModelSource::path("SmolLM2-135M-Instruct.Q4_1.gguf"), &device)?;
//! let prompt = tokenizer.encode("The capital of France is", false).unwrap();
//! let ids = model.generate(prompt.get_ids(), &Default::default(), &device)?;
//! println!("{}", tokenizer.decode(&ids, true).unwrap());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod activation;
pub mod adaptable;
pub mod config_json;
pub mod decoder;
pub mod encoder;
pub mod error;
pub mod export;
pub mod gguf;
pub mod gguf_write;
pub mod layers;
pub mod loader;
pub mod tokenizer;
pub mod weights;

pub use activation::Activation;
pub use adaptable::load_seq_cls_adapter;
pub use config_json::ConfigJson;
pub use decoder::{
    DecoderBatch, DecoderConfig, DecoderFamily, DecoderForCausalLM, DecoderPass, GenerationConfig,
    KvCache,
};
pub use encoder::{
    Encoder, EncoderConfig, EncoderFamily, EncoderForSequenceClassification, EncoderPass,
    TokenBatch, mean_pool,
};
pub use error::{ModelError, Result};
pub use export::{HfModelFiles, save_hf_dir};
pub use gguf::GgufFile;
pub use loader::{
    Family, ModelSource, RandomModel, load_causal_lm, load_causal_lm_as, load_encoder,
    load_encoder_as, load_sequence_classifier, load_sequence_classifier_as, random_model,
    read_encoder_config, tokenizer_files,
};
pub use tokenizer::{load_tokenizer_json, tokenizer_from_gguf};
pub use weights::{HostTensor, RandomWeights, SafetensorsWeights, StoredAs, WeightSource};
