//! Every supported model family against transformers and PEFT, on the tiny random checkpoints
//! of `tests/fixtures/tiny_*` (written by `cargo xtask fixtures`): base logits, PEFT's adapter
//! active, disabled and merged, the adapter tensors written back bit for bit, and, for
//! decoders, greedy continuations with the KV cache.

use burn::tensor::Device;
use lora_eval::conformance::check_fixture;
use lora_tests::fixtures_dir;

/// Every check of `fixture` (see `lora_eval::conformance`) passes on `device`: f32 against
/// f32 within 1e-4 on the CPU backends, 1e-3 on GPUs.
fn check(fixture: &str, device: &Device) {
    let tolerance = lora_core::testing::tolerance(1e-4, 1e-3);
    let report = check_fixture(&fixtures_dir().join(fixture), device, tolerance)
        .unwrap_or_else(|e| panic!("{fixture}: {e}"));
    let failures: Vec<String> = report
        .failures()
        .map(|c| format!("{}: {:?} {:?}", c.name, c.max_abs_diff, c.detail))
        .collect();
    assert!(report.passed, "{fixture}: {failures:#?}");
    // An encoder runs 7 checks, a decoder 16: nothing was left out.
    assert!(report.checks.len() >= 7, "{fixture}: {:?}", report.checks);
}

macro_rules! family_tests {
    ($check:ident: $($name:ident => $fixture:literal),* $(,)?) => {
        $(lora_core::backend_test!(fn $name(device) { $check($fixture, &device); });)*
    };
}

family_tests!(check:
    bert_matches_transformers_and_peft => "tiny_bert",
    roberta_matches_transformers_and_peft => "tiny_roberta",
    xlm_roberta_matches_transformers_and_peft => "tiny_xlm_roberta",
    distilbert_matches_transformers_and_peft => "tiny_distilbert",
);

family_tests!(check:
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

/// `random_model` (what `lora bench --config FILE --random-init` runs: a real-size model whose
/// weights cannot travel) builds every family from its `config.json` alone with the same
/// parameters as the checkpoint, and a LoRA training step runs on it.
fn random_init_trains(fixture: &str, device: &Device) {
    use lora_core::ParamCount;
    use lora_eval::bench::{BenchModel, BenchSettings, BenchTokens, Workload, run_workload};
    use lora_models::{
        Encoder, ModelSource, RandomModel, SafetensorsWeights, load_causal_lm, random_model,
    };

    let model_dir = fixtures_dir().join(fixture).join("model");
    let device = device.clone().autodiff();
    let random = random_model(&model_dir.join("config.json"), 7, &device).unwrap();
    let source = ModelSource::path(&model_dir);
    let (model, workload, labels) = match random {
        RandomModel::Encoder(encoder) => {
            let config = lora_models::read_encoder_config(&source).unwrap().unwrap();
            let weights = SafetensorsWeights::open_dir(&model_dir).unwrap();
            let real = Encoder::load(&config, &weights, &device).unwrap();
            assert_eq!(
                ParamCount::of(&encoder).total,
                ParamCount::of(&real).total,
                "{fixture}: random-init encoder vs checkpoint"
            );
            (
                BenchModel::Encoder(encoder),
                Workload::EncoderLoraStep,
                serde_json::json!([0, 1]),
            )
        }
        RandomModel::Decoder(decoder) => {
            let (real, _) = load_causal_lm(&source, &device).unwrap();
            assert_eq!(
                ParamCount::of(&decoder).total,
                ParamCount::of(&real).total,
                "{fixture}: random-init decoder vs checkpoint"
            );
            (
                BenchModel::Decoder(decoder),
                Workload::DecoderLoraStep,
                serde_json::json!([[-100, 5, 6, 7, 8, 9], [-100, -100, 3, 4, 5, -100]]),
            )
        }
    };
    let tokens = BenchTokens {
        input_ids: vec![vec![1, 5, 6, 7, 8, 9], vec![1, 2, 3, 4, 5, 0]],
        attention_mask: vec![vec![1; 6], vec![1, 1, 1, 1, 1, 0]],
        labels,
    };
    let settings = BenchSettings {
        warmup: 1,
        repeats: 1,
        new_tokens: 2,
        ..BenchSettings::default()
    };
    let result = run_workload(workload, model, &tokens, &settings, &device).unwrap();
    assert!(
        result.value.is_finite() && result.value > 0.0,
        "{fixture}: {result:?}"
    );
    assert!(
        result.params.trainable > 0 && result.params.trainable < result.params.total / 2,
        "{fixture}: LoRA trains a small part of the model: {:?}",
        result.params
    );
}

family_tests!(random_init_trains:
    bert_random_init_trains => "tiny_bert",
    roberta_random_init_trains => "tiny_roberta",
    xlm_roberta_random_init_trains => "tiny_xlm_roberta",
    distilbert_random_init_trains => "tiny_distilbert",
    llama_random_init_trains => "tiny_llama",
    llama_rope_llama3_random_init_trains => "tiny_llama_rope_llama3",
    gpt2_random_init_trains => "tiny_gpt2",
    qwen2_random_init_trains => "tiny_qwen2",
    qwen3_random_init_trains => "tiny_qwen3",
    mistral_random_init_trains => "tiny_mistral",
    gemma2_random_init_trains => "tiny_gemma2",
    gemma3_random_init_trains => "tiny_gemma3",
    phi3_random_init_trains => "tiny_phi3",
    phi3_longrope_random_init_trains => "tiny_phi3_rope_longrope",
);
