//! Block-quantized weights without the generic detours (added by lora-burn's patch; see the
//! repository's `patches/README.md`):
//!
//! - [`dequantize_dense`]: a contiguous tensor whose blocks tile its last two axes is expanded
//!   row by row (one scale lookup per block row, vectorisable, split across the rayon pool)
//!   instead of one `block_of` division chain per element;
//! - [`matmul_small`]: `x · W` for a few rows of `x` (decoding, one token per sequence) reads the
//!   8-bit values of `W` once and applies each block's scale to the partial sums, instead of
//!   expanding all of `W` to `f32` for every token.

use alloc::vec;
use alloc::vec::Vec;

use crate::FlexQTensor;
use crate::qtensor::QValues;

/// Rows of `x` up to which [`matmul_small`] beats expanding the weight and calling gemm.
pub const SMALL_ROWS: usize = 8;

/// A contiguous block-quantized tensor seen as `rows × cols` values with `block_rows ×
/// block_cols` blocks (every block dimension but the last two is 1).
#[derive(Debug, Clone, Copy)]
pub struct DenseBlocks {
    /// Rows of the flattened tensor (every axis but the last).
    pub rows: usize,
    /// Values per row (the last axis).
    pub cols: usize,
    /// Block extent along the rows.
    pub block_rows: usize,
    /// Block extent along the last axis.
    pub block_cols: usize,
}

impl DenseBlocks {
    /// The layout of `q`, or `None` when the fast paths do not apply (per-tensor scales, a
    /// two-level scheme, a strided tensor, blocks spanning more than the last two axes).
    pub fn of(q: &FlexQTensor) -> Option<DenseBlocks> {
        if q.global.is_some() {
            return None;
        }
        let block = q.scheme.block_size()?;
        q.values()?;
        dense_geometry(&burn_backend::TensorMetadata::shape(q), &block)
    }

    /// The scales of row `row`, one per block along the last axis.
    fn scale_row<'a>(&self, scales: &'a [f32], row: usize) -> &'a [f32] {
        let per_row = self.cols / self.block_cols;
        let start = row / self.block_rows * per_row;
        &scales[start..start + per_row]
    }
}

/// The row-major geometry of `shape` under `block`, when every block dimension but the last
/// two is 1 and the blocks divide the tensor: `(rows, cols, block_rows, block_cols)`.
pub fn dense_geometry(
    shape: &burn_std::Shape,
    block: &burn_backend::quantization::BlockSize,
) -> Option<DenseBlocks> {
    let rank = shape.num_dims();
    let dims = block.to_dim_vec(rank);
    if rank == 0 || dims[..rank.saturating_sub(2)].iter().any(|&d| d != 1) {
        return None;
    }
    let cols = shape[rank - 1];
    let rows = shape.num_elements() / cols.max(1);
    let block_cols = dims[rank - 1] as usize;
    let block_rows = if rank >= 2 {
        dims[rank - 2] as usize
    } else {
        1
    };
    let local_rows = if rank >= 2 { shape[rank - 2] } else { 1 };
    if block_cols == 0
        || block_rows == 0
        || !cols.is_multiple_of(block_cols)
        || !local_rows.is_multiple_of(block_rows)
    {
        return None;
    }
    Some(DenseBlocks {
        rows,
        cols,
        block_rows,
        block_cols,
    })
}

/// Symmetric block quantization of row-major `values` laid out as `dense`: per block, the scale
/// `scale_of(max |x|)`, then [`quantize_with_scales`]. The same arithmetic as the generic path.
pub fn quantize_dense(
    values: &[f32],
    dense: DenseBlocks,
    scale_of: impl Fn(f32) -> f32 + Sync,
    low: f32,
    high: f32,
) -> (Vec<i8>, Vec<f32>) {
    let per_row = dense.cols / dense.block_cols;
    let block_row_len = dense.block_rows * dense.cols;
    let mut scales = vec![0.0f32; (dense.rows / dense.block_rows) * per_row];
    let peaks = |b: usize, scales: &mut [f32]| {
        let rows = &values[b * block_row_len..(b + 1) * block_row_len];
        let mut peaks = vec![0.0f32; per_row];
        for row in rows.chunks(dense.cols) {
            for (j, &x) in row.iter().enumerate() {
                let p = &mut peaks[j / dense.block_cols];
                *p = p.max(x.abs());
            }
        }
        for (s, p) in scales.iter_mut().zip(&peaks) {
            *s = scale_of(*p);
        }
    };
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        scales
            .par_chunks_mut(per_row)
            .enumerate()
            .for_each(|(b, s)| peaks(b, s));
    }
    #[cfg(not(feature = "rayon"))]
    for (b, s) in scales.chunks_mut(per_row).enumerate() {
        peaks(b, s);
    }
    let quantized = quantize_with_scales(values, dense, &scales, low, high);
    (quantized, scales)
}

/// `round(x / scale)` clamped to `[low, high]` for row-major `values` laid out as `dense`, one
/// scale per block (row-major over the blocks), a block row at a time across the rayon pool.
pub fn quantize_with_scales(
    values: &[f32],
    dense: DenseBlocks,
    scales: &[f32],
    low: f32,
    high: f32,
) -> Vec<i8> {
    let per_row = dense.cols / dense.block_cols;
    let block_row_len = dense.block_rows * dense.cols;
    let mut quantized = vec![0i8; values.len()];
    let one = |b: usize, out: &mut [i8]| {
        let rows = &values[b * block_row_len..(b + 1) * block_row_len];
        let inverse: Vec<f32> = scales[b * per_row..(b + 1) * per_row]
            .iter()
            .map(|s| 1.0 / s)
            .collect();
        for (row, out_row) in rows.chunks(dense.cols).zip(out.chunks_mut(dense.cols)) {
            for (j, (&x, o)) in row.iter().zip(out_row).enumerate() {
                *o = (x * inverse[j / dense.block_cols]).round().clamp(low, high) as i8;
            }
        }
    };
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        quantized
            .par_chunks_mut(block_row_len)
            .enumerate()
            .for_each(|(b, q)| one(b, q));
    }
    #[cfg(not(feature = "rayon"))]
    for (b, q) in quantized.chunks_mut(block_row_len).enumerate() {
        one(b, q);
    }
    quantized
}

/// `q` expanded to `f32`, in its (contiguous) storage order; `None` when [`DenseBlocks`] does
/// not apply.
pub fn dequantize_dense(q: &FlexQTensor) -> Option<Vec<f32>> {
    let dense = DenseBlocks::of(q)?;
    let values = q.values()?;
    let mut out = vec![0.0f32; dense.rows * dense.cols];
    let expand_rows = |first_row: usize, chunk: &mut [f32]| {
        let mut buffer = vec![0i8; dense.cols];
        for (r, row_out) in chunk.chunks_mut(dense.cols).enumerate() {
            let row = first_row + r;
            let row_in = values.row(row * dense.cols, &mut buffer);
            let scales = dense.scale_row(&q.scales, row);
            if dense.block_cols == 1 {
                for ((o, &v), &s) in row_out.iter_mut().zip(row_in).zip(scales) {
                    *o = v as f32 * s;
                }
            } else {
                for ((o, v), &s) in row_out
                    .chunks_mut(dense.block_cols)
                    .zip(row_in.chunks(dense.block_cols))
                    .zip(scales)
                {
                    for (o, &v) in o.iter_mut().zip(v) {
                        *o = v as f32 * s;
                    }
                }
            }
        }
    };
    for_row_chunks(&mut out, dense.cols, expand_rows);
    Some(out)
}

/// `x · W` for `x: [m, k]` (row-major `f32`) and a 2-D block-quantized `W: [k, n]` described by
/// `dense` (`rows = k`, `cols = n`): each block's scale multiplies its partial sums.
pub fn matmul_small(x: &[f32], m: usize, q: &FlexQTensor, dense: DenseBlocks) -> Vec<f32> {
    let (k, n) = (dense.rows, dense.cols);
    debug_assert_eq!(x.len(), m * k);
    let values = q.values().expect("dense blocks are contiguous");
    let mut out = vec![0.0f32; m * n];
    // Split the output columns across threads; each thread walks all of `k` for its columns.
    let columns = |first: usize, width: usize, out_cols: &mut [f32]| {
        // Whole strips by the explicit SIMD kernels where the blocks run along the rows, the
        // remaining columns by the portable loop.
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        let done = if dense.block_cols == 1 {
            let operands = super::qmatmul_simd::Operands {
                x,
                m,
                k,
                n,
                block_rows: dense.block_rows,
                scales: &q.scales,
                values,
            };
            super::qmatmul_simd::strips(&operands, first, width, out_cols)
        } else {
            0
        };
        #[cfg(not(all(feature = "std", target_arch = "x86_64")))]
        let done = 0;
        if done == width {
            return;
        }
        let tile = Tile {
            x,
            m,
            k,
            n,
            values,
            scales: &q.scales,
            dense,
            first: first + done,
            width: width - done,
            out_stride: width,
        };
        // The remaining columns, written in place: row `r` of the tile starts at `r · width`.
        let rest_cols = &mut out_cols[done..];
        #[cfg(all(feature = "std", target_arch = "x86_64"))]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA, checked just above.
            unsafe { tile_avx2(&tile, rest_cols) };
            return;
        }
        tile_generic(&tile, rest_cols);
    };
    const WIDTH: usize = 256;
    let tiles: Vec<(usize, usize)> = (0..n)
        .step_by(WIDTH)
        .map(|first| (first, WIDTH.min(n - first)))
        .collect();
    let run_tile = |&(first, width): &(usize, usize)| {
        let mut tile = vec![0.0f32; m * width];
        columns(first, width, &mut tile);
        (first, width, tile)
    };
    #[cfg(feature = "rayon")]
    let results: Vec<(usize, usize, Vec<f32>)> = {
        use rayon::prelude::*;
        tiles.par_iter().map(run_tile).collect()
    };
    #[cfg(not(feature = "rayon"))]
    let results: Vec<(usize, usize, Vec<f32>)> = tiles.iter().map(run_tile).collect();
    for (first, width, tile) in results {
        for r in 0..m {
            out[r * n + first..r * n + first + width]
                .copy_from_slice(&tile[r * width..(r + 1) * width]);
        }
    }
    out
}

/// One thread's share of [`matmul_small`]: the output columns `first..first + width`.
struct Tile<'a> {
    x: &'a [f32],
    m: usize,
    k: usize,
    n: usize,
    values: QValues<'a>,
    scales: &'a [f32],
    dense: DenseBlocks,
    first: usize,
    width: usize,
    /// Distance between the starts of two rows of the output the tile writes.
    out_stride: usize,
}

/// `out_cols[r, j] = Σ_blocks scale · Σ_{i in block} x[r, i] · q[i, first + j]`.
#[inline(always)]
fn tile_body(t: &Tile<'_>, out_cols: &mut [f32], fma: bool) {
    let (first, width) = (t.first, t.width);
    let mut partial = vec![0.0f32; width];
    let mut buffer = vec![0i8; width];
    for block_start in (0..t.k).step_by(t.dense.block_rows) {
        let scales = t.dense.scale_row(t.scales, block_start);
        for r in 0..t.m {
            partial.iter_mut().for_each(|p| *p = 0.0);
            for i in block_start..block_start + t.dense.block_rows {
                let xi = t.x[r * t.k + i];
                if xi == 0.0 {
                    continue;
                }
                let row = t.values.row(i * t.n + first, &mut buffer);
                if fma {
                    for (p, &v) in partial.iter_mut().zip(row) {
                        *p = xi.mul_add(v as f32, *p);
                    }
                } else {
                    for (p, &v) in partial.iter_mut().zip(row) {
                        *p += xi * v as f32;
                    }
                }
            }
            let out_row = &mut out_cols[r * t.out_stride..r * t.out_stride + width];
            if t.dense.block_cols == 1 {
                let s = &scales[first..first + width];
                for ((o, p), s) in out_row.iter_mut().zip(&partial).zip(s) {
                    *o += p * s;
                }
            } else {
                for (j, (o, p)) in out_row.iter_mut().zip(&partial).enumerate() {
                    *o += p * scales[(first + j) / t.dense.block_cols];
                }
            }
        }
    }
}

fn tile_generic(t: &Tile<'_>, out_cols: &mut [f32]) {
    tile_body(t, out_cols, false);
}

/// [`tile_body`] compiled for AVX2 and FMA (eight 8-bit values widened and fused per step).
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2(t: &Tile<'_>, out_cols: &mut [f32]) {
    tile_body(t, out_cols, true);
}

/// Runs `f(first_row, rows)` over `out` in chunks of whole rows of `cols` values, across the
/// rayon pool when `out` is large.
fn for_row_chunks(out: &mut [f32], cols: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    const CHUNK_VALUES: usize = 1 << 16;
    let rows_per_chunk = (CHUNK_VALUES / cols.max(1)).max(1);
    #[cfg(feature = "rayon")]
    if out.len() > CHUNK_VALUES {
        use rayon::prelude::*;
        out.par_chunks_mut(rows_per_chunk * cols)
            .enumerate()
            .for_each(|(i, chunk)| f(i * rows_per_chunk, chunk));
        return;
    }
    let _ = rows_per_chunk;
    f(0, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Flex, FlexTensor};
    use burn_backend::{
        FloatDType, TensorData, TensorMetadata,
        ops::QTensorOps,
        quantization::{QuantScheme, QuantStore, QuantValue, ScaleDtype},
    };

    fn quantized(values: Vec<f32>, shape: [usize; 2], block: [u8; 2]) -> FlexQTensor {
        quantized_as(QuantValue::Q8S, values, shape, block)
    }

    fn quantized_as(
        value: QuantValue,
        values: Vec<f32>,
        shape: [usize; 2],
        block: [u8; 2],
    ) -> FlexQTensor {
        let scheme = QuantScheme::default()
            .with_value(value)
            .per_block(block, ScaleDtype::F32)
            .with_store(QuantStore::Native);
        Flex::quantize_dynamic(
            FlexTensor::from_data(TensorData::new(values, shape)),
            &scheme,
        )
    }

    fn reference(q: &FlexQTensor) -> Vec<f32> {
        // The generic per-element path, on one value per byte.
        let q = &q.clone().unpacked();
        let blocks = burn_backend::quantization::BlockLayout::new(
            &q.tensor.shape(),
            &q.scheme.block_size().unwrap(),
        );
        let values: &[i8] = q.tensor.storage();
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| v as f32 * q.scales[blocks.block_of(i)])
            .collect()
    }

    fn values(len: usize) -> Vec<f32> {
        (0..len)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    #[test]
    fn dense_dequantize_equals_the_generic_path() {
        for value in [QuantValue::Q8S, QuantValue::Q4S, QuantValue::Q4F] {
            for (block, cols) in [([32u8, 1], 96), ([32, 1], 33), ([1, 32], 96), ([4, 8], 96)] {
                let q = quantized_as(value, values(64 * cols), [64, cols], block);
                assert_eq!(q.packed.is_some(), value != QuantValue::Q8S);
                assert_eq!(
                    dequantize_dense(&q).unwrap(),
                    reference(&q),
                    "{value:?} {block:?}"
                );
            }
        }
    }

    #[test]
    fn dense_quantize_equals_the_generic_path() {
        for block in [[32u8, 1], [1, 32], [4, 8]] {
            let shape = burn_std::Shape::from(vec![64, 96]);
            let data = values(64 * 96);
            let q = quantized(data.clone(), [64, 96], block);
            let dense =
                dense_geometry(&shape, &burn_backend::quantization::BlockSize::new(block)).unwrap();
            let (values_q, scales) =
                quantize_dense(&data, dense, |a| 2.0 * a / 254.0, -127.0, 127.0);
            assert_eq!(values_q.as_slice(), q.tensor.storage::<i8>(), "{block:?}");
            assert_eq!(scales, q.scales, "{block:?}");
        }
    }

    #[test]
    fn small_matmul_equals_expanding_the_weight() {
        // 321 columns: a packed row starts in the middle of a byte every other row, and the
        // last tile is 65 wide.
        for (value, block, m, n) in [
            (QuantValue::Q8S, [32u8, 1], 1, 320),
            (QuantValue::Q8S, [32, 1], 5, 320),
            (QuantValue::Q8S, [1, 32], 3, 320),
            (QuantValue::Q4S, [32, 1], 1, 321),
            (QuantValue::Q4S, [32, 1], 5, 320),
            (QuantValue::Q4F, [1, 32], 3, 320),
            // Last tiles of 74 and 88 columns: SIMD strips, then portable columns.
            (QuantValue::Q8S, [32, 1], 2, 330),
            (QuantValue::Q4S, [32, 1], 2, 344),
        ] {
            let k = 64;
            let q = quantized_as(value, values(k * n), [k, n], block);
            let w = reference(&q);
            let x: Vec<f32> = values(m * k).iter().map(|v| v * 0.5 + 0.1).collect();
            let dense = DenseBlocks::of(&q).unwrap();
            let got = matmul_small(&x, m, &q, dense);
            for r in 0..m {
                for j in 0..n {
                    let expected: f32 = (0..k).map(|i| x[r * k + i] * w[i * n + j]).sum();
                    let diff = (got[r * n + j] - expected).abs();
                    assert!(
                        diff <= 1e-4 * (1.0 + expected.abs()),
                        "{block:?} {r},{j}: {diff}"
                    );
                }
            }
        }
        // And through the backend op.
        let q = quantized(values(64 * 32), [64, 32], [32, 1]);
        let deq = Flex::dequantize(q.clone(), FloatDType::F32);
        assert_eq!(deq.storage::<f32>(), reference(&q).as_slice());
    }
}
