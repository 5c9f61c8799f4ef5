//! The report of an experiment: `report.md`, `results.json`, a CSV per table and SVG plots,
//! rebuilt from the results.

use std::path::{Path, PathBuf};

use super::config::TableKind;
use super::decoder::{GenerationRunResult, UNTRAINED};
use super::run::RunResult;
use super::{ExperimentResults, write_err, write_file};
use crate::error::Result;
use crate::plot::{Series, line_plot_svg, moving_average};
use crate::report::Table;
use crate::stats::MeanStd;

fn human_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else {
        format!("{:.1} KiB", b / 1024.0)
    }
}

fn metric_stats(runs: &[&RunResult], name: &str) -> MeanStd {
    MeanStd::of(
        &runs
            .iter()
            .filter_map(|r| r.test.get(name))
            .collect::<Vec<_>>(),
    )
}

/// The comparison table of one task: a row per method, metrics as mean ± std over seeds.
fn comparison_table(results: &ExperimentResults, task: &str, title: &str) -> Table {
    let mut table = Table::new(
        title,
        [
            "method",
            "trainable params",
            "% of model",
            "accuracy %",
            "precision %",
            "recall %",
            "F1 %",
            "s / epoch",
            "peak MiB",
            "checkpoint",
            "% of model file",
        ],
    );
    for m in &results.config.methods {
        let runs: Vec<&RunResult> = results
            .runs
            .iter()
            .filter(|r| r.task == task && r.label == m.label)
            .collect();
        let Some(first) = runs.first() else { continue };
        let f = |name| metric_stats(&runs, name).percent(1);
        let peak = runs.iter().filter_map(|r| r.peak_rss_mib).reduce(f64::max);
        table.push([
            m.label.clone(),
            first.params.trainable.to_string(),
            format!("{:.3}", first.params.trainable_percent()),
            f("accuracy"),
            f("precision"),
            f("recall"),
            f("f1"),
            MeanStd::of(&runs.iter().map(|r| r.seconds_per_epoch).collect::<Vec<_>>()).format(1),
            peak.map_or("-".into(), |p| format!("{p:.0}")),
            human_bytes(first.checkpoint_bytes),
            format!(
                "{:.2}",
                100.0 * first.checkpoint_bytes as f64 / results.full_model_bytes.max(1) as f64
            ),
        ]);
    }
    let seeds = results.config.seeds.len();
    table.note = Some(format!(
        "Test-set metrics, mean ± std over {seeds} seed(s){}. Precision/recall/F1: of the positive \
         class for binary tasks, macro-averaged otherwise. Peak MiB is the process's peak resident \
         memory while training (model, data and framework included).",
        if seeds == 1 {
            " (one seed: no spread)"
        } else {
            ""
        }
    ));
    table
}

fn ablation_rows(results: &ExperimentResults) -> (Table, Vec<Series>) {
    let a = &results.config.ablation;
    let mut table = Table::new(
        "Rank ablation: LoRA on (query, value), movie-sentiment",
        [
            "r",
            "α",
            "trainable params",
            "accuracy %",
            "precision %",
            "recall %",
            "F1 %",
        ],
    );
    let mut same = Series {
        label: "α = r".into(),
        points: Vec::new(),
    };
    let mut fixed = Series {
        label: "best fixed α".into(),
        points: Vec::new(),
    };
    for &r in &a.ranks {
        let of = |alpha: f64| -> Vec<&RunResult> {
            results
                .runs
                .iter()
                .filter(|run| run.lora == Some((r, alpha)) && run.label.starts_with("ablation"))
                .collect()
        };
        let mut row = |alpha: f64, runs: &[&RunResult], note: &str| {
            if let Some(first) = runs.first() {
                let f = |name| metric_stats(runs, name).percent(1);
                table.push([
                    r.to_string(),
                    format!("{alpha}{note}"),
                    first.params.trainable.to_string(),
                    f("accuracy"),
                    f("precision"),
                    f("recall"),
                    f("f1"),
                ]);
            }
        };
        let same_runs = of(r as f64);
        row(r as f64, &same_runs, "");
        if !same_runs.is_empty() {
            let s = metric_stats(&same_runs, "accuracy");
            same.points.push((r as f64, s.mean, s.std));
        }
        let best = a
            .fixed_alphas
            .iter()
            .filter(|&&alpha| alpha != r as f64)
            .map(|&alpha| (alpha, of(alpha)))
            .filter(|(_, runs)| !runs.is_empty())
            .max_by(|x, y| {
                metric_stats(&x.1, "accuracy")
                    .mean
                    .total_cmp(&metric_stats(&y.1, "accuracy").mean)
            });
        if let Some((alpha, runs)) = best {
            row(alpha, &runs, " (fixed)");
            let s = metric_stats(&runs, "accuracy");
            fixed.points.push((r as f64, s.mean, s.std));
        }
    }
    table.note = Some(format!(
        "Test-set metrics, mean ± std over {} seed(s); {} training examples, lr {:e}. Rows marked \
         (fixed) use the best of the fixed α values {:?} at that rank.",
        results.config.seeds.len(),
        a.budget.train.map_or("all".into(), |n| n.to_string()),
        a.lr,
        a.fixed_alphas
    ));
    let series = [same, fixed]
        .into_iter()
        .filter(|s| !s.points.is_empty())
        .collect();
    (table, series)
}

fn latency_table(results: &ExperimentResults) -> Table {
    let batches = &results.config.latency.batch_sizes;
    let mut header = vec!["variant".to_string()];
    header.extend(batches.iter().map(|b| format!("batch {b} (ms)")));
    let mut table = Table::new("Inference latency (median)", header);
    let mut variants: Vec<&str> = Vec::new();
    for l in &results.latency {
        if !variants.contains(&l.variant.as_str()) {
            variants.push(&l.variant);
        }
    }
    for v in variants {
        let mut row = vec![v.to_string()];
        for b in batches {
            row.push(
                results
                    .latency
                    .iter()
                    .find(|l| l.variant == v && l.batch == *b)
                    .map_or("-".into(), |l| format!("{:.2}", l.latency.median_ms)),
            );
        }
        table.push(row);
    }
    let seq = results
        .latency
        .iter()
        .map(|l| format!("batch {} × {} tokens", l.batch, l.seq_len));
    let mut seen: Vec<String> = Vec::new();
    for s in seq {
        if !seen.contains(&s) {
            seen.push(s);
        }
    }
    table.note = Some(format!(
        "Median of {} runs after {} warm-up runs, the variants timed in alternation (each round runs every one); the encoder's forward with a 2-class head; inputs: {}.",
        results.config.latency.repeats,
        results.config.latency.warmup,
        seen.join(", ")
    ));
    table
}

/// The finished (not skipped) runs of `label` on `task`.
fn generation_runs<'a>(
    results: &'a ExperimentResults,
    task: &str,
    label: &str,
) -> Vec<&'a GenerationRunResult> {
    results
        .decoder
        .runs
        .iter()
        .filter(|r| r.task == task && r.label == label && r.test.is_some())
        .collect()
}

fn generation_stats(
    runs: &[&GenerationRunResult],
    metric: impl Fn(&lora_train::metrics::generation::GenerationMetrics) -> f64,
) -> MeanStd {
    MeanStd::of(
        &runs
            .iter()
            .filter_map(|r| r.test.as_ref().map(&metric))
            .collect::<Vec<_>>(),
    )
}

/// The decoder comparison: the untrained model, then a row per method.
fn decoder_table(results: &ExperimentResults) -> Table {
    let d = &results.config.decoder;
    let mut table = Table::new(
        format!("Instruction tuning a decoder: {} on {}", d.model, d.task),
        [
            "method",
            "trainable params",
            "% of model",
            "ROUGE-L %",
            "BLEU",
            "exact match %",
            "s / epoch",
            "train tokens / s",
            "peak MiB",
            "checkpoint",
            "% of model file",
        ],
    );
    let labels =
        std::iter::once(UNTRAINED.to_string()).chain(d.methods.iter().map(|m| m.label.clone()));
    let mut skipped = Vec::new();
    for label in labels {
        let runs = generation_runs(results, &d.task, &label);
        let Some(first) = runs.first() else {
            if let Some(reason) = results
                .decoder
                .runs
                .iter()
                .find(|r| r.task == d.task && r.label == label)
                .and_then(|r| r.skipped.clone())
            {
                skipped.push(format!("{label}: {reason}"));
            }
            continue;
        };
        let trained = label != UNTRAINED;
        let timing = |f: &dyn Fn(&GenerationRunResult) -> f64, digits| {
            if trained {
                MeanStd::of(&runs.iter().map(|r| f(r)).collect::<Vec<_>>()).format(digits)
            } else {
                "-".into()
            }
        };
        let peak = runs.iter().filter_map(|r| r.peak_rss_mib).reduce(f64::max);
        table.push([
            label.clone(),
            first.params.trainable.to_string(),
            format!("{:.3}", first.params.trainable_percent()),
            generation_stats(&runs, |m| m.rouge_l_f1).percent(1),
            generation_stats(&runs, |m| m.bleu.score).format(2),
            generation_stats(&runs, |m| m.exact_match).percent(1),
            timing(&|r| r.seconds_per_epoch, 1),
            timing(&|r| r.tokens_per_second, 0),
            peak.map_or("-".into(), |p| format!("{p:.0}")),
            if trained {
                human_bytes(first.checkpoint_bytes)
            } else {
                "-".into()
            },
            if trained {
                format!(
                    "{:.2}",
                    100.0 * first.checkpoint_bytes as f64
                        / results.decoder.model_bytes.max(1) as f64
                )
            } else {
                "-".into()
            },
        ]);
    }
    let b = &d.budget;
    let mut note = format!(
        "Greedy generations of the test split ({} prompts, at most {} new tokens, rendered with \
         the model's chat template), scored against the reference headlines: ROUGE-L F1 as \
         rouge-score computes it, corpus BLEU-4 as sacreBLEU does; mean ± std over seeds {:?} \
         ({} training examples, {} epoch(s), batch {}, at most {} tokens, completion-only loss). \
         The untrained row is the model as downloaded (greedy, so one run).",
        b.test.map_or("all".into(), |n| n.to_string()),
        d.max_new_tokens,
        d.seeds,
        b.train.map_or("all".into(), |n| n.to_string()),
        b.epochs,
        b.batch_size,
        b.max_len,
    );
    if !skipped.is_empty() {
        note += &format!(" Not run: {}.", skipped.join("; "));
    }
    table.note = Some(note);
    table
}

/// Milliseconds per generated token of each variant, with the overhead over the base model.
fn decoder_latency_table(results: &ExperimentResults) -> Table {
    let l = &results.config.decoder.latency;
    let mut header = vec!["variant".to_string()];
    for b in &l.batch_sizes {
        header.push(format!("batch {b} (ms / token)"));
        header.push(format!("batch {b} vs base"));
    }
    let mut table = Table::new(
        format!("Decoding latency: {}", results.config.decoder.model),
        header,
    );
    let lat = &results.decoder.latency;
    let at = |variant: &str, batch: usize| {
        lat.iter()
            .find(|r| r.variant == variant && r.batch == batch)
            .map(|r| r.latency.median_ms)
    };
    let base = lat.first().map(|r| r.variant.clone()).unwrap_or_default();
    let mut variants: Vec<&str> = Vec::new();
    for r in lat {
        if !variants.contains(&r.variant.as_str()) {
            variants.push(&r.variant);
        }
    }
    for v in variants {
        let mut row = vec![v.to_string()];
        for &b in &l.batch_sizes {
            let ms = at(v, b);
            row.push(ms.map_or("-".into(), |ms| format!("{ms:.2}")));
            row.push(match (ms, at(&base, b)) {
                (Some(ms), Some(base_ms)) if v != base => {
                    format!("{:+.1} %", 100.0 * (ms / base_ms - 1.0))
                }
                _ => "-".into(),
            });
        }
        table.push(row);
    }
    table.note = Some(format!(
        "The paper's setting: a {}-token prompt, {} new tokens generated greedily (end of \
         sequence ignored) with the KV cache; median of {} timed runs after one warm-up, the \
         variants timed in alternation (each round runs every one), divided by the new tokens. LoRA r={} on q_proj and v_proj; adapters with bottleneck {}.",
        l.prompt_tokens, l.new_tokens, l.repeats, l.rank, l.bottleneck
    ));
    table
}

/// The decoder instruction-tuned on the classification task, beside the encoder's classifier.
fn instruct_table(results: &ExperimentResults) -> Table {
    let d = &results.config.decoder;
    let mut table = Table::new(
        format!(
            "One task, two models: {} as a decoder answering in words, beside the encoder",
            d.instruct_task
        ),
        ["model", "method", "trainable params", "metric", "test %"],
    );
    let encoder_lora = results
        .config
        .methods
        .iter()
        .find(|m| matches!(m.method, lora_train::Method::Lora { .. }));
    if let Some(m) = encoder_lora {
        let runs: Vec<&RunResult> = results
            .runs
            .iter()
            .filter(|r| r.task == "movie-sentiment" && r.label == m.label)
            .collect();
        if let Some(first) = runs.first() {
            table.push([
                results.config.encoder.clone(),
                format!("{} + classification head", m.label),
                first.params.trainable.to_string(),
                "accuracy".into(),
                metric_stats(&runs, "accuracy").percent(1),
            ]);
        }
    }
    let lora = d
        .methods
        .iter()
        .find(|m| matches!(m.method, lora_train::Method::Lora { .. }))
        .map(|m| m.label.clone());
    for label in std::iter::once(UNTRAINED.to_string()).chain(lora) {
        let runs = generation_runs(results, &d.instruct_task, &label);
        if let Some(first) = runs.first() {
            table.push([
                d.model.clone(),
                if label == UNTRAINED {
                    "untrained (zero-shot)".into()
                } else {
                    format!("{label}, instruction-tuned")
                },
                first.params.trainable.to_string(),
                "exact match".into(),
                generation_stats(&runs, |m| m.exact_match).percent(1),
            ]);
        }
    }
    let b = &d.instruct_budget;
    table.note = Some(format!(
        "The decoder answers \"positive\" or \"negative\" (exact match after trimming, at most {} \
         new tokens); it trains on {} reviews for {} epoch(s), the encoder as in the comparison. \
         Both test on the same split's first reviews ({} for the decoder, {} for the encoder).",
        d.instruct_max_new_tokens,
        b.train.map_or("all".into(), |n| n.to_string()),
        b.epochs,
        b.test.map_or("all".into(), |n| n.to_string()),
        results
            .config
            .movie
            .test
            .map_or("all".into(), |n| n.to_string()),
    ));
    table
}

/// Where each method's training memory went (first epoch, first seed): base weights as
/// stored, trainable weights, optimizer moments, and the measured rest (activations,
/// gradients, workspace). `None` when no run recorded it.
fn memory_table(results: &ExperimentResults) -> Option<Table> {
    let mut table = Table::new(
        "Training memory (MiB, first epoch)",
        [
            "task",
            "method",
            "base weights",
            "trainable",
            "optimizer",
            "activations and workspace",
            "peak RSS",
        ],
    );
    let encoder = results
        .runs
        .iter()
        .map(|r| (r.task.as_str(), r.label.as_str(), r.memory));
    let decoder = results
        .decoder
        .runs
        .iter()
        .map(|r| (r.task.as_str(), r.label.as_str(), r.memory));
    let mut seen = Vec::new();
    for (task, label, memory) in encoder.chain(decoder) {
        let Some(m) = memory else { continue };
        if seen.contains(&(task, label)) {
            continue;
        }
        seen.push((task, label));
        let opt = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}"));
        table.push([
            task.to_string(),
            label.to_string(),
            format!("{:.0}", m.base_mib),
            format!("{:.1}", m.trainable_mib),
            format!("{:.1}", m.optimizer_mib),
            opt(m.activations_mib),
            opt(m.peak_rss_mib),
        ]);
    }
    (!seen.is_empty()).then_some(table)
}

/// Writes `report.md`, `results.json`, the CSV tables and the plots; returns the report path.
pub fn write_report(results: &ExperimentResults, out: &Path) -> Result<PathBuf> {
    let mut tables = Vec::new();
    let mut plots = Vec::new();
    let wants = |t: TableKind| results.config.tables.contains(&t);
    if wants(TableKind::Comparison) {
        tables.push((
            "comparison",
            comparison_table(
                results,
                "movie-sentiment",
                "Method comparison: movie-sentiment (binary)",
            ),
        ));
        plots.push(("loss_movie.svg", loss_plot(results, "movie-sentiment")?));
    }
    if wants(TableKind::Ablation) {
        let (table, series) = ablation_rows(results);
        tables.push(("ablation", table));
        if !series.is_empty() {
            plots.push((
                "rank_ablation.svg",
                line_plot_svg(
                    "Test accuracy against LoRA rank",
                    "r",
                    "accuracy",
                    &series,
                    true,
                )?,
            ));
        }
    }
    if wants(TableKind::Latency) {
        tables.push(("latency", latency_table(results)));
    }
    if wants(TableKind::Bbc) {
        tables.push((
            "bbc",
            comparison_table(
                results,
                "bbc-news",
                "Method comparison: bbc-news (5 classes)",
            ),
        ));
        plots.push(("loss_bbc.svg", loss_plot(results, "bbc-news")?));
    }
    if wants(TableKind::Decoder) {
        tables.push(("decoder", decoder_table(results)));
        plots.push(("loss_decoder.svg", decoder_loss_plot(results)?));
    }
    if wants(TableKind::DecoderLatency) {
        tables.push(("decoder_latency", decoder_latency_table(results)));
    }
    if wants(TableKind::Instruct) {
        tables.push(("instruct", instruct_table(results)));
    }
    if let Some(table) = memory_table(results) {
        tables.push(("memory", table));
    }
    let mut md = format!(
        "# Experiment `{}`\n\nThe encoder `{}` and the decoder `{}` fine-tuned with each method; \
         machine: {}.\nWall time of this invocation: {:.1} min. Settings: `config.toml`; every \
         number: `results.json`.\n\n",
        results.config.name,
        results.config.encoder,
        results.config.decoder.model,
        results.machine.describe(),
        results.wall_seconds / 60.0
    );
    for (file, table) in &tables {
        md += &format!("## {}\n\n{}\n", table.title, table.to_markdown());
        if let Some(note) = &table.note {
            md += &format!("{note}\n\n");
        }
        write_file(out, &format!("{file}.csv"), table.to_csv().as_bytes())?;
    }
    for (file, svg) in plots.iter().filter(|(_, svg)| !svg.is_empty()) {
        write_file(out, file, svg.as_bytes())?;
        md += &format!("![{file}]({file})\n\n");
    }
    let json = serde_json::to_vec_pretty(results).map_err(|e| write_err(out, e))?;
    write_file(out, "results.json", &json)?;
    write_file(out, "report.md", md.as_bytes())?;
    Ok(out.join("report.md"))
}

fn loss_plot(results: &ExperimentResults, task: &str) -> Result<String> {
    let seed = results.config.seeds[0];
    let series: Vec<Series> = results
        .config
        .methods
        .iter()
        .filter_map(|m| {
            let run = results
                .runs
                .iter()
                .find(|r| r.task == task && r.label == m.label && r.seed == seed)?;
            let smooth = moving_average(&run.step_losses, 10);
            Some(Series {
                label: m.label.clone(),
                points: smooth
                    .iter()
                    .enumerate()
                    .map(|(i, &l)| ((i + 1) as f64, l, 0.0))
                    .collect(),
            })
        })
        .collect();
    if series.is_empty() {
        return Ok(String::new());
    }
    line_plot_svg(
        &format!("Training loss on {task} (seed {seed}, 10-step average)"),
        "step",
        "loss",
        &series,
        false,
    )
}

fn decoder_loss_plot(results: &ExperimentResults) -> Result<String> {
    let d = &results.config.decoder;
    let seed = d.seeds[0];
    let series: Vec<Series> = d
        .methods
        .iter()
        .filter_map(|m| {
            let run = results.decoder.runs.iter().find(|r| {
                r.task == d.task && r.label == m.label && r.seed == seed && r.test.is_some()
            })?;
            Some(Series {
                label: m.label.clone(),
                points: moving_average(&run.step_losses, 5)
                    .iter()
                    .enumerate()
                    .map(|(i, &l)| ((i + 1) as f64, l, 0.0))
                    .collect(),
            })
        })
        .collect();
    if series.is_empty() {
        return Ok(String::new());
    }
    line_plot_svg(
        &format!("Training loss on {} (seed {seed}, 5-step average)", d.task),
        "step",
        "loss",
        &series,
        false,
    )
}
