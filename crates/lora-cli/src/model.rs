//! Finding and loading models: a path or an asset name, and the shared flags.

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::Args;
use lora_models::{Architecture, BertForSequenceClassification, LlamaForCausalLM, ModelSource};
use lora_surgery::ModulePattern;

#[derive(Args)]
pub struct ModelArgs {
    /// A Hugging Face directory, a .gguf file, or an asset name (minilm, smollm2).
    #[arg(long)]
    pub model: String,
    /// Backend: flex, ndarray, wgpu, cuda[:N] (default: BURN_DEVICE, else the first compiled).
    #[arg(long)]
    pub device: Option<String>,
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

/// A model path, or an asset name fetched into the cache.
pub fn resolve_model(spec: &str) -> Result<ModelSource> {
    let path = Path::new(spec);
    if path.exists() {
        return Ok(ModelSource::path(path));
    }
    if lora_data::AssetSpec::by_name(spec).is_ok() {
        let asset = lora_data::AssetCache::from_env().fetch(spec)?;
        return Ok(ModelSource::path(asset.main));
    }
    bail!(
        "model '{spec}' is neither an existing path nor a known asset; give a Hugging Face \
         directory, a .gguf file, or one of: {}",
        lora_data::ASSETS.map(|a| a.name).join(", ")
    )
}

pub enum Loaded {
    Classifier(Box<BertForSequenceClassification>, tokenizers::Tokenizer),
    CausalLm(Box<LlamaForCausalLM>, tokenizers::Tokenizer),
}

pub fn load(args: &ModelArgs, adapter: Option<&Path>, device: &Device) -> Result<Loaded> {
    let source = resolve_model(&args.model)?;
    match source.architecture()? {
        Architecture::Bert => {
            let (bert, tokenizer) = lora_models::load_bert(&source, device)?;
            let Some(adapter) = adapter else {
                bail!(
                    "{} is a bare encoder without a classification head; pass --adapter with a \
                     SEQ_CLS adapter that saves its classifier (modules_to_save)",
                    source.as_path().display()
                );
            };
            let (model, _) = lora_surgery::load_seq_cls_adapter(bert, adapter, "default")
                .with_context(|| format!("applying adapter {}", adapter.display()))?;
            Ok(Loaded::Classifier(Box::new(model), tokenizer))
        }
        Architecture::Llama => {
            let (mut model, tokenizer) = lora_models::load_llama(&source, device)?;
            if let Some(adapter) = adapter {
                lora_surgery::load_adapter(&mut model, adapter, "default")
                    .with_context(|| format!("applying adapter {}", adapter.display()))?;
            }
            Ok(Loaded::CausalLm(Box::new(model), tokenizer))
        }
    }
}
