//! Several named adapters on one model: activate, deactivate, disable all within a scope,
//! delete, train one while the others stay frozen, merge with a measured numeric cost, and
//! `merge_and_unload` / `unload` back to a plain model.

use burn::tensor::Tensor;
use lora_core::LoraError;

use crate::adaptable::Adaptable;
use crate::error::{Result, SurgeryError};

/// The names of every adapter anywhere in the model, in first-seen order.
pub fn adapter_names<M: Adaptable + ?Sized>(model: &M) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (_, linear) in model.linears() {
        for name in linear
            .adapter_names()
            .into_iter()
            .chain(linear.saved_copy_names())
        {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

fn unknown<M: Adaptable + ?Sized>(model: &M, name: &str) -> LoraError {
    LoraError::UnknownAdapter {
        name: name.to_string(),
        known: adapter_names(model),
    }
}

/// Makes exactly the named adapters active in every layer that holds them (others in those
/// layers become inactive). Every name must exist somewhere in the model.
pub fn set_active_adapters<M: Adaptable + ?Sized>(model: &mut M, names: &[&str]) -> Result<()> {
    let known = adapter_names(model);
    if let Some(missing) = names.iter().find(|n| !known.iter().any(|k| k == *n)) {
        return Err(unknown(model, missing).into());
    }
    for (_, linear) in model.linears_mut() {
        let mut held = linear.adapter_names();
        held.extend(linear.saved_copy_names());
        let here: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| held.iter().any(|h| h == n))
            .collect();
        linear.set_active_adapters(&here)?;
    }
    Ok(())
}

/// Makes the named adapter's factors trainable or frozen everywhere, leaving other adapters as
/// they are: train one adapter while the others stay frozen.
pub fn set_adapter_trainable<M: Adaptable + ?Sized>(
    model: &mut M,
    name: &str,
    trainable: bool,
) -> Result<()> {
    let mut found = false;
    for (_, linear) in model.linears_mut() {
        if linear.adapter(name).is_ok() {
            linear.set_adapter_trainable(name, trainable)?;
            found = true;
        }
    }
    if !found {
        return Err(unknown(model, name).into());
    }
    Ok(())
}

/// Removes the named adapter from every layer (it must not be merged).
pub fn delete_adapter<M: Adaptable + ?Sized>(model: &mut M, name: &str) -> Result<()> {
    let mut found = false;
    for (_, linear) in model.linears_mut() {
        if linear.adapter(name).is_ok() {
            linear.delete_adapter(name)?;
            found = true;
        }
        found |= linear.delete_saved_copy(name);
    }
    if !found {
        return Err(unknown(model, name).into());
    }
    Ok(())
}

/// Runs `f` with every adapter bypassed (PEFT's `with model.disable_adapter():`), restoring
/// the previous state afterwards, also when `f` fails. Merged adapters must be unmerged first.
pub fn with_adapters_disabled<M: Adaptable, T>(
    model: &mut M,
    f: impl FnOnce(&mut M) -> T,
) -> Result<T> {
    let mut previous = Vec::new();
    for (_, linear) in model.linears_mut() {
        previous.push(linear.is_disabled());
    }
    for (_, linear) in model.linears_mut() {
        if let Err(e) = linear.set_disabled(true) {
            for ((_, linear), was) in model.linears_mut().into_iter().zip(&previous) {
                let _ = linear.set_disabled(*was);
            }
            return Err(e.into());
        }
    }
    let out = f(model);
    for ((_, linear), was) in model.linears_mut().into_iter().zip(&previous) {
        linear.set_disabled(*was)?;
    }
    Ok(out)
}

/// Merges every active adapter into its base weight, and returns the largest absolute
/// difference between the model's output before and after on a probe batch (`probe` runs the
/// model), so the numeric cost of merging is visible.
pub fn merge_adapters<M: Adaptable, const D: usize>(
    model: &mut M,
    probe: impl Fn(&M) -> Tensor<D>,
) -> Result<f32> {
    let before = probe(model);
    for (_, linear) in model.linears_mut() {
        linear.merge_all()?;
    }
    let after = probe(model);
    Ok(lora_core::testing::max_abs_diff(before, after))
}

/// Merges the active adapters and removes every adapter: the model becomes a plain model whose
/// forward equals the adapted one (PEFT's `merge_and_unload`).
pub fn merge_and_unload<M: Adaptable + ?Sized>(model: &mut M) -> Result<()> {
    for (module, linear) in model.linears_mut() {
        if !linear.is_disabled() {
            linear.merge_all().map_err(|e| match e {
                lora_core::LoraError::NonFiniteMerge { .. } => SurgeryError::Config {
                    path: module.clone().into(),
                    reason: format!("{e}; nothing was merged into the module's weight"),
                },
                other => other.into(),
            })?;
        }
        linear.set_disabled(false)?;
        linear.discard_adapters();
    }
    Ok(())
}

/// Unmerges and removes every adapter: the model returns to its base weights (PEFT's `unload`).
pub fn unload<M: Adaptable + ?Sized>(model: &mut M) -> Result<()> {
    for (_, linear) in model.linears_mut() {
        linear.unmerge_all()?;
        linear.set_disabled(false)?;
        for name in linear.adapter_names() {
            linear.delete_adapter(&name)?;
        }
        linear.saved_copies.clear();
    }
    Ok(())
}
