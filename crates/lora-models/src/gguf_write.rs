//! Writing GGUF files (version 3, little-endian): typed metadata and `F32` tensors, laid out as
//! llama.cpp's `gguf` writer does (tensor data aligned to 32 bytes). Used for LoRA adapters in
//! llama.cpp's format ([`crate::decoder::gguf_adapter`]).

use lora_core::io::HostTensor;

use crate::error::{ModelError, Result};

const ALIGNMENT: usize = 32;
const GGML_TYPE_F32: u32 = 0;

/// A metadata value with its GGUF type.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufMeta {
    /// `UINT32`.
    U32(u32),
    /// `FLOAT32`.
    F32(f32),
    /// `STRING`.
    String(String),
}

impl GgufMeta {
    fn type_id(&self) -> u32 {
        match self {
            GgufMeta::U32(_) => 4,
            GgufMeta::F32(_) => 6,
            GgufMeta::String(_) => 8,
        }
    }
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

fn pad(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(ALIGNMENT) {
        out.push(0);
    }
}

/// The bytes of a GGUF file holding `metadata` and `tensors` (shapes outermost first, as
/// PyTorch writes them; GGUF stores the dimensions innermost first).
pub fn gguf_bytes(
    metadata: &[(&str, GgufMeta)],
    tensors: &[(String, HostTensor)],
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    out.extend(b"GGUF");
    out.extend(3u32.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend((metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        put_string(&mut out, key);
        out.extend(value.type_id().to_le_bytes());
        match value {
            GgufMeta::U32(v) => out.extend(v.to_le_bytes()),
            GgufMeta::F32(v) => out.extend(v.to_le_bytes()),
            GgufMeta::String(s) => put_string(&mut out, s),
        }
    }
    let mut offset = 0usize;
    let mut offsets = Vec::with_capacity(tensors.len());
    for (name, tensor) in tensors {
        let n: usize = tensor.shape.iter().product();
        if n != tensor.data.len() || tensor.shape.is_empty() {
            return Err(ModelError::Input(format!(
                "tensor {name}: shape {:?} does not hold {} values",
                tensor.shape,
                tensor.data.len()
            )));
        }
        put_string(&mut out, name);
        out.extend((tensor.shape.len() as u32).to_le_bytes());
        for &dim in tensor.shape.iter().rev() {
            out.extend((dim as u64).to_le_bytes());
        }
        out.extend(GGML_TYPE_F32.to_le_bytes());
        out.extend((offset as u64).to_le_bytes());
        offsets.push(offset);
        offset += (n * 4).next_multiple_of(ALIGNMENT);
    }
    pad(&mut out);
    for (_, tensor) in tensors {
        for v in &tensor.data {
            out.extend(v.to_le_bytes());
        }
        pad(&mut out);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgufFile;

    #[test]
    fn what_is_written_reads_back() {
        let tensors = vec![
            (
                "a.lora_a".to_string(),
                HostTensor::new(vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap(),
            ),
            (
                "a.lora_b".to_string(),
                HostTensor::new(vec![5, 2], (0..10).map(|v| v as f32).collect()).unwrap(),
            ),
        ];
        let meta = [
            ("general.type", GgufMeta::String("adapter".into())),
            ("adapter.lora.alpha", GgufMeta::F32(16.0)),
            ("general.quantization_version", GgufMeta::U32(2)),
        ];
        let bytes = gguf_bytes(&meta, &tensors).unwrap();
        let file = GgufFile::parse(std::path::Path::new("mem.gguf"), bytes).unwrap();
        assert_eq!(file.get("general.type").unwrap().as_str(), Some("adapter"));
        assert_eq!(file.get("adapter.lora.alpha").unwrap().as_f64(), Some(16.0));
        assert_eq!(
            file.get("general.quantization_version").unwrap().as_u64(),
            Some(2)
        );
        for (name, tensor) in &tensors {
            assert_eq!(&file.read_tensor(name).unwrap(), tensor, "{name}");
        }
    }
}
