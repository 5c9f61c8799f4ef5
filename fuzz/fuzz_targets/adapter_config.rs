//! A PEFT `adapter_config.json`.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use lora_surgery::PeftConfig;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(config) = PeftConfig::from_json(Path::new("adapter_config.json"), text)
    {
        // What is accepted must write back and read again.
        let written = config.to_json().to_string();
        PeftConfig::from_json(Path::new("written.json"), &written)
            .expect("an accepted config round-trips");
    }
});
