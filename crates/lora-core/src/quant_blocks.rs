//! [`QuantBlocks`]: a weight matrix held as a file's own quantization blocks (GGUF's `Q8_0` and
//! `Q4_0`: 32 integers along the input axis sharing one scale), kept as they are in a frozen
//! base instead of being expanded to `f32` and rounded again.

use burn::tensor::quantization::QuantValue;
use burn::tensor::{Device, Tensor, TensorData};

use crate::base_dtype::{BaseDType, QUANT_BLOCK, block_scheme};
use crate::io::{IoError, Result};

/// A matrix `[rows, cols]` in PyTorch's `Linear` orientation (`[out, in]`) as integers and one
/// scale per block of [`QUANT_BLOCK`] consecutive values of a row: element `(r, c)` is
/// `values[r·cols + c] · scales[r·cols/32 + c/32]`.
///
/// [`QuantBlocks::into_tensor`] uploads it as Burn's block quantization in the layout of
/// [`BaseDType::scheme`] (Burn's `[in, out]`, blocks of 32 inputs by one output, `f32` scales):
/// `q8` blocks are symmetric 8-bit (GGUF `Q8_0`), `q4` blocks are 4-bit with the full range
/// −8…7 (GGUF `Q4_0`: `(q − 8)·d`), which is Burn's `Q4F` rather than the `Q4S` (−7…7) that
/// [`BaseDType::store`] rounds to.
///
/// ```
/// use lora_core::{BaseDType, QuantBlocks};
/// use lora_core::base_dtype::widen;
///
/// let device = lora_core::select_device(Some("flex"))?;
/// // One row of 32 inputs: the values −8…7 twice, one scale of 0.5.
/// let values: Vec<i8> = (0..32).map(|i| (i % 16) as i8 - 8).collect();
/// let blocks = QuantBlocks::new(BaseDType::Q4, [1, 32], values, vec![0.5])?;
/// let weight = blocks.into_tensor("w", [1, 32], &device)?; // Burn's [in, out] = [32, 1]
/// assert_eq!(BaseDType::of(weight.dtype()), Some(BaseDType::Q4));
/// let w: Vec<f32> = widen(weight).into_data().try_to_vec().unwrap();
/// assert_eq!(w[0], -4.0);
/// assert_eq!(w[15], 3.5);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct QuantBlocks {
    form: BaseDType,
    shape: [usize; 2],
    values: Vec<i8>,
    scales: Vec<f32>,
}

impl QuantBlocks {
    /// Checks and wraps blocks of `form` (`q8` or `q4`) for a matrix of `shape` (`[out, in]`,
    /// `in` a multiple of [`QUANT_BLOCK`]): one value per element within the form's range
    /// (−128…127 or −8…7), one finite scale per block.
    pub fn new(
        form: BaseDType,
        shape: [usize; 2],
        values: Vec<i8>,
        scales: Vec<f32>,
    ) -> Result<Self> {
        let invalid = |reason: String| IoError::QuantBlocks { reason };
        let range = match form {
            BaseDType::Q8 => i8::MIN..=i8::MAX,
            BaseDType::Q4 => -8..=7,
            other => {
                return Err(invalid(format!(
                    "{other} is not a block-quantized form (q8 or q4)"
                )));
            }
        };
        let [rows, cols] = shape;
        if !cols.is_multiple_of(QUANT_BLOCK) {
            return Err(invalid(format!(
                "{cols} columns do not split into blocks of {QUANT_BLOCK}"
            )));
        }
        if values.len() != rows * cols || scales.len() != rows * cols / QUANT_BLOCK {
            return Err(invalid(format!(
                "{} values and {} scales do not fill {rows} × {cols} in blocks of {QUANT_BLOCK}",
                values.len(),
                scales.len()
            )));
        }
        if let Some(v) = values.iter().find(|v| !range.contains(v)) {
            return Err(invalid(format!("{form} value {v} outside {range:?}")));
        }
        if let Some(s) = scales.iter().find(|s| !s.is_finite()) {
            return Err(invalid(format!("block scale {s} is not finite")));
        }
        Ok(Self {
            form,
            shape,
            values,
            scales,
        })
    }

    /// The form the blocks are kept in (`q8` or `q4`).
    pub fn form(&self) -> BaseDType {
        self.form
    }

    /// The matrix shape, `[out, in]`.
    pub fn shape(&self) -> [usize; 2] {
        self.shape
    }

    /// The same blocks with their rows reordered: row `r` of the result is row `source_of[r]`
    /// (a block never spans rows, so the blocks move whole). `source_of` must be a permutation
    /// of the rows.
    pub fn reorder_rows(self, source_of: &[usize]) -> Result<Self> {
        let [rows, cols] = self.shape;
        let not_a_permutation = || IoError::QuantBlocks {
            reason: format!("the row order is not a permutation of {rows} rows"),
        };
        if source_of.len() != rows {
            return Err(not_a_permutation());
        }
        let per_row = cols / QUANT_BLOCK;
        let mut seen = vec![false; rows];
        let mut values = Vec::with_capacity(self.values.len());
        let mut scales = Vec::with_capacity(self.scales.len());
        for &r in source_of {
            if r >= rows || std::mem::replace(&mut seen[r], true) {
                return Err(not_a_permutation());
            }
            values.extend_from_slice(&self.values[r * cols..(r + 1) * cols]);
            scales.extend_from_slice(&self.scales[r * per_row..(r + 1) * per_row]);
        }
        Ok(Self {
            values,
            scales,
            ..self
        })
    }

    /// The matrix as `f32` (`[out, in]`, row-major).
    pub fn dequantize(&self) -> Vec<f32> {
        self.values
            .iter()
            .enumerate()
            .map(|(i, &v)| v as f32 * self.scales[i / QUANT_BLOCK])
            .collect()
    }

    /// Checks the shape against `stored` (`[out, in]`, naming `key` if it differs) and uploads
    /// the transpose `[in, out]` to `device` as Burn's block quantization, value for value.
    pub fn into_tensor(self, key: &str, stored: [usize; 2], device: &Device) -> Result<Tensor<2>> {
        if self.shape != stored {
            return Err(IoError::Shape {
                key: key.to_string(),
                expected: stored.to_vec(),
                actual: self.shape.to_vec(),
            });
        }
        let [rows, cols] = self.shape;
        let per_row = cols / QUANT_BLOCK;
        // Burn's `[in, out]`: element (c, r) is (r, c) here, and block (c/32, r) holds scale
        // (r, c/32); blocks are numbered row-major over the `[in/32, out]` grid.
        let mut values = vec![0i8; self.values.len()];
        for (r, row) in self.values.chunks_exact(cols).enumerate() {
            for (c, &v) in row.iter().enumerate() {
                values[c * rows + r] = v;
            }
        }
        let mut scales = vec![0f32; self.scales.len()];
        for (r, row) in self.scales.chunks_exact(per_row).enumerate() {
            for (b, &s) in row.iter().enumerate() {
                scales[b * rows + r] = s;
            }
        }
        let value = match self.form {
            BaseDType::Q8 => QuantValue::Q8S,
            _ => QuantValue::Q4F,
        };
        let scheme = block_scheme(value, cols);
        let data = TensorData::quantized(values, [cols, rows], scheme, &scales, None);
        Ok(Tensor::from_data(data, device))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base_dtype::widen;

    fn blocks(form: BaseDType, rows: usize, cols: usize) -> QuantBlocks {
        let max: i32 = if form == BaseDType::Q8 { 127 } else { 7 };
        let values = (0..rows * cols)
            .map(|i| ((i * 7 + i / 5) as i32 % (2 * max + 2) - max - 1) as i8)
            .collect();
        let scales = (0..rows * cols / QUANT_BLOCK)
            .map(|b| {
                if b % 3 == 0 {
                    -0.25
                } else {
                    0.01 * (b + 1) as f32
                }
            })
            .collect();
        QuantBlocks::new(form, [rows, cols], values, scales).unwrap()
    }

    #[test]
    fn uploaded_blocks_dequantize_to_the_same_matrix_transposed() {
        // Negative scales too: GGUF's Q4_0 scale is `max / -8`, negative for a positive maximum.
        let device = crate::select_device(Some("flex")).unwrap();
        for form in [BaseDType::Q8, BaseDType::Q4] {
            let (rows, cols) = (5, 96);
            let b = blocks(form, rows, cols);
            let expected = b.dequantize();
            let tensor = b.into_tensor("w", [rows, cols], &device).unwrap();
            assert_eq!(BaseDType::of(tensor.dtype()), Some(form));
            assert_eq!(tensor.dims(), [cols, rows]);
            let got: Vec<f32> = widen(tensor).transpose().into_data().try_to_vec().unwrap();
            assert_eq!(got, expected, "{form}");
        }
    }

    #[test]
    fn rows_move_with_their_scales() {
        let b = blocks(BaseDType::Q4, 3, 64);
        let before = b.dequantize();
        let after = b.reorder_rows(&[2, 0, 1]).unwrap().dequantize();
        assert_eq!(after[..64], before[128..]);
        assert_eq!(after[64..], before[..128]);
    }

    #[test]
    fn bad_blocks_are_errors_naming_the_problem() {
        let err = |r: Result<QuantBlocks>| r.unwrap_err().to_string();
        let q4 = |values: Vec<i8>, scales: Vec<f32>| {
            QuantBlocks::new(BaseDType::Q4, [1, 32], values, scales)
        };
        assert!(err(q4(vec![8; 32], vec![1.0])).contains("q4 value 8 outside -8..=7"));
        assert!(err(q4(vec![0; 31], vec![1.0])).contains("31 values and 1 scales"));
        assert!(err(q4(vec![0; 32], vec![f32::NAN])).contains("not finite"));
        let e = err(QuantBlocks::new(
            BaseDType::Q8,
            [1, 48],
            vec![0; 48],
            vec![1.0],
        ));
        assert!(e.contains("48 columns"), "{e}");
        let e = err(QuantBlocks::new(
            BaseDType::Bf16,
            [1, 32],
            vec![0; 32],
            vec![1.0],
        ));
        assert!(e.contains("bf16 is not a block-quantized form"), "{e}");
        let b = blocks(BaseDType::Q8, 2, 32);
        assert!(err(b.reorder_rows(&[0, 0])).contains("not a permutation"));
    }
}
