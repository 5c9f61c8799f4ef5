//! The element-wise kernels training leans on, on every backend, against closed forms computed
//! in `f64` here: `erf`, `exp`, GELU and its gradient (the exact, erf form transformers uses),
//! sigmoid, and dropout's Bernoulli masks (their rate, and their reproducibility under a seed).
//! Products with a block-quantized weight, against the expanded weight. On `flex` these are
//! lora-burn's kernels (`patches/burn-flex`).

use burn::tensor::activation::{gelu, sigmoid};
use burn::tensor::{Device, Distribution, Tensor, TensorData};

/// Inputs covering GELU's range in training, the tails and zero.
fn inputs() -> Vec<f32> {
    let mut xs: Vec<f32> = (-4000..=4000).map(|i| i as f32 * 0.0025).collect();
    xs.extend([-30.0, -12.5, -6.0, 6.0, 12.5, 30.0, 0.0]);
    xs
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

fn erf64(x: f64) -> f64 {
    libm::erf(x)
}

fn check(what: &str, ours: &[f32], exact: impl Fn(f64) -> f64, xs: &[f32], tol: f64) {
    let worst = xs
        .iter()
        .zip(ours)
        .map(|(&x, &y)| ((y as f64) - exact(x as f64)).abs() / exact(x as f64).abs().max(1.0))
        .fold(0.0, f64::max);
    assert!(worst <= tol, "{what}: error {worst} > {tol}");
}

/// Relative error allowed (of `max(|exact|, 1)`): a few `f32` roundings on the CPU backends
/// (the erf kernel itself is within 4e-7), more for GPU drivers' transcendental functions.
fn tolerance(device: &Device) -> f64 {
    if is_cpu(device) { 5e-6 } else { 1e-4 }
}

fn is_cpu(device: &Device) -> bool {
    let name = format!("{device:?}");
    name.contains("Flex") || name.contains("NdArray")
}

/// GELU's gradient: exact on `flex`. Burn 0.22's default `gelu_backward`, which `ndarray` and
/// the GPU backends use, differentiates the tanh approximation of GELU instead of the erf form
/// it computes forward (up to 9e-4 off); this test holds it to that, and would catch it
/// getting worse.
fn gelu_gradient_tolerance(device: &Device) -> f64 {
    if format!("{device:?}").contains("Flex") {
        tolerance(device)
    } else {
        1e-3
    }
}

lora_core::backend_test!(fn erf_exp_and_gelu_match_their_closed_forms(device) {
    let xs = inputs();
    let n = xs.len();
    let x = || Tensor::<1>::from_data(TensorData::new(xs.clone(), [n]), &device);
    let tol = tolerance(&device);
    check("erf", &host(x().erf()), erf64, &xs, tol);
    check("exp", &host(x().clamp(-80.0, 80.0).exp()), |v| v.clamp(-80.0, 80.0).exp(), &xs, tol);
    let gelu64 = |v: f64| 0.5 * v * (1.0 + erf64(v / std::f64::consts::SQRT_2));
    check("gelu", &host(gelu(x())), gelu64, &xs, tol);
    check("sigmoid", &host(sigmoid(x())), |v| 1.0 / (1.0 + (-v).exp()), &xs, tol);

    // GELU's gradient through autodiff: Φ(x) + x·φ(x).
    let ad = device.clone().autodiff();
    let xa = Tensor::<1>::from_data(TensorData::new(xs.clone(), [n]), &ad).require_grad();
    let grads = gelu(xa.clone()).sum().backward();
    let grad = host(xa.grad(&grads).unwrap());
    let dgelu = |v: f64| {
        0.5 * (1.0 + erf64(v / std::f64::consts::SQRT_2))
            + v * (-0.5 * v * v).exp() / (2.0 * std::f64::consts::PI).sqrt()
    };
    check("gelu gradient", &grad, dgelu, &xs, gelu_gradient_tolerance(&device));
});

lora_core::backend_test!(fn dropout_masks_have_their_rate_and_follow_the_seed(device) {
    let draw = |seed: u64| {
        device.seed(seed);
        host(Tensor::<2>::random([512, 512], Distribution::Bernoulli(0.9), &device))
    };
    let a = draw(3);
    let rate = a.iter().filter(|&&v| v == 1.0).count() as f64 / a.len() as f64;
    assert!((rate - 0.9).abs() < 5e-3, "rate {rate}");
    assert!(a.iter().all(|&v| v == 0.0 || v == 1.0));
    assert_eq!(a, draw(3), "the same seed gives the same mask");
    assert_ne!(a, draw(4), "another seed gives another mask");
});

lora_core::backend_test!(fn quantized_products_equal_the_products_of_the_expanded_weights(device) {
    // A float activation times a block-quantized weight (a q8 / q4 frozen base): a few rows
    // take flex's direct 8-bit kernel, more rows expand the weight and call gemm. Both must
    // equal the product with the weight expanded to f32, computed here in f64.
    use lora_core::BaseDType;
    let backend = lora_core::Backend::of_device(&device).unwrap();
    let (k, n) = (96, 300);
    let w = Tensor::<2>::random([k, n], Distribution::Normal(0.0, 0.1), &device);
    for dtype in [BaseDType::Q8, BaseDType::Q4] {
        if !dtype.supported_on(backend) {
            continue;
        }
        let stored = dtype.store(w.clone());
        let expanded = host(lora_core::base_dtype::widen(stored.clone()));
        for m in [1, 3, 8, 9, 40] {
            let x = Tensor::<2>::random([m, k], Distribution::Default, &device);
            let got = host(x.clone().matmul(stored.clone()));
            let xs = host(x);
            let mut worst = 0.0f64;
            for r in 0..m {
                for j in 0..n {
                    let exact: f64 = (0..k)
                        .map(|i| xs[r * k + i] as f64 * expanded[i * n + j] as f64)
                        .sum();
                    worst = worst.max((got[r * n + j] as f64 - exact).abs() / exact.abs().max(1.0));
                }
            }
            assert!(worst < 1e-5, "{dtype}, {m} rows: error {worst}");
        }
    }
});
