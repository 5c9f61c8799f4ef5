#![warn(missing_docs)]
//! # lora-core
//!
//! The LoRA math of `lora-burn`, on [Burn](https://burn.dev): a frozen linear layer that carries
//! named low-rank adapters with PEFT's semantics, exact merge and unmerge, parameter counting,
//! the bottleneck adapter used by the AdapterH / AdapterL baselines, and the one function that
//! turns a backend name into a Burn device.
//!
//! LoRA (Hu et al., 2021) freezes a pre-trained weight `W0` and learns `ΔW = B·A` of rank `r`:
//! `h = W0·x + s·B(A·x)` with `s = α/r` (or `α/√r`, rsLoRA). Only `A` and `B` train; after
//! training `B·A` merges into `W0`, so inference costs nothing extra.
//!
//! ```
//! use burn::tensor::{Distribution, Tensor};
//! use lora_core::{LoraConfig, LoraLinearConfig, ParamCount};
//!
//! // Train on an autodiff device: only the adapter's factors get gradients.
//! let device = lora_core::select_device(Some("flex")).unwrap().autodiff();
//! let mut layer = LoraLinearConfig::new(64, 32).init(&device);
//! layer.add_adapter("default", LoraConfig::new(8).with_alpha(16.0)).unwrap();
//! assert_eq!(ParamCount::of(&layer).trainable, 8 * (64 + 32));
//!
//! let x = Tensor::<2>::random([4, 64], Distribution::Default, &device);
//! let grads = layer.forward(x).sum().backward();
//! assert!(layer.weight.grad(&grads).is_none());
//! assert!(layer.adapters[0].lora_a.grad(&grads).is_some());
//!
//! // Fold the update into the weight for inference.
//! let plain: burn::nn::Linear = layer.merge_and_unload().unwrap();
//! assert_eq!(plain.weight.dims(), [64, 32]);
//! ```
//!
//! Backends are Cargo features (`flex` by default, `ndarray`, `wgpu`, `cuda`), chosen at run time
//! with [`select_device`].

pub mod adapter;
pub mod base_dtype;
pub mod bottleneck;
pub mod compute_pool;
pub mod config;
pub mod device;
pub mod device_info;
pub mod error;
pub mod host_memory;
pub mod io;
pub mod linear;
pub mod lock;
pub mod params;
pub mod quant_blocks;
pub mod testing;

pub use adapter::LoraAdapter;
pub use base_dtype::BaseDType;
pub use bottleneck::{AdapterActivation, BottleneckAdapter, BottleneckAdapterConfig};
pub use config::{LoraConfig, LoraInit};
pub use device::{Backend, compiled_backends, select_backend, select_device};
pub use error::{LoraError, Result};
pub use io::{HostTensor, IoError, NamedTensors, SaveDtype};
pub use linear::{LoraLinear, LoraLinearConfig, SavedCopy};
pub use params::{ParamBytes, ParamCount};
pub use quant_blocks::QuantBlocks;

/// The Burn version this crate is built on, re-exported so that macros and downstream crates
/// name exactly the same types.
pub use burn;
