//! Softmax, log-softmax and layer normalisation as single tracked operations. (Added by lora-burn's patch;
//! see the repository's `patches/README.md`.)
//!
//! Without these, autodiff runs both through their default definitions, composed of tracked
//! element-wise operations: a softmax is five passes forward (max, subtract, exp, sum,
//! divide), each keeping state for a backward of its own, and a layer norm nine. Here the
//! forward pass is the backend's fused kernel, the backward pass recomputes what it needs from
//! the saved input (or output) and applies the closed-form gradient:
//!
//! - softmax `y`: `dx = y ⊙ g − y ⊙ Σ(y ⊙ g)` (the output is kept: attention multiplies it by
//!   the values, whose backward keeps it anyway, so the input need not be kept beside it, and
//!   the backward pass needs no second softmax);
//! - log-softmax `y = x − ln Σ e^x`: `dx = g − e^y ⊙ Σ g` (the output is kept instead of the
//!   input: a language model's logits can then be freed after the loss is taken, and the
//!   backward pass needs one `exp` instead of a second log-softmax);
//! - layer norm `y = x̂ ⊙ γ` with `x̂ = (x − μ)·r`, `r = 1/√(σ² + ε)`:
//!   `dx = r·(ĝ − mean(ĝ) − x̂ ⊙ mean(ĝ ⊙ x̂))` with `ĝ = g ⊙ γ`, and `dγ = Σ_rows g ⊙ x̂`
//!   (a shift `β` is added afterwards as a tracked broadcast sum, which gives `dβ`).

use burn_backend::{Backend, Shape, TensorMetadata, ops::FloatTensorOps};

use crate::{
    Autodiff,
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    graph::NodeId,
    ops::{Backward, Ops, OpsKind, unary},
    tensor::AutodiffTensor,
};

/// `softmax(x)` along `dim`, tracked as one operation.
pub(crate) fn softmax<B: Backend, C: CheckpointStrategy>(
    tensor: AutodiffTensor<B>,
    dim: usize,
) -> AutodiffTensor<B> {
    #[derive(Debug)]
    struct Softmax;

    impl<B: Backend> Backward<B, 1> for Softmax {
        type State = (B::FloatTensorPrimitive, usize);

        fn backward(
            self,
            ops: Ops<Self::State, 1>,
            grads: &mut Gradients,
            _checkpointer: &mut Checkpointer,
        ) {
            let (y, dim) = ops.state;
            unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                let gy = B::float_mul(grad, y.clone());
                let sum = B::float_sum_dim(gy.clone(), dim);
                B::float_sub(gy, B::float_mul(y, sum))
            });
        }
    }

    match Softmax
        .prepare::<C>([tensor.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let output = B::softmax(tensor.primitive, dim);
            prep.finish((output.clone(), dim), output)
        }
        OpsKind::UnTracked(prep) => prep.finish(B::softmax(tensor.primitive, dim)),
    }
}

/// `log_softmax(x)` along `dim`, tracked as one operation.
pub(crate) fn log_softmax<B: Backend, C: CheckpointStrategy>(
    tensor: AutodiffTensor<B>,
    dim: usize,
) -> AutodiffTensor<B> {
    #[derive(Debug)]
    struct LogSoftmax;

    impl<B: Backend> Backward<B, 1> for LogSoftmax {
        type State = (B::FloatTensorPrimitive, usize);

        fn backward(
            self,
            ops: Ops<Self::State, 1>,
            grads: &mut Gradients,
            _checkpointer: &mut Checkpointer,
        ) {
            let (output, dim) = ops.state;
            unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                let sum = B::float_sum_dim(grad.clone(), dim);
                B::float_sub(grad, B::float_mul(B::float_exp(output), sum))
            });
        }
    }

    match LogSoftmax
        .prepare::<C>([tensor.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let output = B::log_softmax(tensor.primitive, dim);
            prep.finish((output.clone(), dim), output)
        }
        OpsKind::UnTracked(prep) => prep.finish(B::log_softmax(tensor.primitive, dim)),
    }
}

/// Layer normalisation over the last axis, `(x − μ)/√(σ² + ε) ⊙ γ (+ β)`, tracked as one
/// operation (plus a tracked broadcast sum for `β`).
pub(crate) fn layer_norm<B: Backend, C: CheckpointStrategy>(
    tensor: AutodiffTensor<B>,
    gamma: AutodiffTensor<B>,
    beta: Option<AutodiffTensor<B>>,
    epsilon: f64,
) -> AutodiffTensor<B> {
    #[derive(Debug)]
    struct LayerNorm;

    impl<B: Backend> Backward<B, 2> for LayerNorm {
        type State = (NodeId, NodeId, f64);

        fn backward(
            self,
            ops: Ops<Self::State, 2>,
            grads: &mut Gradients,
            checkpointer: &mut Checkpointer,
        ) {
            let [node_x, node_gamma] = ops.parents;
            let grad = grads.consume::<B>(&ops.node);
            let (x, gamma, epsilon) = ops.state;
            let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x);
            let gamma = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(gamma);

            let shape = x.shape();
            let last = shape.num_dims() - 1;
            let width = shape[last];
            let mean = B::float_mean_dim(x.clone(), last);
            let centered = B::float_sub(x, mean);
            let var = B::float_mean_dim(B::float_mul(centered.clone(), centered.clone()), last);
            let rstd = B::float_recip(B::float_sqrt(B::float_add_scalar(var, epsilon.into())));
            let normed = B::float_mul(centered, rstd.clone());

            if let Some(node) = node_gamma {
                let rows = shape.num_elements() / width.max(1);
                let weighted = B::float_mul(grad.clone(), normed.clone());
                let weighted = B::float_reshape(weighted, Shape::new([rows, width]));
                let dgamma = B::float_sum_dim(weighted, 0);
                grads.register::<B>(node.id, B::float_reshape(dgamma, Shape::new([width])));
            }
            if let Some(node) = node_x {
                let mut dims = alloc::vec![1; last + 1];
                dims[last] = width;
                let gamma = B::float_reshape(gamma, Shape::from(dims));
                let scaled = B::float_mul(grad, gamma);
                let mean_scaled = B::float_mean_dim(scaled.clone(), last);
                let mean_proj =
                    B::float_mean_dim(B::float_mul(scaled.clone(), normed.clone()), last);
                let dx = B::float_sub(
                    B::float_sub(scaled, mean_scaled),
                    B::float_mul(normed, mean_proj),
                );
                grads.register::<B>(node.id, B::float_mul(dx, rstd));
            }
        }
    }

    let normed = match LayerNorm
        .prepare::<C>([tensor.node(), gamma.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let state = (prep.checkpoint(&tensor), prep.checkpoint(&gamma), epsilon);
            let out = B::layer_norm(tensor.primitive, gamma.primitive, None, epsilon);
            prep.finish(state, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(B::layer_norm(
            tensor.primitive,
            gamma.primitive,
            None,
            epsilon,
        )),
    };
    match beta {
        Some(beta) => {
            let rank = normed.shape().num_dims();
            let width = beta.shape()[0];
            let mut dims = alloc::vec![1; rank];
            dims[rank - 1] = width;
            let beta = Autodiff::<B, C>::float_reshape(beta, Shape::from(dims));
            Autodiff::<B, C>::float_add(normed, beta)
        }
        None => normed,
    }
}
