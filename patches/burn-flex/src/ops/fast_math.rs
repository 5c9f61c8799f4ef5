//! Vectorisable, multi-threaded `f32` kernels for the element-wise functions that dominate
//! LoRA fine-tuning on a CPU after the matrix products (lora-burn's patch of burn-flex; see
//! `patches/README.md` in lora-burn).
//!
//! The stock kernels call scalar `libm` (`erff`, `expf`) one element at a time on one thread
//! and draw dropout masks through a ChaCha generator element by element. Here:
//!
//! - `erf` is Eigen's rational approximation for `f32` (max absolute error 4e-7 against the
//!   exact function; GELU built on it is within 7e-7), `exp` the Cephes polynomial with a
//!   round-to-nearest range reduction (about 1 ulp); both are branch-free, so the loops
//!   vectorise, and long tensors are split across the rayon pool;
//! - Bernoulli masks come from a counter-based generator (SplitMix64 of the element index and a
//!   key drawn from the seeded backend RNG), so they are reproducible under `seed()`,
//!   independent of the number of threads, and cheap.

use alloc::vec;
use alloc::vec::Vec;

use burn_backend::DType;
use burn_std::Bytes;

use super::for_each_chunk_mut;
use crate::{FlexTensor, Layout};

/// Runs `f` compiled for AVX2 and FMA where the CPU has them (checked at run time), else as
/// built. The crate is built for the baseline `x86-64` (SSE2), where the loops of these
/// kernels vectorise four lanes wide at best; inside `f`, inlined into the AVX2 function,
/// they vectorise eight wide. Results do not depend on the path: no operation here is
/// contracted into a fused multiply-add, and the lanes of every reduction are explicit.
#[inline(always)]
pub(crate) fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        // SAFETY: the CPU has AVX2 and FMA, checked just above.
        return unsafe { avx2(f) };
    }
    f()
}

/// `e^x` for `f32`: Cephes' `expf` polynomial after `x = n·ln2 + r`, branch-free.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = core::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 · 2^23: adding and subtracting it rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    const LO: f32 = -87.336_55;
    const HI: f32 = 88.722_83;
    let input = x;
    let x = x.clamp(LO, HI);
    // `t` is `n + 1.5·2^23` exactly (ulp 1 in [2^23, 2^24)), so its bits minus ROUND's are
    // the integer `n` itself: no float-to-int conversion, which Rust saturates and which
    // therefore does not vectorise.
    let t = x * LOG2E + ROUND;
    let n_bits = t.to_bits() as i32 - ROUND.to_bits() as i32;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5.000_000_1e-1;
    let y = p * r * r + r + 1.0;
    // 2^n by building the exponent bits; n lies in [-126, 128] after the clamp, and 2^128 is
    // split so that the largest inputs still give a finite result.
    let n = n_bits;
    let half = n >> 1;
    let scale_a = f32::from_bits(((half + 127) as u32) << 23);
    let scale_b = f32::from_bits(((n - half + 127) as u32) << 23);
    let y = y * scale_a * scale_b;
    // As libm: 0 below the smallest normal result, infinity above the largest, NaN kept.
    if input < LO {
        0.0
    } else if input > HI {
        f32::INFINITY
    } else if input.is_nan() {
        input
    } else {
        y
    }
}

/// `erf(x)` for `f32`: Eigen's rational approximation on `[-4, 4]` (`erf` is ±1 to `f32`
/// precision beyond), max absolute error 4e-7.
#[inline(always)]
pub fn erf_f32(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 - 2.101_024e-6;
    p = p * x2 - 5.692_506_4e-5;
    p = p * x2 - 7.349_906e-4;
    p = p * x2 - 2.954_600_2e-3;
    p = p * x2 - 1.609_603_4e-2;
    let p = x * p;
    let mut q = -1.456_607_2e-5_f32;
    q = q * x2 - 2.133_740_6e-4;
    q = q * x2 - 1.682_827e-3;
    q = q * x2 - 7.373_329e-3;
    q = q * x2 - 1.426_474e-2;
    p / q
}

/// GELU (the exact, erf form) of one element.
#[inline(always)]
pub fn gelu_f32(x: f32) -> f32 {
    0.5 * x * (1.0 + erf_f32(x * core::f32::consts::FRAC_1_SQRT_2))
}

/// The derivative of GELU at `x`, times `grad`.
#[inline(always)]
pub fn gelu_backward_f32(x: f32, grad: f32) -> f32 {
    // 1 / √(2π)
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    let cdf = 0.5 * (1.0 + erf_f32(x * core::f32::consts::FRAC_1_SQRT_2));
    let pdf = INV_SQRT_2PI * exp_f32(-0.5 * x * x);
    grad * (cdf + x * pdf)
}

/// Lanes of the partial sums and maxima below: enough independent accumulators for the
/// compiler to keep a whole vector register of them (and several in flight).
const LANES: usize = 16;

/// The sum of `values`, accumulated in [`LANES`] interleaved partial sums (vectorised; the
/// order of additions differs from a left-to-right loop by a few roundings).
#[inline(always)]
pub fn sum_f32(values: &[f32]) -> f32 {
    let mut acc = [0.0_f32; LANES];
    let mut chunks = values.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

/// The largest of `values` (negative infinity for none; NaN is skipped, as `f32::max` does).
#[inline(always)]
pub fn max_f32(values: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = values.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a = a.max(v);
        }
    }
    let rest = chunks.remainder().iter().copied();
    acc.into_iter()
        .chain(rest)
        .fold(f32::NEG_INFINITY, f32::max)
}

/// `output[i] = e^(input[i] − shift)`, returning the sum of the outputs: the shared middle
/// pass of softmax and log-softmax over one row. Inlined into its callers, which are compiled
/// for the CPU's vector width (macerator's variants, [`vectorized`]).
#[inline(always)]
pub fn exp_shifted_f32(input: &[f32], shift: f32, output: &mut [f32]) -> f32 {
    for (o, &x) in output.iter_mut().zip(input) {
        *o = exp_f32(x - shift);
    }
    sum_f32(output)
}

/// The elements of a contiguous `f32` tensor, or `None` for any other tensor.
fn contiguous_f32(tensor: &FlexTensor) -> Option<&[f32]> {
    if tensor.dtype() != DType::F32 {
        return None;
    }
    let (start, end) = tensor.layout().contiguous_offsets()?;
    Some(&tensor.storage::<f32>()[start..end])
}

fn output(tensor: &FlexTensor, data: Vec<f32>) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(data),
        Layout::contiguous(tensor.layout().shape().clone()),
        DType::F32,
    )
}

/// `f` of every element of a contiguous `f32` tensor, in parallel: in place when the tensor
/// owns its buffer alone (no second buffer of its size), else into a new one. Any other
/// tensor comes back as `Err` for the caller's general path. Pass `f` as an
/// `#[inline(always)]` closure: a function item is called through its `Fn::call` shim, which
/// the AVX2 loop does not inline (one scalar call per element).
pub fn map_f32(
    tensor: FlexTensor,
    f: impl Fn(f32) -> f32 + Sync + Send,
) -> Result<FlexTensor, FlexTensor> {
    if tensor.dtype() != DType::F32 {
        return Err(tensor);
    }
    let tensor = match super::map_in_place(
        tensor,
        #[inline(always)]
        |x| f(x),
    ) {
        Ok(tensor) => return Ok(tensor),
        Err(tensor) => tensor,
    };
    match contiguous_f32(&tensor) {
        Some(src) => Ok(output(&tensor, super::par_map(src, f))),
        None => Err(tensor),
    }
}

/// `f(a[i], b[i])` for two contiguous `f32` tensors of one shape, in parallel: in place into
/// `b` when it owns its buffer alone, else into a new buffer. Other pairs come back as `Err`
/// (with `b`) for the caller's general path.
pub fn zip_map_f32(
    a: &FlexTensor,
    mut b: FlexTensor,
    f: impl Fn(f32, f32) -> f32 + Sync + Send,
) -> Result<FlexTensor, FlexTensor> {
    if a.layout().shape() != b.layout().shape() {
        return Err(b);
    }
    let Some(xa) = contiguous_f32(a) else {
        return Err(b);
    };
    if b.dtype() == DType::F32
        && b.is_unique()
        && b.layout().is_contiguous()
        && b.layout().start_offset() == 0
    {
        let n = xa.len();
        let values: &mut [f32] = b.storage_mut();
        for_each_chunk_mut(&mut values[..n], |start, chunk| {
            let xa = &xa[start..start + chunk.len()];
            vectorized(
                #[inline(always)]
                || {
                    for (y, &x) in chunk.iter_mut().zip(xa) {
                        *y = f(x, *y);
                    }
                },
            )
        });
        return Ok(b);
    }
    match contiguous_f32(&b) {
        Some(xb) => Ok(output(a, super::par_zip_map(xa, xb, f))),
        None => Err(b),
    }
}

/// SplitMix64's output for counter `i` under `key`.
#[inline(always)]
fn splitmix(key: u64, i: u64) -> u64 {
    let mut z = key.wrapping_add(i.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `n` Bernoulli(`p`) samples (1.0 with probability `p`, else 0.0) from the stream `key`.
pub fn bernoulli_f32(n: usize, p: f64, key: u64) -> Vec<f32> {
    // Compare 24 random bits with p · 2^24: exact for every p an f32 mask can express.
    let threshold = (p.clamp(0.0, 1.0) * (1u64 << 24) as f64).round() as u64;
    let mut out = vec![0.0_f32; n];
    for_each_chunk_mut(&mut out, |start, chunk| {
        vectorized(
            #[inline(always)]
            || {
                for (j, o) in chunk.iter_mut().enumerate() {
                    let bits = splitmix(key, (start + j) as u64) >> 40;
                    *o = if bits < threshold { 1.0 } else { 0.0 };
                }
            },
        )
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_write_in_place_only_into_a_buffer_they_own() {
        let n = 100_000;
        let a: Vec<f32> = (0..n).map(|i| i as f32 * 1e-4 - 5.0).collect();
        let b: Vec<f32> = (0..n).map(|i| (i % 13) as f32 - 6.0).collect();
        let tensor = |v: &[f32]| {
            FlexTensor::new(
                Bytes::from_elems(v.to_vec()),
                Layout::contiguous(burn_backend::Shape::from(vec![n])),
                DType::F32,
            )
        };
        let t = tensor(&a);
        let shared = t.clone();
        let fresh = map_f32(t, exp_f32).unwrap();
        assert_eq!(
            shared.storage::<f32>(),
            &a[..],
            "a shared buffer was written"
        );
        let in_place = map_f32(shared, exp_f32).unwrap();
        assert_eq!(fresh.storage::<f32>(), in_place.storage::<f32>());
        assert_eq!(fresh.storage::<f32>()[7], exp_f32(a[7]));

        let (x, g) = (tensor(&a), tensor(&b));
        let kept = g.clone();
        let fresh = zip_map_f32(&x, g, gelu_backward_f32).unwrap();
        assert_eq!(kept.storage::<f32>(), &b[..], "a shared buffer was written");
        let in_place = zip_map_f32(&x, kept, gelu_backward_f32).unwrap();
        assert_eq!(fresh.storage::<f32>(), in_place.storage::<f32>());
        assert_eq!(fresh.storage::<f32>()[9], gelu_backward_f32(a[9], b[9]));
    }

    #[test]
    fn exp_and_erf_match_libm() {
        let mut worst_exp = 0.0_f64;
        let mut worst_erf = 0.0_f64;
        let mut x = -90.0_f32;
        while x < 90.0 {
            let exact = libm::exp(x as f64);
            let rel = ((exp_f32(x) as f64 - exact) / exact.max(f64::MIN_POSITIVE)).abs();
            if exact > 1e-37 && exact < 3e38 {
                worst_exp = worst_exp.max(rel);
            }
            worst_erf = worst_erf.max((erf_f32(x) as f64 - libm::erf(x as f64)).abs());
            x += 0.001_3;
        }
        assert!(worst_exp < 3e-7, "exp: relative error {worst_exp}");
        assert!(worst_erf < 5e-7, "erf: absolute error {worst_erf}");
        assert!(exp_f32(f32::NAN).is_nan() && erf_f32(f32::NAN).is_nan());
        assert_eq!(exp_f32(-1000.0), 0.0);
        assert_eq!(exp_f32(1000.0), f32::INFINITY);
    }

    #[test]
    fn sums_and_maxima_cover_every_element() {
        let values: Vec<f32> = (0..1_003)
            .map(|i| ((i * 7919) % 1_000) as f32 * 0.5 - 3.0)
            .collect();
        let exact: f64 = values.iter().map(|&v| v as f64).sum();
        assert!((sum_f32(&values) as f64 - exact).abs() < 1e-3 * exact.abs());
        let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert_eq!(max_f32(&values), max);
        assert_eq!(
            max_f32(&values[..5]),
            values[..5]
                .iter()
                .copied()
                .fold(f32::NEG_INFINITY, f32::max)
        );
        assert_eq!(max_f32(&[]), f32::NEG_INFINITY);
        assert_eq!(sum_f32(&[]), 0.0);
        let mut out = vec![0.0; 3];
        let s = exp_shifted_f32(&[0.0, 1.0, -1.0e9], 1.0, &mut out);
        assert_eq!(out[2], 0.0);
        assert!((s - (1.0 + (-1.0_f32).exp())).abs() < 1e-6);
    }

    #[test]
    fn bernoulli_masks_have_the_probability_and_do_not_depend_on_threads() {
        let n = 1 << 20;
        let mask = bernoulli_f32(n, 0.9, 7);
        let ones = mask.iter().filter(|&&v| v == 1.0).count() as f64 / n as f64;
        assert!((ones - 0.9).abs() < 2e-3, "{ones}");
        assert_eq!(mask, bernoulli_f32(n, 0.9, 7));
        assert_ne!(mask, bernoulli_f32(n, 0.9, 8));
        assert!(bernoulli_f32(100, 0.0, 1).iter().all(|&v| v == 0.0));
        assert!(bernoulli_f32(100, 1.0, 1).iter().all(|&v| v == 1.0));
    }
}
