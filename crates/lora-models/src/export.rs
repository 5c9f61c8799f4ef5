//! Writing models back out: `f32` safetensors files and Hugging Face model directories that
//! `transformers` loads with `from_pretrained` (`config.json`, `model.safetensors`,
//! `tokenizer.json`).
//!
//! The models name their own tensors ([`crate::BertForSequenceClassification::hf_tensors`],
//! [`crate::LlamaForCausalLM::hf_tensors`]) with the same keys their loaders read, through the
//! helpers here ([`linear_tensors`], [`embedding_tensor`], …), each the mirror of a `load_*`
//! helper in [`crate::weights`]. A layer that still carries LoRA adapters is refused: merge
//! them first (`lora_surgery::merge_and_unload`), so what is written is a plain model.
//!
//! ```
//! use lora_models::export::{SaveDtype, linear_tensors, safetensors_bytes, write_atomic};
//! use lora_models::{SafetensorsWeights, WeightSource};
//!
//! let device = lora_core::select_device(Some("flex"))?;
//! let layer = lora_core::LoraLinearConfig::new(4, 3).init(&device);
//! let tensors = linear_tensors("classifier", &layer)?;           // weight [3, 4], bias [3]
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("model.safetensors");
//! write_atomic(&path, &safetensors_bytes(&tensors, SaveDtype::F32, &path)?)?;
//! let weights = SafetensorsWeights::open(&path)?;
//! assert_eq!(weights.read("classifier.weight")?.shape, [3, 4]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::path::Path;

use burn::nn::{Embedding, LayerNorm, RmsNorm};
use burn::tensor::Tensor;
use lora_core::LoraLinear;
use safetensors::{Dtype, tensor::TensorView};

use crate::error::{ModelError, Result};
use crate::weights::HostTensor;

/// Named tensors in PyTorch's layout, in the order they are written.
pub type NamedHostTensors = Vec<(String, HostTensor)>;

/// Files by name, with their bytes.
pub type NamedFiles = Vec<(String, Vec<u8>)>;

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so a
/// reader never sees a half-written file and an existing file survives a failed write.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let failed = |e: std::io::Error| ModelError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(failed)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        failed(e)
    })
}

/// The element type weights are saved in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SaveDtype {
    /// 32-bit floats: exact.
    #[default]
    F32,
    /// IEEE half precision (round to nearest even): half the size.
    F16,
    /// bfloat16 (round to nearest even): half the size, `f32`'s range.
    Bf16,
}

impl SaveDtype {
    /// The accepted names.
    pub const NAMES: [&'static str; 3] = ["f32", "f16", "bf16"];

    /// Parses `f32`, `f16` or `bf16` (also PyTorch's `float32`, `float16`, `bfloat16`).
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "f32" | "float32" => Ok(Self::F32),
            "f16" | "float16" => Ok(Self::F16),
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            other => Err(ModelError::Input(format!(
                "unknown dtype '{other}'; choose one of {}",
                Self::NAMES.join(", ")
            ))),
        }
    }

    /// PyTorch's name, as `config.json`'s `torch_dtype` holds it.
    pub fn torch_name(self) -> &'static str {
        match self {
            Self::F32 => "float32",
            Self::F16 => "float16",
            Self::Bf16 => "bfloat16",
        }
    }

    fn safetensors_dtype(self) -> Dtype {
        match self {
            Self::F32 => Dtype::F32,
            Self::F16 => Dtype::F16,
            Self::Bf16 => Dtype::BF16,
        }
    }

    fn encode(self, data: &[f32]) -> Vec<u8> {
        match self {
            Self::F32 => data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Self::F16 => data
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
            Self::Bf16 => data
                .iter()
                .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                .collect(),
        }
    }
}

/// Serialises tensors as a safetensors file of `dtype` elements with PyTorch's
/// `{"format": "pt"}` metadata.
pub fn safetensors_bytes(
    tensors: &[(String, HostTensor)],
    dtype: SaveDtype,
    path: &Path,
) -> Result<Vec<u8>> {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|(_, t)| dtype.encode(&t.data)).collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, t), b)| {
            TensorView::new(dtype.safetensors_dtype(), t.shape.clone(), b)
                .map(|view| (name.clone(), view))
                .map_err(|e| ModelError::Write {
                    path: path.to_path_buf(),
                    reason: format!("tensor '{name}': {e}"),
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let metadata = Some(HashMap::from([("format".to_string(), "pt".to_string())]));
    safetensors::serialize(views, metadata).map_err(|e| ModelError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Reads a tensor back to the host.
pub fn host_tensor<const D: usize>(tensor: Tensor<D>) -> Result<HostTensor> {
    let shape = tensor.dims().to_vec();
    let data = tensor
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| ModelError::Input(format!("cannot read a tensor back: {e:?}")))?;
    Ok(HostTensor { shape, data })
}

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
        host_tensor(linear.weight.val().transpose())?,
    )];
    if let Some(bias) = &linear.bias {
        out.push((format!("{prefix}.bias"), host_tensor(bias.val())?));
    }
    Ok(out)
}

/// `key` holding an embedding table `[vocab, dim]`: the mirror of
/// [`crate::weights::load_embedding`].
pub fn embedding_tensor(key: &str, embedding: &Embedding) -> Result<(String, HostTensor)> {
    Ok((key.to_string(), host_tensor(embedding.weight.val())?))
}

/// `{prefix}.weight` and `{prefix}.bias` of a LayerNorm: the mirror of
/// [`crate::weights::load_layer_norm`].
pub fn layer_norm_tensors(prefix: &str, norm: &LayerNorm) -> Result<NamedHostTensors> {
    let mut out = vec![(format!("{prefix}.weight"), host_tensor(norm.gamma.val())?)];
    if let Some(beta) = &norm.beta {
        out.push((format!("{prefix}.bias"), host_tensor(beta.val())?));
    }
    Ok(out)
}

/// `key` holding an RMSNorm's scale.
pub fn rms_norm_tensor(key: &str, norm: &RmsNorm) -> Result<(String, HostTensor)> {
    Ok((key.to_string(), host_tensor(norm.gamma.val())?))
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
    std::fs::create_dir_all(dir).map_err(|e| ModelError::Write {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let weights_path = dir.join("model.safetensors");
    write_atomic(
        &weights_path,
        &safetensors_bytes(&files.tensors, files.dtype, &weights_path)?,
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
    fn safetensors_round_trip_and_atomic_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let tensors = vec![(
            "a.weight".to_string(),
            HostTensor {
                shape: vec![2, 3],
                data: vec![1.0, -2.0, 3.5, 0.0, 1e-7, 6.0],
            },
        )];
        write_atomic(
            &path,
            &safetensors_bytes(&tensors, SaveDtype::F32, &path).unwrap(),
        )
        .unwrap();
        let read = crate::weights::SafetensorsWeights::open(&path).unwrap();
        use crate::weights::WeightSource;
        assert_eq!(read.read("a.weight").unwrap(), tensors[0].1);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // A shape that does not fit the data is an error, not a panic.
        let bad = vec![(
            "b".to_string(),
            HostTensor {
                shape: vec![4],
                data: vec![1.0],
            },
        )];
        assert!(safetensors_bytes(&bad, SaveDtype::F32, &path).is_err());
    }

    #[test]
    fn half_precision_rounds_to_nearest_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let data = vec![1.0, -0.333_333_34, 65504.0, 1e-3, 3.0e38];
        let tensors = vec![(
            "t".to_string(),
            HostTensor {
                shape: vec![5],
                data: data.clone(),
            },
        )];
        use crate::weights::WeightSource;
        for (dtype, rel) in [(SaveDtype::F16, 1e-3), (SaveDtype::Bf16, 8e-3)] {
            write_atomic(&path, &safetensors_bytes(&tensors, dtype, &path).unwrap()).unwrap();
            let read = crate::weights::SafetensorsWeights::open(&path).unwrap();
            let back = read.read("t").unwrap().data;
            for (i, (a, b)) in data.iter().zip(&back).enumerate() {
                // f16 overflows above 65504: the largest value becomes infinity, as in PyTorch.
                if dtype == SaveDtype::F16 && i == 4 {
                    assert!(b.is_infinite());
                    continue;
                }
                assert!((a - b).abs() <= rel * a.abs(), "{dtype:?}: {a} -> {b}");
            }
        }
        assert_eq!(SaveDtype::parse("bfloat16").unwrap(), SaveDtype::Bf16);
        let err = SaveDtype::parse("f8").unwrap_err().to_string();
        assert!(err.contains("choose one of f32, f16, bf16"), "{err}");
    }

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
