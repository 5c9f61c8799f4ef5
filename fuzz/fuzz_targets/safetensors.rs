//! safetensors: the header (names, dtypes, shapes, offsets) and every tensor's data.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use lora_core::io::SafetensorsFile;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = SafetensorsFile::from_bytes(Path::new("fuzz.safetensors"), data.to_vec()) else {
        return;
    };
    for name in file.names().to_vec() {
        let _ = file.read(&name);
    }
});
