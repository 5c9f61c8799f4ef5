//! `lora export`: write a LoRA adapter as a clean PEFT directory (`adapter_config.json`,
//! `adapter_model.safetensors`, a model card `README.md`, and `labels.json` for classifiers),
//! or (`--format gguf`) as one llama.cpp GGUF adapter file, after checking that it loads onto
//! its base model.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use lora_surgery::PeftConfig;
use lora_train::ADAPTER_NAME;

use crate::model::{LoadedModel, ModelArgs, check_out_dir, load, write_labels};

#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The adapter to export: a PEFT directory, such as the --out of lora train or its best/.
    #[arg(long)]
    adapter: PathBuf,
    /// Where to write: the PEFT adapter directory (created if missing), or with --format gguf
    /// the .gguf file.
    #[arg(long)]
    out: PathBuf,
    /// peft (a PEFT directory) or gguf (llama.cpp's LoRA adapter format, for llama.cpp's --lora
    /// and Ollama's ADAPTER; decoders only).
    #[arg(long, default_value = "peft", value_parser = ["peft", "gguf"])]
    format: String,
    /// The base model name to record in base_model_name_or_path (default: the adapter's, else
    /// --model).
    #[arg(long)]
    base_model_name: Option<String>,
    /// Overwrite the adapter files of an existing, non-empty --out directory.
    #[arg(long)]
    force: bool,
}

pub fn export(args: ExportArgs, quiet: bool) -> Result<()> {
    let config_path = args.adapter.join("adapter_config.json");
    if !config_path.is_file() {
        bail!(
            "{} is not a LoRA adapter directory (no adapter_config.json); lora export takes the \
             --out of a lora train run with --method lora, or a PEFT adapter",
            args.adapter.display()
        );
    }
    if args.format == "gguf" {
        return export_gguf(&args, quiet);
    }
    check_out_dir(&args.out, &[&args.adapter], args.force)?;
    let mut config = PeftConfig::from_file(&config_path)?;
    if let Some(name) = args.base_model_name {
        config.base_model = Some(name);
    } else if config.base_model.is_none() {
        config.base_model = Some(args.model.model.clone());
    }
    let device = lora_core::select_device(args.model.device.as_deref())?;
    // Loading checks that every tensor fits the base; saving writes exactly what was loaded.
    let loaded = load(&args.model, Some(&args.adapter), &device)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let labels = match loaded.model {
        LoadedModel::Classifier { mut model, labels } => {
            lora_surgery::save_adapter(model.as_mut(), ADAPTER_NAME, &config, &args.out)?;
            write_labels(&args.out, &labels)?;
            Some(labels)
        }
        LoadedModel::CausalLm(mut model) => {
            lora_surgery::save_adapter(model.as_mut(), ADAPTER_NAME, &config, &args.out)?;
            None
        }
    };
    let card = model_card(&config, labels.as_deref());
    lora_core::io::write_atomic(&args.out.join("README.md"), card.as_bytes())?;
    if !quiet {
        println!(
            "exported {} as a PEFT adapter to {}",
            args.adapter.display(),
            args.out.display()
        );
    }
    Ok(())
}

/// Writes the adapter as llama.cpp's GGUF LoRA adapter (`--out FILE.gguf`).
fn export_gguf(args: &ExportArgs, quiet: bool) -> Result<()> {
    if args.out.extension().is_none_or(|e| e != "gguf") {
        bail!(
            "--format gguf writes one file: give --out a path ending in .gguf (got {})",
            args.out.display()
        );
    }
    if args.out.exists() && !args.force {
        bail!(
            "{} already exists; pass --force to overwrite it",
            args.out.display()
        );
    }
    let device = lora_core::select_device(args.model.device.as_deref())?;
    let loaded = load(&args.model, Some(&args.adapter), &device)?;
    let LoadedModel::CausalLm(model) = loaded.model else {
        bail!(
            "GGUF adapters are llama.cpp's, for decoder language models; {} is a sequence \
             classifier (export it as a PEFT directory, the default --format)",
            args.model.model
        );
    };
    let bytes = lora_models::decoder::gguf_adapter::adapter_gguf(&model, ADAPTER_NAME)?;
    lora_core::io::write_atomic(&args.out, &bytes)?;
    if !quiet {
        println!(
            "exported {} as a llama.cpp GGUF adapter ({} architecture) to {}",
            args.adapter.display(),
            lora_models::decoder::gguf_adapter::gguf_architecture(model.config().family),
            args.out.display()
        );
    }
    Ok(())
}

/// A model card in the shape PEFT's `save_pretrained` writes (YAML front matter naming the
/// base model and library), with the LoRA settings and how to load it.
fn model_card(config: &PeftConfig, labels: Option<&[String]>) -> String {
    let base = config.base_model.as_deref().unwrap_or("unknown");
    let targets = serde_json::to_string(&config.targets.target_modules).unwrap_or_default();
    let (auto_class, extra) = match labels {
        Some(labels) => (
            "AutoModelForSequenceClassification",
            format!(", num_labels={}", labels.len()),
        ),
        None => ("AutoModelForCausalLM", String::new()),
    };
    let mut card = format!(
        "---\nbase_model: {base}\nlibrary_name: peft\ntags:\n- lora\n- lora-burn\n---\n\n\
         # LoRA adapter for {base}\n\n\
         - task type: {}\n- rank r = {}, lora_alpha = {}, lora_dropout = {}{}\n\
         - target_modules: {targets}\n",
        config.task_type.map_or("unspecified", |t| t.as_str()),
        config.lora.r,
        config.lora.alpha,
        config.lora.dropout,
        if config.lora.use_rslora {
            " (rsLoRA)"
        } else {
            ""
        },
    );
    if let Some(labels) = labels {
        card.push_str(&format!("- labels: {}\n", labels.join(", ")));
    }
    card.push_str(&format!(
        "\nWritten by `lora export` (lora-burn). Load it with PEFT:\n\n```python\n\
         from peft import PeftModel\nfrom transformers import {auto_class}\n\n\
         base = {auto_class}.from_pretrained(\"{base}\"{extra})\n\
         model = PeftModel.from_pretrained(base, \"path/to/this/directory\")\n```\n\n\
         or with lora-burn: `lora predict --model <base> --adapter <this directory> --text ...`\n"
    ));
    card
}
