//! `lora`: the command line of lora-burn.
//!
//! - `lora predict`: run a sequence classifier or a causal LM (optionally with a PEFT adapter,
//!   optionally merged) on texts; print labels and probabilities, or the top next tokens;
//!   `--json` prints everything, including raw logits.
//! - `lora inspect`: the model summary and the dry-run report of which modules a LoRA config
//!   would adapt.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};
use clap::{Args, Parser, Subcommand};
use lora_core::{LoraConfig, ParamCount};
use lora_models::{
    Architecture, BertForSequenceClassification, BertInput, LlamaForCausalLM, ModelSource,
};
use lora_surgery::{Adaptable, ModulePattern, TargetSpec};
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "lora",
    version,
    about = "Fine-tune and run transformers with LoRA on Burn"
)]
struct Cli {
    /// Only print errors.
    #[arg(long, global = true)]
    quiet: bool,
    /// More logging (-v info, -vv debug); RUST_LOG also works.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a model (and adapter) on texts.
    #[command(after_help = "Examples:\n  \
        lora predict --model minilm --adapter ./sentiment-adapter --text \"A gripping film.\"\n  \
        lora predict --model smollm2 --text \"The capital of France is\" --top-k 5\n  \
        lora predict --model ./SmolLM2.gguf --adapter ./adapter --merge --text \"Hi\" --json")]
    Predict(PredictArgs),
    /// Summarise a model and show which modules a LoRA config would adapt (a dry run).
    #[command(after_help = "Examples:\n  \
        lora inspect --model minilm --targets query,value --r 8\n  \
        lora inspect --model smollm2 --targets all-linear\n  \
        lora inspect --model smollm2 --targets-regex '.*layers\\.1[0-9]\\..*q_proj'")]
    Inspect(InspectArgs),
}

#[derive(Args)]
struct ModelArgs {
    /// A Hugging Face directory, a .gguf file, or an asset name (minilm, smollm2).
    #[arg(long)]
    model: String,
    /// Backend: flex, ndarray, wgpu, cuda[:N] (default: BURN_DEVICE, else the first compiled).
    #[arg(long)]
    device: Option<String>,
}

#[derive(Args)]
struct PredictArgs {
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

#[derive(Args)]
struct InspectArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// target_modules as a comma-separated list (`query,value`), or `all-linear`.
    #[arg(long, conflicts_with = "targets_regex")]
    targets: Option<String>,
    /// target_modules as a full-match regular expression.
    #[arg(long)]
    targets_regex: Option<String>,
    /// exclude_modules as a comma-separated list.
    #[arg(long)]
    exclude: Option<String>,
    /// LoRA rank.
    #[arg(long, default_value_t = 8)]
    r: usize,
    /// LoRA alpha (default: r).
    #[arg(long)]
    alpha: Option<f64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.quiet, cli.verbose);
    let result = match cli.command {
        Command::Predict(args) => predict(args),
        Command::Inspect(args) => inspect(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(quiet: bool, verbose: u8) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// A model path, or an asset name fetched into the cache.
fn resolve_model(spec: &str) -> Result<ModelSource> {
    let path = Path::new(spec);
    if path.exists() {
        return Ok(ModelSource::path(path));
    }
    if lora_data::AssetSpec::by_name(spec).is_ok() {
        let asset = lora_data::AssetCache::from_env().fetch(spec)?;
        return Ok(ModelSource::path(asset.main));
    }
    bail!(
        "model '{spec}' is neither an existing path nor a known asset; give a Hugging Face \
         directory, a .gguf file, or one of: {}",
        lora_data::ASSETS.map(|a| a.name).join(", ")
    )
}

enum Loaded {
    Classifier(Box<BertForSequenceClassification>, tokenizers::Tokenizer),
    CausalLm(Box<LlamaForCausalLM>, tokenizers::Tokenizer),
}

fn load(args: &ModelArgs, adapter: Option<&Path>, device: &Device) -> Result<Loaded> {
    let source = resolve_model(&args.model)?;
    match source.architecture()? {
        Architecture::Bert => {
            let (bert, tokenizer) = lora_models::load_bert(&source, device)?;
            let Some(adapter) = adapter else {
                bail!(
                    "{} is a bare encoder without a classification head; pass --adapter with a \
                     SEQ_CLS adapter that saves its classifier (modules_to_save)",
                    source.as_path().display()
                );
            };
            let (model, _) = lora_surgery::load_seq_cls_adapter(bert, adapter, "default")
                .with_context(|| format!("applying adapter {}", adapter.display()))?;
            Ok(Loaded::Classifier(Box::new(model), tokenizer))
        }
        Architecture::Llama => {
            let (mut model, tokenizer) = lora_models::load_llama(&source, device)?;
            if let Some(adapter) = adapter {
                lora_surgery::load_adapter(&mut model, adapter, "default")
                    .with_context(|| format!("applying adapter {}", adapter.display()))?;
            }
            Ok(Loaded::CausalLm(Box::new(model), tokenizer))
        }
    }
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .try_to_vec::<f32>()
        .map_err(|e| anyhow::anyhow!("reading results back: {e:?}"))
}

fn predict(args: PredictArgs) -> Result<()> {
    let device = lora_core::select_device(args.model.device.as_deref())?;
    let loaded = load(&args.model, args.adapter.as_deref(), &device)?;
    match loaded {
        Loaded::Classifier(mut model, tokenizer) => {
            if args.merge {
                lora_surgery::merge_and_unload(model.as_mut())?;
            }
            let texts: Vec<(&str, Option<&str>)> =
                args.text.iter().map(|t| (t.as_str(), None)).collect();
            let batch = lora_models::encode_batch(&tokenizer, &texts, 0)?;
            let input = BertInput::from_encoded(&batch, &device)?;
            let logits = model.forward(&input)?;
            let labels = model.num_labels();
            let probs = to_vec(softmax(logits.clone(), 1))?;
            let logits = to_vec(logits)?;
            let names: Vec<String> = (0..labels).map(|i| format!("LABEL_{i}")).collect();
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
        Loaded::CausalLm(mut model, tokenizer) => {
            if args.merge {
                lora_surgery::merge_and_unload(model.as_mut())?;
            }
            let mut rows = Vec::new();
            for text in &args.text {
                let ids = tokenizer
                    .encode(text.as_str(), false)
                    .map_err(|e| anyhow::anyhow!("tokenizing {text:?}: {e}"))?;
                let mut cache = lora_models::KvCache::new();
                let input = lora_models::llama::ids_tensor(ids.get_ids(), &device);
                let logits = if args.disable_adapter {
                    lora_surgery::with_adapters_disabled(model.as_mut(), |m| {
                        m.forward_cached(input, &mut cache)
                    })??
                } else {
                    model.forward_cached(input, &mut cache)?
                };
                let probs = to_vec(softmax(logits.clone(), 1))?;
                let logits = to_vec(logits)?;
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

fn inspect(args: InspectArgs) -> Result<()> {
    let device = lora_core::select_device(args.model.device.as_deref())?;
    let source = resolve_model(&args.model.model)?;
    let arch = source.architecture()?;
    let split = |s: &str| {
        s.split(',')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
    };
    let target_modules = match (&args.targets, &args.targets_regex) {
        (Some(t), _) if t == "all-linear" => Some(ModulePattern::Regex("all-linear".into())),
        (Some(t), _) => Some(ModulePattern::List(split(t))),
        (None, Some(r)) => Some(ModulePattern::Regex(r.clone())),
        (None, None) => None,
    };
    let spec = TargetSpec {
        target_modules,
        exclude_modules: args
            .exclude
            .as_deref()
            .map(|e| ModulePattern::List(split(e))),
        ..Default::default()
    };
    let config = LoraConfig::new(args.r).with_alpha(args.alpha.unwrap_or(args.r as f64));
    config.validate()?;
    let (summary, report) = match arch {
        Architecture::Bert => {
            let (mut model, _) = lora_models::load_bert(&source, &device)?;
            let c = model.config().clone();
            let params = ParamCount::of(&model).total;
            let summary = format!(
                "BERT encoder: {} layers, hidden {}, {} heads, vocab {}, {params} parameters",
                c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.vocab_size
            );
            (summary, plan_or_list(&mut model, &spec, &config)?)
        }
        Architecture::Llama => {
            let (mut model, _) = lora_models::load_llama(&source, &device)?;
            let c = model.config().clone();
            let params = ParamCount::of(&model).total;
            let summary = format!(
                "Llama decoder: {} layers, hidden {}, {}/{} heads, vocab {}, tied head: {}, {params} parameters",
                c.num_hidden_layers,
                c.hidden_size,
                c.num_attention_heads,
                c.kv_heads(),
                c.vocab_size,
                c.tie_word_embeddings
            );
            (summary, plan_or_list(&mut model, &spec, &config)?)
        }
    };
    println!("{summary}");
    println!("{report}");
    Ok(())
}

/// The dry-run report, or the list of adaptable modules when no targets are given.
fn plan_or_list<M: Adaptable>(
    model: &mut M,
    spec: &TargetSpec,
    config: &LoraConfig,
) -> Result<String> {
    if spec.target_modules.is_none() {
        let names: Vec<String> = model.linears_mut().into_iter().map(|(n, _)| n).collect();
        return Ok(format!(
            "{} adaptable linear modules (pass --targets to see a LoRA plan):\n  {}",
            names.len(),
            names.join("\n  ")
        ));
    }
    Ok(lora_surgery::plan(model, spec, config)?.to_string())
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
