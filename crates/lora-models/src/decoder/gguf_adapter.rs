//! LoRA adapters in llama.cpp's GGUF format (what llama.cpp's `--lora`, Ollama's `ADAPTER` and
//! `convert_lora_to_gguf.py` use): `general.type = "adapter"`, `adapter.type = "lora"`,
//! `adapter.lora.alpha`, and for every adapted layer `blk.N.<tensor>.weight.lora_a` (`[r, in]`)
//! and `.lora_b` (`[out, r]`) in `F32`, under llama.cpp's tensor names.
//!
//! llama.cpp scales every pair by `adapter.lora.alpha / r`, with `r` read from the tensors. A
//! layer whose own scaling differs (PEFT's `alpha_pattern`, rsLoRA's `α/√r`) has the ratio
//! folded into its `lora_b`, so the file applies exactly the update the adapter does (llama.cpp's
//! converter drops `alpha_pattern` instead). As with the base weights, Llama's Q/K rows are
//! permuted for llama.cpp's RoPE layout (the rows of `lora_b`); GPT-2's `Conv1D` layers get the
//! same orientation as llama.cpp's base tensors (`[out, in]`), which the converter gets wrong.

use lora_core::io::HostTensor;
use lora_surgery::Adaptable;

use super::config::DecoderFamily;
use super::gguf::{gguf_tensor_name, permute_rows};
use super::model::DecoderForCausalLM;
use crate::error::{ModelError, Result};
use crate::gguf_write::{GgufMeta, gguf_bytes};

/// llama.cpp's architecture name of a family (`general.architecture`): Mistral is written as
/// Llama, as llama.cpp's converter does.
pub fn gguf_architecture(family: DecoderFamily) -> &'static str {
    match family {
        DecoderFamily::Llama | DecoderFamily::Mistral => "llama",
        DecoderFamily::Qwen2 => "qwen2",
        DecoderFamily::Qwen3 => "qwen3",
        DecoderFamily::Gemma2 => "gemma2",
        DecoderFamily::Gemma3 => "gemma3",
        DecoderFamily::Phi3 => "phi3",
        DecoderFamily::Gpt2 => "gpt2",
    }
}

/// The bytes of a GGUF LoRA adapter holding the adapter called `adapter` of `model` (active or
/// not, but not merged).
pub fn adapter_gguf(model: &DecoderForCausalLM, adapter: &str) -> Result<Vec<u8>> {
    let config = model.config();
    let family = config.family;
    let mut alpha: Option<f64> = None;
    let mut tensors: Vec<(String, HostTensor)> = Vec::new();
    for (module, linear) in model.linears() {
        let Some(a) = linear.adapters.iter().find(|a| a.name == adapter) else {
            continue;
        };
        if a.is_merged() {
            return Err(ModelError::Input(format!(
                "adapter '{adapter}' is merged into {module}; a GGUF adapter needs it unmerged"
            )));
        }
        let base = gguf_tensor_name(family, &format!("{module}.weight")).ok_or_else(|| {
            ModelError::Input(format!(
                "{module} has no llama.cpp tensor name: GGUF adapters cover the linear layers \
                 of the transformer blocks (not the output head or embeddings)"
            ))
        })?;
        let r = a.rank();
        let global = *alpha.get_or_insert(a.config.alpha);
        let fold = a.scaling() / (global / r as f64);
        let lora_a = HostTensor::from_tensor(a.lora_a.val())?.transposed();
        let mut lora_b = HostTensor::from_tensor(a.lora_b.val())?.transposed();
        if (fold - 1.0).abs() > f64::EPSILON {
            lora_b
                .data
                .iter_mut()
                .for_each(|v| *v = (*v as f64 * fold) as f32);
        }
        if matches!(family, DecoderFamily::Llama | DecoderFamily::Mistral) {
            let names = family.names();
            let is = |m: Option<&str>| m.is_some_and(|m| module.ends_with(&format!(".{m}")));
            if is(names.q) {
                lora_b.data = permute_rows(&lora_b, config.num_heads)?;
            } else if is(names.k) {
                lora_b.data = permute_rows(&lora_b, config.num_kv_heads)?;
            }
        }
        tensors.push((format!("{base}.lora_a"), lora_a));
        tensors.push((format!("{base}.lora_b"), lora_b));
    }
    let Some(alpha) = alpha else {
        return Err(ModelError::Input(format!(
            "the model has no adapter called '{adapter}'"
        )));
    };
    let metadata = [
        (
            "general.architecture",
            GgufMeta::String(gguf_architecture(family).into()),
        ),
        ("general.type", GgufMeta::String("adapter".into())),
        ("general.name", GgufMeta::String("Adapter".into())),
        ("adapter.type", GgufMeta::String("lora".into())),
        ("adapter.lora.alpha", GgufMeta::F32(alpha as f32)),
        ("general.quantization_version", GgufMeta::U32(2)),
    ];
    gguf_bytes(&metadata, &tensors)
}
