//! Shared helpers of the cross-crate and end-to-end tests in `tests/tests/*.rs`: where the
//! conformance fixtures are, fetching real assets through the project's own asset code, and
//! reading fixture tensors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The repository's conformance fixtures, `tests/fixtures` (written by `cargo xtask fixtures`;
/// override with `LORA_BURN_FIXTURES`).
pub fn fixtures_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LORA_BURN_FIXTURES") {
        return PathBuf::from(dir);
    }
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    if !dir.is_dir() {
        // A target directory shared by two checkouts may hold this library built in the other
        // one: look above the crate `cargo test` runs (it sets the variable at run time too).
        if let Some(found) = std::env::var_os("CARGO_MANIFEST_DIR").and_then(|m| {
            PathBuf::from(m)
                .ancestors()
                .map(|a| a.join("tests/fixtures"))
                .find(|d| d.is_dir())
        }) {
            dir = found;
        }
    }
    assert!(
        dir.is_dir(),
        "conformance fixtures not found at {} (regenerate them with `cargo xtask fixtures`)",
        dir.display()
    );
    dir
}

/// Fetches (or finds in the cache) a real asset through `lora-data`, panicking with the
/// error's message if it cannot: tests on real data never pass by skipping.
pub fn asset(name: &str) -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    match lora_assets::AssetCache::from_env().fetch(name) {
        Ok(asset) => asset.main,
        Err(e) => panic!("cannot fetch asset '{name}': {e}"),
    }
}

/// The sentences of the BERT fixtures (`bert_minilm/inputs.json`).
pub fn fixture_sentences() -> Vec<String> {
    let path = fixtures_dir().join("bert_minilm/inputs.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let json: serde_json::Value = serde_json::from_str(&text).expect("inputs.json is JSON");
    json["sentences"]
        .as_array()
        .expect("a sentences array")
        .iter()
        .map(|s| s.as_str().expect("sentences are strings").to_string())
        .collect()
}

pub use lora_eval::conformance::FixtureTensor;

/// The panicking accessors tests use on a [`FixtureTensor`].
pub trait FixtureTensorExt {
    /// The float data, panicking for integer tensors.
    fn f32(&self) -> &[f32];
    /// The integer data, panicking for float tensors.
    fn i64(&self) -> &[i64];
}

impl FixtureTensorExt for FixtureTensor {
    fn f32(&self) -> &[f32] {
        self.as_f32().expect("expected a float tensor")
    }

    fn i64(&self) -> &[i64] {
        self.as_i64().expect("expected an integer tensor")
    }
}

/// Every tensor of a fixture safetensors file (relative to [`fixtures_dir`]).
pub fn read_fixture(relative: &str) -> BTreeMap<String, FixtureTensor> {
    read_safetensors(&fixtures_dir().join(relative))
}

/// Every tensor of a safetensors file (F32 or I64), by name.
pub fn read_safetensors(path: &Path) -> BTreeMap<String, FixtureTensor> {
    lora_eval::conformance::read_tensors(path).unwrap_or_else(|e| panic!("{e}"))
}

/// Largest absolute difference between two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    lora_eval::conformance::max_abs_diff(a, b)
}

/// The ids of a module's trainable parameters (those whose tensors require a gradient).
pub fn trainable_ids<M: burn::module::Module>(model: &M) -> Vec<burn::module::ParamId> {
    struct Ids(Vec<burn::module::ParamId>);
    impl burn::module::ModuleVisitor for Ids {
        fn visit_float<const D: usize>(
            &mut self,
            param: &burn::module::Param<burn::tensor::Tensor<D>>,
        ) {
            if param.val().is_require_grad() {
                self.0.push(param.id);
            }
        }
    }
    let mut ids = Ids(Vec::new());
    model.visit(&mut ids);
    ids.0
}

/// Index of the largest element.
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// Running the `lora` binary as a user does, and checking what it printed.
pub mod cli {
    use std::path::PathBuf;
    use std::process::{Command, Output};

    /// The `lora` binary of this build: beside the test executable's `deps/` directory.
    pub fn lora_binary() -> PathBuf {
        let exe = std::env::current_exe().expect("the test executable's path");
        let dir = exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("the test executable lives in target/<profile>/deps");
        let binary = dir.join(format!("lora{}", std::env::consts::EXE_SUFFIX));
        assert!(
            binary.is_file(),
            "the lora binary is not built at {}; run `cargo test --workspace` (which builds it \
             for lora-cli's tests) or `cargo build --bin lora` with the same features first",
            binary.display()
        );
        binary
    }

    /// Runs `lora ARGS` on the flex backend.
    pub fn lora(args: &[&str]) -> Output {
        Command::new(lora_binary())
            .args(args)
            .env("BURN_DEVICE", "flex")
            .output()
            .expect("the lora binary runs")
    }

    /// Asserts that a run succeeded (showing its stderr otherwise) and returns its stdout.
    pub fn succeeded(out: &Output) -> String {
        assert!(
            out.status.success(),
            "lora failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The JSON a successful `--json` run printed.
    pub fn json_of(out: &Output) -> serde_json::Value {
        serde_json::from_str(&succeeded(out)).expect("--json prints JSON")
    }

    /// Asserts that `lora ARGS` fails with exit code 1 and a message containing `expected`,
    /// without a panic or a backtrace.
    pub fn fails_with(args: &[&str], expected: &str) {
        let out = lora(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?} should fail with exit code 1"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("stack backtrace"),
            "{args:?}: {err}"
        );
    }

    /// The numbers of a JSON array.
    pub fn floats(v: &serde_json::Value) -> Vec<f32> {
        v.as_array()
            .expect("a JSON array")
            .iter()
            .map(|x| x.as_f64().expect("a number") as f32)
            .collect()
    }
}

/// The README's Rust blocks, compiled (and the runnable ones run) as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// The guide's Rust blocks, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/guide.md")]
pub struct GuideDoctests;

/// Checks a chat template against what transformers' `apply_chat_template` rendered for the
/// same conversations (`xtask/fixtures/chat_template_fixture.py`): for every case of `cases`
/// (`{name: {text, ids, prefixes} | {error}}`, the conversations in `conversations`), the full
/// render's text and ids, and the generation prompt before every assistant turn; or, where
/// transformers' template raised, the same message. `encode` tokenizes without special tokens.
/// Returns how many cases were checked.
pub fn check_chat_renders(
    label: &str,
    template: &lora_data::ChatTemplate,
    encode: impl Fn(&str) -> Vec<u32>,
    conversations: &serde_json::Value,
    cases: &serde_json::Value,
) -> usize {
    use lora_data::sft::{Message, Role};
    let ids_of = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_u64().unwrap() as u32)
            .collect()
    };
    let mut checked = 0;
    for (name, expected) in cases.as_object().unwrap() {
        let messages: Vec<Message> = conversations[name]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let role = Role::from_name(m["role"].as_str().unwrap()).unwrap();
                Message::new(role, m["content"].as_str().unwrap())
            })
            .collect();
        let got = template.render(&messages, false);
        if let Some(error) = expected.get("error") {
            match got {
                Err(lora_data::DataError::TemplateRaised { message, .. }) => {
                    assert_eq!(message, error.as_str().unwrap(), "{label}/{name}")
                }
                other => panic!("{label}/{name}: expected the template to raise, got {other:?}"),
            }
            checked += 1;
            continue;
        }
        let text = got.unwrap_or_else(|e| panic!("{label}/{name}: {e}"));
        assert_eq!(text, expected["text"].as_str().unwrap(), "{label}/{name}");
        assert_eq!(
            encode(&text),
            ids_of(&expected["ids"]),
            "{label}/{name} ids"
        );
        for prefix in expected["prefixes"].as_array().unwrap() {
            let turn = prefix["turn"].as_u64().unwrap() as usize;
            let text = template.render(&messages[..turn], true).unwrap();
            assert_eq!(
                text,
                prefix["text"].as_str().unwrap(),
                "{label}/{name} prefix {turn}"
            );
            assert_eq!(
                encode(&text),
                ids_of(&prefix["ids"]),
                "{label}/{name} prefix {turn} ids"
            );
        }
        checked += 1;
    }
    checked
}
