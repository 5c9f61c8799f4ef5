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
