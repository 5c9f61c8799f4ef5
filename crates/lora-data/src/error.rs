//! The error type of `lora-data`.

use std::path::PathBuf;

/// Everything that can go wrong while reading data, tokenizing and batching.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A data file with no examples.
    #[error("{path} holds no examples{detail}")]
    EmptyData {
        /// The file.
        path: PathBuf,
        /// More about why (e.g. every row was filtered out).
        detail: String,
    },
    /// A column the caller named is not in the file.
    #[error("{path} has no column '{column}'; its columns are: {}", available.join(", "))]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The requested column.
        column: String,
        /// The columns the file has.
        available: Vec<String>,
    },
    /// A label outside the label vocabulary.
    #[error("{path}, line {line}: label '{label}' is not one of the labels: {}", known.join(", "))]
    UnknownLabel {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The label found.
        label: String,
        /// The labels that are allowed.
        known: Vec<String>,
    },
    /// A row that cannot be parsed.
    #[error("{path}, line {line}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A configuration file whose content cannot be used (a `tokenizer_config.json` without a
    /// chat template, a special token of the wrong type, …).
    #[error("{path}: {reason}")]
    InvalidFile {
        /// The file.
        path: PathBuf,
        /// What is wrong, and what would be valid.
        reason: String,
    },
    /// A chat template that does not compile, or fails while rendering.
    #[error("chat template ({origin}){}: {reason}", line.map(|l| format!(", line {l}")).unwrap_or_default())]
    ChatTemplate {
        /// Where the template came from (a file, or `tokenizer_config.json`'s `chat_template`).
        origin: String,
        /// The template line, when known.
        line: Option<usize>,
        /// What went wrong.
        reason: String,
    },
    /// The chat template refused the conversation with `raise_exception(message)`.
    #[error("the chat template ({origin}) refused the conversation: {message}")]
    TemplateRaised {
        /// Where the template came from.
        origin: String,
        /// The template's own message.
        message: String,
    },
    /// An error while encoding one example of a list.
    #[error("example {index} (counting from 1): {source}")]
    InExample {
        /// The example's position, counting from 1.
        index: usize,
        /// What went wrong.
        source: Box<DataError>,
    },
    /// Tokenization failed.
    #[error("tokenization failed: {0}")]
    Tokenizer(String),
    /// An argument that cannot work (a zero batch size, a split larger than the data, …).
    #[error("{0}")]
    InvalidArgument(String),
    /// A file system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },
}

/// Shorthand for results whose error is [`DataError`].
pub type Result<T, E = DataError> = core::result::Result<T, E>;

pub(crate) fn io(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> DataError {
    let path = path.into();
    move |source| DataError::Io {
        action,
        path,
        source,
    }
}
