#![warn(missing_docs)]
//! # lora-models
//!
//! Pre-trained transformer architectures for `lora-burn`, built so that every linear layer is a
//! [`lora_core::LoraLinear`] carrying its Hugging Face name:
//!
//! - [`bert`]: a BERT encoder (MiniLM, BERT-base, …) with pooler, mean pooling and a
//!   sequence-classification head, matching `BertModel` / `BertForSequenceClassification`;
//! - [`llama`]: a Llama decoder (SmolLM2, …) with grouped-query attention, RoPE, a KV cache and
//!   greedy / sampled generation, matching `LlamaForCausalLM`;
//! - loaders for Hugging Face directories ([`weights::SafetensorsWeights`], `config.json`,
//!   `tokenizer.json`) and GGUF files ([`gguf::GgufFile`], F32/F16/BF16/Q8_0/Q4_0/Q4_1
//!   dequantised, the tokenizer rebuilt from the file's metadata).
//!
//! A sentence embedding from MiniLM (fetched once into the asset cache):
//!
//! ```
//! use lora_models::{BertInput, ModelSource, encode_batch, load_bert, mean_pool};
//!
//! let device = lora_core::select_device(Some("flex"))?;
//! let dir = lora_data::AssetCache::from_env().fetch("minilm")?.main;
//! let (bert, tokenizer) = load_bert(&ModelSource::path(dir), &device)?;
//! let batch = encode_batch(&tokenizer, &[("LoRA trains two small matrices.", None)], 0)?;
//! let input = BertInput::from_encoded(&batch, &device)?;
//! let embedding = mean_pool(bert.forward(&input)?, input.attention_mask.clone());
//! assert_eq!(embedding.dims(), [1, 384]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Text from SmolLM2 given as a GGUF file:
//!
//! ```no_run
//! use lora_models::{ModelSource, load_llama};
//!
//! let device = lora_core::select_device(None)?;
//! let (model, tokenizer) = load_llama(&ModelSource::path("SmolLM2-135M-Instruct.Q4_1.gguf"), &device)?;
//! let prompt = tokenizer.encode("The capital of France is", false).unwrap();
//! let ids = model.generate(prompt.get_ids(), &Default::default(), &device)?;
//! println!("{}", tokenizer.decode(&ids, true).unwrap());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod activation;
pub mod bert;
pub mod error;
pub mod export;
pub mod gguf;
pub mod llama;
pub mod loader;
pub mod tokenizer;
pub mod weights;

pub use activation::Activation;
pub use bert::{BertConfig, BertForSequenceClassification, BertInput, BertModel, mean_pool};
pub use error::{ModelError, Result};
pub use export::{HfModelFiles, save_hf_dir, write_atomic};
pub use gguf::GgufFile;
pub use llama::{GenerationConfig, KvCache, LlamaConfig, LlamaForCausalLM};
pub use loader::{
    Architecture, ModelSource, load_bert, load_bert_classifier, load_llama, read_bert_config,
    tokenizer_files,
};
pub use tokenizer::{
    EncodedBatch, encode_batch, load_tokenizer_json, set_max_len, tokenizer_from_gguf,
};
pub use weights::{HostTensor, SafetensorsWeights, WeightSource};
