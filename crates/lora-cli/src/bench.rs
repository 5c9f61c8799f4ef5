//! `lora bench`: time one workload (a training step, a forward pass, decoding) on a batch of
//! token ids from a file, and print the measurement as one JSON line; or write the token files
//! (`--write-tokens DIR`) from the real assets, so that PyTorch can replay the same batches.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use lora_assets::{AssetCache, BuiltinSftTask, BuiltinTask};
use lora_data::sft::{SftEncoder, SftOptions};
use lora_eval::bench::{BenchModel, BenchSettings, BenchTokens, Workload, run_workload};
use lora_models::{
    RandomModel, load_causal_lm, load_causal_lm_as, load_encoder, load_encoder_as, random_model,
};

use crate::model::resolve_model;

#[derive(Args)]
pub struct BenchArgs {
    /// The workload: encoder-lora-step, encoder-ft-step, encoder-infer, encoder-latency-base,
    /// encoder-latency-merged, encoder-latency-unmerged, encoder-latency-adapter-h,
    /// encoder-latency-adapter-l, decoder-lora-step, decoder-prefill, decoder-decode.
    #[arg(long, required_unless_present = "write_tokens")]
    workload: Option<String>,
    /// The model: a Hugging Face directory, a .gguf file, an id or an asset name.
    #[arg(long, conflicts_with = "config")]
    model: Option<String>,
    /// A model's config.json, built with seeded random weights (with --random-init): a
    /// real-size model whose weights are not at hand.
    #[arg(long, requires = "random_init")]
    config: Option<PathBuf>,
    /// Build the --config model with seeded random weights.
    #[arg(long, requires = "config")]
    random_init: bool,
    /// The token file (see --write-tokens).
    #[arg(long, required_unless_present = "write_tokens")]
    tokens: Option<PathBuf>,
    /// Untimed runs first.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Timed runs (the median is reported).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// New tokens of decoder-decode.
    #[arg(long, default_value_t = 64)]
    new_tokens: usize,
    /// Backend: flex, ndarray, wgpu, cuda or cuda:N.
    #[arg(long)]
    device: Option<String>,
    /// How the frozen base weights are held: f32, f16, bf16, q8 or q4.
    #[arg(long, default_value = "f32")]
    base_dtype: lora_core::BaseDType,
    /// Recompute activations in the backward pass, one layer at a time (training steps).
    #[arg(long)]
    checkpoint_activations: bool,
    /// Write the benchmark token files into this directory instead (from minilm, smollm2,
    /// movie-sentiment and bbc-headlines).
    #[arg(long, conflicts_with_all = ["workload", "tokens"])]
    write_tokens: Option<PathBuf>,
}

pub fn bench(args: BenchArgs) -> Result<()> {
    if let Some(dir) = &args.write_tokens {
        let written = write_tokens(dir)?;
        for path in written {
            println!("{}", path.display());
        }
        return Ok(());
    }
    let workload = Workload::from_name(args.workload.as_deref().unwrap_or_default())?;
    let tokens_path = args.tokens.as_deref().expect("required by clap");
    let tokens = BenchTokens::read(tokens_path)?;
    let device = lora_core::select_device(args.device.as_deref())?.autodiff();
    let dtype = args.base_dtype;
    let mut model = match (&args.model, &args.config) {
        (Some(spec), _) => {
            let source = resolve_model(spec)?;
            if workload.is_encoder() {
                BenchModel::Encoder(load_encoder_as(&source, dtype, &device)?.0)
            } else {
                BenchModel::Decoder(load_causal_lm_as(&source, dtype, &device)?.0)
            }
        }
        (None, Some(config)) => match random_model(config, 0, &device)? {
            RandomModel::Encoder(e) => BenchModel::Encoder(e),
            RandomModel::Decoder(d) => BenchModel::Decoder(d),
        },
        (None, None) => bail!("pass --model, or --config FILE --random-init"),
    };
    if args.config.is_some() {
        match &mut model {
            BenchModel::Encoder(e) => lora_surgery::store_base_as(e, dtype)?,
            BenchModel::Decoder(d) => lora_surgery::store_base_as(d, dtype)?,
        };
    }
    let settings = BenchSettings {
        warmup: args.warmup,
        repeats: args.repeats,
        new_tokens: args.new_tokens,
        recompute_activations: args.checkpoint_activations,
    };
    let result = run_workload(workload, model, &tokens, &settings, &device)?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

/// The token files of `cargo xtask bench --vs-pytorch` and of the GPU bundle:
/// `encoder-b32.json` (32 movie reviews, at most 64 tokens, with labels), `encoder-b1.json`
/// (one review cut to 32 tokens), `decoder-b4.json` (4 bbc-headlines examples rendered with
/// SmolLM2's chat template, at most 128 tokens, labels on the headline only), `decoder-b8x512.json`
/// (8 rows of 512 tokens, each packing consecutive examples), `decoder-prompt.json` (one 32-token prompt),
/// `decoder-prompts-b8.json` (eight, decoded as one batch); `minilm.config.json` and
/// `smollm2.config.json`, the two models' configurations (for `--config --random-init`); and
/// `models.json`, the paths of the two models.
fn write_tokens(dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let cache = AssetCache::from_env();
    let mut written = Vec::new();
    let mut write = |name: &str, tokens: &BenchTokens| -> Result<()> {
        tokens.check()?;
        let path = dir.join(name);
        lora_core::io::write_atomic(&path, serde_json::to_string(tokens)?.as_bytes())?;
        written.push(path);
        Ok(())
    };

    let device = lora_core::select_device(Some("flex"))?;
    let minilm = resolve_model("minilm")?;
    let (_, tokenizer) = load_encoder(&minilm, &device)?;
    let reviews = BuiltinTask::MovieSentiment.load(&cache)?;
    let encode = |text: &str, max: usize| -> Result<Vec<i64>> {
        let mut ids: Vec<i64> = tokenizer
            .encode(text, true)
            .map_err(|e| anyhow::anyhow!("tokenizing: {e}"))?
            .get_ids()
            .iter()
            .map(|&t| i64::from(t))
            .collect();
        if ids.len() > max {
            let last = *ids.last().expect("non-empty");
            ids.truncate(max - 1);
            ids.push(last);
        }
        Ok(ids)
    };
    let rows: Vec<Vec<i64>> = reviews.train[..32]
        .iter()
        .map(|e| encode(&e.text, 64))
        .collect::<Result<_>>()?;
    let labels: Vec<i64> = reviews.train[..32].iter().map(|e| e.label as i64).collect();
    write(
        "encoder-b32.json",
        &padded(rows, 0, serde_json::json!(labels)),
    )?;
    let row = encode(&reviews.train[0].text, 32)?;
    write(
        "encoder-b1.json",
        &padded(vec![row], 0, serde_json::json!([reviews.train[0].label])),
    )?;

    let smol = resolve_model("smollm2")?;
    let (decoder, tokenizer) = load_causal_lm(&smol, &device)?;
    let template = lora_eval::chat::model_chat_template(&smol, &tokenizer, None)?;
    let pad = decoder
        .config()
        .pad_token_id
        .or(decoder.config().eos_token_ids.first().copied())
        .unwrap_or(0);
    let headlines = BuiltinSftTask::from_name("bbc-headlines")?.load(&cache)?;
    // Four examples of at most 128 tokens; and eight rows of exactly 512 tokens, each packing
    // consecutive examples (the headlines' articles are shorter than 512 tokens).
    for (name, rows, max_len, pack) in [
        ("decoder-b4.json", 4, 128, false),
        ("decoder-b8x512.json", 8, 512, true),
    ] {
        let options = SftOptions {
            max_len,
            train_on_prompt: false,
        };
        let encoder = SftEncoder::new(&tokenizer, template.as_ref(), options)?;
        let (encoded, _) = encoder.encode_all(&headlines.train[..rows * 16])?;
        let mut examples = encoded.iter().map(|e| {
            (
                e.ids.iter().map(|&t| i64::from(t)).collect(),
                e.labels.clone(),
            )
        });
        let mut ids: Vec<Vec<i64>> = Vec::new();
        let mut labels: Vec<Vec<i64>> = Vec::new();
        while ids.len() < rows {
            let (mut row_ids, mut row_labels): (Vec<i64>, Vec<i64>) =
                examples.next().context("too few bbc-headlines examples")?;
            while pack && row_ids.len() < max_len {
                let (more_ids, more_labels) =
                    examples.next().context("too few bbc-headlines examples")?;
                row_ids.extend(more_ids);
                row_labels.extend(more_labels);
            }
            row_ids.truncate(max_len);
            row_labels.truncate(max_len);
            ids.push(row_ids);
            labels.push(row_labels);
        }
        let width = ids.iter().map(Vec::len).max().unwrap_or(0);
        let labels: Vec<Vec<i64>> = labels
            .into_iter()
            .map(|mut l| {
                l.resize(width, lora_data::sft::IGNORE_INDEX);
                l
            })
            .collect();
        write(
            name,
            &padded(ids, i64::from(pad), serde_json::json!(labels)),
        )?;
    }
    // Prompts of test examples, cut to 32 tokens: one, and eight decoded as a batch.
    let prompts = headlines.test[..8]
        .iter()
        .map(|example| -> Result<Vec<i64>> {
            let prompt = lora_eval::generation::prompt_text(example, template.as_ref())?;
            let mut ids: Vec<i64> =
                lora_eval::generation::prompt_ids(&tokenizer, &prompt, template.is_some())?
                    .into_iter()
                    .map(i64::from)
                    .collect();
            ids.truncate(32);
            Ok(ids)
        })
        .collect::<Result<Vec<_>>>()?;
    write(
        "decoder-prompt.json",
        &padded(prompts[..1].to_vec(), i64::from(pad), serde_json::json!([])),
    )?;
    write(
        "decoder-prompts-b8.json",
        &padded(prompts, i64::from(pad), serde_json::json!([])),
    )?;
    // Their configurations, for `--config FILE --random-init` where the weights cannot go.
    let minilm_config = required_config(&minilm)?;
    for (name, config) in [
        ("minilm.config.json", minilm_config),
        ("smollm2.config.json", decoder.hf_config()),
    ] {
        let path = dir.join(name);
        lora_core::io::write_atomic(&path, serde_json::to_string_pretty(&config)?.as_bytes())?;
        written.push(path);
    }
    // Where the models are, for the other engine.
    let models = serde_json::json!({
        "minilm": minilm.as_path(),
        "smollm2": smol.as_path(),
    });
    let path = dir.join("models.json");
    lora_core::io::write_atomic(&path, serde_json::to_string_pretty(&models)?.as_bytes())?;
    written.push(path);
    Ok(written)
}

/// The `config.json` of a Hugging Face model directory.
fn required_config(source: &lora_models::ModelSource) -> Result<serde_json::Value> {
    let path = source.as_path().join("config.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Right-pads rows to the longest with `pad`, with the attention mask.
fn padded(rows: Vec<Vec<i64>>, pad: i64, labels: serde_json::Value) -> BenchTokens {
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    let attention_mask = rows
        .iter()
        .map(|r| {
            let mut m = vec![1; r.len()];
            m.resize(width, 0);
            m
        })
        .collect();
    let input_ids = rows
        .into_iter()
        .map(|mut r| {
            r.resize(width, pad);
            r
        })
        .collect();
    BenchTokens {
        input_ids,
        attention_mask,
        labels,
    }
}
