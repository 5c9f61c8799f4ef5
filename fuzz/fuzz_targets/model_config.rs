//! A model's `config.json`, read as an encoder's and as a decoder's.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use lora_models::{ConfigJson, DecoderConfig, EncoderConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(config) = ConfigJson::from_value(Path::new("config.json"), value) else {
        return;
    };
    let _ = EncoderConfig::from_config(config.clone());
    let _ = DecoderConfig::from_config(config);
});
