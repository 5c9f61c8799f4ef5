//! Loading a model and its tokenizer from a Hugging Face directory or a GGUF file: telling the
//! family from `model_type` (or `general.architecture`), then building the encoder or decoder.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use tokenizers::Tokenizer;

use crate::config_json::ConfigJson;
use crate::decoder::gguf::{GgufDecoderWeights, decoder_config_from_gguf};
use crate::decoder::{DecoderConfig, DecoderFamily, DecoderForCausalLM};
use crate::encoder::{Encoder, EncoderConfig, EncoderFamily, EncoderForSequenceClassification};
use crate::error::{ModelError, Result, io_error};
use crate::export::{NamedFiles, TOKENIZER_SIDE_FILES};
use crate::gguf::GgufFile;
use crate::layers::norm::NormKind;
use crate::tokenizer::{load_tokenizer_json, tokenizer_from_gguf};
use crate::weights::{RandomWeights, SafetensorsWeights, StoredAs};
use lora_core::BaseDType;

/// Where a model lives: a Hugging Face directory (`config.json`, `model.safetensors` or its
/// sharded index, `tokenizer.json`) or a single `.gguf` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A Hugging Face model directory.
    HfDir(PathBuf),
    /// A GGUF file.
    Gguf(PathBuf),
}

/// The family of a model, as its files say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// A bidirectional encoder (sequence classification, embeddings).
    Encoder(EncoderFamily),
    /// A decoder language model.
    Decoder(DecoderFamily),
}

impl Family {
    /// Every supported `model_type`.
    pub fn supported() -> Vec<&'static str> {
        EncoderFamily::ALL
            .iter()
            .map(|(_, n)| *n)
            .chain(DecoderFamily::ALL.iter().map(|(_, n)| *n))
            .collect()
    }

    /// The family of a `model_type`.
    pub fn from_model_type(model_type: &str) -> Option<Self> {
        EncoderFamily::from_model_type(model_type)
            .map(Family::Encoder)
            .or_else(|| DecoderFamily::from_model_type(model_type).map(Family::Decoder))
    }

    /// The `model_type` string.
    pub fn model_type(self) -> &'static str {
        match self {
            Family::Encoder(f) => f.model_type(),
            Family::Decoder(f) => f.model_type(),
        }
    }

    /// PEFT's default `target_modules` for the family.
    pub fn default_targets(self) -> &'static [&'static str] {
        match self {
            Family::Encoder(f) => f.default_targets(),
            Family::Decoder(f) => f.default_targets(),
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.model_type())
    }
}

impl ModelSource {
    /// Classifies a path: a file ending in `.gguf` is GGUF, anything else is taken as a Hugging
    /// Face directory (checked when it is read).
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

    /// The directory's `config.json` (`None` for a GGUF file).
    pub fn config_json(&self) -> Result<Option<ConfigJson>> {
        match self {
            ModelSource::HfDir(dir) => {
                ConfigJson::read(&required_file(dir, "config.json")?).map(Some)
            }
            ModelSource::Gguf(_) => Ok(None),
        }
    }

    /// Reads just enough to tell the family (`model_type`, or GGUF metadata).
    pub fn family(&self) -> Result<Family> {
        match self {
            ModelSource::Gguf(path) => {
                let file = GgufFile::open(path)?;
                decoder_config_from_gguf(&file, path).map(|c| Family::Decoder(c.family))
            }
            ModelSource::HfDir(_) => {
                let config = self.config_json()?.expect("a directory has a config");
                let model_type = config.model_type().unwrap_or("");
                if config.map.contains_key("model_type") && config.opt_str("model_type").is_err() {
                    return Err(config.error("'model_type' must be a string"));
                }
                Family::from_model_type(model_type).ok_or_else(|| {
                    config.error(format!(
                        "model_type \"{model_type}\" is not supported (supported: {})",
                        Family::supported().join(", ")
                    ))
                })
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

/// The config, tokenizer and weights of an encoder's Hugging Face directory.
fn encoder_files(source: &ModelSource) -> Result<(EncoderConfig, Tokenizer, SafetensorsWeights)> {
    let ModelSource::HfDir(dir) = source else {
        return Err(ModelError::NotAModel {
            path: source.as_path().to_path_buf(),
            reason: "encoders load from a Hugging Face directory, not a GGUF file".into(),
        });
    };
    let config =
        EncoderConfig::from_config(ConfigJson::read(&required_file(dir, "config.json")?)?)?;
    let tokenizer = load_tokenizer_json(&required_file(dir, "tokenizer.json")?)?;
    let weights = SafetensorsWeights::open_dir(dir)?;
    Ok((config, tokenizer, weights))
}

/// Loads an encoder (BERT, RoBERTa, XLM-RoBERTa, DistilBERT) and its tokenizer from a Hugging
/// Face directory; a classifier checkpoint's head is left out.
pub fn load_encoder(source: &ModelSource, device: &Device) -> Result<(Encoder, Tokenizer)> {
    load_encoder_as(source, BaseDType::F32, device)
}

/// [`load_encoder`] with the frozen linear weights stored as `base_dtype` as they load.
pub fn load_encoder_as(
    source: &ModelSource,
    base_dtype: BaseDType,
    device: &Device,
) -> Result<(Encoder, Tokenizer)> {
    let (config, tokenizer, weights) = encoder_files(source)?;
    let model = Encoder::load(&config, &StoredAs::new(&weights, base_dtype), device)?;
    tracing::info!(path = %source.as_path().display(), family = config.family.model_type(), layers = config.num_layers, "loaded encoder");
    Ok((model, tokenizer))
}

/// Loads a `*ForSequenceClassification` directory (encoder and head, such as one `lora merge`
/// wrote) with its tokenizer and config (whose `id2label` names the labels).
pub fn load_sequence_classifier(
    source: &ModelSource,
    device: &Device,
) -> Result<(EncoderForSequenceClassification, Tokenizer, EncoderConfig)> {
    load_sequence_classifier_as(source, BaseDType::F32, device)
}

/// [`load_sequence_classifier`] with the encoder's frozen linear weights stored as
/// `base_dtype` (the classification head stays `f32`).
pub fn load_sequence_classifier_as(
    source: &ModelSource,
    base_dtype: BaseDType,
    device: &Device,
) -> Result<(EncoderForSequenceClassification, Tokenizer, EncoderConfig)> {
    let (config, tokenizer, weights) = encoder_files(source)?;
    let model = EncoderForSequenceClassification::load(
        &config,
        &StoredAs::new(&weights, base_dtype),
        device,
    )?;
    tracing::info!(path = %source.as_path().display(), labels = model.num_labels(), "loaded sequence classifier");
    Ok((model, tokenizer, config))
}

/// The encoder config of a Hugging Face directory (`None` for a GGUF file or a decoder).
pub fn read_encoder_config(source: &ModelSource) -> Result<Option<EncoderConfig>> {
    match source.config_json()? {
        Some(c)
            if c.model_type()
                .and_then(EncoderFamily::from_model_type)
                .is_some() =>
        {
            EncoderConfig::from_config(c).map(Some)
        }
        _ => Ok(None),
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

/// Loads a decoder of any supported family and its tokenizer from a Hugging Face directory or a
/// GGUF file (dequantised to `f32`, tokenizer rebuilt from the metadata).
pub fn load_causal_lm(
    source: &ModelSource,
    device: &Device,
) -> Result<(DecoderForCausalLM, Tokenizer)> {
    load_causal_lm_as(source, BaseDType::F32, device)
}

/// [`load_causal_lm`] with the frozen linear weights stored as `base_dtype` as they load, one
/// layer at a time (QLoRA's frozen base; the output head stays `f32`).
///
/// ```no_run
/// use lora_core::BaseDType;
/// use lora_models::{ModelSource, load_causal_lm_as};
///
/// let device = lora_core::select_device(None)?;
/// let (model, _tokenizer) =
///     load_causal_lm_as(&ModelSource::path("SmolLM2-135M"), BaseDType::Q8, &device)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn load_causal_lm_as(
    source: &ModelSource,
    base_dtype: BaseDType,
    device: &Device,
) -> Result<(DecoderForCausalLM, Tokenizer)> {
    match source {
        ModelSource::Gguf(path) => {
            let file = GgufFile::open(path)?;
            let config = decoder_config_from_gguf(&file, path)?;
            let tokenizer = tokenizer_from_gguf(&file)?;
            let weights = GgufDecoderWeights::new(&file, &config);
            let model =
                DecoderForCausalLM::load(&config, &StoredAs::new(&weights, base_dtype), device)?;
            tracing::info!(path = %path.display(), family = config.family.model_type(), layers = config.num_layers, "loaded decoder (GGUF)");
            Ok((model, tokenizer))
        }
        ModelSource::HfDir(dir) => {
            let config =
                DecoderConfig::from_config(ConfigJson::read(&required_file(dir, "config.json")?)?)?;
            let tokenizer = load_tokenizer_json(&required_file(dir, "tokenizer.json")?)?;
            let weights = SafetensorsWeights::open_dir(dir)?;
            let model =
                DecoderForCausalLM::load(&config, &StoredAs::new(&weights, base_dtype), device)?;
            tracing::info!(path = %dir.display(), family = config.family.model_type(), layers = config.num_layers, "loaded decoder");
            Ok((model, tokenizer))
        }
    }
}

/// A model of a supported family built from a `config.json` alone with seeded random weights
/// ([`RandomWeights`]): the speed and memory of a real-size model whose weights cannot be had
/// (`lora bench --config config.json --random-init`).
pub enum RandomModel {
    /// An encoder (its classifier head, if any, is left out).
    Encoder(Encoder),
    /// A decoder language model.
    Decoder(DecoderForCausalLM),
}

/// Builds the model `config_path` (a `config.json`) describes, with [`RandomWeights`] seeded by
/// `seed`; an unsupported `model_type` is the same error as for a checkpoint.
pub fn random_model(config_path: &Path, seed: u64, device: &Device) -> Result<RandomModel> {
    let config = ConfigJson::read(config_path)?;
    let model_type = config.model_type().unwrap_or("").to_string();
    match Family::from_model_type(&model_type) {
        Some(Family::Encoder(_)) => {
            let config = EncoderConfig::from_config(config)?;
            let mut weights = RandomWeights::new(seed, None, false);
            // transformers builds a sequence classifier's encoder without the pooler, except
            // BERT's, whose head reads it.
            if config.is_sequence_classifier() && config.family != EncoderFamily::Bert {
                weights = weights.without("pooler.dense.weight");
            }
            Ok(RandomModel::Encoder(Encoder::load(
                &config, &weights, device,
            )?))
        }
        Some(Family::Decoder(_)) => {
            let config = DecoderConfig::from_config(config)?;
            let tied = config
                .tie_word_embeddings
                .then(|| format!("{}.weight", config.family.names().lm_head));
            let offset = config.norm == NormKind::RmsNormPlusOne;
            let weights = RandomWeights::new(seed, tied, offset);
            Ok(RandomModel::Decoder(DecoderForCausalLM::load(
                &config, &weights, device,
            )?))
        }
        None => Err(config.error(format!(
            "model_type \"{model_type}\" is not supported (supported: {})",
            Family::supported().join(", ")
        ))),
    }
}
