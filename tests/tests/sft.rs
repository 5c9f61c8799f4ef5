//! Supervised fine-tuning on a tiny decoder (the tiny Llama fixture): TRL's masked loss against a
//! hand computation, packing against unpacked rows, batched generation against one prompt at a
//! time, and a LoRA run that learns its answers.

use burn::tensor::{Device, Int, Tensor, TensorData};
use lora_data::sft::{IGNORE_INDEX, SftEncoded, collate_rows};
use lora_models::{DecoderForCausalLM, GenerationConfig, ModelSource, load_causal_lm};
use lora_tests::fixtures_dir;
use lora_train::sft::labelled_nll;

fn model(device: &Device) -> DecoderForCausalLM {
    let dir = fixtures_dir().join("tiny_llama/model");
    load_causal_lm(&ModelSource::path(dir), device).unwrap().0
}

/// Two examples: a prompt whose labels are ignored, then an answer that is labelled.
fn examples() -> Vec<SftEncoded> {
    let ex = |ids: Vec<u32>, prompt: usize| SftEncoded {
        labels: ids
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                if i < prompt {
                    IGNORE_INDEX
                } else {
                    i64::from(t)
                }
            })
            .collect(),
        ids,
        truncated: false,
    };
    vec![
        ex(vec![1, 45, 87, 120, 33, 210, 9], 4),
        ex(vec![1, 300, 12, 77, 5], 2),
    ]
}

/// Natural-log softmax of one row, in f64.
fn log_softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().copied().fold(f32::MIN, f32::max) as f64;
    let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
    row.iter().map(|&x| x as f64 - max - sum.ln()).collect()
}

/// The mean negative log-likelihood of every labelled token, each example run alone through the
/// full forward: what TRL's loss is.
fn hand_loss(model: &DecoderForCausalLM, examples: &[SftEncoded], device: &Device) -> f64 {
    let (mut sum, mut count) = (0.0, 0);
    for e in examples {
        let ids: Vec<i64> = e.ids.iter().map(|&t| i64::from(t)).collect();
        let n = ids.len();
        let input = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, n]), device);
        let logits = model
            .forward(input)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let vocab = logits.len() / n;
        for t in 0..n - 1 {
            let label = e.labels[t + 1];
            if label != IGNORE_INDEX {
                sum -= log_softmax(&logits[t * vocab..(t + 1) * vocab])[label as usize];
                count += 1;
            }
        }
    }
    sum / count as f64
}

lora_core::backend_test!(fn masked_loss_is_the_mean_over_answer_tokens_only(device) {
    let model = model(&device);
    let examples = examples();
    // Both examples in one right-padded batch.
    let batch = collate_rows(&examples, &[vec![0], vec![1]], 0);
    let nll = labelled_nll(&model, &batch, &device).unwrap();
    assert_eq!(nll.dims(), [3 + 3], "one value per labelled next token");
    let ours = nll.mean().into_scalar::<f32>() as f64;
    let hand = hand_loss(&model, &examples, &device);
    assert!((ours - hand).abs() < 1e-5, "masked loss {ours} vs by hand {hand}");

    // The prompt's positions carry no loss: labelling one of them changes the loss, so the
    // mask is what keeps them out.
    let mut labelled_prompt = examples.clone();
    labelled_prompt[0].labels[2] = i64::from(labelled_prompt[0].ids[2]);
    let batch = collate_rows(&labelled_prompt, &[vec![0], vec![1]], 0);
    let with_prompt = labelled_nll(&model, &batch, &device).unwrap().mean().into_scalar::<f32>() as f64;
    assert!((with_prompt - ours).abs() > 1e-4, "{with_prompt} vs {ours}");
    assert!((with_prompt - hand_loss(&model, &labelled_prompt, &device)).abs() < 1e-5);
});

lora_core::backend_test!(fn a_packed_row_scores_like_its_examples_alone(device) {
    let model = model(&device);
    let examples = examples();
    let packed = collate_rows(&examples, &[vec![0, 1]], 0);
    assert!(packed.is_packed());
    let unpacked = collate_rows(&examples, &[vec![0], vec![1]], 0);
    let a = labelled_nll(&model, &packed, &device).unwrap().into_data().try_to_vec::<f32>().unwrap();
    let b = labelled_nll(&model, &unpacked, &device).unwrap().into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(a.len(), b.len());
    let diff = lora_tests::max_abs_diff(&a, &b);
    assert!(diff < 1e-4, "packing changed the per-token loss by {diff}");
});

lora_core::backend_test!(fn batched_generation_equals_one_prompt_at_a_time(device) {
    let model = model(&device);
    let prompts = vec![vec![1, 45, 87, 120], vec![1, 300], vec![1, 12, 77, 5, 9, 210]];
    let config = GenerationConfig {
        max_new_tokens: 6,
        ..GenerationConfig::default()
    };
    let batched = model.generate_batch(&prompts, &config, &device).unwrap();
    for (prompt, got) in prompts.iter().zip(&batched) {
        assert_eq!(*got, model.generate(prompt, &config, &device).unwrap(), "{prompt:?}");
    }
});
