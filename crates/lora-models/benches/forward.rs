//! Forward throughput of the real models on the CPU backends compiled in (`flex`, `ndarray`):
//! MiniLM encoding a batch of 32 sequences of 64 tokens, SmolLM2 reading a 64-token prompt, and
//! one SmolLM2 decode step with a 64-token KV cache. Throughput is in tokens per second.
//!
//! Run with `cargo xtask bench` (weights are fetched through lora-assets on first use).

use burn::tensor::{Device, Int, Tensor, TensorData};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lora_core::Backend;
use lora_models::{KvCache, ModelSource, TokenBatch, load_causal_lm, load_encoder};

fn cpu_devices() -> Vec<(Backend, Device)> {
    [Backend::Flex, Backend::NdArray]
        .into_iter()
        .filter(|b| b.is_compiled())
        .map(|b| (b, b.device().expect("CPU backends always open")))
        .collect()
}

fn asset(name: &str) -> std::path::PathBuf {
    lora_assets::AssetCache::from_env()
        .fetch(name)
        .unwrap_or_else(|e| panic!("{e}"))
        .main
}

fn ids(batch: usize, seq: usize, vocab: usize, device: &Device) -> Tensor<2, Int> {
    let data: Vec<i64> = (0..batch * seq)
        .map(|i| (i * 7919 % (vocab - 1000) + 1000) as i64)
        .collect();
    Tensor::from_data(TensorData::new(data, [batch, seq]), device)
}

fn minilm(c: &mut Criterion) {
    let path = asset("minilm");
    let (batch, seq) = (32, 64);
    let mut group = c.benchmark_group("minilm_forward_b32_s64");
    group.throughput(Throughput::Elements((batch * seq) as u64));
    group.sample_size(10);
    for (backend, device) in cpu_devices() {
        let (model, _) = load_encoder(&ModelSource::path(&path), &device).unwrap();
        let input_ids = ids(batch, seq, model.config().vocab_size, &device);
        let input = TokenBatch {
            attention_mask: input_ids.ones_like(),
            token_type_ids: input_ids.zeros_like(),
            input_ids,
        };
        group.bench_function(backend.name(), |b| {
            b.iter(|| model.forward(&input).unwrap().into_data())
        });
    }
    group.finish();
}

fn smollm2(c: &mut Criterion) {
    let path = asset("smollm2");
    let seq = 64;
    let mut prefill = c.benchmark_group("smollm2_prefill_s64");
    prefill.throughput(Throughput::Elements(seq as u64));
    prefill.sample_size(10);
    let models: Vec<_> = cpu_devices()
        .into_iter()
        .map(|(backend, device)| {
            let (model, _) = load_causal_lm(&ModelSource::path(&path), &device).unwrap();
            (backend, device, model)
        })
        .collect();
    for (backend, device, model) in &models {
        let input = ids(1, seq, model.config().vocab_size, device);
        prefill.bench_function(backend.name(), |b| {
            b.iter(|| model.forward(input.clone()).unwrap().into_data())
        });
    }
    prefill.finish();

    let mut decode = c.benchmark_group("smollm2_decode_step_after_64");
    decode.throughput(Throughput::Elements(1));
    decode.sample_size(20);
    for (backend, device, model) in &models {
        let mut cache = KvCache::new();
        model
            .forward_cached(ids(1, seq, model.config().vocab_size, device), &mut cache)
            .unwrap();
        let next = ids(1, 1, model.config().vocab_size, device);
        decode.bench_function(backend.name(), |b| {
            b.iter(|| {
                let mut step = cache.clone();
                model
                    .forward_cached(next.clone(), &mut step)
                    .unwrap()
                    .into_data()
            })
        });
    }
    decode.finish();
}

criterion_group!(benches, minilm, smollm2);
criterion_main!(benches);
