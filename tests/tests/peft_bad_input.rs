//! Adapter files that do not fit, or ask for what we do not do, are refused with errors that
//! name the problem: missing and unexpected keys, shape mismatches, unsupported config fields,
//! an adapter for another base model.

use std::path::Path;

use lora_models::{EncoderForSequenceClassification, ModelSource, load_encoder};
use lora_surgery::{SurgeryError, load_adapter};
use lora_tests::{asset, fixtures_dir};
use safetensors::{SafeTensors, tensor::TensorView};

fn model() -> EncoderForSequenceClassification {
    let device = lora_core::select_device(None).unwrap();
    let (bert, _) = load_encoder(&ModelSource::path(asset("minilm")), &device).unwrap();
    EncoderForSequenceClassification::new(bert, 2, None, &device).unwrap()
}

/// A copy of PEFT's seq-cls adapter with its tensors edited by `edit` and its config by `config`.
fn edited_adapter(
    edit: impl Fn(&mut Vec<(String, Vec<usize>, Vec<u8>)>),
    config: impl Fn(String) -> String,
) -> tempfile::TempDir {
    let src = fixtures_dir().join("peft_bert_seqcls/adapter");
    let bytes = std::fs::read(src.join("adapter_model.safetensors")).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = file
        .tensors()
        .into_iter()
        .map(|(k, v)| (k, v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut tensors);
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(k, s, d)| {
            (
                k.clone(),
                TensorView::new(safetensors::Dtype::F32, s.clone(), d).unwrap(),
            )
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    safetensors::serialize_to_file(views, None, &dir.path().join("adapter_model.safetensors"))
        .unwrap();
    let text = std::fs::read_to_string(src.join("adapter_config.json")).unwrap();
    std::fs::write(dir.path().join("adapter_config.json"), config(text)).unwrap();
    dir
}

fn load(dir: &Path) -> Result<(), SurgeryError> {
    load_adapter(&mut model(), dir, "default").map(|_| ())
}

#[test]
fn missing_and_unexpected_keys_are_named() {
    let missing = "base_model.model.bert.encoder.layer.3.attention.self.value.lora_B.weight";
    let dir = edited_adapter(
        |t| {
            t.retain(|(k, _, _)| k != missing);
            t.push((
                "base_model.model.bert.encoder.layer.3.attention.self.key.lora_A.weight".into(),
                vec![4, 384],
                vec![0; 4 * 384 * 4],
            ));
        },
        |c| c,
    );
    let e = load(dir.path()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("bert.encoder.layer.3.attention.self.value.lora_B.weight"),
        "{msg}"
    );
    assert!(
        msg.contains("bert.encoder.layer.3.attention.self.key.lora_A.weight"),
        "{msg}"
    );
    assert!(
        msg.contains("1 tensor(s) the config implies are missing")
            && msg.contains("1 tensor(s) fit no targeted module or modules_to_save entry"),
        "{msg}"
    );
}

#[test]
fn a_rank_that_disagrees_with_the_tensors_is_a_shape_mismatch() {
    let dir = edited_adapter(|_| {}, |c| c.replace("\"r\": 4", "\"r\": 8"));
    let e = load(dir.path()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("lora_A is [4, 384] (expected [8, 384])"),
        "{msg}"
    );
}

#[test]
fn unsupported_config_fields_are_refused_by_name() {
    let dir = edited_adapter(
        |_| {},
        |c| c.replace("\"use_dora\": false", "\"use_dora\": true"),
    );
    let e = load(dir.path()).unwrap_err();
    assert!(matches!(e, SurgeryError::UnsupportedField { .. }), "{e}");
    assert!(e.to_string().contains("'use_dora'"), "{e}");
}

#[test]
fn an_adapter_for_another_base_lists_the_modules_that_exist() {
    let e = load(&fixtures_dir().join("smollm2/adapter")).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(
            "which matches none of this model's layers (the adapter was made for base model \
             'HuggingFaceTB/SmolLM2-135M-Instruct'); the model's linear layers are:"
        ),
        "{msg}"
    );
    assert!(
        msg.contains("bert.encoder.layer.0.attention.self.query"),
        "{msg}"
    );
}

#[test]
fn a_malformed_config_is_an_error() {
    let dir = edited_adapter(|_| {}, |_| "{\"peft_type\": \"LORA\", ".into());
    let e = load(dir.path()).unwrap_err();
    assert!(e.to_string().contains("invalid adapter config"), "{e}");
}
