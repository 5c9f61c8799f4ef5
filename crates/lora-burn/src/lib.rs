#![warn(missing_docs)]
#![doc = include_str!("../README.md")]

pub use lora_core as core;
pub use lora_data as data;
pub use lora_models as models;
pub use lora_surgery as surgery;
pub use lora_train as train;

/// The names a LoRA user needs, in one import: `use lora_burn::prelude::*;`.
pub mod prelude {
    pub use lora_core::{
        LoraConfig, LoraInit, LoraLinear, LoraLinearConfig, ParamCount, select_device,
    };
    pub use lora_models::{
        DecoderForCausalLM, Encoder, EncoderForSequenceClassification, Family, GenerationConfig,
        ModelSource, TokenBatch, load_causal_lm, load_encoder, load_sequence_classifier,
    };
    pub use lora_surgery::{Adaptable, ModulePattern, PeftConfig, PeftModel, TargetSpec, TaskType};
    pub use lora_train::{
        CausalLm, CausalLmTask, ClassificationTask, FineTune, Method, SequenceClassifier,
        TrainConfig, Trainer,
    };
}
