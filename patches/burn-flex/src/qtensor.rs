use alloc::vec::Vec;

use burn_backend::{DType, TensorMetadata};
use burn_std::{Bytes, QuantScheme, QuantValue, Shape, quantization::global_scale_dtype};

use crate::{FlexDevice, Layout, tensor::FlexTensor};

/// Quantized tensor for the Flex backend.
///
/// Stores quantized i8 values in the tensor and keeps scales separately
/// for efficient dequantization without reparsing bytes. 4-bit values are packed two per byte
/// (lora-burn patch): see [`FlexQTensor::from_values`].
#[derive(Clone, Debug)]
pub struct FlexQTensor {
    /// The underlying quantized data (stored as i8): one value per element, or for a packed
    /// tensor the nibble pairs as a 1-D tensor of `ceil(n / 2)` bytes (see `packed`).
    pub(crate) tensor: FlexTensor,
    /// Quantization scheme.
    pub(crate) scheme: QuantScheme,
    /// Per-tensor or per-block scale factors.
    pub(crate) scales: Vec<f32>,
    /// The per-tensor scale that [`scales`](Self::scales) are expressed relative to, for a
    /// two-level scheme.
    pub(crate) global: Option<f32>,
    /// `Some(shape)` when 4-bit values are packed two per byte, row-major over `shape`: value
    /// `2i` in the low nibble of byte `i`, value `2i + 1` in its high nibble (Burn's
    /// `PackedU32` order within a word).
    pub(crate) packed: Option<Shape>,
}

/// The stored values of a contiguous quantized tensor: one per byte, or two per byte.
#[derive(Debug, Clone, Copy)]
pub(crate) enum QValues<'a> {
    /// One `i8` value per byte.
    Bytes(&'a [i8]),
    /// Two 4-bit values per byte, low nibble first.
    Nibbles(&'a [u8]),
}

impl<'a> QValues<'a> {
    /// The values `first..first + len`: a slice of the storage when values take a byte each,
    /// else unpacked into `buffer` (of length `len`).
    #[inline(always)]
    pub(crate) fn row<'b>(&self, first: usize, buffer: &'b mut [i8]) -> &'b [i8]
    where
        'a: 'b,
    {
        match *self {
            QValues::Bytes(v) => &v[first..first + buffer.len()],
            QValues::Nibbles(v) => {
                unpack_nibbles(v, first, buffer);
                buffer
            }
        }
    }
}

/// Packs 4-bit values (`-8..=7`) two per byte, low nibble first.
pub(crate) fn pack_nibbles(values: &[i8]) -> Vec<u8> {
    values
        .chunks(2)
        .map(|pair| {
            let low = pair[0] as u8 & 0x0f;
            let high = pair.get(1).map_or(0, |&v| v as u8 & 0x0f);
            low | (high << 4)
        })
        .collect()
}

/// Writes the 4-bit values `first..first + out.len()` of `packed` into `out`, sign-extended.
#[inline(always)]
pub(crate) fn unpack_nibbles(packed: &[u8], first: usize, out: &mut [i8]) {
    let (mut i, mut o) = (first, 0);
    if i % 2 == 1 && o < out.len() {
        out[o] = (packed[i / 2] as i8) >> 4;
        i += 1;
        o += 1;
    }
    let pairs = (out.len() - o) / 2;
    let bytes = &packed[i / 2..i / 2 + pairs];
    for (pair, &b) in out[o..o + 2 * pairs].chunks_exact_mut(2).zip(bytes) {
        pair[0] = ((b << 4) as i8) >> 4;
        pair[1] = (b as i8) >> 4;
    }
    i += 2 * pairs;
    o += 2 * pairs;
    if o < out.len() {
        out[o] = ((packed[i / 2] << 4) as i8) >> 4;
    }
}

impl FlexQTensor {
    /// Create a new quantized tensor.
    ///
    /// The tensor must store i8 data and scales must be non-empty. A two-level scheme takes a
    /// per-tensor scale, and no other level does.
    pub fn new(
        tensor: FlexTensor,
        scheme: QuantScheme,
        scales: Vec<f32>,
        global: Option<f32>,
    ) -> Self {
        assert_eq!(
            tensor.dtype(),
            DType::I8,
            "quantized tensor must store i8 data, got {:?}",
            tensor.dtype()
        );
        assert!(
            !scales.is_empty(),
            "quantized tensor must have at least one scale factor"
        );
        assert_eq!(
            global_scale_dtype(&scheme).is_some(),
            global.is_some(),
            "{scheme:?} does not match a per-tensor scale of {global:?}"
        );
        Self {
            tensor,
            scheme,
            scales,
            global,
            packed: None,
        }
    }

    /// A contiguous tensor of `shape` from its row-major `values`: packed two per byte when the
    /// scheme's values are 4-bit (lora-burn patch: half the memory of one per byte), one per
    /// byte otherwise.
    pub fn from_values(
        values: Vec<i8>,
        shape: Shape,
        scheme: QuantScheme,
        scales: Vec<f32>,
        global: Option<f32>,
    ) -> Self {
        if matches!(scheme.value, QuantValue::Q4F | QuantValue::Q4S) {
            let packed: Vec<i8> = pack_nibbles(&values).into_iter().map(|b| b as i8).collect();
            let n = packed.len();
            let tensor = FlexTensor::new(
                Bytes::from_elems(packed),
                Layout::contiguous(Shape::from(alloc::vec![n])),
                DType::I8,
            );
            let mut q = Self::new(tensor, scheme, scales, global);
            q.packed = Some(shape);
            return q;
        }
        let tensor = FlexTensor::new(
            Bytes::from_elems(values),
            Layout::contiguous(shape),
            DType::I8,
        );
        Self::new(tensor, scheme, scales, global)
    }

    /// The same tensor with one value per byte (a packed tensor is expanded; any other is
    /// returned as it is), for the operations that index values through the layout.
    pub fn unpacked(self) -> Self {
        let Some(shape) = self.packed.clone() else {
            return self;
        };
        let mut values = alloc::vec![0i8; shape.num_elements()];
        unpack_nibbles(self.tensor.bytes(), 0, &mut values);
        let tensor = FlexTensor::new(
            Bytes::from_elems(values),
            Layout::contiguous(shape),
            DType::I8,
        );
        Self::new(tensor, self.scheme, self.scales, self.global)
    }

    /// The stored values when they are contiguous in row-major order from offset 0 (always for
    /// a packed tensor), `None` for a strided view.
    pub(crate) fn values(&self) -> Option<QValues<'_>> {
        if self.packed.is_some() {
            return Some(QValues::Nibbles(self.tensor.bytes()));
        }
        let layout = self.tensor.layout();
        (layout.is_contiguous() && layout.start_offset() == 0)
            .then(|| QValues::Bytes(self.tensor.storage()))
    }

    /// Get the underlying tensor.
    pub fn tensor(&self) -> &FlexTensor {
        &self.tensor
    }

    /// Get the quantization scales.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }
}

impl TensorMetadata for FlexQTensor {
    type Device = FlexDevice;

    fn dtype(&self) -> DType {
        DType::QFloat(self.scheme)
    }

    fn shape(&self) -> Shape {
        match &self.packed {
            Some(shape) => shape.clone(),
            None => self.tensor.shape(),
        }
    }

    fn rank(&self) -> usize {
        match &self.packed {
            Some(shape) => shape.num_dims(),
            None => self.tensor.rank(),
        }
    }

    fn device(&self) -> Self::Device {
        FlexDevice
    }

    fn can_mut(&self) -> bool {
        self.tensor.is_unique()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nibbles_pack_and_unpack_from_any_offset() {
        let values: Vec<i8> = (0..23).map(|i| (i % 16) as i8 - 8).collect();
        let packed = pack_nibbles(&values);
        assert_eq!(packed.len(), 12);
        assert_eq!(packed[0], 0x98, "-8 low, -7 high");
        for first in 0..values.len() {
            for len in 0..=values.len() - first {
                let mut out = alloc::vec![0i8; len];
                unpack_nibbles(&packed, first, &mut out);
                assert_eq!(out, &values[first..first + len], "{first} {len}");
            }
        }
    }
}
