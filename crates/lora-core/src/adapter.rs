//! [`LoraAdapter`]: one named pair of low-rank factors.

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{Device, Distribution, Tensor};

use crate::config::{LoraConfig, LoraInit};
use crate::error::{LoraError, Result};
use crate::linear::rows_matmul;

/// One named LoRA adapter: the factors `A` and `B`, its dropout and its scaling.
///
/// The factors are stored in Burn's orientation (`x · W` with `W: [in, out]`):
/// `lora_a: [in, r]` and `lora_b: [r, out]`, the transposes of PEFT's `lora_A.weight [r, in]`
/// and `lora_B.weight [out, r]`. [`delta`](LoraAdapter::delta) computes
/// `s · B(A(dropout(x)))` through the rank-`r` bottleneck; a dense `ΔW` is only ever built by
/// [`delta_weight`](LoraAdapter::delta_weight), for merging.
#[derive(Module, Debug)]
pub struct LoraAdapter {
    /// The down-projection `A`, stored `[in, r]`.
    pub lora_a: Param<Tensor<2>>,
    /// The up-projection `B`, stored `[r, out]`.
    pub lora_b: Param<Tensor<2>>,
    /// Dropout on the adapter's input; only active in training mode on an autodiff device.
    pub dropout: Dropout,
    /// The adapter's name, unique within its layer.
    #[module(skip)]
    pub name: String,
    /// The hyper-parameters the adapter was built with (the scaling derives from them).
    #[module(skip)]
    pub config: LoraConfig,
    /// Whether the adapter contributes to the forward pass.
    #[module(skip)]
    pub(crate) active: bool,
    /// Whether `s·B·A` is currently folded into the base weight.
    #[module(skip)]
    pub(crate) merged: bool,
}

impl LoraAdapter {
    /// Creates an adapter for a layer `in_features -> out_features`, initialised as
    /// `config.init` says. The adapter starts active and unmerged.
    pub fn new(
        name: &str,
        config: LoraConfig,
        in_features: usize,
        out_features: usize,
        device: &Device,
    ) -> Result<Self> {
        config.validate_for_layer(in_features, out_features)?;
        validate_name(name)?;
        let r = config.r;
        let kaiming_a = 1.0 / (in_features as f64).sqrt();
        let a_dist = match config.init {
            LoraInit::Kaiming | LoraInit::Random => Distribution::Uniform(-kaiming_a, kaiming_a),
            LoraInit::Gaussian => Distribution::Normal(0.0, 1.0 / r as f64),
        };
        let lora_a = Tensor::<2>::random([in_features, r], a_dist, device);
        let lora_b = match config.init {
            LoraInit::Kaiming | LoraInit::Gaussian => Tensor::<2>::zeros([r, out_features], device),
            LoraInit::Random => {
                let bound = 1.0 / (r as f64).sqrt();
                Tensor::<2>::random(
                    [r, out_features],
                    Distribution::Uniform(-bound, bound),
                    device,
                )
            }
        };
        Self::from_factors(name, config, lora_a, lora_b)
    }

    /// Builds an adapter from given factors in Burn's orientation (`a: [in, r]`,
    /// `b: [r, out]`). The rank must equal `config.r`.
    pub fn from_factors(
        name: &str,
        config: LoraConfig,
        lora_a: Tensor<2>,
        lora_b: Tensor<2>,
    ) -> Result<Self> {
        config.validate()?;
        validate_name(name)?;
        let [in_features, r_a] = lora_a.dims();
        let [r_b, out_features] = lora_b.dims();
        if r_a != config.r {
            return Err(LoraError::ShapeMismatch {
                what: format!("adapter '{name}' factor A ([in, r])"),
                expected: vec![in_features, config.r],
                actual: vec![in_features, r_a],
            });
        }
        if r_b != config.r {
            return Err(LoraError::ShapeMismatch {
                what: format!("adapter '{name}' factor B ([r, out])"),
                expected: vec![config.r, out_features],
                actual: vec![r_b, out_features],
            });
        }
        config.validate_for_layer(in_features, out_features)?;
        Ok(Self {
            lora_a: Param::from_tensor(lora_a),
            lora_b: Param::from_tensor(lora_b),
            dropout: DropoutConfig::new(config.dropout).init(),
            name: name.to_string(),
            config,
            active: true,
            merged: false,
        })
    }

    /// The factor `s` that multiplies `B·A`.
    pub fn scaling(&self) -> f64 {
        self.config.scaling()
    }

    /// The rank `r`.
    pub fn rank(&self) -> usize {
        self.config.r
    }

    /// Whether the adapter takes part in the forward pass.
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// Whether the adapter's update is folded into the base weight.
    pub fn is_merged(&self) -> bool {
        self.merged
    }

    /// `s · B(A(dropout(x)))` for `x: [..., in]`, through the low-rank path.
    pub fn delta<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let x = self.dropout.forward(x);
        // The scaling multiplies the `r`-wide intermediate instead of the output (one pass over
        // `rows × r` values instead of `rows × out`, forward and backward).
        let down = rows_matmul(x, self.lora_a.val()).mul_scalar(self.scaling());
        rows_matmul(down, self.lora_b.val())
    }

    /// The dense update `s · A·B`, `[in, out]` (Burn's orientation), detached from any graph.
    pub fn delta_weight(&self) -> Tensor<2> {
        self.lora_a
            .val()
            .detach()
            .matmul(self.lora_b.val().detach())
            .mul_scalar(self.scaling())
    }

    /// Makes only `A` and `B` trainable or frozen (the adapter's name and state stay).
    pub fn set_trainable(mut self, trainable: bool) -> Self {
        self.lora_a = self.lora_a.set_require_grad(trainable);
        self.lora_b = self.lora_b.set_require_grad(trainable);
        self
    }

    /// Number of parameters the adapter adds: `r · (in + out)`.
    pub fn num_added_params(&self) -> usize {
        let [in_features, r] = self.lora_a.dims();
        let [_, out_features] = self.lora_b.dims();
        r * (in_features + out_features)
    }
}

/// Adapter names become path segments, so they must be non-empty and dot-free.
pub(crate) fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains('.') {
        return Err(LoraError::InvalidAdapterName {
            name: name.to_string(),
        });
    }
    Ok(())
}
