//! The one place that turns a user's backend choice into a Burn [`Device`].
//!
//! A choice is a short string: `flex` (the pure-Rust CPU backend, the default), `ndarray`
//! (deprecated CPU backend), `wgpu` (any graphics API; Vulkan's lavapipe counts), `cuda` or
//! `cuda:N`. [`select_device`] takes an explicit choice, falls back to the `BURN_DEVICE`
//! environment variable, then to the first compiled backend in the order above. A backend that
//! is not compiled in, or that finds no device on this machine, is a [`LoraError`], never a
//! panic in a worker thread.

use burn::tensor::Device;

use crate::error::{LoraError, Result};

/// The backends this crate knows how to build, in order of preference for the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// Burn's pure-Rust CPU backend (`flex` feature).
    Flex,
    /// Burn's ndarray CPU backend (`ndarray` feature, deprecated upstream).
    NdArray,
    /// wgpu on whatever graphics API the machine offers (`wgpu` feature).
    Wgpu,
    /// CUDA on the given GPU index (`cuda` feature).
    Cuda(usize),
}

impl Backend {
    /// Every backend kind, for listing valid choices.
    pub const ALL: [Backend; 4] = [
        Backend::Flex,
        Backend::NdArray,
        Backend::Wgpu,
        Backend::Cuda(0),
    ];

    /// The short name used on command lines, in `BURN_DEVICE` and as a Cargo feature.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Flex => "flex",
            Backend::NdArray => "ndarray",
            Backend::Wgpu => "wgpu",
            Backend::Cuda(_) => "cuda",
        }
    }

    /// Whether this build contains the backend (its Cargo feature was enabled).
    pub fn is_compiled(&self) -> bool {
        match self {
            Backend::Flex => cfg!(feature = "flex"),
            Backend::NdArray => cfg!(feature = "ndarray"),
            Backend::Wgpu => cfg!(feature = "wgpu"),
            Backend::Cuda(_) => cfg!(feature = "cuda"),
        }
    }

    /// Parses `flex`, `ndarray`, `wgpu`, `cuda` or `cuda:N` (case-insensitive).
    pub fn parse(spec: &str) -> Result<Backend> {
        let lower = spec.trim().to_ascii_lowercase();
        let (name, index) = match lower.split_once(':') {
            Some((name, index)) => (name, Some(index)),
            None => (lower.as_str(), None),
        };
        let unknown = || LoraError::UnknownDevice {
            spec: spec.to_string(),
            valid: vec![
                "flex".into(),
                "ndarray".into(),
                "wgpu".into(),
                "cuda".into(),
                "cuda:N".into(),
            ],
        };
        match (name, index) {
            ("flex", None) => Ok(Backend::Flex),
            ("ndarray", None) => Ok(Backend::NdArray),
            ("wgpu", None) => Ok(Backend::Wgpu),
            ("cuda", None) => Ok(Backend::Cuda(0)),
            ("cuda", Some(index)) => index.parse().map(Backend::Cuda).map_err(|_| unknown()),
            _ => Err(unknown()),
        }
    }

    /// Opens the backend's device, checking that it is compiled in and that the machine has one.
    pub fn device(&self) -> Result<Device> {
        if !self.is_compiled() {
            return Err(LoraError::BackendNotCompiled {
                backend: self.name().to_string(),
                compiled: compiled_backends()
                    .iter()
                    .map(|b| b.name().to_string())
                    .collect(),
            });
        }
        open(*self)
    }

    /// The backend a device belongs to (through an autodiff wrapper too).
    pub fn of_device(device: &Device) -> Option<Backend> {
        let name = format!("{device:?}").to_ascii_lowercase();
        if name.contains("ndarray") {
            Some(Backend::NdArray)
        } else if name.contains("wgpu") {
            Some(Backend::Wgpu)
        } else if name.contains("cuda") {
            Some(Backend::Cuda(0))
        } else if name.contains("flex") {
            Some(Backend::Flex)
        } else {
            None
        }
    }
}

impl core::fmt::Display for Backend {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Backend::Cuda(index) => write!(f, "cuda:{index}"),
            other => f.write_str(other.name()),
        }
    }
}

/// The backends compiled into this build, in order of preference.
pub fn compiled_backends() -> Vec<Backend> {
    Backend::ALL
        .into_iter()
        .filter(Backend::is_compiled)
        .collect()
}

/// Turns a user's choice into a device: the explicit `spec` if given, else `BURN_DEVICE`, else
/// the first compiled backend (`flex` before `ndarray` before `wgpu` before `cuda`).
///
/// ```
/// let device = lora_core::select_device(Some("flex")).unwrap();
/// let x = burn::tensor::Tensor::<1>::ones([3], &device);
/// assert_eq!(x.sum().into_scalar::<f32>(), 3.0);
///
/// let err = lora_core::select_device(Some("tpu")).unwrap_err();
/// assert!(err.to_string().contains("valid choices"));
/// ```
pub fn select_device(spec: Option<&str>) -> Result<Device> {
    let backend = select_backend(spec)?;
    tracing::debug!(%backend, "selecting device");
    backend.device()
}

/// The backend [`select_device`] opens for `spec`: the explicit choice, else `BURN_DEVICE`,
/// else the first compiled backend (for callers that also need to know which kind it is, e.g.
/// to choose a CPU or GPU tolerance).
pub fn select_backend(spec: Option<&str>) -> Result<Backend> {
    let from_env = std::env::var("BURN_DEVICE").ok();
    match spec.or(from_env.as_deref()) {
        Some(spec) => Backend::parse(spec),
        None => compiled_backends()
            .first()
            .copied()
            .ok_or_else(|| LoraError::BackendNotCompiled {
                backend: "any".into(),
                compiled: Vec::new(),
            }),
    }
}

#[allow(unreachable_code, unused_variables)]
fn open(backend: Backend) -> Result<Device> {
    match backend {
        Backend::Flex => {
            #[cfg(feature = "flex")]
            return Ok(Device::flex());
        }
        Backend::NdArray => {
            #[cfg(feature = "ndarray")]
            #[allow(deprecated)]
            return Ok(Device::ndarray());
        }
        Backend::Wgpu => {
            #[cfg(feature = "wgpu")]
            return open_listed(
                "wgpu",
                burn::tensor::Device::enumerate(burn::tensor::DeviceType::Wgpu).into_iter(),
                0,
                "no wgpu adapter was found (on a machine without a GPU, install Mesa's \
                 Vulkan driver: `apt-get install mesa-vulkan-drivers libvulkan1`)",
            );
        }
        Backend::Cuda(index) => {
            #[cfg(feature = "cuda")]
            return open_listed(
                "cuda",
                burn::tensor::Device::enumerate(burn::tensor::DeviceType::Cuda).into_iter(),
                index,
                "no CUDA GPU was found (is the NVIDIA driver loaded?)",
            );
        }
    }
    unreachable!("`Backend::device` checks that the backend is compiled in")
}

/// Picks the `index`-th enumerated device, or explains why there is none. Enumerating first
/// is what keeps a missing GPU from panicking inside a backend's worker thread.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn open_listed(
    backend: &str,
    devices: impl Iterator<Item = Device>,
    index: usize,
    reason: &str,
) -> Result<Device> {
    let devices: Vec<Device> = devices.collect();
    let count = devices.len();
    devices
        .into_iter()
        .nth(index)
        .ok_or_else(|| LoraError::NoDevice {
            backend: backend.to_string(),
            reason: if count == 0 {
                reason.to_string()
            } else {
                format!("device index {index} requested, but only {count} found")
            },
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_spelling() {
        assert_eq!(Backend::parse("flex").unwrap(), Backend::Flex);
        assert_eq!(Backend::parse(" NdArray ").unwrap(), Backend::NdArray);
        assert_eq!(Backend::parse("wgpu").unwrap(), Backend::Wgpu);
        assert_eq!(Backend::parse("cuda").unwrap(), Backend::Cuda(0));
        assert_eq!(Backend::parse("cuda:3").unwrap(), Backend::Cuda(3));
        assert_eq!(Backend::Cuda(3).to_string(), "cuda:3");
    }

    #[test]
    fn unknown_spec_lists_valid_choices() {
        for bad in ["tpu", "cuda:x", "flex:1", ""] {
            let e = Backend::parse(bad).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains("flex, ndarray, wgpu, cuda, cuda:N"), "{msg}");
        }
    }

    #[test]
    fn backends_not_compiled_in_are_errors_not_panics() {
        for backend in Backend::ALL {
            if backend.is_compiled() {
                continue;
            }
            let e = backend.device().unwrap_err();
            assert!(
                matches!(e, LoraError::BackendNotCompiled { .. }),
                "{backend}: {e}"
            );
            assert!(e.to_string().contains("--features"), "{e}");
        }
    }

    #[test]
    fn explicit_choice_wins() {
        let first = compiled_backends()[0];
        assert!(select_device(Some(first.name())).is_ok());
    }
}
