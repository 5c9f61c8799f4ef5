//! Explicit AVX-512 / AVX2 kernels for [`super::qmatmul::matmul_small`] (added by lora-burn's
//! patch): a few rows of `x` times a weight whose blocks run along its rows (`[block, 1]` on
//! `[k, n]`, one scale per output column and block of inputs), read straight from its 8-bit
//! or packed 4-bit storage.
//!
//! Each kernel walks a strip of output columns through all of `k`: the integers are
//! sign-extended to 32 bits in registers (a packed byte's low nibble by a shift left and an
//! arithmetic shift right, its high nibble by the arithmetic shift alone), converted and
//! fused into per-block partial sums, and each block's scales multiply the partial sums once
//! per block. A packed byte holds two neighbouring columns, so the 4-bit kernels keep the even
//! and the odd columns in separate registers and interleave them once per strip.

use core::arch::x86_64::*;

use crate::qtensor::QValues;

/// The weight and the rows of `x` a kernel reads.
pub(super) struct Operands<'a> {
    /// `x: [m, k]`, row-major.
    pub x: &'a [f32],
    /// Rows of `x`.
    pub m: usize,
    /// Inputs (rows of the weight).
    pub k: usize,
    /// Outputs (columns of the weight).
    pub n: usize,
    /// Rows of the weight per block (one scale per block and column).
    pub block_rows: usize,
    /// `[k / block_rows, n]` scales.
    pub scales: &'a [f32],
    /// The weight's integers.
    pub values: QValues<'a>,
}

/// Computes the output columns `first..first + done` of every row of `x` into `out`
/// (`m × width`, row-major, columns relative to `first`) with the widest kernel the CPU has,
/// and returns `done`: a multiple of the narrowest strip, at most `width`; the columns after
/// it are left for the portable path. `done` is 0 when no kernel applies.
pub(super) fn strips(o: &Operands<'_>, first: usize, width: usize, out: &mut [f32]) -> usize {
    strips_on(Isa::detect(), o, first, width, out)
}

/// The instruction sets the kernels are compiled for.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Isa {
    Avx512,
    Avx2,
    None,
}

impl Isa {
    /// The widest one this CPU runs.
    fn detect() -> Isa {
        if std::is_x86_feature_detected!("avx512f") {
            Isa::Avx512
        } else if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            Isa::Avx2
        } else {
            Isa::None
        }
    }
}

/// [`strips`] with the kernels of `isa`, which the CPU must run.
fn strips_on(isa: Isa, o: &Operands<'_>, first: usize, width: usize, out: &mut [f32]) -> usize {
    assert!(first + width <= o.n && out.len() == o.m * width);
    assert!(o.block_rows > 0 && o.k.is_multiple_of(o.block_rows) && o.x.len() == o.m * o.k);
    assert_eq!(o.scales.len(), o.k / o.block_rows * o.n);
    let (avx512, avx2) = (isa == Isa::Avx512, isa == Isa::Avx2);
    let mut done = 0;
    // SAFETY (every call below): the CPU has the kernel's features (`isa`); a kernel reads
    // columns `first + done .. first + done + its strip ≤ first + width ≤ n` of every weight
    // row and scale row (asserted above and in the kernel), and a packed row starts on a byte
    // because `n` and `first` are even (checked here).
    match o.values {
        QValues::Nibbles(packed) => {
            if !o.n.is_multiple_of(2) || !first.is_multiple_of(2) {
                return 0;
            }
            if avx512 {
                while done + 128 <= width {
                    unsafe { q4_avx512::<4>(o, packed, first, done, width, out) };
                    done += 128;
                }
                while done + 32 <= width {
                    unsafe { q4_avx512::<1>(o, packed, first, done, width, out) };
                    done += 32;
                }
            } else if avx2 {
                while done + 64 <= width {
                    unsafe { q4_avx2::<4>(o, packed, first, done, width, out) };
                    done += 64;
                }
                while done + 16 <= width {
                    unsafe { q4_avx2::<1>(o, packed, first, done, width, out) };
                    done += 16;
                }
            }
        }
        QValues::Bytes(bytes) => {
            if avx512 {
                while done + 64 <= width {
                    unsafe { q8_avx512::<4>(o, bytes, first, done, width, out) };
                    done += 64;
                }
                while done + 16 <= width {
                    unsafe { q8_avx512::<1>(o, bytes, first, done, width, out) };
                    done += 16;
                }
            } else if avx2 {
                while done + 32 <= width {
                    unsafe { q8_avx2::<4>(o, bytes, first, done, width, out) };
                    done += 32;
                }
                while done + 8 <= width {
                    unsafe { q8_avx2::<1>(o, bytes, first, done, width, out) };
                    done += 8;
                }
            }
        }
    }
    done
}

/// 4-bit weights, AVX-512: `G` groups of 32 columns (16 packed bytes per weight row each).
#[target_feature(enable = "avx512f")]
unsafe fn q4_avx512<const G: usize>(
    o: &Operands<'_>,
    packed: &[u8],
    first: usize,
    col: usize,
    width: usize,
    out: &mut [f32],
) {
    let start = first + col;
    assert!(start + 32 * G <= o.n && packed.len() * 2 >= o.k * o.n);
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let low = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    let high = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    for r in 0..o.m {
        let x = &o.x[r * o.k..(r + 1) * o.k];
        // [even columns, odd columns] of each group.
        let mut acc = [[_mm512_setzero_ps(); 2]; G];
        for (b, xb) in x.chunks_exact(o.block_rows).enumerate() {
            let mut part = [[_mm512_setzero_ps(); 2]; G];
            for (j, &xi) in xb.iter().enumerate() {
                let i = b * o.block_rows + j;
                let xi = _mm512_set1_ps(xi);
                // SAFETY: bytes (i·n + start) / 2 .. + 16·G lie in row i (asserted above).
                let row = unsafe { packed.as_ptr().add((i * o.n + start) / 2) };
                for (g, p) in part.iter_mut().enumerate() {
                    let v = _mm512_cvtepi8_epi32(unsafe {
                        _mm_loadu_si128(row.add(16 * g) as *const __m128i)
                    });
                    let lo = _mm512_srai_epi32::<28>(_mm512_slli_epi32::<28>(v));
                    let hi = _mm512_srai_epi32::<4>(v);
                    p[0] = _mm512_fmadd_ps(xi, _mm512_cvtepi32_ps(lo), p[0]);
                    p[1] = _mm512_fmadd_ps(xi, _mm512_cvtepi32_ps(hi), p[1]);
                }
            }
            let s = &o.scales[b * o.n + start..b * o.n + start + 32 * G];
            for ((a, p), s) in acc.iter_mut().zip(&part).zip(s.chunks_exact(32)) {
                // SAFETY: `s` holds 32 scales.
                let (s0, s1) = unsafe {
                    (
                        _mm512_loadu_ps(s.as_ptr()),
                        _mm512_loadu_ps(s[16..].as_ptr()),
                    )
                };
                a[0] = _mm512_fmadd_ps(p[0], _mm512_permutex2var_ps(s0, even, s1), a[0]);
                a[1] = _mm512_fmadd_ps(p[1], _mm512_permutex2var_ps(s0, odd, s1), a[1]);
            }
        }
        let dst = &mut out[r * width + col..r * width + col + 32 * G];
        for (a, d) in acc.iter().zip(dst.chunks_exact_mut(32)) {
            // SAFETY: `d` holds 32 values.
            unsafe {
                _mm512_storeu_ps(d.as_mut_ptr(), _mm512_permutex2var_ps(a[0], low, a[1]));
                _mm512_storeu_ps(
                    d[16..].as_mut_ptr(),
                    _mm512_permutex2var_ps(a[0], high, a[1]),
                );
            }
        }
    }
}

/// 4-bit weights, AVX2: `G` groups of 16 columns (8 packed bytes per weight row each).
#[target_feature(enable = "avx2,fma")]
unsafe fn q4_avx2<const G: usize>(
    o: &Operands<'_>,
    packed: &[u8],
    first: usize,
    col: usize,
    width: usize,
    out: &mut [f32],
) {
    let start = first + col;
    assert!(start + 16 * G <= o.n && packed.len() * 2 >= o.k * o.n);
    for r in 0..o.m {
        let x = &o.x[r * o.k..(r + 1) * o.k];
        let mut acc = [[_mm256_setzero_ps(); 2]; G];
        for (b, xb) in x.chunks_exact(o.block_rows).enumerate() {
            let mut part = [[_mm256_setzero_ps(); 2]; G];
            for (j, &xi) in xb.iter().enumerate() {
                let i = b * o.block_rows + j;
                let xi = _mm256_set1_ps(xi);
                // SAFETY: bytes (i·n + start) / 2 .. + 8·G lie in row i (asserted above).
                let row = unsafe { packed.as_ptr().add((i * o.n + start) / 2) };
                for (g, p) in part.iter_mut().enumerate() {
                    let v = _mm256_cvtepi8_epi32(unsafe {
                        _mm_loadl_epi64(row.add(8 * g) as *const __m128i)
                    });
                    let lo = _mm256_srai_epi32::<28>(_mm256_slli_epi32::<28>(v));
                    let hi = _mm256_srai_epi32::<4>(v);
                    p[0] = _mm256_fmadd_ps(xi, _mm256_cvtepi32_ps(lo), p[0]);
                    p[1] = _mm256_fmadd_ps(xi, _mm256_cvtepi32_ps(hi), p[1]);
                }
            }
            let s = &o.scales[b * o.n + start..b * o.n + start + 16 * G];
            for ((a, p), s) in acc.iter_mut().zip(&part).zip(s.chunks_exact(16)) {
                // SAFETY: `s` holds 16 scales.
                let (s0, s1) = unsafe {
                    (
                        _mm256_loadu_ps(s.as_ptr()),
                        _mm256_loadu_ps(s[8..].as_ptr()),
                    )
                };
                // Within each 128-bit lane, then the lanes' 64-bit halves put in order.
                let even = _mm256_castpd_ps(_mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(
                    _mm256_shuffle_ps::<0x88>(s0, s1),
                )));
                let odd = _mm256_castpd_ps(_mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(
                    _mm256_shuffle_ps::<0xDD>(s0, s1),
                )));
                a[0] = _mm256_fmadd_ps(p[0], even, a[0]);
                a[1] = _mm256_fmadd_ps(p[1], odd, a[1]);
            }
        }
        let dst = &mut out[r * width + col..r * width + col + 16 * G];
        for (a, d) in acc.iter().zip(dst.chunks_exact_mut(16)) {
            let lo = _mm256_unpacklo_ps(a[0], a[1]);
            let hi = _mm256_unpackhi_ps(a[0], a[1]);
            // SAFETY: `d` holds 16 values.
            unsafe {
                _mm256_storeu_ps(d.as_mut_ptr(), _mm256_permute2f128_ps::<0x20>(lo, hi));
                _mm256_storeu_ps(d[8..].as_mut_ptr(), _mm256_permute2f128_ps::<0x31>(lo, hi));
            }
        }
    }
}

/// 8-bit weights, AVX-512: `G` groups of 16 columns.
#[target_feature(enable = "avx512f")]
unsafe fn q8_avx512<const G: usize>(
    o: &Operands<'_>,
    bytes: &[i8],
    first: usize,
    col: usize,
    width: usize,
    out: &mut [f32],
) {
    let start = first + col;
    assert!(start + 16 * G <= o.n && bytes.len() >= o.k * o.n);
    for r in 0..o.m {
        let x = &o.x[r * o.k..(r + 1) * o.k];
        let mut acc = [_mm512_setzero_ps(); G];
        for (b, xb) in x.chunks_exact(o.block_rows).enumerate() {
            let mut part = [_mm512_setzero_ps(); G];
            for (j, &xi) in xb.iter().enumerate() {
                let i = b * o.block_rows + j;
                let xi = _mm512_set1_ps(xi);
                // SAFETY: values i·n + start .. + 16·G lie in row i (asserted above).
                let row = unsafe { bytes.as_ptr().add(i * o.n + start) };
                for (g, p) in part.iter_mut().enumerate() {
                    let v = _mm512_cvtepi8_epi32(unsafe {
                        _mm_loadu_si128(row.add(16 * g) as *const __m128i)
                    });
                    *p = _mm512_fmadd_ps(xi, _mm512_cvtepi32_ps(v), *p);
                }
            }
            let s = &o.scales[b * o.n + start..b * o.n + start + 16 * G];
            for ((a, p), s) in acc.iter_mut().zip(&part).zip(s.chunks_exact(16)) {
                // SAFETY: `s` holds 16 scales.
                *a = _mm512_fmadd_ps(*p, unsafe { _mm512_loadu_ps(s.as_ptr()) }, *a);
            }
        }
        let dst = &mut out[r * width + col..r * width + col + 16 * G];
        for (a, d) in acc.iter().zip(dst.chunks_exact_mut(16)) {
            // SAFETY: `d` holds 16 values.
            unsafe { _mm512_storeu_ps(d.as_mut_ptr(), *a) };
        }
    }
}

/// 8-bit weights, AVX2: `G` groups of 8 columns.
#[target_feature(enable = "avx2,fma")]
unsafe fn q8_avx2<const G: usize>(
    o: &Operands<'_>,
    bytes: &[i8],
    first: usize,
    col: usize,
    width: usize,
    out: &mut [f32],
) {
    let start = first + col;
    assert!(start + 8 * G <= o.n && bytes.len() >= o.k * o.n);
    for r in 0..o.m {
        let x = &o.x[r * o.k..(r + 1) * o.k];
        let mut acc = [_mm256_setzero_ps(); G];
        for (b, xb) in x.chunks_exact(o.block_rows).enumerate() {
            let mut part = [_mm256_setzero_ps(); G];
            for (j, &xi) in xb.iter().enumerate() {
                let i = b * o.block_rows + j;
                let xi = _mm256_set1_ps(xi);
                // SAFETY: values i·n + start .. + 8·G lie in row i (asserted above).
                let row = unsafe { bytes.as_ptr().add(i * o.n + start) };
                for (g, p) in part.iter_mut().enumerate() {
                    let v = _mm256_cvtepi8_epi32(unsafe {
                        _mm_loadl_epi64(row.add(8 * g) as *const __m128i)
                    });
                    *p = _mm256_fmadd_ps(xi, _mm256_cvtepi32_ps(v), *p);
                }
            }
            let s = &o.scales[b * o.n + start..b * o.n + start + 8 * G];
            for ((a, p), s) in acc.iter_mut().zip(&part).zip(s.chunks_exact(8)) {
                // SAFETY: `s` holds 8 scales.
                *a = _mm256_fmadd_ps(*p, unsafe { _mm256_loadu_ps(s.as_ptr()) }, *a);
            }
        }
        let dst = &mut out[r * width + col..r * width + col + 8 * G];
        for (a, d) in acc.iter().zip(dst.chunks_exact_mut(8)) {
            // SAFETY: `d` holds 8 values.
            unsafe { _mm256_storeu_ps(d.as_mut_ptr(), *a) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qtensor::pack_nibbles;

    /// `x · W` for `W[i, j] = q[i·n + j] · scale[i / block_rows, j]`, summed in f64.
    fn reference(o: &Operands<'_>, q: &[i8]) -> Vec<f32> {
        let mut out = vec![0.0f32; o.m * o.n];
        for r in 0..o.m {
            for j in 0..o.n {
                let sum: f64 = (0..o.k)
                    .map(|i| {
                        let w = q[i * o.n + j] as f32 * o.scales[i / o.block_rows * o.n + j];
                        o.x[r * o.k + i] as f64 * w as f64
                    })
                    .sum();
                out[r * o.n + j] = sum as f32;
            }
        }
        out
    }

    #[test]
    fn every_kernel_equals_the_reference() {
        let detected = Isa::detect();
        let isas: Vec<Isa> = match detected {
            Isa::Avx512 => vec![Isa::Avx512, Isa::Avx2],
            Isa::Avx2 => vec![Isa::Avx2],
            Isa::None => vec![],
        };
        // Widths that leave a tail for the portable path; scales of both signs.
        for (m, k, n, block_rows) in [(1, 64, 336, 32), (3, 96, 200, 32), (2, 64, 130, 16)] {
            let x: Vec<f32> = (0..m * k)
                .map(|i| ((i * 37) % 23) as f32 / 11.0 - 1.0)
                .collect();
            let scales: Vec<f32> = (0..k / block_rows * n)
                .map(|i| (((i * 13) % 17) as f32 - 8.0) / 64.0)
                .collect();
            for four_bits in [false, true] {
                let q: Vec<i8> = (0..k * n)
                    .map(|i| {
                        let v = ((i * 7919) % 251) as i32;
                        (if four_bits { v % 16 - 8 } else { v - 125 }) as i8
                    })
                    .collect();
                let packed = pack_nibbles(&q);
                let values = if four_bits {
                    QValues::Nibbles(&packed)
                } else {
                    QValues::Bytes(&q)
                };
                let o = Operands {
                    x: &x,
                    m,
                    k,
                    n,
                    block_rows,
                    scales: &scales,
                    values,
                };
                let expected = reference(&o, &q);
                for &isa in &isas {
                    for (first, width) in [(0, n), (32, n - 32)] {
                        let mut out = vec![f32::NAN; m * width];
                        let done = strips_on(isa, &o, first, width, &mut out);
                        assert!(
                            done > 0 && done <= width && width - done < 64,
                            "{isa:?} {done}"
                        );
                        for r in 0..m {
                            for j in 0..done {
                                let (got, want) = (out[r * width + j], expected[r * n + first + j]);
                                assert!(
                                    (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                                    "{isa:?} 4-bit {four_bits} m{m} n{n} [{r}, {}]: {got} vs {want}",
                                    first + j
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
