//! [`LoraLinear`]: a frozen linear layer that carries any number of named LoRA adapters.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::module::linear;
use burn::tensor::{Device, Distribution, Tensor};

use crate::adapter::LoraAdapter;
use crate::base_dtype::{BaseDType, widen};
use crate::config::LoraConfig;
use crate::error::{LoraError, Result};

/// Configuration for a fresh [`LoraLinear`] with a randomly initialised base (as
/// `burn::nn::Linear` and `torch.nn.Linear` do: `U(-1/√in, 1/√in)`). Real models load their
/// base weights with [`LoraLinear::from_weights`] instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoraLinearConfig {
    /// Input features.
    pub d_input: usize,
    /// Output features.
    pub d_output: usize,
    /// Whether the layer has a bias.
    pub bias: bool,
}

impl LoraLinearConfig {
    /// A `d_input -> d_output` layer with a bias.
    pub fn new(d_input: usize, d_output: usize) -> Self {
        Self {
            d_input,
            d_output,
            bias: true,
        }
    }

    /// Sets whether the layer has a bias.
    pub fn with_bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }

    /// Creates the layer with a random, frozen base and no adapters.
    pub fn init(&self, device: &Device) -> LoraLinear {
        let k = 1.0 / (self.d_input as f64).sqrt();
        let dist = Distribution::Uniform(-k, k);
        let weight = Tensor::<2>::random([self.d_input, self.d_output], dist, device);
        let bias = self
            .bias
            .then(|| Tensor::<1>::random([self.d_output], dist, device));
        LoraLinear::from_parts(weight, bias)
    }
}

/// A full, trainable copy of a layer that one adapter owns (PEFT's `modules_to_save`): while the
/// adapter is active it replaces the base weight and bias.
#[derive(Module, Debug)]
pub struct SavedCopy {
    /// The copy's weight, `[in, out]`.
    pub weight: Param<Tensor<2>>,
    /// The copy's bias, `[out]`.
    pub bias: Option<Param<Tensor<1>>>,
    /// The adapter that owns the copy.
    #[module(skip)]
    pub name: String,
    /// Whether the copy is in use.
    #[module(skip)]
    active: bool,
}

/// A linear layer `y = x·W0 + b` whose base is frozen, plus named LoRA adapters.
///
/// The forward pass is `x·W + b + Σ_active,unmerged s·B(A(dropout(x)))` where `W` is `W0` plus
/// the updates of the adapters currently merged. Only the adapters' factors receive gradients;
/// `W` and `b` are created with `require_grad = false`, so an optimizer keeps no state for them.
///
/// Merging folds `s·A·B` into `W` (so inference costs one matmul) and keeps the adapter, so
/// [`unmerge`](LoraLinear::unmerge) can subtract it again. Both happen in `f32`: a merged forward
/// equals the unmerged one to about `1e-6` relative, and unmerging restores `W0` to within a
/// few units in the last place of `|W0| + |s·A·B|` (the rounding of one add and one subtract),
/// not bit for bit.
///
/// ```
/// use burn::tensor::Tensor;
/// use lora_core::{LoraConfig, LoraInit, LoraLinearConfig};
///
/// let device = lora_core::select_device(Some("flex")).unwrap();
/// let mut layer = LoraLinearConfig::new(16, 8).init(&device);
/// layer
///     .add_adapter("default", LoraConfig::new(4).with_init(LoraInit::Random))
///     .unwrap();
///
/// let x = Tensor::<3>::ones([2, 5, 16], &device);
/// let unmerged = layer.forward(x.clone());
/// layer.merge("default").unwrap();
/// let merged = layer.forward(x);
/// let diff: f32 = (merged - unmerged).abs().max().into_scalar();
/// assert!(diff < 1e-4);
///
/// // Merging twice is an error that names the adapter.
/// assert!(layer.merge("default").unwrap_err().to_string().contains("already merged"));
/// ```
#[derive(Module, Debug)]
pub struct LoraLinear {
    /// The base weight `W`, `[in, out]` (Burn's orientation), frozen.
    pub weight: Param<Tensor<2>>,
    /// The base bias `b`, `[out]`, frozen.
    pub bias: Option<Param<Tensor<1>>>,
    /// The adapters, in the order they were added.
    pub adapters: Vec<LoraAdapter>,
    /// Full trainable copies of this layer owned by adapters (PEFT's `modules_to_save`).
    pub saved_copies: Vec<SavedCopy>,
    /// When set, unmerged adapters are bypassed and the layer acts as its (merged) base.
    #[module(skip)]
    disabled: bool,
}

impl LoraLinear {
    /// Wraps given base weights (`weight: [in, out]`, `bias: [out]`), freezing them.
    pub fn from_weights(weight: Tensor<2>, bias: Option<Tensor<1>>) -> Result<Self> {
        let [_, d_output] = weight.dims();
        if let Some(bias) = &bias
            && bias.dims() != [d_output]
        {
            return Err(LoraError::ShapeMismatch {
                what: "linear bias".into(),
                expected: vec![d_output],
                actual: bias.dims().to_vec(),
            });
        }
        Ok(Self::from_parts(weight, bias))
    }

    /// Wraps a Burn [`Linear`], freezing its weight and bias.
    pub fn from_linear(linear: Linear) -> Self {
        Self::from_parts(
            linear.weight.val().detach(),
            linear.bias.map(|b| b.val().detach()),
        )
    }

    fn from_parts(weight: Tensor<2>, bias: Option<Tensor<1>>) -> Self {
        Self {
            weight: Param::from_tensor(weight).set_require_grad(false),
            bias: bias.map(|b| Param::from_tensor(b).set_require_grad(false)),
            adapters: Vec::new(),
            saved_copies: Vec::new(),
            disabled: false,
        }
    }

    /// Input features.
    pub fn in_features(&self) -> usize {
        self.weight.dims()[0]
    }

    /// Output features.
    pub fn out_features(&self) -> usize {
        self.weight.dims()[1]
    }

    /// The device holding the base weight.
    pub fn device(&self) -> Device {
        self.weight.device()
    }

    /// `x·W + b + Σ s·B(A(dropout(x)))` over the active, unmerged adapters, for `x: [..., in]`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let copy = self.active_copy();
        let (weight, bias) = match copy {
            Some(copy) => (&copy.weight, &copy.bias),
            None => (&self.weight, &self.bias),
        };
        let base = if copy.is_none() && self.base_dtype() != BaseDType::F32 {
            stored_linear(x.clone(), weight.val(), bias.as_ref().map(|b| b.val()))
        } else {
            linear(x.clone(), weight.val(), bias.as_ref().map(|b| b.val()))
        };
        if self.disabled {
            return base;
        }
        self.adapters
            .iter()
            .filter(|a| a.active && !a.merged)
            .fold(base, |y, adapter| y + adapter.delta(x.clone()))
    }

    /// The form the base weight is stored in.
    pub fn base_dtype(&self) -> BaseDType {
        BaseDType::of(self.weight.val().dtype()).unwrap_or_default()
    }

    /// Stores the frozen base weight as `dtype` (QLoRA's frozen base: the bias, adapters and
    /// saved copies stay `f32`). A layer with merged adapters is refused: its base would no
    /// longer unmerge exactly. Converting back to [`BaseDType::F32`] widens the stored values
    /// (the precision lost on the way down stays lost).
    pub fn store_base_as(&mut self, dtype: BaseDType) -> Result<()> {
        if dtype == self.base_dtype() {
            return Ok(());
        }
        if let Some(merged) = self.adapters.iter().find(|a| a.merged) {
            return Err(LoraError::MergeIntoStoredBase {
                name: merged.name.clone(),
                dtype,
            });
        }
        let device = self.device();
        if let Some(backend) = crate::device::Backend::of_device(&device)
            && !dtype.supported_on(backend)
        {
            return Err(LoraError::UnsupportedBaseDType {
                dtype,
                backend: backend.name().to_string(),
                supported: BaseDType::supported_choices(backend)
                    .into_iter()
                    .map(String::from)
                    .collect(),
            });
        }
        let weight = self.weight.val().detach();
        self.weight = Param::from_tensor(dtype.store(weight)).set_require_grad(false);
        Ok(())
    }

    /// The base weight `[in, out]` as `f32`, whatever form it is stored in.
    pub fn base_weight_f32(&self) -> Tensor<2> {
        widen(self.weight.val())
    }

    /// The saved copy that replaces the base in the forward pass: the first active one, unless
    /// the layer is disabled.
    pub fn active_copy(&self) -> Option<&SavedCopy> {
        if self.disabled {
            return None;
        }
        self.saved_copies.iter().find(|c| c.active)
    }

    /// Gives the adapter called `name` a full copy of this layer (`weight: [in, out]`, `bias`),
    /// used instead of the base whenever that adapter is active: PEFT's `modules_to_save`. Pass
    /// `None` to copy the current base (trainable), as PEFT does when it wraps a module.
    pub fn insert_saved_copy(
        &mut self,
        name: &str,
        weights: Option<(Tensor<2>, Option<Tensor<1>>)>,
    ) -> Result<()> {
        crate::adapter::validate_name(name)?;
        if self.saved_copies.iter().any(|c| c.name == name) {
            return Err(LoraError::DuplicateAdapter {
                name: name.to_string(),
            });
        }
        let (weight, bias) = match weights {
            Some((weight, bias)) => {
                let expected = [self.in_features(), self.out_features()];
                if weight.dims() != expected
                    || bias.as_ref().is_some_and(|b| b.dims() != [expected[1]])
                {
                    return Err(LoraError::ShapeMismatch {
                        what: format!("saved copy '{name}' ([in, out] weight and [out] bias)"),
                        expected: expected.to_vec(),
                        actual: weight.dims().to_vec(),
                    });
                }
                (weight, bias)
            }
            None => (
                self.base_weight_f32().detach(),
                self.bias.as_ref().map(|b| b.val().detach()),
            ),
        };
        self.saved_copies.push(SavedCopy {
            weight: Param::from_tensor(weight),
            bias: bias.map(Param::from_tensor),
            name: name.to_string(),
            active: true,
        });
        Ok(())
    }

    /// The names of the saved copies.
    pub fn saved_copy_names(&self) -> Vec<String> {
        self.saved_copies.iter().map(|c| c.name.clone()).collect()
    }

    /// Removes the saved copy of adapter `name`, if any; returns whether one was removed.
    pub fn delete_saved_copy(&mut self, name: &str) -> bool {
        let before = self.saved_copies.len();
        self.saved_copies.retain(|c| c.name != name);
        before != self.saved_copies.len()
    }

    /// Adds a freshly initialised adapter called `name` (active, unmerged, trainable).
    pub fn add_adapter(&mut self, name: &str, config: LoraConfig) -> Result<()> {
        let adapter = LoraAdapter::new(
            name,
            config,
            self.in_features(),
            self.out_features(),
            &self.device(),
        )?;
        self.insert_adapter(adapter)
    }

    /// Adds a ready-made adapter (for example one loaded from a file), checking its shapes.
    pub fn insert_adapter(&mut self, adapter: LoraAdapter) -> Result<()> {
        if self.position(&adapter.name).is_some() {
            return Err(LoraError::DuplicateAdapter { name: adapter.name });
        }
        let [a_in, r] = adapter.lora_a.dims();
        let [_, b_out] = adapter.lora_b.dims();
        if a_in != self.in_features() || b_out != self.out_features() {
            return Err(LoraError::ShapeMismatch {
                what: format!(
                    "adapter '{}' for a {} -> {} layer ([in, out] of A·B)",
                    adapter.name,
                    self.in_features(),
                    self.out_features()
                ),
                expected: vec![self.in_features(), self.out_features()],
                actual: vec![a_in, b_out],
            });
        }
        debug_assert_eq!(r, adapter.config.r);
        self.adapters.push(adapter);
        Ok(())
    }

    /// Removes the adapter called `name` and returns it. A merged adapter must be unmerged first.
    pub fn delete_adapter(&mut self, name: &str) -> Result<LoraAdapter> {
        let index = self.index_of(name)?;
        if self.adapters[index].merged {
            return Err(LoraError::MergedAdapterBusy {
                name: name.to_string(),
                action: "delete",
            });
        }
        Ok(self.adapters.remove(index))
    }

    /// The adapter called `name`.
    pub fn adapter(&self, name: &str) -> Result<&LoraAdapter> {
        Ok(&self.adapters[self.index_of(name)?])
    }

    /// The names of all adapters, in insertion order.
    pub fn adapter_names(&self) -> Vec<String> {
        self.adapters.iter().map(|a| a.name.clone()).collect()
    }

    /// Turns the adapter called `name` (and its saved copy, if any) on or off. A merged adapter
    /// cannot be turned off.
    pub fn set_active(&mut self, name: &str, active: bool) -> Result<()> {
        let copy = self.saved_copies.iter_mut().find(|c| c.name == name);
        let has_copy = copy.is_some();
        if let Some(copy) = copy {
            copy.active = active;
        }
        let Some(index) = self.position(name) else {
            return if has_copy {
                Ok(())
            } else {
                Err(self.unknown(name))
            };
        };
        let adapter = &mut self.adapters[index];
        if adapter.merged && !active {
            return Err(LoraError::MergedAdapterBusy {
                name: name.to_string(),
                action: "deactivate",
            });
        }
        adapter.active = active;
        Ok(())
    }

    /// Makes exactly the named adapters (and saved copies) active; all names are checked before
    /// anything changes.
    pub fn set_active_adapters(&mut self, names: &[&str]) -> Result<()> {
        for name in names {
            if self.position(name).is_none() && !self.saved_copies.iter().any(|c| c.name == *name) {
                return Err(self.unknown(name));
            }
        }
        if let Some(busy) = self
            .adapters
            .iter()
            .find(|a| a.merged && !names.contains(&a.name.as_str()))
        {
            return Err(LoraError::MergedAdapterBusy {
                name: busy.name.clone(),
                action: "deactivate",
            });
        }
        for adapter in &mut self.adapters {
            adapter.active = names.contains(&adapter.name.as_str());
        }
        for copy in &mut self.saved_copies {
            copy.active = names.contains(&copy.name.as_str());
        }
        Ok(())
    }

    /// Bypasses (`true`) or restores (`false`) every unmerged adapter at once. Disabling while
    /// any adapter is merged is an error: the base weight would still carry its update.
    pub fn set_disabled(&mut self, disabled: bool) -> Result<()> {
        if disabled && let Some(merged) = self.adapters.iter().find(|a| a.merged) {
            return Err(LoraError::MergedAdapterBusy {
                name: merged.name.clone(),
                action: "disable",
            });
        }
        self.disabled = disabled;
        Ok(())
    }

    /// Whether every adapter is bypassed.
    pub fn is_disabled(&self) -> bool {
        self.disabled
    }

    /// Makes the named adapter's factors trainable or frozen, leaving the others as they are.
    pub fn set_adapter_trainable(&mut self, name: &str, trainable: bool) -> Result<()> {
        let index = self.index_of(name)?;
        let adapter = self.adapters.remove(index);
        self.adapters
            .insert(index, adapter.set_trainable(trainable));
        Ok(())
    }

    /// Checks that the named adapter's update `s·B·A` is finite and at most `limit` times the
    /// largest entry of the base weight. Trained adapters stay far below the base (updates are
    /// small by design); one a million times larger comes from a broken `lora_alpha` or
    /// broken factors and would drown or overflow the layer's outputs.
    pub fn check_update_size(&self, name: &str, limit: f32) -> Result<()> {
        let index = self.index_of(name)?;
        let adapter = &self.adapters[index];
        let delta = adapter.delta_weight().abs();
        let update = if any_not_finite(&delta) {
            f32::INFINITY
        } else {
            delta.max().into_scalar::<f32>()
        };
        let base = self.base_weight_f32().abs().max().into_scalar::<f32>();
        let ratio = update / base.max(f32::MIN_POSITIVE);
        if ratio.is_finite() && ratio <= limit {
            return Ok(());
        }
        Err(LoraError::UpdateOutOfRange {
            name: name.to_string(),
            update,
            ratio,
            scaling: adapter.scaling(),
            limit,
        })
    }

    /// Folds `s·A·B` of the adapter called `name` into the base weight. The adapter stays
    /// (marked merged) so that [`unmerge`](Self::unmerge) can undo it; it also becomes active.
    pub fn merge(&mut self, name: &str) -> Result<()> {
        let index = self.index_of(name)?;
        self.require_f32_base(name)?;
        if self.adapters[index].merged {
            return Err(LoraError::AlreadyMerged {
                name: name.to_string(),
            });
        }
        let delta = self.adapters[index].delta_weight();
        if any_not_finite(&delta) {
            return Err(LoraError::NonFiniteMerge {
                name: name.to_string(),
                scaling: self.adapters[index].scaling(),
            });
        }
        self.update_weight(|w| w + delta);
        let adapter = &mut self.adapters[index];
        adapter.merged = true;
        adapter.active = true;
        tracing::trace!(adapter = name, "merged");
        Ok(())
    }

    /// Subtracts the merged adapter's `s·A·B` from the base weight again.
    pub fn unmerge(&mut self, name: &str) -> Result<()> {
        let index = self.index_of(name)?;
        self.require_f32_base(name)?;
        if !self.adapters[index].merged {
            return Err(LoraError::NotMerged {
                name: name.to_string(),
            });
        }
        let delta = self.adapters[index].delta_weight();
        self.update_weight(|w| w - delta);
        self.adapters[index].merged = false;
        Ok(())
    }

    /// Merges every active adapter that is not merged yet; returns their names.
    pub fn merge_all(&mut self) -> Result<Vec<String>> {
        let names: Vec<String> = self
            .adapters
            .iter()
            .filter(|a| a.active && !a.merged)
            .map(|a| a.name.clone())
            .collect();
        for name in &names {
            self.merge(name)?;
        }
        Ok(names)
    }

    /// Unmerges every merged adapter, newest merge first is not required: updates commute.
    pub fn unmerge_all(&mut self) -> Result<Vec<String>> {
        let names: Vec<String> = self
            .adapters
            .iter()
            .filter(|a| a.merged)
            .map(|a| a.name.clone())
            .collect();
        for name in &names {
            self.unmerge(name)?;
        }
        Ok(names)
    }

    /// Merges the active adapters and returns the plain layer (PEFT's `merge_and_unload`).
    /// Inactive adapters are dropped without being merged; an active saved copy becomes the
    /// layer.
    pub fn merge_and_unload(mut self) -> Result<Linear> {
        if !self.disabled {
            self.merge_all()?;
        }
        self.discard_adapters();
        Ok(self.into_plain())
    }

    /// Unmerges everything and returns the original base layer (PEFT's `unload`).
    pub fn unload(mut self) -> Result<Linear> {
        self.unmerge_all()?;
        self.saved_copies.clear();
        Ok(self.into_plain())
    }

    /// Removes every adapter *without* unmerging: updates merged so far stay folded into the
    /// weight, the rest are dropped. This is how a model-level `merge_and_unload` ends.
    /// An active saved copy becomes the base weight (as PEFT's `merge_and_unload` keeps the
    /// adapter's copy of a `modules_to_save` module); other copies are dropped.
    pub fn discard_adapters(&mut self) -> Vec<LoraAdapter> {
        if let Some(copy) = self.active_copy() {
            let weight = copy.weight.val().detach();
            let bias = copy.bias.as_ref().map(|b| b.val().detach());
            self.weight = Param::from_tensor(weight).set_require_grad(false);
            self.bias = bias.map(|b| Param::from_tensor(b).set_require_grad(false));
        }
        self.saved_copies.clear();
        self.disabled = false;
        std::mem::take(&mut self.adapters)
    }

    /// Number of parameters all adapters add.
    pub fn num_adapter_params(&self) -> usize {
        self.adapters
            .iter()
            .map(LoraAdapter::num_added_params)
            .sum()
    }

    fn into_plain(self) -> Linear {
        Linear {
            weight: self.weight,
            bias: self.bias,
        }
    }

    fn require_f32_base(&self, name: &str) -> Result<()> {
        match self.base_dtype() {
            BaseDType::F32 => Ok(()),
            dtype => Err(LoraError::MergeIntoStoredBase {
                name: name.to_string(),
                dtype,
            }),
        }
    }

    fn update_weight(&mut self, f: impl FnOnce(Tensor<2>) -> Tensor<2>) {
        let weight = self.weight.clone();
        self.weight = weight.map(|w| f(w.detach()).detach().set_require_grad(false));
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.adapters.iter().position(|a| a.name == name)
    }

    fn index_of(&self, name: &str) -> Result<usize> {
        self.position(name).ok_or_else(|| self.unknown(name))
    }

    fn unknown(&self, name: &str) -> LoraError {
        let mut known = self.adapter_names();
        for copy in self.saved_copy_names() {
            if !known.contains(&copy) {
                known.push(copy);
            }
        }
        LoraError::UnknownAdapter {
            name: name.to_string(),
            known,
        }
    }
}

/// `x·W + b` for a weight stored in another form than `f32`. The product takes the stored
/// weight itself: Burn widens it for the product, and autodiff keeps the stored form for the
/// backward pass. Without autodiff, a half weight is cast first (the backends multiply one
/// dtype at a time).
fn stored_linear<const D: usize>(
    x: Tensor<D>,
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
) -> Tensor<D> {
    let weight = match weight.dtype() {
        burn::tensor::DType::QFloat(_) => weight,
        _ if x.is_autodiff() => weight,
        _ => widen(weight),
    };
    // The product runs on 2-D operands: reshaping a block-quantized weight to add axes would
    // requantize it on some backends.
    let y = rows_matmul(x, weight);
    match bias {
        Some(bias) => y + bias.unsqueeze(),
        None => y,
    }
}

/// `x · w` for `x: [.., in]` and `w: [in, out]`, with every leading axis of `x` folded into the
/// rows of one 2-D product. Burn keeps a batched product when `w` is thin (a LoRA factor):
/// one small gemm per batch row, and in the backward pass a weight gradient per batch row
/// summed afterwards; folded, each is a single gemm.
pub(crate) fn rows_matmul<const D: usize>(x: Tensor<D>, w: Tensor<2>) -> Tensor<D> {
    let mut dims = x.dims();
    let d_in = dims[D - 1];
    let rows = x.shape().num_elements() / d_in.max(1);
    dims[D - 1] = w.dims()[1];
    x.reshape([rows, d_in]).matmul(w).reshape(dims)
}

/// Whether any element is NaN or infinite (one boolean read back from the device).
fn any_not_finite(t: &Tensor<2>) -> bool {
    t.clone().is_finite().bool_not().any().into_scalar::<bool>()
}

#[cfg(test)]
mod tests {
    use burn::module::Module;
    use burn::optim::GradientsParams;
    use burn::tensor::{Distribution, Tensor, TensorData};

    use super::*;
    use crate::config::LoraInit;
    use crate::params::ParamCount;
    use crate::testing::{max_abs, max_abs_diff};

    /// `W0 = [[1, 0, -1], [2, 1, 0]]` (`[in=2, out=3]`), `b = [0.5, -0.5, 1]`, `A = [[1], [-1]]`,
    /// `B = [[3, 0, 1]]`, `r = 1`, `α = 2` (so `s = 2`).
    fn hand_layer(device: &Device) -> LoraLinear {
        let w = Tensor::<2>::from_floats([[1.0, 0.0, -1.0], [2.0, 1.0, 0.0]], device);
        let b = Tensor::<1>::from_floats([0.5, -0.5, 1.0], device);
        let mut layer = LoraLinear::from_weights(w, Some(b)).unwrap();
        let a = Tensor::<2>::from_floats([[1.0], [-1.0]], device);
        let bb = Tensor::<2>::from_floats([[3.0, 0.0, 1.0]], device);
        let config = LoraConfig::new(1).with_alpha(2.0);
        layer
            .insert_adapter(LoraAdapter::from_factors("hand", config, a, bb).unwrap())
            .unwrap();
        layer
    }

    fn random_layer(device: &Device, d_in: usize, d_out: usize) -> LoraLinear {
        LoraLinearConfig::new(d_in, d_out).init(device)
    }

    fn random_input<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
        Tensor::random(shape, Distribution::Uniform(-1.0, 1.0), device)
    }

    crate::backend_test!(fn closed_form_forward(device) {
        let layer = hand_layer(&device);
        // x = [1, 2]: x·W0 + b = [5.5, 1.5, 0]; x·A = -1; s·(x·A)·B = [-6, 0, -2].
        let expected = [-0.5f32, 1.5, -2.0];
        let y = layer.forward(Tensor::<2>::from_floats([[1.0, 2.0]], &device));
        y.into_data().assert_approx_eq::<f32>(&TensorData::from([expected]), Default::default());
        // Any leading rank works: [batch, seq, in].
        let y = layer.forward(Tensor::<3>::from_floats([[[1.0, 2.0], [0.0, 0.0]]], &device));
        let expected3 = TensorData::from([[expected, [0.5, -0.5, 1.0]]]);
        y.into_data().assert_approx_eq::<f32>(&expected3, Default::default());
    });

    crate::backend_test!(fn zero_b_gives_exactly_the_base(device) {
        let mut layer = random_layer(&device, 12, 7);
        let x = random_input([3, 4, 12], &device);
        let base = layer.forward(x.clone());
        layer.add_adapter("default", LoraConfig::new(4)).unwrap();
        layer.add_adapter("gauss", LoraConfig::new(2).with_init(LoraInit::Gaussian)).unwrap();
        assert_eq!(max_abs(layer.adapters[0].lora_b.val()), 0.0);
        assert!(max_abs(layer.adapters[1].lora_a.val()) > 0.0);
        assert_eq!(max_abs_diff(layer.forward(x), base), 0.0);
    });

    crate::backend_test!(fn gradients_reach_a_and_b_only(device) {
        let device = device.autodiff();
        let mut layer = random_layer(&device, 6, 5);
        layer.add_adapter("default", LoraConfig::new(2).with_init(LoraInit::Random)).unwrap();
        let x = random_input([4, 6], &device);
        let grads = layer.forward(x).powi_scalar(2).sum().backward();
        assert!(layer.weight.grad(&grads).is_none(), "W0 must be frozen");
        assert!(layer.bias.as_ref().unwrap().grad(&grads).is_none(), "b must be frozen");
        let adapter = &layer.adapters[0];
        assert!(max_abs(adapter.lora_a.grad(&grads).unwrap()) > 0.0);
        assert!(max_abs(adapter.lora_b.grad(&grads).unwrap()) > 0.0);
        // The optimizer sees (and so keeps state for) exactly A and B.
        let params = GradientsParams::from_grads(grads, &layer);
        assert_eq!(params.len(), 2);
        assert_eq!(ParamCount::of(&layer).trainable, 2 * (6 + 5));
    });

    crate::backend_test!(fn finite_differences_match_autodiff(device) {
        // L = Σ (c ⊙ y)² is quadratic in every single entry of A and of B, so the central
        // difference is exact up to float rounding: an independent check of the gradients.
        let (d_in, d_out, r) = (4, 3, 2);
        let x = random_input([5, d_in], &device).into_data();
        let c = random_input([5, d_out], &device).into_data();
        let a0 = random_input([d_in, r], &device).into_data();
        let b0 = random_input([r, d_out], &device).into_data();
        let w = random_input([d_in, d_out], &device).into_data();
        let config = LoraConfig::new(r).with_alpha(3.0);
        let loss = |device: &Device, a: TensorData, b: TensorData| {
            let mut layer = LoraLinear::from_weights(Tensor::from_data(w.clone(), device), None).unwrap();
            let adapter = LoraAdapter::from_factors(
                "fd", config, Tensor::from_data(a, device), Tensor::from_data(b, device),
            ).unwrap();
            layer.insert_adapter(adapter).unwrap();
            let y = layer.forward(Tensor::<2>::from_data(x.clone(), device));
            let loss = (y * Tensor::<2>::from_data(c.clone(), device)).powi_scalar(2).sum();
            (loss, layer)
        };
        let ad = device.clone().autodiff();
        let (l, layer) = loss(&ad, a0.clone(), b0.clone());
        let grads = l.backward();
        let ga = layer.adapters[0].lora_a.grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap();
        let gb = layer.adapters[0].lora_b.grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap();
        let eval = |a: &[f32], b: &[f32]| -> f64 {
            let (l, _) = loss(
                &device,
                TensorData::new(a.to_vec(), [d_in, r]),
                TensorData::new(b.to_vec(), [r, d_out]),
            );
            l.into_scalar::<f32>() as f64
        };
        let a = a0.try_to_vec::<f32>().unwrap();
        let b = b0.try_to_vec::<f32>().unwrap();
        let h = 0.05f32;
        for (which, base, analytic) in [("A", &a, &ga), ("B", &b, &gb)] {
            for i in 0..base.len() {
                let (mut plus, mut minus) = (base.clone(), base.clone());
                plus[i] += h;
                minus[i] -= h;
                let numeric = if which == "A" {
                    (eval(&plus, &b) - eval(&minus, &b)) / (2.0 * h as f64)
                } else {
                    (eval(&a, &plus) - eval(&a, &minus)) / (2.0 * h as f64)
                };
                let err = (numeric - analytic[i] as f64).abs();
                assert!(
                    err <= 2e-3 * (1.0 + numeric.abs()),
                    "dL/d{which}[{i}]: finite difference {numeric}, autodiff {}", analytic[i]
                );
            }
        }
    });

    crate::backend_test!(fn merge_unmerge_round_trip(device) {
        let mut layer = random_layer(&device, 24, 16);
        layer.add_adapter("default", LoraConfig::new(4).with_alpha(8.0).with_init(LoraInit::Random)).unwrap();
        let w0 = layer.weight.val();
        let x = random_input([2, 3, 24], &device);
        let unmerged = layer.forward(x.clone());
        layer.merge("default").unwrap();
        assert!(layer.adapter("default").unwrap().is_merged());
        let merged = layer.forward(x.clone());
        let scale = max_abs(unmerged.clone());
        assert!(max_abs_diff(merged.clone(), unmerged.clone()) <= 1e-5 * scale, "merged != unmerged");
        // The merge really changed the weight.
        assert!(max_abs_diff(layer.weight.val(), w0.clone()) > 1e-3);

        let err = layer.merge("default").unwrap_err();
        assert_eq!(err, LoraError::AlreadyMerged { name: "default".into() });
        let err = layer.merge("nope").unwrap_err();
        assert!(err.to_string().contains("unknown adapter 'nope'; known adapters: [default]"), "{err}");
        assert!(matches!(layer.set_active("default", false), Err(LoraError::MergedAdapterBusy { .. })));
        assert!(matches!(layer.delete_adapter("default"), Err(LoraError::MergedAdapterBusy { .. })));

        layer.unmerge("default").unwrap();
        // Unmerging restores W0 up to the rounding of one add and one subtract in f32.
        let delta = layer.adapter("default").unwrap().delta_weight();
        let bound = 2.0 * f32::EPSILON * (max_abs(w0.clone()) + max_abs(delta));
        assert!(max_abs_diff(layer.weight.val(), w0) <= bound);
        assert_eq!(layer.unmerge("default").unwrap_err(), LoraError::NotMerged { name: "default".into() });
        assert!(max_abs_diff(layer.forward(x), unmerged) <= 1e-5 * scale);
    });

    crate::backend_test!(fn merge_and_unload_gives_a_plain_linear(device) {
        let mut layer = random_layer(&device, 10, 6);
        layer.add_adapter("a", LoraConfig::new(2).with_init(LoraInit::Random)).unwrap();
        layer.add_adapter("off", LoraConfig::new(3).with_init(LoraInit::Random)).unwrap();
        layer.set_active("off", false).unwrap();
        let x = random_input([4, 10], &device);
        let expected = layer.forward(x.clone());
        let base_w = layer.weight.val();
        let unloaded = layer.clone().unload().unwrap();
        assert_eq!(max_abs_diff(unloaded.weight.val(), base_w), 0.0);
        let plain = layer.merge_and_unload().unwrap();
        assert!(max_abs_diff(plain.forward(x), expected.clone()) <= 1e-5 * max_abs(expected));
    });

    crate::backend_test!(fn rslora_scales_by_alpha_over_sqrt_r(device) {
        let mut layer = random_layer(&device, 8, 8);
        let config = LoraConfig::new(4).with_alpha(8.0).with_rslora(true).with_init(LoraInit::Random);
        assert_eq!(config.scaling(), 4.0);
        layer.add_adapter("rs", config).unwrap();
        let x = random_input([3, 8], &device);
        let base = x.clone().matmul(layer.weight.val()) + layer.bias.as_ref().unwrap().val().unsqueeze();
        let adapter = layer.adapter("rs").unwrap();
        let manual = x.clone().matmul(adapter.lora_a.val()).matmul(adapter.lora_b.val()).mul_scalar(4.0);
        let y = layer.forward(x);
        assert!(max_abs_diff(y, base + manual.clone()) <= 1e-5 * max_abs(manual));
    });

    crate::backend_test!(fn dropout_is_active_only_in_training(device) {
        let ad = device.clone().autodiff();
        let mut layer = random_layer(&ad, 32, 32);
        layer.add_adapter("d", LoraConfig::new(8).with_dropout(0.5).with_init(LoraInit::Random)).unwrap();
        let x = random_input([16, 32], &ad);
        let mut reference = layer.valid();
        reference.adapters[0].dropout.prob = 0.0;
        let deterministic = reference.forward(x.clone().detach());
        // Training mode on an autodiff device: dropout masks the adapter's input.
        let trained = layer.forward(x.clone());
        assert!(max_abs_diff(trained.detach(), deterministic.clone()) > 1e-3);
        // Validation mode: no dropout at all.
        let valid = layer.valid();
        assert_eq!(max_abs_diff(valid.forward(x.detach()), deterministic), 0.0);
    });

    crate::backend_test!(fn two_active_adapters_add_their_deltas(device) {
        let mut layer = random_layer(&device, 9, 5);
        let x = random_input([2, 9], &device);
        let base = layer.forward(x.clone());
        layer.add_adapter("one", LoraConfig::new(2).with_init(LoraInit::Random)).unwrap();
        layer.add_adapter("two", LoraConfig::new(3).with_alpha(1.5).with_init(LoraInit::Random)).unwrap();
        let d1 = layer.adapter("one").unwrap().delta(x.clone());
        let d2 = layer.adapter("two").unwrap().delta(x.clone());
        let both = layer.forward(x.clone());
        let expected = base.clone() + d1.clone() + d2.clone();
        assert!(max_abs_diff(both, expected.clone()) <= 1e-5 * max_abs(expected));

        layer.set_active_adapters(&["two"]).unwrap();
        assert!(max_abs_diff(layer.forward(x.clone()), base.clone() + d2) <= 1e-5);
        layer.set_disabled(true).unwrap();
        assert_eq!(max_abs_diff(layer.forward(x.clone()), base.clone()), 0.0);
        layer.set_disabled(false).unwrap();

        // Merging one and keeping the other unmerged still sums both.
        layer.set_active_adapters(&["one", "two"]).unwrap();
        layer.merge("one").unwrap();
        assert!(layer.set_disabled(true).is_err());
        let y = layer.forward(x.clone());
        layer.unmerge("one").unwrap();
        assert!(max_abs_diff(y, layer.forward(x.clone())) <= 1e-5);

        let removed = layer.delete_adapter("one").unwrap();
        assert_eq!(removed.name, "one");
        assert_eq!(layer.adapter_names(), vec!["two".to_string()]);
        assert!(layer.set_active_adapters(&["one"]).is_err());
    });

    crate::backend_test!(fn invalid_adapters_are_clear_errors(device) {
        let mut layer = random_layer(&device, 4, 3);
        // A rank above min(in, out) is allowed, as PEFT allows it.
        layer.add_adapter("big", LoraConfig::new(5)).unwrap();
        layer.delete_adapter("big").unwrap();
        assert!(matches!(layer.add_adapter("x", LoraConfig::new(0)), Err(LoraError::ZeroRank { .. })));
        assert!(matches!(layer.add_adapter("a.b", LoraConfig::new(1)), Err(LoraError::InvalidAdapterName { .. })));
        layer.add_adapter("a", LoraConfig::new(1)).unwrap();
        assert!(matches!(layer.add_adapter("a", LoraConfig::new(1)), Err(LoraError::DuplicateAdapter { .. })));
        let other = LoraAdapter::new("b", LoraConfig::new(1), 5, 3, &device).unwrap();
        let e = layer.insert_adapter(other).unwrap_err();
        assert!(matches!(e, LoraError::ShapeMismatch { .. }), "{e}");
        let a = Tensor::<2>::zeros([4, 2], &device);
        let b = Tensor::<2>::zeros([2, 3], &device);
        let e = LoraAdapter::from_factors("c", LoraConfig::new(1), a, b).unwrap_err();
        assert!(e.to_string().contains("factor A"), "{e}");
        let e = LoraLinear::from_weights(Tensor::zeros([4, 3], &device), Some(Tensor::zeros([4], &device)))
            .unwrap_err();
        assert!(e.to_string().contains("bias"), "{e}");
    });

    crate::backend_test!(fn a_saved_copy_replaces_the_base_while_its_adapter_is_active(device) {
        let mut layer = random_layer(&device, 5, 3);
        let x = random_input([2, 5], &device);
        let base = layer.forward(x.clone());
        let w = random_input([5, 3], &device);
        let b = random_input([3], &device);
        layer.insert_saved_copy("head", Some((w.clone(), Some(b.clone())))).unwrap();
        let expected = x.clone().matmul(w) + b.unsqueeze();
        assert!(max_abs_diff(layer.forward(x.clone()), expected.clone()) < 1e-6);
        layer.set_disabled(true).unwrap();
        assert_eq!(max_abs_diff(layer.forward(x.clone()), base.clone()), 0.0);
        layer.set_disabled(false).unwrap();
        layer.set_active("head", false).unwrap();
        assert_eq!(max_abs_diff(layer.forward(x.clone()), base), 0.0);
        layer.set_active_adapters(&["head"]).unwrap();
        let e = layer.set_active_adapters(&["nope"]).unwrap_err();
        assert!(e.to_string().contains("known adapters: [head]"), "{e}");
        assert!(layer.insert_saved_copy("bad", Some((random_input([3, 5], &device), None))).is_err());
        let plain = layer.merge_and_unload().unwrap();
        assert!(max_abs_diff(plain.forward(x), expected) < 1e-6);
    });

    crate::backend_test!(fn training_one_adapter_leaves_the_other_frozen(device) {
        let device = device.autodiff();
        let mut layer = random_layer(&device, 6, 4);
        layer.add_adapter("train", LoraConfig::new(2).with_init(LoraInit::Random)).unwrap();
        layer.add_adapter("keep", LoraConfig::new(2).with_init(LoraInit::Random)).unwrap();
        layer.set_adapter_trainable("keep", false).unwrap();
        let grads = layer.forward(random_input([3, 6], &device)).sum().backward();
        assert!(layer.adapter("train").unwrap().lora_a.grad(&grads).is_some());
        assert!(layer.adapter("keep").unwrap().lora_a.grad(&grads).is_none());
        assert_eq!(ParamCount::of(&layer).trainable, 2 * (6 + 4));
        assert_eq!(ParamCount::of(&layer.valid()).trainable, 2 * (6 + 4));
    });
}
