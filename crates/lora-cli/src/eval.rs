//! `lora eval`: measure a model (with an optional adapter) on a built-in task's split or on the
//! user's file: accuracy, precision, recall, F1, MCC and the confusion matrix for a classifier;
//! for a causal LM, perplexity on a text corpus, or on a generation task (prompts and answers,
//! or conversations) exact match, BLEU and ROUGE-L of its greedy answers.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use lora_assets::{AssetCache, BuiltinTask};
use lora_data::batching::tokenize_examples;
use lora_data::readers::read_examples;
use lora_data::{Example, LabelVocab, TaskSplits};
use lora_train::{CausalLmTask, EvalMetrics, TrainTask, evaluate_classifier};
use serde_json::json;

use lora_eval::generation::{GenerationSettings, evaluate_generation};

use crate::data::{ColumnArgs, read_documents};
use crate::model::{LoadedModel, ModelArgs, load};
use crate::sft::SftDataArgs;

#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// A PEFT LoRA adapter directory (such as the --out of lora train).
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// A built-in task: movie-sentiment, bbc-news; for a decoder also the generation tasks
    /// bbc-headlines, movie-sentiment-instruct.
    #[arg(long, conflicts_with = "file", required_unless_present = "file")]
    data: Option<String>,
    /// Which split of the built-in task: train, dev or test.
    #[arg(long, default_value = "test", requires = "data")]
    split: String,
    /// Your own data: .tsv, .csv or .jsonl with a header / keys (a classifier's texts and labels,
    /// or a decoder's prompt / completion pairs or conversations), or a .txt corpus for a
    /// decoder's perplexity.
    #[arg(long)]
    file: Option<PathBuf>,
    #[command(flatten)]
    columns: ColumnArgs,
    /// Evaluate at most this many examples (documents for a causal LM).
    #[arg(long)]
    max_examples: Option<usize>,
    /// Truncate inputs to this many tokens (for a causal LM: the block length; default 128 / 64).
    #[arg(long)]
    max_len: Option<usize>,
    /// Examples per forward pass.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Print the metrics as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    sft: SftDataArgs,
    /// Most new tokens per answer on a generation task.
    #[arg(long, default_value_t = 64)]
    max_new_tokens: usize,
    /// Write every prompt, reference and generation of a generation task to this JSONL file.
    #[arg(long)]
    generations: Option<PathBuf>,
}

pub fn eval(args: EvalArgs, quiet: bool) -> Result<()> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let device = lora_core::select_device(args.model.device.as_deref())?;
    let loaded = load(&args.model, args.adapter.as_deref(), &device)?;
    let tokenizer = &loaded.tokenizer;
    let (name, metrics, labels) = match loaded.model {
        LoadedModel::Classifier { model, labels } => {
            let (name, examples) = labelled_examples(&args, &labels)?;
            let max_len = args.max_len.unwrap_or(128);
            let tokenized = tokenize_examples(tokenizer, &examples, max_len)?;
            let pad_id = model.encoder.config().pad_token_id as u32;
            let spinner = crate::spinner(format!("evaluating {name}"), quiet);
            let metrics = evaluate_classifier(
                model.as_ref(),
                &tokenized,
                labels.len(),
                pad_id,
                args.batch_size,
            )?;
            spinner.finish_and_clear();
            (name, metrics, Some(labels))
        }
        LoadedModel::CausalLm(model) if is_generation_task(&args) => {
            let flags = &args.sft;
            let splits = crate::sft::sft_splits(
                args.data.as_deref(),
                args.file.as_deref(),
                None,
                &flags.columns(),
            )?;
            let mut examples = match (&args.data, args.split.as_str()) {
                (None, _) => [splits.train, splits.dev].concat(),
                (Some(_), "train") => splits.train,
                (Some(_), "dev") => splits.dev,
                (Some(_), "test") => splits.test,
                (Some(_), other) => bail!("unknown split '{other}'; choose train, dev or test"),
            };
            if let Some(n) = args.max_examples {
                examples.truncate(n);
            }
            let template = crate::sft::chat_template(
                &loaded.source,
                tokenizer,
                flags.chat_template.as_deref(),
            )?;
            let settings = GenerationSettings {
                max_new_tokens: args.max_new_tokens,
                batch_size: args.batch_size.min(16),
                stop_tokens: crate::sft::stop_tokens(&loaded.source, tokenizer, template.as_ref()),
            };
            let name = match &args.data {
                Some(task) => format!("{task} {}: {} examples", args.split, examples.len()),
                None => format!("{}: {} examples", splits.name, examples.len()),
            };
            let spinner = crate::spinner(format!("generating for {name}"), quiet);
            let result = evaluate_generation(
                &model,
                tokenizer,
                template.as_ref(),
                &examples,
                &settings,
                &device,
            )?;
            spinner.finish_and_clear();
            if let Some(path) = &args.generations {
                let mut lines = String::new();
                for record in &result.records {
                    lines += &serde_json::to_string(record)?;
                    lines.push('\n');
                }
                lora_core::io::write_atomic(path, lines.as_bytes())?;
            }
            let m = &result.metrics;
            if args.json {
                println!(
                    "{}",
                    json!({"data": name, "generation": m, "seconds": result.seconds,
                           "new_tokens": result.new_tokens})
                );
            } else {
                println!(
                    "{name}\nexact match {:.4} · BLEU {:.2} · ROUGE-L {:.4} · {} new tokens in \
                     {:.1} s",
                    m.exact_match, m.bleu.score, m.rouge_l_f1, result.new_tokens, result.seconds
                );
            }
            return Ok(());
        }
        LoadedModel::CausalLm(model) => {
            let (name, documents) = documents(&args)?;
            let block = args.max_len.unwrap_or(64);
            let eos = model.config().eos_token_ids.first().copied();
            let task: CausalLmTask =
                CausalLmTask::for_evaluation(tokenizer, &documents, block, eos)?;
            let name = format!(
                "{name}: {} documents, {} blocks of {block} tokens",
                documents.len(),
                task.dev_blocks()
            );
            let spinner = crate::spinner(format!("evaluating {name}"), quiet);
            let metrics = task.evaluate(&model, args.batch_size)?;
            spinner.finish_and_clear();
            (name, metrics, None)
        }
    };
    if args.json {
        println!(
            "{}",
            json!({"data": name, "labels": labels, "metrics": metrics})
        );
    } else {
        print!("{}", report(&name, &metrics, labels.as_deref()));
    }
    Ok(())
}

/// Whether a decoder is evaluated by generation: a built-in generation task, or a prompt /
/// completion or conversation file (a `.txt` corpus, or a table with `--text-col`, gives
/// perplexity).
fn is_generation_task(args: &EvalArgs) -> bool {
    match (&args.data, &args.file) {
        (Some(task), _) => lora_assets::BuiltinSftTask::from_name(task).is_ok(),
        (None, Some(file)) => crate::sft::is_sft_file(file) && args.columns.text_col.is_none(),
        (None, None) => false,
    }
}

/// A built-in task's split, by name.
fn task_split(task: &str, split: &str) -> Result<(String, TaskSplits, Vec<Example>)> {
    let splits = BuiltinTask::from_name(task)?.load(&AssetCache::from_env())?;
    let examples = match split {
        "train" => splits.train.clone(),
        "dev" => splits.dev.clone(),
        "test" => splits.test.clone(),
        other => bail!("unknown split '{other}'; choose train, dev or test"),
    };
    Ok((format!("{task} {split}"), splits, examples))
}

/// The labelled examples to evaluate a classifier with `labels` on; the data's labels must be
/// the model's.
fn labelled_examples(args: &EvalArgs, labels: &[String]) -> Result<(String, Vec<Example>)> {
    let (name, mut examples) = match (&args.data, &args.file) {
        (Some(task), _) => {
            let (name, splits, examples) = task_split(task, &args.split)?;
            if splits.labels.names() != labels {
                bail!(
                    "the model's labels ({}) are not {task}'s ({}); evaluate it on data with its \
                     own labels (--file)",
                    labels.join(", "),
                    splits.labels.names().join(", ")
                );
            }
            (name, examples)
        }
        (None, Some(file)) => {
            let columns = args.columns.columns();
            let vocab = LabelVocab::new(labels.iter().cloned())?;
            let (examples, _) = read_examples(file, &columns, Some(&vocab))?;
            (file.display().to_string(), examples)
        }
        (None, None) => bail!("pass --data with a built-in task, or --file"),
    };
    if let Some(n) = args.max_examples {
        examples.truncate(n);
    }
    if examples.is_empty() {
        bail!("{name} holds no examples");
    }
    Ok((format!("{name}: {} examples", examples.len()), examples))
}

/// The documents to measure a causal LM's perplexity on.
fn documents(args: &EvalArgs) -> Result<(String, Vec<String>)> {
    let (name, mut documents) = match (&args.data, &args.file) {
        (Some(task), _) => {
            let (name, _, examples) = task_split(task, &args.split)?;
            (name, examples.into_iter().map(|e| e.text).collect())
        }
        (None, Some(file)) => (
            file.display().to_string(),
            read_documents(file, &args.columns.columns().text)?,
        ),
        (None, None) => bail!("pass --data with a built-in task, or --file"),
    };
    if let Some(n) = args.max_examples {
        documents.truncate(n);
    }
    Ok((name, documents))
}

/// The metrics as text: one line of scores, then the confusion matrix with label names.
fn report(name: &str, metrics: &EvalMetrics, labels: Option<&[String]>) -> String {
    let mut out = format!("{name}\n");
    match (&metrics.classification, labels) {
        (Some(c), Some(labels)) => {
            out.push_str(&format!(
                "accuracy {:.4} · precision {:.4} · recall {:.4} · f1 {:.4} · macro_f1 {:.4} · \
                 weighted_f1 {:.4} · mcc {:.4} · loss {:.4}\n",
                c.accuracy,
                c.precision,
                c.recall,
                c.f1,
                c.macro_f1,
                c.weighted_f1,
                c.mcc,
                metrics.loss
            ));
            let width = labels.iter().map(String::len).max().unwrap_or(4).max(6);
            out.push_str("confusion matrix (rows: true label, columns: predicted)\n");
            out.push_str(&format!("{:width$}", ""));
            for label in labels {
                out.push_str(&format!(" {label:>width$}"));
            }
            out.push('\n');
            for (label, row) in labels.iter().zip(&c.confusion.counts) {
                out.push_str(&format!("{label:width$}"));
                for count in row {
                    out.push_str(&format!(" {count:>width$}"));
                }
                out.push('\n');
            }
        }
        _ => out.push_str(&format!(
            "perplexity {:.4} · loss {:.4} (nats per token)\n",
            metrics.perplexity.unwrap_or(f64::NAN),
            metrics.loss
        )),
    }
    out
}
