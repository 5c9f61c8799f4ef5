//! The gated feed-forward product `silu(gate) ⊙ up` (SwiGLU) as one operation with its own
//! backward pass.
//!
//! Composed of Burn's tensor operations, `silu(g) ⊙ u` is three tracked operations (`σ(g)`,
//! `g ⊙ σ(g)`, `· ⊙ u`) whose backward states keep four tensors of the feed-forward width per
//! layer until the backward pass reaches them: `g`, `σ(g)`, `silu(g)` and `u`. This operation
//! keeps `g` and `u` only and recomputes `σ(g)` in the backward pass, with the closed-form
//! gradients
//!
//! - `∂/∂u = grad ⊙ silu(g)`,
//! - `∂/∂g = grad ⊙ u ⊙ silu′(g)`, `silu′(g) = σ(g)·(1 + g·(1 − σ(g))) = σ + silu − silu·σ`.
//!
//! For SmolLM2-135M (30 layers, width 1,536), a LoRA step on the benchmark's batch of 4 × ≤128
//! tokens peaked about 120 MiB lower with it (1,032-1,111 against 909-925 MiB, measured in
//! `docs/performance.md`, item 17). It is a Burn backend extension ([`SwiGluBackend`]): each backend's
//! forward pass is the composed definition (the trait's default body), and autodiff's
//! implementation records the single operation above it.

// Burn deprecates its ndarray backend, which is still one of this project's backends: the
// extension's generated dispatch names it.
#![allow(deprecated)]

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, binary};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, backend_extension};
use burn::tensor::Tensor;

/// `silu(gate) ⊙ up` for tensors of any rank (equal shapes), tracked as one operation under
/// autodiff. Equal to `silu(gate) * up` composed of Burn's operations, forward and backward.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use lora_models::layers::swiglu;
///
/// let device = Device::default();
/// let gate = Tensor::<1>::from_floats([-1.0, 0.0, 2.0], &device);
/// let up = Tensor::<1>::from_floats([3.0, 5.0, 0.5], &device);
/// let y = swiglu(gate, up).into_data().to_vec::<f32>().unwrap();
/// let silu = |x: f32| x / (1.0 + (-x).exp());
/// assert!((y[0] - 3.0 * silu(-1.0)).abs() < 1e-6 && y[1] == 0.0);
/// assert!((y[2] - 0.5 * silu(2.0)).abs() < 1e-6);
/// ```
pub fn swiglu<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<burn::backend::Dispatch as SwiGluBackend>::swiglu(
        gate.into_dispatch(),
        up.into_dispatch(),
    ))
}

/// The backend extension behind [`swiglu`]: the composed forward pass on every backend
/// (the default body), one tracked operation with a closed-form backward under autodiff.
#[backend_extension(
    Flex: cfg(feature = "flex"),
    NdArray: cfg(feature = "ndarray"),
    Cube: cfg(any(feature = "wgpu", feature = "cuda")),
    Autodiff
)]
pub trait SwiGluBackend: Backend {
    /// `silu(gate) ⊙ up`, element-wise; both operands have the same shape.
    fn swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        let silu = Self::float_mul(gate.clone(), Self::sigmoid(gate));
        Self::float_mul(silu, up)
    }
}

#[cfg(feature = "flex")]
impl SwiGluBackend for burn::backend::Flex {}

#[cfg(feature = "ndarray")]
impl SwiGluBackend for burn::backend::NdArray {}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
impl SwiGluBackend for burn::backend::Cube {}

/// The backward pass: state `(gate, up)`, `up` only where the gate needs a gradient.
#[derive(Debug)]
struct SwiGluBackward;

impl<B: Backend> Backward<B, 2> for SwiGluBackward {
    type State = (FloatTensor<B>, Option<FloatTensor<B>>);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let (gate, up) = ops.state;
        let sigmoid = B::sigmoid(gate.clone());
        let silu = B::float_mul(gate, sigmoid.clone());
        let silu_for_up = silu.clone();
        binary::<B, _, _>(
            ops.parents,
            ops.node,
            grads,
            |grad| {
                // `binary` calls this only when the gate is tracked, which is when `up` was kept.
                let up = up.expect("the up operand is kept whenever the gate is tracked");
                let slope = B::float_sub(
                    B::float_add(sigmoid.clone(), silu.clone()),
                    B::float_mul(silu, sigmoid),
                );
                B::float_mul(B::float_mul(grad, up), slope)
            },
            |grad| B::float_mul(grad, silu_for_up),
        );
    }
}

impl<B: SwiGluBackend, C: CheckpointStrategy> SwiGluBackend for Autodiff<B, C> {
    fn swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        let gate_tracked = gate.is_tracked();
        match SwiGluBackward
            .prepare::<C>([gate.node(), up.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let gate = gate.into_primitive();
                let up = up.into_primitive();
                let output = B::swiglu(gate.clone(), up.clone());
                prep.finish((gate, gate_tracked.then_some(up)), output)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::swiglu(gate.into_primitive(), up.into_primitive()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::activation::silu;
    use burn::tensor::{Distribution, Tensor};
    use lora_core::testing::max_abs_diff;

    use super::*;

    fn silu_f64(x: f64) -> f64 {
        x / (1.0 + (-x).exp())
    }

    lora_core::backend_test!(fn forward_matches_the_closed_form(device) {
        let gs = [-6.0f32, -1.5, -0.25, 0.0, 0.4, 2.0, 9.0];
        let us = [0.5f32, -2.0, 3.0, 7.0, -1.0, 0.25, 1.5];
        let gate = Tensor::<1>::from_floats(gs, &device);
        let up = Tensor::<1>::from_floats(us, &device);
        let y = swiglu(gate, up).into_data().to_vec::<f32>().unwrap();
        for ((yi, g), u) in y.iter().zip(gs).zip(us) {
            let expected = silu_f64(g as f64) * u as f64;
            assert!((*yi as f64 - expected).abs() < 1e-5, "swiglu({g}, {u}) = {yi}, want {expected}");
        }
    });

    lora_core::backend_test!(fn gradients_match_the_composed_definition(device) {
        let device = device.autodiff();
        let shape = [2, 5, 24];
        let gate0 = Tensor::<3>::random(shape, Distribution::Normal(0.0, 2.0), &device);
        let up0 = Tensor::<3>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let weights = Tensor::<3>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let run = |fused: bool| {
            let gate = gate0.clone().require_grad();
            let up = up0.clone().require_grad();
            // A gate that is itself computed from a tracked tensor, as a projection's output is.
            let gate_in = gate.clone() * 1.0;
            let y = if fused {
                swiglu(gate_in, up.clone())
            } else {
                silu(gate_in) * up.clone()
            };
            let grads = (y.clone() * weights.clone()).sum().backward();
            (y.inner(), gate.grad(&grads).unwrap(), up.grad(&grads).unwrap())
        };
        let (y, dg, du) = run(true);
        let (y_ref, dg_ref, du_ref) = run(false);
        let tol = lora_core::testing::tolerance(1e-5, 1e-4);
        assert!(max_abs_diff(y, y_ref) < tol);
        assert!(max_abs_diff(dg.clone(), dg_ref) < tol, "gate gradient");
        assert!(max_abs_diff(du, du_ref) < tol, "up gradient");

        // And against the closed form, element by element, in f64.
        let g = gate0.inner().into_data().to_vec::<f32>().unwrap();
        let u = up0.inner().into_data().to_vec::<f32>().unwrap();
        let w = weights.inner().into_data().to_vec::<f32>().unwrap();
        let dg = dg.into_data().to_vec::<f32>().unwrap();
        for i in 0..g.len() {
            let (gi, ui, wi) = (g[i] as f64, u[i] as f64, w[i] as f64);
            let s = 1.0 / (1.0 + (-gi).exp());
            let expected = wi * ui * s * (1.0 + gi * (1.0 - s));
            assert!((dg[i] as f64 - expected).abs() < 1e-4, "d gate [{i}] = {}, want {expected}", dg[i]);
        }
    });

    lora_core::backend_test!(fn only_the_tracked_operand_gets_a_gradient(device) {
        let device = device.autodiff();
        let gate = Tensor::<2>::random([3, 8], Distribution::Normal(0.0, 1.0), &device);
        let up = Tensor::<2>::random([3, 8], Distribution::Normal(0.0, 1.0), &device);
        let tracked_up = up.clone().require_grad();
        let grads = swiglu(gate.clone(), tracked_up.clone()).sum().backward();
        let expected = silu(gate.clone().inner());
        assert!(max_abs_diff(tracked_up.grad(&grads).unwrap(), expected) < 1e-5);
        assert!(gate.grad(&grads).is_none());

        let tracked_gate = gate.require_grad();
        let grads = swiglu(tracked_gate.clone(), up).sum().backward();
        assert!(tracked_gate.grad(&grads).is_some());
    });
}
