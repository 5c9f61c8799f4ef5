//! Writing models back out: `f32` safetensors files and Hugging Face model directories that
//! `transformers` loads with `from_pretrained` (`config.json`, `model.safetensors`,
//! `tokenizer.json`).
//!
//! The models name their own tensors ([`crate::EncoderForSequenceClassification::hf_tensors`],
//! [`crate::DecoderForCausalLM::hf_tensors`]) with the same keys their loaders read, through the
//! helpers here ([`linear_tensors`], [`embedding_tensor`], …), each the mirror of a `load_*`
//! helper in [`crate::weights`]. A layer that still carries LoRA adapters is refused: merge
//! them first (`lora_surgery::merge_and_unload`), so what is written is a plain model.
//!
//! ```
//! use lora_core::io::{SaveDtype, safetensors_bytes, write_atomic};
//! use lora_models::export::linear_tensors;
//! use lora_models::{SafetensorsWeights, WeightSource};
//!
//! let device = lora_core::select_device(Some("flex"))?;
//! let layer = lora_core::LoraLinearConfig::new(4, 3).init(&device);
//! let tensors = linear_tensors("classifier", &layer)?;           // weight [3, 4], bias [3]
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("model.safetensors");
//! write_atomic(&path, &safetensors_bytes(&tensors, SaveDtype::F32)?)?;
//! let weights = SafetensorsWeights::open(&path)?;
//! assert_eq!(weights.read("classifier.weight")?.shape, [3, 4]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::Path;

use burn::nn::Embedding;
use lora_core::LoraLinear;
use lora_core::io::{HostTensor, SaveDtype, safetensors_bytes, write_atomic};

use crate::error::{ModelError, Result};
use crate::layers::norm::Norm;

/// Named tensors in PyTorch's layout, in the order they are written.
pub type NamedHostTensors = Vec<(String, HostTensor)>;

/// Files by name, with their bytes.
pub type NamedFiles = Vec<(String, Vec<u8>)>;

/// `{prefix}.weight` (`[out, in]`, PyTorch's orientation) and `{prefix}.bias` of a plain
/// linear layer: the mirror of [`crate::weights::load_linear`]. A layer that still has adapters
/// or `modules_to_save` copies is refused.
pub fn linear_tensors(prefix: &str, linear: &LoraLinear) -> Result<NamedHostTensors> {
    if !linear.adapters.is_empty() || !linear.saved_copies.is_empty() {
        let names: Vec<String> = linear
            .adapters
            .iter()
            .map(|a| a.name.clone())
            .chain(linear.saved_copies.iter().map(|c| c.name.clone()))
            .collect();
        return Err(ModelError::NotExportable(format!(
            "'{prefix}' still carries the adapter(s) {names:?}; merge and unload them first \
             (lora merge, or lora_surgery::merge_and_unload)"
        )));
    }
    let mut out = vec![(
        format!("{prefix}.weight"),
        HostTensor::from_tensor(linear.base_weight_f32().transpose())?,
    )];
    if let Some(bias) = &linear.bias {
        out.push((
            format!("{prefix}.bias"),
            HostTensor::from_tensor(bias.val())?,
        ));
    }
    Ok(out)
}

/// [`linear_tensors`], with the weight written as Hugging Face's `Conv1D` stores it
/// (`[in, out]`) when `conv1d` is set: the mirror of [`crate::weights::load_linear_oriented`].
pub fn linear_tensors_oriented(
    prefix: &str,
    linear: &LoraLinear,
    conv1d: bool,
) -> Result<NamedHostTensors> {
    let mut out = linear_tensors(prefix, linear)?;
    if conv1d {
        out[0].1 = out[0].1.transposed();
    }
    Ok(out)
}

/// `{prefix}.weight` (and `{prefix}.bias`) of a [`Norm`]: the mirror of
/// [`crate::weights::load_norm`].
pub fn norm_tensors(prefix: &str, norm: &Norm) -> Result<NamedHostTensors> {
    let mut out = vec![(
        format!("{prefix}.weight"),
        HostTensor::from_tensor(norm.weight.val())?,
    )];
    if let Some(bias) = &norm.bias {
        out.push((
            format!("{prefix}.bias"),
            HostTensor::from_tensor(bias.val())?,
        ));
    }
    Ok(out)
}

/// `key` holding an embedding table `[vocab, dim]`: the mirror of
/// [`crate::weights::load_embedding`].
pub fn embedding_tensor(key: &str, embedding: &Embedding) -> Result<(String, HostTensor)> {
    Ok((
        key.to_string(),
        HostTensor::from_tensor(embedding.weight.val())?,
    ))
}

/// Everything a Hugging Face model directory holds.
#[derive(Debug, Clone)]
pub struct HfModelFiles {
    /// `config.json`.
    pub config: serde_json::Value,
    /// `model.safetensors`, in PyTorch's layout.
    pub tensors: NamedHostTensors,
    /// `tokenizer.json`, as text.
    pub tokenizer_json: String,
    /// Other files copied as they are (`tokenizer_config.json`, `vocab.txt`, …), by file name.
    pub extra_files: NamedFiles,
    /// The element type of `model.safetensors` (recorded as the config's `torch_dtype`).
    pub dtype: SaveDtype,
}

/// The tokenizer side files a Hugging Face directory may hold next to `tokenizer.json`; a merged
/// model copies them from its base so `AutoTokenizer` sees the same settings.
pub const TOKENIZER_SIDE_FILES: [&str; 5] = [
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "generation_config.json",
    "added_tokens.json",
];

/// Writes a Hugging Face model directory, creating `dir` if needed; every file is written
/// atomically, and files already in `dir` under other names are left alone.
pub fn save_hf_dir(dir: &Path, files: &HfModelFiles) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(lora_core::io::file_error("create", dir))?;
    write_atomic(
        &dir.join("model.safetensors"),
        &safetensors_bytes(&files.tensors, files.dtype)?,
    )?;
    let mut config = files.config.clone();
    if let Some(map) = config.as_object_mut() {
        map.insert("torch_dtype".into(), files.dtype.torch_name().into());
    }
    let config = serde_json::to_string_pretty(&config).expect("JSON values serialise");
    write_atomic(&dir.join("config.json"), config.as_bytes())?;
    write_atomic(&dir.join("tokenizer.json"), files.tokenizer_json.as_bytes())?;
    for (name, bytes) in &files.extra_files {
        write_atomic(&dir.join(name), bytes)?;
    }
    tracing::info!(path = %dir.display(), tensors = files.tensors.len(), "saved model");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layer_with_an_adapter_is_refused() {
        let device = lora_core::select_device(Some("flex")).unwrap();
        let mut layer = lora_core::LoraLinearConfig::new(4, 3).init(&device);
        assert_eq!(linear_tensors("fc", &layer).unwrap().len(), 2);
        layer
            .add_adapter("default", lora_core::LoraConfig::new(2))
            .unwrap();
        let err = linear_tensors("fc", &layer).unwrap_err().to_string();
        assert!(
            err.contains("'fc' still carries the adapter(s) [\"default\"]"),
            "{err}"
        );
    }
}
