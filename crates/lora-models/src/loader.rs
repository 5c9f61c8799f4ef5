//! Loading a model and its tokenizer from a Hugging Face directory or a GGUF file.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use tokenizers::Tokenizer;

use crate::bert::{BertConfig, BertForSequenceClassification, BertModel};
use crate::error::{ModelError, Result, io_error};
use crate::export::{NamedFiles, TOKENIZER_SIDE_FILES};
use crate::gguf::GgufFile;
use crate::llama::{GgufLlamaWeights, LlamaConfig, LlamaForCausalLM};
use crate::tokenizer::{load_tokenizer_json, tokenizer_from_gguf};
use crate::weights::SafetensorsWeights;

/// Where a model lives: a Hugging Face directory (`config.json`, `model.safetensors` or its
/// sharded index, `tokenizer.json`) or a single `.gguf` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A Hugging Face model directory.
    HfDir(PathBuf),
    /// A GGUF file.
    Gguf(PathBuf),
}

/// The architectures this crate implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// BERT-style encoders (`model_type: "bert"`).
    Bert,
    /// Llama-style decoders (`model_type: "llama"`, or a GGUF `general.architecture: "llama"`).
    Llama,
}

impl ModelSource {
    /// Classifies a path: a file ending in `.gguf` is GGUF, a directory is a Hugging Face
    /// directory; anything else is an error that says what was expected.
    pub fn path(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        {
            ModelSource::Gguf(path)
        } else {
            ModelSource::HfDir(path)
        }
    }

    /// The path itself.
    pub fn as_path(&self) -> &Path {
        match self {
            ModelSource::HfDir(p) | ModelSource::Gguf(p) => p,
        }
    }

    /// Reads just enough to tell the architecture (`model_type` or GGUF metadata).
    pub fn architecture(&self) -> Result<Architecture> {
        match self {
            ModelSource::Gguf(path) => {
                let file = GgufFile::open(path)?;
                LlamaConfig::from_gguf(&file, path).map(|_| Architecture::Llama)
            }
            ModelSource::HfDir(dir) => {
                let path = required_file(dir, "config.json")?;
                let text = std::fs::read_to_string(&path).map_err(io_error(&path))?;
                let value: serde_json::Value =
                    serde_json::from_str(&text).map_err(|e| ModelError::Config {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                match value.get("model_type").and_then(|v| v.as_str()) {
                    Some("bert") => Ok(Architecture::Bert),
                    Some("llama") => Ok(Architecture::Llama),
                    other => Err(ModelError::Config {
                        path,
                        reason: format!(
                            "model_type {other:?} is not supported (supported: \"bert\", \"llama\")"
                        ),
                    }),
                }
            }
        }
    }
}

/// `dir/name`, which a Hugging Face model directory must contain.
fn required_file(dir: &Path, name: &str) -> Result<PathBuf> {
    if !dir.is_dir() {
        return Err(ModelError::NotAModel {
            path: dir.to_path_buf(),
            reason: "expected a Hugging Face model directory (config.json, model.safetensors, \
                     tokenizer.json) or a .gguf file"
                .into(),
        });
    }
    let path = dir.join(name);
    if !path.is_file() {
        return Err(ModelError::NotAModel {
            path: dir.to_path_buf(),
            reason: format!("the directory has no {name}"),
        });
    }
    Ok(path)
}

/// The config, tokenizer and weights of a BERT Hugging Face directory.
fn bert_files(source: &ModelSource) -> Result<(BertConfig, Tokenizer, SafetensorsWeights)> {
    let ModelSource::HfDir(dir) = source else {
        return Err(ModelError::NotAModel {
            path: source.as_path().to_path_buf(),
            reason: "BERT models load from a Hugging Face directory, not a GGUF file".into(),
        });
    };
    let config = BertConfig::from_file(&required_file(dir, "config.json")?)?;
    let tokenizer = load_tokenizer_json(&required_file(dir, "tokenizer.json")?)?;
    let weights = SafetensorsWeights::open_dir(dir)?;
    Ok((config, tokenizer, weights))
}

/// Loads a BERT encoder and its tokenizer from a Hugging Face directory.
pub fn load_bert(source: &ModelSource, device: &Device) -> Result<(BertModel, Tokenizer)> {
    let (config, tokenizer, weights) = bert_files(source)?;
    let model = BertModel::load(&config, &weights, device)?;
    tracing::info!(path = %source.as_path().display(), layers = config.num_hidden_layers, "loaded BERT");
    Ok((model, tokenizer))
}

/// Loads a `BertForSequenceClassification` directory (encoder and `classifier` head, such as
/// one `lora merge` wrote) with its tokenizer and config (whose `id2label` names the labels).
pub fn load_bert_classifier(
    source: &ModelSource,
    device: &Device,
) -> Result<(BertForSequenceClassification, Tokenizer, BertConfig)> {
    let (config, tokenizer, weights) = bert_files(source)?;
    let model = BertForSequenceClassification::load(&config, &weights, device)?;
    tracing::info!(path = %source.as_path().display(), labels = model.num_labels(), "loaded BERT classifier");
    Ok((model, tokenizer, config))
}

/// The `config.json` of a Hugging Face directory (`None` for a GGUF file).
pub fn read_bert_config(source: &ModelSource) -> Result<Option<BertConfig>> {
    match source {
        ModelSource::HfDir(dir) => {
            BertConfig::from_file(&required_file(dir, "config.json")?).map(Some)
        }
        ModelSource::Gguf(_) => Ok(None),
    }
}

/// The text of the model's `tokenizer.json` as it is on disk (with its own padding and
/// truncation presets), or, for a GGUF file, the rebuilt tokenizer serialised; plus the
/// tokenizer side files ([`TOKENIZER_SIDE_FILES`]) the directory holds. A saved copy of the
/// model tokenizes as the original does.
pub fn tokenizer_files(
    source: &ModelSource,
    tokenizer: &Tokenizer,
) -> Result<(String, NamedFiles)> {
    match source {
        ModelSource::HfDir(dir) => {
            let path = required_file(dir, "tokenizer.json")?;
            let text = std::fs::read_to_string(&path).map_err(io_error(&path))?;
            let mut side = Vec::new();
            for name in TOKENIZER_SIDE_FILES {
                let path = dir.join(name);
                if path.is_file() {
                    side.push((
                        name.to_string(),
                        std::fs::read(&path).map_err(io_error(&path))?,
                    ));
                }
            }
            Ok((text, side))
        }
        ModelSource::Gguf(_) => {
            let text = tokenizer
                .to_string(true)
                .map_err(|e| ModelError::Tokenizer {
                    context: "serialising the tokenizer".into(),
                    reason: e.to_string(),
                })?;
            Ok((text, Vec::new()))
        }
    }
}

/// Loads a Llama decoder and its tokenizer from a Hugging Face directory or a GGUF file
/// (dequantised to `f32`, tokenizer rebuilt from the metadata).
pub fn load_llama(source: &ModelSource, device: &Device) -> Result<(LlamaForCausalLM, Tokenizer)> {
    match source {
        ModelSource::Gguf(path) => {
            let file = GgufFile::open(path)?;
            let config = LlamaConfig::from_gguf(&file, path)?;
            let tokenizer = tokenizer_from_gguf(&file)?;
            let model =
                LlamaForCausalLM::load(&config, &GgufLlamaWeights::new(&file, &config), device)?;
            tracing::info!(path = %path.display(), layers = config.num_hidden_layers, "loaded Llama (GGUF)");
            Ok((model, tokenizer))
        }
        ModelSource::HfDir(dir) => {
            let config = LlamaConfig::from_file(&required_file(dir, "config.json")?)?;
            let tokenizer = load_tokenizer_json(&required_file(dir, "tokenizer.json")?)?;
            let weights = SafetensorsWeights::open_dir(dir)?;
            let model = LlamaForCausalLM::load(&config, &weights, device)?;
            tracing::info!(path = %dir.display(), layers = config.num_hidden_layers, "loaded Llama");
            Ok((model, tokenizer))
        }
    }
}
