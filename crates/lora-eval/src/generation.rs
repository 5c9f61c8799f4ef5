//! Evaluating a decoder on a generation task: each prompt rendered with the chat template (the
//! assistant's turn opened), greedy generation up to `max_new_tokens` or an end-of-turn token,
//! and exact match, corpus BLEU-4 and ROUGE-L against the references (`lora_train::metrics::
//! generation`, equal to sacrebleu and rouge-score).

use std::time::Instant;

use burn::tensor::Device;
use lora_data::chat::ChatTemplate;
use lora_data::{Role, SftExample};
use lora_models::{DecoderForCausalLM, GenerationConfig};
use lora_train::metrics::generation::GenerationMetrics;
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::error::{EvalError, Result};

/// One generation, as the JSONL of `lora eval --generations` holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationRecord {
    /// The prompt as the model saw it (rendered with the template).
    pub prompt: String,
    /// The expected answer.
    pub reference: String,
    /// What the model wrote (special tokens removed).
    pub generation: String,
}

/// Scores and generations of one evaluation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GenerationEval {
    /// Exact match, BLEU and ROUGE-L.
    pub metrics: GenerationMetrics,
    /// Every generation, in example order.
    pub records: Vec<GenerationRecord>,
    /// Wall seconds of the generation.
    pub seconds: f64,
    /// New tokens generated.
    pub new_tokens: usize,
}

/// How a generation task is evaluated.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationSettings {
    /// Most new tokens per prompt.
    pub max_new_tokens: usize,
    /// Prompts generated together.
    pub batch_size: usize,
    /// Tokens that end an answer besides the model's end-of-sequence (end-of-turn markers).
    pub stop_tokens: Vec<u32>,
}

/// The prompt of an example as generation sees it: the conversation up to the answer rendered
/// with the assistant's turn opened (with a template), or the prompt text itself.
pub fn prompt_text(example: &SftExample, template: Option<&ChatTemplate>) -> Result<String> {
    let mut messages = example.to_messages();
    if messages.last().is_some_and(|m| m.role == Role::Assistant) {
        messages.pop();
    }
    match (template, example) {
        (Some(t), _) => Ok(t.render(&messages, true)?),
        (None, SftExample::PromptCompletion { prompt, .. }) => Ok(prompt.clone()),
        (None, SftExample::Conversation(_)) => Err(EvalError::Config(
            "conversations need a chat template; this model has none (pass --chat-template FILE)"
                .into(),
        )),
    }
}

/// Token ids of a rendered prompt: a template already holds its special tokens, so none are
/// added then (as transformers' `apply_chat_template`); a plain prompt gets the tokenizer's.
pub fn prompt_ids(tokenizer: &Tokenizer, text: &str, templated: bool) -> Result<Vec<u32>> {
    let encoding = tokenizer
        .encode(text, !templated)
        .map_err(|e| EvalError::Config(format!("tokenizing a prompt: {e}")))?;
    Ok(encoding.get_ids().to_vec())
}

/// Generates an answer to every example and scores them against the examples' answers.
pub fn evaluate_generation(
    model: &DecoderForCausalLM,
    tokenizer: &Tokenizer,
    template: Option<&ChatTemplate>,
    examples: &[SftExample],
    settings: &GenerationSettings,
    device: &Device,
) -> Result<GenerationEval> {
    if examples.is_empty() {
        return Err(EvalError::Config("no examples to generate for".into()));
    }
    let started = Instant::now();
    let config = GenerationConfig {
        max_new_tokens: settings.max_new_tokens,
        stop_tokens: settings.stop_tokens.clone(),
        ..GenerationConfig::default()
    };
    let mut records = Vec::with_capacity(examples.len());
    let mut new_tokens = 0;
    for chunk in examples.chunks(settings.batch_size.max(1)) {
        let prompts: Vec<String> = chunk
            .iter()
            .map(|e| prompt_text(e, template))
            .collect::<Result<_>>()?;
        let ids: Vec<Vec<u32>> = prompts
            .iter()
            .map(|p| prompt_ids(tokenizer, p, template.is_some()))
            .collect::<Result<_>>()?;
        let generated = model.generate_batch(&ids, &config, device)?;
        for ((example, prompt), tokens) in chunk.iter().zip(prompts).zip(generated) {
            new_tokens += tokens.len();
            let generation = tokenizer
                .decode(&tokens, true)
                .map_err(|e| EvalError::Config(format!("decoding a generation: {e}")))?;
            records.push(GenerationRecord {
                prompt,
                reference: example.target().unwrap_or_default().to_string(),
                generation: generation.trim().to_string(),
            });
        }
    }
    let predictions: Vec<&str> = records.iter().map(|r| r.generation.as_str()).collect();
    let references: Vec<&str> = records.iter().map(|r| r.reference.as_str()).collect();
    let metrics = GenerationMetrics::compute(&predictions, &references)
        .map_err(|e| EvalError::Config(e.to_string()))?;
    Ok(GenerationEval {
        metrics,
        records,
        seconds: started.elapsed().as_secs_f64(),
        new_tokens,
    })
}
