//! Backend operations implementations.

use alloc::borrow::Cow;
use burn_backend::DType;
use burn_std::{bf16, f16};

use crate::FlexTensor;

/// The `DType` that matches `isize` on the current platform.
#[cfg(target_pointer_width = "64")]
pub(crate) const INDEX_DTYPE: DType = DType::I64;
/// The `DType` that matches `isize` on the current platform.
#[cfg(target_pointer_width = "32")]
pub(crate) const INDEX_DTYPE: DType = DType::I32;

/// Minimum total element count for rayon fan-out on per-row or per-chunk loops.
/// Below this, task-dispatch overhead dominates the per-unit work.
#[cfg(feature = "rayon")]
pub(crate) const PARALLEL_THRESHOLD: usize = 256 * 1024;

/// Element-wise kernels shorter than this run on the calling thread (`for_each_chunk_mut`,
/// the parallel zip traversals); longer ones split into [`ELEMENTWISE_CHUNK`]-sized tasks.
/// An element-wise pass over 32K `f32` (128 KB) takes about 10 µs on one core, which is
/// where a rayon fan-out starts to pay on two cores or more.
pub(crate) const ELEMENTWISE_PARALLEL_MIN: usize = 1 << 15;
/// Elements per parallel element-wise task.
pub(crate) const ELEMENTWISE_CHUNK: usize = 1 << 13;

/// `f(start, chunk)` over consecutive chunks of `out` (`start`: the chunk's first index),
/// across the rayon pool when `out` is long enough, else on the calling thread.
pub(crate) fn for_each_chunk_mut<E: Send>(
    out: &mut [E],
    f: impl Fn(usize, &mut [E]) + Sync + Send,
) {
    #[cfg(feature = "rayon")]
    if out.len() >= ELEMENTWISE_PARALLEL_MIN {
        use rayon::prelude::*;
        out.par_chunks_mut(ELEMENTWISE_CHUNK)
            .enumerate()
            .for_each(|(i, chunk)| f(i * ELEMENTWISE_CHUNK, chunk));
        return;
    }
    f(0, out);
}

/// `f` of every element of `tensor`, written over it when the tensor owns its contiguous
/// buffer alone from offset 0 (chunks across the pool when long, each loop compiled for the
/// CPU's vector width); otherwise the tensor comes back as `Err` for the caller's allocating
/// path. The one in-place map of the unary, scalar-binary and `fast_math` kernels.
pub(crate) fn map_in_place<E: burn_backend::Element + bytemuck::Pod + Send>(
    mut tensor: FlexTensor,
    f: impl Fn(E) -> E + Sync + Send,
) -> Result<FlexTensor, FlexTensor> {
    if !tensor.is_unique() {
        return Err(tensor);
    }
    let Some((0, end)) = tensor.layout().contiguous_offsets() else {
        return Err(tensor);
    };
    let storage: &mut [E] = tensor.storage_mut();
    for_each_chunk_mut(&mut storage[..end], |_, chunk| {
        fast_math::vectorized(
            #[inline(always)]
            || {
                for x in chunk.iter_mut() {
                    *x = f(*x);
                }
            },
        )
    });
    Ok(tensor)
}

/// A vector of `n` elements filled chunk by chunk (in parallel when long), each chunk by
/// `fill(start, slots)`, without zero-filling it first. Every wrapper below writes every slot
/// of the chunk it is given, which is what makes the final `set_len` sound.
fn collect_chunks<T: Send>(
    n: usize,
    fill: impl Fn(usize, &mut [core::mem::MaybeUninit<T>]) + Sync + Send,
) -> alloc::vec::Vec<T> {
    let mut out = alloc::vec::Vec::with_capacity(n);
    for_each_chunk_mut(&mut out.spare_capacity_mut()[..n], fill);
    // SAFETY: the chunks cover `[0, n)` and each caller's `fill` writes every slot of its
    // chunk (see `par_map`, `par_zip_map`, `par_zeroed`).
    unsafe { out.set_len(n) };
    out
}

/// `f` of every element of `src`, computed in parallel chunks when long.
pub(crate) fn par_map<S: Copy + Sync, T: Send>(
    src: &[S],
    f: impl Fn(S) -> T + Sync + Send,
) -> alloc::vec::Vec<T> {
    collect_chunks(src.len(), |start, slots| {
        let src = &src[start..start + slots.len()];
        fast_math::vectorized(
            #[inline(always)]
            || {
                for (slot, &x) in slots.iter_mut().zip(src) {
                    slot.write(f(x));
                }
            },
        )
    })
}

/// `f` of every pair `(a[i], b[i])` (slices of one length), computed in parallel chunks when
/// long.
pub(crate) fn par_zip_map<A: Copy + Sync, B: Copy + Sync, T: Send>(
    a: &[A],
    b: &[B],
    f: impl Fn(A, B) -> T + Sync + Send,
) -> alloc::vec::Vec<T> {
    assert_eq!(
        a.len(),
        b.len(),
        "par_zip_map: operands of different lengths"
    );
    collect_chunks(a.len(), |start, slots| {
        let end = start + slots.len();
        fast_math::vectorized(
            #[inline(always)]
            || {
                for ((slot, &x), &y) in slots.iter_mut().zip(&a[start..end]).zip(&b[start..end]) {
                    slot.write(f(x, y));
                }
            },
        )
    })
}

/// `n` zeros, written in parallel chunks when long (a `calloc` of memory the allocator reuses
/// is one serial `memset`).
pub(crate) fn par_zeroed<T: bytemuck::Zeroable + Send>(n: usize) -> alloc::vec::Vec<T> {
    collect_chunks(n, |_, slots| {
        for slot in slots.iter_mut() {
            slot.write(T::zeroed());
        }
    })
}

/// Wrapper for raw mutable pointers that can be sent across rayon threads.
///
/// # Safety
///
/// The caller must ensure:
/// - The pointer remains valid for the lifetime of all uses
/// - No two threads write to the same offset
/// - No references to the underlying data exist during writes
#[cfg(feature = "rayon")]
pub(crate) struct SendMutPtr<T>(*mut T);

#[cfg(feature = "rayon")]
unsafe impl<T> Send for SendMutPtr<T> {}
#[cfg(feature = "rayon")]
unsafe impl<T> Sync for SendMutPtr<T> {}

#[cfg(feature = "rayon")]
impl<T> SendMutPtr<T> {
    pub(crate) fn new(ptr: *mut T) -> Self {
        Self(ptr)
    }

    /// Write `val` at the given element offset.
    ///
    /// # Safety
    /// Offset must be in bounds and no other thread may write to the same offset.
    pub(crate) unsafe fn write(&self, offset: usize, val: T) {
        unsafe { self.0.add(offset).write(val) }
    }

    /// Returns the raw pointer offset by `offset` elements.
    ///
    /// # Safety
    /// Offset must be in bounds.
    pub(crate) unsafe fn ptr_add(&self, offset: usize) -> *mut T {
        unsafe { self.0.add(offset) }
    }
}

/// Read a float tensor's storage as f32 values, regardless of source dtype.
/// Returns a borrowed slice for F32 (zero-copy) and an owned Vec for other
/// float dtypes (F64, F16, BF16).
///
/// Returns elements in underlying buffer order. Callers needing logical
/// iteration order must call `to_contiguous()` first.
///
/// # Panics
/// Panics if the tensor's dtype is not one of F32, F64, F16, or BF16.
pub(crate) fn float_storage_as_f32(tensor: &FlexTensor) -> Cow<'_, [f32]> {
    match tensor.dtype() {
        DType::F32 => Cow::Borrowed(tensor.storage::<f32>()),
        DType::F64 => Cow::Owned(tensor.storage::<f64>().iter().map(|&x| x as f32).collect()),
        DType::F16 => Cow::Owned(
            tensor
                .storage::<f16>()
                .iter()
                .map(|x| f32::from(*x))
                .collect(),
        ),
        DType::BF16 => Cow::Owned(
            tensor
                .storage::<bf16>()
                .iter()
                .map(|x| f32::from(*x))
                .collect(),
        ),
        other => panic!("float_storage_as_f32: unsupported dtype {:?}", other),
    }
}

pub mod activation;
pub mod attention;
pub mod binary;
mod bool;
pub mod cat;
pub mod comparison;
#[macro_use]
mod conv_common;
pub mod conv;
pub mod conv_transpose;
pub mod cumulative;
pub mod deform_conv;
pub mod expand;
pub mod fast_math;
#[cfg(feature = "fft")]
pub mod fft;
pub mod flip;
mod float;
pub mod gather_scatter;
pub mod grid_sample;
mod int;
pub mod interpolate;
pub mod mask;
pub mod matmul;
mod module;
pub mod pool;
pub mod qmatmul;
#[cfg(all(feature = "std", target_arch = "x86_64"))]
mod qmatmul_simd;
mod qtensor;
pub mod reduce;
pub mod repeat_dim;
pub mod slice;
pub mod sort;
mod transaction;
pub mod unary;
pub mod unfold;
