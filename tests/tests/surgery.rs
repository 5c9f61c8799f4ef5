//! Model surgery on a model defined only here, through `#[derive(Adaptable)]`: module names,
//! PEFT targeting, the dry-run report, several named adapters, scoped disabling, training one
//! adapter while another stays frozen, merging with its measured cost, `merge_and_unload` and
//! `unload`.

use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig};
use burn::tensor::{Device, Distribution, Tensor};
use lora_core::testing::{max_abs, max_abs_diff};
use lora_core::{LoraConfig, LoraInit, LoraLinear, LoraLinearConfig, ParamCount};
use lora_surgery::{Adaptable, ModulePattern, SurgeryError, TargetSpec};

#[derive(Module, Debug, Adaptable)]
struct Attention {
    q: LoraLinear,
    v: LoraLinear,
}

#[derive(Module, Debug, Adaptable)]
struct Block {
    #[adaptable(rename = "self_attn")]
    attention: Attention,
    norm: LayerNorm,
    ffn: Option<LoraLinear>,
}

#[derive(Module, Debug, Adaptable)]
struct TinyModel {
    layers: Vec<Block>,
    #[adaptable(output_head)]
    head: LoraLinear,
    #[adaptable(skip)]
    #[allow(dead_code)]
    unused: Vec<f32>,
}

impl TinyModel {
    fn new(device: &Device) -> Self {
        let linear = |i, o| LoraLinearConfig::new(i, o).init(device);
        let block = |ffn: bool| Block {
            attention: Attention {
                q: linear(8, 8),
                v: linear(8, 8),
            },
            norm: LayerNormConfig::new(8).init(device).set_require_grad(false),
            ffn: ffn.then(|| linear(8, 8)),
        };
        Self {
            layers: vec![block(true), block(false)],
            head: linear(8, 3),
            unused: Vec::new(),
        }
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let mut h = x;
        for block in &self.layers {
            let a = block.attention.q.forward(h.clone()) + block.attention.v.forward(h.clone());
            h = block.norm.forward(a + h);
            if let Some(ffn) = &block.ffn {
                h = ffn.forward(h);
            }
        }
        self.head.forward(h)
    }
}

fn spec(targets: &[&str]) -> TargetSpec {
    TargetSpec {
        target_modules: Some(ModulePattern::list(targets)),
        ..Default::default()
    }
}

fn random_config(r: usize) -> LoraConfig {
    LoraConfig::new(r).with_init(LoraInit::Random)
}

lora_core::backend_test!(fn derive_names_modules_like_pytorch(device) {
    let mut model = TinyModel::new(&device);
    let names: Vec<String> = model.linears_mut().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["layers.0.self_attn.q", "layers.0.self_attn.v", "layers.0.ffn", "layers.1.self_attn.q", "layers.1.self_attn.v", "head"]
    );
    assert_eq!(model.output_heads(), vec!["head".to_string()]);

    // all-linear leaves the output head out.
    let all = TargetSpec { target_modules: Some(ModulePattern::Regex("all-linear".into())), ..Default::default() };
    let report = lora_surgery::plan(&model, &all, &LoraConfig::new(2)).unwrap();
    assert_eq!(report.targeted.len(), 5);
    assert_eq!(report.left_out, vec!["head".to_string()]);

    // The dry run changes nothing; nothing matching is an error listing the real names.
    assert_eq!(ParamCount::of(&model).trainable, 0);
    let e = lora_surgery::plan(&model, &spec(&["q_proj"]), &LoraConfig::new(2)).unwrap_err();
    assert!(matches!(e, SurgeryError::NothingMatched { .. }));
    assert!(e.to_string().contains("layers.1.self_attn.v"), "{e}");

    // Rank patterns and their report lines.
    let mut s = spec(&["q", "v"]);
    s.rank_pattern.insert("v".into(), 4);
    let report = lora_surgery::inject(&mut model, "default", &s, &LoraConfig::new(2).with_alpha(4.0)).unwrap();
    let v = report.targeted.iter().find(|p| p.name == "layers.0.self_attn.v").unwrap();
    assert_eq!((v.r, v.scaling, v.added_params), (4, 1.0, 4 * 16));
    assert_eq!(report.added_params, 2 * (2 * 16) + 2 * (4 * 16));
    assert_eq!(ParamCount::of(&model).trainable, report.added_params);
    let text = report.to_string();
    assert!(text.contains("4 modules targeted") && text.contains("left out: head"), "{text}");
});

lora_core::backend_test!(fn several_adapters_on_one_model(device) {
    let mut model = TinyModel::new(&device);
    let x = Tensor::<2>::random([4, 8], Distribution::Uniform(-1.0, 1.0), &device);
    let base = model.forward(x.clone());
    lora_surgery::inject(&mut model, "a", &spec(&["q"]), &random_config(2)).unwrap();
    lora_surgery::inject(&mut model, "b", &spec(&["v", "ffn"]), &random_config(3)).unwrap();
    assert_eq!(lora_surgery::adapter_names(&model), vec!["a".to_string(), "b".to_string()]);
    let both = model.forward(x.clone());
    assert!(max_abs_diff(both.clone(), base.clone()) > 1e-3);

    // Disabled within a scope: the base model; afterwards: back to both adapters.
    let inside = lora_surgery::with_adapters_disabled(&mut model, |m| m.forward(x.clone())).unwrap();
    assert_eq!(max_abs_diff(inside, base.clone()), 0.0);
    assert_eq!(max_abs_diff(model.forward(x.clone()), both.clone()), 0.0);

    // Only "a" active.
    lora_surgery::set_active_adapters(&mut model, &["a"]).unwrap();
    let only_a = model.forward(x.clone());
    assert!(max_abs_diff(only_a.clone(), both.clone()) > 1e-4);
    let e = lora_surgery::set_active_adapters(&mut model, &["c"]).unwrap_err();
    assert!(e.to_string().contains("known adapters: [a, b]"), "{e}");
    lora_surgery::set_active_adapters(&mut model, &["a", "b"]).unwrap();

    // Merging: the measured numeric cost is tiny; merge_and_unload keeps the function.
    let mut merged = model.clone();
    let cost = lora_surgery::merge_adapters(&mut merged, |m| m.forward(x.clone())).unwrap();
    assert!(cost < 1e-5 * (1.0 + max_abs(both.clone())), "merge cost {cost}");
    let mut plain = model.clone();
    lora_surgery::merge_and_unload(&mut plain).unwrap();
    assert!(lora_surgery::adapter_names(&plain).is_empty());
    assert!(max_abs_diff(plain.forward(x.clone()), both.clone()) < 1e-5);

    // unload returns the base model exactly.
    let mut unloaded = model.clone();
    lora_surgery::unload(&mut unloaded).unwrap();
    assert_eq!(max_abs_diff(unloaded.forward(x.clone()), base), 0.0);

    // Deleting one adapter leaves the other.
    lora_surgery::delete_adapter(&mut model, "b").unwrap();
    assert_eq!(max_abs_diff(model.forward(x.clone()), only_a), 0.0);
    assert!(lora_surgery::delete_adapter(&mut model, "b").is_err());
});

lora_core::backend_test!(fn train_one_adapter_while_another_stays_frozen(device) {
    let device = device.autodiff();
    let mut model = TinyModel::new(&device);
    lora_surgery::inject(&mut model, "train", &spec(&["q"]), &random_config(2)).unwrap();
    lora_surgery::inject(&mut model, "keep", &spec(&["q"]), &random_config(2)).unwrap();
    lora_surgery::set_adapter_trainable(&mut model, "keep", false).unwrap();
    let x = Tensor::<2>::random([4, 8], Distribution::Uniform(-1.0, 1.0), &device);
    let grads = model.forward(x).powi_scalar(2).sum().backward();
    let q = &model.layers[0].attention.q;
    assert!(q.adapter("train").unwrap().lora_a.grad(&grads).is_some());
    assert!(q.adapter("keep").unwrap().lora_a.grad(&grads).is_none());
    assert!(q.weight.grad(&grads).is_none());
    assert_eq!(ParamCount::of(&model).trainable, 2 * 2 * 16);
});

/// A model on plain `burn::nn::Linear`, for the weight-path fallback.
#[derive(Module, Debug)]
struct PlainModel {
    query: burn::nn::Linear,
    value: burn::nn::Linear,
    out: burn::nn::Linear,
}

lora_core::backend_test!(fn weight_path_fallback_on_plain_burn_linears(device) {
    use burn::nn::LinearConfig;
    let device = device.autodiff();
    let model = PlainModel {
        query: LinearConfig::new(6, 6).init(&device),
        value: LinearConfig::new(6, 6).init(&device),
        out: LinearConfig::new(6, 2).init(&device),
    };
    let x = Tensor::<2>::random([3, 6], Distribution::Uniform(-1.0, 1.0), &device);
    let config = LoraConfig::new(2).with_alpha(4.0).with_init(LoraInit::Random);
    let (adapted, names) =
        lora_surgery::apply_weight_path_lora(model.clone(), &spec(&["query", "value"]), &config).unwrap();
    assert_eq!(names, vec!["query".to_string(), "value".to_string()]);
    assert!(adapted.out.weight.adapter().is_none());
    // The effective weight is W + s·A·B with s = alpha / r = 2.
    let lora = adapted.query.weight.adapter().unwrap();
    let expected = model.query.weight.val() + lora.a.val().matmul(lora.b.val()).mul_scalar(2.0);
    assert!(max_abs_diff(adapted.query.weight.val(), expected) < 1e-6);
    // Only the factors train.
    assert_eq!(ParamCount::of(&adapted).trainable, 2 * 2 * (6 + 6));
    let grads = adapted.out.forward(adapted.query.forward(x)).sum().backward();
    assert!(lora.a.grad(&grads).is_some());
    assert!(adapted.out.weight.grad(&grads).is_none());
    // Dropout is refused, with the reason.
    let e = lora_surgery::apply_weight_path_lora(model, &spec(&["query"]), &config.with_dropout(0.1)).unwrap_err();
    assert!(e.to_string().contains("cannot apply dropout"), "{e}");
});

lora_core::backend_test!(fn bias_modes_train_save_and_load_biases(device) {
    use lora_surgery::{BiasMode, PeftConfig};
    let mut model = TinyModel::new(&device);
    let mut s = spec(&["q"]);
    s.bias = BiasMode::LoraOnly;
    let config = random_config(2);
    let report = lora_surgery::inject(&mut model, "default", &s, &config).unwrap();
    // Adapters plus the biases of the two adapted `q` layers.
    assert_eq!(ParamCount::of(&model).trainable, report.added_params + 2 * 8);
    let selected = lora_surgery::selected_biases(&model, BiasMode::LoraOnly, &["layers.0.self_attn.q".into(), "layers.1.self_attn.q".into()]);
    assert_eq!(selected, vec!["layers.0.self_attn.q.bias", "layers.1.self_attn.q.bias"]);

    // A "trained" bias is saved with the adapter and restored on load.
    let trained = Tensor::<1>::random([8], Distribution::Uniform(-1.0, 1.0), &device);
    model.layers[0].attention.q.bias = Some(lora_core::burn::module::Param::from_tensor(trained.clone()));
    let peft = PeftConfig::new(s.clone(), config);
    let dir = tempfile::tempdir().unwrap();
    lora_surgery::save_adapter(&model, "default", &peft, dir.path()).unwrap();
    let back = PeftConfig::from_file(&dir.path().join("adapter_config.json")).unwrap();
    assert_eq!(back.targets.bias, BiasMode::LoraOnly);
    let mut fresh = model.clone();
    lora_surgery::unload(&mut fresh).unwrap();
    fresh.layers[0].attention.q.bias = Some(lora_core::burn::module::Param::from_tensor(Tensor::zeros([8], &device)));
    lora_surgery::load_adapter(&mut fresh, dir.path(), "default").unwrap();
    let loaded = fresh.layers[0].attention.q.bias.as_ref().unwrap().val();
    assert_eq!(max_abs_diff(loaded, trained), 0.0);
    let x = Tensor::<2>::random([2, 8], Distribution::Uniform(-1.0, 1.0), &device);
    assert!(max_abs_diff(fresh.forward(x.clone()), model.forward(x)) < 1e-6);
});

#[test]
fn bias_all_covers_bert_layer_norms_by_their_hugging_face_names() {
    let device = lora_core::select_device(None).unwrap();
    let (bert, _) = lora_models::load_encoder(
        &lora_models::ModelSource::path(lora_tests::asset("minilm")),
        &device,
    )
    .unwrap();
    let model = lora_models::EncoderForSequenceClassification::new(bert, 2, None, &device).unwrap();
    let all = lora_surgery::selected_biases(&model, lora_surgery::BiasMode::All, &[]);
    // 6 layers × (6 linear biases + 2 LayerNorm biases) + embeddings LayerNorm + pooler + classifier.
    assert_eq!(all.len(), 6 * 8 + 3);
    assert!(all.contains(&"bert.encoder.layer.0.attention.output.LayerNorm.bias".to_string()));
    assert!(all.contains(&"bert.embeddings.LayerNorm.bias".to_string()));
    assert!(all.contains(&"classifier.bias".to_string()));
}
