//! The small traits the trainer needs from a model: [`SequenceClassifier`] (a batch of token
//! sequences → logits) and [`CausalLm`] (token ids → next-token logits), both on top of
//! [`FineTune`] (which parameters a method trains). The built-in families implement them
//! here; a model of your own implements them in a few lines:
//!
//! ```
//! use burn::module::Module;
//! use burn::nn::{Embedding, EmbeddingConfig};
//! use burn::tensor::Tensor;
//! use lora_core::{LoraLinear, LoraLinearConfig};
//! use lora_surgery::Adaptable;
//! use lora_train::{FineTune, SequenceClassifier, TokenBatch};
//!
//! #[derive(Module, Debug, Adaptable)]
//! struct BagOfWords {
//!     embed: Embedding,
//!     proj: LoraLinear,
//!     #[adaptable(output_head)]
//!     classifier: LoraLinear,
//! }
//!
//! impl FineTune for BagOfWords {
//!     fn is_head_param(&self, path: &str) -> bool {
//!         path.starts_with("classifier.")
//!     }
//! }
//!
//! impl SequenceClassifier for BagOfWords {
//!     fn classify(&self, batch: &TokenBatch) -> lora_train::Result<Tensor<2>> {
//!         let mask = batch.attention_mask.clone().float().unsqueeze_dim::<3>(2);
//!         let x = self.embed.forward(batch.input_ids.clone()) * mask.clone();
//!         let mean = x.sum_dim(1).squeeze_dim::<2>(1) / mask.sum_dim(1).squeeze_dim::<2>(1);
//!         Ok(self.classifier.forward(self.proj.forward(mean).tanh()))
//!     }
//!
//!     fn num_labels(&self) -> usize {
//!         self.classifier.out_features()
//!     }
//! }
//!
//! let device = lora_core::select_device(Some("flex"))?;
//! let model = BagOfWords {
//!     embed: EmbeddingConfig::new(100, 16).init(&device),
//!     proj: LoraLinearConfig::new(16, 16).init(&device),
//!     classifier: LoraLinearConfig::new(16, 2).init(&device),
//! };
//! let batch = TokenBatch::from_ids(vec![1, 2, 3, 0], vec![1, 1, 1, 0], vec![0; 4], [1, 4], &device)?;
//! assert_eq!(model.classify(&batch)?.dims(), [1, 2]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::ops::Range;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use lora_core::BottleneckAdapterConfig;
use lora_models::encoder::{EncoderLayer, EncoderPass};
use lora_models::{
    DecoderBatch, DecoderForCausalLM, DecoderPass, EncoderForSequenceClassification, KvCache,
};
use lora_surgery::Adaptable;

pub use lora_models::TokenBatch;

use crate::error::{Result, TrainError};
use crate::layerwise::{LayerStack, backward_by_layers, rows_per_chunk};
use crate::optim::AccumulatedGrads;

/// Logits of a language model per chunk of this many values at most when its loss is
/// backpropagated layer by layer (32 MiB of `f32`).
const LOGITS_PER_CHUNK: usize = 1 << 23;

/// What the fine-tuning methods need to know about a model beyond its adaptable layers.
pub trait FineTune: Module + Adaptable {
    /// Whether the float parameter at Burn module path `path` belongs to a task head that is
    /// new and trains with every method (a classifier's head; nothing for a language model).
    fn is_head_param(&self, path: &str) -> bool {
        let _ = path;
        false
    }

    /// The index of the transformer layer that holds the parameter at `path`, for training
    /// the last layers only (`None`: outside the layers). The default reads the number after
    /// a `layers.` path segment, as Burn names a `Vec` field called `layers`.
    fn layer_of(&self, path: &str) -> Option<usize> {
        let rest = path.split("layers.").nth(1)?;
        rest.split('.').next()?.parse().ok()
    }

    /// How many transformer layers the model has (for training the last layers only).
    fn num_layers(&self) -> usize {
        0
    }

    /// Adds bottleneck adapters (trainable, zero-initialised up-projection) to every layer:
    /// after the attention block and after the feed-forward block (`houlsby`, AdapterH) or after
    /// the feed-forward block only (AdapterL). Models without the slots refuse.
    fn add_bottleneck_adapters(
        &mut self,
        config: &BottleneckAdapterConfig,
        houlsby: bool,
        device: &Device,
    ) -> Result<()> {
        let _ = (config, houlsby, device);
        Err(TrainError::Config(
            "this model has no places for bottleneck adapters (AdapterH / AdapterL)".into(),
        ))
    }
}

/// A sequence classifier: what [`ClassificationTask`](crate::ClassificationTask) trains.
pub trait SequenceClassifier: FineTune {
    /// Logits `[batch, num_labels]`.
    fn classify(&self, batch: &TokenBatch) -> Result<Tensor<2>>;

    /// Number of labels.
    fn num_labels(&self) -> usize;

    /// Backpropagates `weight ×` the loss of `batch` layer by layer, recomputing each layer's
    /// activations instead of keeping them (see [`layerwise`](crate::layerwise)), into `grads`,
    /// and returns the loss. `loss` maps the logits of a range of batch rows to their part of
    /// the batch's loss. `Ok(None)`: this model cannot run layer by layer (the default).
    fn classify_backward_by_layers(
        &self,
        batch: &TokenBatch,
        weight: f64,
        loss: &mut dyn FnMut(Tensor<2>, Range<usize>) -> Result<Tensor<1>>,
        grads: &mut AccumulatedGrads,
    ) -> Result<Option<f64>> {
        let _ = (batch, weight, loss, grads);
        Ok(None)
    }
}

/// A causal language model: what [`CausalLmTask`](crate::CausalLmTask) and
/// [`SftTask`](crate::SftTask) train.
pub trait CausalLm: FineTune {
    /// Logits `[batch, seq, vocab]`, position `t` predicting token `t + 1`.
    fn lm_logits(&self, batch: &DecoderBatch) -> Result<Tensor<3>>;

    /// The logits of the flattened positions `positions` (`row · seq + t`), `[n, vocab]`: the
    /// only ones a completion-only loss needs. The default computes every position's logits
    /// and picks; a model can apply its output head to the picked hidden states only.
    fn lm_logits_at(&self, batch: &DecoderBatch, positions: &[usize]) -> Result<Tensor<2>> {
        let logits = self.lm_logits(batch)?;
        let [b, s, v] = logits.dims();
        Ok(logits
            .reshape([b * s, v])
            .select(0, index_tensor(positions, &batch.input_ids.device())))
    }

    /// Backpropagates `weight ×` the loss of `batch` layer by layer, recomputing each layer's
    /// activations instead of keeping them (see [`layerwise`](crate::layerwise)), into `grads`,
    /// and returns the loss. `loss` maps the logits `[rows, seq, vocab]` of a range of batch
    /// rows to their part of the batch's loss; it is called for a few rows at a time, so that
    /// the whole batch's logits never exist at once. `Ok(None)`: this model cannot run layer by
    /// layer (the default).
    fn lm_backward_by_layers(
        &self,
        batch: &DecoderBatch,
        weight: f64,
        loss: &mut dyn FnMut(Tensor<3>, Range<usize>) -> Result<Tensor<1>>,
        grads: &mut AccumulatedGrads,
    ) -> Result<Option<f64>> {
        let _ = (batch, weight, loss, grads);
        Ok(None)
    }
}

/// `[n]` indices on `device`.
fn index_tensor(positions: &[usize], device: &Device) -> Tensor<1, burn::tensor::Int> {
    let data: Vec<i64> = positions.iter().map(|&p| p as i64).collect();
    Tensor::from_data(
        burn::tensor::TensorData::new(data, [positions.len()]),
        device,
    )
}

impl FineTune for EncoderForSequenceClassification {
    fn is_head_param(&self, path: &str) -> bool {
        path.starts_with("classifier.") || path.starts_with("head_dense.")
    }

    fn num_layers(&self) -> usize {
        self.encoder.layers.len()
    }

    fn add_bottleneck_adapters(
        &mut self,
        config: &BottleneckAdapterConfig,
        houlsby: bool,
        device: &Device,
    ) -> Result<()> {
        for layer in &mut self.encoder.layers {
            if houlsby {
                layer.attention_adapter = Some(config.init(device)?);
            }
            layer.ffn_adapter = Some(config.init(device)?);
        }
        Ok(())
    }
}

impl SequenceClassifier for EncoderForSequenceClassification {
    fn classify(&self, batch: &TokenBatch) -> Result<Tensor<2>> {
        Ok(self.forward(batch)?)
    }

    fn num_labels(&self) -> usize {
        EncoderForSequenceClassification::num_labels(self)
    }

    fn classify_backward_by_layers(
        &self,
        batch: &TokenBatch,
        weight: f64,
        loss: &mut dyn FnMut(Tensor<2>, Range<usize>) -> Result<Tensor<1>>,
        grads: &mut AccumulatedGrads,
    ) -> Result<Option<f64>> {
        let rows = batch.input_ids.dims()[0];
        let mut head = |hidden: Tensor<3>, range: Range<usize>| loss(self.head(hidden)?, range);
        backward_by_layers(self, batch, weight, rows, &mut head, grads).map(Some)
    }
}

impl LayerStack for EncoderForSequenceClassification {
    type Input = TokenBatch;
    type Pass = EncoderPass;
    type Layer = EncoderLayer;

    fn begin(&self, input: &TokenBatch) -> Result<(Tensor<3>, Self::Pass)> {
        let pass = self.encoder.pass(input, true)?;
        Ok((pass.packed(self.encoder.embed(input)), pass))
    }

    fn layers(&self) -> &[EncoderLayer] {
        &self.encoder.layers
    }

    fn layer_forward(
        &self,
        _index: usize,
        layer: &EncoderLayer,
        x: Tensor<3>,
        pass: &Self::Pass,
    ) -> Tensor<3> {
        self.encoder.layer_forward(layer, x, pass)
    }

    fn head_input(&self, x: Tensor<3>, pass: &EncoderPass) -> Tensor<3> {
        pass.padded(x)
    }
}

impl FineTune for DecoderForCausalLM {
    fn num_layers(&self) -> usize {
        self.layers.len()
    }

    fn add_bottleneck_adapters(
        &mut self,
        config: &BottleneckAdapterConfig,
        houlsby: bool,
        device: &Device,
    ) -> Result<()> {
        for layer in &mut self.layers {
            if houlsby {
                layer.attention_adapter = Some(config.init(device)?);
            }
            layer.ffn_adapter = Some(config.init(device)?);
        }
        Ok(())
    }
}

impl CausalLm for DecoderForCausalLM {
    fn lm_logits(&self, batch: &DecoderBatch) -> Result<Tensor<3>> {
        Ok(self.forward_batch(batch)?)
    }

    fn lm_logits_at(&self, batch: &DecoderBatch, positions: &[usize]) -> Result<Tensor<2>> {
        let hidden = self.hidden_states(batch, &mut KvCache::new())?;
        let [b, s, d] = hidden.dims();
        let picked = hidden
            .reshape([b * s, d])
            .select(0, index_tensor(positions, &batch.input_ids.device()));
        let n = positions.len();
        let logits = self.logits(picked.reshape([1, n, d]));
        Ok(logits.reshape([n, self.config().vocab_size]))
    }

    fn lm_backward_by_layers(
        &self,
        batch: &DecoderBatch,
        weight: f64,
        loss: &mut dyn FnMut(Tensor<3>, Range<usize>) -> Result<Tensor<1>>,
        grads: &mut AccumulatedGrads,
    ) -> Result<Option<f64>> {
        let seq = batch.input_ids.dims()[1];
        let chunk = rows_per_chunk(seq, self.config().vocab_size, LOGITS_PER_CHUNK);
        let mut head = |last: Tensor<3>, range: Range<usize>| {
            loss(self.logits(self.norm.forward(last)), range)
        };
        backward_by_layers(self, batch, weight, chunk, &mut head, grads).map(Some)
    }
}

impl LayerStack for DecoderForCausalLM {
    type Input = DecoderBatch;
    type Pass = DecoderPass;
    type Layer = lora_models::decoder::DecoderLayer;

    fn begin(&self, input: &DecoderBatch) -> Result<(Tensor<3>, DecoderPass)> {
        let pass = DecoderPass::new(self.config(), input, 0)?;
        Ok((self.embed(input, &pass), pass))
    }

    fn layers(&self) -> &[Self::Layer] {
        &self.layers
    }

    fn layer_forward(
        &self,
        index: usize,
        layer: &Self::Layer,
        x: Tensor<3>,
        pass: &DecoderPass,
    ) -> Tensor<3> {
        DecoderForCausalLM::layer_forward(self, index, layer, x, pass, &mut None)
    }
}

/// Uploads a tokenized batch (`lora-data`'s host-side [`EncodedBatch`](lora_data::EncodedBatch))
/// as a [`TokenBatch`].
pub fn token_batch(batch: &lora_data::EncodedBatch, device: &Device) -> Result<TokenBatch> {
    Ok(TokenBatch::from_ids(
        batch.input_ids.clone(),
        batch.attention_mask.clone(),
        batch.token_type_ids.clone(),
        [batch.batch, batch.seq],
        device,
    )?)
}
