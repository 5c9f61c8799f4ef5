//! Instruction and chat data for decoders, shared by `lora train`, `lora eval` and
//! `lora generate`: the flags, the model's chat template (or `--chat-template FILE`), the
//! supervised examples of a built-in generation task or a file, and the tokens that end a turn.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use lora_assets::{AssetCache, BuiltinSftTask};
use lora_data::chat::{ChatTemplate, SpecialTokens};
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

/// The chat template to render with: `--chat-template FILE`, else the model's own
/// (`tokenizer_config.json` / `chat_template.jinja` of a directory, `tokenizer.chat_template` of
/// a GGUF file); `None` when the model has none.
pub fn chat_template(
    source: &ModelSource,
    tokenizer: &Tokenizer,
    file: Option<&Path>,
) -> Result<Option<ChatTemplate>> {
    let special = || special_tokens(source, tokenizer);
    if let Some(file) = file {
        return Ok(Some(ChatTemplate::from_file(file, special()?)?));
    }
    match source {
        ModelSource::HfDir(dir) => {
            let has = dir.join("chat_template.jinja").is_file()
                || dir.join("chat_template.json").is_file()
                || std::fs::read_to_string(dir.join("tokenizer_config.json"))
                    .is_ok_and(|t| t.contains("\"chat_template\""));
            if !has {
                return Ok(None);
            }
            Ok(Some(ChatTemplate::from_model_dir(dir, None)?))
        }
        ModelSource::Gguf(path) => {
            let file = lora_models::GgufFile::open(path)?;
            let Some(source) = file
                .get("tokenizer.chat_template")
                .and_then(lora_models::gguf::GgufValue::as_str)
            else {
                return Ok(None);
            };
            Ok(Some(ChatTemplate::new(
                source,
                format!("{}, tokenizer.chat_template", path.display()),
                special()?,
            )?))
        }
    }
}

/// The special tokens templates see (`bos_token`, `eos_token`): from `tokenizer_config.json`,
/// or from a GGUF file's `tokenizer.ggml.*_token_id`.
fn special_tokens(source: &ModelSource, tokenizer: &Tokenizer) -> Result<SpecialTokens> {
    match source {
        ModelSource::HfDir(dir) => {
            let config = dir.join("tokenizer_config.json");
            Ok(if config.is_file() {
                SpecialTokens::from_tokenizer_config(&config)?
            } else {
                SpecialTokens::default()
            })
        }
        ModelSource::Gguf(path) => {
            let file = lora_models::GgufFile::open(path)?;
            let token = |key: &str| {
                file.get(key)
                    .and_then(lora_models::gguf::GgufValue::as_u64)
                    .and_then(|id| tokenizer.id_to_token(id as u32))
            };
            Ok(SpecialTokens {
                bos: token("tokenizer.ggml.bos_token_id"),
                eos: token("tokenizer.ggml.eos_token_id"),
                ..SpecialTokens::default()
            })
        }
    }
}

/// The ids that end generation: the model's `eos_token_id`s, the `eos_token_id`s of
/// `generation_config.json`, and the chat template's end token (`<|im_end|>`, `<|eot_id|>`, …).
pub fn stop_tokens(
    source: &ModelSource,
    tokenizer: &Tokenizer,
    template: Option<&ChatTemplate>,
) -> Vec<u32> {
    let mut stops = Vec::new();
    if let ModelSource::HfDir(dir) = source
        && let Ok(text) = std::fs::read_to_string(dir.join("generation_config.json"))
        && let Ok(json) = serde_json::from_str::<serde_json::Value>(&text)
    {
        match &json["eos_token_id"] {
            serde_json::Value::Number(n) => stops.extend(n.as_u64().map(|v| v as u32)),
            serde_json::Value::Array(a) => {
                stops.extend(a.iter().filter_map(|v| v.as_u64()).map(|v| v as u32))
            }
            _ => {}
        }
    }
    if let Some(eos) = template.and_then(|t| t.special_tokens().eos.as_deref())
        && let Some(id) = tokenizer.token_to_id(eos)
    {
        stops.push(id);
    }
    stops.sort_unstable();
    stops.dedup();
    stops
}

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
