//! Learning-rate schedules.

use serde::{Deserialize, Serialize};

/// How the learning rate changes over the optimizer steps of a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum LrSchedule {
    /// The same rate at every step.
    #[default]
    Constant,
    /// Linear warm-up from 0 over the first `warmup_ratio` of the steps, then linear decay to
    /// 0 at the last step: `transformers.get_linear_schedule_with_warmup`.
    LinearWarmupDecay {
        /// Fraction of all steps spent warming up (0 for none).
        warmup_ratio: f64,
    },
}

impl LrSchedule {
    /// The rate at optimizer step `step` (0-based) of `total_steps`, for peak rate `lr`.
    ///
    /// ```
    /// use lora_train::LrSchedule;
    ///
    /// let s = LrSchedule::LinearWarmupDecay { warmup_ratio: 0.1 };
    /// assert_eq!(s.lr_at(1e-3, 0, 100), 0.0);
    /// assert!((s.lr_at(1e-3, 5, 100) - 5e-4).abs() < 1e-12);
    /// assert!((s.lr_at(1e-3, 10, 100) - 1e-3).abs() < 1e-12);
    /// assert!((s.lr_at(1e-3, 55, 100) - 5e-4).abs() < 1e-12);
    /// ```
    pub fn lr_at(&self, lr: f64, step: usize, total_steps: usize) -> f64 {
        match *self {
            Self::Constant => lr,
            Self::LinearWarmupDecay { warmup_ratio } => {
                let warmup = (warmup_ratio * total_steps as f64).ceil() as usize;
                if step < warmup {
                    lr * step as f64 / warmup.max(1) as f64
                } else {
                    let remaining = total_steps.saturating_sub(step) as f64;
                    lr * (remaining / total_steps.saturating_sub(warmup).max(1) as f64).max(0.0)
                }
            }
        }
    }
}
