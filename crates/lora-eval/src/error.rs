//! The error type of `lora-eval`.

use std::path::PathBuf;

/// Everything that can go wrong while evaluating or running the experiment.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Training failed.
    #[error(transparent)]
    Train(#[from] lora_train::TrainError),
    /// Data could not be read.
    #[error(transparent)]
    Data(#[from] lora_data::DataError),
    /// A model could not be loaded or run.
    #[error(transparent)]
    Model(#[from] lora_models::ModelError),
    /// Adapter surgery failed.
    #[error(transparent)]
    Surgery(#[from] lora_surgery::SurgeryError),
    /// An asset could not be fetched, or a built-in task read.
    #[error(transparent)]
    Asset(#[from] lora_assets::AssetError),
    /// A file could not be read or written.
    #[error(transparent)]
    File(#[from] lora_core::IoError),
    /// A setting or input that cannot work (an experiment setting, a benchmark's token file).
    #[error("invalid setting: {0}")]
    Config(String),
    /// A report or plot could not be written.
    #[error("writing {path}: {reason}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// Shorthand for results whose error is [`EvalError`].
pub type Result<T, E = EvalError> = core::result::Result<T, E>;
