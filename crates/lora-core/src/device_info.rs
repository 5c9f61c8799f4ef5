//! What a device says about itself: the part's name and what its kernels are compiled for (GPU
//! backends), and the bytes its allocator holds. `lora device` prints it; the benchmarks report
//! the device memory with every measurement.

use burn::tensor::Device;
use serde::Serialize;

/// A device's identity and memory, as far as its backend reports them (`None` where it does
/// not: the CPU backends report neither).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceInfo {
    /// The device as Burn prints it.
    pub device: String,
    /// The part as it names itself (`NVIDIA H200`, `llvmpipe (LLVM 15.0.6, 256 bits)`).
    pub name: Option<String>,
    /// What the runtime compiles for (`spirv_<vendor>_<device>` on wgpu, `ptx_sm90` on CUDA).
    pub fingerprint: Option<String>,
    /// Bytes of live allocations on the device.
    pub memory_in_use_bytes: Option<u64>,
    /// Bytes the device's allocator holds (live allocations and pages kept for reuse): what
    /// the process takes of the device's memory.
    pub memory_reserved_bytes: Option<u64>,
}

/// Asks `device` who it is and what memory its allocator holds.
///
/// ```
/// let device = lora_core::select_device(Some("flex")).unwrap();
/// let info = lora_core::device_info::device_info(&device);
/// assert!(info.device.to_lowercase().contains("flex"));
/// ```
pub fn device_info(device: &Device) -> DeviceInfo {
    #[cfg(any(feature = "wgpu", feature = "cuda"))]
    let identity = device.identity();
    #[cfg(not(any(feature = "wgpu", feature = "cuda")))]
    let identity: Option<Identity> = None;
    let usage = device.memory_pool_usage();
    DeviceInfo {
        device: format!("{device:?}"),
        name: identity.as_ref().map(|i| i.name.clone()),
        fingerprint: identity.as_ref().map(|i| i.fingerprint.clone()),
        memory_in_use_bytes: usage.as_ref().map(|u| u.bytes_in_use),
        memory_reserved_bytes: usage.as_ref().map(|u| u.bytes_reserved),
    }
}

/// The fields of a GPU backend's identity, in builds without one.
#[cfg(not(any(feature = "wgpu", feature = "cuda")))]
struct Identity {
    name: String,
    fingerprint: String,
}
