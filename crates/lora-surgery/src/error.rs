//! The error type of `lora-surgery`.

use std::path::PathBuf;

/// Everything that can go wrong while choosing targets, injecting adapters or reading and
/// writing PEFT adapter files.
#[derive(Debug, thiserror::Error)]
pub enum SurgeryError {
    /// A regular expression in the target specification does not compile.
    #[error("invalid regular expression in {field}: '{pattern}': {reason}")]
    BadPattern {
        /// Which field held it.
        field: &'static str,
        /// The pattern.
        pattern: String,
        /// What the regex engine reported.
        reason: String,
    },
    /// No module matched the target specification.
    #[error(
        "no module matched target_modules {targets}; the model's linear layers are:\n  {}",
        available.join("\n  ")
    )]
    NothingMatched {
        /// The specification, as written.
        targets: String,
        /// Every adaptable module name in the model.
        available: Vec<String>,
    },
    /// A PEFT config field asks for something this toolkit does not do.
    #[error("adapter_config.json field '{field}' = {value} is not supported: {reason}")]
    UnsupportedField {
        /// The field.
        field: String,
        /// Its value, as JSON.
        value: String,
        /// Why, and what would be accepted.
        reason: String,
    },
    /// A PEFT config that is malformed or misses a required field.
    #[error("invalid adapter config {path}: {reason}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Adapter weights that do not fit the model.
    #[error("the adapter in {path} does not fit this model: {reason}")]
    Mismatch {
        /// The adapter file.
        path: PathBuf,
        /// The first missing and unexpected keys, or the shape mismatch.
        reason: String,
    },
    /// An error reading or writing tensors and files.
    #[error(transparent)]
    File(#[from] lora_core::IoError),
    /// An error from the LoRA layer (unknown adapter, merge state, invalid config).
    #[error(transparent)]
    Lora(#[from] lora_core::LoraError),
}

/// Shorthand for results whose error is [`SurgeryError`].
pub type Result<T, E = SurgeryError> = core::result::Result<T, E>;
