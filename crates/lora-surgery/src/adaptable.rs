//! [`Adaptable`]: how a model shows its linear layers (and biases) to model surgery, under the
//! module names PEFT's rules match against.

use burn::module::Param;
use burn::tensor::Tensor;
use lora_core::{BaseDType, LoraLinear};

use crate::target::BiasMode;

/// A bias parameter, as [`Adaptable::biases`] hands them out.
pub type BiasParam = Param<Tensor<1>>;

/// A model whose linear layers can carry LoRA adapters: it lists every [`LoraLinear`] with its
/// module name (Hugging Face's, for the built-in families), read-only and mutably.
///
/// Implement it with `#[derive(Adaptable)]` (the `lora-derive` crate, re-exported here): each
/// field contributes its layers under its (possibly renamed) name, `Vec` items under their
/// index and `Option` transparently, as PyTorch names modules.
pub trait Adaptable {
    /// Every adaptable linear layer with its module name, in model order.
    fn linears(&self) -> Vec<(String, &LoraLinear)>;

    /// The same layers as [`linears`](Adaptable::linears), mutably, in the same order.
    fn linears_mut(&mut self) -> Vec<(String, &mut LoraLinear)>;

    /// Module names of output heads, which `all-linear` leaves out.
    fn output_heads(&self) -> Vec<String> {
        Vec::new()
    }

    /// Whether the layers store their weights `[in, out]` as Hugging Face's `Conv1D` does
    /// (GPT-2): PEFT's `fan_in_fan_out`, written into saved adapter configs. It changes nothing
    /// in the factors' files (`lora_A` is `[r, in]` either way), only how a merged weight is
    /// laid out.
    fn fan_in_fan_out(&self) -> bool {
        false
    }

    /// Every bias parameter with its full name (`<module>.bias`), for PEFT's `bias` modes. The
    /// default lists the biases of the linear layers; layers with other biases (LayerNorm)
    /// add theirs.
    fn biases(&self) -> Vec<(String, &BiasParam)> {
        self.linears()
            .into_iter()
            .filter_map(|(name, linear)| {
                linear.bias.as_ref().map(|b| (join_path(&name, "bias"), b))
            })
            .collect()
    }

    /// The same biases as [`biases`](Adaptable::biases), mutably, in the same order.
    fn biases_mut(&mut self) -> Vec<(String, &mut BiasParam)> {
        self.linears_mut()
            .into_iter()
            .filter_map(|(name, linear)| {
                linear.bias.as_mut().map(|b| (join_path(&name, "bias"), b))
            })
            .collect()
    }
}

/// Stores the frozen base weight of every linear layer except the output heads as `dtype`
/// (see [`LoraLinear::store_base_as`]); returns how many layers changed form. Loading with the
/// form chosen up front (`lora_models::load_causal_lm_as`) avoids holding the `f32` model
/// first.
pub fn store_base_as<M: Adaptable + ?Sized>(
    model: &mut M,
    dtype: BaseDType,
) -> crate::Result<usize> {
    let heads = model.output_heads();
    let mut changed = 0;
    for (name, linear) in model.linears_mut() {
        if heads.contains(&name) || linear.base_dtype() == dtype {
            continue;
        }
        linear.store_base_as(dtype)?;
        changed += 1;
    }
    Ok(changed)
}

/// Joins a parent module name and a child path with a dot (either may be empty).
pub fn join_path(parent: &str, child: &str) -> String {
    match (parent.is_empty(), child.is_empty()) {
        (true, _) => child.to_string(),
        (_, true) => parent.to_string(),
        _ => format!("{parent}.{child}"),
    }
}

/// Prefixes every name of a list with `parent`.
fn prefixed<T>(parent: String, items: Vec<(String, T)>) -> impl Iterator<Item = (String, T)> {
    items
        .into_iter()
        .map(move |(path, item)| (join_path(&parent, &path), item))
}

/// The bias names a [`BiasMode`] selects, given the adapted module names.
pub fn selected_biases<M: Adaptable + ?Sized>(
    model: &M,
    mode: BiasMode,
    targeted: &[String],
) -> Vec<String> {
    model
        .biases()
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
pub fn set_biases_trainable<M: Adaptable + ?Sized>(
    model: &mut M,
    mode: BiasMode,
    targeted: &[String],
) {
    let selected = selected_biases(model, mode, targeted);
    for (name, bias) in model.biases_mut() {
        if selected.contains(&name) {
            *bias = bias.clone().set_require_grad(true);
        }
    }
}

/// A linear layer is its own (unnamed) module.
impl Adaptable for LoraLinear {
    fn linears(&self) -> Vec<(String, &LoraLinear)> {
        vec![(String::new(), self)]
    }

    fn linears_mut(&mut self) -> Vec<(String, &mut LoraLinear)> {
        vec![(String::new(), self)]
    }
}

/// Elements are named by their index, as in PyTorch's `ModuleList`.
impl<T: Adaptable> Adaptable for Vec<T> {
    fn linears(&self) -> Vec<(String, &LoraLinear)> {
        let items = self.iter().enumerate();
        items
            .flat_map(|(i, item)| prefixed(i.to_string(), item.linears()))
            .collect()
    }

    fn linears_mut(&mut self) -> Vec<(String, &mut LoraLinear)> {
        let items = self.iter_mut().enumerate();
        items
            .flat_map(|(i, item)| prefixed(i.to_string(), item.linears_mut()))
            .collect()
    }

    fn output_heads(&self) -> Vec<String> {
        let items = self.iter().enumerate();
        items
            .flat_map(|(i, item)| {
                let heads = item.output_heads().into_iter();
                heads.map(move |h| join_path(&i.to_string(), &h))
            })
            .collect()
    }

    fn biases(&self) -> Vec<(String, &BiasParam)> {
        let items = self.iter().enumerate();
        items
            .flat_map(|(i, item)| prefixed(i.to_string(), item.biases()))
            .collect()
    }

    fn biases_mut(&mut self) -> Vec<(String, &mut BiasParam)> {
        let items = self.iter_mut().enumerate();
        items
            .flat_map(|(i, item)| prefixed(i.to_string(), item.biases_mut()))
            .collect()
    }
}

/// Transparent: `None` has no layers.
impl<T: Adaptable> Adaptable for Option<T> {
    fn linears(&self) -> Vec<(String, &LoraLinear)> {
        self.as_ref().map(Adaptable::linears).unwrap_or_default()
    }

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

    fn biases(&self) -> Vec<(String, &BiasParam)> {
        self.as_ref().map(Adaptable::biases).unwrap_or_default()
    }

    fn biases_mut(&mut self) -> Vec<(String, &mut BiasParam)> {
        self.as_mut().map(Adaptable::biases_mut).unwrap_or_default()
    }
}

/// Transparent.
impl<T: Adaptable> Adaptable for Box<T> {
    fn linears(&self) -> Vec<(String, &LoraLinear)> {
        (**self).linears()
    }

    fn linears_mut(&mut self) -> Vec<(String, &mut LoraLinear)> {
        (**self).linears_mut()
    }

    fn output_heads(&self) -> Vec<String> {
        (**self).output_heads()
    }

    fn fan_in_fan_out(&self) -> bool {
        (**self).fan_in_fan_out()
    }

    fn biases(&self) -> Vec<(String, &BiasParam)> {
        (**self).biases()
    }

    fn biases_mut(&mut self) -> Vec<(String, &mut BiasParam)> {
        (**self).biases_mut()
    }
}

/// A LayerNorm has no linear layer, but its `beta` is a bias (`<module>.bias`), which PEFT's
/// `bias = "all"` and BitFit train.
impl Adaptable for burn::nn::LayerNorm {
    fn linears(&self) -> Vec<(String, &LoraLinear)> {
        Vec::new()
    }

    fn linears_mut(&mut self) -> Vec<(String, &mut LoraLinear)> {
        Vec::new()
    }

    fn biases(&self) -> Vec<(String, &BiasParam)> {
        self.beta.iter().map(|b| ("bias".to_string(), b)).collect()
    }

    fn biases_mut(&mut self) -> Vec<(String, &mut BiasParam)> {
        self.beta
            .iter_mut()
            .map(|b| ("bias".to_string(), b))
            .collect()
    }
}

/// Types that hold no adaptable linear layer and no bias, so `#[derive(Adaptable)]` structs can
/// contain them without attributes.
macro_rules! no_linears {
    ($($ty:ty),* $(,)?) => {
        $(impl Adaptable for $ty {
            fn linears(&self) -> Vec<(String, &LoraLinear)> {
                Vec::new()
            }

            fn linears_mut(&mut self) -> Vec<(String, &mut LoraLinear)> {
                Vec::new()
            }
        })*
    };
}

no_linears!(
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

#[cfg(test)]
mod tests {
    use super::*;
    use lora_core::LoraLinearConfig;

    #[test]
    fn containers_name_their_items_and_forward_biases() {
        let device = lora_core::select_device(Some("flex")).unwrap();
        let linear = || LoraLinearConfig::new(4, 4).init(&device);
        let mut layers = vec![Some(linear()), None, Some(linear())];
        let names: Vec<String> = layers.linears().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["0", "2"]);
        let biases: Vec<String> = layers.biases_mut().into_iter().map(|(n, _)| n).collect();
        assert_eq!(biases, ["0.bias", "2.bias"]);
        let mut boxed = Box::new(Some(linear()));
        assert_eq!(boxed.biases().len(), 1);
        assert_eq!(boxed.biases_mut().len(), 1);
        let norm = burn::nn::LayerNormConfig::new(4).init(&device);
        assert_eq!(norm.biases()[0].0, "bias");
    }
}
