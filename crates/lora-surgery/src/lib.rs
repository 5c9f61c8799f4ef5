#![warn(missing_docs)]
//! # lora-surgery
//!
//! Putting LoRA adapters into `lora-burn` models with PEFT's rules: which modules
//! ([`TargetSpec`], [`TargetMatcher`]), with which rank and alpha, and a dry-run report
//! ([`plan`]) before anything changes ([`inject()`]). Models take part through the
//! [`Adaptable`] trait, which the `lora-models` architectures implement and
//! `#[derive(Adaptable)]` gives to any model built from [`LoraLinear`] layers.
//!
//! ```
//! use burn::module::Module;
//! use lora_core::{LoraConfig, LoraLinear, LoraLinearConfig, ParamCount};
//! use lora_surgery::{Adaptable, ModulePattern, TargetSpec};
//!
//! #[derive(Module, Debug, Adaptable)]
//! struct Attention {
//!     q_proj: LoraLinear,
//!     v_proj: LoraLinear,
//! }
//!
//! #[derive(Module, Debug, Adaptable)]
//! struct Model {
//!     layers: Vec<Attention>,
//! }
//!
//! let device = lora_core::select_device(Some("flex"))?;
//! let linear = || LoraLinearConfig::new(16, 16).init(&device);
//! let mut model = Model {
//!     layers: (0..2).map(|_| Attention { q_proj: linear(), v_proj: linear() }).collect(),
//! };
//! let spec = TargetSpec {
//!     target_modules: Some(ModulePattern::list(&["q_proj"])),
//!     ..Default::default()
//! };
//! let config = LoraConfig::new(4);
//! // The dry run names what would change; inject changes it.
//! let report = lora_surgery::plan(&model, &spec, &config)?;
//! assert_eq!(report.targeted[1].name, "layers.1.q_proj");
//! lora_surgery::inject(&mut model, "default", &spec, &config)?;
//! assert_eq!(ParamCount::of(&model).trainable, 2 * 4 * (16 + 16));
//!
//! // A PEFT adapter directory, and back.
//! let dir = tempfile::tempdir()?;
//! let peft = lora_surgery::PeftConfig::new(spec.clone(), config);
//! lora_surgery::save_adapter(&model, "default", &peft, dir.path())?;
//! let mut fresh = Model {
//!     layers: (0..2).map(|_| Attention { q_proj: linear(), v_proj: linear() }).collect(),
//! };
//! let loaded = lora_surgery::load_adapter(&mut fresh, dir.path(), "default")?;
//! assert_eq!(loaded.report.targeted.len(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod adaptable;
pub mod adapters;
pub mod error;
pub mod inject;
pub mod peft;
pub mod peft_model;
pub mod target;
pub mod task_type;
pub mod weight_path;

pub use adaptable::{
    Adaptable, BiasParam, join_path, selected_biases, set_biases_trainable, store_base_as,
};
pub use adapters::{
    adapter_names, delete_adapter, merge_adapters, merge_and_unload, set_active_adapters,
    set_adapter_trainable, unload, with_adapters_disabled,
};
pub use error::{Result, SurgeryError};
pub use inject::{InjectionReport, PlannedModule, inject, plan};
/// The `lora-core` types a model of your own is built and configured with.
pub use lora_core::{LoraConfig, LoraInit, LoraLinear, LoraLinearConfig, ParamCount};
/// `#[derive(Adaptable)]`: see the `lora-derive` crate.
pub use lora_derive::Adaptable;
pub use peft::{
    AdapterFiles, CONFIG_FILE, LoadedAdapter, PeftConfig, WEIGHTS_FILE, adapter_tensors,
    apply_adapter, load_adapter, save_adapter,
};
pub use peft_model::PeftModel;
pub use target::{BiasMode, LayerIndices, ModulePattern, TargetMatcher, TargetSpec};
pub use task_type::TaskType;
pub use weight_path::{WeightPathLora, apply_weight_path_lora};
