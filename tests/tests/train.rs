//! The trainer on real weights and real data (MiniLM on movie-sentiment, SmolLM2 on the
//! movie-review text): every method trains, LoRA learns, a killed run resumes to the same end,
//! and a diverging run stops with a clear error. CPU (flex) only: these are end-to-end runs,
//! the per-backend numerics are tested in the crates.

use std::path::Path;

use burn::module::Module;
use burn::tensor::Device;
use lora_assets::BuiltinTask;
use lora_data::TaskSplits;
use lora_models::{Encoder, ModelSource, load_causal_lm, load_encoder};
use lora_tests::asset;
use lora_train::{
    CausalLmTask, ClassificationTask, Method, StopReason, TrainConfig, TrainError, TrainTask,
    Trainer, prepare_causal_lm, prepare_classifier,
};
use tokenizers::Tokenizer;

/// The backend RNG (dropout, initialisation) is global to the process, so trainings that run
/// at the same time draw from one stream. Each test here holds this lock while it trains, so the
/// resume test sees exactly the draws an uninterrupted run sees.
static TRAINING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    TRAINING.lock().unwrap_or_else(|e| e.into_inner())
}

fn device() -> Device {
    lora_core::select_device(Some("flex")).unwrap().autodiff()
}

fn minilm(device: &Device) -> (Encoder, Tokenizer) {
    load_encoder(&ModelSource::path(asset("minilm")), device).unwrap()
}

fn movie(train: usize, dev: usize) -> TaskSplits {
    BuiltinTask::MovieSentiment
        .load_from(&asset("movie-sentiment"))
        .unwrap()
        .truncate(Some(train), Some(dev), Some(0))
}

fn quiet(method: Method) -> TrainConfig {
    TrainConfig {
        progress: false,
        ..TrainConfig::new(method)
    }
}

fn trainable(model: &impl Module) -> usize {
    lora_core::ParamCount::of(model).trainable
}

#[test]
fn trainable_parameter_counts_match_closed_forms() {
    let _serial = serial();
    let device = device();
    let (h, layers, ffn, labels, m) = (384, 6, 1536, 2, 16);
    let head = h * labels + labels;
    let adapter = 2 * h * m + m + h;
    // Biases of one layer: q, k, v, attention output, intermediate, output, two LayerNorms.
    let layer_biases = 4 * h + ffn + h + 2 * h;
    let cases = [
        (
            Method::lora(8, &["query", "value"]),
            layers * 2 * 8 * (h + h) + head,
        ),
        (
            Method::AdapterH { bottleneck: m },
            layers * 2 * adapter + head,
        ),
        (Method::AdapterL { bottleneck: m }, layers * adapter + head),
        // + the embedding LayerNorm's beta and the pooler's bias.
        (Method::BitFit, layers * layer_biases + h + h + head),
        (Method::HeadOnly, head),
    ];
    for (method, expected) in cases {
        let (bert, _) = minilm(&device);
        let model = prepare_classifier(bert, labels, &method, 0, &device).unwrap();
        assert_eq!(trainable(&model), expected, "{}", method.name());
    }
    let (bert, _) = minilm(&device);
    let model = prepare_classifier(bert, labels, &Method::FullFineTuning, 0, &device).unwrap();
    let count = lora_core::ParamCount::of(&model);
    assert_eq!(count.trainable, count.total);
    // all-MiniLM-L6-v2 has 22,713,216 parameters with its pooler; plus our head.
    assert_eq!(count.total, 22_713_216 + head);
}

/// Trains briefly and returns (dev loss before, dev loss after, outcome summary).
fn short_run(method: Method, lr: f64, steps: usize, dir: &Path) -> (f64, f64) {
    let device = device();
    let (bert, tokenizer) = minilm(&device);
    let task: ClassificationTask =
        ClassificationTask::new(&tokenizer, &movie(steps * 16, 96), 48, 0).unwrap();
    let config = TrainConfig {
        epochs: 1,
        lr: Some(lr),
        ..quiet(method)
    };
    let model = prepare_classifier(bert, 2, &config.method, config.seed, &device).unwrap();
    let before = task.evaluate(&model.valid(), 64).unwrap().loss;
    let outcome = Trainer::new(&task, config, dir).fit(model).unwrap();
    let after = outcome.state.history[0].dev.loss;
    eprintln!("{}", outcome.summary());
    (before, after)
}

#[test]
fn every_method_lowers_the_dev_loss() {
    let _serial = serial();
    for (method, lr) in [
        (Method::FullFineTuning, 5e-5),
        (Method::AdapterH { bottleneck: 16 }, 1e-3),
        (Method::AdapterL { bottleneck: 16 }, 1e-3),
        (Method::BitFit, 1e-3),
        (Method::HeadOnly, 1e-3),
        (Method::lora(8, &["query", "value"]), 1e-3),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let name = method.name();
        let (before, after) = short_run(method, lr, 12, dir.path());
        assert!(after < before, "{name}: dev loss {before} -> {after}");
        assert!(dir.path().join("metrics.json").is_file());
        assert!(dir.path().join("trainable.safetensors").is_file());
    }
}

/// LoRA with dropout on the adapters (and BERT's own dropout) so that the resumed run must
/// reproduce the random masks too.
fn resumable_config() -> TrainConfig {
    let mut lora = lora_core::LoraConfig::new(4);
    lora.dropout = 0.1;
    TrainConfig {
        epochs: 2,
        batch_size: 16,
        checkpoint_every_steps: Some(2),
        lr: Some(1e-3),
        ..quiet(Method::Lora {
            lora,
            targets: lora_surgery::TargetSpec {
                target_modules: Some(lora_surgery::ModulePattern::list(&["query", "value"])),
                ..Default::default()
            },
        })
    }
}

#[test]
fn a_killed_run_resumes_and_ends_with_the_same_metrics() {
    let _serial = serial();
    let device = device();
    let (bert, tokenizer) = minilm(&device);
    // 96 examples in batches of 16: 6 steps per epoch, 12 in all.
    let task: ClassificationTask =
        ClassificationTask::new(&tokenizer, &movie(96, 64), 48, 0).unwrap();
    let config = resumable_config();
    let prepare =
        |bert: Encoder| prepare_classifier(bert, 2, &config.method, config.seed, &device).unwrap();

    let whole_dir = tempfile::tempdir().unwrap();
    let whole = Trainer::new(&task, config.clone(), whole_dir.path())
        .fit(prepare(bert.clone()))
        .unwrap();
    assert_eq!(whole.stop, StopReason::Completed);

    // Interrupted one step into the second epoch...
    let dir = tempfile::tempdir().unwrap();
    let killed = Trainer::new(
        &task,
        TrainConfig {
            stop_after_steps: Some(7),
            ..config.clone()
        },
        dir.path(),
    )
    .fit(prepare(bert))
    .unwrap();
    assert_eq!(killed.stop, StopReason::StepLimit);
    assert_eq!(killed.state.global_step, 7);
    drop(killed);
    // ...a fresh run on the same directory refuses to overwrite it...
    let (bert, _) = minilm(&device);
    let err = Trainer::new(&task, config.clone(), dir.path())
        .fit(prepare(bert.clone()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("already holds a checkpoint"), "{err}");
    // ...and a new process (a freshly loaded model) resumes it.
    let resumed = Trainer::new(&task, config.clone(), dir.path())
        .resume(prepare(bert))
        .unwrap();
    assert_eq!(resumed.stop, StopReason::Completed);
    assert_eq!(resumed.state.global_step, 12);
    assert_eq!(resumed.state.history.len(), 2);
    for (a, b) in whole.state.history.iter().zip(&resumed.state.history) {
        let (ca, cb) = (
            a.dev.classification.as_ref().unwrap(),
            b.dev.classification.as_ref().unwrap(),
        );
        assert_eq!(ca.confusion, cb.confusion, "epoch {}", a.epoch);
        assert!(
            (a.dev.loss - b.dev.loss).abs() < 1e-5,
            "{} vs {}",
            a.dev.loss,
            b.dev.loss
        );
        assert!(
            (a.train_loss - b.train_loss).abs() < 1e-5,
            "{} vs {}",
            a.train_loss,
            b.train_loss
        );
    }
    let final_a = lora_train::params::trainable_tensors(&whole.model);
    let final_b = lora_train::params::trainable_tensors(&resumed.model);
    assert_eq!(
        final_a.keys().collect::<Vec<_>>(),
        final_b.keys().collect::<Vec<_>>()
    );
    for (k, a) in &final_a {
        let diff = lora_tests::max_abs_diff(&a.data, &final_b[k].data);
        assert!(diff < 1e-5, "{k}: {diff}");
    }

    // The output directory is a PEFT adapter: loading it onto the base model gives the
    // trained model's dev metrics.
    let (bert, _) = minilm(&device);
    let (loaded, _) =
        lora_models::load_seq_cls_adapter(bert.valid(), dir.path(), "default").unwrap();
    let dev = tokenized_dev(&tokenizer, 64);
    let from_files = lora_train::evaluate_classifier(&loaded, &dev, 2, 0, 32).unwrap();
    let in_memory =
        lora_train::evaluate_classifier(&resumed.model.valid(), &dev, 2, 0, 32).unwrap();
    assert_eq!(
        from_files.classification.unwrap().confusion,
        in_memory.classification.unwrap().confusion
    );
    assert!((from_files.loss - in_memory.loss).abs() < 1e-5);
}

fn tokenized_dev(tokenizer: &Tokenizer, n: usize) -> Vec<lora_data::TokenizedExample> {
    lora_data::batching::tokenize_examples(tokenizer, &movie(1, n).dev, 48).unwrap()
}

#[test]
fn a_diverging_run_stops_with_a_clear_error_and_keeps_the_last_checkpoint() {
    let _serial = serial();
    let device = device();
    let (bert, tokenizer) = minilm(&device);
    let task: ClassificationTask =
        ClassificationTask::new(&tokenizer, &movie(64, 16), 48, 0).unwrap();
    let config = TrainConfig {
        epochs: 1,
        lr: Some(1e38),
        max_grad_norm: None,
        checkpoint_every_steps: Some(1),
        ..quiet(Method::HeadOnly)
    };
    let model = prepare_classifier(bert, 2, &config.method, config.seed, &device).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err = Trainer::new(&task, config, dir.path())
        .fit(model)
        .unwrap_err();
    let TrainError::NonFiniteLoss {
        step, checkpoint, ..
    } = &err
    else {
        panic!("expected a non-finite loss, got {err}");
    };
    assert_eq!(*step, 1, "{err}");
    let checkpoint = checkpoint.clone().expect("the step-1 checkpoint exists");
    let message = err.to_string();
    assert!(
        message.contains("became") && message.contains("Lower the learning rate"),
        "{message}"
    );
    let state = lora_train::checkpoint::read_state(&checkpoint).unwrap();
    assert_eq!(state.global_step, 1);
    assert!(
        !dir.path().join("metrics.json").exists(),
        "a failed run writes no results"
    );
}

#[test]
fn lora_lowers_smollm2_perplexity_on_movie_reviews() {
    let _serial = serial();
    let device = device();
    let (llama, tokenizer) = load_causal_lm(&ModelSource::path(asset("smollm2")), &device).unwrap();
    let data = movie(80, 24);
    let docs =
        |split: &[lora_data::Example]| split.iter().map(|e| e.text.clone()).collect::<Vec<_>>();
    let eos = llama.config().eos_token_ids.first().copied();
    let task = CausalLmTask::<lora_models::DecoderForCausalLM>::new(
        &tokenizer,
        &docs(&data.train),
        &docs(&data.dev),
        32,
        eos,
    )
    .unwrap();
    let config = TrainConfig {
        epochs: 1,
        batch_size: 4,
        lr: Some(1e-3),
        eval_batch_size: 8,
        ..quiet(Method::lora(8, &["q_proj", "v_proj"]))
    };
    let model = prepare_causal_lm(llama, &config.method, config.seed, &device).unwrap();
    let before = task
        .evaluate(&model.valid(), 8)
        .unwrap()
        .perplexity
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let outcome = Trainer::new(&task, config, dir.path()).fit(model).unwrap();
    eprintln!("{}", outcome.summary());
    let after = outcome.state.history[0].dev.perplexity.unwrap();
    assert!(after < 0.9 * before, "dev perplexity {before} -> {after}");
    let adapter =
        lora_surgery::PeftConfig::from_file(&dir.path().join("adapter_config.json")).unwrap();
    assert_eq!(adapter.task_type, Some(lora_surgery::TaskType::CausalLm));
}

#[test]
fn step_evaluations_keep_the_best_weights_and_stop_early() {
    let _serial = serial();
    let device = device();
    let (bert, tokenizer) = minilm(&device);
    let task: ClassificationTask =
        ClassificationTask::new(&tokenizer, &movie(96, 32), 32, 0).unwrap();
    // A learning rate so small that the dev accuracy cannot change: the first evaluation is the
    // best, and with patience 1 the second one ends the run.
    let config = TrainConfig {
        epochs: 3,
        lr: Some(1e-12),
        eval_every_steps: Some(2),
        early_stopping_patience: Some(1),
        select_metric: Some("accuracy".into()),
        ..quiet(Method::HeadOnly)
    };
    let model = prepare_classifier(bert, 2, &config.method, config.seed, &device).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let outcome = Trainer::new(&task, config, dir.path()).fit(model).unwrap();
    assert_eq!(outcome.stop, StopReason::EarlyStopped);
    assert_eq!(outcome.state.global_step, 4);
    let steps: Vec<usize> = outcome.state.evals.iter().map(|e| e.step).collect();
    assert_eq!(
        steps,
        [2, 4, 4],
        "two step evaluations, then the end-of-epoch one"
    );
    assert_eq!(outcome.state.best.as_ref().unwrap().step, 2);
    let best: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("best/metrics.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(best["step"], 2);
    assert!(dir.path().join("best/trainable.safetensors").is_file());
}
