//! [`PeftModel`]: a model with a named LoRA adapter, used the way PEFT's `PeftModel` is:
//! `new` (PEFT's `get_peft_model`), `from_pretrained`, `save_pretrained`, `merge_and_unload`.

use std::path::Path;

use burn::module::Module;
use lora_core::ParamCount;

use crate::adaptable::Adaptable;
use crate::adapters;
use crate::error::{Result, SurgeryError};
use crate::inject::{InjectionReport, inject};
use crate::peft::{AdapterFiles, PeftConfig, apply_adapter, save_adapter, within_module};

/// A model carrying the LoRA adapter `adapter_name`, configured by a [`PeftConfig`].
///
/// The wrapped model stays an ordinary Burn module: run it through [`model`](Self::model),
/// train it (optimizers take and give back the module: [`map`](Self::map)), and save only the
/// adapter with [`save_pretrained`](Self::save_pretrained).
///
/// ```
/// use burn::module::Module;
/// use lora_core::{LoraLinear, LoraLinearConfig};
/// use lora_surgery::{Adaptable, PeftConfig, PeftModel, TaskType};
///
/// #[derive(Module, Debug, Adaptable)]
/// struct Net {
///     q_proj: LoraLinear,
///     v_proj: LoraLinear,
/// }
///
/// let device = lora_core::select_device(Some("flex"))?;
/// let net = || Net {
///     q_proj: LoraLinearConfig::new(8, 8).init(&device),
///     v_proj: LoraLinearConfig::new(8, 8).init(&device),
/// };
/// let config = PeftConfig::for_targets(&["q_proj"])
///     .with_r(2)
///     .with_alpha(4.0)
///     .with_task_type(TaskType::FeatureExtraction);
/// let peft = PeftModel::new(net(), config, "default")?;
/// assert_eq!(peft.trainable_parameters().trainable, 2 * (8 + 8));
///
/// let dir = tempfile::tempdir()?;
/// peft.save_pretrained(dir.path())?;
/// let again = PeftModel::from_pretrained(net(), dir.path(), "default")?;
/// assert_eq!(again.config().lora.r, 2);
/// let plain: Net = again.merge_and_unload()?;
/// assert!(plain.q_proj.adapters.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct PeftModel<M> {
    model: M,
    adapter_name: String,
    config: PeftConfig,
    report: InjectionReport,
}

impl<M: Adaptable> PeftModel<M> {
    /// Adds a fresh adapter called `adapter_name` to `model` as `config` says (PEFT's
    /// `get_peft_model`): LoRA factors on every targeted module, the selected biases made
    /// trainable, and a trainable copy of every `modules_to_save` layer (for a `SEQ_CLS`
    /// config, the classification head, as PEFT adds it).
    pub fn new(mut model: M, mut config: PeftConfig, adapter_name: &str) -> Result<Self> {
        config.fan_in_fan_out = model.fan_in_fan_out();
        let report = inject(&mut model, adapter_name, &config.targets, &config.lora)?;
        let saved = config.effective_modules_to_save();
        for (name, linear) in model.linears_mut() {
            if saved.iter().any(|m| within_module(&name, m)) {
                linear.insert_saved_copy(adapter_name, None)?;
            }
        }
        Ok(Self {
            model,
            adapter_name: adapter_name.to_string(),
            config,
            report,
        })
    }

    /// Loads the PEFT adapter directory `dir` (`adapter_config.json`,
    /// `adapter_model.safetensors`) onto `model` as `adapter_name` (PEFT's
    /// `PeftModel.from_pretrained`).
    pub fn from_pretrained(mut model: M, dir: &Path, adapter_name: &str) -> Result<Self> {
        let loaded = apply_adapter(&mut model, AdapterFiles::read(dir)?, adapter_name)?;
        Ok(Self {
            model,
            adapter_name: adapter_name.to_string(),
            config: loaded.config,
            report: loaded.report,
        })
    }

    /// Writes the adapter as a PEFT directory that PEFT's `from_pretrained` loads.
    pub fn save_pretrained(&self, dir: &Path) -> Result<()> {
        save_adapter(&self.model, &self.adapter_name, &self.config, dir)
    }

    /// The model.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// The model, mutably (model surgery, other adapters).
    pub fn model_mut(&mut self) -> &mut M {
        &mut self.model
    }

    /// Replaces the model by `f(model)`: what an optimizer step (which consumes and returns a
    /// Burn module) or `Module::valid` needs.
    pub fn map(self, f: impl FnOnce(M) -> M) -> Self {
        Self {
            model: f(self.model),
            ..self
        }
    }

    /// The adapter's configuration.
    pub fn config(&self) -> &PeftConfig {
        &self.config
    }

    /// The adapter's name.
    pub fn adapter_name(&self) -> &str {
        &self.adapter_name
    }

    /// Where the adapter went, with each module's r, alpha and scaling.
    pub fn report(&self) -> &InjectionReport {
        &self.report
    }

    /// Runs `f` with the adapter bypassed: the base model's outputs (PEFT's
    /// `with model.disable_adapter():`).
    pub fn with_adapter_disabled<T>(&mut self, f: impl FnOnce(&M) -> T) -> Result<T> {
        adapters::with_adapters_disabled(&mut self.model, |m| f(m))
    }

    /// Folds the adapter into the base weights and removes it: a plain model whose outputs
    /// equal the adapted one's (PEFT's `merge_and_unload`).
    pub fn merge_and_unload(mut self) -> Result<M> {
        adapters::merge_and_unload(&mut self.model)?;
        Ok(self.model)
    }

    /// Removes the adapter without merging: the base model back (PEFT's `unload`).
    pub fn unload(mut self) -> Result<M> {
        adapters::unload(&mut self.model)?;
        Ok(self.model)
    }

    /// The model with its adapter, as it is.
    pub fn into_inner(self) -> M {
        self.model
    }
}

impl<M: Adaptable + Module> PeftModel<M> {
    /// Trainable and total parameters (PEFT's `print_trainable_parameters`).
    pub fn trainable_parameters(&self) -> ParamCount {
        ParamCount::of(&self.model)
    }
}

impl PeftConfig {
    /// A config for LoRA on the modules named in `targets` (matched as PEFT matches a list:
    /// equal, or a dotted suffix), with r = 8, alpha = 8 and no task type.
    pub fn for_targets<S: AsRef<str>>(targets: &[S]) -> Self {
        Self::new(
            crate::TargetSpec {
                target_modules: Some(crate::ModulePattern::list(targets)),
                ..Default::default()
            },
            lora_core::LoraConfig::new(8),
        )
    }

    /// With rank `r` (alpha unchanged).
    pub fn with_r(mut self, r: usize) -> Self {
        self.lora.r = r;
        self
    }

    /// With `lora_alpha`.
    pub fn with_alpha(mut self, alpha: f64) -> Self {
        self.lora.alpha = alpha;
        self
    }

    /// With `lora_dropout`.
    pub fn with_dropout(mut self, dropout: f64) -> Self {
        self.lora.dropout = dropout;
        self
    }

    /// With rsLoRA's scaling `alpha / sqrt(r)`.
    pub fn with_rslora(mut self, use_rslora: bool) -> Self {
        self.lora.use_rslora = use_rslora;
        self
    }

    /// Sets how fresh factors are initialised (PEFT's `init_lora_weights`).
    pub fn with_init(mut self, init: lora_core::LoraInit) -> Self {
        self.lora = self.lora.with_init(init);
        self
    }

    /// Sets PEFT's `rank_pattern`: a rank for the modules whose names match each key (as
    /// `(.*\.)?(KEY)$`), instead of `r`.
    pub fn with_rank_pattern<S: AsRef<str>>(mut self, pattern: &[(S, usize)]) -> Self {
        self.targets.rank_pattern = pattern
            .iter()
            .map(|(k, r)| (k.as_ref().to_string(), *r))
            .collect();
        self
    }

    /// With a task type.
    pub fn with_task_type(mut self, task_type: crate::TaskType) -> Self {
        self.task_type = Some(task_type);
        self
    }

    /// With extra `modules_to_save`.
    pub fn with_modules_to_save<S: AsRef<str>>(mut self, modules: &[S]) -> Self {
        self.modules_to_save = modules.iter().map(|m| m.as_ref().to_string()).collect();
        self
    }

    /// With `base_model_name_or_path`.
    pub fn with_base_model(mut self, base: impl Into<String>) -> Self {
        self.base_model = Some(base.into());
        self
    }

    /// Checks the LoRA settings (rank ≥ 1, alpha finite and positive, dropout in `[0, 1)`).
    pub fn validate(&self) -> Result<()> {
        self.lora.validate().map_err(SurgeryError::from)
    }
}
