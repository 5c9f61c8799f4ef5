//! Running one test body on every compiled backend.
//!
//! [`backend_test!`](crate::backend_test) turns a function taking a [`Device`] into a module
//! with one `#[test]` per backend (`flex`, `ndarray`, `wgpu`, `cuda`), each gated on the
//! *calling* crate's Cargo feature of the same name. Every crate of this workspace that has
//! numerical tests declares those four features and forwards them to `lora-core`.
//!
//! A GPU backend that is compiled in but finds no device skips its body and says so on stderr,
//! unless `LORA_REQUIRE_GPU=1` is set (as `cargo xtask ci` does where it found a device), in
//! which case the missing device fails the test. A CPU backend never skips.

use burn::tensor::Device;

use crate::device::Backend;
use crate::error::LoraError;

/// The environment variable that turns a missing GPU device from a skip into a failure.
pub const REQUIRE_GPU_ENV: &str = "LORA_REQUIRE_GPU";

thread_local! {
    static CURRENT: std::cell::Cell<Option<Backend>> = const { std::cell::Cell::new(None) };
}

/// The backend [`run_on`] is running a body on in this thread (`None` outside one): tests use it
/// to pick tolerances (f32 on the CPU backends, looser on GPUs).
pub fn current_backend() -> Option<Backend> {
    CURRENT.with(|c| c.get())
}

/// The tolerance of an `f32` output compared with PyTorch's: `cpu` on the CPU backends (or
/// outside [`run_on`]), `gpu` on GPU backends.
pub fn tolerance(cpu: f32, gpu: f32) -> f32 {
    match current_backend() {
        Some(Backend::Wgpu | Backend::Cuda(_)) => gpu,
        _ => cpu,
    }
}

/// Runs `body` on the device of `backend` (`"flex"`, `"ndarray"`, `"wgpu"`, `"cuda"`).
///
/// # Panics
///
/// Panics (failing the test) when the backend cannot be opened, except for a GPU backend with
/// no device on this machine, which is reported as skipped unless [`REQUIRE_GPU_ENV`] is set.
pub fn run_on(backend: &str, body: impl FnOnce(Device)) {
    let backend = Backend::parse(backend).unwrap_or_else(|e| panic!("{e}"));
    match backend.device() {
        Ok(device) => {
            CURRENT.with(|c| c.set(Some(backend)));
            body(device);
            CURRENT.with(|c| c.set(None));
        }
        Err(LoraError::NoDevice { reason, .. })
            if matches!(backend, Backend::Wgpu | Backend::Cuda(_))
                && std::env::var(REQUIRE_GPU_ENV).as_deref() != Ok("1") =>
        {
            eprintln!("SKIPPED on {backend}: {reason}");
        }
        Err(e) => panic!("cannot run on {backend}: {e}"),
    }
}

/// Defines one test per compiled backend from a body that takes a `Device`.
///
/// ```ignore
/// lora_core::backend_test!(fn adds_up(device) {
///     let x = burn::tensor::Tensor::<1>::ones([4], &device);
///     assert_eq!(x.sum().into_scalar::<f32>(), 4.0);
/// });
/// ```
///
/// expands to a module `adds_up` with tests `adds_up::flex`, `adds_up::ndarray`,
/// `adds_up::wgpu` and `adds_up::cuda`, each compiled only when the calling crate enables the
/// feature of that name.
#[macro_export]
macro_rules! backend_test {
    ($(#[$meta:meta])* fn $name:ident($device:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[allow(dead_code)]
            fn body($device: $crate::burn::tensor::Device) $body

            #[cfg(feature = "flex")]
            #[test]
            fn flex() {
                $crate::testing::run_on("flex", body);
            }

            #[cfg(feature = "ndarray")]
            #[test]
            fn ndarray() {
                $crate::testing::run_on("ndarray", body);
            }

            #[cfg(feature = "wgpu")]
            #[test]
            fn wgpu() {
                $crate::testing::run_on("wgpu", body);
            }

            #[cfg(feature = "cuda")]
            #[test]
            fn cuda() {
                $crate::testing::run_on("cuda", body);
            }
        }
    };
}

/// Largest absolute difference between two tensors of the same shape.
pub fn max_abs_diff<const D: usize>(a: burn::tensor::Tensor<D>, b: burn::tensor::Tensor<D>) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    (a - b).abs().max().into_scalar::<f32>()
}

/// Largest absolute value of a tensor.
pub fn max_abs<const D: usize>(a: burn::tensor::Tensor<D>) -> f32 {
    a.abs().max().into_scalar::<f32>()
}
