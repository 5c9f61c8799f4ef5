//! The weight-path fallback: LoRA for models built on plain `burn::nn::Linear`, through Burn's
//! own [`Reparameterizer`].
//!
//! Models built from [`lora_core::LoraLinear`] get the full activation-path LoRA. A model that
//! uses `burn::nn::Linear` cannot hold our adapters (Burn modules are static types), but Burn can
//! reparameterise any 2-D weight as `W + s·A·B`. [`apply_weight_path_lora`] does that with PEFT's
//! targeting rules, initialisation (kaiming-uniform `A`, zero `B`) and scaling (`α/r` or
//! `α/√r`), freezing every other parameter. Its limits, inherent to the weight path:
//!
//! - **no dropout** on the adapter input (`lora_dropout` must be 0);
//! - **a dense `ΔW = s·A·B` is built in every forward pass** (memory and time of a full weight
//!   per adapted layer; `cargo xtask bench` measures the difference);
//! - one adapter per weight, and merging is one-way (Burn's `materialize`).

use burn::module::{LoraAdapter, Module, ModuleVisitor, Param, Reparameterizer};
use burn::tensor::{Distribution, Tensor};
use lora_core::{LoraConfig, LoraInit};

use crate::error::{Result, SurgeryError};
use crate::target::{TargetMatcher, TargetSpec};

/// Module names (the parameter path without `.weight`) of every 2-D `weight` parameter.
fn weight_modules<M: Module>(module: &M) -> Vec<String> {
    #[derive(Default)]
    struct Collect {
        path: Vec<String>,
        found: Vec<String>,
    }
    impl ModuleVisitor for Collect {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, _param: &Param<Tensor<D>>) {
            if D == 2 {
                let path = self.path.join(".");
                if let Some(module) = path.strip_suffix(".weight") {
                    self.found.push(module.to_string());
                }
            }
        }
    }
    let mut collect = Collect::default();
    module.visit(&mut collect);
    collect.found
}

/// The [`Reparameterizer`] behind [`apply_weight_path_lora`].
pub struct WeightPathLora {
    matcher: TargetMatcher,
    config: LoraConfig,
}

impl Reparameterizer for WeightPathLora {
    type Reparam = LoraAdapter;

    fn reparameterize<const D: usize>(
        &mut self,
        path: &str,
        param: Param<Tensor<D>>,
    ) -> (Param<Tensor<D>>, Option<LoraAdapter>) {
        let base = param.set_require_grad(false);
        let Some(module) = path.strip_suffix(".weight") else {
            return (base, None);
        };
        if D != 2 || !self.matcher.is_target(module) {
            return (base, None);
        }
        let dims = base.lazy_shape().dims::<2>();
        let (d_in, d_out) = (dims[0], dims[1]);
        let (r, alpha) = self
            .matcher
            .rank_and_alpha(module, self.config.r, self.config.alpha);
        let config = LoraConfig {
            r,
            alpha,
            ..self.config
        };
        let device = base.lazy_device();
        let bound = 1.0 / (d_in as f64).sqrt();
        let a = match config.init {
            LoraInit::Gaussian => Tensor::<2>::random(
                [d_in, r],
                Distribution::Normal(0.0, 1.0 / r as f64),
                &device,
            ),
            _ => Tensor::<2>::random([d_in, r], Distribution::Uniform(-bound, bound), &device),
        };
        let b = match config.init {
            LoraInit::Random => {
                let bound = 1.0 / (r as f64).sqrt();
                Tensor::<2>::random([r, d_out], Distribution::Uniform(-bound, bound), &device)
            }
            _ => Tensor::<2>::zeros([r, d_out], &device),
        };
        let adapter = LoraAdapter {
            a: Param::from_tensor(a),
            b: Param::from_tensor(b),
            scale: config.scaling(),
        };
        (base, Some(adapter))
    }
}

/// Attaches weight-path LoRA to the 2-D weights of `module` that `spec` selects (module names are
/// Burn's field paths, e.g. `layers.0.attention.query`), freezing every other parameter. Returns
/// the module and the names of the adapted layers. See the module docs for the limits.
pub fn apply_weight_path_lora<M: Module>(
    module: M,
    spec: &TargetSpec,
    config: &LoraConfig,
) -> Result<(M, Vec<String>)> {
    config.validate()?;
    if config.dropout != 0.0 {
        return Err(SurgeryError::UnsupportedField {
            field: "lora_dropout".into(),
            value: config.dropout.to_string(),
            reason: "the weight path (plain burn::nn::Linear) cannot apply dropout to the \
                     adapter input; use 0, or build the model from lora_core::LoraLinear"
                .into(),
        });
    }
    let names = weight_modules(&module);
    let matcher = TargetMatcher::new(spec, &names)?;
    // The reparameteriser adapts exactly these, in the same traversal order.
    let adapted: Vec<String> = names
        .iter()
        .filter(|n| matcher.is_target(n))
        .cloned()
        .collect();
    if adapted.is_empty() {
        return Err(SurgeryError::NothingMatched {
            targets: matcher.describe(),
            available: names,
        });
    }
    let module = module.apply_reparameterization(WeightPathLora {
        matcher,
        config: *config,
    });
    Ok((module, adapted))
}
