use burn_backend::{
    Backend, ExecutionError, TensorData, TensorMetadata, TensorPrimitive,
    get_or_init_device_settings,
    ops::{FloatTensorOps, QTensorOps},
    quantization::QuantizationParametersPrimitive,
    tensor::{Device, FloatTensor, IntTensor, QuantizedTensor},
};
use burn_std::{FloatDType, IntDType, QuantScheme, Shape, quantization::QuantPropagation};

use crate::{Autodiff, checkpoint::strategy::CheckpointStrategy, tensor::AutodiffTensor};

impl<B: Backend, C: CheckpointStrategy> QTensorOps<Self> for Autodiff<B, C> {
    fn q_from_data(data: TensorData, device: &Device<Self>) -> QuantizedTensor<Self> {
        B::q_from_data(data, device)
    }

    fn quantize(
        tensor: FloatTensor<Self>,
        scheme: &QuantScheme,
        qparams: QuantizationParametersPrimitive<Self>,
    ) -> QuantizedTensor<Self> {
        // Quantization detaches: the rounding makes it non-differentiable, so
        // the packed tensor starts a new (grad-free) history. Quantization-aware
        // training would need a straight-through estimator here instead.
        B::quantize(
            tensor.primitive,
            scheme,
            QuantizationParametersPrimitive {
                scales: qparams.scales.primitive,
                global: qparams.global.map(|global| global.primitive),
            },
        )
    }

    fn quantize_dynamic(tensor: FloatTensor<Self>, scheme: &QuantScheme) -> QuantizedTensor<Self> {
        B::quantize_dynamic(tensor.primitive, scheme)
    }

    fn q_matmul(lhs: TensorPrimitive<Self>, rhs: TensorPrimitive<Self>) -> TensorPrimitive<Self> {
        // lora-burn patch: a float activation times a quantized (frozen) weight keeps the
        // quantized weight, not a dequantized copy, for the backward pass.
        match (lhs, rhs) {
            (TensorPrimitive::Float(lhs), TensorPrimitive::QFloat(rhs))
                if get_or_init_device_settings::<B>(&rhs.device())
                    .quantization
                    .propagation
                    == QuantPropagation::Inhibit =>
            {
                TensorPrimitive::Float(super::frozen_matmul::matmul_frozen_rhs::<B, C>(
                    lhs,
                    super::frozen_matmul::FrozenRhs::Quantized(rhs),
                ))
            }
            (lhs, rhs) => {
                let dtype: Option<FloatDType> = match (&lhs, &rhs) {
                    (TensorPrimitive::Float(t), _) | (_, TensorPrimitive::Float(t)) => {
                        Some(t.primitive.dtype().into())
                    }
                    _ => None,
                };
                let widen = |tensor: TensorPrimitive<Self>| match tensor {
                    TensorPrimitive::Float(tensor) => tensor,
                    TensorPrimitive::QFloat(tensor) => {
                        let dtype = dtype.unwrap_or_else(|| {
                            get_or_init_device_settings::<B>(&tensor.device()).float_dtype
                        });
                        Self::dequantize(tensor, dtype)
                    }
                };
                TensorPrimitive::Float(Self::float_matmul(widen(lhs), widen(rhs)))
            }
        }
    }

    fn dequantize(tensor: QuantizedTensor<Self>, dtype: FloatDType) -> FloatTensor<Self> {
        // A quantized tensor carries no autodiff graph, so its float form is a
        // new leaf that does not require gradients. Ops composing it with
        // tracked tensors (e.g. a LoRA adapter over a frozen quantized base)
        // propagate gradients through the tracked side only.
        AutodiffTensor::new(B::dequantize(tensor, dtype))
    }

    fn q_to_device(tensor: QuantizedTensor<Self>, device: &Device<Self>) -> QuantizedTensor<Self> {
        B::q_to_device(tensor, device)
    }

    fn q_reshape(tensor: QuantizedTensor<Self>, shape: Shape) -> QuantizedTensor<Self> {
        B::q_reshape(tensor, shape)
    }

    async fn q_into_data(tensor: QuantizedTensor<Self>) -> Result<TensorData, ExecutionError> {
        B::q_into_data(tensor).await
    }

    fn q_swap_dims(
        tensor: QuantizedTensor<Self>,
        dim1: usize,
        dim2: usize,
    ) -> QuantizedTensor<Self> {
        B::q_swap_dims(tensor, dim1, dim2)
    }

    fn q_permute(tensor: QuantizedTensor<Self>, axes: &[usize]) -> QuantizedTensor<Self> {
        B::q_permute(tensor, axes)
    }

    fn q_flip(tensor: QuantizedTensor<Self>, axes: &[usize]) -> QuantizedTensor<Self> {
        B::q_flip(tensor, axes)
    }

    fn q_argmax(tensor: QuantizedTensor<Self>, dim: usize, out_dtype: IntDType) -> IntTensor<Self> {
        B::q_argmax(tensor, dim, out_dtype)
    }

    fn q_argmin(tensor: QuantizedTensor<Self>, dim: usize, out_dtype: IntDType) -> IntTensor<Self> {
        B::q_argmin(tensor, dim, out_dtype)
    }
}
