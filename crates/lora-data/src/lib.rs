#![warn(missing_docs)]
//! # lora-data
//!
//! Data for `lora-burn`: readers for your own TSV / CSV / JSONL files and text corpora
//! ([`readers`]), labelled examples and seeded splits ([`dataset`]), tokenization with
//! dynamic padding and length bucketing ([`batching`]), and supervised fine-tuning data:
//! prompt / completion pairs and conversations ([`sft`]) rendered with Hugging Face chat
//! templates ([`chat`]), masked so that only answers are learned, truncated, padded or packed.
//! No Burn here: batches are host-side vectors that the training crate turns into tensors.
//! (The pinned real assets and built-in tasks are `lora-assets`'.)
//!
//! ```no_run
//! use lora_data::readers::{Columns, read_examples};
//!
//! let columns = Columns { text: "review".into(), text_pair: None, label: "stars".into() };
//! let (examples, labels) = read_examples("train.csv".as_ref(), &columns, None)?;
//! println!("{} examples, labels {:?}", examples.len(), labels.names());
//! # Ok::<(), lora_data::DataError>(())
//! ```

pub mod batching;
pub mod chat;
pub mod dataset;
pub mod error;
pub mod readers;
pub mod rng;
pub mod sft;

pub use batching::{EncodedBatch, TokenizedExample, encode_batch, set_max_len};
pub use chat::{ChatTemplate, SpecialTokens};
pub use dataset::{Example, LabelVocab, TaskSplits};
pub use error::{DataError, Result};
pub use readers::{Columns, TableFormat};
pub use rng::SeededRng;
pub use sft::{
    IGNORE_INDEX, Message, Role, SftBatch, SftEncoded, SftEncoder, SftExample, SftOptions,
    SftSplits,
};
