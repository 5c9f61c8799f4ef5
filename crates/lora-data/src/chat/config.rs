//! Where chat templates and special tokens come from: a Hugging Face `tokenizer_config.json`
//! (`chat_template` as a string or as a list of named templates, special tokens as strings or
//! `{"content": …}` objects), a model directory (`chat_template.jinja` first, as recent
//! transformers saves it), or a template file.

use std::path::Path;

use serde_json::Value;

use crate::error::{DataError, Result, io};

/// The special-token texts a tokenizer declares (`bos_token`, `eos_token`, …), which chat
/// templates see as variables of those names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    /// Beginning of sequence (`<s>`, `<|begin_of_text|>`, `<bos>`, …).
    pub bos: Option<String>,
    /// End of sequence, or of the assistant's turn (`</s>`, `<|eot_id|>`, `<|im_end|>`, …).
    pub eos: Option<String>,
    /// Unknown token.
    pub unk: Option<String>,
    /// Padding token.
    pub pad: Option<String>,
    /// Separator token.
    pub sep: Option<String>,
    /// Classification token.
    pub cls: Option<String>,
    /// Mask token.
    pub mask: Option<String>,
}

/// The `tokenizer_config.json` keys of [`SpecialTokens`], in field order.
const KEYS: [&str; 7] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "pad_token",
    "sep_token",
    "cls_token",
    "mask_token",
];

impl SpecialTokens {
    /// Reads the special tokens of a `tokenizer_config.json` (strings, `{"content": …}` objects or
    /// `null`).
    pub fn from_tokenizer_config(path: &Path) -> Result<Self> {
        Self::from_config_value(&read_json(path)?, path)
    }

    pub(crate) fn from_config_value(config: &Value, path: &Path) -> Result<Self> {
        let mut texts = KEYS.iter().map(|key| match config.get(*key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Object(o)) => match o.get("content") {
                Some(Value::String(s)) => Ok(Some(s.clone())),
                _ => Err(invalid(
                    path,
                    format!("'{key}' is an object without a string 'content'"),
                )),
            },
            Some(_) => Err(invalid(
                path,
                format!("'{key}' must be a string or an object with 'content'"),
            )),
        });
        let mut next = || texts.next().unwrap_or(Ok(None));
        Ok(Self {
            bos: next()?,
            eos: next()?,
            unk: next()?,
            pad: next()?,
            sep: next()?,
            cls: next()?,
            mask: next()?,
        })
    }

    /// `(variable name, text)` for every token that is set, as transformers passes its
    /// `special_tokens_map` to templates.
    pub fn variables(&self) -> Vec<(&'static str, &str)> {
        let fields = [
            &self.bos, &self.eos, &self.unk, &self.pad, &self.sep, &self.cls, &self.mask,
        ];
        KEYS.iter()
            .zip(fields)
            .filter_map(|(k, v)| v.as_deref().map(|v| (*k, v)))
            .collect()
    }
}

pub(crate) fn invalid(path: &Path, reason: impl Into<String>) -> DataError {
    DataError::InvalidFile {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

pub(crate) fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(io("reading", path))?;
    serde_json::from_str(&text).map_err(|e| DataError::Malformed {
        path: path.to_path_buf(),
        line: e.line(),
        reason: format!("invalid JSON: {e}"),
    })
}

/// The template text of a `chat_template` value: a string, or the entry called `name` (default
/// `default`) of a list of `{"name": …, "template": …}` objects.
pub(crate) fn select_template(value: &Value, name: Option<&str>, path: &Path) -> Result<String> {
    match value {
        Value::String(s) => {
            if let Some(n) = name.filter(|n| *n != "default") {
                return Err(invalid(
                    path,
                    format!(
                        "has a single chat template, not a list of named ones; there is no template '{n}'"
                    ),
                ));
            }
            Ok(s.clone())
        }
        Value::Array(entries) => {
            let mut named = Vec::new();
            for entry in entries {
                match (
                    entry.get("name").and_then(Value::as_str),
                    entry.get("template").and_then(Value::as_str),
                ) {
                    (Some(n), Some(t)) => named.push((n, t)),
                    _ => {
                        return Err(invalid(
                            path,
                            "every entry of the 'chat_template' list needs a string 'name' and 'template'",
                        ));
                    }
                }
            }
            let wanted = name.unwrap_or("default");
            named
                .iter()
                .find(|(n, _)| *n == wanted)
                .map(|(_, t)| t.to_string())
                .ok_or_else(|| {
                    let names: Vec<&str> = named.iter().map(|(n, _)| *n).collect();
                    invalid(
                        path,
                        format!(
                            "has no chat template named '{wanted}'; its templates are: {}",
                            names.join(", ")
                        ),
                    )
                })
        }
        _ => Err(invalid(
            path,
            "'chat_template' must be a string or a list of {\"name\", \"template\"} objects",
        )),
    }
}

/// The chat template of a `tokenizer_config.json` (or a processor's `chat_template.json`).
pub(crate) fn template_from_config(
    config: &Value,
    name: Option<&str>,
    path: &Path,
) -> Result<String> {
    match config.get("chat_template") {
        None | Some(Value::Null) => Err(invalid(
            path,
            "has no 'chat_template' (a base model has none): give a template file instead",
        )),
        Some(value) => select_template(value, name, path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_tokens_read_strings_objects_and_nulls() {
        let config: Value = serde_json::from_str(
            r#"{"bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": false},
                "eos_token": "</s>", "pad_token": null, "chat_template": "x"}"#,
        )
        .unwrap();
        let t = SpecialTokens::from_config_value(&config, Path::new("t.json")).unwrap();
        assert_eq!(t.bos.as_deref(), Some("<s>"));
        assert_eq!(t.eos.as_deref(), Some("</s>"));
        assert_eq!(t.pad, None);
        assert_eq!(t.variables(), [("bos_token", "<s>"), ("eos_token", "</s>")]);
        let bad: Value = serde_json::from_str(r#"{"eos_token": 3}"#).unwrap();
        let e = SpecialTokens::from_config_value(&bad, Path::new("t.json")).unwrap_err();
        assert!(e.to_string().contains("t.json") && e.to_string().contains("'eos_token'"));
    }

    #[test]
    fn named_templates_are_chosen_by_name() {
        let p = Path::new("tokenizer_config.json");
        let list: Value = serde_json::from_str(
            r#"[{"name": "default", "template": "D"}, {"name": "tool_use", "template": "T"}]"#,
        )
        .unwrap();
        assert_eq!(select_template(&list, None, p).unwrap(), "D");
        assert_eq!(select_template(&list, Some("tool_use"), p).unwrap(), "T");
        let e = select_template(&list, Some("rag"), p)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no chat template named 'rag'") && e.contains("default, tool_use"),
            "{e}"
        );
        let none: Value = serde_json::from_str(r#"{"bos_token": "<s>"}"#).unwrap();
        let e = template_from_config(&none, None, p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("has no 'chat_template'"), "{e}");
    }
}
