//! Running `lora train`: the data, the model and the trainer for each kind of task.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use lora_assets::tasks::SPLIT_SEED;
use lora_assets::{AssetCache, BuiltinTask};
use lora_core::ParamCount;
use lora_core::lock::DirLock;
use lora_data::dataset::split_seeded;
use lora_data::readers::{Columns, read_examples};
use lora_data::sft::SftOptions;
use lora_data::{Example, TaskSplits};
use lora_models::Family;
use lora_train::{
    CausalLmTask, ClassificationTask, Method, SftTask, StopReason, TrainOutcome, Trainer,
    prepare_causal_lm, prepare_classifier,
};

use crate::model::{resolve_model, write_labels};

use super::{RUN_FILE, RunSpec, TrainArgs, read_toml};

pub fn train(args: TrainArgs, quiet: bool) -> Result<()> {
    // The base settings: the run being resumed, else the config file, else nothing.
    let mut spec = match &args.config {
        Some(path) => read_toml(path)?,
        None => RunSpec::default(),
    };
    let out =
        args.out.clone().or(spec.out.clone()).context(
            "--out is required (the directory for the adapter, metrics and checkpoints)",
        )?;
    // One run at a time writes to --out: the lock is taken now when the directory exists (a
    // resume, or a second run on it is refused before any work), else just before the first
    // write.
    let mut lock = if out.is_dir() {
        Some(DirLock::acquire(&out)?)
    } else {
        None
    };
    if !args.resume
        && lora_train::checkpoint::existing_dir(&out.join(lora_train::trainer::CHECKPOINT_DIR))
            .is_some()
    {
        bail!(
            "{} already holds a checkpoint; pass --resume to continue it, or choose another \
             --out (nothing was changed there)",
            out.display()
        );
    }
    if args.resume {
        let saved = out.join(RUN_FILE);
        if !saved.is_file() {
            bail!("nothing to resume: {} does not exist", saved.display());
        }
        spec = read_toml(&saved)?;
    }
    // Ctrl-C or SIGTERM: the trainer finishes the step, writes a checkpoint and stops; a second
    // signal ends the process at once.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(&stop))
            .context("installing the interrupt handler")?;
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing the interrupt handler")?;
    }
    macro_rules! flag {
        ($name:ident) => {
            if args.$name.is_some() {
                spec.$name = args.$name.clone();
            }
        };
    }
    flag!(model);
    flag!(device);
    flag!(data);
    let c = &args.columns;
    for (flag, field) in [
        (&c.text_col, &mut spec.text_col),
        (&c.text_pair_col, &mut spec.text_pair_col),
        (&c.label_col, &mut spec.label_col),
    ] {
        if flag.is_some() {
            field.clone_from(flag);
        }
    }
    flag!(max_train);
    flag!(max_dev);
    flag!(max_len);
    if args.train_file.is_some() {
        spec.train = args.train_file.clone();
        spec.data = None;
    }
    if args.dev_file.is_some() {
        spec.dev = args.dev_file.clone();
    }
    if args.data.is_some() {
        spec.train = None;
        spec.dev = None;
    }
    let sft = &args.sft;
    if sft.prompt_col.is_some() {
        spec.prompt_col.clone_from(&sft.prompt_col);
    }
    if sft.completion_col.is_some() {
        spec.completion_col.clone_from(&sft.completion_col);
    }
    if sft.chat_template.is_some() {
        spec.chat_template.clone_from(&sft.chat_template);
    }
    spec.train_on_prompt |= args.train_on_prompt;
    spec.packing |= args.packing;
    spec.out = Some(out.clone());

    let model_spec = spec
        .model
        .clone()
        .context("--model is required: a Hugging Face directory, a .gguf file, or an asset name")?;
    let source = resolve_model(&model_spec)?;
    let family = source.family()?;
    let config = args.training(spec.training.clone(), family, quiet)?;
    spec.training = Some(config.clone());
    let device = lora_core::select_device(spec.device.as_deref())?;
    config.validate()?;
    let train_device = config.train_device(&device);

    // Nothing is written to --out until the data, the model and the method are ready, so a
    // mistake leaves no half-made run behind.
    let write_run_file = |lock: &mut Option<DirLock>| -> Result<()> {
        if lock.is_none() {
            *lock = Some(DirLock::acquire(&out)?);
        }
        let text = toml::to_string_pretty(&spec).context("recording the run settings")?;
        lora_core::io::write_atomic(&out.join(RUN_FILE), text.as_bytes())?;
        Ok(())
    };
    let base_name = source.as_path().display().to_string();
    match family {
        Family::Encoder(_) => {
            let splits = classification_data(&spec)?;
            let (bert, tokenizer) =
                lora_models::load_encoder_as(&source, config.base_dtype, &train_device)?;
            let pad_id = bert.config().pad_token_id as u32;
            let max_len = spec.max_len.unwrap_or(128);
            eprintln!(
                "{}: {} train / {} dev examples, {} labels ({}), max_len {max_len}",
                splits.name,
                splits.train.len(),
                splits.dev.len(),
                splits.labels.len(),
                splits.labels.names().join(", ")
            );
            let task: ClassificationTask =
                ClassificationTask::new(&tokenizer, &splits, max_len, pad_id)?;
            let model = prepare_classifier(
                bert,
                task.num_labels(),
                &config.method,
                config.seed,
                &train_device,
            )?;
            print_params(&config.method, &ParamCount::of(&model), quiet);
            if !args.resume {
                write_run_file(&mut lock)?;
            }
            write_labels(&out, splits.labels.names())?;
            let trainer = Trainer::new(&task, config, &out)
                .with_base_model(base_name)
                .with_stop_flag(Arc::clone(&stop));
            let outcome = run(&trainer, model, args.resume, &stop)?;
            report(&outcome, quiet);
        }
        Family::Decoder(_) if spec.is_sft() => {
            let flags = spec.sft();
            let splits = crate::sft::sft_splits(
                spec.data.as_deref(),
                spec.train.as_deref(),
                spec.dev.as_deref(),
                &flags.columns(),
            )?
            .truncate(spec.max_train, spec.max_dev, None);
            let (decoder, tokenizer) =
                lora_models::load_causal_lm_as(&source, config.base_dtype, &train_device)?;
            let template =
                crate::sft::chat_template(&source, &tokenizer, flags.chat_template.as_deref())?;
            let max_len = spec.max_len.unwrap_or(512);
            let options = SftOptions {
                max_len,
                train_on_prompt: spec.train_on_prompt,
            };
            let encode = |examples: &[lora_data::SftExample], what: &str| {
                crate::sft::encode(
                    &tokenizer,
                    template.as_ref(),
                    examples,
                    options,
                    what,
                    quiet,
                )
            };
            let (train_set, dev_set) = (
                encode(&splits.train, "training")?,
                encode(&splits.dev, "dev")?,
            );
            let pad_id = decoder
                .config()
                .pad_token_id
                .or(decoder.config().eos_token_ids.first().copied())
                .unwrap_or(0);
            let task: SftTask =
                SftTask::new(train_set, dev_set, pad_id, spec.packing.then_some(max_len))?;
            if !quiet {
                eprintln!(
                    "{}: {} train / {} dev examples ({} rows{}), {} loss, max_len {max_len}{}",
                    splits.name,
                    splits.train.len(),
                    splits.dev.len(),
                    task.train_rows(),
                    if spec.packing { ", packed" } else { "" },
                    if spec.train_on_prompt {
                        "full-sequence"
                    } else {
                        "completion-only"
                    },
                    template.as_ref().map_or(String::new(), |t| format!(
                        ", chat template from {}",
                        t.origin()
                    ))
                );
            }
            let model = prepare_causal_lm(decoder, &config.method, config.seed, &train_device)?;
            print_params(&config.method, &ParamCount::of(&model), quiet);
            if !args.resume {
                write_run_file(&mut lock)?;
            }
            let trainer = Trainer::new(&task, config, &out)
                .with_base_model(base_name)
                .with_stop_flag(Arc::clone(&stop));
            let outcome = run(&trainer, model, args.resume, &stop)?;
            report(&outcome, quiet);
        }
        Family::Decoder(_) => {
            let (train_docs, dev_docs) = lm_documents(&spec)?;
            let (decoder, tokenizer) =
                lora_models::load_causal_lm_as(&source, config.base_dtype, &train_device)?;
            let block = spec.max_len.unwrap_or(64);
            let eos = decoder.config().eos_token_ids.first().copied();
            let task: CausalLmTask =
                CausalLmTask::new(&tokenizer, &train_docs, &dev_docs, block, eos)?;
            if !quiet {
                eprintln!(
                    "{} training blocks of {block} tokens from {} documents ({} dev documents)",
                    task.train_blocks(),
                    train_docs.len(),
                    dev_docs.len()
                );
            }
            let model = prepare_causal_lm(decoder, &config.method, config.seed, &train_device)?;
            print_params(&config.method, &ParamCount::of(&model), quiet);
            if !args.resume {
                write_run_file(&mut lock)?;
            }
            let trainer = Trainer::new(&task, config, &out)
                .with_base_model(base_name)
                .with_stop_flag(Arc::clone(&stop));
            let outcome = run(&trainer, model, args.resume, &stop)?;
            report(&outcome, quiet);
        }
    }
    Ok(())
}

fn run<T: lora_train::TrainTask>(
    trainer: &Trainer<'_, T>,
    model: T::Model,
    resume: bool,
    stop: &AtomicBool,
) -> Result<TrainOutcome<T::Model>> {
    if stop.load(Ordering::SeqCst) {
        eprintln!("interrupted before training started");
        std::process::exit(130);
    }
    let checkpoint = trainer.out_dir().join(lora_train::trainer::CHECKPOINT_DIR);
    let outcome = if resume && lora_train::checkpoint::existing_dir(&checkpoint).is_none() {
        // Stopped before its first checkpoint: the recorded run starts from the beginning.
        tracing::warn!(
            "no checkpoint yet in {}: starting the run from the beginning",
            trainer.out_dir().display()
        );
        trainer.fit(model)
    } else if resume {
        trainer.resume(model)
    } else {
        trainer.fit(model)
    };
    outcome.map_err(|e| match e {
        lora_train::TrainError::Config(m) if m.contains("already holds a checkpoint") => {
            anyhow::anyhow!("{m} (pass --resume to continue it)")
        }
        other => other.into(),
    })
}

fn print_params(method: &Method, params: &ParamCount, quiet: bool) {
    if !quiet {
        eprintln!(
            "method {}: {} trainable of {} parameters ({:.3} %)",
            method.name(),
            params.trainable,
            params.total,
            params.trainable_percent()
        );
    }
}

/// Prints the summary; an interrupted run exits with status 130 and the command that resumes
/// it.
fn report<M>(outcome: &TrainOutcome<M>, quiet: bool) {
    if !quiet {
        print!("{}", outcome.summary());
    }
    if outcome.stop == StopReason::Interrupted {
        eprintln!(
            "interrupted after step {}: the checkpoint is in {}; continue with
  \
             lora train --out {} --resume",
            outcome.state.global_step,
            outcome
                .out_dir
                .join(lora_train::trainer::CHECKPOINT_DIR)
                .display(),
            outcome.out_dir.display()
        );
        std::process::exit(130);
    }
}

fn columns(spec: &RunSpec) -> Columns {
    crate::data::columns(
        spec.text_col.as_deref(),
        spec.text_pair_col.as_deref(),
        spec.label_col.as_deref(),
    )
}

/// The classification data: a built-in task, or training (and dev) files.
fn classification_data(spec: &RunSpec) -> Result<TaskSplits> {
    let splits = match (&spec.data, &spec.train) {
        (Some(name), _) => BuiltinTask::from_name(name)?.load(&AssetCache::from_env())?,
        (None, Some(train)) => {
            let columns = columns(spec);
            let (examples, labels) = read_examples(train, &columns, None)?;
            let (train_examples, dev) = match &spec.dev {
                Some(dev) => {
                    let (dev, _) = read_examples(dev, &columns, Some(&labels))?;
                    (examples, dev)
                }
                None => {
                    let (train, dev, _) = split_seeded(examples, 0.1, 0.0, SPLIT_SEED)?;
                    (train, dev)
                }
            };
            TaskSplits {
                name: train
                    .file_name()
                    .map_or_else(|| "data".into(), |n| n.to_string_lossy().into_owned()),
                train: train_examples,
                dev,
                test: Vec::new(),
                labels,
            }
        }
        (None, None) => bail!(
            "no data: pass --data with a built-in task ({}) or --train FILE",
            lora_assets::tasks::TASK_NAMES.join(", ")
        ),
    };
    Ok(splits.truncate(spec.max_train, spec.max_dev, None))
}

/// Documents for causal-LM training: a built-in task's texts, a .txt corpus (one document per
/// line) or a table's text column.
fn lm_documents(spec: &RunSpec) -> Result<(Vec<String>, Vec<String>)> {
    let texts = |examples: &[Example]| examples.iter().map(|e| e.text.clone()).collect::<Vec<_>>();
    let read = |path: &Path| crate::data::read_documents(path, &columns(spec).text);
    let (mut train, mut dev) = match (&spec.data, &spec.train) {
        (Some(name), _) => {
            let task = BuiltinTask::from_name(name)?.load(&AssetCache::from_env())?;
            (texts(&task.train), texts(&task.dev))
        }
        (None, Some(path)) => {
            let docs = read(path)?;
            match &spec.dev {
                Some(dev) => (docs, read(dev)?),
                None => {
                    // Reuse the seeded split on documents wrapped as unlabelled examples.
                    let examples: Vec<Example> = docs
                        .into_iter()
                        .map(|text| Example {
                            text,
                            text_pair: None,
                            label: 0,
                        })
                        .collect();
                    let (train, dev, _) = split_seeded(examples, 0.1, 0.0, SPLIT_SEED)?;
                    (texts(&train), texts(&dev))
                }
            }
        }
        (None, None) => bail!(
            "no data: pass --data with a built-in task or --train FILE (.txt, one document per line)"
        ),
    };
    if let Some(n) = spec.max_train {
        train.truncate(n);
    }
    if let Some(n) = spec.max_dev {
        dev.truncate(n);
    }
    Ok((train, dev))
}
