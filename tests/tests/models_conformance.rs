//! The models against Hugging Face transformers, on the real pre-trained weights (fetched through
//! `lora-assets`) and the reference outputs in `tests/fixtures`.

use burn::tensor::Tensor;
use lora_models::{GenerationConfig, ModelSource, load_causal_lm, load_encoder, mean_pool};
use lora_tests::{FixtureTensorExt, argmax, asset, fixture_sentences, max_abs_diff, read_fixture};

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

lora_core::backend_test!(fn minilm_matches_transformers(device) {
    let fixture = read_fixture("bert_minilm/bert_minilm.safetensors");
    let (model, tokenizer) = load_encoder(&ModelSource::path(asset("minilm")), &device).unwrap();
    let sentences = fixture_sentences();
    let texts: Vec<(&str, Option<&str>)> = sentences.iter().map(|s| (s.as_str(), None)).collect();
    let batch = lora_data::encode_batch(&tokenizer, &texts, 0).unwrap();

    // Tokenization: ids, mask and token types equal, padded right to the longest sentence.
    assert_eq!([batch.batch, batch.seq], [4, 17]);
    assert_eq!(batch.input_ids, fixture["input_ids"].i64());
    assert_eq!(batch.attention_mask, fixture["attention_mask"].i64());
    assert_eq!(batch.token_type_ids, fixture["token_type_ids"].i64());

    let input = lora_train::token_batch(&batch, &device).unwrap();
    let hidden = model.forward(&input).unwrap();
    let ours = to_vec(hidden.clone());
    let theirs = fixture["last_hidden_state"].f32();
    let d = 384;
    let mut worst = 0.0f32;
    for (token, &mask) in batch.attention_mask.iter().enumerate() {
        if mask == 1 {
            let range = token * d..(token + 1) * d;
            worst = worst.max(max_abs_diff(&ours[range.clone()], &theirs[range]));
        }
    }
    assert!(worst < 1e-4, "last_hidden_state differs by {worst} on valid tokens");

    let pooled = mean_pool(hidden, input.attention_mask.clone());
    let diff = max_abs_diff(&to_vec(pooled.clone()), fixture["mean_pooled"].f32());
    assert!(diff < 1e-4, "mean pooling differs by {diff}");
    let norm = pooled.clone().powi_scalar(2).sum_dim(1).sqrt();
    let normalized = to_vec(pooled / norm);
    let diff = max_abs_diff(&normalized, fixture["mean_pooled_l2norm"].f32());
    assert!(diff < 1e-4, "normalized embedding differs by {diff}");
});

lora_core::backend_test!(fn minilm_runs_its_layers_on_real_tokens_only(device) {
    // The four fixture sentences padded to 17 tokens hold 45 real ones: the encoder packs them
    // (`EncoderPass`). Against the same layers run on the padded layout: equal hidden states
    // at real positions, zeros at padding, and (full fine-tuning, dropout off) the same loss
    // and gradients, through Burn's autodiff of the packing's gathers and scatters, in one
    // graph and layer by layer (`--checkpoint-activations`).
    let (encoder, tokenizer) = load_encoder(&ModelSource::path(asset("minilm")), &device).unwrap();
    let sentences = fixture_sentences();
    let texts: Vec<(&str, Option<&str>)> = sentences.iter().map(|s| (s.as_str(), None)).collect();
    let batch = lora_data::encode_batch(&tokenizer, &texts, 0).unwrap();
    let real = batch.attention_mask.iter().filter(|&&m| m == 1).count();
    assert!(real < batch.batch * batch.seq, "the batch must hold padding");

    let input = lora_train::token_batch(&batch, &device).unwrap();
    let pass = encoder.pass(&input, true).unwrap();
    assert_eq!(pass.packing.as_ref().map(|p| p.tokens()), Some(real));
    let packed = to_vec(encoder.forward(&input).unwrap());
    let dense = {
        let pass = encoder.pass(&input, false).unwrap();
        assert!(pass.packing.is_none());
        let mut x = encoder.embed(&input);
        for layer in &encoder.layers {
            x = encoder.layer_forward(layer, x, &pass);
        }
        to_vec(x)
    };
    let d = encoder.config().hidden_size;
    for (token, &mask) in batch.attention_mask.iter().enumerate() {
        let range = token * d..(token + 1) * d;
        if mask == 1 {
            let diff = max_abs_diff(&packed[range.clone()], &dense[range]);
            assert!(diff < 1e-5, "token {token}: packed and padded layouts differ by {diff}");
        } else {
            assert!(packed[range].iter().all(|&v| v == 0.0), "padding token {token} is not zero");
        }
    }

    let device = device.clone().autodiff();
    let (encoder, _) = load_encoder(&ModelSource::path(asset("minilm")), &device).unwrap();
    let mut model = lora_train::prepare_classifier(encoder, 2, &lora_train::Method::FullFineTuning, 3, &device).unwrap();
    model.dropout.prob = 0.0;
    model.encoder.embeddings.dropout.prob = 0.0;
    for layer in &mut model.encoder.layers {
        layer.dropout.prob = 0.0;
        layer.attention_dropout.prob = 0.0;
    }
    let input = lora_train::token_batch(&batch, &device).unwrap();
    let labels = Tensor::<1, burn::tensor::Int>::from_data(burn::tensor::TensorData::new(vec![1i64, 0, 0, 1], [4]), &device);
    let backward = |recompute: bool| {
        let mut grads = lora_train::optim::AccumulatedGrads::new();
        let loss = lora_train::task::classification_backward(&model, &input, labels.clone(), 1.0, recompute, &mut grads).unwrap();
        (loss, grads)
    };
    // The reference: one graph through the padded layout.
    let (dense_loss, dense) = {
        let pass = model.encoder.pass(&input, false).unwrap();
        let mut x = model.encoder.embed(&input);
        for layer in &model.encoder.layers {
            x = model.encoder.layer_forward(layer, x, &pass);
        }
        let loss = lora_train::task::nll_per_row(model.head(x).unwrap(), labels.clone()).mean();
        let value = loss.clone().into_scalar::<f32>() as f64;
        let mut grads = lora_train::optim::AccumulatedGrads::new();
        grads.add(&model, loss.backward());
        (value, grads)
    };
    // One graph through the packed layout, and layer by layer (recomputed) through it.
    let (packed_loss, packed) = backward(false);
    let (layerwise_loss, layerwise) = backward(true);
    for loss in [packed_loss, layerwise_loss] {
        assert!((loss - dense_loss).abs() < 1e-5, "loss {loss} against {dense_loss}");
    }
    let ids = lora_tests::trainable_ids(&model);
    assert!(ids.len() > 100, "full fine-tuning trains every tensor");
    for id in ids {
        let b = to_vec(dense.get(&id).expect("a gradient in the padded pass").clone());
        let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(scale > 0.0, "parameter {id}: a zero gradient checks nothing");
        for (how, grads) in [("packed", &packed), ("layer-wise", &layerwise)] {
            let a = to_vec(grads.get(&id).expect("a gradient in every pass").clone());
            let error = max_abs_diff(&a, &b) / scale;
            assert!(error < 1e-4, "parameter {id}: {how} gradient differs by {error} (relative)");
        }
    }
});

/// Greedy continuation of "The capital of France is" (8 tokens) by SmolLM2-135M-Instruct from
/// the Q4_1 GGUF, decoded. Recorded from this implementation after its logits matched the
/// transformers fixture; the first token, " Paris", is the fixture's own argmax.
const GOLDEN_CONTINUATION: &str = " Paris.\n\nThe answer is:";

lora_core::backend_test!(fn smollm2_gguf_matches_transformers(device) {
    let fixture = read_fixture("smollm2/smollm2.safetensors");
    let inputs: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(lora_tests::fixtures_dir().join("smollm2/inputs.json")).unwrap(),
    )
    .unwrap();
    let (model, tokenizer) = load_causal_lm(&ModelSource::path(asset("smollm2")), &device).unwrap();
    for (i, prompt) in inputs["prompts"].as_array().unwrap().iter().enumerate() {
        let prompt = prompt.as_str().unwrap();
        let ids: Vec<u32> = tokenizer.encode(prompt, false).unwrap().get_ids().to_vec();
        let expected: Vec<i64> = fixture[&format!("prompt{i}.input_ids")].i64().to_vec();
        assert_eq!(ids.iter().map(|&t| t as i64).collect::<Vec<_>>(), expected, "prompt {i} ids");

        let logits = model.forward(lora_models::decoder::ids_tensor(&ids, &device)).unwrap();
        let [_, seq, vocab] = logits.dims();
        let all = to_vec(logits);
        let last = &all[(seq - 1) * vocab..];
        let diff = max_abs_diff(last, fixture[&format!("prompt{i}.last_logits")].f32());
        assert!(diff < 1e-3, "prompt {i}: last-position logits differ by {diff}");
        let argmaxes: Vec<i64> = (0..seq)
            .map(|p| argmax(&all[p * vocab..(p + 1) * vocab]) as i64)
            .collect();
        assert_eq!(argmaxes, fixture[&format!("prompt{i}.argmax")].i64(), "prompt {i} argmax");
    }

    // Greedy generation with the KV cache is coherent English and deterministic.
    let prompt = tokenizer.encode("The capital of France is", false).unwrap();
    let config = GenerationConfig { max_new_tokens: 8, ..Default::default() };
    let out = model.generate(prompt.get_ids(), &config, &device).unwrap();
    let text = tokenizer.decode(&out, true).unwrap();
    assert_eq!(text, GOLDEN_CONTINUATION);

    // The KV cache changes nothing: re-running the whole sequence each step picks the same tokens.
    let mut ids = prompt.get_ids().to_vec();
    for _ in 0..out.len() {
        let logits = model.forward(lora_models::decoder::ids_tensor(&ids, &device)).unwrap();
        let [_, seq, vocab] = logits.dims();
        let all = to_vec(logits);
        ids.push(argmax(&all[(seq - 1) * vocab..]) as u32);
    }
    assert_eq!(&ids[prompt.len()..], &out[..]);
});
