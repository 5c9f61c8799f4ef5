//! Reading named weight tensors from files, independent of the architecture.
//!
//! A [`WeightSource`] hands out [`HostTensor`]s (shape + `f32` data, PyTorch's row-major layout
//! and orientation) by key. [`SafetensorsWeights`] reads Hugging Face `model.safetensors` files
//! (one file or a sharded set with `model.safetensors.index.json`); the GGUF reader lives in
//! [`crate::gguf`]. The `load_*` helpers turn host tensors into Burn modules, checking every
//! shape against what the model's config implies.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig};
use burn::tensor::{Device, Tensor, TensorData};
use lora_core::LoraLinear;
use safetensors::{Dtype, SafeTensors};

use crate::error::{ModelError, Result, io_error};

/// A tensor in host memory: row-major `f32` data and its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// The shape, outermost dimension first (PyTorch's convention).
    pub shape: Vec<usize>,
    /// The elements, row-major.
    pub data: Vec<f32>,
}

impl HostTensor {
    /// Checks the shape against `expected` and uploads the tensor to `device`.
    pub fn into_tensor<const D: usize>(
        self,
        key: &str,
        expected: [usize; D],
        device: &Device,
    ) -> Result<Tensor<D>> {
        if self.shape != expected {
            return Err(ModelError::ShapeMismatch {
                key: key.to_string(),
                expected: expected.to_vec(),
                actual: self.shape,
            });
        }
        Ok(Tensor::from_data(
            TensorData::new(self.data, expected),
            device,
        ))
    }
}

/// Anything that hands out weight tensors by name.
pub trait WeightSource {
    /// A short description for error messages (usually the file name).
    fn source_name(&self) -> String;
    /// Every tensor key the source holds.
    fn keys(&self) -> Vec<String>;
    /// Reads one tensor as `f32`, or fails with [`ModelError::MissingTensor`].
    fn read(&self, key: &str) -> Result<HostTensor>;
    /// Whether the source holds `key`.
    fn contains(&self, key: &str) -> bool {
        self.keys().iter().any(|k| k == key)
    }
}

/// Hugging Face safetensors weights: one `model.safetensors`, or the shards listed in
/// `model.safetensors.index.json`. Files are read into memory once; tensors are converted to
/// `f32` (from F32, F16, BF16 or F64) when asked for.
pub struct SafetensorsWeights {
    files: Vec<(PathBuf, Vec<u8>)>,
    index: BTreeMap<String, usize>,
}

impl SafetensorsWeights {
    /// Opens one safetensors file.
    pub fn open(path: &Path) -> Result<Self> {
        let mut weights = Self {
            files: Vec::new(),
            index: BTreeMap::new(),
        };
        weights.add_file(path)?;
        Ok(weights)
    }

    /// Opens the weights of a Hugging Face model directory: `model.safetensors`, or the shards
    /// named by `model.safetensors.index.json`.
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let single = dir.join("model.safetensors");
        if single.is_file() {
            return Self::open(&single);
        }
        let index_path = dir.join("model.safetensors.index.json");
        if !index_path.is_file() {
            return Err(ModelError::NotAModel {
                path: dir.to_path_buf(),
                reason: "expected model.safetensors or model.safetensors.index.json".into(),
            });
        }
        let text = std::fs::read_to_string(&index_path).map_err(io_error(&index_path))?;
        let index: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ModelError::Config {
                path: index_path.clone(),
                reason: e.to_string(),
            })?;
        let map = index
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| ModelError::Config {
                path: index_path.clone(),
                reason: "no \"weight_map\" object".into(),
            })?;
        let mut shards: Vec<&str> = map.values().filter_map(|v| v.as_str()).collect();
        shards.sort_unstable();
        shards.dedup();
        let mut weights = Self {
            files: Vec::new(),
            index: BTreeMap::new(),
        };
        for shard in shards {
            weights.add_file(&dir.join(shard))?;
        }
        Ok(weights)
    }

    fn add_file(&mut self, path: &Path) -> Result<()> {
        let bytes = std::fs::read(path).map_err(io_error(path))?;
        let keys: Vec<String> = SafeTensors::deserialize(&bytes)
            .map_err(|e| ModelError::Safetensors {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?
            .names()
            .into_iter()
            .map(str::to_string)
            .collect();
        let file_index = self.files.len();
        for key in keys {
            self.index.insert(key, file_index);
        }
        self.files.push((path.to_path_buf(), bytes));
        Ok(())
    }
}

impl WeightSource for SafetensorsWeights {
    fn source_name(&self) -> String {
        match self.files.as_slice() {
            [(path, _)] => path.display().to_string(),
            files => format!("{} safetensors shards", files.len()),
        }
    }

    fn keys(&self) -> Vec<String> {
        self.index.keys().cloned().collect()
    }

    fn contains(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    fn read(&self, key: &str) -> Result<HostTensor> {
        let file = *self
            .index
            .get(key)
            .ok_or_else(|| ModelError::MissingTensor {
                key: key.to_string(),
                source_name: self.source_name(),
            })?;
        let (path, bytes) = &self.files[file];
        let tensors = SafeTensors::deserialize(bytes).map_err(|e| ModelError::Safetensors {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let view = tensors.tensor(key).map_err(|e| ModelError::Safetensors {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let data = to_f32(key, view.dtype(), view.data())?;
        Ok(HostTensor {
            shape: view.shape().to_vec(),
            data,
        })
    }
}

/// Converts little-endian raw tensor bytes of a float dtype to `f32`.
fn to_f32(key: &str, dtype: Dtype, bytes: &[u8]) -> Result<Vec<f32>> {
    let chunks = |n: usize| bytes.chunks_exact(n);
    Ok(match dtype {
        Dtype::F32 => chunks(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => chunks(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => chunks(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::F64 => chunks(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8-byte chunk")) as f32)
            .collect(),
        other => {
            return Err(ModelError::UnsupportedDtype {
                key: key.to_string(),
                dtype: format!("{other:?}"),
            });
        }
    })
}

/// Loads a tensor of the given shape.
pub fn load_tensor<const D: usize>(
    source: &dyn WeightSource,
    key: &str,
    shape: [usize; D],
    device: &Device,
) -> Result<Tensor<D>> {
    source.read(key)?.into_tensor(key, shape, device)
}

/// Loads a PyTorch linear layer `{prefix}.weight: [out, in]` (and `{prefix}.bias: [out]`) into
/// a frozen [`LoraLinear`], transposing the weight to Burn's `[in, out]`.
pub fn load_linear(
    source: &dyn WeightSource,
    prefix: &str,
    d_in: usize,
    d_out: usize,
    bias: bool,
    device: &Device,
) -> Result<LoraLinear> {
    let weight = load_tensor(source, &format!("{prefix}.weight"), [d_out, d_in], device)?;
    let bias = if bias {
        Some(load_tensor(
            source,
            &format!("{prefix}.bias"),
            [d_out],
            device,
        )?)
    } else {
        None
    };
    Ok(LoraLinear::from_weights(weight.transpose(), bias)?)
}

/// Loads `{key}: [vocab, dim]` into a frozen embedding table.
pub fn load_embedding(
    source: &dyn WeightSource,
    key: &str,
    vocab: usize,
    dim: usize,
    device: &Device,
) -> Result<Embedding> {
    let weight = load_tensor(source, key, [vocab, dim], device)?;
    let mut embedding = EmbeddingConfig::new(vocab, dim).init(device);
    embedding.weight = frozen(weight);
    Ok(embedding)
}

/// Loads a LayerNorm from `{prefix}.weight` / `{prefix}.bias` (or the older `gamma` / `beta`).
pub fn load_layer_norm(
    source: &dyn WeightSource,
    prefix: &str,
    dim: usize,
    epsilon: f64,
    device: &Device,
) -> Result<LayerNorm> {
    let pick = |new: &str, old: &str| {
        let new_key = format!("{prefix}.{new}");
        let old_key = format!("{prefix}.{old}");
        if !source.contains(&new_key) && source.contains(&old_key) {
            old_key
        } else {
            new_key
        }
    };
    let gamma = load_tensor(source, &pick("weight", "gamma"), [dim], device)?;
    let beta = load_tensor(source, &pick("bias", "beta"), [dim], device)?;
    let mut norm = LayerNormConfig::new(dim).with_epsilon(epsilon).init(device);
    norm.gamma = frozen(gamma);
    norm.beta = Some(frozen(beta));
    Ok(norm)
}

/// A parameter that does not train (pre-trained weights start frozen; training methods
/// unfreeze what they train).
pub fn frozen<const D: usize>(tensor: Tensor<D>) -> Param<Tensor<D>> {
    Param::from_tensor(tensor).set_require_grad(false)
}
