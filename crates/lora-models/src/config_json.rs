//! [`ConfigJson`]: typed access to a Hugging Face `config.json`. A missing field takes the
//! default transformers uses; a field of the wrong type or out of range is an error that names
//! the field and the file, never a silent default.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{ModelError, Result};

/// The largest integer a configuration field may hold (2^24): above every real dimension,
/// layer count, context length and vocabulary.
pub const MAX_SIZE: usize = 1 << 24;

/// A parsed `config.json` (or a config rebuilt from GGUF metadata), kept whole so a saved model
/// writes it back unchanged.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigJson {
    /// Where it came from (for messages).
    pub path: PathBuf,
    /// Every field, as read.
    pub map: Map<String, Value>,
}

impl ConfigJson {
    /// Reads `path`, which must hold a JSON object.
    pub fn read(path: &Path) -> Result<Self> {
        let value: Value = crate::error::read_json_config(path)?;
        Self::from_value(path, value)
    }

    /// Wraps a JSON value, which must be an object.
    pub fn from_value(path: &Path, value: Value) -> Result<Self> {
        match value {
            Value::Object(map) => Ok(Self {
                path: path.to_path_buf(),
                map,
            }),
            other => Err(ModelError::Config {
                path: path.to_path_buf(),
                reason: format!("expected a JSON object, found {}", kind(&other)),
            }),
        }
    }

    /// An error about this config.
    pub fn error(&self, reason: impl Into<String>) -> ModelError {
        ModelError::Config {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    fn present(&self, key: &str) -> Option<&Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn wrong(&self, key: &str, expected: &str, value: &Value) -> ModelError {
        self.error(format!(
            "'{key}' must be {expected}, found {} ({value})",
            kind(value)
        ))
    }

    /// `model_type`, if any.
    pub fn model_type(&self) -> Option<&str> {
        self.present("model_type").and_then(Value::as_str)
    }

    /// A non-negative integer field, `None` when absent or null. Sizes, counts and token ids
    /// above [`MAX_SIZE`] are refused: no model has them, and a file that claims one (a
    /// corrupted or hostile `config.json`) must fail here, not in an allocation.
    pub fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.present(key) {
            None => Ok(None),
            Some(v) => match v.as_u64().and_then(|n| usize::try_from(n).ok()) {
                Some(n) if n > MAX_SIZE => Err(self.error(format!(
                    "'{key}' = {n} is not a plausible size (at most {MAX_SIZE})"
                ))),
                Some(n) => Ok(Some(n)),
                None => Err(self.wrong(key, "a non-negative integer", v)),
            },
        }
    }

    /// A positive integer field that must be present (transformers has no default for it).
    pub fn required_usize(&self, key: &str) -> Result<usize> {
        match self.opt_usize(key)? {
            Some(0) => Err(self.error(format!("'{key}' must be at least 1"))),
            Some(n) => Ok(n),
            None => Err(self.error(format!("the required field '{key}' is missing"))),
        }
    }

    /// A non-negative integer field with a default.
    pub fn usize_or(&self, key: &str, default: usize) -> Result<usize> {
        Ok(self.opt_usize(key)?.unwrap_or(default))
    }

    /// A finite number field, `None` when absent or null.
    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.present(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .filter(|f| f.is_finite())
                .map(Some)
                .ok_or_else(|| self.wrong(key, "a finite number", v)),
        }
    }

    /// A finite number field with a default.
    pub fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        Ok(self.opt_f64(key)?.unwrap_or(default))
    }

    /// A positive number field with a default (epsilons, scalars).
    pub fn positive_f64_or(&self, key: &str, default: f64) -> Result<f64> {
        let v = self.f64_or(key, default)?;
        if v <= 0.0 {
            return Err(self.error(format!("'{key}' must be greater than 0, found {v}")));
        }
        Ok(v)
    }

    /// A boolean field with a default.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.present(key) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| self.wrong(key, "true or false", v)),
        }
    }

    /// A string field, `None` when absent or null.
    pub fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        match self.present(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.wrong(key, "a string", v)),
        }
    }

    /// An object field, `None` when absent or null.
    pub fn opt_object(&self, key: &str) -> Result<Option<&Map<String, Value>>> {
        match self.present(key) {
            None => Ok(None),
            Some(v) => v
                .as_object()
                .map(Some)
                .ok_or_else(|| self.wrong(key, "an object", v)),
        }
    }

    /// A list of strings, `None` when absent or null.
    pub fn opt_strings(&self, key: &str) -> Result<Option<Vec<String>>> {
        match self.present(key) {
            None => Ok(None),
            Some(v) => v
                .as_array()
                .and_then(|a| a.iter().map(|s| s.as_str().map(str::to_string)).collect())
                .map(Some)
                .ok_or_else(|| self.wrong(key, "a list of strings", v)),
        }
    }

    /// One token id or a list of them (`eos_token_id`), empty when absent.
    pub fn token_ids(&self, key: &str) -> Result<Vec<u32>> {
        let id = |v: &Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
        match self.present(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| id(v).ok_or_else(|| self.wrong(key, "a token id or a list of them", v)))
                .collect(),
            Some(v) => id(v)
                .map(|t| vec![t])
                .ok_or_else(|| self.wrong(key, "a token id or a list of them", v)),
        }
    }

    /// The first of several spellings of a field that is present (GPT-2's `n_embd` is
    /// `hidden_size` elsewhere).
    pub fn alias<'a>(&self, keys: &[&'a str]) -> &'a str {
        keys.iter()
            .copied()
            .find(|k| self.present(k).is_some())
            .unwrap_or(keys[0])
    }

    /// Refuses a field that asks for something not implemented (a non-default value of a
    /// feature flag), naming it.
    pub fn refuse_if(
        &self,
        key: &str,
        unsupported: impl Fn(&Value) -> bool,
        why: &str,
    ) -> Result<()> {
        match self.present(key) {
            Some(v) if unsupported(v) => {
                Err(self.error(format!("'{key}' = {v} is not supported: {why}")))
            }
            _ => Ok(()),
        }
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wrong_types_are_named() {
        let c = ConfigJson::from_value(
            Path::new("config.json"),
            json!({"hidden_size": "64", "rms_norm_eps": -1.0, "eos_token_id": [1, 2], "x": null}),
        )
        .unwrap();
        let e = c.required_usize("hidden_size").unwrap_err().to_string();
        assert!(
            e.contains("'hidden_size' must be a non-negative integer, found a string"),
            "{e}"
        );
        assert!(c.positive_f64_or("rms_norm_eps", 1e-6).is_err());
        assert_eq!(c.token_ids("eos_token_id").unwrap(), [1, 2]);
        assert_eq!(c.usize_or("x", 7).unwrap(), 7);
        assert!(
            c.required_usize("missing")
                .unwrap_err()
                .to_string()
                .contains("'missing' is missing")
        );
        assert!(ConfigJson::from_value(Path::new("c"), json!([1])).is_err());
    }
}
