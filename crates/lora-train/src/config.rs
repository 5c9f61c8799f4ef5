//! [`TrainConfig`]: the settings of a training run.

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::method::Method;
use crate::optim::OptimizerConfig;
use crate::schedule::LrSchedule;
use crate::task::METRIC_NAMES;

/// The settings of a training run. Every field has a default, so a TOML or JSON config needs
/// only what it changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// The fine-tuning method (default: LoRA r = 8 on `query` and `value`).
    pub method: Method,
    /// Passes over the training data.
    pub epochs: usize,
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step (the effective batch is `batch_size · grad_accum`).
    pub grad_accum: usize,
    /// Peak learning rate; `None` takes [`Method::default_lr`].
    pub lr: Option<f64>,
    /// Adam or AdamW and their constants.
    pub optimizer: OptimizerConfig,
    /// Constant, or linear warm-up and decay.
    pub schedule: LrSchedule,
    /// Clip the global gradient norm to this (`None`: no clipping).
    pub max_grad_norm: Option<f64>,
    /// Seed of the head and adapter initialisation, the data order and dropout.
    pub seed: u64,
    /// Group examples of similar length into batches (less padding).
    pub bucket_by_length: bool,
    /// Examples per batch when evaluating.
    pub eval_batch_size: usize,
    /// Also evaluate every this many optimizer steps (always at the end of each epoch).
    pub eval_every_steps: Option<usize>,
    /// Also checkpoint every this many optimizer steps (always at the end of each epoch).
    pub checkpoint_every_steps: Option<usize>,
    /// The metric that picks the best checkpoint and drives early stopping (default:
    /// `accuracy` for classification, `perplexity` for language models).
    pub select_metric: Option<String>,
    /// Stop after this many evaluations without improvement.
    pub early_stopping_patience: Option<usize>,
    /// Stop (after checkpointing) once this many optimizer steps are done in total; a later
    /// resume continues the same schedule, as if the run had been interrupted.
    pub stop_after_steps: Option<usize>,
    /// Draw a progress bar on the terminal.
    pub progress: bool,
    /// How the frozen base weights are held (QLoRA's frozen base): `f32` (default), `f16`,
    /// `bf16`, `q8` or `q4`. The loader applies it; methods that train the base weights
    /// themselves (full fine-tuning, the last layers) need `f32`.
    pub base_dtype: lora_core::BaseDType,
    /// Recompute activations in the backward pass instead of keeping them: the model runs
    /// forward once without a graph keeping only each layer's input, then backward one layer
    /// at a time ([`crate::layerwise`]); a language model's logits exist a few rows at a time.
    /// Less memory, about one more forward pass per step. Needs a model that runs as a stack of
    /// layers (the built-in encoders and decoders).
    pub checkpoint_activations: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            method: Method::lora(8, &["query", "value"]),
            epochs: 3,
            batch_size: 16,
            grad_accum: 1,
            lr: None,
            optimizer: OptimizerConfig::default(),
            schedule: LrSchedule::Constant,
            max_grad_norm: Some(1.0),
            seed: 42,
            bucket_by_length: true,
            eval_batch_size: 64,
            eval_every_steps: None,
            checkpoint_every_steps: None,
            select_metric: None,
            early_stopping_patience: None,
            stop_after_steps: None,
            progress: true,
            base_dtype: lora_core::BaseDType::F32,
            checkpoint_activations: false,
        }
    }
}

impl TrainConfig {
    /// The training device for these settings: autodiff on `device`. (Activation
    /// recomputation is the trainer's, layer by layer; Burn's graph-level checkpointing keeps
    /// every matrix product's output, most of a transformer's activations, so it is not used.)
    pub fn train_device(&self, device: &burn::tensor::Device) -> burn::tensor::Device {
        device.clone().autodiff()
    }

    /// The defaults with this method.
    pub fn new(method: Method) -> Self {
        Self {
            method,
            ..Self::default()
        }
    }

    /// The peak learning rate in use.
    pub fn learning_rate(&self) -> f64 {
        self.lr.unwrap_or_else(|| self.method.default_lr())
    }

    /// Checks the settings (batch size, epochs, learning rate, schedule, …) before a run.
    pub fn validate(&self) -> Result<()> {
        let bad = |s: String| Err(TrainError::Config(s));
        if self.epochs == 0 {
            return bad("epochs must be at least 1".into());
        }
        if self.batch_size == 0 || self.grad_accum == 0 || self.eval_batch_size == 0 {
            return bad("batch_size, grad_accum and eval_batch_size must be at least 1".into());
        }
        let lr = self.learning_rate();
        if !(lr.is_finite() && lr > 0.0) {
            return bad(format!(
                "the learning rate must be positive and finite, got {lr}"
            ));
        }
        if let Some(m) = &self.select_metric
            && !METRIC_NAMES.contains(&m.as_str())
        {
            return bad(format!(
                "unknown metric '{m}'; choose one of {}",
                METRIC_NAMES.join(", ")
            ));
        }
        if self.eval_every_steps == Some(0) || self.checkpoint_every_steps == Some(0) {
            return bad("eval_every_steps and checkpoint_every_steps must be at least 1".into());
        }
        if self.base_dtype != lora_core::BaseDType::F32 && self.method.trains_base_weights() {
            return bad(format!(
                "--method {} trains the base weights, which need --base-dtype f32 (got {}); \
                 a base stored as {} stays frozen: use lora, adapter-h or adapter-l",
                self.method.name(),
                self.base_dtype,
                self.base_dtype
            ));
        }
        if matches!(self.max_grad_norm, Some(n) if n.is_nan() || n <= 0.0) {
            return bad("max_grad_norm must be positive".into());
        }
        Ok(())
    }

    /// Which settings a resumed run must share with the run it continues.
    pub(crate) fn resume_mismatch(&self, saved: &TrainConfig) -> Option<&'static str> {
        [
            ("method", self.method != saved.method),
            ("seed", self.seed != saved.seed),
            ("batch_size", self.batch_size != saved.batch_size),
            ("grad_accum", self.grad_accum != saved.grad_accum),
            (
                "bucket_by_length",
                self.bucket_by_length != saved.bucket_by_length,
            ),
            ("epochs", self.epochs != saved.epochs),
            ("lr", self.learning_rate() != saved.learning_rate()),
            ("schedule", self.schedule != saved.schedule),
            ("optimizer", self.optimizer != saved.optimizer),
        ]
        .into_iter()
        .find(|(_, differs)| *differs)
        .map(|(name, _)| name)
    }
}
