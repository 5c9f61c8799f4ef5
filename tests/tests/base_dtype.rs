//! A frozen base held in half precision or quantized (`--base-dtype`), on the real SmolLM2-135M
//! with PEFT's own adapter: the logits equal those of the same model holding the widened
//! weights in f32 (the only change is the weights' rounding), that rounding's effect on the
//! logits is measured against PEFT's f32 base, the adapter saved from the quantized model merges onto the f32 base with PEFT's
//! merged logits, merging into a quantized base is refused, and training on a quantized base
//! takes the same steps through Burn's autodiff as on its widened f32 copy.

use std::path::PathBuf;

use burn::tensor::{Distribution, Tensor};
use lora_core::{BaseDType, LoraConfig, LoraInit, LoraLinearConfig, ParamBytes};
use lora_models::{ModelSource, load_causal_lm, load_causal_lm_as};
use lora_surgery::{Adaptable, load_adapter, save_adapter};
use lora_tests::{
    FixtureTensorExt, asset, fixtures_dir, max_abs_diff, read_fixture, trainable_ids,
};

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

/// `max |a - b| / max |b|`.
fn relative(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    max_abs_diff(a, b) / scale
}

/// `‖a - b‖₂ / ‖b‖₂`.
fn relative_l2(a: &[f32], b: &[f32]) -> f32 {
    let diff: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let norm: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (diff / norm).sqrt() as f32
}

/// The backend under test.
fn backend(device: &burn::tensor::Device) -> lora_core::Backend {
    lora_core::Backend::of_device(device).expect("a known backend")
}

fn adapter_dir() -> PathBuf {
    fixtures_dir().join("smollm2/adapter")
}

lora_core::backend_test!(fn smollm2_adapter_on_a_stored_base_matches_the_f32_base(device) {
    let fixture = read_fixture("smollm2/smollm2.safetensors");
    let ids: Vec<u32> = fixture["prompt0.input_ids"].i64().iter().map(|&t| t as u32).collect();
    let reference = fixture["prompt0.lora_last_logits"].f32();
    let source = ModelSource::path(asset("smollm2"));
    let mut f32_bytes = 0;
    for (dtype, bound) in [
        (BaseDType::F32, 1e-5),
        (BaseDType::Bf16, 1e-2),
        (BaseDType::F16, 1e-3),
        (BaseDType::Q8, 5e-2),
        // Round-to-nearest 4-bit blocks are coarse for a 135M model (measured 1.23): training an
        // adapter on the quantized base (QLoRA) recovers it; see docs/results.md.
        (BaseDType::Q4, 1.5),
    ] {
        if !dtype.supported_on(backend(&device)) {
            let err = load_causal_lm_as(&source, dtype, &device).err().unwrap().to_string();
            assert!(err.contains("cannot hold the base weights"), "{dtype}: {err}");
            println!("{dtype}: refused on {} as it should be: {err}", backend(&device));
            continue;
        }
        let (mut model, _) = load_causal_lm_as(&source, dtype, &device).unwrap();
        let bytes = ParamBytes::of(&model).frozen;
        if dtype == BaseDType::F32 {
            f32_bytes = bytes;
        } else {
            // Every linear except the (tied) head changed form; embeddings and norms did not.
            assert!(bytes < f32_bytes * 3 / 4, "{dtype}: {bytes} of {f32_bytes} bytes");
        }
        load_adapter(&mut model, &adapter_dir(), "default").unwrap();
        let mut cache = lora_models::KvCache::new();
        let ids_t = lora_models::decoder::ids_tensor(&ids, &device);
        let logits = to_vec(model.forward_cached(ids_t, &mut cache).unwrap());
        let error = relative_l2(&logits, reference);
        println!(
            "{dtype}: adapter logits within {error:.2e} (relative L2; max {:.2e} of the largest) \
             of PEFT's on the f32 base",
            relative(&logits, reference)
        );
        assert!(error < bound, "{dtype}: relative L2 error {error} >= {bound}");
        // What is left is the rounding of the weights alone: the same model holding the
        // widened weights in f32 computes the same logits.
        let mut widened = model.clone();
        lora_surgery::store_base_as(&mut widened, BaseDType::F32).unwrap();
        let mut cache = lora_models::KvCache::new();
        let ids_t = lora_models::decoder::ids_tensor(&ids, &device);
        let exact = to_vec(widened.forward_cached(ids_t, &mut cache).unwrap());
        let rounding = relative_l2(&logits, &exact);
        assert!(rounding < 1e-5, "{dtype}: differs from its widened f32 copy by {rounding}");

        if dtype == BaseDType::Q8 {
            // Merging into the quantized base is refused, naming the way out.
            let (name, linear) = model.linears_mut().into_iter().next().unwrap();
            let err = linear.merge("default").unwrap_err().to_string();
            assert!(err.contains("stored as q8") && err.contains("--base-dtype f32"), "{name}: {err}");

            // The adapter saved from the quantized model merges onto the f32 base exactly as
            // PEFT's merged model computes.
            let out = tempfile::tempdir().unwrap();
            let config = lora_surgery::AdapterFiles::read(&adapter_dir()).unwrap().config;
            save_adapter(&model, "default", &config, out.path()).unwrap();
            let (mut base, _) = load_causal_lm(&source, &device).unwrap();
            load_adapter(&mut base, out.path(), "default").unwrap();
            for (_, linear) in base.linears_mut() {
                linear.merge_all().unwrap();
            }
            let mut cache = lora_models::KvCache::new();
            let ids_t = lora_models::decoder::ids_tensor(&ids, &device);
            let merged = to_vec(base.forward_cached(ids_t, &mut cache).unwrap());
            let diff = max_abs_diff(&merged, fixture["prompt0.merged_last_logits"].f32());
            assert!(diff < 1e-3, "merged on the f32 base: {diff}");
        }
    }
});

lora_core::backend_test!(fn stored_base_backward_equals_the_widened_f32_base(device) {
    let _draws = RANDOM_DRAWS.lock().unwrap_or_else(|e| e.into_inner());
    // The patched autodiff keeps the stored weight for the backward pass: gradients must be
    // those of an f32 layer holding the widened weight, for the input and the adapter alike.
    let ad = device.clone().autodiff();
    for dtype in [BaseDType::F16, BaseDType::Bf16, BaseDType::Q8, BaseDType::Q4] {
        if !dtype.supported_on(backend(&device)) {
            let mut layer = LoraLinearConfig::new(64, 48).init(&ad);
            assert!(layer.store_base_as(dtype).is_err());
            continue;
        }
        let mut stored = LoraLinearConfig::new(64, 48).init(&ad);
        stored
            .add_adapter("a", LoraConfig::new(4).with_init(LoraInit::Random))
            .unwrap();
        stored.store_base_as(dtype).unwrap();
        assert_eq!(stored.base_dtype(), dtype);
        let mut widened = stored.clone();
        widened.store_base_as(BaseDType::F32).unwrap();

        let x = Tensor::<3>::random([2, 5, 64], Distribution::Default, &ad);
        let grads_of = |layer: &lora_core::LoraLinear| {
            let x = x.clone().require_grad();
            let y = layer.forward(x.clone());
            let loss = (y.clone() * y.clone()).sum();
            let grads = loss.backward();
            assert!(layer.weight.grad(&grads).is_none(), "the base received a gradient");
            (
                to_vec(y),
                to_vec(x.grad(&grads).unwrap()),
                to_vec(layer.adapters[0].lora_a.grad(&grads).unwrap()),
            )
        };
        let (y_s, dx_s, da_s) = grads_of(&stored);
        let (y_w, dx_w, da_w) = grads_of(&widened);
        for (what, a, b) in [("output", &y_s, &y_w), ("input grad", &dx_s, &dx_w), ("A grad", &da_s, &da_w)] {
            let error = relative(a, b);
            assert!(error < 1e-5, "{dtype} {what}: relative {error}");
        }
    }
});

/// Held by the tests that draw random numbers: WGPU's generator is one per process (cubecl's),
/// so a test running beside another would see its seeded draws interleaved.
static RANDOM_DRAWS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The trainable parameters' ids of `model`.
/// Backpropagates `head`'s loss through `model` once through one graph (each layer seeded as
/// the layer-wise pass seeds it, so dropout draws the same masks) and once layer by layer with
/// `rows_per_chunk` batch rows per head chunk, and checks that the loss and every trainable
/// parameter's gradient agree.
fn layerwise_matches_one_graph<M: lora_train::layerwise::LayerStack>(
    model: &M,
    input: &M::Input,
    head: &dyn Fn(Tensor<3>, std::ops::Range<usize>) -> Tensor<1>,
    rows_per_chunk: usize,
    device: &burn::tensor::Device,
) {
    use lora_train::layerwise::{backward_by_layers, pass_seed, seed_layer};
    use lora_train::optim::AccumulatedGrads;
    let weight = 0.5;
    device.sync().unwrap();
    device.seed(11);
    let seed = pass_seed(device);
    let (mut x, pass) = model.begin(input).unwrap();
    for (i, layer) in model.layers().iter().enumerate() {
        seed_layer(device, seed, i);
        x = model.layer_forward(i, layer, x, &pass);
    }
    let x = model.head_input(x, &pass);
    let rows = x.dims()[0];
    let loss = head(x, 0..rows);
    let expected_loss = loss.clone().into_scalar::<f32>() as f64;
    let mut expected = AccumulatedGrads::new();
    expected.add(model, loss.mul_scalar(weight).backward());

    device.sync().unwrap();
    device.seed(11);
    let mut layerwise = AccumulatedGrads::new();
    let mut chunk_loss = |x: Tensor<3>, rows: std::ops::Range<usize>| Ok(head(x, rows));
    let value = backward_by_layers(
        model,
        input,
        weight,
        rows_per_chunk,
        &mut chunk_loss,
        &mut layerwise,
    )
    .unwrap();
    assert!(
        (value - expected_loss).abs() < 1e-5 * expected_loss.abs().max(1.0),
        "loss {value} vs {expected_loss}"
    );
    let ids = trainable_ids(model);
    assert!(!ids.is_empty());
    for id in ids {
        let a = to_vec(expected.get(&id).expect("a gradient in one graph").clone());
        let b = to_vec(
            layerwise
                .get(&id)
                .expect("a gradient layer by layer")
                .clone(),
        );
        let scale = a.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(scale > 0.0, "a zero gradient checks nothing");
        let error = relative(&b, &a);
        assert!(
            error < 1e-4,
            "parameter {id}: layer-wise gradient differs by {error} (relative)"
        );
    }
}

lora_core::backend_test!(fn layerwise_recomputation_gives_one_graphs_gradients(device) {
    let _draws = RANDOM_DRAWS.lock().unwrap_or_else(|e| e.into_inner());
    // A decoder with LoRA (random B, dropout on) on q_proj / v_proj, its base stored as q8
    // where the backend can; three rows, one of them padded; cross-entropy on every position.
    let device = device.clone().autodiff();
    let source = ModelSource::path(fixtures_dir().join("tiny_llama/model"));
    let (mut model, _) = load_causal_lm(&source, &device).unwrap();
    if BaseDType::Q8.supported_on(backend(&device)) {
        lora_surgery::store_base_as(&mut model, BaseDType::Q8).unwrap();
    }
    let method = lora_train::Method::Lora {
        lora: LoraConfig::new(4).with_dropout(0.3).with_init(LoraInit::Random),
        targets: lora_surgery::TargetSpec {
            target_modules: Some(lora_surgery::ModulePattern::list(&["q_proj", "v_proj"])),
            ..Default::default()
        },
    };
    let model = lora_train::prepare_causal_lm(model, &method, 7, &device).unwrap();
    let ids: Vec<i64> = (0..21).map(|i| (i * 37 % 250 + 3) as i64).collect();
    let input_ids = Tensor::<2, burn::tensor::Int>::from_data(burn::tensor::TensorData::new(ids.clone(), [3, 7]), &device);
    let mut batch = lora_models::DecoderBatch::ids(input_ids);
    batch.key_padding = vec![vec![true; 7], vec![true; 7], vec![true, true, true, true, true, false, false]];
    let targets = Tensor::<2, burn::tensor::Int>::from_data(burn::tensor::TensorData::new(ids.iter().map(|t| (t * 3 + 1) % 250).collect::<Vec<i64>>(), [3, 7]), &device);
    let head = |x: Tensor<3>, rows: std::ops::Range<usize>| {
        let logits = model.logits(model.norm.forward(x));
        let [k, s, v] = logits.dims();
        let t = targets.clone().slice([rows, 0..7]).reshape([k * s]);
        lora_train::task::nll_per_row(logits.reshape([k * s, v]), t).sum().div_scalar(21.0)
    };
    // One row per head chunk: the logits exist a row at a time.
    layerwise_matches_one_graph(&model, &batch, &head, 1, &device);
});

lora_core::backend_test!(fn layerwise_recomputation_reaches_trained_embeddings(device) {
    let _draws = RANDOM_DRAWS.lock().unwrap_or_else(|e| e.into_inner());
    // Full fine-tuning of an encoder classifier: the embeddings, every layer and the head train
    // (hidden dropout on), so the gradient goes back into the embeddings' own graph.
    let device = device.clone().autodiff();
    let source = ModelSource::path(fixtures_dir().join("tiny_bert/model"));
    let (encoder, _) = lora_models::load_encoder(&source, &device).unwrap();
    let model = lora_train::prepare_classifier(encoder, 3, &lora_train::Method::FullFineTuning, 5, &device).unwrap();
    let ids: Vec<i64> = (0..12).map(|i| (i * 13 % 90 + 5) as i64).collect();
    let mut mask = vec![1i64; 12];
    mask[10] = 0;
    mask[11] = 0;
    let batch = lora_train::TokenBatch::from_ids(ids, mask, vec![0; 12], [2, 6], &device).unwrap();
    let labels = Tensor::<1, burn::tensor::Int>::from_data(burn::tensor::TensorData::new(vec![2i64, 0], [2]), &device);
    let head = |x: Tensor<3>, rows: std::ops::Range<usize>| {
        let logits = model.head(x).unwrap();
        lora_train::task::nll_per_row(logits, labels.clone().slice([rows])).sum().div_scalar(2.0)
    };
    // The classifier's head has dropout of its own: one chunk, so it draws one graph's mask.
    layerwise_matches_one_graph(&model, &batch, &head, 2, &device);
});

lora_core::backend_test!(fn gguf_q8_0_and_q4_0_files_keep_their_blocks(device) {
    // GGUF Q8_0 / Q4_0 blocks are 32 integers along the input axis with one scale (Q4_0's
    // `(q - 8)·d` spans -8..7 with a scale of either sign): kept as q8 / q4 they load value for
    // value, without being expanded to f32 and rounded again, so the logits equal those of the
    // file's blocks expanded to f32. Q4_0 needs the full -8..7 range: rounding the expanded
    // weights to q4 again (-7..7) would change them.
    for (file, dtype) in [("model.q8_0.gguf", BaseDType::Q8), ("model.q4_0.gguf", BaseDType::Q4)] {
        let source = ModelSource::path(fixtures_dir().join("tiny_llama").join(file));
        if !dtype.supported_on(backend(&device)) {
            let err = load_causal_lm_as(&source, dtype, &device).err().unwrap().to_string();
            assert!(err.contains("cannot hold the base weights"), "{file}: {err}");
            println!("{file} as {dtype}: refused on {} as it should be", backend(&device));
            continue;
        }
        let (expanded, _) = load_causal_lm(&source, &device).unwrap();
        let (kept, _) = load_causal_lm_as(&source, dtype, &device).unwrap();
        let mut kept_layers = 0;
        let heads = kept.output_heads();
        for ((name, a), (_, b)) in expanded.linears().into_iter().zip(kept.linears()) {
            if heads.contains(&name) {
                assert_eq!(b.base_dtype(), BaseDType::F32, "{file}: the head {name} stays f32");
                continue;
            }
            assert_eq!(b.base_dtype(), dtype, "{file}: {name}");
            kept_layers += 1;
            let diff = max_abs_diff(&to_vec(a.base_weight_f32()), &to_vec(b.base_weight_f32()));
            assert!(diff <= 1e-6, "{file} {name}: the kept blocks differ from the file's by {diff}");
        }
        // Two layers of q, k, v, o, gate, up and down (Llama's q/k rows un-permuted as blocks).
        assert_eq!(kept_layers, 14, "{file}");
        let ids: Vec<u32> = (1..17).collect();
        let run = |model: &lora_models::DecoderForCausalLM| {
            let mut cache = lora_models::KvCache::new();
            to_vec(model.forward_cached(lora_models::decoder::ids_tensor(&ids, &device), &mut cache).unwrap())
        };
        let error = relative(&run(&kept), &run(&expanded));
        assert!(error < 1e-5, "{file}: logits differ by {error} (relative)");
        println!("{file} kept as {dtype}: {kept_layers} layers, logits within {error:.1e} of the expanded file");
    }
});
