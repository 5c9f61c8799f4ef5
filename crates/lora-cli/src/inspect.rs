//! `lora inspect`: a model summary and the dry-run report of a LoRA config.

use anyhow::Result;
use clap::Args;
use lora_core::{LoraConfig, ParamCount};
use lora_models::Family;
use lora_surgery::{Adaptable, ModulePattern, TargetSpec};

use crate::model::{ModelArgs, resolve_model, split_list, target_pattern};

#[derive(Args)]
pub struct InspectArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// target_modules as a comma-separated list (`query,value`), or `all-linear`.
    #[arg(long, conflicts_with = "targets_regex")]
    targets: Option<String>,
    /// target_modules as a full-match regular expression.
    #[arg(long)]
    targets_regex: Option<String>,
    /// exclude_modules as a comma-separated list.
    #[arg(long)]
    exclude: Option<String>,
    /// LoRA rank.
    #[arg(long, default_value_t = 8)]
    r: usize,
    /// LoRA alpha (default: r).
    #[arg(long)]
    alpha: Option<f64>,
}

pub fn inspect(args: InspectArgs) -> Result<()> {
    let device = lora_core::select_device(args.model.device.as_deref())?;
    let source = resolve_model(&args.model.model)?;
    let arch = source.family()?;
    let target_modules = target_pattern(args.targets.as_deref(), args.targets_regex.as_deref());
    let spec = TargetSpec {
        target_modules,
        exclude_modules: args
            .exclude
            .as_deref()
            .map(|e| ModulePattern::List(split_list(e))),
        ..Default::default()
    };
    let config = LoraConfig::new(args.r).with_alpha(args.alpha.unwrap_or(args.r as f64));
    config.validate()?;
    let (summary, report) = match arch {
        Family::Encoder(family) => {
            // A `*ForSequenceClassification` checkpoint is shown with its head, under the names
            // PEFT sees (`bert.encoder…`, `classifier`).
            let classifier = lora_models::read_encoder_config(&source)?
                .is_some_and(|c| c.is_sequence_classifier());
            let describe = |class: &str, c: &lora_models::EncoderConfig, params: usize| {
                format!(
                    "{class} encoder ({}): {} layers, hidden {}, {} heads, vocab {}, {params} \
                     parameters",
                    family.model_type(),
                    c.num_layers,
                    c.hidden_size,
                    c.num_heads,
                    c.vocab_size
                )
            };
            if classifier {
                let (model, _, c) = lora_models::load_sequence_classifier(&source, &device)?;
                let summary = format!(
                    "{}, {} labels",
                    describe(family.classifier_class(), &c, ParamCount::of(&model).total),
                    model.num_labels()
                );
                (summary, plan_or_list(&model, &spec, &config)?)
            } else {
                let (model, _) = lora_models::load_encoder(&source, &device)?;
                let summary = describe(
                    family.model_class(),
                    &model.config().clone(),
                    ParamCount::of(&model).total,
                );
                (summary, plan_or_list(&model, &spec, &config)?)
            }
        }
        Family::Decoder(family) => {
            let (model, _) = lora_models::load_causal_lm(&source, &device)?;
            let c = model.config().clone();
            let params = ParamCount::of(&model).total;
            let summary = format!(
                "{} decoder ({}): {} layers, hidden {}, {}/{} heads of {}, vocab {}, tied head: {}, {params} parameters",
                family.causal_lm_class(),
                family.model_type(),
                c.num_layers,
                c.hidden_size,
                c.num_heads,
                c.num_kv_heads,
                c.head_dim,
                c.vocab_size,
                c.tie_word_embeddings
            );
            (summary, plan_or_list(&model, &spec, &config)?)
        }
    };
    println!("{summary}");
    println!("{report}");
    Ok(())
}

/// The dry-run report, or the list of adaptable modules when no targets are given.
fn plan_or_list<M: Adaptable>(model: &M, spec: &TargetSpec, config: &LoraConfig) -> Result<String> {
    if spec.target_modules.is_none() {
        let names: Vec<String> = model.linears().into_iter().map(|(n, _)| n).collect();
        return Ok(format!(
            "{} adaptable linear modules (pass --targets to see a LoRA plan):\n  {}",
            names.len(),
            names.join("\n  ")
        ));
    }
    Ok(lora_surgery::plan(model, spec, config)?.to_string())
}
