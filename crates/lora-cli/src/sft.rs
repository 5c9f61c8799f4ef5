//! Instruction and chat data for decoders, shared by `lora train`, `lora eval` and
//! `lora generate`: the flags, the model's chat template (or `--chat-template FILE`), the
//! supervised examples of a built-in generation task or a file, and the tokens that end a turn.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use lora_assets::{AssetCache, BuiltinSftTask};
use lora_data::chat::ChatTemplate;
use lora_data::sft::{SftColumns, SftEncoded, SftEncoder, SftOptions, read_sft};
use lora_data::{SftExample, SftSplits};
use lora_models::ModelSource;
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

/// The flags of instruction / chat data.
#[derive(Args, Clone, Default, Debug, Serialize, Deserialize)]
pub struct SftDataArgs {
    /// The prompt column of a TSV / CSV / JSONL prompt-completion file (default: prompt).
    #[arg(long)]
    #[serde(default)]
    pub prompt_col: Option<String>,
    /// The completion column (default: completion).
    #[arg(long)]
    #[serde(default)]
    pub completion_col: Option<String>,
    /// A Jinja chat template to use instead of the model's own.
    #[arg(long)]
    #[serde(default)]
    pub chat_template: Option<PathBuf>,
}

impl SftDataArgs {
    /// The columns of a prompt-completion table.
    pub fn columns(&self) -> SftColumns {
        let default = SftColumns::default();
        SftColumns {
            prompt: self.prompt_col.clone().unwrap_or(default.prompt),
            completion: self.completion_col.clone().unwrap_or(default.completion),
        }
    }
}

/// Whether `path` holds supervised examples (JSONL, CSV, TSV) rather than a `.txt` corpus.
pub fn is_sft_file(path: &Path) -> bool {
    path.extension().is_some_and(|e| {
        ["jsonl", "csv", "tsv"]
            .iter()
            .any(|x| e.eq_ignore_ascii_case(x))
    })
}

/// The chat template to render with: `--chat-template FILE`, else the model's own (see
/// [`lora_eval::chat::model_chat_template`]); `None` when the model has none.
pub fn chat_template(
    source: &ModelSource,
    tokenizer: &Tokenizer,
    file: Option<&Path>,
) -> Result<Option<ChatTemplate>> {
    Ok(lora_eval::chat::model_chat_template(
        source, tokenizer, file,
    )?)
}

pub use lora_eval::chat::stop_tokens;

/// The supervised examples: a built-in generation task, or a file (split 90 / 10 into train
/// and dev when no dev file is given).
pub fn sft_splits(
    data: Option<&str>,
    train: Option<&Path>,
    dev: Option<&Path>,
    columns: &SftColumns,
) -> Result<SftSplits> {
    match (data, train) {
        (Some(name), _) => Ok(BuiltinSftTask::from_name(name)?.load(&AssetCache::from_env())?),
        (None, Some(path)) => {
            let examples = read_sft(path, columns)?;
            let (train_examples, dev_examples) = match dev {
                Some(dev) => (examples, read_sft(dev, columns)?),
                None => {
                    let (train, dev, _) = lora_data::dataset::split_seeded(
                        examples,
                        0.1,
                        0.0,
                        lora_assets::tasks::SPLIT_SEED,
                    )?;
                    (train, dev)
                }
            };
            Ok(SftSplits {
                name: path
                    .file_name()
                    .map_or_else(|| "data".into(), |n| n.to_string_lossy().into_owned()),
                train: train_examples,
                dev: dev_examples,
                test: Vec::new(),
            })
        }
        (None, None) => bail!(
            "no data: pass --data with a built-in task ({}) or --train FILE",
            lora_assets::SFT_TASK_NAMES.join(", ")
        ),
    }
}

/// Encodes examples for training (ids and labels), saying how many were cut to `max_len`.
pub fn encode(
    tokenizer: &Tokenizer,
    template: Option<&ChatTemplate>,
    examples: &[SftExample],
    options: SftOptions,
    what: &str,
    quiet: bool,
) -> Result<Vec<SftEncoded>> {
    let encoder = SftEncoder::new(tokenizer, template, options)?;
    let (encoded, stats) = encoder
        .encode_all(examples)
        .with_context(|| format!("encoding the {what} examples"))?;
    if stats.truncated > 0 && !quiet {
        eprintln!(
            "{} of {} {what} examples were longer than --max-len {}: their prompts were cut from \
             the left (answers kept)",
            stats.truncated, stats.examples, options.max_len
        );
    }
    Ok(encoded)
}
