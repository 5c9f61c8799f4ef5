#![warn(missing_docs)]
//! # lora-surgery
//!
//! Putting LoRA adapters into `lora-burn` models with PEFT's rules: which modules
//! ([`TargetSpec`], [`TargetMatcher`]), with which rank and alpha, and a dry-run report
//! ([`plan`]) before anything changes ([`inject`]). Models take part through the
//! [`Adaptable`] trait, which the `lora-models` architectures implement.

pub mod error;
pub mod inject;
pub mod peft;
pub mod target;

pub use error::{Result, SurgeryError};
pub use inject::{Adaptable, InjectionReport, PlannedModule, inject, plan};
pub use peft::{LoadedAdapter, PeftConfig, load_adapter, save_adapter, write_atomic};
pub use target::{LayerIndices, ModulePattern, TargetMatcher, TargetSpec};
