//! Every supported model family against transformers and PEFT, on the tiny random checkpoints
//! of `tests/fixtures/tiny_*` (written by `cargo xtask fixtures`): base logits, PEFT's adapter
//! active, disabled and merged, the adapter tensors written back bit for bit, and, for
//! decoders, greedy continuations with the KV cache.

use std::path::PathBuf;

use burn::tensor::{Device, Int, Tensor, TensorData};
use lora_models::{
    DecoderForCausalLM, Encoder, EncoderConfig, EncoderForSequenceClassification, KvCache,
    ModelSource, SafetensorsWeights, TokenBatch, load_causal_lm, load_sequence_classifier,
};
use lora_surgery::{Adaptable, AdapterFiles, load_adapter, with_adapters_disabled};
use lora_tests::{FixtureTensor, fixtures_dir, max_abs_diff, read_safetensors};

/// The tolerance of a logit comparison: f32 against f32 on the CPU backends, looser on GPUs.
fn tolerance(_device: &Device) -> f32 {
    lora_core::testing::tolerance(1e-4, 1e-3)
}

fn dir(fixture: &str) -> PathBuf {
    fixtures_dir().join(fixture)
}

fn reference(fixture: &str) -> std::collections::BTreeMap<String, FixtureTensor> {
    read_safetensors(&dir(fixture).join("reference.safetensors"))
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

fn assert_close(what: &str, ours: &[f32], theirs: &[f32], tol: f32) {
    let diff = max_abs_diff(ours, theirs);
    assert!(diff <= tol, "{what}: max |Δ| {diff} > {tol}");
}

/// The adapter tensors the model writes back equal PEFT's file, bit for bit.
fn assert_adapter_round_trip<M: Adaptable>(model: &M, fixture: &str) {
    let files = AdapterFiles::read(&dir(fixture).join("adapter")).unwrap();
    let written = lora_surgery::adapter_tensors(model, "default", &files.config).unwrap();
    let written: std::collections::BTreeMap<String, Vec<f32>> = written
        .into_iter()
        .map(|(k, t)| {
            (
                k.trim_start_matches("base_model.model.").to_string(),
                t.data,
            )
        })
        .collect();
    let original: std::collections::BTreeMap<String, Vec<f32>> = files
        .tensors
        .into_iter()
        .map(|(k, t)| (k, t.data))
        .collect();
    assert_eq!(
        written.keys().collect::<Vec<_>>(),
        original.keys().collect::<Vec<_>>(),
        "{fixture}: adapter keys"
    );
    for (k, v) in &original {
        assert!(
            written[k] == *v,
            "{fixture}: {k} is not written back bit for bit"
        );
    }
}

fn check_encoder(fixture: &str, device: &Device) {
    let tol = tolerance(device);
    let r = reference(fixture);
    let shape = r["input_ids"].shape().to_vec();
    let [batch, seq] = [shape[0], shape[1]];
    let ids = r["input_ids"].i64().to_vec();
    let mask = r["attention_mask"].i64().to_vec();
    let types = r
        .get("token_type_ids")
        .map(|t| t.i64().to_vec())
        .unwrap_or_else(|| vec![0; ids.len()]);
    let input = TokenBatch::from_ids(ids, mask.clone(), types, [batch, seq], device).unwrap();

    // The bare encoder (the classifier checkpoint's `{base}.` tensors) on real tokens.
    let source = ModelSource::path(dir(fixture).join("model"));
    let config = lora_models::read_encoder_config(&source).unwrap().unwrap();
    let weights = SafetensorsWeights::open_dir(&dir(fixture).join("model")).unwrap();
    let encoder = Encoder::load(&config, &weights, device).unwrap();
    let hidden = to_vec(encoder.forward(&input).unwrap());
    let reference_hidden = r["last_hidden_state"].f32();
    let d = config.hidden_size;
    for (token, &m) in mask.iter().enumerate() {
        if m == 1 {
            let range = token * d..(token + 1) * d;
            assert_close(
                &format!("{fixture}: last_hidden_state, token {token}"),
                &hidden[range.clone()],
                &reference_hidden[range],
                tol,
            );
        }
    }
    assert_eq!(config_family(&config), fixture_family(fixture));

    let (mut model, _, _) = load_sequence_classifier(&source, device).unwrap();
    let logits = |m: &EncoderForSequenceClassification| to_vec(m.forward(&input).unwrap());
    assert_close(
        &format!("{fixture}: base"),
        &logits(&model),
        r["logits_base"].f32(),
        tol,
    );
    load_adapter(&mut model, &dir(fixture).join("adapter"), "default").unwrap();
    assert_close(
        &format!("{fixture}: adapter active"),
        &logits(&model),
        r["logits_adapter_active"].f32(),
        tol,
    );
    let disabled = with_adapters_disabled(&mut model, |m| logits(m)).unwrap();
    assert_close(
        &format!("{fixture}: adapter disabled"),
        &disabled,
        r["logits_adapter_disabled"].f32(),
        tol,
    );
    assert_adapter_round_trip(&model, fixture);
    lora_surgery::merge_and_unload(&mut model).unwrap();
    assert_close(
        &format!("{fixture}: merged"),
        &logits(&model),
        r["logits_merged"].f32(),
        tol,
    );
}

fn config_family(config: &EncoderConfig) -> &'static str {
    config.family.model_type()
}

fn fixture_family(fixture: &str) -> String {
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir(fixture).join("reference.json")).unwrap(),
    )
    .unwrap();
    json["family"].as_str().unwrap().to_string()
}

fn ids_tensor(ids: &[i64], device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(TensorData::new(ids.to_vec(), [1, ids.len()]), device)
}

/// Greedy decoding with the KV cache, `n` tokens, end-of-sequence ignored (as the fixtures
/// were made).
fn greedy(model: &DecoderForCausalLM, prompt: &[i64], n: usize, device: &Device) -> Vec<i64> {
    let mut cache = KvCache::new();
    let mut sequence: Vec<u32> = prompt.iter().map(|&t| t as u32).collect();
    let mut out = Vec::new();
    for _ in 0..n {
        let logits = to_vec(model.next_logits(&sequence, &mut cache, device).unwrap());
        let token = lora_tests::argmax(&logits);
        out.push(token as i64);
        sequence.push(token as u32);
    }
    out
}

fn check_decoder(fixture: &str, device: &Device) {
    let tol = tolerance(device);
    let r = reference(fixture);
    let (mut model, _) =
        load_causal_lm(&ModelSource::path(dir(fixture).join("model")), device).unwrap();
    assert_eq!(model.config().family.model_type(), fixture_family(fixture));
    let prompts: Vec<Vec<i64>> = (0..2)
        .map(|i| r[&format!("prompt{i}.input_ids")].i64().to_vec())
        .collect();
    let logits =
        |m: &DecoderForCausalLM, p: &[i64]| to_vec(m.forward(ids_tensor(p, device)).unwrap());
    for (i, p) in prompts.iter().enumerate() {
        let what = format!("{fixture} prompt {i}");
        assert_close(
            &format!("{what}: base"),
            &logits(&model, p),
            r[&format!("prompt{i}.logits_base")].f32(),
            tol,
        );
        assert_eq!(
            greedy(&model, p, 8, device),
            r[&format!("prompt{i}.greedy_base")].i64(),
            "{what}: greedy base continuation"
        );
    }
    let loaded = load_adapter(&mut model, &dir(fixture).join("adapter"), "default").unwrap();
    assert_eq!(
        loaded.config.fan_in_fan_out,
        model.fan_in_fan_out(),
        "{fixture}: fan_in_fan_out"
    );
    for (i, p) in prompts.iter().enumerate() {
        let what = format!("{fixture} prompt {i}");
        assert_close(
            &format!("{what}: adapter active"),
            &logits(&model, p),
            r[&format!("prompt{i}.logits_adapter_active")].f32(),
            tol,
        );
        assert_eq!(
            greedy(&model, p, 8, device),
            r[&format!("prompt{i}.greedy_adapter")].i64(),
            "{what}: greedy adapter continuation"
        );
        let disabled = with_adapters_disabled(&mut model, |m| logits(m, p)).unwrap();
        assert_close(
            &format!("{what}: adapter disabled"),
            &disabled,
            r[&format!("prompt{i}.logits_adapter_disabled")].f32(),
            tol,
        );
    }
    assert_adapter_round_trip(&model, fixture);
    lora_surgery::merge_and_unload(&mut model).unwrap();
    for (i, p) in prompts.iter().enumerate() {
        assert_close(
            &format!("{fixture} prompt {i}: merged"),
            &logits(&model, p),
            r[&format!("prompt{i}.logits_merged")].f32(),
            tol,
        );
    }
}

macro_rules! family_tests {
    ($check:ident: $($name:ident => $fixture:literal),* $(,)?) => {
        $(lora_core::backend_test!(fn $name(device) { $check($fixture, &device); });)*
    };
}

family_tests!(check_encoder:
    bert_matches_transformers_and_peft => "tiny_bert",
    roberta_matches_transformers_and_peft => "tiny_roberta",
    xlm_roberta_matches_transformers_and_peft => "tiny_xlm_roberta",
    distilbert_matches_transformers_and_peft => "tiny_distilbert",
);

family_tests!(check_decoder:
    llama_matches_transformers_and_peft => "tiny_llama",
    llama_rope_llama3_matches_transformers_and_peft => "tiny_llama_rope_llama3",
    llama_rope_linear_matches_transformers_and_peft => "tiny_llama_rope_linear",
    gpt2_matches_transformers_and_peft => "tiny_gpt2",
    qwen2_matches_transformers_and_peft => "tiny_qwen2",
    qwen2_rope_yarn_matches_transformers_and_peft => "tiny_qwen2_rope_yarn",
    qwen3_matches_transformers_and_peft => "tiny_qwen3",
    mistral_matches_transformers_and_peft => "tiny_mistral",
    gemma2_matches_transformers_and_peft => "tiny_gemma2",
    gemma3_matches_transformers_and_peft => "tiny_gemma3",
    phi3_matches_transformers_and_peft => "tiny_phi3",
    phi3_longrope_matches_transformers_and_peft => "tiny_phi3_rope_longrope",
);
