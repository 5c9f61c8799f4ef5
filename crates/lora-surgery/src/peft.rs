//! PEFT adapter files: `adapter_config.json` + `adapter_model.safetensors`, read and written
//! as PEFT does for LoRA.
//!
//! Keys are `base_model.model.<module>.lora_A.weight` (`[r, in]`) and `.lora_B.weight`
//! (`[out, r]`); files without the `base_model.model.` prefix and with PEFT's `.default` adapter
//! infix are accepted. `modules_to_save` tensors are stored under their full module path.
//! Config fields: the LoRA fields are used; informational ones (`revision`, `peft_version`,
//! `inference_mode`, …) are accepted; every other field must hold its neutral value (`null`,
//! `false`, `{}`, `[]`, or PEFT's default), otherwise the file is refused with the field named.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData};
use lora_core::{LoraAdapter, LoraConfig, LoraInit};
use lora_models::export::{
    NamedHostTensors, SaveDtype, host_tensor, safetensors_bytes, write_atomic,
};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde_json::{Map, Value, json};

use crate::error::{Result, SurgeryError};
use crate::inject::{Adaptable, InjectionReport, plan, selected_biases};
use crate::target::{BiasMode, LayerIndices, ModulePattern, TargetSpec};

/// Host tensors by name: shape and `f32` data in PyTorch's layout.
pub type HostTensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// The prefix PEFT puts before module paths in adapter files.
pub const KEY_PREFIX: &str = "base_model.model.";

/// The LoRA settings of an `adapter_config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct PeftConfig {
    /// Which modules (and layers) the adapter covers, with rank/alpha overrides.
    pub targets: TargetSpec,
    /// Rank, alpha, dropout, rsLoRA and init.
    pub lora: LoraConfig,
    /// `task_type`: `SEQ_CLS`, `CAUSAL_LM`, … (`None` if absent).
    pub task_type: Option<String>,
    /// `base_model_name_or_path`.
    pub base_model: Option<String>,
    /// Whole modules trained and saved with the adapter (e.g. `classifier`).
    pub modules_to_save: Vec<String>,
}

/// Fields that are read and used.
const USED: [&str; 15] = [
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
        }
    }

    /// Reads and checks an `adapter_config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| SurgeryError::Io {
            action: "reading",
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
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
        let r = get("r")
            .and_then(Value::as_u64)
            .ok_or_else(|| bad("missing or invalid \"r\"".into()))? as usize;
        let alpha = get("lora_alpha").and_then(Value::as_f64).unwrap_or(8.0);
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
            dropout: get("lora_dropout").and_then(Value::as_f64).unwrap_or(0.0),
            use_rslora: get("use_rslora").and_then(Value::as_bool).unwrap_or(false),
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
        let modules_to_save = match get("modules_to_save") {
            None => Vec::new(),
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| bad(format!("modules_to_save: {e}")))?,
        };
        Ok(Self {
            targets,
            lora,
            task_type: get("task_type").and_then(Value::as_str).map(str::to_string),
            base_model: get("base_model_name_or_path")
                .and_then(Value::as_str)
                .map(str::to_string),
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
        map.insert("fan_in_fan_out".into(), json!(false));
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
    pub saved_modules: HostTensors,
}

fn read_f32(view: &TensorView<'_>) -> Option<Vec<f32>> {
    (view.dtype() == Dtype::F32).then(|| {
        view.data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    })
}

/// Normalises an adapter key: strips `base_model.model.` and a `.default` adapter infix.
fn normalise_key(key: &str) -> String {
    let key = key.strip_prefix(KEY_PREFIX).unwrap_or(key);
    key.replace(".lora_A.default.", ".lora_A.")
        .replace(".lora_B.default.", ".lora_B.")
}

/// Reads `adapter_model.safetensors` of an adapter directory: every tensor as `f32` under its
/// normalised key (see [`normalise_key`]).
fn read_adapter_tensors(dir: &Path) -> Result<(PathBuf, HostTensors)> {
    let path = dir.join("adapter_model.safetensors");
    let io = |action: &'static str| {
        let path = path.clone();
        move |reason: String| SurgeryError::Io {
            action,
            path,
            reason,
        }
    };
    let bytes = std::fs::read(&path).map_err(|e| io("reading")(e.to_string()))?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| io("parsing")(e.to_string()))?;
    let mut tensors = BTreeMap::new();
    for (key, view) in file.tensors() {
        let data = read_f32(&view).ok_or_else(|| SurgeryError::Mismatch {
            path: path.clone(),
            reason: format!(
                "tensor '{key}' is {:?}; adapter tensors must be F32",
                view.dtype()
            ),
        })?;
        tensors.insert(normalise_key(&key), (view.shape().to_vec(), data));
    }
    Ok((path, tensors))
}

/// Loads a PEFT LoRA adapter directory onto `model` as the adapter called `name`.
///
/// Every module the config targets must have both factors in the file with the config's
/// shapes; a key that fits no targeted module (and no `modules_to_save` entry) is refused too.
/// The error names the first missing and unexpected keys, or the shape mismatch.
pub fn load_adapter<M: Adaptable>(model: &mut M, dir: &Path, name: &str) -> Result<LoadedAdapter> {
    let config = PeftConfig::from_file(&dir.join("adapter_config.json"))?;
    let (weights_path, tensors) = read_adapter_tensors(dir)?;
    apply_adapter(model, config, &weights_path, tensors, name)
}

/// Puts already-read adapter tensors into `model` (the body of [`load_adapter`]).
fn apply_adapter<M: Adaptable>(
    model: &mut M,
    config: PeftConfig,
    weights_path: &Path,
    tensors: HostTensors,
    name: &str,
) -> Result<LoadedAdapter> {
    let weights_path = weights_path.to_path_buf();
    let for_base = base_model_hint(&config);
    let mismatch = |reason: String| SurgeryError::Mismatch {
        path: weights_path.clone(),
        reason: format!("{reason}{for_base}"),
    };
    let report = plan(model, &config.targets, &config.lora).map_err(|e| match e {
        SurgeryError::NothingMatched { targets, available } => SurgeryError::Mismatch {
            path: weights_path.clone(),
            reason: format!(
                "it targets {targets}, which matches none of this model's layers{for_base}; \
                 the model's linear layers are:\n  {}",
                available.join("\n  ")
            ),
        },
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
    let saved_modules: HostTensors = tensors
        .iter()
        .filter(|(k, _)| {
            config
                .modules_to_save
                .iter()
                .any(|m| k.starts_with(&format!("{m}.")) || k.contains(&format!(".{m}.")))
        })
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
        return Err(mismatch(format!(
            "missing keys (first 5): {:?}; unexpected keys (first 5): {:?}",
            &missing[..missing.len().min(5)],
            &unexpected[..unexpected.len().min(5)]
        )));
    }
    for (module, linear) in model.linears_mut() {
        let Some(planned) = report.targeted.iter().find(|p| p.name == module) else {
            continue;
        };
        let (a_shape, a) = &tensors[&format!("{module}.lora_A.weight")];
        let (b_shape, b) = &tensors[&format!("{module}.lora_B.weight")];
        let (d_in, d_out, r) = (linear.in_features(), linear.out_features(), planned.r);
        if a_shape != &[r, d_in] || b_shape != &[d_out, r] {
            return Err(mismatch(format!(
                "'{module}': lora_A is {a_shape:?} (expected [{r}, {d_in}]), lora_B is \
                 {b_shape:?} (expected [{d_out}, {r}])"
            )));
        }
        let device = linear.device();
        let a = Tensor::<2>::from_data(TensorData::new(a.clone(), [r, d_in]), &device).transpose();
        let b = Tensor::<2>::from_data(TensorData::new(b.clone(), [d_out, r]), &device).transpose();
        let lora = LoraConfig {
            r,
            alpha: planned.alpha,
            ..config.lora
        };
        linear.insert_adapter(LoraAdapter::from_factors(name, lora, a, b)?)?;
    }
    install_saved_copies(model, &config, &saved_modules, name, &weights_path)?;
    // Trained biases (bias "all" / "lora_only") replace the model's, as PEFT loads them.
    for (bias_name, bias) in model.biases_mut() {
        if !biases.contains(&bias_name) {
            continue;
        }
        let Some((shape, data)) = tensors.get(&bias_name) else {
            continue;
        };
        let dims = bias.dims();
        if shape != &dims.to_vec() {
            return Err(mismatch(format!(
                "'{bias_name}' is {shape:?}, the model's is {dims:?}"
            )));
        }
        let device = bias.device();
        let value = Tensor::<1>::from_data(TensorData::new(data.clone(), dims), &device);
        *bias = bias
            .clone()
            .map(|_| value)
            .set_require_grad(config.targets.bias != BiasMode::None);
    }
    Ok(LoadedAdapter {
        config,
        report,
        saved_modules,
    })
}

/// ` (the adapter was made for base model 'X')`, from `base_model_name_or_path`, to end a
/// mismatch message: the usual cause is an adapter for another base.
fn base_model_hint(config: &PeftConfig) -> String {
    config
        .base_model
        .as_deref()
        .map(|b| format!(" (the adapter was made for base model '{b}')"))
        .unwrap_or_default()
}

/// Whether `module` is one of `modules_to_save` (equal, or a dotted suffix, as PEFT matches).
fn is_saved_module(config: &PeftConfig, module: &str) -> bool {
    config
        .modules_to_save
        .iter()
        .any(|m| module == m || module.ends_with(&format!(".{m}")))
}

/// Gives every `modules_to_save` linear of the model its copy from the file.
fn install_saved_copies<M: Adaptable>(
    model: &mut M,
    config: &PeftConfig,
    saved: &HostTensors,
    name: &str,
    path: &Path,
) -> Result<()> {
    for (module, linear) in model.linears_mut() {
        if !is_saved_module(config, &module) {
            continue;
        }
        let (d_in, d_out) = (linear.in_features(), linear.out_features());
        let weight_key = format!("{module}.weight");
        let (shape, weight) = saved
            .get(&weight_key)
            .ok_or_else(|| SurgeryError::Mismatch {
                path: path.to_path_buf(),
                reason: format!("modules_to_save lists '{module}', but '{weight_key}' is missing"),
            })?;
        if shape != &[d_out, d_in] {
            return Err(SurgeryError::Mismatch {
                path: path.to_path_buf(),
                reason: format!(
                    "'{weight_key}' is {shape:?}, the model's layer is [{d_out}, {d_in}]"
                ),
            });
        }
        let device = linear.device();
        let weight =
            Tensor::<2>::from_data(TensorData::new(weight.clone(), [d_out, d_in]), &device)
                .transpose();
        let bias = saved
            .get(&format!("{module}.bias"))
            .map(|(_, b)| Tensor::<1>::from_data(TensorData::new(b.clone(), [d_out]), &device));
        linear.insert_saved_copy(name, Some((weight, bias)))?;
    }
    Ok(())
}

/// Applies a `SEQ_CLS` adapter to a bare encoder (such as MiniLM's `BertModel`): the adapter's
/// saved `classifier` supplies the head and the number of labels. A bare encoder has no head of
/// its own, so the adapter's head is also the base head (what the model uses with adapters
/// disabled).
pub fn load_seq_cls_adapter(
    bert: lora_models::BertModel,
    dir: &Path,
    name: &str,
) -> Result<(lora_models::BertForSequenceClassification, LoadedAdapter)> {
    let config = PeftConfig::from_file(&dir.join("adapter_config.json"))?;
    let (weights_path, tensors) = read_adapter_tensors(dir)?;
    if let Some(task) = config.task_type.as_deref().filter(|t| *t != "SEQ_CLS") {
        return Err(SurgeryError::Mismatch {
            path: weights_path,
            reason: format!(
                "it is a {task} adapter; a BERT encoder takes a SEQ_CLS adapter{}",
                base_model_hint(&config)
            ),
        });
    }
    let (Some((shape, w)), Some((_, b))) = (
        tensors.get("classifier.weight"),
        tensors.get("classifier.bias"),
    ) else {
        return Err(SurgeryError::Mismatch {
            path: weights_path,
            reason: "a SEQ_CLS adapter for a bare encoder must save the classifier \
                     (modules_to_save: [\"classifier\"])"
                .into(),
        });
    };
    let (shape, w, b) = (shape.clone(), w.clone(), b.clone());
    let device = bert.embeddings.word_embeddings.weight.device();
    let [labels, hidden] = shape[..] else {
        return Err(SurgeryError::Mismatch {
            path: weights_path,
            reason: format!("classifier.weight has shape {shape:?}, expected [labels, hidden]"),
        });
    };
    let head = (
        Tensor::<2>::from_data(TensorData::new(w, [labels, hidden]), &device),
        Tensor::<1>::from_data(TensorData::new(b, [labels]), &device),
    );
    let mut model =
        lora_models::BertForSequenceClassification::new(bert, labels, Some(head), &device)
            .map_err(|e| SurgeryError::Mismatch {
                path: weights_path.clone(),
                reason: e.to_string(),
            })?;
    let loaded = apply_adapter(&mut model, config, &weights_path, tensors, name)?;
    Ok((model, loaded))
}

/// Writes the adapter called `name` of `model` as a PEFT directory (`adapter_config.json`,
/// `adapter_model.safetensors` with F32 tensors and `{"format": "pt"}` metadata), including the
/// adapter's saved copies of `modules_to_save` layers under their full module path. Each file is
/// written to a temporary name and renamed into place.
pub fn save_adapter<M: Adaptable>(
    model: &mut M,
    name: &str,
    config: &PeftConfig,
    dir: &Path,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| SurgeryError::Io {
        action: "creating",
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut tensors: NamedHostTensors = Vec::new();
    for (module, linear) in model.linears_mut() {
        if let Ok(adapter) = linear.adapter(name) {
            // PyTorch's orientation: lora_A [r, in], lora_B [out, r].
            tensors.push((
                format!("{KEY_PREFIX}{module}.lora_A.weight"),
                host_tensor(adapter.lora_a.val().transpose())?,
            ));
            tensors.push((
                format!("{KEY_PREFIX}{module}.lora_B.weight"),
                host_tensor(adapter.lora_b.val().transpose())?,
            ));
        }
        if let Some(copy) = linear.saved_copies.iter().find(|c| c.name == name) {
            tensors.push((
                format!("{KEY_PREFIX}{module}.weight"),
                host_tensor(copy.weight.val().transpose())?,
            ));
            if let Some(bias) = &copy.bias {
                tensors.push((
                    format!("{KEY_PREFIX}{module}.bias"),
                    host_tensor(bias.val())?,
                ));
            }
        }
    }
    let targeted: Vec<String> = model
        .linears_mut()
        .into_iter()
        .filter(|(_, l)| l.adapter(name).is_ok())
        .map(|(n, _)| n)
        .collect();
    if !targeted.is_empty() {
        let biases = selected_biases(model, config.targets.bias, &targeted);
        for (bias_name, bias) in model.biases_mut() {
            if biases.contains(&bias_name) {
                tensors.push((format!("{KEY_PREFIX}{bias_name}"), host_tensor(bias.val())?));
            }
        }
    }
    if tensors.is_empty() {
        return Err(SurgeryError::Lora(lora_core::LoraError::UnknownAdapter {
            name: name.to_string(),
            known: crate::adapters::adapter_names(model),
        }));
    }
    let weights_path = dir.join("adapter_model.safetensors");
    write_atomic(
        &weights_path,
        &safetensors_bytes(&tensors, SaveDtype::F32, &weights_path)?,
    )?;
    let json = serde_json::to_string_pretty(&config.to_json()).expect("JSON values serialise");
    Ok(write_atomic(
        &dir.join("adapter_config.json"),
        json.as_bytes(),
    )?)
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
            (r#", "fan_in_fan_out": true"#, "fan_in_fan_out"),
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
    fn keys_are_normalised() {
        assert_eq!(
            normalise_key(
                "base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.default.weight"
            ),
            "bert.encoder.layer.0.attention.self.query.lora_A.weight"
        );
        assert_eq!(normalise_key("classifier.weight"), "classifier.weight");
    }

    #[test]
    fn written_config_round_trips() {
        let mut c = config(r#", "rank_pattern": {"value": 2}, "use_rslora": true"#).unwrap();
        c.modules_to_save = vec!["classifier".into()];
        let back = PeftConfig::from_json(Path::new("x"), &c.to_json().to_string()).unwrap();
        assert_eq!(back, c);
    }
}
