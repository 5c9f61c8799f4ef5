//! # LoRA on your own Burn model
//!
//! A small, real task end to end, with nothing from `lora-burn` but `lora-surgery` (and Burn):
//!
//! - the data: Fisher's Iris measurements (150 flowers, 3 species), embedded as a CSV;
//! - a "pre-trained" base: a plain Burn MLP ([`BaseMlp`], `burn::nn::Linear` layers) trained
//!   with all its weights on two of the three species only ([`pretrain`]);
//! - the same network built from [`LoraLinear`] layers ([`Mlp`], `#[derive(Module, Adaptable)]`),
//!   whose base is frozen, so that a LoRA adapter teaches it the third species;
//! - [`peft_flow`]: PEFT's flow with [`lora_surgery::PeftModel`] and Burn's Adam in a hand-written
//!   loop: `get_peft_model`, train, `save_pretrained`, `from_pretrained`, `merge_and_unload`;
//! - [`learner_flow`]: the Burn-native route, the same model trained by burn-train's `Learner`
//!   (`TrainStep` / `InferenceStep`, a `DataLoader`, loss and accuracy metrics, checkpoints).
//!
//! Both flows run as integration tests (`tests/peft_flow.rs`, `tests/learner.rs`) and as the
//! crate's binary (`src/main.rs`).

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor, TensorData};
use lora_surgery::{Adaptable, LoraLinear};

pub mod learner_flow;
pub mod peft_flow;

/// The Iris data set (R. A. Fisher, 1936) as distributed by the UCI Machine Learning Repository
/// (`iris.data`, with a header added): sepal length, sepal width, petal length, petal width (cm)
/// and species.
pub const IRIS_CSV: &str = include_str!("../data/iris.csv");

/// The species, in label order.
pub const SPECIES: [&str; 3] = ["Iris-setosa", "Iris-versicolor", "Iris-virginica"];

/// Hidden units of the MLP.
pub const HIDDEN: usize = 16;

/// Any error of the examples.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// One flower: four measurements and the species' index in [`SPECIES`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Flower {
    /// Sepal length, sepal width, petal length, petal width (standardised by [`split`]).
    pub features: [f32; 4],
    /// Index into [`SPECIES`].
    pub label: usize,
}

/// The 150 flowers of [`IRIS_CSV`].
pub fn iris() -> Vec<Flower> {
    IRIS_CSV
        .lines()
        .skip(1)
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            assert_eq!(fields.len(), 5, "malformed Iris row: {line}");
            let mut features = [0.0; 4];
            for (f, text) in features.iter_mut().zip(&fields[..4]) {
                *f = text.parse().expect("a measurement in cm");
            }
            let label = SPECIES
                .iter()
                .position(|s| *s == fields[4])
                .expect("one of the three species");
            Flower { features, label }
        })
        .collect()
}

/// A train / test split of the flowers.
#[derive(Debug, Clone)]
pub struct Split {
    /// Training flowers.
    pub train: Vec<Flower>,
    /// Held-out flowers.
    pub test: Vec<Flower>,
}

/// A seeded, stratified split: `test_per_class` flowers of each species held out, the rest for
/// training, in a seeded order; features standardised with the training set's mean and
/// standard deviation.
pub fn split(seed: u64, test_per_class: usize) -> Split {
    let mut rng = SplitMix64(seed);
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for label in 0..SPECIES.len() {
        let mut flowers: Vec<Flower> = iris().into_iter().filter(|f| f.label == label).collect();
        rng.shuffle(&mut flowers);
        test.extend_from_slice(&flowers[..test_per_class]);
        train.extend_from_slice(&flowers[test_per_class..]);
    }
    rng.shuffle(&mut train);
    rng.shuffle(&mut test);
    let n = train.len() as f32;
    for i in 0..4 {
        let mean = train.iter().map(|f| f.features[i]).sum::<f32>() / n;
        let var = train
            .iter()
            .map(|f| (f.features[i] - mean).powi(2))
            .sum::<f32>()
            / n;
        for f in train.iter_mut().chain(test.iter_mut()) {
            f.features[i] = (f.features[i] - mean) / var.sqrt();
        }
    }
    Split { train, test }
}

/// SplitMix64: a few lines of seeded randomness for the split, so the example needs no `rand`.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

/// Features `[n, 4]` and labels `[n]` of `flowers`, on `device`.
pub fn tensors(flowers: &[Flower], device: &Device) -> (Tensor<2>, Tensor<1, Int>) {
    let n = flowers.len();
    let features: Vec<f32> = flowers.iter().flat_map(|f| f.features).collect();
    let labels: Vec<i64> = flowers.iter().map(|f| f.label as i64).collect();
    (
        Tensor::from_data(TensorData::new(features, [n, 4]), device),
        Tensor::from_data(TensorData::new(labels, [n]), device),
    )
}

/// Mean cross-entropy of `logits` `[n, classes]` against `labels` `[n]`.
pub fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    CrossEntropyLossConfig::new()
        .init(&logits.device())
        .forward(logits, labels)
}

/// The fraction of rows whose largest logit is at the label.
pub fn accuracy(logits: Tensor<2>, labels: Tensor<1, Int>) -> f32 {
    let n = labels.dims()[0];
    let predicted = logits.argmax(1).reshape([n]);
    let correct: i64 = predicted.equal(labels).int().sum().into_scalar();
    correct as f32 / n as f32
}

/// The largest absolute difference between two tensors.
pub fn max_abs_diff(a: Tensor<2>, b: Tensor<2>) -> f32 {
    (a - b).abs().max().into_scalar()
}

/// The "pre-trained" network: plain Burn, every weight trainable.
#[derive(Module, Debug)]
pub struct BaseMlp {
    /// Input layer, 4 → [`HIDDEN`].
    pub fc1: Linear,
    /// Output layer, [`HIDDEN`] → 3.
    pub fc2: Linear,
}

impl BaseMlp {
    /// A randomly initialised network (from `device`'s random generator: seed it first).
    pub fn new(device: &Device) -> Self {
        Self {
            fc1: LinearConfig::new(4, HIDDEN).init(device),
            fc2: LinearConfig::new(HIDDEN, SPECIES.len()).init(device),
        }
    }

    /// Logits `[n, 3]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.fc2.forward(relu(self.fc1.forward(x)))
    }
}

/// The same network with LoRA-adaptable layers: `LoraLinear` where `BaseMlp` has a `Linear`.
/// `#[derive(Adaptable)]` names the layers `fc1` and `fc2`, which is what a `PeftConfig`'s
/// target modules match.
#[derive(Module, Debug, Adaptable)]
pub struct Mlp {
    /// Input layer, 4 → [`HIDDEN`].
    pub fc1: LoraLinear,
    /// Output layer, [`HIDDEN`] → 3.
    pub fc2: LoraLinear,
}

impl Mlp {
    /// The pre-trained weights of `base`, frozen, with no adapter yet. Call it again for a
    /// fresh copy of the base (what `PeftModel::from_pretrained` loads an adapter onto).
    pub fn from_base(base: &BaseMlp) -> Self {
        Self {
            fc1: LoraLinear::from_linear(base.fc1.clone()),
            fc2: LoraLinear::from_linear(base.fc2.clone()),
        }
    }

    /// Logits `[n, 3]`: the base plus whatever adapters are active.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.fc2.forward(relu(self.fc1.forward(x)))
    }
}

/// Pre-training: full-batch Adam on the flowers of `species` only, with every weight
/// trainable. `device` must be an autodiff device; seed it for a reproducible base.
pub fn pretrain(flowers: &[Flower], species: &[usize], device: &Device) -> BaseMlp {
    use burn::optim::{AdamConfig, GradientsParams};

    let subset: Vec<Flower> = flowers
        .iter()
        .filter(|f| species.contains(&f.label))
        .copied()
        .collect();
    let (x, y) = tensors(&subset, device);
    let mut model = BaseMlp::new(device);
    let mut optimizer = AdamConfig::new().init();
    for _ in 0..100 {
        let loss = cross_entropy(model.forward(x.clone()), y.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(1e-2, model, grads);
    }
    model
}
