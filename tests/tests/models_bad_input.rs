//! Bad model files give clear errors that name the problem, never panics: a truncated or
//! corrupted safetensors file, a missing tensor, a shape mismatch, an unsupported GGUF tensor
//! type, an unknown `hidden_act`, and paths that hold no model.

use std::collections::BTreeMap;
use std::path::Path;

use lora_models::{
    ConfigJson, Encoder, EncoderConfig, ModelError, ModelSource, SafetensorsWeights,
    load_causal_lm, load_encoder,
};
use safetensors::{Dtype, tensor::TensorView};

const CONFIG: &str = r#"{
  "model_type": "bert", "vocab_size": 16, "hidden_size": 8, "num_hidden_layers": 1,
  "num_attention_heads": 2, "intermediate_size": 16, "hidden_act": "gelu",
  "max_position_embeddings": 16, "type_vocab_size": 2, "layer_norm_eps": 1e-12
}"#;

/// Every tensor a 1-layer BERT with [`CONFIG`] needs, in PyTorch's layout.
fn tiny_bert_tensors() -> BTreeMap<String, Vec<usize>> {
    let mut t = BTreeMap::new();
    let mut add = |k: &str, s: &[usize]| {
        t.insert(k.to_string(), s.to_vec());
    };
    add("embeddings.word_embeddings.weight", &[16, 8]);
    add("embeddings.position_embeddings.weight", &[16, 8]);
    add("embeddings.token_type_embeddings.weight", &[2, 8]);
    add("embeddings.LayerNorm.weight", &[8]);
    add("embeddings.LayerNorm.bias", &[8]);
    let p = "encoder.layer.0";
    for name in [
        "attention.self.query",
        "attention.self.key",
        "attention.self.value",
        "attention.output.dense",
    ] {
        add(&format!("{p}.{name}.weight"), &[8, 8]);
        add(&format!("{p}.{name}.bias"), &[8]);
    }
    add(&format!("{p}.intermediate.dense.weight"), &[16, 8]);
    add(&format!("{p}.intermediate.dense.bias"), &[16]);
    add(&format!("{p}.output.dense.weight"), &[8, 16]);
    add(&format!("{p}.output.dense.bias"), &[8]);
    for ln in ["attention.output.LayerNorm", "output.LayerNorm"] {
        add(&format!("{p}.{ln}.weight"), &[8]);
        add(&format!("{p}.{ln}.bias"), &[8]);
    }
    add("pooler.dense.weight", &[8, 8]);
    add("pooler.dense.bias", &[8]);
    t
}

fn write_safetensors(path: &Path, tensors: &BTreeMap<String, Vec<usize>>) {
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(k, shape)| {
            let n: usize = shape.iter().product();
            let bytes = (0..n)
                .flat_map(|i| (i as f32 * 0.01).to_le_bytes())
                .collect();
            (k.clone(), shape.clone(), bytes)
        })
        .collect();
    let views: Vec<(String, TensorView)> = data
        .iter()
        .map(|(k, s, b)| {
            (
                k.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

fn load(dir: &Path) -> Result<Encoder, ModelError> {
    let device = lora_core::select_device(None).unwrap();
    let config = EncoderConfig::from_config(ConfigJson::read(&dir.join("config.json"))?)?;
    let weights = SafetensorsWeights::open_dir(dir)?;
    Encoder::load(&config, &weights, &device)
}

fn tiny_dir(tensors: &BTreeMap<String, Vec<usize>>, config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), config).unwrap();
    write_safetensors(&dir.path().join("model.safetensors"), tensors);
    dir
}

#[test]
fn a_complete_tiny_checkpoint_loads() {
    let dir = tiny_dir(&tiny_bert_tensors(), CONFIG);
    let model = load(dir.path()).unwrap();
    assert_eq!(model.layers.len(), 1);
}

#[test]
fn a_sharded_checkpoint_loads_like_a_single_file() {
    let tensors = tiny_bert_tensors();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), CONFIG).unwrap();
    let (first, second): (BTreeMap<_, _>, BTreeMap<_, _>) = tensors
        .into_iter()
        .partition(|(k, _)| k.starts_with("embeddings"));
    write_safetensors(&dir.path().join("model-00001-of-00002.safetensors"), &first);
    write_safetensors(
        &dir.path().join("model-00002-of-00002.safetensors"),
        &second,
    );
    let weight_map: serde_json::Map<String, serde_json::Value> = first
        .keys()
        .map(|k| (k.clone(), "model-00001-of-00002.safetensors".into()))
        .chain(
            second
                .keys()
                .map(|k| (k.clone(), "model-00002-of-00002.safetensors".into())),
        )
        .collect();
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    let sharded = load(dir.path()).unwrap();
    let single = load(tiny_dir(&tiny_bert_tensors(), CONFIG).path()).unwrap();
    let a = sharded.layers[0].output.weight.val().into_data();
    let b = single.layers[0].output.weight.val().into_data();
    assert_eq!(a, b);
}

#[test]
fn truncated_or_corrupted_safetensors_is_an_error() {
    let dir = tiny_dir(&tiny_bert_tensors(), CONFIG);
    let file = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    for cut in [0, 7, 8, 100, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&file, &bytes[..cut]).unwrap();
        let e = load(dir.path()).unwrap_err();
        assert!(
            matches!(e, ModelError::File(lora_core::IoError::Safetensors { .. })),
            "cut {cut}: {e}"
        );
        assert!(e.to_string().contains("model.safetensors"), "{e}");
    }
    // A corrupted header (garbage JSON).
    let mut bad = bytes.clone();
    for b in &mut bad[8..40] {
        *b = b'#';
    }
    std::fs::write(&file, &bad).unwrap();
    let e = load(dir.path()).unwrap_err();
    assert!(
        e.to_string().contains("not a valid safetensors file"),
        "{e}"
    );
}

#[test]
fn a_missing_tensor_is_named() {
    let mut tensors = tiny_bert_tensors();
    tensors.remove("encoder.layer.0.attention.self.value.weight");
    let dir = tiny_dir(&tensors, CONFIG);
    let e = load(dir.path()).unwrap_err();
    assert!(matches!(e, ModelError::MissingTensor { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("'encoder.layer.0.attention.self.value.weight' is missing"),
        "{e}"
    );
}

#[test]
fn a_shape_mismatch_names_the_key_and_both_shapes() {
    let mut tensors = tiny_bert_tensors();
    tensors.insert(
        "encoder.layer.0.intermediate.dense.weight".into(),
        vec![12, 8],
    );
    let dir = tiny_dir(&tensors, CONFIG);
    let e = load(dir.path()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("encoder.layer.0.intermediate.dense.weight"),
        "{msg}"
    );
    assert!(msg.contains("[12, 8]") && msg.contains("[16, 8]"), "{msg}");
}

#[test]
fn an_unknown_hidden_act_lists_the_supported_ones() {
    let dir = tiny_dir(
        &tiny_bert_tensors(),
        &CONFIG.replace("\"gelu\"", "\"mish\""),
    );
    let e = load(dir.path()).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("unknown hidden_act 'mish'") && msg.contains("gelu_new"),
        "{msg}"
    );
}

#[test]
fn a_malformed_config_is_named() {
    let dir = tiny_dir(&tiny_bert_tensors(), "{\"hidden_size\": 8");
    let e = load(dir.path()).unwrap_err();
    assert!(
        e.to_string().contains("invalid model config") && e.to_string().contains("config.json"),
        "{e}"
    );
    let dir = tiny_dir(
        &tiny_bert_tensors(),
        &CONFIG.replace("\"num_attention_heads\": 2", "\"num_attention_heads\": 3"),
    );
    let e = load(dir.path()).unwrap_err();
    assert!(e.to_string().contains("not divisible"), "{e}");
}

#[test]
fn paths_without_a_model_are_errors() {
    let device = lora_core::select_device(None).unwrap();
    let e = load_encoder(&ModelSource::path("/nonexistent/model"), &device).unwrap_err();
    assert!(
        e.to_string()
            .contains("no model found at /nonexistent/model"),
        "{e}"
    );
    let empty = tempfile::tempdir().unwrap();
    let e = load_encoder(&ModelSource::path(empty.path()), &device).unwrap_err();
    assert!(e.to_string().contains("no config.json"), "{e}");
    let e = load_causal_lm(&ModelSource::path("/nonexistent/model.gguf"), &device).unwrap_err();
    assert!(
        e.to_string()
            .contains("cannot read /nonexistent/model.gguf"),
        "{e}"
    );
}

#[test]
fn an_unsupported_gguf_tensor_type_is_named_at_load() {
    // Rewrite one tensor type of the real SmolLM2 file's table to Q6_K (id 14) in a copy: the
    // loader must name the tensor and the type instead of misreading the bytes.
    let real = std::fs::read(lora_tests::asset("smollm2")).unwrap();
    let file = lora_models::GgufFile::parse(Path::new("real.gguf"), real.clone()).unwrap();
    let target = file
        .tensors
        .iter()
        .find(|t| t.name == "blk.0.ffn_down.weight")
        .unwrap()
        .clone();
    // The table entry ends with the u32 type followed by the u64 offset.
    let mut needle = (target.name.len() as u64).to_le_bytes().to_vec();
    needle.extend(target.name.as_bytes());
    let at = real
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    let type_at = at + needle.len() + 4 + 8 * target.dims.len();
    let mut patched = real;
    patched[type_at..type_at + 4].copy_from_slice(&14u32.to_le_bytes());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("patched.gguf");
    std::fs::write(&path, patched).unwrap();
    let device = lora_core::select_device(None).unwrap();
    let e = load_causal_lm(&ModelSource::path(&path), &device).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("blk.0.ffn_down.weight") && msg.contains("Q6_K"),
        "{msg}"
    );
}
