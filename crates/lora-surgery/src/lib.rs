#![warn(missing_docs)]
//! # lora-surgery
//!
//! Putting LoRA adapters into `lora-burn` models with PEFT's rules: which modules
//! ([`TargetSpec`], [`TargetMatcher`]), with which rank and alpha, and a dry-run report
//! ([`plan`]) before anything changes ([`inject`]). Models take part through the
//! [`Adaptable`] trait, which the `lora-models` architectures implement and
//! `#[derive(Adaptable)]` gives to any model built from [`LoraLinear`] layers.

pub mod adapters;
pub mod error;
pub mod inject;
pub mod peft;
pub mod target;
pub mod weight_path;

pub use adapters::{
    adapter_names, delete_adapter, merge_adapters, merge_and_unload, set_active_adapters,
    set_adapter_trainable, unload, with_adapters_disabled,
};
pub use error::{Result, SurgeryError};
pub use inject::{
    Adaptable, InjectionReport, PlannedModule, inject, join_path, plan, selected_biases,
    set_biases_trainable,
};
/// A bias parameter, as [`Adaptable::biases_mut`] hands them out.
pub type BiasParam = burn::module::Param<burn::tensor::Tensor<1>>;
pub use lora_core::LoraLinear;
/// `#[derive(Adaptable)]`: see the `lora-derive` crate.
pub use lora_derive::Adaptable;
pub use peft::{
    LoadedAdapter, PeftConfig, load_adapter, load_seq_cls_adapter, save_adapter, write_atomic,
};
pub use target::{BiasMode, LayerIndices, ModulePattern, TargetMatcher, TargetSpec};
pub use weight_path::{WeightPathLora, apply_weight_path_lora};
