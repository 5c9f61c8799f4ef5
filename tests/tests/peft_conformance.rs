//! PEFT's own adapter files on the real models: loading gives PEFT's logits (active, merged,
//! disabled), the resolved r / alpha / scaling equal PEFT's, and saving gives back the same
//! tensors bit for bit.

use std::path::PathBuf;

use burn::tensor::{Tensor, TensorData};
use lora_models::{
    EncoderForSequenceClassification, ModelSource, TokenBatch, load_causal_lm, load_encoder,
};
use lora_surgery::{load_adapter, save_adapter};
use lora_tests::{FixtureTensorExt, asset, fixtures_dir, max_abs_diff, read_fixture};

fn fixture_path(rel: &str) -> PathBuf {
    fixtures_dir().join(rel)
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().unwrap()
}

fn classifier(device: &burn::tensor::Device) -> (Tensor<2>, Tensor<1>) {
    let head = read_fixture("peft_bert_seqcls/classifier_head_init.safetensors");
    let w = Tensor::from_data(
        TensorData::new(head["classifier.weight"].f32().to_vec(), [2, 384]),
        device,
    );
    let b = Tensor::from_data(
        TensorData::new(head["classifier.bias"].f32().to_vec(), [2]),
        device,
    );
    (w, b)
}

lora_core::backend_test!(fn peft_seq_cls_adapter_matches_peft(device) {
    let logits = read_fixture("peft_bert_seqcls/logits.safetensors");
    let shape = [4, 17];
    let input = TokenBatch::from_ids(
        logits["input_ids"].i64().to_vec(),
        logits["attention_mask"].i64().to_vec(),
        logits["token_type_ids"].i64().to_vec(),
        shape,
        &device,
    )
    .unwrap();
    let (bert, _) = load_encoder(&ModelSource::path(asset("minilm")), &device).unwrap();
    let mut model = EncoderForSequenceClassification::new(bert, 2, Some(vec![classifier(&device)]), &device).unwrap();

    // (iii) Without the adapter: the base encoder and the initial head.
    let disabled = to_vec(model.forward(&input).unwrap());
    let diff = max_abs_diff(&disabled, logits["logits_adapter_disabled"].f32());
    assert!(diff < 1e-4, "disabled logits differ by {diff}");

    let dir = fixture_path("peft_bert_seqcls/adapter");
    let loaded = load_adapter(&mut model, &dir, "default").unwrap();
    // The classifier is saved in full (modules_to_save) and replaces the head while active.
    assert_eq!(loaded.saved_modules["classifier.weight"].shape, vec![2, 384]);
    assert_eq!(model.classifier.saved_copy_names(), vec!["default".to_string()]);

    // Resolved r / alpha / scaling per module, as PEFT resolved them.
    let scaling: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture_path("peft_bert_seqcls/lora_scaling.json")).unwrap(),
    )
    .unwrap();
    let expected = scaling["modules"].as_object().unwrap();
    assert_eq!(loaded.report.targeted.len(), expected.len());
    for planned in &loaded.report.targeted {
        let e = &expected[&format!("base_model.model.{}", planned.name)];
        assert_eq!(planned.r as u64, e["r"].as_u64().unwrap(), "{}", planned.name);
        assert_eq!(planned.alpha, e["alpha"].as_f64().unwrap(), "{}", planned.name);
        assert_eq!(planned.scaling, e["scaling"].as_f64().unwrap(), "{}", planned.name);
    }
    assert_eq!(loaded.report.added_params + 770, 37_634, "PEFT's trainable parameter count");

    // (i) Adapter active.
    let active = to_vec(model.forward(&input).unwrap());
    let diff = max_abs_diff(&active, logits["logits_adapter_active"].f32());
    assert!(diff < 1e-4, "active logits differ by {diff}");
    assert!(max_abs_diff(&active, &disabled) > 1e-2, "the adapter must change the logits");

    // (iii) again, within PEFT's `disable_adapter()` scope: the base encoder and the ORIGINAL head.
    let inside = lora_surgery::with_adapters_disabled(&mut model, |m| to_vec(m.forward(&input).unwrap())).unwrap();
    assert!(max_abs_diff(&inside, logits["logits_adapter_disabled"].f32()) < 1e-4);
    assert_eq!(to_vec(model.forward(&input).unwrap()), active, "the scope restores the adapter");

    // Saving gives back PEFT's tensors bit for bit, under the same keys.
    let out = tempfile::tempdir().unwrap();
    save_adapter(&model, "default", &loaded.config, out.path()).unwrap();
    let original = std::fs::read(dir.join("adapter_model.safetensors")).unwrap();
    let written = std::fs::read(out.path().join("adapter_model.safetensors")).unwrap();
    let original = safetensors::SafeTensors::deserialize(&original).unwrap();
    let written_st = safetensors::SafeTensors::deserialize(&written).unwrap();
    let mut a: Vec<String> = original.names().into_iter().map(String::from).collect();
    let mut b: Vec<String> = written_st.names().into_iter().map(String::from).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b, "same key set");
    for key in &a {
        let (x, y) = (original.tensor(key).unwrap(), written_st.tensor(key).unwrap());
        assert_eq!(x.shape(), y.shape(), "{key}");
        assert_eq!(x.dtype(), y.dtype(), "{key}");
        assert_eq!(x.data(), y.data(), "{key} differs");
    }
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&written).unwrap();
    assert_eq!(metadata.metadata().as_ref().unwrap()["format"], "pt");
    let back = lora_surgery::PeftConfig::from_file(&out.path().join("adapter_config.json")).unwrap();
    assert_eq!(back, loaded.config, "the written config has the same semantics");

    // A bare encoder takes its head and label count from the adapter, and gives the same logits.
    let (bert, _) = load_encoder(&ModelSource::path(asset("minilm")), &device).unwrap();
    let (bare, _) = lora_models::load_seq_cls_adapter(bert, &dir, "default").unwrap();
    assert_eq!(bare.num_labels(), 2);
    assert!(max_abs_diff(&to_vec(bare.forward(&input).unwrap()), &active) < 1e-6);

    // (ii) Merged, through merge_and_unload: a plain model with PEFT's merged logits.
    lora_surgery::merge_and_unload(&mut model).unwrap();
    assert!(lora_surgery::adapter_names(&model).is_empty());
    let merged = to_vec(model.forward(&input).unwrap());
    let diff = max_abs_diff(&merged, logits["logits_merged"].f32());
    assert!(diff < 1e-4, "merged logits differ by {diff}");
    let probe = read_fixture("peft_bert_seqcls/merged_weights_probe.safetensors");
    let ours = to_vec(model.encoder.layers[0].query.weight.val().transpose());
    let diff = max_abs_diff(&ours, probe["bert.encoder.layer.0.attention.self.query.weight"].f32());
    assert!(diff < 1e-6, "merged query weight differs by {diff}");
});

lora_core::backend_test!(fn peft_causal_lm_adapter_matches_peft(device) {
    let fixture = read_fixture("smollm2/smollm2.safetensors");
    let (mut model, _) = load_causal_lm(&ModelSource::path(asset("smollm2")), &device).unwrap();
    let loaded = load_adapter(&mut model, &fixture_path("smollm2/adapter"), "default").unwrap();
    assert_eq!(loaded.report.targeted.len(), 60);
    assert!(loaded.report.targeted.iter().all(|p| p.scaling == 2.0));
    let prompts = |i: usize| -> Vec<u32> {
        fixture[&format!("prompt{i}.input_ids")].i64().iter().map(|&t| t as u32).collect()
    };
    for i in 0..2 {
        let ids = lora_models::decoder::ids_tensor(&prompts(i), &device);
        let mut cache = lora_models::KvCache::new();
        let last = to_vec(model.forward_cached(ids, &mut cache).unwrap());
        let diff = max_abs_diff(&last, fixture[&format!("prompt{i}.lora_last_logits")].f32());
        assert!(diff < 1e-3, "prompt {i}: adapter logits differ by {diff}");
    }
    for (_, linear) in lora_surgery::Adaptable::linears_mut(&mut model) {
        linear.merge_all().unwrap();
    }
    for i in 0..2 {
        let ids = lora_models::decoder::ids_tensor(&prompts(i), &device);
        let mut cache = lora_models::KvCache::new();
        let last = to_vec(model.forward_cached(ids, &mut cache).unwrap());
        let diff = max_abs_diff(&last, fixture[&format!("prompt{i}.merged_last_logits")].f32());
        assert!(diff < 1e-3, "prompt {i}: merged logits differ by {diff}");
    }
});

/// The PEFT SEQ_CLS adapter of the fixture, rewritten as people's files differ from PEFT's own
/// `save_pretrained` output: `config` edits `adapter_config.json`, `rename` the tensor keys.
fn rewritten_adapter(
    config: impl Fn(&mut serde_json::Value),
    rename: impl Fn(&str) -> String,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let original = fixture_path("peft_bert_seqcls/adapter");
    let mut json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(original.join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    config(&mut json);
    std::fs::write(dir.path().join("adapter_config.json"), json.to_string()).unwrap();
    let file =
        lora_core::io::SafetensorsFile::open(&original.join("adapter_model.safetensors")).unwrap();
    let tensors: lora_core::NamedTensors = file
        .names()
        .iter()
        .map(|k| (rename(k), file.read(k).unwrap()))
        .collect();
    let bytes =
        lora_core::io::named_safetensors_bytes(&tensors, lora_core::SaveDtype::F32).unwrap();
    std::fs::write(dir.path().join("adapter_model.safetensors"), bytes).unwrap();
    dir
}

// Files as they are in the wild load as PEFT loads them, with PEFT's logits: a SEQ_CLS config
// whose `modules_to_save` is `null` (PEFT adds the classifier itself), keys with the adapter
// name (`lora_A.default.weight`, or another name), without the `base_model.model.` prefix,
// and a saved head under `modules_to_save.<name>.`.
lora_core::backend_test!(fn peft_files_in_the_wild_load_as_peft_loads_them(device) {
    let logits = read_fixture("peft_bert_seqcls/logits.safetensors");
    let input = TokenBatch::from_ids(
        logits["input_ids"].i64().to_vec(),
        logits["attention_mask"].i64().to_vec(),
        logits["token_type_ids"].i64().to_vec(),
        [4, 17],
        &device,
    )
    .unwrap();
    let null_modules = |c: &mut serde_json::Value| c["modules_to_save"] = serde_json::Value::Null;
    let keep = |_: &mut serde_json::Value| {};
    let variants: Vec<(&str, tempfile::TempDir)> = vec![
        ("modules_to_save: null", rewritten_adapter(null_modules, str::to_string)),
        (
            "adapter name in the keys",
            rewritten_adapter(keep, |k| {
                k.replace(".lora_A.", ".lora_A.default.").replace(".lora_B.", ".lora_B.default.")
            }),
        ),
        (
            "another adapter name, no prefix",
            rewritten_adapter(null_modules, |k| {
                k.trim_start_matches("base_model.model.")
                    .replace(".lora_A.", ".lora_A.sentiment.")
                    .replace(".lora_B.", ".lora_B.sentiment.")
            }),
        ),
        (
            "head under modules_to_save.default",
            rewritten_adapter(keep, |k| k.replace("classifier.", "classifier.modules_to_save.default.")),
        ),
    ];
    for (what, dir) in &variants {
        let (bert, _) = load_encoder(&ModelSource::path(asset("minilm")), &device).unwrap();
        let mut model =
            EncoderForSequenceClassification::new(bert, 2, Some(vec![classifier(&device)]), &device)
                .unwrap();
        load_adapter(&mut model, dir.path(), "default").unwrap_or_else(|e| panic!("{what}: {e}"));
        let diff = max_abs_diff(
            &to_vec(model.forward(&input).unwrap()),
            logits["logits_adapter_active"].f32(),
        );
        assert!(diff < 1e-4, "{what}: logits differ by {diff}");
    }

    // Two adapters in one file, or two keys for one parameter, are refused with the reason.
    let two = rewritten_adapter(keep, |k| {
        if k.contains("layer.0.") {
            k.replace(".lora_A.", ".lora_A.one.").replace(".lora_B.", ".lora_B.one.")
        } else {
            k.replace(".lora_A.", ".lora_A.two.").replace(".lora_B.", ".lora_B.two.")
        }
    });
    let (bert, _) = load_encoder(&ModelSource::path(asset("minilm")), &device).unwrap();
    let mut model =
        EncoderForSequenceClassification::new(bert, 2, Some(vec![classifier(&device)]), &device)
            .unwrap();
    let e = load_adapter(&mut model, two.path(), "default").unwrap_err().to_string();
    assert!(e.contains("several adapters (one, two)"), "{e}");

    // A lora_alpha whose scaling does not fit f32 is refused when the adapter is read.
    let huge = rewritten_adapter(|c| c["lora_alpha"] = serde_json::json!(1e300), str::to_string);
    let e = load_adapter(&mut model, huge.path(), "default").unwrap_err().to_string();
    assert!(e.contains("does not fit f32"), "{e}");
    // One that fits f32 but makes the update dwarf the weights (the outputs would be finite
    // and meaningless) is refused naming the first module.
    let absurd = rewritten_adapter(|c| c["lora_alpha"] = serde_json::json!(1e30), str::to_string);
    let e = load_adapter(&mut model, absurd.path(), "default").unwrap_err().to_string();
    assert!(
        e.contains("bert.encoder.layer.0.attention.self.query") && e.contains("check lora_alpha"),
        "{e}"
    );
});
