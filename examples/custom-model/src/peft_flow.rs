//! PEFT's flow on [`Mlp`]: `get_peft_model` → train the adapter → `save_pretrained`
//! → `from_pretrained` on a fresh base → `merge_and_unload`.

use std::path::Path;

use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::Device;
use lora_surgery::{PeftConfig, PeftModel};

use crate::{Error, Mlp, accuracy, cross_entropy, max_abs_diff, pretrain, split, tensors};

/// Adam steps on the adapter (full batch: the 120 training flowers).
pub const STEPS: usize = 200;
/// The adapter's learning rate.
pub const LEARNING_RATE: f64 = 1e-2;

/// What one run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct PeftFlowReport {
    /// The seed of the split, the base and the adapter's initialisation.
    pub seed: u64,
    /// Test accuracy of the pre-trained base (it never saw the third species).
    pub base_accuracy: f32,
    /// Trainable parameters with the adapter (LoRA's A and B only).
    pub trainable_params: usize,
    /// All parameters.
    pub total_params: usize,
    /// Training loss before the first adapter step (the base's: B starts at zero).
    pub loss_before: f32,
    /// Training loss after the last step.
    pub loss_after: f32,
    /// Test accuracy with the trained adapter.
    pub accuracy: f32,
    /// Max |logits(trained) − logits(reloaded from the adapter directory)| on the test set.
    pub reload_max_diff: f32,
    /// Max |logits(trained) − logits(merged)| on the test set.
    pub merge_max_diff: f32,
    /// Max |logits(trained)| on the test set.
    pub logit_scale: f32,
}

/// Runs the flow with `seed`, writing the adapter to `adapter_dir`.
pub fn run(seed: u64, adapter_dir: &Path) -> Result<PeftFlowReport, Error> {
    let device = Device::flex().autodiff();
    device.seed(seed);
    let data = split(seed, 10);
    let (x_train, y_train) = tensors(&data.train, &device);
    let (x_test, y_test) = tensors(&data.test, &device);

    // A pre-trained base that knows setosa and versicolor only.
    let base = pretrain(&data.train, &[0, 1], &device);
    let base_accuracy = accuracy(base.forward(x_test.clone()), y_test.clone());

    // 1. PEFT's LoraConfig + get_peft_model: the base frozen, LoRA on both layers (rank 2:
    //    lora-core refuses r > min(in, out), and fc2 has 3 outputs).
    let config = PeftConfig::for_targets(&["fc1", "fc2"])
        .with_r(2)
        .with_alpha(4.0);
    let mut peft = PeftModel::new(Mlp::from_base(&base), config, "default")?;
    let params = peft.trainable_parameters();

    // 2. Train only the adapter: Burn's Adam, full batch.
    let loss = |m: &Mlp| cross_entropy(m.forward(x_train.clone()), y_train.clone());
    let loss_before: f32 = loss(peft.model()).into_scalar();
    let mut optimizer = AdamConfig::new().init();
    for _ in 0..STEPS {
        let grads = GradientsParams::from_grads(loss(peft.model()).backward(), peft.model());
        peft = peft.map(|m| optimizer.step(LEARNING_RATE, m, grads));
    }
    let loss_after: f32 = loss(peft.model()).into_scalar();
    let trained_logits = peft.model().forward(x_test.clone());
    let accuracy = accuracy(trained_logits.clone(), y_test);
    let logit_scale: f32 = trained_logits.clone().abs().max().into_scalar();

    // 3. save_pretrained: adapter_config.json + adapter_model.safetensors.
    peft.save_pretrained(adapter_dir)?;

    // 4. from_pretrained onto a fresh copy of the base: the same logits.
    let loaded = PeftModel::from_pretrained(Mlp::from_base(&base), adapter_dir, "default")?;
    let reload_max_diff = max_abs_diff(
        loaded.model().forward(x_test.clone()),
        trained_logits.clone(),
    );

    // 5. merge_and_unload: a plain Mlp (no adapters left) with the adapted model's outputs.
    let merged: Mlp = loaded.merge_and_unload()?;
    assert!(merged.fc1.adapters.is_empty() && merged.fc2.adapters.is_empty());
    let merge_max_diff = max_abs_diff(merged.forward(x_test), trained_logits);

    Ok(PeftFlowReport {
        seed,
        base_accuracy,
        trainable_params: params.trainable,
        total_params: params.total,
        loss_before,
        loss_after,
        accuracy,
        reload_max_diff,
        merge_max_diff,
        logit_scale,
    })
}

impl PeftFlowReport {
    /// The outcomes the example promises; panics with the numbers otherwise.
    pub fn check(&self) {
        // r·(in + out) per layer: 2·(4 + 16) + 2·(16 + 3).
        assert_eq!(self.trainable_params, 78, "{self:?}");
        assert!(
            self.loss_after < 0.5 * self.loss_before,
            "the adapter did not learn: {self:?}"
        );
        assert!(self.accuracy >= 0.9, "test accuracy below 0.9: {self:?}");
        assert!(
            self.reload_max_diff <= 1e-6,
            "reloaded adapter differs: {self:?}"
        );
        // Merging folds s·A·B into W in f32: the logits agree to f32 rounding, a few units in
        // the last place of their magnitude (which reaches ~100 here), so the bound is relative.
        assert!(
            self.merge_max_diff <= 1e-6 * self.logit_scale.max(1.0),
            "merged model differs: {self:?}"
        );
    }
}
