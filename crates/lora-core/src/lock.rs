//! An exclusive lock on an output directory, held while a run writes there: a second run on
//! the same directory is refused while the first lives, and a lock left by a killed process is
//! recognised as stale (the operating system releases it with the process).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside the locked directory. It is never removed (removing it would
/// let two runs lock two different files of one name); only the lock on it matters.
pub const LOCK_FILE: &str = ".lora.lock";

/// Why a directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock.
    #[error(
        "{dir} is in use by another run (pid {holder}); wait for it to end, or choose another \
         output directory"
    )]
    Held {
        /// The directory.
        dir: PathBuf,
        /// What the holder wrote into the lock file (its process id), or `unknown`.
        holder: String,
    },
    /// The directory or its lock file cannot be created or written (read-only, no space).
    #[error("cannot write to {dir}: {reason} (the output directory must be writable)")]
    NotWritable {
        /// The directory.
        dir: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
}

/// A held lock on a directory; released when dropped (or when the process ends, however it
/// ends).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    dir: PathBuf,
}

impl DirLock {
    /// Creates `dir` if needed and locks it, writing this process's id into the lock file.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let lock = lora_core::lock::DirLock::acquire(dir.path()).unwrap();
    /// let err = lora_core::lock::DirLock::acquire(dir.path()).unwrap_err();
    /// assert!(err.to_string().contains("in use by another run"));
    /// drop(lock);
    /// assert!(lora_core::lock::DirLock::acquire(dir.path()).is_ok());
    /// ```
    pub fn acquire(dir: &Path) -> Result<Self, LockError> {
        let not_writable = |e: std::io::Error| LockError::NotWritable {
            dir: dir.to_path_buf(),
            reason: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(not_writable)?;
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(not_writable)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(LockError::Held {
                    dir: dir.to_path_buf(),
                    holder: if holder.is_empty() {
                        "unknown".into()
                    } else {
                        holder.to_string()
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(not_writable(e)),
        }
        let mut previous = String::new();
        let _ = file.read_to_string(&mut previous);
        if !previous.trim().is_empty() {
            tracing::info!(
                dir = %dir.display(),
                previous = previous.trim(),
                "a previous run ended without releasing the lock (killed); taking it over"
            );
        }
        let written = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(std::process::id().to_string().as_bytes()))
            .and_then(|()| file.sync_all());
        written.map_err(not_writable)?;
        Ok(Self {
            _file: file,
            dir: dir.to_path_buf(),
        })
    }

    /// The locked directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let _lock = DirLock::acquire(dir.path()).unwrap();
        match DirLock::acquire(dir.path()) {
            Err(LockError::Held { holder, .. }) => {
                assert_eq!(holder, std::process::id().to_string())
            }
            other => panic!("expected Held, got {other:?}"),
        }
    }

    #[test]
    fn a_lock_file_left_behind_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        // What a killed process leaves: the file with its pid, and no lock on it.
        std::fs::write(dir.path().join(LOCK_FILE), "999999999").unwrap();
        let lock = DirLock::acquire(dir.path()).unwrap();
        let written = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert_eq!(written, std::process::id().to_string());
        assert_eq!(lock.dir(), dir.path());
    }
}
