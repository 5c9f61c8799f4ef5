//! Reading named weight tensors from files, independent of the architecture.
//!
//! A [`WeightSource`] hands out [`HostTensor`]s (shape + `f32` data, PyTorch's row-major layout
//! and orientation) by key. [`SafetensorsWeights`] reads Hugging Face `model.safetensors` files
//! (one file or a sharded set with `model.safetensors.index.json`); the GGUF reader lives in
//! [`crate::gguf`]. The `load_*` helpers turn host tensors into Burn modules, checking every
//! shape against what the model's config implies.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::Param;
use burn::nn::{Embedding, EmbeddingConfig};
use burn::tensor::{Device, Tensor};
use lora_core::io::SafetensorsFile;
use lora_core::{BaseDType, LoraLinear, QuantBlocks};

use crate::error::{ModelError, Result};
use crate::layers::norm::{Norm, NormKind};

pub use lora_core::io::HostTensor;

/// Anything that hands out weight tensors by name.
pub trait WeightSource {
    /// A short description for error messages (usually the file name).
    fn source_name(&self) -> String;
    /// Every tensor key the source holds.
    fn keys(&self) -> Vec<String>;
    /// Reads one tensor as `f32`, or fails with [`ModelError::MissingTensor`].
    fn read(&self, key: &str) -> Result<HostTensor>;
    /// Reads one tensor that the model expects with `shape` (the loaders always say; a source
    /// that makes its tensors, as [`RandomWeights`] does, needs it). The shape is checked by
    /// the caller.
    fn read_as(&self, key: &str, shape: &[usize]) -> Result<HostTensor> {
        let _ = shape;
        self.read(key)
    }
    /// The matrix `key` (a linear weight, `[out, in]`) as the file's own quantization blocks,
    /// when the file stores it in a form a frozen base can keep as it is (GGUF `Q8_0` → `q8`,
    /// `Q4_0` → `q4`); `None` otherwise (the default). Loaders use the blocks instead of
    /// [`WeightSource::read`] when they match the [`WeightSource::base_dtype`] asked for.
    fn read_blocks(&self, key: &str) -> Result<Option<QuantBlocks>> {
        let _ = key;
        Ok(None)
    }
    /// Whether the source holds `key`.
    fn contains(&self, key: &str) -> bool {
        self.keys().iter().any(|k| k == key)
    }
    /// The form frozen linear weights loaded from this source are stored in ([`StoredAs`]
    /// sets it; `f32` otherwise).
    fn base_dtype(&self) -> BaseDType {
        BaseDType::F32
    }
}

/// A [`WeightSource`] whose frozen linear weights are stored as `dtype` as they load (one layer
/// at a time, so the whole model never exists in `f32`). Output heads load through
/// `StoredAs::new(source, BaseDType::F32)`: they stay `f32`.
pub struct StoredAs<'a> {
    inner: &'a dyn WeightSource,
    dtype: BaseDType,
}

impl<'a> StoredAs<'a> {
    /// Wraps `inner`, storing linear weights as `dtype`.
    pub fn new(inner: &'a dyn WeightSource, dtype: BaseDType) -> Self {
        Self { inner, dtype }
    }
}

impl WeightSource for StoredAs<'_> {
    fn source_name(&self) -> String {
        self.inner.source_name()
    }
    fn keys(&self) -> Vec<String> {
        self.inner.keys()
    }
    fn read(&self, key: &str) -> Result<HostTensor> {
        self.inner.read(key)
    }
    fn read_as(&self, key: &str, shape: &[usize]) -> Result<HostTensor> {
        self.inner.read_as(key, shape)
    }
    fn read_blocks(&self, key: &str) -> Result<Option<QuantBlocks>> {
        self.inner.read_blocks(key)
    }
    fn contains(&self, key: &str) -> bool {
        self.inner.contains(key)
    }
    fn base_dtype(&self) -> BaseDType {
        self.dtype
    }
}

/// Hugging Face safetensors weights: one `model.safetensors`, or the shards listed in
/// `model.safetensors.index.json`. Files are read into memory once; tensors are converted to
/// `f32` (from F32, F16, BF16 or F64) when asked for.
pub struct SafetensorsWeights {
    files: Vec<SafetensorsFile>,
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
            let reason = if dir.join("pytorch_model.bin").is_file()
                || dir.join("pytorch_model.bin.index.json").is_file()
            {
                "it holds only PyTorch pickle weights (pytorch_model.bin), which lora-burn never \
                 loads (unpickling runs code); convert them to safetensors first, e.g. with \
                 transformers: AutoModel.from_pretrained(dir).save_pretrained(dir, \
                 safe_serialization=True)"
            } else {
                "expected model.safetensors or model.safetensors.index.json"
            };
            return Err(ModelError::NotAModel {
                path: dir.to_path_buf(),
                reason: reason.into(),
            });
        }
        let index: serde_json::Value = crate::error::read_json_config(&index_path)?;
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
            if shard.contains('/') || shard.contains('\\') || shard.starts_with('.') {
                return Err(ModelError::Config {
                    path: index_path.clone(),
                    reason: format!("shard name '{shard}' is not a file name in the directory"),
                });
            }
            weights.add_file(&dir.join(shard))?;
        }
        Ok(weights)
    }

    fn add_file(&mut self, path: &Path) -> Result<()> {
        let file = SafetensorsFile::open(path)?;
        let file_index = self.files.len();
        for key in file.names() {
            self.index.insert(key.clone(), file_index);
        }
        self.files.push(file);
        Ok(())
    }
}

impl WeightSource for SafetensorsWeights {
    fn source_name(&self) -> String {
        match self.files.as_slice() {
            [file] => file.path().display().to_string(),
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
        Ok(self.files[file].read(key)?)
    }
}

/// Loads a tensor of the given shape.
pub fn load_tensor<const D: usize>(
    source: &dyn WeightSource,
    key: &str,
    shape: [usize; D],
    device: &Device,
) -> Result<Tensor<D>> {
    Ok(source
        .read_as(key, &shape)?
        .into_tensor(key, shape, device)?)
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
    let key = format!("{prefix}.weight");
    let weight = match kept_blocks(source, &key, [d_out, d_in], device)? {
        Some(weight) => weight,
        None => source
            .read_as(&key, &[d_out, d_in])?
            .into_tensor_transposed(&key, [d_out, d_in], device)?,
    };
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
    frozen_linear(source, weight, bias)
}

/// The weight `key` (`[out, in]` as stored) uploaded as `[in, out]` from the file's own
/// quantization blocks, when they are in the form the source asks its base to be stored in and
/// the device can hold that form; `None` when the weight must load as `f32`.
fn kept_blocks(
    source: &dyn WeightSource,
    key: &str,
    stored: [usize; 2],
    device: &Device,
) -> Result<Option<Tensor<2>>> {
    let dtype = source.base_dtype();
    let holds = lora_core::Backend::of_device(device).is_some_and(|b| dtype.supported_on(b));
    if !dtype.is_quantized() || !holds {
        return Ok(None);
    }
    match source.read_blocks(key)? {
        Some(blocks) if blocks.form() == dtype => {
            tracing::debug!(key, form = %dtype, "kept the file's quantization blocks");
            Ok(Some(blocks.into_tensor(key, stored, device)?))
        }
        _ => Ok(None),
    }
}

/// A frozen layer over `weight` (`[in, out]`, `f32`), stored as the source asks.
fn frozen_linear(
    source: &dyn WeightSource,
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
) -> Result<LoraLinear> {
    let mut layer = LoraLinear::from_weights(weight, bias)?;
    layer.store_base_as(source.base_dtype())?;
    Ok(layer)
}

/// Loads a linear layer stored either as PyTorch's `Linear` (`{prefix}.weight: [out, in]`) or,
/// with `conv1d`, as Hugging Face's `Conv1D` (`[in, out]`, GPT-2), into a frozen [`LoraLinear`]
/// (whose weight is Burn's `[in, out]`).
pub fn load_linear_oriented(
    source: &dyn WeightSource,
    prefix: &str,
    d_in: usize,
    d_out: usize,
    bias: bool,
    conv1d: bool,
    device: &Device,
) -> Result<LoraLinear> {
    if !conv1d {
        return load_linear(source, prefix, d_in, d_out, bias, device);
    }
    // Quantization blocks are in `Linear` orientation whatever the checkpoint's convention.
    let key = format!("{prefix}.weight");
    let weight = match kept_blocks(source, &key, [d_out, d_in], device)? {
        Some(weight) => weight,
        None => load_tensor(source, &key, [d_in, d_out], device)?,
    };
    let bias = bias
        .then(|| load_tensor(source, &format!("{prefix}.bias"), [d_out], device))
        .transpose()?;
    frozen_linear(source, weight, bias)
}

/// Loads a [`Norm`] of `kind` from `{prefix}.weight` (and `{prefix}.bias` for a LayerNorm, or
/// the older `gamma` / `beta` names).
pub fn load_norm(
    source: &dyn WeightSource,
    prefix: &str,
    kind: NormKind,
    dim: usize,
    epsilon: f64,
    device: &Device,
) -> Result<Norm> {
    let pick = |new: &str, old: &str| {
        let new_key = format!("{prefix}.{new}");
        let old_key = format!("{prefix}.{old}");
        if !source.contains(&new_key) && source.contains(&old_key) {
            old_key
        } else {
            new_key
        }
    };
    let weight = load_tensor(source, &pick("weight", "gamma"), [dim], device)?;
    let bias = (kind == NormKind::LayerNorm)
        .then(|| load_tensor(source, &pick("bias", "beta"), [dim], device))
        .transpose()?;
    Ok(Norm::new(kind, weight, bias, epsilon))
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

/// A parameter that does not train (pre-trained weights start frozen; training methods
/// unfreeze what they train).
pub fn frozen<const D: usize>(tensor: Tensor<D>) -> Param<Tensor<D>> {
    Param::from_tensor(tensor).set_require_grad(false)
}

/// Seeded random weights of any shape a model asks for: what a benchmark runs on when a
/// real-size model's weights cannot travel (`lora bench --config config.json --random-init`).
/// Norm scales are ones (or zeros for a family whose norms compute `1 + w`), biases zeros, and
/// every other tensor uniform in ±0.02·√3 (standard deviation 0.02, transformers'
/// `initializer_range`), drawn from a generator seeded by the key, so every run builds the same
/// model. A tied output head is absent, as it would be in the checkpoint.
pub struct RandomWeights {
    seed: u64,
    tied_head: Option<String>,
    norm_offset: bool,
    absent_suffixes: Vec<String>,
}

impl RandomWeights {
    /// Random weights; `tied_head`: the key of an output head that is tied to the embeddings
    /// (reported missing); `norm_offset`: norms compute `1 + w` (Gemma).
    pub fn new(seed: u64, tied_head: Option<String>, norm_offset: bool) -> Self {
        Self {
            seed,
            tied_head,
            norm_offset,
            absent_suffixes: Vec::new(),
        }
    }

    /// Reports the tensors whose keys end with `suffix` missing, as a checkpoint without that
    /// module would (`pooler.dense.weight` for a RoBERTa sequence classifier).
    pub fn without(mut self, suffix: impl Into<String>) -> Self {
        self.absent_suffixes.push(suffix.into());
        self
    }

    fn is_norm(key: &str) -> bool {
        let module = key.rsplit('.').nth(1).unwrap_or("");
        module.contains("norm") || module.starts_with("ln") || module.contains("LayerNorm")
    }
}

impl WeightSource for RandomWeights {
    fn source_name(&self) -> String {
        format!("random weights (seed {})", self.seed)
    }

    fn keys(&self) -> Vec<String> {
        Vec::new()
    }

    fn contains(&self, key: &str) -> bool {
        self.tied_head.as_deref() != Some(key)
            && !self
                .absent_suffixes
                .iter()
                .any(|s| key.ends_with(s.as_str()))
    }

    fn read(&self, key: &str) -> Result<HostTensor> {
        Err(ModelError::Input(format!(
            "{key}: random weights are made for a shape; read them with read_as"
        )))
    }

    fn read_as(&self, key: &str, shape: &[usize]) -> Result<HostTensor> {
        if !self.contains(key) {
            return Err(ModelError::MissingTensor {
                key: key.to_string(),
                source_name: self.source_name(),
            });
        }
        let n: usize = shape.iter().product();
        let data = if Self::is_norm(key) && key.ends_with("weight") {
            vec![if self.norm_offset { 0.0 } else { 1.0 }; n]
        } else if key.ends_with("bias") {
            vec![0.0; n]
        } else {
            // FNV-1a of the key, mixed with the seed, starts a SplitMix64 stream.
            let mut state = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            }) ^ self.seed;
            let half_width = 0.02 * 3f32.sqrt();
            (0..n)
                .map(|_| {
                    state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                    let mut z = state;
                    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                    z ^= z >> 31;
                    let unit = (z >> 40) as f32 / (1u64 << 24) as f32;
                    (2.0 * unit - 1.0) * half_width
                })
                .collect()
        };
        Ok(HostTensor::new(shape.to_vec(), data)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pickle_only_directory_is_refused_with_the_conversion() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pytorch_model.bin"), b"PK\x03\x04").unwrap();
        let e = SafetensorsWeights::open_dir(dir.path())
            .err()
            .expect("a pickle-only directory is refused")
            .to_string();
        assert!(
            e.contains("never loads") && e.contains("safe_serialization=True"),
            "{e}"
        );
    }
}
