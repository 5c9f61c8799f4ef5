//! GGUF: header, metadata, tensor infos, tensor data, and the model configuration built from
//! the metadata (a header claiming 2^60 elements or a 1 TB tensor must fail before
//! allocating). The tokenizer built from the metadata has its own target, `gguf_tokenizer`
//! (the tokenizers library makes it a hundred times slower per input).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use lora_models::gguf::GgufFile;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.gguf");
    let Ok(file) = GgufFile::parse(path, data.to_vec()) else {
        return;
    };
    // The data of the first small tensors (dequantised): every type and layout the input
    // claims is reached, and an execution stays fast enough for a million of them.
    let names: Vec<String> = file
        .tensors
        .iter()
        .filter(|t| t.num_elements().is_some_and(|n| n <= 4096))
        .take(4)
        .map(|t| t.name.clone())
        .collect();
    for name in names {
        let _ = file.read_tensor(&name);
    }
    let _ = lora_models::decoder::gguf::decoder_config_from_gguf(&file, path);
});
