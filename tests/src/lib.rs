//! Shared helpers of the cross-crate and end-to-end tests in `tests/tests/*.rs`: where the
//! conformance fixtures are, fetching real assets through the project's own asset code, and
//! reading fixture tensors.

use std::collections::BTreeMap;
use std::path::PathBuf;

use safetensors::{Dtype, SafeTensors};

/// `../shared/fixtures` beside the repository (override with `LORA_BURN_FIXTURES`).
pub fn fixtures_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LORA_BURN_FIXTURES") {
        return PathBuf::from(dir);
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures");
    assert!(
        dir.is_dir(),
        "conformance fixtures not found at {}; set LORA_BURN_FIXTURES",
        dir.display()
    );
    dir
}

/// Fetches (or finds in the cache) a real asset through `lora-data`, panicking with the
/// error's message if it cannot: tests on real data never pass by skipping.
pub fn asset(name: &str) -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    match lora_data::AssetCache::from_env().fetch(name) {
        Ok(asset) => asset.main,
        Err(e) => panic!("cannot fetch asset '{name}': {e}"),
    }
}

/// The sentences of the BERT fixtures (`bert_minilm/inputs.json`).
pub fn fixture_sentences() -> Vec<String> {
    let path = fixtures_dir().join("bert_minilm/inputs.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let json: serde_json::Value = serde_json::from_str(&text).expect("inputs.json is JSON");
    json["sentences"]
        .as_array()
        .expect("a sentences array")
        .iter()
        .map(|s| s.as_str().expect("sentences are strings").to_string())
        .collect()
}

/// A tensor read from a fixture file.
#[derive(Debug, Clone, PartialEq)]
pub enum FixtureTensor {
    /// Float data.
    F32(Vec<usize>, Vec<f32>),
    /// Integer data.
    I64(Vec<usize>, Vec<i64>),
}

impl FixtureTensor {
    /// The float data, panicking for integer tensors.
    pub fn f32(&self) -> &[f32] {
        match self {
            FixtureTensor::F32(_, v) => v,
            FixtureTensor::I64(..) => panic!("expected a float tensor"),
        }
    }

    /// The integer data, panicking for float tensors.
    pub fn i64(&self) -> &[i64] {
        match self {
            FixtureTensor::I64(_, v) => v,
            FixtureTensor::F32(..) => panic!("expected an integer tensor"),
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            FixtureTensor::F32(s, _) | FixtureTensor::I64(s, _) => s,
        }
    }
}

/// Every tensor of a fixture safetensors file (relative to [`fixtures_dir`]).
pub fn read_fixture(relative: &str) -> BTreeMap<String, FixtureTensor> {
    let path = fixtures_dir().join(relative);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let tensors = SafeTensors::deserialize(&bytes).expect("fixture is valid safetensors");
    tensors
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let shape = view.shape().to_vec();
            let data = view.data();
            let tensor = match view.dtype() {
                Dtype::F32 => FixtureTensor::F32(
                    shape,
                    data.chunks_exact(4)
                        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                        .collect(),
                ),
                Dtype::I64 => FixtureTensor::I64(
                    shape,
                    data.chunks_exact(8)
                        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
                        .collect(),
                ),
                other => panic!("unexpected fixture dtype {other:?} for {name}"),
            };
            (name, tensor)
        })
        .collect()
}

/// Largest absolute difference between two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Index of the largest element.
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}
