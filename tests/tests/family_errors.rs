//! Checkpoints the loaders must refuse, made by breaking copies of the tiny fixtures: an
//! unsupported `model_type`, an unsupported `rope_scaling` type, a missing tensor and a misshapen
//! one. Each is one clear error naming the field or tensor and what is supported; never a panic
//! and never a silent default.

use std::path::{Path, PathBuf};

use lora_core::io::{HostTensor, SaveDtype, named_safetensors_bytes, read_safetensors};
use lora_models::{ModelSource, load_causal_lm, load_sequence_classifier};
use lora_tests::fixtures_dir;

/// A copy of a fixture's model directory that a test may break.
fn copy_model(fixture: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let to = tmp.path().join("model");
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(fixtures_dir().join(fixture).join("model")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
    (tmp, to)
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
}

fn edit_weights(
    dir: &Path,
    edit: impl FnOnce(&mut std::collections::BTreeMap<String, HostTensor>),
) {
    let path = dir.join("model.safetensors");
    let mut tensors = read_safetensors(&path).unwrap();
    edit(&mut tensors);
    std::fs::write(
        &path,
        named_safetensors_bytes(&tensors, SaveDtype::F32).unwrap(),
    )
    .unwrap();
}

fn decoder_error(dir: &Path) -> String {
    let device = lora_core::select_device(Some("flex")).unwrap();
    match load_causal_lm(&ModelSource::path(dir), &device) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

fn encoder_error(dir: &Path) -> String {
    let device = lora_core::select_device(Some("flex")).unwrap();
    match load_sequence_classifier(&ModelSource::path(dir), &device) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn an_unsupported_model_type_names_the_supported_ones() {
    let (_tmp, dir) = copy_model("tiny_qwen2");
    edit_config(&dir, |c| c["model_type"] = "mamba".into());
    let message = decoder_error(&dir);
    assert!(message.contains("\"mamba\""), "{message}");
    for family in [
        "llama",
        "mistral",
        "qwen2",
        "qwen3",
        "gemma2",
        "gemma3_text",
        "phi3",
        "gpt2",
    ] {
        assert!(message.contains(family), "{family} missing from: {message}");
    }
    // Where the family is not known yet (`lora inspect`, `lora train`), every family is listed.
    let message = lora_models::ModelSource::path(&dir)
        .family()
        .unwrap_err()
        .to_string();
    for family in [
        "llama",
        "gpt2",
        "bert",
        "roberta",
        "xlm-roberta",
        "distilbert",
    ] {
        assert!(message.contains(family), "{family} missing from: {message}");
    }
}

#[test]
fn an_unsupported_rope_scaling_type_is_refused_by_name() {
    let unsupported =
        serde_json::json!({"rope_type": "proportional", "factor": 2.0, "rope_theta": 1e4});
    // transformers 5's `rope_parameters`, and the legacy `rope_scaling` on its own.
    for field in ["rope_parameters", "rope_scaling"] {
        let (_tmp, dir) = copy_model("tiny_llama");
        edit_config(&dir, |c| {
            c.as_object_mut().unwrap().remove("rope_parameters");
            c[field] = unsupported.clone();
        });
        let message = decoder_error(&dir);
        assert!(message.contains("proportional"), "{field}: {message}");
        for supported in ["linear", "dynamic", "llama3", "yarn", "longrope"] {
            assert!(
                message.contains(supported),
                "{supported} missing from: {message}"
            );
        }
    }
    // Both, disagreeing: neither is silently dropped.
    let (_tmp, dir) = copy_model("tiny_llama");
    edit_config(&dir, |c| c["rope_scaling"] = unsupported.clone());
    let message = decoder_error(&dir);
    assert!(
        message.contains("rope_scaling") && message.contains("rope_parameters"),
        "{message}"
    );
}

#[test]
fn a_missing_tensor_is_named() {
    let key = "model.layers.1.mlp.down_proj.weight";
    let (_tmp, dir) = copy_model("tiny_mistral");
    edit_weights(&dir, |t| {
        assert!(t.remove(key).is_some(), "the fixture has {key}");
    });
    let message = decoder_error(&dir);
    assert!(message.contains(key), "{message}");

    let key = "distilbert.transformer.layer.0.attention.q_lin.weight";
    let (_tmp, dir) = copy_model("tiny_distilbert");
    edit_weights(&dir, |t| {
        assert!(t.remove(key).is_some(), "the fixture has {key}");
    });
    let message = encoder_error(&dir);
    assert!(message.contains("attention.q_lin.weight"), "{message}");
}

#[test]
fn a_misshapen_tensor_is_named_with_both_shapes() {
    let key = "model.layers.0.self_attn.k_proj.weight";
    let (_tmp, dir) = copy_model("tiny_qwen3");
    let mut shape = Vec::new();
    edit_weights(&dir, |t| {
        let tensor = t.get_mut(key).expect("the fixture has the tensor");
        shape = tensor.shape.clone();
        // One output row fewer: the element count changes with the shape.
        let cols = tensor.shape[1];
        tensor.shape[0] -= 1;
        tensor.data.truncate(tensor.shape[0] * cols);
    });
    let message = decoder_error(&dir);
    assert!(message.contains(key), "{message}");
    let expected = format!("{shape:?}");
    assert!(
        message.contains(&expected) || message.contains(&format!("{}, {}", shape[0], shape[1])),
        "{expected} missing from: {message}"
    );

    let key = "roberta.encoder.layer.1.attention.self.value.weight";
    let (_tmp, dir) = copy_model("tiny_roberta");
    edit_weights(&dir, |t| {
        let tensor = t.get_mut(key).expect("the fixture has the tensor");
        tensor.shape.reverse();
        let [rows, cols] = [tensor.shape[0], tensor.shape[1]];
        if rows == cols {
            tensor.shape = vec![rows / 2, cols * 2];
        }
    });
    let message = encoder_error(&dir);
    assert!(message.contains("attention.self.value.weight"), "{message}");
}
