//! Hugging Face chat templates, rendered with MiniJinja as transformers renders them with Jinja2.
//!
//! A [`ChatTemplate`] comes from a model directory or its `tokenizer_config.json`
//! ([`ChatTemplate::from_model_dir`], [`ChatTemplate::from_tokenizer_config`]; the
//! `chat_template` may be a string or a list of named templates), from a template file
//! ([`ChatTemplate::from_file`]) or from a string such as a GGUF file's
//! `tokenizer.chat_template` ([`ChatTemplate::new`]).
//!
//! Rendering matches `tokenizer.apply_chat_template(messages, tokenize=False)`: the same
//! environment settings (`trim_blocks`, `lstrip_blocks`, loop controls), the same variables
//! (`messages`, `add_generation_prompt`, `tools` and `documents` as none, and every special
//! token: `bos_token`, `eos_token`, …) and the same helpers: `raise_exception(message)`,
//! `strftime_now(format)` (UTC), `tojson` as Python's `json.dumps`, `namespace`, and Python's
//! string and dict methods (`.strip()`, `.startswith()`, `.split()`, `.items()`, … from
//! `minijinja-contrib`'s pycompat). transformers' `{% generation %}` tag renders its body.
//! `tests/fixtures/chat_templates.json` records transformers' output for every family's template
//! and the tests below compare text and token ids.
//!
//! ```
//! use lora_data::chat::{ChatTemplate, SpecialTokens};
//! use lora_data::sft::Message;
//!
//! let source = "{% for m in messages %}<|{{ m.role }}|>{{ m.content | trim }}{{ eos_token }}\n{% endfor %}\
//!               {% if add_generation_prompt %}<|assistant|>{% endif %}";
//! let special = SpecialTokens { eos: Some("</s>".into()), ..Default::default() };
//! let template = ChatTemplate::new(source, "example", special)?;
//! let text = template.render(&[Message::user(" Hi ")], true)?;
//! assert_eq!(text, "<|user|>Hi</s>\n<|assistant|>");
//! # Ok::<(), lora_data::DataError>(())
//! ```

mod config;
mod generation_tags;
mod globals;

use std::path::Path;

use minijinja::{Environment, Value};

pub use config::SpecialTokens;

use crate::error::{DataError, Result, io};
use crate::sft::Message;

const NAME: &str = "chat_template";

/// A compiled chat template with the special tokens it is rendered with.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    origin: String,
    special: SpecialTokens,
    variables: Vec<(String, Value)>,
}

impl ChatTemplate {
    /// Compiles `source`; `origin` says where it came from in errors (a path, "GGUF
    /// tokenizer.chat_template", …). A syntax error names the origin and the template line.
    pub fn new(
        source: impl Into<String>,
        origin: impl Into<String>,
        special: SpecialTokens,
    ) -> Result<Self> {
        let source = source.into();
        let origin = origin.into();
        let mut env = Environment::new();
        let mut syntax = minijinja::syntax::SyntaxConfig::builder();
        syntax.trim_blocks(true).lstrip_blocks(true);
        env.set_syntax(syntax.build().map_err(|e| template_error(&origin, &e))?);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", globals::raise_exception);
        env.add_function("strftime_now", globals::strftime_now);
        env.add_filter("tojson", globals::tojson);
        let compiled = generation_tags::rewrite_generation_tags(&source).into_owned();
        env.add_template_owned(NAME, compiled)
            .map_err(|e| template_error(&origin, &e))?;
        Ok(Self {
            env,
            source,
            origin,
            special,
            variables: Vec::new(),
        })
    }

    /// Reads a template file (`--chat-template FILE`); the special tokens are the caller's.
    pub fn from_file(path: &Path, special: SpecialTokens) -> Result<Self> {
        let source = std::fs::read_to_string(path).map_err(io("reading", path))?;
        Self::new(source, path.display().to_string(), special)
    }

    /// The chat template of a `tokenizer_config.json` with its special tokens. `name` picks one
    /// of a list of named templates (default: `default`).
    pub fn from_tokenizer_config(path: &Path, name: Option<&str>) -> Result<Self> {
        let config = config::read_json(path)?;
        let source = config::template_from_config(&config, name, path)?;
        let special = SpecialTokens::from_config_value(&config, path)?;
        Self::new(
            source,
            format!("{}, chat_template", path.display()),
            special,
        )
    }

    /// The chat template of a Hugging Face model directory: `chat_template.jinja` if present
    /// (recent transformers saves it there), else `chat_template.json`, else
    /// `tokenizer_config.json`'s `chat_template`; special tokens from `tokenizer_config.json`.
    pub fn from_model_dir(dir: &Path, name: Option<&str>) -> Result<Self> {
        let config_path = dir.join("tokenizer_config.json");
        let special = if config_path.is_file() {
            SpecialTokens::from_tokenizer_config(&config_path)?
        } else {
            SpecialTokens::default()
        };
        let jinja = dir.join("chat_template.jinja");
        if jinja.is_file() && name.is_none_or(|n| n == "default") {
            return Self::from_file(&jinja, special);
        }
        let json = dir.join("chat_template.json");
        if json.is_file() {
            let config = config::read_json(&json)?;
            let source = config::template_from_config(&config, name, &json)?;
            return Self::new(
                source,
                format!("{}, chat_template", json.display()),
                special,
            );
        }
        if !config_path.is_file() {
            return Err(config::invalid(
                dir,
                "has no chat_template.jinja, chat_template.json or tokenizer_config.json",
            ));
        }
        Self::from_tokenizer_config(&config_path, name)
    }

    /// Adds a template variable (e.g. `enable_thinking`: `false` for Qwen3), given as JSON.
    pub fn with_variable(mut self, name: impl Into<String>, value: serde_json::Value) -> Self {
        self.variables.push((name.into(), json_to_value(&value)));
        self
    }

    /// The template text as given.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Where the template came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The special tokens the template is rendered with.
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }

    /// Renders `messages`, followed by the assistant's turn header when `add_generation_prompt`.
    /// A template that calls `raise_exception` gives [`DataError::TemplateRaised`] with its
    /// message; other failures give [`DataError::ChatTemplate`] with the template line.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| {
                Value::from_pairs([
                    ("role", Value::from(m.role.as_str())),
                    ("content", Value::from(m.content.as_str())),
                ])
            })
            .collect();
        let mut context: Vec<(String, Value)> = self
            .special
            .variables()
            .into_iter()
            .map(|(k, v)| (k.to_string(), Value::from(v)))
            .collect();
        context.extend([
            ("messages".to_string(), Value::from(messages)),
            (
                "add_generation_prompt".to_string(),
                Value::from(add_generation_prompt),
            ),
            ("tools".to_string(), Value::from(())),
            ("documents".to_string(), Value::from(())),
        ]);
        context.extend(self.variables.iter().cloned());
        let template = self
            .env
            .get_template(NAME)
            .map_err(|e| template_error(&self.origin, &e))?;
        template
            .render(Value::from_pairs(context))
            .map_err(|e| match raised_message(&e) {
                Some(message) => DataError::TemplateRaised {
                    origin: self.origin.clone(),
                    message,
                },
                None => template_error(&self.origin, &e),
            })
    }
}

fn template_error(origin: &str, e: &minijinja::Error) -> DataError {
    DataError::ChatTemplate {
        origin: origin.to_string(),
        line: e.line(),
        reason: match e.detail() {
            Some(detail) => format!("{}: {detail}", e.kind()),
            None => e.kind().to_string(),
        },
    }
}

fn raised_message(e: &minijinja::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(raised) = err.downcast_ref::<globals::Raised>() {
            return Some(raised.0.clone());
        }
        source = err.source();
    }
    None
}

fn json_to_value(value: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match value {
        J::Null => Value::from(()),
        J::Bool(b) => Value::from(*b),
        J::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::from(i),
            (_, Some(u), _) => Value::from(u),
            (_, _, f) => Value::from(f.unwrap_or(f64::NAN)),
        },
        J::String(s) => Value::from(s.as_str()),
        J::Array(items) => items.iter().map(json_to_value).collect(),
        J::Object(map) => Value::from_pairs(
            map.iter()
                .map(|(k, v)| (Value::from(k.as_str()), json_to_value(v))),
        ),
    }
}

#[cfg(test)]
mod tests;
