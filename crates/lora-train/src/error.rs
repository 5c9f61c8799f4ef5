//! The error type of `lora-train`.

use std::path::PathBuf;

/// Everything that can go wrong while preparing or running a training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Reading or batching data failed.
    #[error(transparent)]
    Data(#[from] lora_data::DataError),
    /// Loading or running a model failed.
    #[error(transparent)]
    Model(#[from] lora_models::ModelError),
    /// Injecting or saving adapters failed.
    #[error(transparent)]
    Surgery(#[from] lora_surgery::SurgeryError),
    /// A LoRA layer operation failed.
    #[error(transparent)]
    Lora(#[from] lora_core::LoraError),
    /// Reading or writing tensors and files failed.
    #[error(transparent)]
    File(#[from] lora_core::IoError),
    /// A setting that cannot work, with what would.
    #[error("invalid training setting: {0}")]
    Config(String),
    /// A method that this model cannot be trained with.
    #[error("method '{method}' cannot train {model}: {reason}")]
    UnsupportedMethod {
        /// The method's name.
        method: String,
        /// The model kind.
        model: &'static str,
        /// Why not, and what works instead.
        reason: String,
    },
    /// The loss became NaN or infinite; the last good checkpoint is kept.
    #[error(
        "the training loss became {loss} at step {step} (epoch {epoch}); stopped without saving. \
         {}Lower the learning rate (or set max_grad_norm) and resume or restart",
        match checkpoint { Some(p) => format!("The last good checkpoint is {}. ", p.display()), None => "No checkpoint was written yet. ".into() }
    )]
    NonFiniteLoss {
        /// The loss value.
        loss: f64,
        /// The optimizer step (0-based) whose loss it was.
        step: usize,
        /// The epoch (0-based).
        epoch: usize,
        /// The last checkpoint written, if any.
        checkpoint: Option<PathBuf>,
    },
    /// A checkpoint that cannot be written or read back.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The checkpoint file or directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Shorthand for results whose error is [`TrainError`].
pub type Result<T, E = TrainError> = core::result::Result<T, E>;

pub(crate) fn checkpoint_err(path: impl Into<PathBuf>) -> impl FnOnce(String) -> TrainError {
    let path = path.into();
    move |reason| TrainError::Checkpoint { path, reason }
}
