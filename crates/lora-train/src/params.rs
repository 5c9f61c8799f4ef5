//! Parameters by path: which train, reading them out and writing them back.
//!
//! Paths are the dotted names Burn's module traversal gives (`bert.layers.0.query.weight`), the
//! same in every process, so checkpoints and optimizer state are keyed by them (Burn's
//! `ParamId`s are new in every process).

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{Tensor, TensorData};

use lora_core::io::{HostTensor, NamedTensors};

use crate::error::{Result, TrainError};

/// Keeps the dotted path of the module being traversed.
#[derive(Debug, Default)]
pub(crate) struct PathTracker {
    parts: Vec<String>,
}

impl PathTracker {
    pub(crate) fn enter(&mut self, name: &str) {
        self.parts.push(name.to_string());
    }

    pub(crate) fn exit(&mut self) {
        self.parts.pop();
    }

    pub(crate) fn path(&self) -> String {
        self.parts.join(".")
    }
}

/// Implements `enter_module` / `exit_module` of a visitor or mapper that keeps its position in
/// a `path: PathTracker` field.
macro_rules! track_paths {
    () => {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.enter(name);
        }

        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.exit();
        }
    };
}
pub(crate) use track_paths;

/// What [`param_infos`] reports for one float parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamInfo {
    /// Dotted path.
    pub path: String,
    /// Burn's id (valid in this process only).
    pub id: ParamId,
    /// Shape.
    pub shape: Vec<usize>,
    /// Whether it trains.
    pub trainable: bool,
}

struct InfoVisitor {
    path: PathTracker,
    out: Vec<ParamInfo>,
}

impl ModuleVisitor for InfoVisitor {
    track_paths!();

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.out.push(ParamInfo {
            path: self.path.path(),
            id: param.id,
            shape: param.lazy_shape().dims::<D>().to_vec(),
            trainable: param.is_require_grad(),
        });
    }
}

/// Every float parameter of `module` with its path, shape and whether it trains.
pub fn param_infos<M: Module>(module: &M) -> Vec<ParamInfo> {
    let mut v = InfoVisitor {
        path: PathTracker::default(),
        out: Vec::new(),
    };
    module.visit(&mut v);
    v.out
}

struct TrainableSetter<'a> {
    path: PathTracker,
    select: &'a dyn Fn(&str) -> bool,
}

impl ModuleMapper for TrainableSetter<'_> {
    track_paths!();

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let trainable = (self.select)(&self.path.path());
        param.set_require_grad(trainable)
    }
}

struct CheckpointingSetter(burn::tensor::GradientCheckpointingStrategy);

impl ModuleMapper for CheckpointingSetter {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let strategy = self.0;
        param.map(|tensor| {
            if !tensor.is_autodiff() || tensor.gradient_checkpointing_strategy() == Some(strategy) {
                return tensor;
            }
            let require_grad = tensor.is_require_grad();
            let tensor = tensor.with_gradient_checkpointing_strategy(strategy);
            if require_grad {
                tensor.require_grad()
            } else {
                tensor
            }
        })
    }
}

/// Gives every autodiff parameter of `module` the gradient-checkpointing strategy of `device`
/// (tensors of one operation must share it). Parameters made after loading (adapters, trainable
/// copies) take the strategy of the tensors they were made from, which is Burn's default; a
/// module prepared for a checkpointing device passes through here. A no-op otherwise.
pub fn use_device_checkpointing<M: Module>(module: M, device: &burn::tensor::Device) -> M {
    match device.gradient_checkpointing_strategy() {
        Some(strategy) => module.map(&mut CheckpointingSetter(strategy)),
        None => module,
    }
}

/// Makes exactly the float parameters whose path `select` accepts trainable; every other one is
/// frozen.
pub fn set_trainable<M: Module>(module: M, select: &dyn Fn(&str) -> bool) -> M {
    module.map(&mut TrainableSetter {
        path: PathTracker::default(),
        select,
    })
}

struct Exporter {
    path: PathTracker,
    out: NamedTensors,
}

impl ModuleVisitor for Exporter {
    track_paths!();

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if param.is_require_grad() {
            let value = param.val();
            let shape = value.dims().to_vec();
            let data = value
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .unwrap_or_default();
            self.out
                .insert(self.path.path(), HostTensor { shape, data });
        }
    }
}

/// Host copies of every trainable parameter, by path.
pub fn trainable_tensors<M: Module>(module: &M) -> NamedTensors {
    let mut v = Exporter {
        path: PathTracker::default(),
        out: NamedTensors::new(),
    };
    module.visit(&mut v);
    v.out
}

struct Importer<'a> {
    path: PathTracker,
    tensors: &'a NamedTensors,
    used: Vec<String>,
    errors: Vec<String>,
}

impl ModuleMapper for Importer<'_> {
    track_paths!();

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let path = self.path.path();
        let Some(HostTensor {
            shape,
            data: values,
        }) = self.tensors.get(&path)
        else {
            return param;
        };
        let current = param.lazy_shape().dims::<D>().to_vec();
        if *shape != current {
            self.errors.push(format!(
                "{path}: saved shape {shape:?}, model shape {current:?}"
            ));
            return param;
        }
        self.used.push(path);
        let values = values.clone();
        let shape = shape.clone();
        param.map(move |tensor| {
            let require_grad = tensor.is_require_grad();
            let device = tensor.device();
            let fresh = Tensor::<D>::from_data(TensorData::new(values, shape), &device);
            if require_grad {
                fresh.require_grad()
            } else {
                fresh
            }
        })
    }
}

/// Writes `tensors` into the parameters with the same paths. Every tensor must find its
/// parameter with the same shape; the error lists the ones that do not.
pub fn load_tensors<M: Module>(module: M, tensors: &NamedTensors, source: &str) -> Result<M> {
    let mut importer = Importer {
        path: PathTracker::default(),
        tensors,
        used: Vec::new(),
        errors: Vec::new(),
    };
    let module = module.map(&mut importer);
    let unused: Vec<&String> = tensors
        .keys()
        .filter(|k| !importer.used.contains(k))
        .collect();
    if !importer.errors.is_empty() || !unused.is_empty() {
        let mut reason = importer.errors.join("; ");
        if !unused.is_empty() {
            if !reason.is_empty() {
                reason.push_str("; ");
            }
            reason.push_str(&format!(
                "no parameter of this model is called {}",
                unused
                    .iter()
                    .take(5)
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        return Err(TrainError::Checkpoint {
            path: source.into(),
            reason,
        });
    }
    Ok(module)
}
