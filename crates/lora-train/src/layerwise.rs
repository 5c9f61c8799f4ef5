//! Layer-wise activation recomputation (`--checkpoint-activations`): the backward pass of a
//! model that is a stack of layers, keeping only each layer's input instead of every activation.
//!
//! 1. A forward pass without a graph (trainable parameters detached) keeps the input of every
//!    layer and the output of the last: `L + 1` tensors of `[batch, seq, hidden]` (or of the
//!    layers' own layout: an encoder's packed real tokens, [`LayerStack::head_input`]).
//! 2. The head and the loss run on the last output in chunks of batch rows, each with its own
//!    small graph and backward pass, so the `[rows, seq, vocab]` logits of a language model exist
//!    for a few rows at a time; the gradients of the chunks' inputs are put back together.
//! 3. From the last layer to the first: the layer runs again from its kept input, this time with
//!    a graph, and a backward pass from `Σ y ⊙ g` (`g` the gradient of its output) gives the
//!    gradients of its parameters and of its input, which is the next `g`.
//! 4. The embeddings' graph, kept from step 1 (an embedding keeps only its indices), takes the
//!    last `g` when they train.
//!
//! Peak memory then holds one layer's activations and one chunk's logits, not all of them; the
//! cost is a second forward pass through the layers. Dropout draws the same masks in both passes
//! of a layer: the device's generator is seeded per layer from one value drawn per batch
//! ([`pass_seed`], [`seed_layer`]). Gradients equal those of one graph over the whole model
//! seeded the same way (`tests/tests/base_dtype.rs` checks them with dropout on); a head with
//! dropout of its own (a classifier's) draws its mask per chunk of rows.

use std::ops::Range;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Distribution, Tensor};

use crate::error::{Result, TrainError};
use crate::optim::AccumulatedGrads;
use crate::task::model_device;

/// A model whose forward pass is embeddings, a stack of layers that map `[batch, seq, hidden]`
/// to the same shape, and a head: what [`backward_by_layers`] needs to recompute it one layer at
/// a time. The built-in encoders and decoders implement it.
pub trait LayerStack: Module {
    /// What a forward pass reads (a batch of token ids).
    type Input;
    /// What every layer of one pass reads besides its input (masks, position tables).
    type Pass;
    /// One layer.
    type Layer: Module;

    /// The hidden states entering the first layer (on the model's device, with a graph where
    /// the embeddings train) and the pass state.
    fn begin(&self, input: &Self::Input) -> Result<(Tensor<3>, Self::Pass)>;

    /// The layers, in order.
    fn layers(&self) -> &[Self::Layer];

    /// Runs `layer` (the model's layer `index`, or a copy of it) on `x`.
    fn layer_forward(
        &self,
        index: usize,
        layer: &Self::Layer,
        x: Tensor<3>,
        pass: &Self::Pass,
    ) -> Tensor<3>;

    /// The last layer's output as the head reads it, `[batch, seq, hidden]`: a model whose
    /// layers run on another layout (an encoder's packed real tokens) converts it here. The
    /// default returns it unchanged.
    fn head_input(&self, x: Tensor<3>, pass: &Self::Pass) -> Tensor<3> {
        let _ = pass;
        x
    }
}

/// The loss of the rows `rows` of a batch from the last layer's output for those rows (the head
/// is the caller's): its parts over all chunks of rows must add up to the batch's loss.
pub type ChunkLoss<'a> = dyn FnMut(Tensor<3>, Range<usize>) -> Result<Tensor<1>> + 'a;

/// Backpropagates `weight ×` the loss of `input` through `model` layer by layer (see the module
/// documentation), adding every parameter's gradient to `grads`, and returns the loss (without
/// the weight). `loss` computes the head and the loss of `rows_per_chunk` batch rows at a time.
pub fn backward_by_layers<S: LayerStack>(
    model: &S,
    input: &S::Input,
    weight: f64,
    rows_per_chunk: usize,
    loss: &mut ChunkLoss<'_>,
    grads: &mut AccumulatedGrads,
) -> Result<f64> {
    let device = model_device(model)?;
    if !device.is_autodiff() {
        return Err(TrainError::Config(
            "layer-wise recomputation runs on a training (autodiff) device".into(),
        ));
    }
    let seed = pass_seed(&device);
    let (embedded, pass) = model.begin(input)?;
    let layers = model.layers();
    let mut kept = Vec::with_capacity(layers.len() + 1);
    kept.push(embedded.clone().detach());
    for (i, layer) in layers.iter().enumerate() {
        seed_layer(&device, seed, i);
        let frozen = detach_trainable(layer.clone());
        let x = kept[i].clone();
        kept.push(model.layer_forward(i, &frozen, x, &pass).detach());
    }

    let output = kept.pop().expect("the output of the last layer");
    let last = model.head_input(output.clone(), &pass);
    let [rows, seq, hidden] = last.dims();
    let mut total = 0.0;
    let mut upstream = Vec::new();
    let chunk = rows_per_chunk.max(1);
    for start in (0..rows).step_by(chunk) {
        let end = (start + chunk).min(rows);
        let leaf = last
            .clone()
            .slice([start..end, 0..seq, 0..hidden])
            .require_grad();
        let part = loss(leaf.clone(), start..end)?;
        total += part.clone().into_scalar::<f32>() as f64;
        let mut chunk_grads = part.mul_scalar(weight).backward();
        upstream.push(input_grad(&leaf, &mut chunk_grads, rows)?);
        grads.add(model, chunk_grads);
    }
    // The gradient of the last layer's output: through `head_input` (a layout change) by its
    // own small graph.
    let mut g = {
        let leaf = output.require_grad();
        let y = model.head_input(leaf.clone(), &pass);
        let mut head_input_grads = (y * Tensor::cat(upstream, 0)).sum().backward();
        input_grad(&leaf, &mut head_input_grads, rows)?
    };

    for (i, layer) in layers.iter().enumerate().rev() {
        let leaf = kept.pop().expect("one kept input per layer").require_grad();
        seed_layer(&device, seed, i);
        let y = model.layer_forward(i, layer, leaf.clone(), &pass);
        let mut layer_grads = (y * g).sum().backward();
        g = input_grad(&leaf, &mut layer_grads, rows)?;
        grads.add(model, layer_grads);
    }
    if embedded.is_tracked() {
        grads.add(model, (embedded * g).sum().backward());
    }
    Ok(total)
}

/// How many batch rows of `seq` positions make a chunk of at most about `budget` logits
/// (`vocab` per position), at least one.
pub fn rows_per_chunk(seq: usize, vocab: usize, budget: usize) -> usize {
    (budget / (seq * vocab).max(1)).max(1)
}

/// The gradient that reached `leaf`, as a constant on its device.
fn input_grad(
    leaf: &Tensor<3>,
    grads: &mut burn::tensor::Gradients,
    rows: usize,
) -> Result<Tensor<3>> {
    let g = leaf.grad_remove(grads).ok_or_else(|| {
        TrainError::Config(format!(
            "no gradient reached a layer's input (batch of {rows} rows): the layers do not \
             depend on their input"
        ))
    })?;
    Ok(Tensor::from_inner(g))
}

/// The seed of one pass, drawn from `device`'s generator (which the trainer seeds per step).
/// [`backward_by_layers`] calls [`seed_layer`] before running layer `i`, in both of its passes;
/// a one-graph pass seeded the same way draws the same dropout masks.
pub fn pass_seed(device: &burn::tensor::Device) -> u64 {
    let draw = Tensor::<1>::random([2], Distribution::Uniform(0.0, 65536.0), device)
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap_or_default();
    draw.iter().fold(0u64, |acc, &v| (acc << 16) | v as u64)
}

/// Seeds `device`'s generator for layer `layer` of a pass seeded `seed`, after flushing the
/// operations the device has queued, so that on a backend that queues work the new seed
/// applies only to what is recorded after it.
pub fn seed_layer(device: &burn::tensor::Device, seed: u64, layer: usize) {
    // A failed flush surfaces at the next read of a result.
    let _ = device.flush();
    device.seed(lora_data::rng::SeededRng::derive(seed, layer as u64));
}

/// `module` with its trainable parameters detached: running it records no graph. Frozen
/// parameters are left as they are (detaching a quantized base would expand it).
pub fn detach_trainable<M: Module>(module: M) -> M {
    module.map(&mut DetachTrainable)
}

struct DetachTrainable;

impl ModuleMapper for DetachTrainable {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let tensor = if tensor.is_require_grad() {
            tensor.set_require_grad(false)
        } else {
            tensor
        };
        Param::from_mapped_value(id, tensor, mapper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_hold_at_most_the_budget_and_at_least_one_row() {
        // SmolLM2's 49,152 logits over 128 positions: one row (6.3 M values) per 8 M budget.
        assert_eq!(rows_per_chunk(128, 49_152, 1 << 23), 1);
        assert_eq!(rows_per_chunk(128, 49_152, 1 << 25), 5);
        assert_eq!(rows_per_chunk(16, 100, 16_000), 10);
        // A budget smaller than one row still makes progress.
        assert_eq!(rows_per_chunk(128, 49_152, 0), 1);
        assert_eq!(rows_per_chunk(0, 0, 10), 10);
    }
}
