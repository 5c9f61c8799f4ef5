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
    let mut done = 0;
    // Runs `kernel(col)` on strips of `strip` columns from `done` while a whole one fits.
    let mut cover = |strip: usize, kernel: &mut dyn FnMut(usize)| {
        while done + strip <= width {
            kernel(done);
            done += strip;
        }
    };
    // SAFETY (every kernel call below): the CPU has the kernel's features (`isa`); a kernel
    // reads columns `first + col .. first + col + its strip ≤ first + width ≤ n` of every
    // weight row and scale row (asserted above and in the kernel), and a packed row starts on
    // a byte because `n` and `first` are even (checked here).
    match (o.values, isa) {
        (QValues::Nibbles(_), _) if !o.n.is_multiple_of(2) || !first.is_multiple_of(2) => {}
        (QValues::Nibbles(p), Isa::Avx512) => {
            cover(128, &mut |c| unsafe {
                q4_avx512::<4>(o, p, first, c, width, out)
            });
            cover(32, &mut |c| unsafe {
                q4_avx512::<1>(o, p, first, c, width, out)
            });
        }
        (QValues::Nibbles(p), Isa::Avx2) => {
            cover(64, &mut |c| unsafe {
                q4_avx2::<4>(o, p, first, c, width, out)
            });
            cover(16, &mut |c| unsafe {
                q4_avx2::<1>(o, p, first, c, width, out)
            });
        }
        (QValues::Bytes(b), Isa::Avx512) => {
            cover(64, &mut |c| unsafe {
                q8_avx512::<4>(o, b, first, c, width, out)
            });
            cover(16, &mut |c| unsafe {
                q8_avx512::<1>(o, b, first, c, width, out)
            });
        }
        (QValues::Bytes(b), Isa::Avx2) => {
            cover(32, &mut |c| unsafe {
                q8_avx2::<4>(o, b, first, c, width, out)
            });
            cover(8, &mut |c| unsafe {
                q8_avx2::<1>(o, b, first, c, width, out)
            });
        }
        (_, Isa::None) => {}
    }
    done
}

/// The vector operations the kernels are written in, for one instruction set: `LANES` f32
/// lanes per register. Every method is `#[inline(always)]` so that it compiles into the
/// `#[target_feature]` kernel that calls it; calling one elsewhere is undefined behaviour on
/// a CPU without the features, hence `unsafe`.
trait Lanes {
    /// `LANES` f32 values.
    type F: Copy;
    /// `LANES` i32 values.
    type I: Copy;
    /// Values per register.
    const LANES: usize;
    unsafe fn zero() -> Self::F;
    unsafe fn splat(x: f32) -> Self::F;
    /// `a · b + c`.
    unsafe fn fmadd(a: Self::F, b: Self::F, c: Self::F) -> Self::F;
    /// `LANES` bytes at `p`, sign-extended.
    unsafe fn load_i8(p: *const u8) -> Self::I;
    unsafe fn to_f32(v: Self::I) -> Self::F;
    /// The low nibble of each (sign-extended) byte, sign-extended.
    unsafe fn low_nibble(v: Self::I) -> Self::I;
    /// The high nibble of each (sign-extended) byte, sign-extended.
    unsafe fn high_nibble(v: Self::I) -> Self::I;
    unsafe fn load(p: *const f32) -> Self::F;
    unsafe fn store(p: *mut f32, v: Self::F);
    /// The even and the odd elements of the `2 · LANES` values `a ++ b`.
    unsafe fn even_odd(a: Self::F, b: Self::F) -> (Self::F, Self::F);
    /// `e[0], o[0], e[1], o[1], …` as two registers.
    unsafe fn interleave(e: Self::F, o: Self::F) -> (Self::F, Self::F);
}

struct Avx512;

impl Lanes for Avx512 {
    type F = __m512;
    type I = __m512i;
    const LANES: usize = 16;
    #[inline(always)]
    unsafe fn zero() -> __m512 {
        unsafe { _mm512_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> __m512 {
        unsafe { _mm512_set1_ps(x) }
    }
    #[inline(always)]
    unsafe fn fmadd(a: __m512, b: __m512, c: __m512) -> __m512 {
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn load_i8(p: *const u8) -> __m512i {
        unsafe { _mm512_cvtepi8_epi32(_mm_loadu_si128(p as *const __m128i)) }
    }
    #[inline(always)]
    unsafe fn to_f32(v: __m512i) -> __m512 {
        unsafe { _mm512_cvtepi32_ps(v) }
    }
    #[inline(always)]
    unsafe fn low_nibble(v: __m512i) -> __m512i {
        unsafe { _mm512_srai_epi32::<28>(_mm512_slli_epi32::<28>(v)) }
    }
    #[inline(always)]
    unsafe fn high_nibble(v: __m512i) -> __m512i {
        unsafe { _mm512_srai_epi32::<4>(v) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m512 {
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m512) {
        unsafe { _mm512_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn even_odd(a: __m512, b: __m512) -> (__m512, __m512) {
        unsafe {
            let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
            let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
            (
                _mm512_permutex2var_ps(a, even, b),
                _mm512_permutex2var_ps(a, odd, b),
            )
        }
    }
    #[inline(always)]
    unsafe fn interleave(e: __m512, o: __m512) -> (__m512, __m512) {
        unsafe {
            let low = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
            let high =
                _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
            (
                _mm512_permutex2var_ps(e, low, o),
                _mm512_permutex2var_ps(e, high, o),
            )
        }
    }
}

struct Avx2;

impl Lanes for Avx2 {
    type F = __m256;
    type I = __m256i;
    const LANES: usize = 8;
    #[inline(always)]
    unsafe fn zero() -> __m256 {
        unsafe { _mm256_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> __m256 {
        unsafe { _mm256_set1_ps(x) }
    }
    #[inline(always)]
    unsafe fn fmadd(a: __m256, b: __m256, c: __m256) -> __m256 {
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn load_i8(p: *const u8) -> __m256i {
        unsafe { _mm256_cvtepi8_epi32(_mm_loadl_epi64(p as *const __m128i)) }
    }
    #[inline(always)]
    unsafe fn to_f32(v: __m256i) -> __m256 {
        unsafe { _mm256_cvtepi32_ps(v) }
    }
    #[inline(always)]
    unsafe fn low_nibble(v: __m256i) -> __m256i {
        unsafe { _mm256_srai_epi32::<28>(_mm256_slli_epi32::<28>(v)) }
    }
    #[inline(always)]
    unsafe fn high_nibble(v: __m256i) -> __m256i {
        unsafe { _mm256_srai_epi32::<4>(v) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m256 {
        unsafe { _mm256_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m256) {
        unsafe { _mm256_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn even_odd(a: __m256, b: __m256) -> (__m256, __m256) {
        unsafe {
            // Within each 128-bit lane, then the lanes' 64-bit halves put in order.
            let order =
                |v: __m256| _mm256_castpd_ps(_mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(v)));
            (
                order(_mm256_shuffle_ps::<0x88>(a, b)),
                order(_mm256_shuffle_ps::<0xDD>(a, b)),
            )
        }
    }
    #[inline(always)]
    unsafe fn interleave(e: __m256, o: __m256) -> (__m256, __m256) {
        unsafe {
            let (lo, hi) = (_mm256_unpacklo_ps(e, o), _mm256_unpackhi_ps(e, o));
            (
                _mm256_permute2f128_ps::<0x20>(lo, hi),
                _mm256_permute2f128_ps::<0x31>(lo, hi),
            )
        }
    }
}

/// 4-bit weights: `G` groups of `2 · LANES` columns (`LANES` packed bytes per weight row
/// each), output columns `first + col ..` into `out` (`m × width`).
#[inline(always)]
unsafe fn q4_strip<S: Lanes, const G: usize>(
    o: &Operands<'_>,
    packed: &[u8],
    first: usize,
    col: usize,
    width: usize,
    out: &mut [f32],
) {
    let (lanes, start) = (S::LANES, first + col);
    assert!(start + 2 * lanes * G <= o.n && packed.len() * 2 >= o.k * o.n);
    for r in 0..o.m {
        let x = &o.x[r * o.k..(r + 1) * o.k];
        // [even columns, odd columns] of each group.
        let mut acc = [[unsafe { S::zero() }; 2]; G];
        for (b, xb) in x.chunks_exact(o.block_rows).enumerate() {
            let mut part = [[unsafe { S::zero() }; 2]; G];
            for (j, &xi) in xb.iter().enumerate() {
                let i = b * o.block_rows + j;
                // SAFETY (this block): bytes (i·n + start) / 2 .. + LANES·G lie in row i
                // (asserted above); the caller runs on a CPU with `S`'s features.
                unsafe {
                    let xi = S::splat(xi);
                    let row = packed.as_ptr().add((i * o.n + start) / 2);
                    for (g, p) in part.iter_mut().enumerate() {
                        let v = S::load_i8(row.add(lanes * g));
                        p[0] = S::fmadd(xi, S::to_f32(S::low_nibble(v)), p[0]);
                        p[1] = S::fmadd(xi, S::to_f32(S::high_nibble(v)), p[1]);
                    }
                }
            }
            let s = &o.scales[b * o.n + start..b * o.n + start + 2 * lanes * G];
            for ((a, p), s) in acc.iter_mut().zip(&part).zip(s.chunks_exact(2 * lanes)) {
                // SAFETY: `s` holds 2·LANES scales.
                unsafe {
                    let (even, odd) =
                        S::even_odd(S::load(s.as_ptr()), S::load(s[lanes..].as_ptr()));
                    a[0] = S::fmadd(p[0], even, a[0]);
                    a[1] = S::fmadd(p[1], odd, a[1]);
                }
            }
        }
        let dst = &mut out[r * width + col..r * width + col + 2 * lanes * G];
        for (a, d) in acc.iter().zip(dst.chunks_exact_mut(2 * lanes)) {
            // SAFETY: `d` holds 2·LANES values.
            unsafe {
                let (lo, hi) = S::interleave(a[0], a[1]);
                S::store(d.as_mut_ptr(), lo);
                S::store(d[lanes..].as_mut_ptr(), hi);
            }
        }
    }
}

/// 8-bit weights: `G` groups of `LANES` columns, output columns `first + col ..` into `out`.
#[inline(always)]
unsafe fn q8_strip<S: Lanes, const G: usize>(
    o: &Operands<'_>,
    bytes: &[i8],
    first: usize,
    col: usize,
    width: usize,
    out: &mut [f32],
) {
    let (lanes, start) = (S::LANES, first + col);
    assert!(start + lanes * G <= o.n && bytes.len() >= o.k * o.n);
    for r in 0..o.m {
        let x = &o.x[r * o.k..(r + 1) * o.k];
        let mut acc = [unsafe { S::zero() }; G];
        for (b, xb) in x.chunks_exact(o.block_rows).enumerate() {
            let mut part = [unsafe { S::zero() }; G];
            for (j, &xi) in xb.iter().enumerate() {
                let i = b * o.block_rows + j;
                // SAFETY (this block): values i·n + start .. + LANES·G lie in row i (asserted
                // above); the caller runs on a CPU with `S`'s features.
                unsafe {
                    let xi = S::splat(xi);
                    let row = bytes.as_ptr().add(i * o.n + start) as *const u8;
                    for (g, p) in part.iter_mut().enumerate() {
                        *p = S::fmadd(xi, S::to_f32(S::load_i8(row.add(lanes * g))), *p);
                    }
                }
            }
            let s = &o.scales[b * o.n + start..b * o.n + start + lanes * G];
            for ((a, p), s) in acc.iter_mut().zip(&part).zip(s.chunks_exact(lanes)) {
                // SAFETY: `s` holds LANES scales.
                *a = unsafe { S::fmadd(*p, S::load(s.as_ptr()), *a) };
            }
        }
        let dst = &mut out[r * width + col..r * width + col + lanes * G];
        for (a, d) in acc.iter().zip(dst.chunks_exact_mut(lanes)) {
            // SAFETY: `d` holds LANES values.
            unsafe { S::store(d.as_mut_ptr(), *a) };
        }
    }
}

/// [`q4_strip`] compiled for AVX-512: `G` groups of 32 columns.
#[target_feature(enable = "avx512f")]
unsafe fn q4_avx512<const G: usize>(
    o: &Operands<'_>,
    packed: &[u8],
    first: usize,
    col: usize,
    width: usize,
    out: &mut [f32],
) {
    unsafe { q4_strip::<Avx512, G>(o, packed, first, col, width, out) }
}

/// [`q4_strip`] compiled for AVX2 and FMA: `G` groups of 16 columns.
#[target_feature(enable = "avx2,fma")]
unsafe fn q4_avx2<const G: usize>(
    o: &Operands<'_>,
    packed: &[u8],
    first: usize,
    col: usize,
    width: usize,
    out: &mut [f32],
) {
    unsafe { q4_strip::<Avx2, G>(o, packed, first, col, width, out) }
}

/// [`q8_strip`] compiled for AVX-512: `G` groups of 16 columns.
#[target_feature(enable = "avx512f")]
unsafe fn q8_avx512<const G: usize>(
    o: &Operands<'_>,
    bytes: &[i8],
    first: usize,
    col: usize,
    width: usize,
    out: &mut [f32],
) {
    unsafe { q8_strip::<Avx512, G>(o, bytes, first, col, width, out) }
}

/// [`q8_strip`] compiled for AVX2 and FMA: `G` groups of 8 columns.
#[target_feature(enable = "avx2,fma")]
unsafe fn q8_avx2<const G: usize>(
    o: &Operands<'_>,
    bytes: &[i8],
    first: usize,
    col: usize,
    width: usize,
    out: &mut [f32],
) {
    unsafe { q8_strip::<Avx2, G>(o, bytes, first, col, width, out) }
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
