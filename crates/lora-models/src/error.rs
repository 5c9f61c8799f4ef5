//! The error type of `lora-models`.

use std::path::PathBuf;

/// Everything that can go wrong while reading model files or building a model. Messages name
/// the file, the tensor key and the shapes involved, so a user can tell what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },
    /// A model that cannot be written in Hugging Face's layout as it is (unmerged adapters,
    /// bottleneck adapters).
    #[error("cannot save the model in Hugging Face's layout: {0}")]
    NotExportable(String),
    /// A GGUF file is truncated, corrupted or otherwise unreadable.
    #[error("{path} is not a valid GGUF file: {reason}")]
    Gguf {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A GGUF tensor is stored in a quantisation this crate cannot dequantise.
    #[error(
        "GGUF tensor '{tensor}' uses type {type_name} (id {type_id}), which is not supported; \
         supported types: F32, F16, BF16, Q8_0, Q4_0, Q4_1"
    )]
    UnsupportedGgufType {
        /// The tensor's name in the GGUF file.
        tensor: String,
        /// The ggml type name.
        type_name: String,
        /// The ggml type id.
        type_id: u32,
    },
    /// A tensor the model needs is not in the weights.
    #[error("tensor '{key}' is missing from {source_name}")]
    MissingTensor {
        /// The key that was looked up.
        key: String,
        /// Where it was looked up.
        source_name: String,
    },
    /// A tensor has a different shape than the model's config implies.
    #[error("tensor '{key}' has shape {actual:?}, but the model expects {expected:?}")]
    ShapeMismatch {
        /// The tensor key.
        key: String,
        /// What the config implies.
        expected: Vec<usize>,
        /// What the file holds.
        actual: Vec<usize>,
    },
    /// `config.json` (or GGUF metadata) is missing a field or has an invalid value.
    #[error("invalid model config {path}: {reason}")]
    Config {
        /// The config's file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An activation function name that the models do not implement.
    #[error("unknown hidden_act '{name}'; supported: {}", supported.join(", "))]
    UnknownActivation {
        /// The name from the config.
        name: String,
        /// What is supported.
        supported: Vec<&'static str>,
    },
    /// The tokenizer could not be loaded or built.
    #[error("tokenizer error ({context}): {reason}")]
    Tokenizer {
        /// What was being done.
        context: String,
        /// What the tokenizer library reported.
        reason: String,
    },
    /// A model directory or file that does not exist or holds no weights.
    #[error("no model found at {path}: {reason}")]
    NotAModel {
        /// The path given.
        path: PathBuf,
        /// What was expected there.
        reason: String,
    },
    /// An input the model cannot process (wrong shape, token id out of range, too long).
    #[error("invalid model input: {0}")]
    Input(String),
    /// An error from the LoRA layer.
    #[error(transparent)]
    Lora(#[from] lora_core::LoraError),
    /// An error reading or writing tensors and files.
    #[error(transparent)]
    File(#[from] lora_core::IoError),
    /// An error from model surgery (targeting, adapter files).
    #[error(transparent)]
    Surgery(#[from] lora_surgery::SurgeryError),
}

/// Shorthand for results whose error is [`ModelError`].
pub type Result<T, E = ModelError> = core::result::Result<T, E>;

pub(crate) fn io_error(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ModelError {
    let path = path.into();
    move |source| ModelError::Io { path, source }
}

/// Reads a JSON config file into `T`; unreadable files and malformed JSON name the file.
pub(crate) fn read_json_config<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(io_error(path))?;
    serde_json::from_str(&text).map_err(|e| ModelError::Config {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}
