//! TSV, CSV and JSONL tables as `--train FILE` reads them (the first byte picks the format).
#![no_main]

use libfuzzer_sys::fuzz_target;

mod scratch;
use lora_data::readers::{Columns, read_examples};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let ext = ["tsv", "csv", "jsonl"][pick as usize % 3];
    let path = scratch::dir().join(format!("lora-fuzz-{}.{ext}", std::process::id()));
    std::fs::write(&path, rest).expect("writing the input");
    let _ = read_examples(&path, &Columns::default(), None);
    let pair = Columns {
        text_pair: Some("text_pair".into()),
        ..Columns::default()
    };
    let _ = read_examples(&path, &pair, None);
});
