//! PEFT adapter files: `adapter_config.json` + `adapter_model.safetensors`, read and written
//! as PEFT does for LoRA.
//!
//! Keys are `base_model.model.<module>.lora_A.weight` (`[r, in]`) and `.lora_B.weight`
//! (`[out, r]`); files without the `base_model.model.` prefix and with PEFT's `.default` adapter
//! infix are accepted. `modules_to_save` tensors are stored under their full module path.
//! Config fields: the LoRA fields are used; informational ones (`revision`, `peft_version`,
//! `inference_mode`, …) are accepted; every other field must hold its neutral value (`null`,
//! `false`, `{}`, `[]`, or PEFT's default), otherwise the file is refused with the field named.

use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData};
use lora_core::io::write_atomic;
use lora_core::io::{HostTensor, NamedTensors, SafetensorsFile, SaveDtype, safetensors_bytes};
use lora_core::{LoraAdapter, LoraConfig, LoraInit};
use serde_json::{Map, Value, json};

use crate::adaptable::{Adaptable, selected_biases};
use crate::error::{Result, SurgeryError};
use crate::inject::{InjectionReport, plan};
use crate::target::{BiasMode, LayerIndices, ModulePattern, TargetSpec};
use crate::task_type::TaskType;

/// The prefix PEFT puts before module paths in adapter files.
pub const KEY_PREFIX: &str = "base_model.model.";

/// The LoRA settings of an `adapter_config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct PeftConfig {
    /// Which modules (and layers) the adapter covers, with rank/alpha overrides.
    pub targets: TargetSpec,
    /// Rank, alpha, dropout, rsLoRA and init.
    pub lora: LoraConfig,
    /// `task_type` (`None` if absent).
    pub task_type: Option<TaskType>,
    /// `base_model_name_or_path`.
    pub base_model: Option<String>,
    /// Whole modules trained and saved with the adapter (e.g. `classifier`).
    pub modules_to_save: Vec<String>,
    /// `fan_in_fan_out`: the adapted layers store weights `[in, out]` (GPT-2's `Conv1D`). PEFT
    /// sets it from the layer type whatever the file says, and so does this crate: it is
    /// written from the model ([`Adaptable::fan_in_fan_out`]) and, when a file disagrees with
    /// the model, the model wins (with a warning), as in PEFT.
    pub fan_in_fan_out: bool,
}

/// The largest update `s·B·A` accepted from a file, relative to the largest entry of the
/// weight it adapts (see [`LoraLinear::check_update_size`](lora_core::LoraLinear::check_update_size)).
pub const MAX_UPDATE_RATIO: f32 = 1e6;

/// The head names PEFT's `PeftModelForSequenceClassification` adds to `modules_to_save`.
pub const SEQ_CLS_HEADS: [&str; 2] = ["classifier", "score"];

/// Fields that are read and used.
const USED: [&str; 16] = [
    "fan_in_fan_out",
    "peft_type",
    "task_type",
    "base_model_name_or_path",
    "r",
    "lora_alpha",
    "lora_dropout",
    "target_modules",
    "exclude_modules",
    "bias",
    "use_rslora",
    "modules_to_save",
    "layers_to_transform",
    "layers_pattern",
    "rank_pattern",
    "alpha_pattern",
];
/// Fields that describe the file, not the computation: any value is fine.
const INFORMATIONAL: [&str; 5] = [
    "revision",
    "inference_mode",
    "peft_version",
    "auto_mapping",
    "init_lora_weights",
];

/// Whether a field we do not implement holds its neutral value.
fn is_neutral(field: &str, value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::String(s) => field == "megatron_core" && s == "megatron.core",
        // PEFT writes its default group size even when QA-LoRA is off.
        Value::Number(n) => field == "qalora_group_size" && n.as_u64() == Some(16),
        Value::Bool(true) => false,
    }
}

impl PeftConfig {
    /// A config for `lora` on the modules `targets` selects, with no task type, base model or
    /// `modules_to_save` (set the public fields for those).
    pub fn new(targets: TargetSpec, lora: LoraConfig) -> Self {
        Self {
            targets,
            lora,
            task_type: None,
            base_model: None,
            modules_to_save: Vec::new(),
            fan_in_fan_out: false,
        }
    }

    /// The `modules_to_save` PEFT uses for this config: the listed ones, plus, for a `SEQ_CLS`
    /// adapter, the classification heads PEFT always adds (`classifier`, `score`; see
    /// [`SEQ_CLS_HEADS`]), even when the config says `null`.
    pub fn effective_modules_to_save(&self) -> Vec<String> {
        let mut names = self.modules_to_save.clone();
        if self.task_type == Some(TaskType::SeqCls) {
            for head in SEQ_CLS_HEADS {
                if !names.iter().any(|n| n == head) {
                    names.push(head.to_string());
                }
            }
        }
        names
    }

    /// Reads and checks an `adapter_config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).map_err(lora_core::io::file_error("read", path))?;
        Self::from_json(path, &text)
    }

    /// Parses and checks config JSON (`path` is used in messages).
    pub fn from_json(path: &Path, text: &str) -> Result<Self> {
        let bad = |reason: String| SurgeryError::Config {
            path: path.to_path_buf(),
            reason,
        };
        let value: Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        let map = value
            .as_object()
            .ok_or_else(|| bad("not a JSON object".into()))?;
        for (field, value) in map {
            if USED.contains(&field.as_str()) || INFORMATIONAL.contains(&field.as_str()) {
                continue;
            }
            if !is_neutral(field, value) {
                return Err(SurgeryError::UnsupportedField {
                    field: field.clone(),
                    value: value.to_string(),
                    reason: "lora-burn implements plain LoRA (optionally rsLoRA); this field \
                             must be null, false or empty"
                        .into(),
                });
            }
        }
        let get = |k: &str| map.get(k).filter(|v| !v.is_null());
        let peft_type = get("peft_type").and_then(Value::as_str).unwrap_or("");
        if peft_type != "LORA" {
            return Err(SurgeryError::UnsupportedField {
                field: "peft_type".into(),
                value: json!(peft_type).to_string(),
                reason: "only \"LORA\" adapters are supported".into(),
            });
        }
        let bias: BiasMode = match get("bias") {
            None => BiasMode::None,
            Some(v) => {
                serde_json::from_value(v.clone()).map_err(|_| SurgeryError::UnsupportedField {
                    field: "bias".into(),
                    value: v.to_string(),
                    reason: "supported: \"none\", \"all\", \"lora_only\"".into(),
                })?
            }
        };
        // A used field of the wrong type is refused by name (PEFT's own loader would fail on
        // it, or compute something else), never replaced by its default.
        let typed =
            |k: &'static str, expected: &str, ok: fn(&Value) -> bool| -> Result<Option<&Value>> {
                match get(k) {
                    Some(v) if !ok(v) => Err(SurgeryError::UnsupportedField {
                        field: k.into(),
                        value: v.to_string(),
                        reason: format!("it must be {expected}"),
                    }),
                    other => Ok(other),
                }
            };
        let r = typed("r", "a positive integer", |v| v.as_u64().is_some())?
            .and_then(Value::as_u64)
            .ok_or_else(|| bad("missing \"r\"".into()))? as usize;
        let alpha = typed("lora_alpha", "a number", Value::is_number)?
            .and_then(Value::as_f64)
            .unwrap_or(8.0);
        let dropout = typed("lora_dropout", "a number", Value::is_number)?
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        let use_rslora = typed("use_rslora", "true or false", Value::is_boolean)?
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let base_model = typed("base_model_name_or_path", "a string", Value::is_string)?
            .and_then(Value::as_str)
            .map(str::to_string);
        let field = |k: &str| -> Result<Option<Value>> { Ok(get(k).cloned()) };
        let parse = |k: &'static str| -> Result<Option<ModulePattern>> {
            field(k)?
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| bad(format!("{k}: {e}")))
        };
        let init = match get("init_lora_weights") {
            None | Some(Value::Bool(true)) => LoraInit::Kaiming,
            Some(Value::Bool(false)) => LoraInit::Random,
            Some(Value::String(s)) if s == "gaussian" => LoraInit::Gaussian,
            Some(other) => {
                return Err(SurgeryError::UnsupportedField {
                    field: "init_lora_weights".into(),
                    value: other.to_string(),
                    reason: "supported: true, false, \"gaussian\"".into(),
                });
            }
        };
        let lora = LoraConfig {
            r,
            alpha,
            dropout,
            use_rslora,
            init,
        };
        lora.validate()?;
        let targets = TargetSpec {
            target_modules: parse("target_modules")?,
            exclude_modules: parse("exclude_modules")?,
            layers_to_transform: field("layers_to_transform")?
                .map(serde_json::from_value::<LayerIndices>)
                .transpose()
                .map_err(|e| bad(format!("layers_to_transform: {e}")))?,
            layers_pattern: parse("layers_pattern")?,
            rank_pattern: field("rank_pattern")?
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| bad(format!("rank_pattern: {e}")))?
                .unwrap_or_default(),
            alpha_pattern: field("alpha_pattern")?
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| bad(format!("alpha_pattern: {e}")))?
                .unwrap_or_default(),
            bias,
        };
        if targets.target_modules.is_none() {
            return Err(bad("no target_modules".into()));
        }
        let task_type = match get("task_type") {
            None => None,
            Some(v) => Some(v.as_str().and_then(TaskType::parse).ok_or_else(|| {
                SurgeryError::UnsupportedField {
                    field: "task_type".into(),
                    value: v.to_string(),
                    reason: format!("PEFT's task types are {}", TaskType::NAMES.join(", ")),
                }
            })?),
        };
        let modules_to_save = match get("modules_to_save") {
            None => Vec::new(),
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| bad(format!("modules_to_save: {e}")))?,
        };
        let fan_in_fan_out = match get("fan_in_fan_out") {
            None => false,
            Some(v) => v.as_bool().ok_or_else(|| SurgeryError::UnsupportedField {
                field: "fan_in_fan_out".into(),
                value: v.to_string(),
                reason: "it must be true or false".into(),
            })?,
        };
        Ok(Self {
            targets,
            lora,
            fan_in_fan_out,
            task_type,
            base_model,
            modules_to_save,
        })
    }

    /// The minimal `adapter_config.json` that old and new PEFT versions accept.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("peft_type".into(), json!("LORA"));
        map.insert("task_type".into(), json!(self.task_type));
        map.insert("base_model_name_or_path".into(), json!(self.base_model));
        map.insert("r".into(), json!(self.lora.r));
        map.insert("lora_alpha".into(), json!(self.lora.alpha));
        map.insert("lora_dropout".into(), json!(self.lora.dropout));
        map.insert("target_modules".into(), json!(self.targets.target_modules));
        map.insert("bias".into(), json!(self.targets.bias));
        map.insert("use_rslora".into(), json!(self.lora.use_rslora));
        map.insert("fan_in_fan_out".into(), json!(self.fan_in_fan_out));
        map.insert("inference_mode".into(), json!(true));
        map.insert(
            "init_lora_weights".into(),
            match self.lora.init {
                LoraInit::Kaiming => json!(true),
                LoraInit::Random => json!(false),
                LoraInit::Gaussian => json!("gaussian"),
            },
        );
        let optional: [(&str, Value); 6] = [
            ("exclude_modules", json!(self.targets.exclude_modules)),
            (
                "layers_to_transform",
                json!(self.targets.layers_to_transform),
            ),
            ("layers_pattern", json!(self.targets.layers_pattern)),
            ("rank_pattern", json!(self.targets.rank_pattern)),
            ("alpha_pattern", json!(self.targets.alpha_pattern)),
            ("modules_to_save", json!(self.modules_to_save)),
        ];
        for (k, v) in optional {
            if !is_neutral(k, &v) {
                map.insert(k.into(), v);
            }
        }
        Value::Object(map)
    }
}

/// What [`load_adapter`] put into the model.
#[derive(Debug)]
pub struct LoadedAdapter {
    /// The adapter's config.
    pub config: PeftConfig,
    /// Where each adapter went, with its resolved r, alpha and scaling.
    pub report: InjectionReport,
    /// `modules_to_save` tensors by parameter path (e.g. `classifier.weight`), PyTorch layout.
    pub saved_modules: NamedTensors,
}

/// Normalises an adapter key as PEFT's `set_peft_model_state_dict` reads it: strips the
/// `base_model.model.` prefix, an adapter-name infix after `lora_A` / `lora_B`
/// (`lora_A.default.weight`, as a model's own `state_dict` holds it, whatever the name), and a
/// saved module's `modules_to_save.<name>.` wrapper. Returns the key and the adapter name it
/// carried, if any.
fn normalise_key(key: &str) -> (String, Option<String>) {
    let key = key.strip_prefix(KEY_PREFIX).unwrap_or(key);
    let parts: Vec<&str> = key.split('.').collect();
    let n = parts.len();
    let mut out: Vec<&str> = Vec::with_capacity(n);
    let mut name = None;
    let mut i = 0;
    while i < n {
        match parts[i] {
            // `<module>.lora_A.<name>.weight`
            "lora_A" | "lora_B" if i + 3 == n => {
                out.push(parts[i]);
                name = Some(parts[i + 1].to_string());
                i += 2;
            }
            // `<module>.modules_to_save.<name>.<parameter path>`
            "modules_to_save" if i + 2 < n => {
                name = Some(parts[i + 1].to_string());
                i += 2;
            }
            part => {
                out.push(part);
                i += 1;
            }
        }
    }
    (out.join("."), name)
}

/// The adapter's settings file in a PEFT directory.
pub const CONFIG_FILE: &str = "adapter_config.json";
/// The adapter's weights file in a PEFT directory.
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// A PEFT adapter directory read into memory: its config and every tensor (as `f32`, under its
/// normalised key: no `base_model.model.` prefix, no `.default` infix).
#[derive(Debug)]
pub struct AdapterFiles {
    /// `adapter_config.json`.
    pub config: PeftConfig,
    /// The path of `adapter_model.safetensors` (for messages).
    pub weights_path: PathBuf,
    /// Every tensor by normalised key, PyTorch layout.
    pub tensors: NamedTensors,
}

impl AdapterFiles {
    /// Reads `adapter_config.json` and `adapter_model.safetensors` of `dir`.
    pub fn read(dir: &Path) -> Result<Self> {
        let config = PeftConfig::from_file(&dir.join(CONFIG_FILE))?;
        let weights_path = dir.join(WEIGHTS_FILE);
        if !weights_path.is_file() && dir.join("adapter_model.bin").is_file() {
            return Err(SurgeryError::Config {
                path: dir.join("adapter_model.bin"),
                reason: "this is a pickle file, which lora-burn never loads (unpickling runs \
                         code); convert it once in Python: `from safetensors.torch import \
                         save_file; import torch; save_file(torch.load('adapter_model.bin', \
                         weights_only=True), 'adapter_model.safetensors')`"
                    .into(),
            });
        }
        let file = SafetensorsFile::open(&weights_path)?;
        let bad = |reason: String| SurgeryError::Config {
            path: weights_path.clone(),
            reason,
        };
        let mut tensors = NamedTensors::new();
        let mut names = std::collections::BTreeSet::new();
        for key in file.names() {
            let (normalised, name) = normalise_key(key);
            names.extend(name);
            if tensors
                .insert(normalised.clone(), file.read(key)?)
                .is_some()
            {
                return Err(bad(format!(
                    "two tensors are the same parameter once the adapter names and prefixes \
                     are removed: {normalised}"
                )));
            }
        }
        if names.len() > 1 {
            return Err(bad(format!(
                "the file holds the tensors of several adapters ({}); save each adapter on its \
                 own, as PEFT's save_pretrained does",
                names.into_iter().collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(Self {
            config,
            weights_path,
            tensors,
        })
    }

    /// ` (the adapter was made for base model 'X')`, from `base_model_name_or_path`, to end a
    /// mismatch message: the usual cause is an adapter for another base.
    pub fn base_model_hint(&self) -> String {
        self.config
            .base_model
            .as_deref()
            .map(|b| format!(" (the adapter was made for base model '{b}')"))
            .unwrap_or_default()
    }

    /// A [`SurgeryError::Mismatch`] about this adapter's weights file.
    pub fn mismatch(&self, reason: impl Into<String>) -> SurgeryError {
        SurgeryError::Mismatch {
            path: self.weights_path.clone(),
            reason: reason.into(),
        }
    }
}

/// Loads a PEFT LoRA adapter directory onto `model` as the adapter called `name`.
///
/// Every module the config targets must have both factors in the file with the config's
/// shapes; a key that fits no targeted module (and no `modules_to_save` entry) is refused too.
/// The error names the first missing and unexpected keys, or the shape mismatch.
pub fn load_adapter<M: Adaptable + ?Sized>(
    model: &mut M,
    dir: &Path,
    name: &str,
) -> Result<LoadedAdapter> {
    apply_adapter(model, AdapterFiles::read(dir)?, name)
}

/// Puts an adapter read with [`AdapterFiles::read`] into `model` as the adapter called `name`
/// (the body of [`load_adapter`], for callers that look at the files first).
pub fn apply_adapter<M: Adaptable + ?Sized>(
    model: &mut M,
    files: AdapterFiles,
    name: &str,
) -> Result<LoadedAdapter> {
    let for_base = files.base_model_hint();
    if files.config.fan_in_fan_out != model.fan_in_fan_out() {
        tracing::warn!(
            file = files.config.fan_in_fan_out,
            model = model.fan_in_fan_out(),
            "adapter_config.json's fan_in_fan_out does not match the model's layers; using the \
             model's, as PEFT does"
        );
    }
    let mismatch = |reason: String| files.mismatch(format!("{reason}{for_base}"));
    let config = &files.config;
    let tensors = &files.tensors;
    let report = plan(model, &config.targets, &config.lora).map_err(|e| match e {
        SurgeryError::NothingMatched { targets, available } => files.mismatch(format!(
            "it targets {targets}, which matches none of this model's layers{for_base}; the \
             model's linear layers are:\n  {}",
            available.join("\n  ")
        )),
        other => other,
    })?;
    let mut missing = Vec::new();
    for planned in &report.targeted {
        for factor in ["lora_A", "lora_B"] {
            let key = format!("{}.{factor}.weight", planned.name);
            if !tensors.contains_key(&key) {
                missing.push(key);
            }
        }
    }
    let saved_names = config.effective_modules_to_save();
    let saved_modules: NamedTensors = tensors
        .iter()
        .filter(|(k, _)| saved_names.iter().any(|m| within_module(k, m)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let targeted: Vec<String> = report.targeted.iter().map(|p| p.name.clone()).collect();
    let biases = selected_biases(model, config.targets.bias, &targeted);
    let unexpected: Vec<&String> = tensors
        .keys()
        .filter(|k| !saved_modules.contains_key(*k) && !biases.contains(*k))
        .filter(|k| {
            !report.targeted.iter().any(|p| {
                **k == format!("{}.lora_A.weight", p.name)
                    || **k == format!("{}.lora_B.weight", p.name)
            })
        })
        .collect();
    if !missing.is_empty() || !unexpected.is_empty() {
        let mut parts = Vec::new();
        if !missing.is_empty() {
            parts.push(format!(
                "{} tensor(s) the config implies are missing (first 5: {:?})",
                missing.len(),
                &missing[..missing.len().min(5)]
            ));
        }
        if !unexpected.is_empty() {
            parts.push(format!(
                "{} tensor(s) fit no targeted module or modules_to_save entry (first 5: {:?})",
                unexpected.len(),
                &unexpected[..unexpected.len().min(5)]
            ));
        }
        return Err(mismatch(parts.join("; ")));
    }
    for (module, linear) in model.linears_mut() {
        let Some(planned) = report.targeted.iter().find(|p| p.name == module) else {
            continue;
        };
        let a = &tensors[&format!("{module}.lora_A.weight")];
        let b = &tensors[&format!("{module}.lora_B.weight")];
        let (d_in, d_out, r) = (linear.in_features(), linear.out_features(), planned.r);
        if a.shape != [r, d_in] || b.shape != [d_out, r] {
            return Err(mismatch(format!(
                "'{module}': lora_A is {:?} (expected [{r}, {d_in}]), lora_B is {:?} \
                 (expected [{d_out}, {r}])",
                a.shape, b.shape
            )));
        }
        let device = linear.device();
        let upload = |t: &HostTensor, key: &str, stored: [usize; 2]| {
            t.check_finite(key)?;
            Ok::<_, SurgeryError>(t.clone().into_tensor_transposed(key, stored, &device)?)
        };
        let a = upload(a, &format!("{module}.lora_A.weight"), [r, d_in])?;
        let b = upload(b, &format!("{module}.lora_B.weight"), [d_out, r])?;
        let lora = LoraConfig {
            r,
            alpha: planned.alpha,
            ..config.lora
        };
        linear.insert_adapter(LoraAdapter::from_factors(name, lora, a, b)?)?;
        linear
            .check_update_size(name, MAX_UPDATE_RATIO)
            .map_err(|e| mismatch(format!("'{module}': {e}")))?;
    }
    install_saved_copies(model, &files, &saved_modules, name)?;
    // Trained biases (bias "all" / "lora_only") replace the model's, as PEFT loads them.
    for (bias_name, bias) in model.biases_mut() {
        if !biases.contains(&bias_name) {
            continue;
        }
        let Some(saved) = tensors.get(&bias_name) else {
            continue;
        };
        let dims = bias.dims();
        if saved.shape != dims {
            return Err(mismatch(format!(
                "'{bias_name}' is {:?}, the model's is {dims:?}",
                saved.shape
            )));
        }
        saved.check_finite(&bias_name)?;
        let device = bias.device();
        let value = Tensor::<1>::from_data(TensorData::new(saved.data.clone(), dims), &device);
        *bias = bias
            .clone()
            .map(|_| value)
            .set_require_grad(config.targets.bias != BiasMode::None);
    }
    Ok(LoadedAdapter {
        config: files.config,
        report,
        saved_modules,
    })
}

/// Whether a tensor key or module path lies within a module that `modules_to_save` entry `m`
/// selects. PEFT wraps every module whose name ends with `m` (a plain string suffix, so
/// `classifier` also selects DistilBERT's `pre_classifier`), and a wrapped module takes its
/// children along (RoBERTa's `classifier` head holds `classifier.dense` and
/// `classifier.out_proj`): so any dotted prefix of `path` that ends with `m` counts.
pub(crate) fn within_module(path: &str, m: &str) -> bool {
    !m.is_empty()
        && path
            .match_indices('.')
            .map(|(i, _)| &path[..i])
            .chain(std::iter::once(path))
            .any(|prefix| prefix.ends_with(m))
}

#[cfg(test)]
#[test]
fn modules_to_save_match_as_peft_does() {
    assert!(within_module("classifier", "classifier"));
    assert!(within_module("classifier.weight", "classifier"));
    assert!(within_module("classifier.out_proj.weight", "classifier"));
    assert!(within_module("pre_classifier.bias", "classifier"));
    assert!(within_module("bert.pooler.dense", "pooler.dense"));
    assert!(!within_module("classifier_x.weight", "classifier.weight.y"));
    assert!(!within_module("score.weight", "classifier"));
}

/// Gives every `modules_to_save` linear of the model its copy from the file.
fn install_saved_copies<M: Adaptable + ?Sized>(
    model: &mut M,
    files: &AdapterFiles,
    saved: &NamedTensors,
    name: &str,
) -> Result<()> {
    let listed = &files.config.modules_to_save;
    let effective = files.config.effective_modules_to_save();
    for (module, linear) in model.linears_mut() {
        if !effective.iter().any(|m| within_module(&module, m)) {
            continue;
        }
        let (d_in, d_out) = (linear.in_features(), linear.out_features());
        let weight_key = format!("{module}.weight");
        let Some(weight) = saved.get(&weight_key) else {
            if listed.iter().any(|m| within_module(&module, m)) {
                return Err(files.mismatch(format!(
                    "modules_to_save lists '{module}', but '{weight_key}' is missing"
                )));
            }
            // A head PEFT adds on its own (SEQ_CLS) that the file does not carry: PEFT keeps
            // the model's own head, and so do we.
            continue;
        };
        weight.check_finite(&weight_key)?;
        let device = linear.device();
        let weight = weight
            .clone()
            .into_tensor_transposed(&weight_key, [d_out, d_in], &device)
            .map_err(|e| files.mismatch(e.to_string()))?;
        let bias_key = format!("{module}.bias");
        let bias = match saved.get(&bias_key) {
            Some(b) => {
                b.check_finite(&bias_key)?;
                Some(
                    b.clone()
                        .into_tensor::<1>(&bias_key, [d_out], &device)
                        .map_err(|e| files.mismatch(e.to_string()))?,
                )
            }
            None => None,
        };
        linear.insert_saved_copy(name, Some((weight, bias)))?;
    }
    Ok(())
}

/// The tensors of adapter `name` of `model` as a PEFT file holds them (keys with the
/// `base_model.model.` prefix, PyTorch's orientation): the factors of every layer that holds
/// the adapter, its saved copies of `modules_to_save` layers, and the biases `config.targets.bias`
/// selects.
pub fn adapter_tensors<M: Adaptable + ?Sized>(
    model: &M,
    name: &str,
    config: &PeftConfig,
) -> Result<Vec<(String, HostTensor)>> {
    let mut tensors = Vec::new();
    let mut targeted = Vec::new();
    for (module, linear) in model.linears() {
        if let Ok(adapter) = linear.adapter(name) {
            // PyTorch's orientation: lora_A [r, in], lora_B [out, r].
            tensors.push((
                format!("{KEY_PREFIX}{module}.lora_A.weight"),
                HostTensor::from_tensor(adapter.lora_a.val().transpose())?,
            ));
            tensors.push((
                format!("{KEY_PREFIX}{module}.lora_B.weight"),
                HostTensor::from_tensor(adapter.lora_b.val().transpose())?,
            ));
            targeted.push(module.clone());
        }
        if let Some(copy) = linear.saved_copies.iter().find(|c| c.name == name) {
            tensors.push((
                format!("{KEY_PREFIX}{module}.weight"),
                HostTensor::from_tensor(copy.weight.val().transpose())?,
            ));
            if let Some(bias) = &copy.bias {
                tensors.push((
                    format!("{KEY_PREFIX}{module}.bias"),
                    HostTensor::from_tensor(bias.val())?,
                ));
            }
        }
    }
    if !targeted.is_empty() {
        let selected = selected_biases(model, config.targets.bias, &targeted);
        for (bias_name, bias) in model.biases() {
            if selected.contains(&bias_name) {
                tensors.push((
                    format!("{KEY_PREFIX}{bias_name}"),
                    HostTensor::from_tensor(bias.val())?,
                ));
            }
        }
    }
    if tensors.is_empty() {
        return Err(SurgeryError::Lora(lora_core::LoraError::UnknownAdapter {
            name: name.to_string(),
            known: crate::adapters::adapter_names(model),
        }));
    }
    Ok(tensors)
}

/// Writes the adapter called `name` of `model` as a PEFT directory (`adapter_config.json`,
/// `adapter_model.safetensors` with F32 tensors and `{"format": "pt"}` metadata), including the
/// adapter's saved copies of `modules_to_save` layers under their full module path. Each file is
/// written to a temporary name and renamed into place.
pub fn save_adapter<M: Adaptable + ?Sized>(
    model: &M,
    name: &str,
    config: &PeftConfig,
    dir: &Path,
) -> Result<()> {
    let tensors = adapter_tensors(model, name, config)?;
    let config = PeftConfig {
        fan_in_fan_out: model.fan_in_fan_out(),
        ..config.clone()
    };
    std::fs::create_dir_all(dir).map_err(lora_core::io::file_error("create", dir))?;
    let weights_path = dir.join(WEIGHTS_FILE);
    write_atomic(&weights_path, &safetensors_bytes(&tensors, SaveDtype::F32)?)?;
    let json = serde_json::to_string_pretty(&config.to_json()).expect("JSON values serialise");
    Ok(write_atomic(&dir.join(CONFIG_FILE), json.as_bytes())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Result<PeftConfig> {
        let text = format!(
            r#"{{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["query"]{extra}}}"#
        );
        PeftConfig::from_json(Path::new("adapter_config.json"), &text)
    }

    #[test]
    fn neutral_fields_are_accepted_and_active_ones_refused() {
        assert!(config(r#", "use_dora": false, "loftq_config": {}, "megatron_core": "megatron.core", "qalora_group_size": 16, "layer_replication": null, "future_field": null"#).is_ok());
        for (extra, field) in [
            (r#", "use_dora": true"#, "use_dora"),
            (r#", "fan_in_fan_out": "yes""#, "fan_in_fan_out"),
            (r#", "layer_replication": [[0, 4]]"#, "layer_replication"),
            (r#", "future_field": 3"#, "future_field"),
            (r#", "bias": "some""#, "bias"),
            (r#", "init_lora_weights": "pissa""#, "init_lora_weights"),
        ] {
            let e = config(extra).unwrap_err();
            assert!(
                e.to_string().contains(&format!("'{field}'")),
                "{extra}: {e}"
            );
        }
        let e = PeftConfig::from_json(Path::new("c.json"), r#"{"peft_type": "IA3", "r": 4}"#)
            .unwrap_err();
        assert!(e.to_string().contains("only \"LORA\""), "{e}");
    }

    #[test]
    fn keys_are_normalised_as_peft_reads_them() {
        let key = |k: &str| normalise_key(k);
        assert_eq!(
            key("base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.default.weight"),
            (
                "bert.encoder.layer.0.attention.self.query.lora_A.weight".into(),
                Some("default".into())
            )
        );
        assert_eq!(
            key("bert.encoder.layer.0.attention.self.query.lora_B.sentiment.weight"),
            (
                "bert.encoder.layer.0.attention.self.query.lora_B.weight".into(),
                Some("sentiment".into())
            )
        );
        assert_eq!(
            key("base_model.model.query.lora_A.weight"),
            ("query.lora_A.weight".into(), None)
        );
        assert_eq!(
            key("classifier.modules_to_save.default.out_proj.weight"),
            ("classifier.out_proj.weight".into(), Some("default".into()))
        );
        assert_eq!(key("classifier.weight"), ("classifier.weight".into(), None));
    }

    #[test]
    fn fields_of_the_wrong_type_are_refused_by_name() {
        for (extra, field) in [
            (r#", "use_rslora": "x""#, "use_rslora"),
            (r#", "lora_alpha": "16""#, "lora_alpha"),
            (r#", "lora_dropout": "0.1""#, "lora_dropout"),
            (
                r#", "base_model_name_or_path": 7"#,
                "base_model_name_or_path",
            ),
            (r#", "r": 8.5"#, "r"),
        ] {
            let e = config(extra).unwrap_err().to_string();
            assert!(e.contains(field), "{extra}: {e}");
        }
        // Unknown fields with their neutral value are PEFT's newer options, off.
        assert!(config(r#", "some_future_option": null"#).is_ok());
    }

    #[test]
    fn written_config_round_trips() {
        let mut c = config(r#", "rank_pattern": {"value": 2}, "use_rslora": true"#).unwrap();
        c.modules_to_save = vec!["classifier".into()];
        let back = PeftConfig::from_json(Path::new("x"), &c.to_json().to_string()).unwrap();
        assert_eq!(back, c);
    }
}
