//! `cargo xtask bench --vs-llama-cpp`: SmolLM2-135M's own Q4_1 GGUF decoded greedily by
//! llama.cpp (llama-cpp-python in its own pinned environment) and by the release `lora` with the
//! base kept as q4, q8 and f32, round after round in turn on the same prompt; writes the
//! `vs-llama-cpp` section of `docs/performance.md`. A benchmark: CI times nothing.

use std::process::Command;

use anyhow::Result;

use crate::bench::{
    BenchTokens, SideBySide, busy_of, json_of, machine, median, median_of, ratio_range,
    replace_marked, round_ratios, today,
};
use crate::cargo::{release_lora, workspace_root};

/// The forms `lora` holds the base in, each measured against the same round's llama.cpp.
const BASES: [&str; 3] = ["q4", "q8", "f32"];

/// One measured setting: the `lora` base form (or `None` for llama.cpp itself) at a thread
/// count, with every round's (`lora`, llama.cpp) results.
struct Setting {
    base: Option<&'static str>,
    threads: usize,
    rounds: Vec<(serde_json::Value, serde_json::Value)>,
}

/// `cargo xtask bench --vs-llama-cpp [--threads 1,2] [--repeats N] [--rounds R]`.
pub fn vs_llama_cpp(args: &[String]) -> Result<()> {
    let root = workspace_root()?;
    let SideBySide {
        threads,
        repeats,
        rounds,
    } = SideBySide::parse(args, "2")?;
    let lora = release_lora(&root)?;
    let python = crate::python::llama_cpp_python(&root)?;
    let script = root.join("xtask/bench/llama_cpp_bench.py");
    let tokens = BenchTokens::write(&root, &lora)?;
    let model = tokens.model("smollm2")?;
    let prompt = tokens.dir.join("decoder-prompt.json");
    let mut settings: Vec<Setting> = threads
        .iter()
        .flat_map(|&n| {
            std::iter::once(None)
                .chain(BASES.map(Some))
                .map(move |base| Setting {
                    base,
                    threads: n,
                    rounds: Vec::new(),
                })
        })
        .collect();
    for round in 1..=rounds {
        for &n in &threads {
            eprintln!("xtask: round {round}/{rounds} · llama.cpp · {n} thread(s)");
            let theirs = json_of(
                Command::new(&python)
                    .arg(&script)
                    .args(["--model", model, "--tokens"])
                    .arg(&prompt)
                    .args(["--threads", &n.to_string(), "--repeats", &repeats]),
            )?;
            for s in settings.iter_mut().filter(|s| s.threads == n) {
                let Some(base) = s.base else {
                    s.rounds.push((theirs.clone(), theirs.clone()));
                    continue;
                };
                eprintln!("xtask: round {round}/{rounds} · lora, base {base} · {n} thread(s)");
                let ours = json_of(
                    Command::new(&lora)
                        .args(["--quiet", "bench", "--workload", "decoder-decode"])
                        .args(["--model", model, "--tokens"])
                        .arg(&prompt)
                        .args(["--repeats", &repeats, "--device", "flex"])
                        .args(["--base-dtype", base])
                        .env("RAYON_NUM_THREADS", n.to_string()),
                )?;
                s.rounds.push((ours, theirs.clone()));
            }
        }
    }
    let report = report(&settings, model, rounds)?;
    let path = root.join("docs/performance.md");
    let existing = std::fs::read_to_string(&path).unwrap_or_default();
    std::fs::write(
        &path,
        replace_marked(&existing, "vs-llama-cpp", &report, "# Performance"),
    )?;
    println!("{report}");
    eprintln!("xtask: wrote {}", path.display());
    Ok(())
}

/// The `vs-llama-cpp` section: one row per engine and base form.
fn report(settings: &[Setting], model: &str, rounds: usize) -> Result<String> {
    let version = settings
        .first()
        .and_then(|s| s.rounds.first())
        .and_then(|(_, theirs)| theirs.pointer("/versions/llama_cpp_python"))
        .and_then(|v| v.as_str())
        .unwrap_or("?")
        .to_string();
    let mut md = format!(
        "## Decoding against llama.cpp, side by side\n\n\
         Measured by `cargo xtask bench --vs-llama-cpp` on {date}: {machine}. SmolLM2-135M from \
         its own GGUF (`{file}`), greedy decoding of 64 tokens after the same 32-token prompt, \
         batch 1: llama.cpp through llama-cpp-python {version} (the file's own Q4_1 blocks and \
         llama.cpp's kernels), then the release `lora bench --workload decoder-decode` with the \
         base kept as q4, q8 and f32 (the head stays f32), in turn in every round. ms/token = \
         (median 64-token run − median 1-token run) / 63 for both engines, median over {rounds} \
         round(s); × llama.cpp: median of the rounds' ratios to that round's llama.cpp (range \
         when several rounds). Peak MiB: the process' resident peak, model loading included \
         (llama.cpp maps the file). Cores busy: CPU seconds / wall seconds of the timed runs.\n\n\
         | engine | base | threads | ms/token | × llama.cpp | ratio range | peak MiB | cores busy |\n\
         |---|---|---|---|---|---|---|---|\n",
        date = today()?,
        machine = machine(),
        file = std::path::Path::new(model)
            .file_name()
            .map_or(model.into(), |f| f.to_string_lossy()),
    );
    for s in settings {
        let value = median_of(&s.rounds, "value", true);
        let mib = median_of(&s.rounds, "peak_rss_mib", true);
        let busy = busy_of(&s.rounds, true);
        let ratios = round_ratios(&s.rounds);
        // llama.cpp's own row is its ratio to itself.
        let range = match s.base {
            Some(_) => ratio_range(&ratios),
            None => "-".into(),
        };
        let (engine, base) = match s.base {
            Some(base) => ("lora", base),
            None => ("llama.cpp", "Q4_1 (file)"),
        };
        let fmt = |v: Option<f64>, digits: usize| v.map_or("-".into(), |v| format!("{v:.digits$}"));
        md += &format!(
            "| {engine} | {base} | {} | {} | {} | {range} | {} | {} |\n",
            s.threads,
            fmt(value, 1),
            fmt(median(ratios), 2),
            fmt(mib, 0),
            fmt(busy, 2),
        );
    }
    Ok(md)
}
