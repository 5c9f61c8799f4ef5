//! Our activation-path LoRA against Burn's built-in weight reparameterisation (`apply_lora`):
//! given the same base and factors they are the same function, get the same gradients, and
//! stay equal after an optimizer step; our merge equals Burn's `materialize`.

use burn::module::{Lora, Module};
use burn::nn::{Linear, LinearConfig};
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Distribution, Tensor};
use lora_core::testing::{max_abs, max_abs_diff};
use lora_core::{LoraAdapter, LoraConfig, LoraLinear};

fn loss(y: Tensor<2>) -> Tensor<1> {
    y.powi_scalar(2).mean()
}

lora_core::backend_test!(fn activation_path_equals_burn_weight_path(device) {
    let device = device.autodiff();
    let (d_in, d_out, r, alpha) = (12, 10, 4, 8.0);
    let base: Linear = LinearConfig::new(d_in, d_out).init(&device);
    let burns = base.clone().apply_lora(Lora::new(r, alpha));
    let adapter = burns.weight.adapter().expect("apply_lora attached an adapter");
    let (a, b) = (adapter.a.val().detach(), adapter.b.val().detach());

    let mut ours = LoraLinear::from_linear(base);
    let config = LoraConfig::new(r).with_alpha(alpha);
    ours.insert_adapter(LoraAdapter::from_factors("default", config, a, b).unwrap()).unwrap();

    let x = Tensor::<2>::random([6, d_in], Distribution::Uniform(-1.0, 1.0), &device);
    assert!(max_abs_diff(ours.forward(x.clone()), burns.forward(x.clone())) < 1e-5);

    // One SGD step on each, with the same loss: Burn initialises B = 0, so this is what makes
    // the update non-trivial, and both must land on the same factors.
    let mut sgd = SgdConfig::new().init();
    let grads = GradientsParams::from_grads(loss(ours.forward(x.clone())).backward(), &ours);
    assert_eq!(grads.len(), 2, "only A and B train in ours");
    let ours = sgd.step(0.5, ours, grads);
    let mut sgd = SgdConfig::new().init();
    let grads = GradientsParams::from_grads(loss(burns.forward(x.clone())).backward(), &burns);
    assert_eq!(grads.len(), 2, "only A and B train in Burn's");
    let burns = sgd.step(0.5, burns, grads);

    let y_ours = ours.forward(x.clone());
    let y_burn = burns.forward(x.clone());
    let effect = max_abs(ours.adapters[0].delta(x.clone()).detach());
    assert!(effect > 1e-4, "the step must move the adapter (effect {effect})");
    assert!(max_abs_diff(y_ours.clone(), y_burn) <= 1e-5 * (1.0 + max_abs(y_ours.clone())));

    // Merging (ours) equals materialising (Burn's).
    let merged = ours.merge_and_unload().unwrap();
    let materialized = burns.materialize();
    assert!(max_abs_diff(merged.weight.val(), materialized.weight.val()) < 1e-5);
    assert!(max_abs_diff(merged.forward(x.clone()), y_ours) < 1e-5);
});
