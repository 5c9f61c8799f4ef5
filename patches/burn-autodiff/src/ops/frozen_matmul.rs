//! Products with a frozen right operand stored in a narrower form than the left one: a
//! quantized weight, or a half-precision weight under an `f32` activation. (Added by
//! lora-burn's patch; see the repository's `patches/README.md`.)
//!
//! The generic path dequantizes (or casts) the weight into a new `f32` leaf and multiplies:
//! the product's backward then keeps that `f32` copy alive until the backward pass reaches
//! it, so a frozen base stored in 4 or 16 bits costs `f32` memory during training anyway.
//! Here the product keeps the narrow operand itself (shared, not copied) and widens it again
//! when the gradient needs it, so the widened copy lives for one product at a time.

use burn_backend::{
    Backend, TensorMetadata,
    tensor::{FloatTensor, QuantizedTensor},
};
use burn_std::{DType, FloatDType};

use crate::{
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind, broadcast_shape, unary},
    tensor::AutodiffTensor,
};

/// A right operand that receives no gradient, kept in its stored form.
#[derive(Debug, Clone)]
pub(crate) enum FrozenRhs<B: Backend> {
    /// A quantized tensor, dequantized when used.
    Quantized(QuantizedTensor<B>),
    /// A float tensor of another dtype than the left operand, cast when used.
    Float(FloatTensor<B>),
}

impl<B: Backend> FrozenRhs<B> {
    /// The operand as a float tensor of `dtype`.
    fn widen(&self, dtype: FloatDType) -> FloatTensor<B> {
        match self {
            FrozenRhs::Quantized(tensor) => B::dequantize(tensor.clone(), dtype),
            FrozenRhs::Float(tensor) if tensor.dtype() == DType::from(dtype) => tensor.clone(),
            FrozenRhs::Float(tensor) => B::float_cast(tensor.clone(), dtype),
        }
    }
}

/// `lhs · rhs` where only `lhs` can receive a gradient and `rhs` stays in its stored form.
pub(crate) fn matmul_frozen_rhs<B: Backend, C: CheckpointStrategy>(
    lhs: AutodiffTensor<B>,
    rhs: FrozenRhs<B>,
) -> AutodiffTensor<B> {
    #[derive(Debug)]
    struct MatmulFrozenRhs;

    impl<B: Backend> Backward<B, 1> for MatmulFrozenRhs {
        type State = (FrozenRhs<B>, FloatDType, burn_std::Shape);

        fn backward(
            self,
            ops: Ops<Self::State, 1>,
            grads: &mut Gradients,
            _checkpointer: &mut Checkpointer,
        ) {
            let (rhs, dtype, lhs_shape) = ops.state;
            unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                let rhs = B::float_transpose(rhs.widen(dtype));
                let grad = B::float_matmul(grad, rhs);
                if grad.shape() == lhs_shape {
                    grad
                } else {
                    broadcast_shape::<B>(grad, &lhs_shape)
                }
            });
        }
    }

    let dtype: FloatDType = lhs.primitive.dtype().into();
    let lhs_shape = lhs.primitive.shape();
    let product = |lhs: FloatTensor<B>, rhs: &FrozenRhs<B>| B::float_matmul(lhs, rhs.widen(dtype));

    match MatmulFrozenRhs
        .prepare::<C>([lhs.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let output = product(lhs.primitive, &rhs);
            prep.finish((rhs, dtype, lhs_shape), output)
        }
        OpsKind::UnTracked(prep) => prep.finish(product(lhs.primitive, &rhs)),
    }
}
