//! The fine-tuning methods and how each prepares a model: which parameters exist and which train.

use burn::tensor::Device;
use lora_core::{BottleneckAdapterConfig, LoraConfig};
use lora_models::{Encoder, EncoderForSequenceClassification};
use lora_surgery::{ModulePattern, PeftConfig, PeftModel, TargetSpec, TaskType};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::model::FineTune;
use crate::params::set_trainable;

/// The adapter name every method uses for its LoRA adapter (PEFT's default).
pub const ADAPTER_NAME: &str = "default";

/// How a pre-trained model is fine-tuned. The classification head trains in every method.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "method")]
pub enum Method {
    /// Low-rank adapters on the targeted linear layers (PEFT's rules); the base stays frozen.
    Lora {
        /// Rank, alpha, dropout, rsLoRA, initialisation.
        lora: LoraConfig,
        /// Which modules (and layers), with per-module overrides.
        targets: TargetSpec,
    },
    /// Every parameter trains.
    #[serde(rename = "ft")]
    FullFineTuning,
    /// Houlsby et al.: a bottleneck adapter after the attention block and after the FFN of
    /// every layer.
    AdapterH {
        /// Bottleneck width `m`.
        bottleneck: usize,
    },
    /// Lin et al.: a bottleneck adapter after the FFN of every layer only.
    AdapterL {
        /// Bottleneck width `m`.
        bottleneck: usize,
    },
    /// Zaken et al.: only the bias terms (linear and LayerNorm biases) train.
    #[serde(rename = "bitfit")]
    BitFit,
    /// Only the classification head trains.
    #[serde(rename = "head")]
    HeadOnly,
    /// Every parameter of the last `layers` transformer layers trains (and the head): the
    /// "layer-specific" fine-tuning that LoRA is compared with.
    LastLayers {
        /// How many of the top layers train.
        layers: usize,
    },
}

/// The method names the command line and configs accept.
pub const METHOD_NAMES: [&str; 7] = [
    "lora",
    "ft",
    "adapter-h",
    "adapter-l",
    "bitfit",
    "head",
    "last-layers",
];

impl Method {
    /// LoRA with rank `r` (α = r) on the listed modules.
    ///
    /// ```
    /// use lora_train::Method;
    ///
    /// let method = Method::lora(8, &["query", "value"]);
    /// assert_eq!(method.name(), "lora");
    /// ```
    pub fn lora(r: usize, targets: &[&str]) -> Self {
        Self::Lora {
            lora: LoraConfig::new(r),
            targets: TargetSpec {
                target_modules: Some(ModulePattern::list(targets)),
                ..Default::default()
            },
        }
    }

    /// Whether the method trains pre-trained linear weights themselves (so they must be
    /// held in `f32`): full fine-tuning and the last layers.
    pub fn trains_base_weights(&self) -> bool {
        matches!(self, Method::FullFineTuning | Method::LastLayers { .. })
    }

    /// The method's short name (one of [`METHOD_NAMES`]).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Lora { .. } => METHOD_NAMES[0],
            Self::FullFineTuning => METHOD_NAMES[1],
            Self::AdapterH { .. } => METHOD_NAMES[2],
            Self::AdapterL { .. } => METHOD_NAMES[3],
            Self::BitFit => METHOD_NAMES[4],
            Self::HeadOnly => METHOD_NAMES[5],
            Self::LastLayers { .. } => METHOD_NAMES[6],
        }
    }

    /// A learning rate that works for this method with Adam on a small budget: 1e-3 for the
    /// parameter-efficient methods and 5e-5 for full fine-tuning. The LoRA paper's 1e-4 barely
    /// moves LoRA in a short run (it trains for many epochs); pass it explicitly to reproduce
    /// the paper.
    pub fn default_lr(&self) -> f64 {
        match self {
            Self::FullFineTuning => 5e-5,
            _ => 1e-3,
        }
    }

    /// The PEFT config that describes this method's adapter, for a LoRA method: for a
    /// `SEQ_CLS` task the head is saved with it (`modules_to_save`: `classifier`, `score`, as
    /// PEFT writes it).
    pub fn peft_config(
        &self,
        task_type: TaskType,
        base_model: Option<String>,
    ) -> Option<PeftConfig> {
        let Self::Lora { lora, targets } = self else {
            return None;
        };
        let mut config = PeftConfig::new(targets.clone(), *lora).with_task_type(task_type);
        config.base_model = base_model;
        config.modules_to_save = config.effective_modules_to_save();
        Some(config)
    }

    /// Prepares `model` for this method on `task_type`: injects LoRA (the base frozen, the
    /// `modules_to_save` layers given trainable copies, as PEFT does), adds bottleneck adapters,
    /// or chooses which existing parameters train (the task head trains in every method).
    /// The backend RNG is seeded with `seed` first, so adapters are reproducible.
    pub fn prepare<M: FineTune>(
        &self,
        model: M,
        task_type: TaskType,
        seed: u64,
        device: &Device,
    ) -> Result<M> {
        device.seed(seed);
        let model = self.apply(model, task_type, device)?;
        // Parameters made here (adapters, trainable copies) do not carry `device`'s
        // gradient-checkpointing strategy, and every tensor of one operation must share it.
        Ok(crate::params::use_device_checkpointing(model, device))
    }

    /// [`prepare`](Self::prepare) without seeding the RNG first.
    fn apply<M: FineTune>(&self, model: M, task_type: TaskType, device: &Device) -> Result<M> {
        let head = |m: &M, p: &str| m.is_head_param(p);
        match self {
            Self::Lora { .. } => {
                let model = set_trainable(model, &|_| false);
                let config = self
                    .peft_config(task_type, None)
                    .expect("a LoRA method has a PEFT config");
                Ok(PeftModel::new(model, config, ADAPTER_NAME)?.into_inner())
            }
            Self::FullFineTuning => Ok(set_trainable(model, &|_| true)),
            Self::AdapterH { bottleneck } | Self::AdapterL { bottleneck } => {
                let mut model = model;
                let hidden = bottleneck_width(&model)?;
                let config = BottleneckAdapterConfig::new(hidden, *bottleneck);
                let houlsby = matches!(self, Self::AdapterH { .. });
                model.add_bottleneck_adapters(&config, houlsby, device)?;
                let select = |p: &str| head(&model, p) || p.contains("_adapter.");
                let selected = selected_paths(&model, &select);
                Ok(set_trainable(model, &|p| selected.iter().any(|s| s == p)))
            }
            Self::BitFit => {
                let selected = selected_paths(&model, &|p| head(&model, p) || is_bias(p));
                if selected.iter().all(|p| head(&model, p)) {
                    return Err(
                        self.unsupported("this model", "it has no bias terms; use lora or ft")
                    );
                }
                Ok(set_trainable(model, &|p| selected.iter().any(|s| s == p)))
            }
            Self::HeadOnly => {
                let selected = selected_paths(&model, &|p| head(&model, p));
                if selected.is_empty() {
                    return Err(self.unsupported(
                        "this model",
                        "it has no task head (a language model); use lora or ft",
                    ));
                }
                Ok(set_trainable(model, &|p| selected.iter().any(|s| s == p)))
            }
            Self::LastLayers { layers } => {
                let total = model.num_layers();
                if *layers == 0 || *layers > total {
                    return Err(TrainError::Config(format!(
                        "last-layers needs between 1 and the model's {total} layers, got {layers}"
                    )));
                }
                let first = total - layers;
                let selected = selected_paths(&model, &|p| {
                    head(&model, p) || model.layer_of(p).is_some_and(|l| l >= first)
                });
                Ok(set_trainable(model, &|p| selected.iter().any(|s| s == p)))
            }
        }
    }

    fn unsupported(&self, model: &'static str, reason: &str) -> TrainError {
        TrainError::UnsupportedMethod {
            method: self.name().to_string(),
            model,
            reason: reason.to_string(),
        }
    }
}

/// The width a bottleneck adapter sits on: the output width of the models' layers' last
/// projection, read from the first adaptable layer named like a feed-forward output.
fn bottleneck_width<M: FineTune>(model: &M) -> Result<usize> {
    let linears = model.linears();
    linears
        .iter()
        .find(|(n, _)| {
            n.ends_with("output.dense")
                || n.ends_with("down_proj")
                || n.ends_with("mlp.c_proj")
                || n.ends_with("ffn.lin2")
        })
        .map(|(_, l)| l.out_features())
        .ok_or_else(|| {
            TrainError::Config(
                "cannot tell the model's hidden width for bottleneck adapters".into(),
            )
        })
}

/// The paths of every float parameter that `select` picks.
fn selected_paths<M: FineTune>(model: &M, select: &dyn Fn(&str) -> bool) -> Vec<String> {
    crate::params::param_infos(model)
        .into_iter()
        .map(|p| p.path)
        .filter(|p| select(p))
        .collect()
}

/// Whether a parameter path is a bias (of a linear layer or a norm).
fn is_bias(path: &str) -> bool {
    path.ends_with(".bias") || path.ends_with(".beta")
}

/// Puts a fresh classification head with `num_labels` outputs on `encoder` and prepares it
/// for `method` (see [`Method::prepare`]). The backend RNG is seeded with `seed` first, so the
/// head and the adapters are reproducible.
pub fn prepare_classifier(
    encoder: Encoder,
    num_labels: usize,
    method: &Method,
    seed: u64,
    device: &Device,
) -> Result<EncoderForSequenceClassification> {
    device.seed(seed);
    let model = EncoderForSequenceClassification::new(encoder, num_labels, None, device)?;
    method.apply(model, TaskType::SeqCls, device)
}

/// Prepares a causal language model for `method` (see [`Method::prepare`]).
pub fn prepare_causal_lm<M: FineTune>(
    model: M,
    method: &Method,
    seed: u64,
    device: &Device,
) -> Result<M> {
    method.prepare(model, TaskType::CausalLm, seed, device)
}
