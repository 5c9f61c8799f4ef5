//! Supervised fine-tuning (instruction and chat tuning) data, as TRL's `SFTTrainer` takes it.
//!
//! - [`SftExample`]: a prompt and its completion, or a conversation of [`Message`]s;
//! - [`readers`]: prompt / completion tables (TSV, CSV, JSONL) and `{"messages": […]}` JSONL, with
//!   errors that name the file and line;
//! - [`encode`]: token ids and labels (`-100` where no loss is taken, TRL's convention) with
//!   completion-only or assistant-only loss, and truncation that keeps the answer;
//! - [`batch`]: dynamic padding into [`SftBatch`]es, and [`pack`]: several examples per row.
//!
//! Chat templates are [`crate::chat`]'s.

pub mod batch;
pub mod encode;
pub mod pack;
pub mod readers;
pub mod truncate;

pub use batch::{SftBatch, batch_plan, collate_rows, collate_sft, label_count};
pub use encode::{EncodeStats, SftEncoded, SftEncoder, SftOptions};
pub use pack::pack_rows;
pub use readers::{SftColumns, read_conversations, read_prompt_completion, read_sft};

/// The label of a position that takes no loss (PyTorch's `ignore_index`, TRL's convention).
pub const IGNORE_INDEX: i64 = -100;

/// Who speaks a [`Message`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Instructions that frame the conversation.
    System,
    /// The user's turn.
    User,
    /// The model's turn: the text that is learned.
    Assistant,
}

impl Role {
    /// The roles a conversation may use, by name.
    pub const NAMES: [&'static str; 3] = ["system", "user", "assistant"];

    /// The role's name as chat templates see it (`system`, `user`, `assistant`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }

    /// The role called `name`, or `None` (the valid names are [`Role::NAMES`]).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "system" => Some(Self::System),
            "user" => Some(Self::User),
            "assistant" => Some(Self::Assistant),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Who speaks.
    pub role: Role,
    /// What is said.
    pub content: String,
}

impl Message {
    /// A message from `role`.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }
}

/// One supervised fine-tuning example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SftExample {
    /// A prompt and the completion to learn (TRL's "prompt-completion" data).
    PromptCompletion {
        /// The prompt (no loss is taken on it unless `train_on_prompt`).
        prompt: String,
        /// The completion (the loss is taken on it).
        completion: String,
    },
    /// A conversation; the assistant turns are learned (TRL's "conversational" data).
    Conversation(Vec<Message>),
}

impl SftExample {
    /// A prompt / completion example.
    pub fn prompt_completion(prompt: impl Into<String>, completion: impl Into<String>) -> Self {
        Self::PromptCompletion {
            prompt: prompt.into(),
            completion: completion.into(),
        }
    }

    /// The example as a conversation: a prompt / completion pair becomes one user turn and one
    /// assistant turn (how it is rendered when a chat template is used).
    pub fn to_messages(&self) -> Vec<Message> {
        match self {
            Self::PromptCompletion { prompt, completion } => {
                vec![Message::user(prompt), Message::assistant(completion)]
            }
            Self::Conversation(messages) => messages.clone(),
        }
    }

    /// The text to learn: the completion, or the last assistant turn.
    pub fn target(&self) -> Option<&str> {
        match self {
            Self::PromptCompletion { completion, .. } => Some(completion),
            Self::Conversation(messages) => messages
                .iter()
                .rev()
                .find(|m| m.role == Role::Assistant)
                .map(|m| m.content.as_str()),
        }
    }
}

/// A supervised fine-tuning task split three ways.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SftSplits {
    /// The task's name (`bbc-headlines`, or the training file's name).
    pub name: String,
    /// Training examples.
    pub train: Vec<SftExample>,
    /// Development examples (model selection, early stopping).
    pub dev: Vec<SftExample>,
    /// Held-out test examples.
    pub test: Vec<SftExample>,
}

impl SftSplits {
    /// Keeps at most `train`, `dev` and `test` examples of each split (`None`: all). The splits
    /// are already in seeded random order, so the first `n` are a random sample.
    pub fn truncate(
        mut self,
        train: Option<usize>,
        dev: Option<usize>,
        test: Option<usize>,
    ) -> Self {
        if let Some(n) = train {
            self.train.truncate(n);
        }
        if let Some(n) = dev {
            self.dev.truncate(n);
        }
        if let Some(n) = test {
            self.test.truncate(n);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_by_name() {
        for name in Role::NAMES {
            assert_eq!(Role::from_name(name).unwrap().as_str(), name);
        }
        assert_eq!(Role::from_name("tool"), None);
    }

    #[test]
    fn prompt_completion_is_a_two_turn_conversation() {
        let ex = SftExample::prompt_completion("Q", "A");
        assert_eq!(
            ex.to_messages(),
            [Message::user("Q"), Message::assistant("A")]
        );
        assert_eq!(ex.target(), Some("A"));
        let chat = SftExample::Conversation(vec![
            Message::user("a"),
            Message::assistant("b"),
            Message::user("c"),
            Message::assistant("d"),
        ]);
        assert_eq!(chat.target(), Some("d"));
    }
}
