//! Finding and loading models: a path or an asset name, and the shared flags.

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::Args;
use lora_core::BaseDType;
use lora_models::{DecoderForCausalLM, EncoderForSequenceClassification, Family, ModelSource};
use lora_surgery::ModulePattern;
use lora_train::ADAPTER_NAME;

/// The file beside an adapter that names the classifier's labels (`{"labels": [...]}`).
const LABELS_FILE: &str = "labels.json";

#[derive(Args)]
pub struct ModelArgs {
    /// A Hugging Face directory, a .gguf file, an asset name (minilm, smollm2), or a Hugging Face
    /// model id (`org/name[@revision]`, from the Hugging Face cache or downloaded into it).
    #[arg(long)]
    pub model: String,
    /// Backend: flex, ndarray, wgpu, cuda or cuda:N (default: BURN_DEVICE, else the first compiled).
    #[arg(long)]
    pub device: Option<String>,
    /// How the frozen base weights of the linear layers are held: f32, f16, bf16, q8 or q4
    /// (blocks of 32 with an f32 scale). Adapters, norms and heads stay f32; merging needs f32.
    #[arg(long, default_value = "f32")]
    pub base_dtype: BaseDType,
}

/// Splits a comma-separated list, dropping empty items.
pub fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

/// `target_modules` from `--targets` (a list or `all-linear`) or `--targets-regex`.
pub fn target_pattern(targets: Option<&str>, regex: Option<&str>) -> Option<ModulePattern> {
    match (targets, regex) {
        (Some("all-linear"), _) => Some(ModulePattern::Regex("all-linear".into())),
        (Some(t), _) => Some(ModulePattern::List(split_list(t))),
        (None, Some(r)) => Some(ModulePattern::Regex(r.to_string())),
        (None, None) => None,
    }
}

/// A model path, an asset name fetched into the cache, or a Hugging Face model id from the
/// Hugging Face cache (see [`lora_assets::resolve_model`]).
pub fn resolve_model(spec: &str) -> Result<ModelSource> {
    let path = lora_assets::resolve_model(&lora_assets::AssetCache::from_env(), spec)?;
    Ok(ModelSource::path(path))
}

/// A loaded model with its tokenizer and where it came from.
pub struct Loaded {
    /// The model's files.
    pub source: ModelSource,
    /// The model itself.
    pub model: LoadedModel,
    /// Its tokenizer.
    pub tokenizer: tokenizers::Tokenizer,
}

/// The two kinds of model the CLI runs.
pub enum LoadedModel {
    /// An encoder sequence classifier and its label names.
    Classifier {
        /// The model.
        model: Box<EncoderForSequenceClassification>,
        /// A name per label, in id order.
        labels: Vec<String>,
    },
    /// A decoder causal LM.
    CausalLm(Box<DecoderForCausalLM>),
}

/// Loads `--model` with an optional PEFT adapter: an encoder classifier (a merged
/// `*ForSequenceClassification` directory, or a bare encoder plus a SEQ_CLS adapter that brings
/// the head) or a decoder causal LM.
pub fn load(args: &ModelArgs, adapter: Option<&Path>, device: &Device) -> Result<Loaded> {
    let source = resolve_model(&args.model)?;
    let applying = |dir: &Path| format!("applying adapter {}", dir.display());
    let (model, tokenizer) = match source.family()? {
        Family::Encoder(_) => {
            let config = lora_models::read_encoder_config(&source)?;
            let (model, tokenizer, config_labels) =
                if config.as_ref().is_some_and(|c| c.is_sequence_classifier()) {
                    let (mut model, tokenizer, config) =
                        lora_models::load_sequence_classifier_as(&source, args.base_dtype, device)?;
                    if let Some(dir) = adapter {
                        lora_surgery::load_adapter(&mut model, dir, ADAPTER_NAME)
                            .with_context(|| applying(dir))?;
                    }
                    (model, tokenizer, config.label_names())
                } else {
                    let (bert, tokenizer) =
                        lora_models::load_encoder_as(&source, args.base_dtype, device)?;
                    let Some(dir) = adapter else {
                        bail!(
                            "{} is a bare encoder without a classification head; pass --adapter \
                             with a SEQ_CLS adapter that saves its classifier (modules_to_save), \
                             such as the --out directory of lora train",
                            source.as_path().display()
                        );
                    };
                    let (model, _) = lora_models::load_seq_cls_adapter(bert, dir, ADAPTER_NAME)
                        .with_context(|| applying(dir))?;
                    (model, tokenizer, None)
                };
            let labels = label_names(adapter, config_labels, model.num_labels());
            let model = Box::new(model);
            (LoadedModel::Classifier { model, labels }, tokenizer)
        }
        Family::Decoder(_) => {
            let (mut model, tokenizer) =
                lora_models::load_causal_lm_as(&source, args.base_dtype, device)?;
            if let Some(dir) = adapter {
                lora_surgery::load_adapter(&mut model, dir, ADAPTER_NAME)
                    .with_context(|| applying(dir))?;
            }
            (LoadedModel::CausalLm(Box::new(model)), tokenizer)
        }
    };
    Ok(Loaded {
        source,
        model,
        tokenizer,
    })
}

/// Saves the label names beside an adapter, for [`load`] to read back.
pub fn write_labels(dir: &Path, names: &[String]) -> Result<()> {
    let json = serde_json::json!({ "labels": names });
    lora_core::io::write_atomic(&dir.join(LABELS_FILE), json.to_string().as_bytes())?;
    Ok(())
}

/// The label names `lora train` saved next to the adapter (`labels.json`), else the model's
/// `id2label`, else `LABEL_i` as transformers names them.
fn label_names(
    adapter: Option<&Path>,
    from_config: Option<Vec<String>>,
    labels: usize,
) -> Vec<String> {
    let saved = adapter
        .map(|dir| dir.join(LABELS_FILE))
        .and_then(|path| std::fs::read_to_string(path).ok())
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|json| {
            json["labels"].as_array().map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect::<Vec<_>>()
            })
        });
    saved
        .into_iter()
        .chain(from_config)
        .find(|names| names.len() == labels)
        .unwrap_or_else(|| (0..labels).map(|i| format!("LABEL_{i}")).collect())
}

/// Refuses an output directory that is one of the `inputs` (writing there would overwrite
/// them), a file, or (without `--force`) a directory that already holds something.
pub fn check_out_dir(out: &Path, inputs: &[&Path], force: bool) -> Result<()> {
    let same = |other: &Path| match (out.canonicalize(), other.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if inputs.iter().any(|input| same(input)) {
        bail!(
            "--out {} is one of the input directories; choose another directory so the inputs \
             are kept",
            out.display()
        );
    }
    if out.is_file() {
        bail!("--out {} is a file; give a directory", out.display());
    }
    let non_empty = std::fs::read_dir(out).is_ok_and(|mut entries| entries.next().is_some());
    if non_empty && !force {
        bail!(
            "--out {} already exists and is not empty; choose a new directory, or pass --force \
             to overwrite the files this command writes there",
            out.display()
        );
    }
    Ok(())
}

/// Refuses outputs that are not finite: with an adapter whose scaling (`lora_alpha / r`) or
/// weights overflow `f32`, the model computes NaN or infinities, and probabilities made of them
/// mean nothing.
pub fn check_finite(values: &[f32], what: &str, adapter: Option<&Path>) -> Result<()> {
    let bad = values.iter().filter(|v| !v.is_finite()).count();
    if bad == 0 {
        return Ok(());
    }
    let cause = match adapter {
        Some(dir) => format!(
            "; the adapter {} overflows f32: check its lora_alpha and r (scaling = lora_alpha / r) \
             and its weights",
            dir.display()
        ),
        None => "; the model's weights overflow f32".into(),
    };
    bail!(
        "{bad} of {} values of the {what} are not finite (NaN or infinite){cause}",
        values.len()
    )
}
