//! `lora generate`: continue a prompt with a decoder model (optionally with a LoRA adapter),
//! greedily or by sampling, with a KV cache.

use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use clap::Args;
use lora_data::Message;
use lora_models::GenerationConfig;
use serde_json::json;

use crate::model::{LoadedModel, ModelArgs, load};

#[derive(Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// A PEFT LoRA adapter directory for the model.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Merge the adapter into the weights first (same output, faster decoding).
    #[arg(long, requires = "adapter")]
    merge: bool,
    /// The prompt (repeat for several).
    #[arg(long, required = true)]
    prompt: Vec<String>,
    /// Most new tokens per prompt.
    #[arg(long, default_value_t = 32)]
    max_new_tokens: usize,
    /// 0 for greedy decoding, otherwise the sampling temperature.
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// Sample among the k most likely tokens only (0: all).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print JSON (prompt, completion, token ids) instead of text.
    #[arg(long)]
    json: bool,
    /// Treat each prompt as a user message: render it with the model's chat template (the
    /// assistant's turn opened), stop at the end of the turn, and print only the reply.
    #[arg(long)]
    chat: bool,
    /// A system message before the user's (with --chat).
    #[arg(long, requires = "chat")]
    system: Option<String>,
    /// A Jinja chat template to use instead of the model's own (with --chat).
    #[arg(long, requires = "chat")]
    chat_template: Option<PathBuf>,
}

pub fn generate(args: GenerateArgs) -> Result<()> {
    if args.temperature < 0.0 || !args.temperature.is_finite() {
        bail!(
            "--temperature must be 0 (greedy) or positive, got {}",
            args.temperature
        );
    }
    let device = lora_core::select_device(args.model.device.as_deref())?;
    let loaded = load(&args.model, args.adapter.as_deref(), &device)?;
    let LoadedModel::CausalLm(mut model) = loaded.model else {
        bail!(
            "{} is an encoder classifier, which does not generate text; lora generate needs a \
             causal LM (a decoder such as smollm2). Use lora predict for classifiers",
            args.model.model
        );
    };
    if args.merge {
        lora_surgery::merge_and_unload(model.as_mut())?;
    }
    let tokenizer = &loaded.tokenizer;
    let template = if args.chat {
        let template = crate::sft::chat_template(
            &loaded.source,
            tokenizer,
            args.chat_template.as_deref(),
        )?
        .ok_or_else(|| {
            anyhow!(
                "{} has no chat template (tokenizer_config.json's chat_template, or the GGUF key \
                 tokenizer.chat_template); pass --chat-template FILE",
                args.model.model
            )
        })?;
        Some(template)
    } else {
        None
    };
    let config = GenerationConfig {
        max_new_tokens: args.max_new_tokens,
        temperature: args.temperature,
        top_k: args.top_k,
        seed: args.seed,
        stop_tokens: crate::sft::stop_tokens(&loaded.source, tokenizer, template.as_ref()),
        min_new_tokens: 0,
    };
    let mut rows = Vec::new();
    for prompt in &args.prompt {
        let text = match &template {
            Some(template) => {
                let mut messages = Vec::new();
                if let Some(system) = &args.system {
                    messages.push(Message::system(system.clone()));
                }
                messages.push(Message::user(prompt.clone()));
                template.render(&messages, true)?
            }
            None => prompt.clone(),
        };
        let ids = lora_eval::generation::prompt_ids(tokenizer, &text, template.is_some())?;
        let ids = model.generate(&ids, &config, &device)?;
        let completion = tokenizer
            .decode(&ids, true)
            .map_err(|e| anyhow!("decoding the completion: {e}"))?;
        if args.json {
            rows.push(json!({"prompt": prompt, "rendered": text, "completion": completion, "token_ids": ids}));
        } else if args.chat {
            println!("{}", completion.trim());
        } else {
            println!("{prompt}{completion}");
        }
    }
    if args.json {
        println!(
            "{}",
            json!({"merged": args.merge, "temperature": args.temperature, "generations": rows})
        );
    }
    Ok(())
}
