//! The `hidden_act` values of Hugging Face configs that the models implement.

use burn::tensor::Tensor;
use burn::tensor::activation::{gelu, gelu_approximate, relu, silu, tanh};

use crate::error::{ModelError, Result};

/// A feed-forward activation, parsed from a config's `hidden_act`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// The exact GELU, `x·Φ(x)` (`"gelu"`).
    Gelu,
    /// The tanh approximation of GELU (`"gelu_new"`, `"gelu_pytorch_tanh"`).
    GeluTanh,
    /// `max(0, x)` (`"relu"`).
    Relu,
    /// `x·σ(x)` (`"silu"`, `"swish"`).
    Silu,
    /// `tanh(x)`.
    Tanh,
}

impl Activation {
    /// Every accepted spelling.
    pub const SUPPORTED: [&'static str; 7] = [
        "gelu",
        "gelu_new",
        "gelu_pytorch_tanh",
        "relu",
        "silu",
        "swish",
        "tanh",
    ];

    /// Parses a Hugging Face `hidden_act`, or names the supported ones.
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            "silu" | "swish" => Activation::Silu,
            "tanh" => Activation::Tanh,
            _ => {
                return Err(ModelError::UnknownActivation {
                    name: name.to_string(),
                    supported: Self::SUPPORTED.to_vec(),
                });
            }
        })
    }

    /// Applies the activation.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Activation::Gelu => gelu(x),
            Activation::GeluTanh => gelu_approximate(x),
            Activation::Relu => relu(x),
            Activation::Silu => silu(x),
            Activation::Tanh => tanh(x),
        }
    }

    /// A gated feed-forward product, `act(gate) ⊙ up`. SiLU takes the fused
    /// [`swiglu`](crate::layers::swiglu()) operation, which keeps half as many tensors for the
    /// backward pass; the others are composed.
    pub fn gated<const D: usize>(&self, gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
        match self {
            Activation::Silu => crate::layers::swiglu(gate, up),
            _ => self.forward(gate) * up,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_activation_names_the_supported_ones() {
        let e = Activation::parse("mish").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("'mish'") && msg.contains("gelu, gelu_new"),
            "{msg}"
        );
        assert_eq!(Activation::parse("swish").unwrap(), Activation::Silu);
    }

    lora_core::backend_test!(fn activations_match_closed_forms(device) {
        let xs = [-2.0f32, -0.5, 0.0, 0.7, 3.0];
        let x = Tensor::<1>::from_floats(xs, &device);
        let erf_gelu = |v: f64| 0.5 * v * (1.0 + libm_erf(v / std::f64::consts::SQRT_2));
        type Reference = fn(f64) -> f64;
        let cases: [(Activation, Reference); 4] = [
            (Activation::Relu, |v| v.max(0.0)),
            (Activation::Silu, |v| v / (1.0 + (-v).exp())),
            (Activation::Tanh, f64::tanh),
            (Activation::GeluTanh, |v| {
                0.5 * v * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v.powi(3))).tanh())
            }),
        ];
        for (act, f) in cases {
            let y = act.forward(x.clone()).into_data().try_to_vec::<f32>().unwrap();
            for (yi, xi) in y.iter().zip(xs) {
                assert!((*yi as f64 - f(xi as f64)).abs() < 1e-5, "{act:?}({xi}) = {yi}");
            }
        }
        let y = Activation::Gelu.forward(x).into_data().try_to_vec::<f32>().unwrap();
        for (yi, xi) in y.iter().zip(xs) {
            assert!((*yi as f64 - erf_gelu(xi as f64)).abs() < 1e-5, "gelu({xi}) = {yi}");
        }
    });

    /// erf by its Maclaurin series (plenty for |x| <= 3 in f64): an independent reference.
    fn libm_erf(x: f64) -> f64 {
        let mut sum = 0.0;
        let mut term = x;
        for n in 0..80 {
            sum += term / (2 * n + 1) as f64;
            term *= -x * x / (n + 1) as f64;
        }
        2.0 / std::f64::consts::PI.sqrt() * sum
    }
}
