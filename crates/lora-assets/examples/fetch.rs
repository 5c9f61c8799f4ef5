//! Fetches assets ahead of time: `cargo run -p lora-assets --example fetch -- [--cache DIR]
//! [NAME...]` (what `cargo xtask fetch` runs). With no names it fetches every asset; `--cache`
//! overrides `$LORA_BURN_CACHE` and the default cache directory.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut cache = lora_assets::AssetCache::from_env();
    if let Some(at) = args.iter().position(|a| a == "--cache") {
        let Some(dir) = args.get(at + 1).cloned() else {
            eprintln!("error: --cache needs a directory");
            return ExitCode::FAILURE;
        };
        cache = lora_assets::AssetCache::new(dir);
        args.drain(at..at + 2);
    }
    if let Some(unknown) = args.iter().find(|a| a.starts_with('-')) {
        eprintln!("error: unknown option '{unknown}' (usage: fetch [--cache DIR] [NAME...])");
        return ExitCode::FAILURE;
    }
    let names = args;
    let names: Vec<&str> = if names.is_empty() {
        lora_assets::ASSETS.iter().map(|a| a.name).collect()
    } else {
        names.iter().map(String::as_str).collect()
    };
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
