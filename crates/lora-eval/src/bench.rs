//! Benchmark workloads (`lora bench`): one training step, forward pass or decoding run, timed
//! on a batch of token ids read from a JSON file, so that another engine (PyTorch + PEFT, in
//! `cargo xtask bench --vs-pytorch`) can replay exactly the same batch. Each run reports one
//! [`BenchResult`]: the median time, throughput, peak resident memory and the CPU seconds of the
//! timed section (CPU seconds over wall seconds is how many cores were busy).
//!
//! The training step is the trainer's: forward, mean cross-entropy (completion tokens only for a
//! decoder), backward, global-norm clipping at 1.0 and Adam by parameter path.

use std::path::Path;
use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use lora_core::ParamCount;
use lora_data::EncodedBatch;
use lora_data::sft::{IGNORE_INDEX, SftBatch};
use lora_models::{
    DecoderForCausalLM, Encoder, EncoderForSequenceClassification, GenerationConfig, KvCache,
};
use lora_train::optim::{AccumulatedGrads, Optimizer, OptimizerConfig};
use lora_train::sft::{decoder_batch, sft_backward};
use lora_train::task::classification_backward;
use lora_train::{Method, SequenceClassifier, prepare_causal_lm, prepare_classifier};
use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};
use crate::latency::measure_interleaved;

/// One benchmark workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// A LoRA (r = 8, α = 8, q/v) training step of a 2-class sequence classifier.
    EncoderLoraStep,
    /// A full fine-tuning step of the same classifier.
    EncoderFtStep,
    /// A forward pass of the classifier (no adapter), evaluation mode.
    EncoderInfer,
    /// Latency of the base classifier's forward pass.
    EncoderLatencyBase,
    /// Latency with a LoRA adapter merged into the weights.
    EncoderLatencyMerged,
    /// Latency with a LoRA adapter (random, non-zero) applied unmerged.
    EncoderLatencyUnmerged,
    /// Latency with Houlsby's bottleneck adapters (m = 16, after attention and FFN).
    EncoderLatencyAdapterH,
    /// Latency with Lin's bottleneck adapter (m = 16, after the FFN).
    EncoderLatencyAdapterL,
    /// A LoRA (r = 8, α = 16, q/v) training step of a causal LM on labelled tokens.
    DecoderLoraStep,
    /// A full fine-tuning step of the same causal LM.
    DecoderFtStep,
    /// A forward pass over the whole prompt batch, filling the KV cache.
    DecoderPrefill,
    /// Greedy decoding with the KV cache, per decoding step (every row of the file is a prompt,
    /// decoded together; one token per row and step).
    DecoderDecode,
}

/// The names `--workload` takes, in [`Workload::ALL`] order.
pub const WORKLOAD_NAMES: [&str; 12] = [
    "encoder-lora-step",
    "encoder-ft-step",
    "encoder-infer",
    "encoder-latency-base",
    "encoder-latency-merged",
    "encoder-latency-unmerged",
    "encoder-latency-adapter-h",
    "encoder-latency-adapter-l",
    "decoder-lora-step",
    "decoder-ft-step",
    "decoder-prefill",
    "decoder-decode",
];

impl Workload {
    /// Every workload.
    pub const ALL: [Workload; 12] = [
        Self::EncoderLoraStep,
        Self::EncoderFtStep,
        Self::EncoderInfer,
        Self::EncoderLatencyBase,
        Self::EncoderLatencyMerged,
        Self::EncoderLatencyUnmerged,
        Self::EncoderLatencyAdapterH,
        Self::EncoderLatencyAdapterL,
        Self::DecoderLoraStep,
        Self::DecoderFtStep,
        Self::DecoderPrefill,
        Self::DecoderDecode,
    ];

    /// Parses one of [`WORKLOAD_NAMES`].
    pub fn from_name(name: &str) -> Result<Self> {
        WORKLOAD_NAMES
            .iter()
            .position(|n| *n == name)
            .map(|i| Self::ALL[i])
            .ok_or_else(|| {
                EvalError::Config(format!(
                    "unknown workload '{name}'; choose {}",
                    WORKLOAD_NAMES.join(", ")
                ))
            })
    }

    /// The workload's name.
    pub fn name(self) -> &'static str {
        WORKLOAD_NAMES[Self::ALL.iter().position(|w| *w == self).unwrap_or(0)]
    }

    /// Whether it runs an encoder (else a decoder).
    pub fn is_encoder(self) -> bool {
        self.name().starts_with("encoder")
    }

    /// The unit of [`BenchResult::value`].
    pub fn unit(self) -> &'static str {
        match self {
            Self::EncoderLoraStep
            | Self::EncoderFtStep
            | Self::DecoderLoraStep
            | Self::DecoderFtStep => "ms/step",
            Self::EncoderInfer => "ms/batch",
            Self::DecoderDecode => "ms/token",
            _ => "ms",
        }
    }
}

/// One batch of token ids, right-padded: what both engines replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchTokens {
    /// Token ids per row.
    pub input_ids: Vec<Vec<i64>>,
    /// 1 for tokens, 0 for padding.
    pub attention_mask: Vec<Vec<i64>>,
    /// Class ids (`[rows]`) for an encoder; next-token labels (`[rows][seq]`, −100 ignored,
    /// transformers' convention: label `t` is the token at `t`) for a decoder.
    pub labels: serde_json::Value,
}

impl BenchTokens {
    /// Reads a token file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| EvalError::Config(format!("reading {}: {e}", path.display())))?;
        let tokens: Self = serde_json::from_str(&text)
            .map_err(|e| EvalError::Config(format!("{}: {e}", path.display())))?;
        tokens.check()?;
        Ok(tokens)
    }

    /// Checks that the rows are non-empty, of one length, with a mask each.
    pub fn check(&self) -> Result<()> {
        let seq = self.input_ids.first().map_or(0, Vec::len);
        let ok = seq > 0
            && self.input_ids.len() == self.attention_mask.len()
            && self
                .input_ids
                .iter()
                .zip(&self.attention_mask)
                .all(|(ids, mask)| ids.len() == seq && mask.len() == seq);
        if ok {
            Ok(())
        } else {
            Err(EvalError::Config(
                "a token file needs rows of one length with an attention mask each".into(),
            ))
        }
    }

    /// `[rows, seq]`.
    pub fn shape(&self) -> [usize; 2] {
        [
            self.input_ids.len(),
            self.input_ids.first().map_or(0, Vec::len),
        ]
    }

    /// Real (non-padding) tokens.
    pub fn tokens(&self) -> usize {
        self.attention_mask
            .iter()
            .flatten()
            .filter(|&&m| m != 0)
            .count()
    }

    fn flat(rows: &[Vec<i64>]) -> Vec<i64> {
        rows.iter().flatten().copied().collect()
    }

    fn encoded(&self, vocab: usize) -> EncodedBatch {
        let [batch, seq] = self.shape();
        EncodedBatch {
            input_ids: Self::flat(&self.input_ids)
                .into_iter()
                .map(|t| t.rem_euclid(vocab as i64))
                .collect(),
            attention_mask: Self::flat(&self.attention_mask),
            token_type_ids: vec![0; batch * seq],
            batch,
            seq,
        }
    }

    fn class_labels(&self, num_labels: usize) -> Result<Vec<i64>> {
        let labels: Vec<i64> = serde_json::from_value(self.labels.clone()).map_err(|e| {
            EvalError::Config(format!("an encoder's labels are one class id per row: {e}"))
        })?;
        if labels.len() != self.input_ids.len() {
            return Err(EvalError::Config(format!(
                "{} labels for {} rows",
                labels.len(),
                self.input_ids.len()
            )));
        }
        Ok(labels
            .into_iter()
            .map(|l| l.rem_euclid(num_labels as i64))
            .collect())
    }

    /// The batch as the SFT loss sees it: label `t + 1` is predicted at `t` (transformers'
    /// labels, shifted inside the model).
    fn sft_batch(&self, vocab: usize) -> Result<SftBatch> {
        let labels: Vec<Vec<i64>> = serde_json::from_value(self.labels.clone()).map_err(|e| {
            EvalError::Config(format!(
                "a decoder's labels are one row of ids per row: {e}"
            ))
        })?;
        let [batch, seq] = self.shape();
        if labels.len() != batch || labels.iter().any(|r| r.len() != seq) {
            return Err(EvalError::Config(
                "a decoder's labels must have the shape of input_ids".into(),
            ));
        }
        let wrap = |t: i64| {
            if t == IGNORE_INDEX {
                t
            } else {
                t.rem_euclid(vocab as i64)
            }
        };
        Ok(SftBatch {
            input_ids: Self::flat(&self.input_ids)
                .into_iter()
                .map(|t| t.rem_euclid(vocab as i64))
                .collect(),
            attention_mask: Self::flat(&self.attention_mask),
            labels: Self::flat(&labels).into_iter().map(wrap).collect(),
            position_ids: (0..batch).flat_map(|_| 0..seq as i64).collect(),
            segment_ids: Self::flat(&self.attention_mask),
            batch,
            seq,
        })
    }
}

/// How long to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchSettings {
    /// Untimed runs first.
    pub warmup: usize,
    /// Timed runs (the median is reported).
    pub repeats: usize,
    /// New tokens of a decoding run.
    pub new_tokens: usize,
    /// Training steps recompute activations layer by layer (`--checkpoint-activations`).
    pub recompute_activations: bool,
}

impl Default for BenchSettings {
    fn default() -> Self {
        Self {
            warmup: 2,
            repeats: 5,
            new_tokens: 64,
            recompute_activations: false,
        }
    }
}

/// What one workload measured, as `lora bench` prints it (and the PyTorch script, the same).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchResult {
    /// The workload.
    pub workload: String,
    /// `lora` (or `pytorch`).
    pub engine: String,
    /// Threads of the compute pool.
    pub threads: usize,
    /// Unit of `value`.
    pub unit: String,
    /// Median of the timed runs.
    pub value: f64,
    /// Real tokens per second (training and prefill workloads).
    pub tokens_per_second: Option<f64>,
    /// Peak resident memory of the process, MiB.
    pub peak_rss_mib: Option<f64>,
    /// Device memory the allocator held after the timed runs, MiB (GPU backends; its pools
    /// keep what the workload needed at its peak).
    #[serde(default)]
    pub device_memory_mib: Option<f64>,
    /// The base model's median in the same unit, timed in the same process in alternation
    /// with this workload's runs (`encoder-latency-merged` and `-unmerged`): a comparison with
    /// the base that one machine's slow spells cannot tilt.
    #[serde(default)]
    pub base_value: Option<f64>,
    /// CPU seconds (user + system) of the timed runs.
    pub cpu_seconds: Option<f64>,
    /// Wall seconds of the timed runs.
    pub wall_seconds: f64,
    /// Trainable and total parameters of the model run.
    pub params: ParamCount,
    /// The device.
    pub device: String,
}

/// The model a workload runs on.
pub enum BenchModel {
    /// An encoder (a fresh 2-class head is put on it).
    Encoder(Encoder),
    /// A causal LM.
    Decoder(DecoderForCausalLM),
}

/// CPU seconds of this process so far (`/proc/self/stat`; `None` elsewhere).
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // The kernel reports clock ticks of USER_HZ, 100 on Linux.
    Some((utime + stime) / 100.0)
}

/// Runs `workload` on `model` (loaded on `device`, which must be an autodiff device for the
/// training workloads), timing `settings.repeats` runs after `settings.warmup`.
pub fn run_workload(
    workload: Workload,
    model: BenchModel,
    tokens: &BenchTokens,
    settings: &BenchSettings,
    device: &Device,
) -> Result<BenchResult> {
    tokens.check()?;
    let inference_device = device.clone().inner();
    let (timed, params, per_unit, token_count) = match (workload, model) {
        (w, BenchModel::Encoder(encoder)) if w.is_encoder() => {
            encoder_workload(w, encoder, tokens, settings, device)?
        }
        (w, BenchModel::Decoder(decoder)) if !w.is_encoder() => {
            decoder_workload(w, decoder, tokens, settings, device)?
        }
        (w, _) => {
            return Err(EvalError::Config(format!(
                "workload '{}' needs {} model",
                w.name(),
                if w.is_encoder() {
                    "an encoder"
                } else {
                    "a decoder"
                }
            )));
        }
    };
    let value = timed.latency.median_ms / per_unit;
    Ok(BenchResult {
        workload: workload.name().to_string(),
        engine: "lora".into(),
        threads: std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
            }),
        unit: workload.unit().to_string(),
        value,
        base_value: timed.base.map(|b| b.median_ms / per_unit),
        tokens_per_second: token_count.map(|n| n as f64 / (timed.latency.median_ms / 1e3)),
        peak_rss_mib: lora_train::memory::peak_rss_bytes().map(|b| b as f64 / 1048576.0),
        device_memory_mib: lora_core::device_info::device_info(&inference_device)
            .memory_reserved_bytes
            .map(|b| b as f64 / 1048576.0),
        cpu_seconds: timed.cpu_seconds,
        wall_seconds: timed.wall_seconds,
        params,
        device: format!("{inference_device:?}"),
    })
}

/// The timings of the repeats.
struct Timed {
    latency: crate::latency::Latency,
    /// The base model's, timed in alternation (see [`BenchResult::base_value`]).
    base: Option<crate::latency::Latency>,
    cpu_seconds: Option<f64>,
    wall_seconds: f64,
}

fn timed(
    settings: &BenchSettings,
    device: &Device,
    f: impl FnMut() -> Result<()>,
) -> Result<Timed> {
    timed_against(settings, device, f, None::<fn() -> Result<()>>)
}

/// Times `f` (and `base` in alternation with it, where given) after `settings.warmup` untimed
/// runs of each.
fn timed_against(
    settings: &BenchSettings,
    device: &Device,
    mut f: impl FnMut() -> Result<()>,
    base: Option<impl FnMut() -> Result<()>>,
) -> Result<Timed> {
    let sync = || {
        device
            .sync()
            .map_err(|e| EvalError::Config(format!("the device failed: {e:?}")))
    };
    let mut f = || -> Result<()> {
        f()?;
        sync()
    };
    let mut base = base.map(|mut base| {
        move || -> Result<()> {
            base()?;
            sync()
        }
    });
    let mut fs: Vec<&mut dyn FnMut() -> Result<()>> = vec![&mut f];
    if let Some(base) = &mut base {
        fs.push(base);
    }
    for _ in 0..settings.warmup {
        for f in fs.iter_mut() {
            f()?;
        }
    }
    let cpu = cpu_seconds();
    let started = Instant::now();
    let mut latencies = measure_interleaved(0, settings.repeats, &mut fs)?.into_iter();
    let latency = latencies.next().expect("one latency per function");
    let base = latencies.next();
    Ok(Timed {
        latency,
        base,
        cpu_seconds: cpu.zip(cpu_seconds()).map(|(a, b)| b - a),
        wall_seconds: started.elapsed().as_secs_f64(),
    })
}

/// The bottleneck width of the adapter latency workloads (the experiment's default).
const ADAPTER_BOTTLENECK: usize = 16;

type Measured = (Timed, ParamCount, f64, Option<usize>);

/// LoRA of rank `r` on `targets` with PEFT's usual dropout for the model kind (0.1 for an
/// encoder, 0.05 for a decoder, as the PyTorch side uses).
fn lora_qv(r: usize, alpha: f64, dropout: f64, targets: &[&str]) -> Method {
    Method::Lora {
        lora: lora_core::LoraConfig::new(r)
            .with_alpha(alpha)
            .with_dropout(dropout),
        targets: lora_surgery::TargetSpec {
            target_modules: Some(lora_surgery::ModulePattern::list(targets)),
            ..Default::default()
        },
    }
}

fn encoder_workload(
    workload: Workload,
    encoder: Encoder,
    tokens: &BenchTokens,
    settings: &BenchSettings,
    device: &Device,
) -> Result<Measured> {
    let targets = encoder.config().family.default_targets();
    let vocab = encoder.config().vocab_size;
    let inference = device.clone().inner();
    let encoded = tokens.encoded(vocab);
    match workload {
        Workload::EncoderLoraStep | Workload::EncoderFtStep => {
            let (method, lr) = match workload {
                Workload::EncoderLoraStep => (lora_qv(8, 8.0, 0.1, targets), 1e-3),
                _ => (Method::FullFineTuning, 5e-5),
            };
            let mut model = Some(prepare_classifier(encoder, 2, &method, 0, device)?);
            let params = ParamCount::of(model.as_ref().expect("set above"));
            let batch = lora_train::token_batch(&encoded, device)?;
            let labels = tokens.class_labels(2)?;
            let n = labels.len();
            let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [n]), device);
            let mut optimizer = Optimizer::new(OptimizerConfig::default());
            let timed = timed(settings, device, || {
                let current = model.take().expect("a model between steps");
                let mut grads = AccumulatedGrads::new();
                classification_backward(
                    &current,
                    &batch,
                    labels.clone(),
                    1.0,
                    settings.recompute_activations,
                    &mut grads,
                )?;
                grads.clip_global_norm(1.0);
                model = Some(optimizer.step(current, lr, grads));
                Ok(())
            })?;
            Ok((timed, params, 1.0, Some(tokens.tokens())))
        }
        _ => {
            let method = match workload {
                Workload::EncoderLatencyMerged | Workload::EncoderLatencyUnmerged => {
                    let mut m = lora_qv(8, 8.0, 0.0, targets);
                    if let Method::Lora { lora, .. } = &mut m {
                        lora.init = lora_core::LoraInit::Random;
                    }
                    m
                }
                Workload::EncoderLatencyAdapterH => Method::AdapterH {
                    bottleneck: ADAPTER_BOTTLENECK,
                },
                Workload::EncoderLatencyAdapterL => Method::AdapterL {
                    bottleneck: ADAPTER_BOTTLENECK,
                },
                _ => Method::HeadOnly,
            };
            let encoder = encoder.valid();
            // The latency of an adapted model is timed in alternation with the base's (same
            // head, same seed) in this process: `base_value`.
            let base = match workload {
                Workload::EncoderInfer | Workload::EncoderLatencyBase => None,
                _ => Some(prepare_classifier(
                    encoder.clone(),
                    2,
                    &Method::HeadOnly,
                    0,
                    &inference,
                )?),
            };
            let mut model = prepare_classifier(encoder, 2, &method, 0, &inference)?;
            if workload == Workload::EncoderLatencyMerged {
                lora_surgery::merge_and_unload(&mut model)?;
            }
            let params = ParamCount::of(&model);
            let batch = lora_train::token_batch(&encoded, &inference)?;
            let run = |model: &EncoderForSequenceClassification| -> Result<()> {
                let _ = model.classify(&batch)?.into_data();
                Ok(())
            };
            let timed = timed_against(
                settings,
                &inference,
                || run(&model),
                base.as_ref().map(|base| || run(base)),
            )?;
            let tokens_count = (workload == Workload::EncoderInfer).then(|| tokens.tokens());
            Ok((timed, params, 1.0, tokens_count))
        }
    }
}

fn decoder_workload(
    workload: Workload,
    decoder: DecoderForCausalLM,
    tokens: &BenchTokens,
    settings: &BenchSettings,
    device: &Device,
) -> Result<Measured> {
    let vocab = decoder.config().vocab_size;
    let inference = device.clone().inner();
    match workload {
        Workload::DecoderLoraStep | Workload::DecoderFtStep => {
            let targets = decoder.config().family.default_targets();
            let (method, lr) = match workload {
                Workload::DecoderLoraStep => (lora_qv(8, 16.0, 0.05, targets), 1e-3),
                _ => (Method::FullFineTuning, 5e-5),
            };
            let mut model = Some(prepare_causal_lm(decoder, &method, 0, device)?);
            let params = ParamCount::of(model.as_ref().expect("set above"));
            let batch = tokens.sft_batch(vocab)?;
            let mut optimizer = Optimizer::new(OptimizerConfig::default());
            let timed = timed(settings, device, || {
                let current = model.take().expect("a model between steps");
                let mut grads = AccumulatedGrads::new();
                sft_backward(
                    &current,
                    &batch,
                    1.0,
                    settings.recompute_activations,
                    &mut grads,
                )?;
                grads.clip_global_norm(1.0);
                model = Some(optimizer.step(current, lr, grads));
                Ok(())
            })?;
            Ok((timed, params, 1.0, Some(tokens.tokens())))
        }
        Workload::DecoderPrefill => {
            // `valid()` is the model on `inference` (autodiff removed); `fork` would also
            // detach every parameter, which expands a quantized base to f32.
            let model = decoder.valid();
            let params = ParamCount::of(&model);
            let batch = decoder_batch(&tokens.sft_batch(vocab)?, &inference);
            let timed = timed(settings, &inference, || {
                let mut cache = KvCache::new();
                let hidden = model.hidden_states(&batch, &mut cache)?;
                let [b, s, d] = hidden.dims();
                let _ = model
                    .logits(hidden.slice([0..b, s - 1..s, 0..d]))
                    .into_data();
                Ok(())
            })?;
            Ok((timed, params, 1.0, Some(tokens.tokens())))
        }
        _ => {
            // `valid()` is the model on `inference` (autodiff removed); `fork` would also
            // detach every parameter, which expands a quantized base to f32.
            let model = decoder.valid();
            let params = ParamCount::of(&model);
            // Every row is a prompt, decoded together in one batch.
            let prompts: Vec<Vec<u32>> = tokens
                .input_ids
                .iter()
                .zip(&tokens.attention_mask)
                .map(|(ids, mask)| {
                    ids.iter()
                        .zip(mask)
                        .filter(|(_, m)| **m != 0)
                        .map(|(t, _)| t.rem_euclid(vocab as i64) as u32)
                        .collect()
                })
                .collect();
            let n = settings.new_tokens.max(1);
            let config = GenerationConfig {
                max_new_tokens: n,
                min_new_tokens: n,
                ..GenerationConfig::default()
            };
            // Per decoded token: a run of n tokens minus a run of one (the prefill and the
            // first token), over the n − 1 tokens that only decoding produced; both medians.
            let one = GenerationConfig {
                max_new_tokens: 1,
                min_new_tokens: 1,
                ..GenerationConfig::default()
            };
            let (mut single, mut full) = (Vec::new(), Vec::new());
            let mut timed = timed(settings, &inference, || {
                let started = Instant::now();
                model.generate_batch(&prompts, &one, &inference)?;
                let middle = Instant::now();
                model.generate_batch(&prompts, &config, &inference)?;
                single.push((middle - started).as_secs_f64() * 1e3);
                full.push(middle.elapsed().as_secs_f64() * 1e3);
                Ok(())
            })?;
            let median = |v: &mut Vec<f64>| {
                // The warm-up runs come first; only the timed ones count.
                let timed_runs = v.split_off(settings.warmup.min(v.len()));
                let mut t = timed_runs;
                t.sort_by(f64::total_cmp);
                t.get(t.len() / 2).copied().unwrap_or(0.0)
            };
            timed.latency.median_ms = (median(&mut full) - median(&mut single)).max(0.0);
            Ok((timed, params, (n.max(2) - 1) as f64, None))
        }
    }
}
