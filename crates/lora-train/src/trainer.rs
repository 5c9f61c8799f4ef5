//! The training loop: one [`Trainer`] for every method and task.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::module::Module;
use indicatif::{ProgressBar, ProgressStyle};
use lora_core::{ParamBytes, ParamCount};
use lora_data::SeededRng;
use lora_data::batching::batch_order;
use serde::{Deserialize, Serialize};

use lora_core::io::{
    SaveDtype, named_safetensors_bytes, read_safetensors, write_atomic, write_dir_atomically,
    write_file,
};

use crate::checkpoint::{
    EpochRecord, EvalRecord, OPTIMIZER_FILE, STATE_FILE, TRAINABLE_FILE, TrainerState,
    existing_dir, read_state,
};
use crate::config::TrainConfig;
use crate::error::{Result, TrainError};
use crate::memory::{MemoryBreakdown, current_rss_bytes, peak_rss_bytes, reset_peak_rss};
use crate::method::ADAPTER_NAME;
use crate::optim::{AccumulatedGrads, Optimizer};
use crate::params::{load_tensors, param_infos, trainable_tensors};
use crate::task::{BatchStats, EvalMetrics, TrainTask};

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// Every epoch ran.
    Completed,
    /// The selection metric stopped improving.
    EarlyStopped,
    /// `stop_after_steps` was reached; resume to continue.
    StepLimit,
    /// The stop flag was raised (Ctrl-C, SIGTERM): the step in progress finished and a
    /// checkpoint was written; resume to continue.
    Interrupted,
}

impl StopReason {
    /// Whether the run can be continued from its checkpoint (no final weights were written).
    pub fn is_resumable(self) -> bool {
        matches!(self, Self::StepLimit | Self::Interrupted)
    }
}

/// The result of [`Trainer::fit`] or [`Trainer::resume`].
#[derive(Debug)]
pub struct TrainOutcome<M> {
    /// The trained model (last step, not necessarily the best).
    pub model: M,
    /// History, evaluations and the best evaluation.
    pub state: TrainerState,
    /// Trainable and total parameters.
    pub params: ParamCount,
    /// Why the run ended.
    pub stop: StopReason,
    /// Where everything was written.
    pub out_dir: PathBuf,
}

impl<M> TrainOutcome<M> {
    /// A few lines a person reads at the end of a run.
    pub fn summary(&self) -> String {
        let c = &self.state.config;
        let mut s = format!(
            "method {} · lr {:e} · {} epoch(s) · batch {}×{} · seed {}\n\
             trainable parameters {} of {} ({:.3} %)\n",
            c.method.name(),
            c.learning_rate(),
            c.epochs,
            c.batch_size,
            c.grad_accum,
            c.seed,
            self.params.trainable,
            self.params.total,
            self.params.trainable_percent()
        );
        for e in &self.state.history {
            s += &format!(
                "epoch {}: train loss {:.4} · dev {} · {:.1} s ({:.1} ex/s, {:.0} tok/s){}\n",
                e.epoch + 1,
                e.train_loss,
                describe(&e.dev),
                e.train_seconds,
                e.examples_per_second,
                e.tokens_per_second,
                e.peak_rss_mib
                    .map(|m| format!(" · peak {m:.0} MiB"))
                    .unwrap_or_default()
            );
        }
        if let Some(memory) = self.state.history.last().and_then(|e| e.memory) {
            s += &memory.describe();
            s += "\n";
        }
        if c.base_dtype != lora_core::BaseDType::F32 || c.checkpoint_activations {
            s += &format!(
                "base weights held as {}{}\n",
                c.base_dtype,
                if c.checkpoint_activations {
                    " · activations recomputed in the backward pass"
                } else {
                    ""
                }
            );
        }
        if let Some(best) = &self.state.best {
            s += &format!("best: step {} · {}\n", best.step, describe(&best.metrics));
        }
        s += &format!(
            "stopped: {:?} · output in {}\n",
            self.stop,
            self.out_dir.display()
        );
        s
    }
}

fn describe(m: &EvalMetrics) -> String {
    match (&m.classification, m.perplexity) {
        (Some(c), _) => format!(
            "loss {:.4} accuracy {:.4} precision {:.4} recall {:.4} f1 {:.4}",
            m.loss, c.accuracy, c.precision, c.recall, c.f1
        ),
        (None, Some(p)) => format!("loss {:.4} perplexity {p:.3}", m.loss),
        (None, None) => format!("loss {:.4}", m.loss),
    }
}

/// Runs a [`TrainTask`] with a [`TrainConfig`], writing checkpoints and results to a directory.
///
/// Layout of the output directory: the final trainable weights (`trainable.safetensors`, and
/// for LoRA the PEFT adapter files), `metrics.json` (settings, parameter counts, per-epoch
/// records, every evaluation, the best), `summary.txt`, `best/` (the weights of the best
/// evaluation) and `checkpoint/` (the latest resumable state).
///
/// ```no_run
/// use lora_assets::{AssetCache, BuiltinTask};
/// use lora_models::{ModelSource, load_encoder};
/// use lora_train::{ClassificationTask, Method, TrainConfig, Trainer, prepare_classifier};
///
/// let cache = AssetCache::from_env();
/// let device = lora_core::select_device(None)?.autodiff();
/// let (bert, tokenizer) = load_encoder(&ModelSource::path(cache.fetch("minilm")?.main), &device)?;
/// let data = BuiltinTask::MovieSentiment.load(&cache)?;
/// let task: ClassificationTask = ClassificationTask::new(&tokenizer, &data, 64, 0)?;
///
/// let config = TrainConfig { epochs: 1, ..TrainConfig::new(Method::lora(8, &["query", "value"])) };
/// let model = prepare_classifier(bert, task.num_labels(), &config.method, config.seed, &device)?;
/// let outcome = Trainer::new(&task, config, "runs/lora-r8").fit(model)?;
/// println!("{}", outcome.summary());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Trainer<'a, T: TrainTask> {
    task: &'a T,
    config: TrainConfig,
    out: PathBuf,
    base_model: Option<String>,
    stop: Option<Arc<AtomicBool>>,
}

/// Name of the resumable checkpoint directory inside the output directory.
pub const CHECKPOINT_DIR: &str = "checkpoint";
/// Name of the best-weights directory inside the output directory.
pub const BEST_DIR: &str = "best";
/// Name of the results file inside the output directory.
pub const METRICS_FILE: &str = "metrics.json";

impl<'a, T: TrainTask> Trainer<'a, T> {
    /// A trainer for `task` writing to `out`.
    pub fn new(task: &'a T, config: TrainConfig, out: impl Into<PathBuf>) -> Self {
        Self {
            task,
            config,
            out: out.into(),
            base_model: None,
            stop: None,
        }
    }

    /// A flag that, once raised (by a signal handler, another thread), ends the run after the
    /// step in progress: the trainer writes a checkpoint and returns
    /// [`StopReason::Interrupted`], and [`resume`](Self::resume) continues exactly there.
    pub fn with_stop_flag(mut self, stop: Arc<AtomicBool>) -> Self {
        self.stop = Some(stop);
        self
    }

    /// Records the base model's name or path in saved PEFT adapters
    /// (`base_model_name_or_path`).
    pub fn with_base_model(mut self, name: impl Into<String>) -> Self {
        self.base_model = Some(name.into());
        self
    }

    /// The output directory.
    pub fn out_dir(&self) -> &Path {
        &self.out
    }

    fn checkpoint_dir(&self) -> PathBuf {
        self.out.join(CHECKPOINT_DIR)
    }

    /// Trains a prepared model (see [`prepare_classifier`](crate::prepare_classifier)) from
    /// the start. Refuses an output directory that already holds a checkpoint (resume it, or
    /// choose another directory), so no earlier run is overwritten.
    pub fn fit(&self, model: T::Model) -> Result<TrainOutcome<T::Model>> {
        self.config.validate()?;
        if let Some(dir) = existing_dir(&self.checkpoint_dir()) {
            return Err(TrainError::Config(format!(
                "{} already holds a checkpoint ({}); resume it, or choose another output directory",
                self.out.display(),
                dir.display()
            )));
        }
        let optimizer = Optimizer::new(self.config.optimizer);
        self.run(model, TrainerState::new(self.config.clone()), optimizer)
    }

    /// Continues the run whose checkpoint is in the output directory. `model` must be prepared
    /// exactly as for [`fit`](Self::fit); its trainable weights, the optimizer moments and the
    /// position in the data come from the checkpoint, so the run ends as if never interrupted.
    ///
    /// Dropout draws from the backend's RNG, which the trainer re-seeds before every step; that
    /// RNG is global to the process, so the guarantee holds while one training runs at a time
    /// in a process (two concurrent trainings interleave their draws).
    pub fn resume(&self, model: T::Model) -> Result<TrainOutcome<T::Model>> {
        self.config.validate()?;
        let dir = existing_dir(&self.checkpoint_dir()).ok_or_else(|| {
            TrainError::Config(format!(
                "nothing to resume: {} has no checkpoint",
                self.out.display()
            ))
        })?;
        let mut state = read_state(&dir)?;
        if let Some(field) = self.config.resume_mismatch(&state.config) {
            return Err(TrainError::Config(format!(
                "the checkpoint in {} was made with another '{field}'; resume with the same \
                 settings, or start a new run in another directory",
                dir.display()
            )));
        }
        state.config = self.config.clone();
        let weights_path = dir.join(TRAINABLE_FILE);
        let weights = read_safetensors(&weights_path)?;
        let missing: Vec<String> = param_infos(&model)
            .into_iter()
            .filter(|p| p.trainable && !weights.contains_key(&p.path))
            .map(|p| p.path)
            .collect();
        if !missing.is_empty() {
            return Err(TrainError::Checkpoint {
                path: weights_path,
                reason: format!(
                    "it lacks trainable parameters of this model: {}",
                    missing.join(", ")
                ),
            });
        }
        let model = load_tensors(model, &weights, &weights_path.to_string_lossy())?;
        let mut optimizer = Optimizer::new(self.config.optimizer);
        let device = crate::task::model_device(&model)?.inner();
        let optimizer_path = dir.join(OPTIMIZER_FILE);
        optimizer
            .load_state(
                &read_safetensors(&optimizer_path)?,
                state.global_step,
                &device,
            )
            .map_err(|reason| TrainError::Checkpoint {
                path: optimizer_path,
                reason,
            })?;
        tracing::info!(step = state.global_step, epoch = state.epoch, "resuming");
        self.run(model, state, optimizer)
    }

    fn run(
        &self,
        mut model: T::Model,
        mut state: TrainerState,
        mut optimizer: Optimizer,
    ) -> Result<TrainOutcome<T::Model>> {
        let config = &self.config;
        let params = ParamCount::of(&model);
        if params.trainable == 0 {
            return Err(TrainError::Config(
                "the model has no trainable parameters".into(),
            ));
        }
        let device = crate::task::model_device(&model)?;
        let lengths = self.task.train_lengths();
        let batches_per_epoch = lengths.len().div_ceil(config.batch_size);
        let steps_per_epoch = batches_per_epoch.div_ceil(config.grad_accum);
        let total_steps = steps_per_epoch * config.epochs;
        let base_lr = config.learning_rate();
        tracing::info!(
            method = config.method.name(),
            trainable = params.trainable,
            total = params.total,
            examples = lengths.len(),
            steps = total_steps,
            lr = base_lr,
            "training"
        );
        let mut lr = base_lr;
        while state.epoch < config.epochs && !state.early_stopped {
            let epoch = state.epoch;
            let _span = tracing::info_span!("epoch", epoch).entered();
            let mut rng = SeededRng::new(SeededRng::derive(config.seed, epoch as u64));
            let batches = batch_order(
                &lengths,
                config.batch_size,
                Some(&mut rng),
                config.bucket_by_length,
            )?;
            if state.batches_done == 0 {
                // The epoch's peak starts from what is in use: memory an earlier run in this
                // process freed (kept by `keep_freed_memory`) goes back to the system first.
                lora_core::host_memory::release_freed_memory();
                reset_peak_rss();
            }
            let epoch_start_rss = current_rss_bytes();
            let optimizer_new = state.global_step == 0;
            let bar = self.progress_bar(
                steps_per_epoch,
                epoch,
                state.batches_done / config.grad_accum,
            );
            let groups: Vec<&[Vec<usize>]> = batches.chunks(config.grad_accum).collect();
            for group in groups
                .into_iter()
                .skip(state.batches_done / config.grad_accum)
            {
                let started = Instant::now();
                // Dropout draws from the backend RNG: seeding it per step makes a resumed run
                // draw the same masks as an uninterrupted one.
                device.seed(SeededRng::derive(
                    config.seed,
                    (1 << 40) + state.global_step as u64,
                ));
                let group_examples: usize = group.iter().map(Vec::len).sum();
                let mut grads = AccumulatedGrads::new();
                let (mut loss_sum, mut tokens) = (0.0, 0);
                // Each micro-batch's mean loss weighs by its share of the group's rows (training
                // examples, or packed rows), so the weights add up to one.
                for batch in group {
                    let weight = batch.len() as f64 / group_examples as f64;
                    let BatchStats {
                        loss: value,
                        tokens: t,
                    } = self.task.backward(
                        &model,
                        batch,
                        weight,
                        config.checkpoint_activations,
                        &mut grads,
                    )?;
                    if !value.is_finite() {
                        return Err(TrainError::NonFiniteLoss {
                            loss: value,
                            step: state.global_step,
                            epoch,
                            checkpoint: existing_dir(&self.checkpoint_dir()),
                        });
                    }
                    loss_sum += value * batch.len() as f64;
                    tokens += t;
                }
                if let Some(max_norm) = config.max_grad_norm {
                    grads.clip_global_norm(max_norm);
                }
                lr = config
                    .schedule
                    .lr_at(base_lr, state.global_step, total_steps);
                model = optimizer.step(model, lr, grads);
                state.global_step += 1;
                state.batches_done += group.len();
                state.epoch_loss_sum += loss_sum;
                state.step_losses.push(loss_sum / group_examples as f64);
                state.epoch_examples += group_examples;
                state.epoch_tokens += tokens;
                state.epoch_seconds += started.elapsed().as_secs_f64();
                bar.set_message(format!(
                    "loss {:.4} · lr {lr:.1e} · {:.1} ex/s",
                    loss_sum / group_examples as f64,
                    state.epoch_examples as f64 / state.epoch_seconds.max(1e-9)
                ));
                bar.inc(1);
                let step = state.global_step;
                if config
                    .eval_every_steps
                    .is_some_and(|n| step.is_multiple_of(n))
                {
                    self.evaluate(&mut model, &mut state)?;
                }
                if config
                    .checkpoint_every_steps
                    .is_some_and(|n| step.is_multiple_of(n))
                {
                    self.save_checkpoint(&mut model, &state, &optimizer)?;
                }
                let stop = if config.stop_after_steps == Some(step) {
                    Some(StopReason::StepLimit)
                } else if self.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst)) {
                    Some(StopReason::Interrupted)
                } else {
                    None
                };
                if let Some(stop) = stop {
                    bar.abandon();
                    self.save_checkpoint(&mut model, &state, &optimizer)?;
                    tracing::info!(step, reason = ?stop, "stopped with a checkpoint");
                    return self.finish(model, state, params, stop);
                }
                if state.early_stopped {
                    break;
                }
            }
            bar.finish_and_clear();
            // The training steps' peak, before the end-of-epoch evaluation (whose batches are
            // larger) adds its own.
            let train_peak = peak_rss_bytes();
            let eval_started = Instant::now();
            let dev = self.evaluate(&mut model, &mut state)?;
            let seconds = state.epoch_seconds.max(1e-9);
            let record = EpochRecord {
                epoch,
                global_step: state.global_step,
                train_loss: state.epoch_loss_sum / state.epoch_examples.max(1) as f64,
                lr,
                dev,
                train_seconds: state.epoch_seconds,
                eval_seconds: eval_started.elapsed().as_secs_f64(),
                examples_per_second: state.epoch_examples as f64 / seconds,
                tokens_per_second: state.epoch_tokens as f64 / seconds,
                peak_rss_mib: train_peak.map(|b| b as f64 / (1024.0 * 1024.0)),
                memory: Some(MemoryBreakdown::new(
                    ParamBytes::of(&model),
                    epoch_start_rss,
                    train_peak,
                    optimizer_new,
                )),
            };
            tracing::info!(
                epoch,
                train_loss = record.train_loss,
                dev = %describe(&record.dev),
                seconds = record.train_seconds,
                "epoch done"
            );
            state.history.push(record);
            state.epoch += 1;
            state.batches_done = 0;
            state.epoch_loss_sum = 0.0;
            state.epoch_examples = 0;
            state.epoch_tokens = 0;
            state.epoch_seconds = 0.0;
            self.save_checkpoint(&mut model, &state, &optimizer)?;
        }
        let stop = if state.early_stopped {
            StopReason::EarlyStopped
        } else {
            StopReason::Completed
        };
        self.finish(model, state, params, stop)
    }

    fn progress_bar(&self, len: usize, epoch: usize, position: usize) -> ProgressBar {
        if !self.config.progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(len as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:28}] {pos}/{len} steps · {msg} · {elapsed_precise}<{eta_precise}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("epoch {}/{}", epoch + 1, self.config.epochs));
        bar.set_position(position as u64);
        bar
    }

    fn metric(&self) -> &str {
        self.config
            .select_metric
            .as_deref()
            .unwrap_or(self.task.default_metric())
    }

    /// Evaluates on the dev data, records it, keeps the best weights and updates early
    /// stopping.
    fn evaluate(&self, model: &mut T::Model, state: &mut TrainerState) -> Result<EvalMetrics> {
        let _span = tracing::info_span!("evaluate", step = state.global_step).entered();
        let metrics = self
            .task
            .evaluate(&model.valid(), self.config.eval_batch_size)?;
        let metric = self.metric();
        let value = metrics.get(metric).ok_or_else(|| {
            TrainError::Config(format!("metric '{metric}' does not apply to this task"))
        })?;
        let record = EvalRecord {
            epoch: state.epoch,
            step: state.global_step,
            metrics: metrics.clone(),
        };
        let better = match &state.best {
            None => true,
            Some(best) => {
                let old = best.metrics.get(metric).unwrap_or(f64::NAN);
                if EvalMetrics::higher_is_better(metric) {
                    value > old
                } else {
                    value < old
                }
            }
        };
        if better {
            self.write_best(model, &record)?;
            state.best = Some(record.clone());
            state.evals_since_best = 0;
        } else {
            state.evals_since_best += 1;
            if self
                .config
                .early_stopping_patience
                .is_some_and(|p| state.evals_since_best >= p)
            {
                tracing::info!(metric, evals = state.evals_since_best, "early stopping");
                state.early_stopped = true;
            }
        }
        state.evals.push(record);
        Ok(metrics)
    }

    /// Writes the trainable weights (and, for LoRA, the PEFT adapter) into `dir`.
    fn write_weights(&self, model: &mut T::Model, dir: &Path) -> Result<()> {
        write_file(
            dir,
            TRAINABLE_FILE,
            &named_safetensors_bytes(&trainable_tensors(model), SaveDtype::F32)?,
        )?;
        if let Some(peft) = self
            .config
            .method
            .peft_config(self.task.peft_task_type(), self.base_model.clone())
        {
            lora_surgery::save_adapter(model, ADAPTER_NAME, &peft, dir)?;
        }
        Ok(())
    }

    fn write_best(&self, model: &mut T::Model, record: &EvalRecord) -> Result<()> {
        write_dir_atomically(&self.out.join(BEST_DIR), |dir| -> Result<()> {
            self.write_weights(model, dir)?;
            Ok(write_file(dir, METRICS_FILE, &to_json(record)?)?)
        })
    }

    fn save_checkpoint(
        &self,
        model: &mut T::Model,
        state: &TrainerState,
        optimizer: &Optimizer,
    ) -> Result<()> {
        let (moments, _) = optimizer.state();
        write_dir_atomically(&self.checkpoint_dir(), |dir| -> Result<()> {
            self.write_weights(model, dir)?;
            write_file(
                dir,
                OPTIMIZER_FILE,
                &named_safetensors_bytes(&moments, SaveDtype::F32)?,
            )?;
            Ok(write_file(dir, STATE_FILE, &to_json(state)?)?)
        })?;
        tracing::debug!(step = state.global_step, "checkpoint written");
        Ok(())
    }

    fn finish(
        &self,
        mut model: T::Model,
        state: TrainerState,
        params: ParamCount,
        stop: StopReason,
    ) -> Result<TrainOutcome<T::Model>> {
        let outcome_state = state;
        if !stop.is_resumable() {
            // The final weights, metrics and summary go straight into the output directory.
            lora_core::io::remove_stale_temporaries(&self.out, ".final.tmp-");
            let staging = self.out.join(format!(".final.tmp-{}", std::process::id()));
            write_dir_atomically(&staging, |dir| self.write_weights(&mut model, dir))?;
            let mut entries = std::fs::read_dir(&staging)
                .and_then(|dir| dir.collect::<std::io::Result<Vec<_>>>())
                .map_err(|e| TrainError::Checkpoint {
                    path: staging.clone(),
                    reason: e.to_string(),
                })?;
            // The adapter's config goes last: where it is present, its weights are complete (a
            // kill between the renames leaves no adapter a reader would take as valid, and a
            // resume writes them again).
            entries.sort_by_key(|e| e.file_name() == lora_surgery::CONFIG_FILE);
            for entry in entries {
                let target = self.out.join(entry.file_name());
                std::fs::rename(entry.path(), &target).map_err(|e| TrainError::Checkpoint {
                    path: target,
                    reason: e.to_string(),
                })?;
            }
            let _ = std::fs::remove_dir_all(&staging);
        }
        let outcome = TrainOutcome {
            model,
            state: outcome_state,
            params,
            stop,
            out_dir: self.out.clone(),
        };
        let metrics = serde_json::json!({
            "config": outcome.state.config,
            "params": outcome.params,
            "trainable_percent": outcome.params.trainable_percent(),
            "stop": outcome.stop,
            "epochs": outcome.state.history,
            "evals": outcome.state.evals,
            "best": outcome.state.best,
        });
        write_atomic(&self.out.join(METRICS_FILE), &to_json(&metrics)?)?;
        write_atomic(&self.out.join("summary.txt"), outcome.summary().as_bytes())?;
        Ok(outcome)
    }
}

fn to_json<S: Serialize>(value: &S) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(value).map_err(|e| TrainError::Config(format!("serialising: {e}")))
}
