//! Adam and AdamW with PyTorch's update rule, gradient accumulation and global-norm clipping.
//!
//! The optimizer keeps its moments by parameter path (see [`params`](crate::params)), so they
//! can be saved with a checkpoint and restored into a model rebuilt in another process.

use std::collections::{BTreeMap, HashMap};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::Gradients;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

use lora_core::io::{HostTensor, NamedTensors};

use crate::params::{PathTracker, track_paths};

/// Which optimizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Adam (`torch.optim.Adam`); `weight_decay` is an L2 term added to the gradient.
    #[default]
    Adam,
    /// AdamW (`torch.optim.AdamW`); `weight_decay` is decoupled: `p ← p·(1 − lr·wd)`.
    AdamW,
}

/// Optimizer settings; the defaults are PyTorch's (β = (0.9, 0.999), ε = 1e-8).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OptimizerConfig {
    /// Adam or AdamW.
    pub kind: OptimizerKind,
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    /// Weight decay (see [`OptimizerKind`]).
    pub weight_decay: f64,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            kind: OptimizerKind::Adam,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

struct Moments {
    m: Tensor<1>,
    v: Tensor<1>,
}

/// Adam / AdamW state: the step count and both moments of every parameter that has trained.
pub struct Optimizer {
    config: OptimizerConfig,
    step: usize,
    moments: HashMap<String, Moments>,
}

impl Optimizer {
    /// A fresh optimizer.
    pub fn new(config: OptimizerConfig) -> Self {
        Self {
            config,
            step: 0,
            moments: HashMap::new(),
        }
    }

    /// Optimizer steps taken.
    pub fn steps(&self) -> usize {
        self.step
    }

    /// Applies one update with learning rate `lr` to every parameter that has a gradient in
    /// `grads`, and returns the updated module.
    pub fn step<M: Module>(&mut self, module: M, lr: f64, grads: AccumulatedGrads) -> M {
        self.step += 1;
        let mut mapper = StepMapper {
            path: PathTracker::default(),
            optimizer: self,
            grads: grads.grads,
            lr,
        };
        module.map(&mut mapper)
    }

    fn update(&mut self, path: String, param: Tensor<1>, grad: Tensor<1>, lr: f64) -> Tensor<1> {
        let c = self.config;
        let mut param = param;
        let mut grad = grad;
        if c.weight_decay != 0.0 {
            match c.kind {
                OptimizerKind::Adam => grad = grad + param.clone().mul_scalar(c.weight_decay),
                OptimizerKind::AdamW => param = param.mul_scalar(1.0 - lr * c.weight_decay),
            }
        }
        let Moments { m, v } = self.moments.remove(&path).unwrap_or_else(|| Moments {
            m: grad.zeros_like(),
            v: grad.zeros_like(),
        });
        let m = m.mul_scalar(c.beta1) + grad.clone().mul_scalar(1.0 - c.beta1);
        let v = v.mul_scalar(c.beta2) + grad.powi_scalar(2).mul_scalar(1.0 - c.beta2);
        let t = self.step as i32;
        let bias1 = 1.0 - c.beta1.powi(t);
        let bias2 = 1.0 - c.beta2.powi(t);
        let denom = v.clone().sqrt().div_scalar(bias2.sqrt()).add_scalar(c.eps);
        let updated = param - m.clone().div(denom).mul_scalar(lr / bias1);
        self.moments.insert(path, Moments { m, v });
        updated
    }

    /// The state as host tensors (`m.<path>`, `v.<path>`) and the step count.
    pub fn state(&self) -> (NamedTensors, usize) {
        let mut out = NamedTensors::new();
        for (path, Moments { m, v }) in &self.moments {
            for (prefix, t) in [("m", m), ("v", v)] {
                let data = t.clone().into_data().convert::<f32>();
                let host = HostTensor {
                    shape: data.shape().to_vec(),
                    data: data.try_into_vec::<f32>().unwrap_or_default(),
                };
                out.insert(format!("{prefix}.{path}"), host);
            }
        }
        (out, self.step)
    }

    /// Restores the state written by [`state`](Self::state) onto `device`.
    pub fn load_state(
        &mut self,
        tensors: &NamedTensors,
        step: usize,
        device: &burn::tensor::Device,
    ) -> Result<(), String> {
        let mut moments: BTreeMap<String, (Option<Tensor<1>>, Option<Tensor<1>>)> = BTreeMap::new();
        for (
            key,
            HostTensor {
                shape,
                data: values,
            },
        ) in tensors
        {
            let (kind, path) = key
                .split_once('.')
                .ok_or_else(|| format!("unexpected optimizer tensor '{key}'"))?;
            let t = Tensor::<1>::from_data(
                TensorData::new(values.clone(), [shape.iter().product::<usize>()]),
                device,
            );
            let entry = moments.entry(path.to_string()).or_default();
            match kind {
                "m" => entry.0 = Some(t),
                "v" => entry.1 = Some(t),
                _ => return Err(format!("unexpected optimizer tensor '{key}'")),
            }
        }
        self.moments.clear();
        for (path, pair) in moments {
            let (Some(m), Some(v)) = pair else {
                return Err(format!("optimizer state for '{path}' lacks a moment"));
            };
            self.moments.insert(path, Moments { m, v });
        }
        self.step = step;
        Ok(())
    }
}

struct StepMapper<'a> {
    path: PathTracker,
    optimizer: &'a mut Optimizer,
    grads: HashMap<ParamId, Tensor<1>>,
    lr: f64,
}

impl ModuleMapper for StepMapper<'_> {
    track_paths!();

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(grad) = self.grads.remove(&param.id) else {
            return param;
        };
        let path = self.path.path();
        let (id, tensor, mapper) = param.consume();
        let shape = tensor.shape();
        let n = shape.num_elements();
        // The updated parameter keeps the gradient-checkpointing strategy it was trained under.
        let strategy = tensor.gradient_checkpointing_strategy();
        let flat = tensor.inner().reshape([n]);
        let updated = self.optimizer.update(path, flat, grad, self.lr);
        let mut updated = Tensor::<D>::from_inner(updated.reshape(shape));
        if let Some(strategy) = strategy {
            updated = updated.with_gradient_checkpointing_strategy(strategy);
        }
        let updated = updated.require_grad();
        Param::from_mapped_value(id, updated, mapper)
    }
}

/// Gradients summed over the micro-batches of one optimizer step, by parameter.
#[derive(Default)]
pub struct AccumulatedGrads {
    grads: HashMap<ParamId, Tensor<1>>,
}

impl AccumulatedGrads {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the gradients of `module`'s trainable parameters from one backward pass.
    pub fn add<M: Module>(&mut self, module: &M, grads: Gradients) {
        let params = GradientsParams::from_grads(grads, module);
        let mut visitor = Collect {
            params,
            into: &mut self.grads,
        };
        module.visit(&mut visitor);
    }

    /// The summed gradient of parameter `id`, flattened, if it has one.
    pub fn get(&self, id: &ParamId) -> Option<&Tensor<1>> {
        self.grads.get(id)
    }

    /// Whether no gradient was collected.
    pub fn is_empty(&self) -> bool {
        self.grads.is_empty()
    }

    /// The global L2 norm of all gradients (`torch.nn.utils.clip_grad_norm_`'s total norm).
    pub fn global_norm(&self) -> f64 {
        self.grads
            .values()
            .map(|g| g.clone().powi_scalar(2).sum().into_scalar::<f32>() as f64)
            .sum::<f64>()
            .sqrt()
    }

    /// Scales the gradients so that their global norm is at most `max_norm`, as PyTorch does
    /// (`coef = max_norm / (norm + 1e-6)`, applied when below 1). Returns the norm before.
    pub fn clip_global_norm(&mut self, max_norm: f64) -> f64 {
        let norm = self.global_norm();
        let coef = max_norm / (norm + 1e-6);
        if coef < 1.0 {
            for g in self.grads.values_mut() {
                *g = g.clone().mul_scalar(coef);
            }
        }
        norm
    }
}

struct Collect<'a> {
    params: GradientsParams,
    into: &'a mut HashMap<ParamId, Tensor<1>>,
}

impl ModuleVisitor for Collect<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.params.remove::<D>(param.id) {
            let n = grad.shape().num_elements();
            let flat = grad.reshape([n]);
            let sum = match self.into.remove(&param.id) {
                Some(prev) => prev + flat,
                None => flat,
            };
            self.into.insert(param.id, sum);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lora_core::{LoraConfig, LoraLinearConfig, select_device};

    /// One Adam step on a scalar, by hand: PyTorch's closed form.
    fn reference_adam(p: f64, grads: &[f64], lr: f64, c: OptimizerConfig) -> f64 {
        let (mut m, mut v, mut p) = (0.0, 0.0, p);
        for (i, &g0) in grads.iter().enumerate() {
            let t = (i + 1) as i32;
            let mut g = g0;
            match c.kind {
                OptimizerKind::Adam => g += c.weight_decay * p,
                OptimizerKind::AdamW => p *= 1.0 - lr * c.weight_decay,
            }
            m = c.beta1 * m + (1.0 - c.beta1) * g;
            v = c.beta2 * v + (1.0 - c.beta2) * g * g;
            let mhat = m / (1.0 - c.beta1.powi(t));
            let vhat = v / (1.0 - c.beta2.powi(t));
            p -= lr * mhat / (vhat.sqrt() + c.eps);
        }
        p
    }

    #[test]
    fn adam_and_adamw_follow_pytorch() {
        let device = select_device(Some("flex")).unwrap();
        for kind in [OptimizerKind::Adam, OptimizerKind::AdamW] {
            let config = OptimizerConfig {
                kind,
                weight_decay: 0.1,
                ..Default::default()
            };
            let mut opt = Optimizer::new(config);
            let grads = [0.5, -0.25, 1.5];
            let mut p = Tensor::<1>::from_data(TensorData::new(vec![2.0f32], [1]), &device);
            for (i, g) in grads.iter().enumerate() {
                opt.step += 1;
                let gt = Tensor::<1>::from_data(TensorData::new(vec![*g as f32], [1]), &device);
                // The hand reference adds weight decay to the gradient from the current p.
                p = opt.update("p".into(), p, gt, 0.01);
                let want = reference_adam(2.0, &grads[..=i], 0.01, config);
                let got = p.clone().into_scalar::<f32>() as f64;
                assert!(
                    (got - want).abs() < 1e-6,
                    "{kind:?} step {i}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn accumulation_clipping_and_state_round_trip() {
        let device = select_device(Some("flex")).unwrap().autodiff();
        let mut layer = LoraLinearConfig::new(4, 3).init(&device);
        layer.add_adapter("default", LoraConfig::new(2)).unwrap();
        let x = Tensor::<2>::ones([2, 4], &device);
        let mut acc = AccumulatedGrads::new();
        acc.add(&layer, layer.forward(x.clone()).sum().backward());
        let once = acc.global_norm();
        acc.add(&layer, layer.forward(x).sum().backward());
        assert!((acc.global_norm() - 2.0 * once).abs() < 1e-4 * once.max(1.0));
        let before = acc.clip_global_norm(once / 10.0);
        assert!((before - 2.0 * once).abs() < 1e-4 * once.max(1.0));
        assert!((acc.global_norm() - once / 10.0).abs() < 1e-4 * once.max(1.0));

        let mut opt = Optimizer::new(OptimizerConfig::default());
        let layer = opt.step(layer, 1e-2, acc);
        let (state, steps) = opt.state();
        assert_eq!(steps, 1);
        // Both factors moved (B from zero through its gradient), and only they have state.
        assert_eq!(state.len(), 4, "{:?}", state.keys().collect::<Vec<_>>());
        let mut restored = Optimizer::new(OptimizerConfig::default());
        restored.load_state(&state, steps, &device.inner()).unwrap();
        assert_eq!(restored.state().0, state);
        drop(layer);
    }
}
