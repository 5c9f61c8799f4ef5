//! The tokenizer rebuilt from a GGUF file's `tokenizer.ggml.*` metadata.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use lora_models::gguf::GgufFile;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = GgufFile::parse(Path::new("fuzz.gguf"), data.to_vec()) {
        let _ = lora_models::tokenizer::tokenizer_from_gguf(&file);
    }
});
