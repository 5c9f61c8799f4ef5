//! Counting trainable and total parameters of any Burn module.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;

/// Trainable and total parameter counts of a module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ParamCount {
    /// Parameters that receive gradients.
    pub trainable: usize,
    /// All float parameters.
    pub total: usize,
}

impl ParamCount {
    /// Counts the float parameters of `module`. A parameter is trainable when it requires a
    /// gradient once the module is in training mode, so the answer is the same on a plain device
    /// and on an autodiff device.
    ///
    /// ```
    /// use lora_core::{LoraConfig, LoraLinearConfig, ParamCount};
    ///
    /// let device = lora_core::select_device(Some("flex")).unwrap();
    /// let mut layer = LoraLinearConfig::new(16, 8).init(&device);
    /// layer.add_adapter("default", LoraConfig::new(2)).unwrap();
    /// let count = ParamCount::of(&layer);
    /// assert_eq!(count.trainable, 2 * (16 + 8));
    /// assert_eq!(count.total, 16 * 8 + 8 + 2 * (16 + 8));
    /// ```
    pub fn of<M: Module>(module: &M) -> ParamCount {
        let mut counter = Counter::default();
        visit_in_training_mode(module, &mut counter);
        counter.count
    }

    /// Trainable parameters as a percentage of the total.
    pub fn trainable_percent(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            100.0 * self.trainable as f64 / self.total as f64
        }
    }
}

/// Bytes the float parameters of a module occupy as stored (quantized and half-precision
/// weights at their own size), split into trainable and frozen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ParamBytes {
    /// Bytes of parameters that receive gradients.
    pub trainable: usize,
    /// Bytes of frozen parameters (the base model).
    pub frozen: usize,
}

impl ParamBytes {
    /// Measures `module` (trainable as [`ParamCount::of`] decides).
    ///
    /// ```
    /// use lora_core::{BaseDType, LoraConfig, LoraLinearConfig, ParamBytes};
    ///
    /// let device = lora_core::select_device(Some("flex")).unwrap();
    /// let mut layer = LoraLinearConfig::new(64, 32).with_bias(false).init(&device);
    /// layer.add_adapter("default", LoraConfig::new(2)).unwrap();
    /// assert_eq!(ParamBytes::of(&layer).frozen, 64 * 32 * 4);
    /// layer.store_base_as(BaseDType::Q8).unwrap();
    /// // One byte per value and one f32 scale per block of 32.
    /// assert_eq!(ParamBytes::of(&layer).frozen, 64 * 32 + 64 * 4);
    /// assert_eq!(ParamBytes::of(&layer).trainable, 2 * (64 + 32) * 4);
    /// ```
    pub fn of<M: Module>(module: &M) -> ParamBytes {
        let mut counter = ByteCounter::default();
        visit_in_training_mode(module, &mut counter);
        counter.bytes
    }
}

/// Visits `module` as training sees it, so that `is_require_grad` answers the same on a plain
/// device and on an autodiff one.
fn visit_in_training_mode<M: Module, V: ModuleVisitor>(module: &M, visitor: &mut V) {
    let on_autodiff = module
        .devices()
        .first()
        .map(|d| d.is_autodiff())
        .unwrap_or(false);
    if on_autodiff {
        module.visit(visitor);
    } else {
        // `train()` applies the configured gradient settings without changing `module`.
        module.clone().train().visit(visitor);
    }
}

#[derive(Default)]
struct ByteCounter {
    bytes: ParamBytes,
}

impl ModuleVisitor for ByteCounter {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let n = param.lazy_shape().num_elements();
        let bytes = crate::base_dtype::stored_bytes(param.val().dtype(), n);
        if param.is_require_grad() {
            self.bytes.trainable += bytes;
        } else {
            self.bytes.frozen += bytes;
        }
    }
}

#[derive(Default)]
struct Counter {
    count: ParamCount,
}

impl ModuleVisitor for Counter {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let n = param.lazy_shape().num_elements();
        self.count.total += n;
        if param.is_require_grad() {
            self.count.trainable += n;
        }
    }
}
