//! Conformance of the model families with transformers and PEFT, on any device: a fixture
//! directory (`tests/fixtures/tiny_*`, written by `cargo xtask fixtures` in the pinned Python
//! environment) holds a tiny random checkpoint (`model/`), a PEFT adapter for it (`adapter/`)
//! and what transformers and PEFT computed (`reference.safetensors`, `reference.json`).
//! [`check_fixture`] loads both here and compares: base logits (and, for an encoder, the last
//! hidden states), the adapter active, disabled and merged, the adapter tensors written back
//! bit for bit, and, for a decoder, greedy continuations with the KV cache.
//!
//! The workspace's `families` tests assert every check of every fixture on the CPU backends;
//! `lora conformance` runs the same checks on a GPU (the GPU bundle's parity step).
//!
//! ```no_run
//! use lora_eval::conformance::{check_fixture, fixture_dirs};
//!
//! let device = lora_core::select_device(Some("flex"))?;
//! for dir in fixture_dirs("tests/fixtures".as_ref())? {
//!     let report = check_fixture(&dir, &device, 1e-4)?;
//!     println!("{}: {}", report.fixture, if report.passed { "ok" } else { "FAILED" });
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor, TensorData};
use lora_models::{
    DecoderForCausalLM, Encoder, EncoderForSequenceClassification, KvCache, ModelSource,
    SafetensorsWeights, TokenBatch, load_causal_lm, load_sequence_classifier,
};
use lora_surgery::{Adaptable, AdapterFiles, load_adapter, with_adapters_disabled};
use safetensors::{Dtype, SafeTensors};
use serde::Serialize;

use crate::error::{EvalError, Result};

/// A tensor of a reference file: float or integer data with its shape.
#[derive(Debug, Clone, PartialEq)]
pub enum FixtureTensor {
    /// Float data (stored as F32).
    F32(Vec<usize>, Vec<f32>),
    /// Integer data (stored as I64).
    I64(Vec<usize>, Vec<i64>),
}

impl FixtureTensor {
    /// The float data, if the tensor is a float one.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match self {
            Self::F32(_, v) => Some(v),
            Self::I64(..) => None,
        }
    }

    /// The integer data, if the tensor is an integer one.
    pub fn as_i64(&self) -> Option<&[i64]> {
        match self {
            Self::I64(_, v) => Some(v),
            Self::F32(..) => None,
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            Self::F32(s, _) | Self::I64(s, _) => s,
        }
    }
}

/// Every tensor of a safetensors file of F32 and I64 tensors, by name.
pub fn read_tensors(path: &Path) -> Result<BTreeMap<String, FixtureTensor>> {
    let bad = |reason: String| EvalError::Config(format!("{}: {reason}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let tensors = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let mut out = BTreeMap::new();
    for (name, view) in tensors.tensors() {
        let shape = view.shape().to_vec();
        let data = view.data();
        let tensor = match view.dtype() {
            Dtype::F32 => FixtureTensor::F32(
                shape,
                data.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
            ),
            Dtype::I64 => FixtureTensor::I64(
                shape,
                data.chunks_exact(8)
                    .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                    .collect(),
            ),
            other => {
                return Err(bad(format!(
                    "tensor {name} is {other:?}; reference files hold F32 and I64 tensors"
                )));
            }
        };
        out.insert(name, tensor);
    }
    Ok(out)
}

/// Largest absolute difference between two slices (infinite when their lengths differ, or
/// when either holds a NaN).
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return f32::INFINITY;
    }
    a.iter().zip(b).fold(0.0, |m, (x, y)| {
        let d = (x - y).abs();
        if d.is_nan() { f32::INFINITY } else { m.max(d) }
    })
}

/// One comparison of a fixture.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// What was compared (`prompt 0: adapter active`, `merged`, …).
    pub name: String,
    /// The largest absolute difference, for a comparison of floats.
    pub max_abs_diff: Option<f32>,
    /// The tolerance it was held to, for a comparison of floats.
    pub tolerance: Option<f32>,
    /// Whether it passed.
    pub passed: bool,
    /// What differed, when an exact comparison failed.
    pub detail: Option<String>,
}

/// The checks of one fixture.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FixtureReport {
    /// The fixture's directory name (`tiny_llama`).
    pub fixture: String,
    /// The model family (`model_type`).
    pub family: String,
    /// Every comparison, in order.
    pub checks: Vec<Check>,
    /// Whether every check passed.
    pub passed: bool,
}

impl FixtureReport {
    /// The checks that failed.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.passed)
    }
}

/// The fixture directories under `root`: those holding `reference.json`,
/// `reference.safetensors`, `model/` and `adapter/`, sorted by name.
pub fn fixture_dirs(root: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(root)
        .map_err(|e| EvalError::Config(format!("reading fixtures {}: {e}", root.display())))?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|d| {
            d.join("reference.json").is_file()
                && d.join("reference.safetensors").is_file()
                && d.join("model").is_dir()
                && d.join("adapter").is_dir()
        })
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        return Err(EvalError::Config(format!(
            "no conformance fixtures under {} (directories with reference.json, \
             reference.safetensors, model/ and adapter/; `cargo xtask fixtures` writes them)",
            root.display()
        )));
    }
    Ok(dirs)
}

/// Runs every check of the fixture in `dir` on `device`, comparing floats within `tolerance`
/// (1e-4 fits f32 on a CPU, 1e-3 a GPU). An error means the fixture could not be run at all
/// (a missing file, a model that does not load); a mismatch is a failed [`Check`].
pub fn check_fixture(dir: &Path, device: &Device, tolerance: f32) -> Result<FixtureReport> {
    let fixture = Fixture::open(dir)?;
    let mut checks = Checks {
        tolerance,
        list: Vec::new(),
    };
    let family = fixture.family()?;
    if lora_models::Family::from_model_type(&family)
        .is_some_and(|f| matches!(f, lora_models::Family::Encoder(_)))
    {
        check_encoder(&fixture, &family, device, &mut checks)?;
    } else {
        check_decoder(&fixture, &family, device, &mut checks)?;
    }
    let passed = checks.list.iter().all(|c| c.passed);
    Ok(FixtureReport {
        fixture: dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        family,
        checks: checks.list,
        passed,
    })
}

/// A fixture directory and its reference tensors.
struct Fixture {
    dir: PathBuf,
    reference: BTreeMap<String, FixtureTensor>,
}

impl Fixture {
    fn open(dir: &Path) -> Result<Self> {
        Ok(Self {
            dir: dir.to_path_buf(),
            reference: read_tensors(&dir.join("reference.safetensors"))?,
        })
    }

    fn family(&self) -> Result<String> {
        let path = self.dir.join("reference.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| EvalError::Config(format!("{}: {e}", path.display())))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| EvalError::Config(format!("{}: {e}", path.display())))?;
        json["family"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| EvalError::Config(format!("{}: no \"family\" string", path.display())))
    }

    fn tensor(&self, name: &str) -> Result<&FixtureTensor> {
        self.reference.get(name).ok_or_else(|| {
            EvalError::Config(format!(
                "{}: reference.safetensors has no tensor {name}",
                self.dir.display()
            ))
        })
    }

    fn f32(&self, name: &str) -> Result<&[f32]> {
        self.tensor(name)?.as_f32().ok_or_else(|| {
            EvalError::Config(format!(
                "{}: {name} is not a float tensor",
                self.dir.display()
            ))
        })
    }

    fn i64(&self, name: &str) -> Result<&[i64]> {
        self.tensor(name)?.as_i64().ok_or_else(|| {
            EvalError::Config(format!(
                "{}: {name} is not an integer tensor",
                self.dir.display()
            ))
        })
    }

    fn source(&self) -> ModelSource {
        ModelSource::path(self.dir.join("model"))
    }

    fn adapter(&self) -> PathBuf {
        self.dir.join("adapter")
    }
}

/// The checks collected so far.
struct Checks {
    tolerance: f32,
    list: Vec<Check>,
}

impl Checks {
    fn close(&mut self, name: impl Into<String>, ours: &[f32], theirs: &[f32]) {
        let diff = max_abs_diff(ours, theirs);
        self.list.push(Check {
            name: name.into(),
            max_abs_diff: Some(diff),
            tolerance: Some(self.tolerance),
            passed: diff <= self.tolerance,
            detail: (ours.len() != theirs.len())
                .then(|| format!("{} values, expected {}", ours.len(), theirs.len())),
        });
    }

    fn equal<T: PartialEq + std::fmt::Debug>(
        &mut self,
        name: impl Into<String>,
        ours: T,
        theirs: T,
    ) {
        let passed = ours == theirs;
        self.list.push(Check {
            name: name.into(),
            max_abs_diff: None,
            tolerance: None,
            passed,
            detail: (!passed).then(|| format!("{ours:?}, expected {theirs:?}")),
        });
    }
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| EvalError::Config(format!("reading a tensor back: {e:?}")))
}

/// The adapter tensors the model writes back equal PEFT's file, bit for bit.
fn check_round_trip<M: Adaptable>(model: &M, fixture: &Fixture, checks: &mut Checks) -> Result<()> {
    let files = AdapterFiles::read(&fixture.adapter())?;
    let written: BTreeMap<String, Vec<f32>> =
        lora_surgery::adapter_tensors(model, "default", &files.config)?
            .into_iter()
            .map(|(k, t)| {
                (
                    k.trim_start_matches("base_model.model.").to_string(),
                    t.data,
                )
            })
            .collect();
    let original: BTreeMap<String, Vec<f32>> = files
        .tensors
        .into_iter()
        .map(|(k, t)| (k, t.data))
        .collect();
    let differing: Vec<&String> = original
        .iter()
        .filter(|(k, v)| written.get(*k) != Some(v))
        .map(|(k, _)| k)
        .collect();
    let extra: Vec<&String> = written
        .keys()
        .filter(|k| !original.contains_key(*k))
        .collect();
    checks.list.push(Check {
        name: "adapter tensors written back bit for bit".into(),
        max_abs_diff: None,
        tolerance: None,
        passed: differing.is_empty() && extra.is_empty(),
        detail: (!differing.is_empty() || !extra.is_empty())
            .then(|| format!("differing or missing: {differing:?}; not in PEFT's file: {extra:?}")),
    });
    Ok(())
}

fn check_encoder(
    fixture: &Fixture,
    family: &str,
    device: &Device,
    checks: &mut Checks,
) -> Result<()> {
    let shape = fixture.tensor("input_ids")?.shape().to_vec();
    let [batch, seq] = match shape[..] {
        [b, s] => [b, s],
        _ => {
            return Err(EvalError::Config(format!(
                "{}: input_ids has shape {shape:?}, expected [batch, seq]",
                fixture.dir.display()
            )));
        }
    };
    let ids = fixture.i64("input_ids")?.to_vec();
    let mask = fixture.i64("attention_mask")?.to_vec();
    let types = match fixture.reference.get("token_type_ids") {
        Some(_) => fixture.i64("token_type_ids")?.to_vec(),
        None => vec![0; ids.len()],
    };
    let input = TokenBatch::from_ids(ids, mask.clone(), types, [batch, seq], device)?;

    // The bare encoder (the classifier checkpoint's `{base}.` tensors) on real tokens.
    let source = fixture.source();
    let config = lora_models::read_encoder_config(&source)?.ok_or_else(|| {
        EvalError::Config(format!(
            "{}: not an encoder checkpoint",
            fixture.dir.display()
        ))
    })?;
    checks.equal("family", config.family.model_type(), family);
    let weights = SafetensorsWeights::open_dir(&fixture.dir.join("model"))?;
    let encoder = Encoder::load(&config, &weights, device)?;
    let hidden = to_vec(encoder.forward(&input)?)?;
    let reference_hidden = fixture.f32("last_hidden_state")?;
    let d = config.hidden_size;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for (token, &m) in mask.iter().enumerate() {
        if m == 1 && (token + 1) * d <= hidden.len().min(reference_hidden.len()) {
            ours.extend_from_slice(&hidden[token * d..(token + 1) * d]);
            theirs.extend_from_slice(&reference_hidden[token * d..(token + 1) * d]);
        }
    }
    checks.close("last hidden state (real tokens)", &ours, &theirs);

    let (mut model, _, _) = load_sequence_classifier(&source, device)?;
    let logits =
        |m: &EncoderForSequenceClassification| -> Result<Vec<f32>> { to_vec(m.forward(&input)?) };
    checks.close("base", &logits(&model)?, fixture.f32("logits_base")?);
    load_adapter(&mut model, &fixture.adapter(), "default")?;
    checks.close(
        "adapter active",
        &logits(&model)?,
        fixture.f32("logits_adapter_active")?,
    );
    let disabled = with_adapters_disabled(&mut model, |m| logits(m))??;
    checks.close(
        "adapter disabled",
        &disabled,
        fixture.f32("logits_adapter_disabled")?,
    );
    check_round_trip(&model, fixture, checks)?;
    lora_surgery::merge_and_unload(&mut model)?;
    checks.close("merged", &logits(&model)?, fixture.f32("logits_merged")?);
    Ok(())
}

/// Greedy decoding with the KV cache, `n` tokens, end-of-sequence ignored (as the fixtures
/// were made).
fn greedy(
    model: &DecoderForCausalLM,
    prompt: &[i64],
    n: usize,
    device: &Device,
) -> Result<Vec<i64>> {
    let mut cache = KvCache::new();
    let mut sequence: Vec<u32> = prompt.iter().map(|&t| t as u32).collect();
    let mut out = Vec::new();
    for _ in 0..n {
        let logits = to_vec(model.next_logits(&sequence, &mut cache, device)?)?;
        let token = logits
            .iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |best, (i, &x)| {
                if x > best.1 { (i, x) } else { best }
            })
            .0;
        out.push(token as i64);
        sequence.push(token as u32);
    }
    Ok(out)
}

fn check_decoder(
    fixture: &Fixture,
    family: &str,
    device: &Device,
    checks: &mut Checks,
) -> Result<()> {
    let (mut model, _) = load_causal_lm(&fixture.source(), device)?;
    checks.equal("family", model.config().family.model_type(), family);
    let prompts: Vec<Vec<i64>> = (0..2)
        .map(|i| Ok(fixture.i64(&format!("prompt{i}.input_ids"))?.to_vec()))
        .collect::<Result<_>>()?;
    let logits = |m: &DecoderForCausalLM, p: &[i64]| -> Result<Vec<f32>> {
        let ids = Tensor::<2, Int>::from_data(TensorData::new(p.to_vec(), [1, p.len()]), device);
        to_vec(m.forward(ids)?)
    };
    for (i, p) in prompts.iter().enumerate() {
        checks.close(
            format!("prompt {i}: base"),
            &logits(&model, p)?,
            fixture.f32(&format!("prompt{i}.logits_base"))?,
        );
        checks.equal(
            format!("prompt {i}: greedy base continuation"),
            greedy(&model, p, 8, device)?.as_slice(),
            fixture.i64(&format!("prompt{i}.greedy_base"))?,
        );
    }
    let loaded = load_adapter(&mut model, &fixture.adapter(), "default")?;
    checks.equal(
        "fan_in_fan_out",
        loaded.config.fan_in_fan_out,
        model.fan_in_fan_out(),
    );
    for (i, p) in prompts.iter().enumerate() {
        checks.close(
            format!("prompt {i}: adapter active"),
            &logits(&model, p)?,
            fixture.f32(&format!("prompt{i}.logits_adapter_active"))?,
        );
        checks.equal(
            format!("prompt {i}: greedy adapter continuation"),
            greedy(&model, p, 8, device)?.as_slice(),
            fixture.i64(&format!("prompt{i}.greedy_adapter"))?,
        );
        let disabled = with_adapters_disabled(&mut model, |m| logits(m, p))??;
        checks.close(
            format!("prompt {i}: adapter disabled"),
            &disabled,
            fixture.f32(&format!("prompt{i}.logits_adapter_disabled"))?,
        );
    }
    check_round_trip(&model, fixture, checks)?;
    lora_surgery::merge_and_unload(&mut model)?;
    for (i, p) in prompts.iter().enumerate() {
        checks.close(
            format!("prompt {i}: merged"),
            &logits(&model, p)?,
            fixture.f32(&format!("prompt{i}.logits_merged"))?,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_abs_diff_is_infinite_for_nan_and_length_mismatch() {
        assert_eq!(max_abs_diff(&[1.0, 2.0], &[1.5, 2.0]), 0.5);
        assert_eq!(max_abs_diff(&[1.0], &[1.0, 2.0]), f32::INFINITY);
        assert_eq!(max_abs_diff(&[f32::NAN], &[1.0]), f32::INFINITY);
    }

    #[test]
    fn an_empty_directory_has_no_fixtures() {
        let dir = tempfile::tempdir().unwrap();
        let err = fixture_dirs(dir.path()).unwrap_err().to_string();
        assert!(err.contains("no conformance fixtures"), "{err}");
    }
}
