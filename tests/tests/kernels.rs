//! The element-wise kernels training leans on, on every backend, against closed forms computed
//! in `f64` here: `erf`, `exp`, GELU and its gradient (the exact, erf form transformers uses),
//! sigmoid, and dropout's Bernoulli masks (their rate, and their reproducibility under a seed).
//! Products with a block-quantized weight, against the expanded weight. Softmax, log-softmax
//! and layer norm with their gradients, against finite differences. On `flex` these are
//! lora-burn's kernels (`patches/burn-flex`); the softmax, log-softmax and layer-norm backward
//! passes are lora-burn's on every backend (`patches/burn-autodiff`).

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

// Softmax, log-softmax and layer norm forward and backward (one tracked operation each on
// autodiff; see `patches/burn-autodiff/src/ops/normalize.rs`) against `f64` central finite differences of
// their definitions, for the loss `Σ w ⊙ f(x)` with fixed random weights `w`.
lora_core::backend_test!(fn softmax_log_softmax_and_layer_norm_gradients_match_finite_differences(device) {
    let (rows, width) = (6usize, 7usize);
    let shape = [2, 3, width];
    let n = rows * width;
    let xs: Vec<f64> = (0..n).map(|i| ((i * 37 % 23) as f64 - 11.0) * 0.31).collect();
    let ws: Vec<f64> = (0..n).map(|i| ((i * 53 % 19) as f64 - 9.0) * 0.17).collect();
    let gamma: Vec<f64> = (0..width).map(|j| 0.5 + j as f64 * 0.25).collect();
    let beta: Vec<f64> = (0..width).map(|j| j as f64 * 0.1 - 0.3).collect();
    let eps = 1e-5;
    let softmax64 = |x: &[f64]| -> Vec<f64> {
        x.chunks(width)
            .flat_map(|row| {
                let m = row.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = row.iter().map(|v| (v - m).exp()).collect();
                let s: f64 = e.iter().sum();
                e.into_iter().map(move |v| v / s)
            })
            .collect()
    };
    let layer_norm64 = |x: &[f64], g: &[f64], b: &[f64]| -> Vec<f64> {
        x.chunks(width)
            .flat_map(|row| {
                let mean = row.iter().sum::<f64>() / width as f64;
                let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / width as f64;
                let r = 1.0 / (var + eps).sqrt();
                row.iter()
                    .enumerate()
                    .map(move |(j, v)| (v - mean) * r * g[j] + b[j])
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let loss = |y: Vec<f64>| y.iter().zip(&ws).map(|(a, b)| a * b).sum::<f64>();
    let numeric = |values: &[f64], f: &dyn Fn(&[f64]) -> f64| -> Vec<f64> {
        let h = 1e-6;
        (0..values.len())
            .map(|i| {
                let (mut up, mut down) = (values.to_vec(), values.to_vec());
                up[i] += h;
                down[i] -= h;
                (f(&up) - f(&down)) / (2.0 * h)
            })
            .collect()
    };
    let close = |what: &str, ours: Vec<f32>, want: &[f64]| {
        let worst = ours
            .iter()
            .zip(want)
            .map(|(&a, &b)| (a as f64 - b).abs() / b.abs().max(1.0))
            .fold(0.0, f64::max);
        assert!(worst < 2e-4, "{what}: error {worst}");
    };

    let ad = device.clone().autodiff();
    let tensor = |v: &[f64], dims: Vec<usize>| {
        let v: Vec<f32> = v.iter().map(|&a| a as f32).collect();
        Tensor::<3>::from_data(TensorData::new(v, dims), &ad)
    };
    let vector = |v: &[f64]| {
        let v: Vec<f32> = v.iter().map(|&a| a as f32).collect();
        Tensor::<1>::from_data(TensorData::new(v, [width]), &ad).require_grad()
    };
    let w = tensor(&ws, shape.to_vec());

    let x = tensor(&xs, shape.to_vec()).require_grad();
    let y = burn::tensor::activation::softmax(x.clone(), 2);
    close("softmax", host(y.clone()), &softmax64(&xs));
    let grads = (y * w.clone()).sum().backward();
    let want = numeric(&xs, &|v| loss(softmax64(v)));
    close("softmax gradient", host(x.grad(&grads).unwrap()), &want);

    let log_softmax64 = |x: &[f64]| -> Vec<f64> { softmax64(x).into_iter().map(f64::ln).collect() };
    let x = tensor(&xs, shape.to_vec()).require_grad();
    let y = burn::tensor::activation::log_softmax(x.clone(), 2);
    close("log-softmax", host(y.clone()), &log_softmax64(&xs));
    let grads = (y * w.clone()).sum().backward();
    let want = numeric(&xs, &|v| loss(log_softmax64(v)));
    close("log-softmax gradient", host(x.grad(&grads).unwrap()), &want);
    // Along a middle axis (the backends' fused kernels work on the last one).
    let x = tensor(&xs, shape.to_vec()).require_grad();
    let y = burn::tensor::activation::log_softmax(x.clone(), 1);
    let moved = |v: &[f64]| -> Vec<f64> {
        // [2, 3, w] → [2, w, 3], so that axis 1 becomes the last.
        (0..2)
            .flat_map(|a| (0..width).flat_map(move |c| (0..3).map(move |b| (a, b, c))))
            .map(|(a, b, c)| v[(a * 3 + b) * width + c])
            .collect()
    };
    let back = |v: Vec<f64>| -> Vec<f64> {
        let mut out = vec![0.0; v.len()];
        for (i, (a, b, c)) in (0..2)
            .flat_map(|a| (0..width).flat_map(move |c| (0..3).map(move |b| (a, b, c))))
            .enumerate()
        {
            out[(a * 3 + b) * width + c] = v[i];
        }
        out
    };
    let by_axis1 = |v: &[f64]| -> Vec<f64> {
        let rows: Vec<f64> = moved(v)
            .chunks(3)
            .flat_map(|row| {
                let m = row.iter().cloned().fold(f64::MIN, f64::max);
                let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
                row.iter().map(move |v| v - lse).collect::<Vec<_>>()
            })
            .collect();
        back(rows)
    };
    close("log-softmax, axis 1", host(y.clone()), &by_axis1(&xs));
    let grads = (y * w.clone()).sum().backward();
    let want = numeric(&xs, &|v| loss(by_axis1(v)));
    close("log-softmax gradient, axis 1", host(x.grad(&grads).unwrap()), &want);

    let x = tensor(&xs, shape.to_vec()).require_grad();
    let (g, b) = (vector(&gamma), vector(&beta));
    let y = burn::tensor::module::layer_norm(x.clone(), g.clone(), Some(b.clone()), eps);
    close("layer norm", host(y.clone()), &layer_norm64(&xs, &gamma, &beta));
    let grads = (y * w).sum().backward();
    let want = numeric(&xs, &|v| loss(layer_norm64(v, &gamma, &beta)));
    close("layer norm, input gradient", host(x.grad(&grads).unwrap()), &want);
    let want = numeric(&gamma, &|v| loss(layer_norm64(&xs, v, &beta)));
    close("layer norm, scale gradient", host(g.grad(&grads).unwrap()), &want);
    let want = numeric(&beta, &|v| loss(layer_norm64(&xs, &gamma, v)));
    close("layer norm, shift gradient", host(b.grad(&grads).unwrap()), &want);
});
