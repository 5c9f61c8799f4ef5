//! Forward cost of the LoRA layer at BERT-base size (768 -> 768, 8 sequences of 64 tokens):
//! the plain base, LoRA unmerged (activation path, what training runs), LoRA merged (what
//! inference runs), and Burn's built-in weight-path `apply_lora` (dense ΔW every forward).
//! Also the training step (forward + backward) of ours against Burn's.
//!
//! Run with `cargo xtask bench` (or `BENCH_DEVICE=ndarray cargo xtask bench` for another backend;
//! the backend must be compiled in).

use burn::module::{Lora, Module};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Distribution, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use lora_core::{LoraConfig, LoraInit, LoraLinear};

const D: usize = 768;
const RANK: usize = 8;
const SHAPE: [usize; 3] = [8, 64, D];

fn device() -> Device {
    let spec = std::env::var("BENCH_DEVICE").ok();
    lora_core::select_device(spec.as_deref()).expect("BENCH_DEVICE names a compiled backend")
}

fn sync(t: Tensor<3>) {
    let _ = t.into_data();
}

fn ours(device: &Device) -> LoraLinear {
    let base: Linear = LinearConfig::new(D, D).init(device);
    let mut layer = LoraLinear::from_linear(base);
    layer
        .add_adapter("default", LoraConfig::new(RANK).with_init(LoraInit::Random))
        .unwrap();
    layer
}

fn forward(c: &mut Criterion) {
    let device = device();
    let x = Tensor::<3>::random(SHAPE, Distribution::Default, &device);
    let layer = ours(&device);
    let mut merged = layer.clone();
    merged.merge_all().unwrap();
    let base: Linear = LinearConfig::new(D, D).init(&device);
    let burn_lora = base.clone().apply_lora(Lora::new(RANK, RANK as f64));

    let mut group = c.benchmark_group(format!("forward_{D}x{D}_r{RANK}"));
    group.bench_function("base_linear", |b| b.iter(|| sync(base.forward(x.clone()))));
    group.bench_function("lora_unmerged", |b| {
        b.iter(|| sync(layer.forward(x.clone())))
    });
    group.bench_function("lora_merged", |b| {
        b.iter(|| sync(merged.forward(x.clone())))
    });
    group.bench_function("burn_apply_lora", |b| {
        b.iter(|| sync(burn_lora.forward(x.clone())))
    });
    group.finish();
}

fn train_step(c: &mut Criterion) {
    let device = device().autodiff();
    let x = Tensor::<3>::random(SHAPE, Distribution::Default, &device);
    let layer = ours(&device);
    let base: Linear = LinearConfig::new(D, D).init(&device);
    let burn_lora = base.apply_lora(Lora::new(RANK, RANK as f64));

    let mut group = c.benchmark_group(format!("forward_backward_{D}x{D}_r{RANK}"));
    group.bench_function("lora_activation_path", |b| {
        b.iter(|| {
            let grads = layer.forward(x.clone()).sum().backward();
            layer.adapters[0].lora_a.grad(&grads).unwrap().into_data()
        })
    });
    group.bench_function("burn_apply_lora", |b| {
        b.iter(|| {
            let grads = burn_lora.forward(x.clone()).sum().backward();
            let adapter = burn_lora.weight.adapter().unwrap();
            adapter.a.grad(&grads).unwrap().into_data()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = forward, train_step
}
criterion_main!(benches);
