//! A `tokenizer.json`, loaded as `--model` directories load it, then used once.
//!
//! The tokenizers crate panics on some malformed files; `load_tokenizer_json` catches that
//! panic and returns an error. libfuzzer-sys installs a panic hook that aborts at once, before
//! any `catch_unwind` could run, so this target puts the default hook back: a panic the library
//! catches is then no crash, and one that escapes still is (libfuzzer-sys aborts on it).
#![no_main]

use libfuzzer_sys::fuzz_target;

mod scratch;

static DEFAULT_HOOK: std::sync::Once = std::sync::Once::new();

fuzz_target!(|data: &[u8]| {
    DEFAULT_HOOK.call_once(|| {
        let _ = std::panic::take_hook();
    });
    let path = scratch::dir().join(format!("lora-fuzz-{}.tokenizer.json", std::process::id()));
    std::fs::write(&path, data).expect("writing the input");
    if let Ok(tokenizer) = lora_models::tokenizer::load_tokenizer_json(&path) {
        let _ = tokenizer.encode("Hello, world: a short text.", true);
    }
});
