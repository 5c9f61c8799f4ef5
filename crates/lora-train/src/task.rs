//! What is being learned: the loss of a batch and the evaluation on held-out data, for sequence
//! classification ([`ClassificationTask`]) and causal language modelling ([`CausalLmTask`]).

use std::marker::PhantomData;
use std::ops::Range;

use burn::module::Module;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use lora_data::batching::{batch_order, collate, token_blocks, tokenize_examples};
use lora_data::{TaskSplits, TokenizedExample};
use lora_models::{DecoderBatch, DecoderForCausalLM, EncoderForSequenceClassification};
use lora_surgery::{Adaptable, TaskType};
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::error::{Result, TrainError};
use crate::metrics::{ClassificationMetrics, ConfusionMatrix, perplexity};
use crate::model::{CausalLm, SequenceClassifier, TokenBatch, token_batch};
use crate::optim::AccumulatedGrads;

/// The loss of one batch, with what it covered.
pub struct BatchLoss {
    /// Mean loss over the batch (a scalar on the model's device).
    pub loss: Tensor<1>,
    /// Real tokens in the batch.
    pub tokens: usize,
}

/// What one micro-batch's backward pass covered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchStats {
    /// Mean loss over the batch (without the weight it was backpropagated with).
    pub loss: f64,
    /// Real tokens in the batch.
    pub tokens: usize,
}

impl BatchLoss {
    /// Backpropagates `weight ×` this loss through one graph over `model` into `grads`.
    pub fn backward<M: Module>(
        self,
        model: &M,
        weight: f64,
        grads: &mut AccumulatedGrads,
    ) -> BatchStats {
        BatchStats {
            loss: backward_one_graph(model, self.loss, weight, grads),
            tokens: self.tokens,
        }
    }
}

/// Backpropagates `weight × loss` (a scalar) through its one graph over `model` into `grads`,
/// and returns the loss's value (without the weight).
pub fn backward_one_graph<M: Module>(
    model: &M,
    loss: Tensor<1>,
    weight: f64,
    grads: &mut AccumulatedGrads,
) -> f64 {
    let value = loss.clone().into_scalar::<f32>() as f64;
    grads.add(model, loss.mul_scalar(weight).backward());
    value
}

/// Held-out metrics of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    /// Mean loss per example (classification) or per predicted token (causal LM).
    pub loss: f64,
    /// Examples evaluated.
    pub examples: usize,
    /// Accuracy, precision, recall, F1, MCC and the confusion matrix, for classifiers.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub classification: Option<ClassificationMetrics>,
    /// Perplexity, for language models.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub perplexity: Option<f64>,
}

/// The metric names [`EvalMetrics::get`] knows.
pub const METRIC_NAMES: [&str; 9] = [
    "loss",
    "accuracy",
    "precision",
    "recall",
    "f1",
    "macro_f1",
    "weighted_f1",
    "mcc",
    "perplexity",
];

impl EvalMetrics {
    /// The value of metric `name` (see [`METRIC_NAMES`]), if this evaluation has it.
    pub fn get(&self, name: &str) -> Option<f64> {
        let c = self.classification.as_ref();
        match name {
            "loss" => Some(self.loss),
            "perplexity" => self.perplexity,
            "accuracy" => c.map(|c| c.accuracy),
            "precision" => c.map(|c| c.precision),
            "recall" => c.map(|c| c.recall),
            "f1" => c.map(|c| c.f1),
            "macro_f1" => c.map(|c| c.macro_f1),
            "weighted_f1" => c.map(|c| c.weighted_f1),
            "mcc" => c.map(|c| c.mcc),
            _ => None,
        }
    }

    /// Whether a larger value of metric `name` is better.
    pub fn higher_is_better(name: &str) -> bool {
        !matches!(name, "loss" | "perplexity")
    }
}

/// A training objective the [`Trainer`](crate::Trainer) can optimise.
pub trait TrainTask {
    /// The model it trains.
    type Model: Module + Adaptable;

    /// PEFT's `task_type` of what is trained.
    fn peft_task_type(&self) -> TaskType;

    /// The metric that picks the best checkpoint by default.
    fn default_metric(&self) -> &'static str;

    /// Token length of every training example (for length bucketing).
    fn train_lengths(&self) -> Vec<usize>;

    /// The mean loss over the training examples at `indices`, on the model's device.
    fn loss(&self, model: &Self::Model, indices: &[usize]) -> Result<BatchLoss>;

    /// Backpropagates `weight ×` the mean loss over the training examples at `indices` into
    /// `grads`. With `recompute` (`TrainConfig::checkpoint_activations`), layer by layer,
    /// recomputing each layer's activations instead of keeping them ([`crate::layerwise`]).
    /// The default runs [`loss`](Self::loss) through one graph and refuses `recompute`.
    fn backward(
        &self,
        model: &Self::Model,
        indices: &[usize],
        weight: f64,
        recompute: bool,
        grads: &mut AccumulatedGrads,
    ) -> Result<BatchStats> {
        if recompute {
            return Err(TrainError::Config(
                "this task cannot recompute activations layer by layer \
                 (--checkpoint-activations); train without it"
                    .into(),
            ));
        }
        Ok(self.loss(model, indices)?.backward(model, weight, grads))
    }

    /// Metrics on the held-out (dev) data, for a model in evaluation mode.
    fn evaluate(&self, model: &Self::Model, batch_size: usize) -> Result<EvalMetrics>;
}

/// The device holding the model's parameters.
pub fn model_device<M: Module>(model: &M) -> Result<Device> {
    model
        .devices()
        .into_iter()
        .next()
        .ok_or_else(|| TrainError::Config("the model has no parameters".into()))
}

/// The error for a model that cannot run layer by layer when `--checkpoint-activations` asks
/// for it.
pub(crate) fn not_layerwise(kind: &str, method: &str) -> TrainError {
    TrainError::Config(format!(
        "--checkpoint-activations recomputes activations one layer at a time, which this {kind} \
         cannot do (the built-in encoders and decoders can; a model of your own implements \
         `{method}`); train without it"
    ))
}

/// Negative log-likelihood of `targets` under `logits` (`[n, classes]`), one value per row.
pub fn nll_per_row(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    let n = targets.dims()[0];
    log_softmax(logits, 1)
        .gather(1, targets.reshape([n, 1]))
        .reshape([n])
        .neg()
}

fn int_tensor(values: Vec<i64>, device: &Device) -> Tensor<1, Int> {
    let n = values.len();
    Tensor::from_data(TensorData::new(values, [n]), device)
}

/// Sequence classification with any [`SequenceClassifier`] (by default a built-in encoder with
/// its head), trained with cross-entropy.
pub struct ClassificationTask<M = EncoderForSequenceClassification> {
    train: Vec<TokenizedExample>,
    dev: Vec<TokenizedExample>,
    num_labels: usize,
    pad_id: u32,
    model: PhantomData<fn() -> M>,
}

impl<M> ClassificationTask<M> {
    /// Tokenizes the train and dev splits of `splits` (truncated to `max_len` tokens).
    pub fn new(
        tokenizer: &Tokenizer,
        splits: &TaskSplits,
        max_len: usize,
        pad_id: u32,
    ) -> Result<Self> {
        if splits.train.is_empty() || splits.dev.is_empty() {
            return Err(TrainError::Config(format!(
                "task '{}' needs training and dev examples (has {} and {})",
                splits.name,
                splits.train.len(),
                splits.dev.len()
            )));
        }
        Ok(Self {
            train: tokenize_examples(tokenizer, &splits.train, max_len)?,
            dev: tokenize_examples(tokenizer, &splits.dev, max_len)?,
            num_labels: splits.labels.len(),
            pad_id,
            model: PhantomData,
        })
    }

    /// Number of classes.
    pub fn num_labels(&self) -> usize {
        self.num_labels
    }

    /// The padding id.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }
}

/// Predicts every example with `model` (in evaluation mode) and scores the predictions.
pub fn evaluate_classifier<M: SequenceClassifier>(
    model: &M,
    examples: &[TokenizedExample],
    num_labels: usize,
    pad_id: u32,
    batch_size: usize,
) -> Result<EvalMetrics> {
    let device = model_device(model)?;
    let lengths: Vec<usize> = examples.iter().map(|e| e.ids.len()).collect();
    let mut confusion = ConfusionMatrix::new(num_labels);
    let mut nll_sum = 0.0;
    for batch in batch_order(&lengths, batch_size, None, true)? {
        let (encoded, labels) = collate(examples, &batch, pad_id);
        let logits = model.classify(&token_batch(&encoded, &device)?)?;
        let predicted = logits.clone().argmax(1).reshape([batch.len()]);
        let nll = nll_per_row(logits, int_tensor(labels.clone(), &device));
        nll_sum += nll.sum().into_scalar::<f32>() as f64;
        let predicted: Vec<i64> = predicted
            .into_data()
            .convert::<i64>()
            .try_into_vec()
            .unwrap_or_default();
        for (t, p) in labels.iter().zip(predicted) {
            confusion.add(*t as usize, p as usize);
        }
    }
    Ok(EvalMetrics {
        loss: nll_sum / examples.len().max(1) as f64,
        examples: examples.len(),
        classification: Some(confusion.metrics()),
        perplexity: None,
    })
}

impl<M: SequenceClassifier> TrainTask for ClassificationTask<M> {
    type Model = M;

    fn peft_task_type(&self) -> TaskType {
        TaskType::SeqCls
    }

    fn default_metric(&self) -> &'static str {
        "accuracy"
    }

    fn train_lengths(&self) -> Vec<usize> {
        self.train.iter().map(|e| e.ids.len()).collect()
    }

    fn loss(&self, model: &Self::Model, indices: &[usize]) -> Result<BatchLoss> {
        let device = model_device(model)?;
        let (encoded, labels) = collate(&self.train, indices, self.pad_id);
        let logits = model.classify(&token_batch(&encoded, &device)?)?;
        Ok(BatchLoss {
            loss: nll_per_row(logits, int_tensor(labels, &device)).mean(),
            tokens: encoded.tokens(),
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
        let device = model_device(model)?;
        let (encoded, labels) = collate(&self.train, indices, self.pad_id);
        let batch = token_batch(&encoded, &device)?;
        let labels = int_tensor(labels, &device);
        let loss = classification_backward(model, &batch, labels, weight, recompute, grads)?;
        Ok(BatchStats {
            loss,
            tokens: encoded.tokens(),
        })
    }

    fn evaluate(&self, model: &Self::Model, batch_size: usize) -> Result<EvalMetrics> {
        evaluate_classifier(model, &self.dev, self.num_labels, self.pad_id, batch_size)
    }
}

/// Backpropagates `weight ×` the mean cross-entropy of `model`'s logits for `batch` against
/// `labels` into `grads` and returns it: through one graph, or with `recompute` layer by layer
/// ([`crate::layerwise`]).
pub fn classification_backward<M: SequenceClassifier>(
    model: &M,
    batch: &TokenBatch,
    labels: Tensor<1, Int>,
    weight: f64,
    recompute: bool,
    grads: &mut AccumulatedGrads,
) -> Result<f64> {
    let n = labels.dims()[0];
    if !recompute {
        let loss = nll_per_row(model.classify(batch)?, labels).mean();
        return Ok(backward_one_graph(model, loss, weight, grads));
    }
    let mut loss = |logits: Tensor<2>, rows: Range<usize>| {
        Ok(nll_per_row(logits, labels.clone().slice([rows]))
            .sum()
            .div_scalar(n as f64))
    };
    model
        .classify_backward_by_layers(batch, weight, &mut loss, grads)?
        .ok_or_else(|| {
            not_layerwise(
                "classifier",
                "SequenceClassifier::classify_backward_by_layers",
            )
        })
}

/// Causal language modelling on fixed-length token blocks with any [`CausalLm`] (by default a
/// built-in decoder), trained with next-token cross-entropy; evaluated by perplexity.
pub struct CausalLmTask<M = DecoderForCausalLM> {
    train: Vec<Vec<u32>>,
    dev: Vec<Vec<u32>>,
    model: PhantomData<fn() -> M>,
}

impl<M: CausalLm> CausalLmTask<M> {
    /// Tokenizes the documents, joins them with `separator` (the EOS id) and cuts them into
    /// blocks of `block_len` tokens.
    pub fn new(
        tokenizer: &Tokenizer,
        train_documents: &[String],
        dev_documents: &[String],
        block_len: usize,
        separator: Option<u32>,
    ) -> Result<Self> {
        let train = token_blocks(tokenizer, train_documents, block_len, separator)?;
        let dev = token_blocks(tokenizer, dev_documents, block_len, separator)?;
        if train.is_empty() || dev.is_empty() {
            return Err(TrainError::Config(format!(
                "the corpus gives {} training and {} dev blocks of {block_len} tokens; \
                 both need at least one (more text or a shorter block)",
                train.len(),
                dev.len()
            )));
        }
        Ok(Self {
            train,
            dev,
            model: PhantomData,
        })
    }

    /// A task that only evaluates: `documents` become the held-out blocks (there is nothing to
    /// train on), for measuring a model's perplexity on a corpus.
    pub fn for_evaluation(
        tokenizer: &Tokenizer,
        documents: &[String],
        block_len: usize,
        separator: Option<u32>,
    ) -> Result<Self> {
        let dev = token_blocks(tokenizer, documents, block_len, separator)?;
        if dev.is_empty() {
            return Err(TrainError::Config(format!(
                "the corpus gives no block of {block_len} tokens (more text or a shorter block)"
            )));
        }
        Ok(Self {
            train: Vec::new(),
            dev,
            model: PhantomData,
        })
    }

    /// Number of held-out blocks.
    pub fn dev_blocks(&self) -> usize {
        self.dev.len()
    }

    /// Number of training blocks.
    pub fn train_blocks(&self) -> usize {
        self.train.len()
    }

    fn block_ids(blocks: &[&Vec<u32>], device: &Device) -> Tensor<2, Int> {
        let (b, len) = (blocks.len(), blocks[0].len());
        let ids: Vec<i64> = blocks
            .iter()
            .flat_map(|blk| blk.iter().map(|&t| t as i64))
            .collect();
        Tensor::<2, Int>::from_data(TensorData::new(ids, [b, len]), device)
    }

    fn block_nll(model: &M, blocks: &[&Vec<u32>], device: &Device) -> Result<Tensor<1>> {
        let (b, len) = (blocks.len(), blocks[0].len());
        let ids = Self::block_ids(blocks, device);
        let logits = model.lm_logits(&DecoderBatch::ids(ids.clone().slice([0..b, 0..len - 1])))?;
        let vocab = logits.dims()[2];
        let targets = ids.slice([0..b, 1..len]).reshape([b * (len - 1)]);
        Ok(nll_per_row(logits.reshape([b * (len - 1), vocab]), targets))
    }
}

impl<M: CausalLm> TrainTask for CausalLmTask<M> {
    type Model = M;

    fn peft_task_type(&self) -> TaskType {
        TaskType::CausalLm
    }

    fn default_metric(&self) -> &'static str {
        "perplexity"
    }

    fn train_lengths(&self) -> Vec<usize> {
        self.train.iter().map(Vec::len).collect()
    }

    fn loss(&self, model: &Self::Model, indices: &[usize]) -> Result<BatchLoss> {
        let device = model_device(model)?;
        let blocks: Vec<&Vec<u32>> = indices.iter().map(|&i| &self.train[i]).collect();
        let nll = Self::block_nll(model, &blocks, &device)?;
        Ok(BatchLoss {
            loss: nll.mean(),
            tokens: blocks.iter().map(|b| b.len()).sum(),
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
        if !recompute {
            return Ok(self.loss(model, indices)?.backward(model, weight, grads));
        }
        let device = model_device(model)?;
        let blocks: Vec<&Vec<u32>> = indices.iter().map(|&i| &self.train[i]).collect();
        let (b, len) = (blocks.len(), blocks[0].len());
        let ids = Self::block_ids(&blocks, &device);
        let inputs = DecoderBatch::ids(ids.clone().slice([0..b, 0..len - 1]));
        let count = (b * (len - 1)) as f64;
        let mut loss = |logits: Tensor<3>, rows: Range<usize>| {
            let [k, s, vocab] = logits.dims();
            let targets = ids.clone().slice([rows, 1..len]).reshape([k * s]);
            Ok(nll_per_row(logits.reshape([k * s, vocab]), targets)
                .sum()
                .div_scalar(count))
        };
        let loss = model
            .lm_backward_by_layers(&inputs, weight, &mut loss, grads)?
            .ok_or_else(|| not_layerwise("language model", "CausalLm::lm_backward_by_layers"))?;
        Ok(BatchStats {
            loss,
            tokens: blocks.iter().map(|b| b.len()).sum(),
        })
    }

    fn evaluate(&self, model: &Self::Model, batch_size: usize) -> Result<EvalMetrics> {
        let device = model_device(model)?;
        let (mut nll_sum, mut tokens) = (0.0, 0);
        for chunk in self.dev.chunks(batch_size.max(1)) {
            let blocks: Vec<&Vec<u32>> = chunk.iter().collect();
            let nll = Self::block_nll(model, &blocks, &device)?;
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
