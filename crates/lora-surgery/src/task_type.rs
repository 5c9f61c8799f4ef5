//! [`TaskType`]: PEFT's `task_type`, which says what the adapted model is used for.

use serde::{Deserialize, Serialize};

/// What an adapted model does, as PEFT's `task_type` names it. It decides what a saved adapter
/// carries besides the factors: a `SEQ_CLS` adapter also saves the classification head
/// (`modules_to_save`), since the head is new and trains with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TaskType {
    /// Sequence classification (`SEQ_CLS`).
    #[serde(rename = "SEQ_CLS")]
    SeqCls,
    /// Causal language modelling (`CAUSAL_LM`).
    #[serde(rename = "CAUSAL_LM")]
    CausalLm,
    /// Sequence-to-sequence language modelling (`SEQ_2_SEQ_LM`).
    #[serde(rename = "SEQ_2_SEQ_LM")]
    Seq2SeqLm,
    /// Token classification (`TOKEN_CLS`).
    #[serde(rename = "TOKEN_CLS")]
    TokenCls,
    /// Extractive question answering (`QUESTION_ANS`).
    #[serde(rename = "QUESTION_ANS")]
    QuestionAns,
    /// Embeddings / features (`FEATURE_EXTRACTION`).
    #[serde(rename = "FEATURE_EXTRACTION")]
    FeatureExtraction,
}

impl TaskType {
    /// Every task type, in PEFT's spelling.
    pub const NAMES: [&'static str; 6] = [
        "SEQ_CLS",
        "CAUSAL_LM",
        "SEQ_2_SEQ_LM",
        "TOKEN_CLS",
        "QUESTION_ANS",
        "FEATURE_EXTRACTION",
    ];

    /// PEFT's spelling (`SEQ_CLS`, `CAUSAL_LM`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SeqCls => Self::NAMES[0],
            Self::CausalLm => Self::NAMES[1],
            Self::Seq2SeqLm => Self::NAMES[2],
            Self::TokenCls => Self::NAMES[3],
            Self::QuestionAns => Self::NAMES[4],
            Self::FeatureExtraction => Self::NAMES[5],
        }
    }

    /// Parses PEFT's spelling; `None` for anything else (callers list [`TaskType::NAMES`]).
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::SeqCls,
            Self::CausalLm,
            Self::Seq2SeqLm,
            Self::TokenCls,
            Self::QuestionAns,
            Self::FeatureExtraction,
        ]
        .into_iter()
        .find(|t| t.as_str() == name)
    }
}

impl std::fmt::Display for TaskType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in TaskType::NAMES {
            let t = TaskType::parse(name).unwrap();
            assert_eq!(t.as_str(), name);
            assert_eq!(serde_json::to_value(t).unwrap(), name);
        }
        assert_eq!(TaskType::parse("seq_cls"), None);
    }
}
