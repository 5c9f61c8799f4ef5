//! Injecting adapters into a model, and the dry-run report of what would be injected.

use burn::module::Param;
use burn::tensor::Tensor;
use lora_core::{LoraConfig, LoraLinear};
use lora_models::{BertForSequenceClassification, BertModel, LlamaForCausalLM};

use crate::error::{Result, SurgeryError};
use crate::target::{BiasMode, TargetMatcher, TargetSpec};

/// A model whose linear layers can carry LoRA adapters: it lists every [`LoraLinear`] with
/// its Hugging Face module name, the name PEFT's rules match against.
pub trait Adaptable {
    /// Every adaptable linear layer with its module name, in model order.
    fn linears_mut(&mut self) -> Vec<(String, &mut LoraLinear)>;

    /// Module names of output heads, which `all-linear` leaves out.
    fn output_heads(&self) -> Vec<String> {
        Vec::new()
    }

    /// Every bias parameter with its full name (`<module>.bias`), for PEFT's `bias` modes. The
    /// default lists the biases of the linear layers; models with other biases (LayerNorm)
    /// add theirs.
    fn biases_mut(&mut self) -> Vec<(String, &mut Param<Tensor<1>>)> {
        self.linears_mut()
            .into_iter()
            .filter_map(|(name, linear)| {
                linear.bias.as_mut().map(|b| (join_path(&name, "bias"), b))
            })
            .collect()
    }
}

/// The bias names a [`BiasMode`] selects, given the adapted module names.
pub fn selected_biases<M: Adaptable>(
    model: &mut M,
    mode: BiasMode,
    targeted: &[String],
) -> Vec<String> {
    model
        .biases_mut()
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| match mode {
            BiasMode::None => false,
            BiasMode::All => true,
            BiasMode::LoraOnly => name
                .strip_suffix(".bias")
                .is_some_and(|module| targeted.iter().any(|t| t == module)),
        })
        .collect()
}

/// Makes the biases that `mode` selects trainable (PEFT marks them `requires_grad`).
pub fn set_biases_trainable<M: Adaptable>(model: &mut M, mode: BiasMode, targeted: &[String]) {
    let selected = selected_biases(model, mode, targeted);
    for (name, bias) in model.biases_mut() {
        if selected.contains(&name) {
            *bias = bias.clone().set_require_grad(true);
        }
    }
}

/// Joins a parent module name and a child path with a dot (either may be empty).
pub fn join_path(parent: &str, child: &str) -> String {
    match (parent.is_empty(), child.is_empty()) {
        (true, _) => child.to_string(),
        (_, true) => parent.to_string(),
        _ => format!("{parent}.{child}"),
    }
}

/// A linear layer is its own (unnamed) module.
impl Adaptable for LoraLinear {
    fn linears_mut(&mut self) -> Vec<(String, &mut LoraLinear)> {
        vec![(String::new(), self)]
    }
}

/// Elements are named by their index, as in PyTorch's `ModuleList`.
impl<T: Adaptable> Adaptable for Vec<T> {
    fn linears_mut(&mut self) -> Vec<(String, &mut LoraLinear)> {
        self.iter_mut()
            .enumerate()
            .flat_map(|(i, item)| {
                item.linears_mut()
                    .into_iter()
                    .map(move |(path, linear)| (join_path(&i.to_string(), &path), linear))
            })
            .collect()
    }

    fn output_heads(&self) -> Vec<String> {
        self.iter()
            .enumerate()
            .flat_map(|(i, item)| {
                item.output_heads()
                    .into_iter()
                    .map(move |path| join_path(&i.to_string(), &path))
            })
            .collect()
    }

    fn biases_mut(&mut self) -> Vec<(String, &mut Param<Tensor<1>>)> {
        self.iter_mut()
            .enumerate()
            .flat_map(|(i, item)| {
                item.biases_mut()
                    .into_iter()
                    .map(move |(path, b)| (join_path(&i.to_string(), &path), b))
            })
            .collect()
    }
}

impl<T: Adaptable> Adaptable for Option<T> {
    fn linears_mut(&mut self) -> Vec<(String, &mut LoraLinear)> {
        self.as_mut()
            .map(Adaptable::linears_mut)
            .unwrap_or_default()
    }

    fn output_heads(&self) -> Vec<String> {
        self.as_ref()
            .map(Adaptable::output_heads)
            .unwrap_or_default()
    }
}

impl<T: Adaptable> Adaptable for Box<T> {
    fn linears_mut(&mut self) -> Vec<(String, &mut LoraLinear)> {
        (**self).linears_mut()
    }

    fn output_heads(&self) -> Vec<String> {
        (**self).output_heads()
    }

    fn biases_mut(&mut self) -> Vec<(String, &mut Param<Tensor<1>>)> {
        (**self).biases_mut()
    }
}

/// Types that hold no adaptable linear layer, so `#[derive(Adaptable)]` structs can contain them
/// without attributes.
macro_rules! no_linears {
    ($($ty:ty),* $(,)?) => {
        $(impl Adaptable for $ty {
            fn linears_mut(&mut self) -> Vec<(String, &mut LoraLinear)> {
                Vec::new()
            }
        })*
    };
}

no_linears!(
    burn::nn::LayerNorm,
    burn::nn::RmsNorm,
    burn::nn::Embedding,
    burn::nn::Dropout,
    burn::nn::Gelu,
    burn::nn::Relu,
    burn::nn::Tanh,
    lora_core::BottleneckAdapter,
    bool,
    usize,
    f32,
    f64,
    String,
);

/// Every bias of a BERT encoder (linear layers and LayerNorms) with its Hugging Face name.
fn bert_biases(bert: &mut BertModel) -> Vec<(String, &mut Param<Tensor<1>>)> {
    let mut out = Vec::new();
    let BertModel {
        embeddings,
        layers,
        pooler,
        ..
    } = bert;
    if let Some(beta) = embeddings.layer_norm.beta.as_mut() {
        out.push(("embeddings.LayerNorm.bias".to_string(), beta));
    }
    for (i, layer) in layers.iter_mut().enumerate() {
        let lora_models::bert::BertLayer {
            query,
            key,
            value,
            attention_output,
            attention_norm,
            intermediate,
            output,
            output_norm,
            ..
        } = layer;
        // In the order of the architecture's one name table.
        let linears = [query, key, value, attention_output, intermediate, output];
        for (name, linear) in lora_models::bert::BERT_LAYER_LINEARS
            .into_iter()
            .zip(linears)
        {
            if let Some(b) = linear.bias.as_mut() {
                out.push((format!("encoder.layer.{i}.{name}.bias"), b));
            }
        }
        for (name, norm) in [
            ("attention.output.LayerNorm", attention_norm),
            ("output.LayerNorm", output_norm),
        ] {
            if let Some(beta) = norm.beta.as_mut() {
                out.push((format!("encoder.layer.{i}.{name}.bias"), beta));
            }
        }
    }
    if let Some(b) = pooler.as_mut().and_then(|p| p.bias.as_mut()) {
        out.push(("pooler.dense.bias".to_string(), b));
    }
    out
}

impl Adaptable for BertModel {
    fn linears_mut(&mut self) -> Vec<(String, &mut LoraLinear)> {
        BertModel::linears_mut(self)
    }

    fn biases_mut(&mut self) -> Vec<(String, &mut Param<Tensor<1>>)> {
        bert_biases(self)
    }
}

impl Adaptable for BertForSequenceClassification {
    fn linears_mut(&mut self) -> Vec<(String, &mut LoraLinear)> {
        let mut out: Vec<(String, &mut LoraLinear)> = self
            .bert
            .linears_mut()
            .into_iter()
            .map(|(name, linear)| (format!("bert.{name}"), linear))
            .collect();
        out.push(("classifier".to_string(), &mut self.classifier));
        out
    }

    fn output_heads(&self) -> Vec<String> {
        vec!["classifier".to_string()]
    }

    fn biases_mut(&mut self) -> Vec<(String, &mut Param<Tensor<1>>)> {
        let mut out: Vec<(String, &mut Param<Tensor<1>>)> = self
            .bert
            .biases_mut()
            .into_iter()
            .map(|(name, b)| (format!("bert.{name}"), b))
            .collect();
        if let Some(b) = self.classifier.bias.as_mut() {
            out.push(("classifier.bias".to_string(), b));
        }
        out
    }
}

impl Adaptable for LlamaForCausalLM {
    fn linears_mut(&mut self) -> Vec<(String, &mut LoraLinear)> {
        LlamaForCausalLM::linears_mut(self)
    }

    fn output_heads(&self) -> Vec<String> {
        vec!["lm_head".to_string()]
    }
}

/// One module an adapter goes (or would go) on.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PlannedModule {
    /// The module name.
    pub name: String,
    /// Its rank.
    pub r: usize,
    /// Its alpha.
    pub alpha: f64,
    /// The resulting scaling factor.
    pub scaling: f64,
    /// Parameters the adapter adds: `r · (in + out)`.
    pub added_params: usize,
}

/// What an injection does (or, for a dry run, would do).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct InjectionReport {
    /// The modules that get an adapter.
    pub targeted: Vec<PlannedModule>,
    /// The adaptable modules left alone.
    pub left_out: Vec<String>,
    /// Total parameters added.
    pub added_params: usize,
}

impl std::fmt::Display for InjectionReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{:<60} {:>4} {:>8} {:>8} {:>10}",
            "module", "r", "alpha", "scaling", "params"
        )?;
        for m in &self.targeted {
            writeln!(
                f,
                "{:<60} {:>4} {:>8} {:>8.4} {:>10}",
                m.name, m.r, m.alpha, m.scaling, m.added_params
            )?;
        }
        writeln!(
            f,
            "{} modules targeted, {} parameters added; {} linear modules left out",
            self.targeted.len(),
            self.added_params,
            self.left_out.len()
        )?;
        for name in &self.left_out {
            writeln!(f, "  left out: {name}")?;
        }
        Ok(())
    }
}

/// Resolves which modules of `model` get an adapter with `base` (r, alpha, dropout, …) and the
/// targeting rules in `spec`. Nothing is changed. When nothing matches, the error lists the
/// module names that exist.
pub fn plan<M: Adaptable>(
    model: &mut M,
    spec: &TargetSpec,
    base: &LoraConfig,
) -> Result<InjectionReport> {
    let heads = model.output_heads();
    let linears = model.linears_mut();
    let all_linear: Vec<String> = linears
        .iter()
        .map(|(n, _)| n.clone())
        .filter(|n| !heads.contains(n))
        .collect();
    let matcher = TargetMatcher::new(spec, &all_linear)?;
    let mut report = InjectionReport {
        targeted: Vec::new(),
        left_out: Vec::new(),
        added_params: 0,
    };
    for (name, linear) in &linears {
        if !matcher.is_target(name) {
            report.left_out.push(name.clone());
            continue;
        }
        let (r, alpha) = matcher.rank_and_alpha(name, base.r, base.alpha);
        let config = LoraConfig { r, alpha, ..*base };
        config.validate_for_layer(linear.in_features(), linear.out_features())?;
        let added = r * (linear.in_features() + linear.out_features());
        report.added_params += added;
        report.targeted.push(PlannedModule {
            name: name.clone(),
            r,
            alpha,
            scaling: config.scaling(),
            added_params: added,
        });
    }
    if report.targeted.is_empty() {
        return Err(SurgeryError::NothingMatched {
            targets: matcher.describe(),
            available: linears.into_iter().map(|(n, _)| n).collect(),
        });
    }
    Ok(report)
}

/// Adds a fresh adapter called `adapter` to every module `spec` selects, and returns the report.
///
/// ```no_run
/// use lora_core::LoraConfig;
/// use lora_surgery::{ModulePattern, TargetSpec, inject};
///
/// # fn run(model: &mut lora_models::BertForSequenceClassification) -> lora_surgery::Result<()> {
/// let spec = TargetSpec {
///     target_modules: Some(ModulePattern::list(&["query", "value"])),
///     ..Default::default()
/// };
/// let report = inject(model, "default", &spec, &LoraConfig::new(8))?;
/// println!("{report}");
/// # Ok(()) }
/// ```
pub fn inject<M: Adaptable>(
    model: &mut M,
    adapter: &str,
    spec: &TargetSpec,
    base: &LoraConfig,
) -> Result<InjectionReport> {
    let report = plan(model, spec, base)?;
    for (name, linear) in model.linears_mut() {
        if let Some(planned) = report.targeted.iter().find(|p| p.name == name) {
            let config = LoraConfig {
                r: planned.r,
                alpha: planned.alpha,
                ..*base
            };
            linear.add_adapter(adapter, config)?;
        }
    }
    let targeted: Vec<String> = report.targeted.iter().map(|p| p.name.clone()).collect();
    set_biases_trainable(model, spec.bias, &targeted);
    tracing::info!(
        adapter,
        modules = report.targeted.len(),
        params = report.added_params,
        "injected"
    );
    Ok(report)
}
