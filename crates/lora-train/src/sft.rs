//! Supervised fine-tuning of a causal LM on prompts and completions or conversations (TRL's
//! `SFTTrainer`): the loss is the mean next-token cross-entropy over the labelled positions
//! only (completion-only or assistant-only, `-100` elsewhere), batches are padded per batch,
//! and rows may pack several examples whose attention never crosses an example boundary.

use std::marker::PhantomData;
use std::ops::Range;

use burn::tensor::{Device, Int, Tensor, TensorData};
use lora_data::sft::{SftBatch, SftEncoded, collate_rows, pack_rows};
use lora_models::{DecoderBatch, DecoderForCausalLM};
use lora_surgery::TaskType;

use crate::error::{Result, TrainError};
use crate::metrics::perplexity;
use crate::model::CausalLm;
use crate::optim::AccumulatedGrads;
use crate::task::{
    BatchLoss, BatchStats, EvalMetrics, TrainTask, backward_one_graph, model_device, nll_per_row,
    not_layerwise,
};

/// Supervised fine-tuning data for a [`CausalLm`] (by default a built-in decoder).
pub struct SftTask<M = DecoderForCausalLM> {
    train: Vec<SftEncoded>,
    dev: Vec<SftEncoded>,
    rows: Vec<Vec<usize>>,
    pad_id: u32,
    model: PhantomData<fn() -> M>,
}

impl<M: CausalLm> SftTask<M> {
    /// A task over encoded examples (see `lora_data::sft::SftEncoder`). With `pack_to`, the
    /// training examples are packed into rows of at most that many tokens, deterministically;
    /// without, every row is one example.
    pub fn new(
        train: Vec<SftEncoded>,
        dev: Vec<SftEncoded>,
        pad_id: u32,
        pack_to: Option<usize>,
    ) -> Result<Self> {
        let unlabelled = |set: &[SftEncoded]| set.iter().all(|e| e.label_count() == 0);
        if train.is_empty() || dev.is_empty() || unlabelled(&train) || unlabelled(&dev) {
            return Err(TrainError::Config(format!(
                "supervised fine-tuning needs training and dev examples with labelled tokens (has \
                 {} and {})",
                train.len(),
                dev.len()
            )));
        }
        let lengths: Vec<usize> = train.iter().map(SftEncoded::len).collect();
        let rows = match pack_to {
            Some(max_len) => pack_rows(&lengths, max_len)?,
            None => (0..train.len()).map(|i| vec![i]).collect(),
        };
        Ok(Self {
            train,
            dev,
            rows,
            pad_id,
            model: PhantomData,
        })
    }

    /// Number of training rows (examples, or packed rows).
    pub fn train_rows(&self) -> usize {
        self.rows.len()
    }
}

/// The decoder input of a host batch: padding, and positions and segments when rows are packed.
pub fn decoder_batch(batch: &SftBatch, device: &Device) -> DecoderBatch {
    let shape = [batch.batch, batch.seq];
    let ids = Tensor::<2, Int>::from_data(TensorData::new(batch.input_ids.clone(), shape), device);
    let rows =
        |v: &[i64]| -> Vec<Vec<i64>> { v.chunks(batch.seq.max(1)).map(<[i64]>::to_vec).collect() };
    let key_padding = if batch.attention_mask.contains(&0) {
        rows(&batch.attention_mask)
            .into_iter()
            .map(|r| r.into_iter().map(|m| m != 0).collect())
            .collect()
    } else {
        Vec::new()
    };
    let packed = batch.is_packed();
    DecoderBatch {
        input_ids: ids,
        key_padding,
        positions: if packed {
            batch.position_ids.iter().map(|&p| p as usize).collect()
        } else {
            Vec::new()
        },
        segments: if packed {
            rows(&batch.segment_ids)
                .into_iter()
                .map(|r| r.into_iter().map(|s| s as u32).collect())
                .collect()
        } else {
            Vec::new()
        },
    }
}

/// The negative log-likelihood of every labelled next token of `batch` (position `t` predicting
/// label `t + 1`), one value per labelled position, in row-major order. TRL's loss is their
/// mean.
pub fn labelled_nll<M: CausalLm>(
    model: &M,
    batch: &SftBatch,
    device: &Device,
) -> Result<Tensor<1>> {
    let (positions, targets) = labelled_positions(batch)?;
    let logits = model.lm_logits_at(&decoder_batch(batch, device), &positions)?;
    let n = targets.len();
    let targets = Tensor::<1, Int>::from_data(TensorData::new(targets, [n]), device);
    Ok(nll_per_row(logits, targets))
}

/// Backpropagates `weight ×` TRL's loss of `batch` (the mean of [`labelled_nll`]) into `grads`
/// and returns the loss: through one graph, or with `recompute` layer by layer
/// ([`crate::layerwise`]), the logits of a few rows at a time.
pub fn sft_backward<M: CausalLm>(
    model: &M,
    batch: &SftBatch,
    weight: f64,
    recompute: bool,
    grads: &mut AccumulatedGrads,
) -> Result<f64> {
    let device = model_device(model)?;
    if !recompute {
        let loss = labelled_nll(model, batch, &device)?.mean();
        return Ok(backward_one_graph(model, loss, weight, grads));
    }
    let (positions, targets) = labelled_positions(batch)?;
    let (seq, count) = (batch.seq, targets.len() as f64);
    let mut loss = |logits: Tensor<3>, rows: Range<usize>| {
        let [k, s, vocab] = logits.dims();
        let rows_positions = (rows.start * seq)..(rows.end * seq);
        let (local, picked): (Vec<i64>, Vec<i64>) = positions
            .iter()
            .zip(&targets)
            .filter(|(p, _)| rows_positions.contains(p))
            .map(|(&p, &t)| ((p - rows_positions.start) as i64, t))
            .unzip();
        let logits = logits.reshape([k * s, vocab]);
        if local.is_empty() {
            // No labelled token in these rows: a zero that still reaches their inputs.
            return Ok(logits.sum().mul_scalar(0.0));
        }
        let n = local.len();
        let device = logits.device();
        let local = Tensor::<1, Int>::from_data(TensorData::new(local, [n]), &device);
        let picked = Tensor::<1, Int>::from_data(TensorData::new(picked, [n]), &device);
        Ok(nll_per_row(logits.select(0, local), picked)
            .sum()
            .div_scalar(count))
    };
    model
        .lm_backward_by_layers(&decoder_batch(batch, &device), weight, &mut loss, grads)?
        .ok_or_else(|| not_layerwise("language model", "CausalLm::lm_backward_by_layers"))
}

/// The flattened positions (`row · seq + t`) whose next token is labelled, and those labels.
fn labelled_positions(batch: &SftBatch) -> Result<(Vec<usize>, Vec<i64>)> {
    let (rows, seq) = (batch.batch, batch.seq);
    let mut positions = Vec::new();
    let mut targets = Vec::new();
    for r in 0..rows {
        for t in 0..seq.saturating_sub(1) {
            let label = batch.labels[r * seq + t + 1];
            if label != lora_data::sft::IGNORE_INDEX {
                positions.push(r * seq + t);
                targets.push(label);
            }
        }
    }
    if positions.is_empty() {
        return Err(TrainError::Config(
            "a batch has no labelled token (every label is -100)".into(),
        ));
    }
    Ok((positions, targets))
}

impl<M: CausalLm> TrainTask for SftTask<M> {
    type Model = M;

    fn peft_task_type(&self) -> TaskType {
        TaskType::CausalLm
    }

    fn default_metric(&self) -> &'static str {
        "perplexity"
    }

    fn train_lengths(&self) -> Vec<usize> {
        self.rows
            .iter()
            .map(|row| row.iter().map(|&i| self.train[i].len()).sum())
            .collect()
    }

    fn loss(&self, model: &Self::Model, indices: &[usize]) -> Result<BatchLoss> {
        let device = model_device(model)?;
        let rows: Vec<Vec<usize>> = indices.iter().map(|&i| self.rows[i].clone()).collect();
        let batch = collate_rows(&self.train, &rows, self.pad_id);
        let nll = labelled_nll(model, &batch, &device)?;
        Ok(BatchLoss {
            loss: nll.mean(),
            tokens: batch.tokens(),
        })
    }

    fn backward(
        &self,
        model: &Self::Model,
        indices: &[usize],
        weight: f64,
        recompute: bool,
        grads: &mut AccumulatedGrads,
    ) -> Result<BatchStats> {
        let rows: Vec<Vec<usize>> = indices.iter().map(|&i| self.rows[i].clone()).collect();
        let batch = collate_rows(&self.train, &rows, self.pad_id);
        Ok(BatchStats {
            loss: sft_backward(model, &batch, weight, recompute, grads)?,
            tokens: batch.tokens(),
        })
    }

    fn evaluate(&self, model: &Self::Model, batch_size: usize) -> Result<EvalMetrics> {
        let device = model_device(model)?;
        let (mut nll_sum, mut tokens) = (0.0, 0);
        let indices: Vec<usize> = (0..self.dev.len()).collect();
        for chunk in indices.chunks(batch_size.max(1)) {
            let rows: Vec<Vec<usize>> = chunk.iter().map(|&i| vec![i]).collect();
            let batch = collate_rows(&self.dev, &rows, self.pad_id);
            if batch.label_count() == 0 {
                continue;
            }
            let nll = labelled_nll(model, &batch, &device)?;
            tokens += nll.dims()[0];
            nll_sum += nll.sum().into_scalar::<f32>() as f64;
        }
        Ok(EvalMetrics {
            loss: nll_sum / tokens.max(1) as f64,
            examples: self.dev.len(),
            classification: None,
            perplexity: Some(perplexity(nll_sum, tokens)),
        })
    }
}
