//! [`BottleneckAdapter`]: the residual bottleneck adapter of Houlsby et al. (AdapterH) and
//! Lin et al. (AdapterL), the baselines LoRA is compared against.

use burn::module::Module;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::Device;
use burn::tensor::Tensor;
use burn::tensor::activation::{gelu, relu, tanh};
use serde::{Deserialize, Serialize};

use crate::error::{LoraError, Result};

/// The non-linearity between the down- and up-projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdapterActivation {
    /// `max(0, x)`, as in Houlsby et al.'s released code.
    #[default]
    Relu,
    /// The exact (erf) GELU.
    Gelu,
    /// Hyperbolic tangent.
    Tanh,
}

/// Configuration of a [`BottleneckAdapter`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BottleneckAdapterConfig {
    /// Width of the residual stream the adapter sits on.
    pub d_model: usize,
    /// Width of the bottleneck (`m` in the papers).
    pub bottleneck: usize,
    /// The non-linearity.
    #[serde(default)]
    pub activation: AdapterActivation,
}

impl BottleneckAdapterConfig {
    /// A `d_model -> bottleneck -> d_model` adapter with ReLU.
    pub fn new(d_model: usize, bottleneck: usize) -> Self {
        Self {
            d_model,
            bottleneck,
            activation: AdapterActivation::Relu,
        }
    }

    /// Sets the activation.
    pub fn with_activation(mut self, activation: AdapterActivation) -> Self {
        self.activation = activation;
        self
    }

    /// Parameters of one adapter: `2·d·m + m + d` (two weight matrices and two biases).
    pub fn num_params(&self) -> usize {
        2 * self.d_model * self.bottleneck + self.bottleneck + self.d_model
    }

    /// Creates the adapter: a kaiming-uniform down-projection and a zero up-projection, so the
    /// adapter starts as the identity.
    pub fn init(&self, device: &Device) -> Result<BottleneckAdapter> {
        if self.bottleneck == 0 || self.bottleneck > self.d_model {
            return Err(LoraError::InvalidBottleneck {
                size: self.bottleneck,
                d_model: self.d_model,
            });
        }
        let down = LinearConfig::new(self.d_model, self.bottleneck).init(device);
        let up = LinearConfig::new(self.bottleneck, self.d_model)
            .with_initializer(Initializer::Zeros)
            .init(device);
        Ok(BottleneckAdapter {
            down,
            up,
            activation: self.activation,
        })
    }
}

/// `y = x + up(act(down(x)))`: a residual bottleneck adapter whose parameters all train.
///
/// ```
/// use burn::tensor::Tensor;
/// use lora_core::BottleneckAdapterConfig;
///
/// let device = lora_core::select_device(Some("flex")).unwrap();
/// let config = BottleneckAdapterConfig::new(32, 4);
/// let adapter = config.init(&device).unwrap();
/// assert_eq!(config.num_params(), 2 * 32 * 4 + 4 + 32);
///
/// // The up-projection starts at zero, so a fresh adapter is the identity.
/// let x = Tensor::<2>::ones([3, 32], &device);
/// let diff: f32 = (adapter.forward(x.clone()) - x).abs().max().into_scalar();
/// assert_eq!(diff, 0.0);
/// ```
#[derive(Module, Debug)]
pub struct BottleneckAdapter {
    /// `d_model -> bottleneck`.
    pub down: Linear,
    /// `bottleneck -> d_model`, initialised to zero.
    pub up: Linear,
    /// The non-linearity.
    #[module(skip)]
    pub activation: AdapterActivation,
}

impl BottleneckAdapter {
    /// `x + up(act(down(x)))` for `x: [..., d_model]`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let h = self.down.forward(x.clone());
        let h = match self.activation {
            AdapterActivation::Relu => relu(h),
            AdapterActivation::Gelu => gelu(h),
            AdapterActivation::Tanh => tanh(h),
        };
        x + self.up.forward(h)
    }
}

#[cfg(test)]
mod tests {
    use burn::module::{Module, Param};
    use burn::tensor::{Distribution, TensorData};

    use super::*;
    use crate::params::ParamCount;
    use crate::testing::max_abs;

    crate::backend_test!(fn closed_form_forward(device) {
        // d = 2, m = 1: down = [[1], [2]], b_down = [-1]; up = [[0.5, -1]], b_up = [0.25, 0].
        let mut adapter = BottleneckAdapterConfig::new(2, 1).init(&device).unwrap();
        adapter.down.weight = Param::from_tensor(Tensor::from_floats([[1.0], [2.0]], &device));
        adapter.down.bias = Some(Param::from_tensor(Tensor::from_floats([-1.0], &device)));
        adapter.up.weight = Param::from_tensor(Tensor::from_floats([[0.5, -1.0]], &device));
        adapter.up.bias = Some(Param::from_tensor(Tensor::from_floats([0.25, 0.0], &device)));
        // x = [1, 1]: h = relu(1 + 2 - 1) = 2; up = [1.25, -2]; y = [2.25, -1].
        // x = [-1, 0]: h = relu(-2) = 0; up = [0.25, 0]; y = [-0.75, 0].
        let x = Tensor::<2>::from_floats([[1.0, 1.0], [-1.0, 0.0]], &device);
        adapter.forward(x.clone()).into_data().assert_approx_eq::<f32>(
            &TensorData::from([[2.25f32, -1.0], [-0.75, 0.0]]),
            Default::default(),
        );
        // With tanh, x = [-1, 0] gives h = tanh(-2) = -t, so y = [-1 - t/2 + 1/4, t].
        adapter.activation = AdapterActivation::Tanh;
        let t = (2.0f32).tanh();
        adapter.forward(x).into_data().assert_approx_eq::<f32>(
            &TensorData::from([[1.0 + 0.5 * t + 0.25, 1.0 - t], [-1.0 - 0.5 * t + 0.25, t]]),
            Default::default(),
        );
    });

    crate::backend_test!(fn starts_as_identity_and_trains_everything(device) {
        let device = device.autodiff();
        let config = BottleneckAdapterConfig::new(12, 3).with_activation(AdapterActivation::Gelu);
        let adapter = config.init(&device).unwrap();
        let count = ParamCount::of(&adapter);
        assert_eq!(count.total, config.num_params());
        assert_eq!(count.trainable, 2 * 12 * 3 + 3 + 12);
        let x = Tensor::<3>::random([2, 4, 12], Distribution::Uniform(-1.0, 1.0), &device);
        let y = adapter.forward(x.clone());
        assert_eq!(max_abs(y.clone() - x), 0.0);
        let grads = y.powi_scalar(2).sum().backward();
        // Only the up-projection sees a gradient at the zero init (the down-projection's path
        // goes through the zero up-weight), which is the same as in PyTorch.
        assert!(max_abs(adapter.up.weight.grad(&grads).unwrap()) > 0.0);
        assert!(adapter.down.weight.grad(&grads).is_some());
        assert_eq!(adapter.valid().down.weight.dims(), [12, 3]);
    });

    #[test]
    fn invalid_bottleneck_sizes_are_errors() {
        let device = crate::select_device(None).unwrap();
        for size in [0, 13] {
            let e = BottleneckAdapterConfig::new(12, size)
                .init(&device)
                .unwrap_err();
            assert!(e.to_string().contains("use 1..=12"), "{e}");
        }
    }
}
