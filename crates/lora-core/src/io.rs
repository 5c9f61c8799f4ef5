//! Tensors on the host and in files: the one safetensors reader and writer, and the atomic
//! writes, that model weights, PEFT adapters and training checkpoints all go through.
//!
//! A [`HostTensor`] is row-major `f32` data with its shape in PyTorch's order and orientation.
//! [`SafetensorsFile`] reads a file's float tensors (F32, F16, BF16, F64) as host tensors;
//! [`safetensors_bytes`] writes them back in [`SaveDtype`] with PyTorch's `{"format": "pt"}`
//! metadata. [`write_atomic`] and [`write_dir_atomically`] never leave a half-written file or
//! directory under the real name.
//!
//! ```
//! use lora_core::io::{HostTensor, SafetensorsFile, SaveDtype, safetensors_bytes, write_atomic};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("t.safetensors");
//! let tensors = vec![("w".to_string(), HostTensor::new(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0])?)];
//! write_atomic(&path, &safetensors_bytes(&tensors, SaveDtype::Bf16)?)?;
//! let file = SafetensorsFile::open(&path)?;
//! assert_eq!(file.read("w")?, tensors[0].1); // small integers are exact in bf16
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

/// What can go wrong reading or writing tensors and files. Messages name the file and tensor.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// A file or directory could not be read, written, created or renamed.
    #[error("cannot {action} {path}: {reason}")]
    File {
        /// What was being done (`read`, `write`, `create`, `rename`, …).
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The operating-system error.
        reason: String,
    },
    /// A safetensors file is truncated, corrupted or otherwise unreadable.
    #[error("{path} is not a valid safetensors file: {reason}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What the parser reported.
        reason: String,
    },
    /// A tensor is missing from a file.
    #[error("tensor '{key}' is missing from {path}")]
    MissingTensor {
        /// The key looked up.
        key: String,
        /// The file.
        path: PathBuf,
    },
    /// A tensor is stored with an element type that is not a float type.
    #[error(
        "tensor '{key}' in {path} has dtype {dtype}; float tensors (F32, F16, BF16, F64) were expected"
    )]
    UnsupportedDtype {
        /// The tensor key.
        key: String,
        /// The file.
        path: PathBuf,
        /// The stored dtype.
        dtype: String,
    },
    /// A tensor has another shape than expected, or its data does not fill its shape.
    #[error("tensor '{key}' has shape {actual:?}, but {expected:?} was expected")]
    Shape {
        /// The tensor key.
        key: String,
        /// The expected shape.
        expected: Vec<usize>,
        /// The actual shape (or the element count, for data that does not fill the shape).
        actual: Vec<usize>,
    },
    /// A value that is not a finite number where one is required.
    #[error(
        "tensor '{key}' holds a non-finite value ({value}); the file is corrupt or the model diverged"
    )]
    NonFinite {
        /// The tensor key.
        key: String,
        /// The first offending value.
        value: f32,
    },
    /// A device tensor could not be read back to the host.
    #[error("cannot read a tensor back from the device: {0}")]
    Readback(String),
    /// Quantization blocks that do not describe a valid matrix ([`crate::QuantBlocks`]).
    #[error("invalid quantization blocks: {reason}")]
    QuantBlocks {
        /// What is wrong with them.
        reason: String,
    },
}

/// Shorthand for results whose error is [`IoError`].
pub type Result<T, E = IoError> = core::result::Result<T, E>;

/// A tensor in host memory: row-major `f32` data and its shape (outermost dimension first).
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// The shape.
    pub shape: Vec<usize>,
    /// The elements, row-major.
    pub data: Vec<f32>,
}

/// Host tensors by name, sorted (checkpoints, optimizer state, adapter files).
pub type NamedTensors = BTreeMap<String, HostTensor>;

impl HostTensor {
    /// A tensor of `shape` holding `data`; the element count must match the shape.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(IoError::Shape {
                key: String::new(),
                expected: shape,
                actual: vec![data.len()],
            });
        }
        Ok(Self { shape, data })
    }

    /// Reads a device tensor back to the host (in `f32`).
    pub fn from_tensor<const D: usize>(tensor: Tensor<D>) -> Result<Self> {
        let shape = tensor.dims().to_vec();
        let data = tensor
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| IoError::Readback(format!("{e:?}")))?;
        Ok(Self { shape, data })
    }

    /// Checks the shape against `expected` (naming `key` if it differs) and uploads the tensor
    /// to `device`.
    pub fn into_tensor<const D: usize>(
        self,
        key: &str,
        expected: [usize; D],
        device: &Device,
    ) -> Result<Tensor<D>> {
        if self.shape != expected {
            return Err(IoError::Shape {
                key: key.to_string(),
                expected: expected.to_vec(),
                actual: self.shape,
            });
        }
        Ok(Tensor::from_data(
            TensorData::new(self.data, expected),
            device,
        ))
    }

    /// Checks a matrix stored `[rows, cols]` against `stored` (naming `key` if it differs) and
    /// uploads its transpose `[cols, rows]` to `device`, laid out contiguously. Transposing on
    /// the host matters: a transposed device *view* would be copied again by every matmul that
    /// reads it (a whole weight copy per forward pass).
    pub fn into_tensor_transposed(
        self,
        key: &str,
        stored: [usize; 2],
        device: &Device,
    ) -> Result<Tensor<2>> {
        if self.shape != stored {
            return Err(IoError::Shape {
                key: key.to_string(),
                expected: stored.to_vec(),
                actual: self.shape,
            });
        }
        self.transposed()
            .into_tensor(key, [stored[1], stored[0]], device)
    }

    /// The first non-finite element, if any, as an error naming `key`.
    pub fn check_finite(&self, key: &str) -> Result<()> {
        match self.data.iter().find(|v| !v.is_finite()) {
            Some(&value) => Err(IoError::NonFinite {
                key: key.to_string(),
                value,
            }),
            None => Ok(()),
        }
    }

    /// The 2-D transpose (`[rows, cols]` → `[cols, rows]`); other ranks are returned unchanged.
    pub fn transposed(&self) -> Self {
        let [rows, cols] = self.shape[..] else {
            return self.clone();
        };
        let mut data = vec![0.0; self.data.len()];
        // Blocks of 32 × 32 keep both the reads and the writes within the cache.
        const BLOCK: usize = 32;
        for r0 in (0..rows).step_by(BLOCK) {
            for c0 in (0..cols).step_by(BLOCK) {
                for r in r0..(r0 + BLOCK).min(rows) {
                    for c in c0..(c0 + BLOCK).min(cols) {
                        data[c * rows + r] = self.data[r * cols + c];
                    }
                }
            }
        }
        Self {
            shape: vec![cols, rows],
            data,
        }
    }
}

/// The element type tensors are saved in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SaveDtype {
    /// 32-bit floats: exact.
    #[default]
    F32,
    /// IEEE half precision (round to nearest even): half the size.
    F16,
    /// bfloat16 (round to nearest even): half the size, `f32`'s range.
    Bf16,
}

impl SaveDtype {
    /// The accepted names.
    pub const NAMES: [&'static str; 3] = ["f32", "f16", "bf16"];

    /// Parses `f32`, `f16` or `bf16` (also PyTorch's `float32`, `float16`, `bfloat16`); an
    /// unknown name is `None` (callers list [`SaveDtype::NAMES`] in their error).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "f32" | "float32" => Some(Self::F32),
            "f16" | "float16" => Some(Self::F16),
            "bf16" | "bfloat16" => Some(Self::Bf16),
            _ => None,
        }
    }

    /// PyTorch's name, as `config.json`'s `torch_dtype` holds it.
    pub fn torch_name(self) -> &'static str {
        match self {
            Self::F32 => "float32",
            Self::F16 => "float16",
            Self::Bf16 => "bfloat16",
        }
    }

    fn safetensors_dtype(self) -> Dtype {
        match self {
            Self::F32 => Dtype::F32,
            Self::F16 => Dtype::F16,
            Self::Bf16 => Dtype::BF16,
        }
    }

    fn encode(self, data: &[f32]) -> Vec<u8> {
        match self {
            Self::F32 => data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Self::F16 => data
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
            Self::Bf16 => data
                .iter()
                .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                .collect(),
        }
    }
}

/// Serialises named tensors as a safetensors file of `dtype` elements, in the order given, with
/// PyTorch's `{"format": "pt"}` metadata.
pub fn safetensors_bytes<'a, I>(tensors: I, dtype: SaveDtype) -> Result<Vec<u8>>
where
    I: IntoIterator<Item = &'a (String, HostTensor)>,
{
    let tensors: Vec<&(String, HostTensor)> = tensors.into_iter().collect();
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|(_, t)| dtype.encode(&t.data)).collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, t), b)| {
            TensorView::new(dtype.safetensors_dtype(), t.shape.clone(), b)
                .map(|view| (name.clone(), view))
                .map_err(|e| IoError::Shape {
                    key: format!("{name} ({e})"),
                    expected: t.shape.clone(),
                    actual: vec![t.data.len()],
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let metadata = Some(HashMap::from([("format".to_string(), "pt".to_string())]));
    safetensors::serialize(views, metadata).map_err(|e| IoError::Safetensors {
        path: PathBuf::from("(being written)"),
        reason: e.to_string(),
    })
}

/// [`safetensors_bytes`] of a sorted map (checkpoints, optimizer state).
pub fn named_safetensors_bytes(tensors: &NamedTensors, dtype: SaveDtype) -> Result<Vec<u8>> {
    let pairs: Vec<(String, HostTensor)> = tensors
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    safetensors_bytes(&pairs, dtype)
}

/// A safetensors file held in memory, read tensor by tensor as `f32`.
pub struct SafetensorsFile {
    path: PathBuf,
    bytes: Vec<u8>,
    names: Vec<String>,
}

impl std::fmt::Debug for SafetensorsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetensorsFile")
            .field("path", &self.path)
            .field("tensors", &self.names.len())
            .finish()
    }
}

impl SafetensorsFile {
    /// Reads and parses the header of `path` (the tensors are converted when asked for).
    pub fn open(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(file_error("read", path))?;
        Self::from_bytes(path, bytes)
    }

    /// Parses bytes already read from `path` (named in errors).
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self> {
        let names = SafeTensors::deserialize(&bytes)
            .map_err(|e| IoError::Safetensors {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?
            .names()
            .into_iter()
            .map(str::to_string)
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            bytes,
            names,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every tensor name in the file.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Whether the file holds `key`.
    pub fn contains(&self, key: &str) -> bool {
        self.names.iter().any(|n| n == key)
    }

    /// The shape and stored dtype name of `key`, without converting its data.
    pub fn info(&self, key: &str) -> Result<(Vec<usize>, String)> {
        let view = self.view(key)?;
        Ok((view.shape().to_vec(), format!("{:?}", view.dtype())))
    }

    fn view(&self, key: &str) -> Result<TensorView<'_>> {
        let file = SafeTensors::deserialize(&self.bytes).map_err(|e| IoError::Safetensors {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        file.tensor(key).map_err(|_| IoError::MissingTensor {
            key: key.to_string(),
            path: self.path.clone(),
        })
    }

    /// Reads tensor `key` as `f32` (converting F16, BF16 and F64).
    pub fn read(&self, key: &str) -> Result<HostTensor> {
        let view = self.view(key)?;
        let data = float_data(key, &self.path, view.dtype(), view.data())?;
        Ok(HostTensor {
            shape: view.shape().to_vec(),
            data,
        })
    }

    /// Reads every tensor of the file.
    pub fn read_all(&self) -> Result<NamedTensors> {
        self.names
            .iter()
            .map(|k| Ok((k.clone(), self.read(k)?)))
            .collect()
    }
}

/// Reads every tensor of a safetensors file as `f32`.
pub fn read_safetensors(path: &Path) -> Result<NamedTensors> {
    SafetensorsFile::open(path)?.read_all()
}

/// Converts little-endian raw tensor bytes of a float dtype to `f32`.
fn float_data(key: &str, path: &Path, dtype: Dtype, bytes: &[u8]) -> Result<Vec<f32>> {
    let chunks = |n: usize| bytes.chunks_exact(n);
    Ok(match dtype {
        Dtype::F32 => chunks(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => chunks(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => chunks(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::F64 => chunks(8)
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect(),
        other => {
            return Err(IoError::UnsupportedDtype {
                key: key.to_string(),
                path: path.to_path_buf(),
                dtype: format!("{other:?}"),
            });
        }
    })
}

/// An [`IoError::File`] maker for `action` on `path`.
pub fn file_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> IoError {
    let path = path.to_path_buf();
    move |e| IoError::File {
        action,
        path,
        reason: e.to_string(),
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory, flushed to disk,
/// and a rename: a reader never sees a half-written file, and an existing file survives a
/// failed write (a full disk, a killed process).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp-{}", std::process::id()));
    if let Some(parent) = path.parent() {
        remove_stale_temporaries(parent, &format!(".{file_name}.tmp-"));
    }
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(file_error("write", path)(e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        file_error("write", path)(e)
    })
}

/// Writes a directory atomically: `fill` writes into a fresh temporary sibling, which then
/// replaces `dir` (the previous one is renamed aside first and removed last, so an interruption
/// between the renames leaves it as `.<name>.old`; see [`existing_or_previous`]).
pub fn write_dir_atomically<E: From<IoError>>(
    dir: &Path,
    fill: impl FnOnce(&Path) -> core::result::Result<(), E>,
) -> core::result::Result<(), E> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dir".into());
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(file_error("create", parent))?;
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let old = parent.join(format!(".{name}.old"));
    remove_stale_temporaries(parent, &format!(".{name}.tmp-"));
    remove_stale_temporaries(parent, &format!(".{name}.trash-"));
    // A directory is removed by renaming it to a trash name first, so that a kill during the
    // removal never leaves a partial copy under a name a reader looks at.
    let discard = |path: &Path| -> Result<()> {
        let trash = parent.join(format!(".{name}.trash-{}", std::process::id()));
        std::fs::rename(path, &trash).map_err(file_error("rename", path))?;
        std::fs::remove_dir_all(&trash).map_err(file_error("remove", &trash))
    };
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(file_error("remove", &tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(file_error("create", &tmp))?;
    if let Err(e) = fill(&tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    sync_dir(&tmp);
    if dir.exists() {
        // `dir` is the current copy (it only ever appears complete, by rename), so a copy
        // aside is stale.
        if old.exists() {
            discard(&old)?;
        }
        std::fs::rename(dir, &old).map_err(file_error("rename", dir))?;
    }
    // Without `dir`, a copy aside is the only complete one: it stays until the new one is in
    // place, so a kill at any moment leaves one of the two.
    std::fs::rename(&tmp, dir).map_err(file_error("rename", dir))?;
    sync_dir(parent);
    if old.exists() {
        discard(&old)?;
    }
    Ok(())
}

/// Removes the temporaries (`<prefix><pid>`) that killed processes left in `parent`; those of
/// live processes stay. Best effort: what cannot be removed is left (Linux only, where
/// `/proc` tells which processes live).
pub fn remove_stale_temporaries(parent: &Path, prefix: &str) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(prefix) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let path = entry.path();
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            if removed.is_ok() {
                tracing::debug!(path = %path.display(), "removed a killed process's temporary");
            }
        }
    }
}

/// `dir` if `complete(dir)` holds, else the previous copy kept aside by an interrupted
/// [`write_dir_atomically`] (`.<name>.old`) if that one is complete.
pub fn existing_or_previous(dir: &Path, complete: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    if complete(dir) {
        return Some(dir.to_path_buf());
    }
    let name = dir.file_name()?.to_string_lossy().into_owned();
    let old = dir.parent()?.join(format!(".{name}.old"));
    complete(&old).then_some(old)
}

/// Flushes a directory's entries (renames) to disk; best effort (not every platform can open a
/// directory).
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Writes `bytes` to `dir/name`, flushed to disk (inside a directory being filled by
/// [`write_dir_atomically`], so no rename of its own is needed).
pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let path = dir.join(name);
    (|| {
        let mut file = std::fs::File::create(&path)?;
        file.write_all(bytes)?;
        file.sync_all()
    })()
    .map_err(file_error("write", &path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safetensors_round_trip_in_every_dtype() {
        let dir = tempfile::tempdir().unwrap();
        let t = HostTensor::new(vec![2, 3], vec![1.0, -2.0, 3.5, 0.0, 0.25, 8.0]).unwrap();
        for dtype in [SaveDtype::F32, SaveDtype::F16, SaveDtype::Bf16] {
            let path = dir.path().join(format!("{dtype:?}.safetensors"));
            let named = vec![("a.weight".to_string(), t.clone())];
            write_atomic(&path, &safetensors_bytes(&named, dtype).unwrap()).unwrap();
            let back = read_safetensors(&path).unwrap();
            assert_eq!(back["a.weight"], t, "{dtype:?}");
        }
    }

    #[test]
    fn bad_files_and_shapes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.safetensors");
        std::fs::write(&path, b"\x08\0\0\0\0\0\0\0{}garbage").unwrap();
        let e = SafetensorsFile::open(&path).unwrap_err();
        assert!(e.to_string().contains("bad.safetensors"), "{e}");
        assert!(HostTensor::new(vec![2, 2], vec![1.0]).is_err());
        let t = HostTensor::new(vec![1], vec![f32::NAN]).unwrap();
        assert!(t.check_finite("x").unwrap_err().to_string().contains("'x'"));
        let m = HostTensor::new(vec![2, 3], (0..6).map(|v| v as f32).collect()).unwrap();
        assert_eq!(m.transposed().data, [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    }

    #[test]
    fn a_failed_directory_write_keeps_the_previous_directory() {
        let dir = tempfile::tempdir().unwrap();
        let ck = dir.path().join("ck");
        let ok =
            |bytes: &'static [u8]| move |d: &Path| -> Result<()> { write_file(d, "state", bytes) };
        write_dir_atomically(&ck, ok(b"first")).unwrap();
        let failed = write_dir_atomically(&ck, |d: &Path| -> Result<()> {
            write_file(d, "state", b"second")?;
            Err(IoError::Readback("disk full".into()))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read(ck.join("state")).unwrap(), b"first");
        write_dir_atomically(&ck, ok(b"third")).unwrap();
        assert_eq!(std::fs::read(ck.join("state")).unwrap(), b"third");
        // Nothing but the directory itself is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let complete = |d: &Path| d.join("state").is_file();
        assert_eq!(existing_or_previous(&ck, complete), Some(ck.clone()));
    }
}
