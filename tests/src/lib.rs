//! Cross-crate and end-to-end tests of `lora-burn` live in `tests/tests/*.rs`; this library is
//! empty. Run them with the README's test command, or `cargo test -p lora-tests`.
