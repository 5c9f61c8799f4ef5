//! The fine-tuning methods and how each prepares a model: which parameters exist and which train.

use burn::tensor::Device;
use lora_core::{BottleneckAdapterConfig, LoraConfig};
use lora_models::{BertForSequenceClassification, BertModel, LlamaForCausalLM};
use lora_surgery::{ModulePattern, PeftConfig, TargetSpec, inject};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
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
}

/// The method names the command line and configs accept.
pub const METHOD_NAMES: [&str; 6] = ["lora", "ft", "adapter-h", "adapter-l", "bitfit", "head"];

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

    /// The method's short name (one of [`METHOD_NAMES`]).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Lora { .. } => METHOD_NAMES[0],
            Self::FullFineTuning => METHOD_NAMES[1],
            Self::AdapterH { .. } => METHOD_NAMES[2],
            Self::AdapterL { .. } => METHOD_NAMES[3],
            Self::BitFit => METHOD_NAMES[4],
            Self::HeadOnly => METHOD_NAMES[5],
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

    /// The PEFT config that describes this method's adapter, for a LoRA method.
    pub fn peft_config(&self, task_type: &str, base_model: Option<String>) -> Option<PeftConfig> {
        let Self::Lora { lora, targets } = self else {
            return None;
        };
        Some(PeftConfig {
            targets: targets.clone(),
            lora: *lora,
            task_type: Some(task_type.to_string()),
            base_model,
            modules_to_save: if task_type == "SEQ_CLS" {
                vec!["classifier".into()]
            } else {
                Vec::new()
            },
        })
    }

    fn unsupported(&self, model: &'static str, reason: &str) -> TrainError {
        TrainError::UnsupportedMethod {
            method: self.name().to_string(),
            model,
            reason: reason.to_string(),
        }
    }
}

/// Whether a parameter path belongs to a BERT sequence classifier's head.
fn is_head(path: &str) -> bool {
    path.starts_with("classifier.")
}

/// Whether a parameter path is a bias (of a linear layer or a LayerNorm).
fn is_bias(path: &str) -> bool {
    path.ends_with(".bias") || path.ends_with(".beta")
}

/// Puts a fresh classification head with `num_labels` outputs on `bert` and prepares it for
/// `method`: injects LoRA (the head becomes a trainable `modules_to_save` copy, as PEFT does for
/// `SEQ_CLS`), adds bottleneck adapters, or selects which existing parameters train. The
/// backend RNG is seeded with `seed` first, so the head and the adapters are reproducible.
pub fn prepare_classifier(
    bert: BertModel,
    num_labels: usize,
    method: &Method,
    seed: u64,
    device: &Device,
) -> Result<BertForSequenceClassification> {
    device.seed(seed);
    let mut model = BertForSequenceClassification::new(bert, num_labels, None, device)?;
    let hidden = model.bert.config().hidden_size;
    let select: &dyn Fn(&str) -> bool = match method {
        Method::Lora { lora, targets } => {
            // Everything frozen, then the adapters (and any biases the spec asks for) train,
            // and the head trains as an adapter-owned copy.
            model = set_trainable(model, &|_| false);
            inject(&mut model, ADAPTER_NAME, targets, lora)?;
            model.classifier.insert_saved_copy(ADAPTER_NAME, None)?;
            return Ok(model);
        }
        Method::FullFineTuning => &|_| true,
        Method::AdapterH { bottleneck } | Method::AdapterL { bottleneck } => {
            let config = BottleneckAdapterConfig::new(hidden, *bottleneck);
            let houlsby = matches!(method, Method::AdapterH { .. });
            for layer in &mut model.bert.layers {
                if houlsby {
                    layer.attention_adapter = Some(config.init(device)?);
                }
                layer.ffn_adapter = Some(config.init(device)?);
            }
            &|p: &str| is_head(p) || p.contains("_adapter.")
        }
        Method::BitFit => &|p: &str| is_head(p) || is_bias(p),
        Method::HeadOnly => &is_head,
    };
    Ok(set_trainable(model, select))
}

/// Prepares a causal language model for `method`: LoRA (the base frozen) or full fine-tuning.
/// The other methods need a classification head or biases that Llama does not have.
pub fn prepare_causal_lm(
    model: LlamaForCausalLM,
    method: &Method,
    seed: u64,
    device: &Device,
) -> Result<LlamaForCausalLM> {
    device.seed(seed);
    match method {
        Method::Lora { lora, targets } => {
            let mut model = set_trainable(model, &|_| false);
            inject(&mut model, ADAPTER_NAME, targets, lora)?;
            Ok(model)
        }
        Method::FullFineTuning => Ok(set_trainable(model, &|_| true)),
        Method::BitFit => Err(method.unsupported(
            "a Llama causal LM",
            "Llama's linear layers have no biases; use lora or ft",
        )),
        _ => Err(method.unsupported(
            "a Llama causal LM",
            "bottleneck adapters and head-only training are defined for the BERT classifier; \
             use lora or ft",
        )),
    }
}
