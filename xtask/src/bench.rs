//! `cargo xtask bench`: the criterion benchmarks, or (`--vs-pytorch`) the same workloads run by
//! the release `lora` and by PyTorch + PEFT in the pinned Python environment, back to back on
//! the same token ids, written to `docs/performance.md`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::cargo::{TEST_FEATURES, release_lora, step, target_dir, workspace_root};

/// `cargo xtask bench [--vs-pytorch | --vs-llama-cpp [--threads 1,2] [--repeats N] [--rounds R]]
/// [--memory] [criterion args]`.
pub fn bench(args: &[String]) -> Result<()> {
    if args.iter().any(|a| a == "--memory") {
        return crate::bench_memory::memory(args);
    }
    if args.iter().any(|a| a == "--vs-pytorch") {
        return vs_pytorch(args);
    }
    if args.iter().any(|a| a == "--vs-llama-cpp") {
        return crate::bench_llama_cpp::vs_llama_cpp(args);
    }
    let root = workspace_root()?;
    // The dev profile compiles every dependency (Burn included) at opt-level 3, so the numbers
    // are Burn's optimised kernels, and the test build's artifacts are reused.
    for bench in ["lora_linear", "forward"] {
        let mut cmd_args = vec![
            "bench",
            "--profile",
            "dev",
            "--workspace",
            "--features",
            TEST_FEATURES,
            "--bench",
            bench,
            "--",
        ];
        cmd_args.extend(args.iter().map(String::as_str));
        step(&root, &format!("cargo bench {bench}"), &cmd_args, &[])?;
    }
    Ok(())
}

/// One row of the comparison: a workload, its token file and its model.
struct Row {
    workload: &'static str,
    tokens: &'static str,
    model: &'static str,
    what: &'static str,
    /// Timed runs per `--repeats`: batch-1 latencies last milliseconds, so they are timed
    /// more often than the steps for a median that holds still.
    repeat_factor: usize,
}

static ROWS: [Row; 9] = [
    Row {
        workload: "encoder-lora-step",
        tokens: "encoder-b32.json",
        model: "minilm",
        what: "MiniLM LoRA training step (r=8 q,v), batch 32 × ≤64",
        repeat_factor: 1,
    },
    Row {
        workload: "encoder-ft-step",
        tokens: "encoder-b32.json",
        model: "minilm",
        what: "MiniLM full fine-tuning step, batch 32 × ≤64",
        repeat_factor: 1,
    },
    Row {
        workload: "encoder-infer",
        tokens: "encoder-b32.json",
        model: "minilm",
        what: "MiniLM inference, batch 32 × ≤64",
        repeat_factor: 1,
    },
    Row {
        workload: "encoder-latency-base",
        tokens: "encoder-b1.json",
        model: "minilm",
        what: "MiniLM latency, batch 1 × 32, base",
        repeat_factor: 20,
    },
    Row {
        workload: "encoder-latency-merged",
        tokens: "encoder-b1.json",
        model: "minilm",
        what: "MiniLM latency, batch 1 × 32, LoRA merged",
        repeat_factor: 20,
    },
    Row {
        workload: "encoder-latency-unmerged",
        tokens: "encoder-b1.json",
        model: "minilm",
        what: "MiniLM latency, batch 1 × 32, LoRA unmerged",
        repeat_factor: 20,
    },
    Row {
        workload: "decoder-lora-step",
        tokens: "decoder-b4.json",
        model: "smollm2",
        what: "SmolLM2-135M LoRA training step (r=8 q,v), batch 4 × ≤128",
        repeat_factor: 1,
    },
    Row {
        workload: "decoder-prefill",
        tokens: "decoder-b4.json",
        model: "smollm2",
        what: "SmolLM2-135M prefill, batch 4 × ≤128",
        repeat_factor: 1,
    },
    Row {
        workload: "decoder-decode",
        tokens: "decoder-prompt.json",
        model: "smollm2",
        what: "SmolLM2-135M greedy decoding after 32 tokens, batch 1",
        repeat_factor: 1,
    },
];

/// The PyTorch script's name for a workload.
fn pytorch_name(workload: &str) -> String {
    workload
        .replace("encoder-", "minilm-")
        .replace("decoder-", "smollm2-")
}

/// The batches `lora bench --write-tokens` writes (in `<target>/bench-tokens`) and the paths of
/// the models they were tokenized for (`models.json`).
pub struct BenchTokens {
    /// The folder of the token files.
    pub dir: PathBuf,
    models: serde_json::Value,
}

impl BenchTokens {
    /// Writes the token files with `lora` and reads back the model paths.
    pub fn write(root: &Path, lora: &Path) -> Result<Self> {
        let dir = target_dir(root).join("bench-tokens");
        crate::python::run(
            Command::new(lora)
                .args(["bench", "--write-tokens"])
                .arg(&dir),
        )?;
        let models = serde_json::from_str(&std::fs::read_to_string(dir.join("models.json"))?)?;
        Ok(Self { dir, models })
    }

    /// The path of the model called `name` (`minilm`, `smollm2`).
    pub fn model(&self, name: &str) -> Result<&str> {
        self.models[name]
            .as_str()
            .with_context(|| format!("models.json has no {name}"))
    }
}

/// The value after `name` in `args`.
pub fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// The side-by-side benchmarks' options: `--threads 1,2` (default 2), `--repeats N` (timed runs
/// per process, default 5) and `--rounds R` (default `default_rounds`).
pub struct SideBySide {
    /// Thread counts to measure.
    pub threads: Vec<usize>,
    /// Timed runs per process, as the engines take it.
    pub repeats: String,
    /// Rounds over every setting.
    pub rounds: usize,
}

impl SideBySide {
    /// Reads the options from `args`.
    pub fn parse(args: &[String], default_rounds: &str) -> Result<Self> {
        let threads = flag(args, "--threads")
            .unwrap_or("2")
            .split(',')
            .map(|t| {
                t.trim()
                    .parse()
                    .context("--threads takes numbers, e.g. 1,2")
            })
            .collect::<Result<_>>()?;
        let repeats = flag(args, "--repeats").unwrap_or("5").to_string();
        let rounds = flag(args, "--rounds")
            .unwrap_or(default_rounds)
            .parse()
            .ok()
            .filter(|&r| r > 0)
            .context("--rounds takes a positive number, e.g. 3")?;
        Ok(Self {
            threads,
            repeats,
            rounds,
        })
    }
}

fn vs_pytorch(args: &[String]) -> Result<()> {
    let root = workspace_root()?;
    let SideBySide {
        threads,
        repeats,
        rounds,
    } = SideBySide::parse(args, "1")?;
    let lora = release_lora(&root)?;
    let python = crate::python::pinned_python(&root)?;
    let script = root.join("xtask/bench/pytorch_bench.py");
    let tokens = BenchTokens::write(&root, &lora)?;
    let per_process: usize = repeats
        .parse()
        .context("--repeats takes a positive number, e.g. 5")?;
    let repeats_of = |row: &Row| (per_process * row.repeat_factor).to_string();
    // Rounds alternate the two engines over every workload, so that a slow spell of a shared
    // machine (run-to-run spread is ±20 % on the 2-core VMs) falls on both and is visible.
    let mut results: Vec<Measured> = threads
        .iter()
        .flat_map(|&n| {
            ROWS.iter().map(move |row| Measured {
                row,
                threads: n,
                rounds: Vec::new(),
            })
        })
        .collect();
    for round in 1..=rounds {
        for m in &mut results {
            let (row, n) = (m.row, m.threads);
            let model = tokens.model(row.model)?;
            let token_file = tokens.dir.join(row.tokens);
            eprintln!(
                "xtask: round {round}/{rounds} · {} · {n} thread(s)",
                row.workload
            );
            let ours = json_of(
                Command::new(&lora)
                    .args(["--quiet", "bench", "--workload", row.workload, "--model"])
                    .arg(model)
                    .arg("--tokens")
                    .arg(&token_file)
                    .args(["--repeats", &repeats_of(row), "--device", "flex"])
                    .env("RAYON_NUM_THREADS", n.to_string()),
            )?;
            let theirs = json_of(
                Command::new(&python)
                    .arg(&script)
                    .args(["--workload", &pytorch_name(row.workload), "--model"])
                    .arg(model)
                    .arg("--tokens")
                    .arg(&token_file)
                    .args(["--threads", &n.to_string(), "--repeats", &repeats_of(row)]),
            )?;
            m.rounds.push((ours, theirs));
        }
    }
    let report = performance_md(&results, &lora)?;
    let path = root.join("docs/performance.md");
    let existing = std::fs::read_to_string(&path).unwrap_or_default();
    std::fs::write(&path, replace_section(&existing, &report))?;
    println!("{report}");
    eprintln!("xtask: wrote {}", path.display());
    Ok(())
}

/// Runs a command that prints one JSON object as its last stdout line.
pub fn json_of(command: &mut Command) -> Result<serde_json::Value> {
    let out = command
        .output()
        .with_context(|| format!("could not start {command:?}"))?;
    if !out.status.success() {
        bail!(
            "{command:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .with_context(|| format!("{command:?} printed no JSON:\n{stdout}"))?;
    Ok(serde_json::from_str(line)?)
}

/// Puts `report` between the `vs-pytorch` markers of `doc`.
fn replace_section(doc: &str, report: &str) -> String {
    replace_marked(doc, "vs-pytorch", report, "# Performance")
}

/// Puts `report` between the markers `<!-- bench:{name}:begin/end -->` of `doc` (appending the
/// section when they are missing; an empty `doc` starts with `title`).
pub fn replace_marked(doc: &str, name: &str, report: &str, title: &str) -> String {
    let begin = format!("<!-- bench:{name}:begin -->");
    let end = format!("<!-- bench:{name}:end -->");
    let section = format!("{begin}\n{report}\n{end}");
    match (doc.find(&begin), doc.find(&end)) {
        (Some(a), Some(b)) if a < b => {
            format!("{}{section}{}", &doc[..a], &doc[b + end.len()..])
        }
        _ if doc.is_empty() => format!("{title}\n\n{section}\n"),
        _ => format!("{}\n{section}\n", doc.trim_end()),
    }
}

/// Today's date (UTC), `YYYY-MM-DD`.
pub fn today() -> Result<String> {
    let out = Command::new("date").args(["-u", "+%Y-%m-%d"]).output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A number field of a benchmark result.
pub fn number(v: &serde_json::Value, key: &str) -> Option<f64> {
    v.get(key).and_then(serde_json::Value::as_f64)
}

/// The CPU and core count, for reports.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    format!("{cpu}, {cores} cores")
}

/// Every round's results (`lora`, PyTorch) of one workload at one thread count.
struct Measured {
    row: &'static Row,
    threads: usize,
    rounds: Vec<(serde_json::Value, serde_json::Value)>,
}

/// The median of `values` (the mean of the middle two for an even count); `None` for none.
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    values.retain(|v| v.is_finite());
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// The median over rounds of field `key` of `lora`'s (`ours`) or PyTorch's results.
pub fn median_of(
    rounds: &[(serde_json::Value, serde_json::Value)],
    key: &str,
    ours: bool,
) -> Option<f64> {
    median(
        rounds
            .iter()
            .filter_map(|(a, b)| number(if ours { a } else { b }, key))
            .collect(),
    )
}

/// The median over rounds of the cores kept busy (CPU seconds / wall seconds of the timed runs)
/// by `lora` (`ours`) or the other engine.
pub fn busy_of(rounds: &[(serde_json::Value, serde_json::Value)], ours: bool) -> Option<f64> {
    median(
        rounds
            .iter()
            .filter_map(|(a, b)| {
                let v = if ours { a } else { b };
                match (number(v, "cpu_seconds"), number(v, "wall_seconds")) {
                    (Some(c), Some(w)) if w > 0.0 => Some(c / w),
                    _ => None,
                }
            })
            .collect(),
    )
}

/// `lo-hi` of several rounds' ratios, `-` for one round or none.
pub fn ratio_range(ratios: &[f64]) -> String {
    match (
        ratios.iter().copied().reduce(f64::min),
        ratios.iter().copied().reduce(f64::max),
    ) {
        (Some(lo), Some(hi)) if ratios.len() > 1 => format!("{lo:.2}-{hi:.2}"),
        _ => "-".into(),
    }
}

/// The ratios lora / PyTorch of each round's `value` (same-round pairs).
pub fn round_ratios(rounds: &[(serde_json::Value, serde_json::Value)]) -> Vec<f64> {
    rounds
        .iter()
        .filter_map(
            |(ours, theirs)| match (number(ours, "value"), number(theirs, "value")) {
                (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                _ => None,
            },
        )
        .collect()
}

fn performance_md(results: &[Measured], lora: &Path) -> Result<String> {
    let date = today()?;
    let rounds = results.first().map_or(0, |m| m.rounds.len());
    let versions = results
        .first()
        .and_then(|m| m.rounds.first())
        .and_then(|(_, theirs)| theirs.get("versions"))
        .map(|v| v.to_string())
        .unwrap_or_default();
    let mut md = format!(
        "## lora against PyTorch + PEFT, side by side\n\n\
         Measured by `cargo xtask bench --vs-pytorch` on {date}: {machine}. Each workload runs in \
         its own process, `lora` (release build, `{}`, flex backend) then PyTorch ({versions}), \
         back to back on the same token ids (`lora bench --write-tokens`); each value is the median \
         of the timed runs after warm-up (`--repeats`, twenty times as many for the batch-1 \
         latencies), then the median over {rounds} round(s), every round \
         running both engines over every workload in turn. Ratio: median of the rounds' lora / \
         PyTorch ratios (below 1: lora is faster or smaller), with their range when there are \
         several rounds. Cores busy: CPU seconds / wall seconds of the timed runs.\n\n\
         | workload | threads | unit | PyTorch | lora | ratio | ratio range | peak MiB PyTorch / lora | cores busy PyTorch / lora |\n\
         |---|---|---|---|---|---|---|---|---|\n",
        lora.display(),
        machine = machine(),
    );
    for m in results {
        let (theirs, ours) = (
            median_of(&m.rounds, "value", false),
            median_of(&m.rounds, "value", true),
        );
        let ratios = round_ratios(&m.rounds);
        let range = ratio_range(&ratios);
        let busy = |ours: bool| busy_of(&m.rounds, ours).map_or("-".into(), |b| format!("{b:.2}"));
        let mib = |ours: bool| {
            median_of(&m.rounds, "peak_rss_mib", ours).map_or("-".into(), |v| format!("{v:.0}"))
        };
        let unit = m
            .rounds
            .first()
            .and_then(|(ours, _)| ours.get("unit"))
            .and_then(|u| u.as_str())
            .unwrap_or("");
        md += &format!(
            "| {} | {} | {unit} | {} | {} | {} | {range} | {} / {} | {} / {} |\n",
            m.row.what,
            m.threads,
            theirs.map_or("-".into(), |v| format!("{v:.2}")),
            ours.map_or("-".into(), |v| format!("{v:.2}")),
            median(ratios).map_or("-".into(), |r| format!("{r:.2}")),
            mib(false),
            mib(true),
            busy(false),
            busy(true),
        );
    }
    md += &against_base(results);
    Ok(md)
}

/// The table of `lora`'s adapted-model latencies against the base model's, timed in
/// alternation in the same process (`base_value`), with the median over rounds of each round's
/// ratio; empty when no row has one.
fn against_base(results: &[Measured]) -> String {
    let mut rows = String::new();
    for m in results {
        let ratios: Vec<f64> = m
            .rounds
            .iter()
            .filter_map(
                |(ours, _)| match (number(ours, "value"), number(ours, "base_value")) {
                    (Some(v), Some(b)) if b > 0.0 => Some(v / b),
                    _ => None,
                },
            )
            .collect();
        let Some(ratio) = median(ratios.clone()) else {
            continue;
        };
        let ms = |key| median_of(&m.rounds, key, true).map_or("-".into(), |v| format!("{v:.2}"));
        rows += &format!(
            "| {} | {} | {} | {} | {ratio:.3} | {} |\n",
            m.row.what,
            m.threads,
            ms("base_value"),
            ms("value"),
            ratio_range(&ratios),
        );
    }
    if rows.is_empty() {
        return rows;
    }
    format!(
        "\nlora's adapted models against its base model, both timed in the same process in \
         alternation (each timed round runs both, the first of the two rotating), so that the \
         machine's slow spells fall on both: ratio = median over rounds of this / base.\n\n\
         | workload | threads | base ms | this ms | this / base | range |\n\
         |---|---|---|---|---|---|\n{rows}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_are_summarised_by_their_medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(vec![f64::NAN]), None);
        let round = |ours: f64, theirs: f64| {
            (
                serde_json::json!({ "value": ours }),
                serde_json::json!({ "value": theirs }),
            )
        };
        // Ratios pair each round's own measurements: a slow round of both engines cancels.
        let rounds = vec![round(8.0, 10.0), round(16.0, 20.0), round(9.0, 10.0)];
        assert_eq!(round_ratios(&rounds), vec![0.8, 0.8, 0.9]);
        assert_eq!(median_of(&rounds, "value", true), Some(9.0));
        assert_eq!(median_of(&rounds, "value", false), Some(10.0));
    }

    #[test]
    fn adapted_latency_is_reported_against_the_base_of_its_own_process() {
        let round = |ours: f64, base: Option<f64>| {
            let mut v = serde_json::json!({ "value": ours });
            if let Some(b) = base {
                v["base_value"] = b.into();
            }
            (v, serde_json::json!({ "value": 1.0 }))
        };
        let row = |i: usize, rounds| Measured {
            row: &ROWS[i],
            threads: 2,
            rounds,
        };
        // Without a base in any round, no table.
        assert_eq!(against_base(&[row(3, vec![round(7.0, None)])]), "");
        // Each round's own pair: 7.7 / 7.0 and 11.0 / 10.0 are both 1.1.
        let md = against_base(&[
            row(3, vec![round(7.0, None)]),
            row(4, vec![round(7.7, Some(7.0)), round(11.0, Some(10.0))]),
        ]);
        assert!(md.contains("| MiniLM latency, batch 1 × 32, LoRA merged | 2 | 8.50 | 9.35 | 1.100 | 1.10-1.10 |"), "{md}");
        assert!(!md.contains("base | 2"), "{md}");
    }

    #[test]
    fn the_section_is_replaced_in_place() {
        const BEGIN: &str = "<!-- bench:vs-pytorch:begin -->";
        const END: &str = "<!-- bench:vs-pytorch:end -->";
        let doc = format!("# P\n\nbefore\n{BEGIN}\nold\n{END}\nafter\n");
        let new = replace_section(&doc, "new");
        assert_eq!(new, format!("# P\n\nbefore\n{BEGIN}\nnew\n{END}\nafter\n"));
        assert!(replace_section("", "x").starts_with("# Performance"));
        // Another section leaves this one alone.
        let both = replace_marked(&new, "memory", "m", "# Results");
        assert!(both.contains("new") && both.ends_with("<!-- bench:memory:end -->\n"));
    }
}
