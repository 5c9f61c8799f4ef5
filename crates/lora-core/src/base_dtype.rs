//! [`BaseDType`]: the form a frozen base weight is stored in (QLoRA's idea: the base that does
//! not train need not be `f32`).

use std::fmt;
use std::str::FromStr;

use burn::tensor::quantization::{QuantScheme, QuantStore, QuantValue, ScaleDtype};
use burn::tensor::{DType, FloatDType, Tensor};

use crate::device::Backend;
use crate::error::LoraError;

/// Values per quantization block (GGUF's Q8_0 / Q4_0 use 32 as well).
pub const QUANT_BLOCK: usize = 32;

/// How the frozen base weight of a linear layer is stored. Adapters, norms and output heads stay
/// `f32` whatever is chosen; products widen the stored weight to `f32` where they use it, and
/// the backward pass keeps the stored form, not a widened copy (see `patches/README.md`).
///
/// ```
/// use lora_core::BaseDType;
///
/// let q4: BaseDType = "q4".parse().unwrap();
/// assert!(q4.is_quantized());
/// let err = "int3".parse::<BaseDType>().unwrap_err().to_string();
/// assert!(err.contains("f32, f16, bf16, q8, q4"), "{err}");
/// ```
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum BaseDType {
    /// 32-bit floats (the default: bit-exact with PyTorch's `f32` models).
    #[default]
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    Bf16,
    /// 8-bit symmetric integers, one `f32` scale per block of [`QUANT_BLOCK`] values.
    Q8,
    /// 4-bit symmetric integers (±7), one `f32` scale per block of [`QUANT_BLOCK`] values.
    Q4,
}

impl BaseDType {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            BaseDType::F32 => "f32",
            BaseDType::F16 => "f16",
            BaseDType::Bf16 => "bf16",
            BaseDType::Q8 => "q8",
            BaseDType::Q4 => "q4",
        }
    }

    /// Whether the form is block-quantized.
    pub fn is_quantized(self) -> bool {
        matches!(self, BaseDType::Q8 | BaseDType::Q4)
    }

    /// The form a tensor of `dtype` is stored in, if it is one of these.
    pub fn of(dtype: DType) -> Option<BaseDType> {
        match dtype {
            DType::F32 | DType::Flex32 => Some(BaseDType::F32),
            DType::F16 => Some(BaseDType::F16),
            DType::BF16 => Some(BaseDType::Bf16),
            DType::QFloat(scheme) => match scheme.value {
                QuantValue::Q8S | QuantValue::Q8F => Some(BaseDType::Q8),
                QuantValue::Q4S | QuantValue::Q4F => Some(BaseDType::Q4),
                _ => None,
            },
            _ => None,
        }
    }

    /// The block quantization scheme of a quantized form for a weight `[in, out]` with `d_in`
    /// inputs: blocks of [`QUANT_BLOCK`] inputs by one output (the block shrinks to the
    /// largest power of two dividing `d_in` when 32 does not).
    pub fn scheme(self, d_in: usize) -> Option<QuantScheme> {
        let value = match self {
            BaseDType::Q8 => QuantValue::Q8S,
            BaseDType::Q4 => QuantValue::Q4S,
            _ => return None,
        };
        Some(block_scheme(value, d_in))
    }

    /// Whether `backend` can hold and multiply a base in this form. Burn's CPU backend (`flex`)
    /// holds every form; `ndarray` has no half-precision tensors and no 4-bit blocks; the GPU backends' quantized
    /// and mixed-precision products are not verified here (on lavapipe they fail to compile or
    /// give wrong results), so they take `f32` only until a GPU run checks them.
    pub fn supported_on(self, backend: Backend) -> bool {
        match backend {
            Backend::Flex => true,
            Backend::NdArray => matches!(self, BaseDType::F32 | BaseDType::Q8),
            Backend::Wgpu | Backend::Cuda(_) => self == BaseDType::F32,
        }
    }

    /// The forms `backend` can hold.
    pub fn supported_choices(backend: Backend) -> Vec<&'static str> {
        BaseDType::ALL
            .into_iter()
            .filter(|d| d.supported_on(backend))
            .map(BaseDType::name)
            .collect()
    }

    /// Every form, in the order the command line lists them.
    pub const ALL: [BaseDType; 5] = [
        BaseDType::F32,
        BaseDType::F16,
        BaseDType::Bf16,
        BaseDType::Q8,
        BaseDType::Q4,
    ];

    /// Converts an `f32` weight `[in, out]` (Burn's orientation) into this form (a no-op for
    /// [`BaseDType::F32`]). Quantization blocks run along the input axis, as in GGUF and
    /// PyTorch's `[out, in]` rows: a GGUF `Q8_0` weight stored as `q8` keeps the file's blocks
    /// value for value.
    pub fn store(self, weight: Tensor<2>) -> Tensor<2> {
        let weight = widen(weight);
        match self {
            BaseDType::F32 => weight,
            BaseDType::F16 => weight.cast(FloatDType::F16),
            BaseDType::Bf16 => weight.cast(FloatDType::BF16),
            BaseDType::Q8 | BaseDType::Q4 => {
                let [d_in, _] = weight.dims();
                let scheme = self.scheme(d_in).expect("quantized form");
                weight.quantize_dynamic(&scheme)
            }
        }
    }
}

/// A block scheme of `value` for a 2-D tensor with `rows` rows: blocks of up to
/// [`QUANT_BLOCK`] rows by one column, `f32` scales, Burn's native store (values one per byte;
/// the patched flex backend packs 4-bit values two per byte in memory).
pub fn block_scheme(value: QuantValue, rows: usize) -> QuantScheme {
    let mut block = QUANT_BLOCK;
    while block > 1 && !rows.is_multiple_of(block) {
        block /= 2;
    }
    QuantScheme::default()
        .with_value(value)
        .per_block([block as u8, 1], ScaleDtype::F32)
        .with_store(QuantStore::Native)
}

/// The tensor as `f32`: dequantized or cast when stored in another form.
pub fn widen<const D: usize>(tensor: Tensor<D>) -> Tensor<D> {
    match tensor.dtype() {
        DType::F32 => tensor,
        DType::QFloat(_) => tensor.dequantize(),
        _ => tensor.cast(FloatDType::F32),
    }
}

/// Bytes a tensor of `dtype` with `elements` values occupies (values plus block scales for a
/// quantized one; sub-byte values are counted as the backends store them).
pub fn stored_bytes(dtype: DType, elements: usize) -> usize {
    match dtype {
        DType::QFloat(scheme) => {
            // Packed stores hold their bits; a native 4-bit store too, on the one backend that
            // holds q4 (flex, patched to pack two values per byte).
            let per_value = scheme.size_bits_value();
            let blocks = scheme
                .block_size()
                .map(|b| elements / b.num_elements().max(1))
                .unwrap_or(1);
            (elements * per_value).div_ceil(8) + blocks * 4
        }
        other => elements * other.size(),
    }
}

impl fmt::Display for BaseDType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BaseDType {
    type Err = LoraError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(BaseDType::F32),
            "f16" | "float16" | "half" => Ok(BaseDType::F16),
            "bf16" | "bfloat16" => Ok(BaseDType::Bf16),
            "q8" | "int8" => Ok(BaseDType::Q8),
            "q4" | "int4" => Ok(BaseDType::Q4),
            _ => Err(LoraError::UnknownBaseDType {
                given: s.to_string(),
                valid: BaseDType::ALL.map(|d| d.name().to_string()).to_vec(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, TensorData, Tolerance};

    #[test]
    fn every_form_round_trips_within_its_precision() {
        let device = crate::select_device(Some("flex")).unwrap();
        let w = Tensor::<2>::random([64, 96], Distribution::Normal(0.0, 0.05), &device);
        let max = w.clone().abs().max().into_scalar::<f32>();
        // Half precision: relative rounding; q8 / q4: half a step of the block scale.
        for (dtype, bound) in [
            (BaseDType::F32, 0.0),
            (BaseDType::F16, max * 1e-3),
            (BaseDType::Bf16, max * 8e-3),
            (BaseDType::Q8, max / 127.0 / 2.0 * 1.01),
            (BaseDType::Q4, max / 7.0 / 2.0 * 1.01),
        ] {
            let stored = dtype.store(w.clone());
            assert_eq!(BaseDType::of(stored.dtype()), Some(dtype));
            let err = (widen(stored) - w.clone()).abs().max().into_scalar::<f32>();
            assert!(err <= bound, "{dtype}: error {err} > {bound}");
        }
    }

    #[test]
    fn quantized_blocks_follow_the_input_axis() {
        let device = crate::select_device(Some("flex")).unwrap();
        // Two blocks of very different magnitude along the input axis (the first of `[in, out]`):
        // each keeps its own scale.
        let mut values = vec![1000.0f32; 32];
        values.extend((0..32).map(|i| i as f32 * 0.01));
        let w = Tensor::<2>::from_data(TensorData::new(values.clone(), [64, 1]), &device);
        let back = widen(BaseDType::Q8.store(w));
        let expected = Tensor::<2>::from_data(TensorData::new(values, [64, 1]), &device);
        back.into_data()
            .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::absolute(2e-3));
        // 48 rows take blocks of 16.
        assert_eq!(
            block_scheme(QuantValue::Q8S, 48)
                .block_size()
                .unwrap()
                .num_elements(),
            16
        );
    }

    #[test]
    fn stored_bytes_count_values_and_scales() {
        let q8 = DType::QFloat(BaseDType::Q8.scheme(64).unwrap());
        assert_eq!(stored_bytes(q8, 64 * 64), 64 * 64 + 128 * 4);
        let q4 = DType::QFloat(BaseDType::Q4.scheme(64).unwrap());
        assert_eq!(stored_bytes(q4, 64 * 64), 64 * 64 / 2 + 128 * 4);
        assert_eq!(stored_bytes(DType::BF16, 10), 20);
        assert_eq!(stored_bytes(DType::F32, 10), 40);
    }
}
