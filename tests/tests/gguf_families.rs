//! The decoder fixtures as GGUF files written by llama.cpp's own converter
//! (`tests/fixtures/tiny_*/model.gguf`, `xtask/fixtures/make_gguf_fixtures.py`):
//!
//! - the GGUF *weights* of every family, read through our llama.cpp → Hugging Face name maps
//!   (undoing llama.cpp's Q/K row permutation, Gemma's `1 + w` norms, GPT-2's `Conv1D`
//!   orientation, Phi-3's fused tensors), with the model's `config.json`, give transformers'
//!   logits within 1e-4;
//! - a GGUF file *alone* (configuration and tokenizer from its metadata) loads and matches for
//!   the families whose metadata llama.cpp's converter writes completely; for the others the
//!   converter drops settings (Mistral's sliding window, Gemma 2's `query_pre_attn_scalar`,
//!   Gemma 3's layer types, GPT-2's feed-forward width), and loading either matches or fails with
//!   an error, never a panic.

use std::path::PathBuf;

use burn::tensor::{Device, Int, Tensor, TensorData};
use lora_models::decoder::gguf::GgufDecoderWeights;
use lora_models::{
    ConfigJson, DecoderConfig, DecoderForCausalLM, GgufFile, ModelSource, load_causal_lm,
};
use lora_tests::{FixtureTensor, FixtureTensorExt, fixtures_dir, max_abs_diff, read_safetensors};

const DECODERS: [&str; 12] = [
    "tiny_llama",
    "tiny_llama_rope_linear",
    "tiny_llama_rope_llama3",
    "tiny_mistral",
    "tiny_qwen2",
    "tiny_qwen2_rope_yarn",
    "tiny_qwen3",
    "tiny_gemma2",
    "tiny_gemma3",
    "tiny_phi3",
    "tiny_phi3_rope_longrope",
    "tiny_gpt2",
];

/// The fixtures whose GGUF metadata alone describes the model completely.
const COMPLETE_METADATA: [&str; 4] = [
    "tiny_llama",
    "tiny_llama_rope_linear",
    "tiny_qwen2",
    "tiny_qwen3",
];

fn dir(fixture: &str) -> PathBuf {
    fixtures_dir().join(fixture)
}

fn logits(model: &DecoderForCausalLM, ids: &[i64], device: &Device) -> Vec<f32> {
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids.to_vec(), [1, ids.len()]), device);
    model
        .forward(ids)
        .unwrap()
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap()
}

fn check_base_logits(fixture: &str, model: &DecoderForCausalLM, device: &Device, what: &str) {
    let r: std::collections::BTreeMap<String, FixtureTensor> =
        read_safetensors(&dir(fixture).join("reference.safetensors"));
    for i in 0..2 {
        let ids = r[&format!("prompt{i}.input_ids")].i64().to_vec();
        let diff = max_abs_diff(
            &logits(model, &ids, device),
            r[&format!("prompt{i}.logits_base")].f32(),
        );
        assert!(
            diff <= 1e-4,
            "{fixture} ({what}) prompt {i}: max |Δ| {diff}"
        );
    }
}

#[test]
fn every_family_s_gguf_weights_match_transformers() {
    let device = lora_core::select_device(Some("flex")).unwrap();
    for fixture in DECODERS {
        let config = DecoderConfig::from_config(
            ConfigJson::read(&dir(fixture).join("model/config.json")).unwrap(),
        )
        .unwrap();
        let file = GgufFile::open(&dir(fixture).join("model.gguf")).unwrap();
        let weights = GgufDecoderWeights::new(&file, &config);
        let model = DecoderForCausalLM::load(&config, &weights, &device)
            .unwrap_or_else(|e| panic!("{fixture}: {e}"));
        check_base_logits(fixture, &model, &device, "GGUF weights, config.json");
    }
}

#[test]
fn a_gguf_file_alone_loads_where_its_metadata_is_complete() {
    let device = lora_core::select_device(Some("flex")).unwrap();
    for fixture in DECODERS {
        let source = ModelSource::path(dir(fixture).join("model.gguf"));
        match load_causal_lm(&source, &device) {
            Ok((model, _tokenizer)) if COMPLETE_METADATA.contains(&fixture) => {
                check_base_logits(fixture, &model, &device, "GGUF alone");
            }
            Ok(_) => {}
            Err(e) => {
                assert!(
                    !COMPLETE_METADATA.contains(&fixture),
                    "{fixture} should load from its GGUF alone: {e}"
                );
                assert!(!e.to_string().is_empty());
            }
        }
    }
}

/// `lora export --format gguf` against llama.cpp's own `convert_lora_to_gguf.py` on the same
/// PEFT adapters: the same tensor names, shapes, types and metadata, and the same values, except
/// where the converter is wrong (it drops Qwen2's `alpha_pattern`, which we fold into `lora_b`,
/// and swaps GPT-2's factors, transposed).
#[test]
fn gguf_adapters_match_llama_cpp_s_converter() {
    let device = lora_core::select_device(Some("flex")).unwrap();
    for fixture in DECODERS {
        let (mut model, _) =
            load_causal_lm(&ModelSource::path(dir(fixture).join("model")), &device).unwrap();
        lora_surgery::load_adapter(&mut model, &dir(fixture).join("adapter"), "default").unwrap();
        let ours = lora_models::decoder::gguf_adapter::adapter_gguf(&model, "default")
            .unwrap_or_else(|e| panic!("{fixture}: {e}"));
        let ours = GgufFile::parse(std::path::Path::new("ours.gguf"), ours).unwrap();
        let theirs = GgufFile::open(&dir(fixture).join("adapter.gguf")).unwrap();
        for key in ["general.architecture", "general.type", "adapter.type"] {
            assert_eq!(
                ours.get(key).and_then(|v| v.as_str()),
                theirs.get(key).and_then(|v| v.as_str()),
                "{fixture}: {key}"
            );
        }
        let alpha = |f: &GgufFile| f.get("adapter.lora.alpha").and_then(|v| v.as_f64());
        assert_eq!(
            alpha(&ours),
            alpha(&theirs),
            "{fixture}: adapter.lora.alpha"
        );
        let mut names: Vec<&str> = ours.tensors.iter().map(|t| t.name.as_str()).collect();
        let mut expected: Vec<&str> = theirs.tensors.iter().map(|t| t.name.as_str()).collect();
        names.sort_unstable();
        expected.sort_unstable();
        assert_eq!(names, expected, "{fixture}: tensor names");
        for name in names {
            let (a, b) = (
                ours.read_tensor(name).unwrap(),
                theirs.read_tensor(name).unwrap(),
            );
            if fixture == "tiny_gpt2" {
                // The converter transposes GPT-2's Conv1D delta as a whole, (B·A)ᵀ = Aᵀ·Bᵀ, so
                // its lora_a is our lora_b transposed and the other way round: wrong for
                // llama.cpp, which multiplies lora_a with the input ([r, in]) as for any model
                // (its c_attn factors do not even have the shapes llama.cpp checks).
                let other = if name.ends_with("lora_a") {
                    name.replace("lora_a", "lora_b")
                } else {
                    name.replace("lora_b", "lora_a")
                };
                let swapped = theirs.read_tensor(&other).unwrap().transposed();
                assert_eq!(a.shape, swapped.shape, "{fixture} {name}: shape");
                let diff = max_abs_diff(&a.data, &swapped.data);
                assert!(diff <= 1e-6, "{fixture} {name}: max |Δ| {diff}");
                continue;
            }
            assert_eq!(a.shape, b.shape, "{fixture} {name}: shape");
            let info = |f: &GgufFile| f.tensor_info(name).unwrap().ggml_type.name();
            assert_eq!(info(&ours), info(&theirs), "{fixture} {name}: type");
            if fixture == "tiny_qwen2" && name.ends_with("lora_b") {
                // Its alpha_pattern is folded into our lora_b: the same factor up to a
                // per-layer constant, the ratio of the two scalings.
                let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>();
                let ratio = dot(&a.data, &b.data) / dot(&b.data, &b.data);
                let scaled: Vec<f32> = b.data.iter().map(|v| v * ratio).collect();
                let diff = max_abs_diff(&a.data, &scaled);
                assert!(diff <= 1e-5, "{fixture} {name}: not a multiple ({diff})");
                continue;
            }
            let diff = max_abs_diff(&a.data, &b.data);
            assert!(diff <= 1e-6, "{fixture} {name}: max |Δ| {diff}");
        }
    }
}
