#![warn(missing_docs)]
//! # lora-eval
//!
//! Evaluation for `lora-burn`: aggregation over seeds ([`MeanStd`]) and bootstrap intervals
//! ([`bootstrap_ci`]), inference latency ([`measure`]), result tables as Markdown / CSV
//! ([`Table`]), SVG plots ([`plot`]), and the LoRA paper's experiment on real data
//! ([`experiment`]), which `cargo xtask experiment` runs. The classification metrics
//! themselves (accuracy, precision, recall, F1, MCC, perplexity) are defined once, in
//! `lora_train::metrics`, and re-exported here.
//!
//! ```no_run
//! use lora_eval::experiment::{ExperimentConfig, Preset, run_experiment};
//!
//! let config = ExperimentConfig::preset(Preset::Quick);
//! let (_results, report) = run_experiment(&config, "results/quick".as_ref())?;
//! println!("report: {}", report.display());
//! # Ok::<(), lora_eval::EvalError>(())
//! ```

pub mod bench;
pub mod chat;
pub mod conformance;
pub mod error;
pub mod experiment;
pub mod generation;
pub mod latency;
pub mod plot;
pub mod report;
pub mod stats;

pub use error::{EvalError, Result};
pub use latency::{Latency, measure};
pub use lora_train::metrics::{self, ClassificationMetrics, ConfusionMatrix, perplexity};
pub use report::{MachineInfo, Table};
pub use stats::{MeanStd, bootstrap_ci};
