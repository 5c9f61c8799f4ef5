//! `lora predict`: run a classifier or a causal LM (with an optional adapter) on texts.

use std::path::PathBuf;

use anyhow::Result;
use burn::tensor::Tensor;
use burn::tensor::activation::softmax;
use clap::Args;

use serde_json::json;

use crate::model::{LoadedModel, ModelArgs, load};

#[derive(Args)]
pub struct PredictArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// A PEFT LoRA adapter directory (adapter_config.json + adapter_model.safetensors).
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Merge the adapter into the weights before predicting.
    #[arg(long, requires = "adapter", conflicts_with = "disable_adapter")]
    merge: bool,
    /// Load the adapter but run with it disabled (PEFT's `disable_adapter()`): the base model,
    /// with the adapter's head for a bare encoder.
    #[arg(long, requires = "adapter")]
    disable_adapter: bool,
    /// An input text (repeat for several).
    #[arg(long, required = true)]
    text: Vec<String>,
    /// Print JSON, including the raw logits.
    #[arg(long)]
    json: bool,
    /// Causal LM: how many next tokens to show.
    #[arg(long, default_value_t = 5)]
    top_k: usize,
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("reading results back: {e:?}"))
}

pub fn predict(args: PredictArgs) -> Result<()> {
    let device = lora_core::select_device(args.model.device.as_deref())?;
    let loaded = load(&args.model, args.adapter.as_deref(), &device)?;
    let tokenizer = loaded.tokenizer;
    match loaded.model {
        LoadedModel::Classifier {
            mut model,
            labels: names,
        } => {
            if args.merge {
                lora_surgery::merge_and_unload(model.as_mut())?;
            }
            let texts: Vec<(&str, Option<&str>)> =
                args.text.iter().map(|t| (t.as_str(), None)).collect();
            let batch = lora_data::encode_batch(&tokenizer, &texts, 0)?;
            let input = lora_train::token_batch(&batch, &device)?;
            let logits = model.forward(&input)?;
            let labels = model.num_labels();
            let probs = to_vec(softmax(logits.clone(), 1))?;
            let logits = to_vec(logits)?;
            crate::model::check_finite(&logits, "logits", args.adapter.as_deref())?;
            let mut rows = Vec::new();
            for (i, text) in args.text.iter().enumerate() {
                let p = &probs[i * labels..(i + 1) * labels];
                let l = &logits[i * labels..(i + 1) * labels];
                let best = argmax(p);
                if !args.json {
                    println!("{}\t{}\t{}", names[best], fmt_list(p), text);
                }
                rows.push(json!({"text": text, "label": names[best], "label_id": best, "probabilities": p, "logits": l}));
            }
            if args.json {
                println!(
                    "{}",
                    json!({"task": "sequence-classification", "labels": names, "merged": args.merge, "predictions": rows})
                );
            }
        }
        LoadedModel::CausalLm(mut model) => {
            if args.merge {
                lora_surgery::merge_and_unload(model.as_mut())?;
            }
            let mut rows = Vec::new();
            for text in &args.text {
                let ids = tokenizer
                    .encode(text.as_str(), false)
                    .map_err(|e| anyhow::anyhow!("tokenizing {text:?}: {e}"))?;
                let mut cache = lora_models::KvCache::new();
                let input = lora_models::decoder::ids_tensor(ids.get_ids(), &device);
                let logits = if args.disable_adapter {
                    lora_surgery::with_adapters_disabled(model.as_mut(), |m| {
                        m.forward_cached(input, &mut cache)
                    })??
                } else {
                    model.forward_cached(input, &mut cache)?
                };
                let probs = to_vec(softmax(logits.clone(), 1))?;
                let logits = to_vec(logits)?;
                crate::model::check_finite(&logits, "logits", args.adapter.as_deref())?;
                let mut order: Vec<usize> = (0..probs.len()).collect();
                order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
                let top: Vec<_> = order
                    .iter()
                    .take(args.top_k)
                    .map(|&i| {
                        let token = tokenizer.decode(&[i as u32], false).unwrap_or_default();
                        json!({"id": i, "token": token, "probability": probs[i], "logit": logits[i]})
                    })
                    .collect();
                if !args.json {
                    println!("{text:?}");
                    for t in &top {
                        println!(
                            "  {:>8.4}  {:?}",
                            t["probability"].as_f64().unwrap_or(0.0),
                            t["token"].as_str().unwrap_or("")
                        );
                    }
                }
                rows.push(json!({"text": text, "input_ids": ids.get_ids(), "top_k": top, "last_logits": logits}));
            }
            if args.json {
                println!(
                    "{}",
                    json!({"task": "causal-lm", "merged": args.merge, "predictions": rows})
                );
            }
        }
    }
    Ok(())
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len()).fold(0, |best, i| if v[i] > v[best] { i } else { best })
}

fn fmt_list(v: &[f32]) -> String {
    v.iter()
        .map(|x| format!("{x:.4}"))
        .collect::<Vec<_>>()
        .join(" ")
}
