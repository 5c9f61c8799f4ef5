//! `lora merge`: fold a LoRA adapter into its base and write a plain Hugging Face model
//! directory (`config.json`, `model.safetensors`, `tokenizer.json`) that `transformers` and
//! `lora` load without PEFT.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use lora_core::io::SaveDtype;
use lora_models::HfModelFiles;

use crate::model::{LoadedModel, ModelArgs, check_out_dir, load};

#[derive(Args)]
pub struct MergeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The PEFT LoRA adapter directory to merge (such as the --out of lora train).
    #[arg(long)]
    adapter: PathBuf,
    /// The directory to write the merged model to (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Weight type of model.safetensors: f32 (exact), f16 or bf16 (half the size).
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Overwrite the model files of an existing, non-empty --out directory.
    #[arg(long)]
    force: bool,
}

pub fn merge(args: MergeArgs, quiet: bool) -> Result<()> {
    let dtype = SaveDtype::parse(&args.dtype).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown dtype '{}'; choose one of {}",
            args.dtype,
            SaveDtype::NAMES.join(", ")
        )
    })?;
    check_out_dir(
        &args.out,
        &[Path::new(&args.model.model), &args.adapter],
        args.force,
    )?;
    let device = lora_core::select_device(args.model.device.as_deref())?;
    let loaded = load(&args.model, Some(&args.adapter), &device)?;
    let (tokenizer_json, extra_files) =
        lora_models::tokenizer_files(&loaded.source, &loaded.tokenizer)?;
    let (config, tensors) = match loaded.model {
        LoadedModel::Classifier { mut model, labels } => {
            lora_surgery::merge_and_unload(model.as_mut())?;
            (model.hf_config(&labels)?, model.hf_tensors()?)
        }
        LoadedModel::CausalLm(mut model) => {
            lora_surgery::merge_and_unload(model.as_mut())?;
            (model.hf_config(), model.hf_tensors()?)
        }
    };
    let parameters: usize = tensors.iter().map(|(_, t)| t.data.len()).sum();
    let files = HfModelFiles {
        config,
        tensors,
        tokenizer_json,
        extra_files,
        dtype,
    };
    let spinner = crate::spinner(format!("writing {}", args.out.display()), quiet);
    lora_models::save_hf_dir(&args.out, &files)
        .with_context(|| format!("writing the merged model to {}", args.out.display()))?;
    spinner.finish_and_clear();
    if !quiet {
        println!(
            "merged {} into {}: {} ({parameters} parameters, {})",
            args.adapter.display(),
            args.model.model,
            args.out.display(),
            dtype.torch_name()
        );
    }
    Ok(())
}
