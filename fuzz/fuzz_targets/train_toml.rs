//! The `[training]` table of a `--config` TOML file, parsed and checked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lora_train::TrainConfig;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(config) = toml::from_str::<TrainConfig>(text)
    {
        let _ = config.validate();
    }
});
