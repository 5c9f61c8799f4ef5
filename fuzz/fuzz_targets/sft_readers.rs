//! Instruction data as `lora train` reads it: prompt / completion tables (TSV, CSV, JSONL) and
//! chat conversations (JSONL `messages`); the first byte picks the format.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod scratch;
use lora_data::sft::{SftColumns, read_conversations, read_sft};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let ext = ["jsonl", "tsv", "csv"][pick as usize % 3];
    let path = scratch::dir().join(format!("lora-fuzz-sft-{}.{ext}", std::process::id()));
    std::fs::write(&path, rest).expect("writing the input");
    let _ = read_sft(&path, &SftColumns::default());
    if ext == "jsonl" {
        let _ = read_conversations(&path);
    }
});
