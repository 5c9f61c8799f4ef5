//! Checkpoints: trainable weights, optimizer moments and trainer state, written atomically.
//!
//! A checkpoint directory holds
//!
//! - `trainable.safetensors`: every trainable parameter by its path (F32), enough to rebuild
//!   the trained model from the base model and the method;
//! - for LoRA, also the PEFT adapter (`adapter_config.json`, `adapter_model.safetensors`), so any
//!   checkpoint loads in PEFT or `lora predict --adapter`;
//! - `optimizer.safetensors`: Adam's first and second moments (`m.<path>`, `v.<path>`);
//! - `trainer_state.json`: the [`TrainerState`] (step, epoch, position in the epoch, running
//!   sums, evaluation history, best metric, the settings it was made with).
//!
//! A directory is written under a temporary name and then renamed into place (the previous one
//! is renamed aside first and removed last), so an interrupted write never leaves a
//! half-written checkpoint under the real name.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::error::{Result, checkpoint_err};
use crate::task::EvalMetrics;

/// File of the trainable weights.
pub const TRAINABLE_FILE: &str = "trainable.safetensors";
/// File of the optimizer moments.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// File of the trainer state.
pub const STATE_FILE: &str = "trainer_state.json";

/// What one epoch did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 0-based epoch.
    pub epoch: usize,
    /// Optimizer steps taken by the end of the epoch.
    pub global_step: usize,
    /// Mean training loss per example.
    pub train_loss: f64,
    /// The learning rate of the epoch's last step.
    pub lr: f64,
    /// Dev metrics at the end of the epoch.
    pub dev: EvalMetrics,
    /// Seconds spent in training steps (forward, backward, update).
    pub train_seconds: f64,
    /// Seconds spent evaluating at the end of the epoch.
    pub eval_seconds: f64,
    /// Training throughput.
    pub examples_per_second: f64,
    /// Training throughput in real (non-padding) tokens.
    pub tokens_per_second: f64,
    /// Peak resident memory of the process during the epoch's training steps (before its
    /// closing evaluation), in MiB.
    pub peak_rss_mib: Option<f64>,
    /// Where the epoch's memory went (absent in states written before it existed).
    #[serde(default)]
    pub memory: Option<crate::memory::MemoryBreakdown>,
}

/// One evaluation on the dev data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// 0-based epoch during which it ran.
    pub epoch: usize,
    /// Optimizer steps taken before it.
    pub step: usize,
    /// The metrics.
    pub metrics: EvalMetrics,
}

/// Everything besides tensors that a resumed run needs to continue exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// The settings of the run (a resumed run must use the same method, seed and batching).
    pub config: TrainConfig,
    /// The epoch in progress (0-based).
    pub epoch: usize,
    /// Batches of that epoch already consumed (the epoch's order follows from the seed).
    pub batches_done: usize,
    /// Optimizer steps taken.
    pub global_step: usize,
    /// Sum of per-example training loss in the current epoch.
    pub epoch_loss_sum: f64,
    /// Examples seen in the current epoch.
    pub epoch_examples: usize,
    /// Tokens seen in the current epoch.
    pub epoch_tokens: usize,
    /// Seconds spent training in the current epoch (excluding evaluation).
    pub epoch_seconds: f64,
    /// Records of the finished epochs.
    pub history: Vec<EpochRecord>,
    /// Every evaluation so far.
    pub evals: Vec<EvalRecord>,
    /// The best evaluation so far by the selection metric.
    pub best: Option<EvalRecord>,
    /// Evaluations since the best one (for early stopping).
    pub evals_since_best: usize,
    /// Whether early stopping ended the run.
    pub early_stopped: bool,
    /// The mean training loss of every optimizer step so far (the loss curve).
    pub step_losses: Vec<f64>,
}

impl TrainerState {
    /// The state at the start of a run.
    pub fn new(config: TrainConfig) -> Self {
        Self {
            config,
            epoch: 0,
            batches_done: 0,
            global_step: 0,
            epoch_loss_sum: 0.0,
            epoch_examples: 0,
            epoch_tokens: 0,
            epoch_seconds: 0.0,
            history: Vec::new(),
            evals: Vec::new(),
            best: None,
            evals_since_best: 0,
            early_stopped: false,
            step_losses: Vec::new(),
        }
    }
}

/// The directory to resume from: `dir`, or the previous one kept aside if a replacement was
/// interrupted between its two renames.
pub fn existing_dir(dir: &Path) -> Option<PathBuf> {
    lora_core::io::existing_or_previous(dir, |d| d.join(STATE_FILE).is_file())
}

/// Reads the trainer state of a checkpoint directory.
pub fn read_state(dir: &Path) -> Result<TrainerState> {
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| checkpoint_err(&path)(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| checkpoint_err(&path)(e.to_string()))
}
