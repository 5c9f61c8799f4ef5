//! Choosing which modules get an adapter, with PEFT 0.21's rules.
//!
//! - `target_modules` as a **list**: a module is targeted when its name equals an entry or ends
//!   with `"." + entry` (so `query` matches `…attention.self.query` but not `…query_proj`);
//!   as a **string**: a regex that must match the whole name; `all-linear`: every linear layer
//!   but the output head.
//! - `exclude_modules` (list or regex) removes matches first.
//! - `layers_to_transform` keeps only modules whose layer index (the number after `layers`,
//!   `layer`, `h`… or after `layers_pattern`) is listed. As in PEFT, it applies to suffix
//!   matches only: an exact-name match or a regex match ignores it.
//! - `rank_pattern` / `alpha_pattern` keys are regexes matched as `(.*\.)?(KEY)$` against the
//!   name; the first matching key overrides `r` / `lora_alpha` for that module.

use std::collections::BTreeMap;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::error::{Result, SurgeryError};

/// `target_modules` or `exclude_modules`: a list of names or one full-match regex.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ModulePattern {
    /// Names matched exactly or as a dotted suffix.
    List(Vec<String>),
    /// A regex that must match the whole module name (`"all-linear"` is special).
    Regex(String),
}

impl ModulePattern {
    /// A list pattern.
    pub fn list<S: AsRef<str>>(names: &[S]) -> Self {
        ModulePattern::List(names.iter().map(|s| s.as_ref().to_string()).collect())
    }

    /// Whether this is `"all-linear"`.
    pub fn is_all_linear(&self) -> bool {
        matches!(self, ModulePattern::Regex(s) if s == "all-linear")
    }

    fn describe(&self) -> String {
        match self {
            ModulePattern::List(v) => format!("{v:?}"),
            ModulePattern::Regex(r) => format!("'{r}'"),
        }
    }
}

/// `layers_to_transform`: one index or a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LayerIndices {
    /// One layer.
    One(usize),
    /// Several layers.
    Many(Vec<usize>),
}

impl LayerIndices {
    fn contains(&self, index: usize) -> bool {
        match self {
            LayerIndices::One(i) => *i == index,
            LayerIndices::Many(v) => v.contains(&index),
        }
    }

    fn is_active(&self) -> bool {
        match self {
            LayerIndices::One(_) => true,
            LayerIndices::Many(v) => !v.is_empty(),
        }
    }
}

/// Which bias parameters train alongside the adapters (PEFT's `bias`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BiasMode {
    /// No bias trains.
    #[default]
    None,
    /// Every bias of the model trains (and is saved with the adapter).
    All,
    /// The biases of the adapted layers train (and are saved with the adapter).
    LoraOnly,
}

/// The targeting part of a LoRA config, with PEFT's field names.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TargetSpec {
    /// Which modules to adapt.
    pub target_modules: Option<ModulePattern>,
    /// Which modules never to adapt.
    #[serde(default)]
    pub exclude_modules: Option<ModulePattern>,
    /// Only these layer indices.
    #[serde(default)]
    pub layers_to_transform: Option<LayerIndices>,
    /// The name(s) before the layer index, e.g. `"layers"`; default: any.
    #[serde(default)]
    pub layers_pattern: Option<ModulePattern>,
    /// Per-module rank overrides.
    #[serde(default)]
    pub rank_pattern: BTreeMap<String, usize>,
    /// Per-module alpha overrides.
    #[serde(default)]
    pub alpha_pattern: BTreeMap<String, f64>,
    /// Which biases train with the adapters.
    #[serde(default)]
    pub bias: BiasMode,
}

/// A compiled [`TargetSpec`], ready to match module names.
#[derive(Debug, Clone)]
pub struct TargetMatcher {
    spec: TargetSpec,
    target_regex: Option<Regex>,
    exclude_regex: Option<Regex>,
    layer_regexes: Vec<Regex>,
    rank_regexes: Vec<(Regex, usize)>,
    alpha_regexes: Vec<(Regex, f64)>,
}

fn full_match(field: &'static str, pattern: &str) -> Result<Regex> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| SurgeryError::BadPattern {
        field,
        pattern: pattern.to_string(),
        reason: e.to_string(),
    })
}

fn pattern_key(field: &'static str, key: &str) -> Result<Regex> {
    Regex::new(&format!("^(?:.*\\.)?(?:{key})$")).map_err(|e| SurgeryError::BadPattern {
        field,
        pattern: key.to_string(),
        reason: e.to_string(),
    })
}

impl TargetMatcher {
    /// Compiles the spec. `all_linear_names` are the module names that `"all-linear"` stands
    /// for (every linear layer but the output head); as in PEFT, it becomes the set of their
    /// last name components, matched as suffixes.
    pub fn new(spec: &TargetSpec, all_linear_names: &[String]) -> Result<Self> {
        let mut spec = spec.clone();
        if spec
            .target_modules
            .as_ref()
            .is_some_and(ModulePattern::is_all_linear)
        {
            let mut suffixes: Vec<String> = all_linear_names
                .iter()
                .map(|n| n.rsplit('.').next().unwrap_or(n).to_string())
                .collect();
            suffixes.sort();
            suffixes.dedup();
            spec.target_modules = Some(ModulePattern::List(suffixes));
        }
        let target_regex = match &spec.target_modules {
            Some(ModulePattern::Regex(r)) => Some(full_match("target_modules", r)?),
            _ => None,
        };
        let exclude_regex = match &spec.exclude_modules {
            Some(ModulePattern::Regex(r)) => Some(full_match("exclude_modules", r)?),
            _ => None,
        };
        let layer_regexes = match &spec.layers_pattern {
            None => vec![Regex::new(r"^.*\.[^.]*\.(\d+)\.").expect("static regex")],
            Some(ModulePattern::List(v)) if v.is_empty() => {
                vec![Regex::new(r"^.*\.[^.]*\.(\d+)\.").expect("static regex")]
            }
            Some(ModulePattern::List(v)) => v
                .iter()
                .map(|p| pattern_layer("layers_pattern", p))
                .collect::<Result<_>>()?,
            Some(ModulePattern::Regex(p)) => vec![pattern_layer("layers_pattern", p)?],
        };
        let rank_regexes = spec
            .rank_pattern
            .iter()
            .map(|(k, r)| Ok((pattern_key("rank_pattern", k)?, *r)))
            .collect::<Result<_>>()?;
        let alpha_regexes = spec
            .alpha_pattern
            .iter()
            .map(|(k, a)| Ok((pattern_key("alpha_pattern", k)?, *a)))
            .collect::<Result<_>>()?;
        Ok(Self {
            spec,
            target_regex,
            exclude_regex,
            layer_regexes,
            rank_regexes,
            alpha_regexes,
        })
    }

    /// Whether PEFT would put an adapter on the module called `name`.
    pub fn is_target(&self, name: &str) -> bool {
        match (&self.spec.exclude_modules, &self.exclude_regex) {
            (_, Some(re)) if re.is_match(name) => return false,
            (Some(ModulePattern::List(list)), _) if matches_list(list, name) => return false,
            _ => {}
        }
        match (&self.spec.target_modules, &self.target_regex) {
            (_, Some(re)) => re.is_match(name),
            (Some(ModulePattern::List(list)), _) => {
                if list.iter().any(|entry| entry == name) {
                    return true;
                }
                let found = list
                    .iter()
                    .any(|entry| name.ends_with(&format!(".{entry}")));
                match &self.spec.layers_to_transform {
                    Some(layers) if found && layers.is_active() => self
                        .layer_index(name)
                        .is_some_and(|index| layers.contains(index)),
                    _ => found,
                }
            }
            _ => false,
        }
    }

    fn layer_index(&self, name: &str) -> Option<usize> {
        self.layer_regexes
            .iter()
            .find_map(|re| re.captures(name))
            .and_then(|c| c.get(1))
            .and_then(|m| m.as_str().parse().ok())
    }

    /// The `(r, alpha)` for a targeted module: the defaults, overridden by the first matching
    /// `rank_pattern` / `alpha_pattern` key (keys in sorted order).
    pub fn rank_and_alpha(&self, name: &str, r: usize, alpha: f64) -> (usize, f64) {
        let r = self
            .rank_regexes
            .iter()
            .find(|(re, _)| re.is_match(name))
            .map_or(r, |(_, v)| *v);
        let alpha = self
            .alpha_regexes
            .iter()
            .find(|(re, _)| re.is_match(name))
            .map_or(alpha, |(_, v)| *v);
        (r, alpha)
    }

    /// A short description of the targets, for messages.
    pub fn describe(&self) -> String {
        self.spec
            .target_modules
            .as_ref()
            .map_or("(none)".to_string(), ModulePattern::describe)
    }
}

fn pattern_layer(field: &'static str, pattern: &str) -> Result<Regex> {
    Regex::new(&format!(r"^.*\.{pattern}\.(\d+)\.")).map_err(|e| SurgeryError::BadPattern {
        field,
        pattern: pattern.to_string(),
        reason: e.to_string(),
    })
}

fn matches_list(list: &[String], name: &str) -> bool {
    list.iter()
        .any(|entry| entry == name || name.ends_with(&format!(".{entry}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BERT: [&str; 5] = [
        "bert.encoder.layer.0.attention.self.query",
        "bert.encoder.layer.0.attention.self.value",
        "bert.encoder.layer.1.attention.output.dense",
        "bert.encoder.layer.11.attention.self.query",
        "bert.pooler.dense",
    ];

    fn matcher(spec: TargetSpec) -> TargetMatcher {
        TargetMatcher::new(&spec, &[]).unwrap()
    }

    fn list(names: &[&str]) -> Option<ModulePattern> {
        Some(ModulePattern::list(names))
    }

    fn targeted(m: &TargetMatcher, names: &[&str]) -> Vec<String> {
        names
            .iter()
            .filter(|n| m.is_target(n))
            .map(|n| n.to_string())
            .collect()
    }

    #[test]
    fn list_entries_match_whole_names_or_dotted_suffixes() {
        let m = matcher(TargetSpec {
            target_modules: list(&["query", "value"]),
            ..Default::default()
        });
        assert_eq!(
            targeted(&m, &BERT),
            vec![
                BERT[0].to_string(),
                BERT[1].to_string(),
                BERT[3].to_string()
            ]
        );
        // Suffix boundaries: `query` does not match `query_proj` or `xquery`.
        assert!(!m.is_target("model.layers.0.self_attn.query_proj"));
        assert!(!m.is_target("encoder.xquery"));
        assert!(m.is_target("query"));
        // Multi-component entries work as suffixes too.
        let m = matcher(TargetSpec {
            target_modules: list(&["self.query"]),
            ..Default::default()
        });
        assert!(m.is_target(BERT[0]) && !m.is_target(BERT[1]));
    }

    #[test]
    fn a_string_is_a_full_match_regex() {
        let m = matcher(TargetSpec {
            target_modules: Some(ModulePattern::Regex(r".*layer\.1\d*\..*query".into())),
            ..Default::default()
        });
        assert_eq!(targeted(&m, &BERT), vec![BERT[3].to_string()]);
        // Not a search: a partial match is not enough.
        let m = matcher(TargetSpec {
            target_modules: Some(ModulePattern::Regex("query".into())),
            ..Default::default()
        });
        assert!(targeted(&m, &BERT).is_empty());
        let e = TargetMatcher::new(
            &TargetSpec {
                target_modules: Some(ModulePattern::Regex("(".into())),
                ..Default::default()
            },
            &[],
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("invalid regular expression in target_modules"),
            "{e}"
        );
    }

    #[test]
    fn exclude_modules_wins() {
        let m = matcher(TargetSpec {
            target_modules: list(&["query", "dense"]),
            exclude_modules: list(&["pooler.dense"]),
            ..Default::default()
        });
        assert_eq!(
            targeted(&m, &BERT),
            vec![
                BERT[0].to_string(),
                BERT[2].to_string(),
                BERT[3].to_string()
            ]
        );
        let m = matcher(TargetSpec {
            target_modules: list(&["query"]),
            exclude_modules: Some(ModulePattern::Regex(r".*\.11\..*".into())),
            ..Default::default()
        });
        assert_eq!(targeted(&m, &BERT), vec![BERT[0].to_string()]);
    }

    #[test]
    fn layers_to_transform_reads_the_index_after_the_layer_container() {
        let m = matcher(TargetSpec {
            target_modules: list(&["query", "dense"]),
            layers_to_transform: Some(LayerIndices::Many(vec![0, 1])),
            ..Default::default()
        });
        // pooler.dense has no layer index, so it is NOT targeted (PEFT's behaviour).
        assert_eq!(
            targeted(&m, &BERT),
            vec![BERT[0].to_string(), BERT[2].to_string()]
        );
        let m = matcher(TargetSpec {
            target_modules: list(&["q_proj"]),
            layers_to_transform: Some(LayerIndices::One(3)),
            layers_pattern: list(&["layers"]),
            ..Default::default()
        });
        assert!(m.is_target("model.layers.3.self_attn.q_proj"));
        assert!(!m.is_target("model.layers.13.self_attn.q_proj"));
        assert!(!m.is_target("model.blocks.3.self_attn.q_proj"));
        // An exact-name match bypasses the layer filter, as in PEFT.
        let m = matcher(TargetSpec {
            target_modules: list(&["bert.pooler.dense"]),
            layers_to_transform: Some(LayerIndices::Many(vec![0])),
            ..Default::default()
        });
        assert!(m.is_target("bert.pooler.dense"));
    }

    #[test]
    fn rank_and_alpha_patterns_match_dotted_suffixes() {
        let mut spec = TargetSpec {
            target_modules: list(&["query", "value"]),
            ..Default::default()
        };
        spec.rank_pattern
            .insert(r"layer\.0\.attention\.self\.query".into(), 16);
        spec.rank_pattern.insert("value".into(), 2);
        spec.alpha_pattern.insert("value".into(), 32.0);
        let m = matcher(spec);
        assert_eq!(m.rank_and_alpha(BERT[0], 8, 8.0), (16, 8.0));
        assert_eq!(m.rank_and_alpha(BERT[1], 8, 8.0), (2, 32.0));
        assert_eq!(m.rank_and_alpha(BERT[3], 8, 8.0), (8, 8.0));
        // `(.*\.)?(KEY)$`: the key must end at a name boundary.
        assert_eq!(
            m.rank_and_alpha("encoder.layer.0.attention.self.xvalue", 8, 8.0),
            (8, 8.0)
        );
    }

    #[test]
    fn all_linear_becomes_the_suffixes_of_every_linear_but_the_head() {
        let names: Vec<String> = BERT.iter().map(|s| s.to_string()).collect();
        let spec = TargetSpec {
            target_modules: Some(ModulePattern::Regex("all-linear".into())),
            ..Default::default()
        };
        let m = TargetMatcher::new(&spec, &names).unwrap();
        assert_eq!(targeted(&m, &BERT).len(), BERT.len());
        assert!(!m.is_target("classifier"));
    }
}
