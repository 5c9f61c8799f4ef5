//! Token ids and labels for supervised fine-tuning, with TRL's masking conventions.
//!
//! Labels are aligned with the ids (the model shifts them: the logits at position `t` are scored
//! against `labels[t + 1]`); [`IGNORE_INDEX`] (`-100`) marks positions that take no loss.
//!
//! **Prompt / completion without a chat template** (TRL's non-conversational data): the text is
//! `prompt + completion + eos_token` (no EOS text is appended when the completion already ends
//! with it, or when the tokenizer's post-processor appends EOS itself), encoded with the tokenizer's special tokens (its post-processor's BOS)
//! unless the text already contains the BOS text, so BOS is never doubled. The prompt is
//! encoded alone the same way; its tokens are the prompt part when they are a prefix of the full
//! encoding, else (the tokenizer merged across the boundary) the tokens that end after the
//! prompt's last character are the completion's. Loss: completion tokens (and EOS) only.
//!
//! **With a chat template** a prompt / completion pair is the conversation `[user: prompt,
//! assistant: completion]` (how TRL treats conversational prompt-completion data: the prompt is
//! rendered with the generation prompt and the completion is the assistant's reply), and a
//! conversation is rendered whole. The rendered text is encoded with `add_special_tokens=false`,
//! as `apply_chat_template(tokenize=True)` does: the template writes BOS / EOS itself. Loss:
//! assistant turns only. For assistant turn `i`, the conversation up to turn `i` is rendered
//! with `add_generation_prompt=true` and the conversation through turn `i` without it; the tokens
//! between the two belong to the assistant: its content and its end-of-turn marker
//! (`<|im_end|>`, `<|eot_id|>`, `<end_of_turn>`, `</s>`, …), less the whitespace-only tokens the
//! template writes after the marker (the `\n` between turns is never generated). This holds when
//! both renderings are prefixes of the whole conversation's text and their tokens prefixes of its
//! tokens. When not (Phi-3 ends a conversation that stops at an assistant turn with an extra
//! EOS; Qwen3 drops an empty `<think>` block from all but the last turn; a tokenizer can merge
//! tokens across the turn boundary) the span is found by character offsets instead: from the end
//! of the generation-prompt rendering (or the content's first occurrence after the previous
//! turn), through the content and the end-of-turn text the turn's own rendering puts after it,
//! labelling every token that ends inside it (transformers' assistant-mask rule); a tracing
//! warning says how many turns needed it and why.
//!
//! **`train_on_prompt`** labels every token. In every case the first position is
//! [`IGNORE_INDEX`]: nothing predicts it (and packed examples must not be predicted from the
//! example before them).
//!
//! **Truncation** to `max_len` keeps the answer: the completion, or the conversation from the
//! start of its last assistant turn. The prompt is cut from the left (a leading BOS is kept);
//! an answer longer than `max_len` on its own is cut at its right end
//! ([`truncate_keep_answer`]).

use std::ops::Range;

use tokenizers::{Encoding, Tokenizer};

use super::truncate::truncate_keep_answer;
use super::{IGNORE_INDEX, Message, Role, SftExample};
use crate::chat::{ChatTemplate, SpecialTokens};
use crate::error::{DataError, Result};

/// How examples become token ids and labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SftOptions {
    /// The longest sequence, in tokens (TRL's `max_length`, default 1024).
    pub max_len: usize,
    /// Take the loss on every token, prompts included (default: only the answers).
    pub train_on_prompt: bool,
}

impl Default for SftOptions {
    fn default() -> Self {
        Self {
            max_len: 1024,
            train_on_prompt: false,
        }
    }
}

/// One encoded example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SftEncoded {
    /// Token ids.
    pub ids: Vec<u32>,
    /// One label per id: the id where the loss is taken, [`IGNORE_INDEX`] elsewhere.
    pub labels: Vec<i64>,
    /// Whether the example was cut to `max_len`.
    pub truncated: bool,
}

impl SftEncoded {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the example has no tokens.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Number of positions that take the loss.
    pub fn label_count(&self) -> usize {
        self.labels.iter().filter(|&&l| l != IGNORE_INDEX).count()
    }
}

/// What [`SftEncoder::encode_all`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncodeStats {
    /// Examples encoded.
    pub examples: usize,
    /// Examples cut to `max_len`.
    pub truncated: usize,
    /// Examples with no position left that takes the loss.
    pub unlabelled: usize,
    /// Assistant turns located by character offsets rather than token prefixes.
    pub offset_fallbacks: usize,
    /// Tokens in all.
    pub tokens: usize,
    /// Positions that take the loss, in all.
    pub label_tokens: usize,
}

/// An example before labels and truncation: ids, the token spans that are learned, and why the
/// spans needed character offsets (if they did).
struct Masked {
    ids: Vec<u32>,
    spans: Vec<Range<usize>>,
    fallbacks: Vec<String>,
}

/// Encodes [`SftExample`]s into ids and labels (see the module documentation for the rules).
///
/// ```no_run
/// use lora_data::chat::ChatTemplate;
/// use lora_data::sft::{SftEncoder, SftExample, SftOptions};
///
/// let dir = std::path::Path::new("model");
/// let tokenizer = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
/// let template = ChatTemplate::from_model_dir(dir, None)?;
/// let encoder = SftEncoder::new(&tokenizer, Some(&template), SftOptions::default())?;
/// let example = SftExample::prompt_completion("2 + 2 =", "4");
/// let (encoded, stats) = encoder.encode_all(&[example])?;
/// println!("{} tokens, {} labelled", encoded[0].len(), encoded[0].label_count());
/// # Ok::<(), lora_data::DataError>(())
/// ```
#[derive(Debug, Clone)]
pub struct SftEncoder<'a> {
    tokenizer: &'a Tokenizer,
    template: Option<&'a ChatTemplate>,
    special: SpecialTokens,
    options: SftOptions,
}

impl<'a> SftEncoder<'a> {
    /// An encoder with `tokenizer` and, for chat formatting, `template` (whose special tokens
    /// are used). `max_len` must be at least 2.
    pub fn new(
        tokenizer: &'a Tokenizer,
        template: Option<&'a ChatTemplate>,
        options: SftOptions,
    ) -> Result<Self> {
        if options.max_len < 2 {
            return Err(DataError::InvalidArgument(format!(
                "max_len must be at least 2 tokens for supervised fine-tuning, got {}",
                options.max_len
            )));
        }
        Ok(Self {
            tokenizer,
            template,
            special: template
                .map(|t| t.special_tokens().clone())
                .unwrap_or_default(),
            options,
        })
    }

    /// Uses these special tokens (the EOS text ends plain completions; the BOS text decides
    /// whether the tokenizer adds its own), e.g. from `tokenizer_config.json` or a GGUF file.
    pub fn with_special_tokens(mut self, special: SpecialTokens) -> Self {
        self.special = special;
        self
    }

    /// The options.
    pub fn options(&self) -> SftOptions {
        self.options
    }

    /// Encodes one example.
    pub fn encode(&self, example: &SftExample) -> Result<SftEncoded> {
        let masked = self.masked(example)?;
        for reason in &masked.fallbacks {
            tracing::debug!(reason = %reason, "assistant span located by character offsets");
        }
        Ok(self.finish(masked))
    }

    /// Encodes every example; an error names the example (counting from 1). One warning sums
    /// up the assistant turns that needed character offsets.
    pub fn encode_all(&self, examples: &[SftExample]) -> Result<(Vec<SftEncoded>, EncodeStats)> {
        if self.template.is_none() && self.special.eos.is_none() {
            tracing::warn!(
                "no EOS token is known: plain completions are learned without an end; give the \
                 tokenizer's special tokens"
            );
        }
        let mut stats = EncodeStats::default();
        let mut first_fallback: Option<(usize, String)> = None;
        let mut out = Vec::with_capacity(examples.len());
        for (i, example) in examples.iter().enumerate() {
            let masked = self.masked(example).map_err(|e| DataError::InExample {
                index: i + 1,
                source: Box::new(e),
            })?;
            stats.offset_fallbacks += masked.fallbacks.len();
            if first_fallback.is_none()
                && let Some(reason) = masked.fallbacks.first()
            {
                first_fallback = Some((i + 1, reason.clone()));
            }
            let encoded = self.finish(masked);
            stats.examples += 1;
            stats.truncated += usize::from(encoded.truncated);
            stats.tokens += encoded.len();
            let labelled = encoded.label_count();
            stats.label_tokens += labelled;
            stats.unlabelled += usize::from(labelled == 0);
            out.push(encoded);
        }
        if let Some((example, reason)) = first_fallback {
            tracing::warn!(
                turns = stats.offset_fallbacks,
                "{} assistant turn(s) were located by character offsets, not token prefixes; \
                 the first, in example {example}: {reason}",
                stats.offset_fallbacks
            );
        }
        if stats.truncated > 0 {
            tracing::info!(
                truncated = stats.truncated,
                max_len = self.options.max_len,
                "examples longer than max_len were truncated (prompt cut from the left)"
            );
        }
        if stats.unlabelled > 0 {
            tracing::warn!(
                examples = stats.unlabelled,
                "examples have no position that takes the loss"
            );
        }
        Ok((out, stats))
    }

    fn encode_text(&self, text: &str, add_special_tokens: bool) -> Result<Encoding> {
        self.tokenizer
            .encode(text, add_special_tokens)
            .map_err(|e| DataError::Tokenizer(e.to_string()))
    }

    fn masked(&self, example: &SftExample) -> Result<Masked> {
        match (example, self.template) {
            (_, Some(template)) => self.conversation(template, &example.to_messages()),
            (SftExample::PromptCompletion { prompt, completion }, None) => {
                self.plain(prompt, completion)
            }
            (SftExample::Conversation(_), None) => Err(DataError::InvalidArgument(
                "conversations need a chat template, and this tokenizer has none: give one \
                 (a template file, or a model directory whose tokenizer_config.json has \
                 chat_template)"
                    .into(),
            )),
        }
    }

    /// The id of the EOS text, when the tokenizer's post-processor appends it itself (RoBERTa's
    /// `<s> … </s>`, some T5-style decoders): then the EOS text is not appended to completions.
    fn post_processor_eos(&self) -> Result<Option<u32>> {
        let Some(eos) = self
            .special
            .eos
            .as_deref()
            .and_then(|e| self.tokenizer.token_to_id(e))
        else {
            return Ok(None);
        };
        let with = self.encode_text("a", true)?;
        let without = self.encode_text("a", false)?;
        Ok(
            (with.get_ids().last() == Some(&eos) && without.get_ids().last() != Some(&eos))
                .then_some(eos),
        )
    }

    fn plain(&self, prompt: &str, completion: &str) -> Result<Masked> {
        let mut text = format!("{prompt}{completion}");
        let add_special = !self
            .special
            .bos
            .as_deref()
            .is_some_and(|bos| !bos.is_empty() && text.contains(bos));
        let post_eos = if add_special {
            self.post_processor_eos()?
        } else {
            None
        };
        if let Some(eos) = self.special.eos.as_deref()
            && !completion.ends_with(eos)
            && post_eos.is_none()
        {
            text.push_str(eos);
        }
        let full = self.encode_text(&text, add_special)?;
        let prompt_enc = self.encode_text(prompt, add_special)?;
        let mut prompt_ids = prompt_enc.get_ids();
        if let Some(eos) = post_eos
            && prompt_ids.last() == Some(&eos)
        {
            prompt_ids = &prompt_ids[..prompt_ids.len() - 1];
        }
        let ids = full.get_ids().to_vec();
        let mut fallbacks = Vec::new();
        let start = if ids.starts_with(prompt_ids) {
            prompt_ids.len()
        } else {
            fallbacks.push(
                "the prompt's tokens are not a prefix of the prompt + completion tokens (the \
                 tokenizer merges across the boundary)"
                    .to_string(),
            );
            full.get_offsets()
                .iter()
                .position(|&(_, end)| end > prompt.len())
                .unwrap_or(ids.len())
        };
        let mut spans = Vec::new();
        if start < ids.len() {
            spans.push(start..ids.len());
        }
        Ok(Masked {
            ids,
            spans,
            fallbacks,
        })
    }

    fn conversation(&self, template: &ChatTemplate, messages: &[Message]) -> Result<Masked> {
        let text = template.render(messages, false)?;
        let full = self.encode_text(&text, false)?;
        let ids = full.get_ids();
        let offsets = full.get_offsets();
        let mut spans = Vec::new();
        let mut fallbacks = Vec::new();
        let mut previous_end = 0;
        for (i, message) in messages.iter().enumerate() {
            if message.role != Role::Assistant {
                continue;
            }
            // A conversation that opens with the assistant: some templates cannot render what
            // comes before it (they read messages[0]); the turn is then found by its content.
            let before = match template.render(&messages[..i], true) {
                Err(_) if i == 0 => None,
                other => Some(other?),
            };
            let through = template.render(&messages[..=i], false)?;
            let token_span = if let Some(before) = before.as_deref()
                && text.starts_with(before)
                && text.starts_with(&through)
            {
                let a = self.encode_text(before, false)?;
                let b = self.encode_text(&through, false)?;
                (ids.starts_with(a.get_ids()) && ids.starts_with(b.get_ids()))
                    .then(|| a.len()..b.len())
                    .ok_or_else(|| {
                        format!(
                            "the tokens before and through assistant turn {} are not prefixes of \
                             the conversation's tokens (the tokenizer merges across the turn \
                             boundary)",
                            i + 1
                        )
                    })
            } else if before.is_none() {
                Err(
                    "the template cannot render the empty conversation before an opening \
                     assistant turn"
                        .to_string(),
                )
            } else {
                Err(format!(
                    "rendering the conversation up to assistant turn {} is not a prefix of the \
                     whole conversation's rendering (the template renders a turn differently \
                     when more turns follow)",
                    i + 1
                ))
            };
            let span = match token_span {
                Ok(span) => span,
                Err(reason) => {
                    fallbacks.push(reason);
                    match char_span(
                        &text,
                        before.as_deref(),
                        &through,
                        &message.content,
                        previous_end,
                    ) {
                        Some(chars) => tokens_ending_in(offsets, chars),
                        None => {
                            tracing::warn!(
                                turn = i + 1,
                                "the content of assistant turn {} is not in the rendered \
                                 conversation; the turn takes no loss",
                                i + 1
                            );
                            continue;
                        }
                    }
                }
            };
            let span = trim_whitespace_tokens(&text, offsets, span);
            if let Some(last) = span.end.checked_sub(1) {
                previous_end = offsets[last].1;
            }
            if !span.is_empty() {
                spans.push(span);
            }
        }
        Ok(Masked {
            ids: ids.to_vec(),
            spans,
            fallbacks,
        })
    }

    fn finish(&self, masked: Masked) -> SftEncoded {
        let Masked { mut ids, spans, .. } = masked;
        let mut labels = vec![IGNORE_INDEX; ids.len()];
        if self.options.train_on_prompt {
            labels = ids.iter().map(|&i| i64::from(i)).collect();
        } else {
            for span in &spans {
                for p in span.clone() {
                    labels[p] = i64::from(ids[p]);
                }
            }
        }
        let answer_start = spans.last().map_or(ids.len(), |s| s.start);
        let bos_id = self
            .special
            .bos
            .as_deref()
            .and_then(|b| self.tokenizer.token_to_id(b));
        let keep_first = bos_id.is_some() && ids.first().copied() == bos_id;
        let truncated = truncate_keep_answer(
            &mut ids,
            &mut labels,
            answer_start,
            self.options.max_len,
            keep_first,
        )
        .is_some();
        if let Some(first) = labels.first_mut() {
            *first = IGNORE_INDEX;
        }
        SftEncoded {
            ids,
            labels,
            truncated,
        }
    }
}

/// The byte range of an assistant turn in the rendered conversation `text`, by text alone:
/// from the end of `before` (the generation-prompt rendering) when there is one and it is a
/// prefix of `text`,
/// else from the content's first occurrence after `previous_end`; through the content and as
/// much of the text that follows it in `through` (the turn's own rendering: its end-of-turn
/// marker) as `text` shares.
fn char_span(
    text: &str,
    before: Option<&str>,
    through: &str,
    content: &str,
    previous_end: usize,
) -> Option<Range<usize>> {
    let needle = content.trim();
    let header_end = before
        .filter(|b| text.starts_with(b) && b.len() >= previous_end)
        .map(str::len);
    let search_from = header_end.unwrap_or(previous_end);
    let content_at = if needle.is_empty() {
        search_from
    } else {
        search_from + text.get(search_from..)?.find(needle)?
    };
    let start = header_end.unwrap_or(content_at);
    let content_end = content_at + needle.len();
    let after = match through.rfind(needle) {
        Some(p) if !needle.is_empty() => &through[p + needle.len()..],
        _ => "",
    };
    let shared = common_prefix_len(after, &text[content_end..]);
    Some(start..content_end + shared)
}

fn common_prefix_len(a: &str, b: &str) -> usize {
    a.char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map_or(a.len().min(b.len()), |((i, _), _)| i)
}

/// The tokens that end inside the byte range `chars` (a token straddling its start is the
/// answer's; one straddling its end is not).
fn tokens_ending_in(offsets: &[(usize, usize)], chars: Range<usize>) -> Range<usize> {
    let first = offsets
        .iter()
        .position(|&(_, end)| end > chars.start)
        .unwrap_or(offsets.len());
    let last = offsets[first..]
        .iter()
        .position(|&(_, end)| end > chars.end)
        .map_or(offsets.len(), |p| first + p);
    first..last
}

/// `span` without the whitespace-only tokens at its end.
fn trim_whitespace_tokens(
    text: &str,
    offsets: &[(usize, usize)],
    mut span: Range<usize>,
) -> Range<usize> {
    while span.end > span.start {
        let (s, e) = offsets[span.end - 1];
        match text.get(s..e) {
            Some(t) if !t.is_empty() && t.trim().is_empty() => span.end -= 1,
            _ => break,
        }
    }
    span
}

#[cfg(test)]
mod tests;
