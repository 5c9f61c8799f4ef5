//! Fetches assets ahead of time: `cargo run -p lora-data --example fetch -- [NAME...]`
//! (what `cargo xtask fetch` runs). With no names it fetches every asset.

use std::process::ExitCode;

fn main() -> ExitCode {
    let names: Vec<String> = std::env::args().skip(1).collect();
    let names: Vec<&str> = if names.is_empty() {
        lora_data::ASSETS.iter().map(|a| a.name).collect()
    } else {
        names.iter().map(String::as_str).collect()
    };
    let cache = lora_data::AssetCache::from_env();
    println!("asset cache: {}", cache.root().display());
    let mut failed = false;
    for name in names {
        match cache.fetch(name) {
            Ok(asset) => println!("{name:<16} {}", asset.main.display()),
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
