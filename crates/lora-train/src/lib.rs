#![warn(missing_docs)]
//! # lora-train
//!
//! One trainer for LoRA and every baseline the LoRA paper compares against: full fine-tuning,
//! AdapterH, AdapterL, BitFit, head-only and last-layers ([`Method`]), on sequence
//! classification ([`ClassificationTask`]) and causal language modelling ([`CausalLmTask`]),
//! for any model that implements the small traits in [`model`] ([`SequenceClassifier`],
//! [`CausalLm`]): the built-in families do, and a `#[derive(Adaptable)]` model of your own can.
//!
//! - [`prepare_classifier`] / [`prepare_causal_lm`] put a method on a loaded model (inject
//!   LoRA with the surgery crate, add bottleneck adapters, choose which parameters train).
//! - [`Trainer`] runs Adam or AdamW ([`OptimizerConfig`], PyTorch's constants and update) with
//!   a constant or warm-up + linear-decay schedule ([`LrSchedule`]), gradient clipping and
//!   accumulation, evaluation every epoch (and every N steps), early stopping, the best
//!   checkpoint, and resumable checkpoints ([`checkpoint`]); it stops with a clear error when the
//!   loss becomes NaN or infinite.
//! - [`layerwise`] backpropagates a model one layer at a time, recomputing activations instead
//!   of keeping them (`TrainConfig::checkpoint_activations`).
//! - [`metrics`] scores classifiers (accuracy, precision, recall, F1, MCC) and language models
//!   (perplexity).
//!
//! See [`Trainer`] for a complete example.

pub mod checkpoint;
pub mod config;
pub mod error;
pub mod layerwise;
pub mod memory;
pub mod method;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod params;
pub mod schedule;
pub mod sft;
pub mod task;
pub mod trainer;

pub use checkpoint::{EpochRecord, EvalRecord, TrainerState};
pub use config::TrainConfig;
pub use error::{Result, TrainError};
pub use method::{ADAPTER_NAME, METHOD_NAMES, Method, prepare_causal_lm, prepare_classifier};
pub use metrics::{ClassificationMetrics, ConfusionMatrix};
pub use model::{CausalLm, FineTune, SequenceClassifier, TokenBatch, token_batch};
pub use optim::{OptimizerConfig, OptimizerKind};
pub use schedule::LrSchedule;
pub use sft::SftTask;
pub use task::{
    BatchLoss, BatchStats, CausalLmTask, ClassificationTask, EvalMetrics, TrainTask,
    evaluate_classifier,
};
pub use trainer::{StopReason, TrainOutcome, Trainer};
