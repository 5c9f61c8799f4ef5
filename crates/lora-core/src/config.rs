//! [`LoraConfig`]: the hyper-parameters of one LoRA adapter.

use serde::{Deserialize, Serialize};

use crate::error::{LoraError, Result};

/// How the two LoRA factors are initialised.
///
/// With `A: [r, in]` and `B: [out, r]` in PyTorch's orientation:
///
/// | variant | `A` | `B` | PEFT `init_lora_weights` |
/// |---|---|---|---|
/// | [`Kaiming`](LoraInit::Kaiming) | `U(-1/√in, 1/√in)` (kaiming-uniform, `a = √5`) | `0` | `true` (default) |
/// | [`Gaussian`](LoraInit::Gaussian) | `N(0, (1/r)²)` | `0` | `"gaussian"` |
/// | [`Random`](LoraInit::Random) | `U(-1/√in, 1/√in)` | `U(-1/√r, 1/√r)` | `false` |
///
/// The first two start with `ΔW = 0`, so the adapted model equals the base model before
/// training. [`Random`](LoraInit::Random) leaves `B` non-zero, which is what tests and
/// conformance fixtures need to see an adapter's effect without training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoraInit {
    /// PEFT's default: kaiming-uniform `A`, zero `B`.
    #[default]
    Kaiming,
    /// The paper's random Gaussian `A` (PEFT's `"gaussian"`: std `1/r`), zero `B`.
    Gaussian,
    /// Both factors kaiming-uniform, as `nn.Linear` initialises them (`B ≠ 0`).
    Random,
}

/// The hyper-parameters of one LoRA adapter.
///
/// The update is `ΔW = s·B·A` with `s = alpha / r`, or `alpha / √r` with rank-stabilised LoRA
/// (`use_rslora`). Build one with [`LoraConfig::new`] and the `with_*` methods, or deserialize
/// it; either way call [`validate`](LoraConfig::validate) (layer constructors do) before use.
///
/// ```
/// use lora_core::{LoraConfig, LoraInit};
///
/// let config = LoraConfig::new(8).with_alpha(16.0).with_dropout(0.1);
/// assert_eq!(config.scaling(), 2.0);
/// assert_eq!(config.init, LoraInit::Kaiming);
/// assert!(LoraConfig::new(0).validate().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    /// The rank `r` of the update (at least 1).
    pub r: usize,
    /// The scale numerator `α`; defaults to `r`, as in the paper.
    pub alpha: f64,
    /// Dropout probability applied to the adapter's input during training, in `[0, 1)`.
    #[serde(default)]
    pub dropout: f64,
    /// Scale by `α/√r` instead of `α/r` (rank-stabilised LoRA).
    #[serde(default)]
    pub use_rslora: bool,
    /// How `A` and `B` are initialised.
    #[serde(default)]
    pub init: LoraInit,
}

impl LoraConfig {
    /// A config of rank `r` with `alpha = r`, no dropout, `α/r` scaling and PEFT's default init.
    pub fn new(r: usize) -> Self {
        Self {
            r,
            alpha: r as f64,
            dropout: 0.0,
            use_rslora: false,
            init: LoraInit::Kaiming,
        }
    }

    /// Sets `alpha`.
    pub fn with_alpha(mut self, alpha: f64) -> Self {
        self.alpha = alpha;
        self
    }

    /// Sets the dropout probability.
    pub fn with_dropout(mut self, dropout: f64) -> Self {
        self.dropout = dropout;
        self
    }

    /// Switches rank-stabilised scaling (`α/√r`) on or off.
    pub fn with_rslora(mut self, use_rslora: bool) -> Self {
        self.use_rslora = use_rslora;
        self
    }

    /// Sets the initialisation scheme.
    pub fn with_init(mut self, init: LoraInit) -> Self {
        self.init = init;
        self
    }

    /// The factor `s` that multiplies `B·A`: `α/r`, or `α/√r` with rsLoRA.
    pub fn scaling(&self) -> f64 {
        if self.use_rslora {
            self.alpha / (self.r as f64).sqrt()
        } else {
            self.alpha / self.r as f64
        }
    }

    /// Checks `r ≥ 1`, `α > 0` (finite, with a scaling that fits `f32`) and dropout in
    /// `[0, 1)`.
    pub fn validate(&self) -> Result<()> {
        if self.r == 0 {
            return Err(LoraError::ZeroRank { r: self.r });
        }
        if !self.alpha.is_finite() || self.alpha <= 0.0 {
            return Err(LoraError::InvalidAlpha { alpha: self.alpha });
        }
        if !(self.scaling() as f32).is_finite() {
            return Err(LoraError::NonFiniteScaling {
                scaling: self.scaling(),
                alpha: self.alpha,
            });
        }
        if !self.dropout.is_finite() || !(0.0..1.0).contains(&self.dropout) {
            return Err(LoraError::InvalidDropout {
                dropout: self.dropout,
            });
        }
        Ok(())
    }

    /// Validates the config for a layer `in_features -> out_features`: everything
    /// [`validate`](Self::validate) checks. A rank above `min(in, out)` is allowed, as in PEFT
    /// (it adds parameters but no expressiveness), with a warning.
    pub fn validate_for_layer(&self, in_features: usize, out_features: usize) -> Result<()> {
        self.validate()?;
        if self.r > in_features.min(out_features) {
            tracing::warn!(
                r = self.r,
                in_features,
                out_features,
                "LoRA rank above min(in, out): the update B·A cannot have a rank above {}",
                in_features.min(out_features)
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpha_defaults_to_rank() {
        let c = LoraConfig::new(4);
        assert_eq!(c.alpha, 4.0);
        assert_eq!(c.scaling(), 1.0);
    }

    #[test]
    fn rslora_scaling_is_alpha_over_sqrt_r() {
        let c = LoraConfig::new(16).with_alpha(8.0).with_rslora(true);
        assert_eq!(c.scaling(), 2.0);
        assert_eq!(c.with_rslora(false).scaling(), 0.5);
    }

    #[test]
    fn invalid_values_are_named() {
        let e = LoraConfig::new(0).validate().unwrap_err();
        assert!(e.to_string().contains("r = 0"), "{e}");
        let e = LoraConfig::new(2).with_alpha(0.0).validate().unwrap_err();
        assert!(e.to_string().contains("alpha = 0"), "{e}");
        let e = LoraConfig::new(2)
            .with_alpha(f64::NAN)
            .validate()
            .unwrap_err();
        assert!(matches!(e, LoraError::InvalidAlpha { .. }));
        for p in [-0.1, 1.0, 1.5] {
            let e = LoraConfig::new(2).with_dropout(p).validate().unwrap_err();
            assert!(matches!(e, LoraError::InvalidDropout { .. }), "{p}");
        }
        // PEFT accepts a rank above min(in, out), and so do we.
        assert!(LoraConfig::new(9).validate_for_layer(8, 16).is_ok());
        assert!(LoraConfig::new(8).validate_for_layer(8, 16).is_ok());
    }

    #[test]
    fn serde_round_trip_and_defaults() {
        let c: LoraConfig = serde_json::from_str(r#"{"r": 8, "alpha": 16}"#).unwrap();
        assert_eq!(c, LoraConfig::new(8).with_alpha(16.0));
        let c = LoraConfig::new(4)
            .with_init(LoraInit::Gaussian)
            .with_rslora(true);
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains("\"gaussian\""), "{json}");
        assert_eq!(serde_json::from_str::<LoraConfig>(&json).unwrap(), c);
        let e = serde_json::from_str::<LoraConfig>(r#"{"r": 8, "alpha": 8, "use_dora": true}"#)
            .unwrap_err();
        assert!(e.to_string().contains("use_dora"), "{e}");
    }
}
