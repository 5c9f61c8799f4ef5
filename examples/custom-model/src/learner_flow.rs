//! The Burn-native route: the LoRA-wrapped [`Mlp`] trained by burn-train's
//! `Learner` / `SupervisedTraining`, with a `DataLoader`, loss and accuracy metrics and
//! checkpoints.
//!
//! Nothing here is specific to LoRA: `Mlp` is an ordinary Burn module whose frozen base
//! parameters have no gradient, so the optimizer only ever sees (and changes) the adapter's A
//! and B. `PeftModel::map` hands the model to the learner and takes the trained one back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::InMemDataset;
use burn::optim::AdamConfig;
use burn::tensor::{Device, Int, Tensor};
use burn::train::checkpoint::KeepLastNCheckpoints;
use burn::train::metric::{AccuracyMetric, LossMetric};
use burn::train::renderer::CliMetricsRenderer;
use burn::train::{
    ClassificationOutput, InferenceStep, Learner, LearnerSummary, SupervisedTraining, TrainOutput,
    TrainStep,
};
use lora_surgery::{Adaptable, PeftConfig, PeftModel};

use crate::{Error, Flower, Mlp, accuracy, cross_entropy, pretrain, split, tensors};

/// Epochs of adapter training.
pub const EPOCHS: usize = 30;
/// Flowers per batch.
pub const BATCH_SIZE: usize = 12;
/// The adapter's learning rate.
pub const LEARNING_RATE: f64 = 1e-2;

/// A batch of flowers: features `[batch, 4]` and labels `[batch]`.
#[derive(Debug, Clone)]
pub struct IrisBatch {
    /// Standardised measurements.
    pub features: Tensor<2>,
    /// Species indices.
    pub labels: Tensor<1, Int>,
}

/// Turns flowers into an [`IrisBatch`] on the loader's device.
#[derive(Debug, Clone, Copy)]
pub struct IrisBatcher;

impl Batcher<Flower, IrisBatch> for IrisBatcher {
    fn batch(&self, items: Vec<Flower>, device: &Device) -> IrisBatch {
        let (features, labels) = tensors(&items, device);
        IrisBatch { features, labels }
    }
}

impl Mlp {
    /// Loss, logits and labels of a batch: what burn-train's loss and accuracy metrics read.
    pub fn classification(&self, batch: IrisBatch) -> ClassificationOutput {
        let logits = self.forward(batch.features);
        let loss = cross_entropy(logits.clone(), batch.labels.clone());
        ClassificationOutput::new(loss, logits, batch.labels)
    }
}

impl TrainStep for Mlp {
    type Input = IrisBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: IrisBatch) -> TrainOutput<ClassificationOutput> {
        let item = self.classification(batch);
        // Gradients exist for the adapter's factors only: the base was frozen by LoraLinear.
        TrainOutput::new(self, item.loss.backward(), item)
    }
}

impl InferenceStep for Mlp {
    type Input = IrisBatch;
    type Output = ClassificationOutput;

    fn step(&self, batch: IrisBatch) -> ClassificationOutput {
        self.classification(batch)
    }
}

/// What one run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct LearnerFlowReport {
    /// The seed of the split, the base, the adapter and the batch order.
    pub seed: u64,
    /// Held-out loss and accuracy with the fresh adapter (B = 0: the base's).
    pub loss_before: f32,
    /// Held-out accuracy before training.
    pub accuracy_before: f32,
    /// Held-out loss after training.
    pub loss_after: f32,
    /// Held-out accuracy after training.
    pub accuracy_after: f32,
    /// burn-train's validation loss, one mean per epoch.
    pub valid_loss: Vec<f64>,
    /// burn-train's validation accuracy (in percent), one mean per epoch.
    pub valid_accuracy: Vec<f64>,
    /// Parameters whose values changed in training (by path).
    pub changed: Vec<String>,
    /// Parameters whose values did not change.
    pub unchanged: Vec<String>,
    /// The model checkpoint burn-train wrote for the last epoch.
    pub last_checkpoint: PathBuf,
}

/// Every float parameter of `model` by path, with LoRA's factors as PEFT names them.
pub fn parameters(model: &Mlp) -> BTreeMap<String, Vec<f32>> {
    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.try_into_vec_as::<f32>().expect("a float tensor")
    }
    let mut out = BTreeMap::new();
    for (name, layer) in model.linears() {
        out.insert(format!("{name}.weight"), values(layer.weight.val()));
        if let Some(bias) = &layer.bias {
            out.insert(format!("{name}.bias"), values(bias.val()));
        }
        for adapter in &layer.adapters {
            let key = |factor: &str| format!("{name}.{factor}.{}.weight", adapter.name);
            out.insert(key("lora_A"), values(adapter.lora_a.val()));
            out.insert(key("lora_B"), values(adapter.lora_b.val()));
        }
    }
    out
}

/// Runs the flow with `seed`; burn-train writes its logs and checkpoints under `artifact_dir`.
pub fn run(seed: u64, artifact_dir: &Path) -> Result<LearnerFlowReport, Error> {
    let device = Device::flex().autodiff();
    device.seed(seed);
    let data = split(seed, 10);
    let base = pretrain(&data.train, &[0, 1], &device);

    let config = PeftConfig::for_targets(&["fc1", "fc2"])
        .with_r(2)
        .with_alpha(4.0);
    let peft = PeftModel::new(Mlp::from_base(&base), config, "default")?;

    let evaluate = |model: &Mlp| {
        let (x, y) = tensors(&data.test, &model.fc1.device());
        let logits = model.forward(x);
        let loss: f32 = cross_entropy(logits.clone(), y.clone()).into_scalar();
        (loss, accuracy(logits, y))
    };
    let (loss_before, accuracy_before) = evaluate(peft.model());
    let before = parameters(peft.model());

    let train = DataLoaderBuilder::new(IrisBatcher)
        .batch_size(BATCH_SIZE)
        .shuffle(seed)
        .build(InMemDataset::new(data.train.clone()));
    let valid = DataLoaderBuilder::new(IrisBatcher)
        .batch_size(BATCH_SIZE)
        .build(InMemDataset::new(data.test.clone()));
    let training = SupervisedTraining::new(artifact_dir, train, valid)
        .num_epochs(EPOCHS)
        .metric_train_numeric(LossMetric::new())
        .metric_valid_numeric(LossMetric::new())
        .metric_train_numeric(AccuracyMetric::new())
        .metric_valid_numeric(AccuracyMetric::new())
        .with_default_checkpointers()
        .with_checkpointing_strategy(KeepLastNCheckpoints::new(2))
        // Headless: plain-text progress (the TUI needs a terminal), and no global
        // `tracing` subscriber installed by the library.
        .renderer(Box::new(CliMetricsRenderer::new()))
        .with_application_logger(None);

    // The learner takes the model and gives back the trained one (in validation mode).
    let mut failure = None;
    let peft = peft.map(|model| {
        let learner = Learner::new(model, AdamConfig::new().init(), LEARNING_RATE);
        let result = training.launch(learner);
        failure = result.error;
        result.model
    });
    if let Some(error) = failure {
        return Err(format!("training failed: {error}").into());
    }

    let (loss_after, accuracy_after) = evaluate(peft.model());
    let after = parameters(peft.model());
    let (changed, unchanged): (Vec<String>, Vec<String>) = before
        .keys()
        .cloned()
        .partition(|name| before[name] != after[name]);

    // burn-train's own record of the run: the metrics it logged per epoch.
    let summary = LearnerSummary::new(artifact_dir, &["Loss", "Accuracy"])?;
    let per_epoch = |name: &str| -> Vec<f64> {
        summary
            .metrics
            .valid
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.entries.iter().map(|e| e.value).collect())
            .unwrap_or_default()
    };

    // Keep the trained adapter as a PEFT directory too.
    peft.save_pretrained(&artifact_dir.join("adapter"))?;

    Ok(LearnerFlowReport {
        seed,
        loss_before,
        accuracy_before,
        loss_after,
        accuracy_after,
        valid_loss: per_epoch("Loss"),
        valid_accuracy: per_epoch("Accuracy"),
        changed,
        unchanged,
        last_checkpoint: artifact_dir
            .join("checkpoint")
            .join(format!("model-{EPOCHS}.bpk")),
    })
}

impl LearnerFlowReport {
    /// The outcomes the example promises; panics with the numbers otherwise.
    pub fn check(&self) {
        assert!(
            self.loss_after < 0.5 * self.loss_before,
            "the adapter did not learn: {self:?}"
        );
        assert!(
            self.accuracy_after >= 0.9,
            "held-out accuracy below 0.9: {self:?}"
        );
        // Only LoRA's factors moved; the pre-trained base is bit-for-bit the same.
        assert!(
            self.changed.iter().all(|p| p.contains(".lora_")),
            "a frozen parameter changed: {self:?}"
        );
        assert!(
            self.unchanged.iter().all(|p| !p.contains(".lora_")),
            "an adapter factor did not train: {self:?}"
        );
        assert_eq!(self.changed.len(), 4, "{self:?}");
        // burn-train logged a validation loss and accuracy for every epoch, falling / rising.
        assert_eq!(self.valid_loss.len(), EPOCHS, "{self:?}");
        assert_eq!(self.valid_accuracy.len(), EPOCHS, "{self:?}");
        assert!(self.valid_loss[EPOCHS - 1] < self.valid_loss[0], "{self:?}");
        assert!(self.valid_accuracy[EPOCHS - 1] >= 90.0, "{self:?}");
        assert!(self.last_checkpoint.is_file(), "{self:?}");
    }
}
