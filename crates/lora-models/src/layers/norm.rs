//! [`Norm`]: the normalisation layers of every supported family in one module: LayerNorm (with
//! or without a bias), RMSNorm as Llama computes it, and RMSNorm with a `(1 + w)` scale as
//! Gemma computes it.

use burn::module::{Module, Param};
use burn::tensor::module::layer_norm;
use burn::tensor::{Device, Tensor};

/// Which normalisation a [`Norm`] computes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NormKind {
    /// `(x − mean) / √(var + ε) · w + b` (BERT, RoBERTa, DistilBERT, GPT-2).
    LayerNorm,
    /// `x / √(mean(x²) + ε) · w` (Llama, Qwen, Mistral, Phi-3).
    RmsNorm,
    /// `x / √(mean(x²) + ε) · (1 + w)` (Gemma 2 and 3: the weight is stored as an offset from 1).
    RmsNormPlusOne,
}

/// A normalisation over the last dimension. The weight (and bias) are `Param`s named `weight`
/// and `bias`, as in PyTorch, and start frozen when loaded.
#[derive(Module, Debug)]
pub struct Norm {
    /// The scale `w` (for [`NormKind::RmsNormPlusOne`], the offset from 1), `[dim]`.
    pub weight: Param<Tensor<1>>,
    /// The shift `b` of a LayerNorm, `[dim]`.
    pub bias: Option<Param<Tensor<1>>>,
    #[module(skip)]
    kind: NormKind,
    #[module(skip)]
    epsilon: f64,
}

impl Norm {
    /// Wraps loaded weights (frozen).
    pub fn new(kind: NormKind, weight: Tensor<1>, bias: Option<Tensor<1>>, epsilon: f64) -> Self {
        Self {
            weight: Param::from_tensor(weight).set_require_grad(false),
            bias: bias.map(|b| Param::from_tensor(b).set_require_grad(false)),
            kind,
            epsilon,
        }
    }

    /// The identity-initialised norm of width `dim` (weight 1, or 0 for the `(1 + w)` form; bias
    /// 0), as PyTorch initialises one.
    pub fn init(kind: NormKind, dim: usize, bias: bool, epsilon: f64, device: &Device) -> Self {
        let weight = match kind {
            NormKind::RmsNormPlusOne => Tensor::zeros([dim], device),
            _ => Tensor::ones([dim], device),
        };
        let bias = bias.then(|| Tensor::zeros([dim], device));
        Self::new(kind, weight, bias, epsilon)
    }

    /// Which normalisation this is.
    pub fn kind(&self) -> NormKind {
        self.kind
    }

    /// ε.
    pub fn epsilon(&self) -> f64 {
        self.epsilon
    }

    /// Normalises `x` over its last dimension.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        if self.kind == NormKind::LayerNorm {
            // Burn's layer-norm operation: a fused kernel on the CPU backend, and (with the
            // burn-autodiff patch) one tracked operation with a closed-form backward pass.
            let bias = self.bias.as_ref().map(|b| b.val());
            return layer_norm(x, self.weight.val(), bias, self.epsilon);
        }
        let weight = self.weight.val().unsqueeze::<D>();
        let ms = x.clone().powi_scalar(2).mean_dim(D - 1);
        let normed = x / ms.add_scalar(self.epsilon).sqrt();
        let scaled = match self.kind {
            NormKind::RmsNormPlusOne => normed * weight.add_scalar(1.0),
            _ => normed * weight,
        };
        match &self.bias {
            Some(bias) => scaled + bias.val().unsqueeze::<D>(),
            None => scaled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    lora_core::backend_test!(fn each_kind_matches_its_closed_form(device) {
        let x = Tensor::<2>::from_floats([[1.0, 2.0, 3.0, 6.0]], &device);
        let w = Tensor::<1>::from_floats([1.0, 0.5, -1.0, 2.0], &device);
        let b = Tensor::<1>::from_floats([0.0, 1.0, 0.0, -1.0], &device);
        // mean 3, var (4+1+0+9)/4 = 3.5
        let ln = Norm::new(NormKind::LayerNorm, w.clone(), Some(b), 0.0).forward(x.clone());
        let s = 3.5f32.sqrt();
        let expected = [-2.0 / s, 1.0 - 0.5 / s, 0.0, 6.0 / s - 1.0];
        ln.into_data().assert_approx_eq::<f32>(&TensorData::from([expected]), Default::default());
        // mean square (1+4+9+36)/4 = 12.5
        let r = 12.5f32.sqrt();
        let rms = Norm::new(NormKind::RmsNorm, w.clone(), None, 0.0).forward(x.clone());
        let expected = [1.0 / r, 1.0 / r, -3.0 / r, 12.0 / r];
        rms.into_data().assert_approx_eq::<f32>(&TensorData::from([expected]), Default::default());
        let gemma = Norm::new(NormKind::RmsNormPlusOne, w, None, 0.0).forward(x);
        let expected = [2.0 / r, 3.0 / r, 0.0, 18.0 / r];
        gemma.into_data().assert_approx_eq::<f32>(&TensorData::from([expected]), Default::default());
    });
}
