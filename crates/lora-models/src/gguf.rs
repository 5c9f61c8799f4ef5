//! A small, defensive reader for GGUF v2/v3 files (llama.cpp's model format).
//!
//! It parses the header, the metadata key/values and the tensor table, bounds-checks every read
//! (a truncated or corrupted file is a [`ModelError::Gguf`], never a panic), and dequantises
//! F32, F16, BF16, Q8_0, Q4_0 and Q4_1 tensors to `f32`. Tensors come back in PyTorch's layout:
//! GGUF lists dimensions fastest-first (`ne[0]` = columns), so the shape is reversed.
//! Architecture-specific name mapping and llama.cpp's Q/K row permutation are undone by the
//! model loaders (see `llama.rs`), not here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lora_core::{BaseDType, QuantBlocks};

use crate::error::{ModelError, Result, io_error};
use crate::weights::{HostTensor, WeightSource};

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    /// Any unsigned integer type.
    U64(u64),
    /// Any signed integer type.
    I64(i64),
    /// `f32` or `f64`.
    F64(f64),
    /// A boolean.
    Bool(bool),
    /// A UTF-8 string.
    String(String),
    /// An array of values.
    Array(Vec<GgufValue>),
}

impl GgufValue {
    /// The value as an unsigned integer, if it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            GgufValue::U64(v) => Some(*v),
            GgufValue::I64(v) => u64::try_from(*v).ok(),
            _ => None,
        }
    }

    /// The value as a float, if it is numeric.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            GgufValue::F64(v) => Some(*v),
            GgufValue::U64(v) => Some(*v as f64),
            GgufValue::I64(v) => Some(*v as f64),
            _ => None,
        }
    }

    /// The value as a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as an array.
    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            GgufValue::Array(v) => Some(v),
            _ => None,
        }
    }
}

/// The storage type of a GGUF tensor (ggml's `ggml_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GgmlType(pub u32);

impl GgmlType {
    /// `f32`.
    pub const F32: GgmlType = GgmlType(0);
    /// `f16`.
    pub const F16: GgmlType = GgmlType(1);
    /// 4-bit blocks of 32 with one f16 scale.
    pub const Q4_0: GgmlType = GgmlType(2);
    /// 4-bit blocks of 32 with an f16 scale and an f16 minimum.
    pub const Q4_1: GgmlType = GgmlType(3);
    /// 8-bit blocks of 32 with one f16 scale.
    pub const Q8_0: GgmlType = GgmlType(8);
    /// `bf16`.
    pub const BF16: GgmlType = GgmlType(30);

    /// ggml's name for the type.
    pub fn name(&self) -> String {
        const NAMES: [&str; 31] = [
            "F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K",
            "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S",
            "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M",
            "BF16",
        ];
        NAMES
            .get(self.0 as usize)
            .map(|s| s.to_string())
            .unwrap_or_else(|| format!("unknown type {}", self.0))
    }

    /// `(elements per block, bytes per block)` for the supported types.
    fn block(&self) -> Option<(usize, usize)> {
        match *self {
            GgmlType::F32 => Some((1, 4)),
            GgmlType::F16 | GgmlType::BF16 => Some((1, 2)),
            GgmlType::Q4_0 => Some((32, 18)),
            GgmlType::Q4_1 => Some((32, 20)),
            GgmlType::Q8_0 => Some((32, 34)),
            _ => None,
        }
    }
}

/// One entry of the tensor table.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufTensorInfo {
    /// The tensor's name (llama.cpp naming, e.g. `blk.0.attn_q.weight`).
    pub name: String,
    /// Dimensions as stored: fastest-varying first.
    pub dims: Vec<u64>,
    /// Storage type.
    pub ggml_type: GgmlType,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
}

impl GgufTensorInfo {
    /// The shape in PyTorch's order (outermost first).
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    /// The number of elements (`None` when the dimensions overflow `u64`).
    pub fn num_elements(&self) -> Option<u64> {
        self.dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
    }
}

/// A parsed GGUF file held in memory.
pub struct GgufFile {
    path: PathBuf,
    /// The format version (2 or 3).
    pub version: u32,
    /// Every metadata key/value.
    pub metadata: BTreeMap<String, GgufValue>,
    /// The tensor table, in file order.
    pub tensors: Vec<GgufTensorInfo>,
    bytes: Vec<u8>,
    data_start: usize,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata_keys", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl GgufFile {
    /// Reads and parses a GGUF file.
    pub fn open(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(io_error(path))?;
        Self::parse(path, bytes)
    }

    /// Parses GGUF bytes (`path` is only used in messages).
    pub fn parse(path: &Path, bytes: Vec<u8>) -> Result<Self> {
        let err = |reason: String| ModelError::Gguf {
            path: path.to_path_buf(),
            reason,
        };
        let mut r = Reader {
            bytes: &bytes,
            pos: 0,
        };
        let magic = r.take(4).map_err(&err)?;
        if magic != MAGIC {
            return Err(err(format!("bad magic {magic:?}, expected \"GGUF\"")));
        }
        let version = r.u32().map_err(&err)?;
        if !(2..=3).contains(&version) {
            return Err(err(format!(
                "unsupported GGUF version {version} (expected 2 or 3)"
            )));
        }
        let tensor_count = r.u64().map_err(&err)?;
        let kv_count = r.u64().map_err(&err)?;
        let mut metadata = BTreeMap::new();
        for _ in 0..kv_count {
            let key = r.string().map_err(&err)?;
            let ty = r.u32().map_err(&err)?;
            let value = r
                .value(ty, 0)
                .map_err(|e| err(format!("metadata '{key}': {e}")))?;
            metadata.insert(key, value);
        }
        let mut tensors = Vec::new();
        for _ in 0..tensor_count {
            let name = r.string().map_err(&err)?;
            let n_dims = r.u32().map_err(&err)?;
            if n_dims > 4 {
                return Err(err(format!(
                    "tensor '{name}' has {n_dims} dimensions (max 4)"
                )));
            }
            let dims = (0..n_dims)
                .map(|_| r.u64())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(&err)?;
            let ggml_type = GgmlType(r.u32().map_err(&err)?);
            let offset = r.u64().map_err(&err)?;
            tensors.push(GgufTensorInfo {
                name,
                dims,
                ggml_type,
                offset,
            });
        }
        let alignment = metadata
            .get("general.alignment")
            .and_then(GgufValue::as_u64)
            .unwrap_or(DEFAULT_ALIGNMENT);
        if alignment == 0 || !alignment.is_power_of_two() {
            return Err(err(format!("invalid general.alignment {alignment}")));
        }
        let data_start = (r.pos as u64).div_ceil(alignment) * alignment;
        let file = Self {
            path: path.to_path_buf(),
            version,
            metadata,
            tensors,
            data_start: data_start as usize,
            bytes,
        };
        // Check every tensor's extent up front, so a truncated file fails at open.
        for info in &file.tensors {
            if let Some(range) = file.byte_range(info)?
                && range.end > file.bytes.len()
            {
                return Err(err(format!(
                    "tensor '{}' extends to byte {}, past the end of the file ({} bytes): \
                     the file is truncated",
                    info.name,
                    range.end,
                    file.bytes.len()
                )));
            }
        }
        Ok(file)
    }

    /// A metadata value by key.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    /// The tensor table entry called `name`.
    pub fn tensor_info(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Byte range of a tensor's data, or `None` for an unsupported type (reported on read).
    fn byte_range(&self, info: &GgufTensorInfo) -> Result<Option<std::ops::Range<usize>>> {
        let Some((block_elems, block_bytes)) = info.ggml_type.block() else {
            return Ok(None);
        };
        let bad = |reason: String| ModelError::Gguf {
            path: self.path.clone(),
            reason,
        };
        let n = info
            .num_elements()
            .ok_or_else(|| bad(format!("tensor '{}' is too large", info.name)))?;
        if n % block_elems as u64 != 0 {
            return Err(bad(format!(
                "tensor '{}' has {n} elements, not a multiple of the block size {block_elems}",
                info.name
            )));
        }
        let len = (n / block_elems as u64)
            .checked_mul(block_bytes as u64)
            .ok_or_else(|| bad(format!("tensor '{}' is too large", info.name)))?;
        let start = (self.data_start as u64)
            .checked_add(info.offset)
            .ok_or_else(|| bad(format!("tensor '{}' has an invalid offset", info.name)))?;
        let end = start
            .checked_add(len)
            .ok_or_else(|| bad(format!("tensor '{}' has an invalid offset", info.name)))?;
        Ok(Some(start as usize..end as usize))
    }

    /// Reads and dequantises the tensor called `name` (GGUF naming).
    pub fn read_tensor(&self, name: &str) -> Result<HostTensor> {
        let info = self
            .tensor_info(name)
            .ok_or_else(|| ModelError::MissingTensor {
                key: name.to_string(),
                source_name: self.path.display().to_string(),
            })?;
        let Some(range) = self.byte_range(info)? else {
            return Err(ModelError::UnsupportedGgufType {
                tensor: name.to_string(),
                type_name: info.ggml_type.name(),
                type_id: info.ggml_type.0,
            });
        };
        let data = dequantize(info.ggml_type, &self.bytes[range]);
        Ok(HostTensor {
            shape: info.shape(),
            data,
        })
    }

    /// The tensor called `name` as its own quantization blocks, when it is a matrix stored as
    /// `Q8_0` (kept as `q8`) or `Q4_0` (kept as `q4`: `(q − 8)·d`); `None` for any other type.
    pub fn read_blocks(&self, name: &str) -> Result<Option<QuantBlocks>> {
        let Some(info) = self.tensor_info(name) else {
            return Ok(None);
        };
        let form = match info.ggml_type {
            GgmlType::Q8_0 => BaseDType::Q8,
            GgmlType::Q4_0 => BaseDType::Q4,
            _ => return Ok(None),
        };
        let shape = info.shape();
        let (Some(range), Some((_, block_bytes)), &[rows, cols]) =
            (self.byte_range(info)?, info.ggml_type.block(), &shape[..])
        else {
            return Ok(None);
        };
        let bytes = &self.bytes[range];
        let mut values = Vec::with_capacity(rows * cols);
        let mut scales = Vec::with_capacity(bytes.len() / block_bytes);
        for block in bytes.chunks_exact(block_bytes) {
            scales.push(f16_at(block));
            if form == BaseDType::Q8 {
                values.extend(block[2..].iter().map(|&q| q as i8));
            } else {
                values.extend(nibbles(&block[2..]).map(|q| q as i8 - 8));
            }
        }
        let blocks =
            QuantBlocks::new(form, [rows, cols], values, scales).map_err(|e| ModelError::Gguf {
                path: self.path.clone(),
                reason: format!("tensor '{name}': {e}"),
            })?;
        Ok(Some(blocks))
    }
}

impl WeightSource for GgufFile {
    fn source_name(&self) -> String {
        self.path.display().to_string()
    }

    fn keys(&self) -> Vec<String> {
        self.tensors.iter().map(|t| t.name.clone()).collect()
    }

    fn read(&self, key: &str) -> Result<HostTensor> {
        self.read_tensor(key)
    }

    fn read_blocks(&self, key: &str) -> Result<Option<QuantBlocks>> {
        GgufFile::read_blocks(self, key)
    }
}

/// Dequantises whole blocks of a supported type (the caller checked the length).
pub fn dequantize(ty: GgmlType, bytes: &[u8]) -> Vec<f32> {
    match ty {
        GgmlType::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        GgmlType::F16 => bytes.chunks_exact(2).map(f16_at).collect(),
        GgmlType::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        GgmlType::Q8_0 => bytes
            .chunks_exact(34)
            .flat_map(|block| {
                let d = f16_at(block);
                block[2..].iter().map(move |&q| q as i8 as f32 * d)
            })
            .collect(),
        GgmlType::Q4_0 | GgmlType::Q4_1 => {
            let with_min = ty == GgmlType::Q4_1;
            let block_bytes = if with_min { 20 } else { 18 };
            let mut out = Vec::with_capacity(bytes.len() / block_bytes * 32);
            for block in bytes.chunks_exact(block_bytes) {
                let d = f16_at(block);
                let (m, qs) = if with_min {
                    (f16_at(&block[2..]), &block[4..20])
                } else {
                    (-8.0 * d, &block[2..18])
                };
                out.extend(nibbles(qs).map(|q| q as f32 * d + m));
            }
            out
        }
        _ => unreachable!("dequantize is only called for supported types"),
    }
}

/// The little-endian `f16` at the start of `bytes`, as `f32` (a block's scale or minimum).
fn f16_at(bytes: &[u8]) -> f32 {
    half::f16::from_le_bytes([bytes[0], bytes[1]]).to_f32()
}

/// The 4-bit values of a Q4_0 / Q4_1 block's bytes `qs` in element order: element `j` is the
/// low nibble of `qs[j]`, element `j + 16` its high nibble.
fn nibbles(qs: &[u8]) -> impl Iterator<Item = u8> + '_ {
    qs.iter()
        .map(|&q| q & 0x0F)
        .chain(qs.iter().map(|&q| q >> 4))
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| {
                format!(
                    "unexpected end of file at byte {} (wanted {n} more bytes): the file is truncated",
                    self.pos
                )
            })?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn u8(&mut self) -> std::result::Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> std::result::Result<u16, String> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }

    fn u32(&mut self) -> std::result::Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> std::result::Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn string(&mut self) -> std::result::Result<String, String> {
        let len = self.u64()?;
        let len = usize::try_from(len).map_err(|_| format!("string length {len} is too large"))?;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| "a string is not valid UTF-8".to_string())
    }

    fn value(&mut self, ty: u32, depth: usize) -> std::result::Result<GgufValue, String> {
        Ok(match ty {
            0 => GgufValue::U64(self.u8()? as u64),
            1 => GgufValue::I64(self.u8()? as i8 as i64),
            2 => GgufValue::U64(self.u16()? as u64),
            3 => GgufValue::I64(self.u16()? as i16 as i64),
            4 => GgufValue::U64(self.u32()? as u64),
            5 => GgufValue::I64(self.u32()? as i32 as i64),
            6 => GgufValue::F64(f32::from_bits(self.u32()?) as f64),
            7 => GgufValue::Bool(self.u8()? != 0),
            8 => GgufValue::String(self.string()?),
            9 => {
                if depth > 2 {
                    return Err("arrays nested too deeply".into());
                }
                let item_ty = self.u32()?;
                let count = self.u64()?;
                // Every item takes at least one byte: a count past the file's end is corrupt.
                if count > (self.bytes.len() - self.pos) as u64 {
                    return Err(format!("array of {count} items does not fit in the file"));
                }
                (0..count)
                    .map(|_| self.value(item_ty, depth + 1))
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map(GgufValue::Array)?
            }
            10 => GgufValue::U64(self.u64()?),
            11 => GgufValue::I64(self.u64()? as i64),
            12 => GgufValue::F64(f64::from_bits(self.u64()?)),
            other => return Err(format!("unknown metadata value type {other}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny GGUF writer for tests: `tensors` are (name, dims fastest-first, type, raw bytes).
    pub(crate) fn write_gguf(
        kvs: &[(&str, GgufValue)],
        tensors: &[(&str, Vec<u64>, u32, Vec<u8>)],
    ) -> Vec<u8> {
        fn string(out: &mut Vec<u8>, s: &str) {
            out.extend((s.len() as u64).to_le_bytes());
            out.extend(s.as_bytes());
        }
        fn value(out: &mut Vec<u8>, v: &GgufValue) {
            match v {
                GgufValue::U64(x) => {
                    out.extend(10u32.to_le_bytes());
                    out.extend(x.to_le_bytes());
                }
                GgufValue::String(s) => {
                    out.extend(8u32.to_le_bytes());
                    string(out, s);
                }
                GgufValue::F64(x) => {
                    out.extend(6u32.to_le_bytes());
                    out.extend((*x as f32).to_le_bytes());
                }
                other => unimplemented!("test writer: {other:?}"),
            }
        }
        let mut out = Vec::new();
        out.extend(MAGIC);
        out.extend(3u32.to_le_bytes());
        out.extend((tensors.len() as u64).to_le_bytes());
        out.extend((kvs.len() as u64).to_le_bytes());
        for (k, v) in kvs {
            string(&mut out, k);
            value(&mut out, v);
        }
        let mut offset = 0u64;
        for (name, dims, ty, data) in tensors {
            string(&mut out, name);
            out.extend((dims.len() as u32).to_le_bytes());
            for d in dims {
                out.extend(d.to_le_bytes());
            }
            out.extend(ty.to_le_bytes());
            out.extend(offset.to_le_bytes());
            offset += (data.len() as u64).div_ceil(32) * 32;
        }
        while out.len() % 32 != 0 {
            out.push(0);
        }
        for (_, _, _, data) in tensors {
            out.extend(data);
            while out.len() % 32 != 0 {
                out.push(0);
            }
        }
        out
    }

    fn f16_bytes(x: f32) -> [u8; 2] {
        half::f16::from_f32(x).to_le_bytes()
    }

    #[test]
    fn q8_0_q4_0_q4_1_dequantise_by_their_formulas() {
        // Q8_0: d = 0.5, q = -16..16 → q·d.
        let mut q8 = f16_bytes(0.5).to_vec();
        q8.extend((0..32).map(|i| (i as i8 - 16) as u8));
        let expect: Vec<f32> = (0..32).map(|i| (i as f32 - 16.0) * 0.5).collect();
        assert_eq!(dequantize(GgmlType::Q8_0, &q8), expect);

        // Q4_0: d = 2, nibbles lo = j % 16, hi = 15 - j % 16 → (q - 8)·d.
        let qs: Vec<u8> = (0..16u8).map(|j| j | ((15 - j) << 4)).collect();
        let mut q40 = f16_bytes(2.0).to_vec();
        q40.extend(&qs);
        let lo: Vec<f32> = (0..16).map(|j| (j as f32 - 8.0) * 2.0).collect();
        let hi: Vec<f32> = (0..16).map(|j| (15.0 - j as f32 - 8.0) * 2.0).collect();
        assert_eq!(dequantize(GgmlType::Q4_0, &q40), [lo, hi].concat());

        // Q4_1: d = 0.25, m = -1 → q·d + m.
        let mut q41 = f16_bytes(0.25).to_vec();
        q41.extend(f16_bytes(-1.0));
        q41.extend(&qs);
        let lo: Vec<f32> = (0..16).map(|j| j as f32 * 0.25 - 1.0).collect();
        let hi: Vec<f32> = (0..16).map(|j| (15 - j) as f32 * 0.25 - 1.0).collect();
        assert_eq!(dequantize(GgmlType::Q4_1, &q41), [lo, hi].concat());
    }

    #[test]
    fn parses_metadata_and_reverses_dims() {
        let data: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
        let bytes = write_gguf(
            &[
                ("general.architecture", GgufValue::String("llama".into())),
                ("llama.block_count", GgufValue::U64(2)),
            ],
            &[("w", vec![3, 2], 0, data)],
        );
        let file = GgufFile::parse(Path::new("t.gguf"), bytes).unwrap();
        assert_eq!(file.get("llama.block_count").unwrap().as_u64(), Some(2));
        let t = file.read_tensor("w").unwrap();
        assert_eq!(t.shape, vec![2, 3]);
        assert_eq!(t.data, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        let e = file.read_tensor("nope").unwrap_err();
        assert!(e.to_string().contains("'nope' is missing"), "{e}");
    }

    #[test]
    fn truncation_and_corruption_are_errors_not_panics() {
        let data: Vec<u8> = (0..64).flat_map(|i| (i as f32).to_le_bytes()).collect();
        let bytes = write_gguf(&[("a", GgufValue::U64(1))], &[("w", vec![8, 8], 0, data)]);
        // Every prefix of the file is rejected cleanly.
        for cut in [0, 3, 4, 10, 30, 60, bytes.len() - 1] {
            let e = GgufFile::parse(Path::new("cut.gguf"), bytes[..cut].to_vec()).unwrap_err();
            assert!(e.to_string().contains("cut.gguf"), "{e}");
        }
        // Flipping bytes anywhere in the header never panics.
        for i in 0..80.min(bytes.len()) {
            let mut b = bytes.clone();
            b[i] ^= 0xFF;
            let _ = GgufFile::parse(Path::new("x.gguf"), b).map(|f| f.read_tensor("w"));
        }
        let mut bad = bytes.clone();
        bad[0] = b'X';
        let e = GgufFile::parse(Path::new("m.gguf"), bad).unwrap_err();
        assert!(e.to_string().contains("bad magic"), "{e}");
    }

    #[test]
    fn unsupported_types_are_named() {
        let bytes = write_gguf(
            &[],
            &[("blk.0.ffn_down.weight", vec![256, 1], 14, vec![0; 210])],
        );
        let file = GgufFile::parse(Path::new("k.gguf"), bytes).unwrap();
        let e = file.read_tensor("blk.0.ffn_down.weight").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("Q6_K") && msg.contains("blk.0.ffn_down.weight"),
            "{msg}"
        );
        assert!(msg.contains("supported types"), "{msg}");
    }
}
