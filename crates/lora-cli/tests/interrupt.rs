//! Real `lora train` processes killed (SIGKILL) and interrupted (SIGINT) at random moments, then
//! resumed: every resumed run ends with the adapter of the uninterrupted run, bit for bit, and
//! no moment leaves `--out` with a torn checkpoint or adapter. Also: two runs on one `--out`,
//! a read-only `--out`, and a full disk (a file-size limit).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lora_tests::cli::lora_binary;
use lora_tests::{asset, fixtures_dir};

/// Settings of the run: the tiny BERT fixture on real movie reviews, a checkpoint after every
/// one of its 24 steps (so that kills land in checkpoint writes too).
fn train_args(out: &Path) -> Vec<String> {
    let model = fixtures_dir().join("tiny_bert/model");
    [
        "train",
        "--model",
        model.to_str().unwrap(),
        "--data",
        "movie-sentiment",
        "--max-train",
        "96",
        "--max-dev",
        "16",
        "--max-len",
        "32",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--seed",
        "3",
        "--checkpoint-every",
        "1",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn start(args: &[String], resume: bool) -> Child {
    let mut command = Command::new(lora_binary());
    command.args(args);
    if resume {
        command.arg("--resume");
    }
    command
        .env("BURN_DEVICE", "flex")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("lora starts")
}

/// Waits for a child, returning its exit code (`None` when a signal ended it) and stderr.
fn finish(child: Child) -> (Option<i32>, String) {
    let out = child.wait_with_output().expect("waiting for lora");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// SplitMix64: the kill moments are random, but the same in every run of the test.
struct Moments(u64);

impl Moments {
    fn next_ms(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % below
    }
}

/// What a reader could take from `out` at any moment is whole: a checkpoint (current or the
/// copy aside) has its state file and weights, and a top-level adapter has its weights.
fn assert_nothing_torn(out: &Path, when: &str) {
    for dir in [out.join("checkpoint"), out.join(".checkpoint.old")] {
        if dir.join("trainer_state.json").is_file() {
            for file in [
                "trainable.safetensors",
                "optimizer.safetensors",
                "adapter_model.safetensors",
                "adapter_config.json",
            ] {
                assert!(dir.join(file).is_file(), "{when}: {dir:?} lacks {file}");
            }
            let state: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(dir.join("trainer_state.json")).unwrap(),
            )
            .unwrap_or_else(|e| panic!("{when}: torn trainer_state.json: {e}"));
            assert!(state["global_step"].is_u64(), "{when}: {state}");
        }
    }
    if out.join("adapter_config.json").is_file() {
        assert!(
            out.join("adapter_model.safetensors").is_file(),
            "{when}: an adapter config without its weights"
        );
    }
}

/// No temporary of a killed or failed write is left in `out`.
fn assert_no_temporaries(out: &Path) {
    let leftovers: Vec<PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn killed_and_interrupted_runs_resume_bit_identically() {
    asset("movie-sentiment");
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference");
    let started = Instant::now();
    let (code, err) = finish(start(&train_args(&reference), false));
    assert_eq!(code, Some(0), "the uninterrupted run failed: {err}");
    let full_run = started.elapsed();
    let expected_adapter = read(&reference.join("adapter_model.safetensors"));
    let expected_weights = read(&reference.join("trainable.safetensors"));

    let out = dir.path().join("interrupted");
    let args = train_args(&out);
    let mut moments = Moments(20261201);
    let window = full_run.as_millis().max(200) as u64;
    // SIGINTs are counted when they land in training (a checkpoint and the resume command);
    // those that land while the model loads end the process as cleanly, and count apart.
    let (mut kills, mut interrupts, mut early_interrupts, mut attempts) = (0, 0, 0, 0);
    loop {
        let resume = out.join("run.toml").is_file();
        let mut child = start(&args, resume);
        attempts += 1;
        assert!(attempts < 300, "the run never finished");
        if kills >= 20 && interrupts >= 5 {
            let (code, err) = finish(child);
            assert_eq!(code, Some(0), "the last resume failed: {err}");
            break;
        }
        let interrupt = kills >= 4 * (interrupts + 1) && interrupts < 5;
        // Kills land anywhere in a run: loading, training steps, checkpoint writes; SIGINTs
        // after the first third, when training has usually started.
        let delay = if interrupt {
            window / 3 + moments.next_ms(window * 2 / 3)
        } else {
            moments.next_ms(window)
        };
        std::thread::sleep(Duration::from_millis(delay));
        let code = if interrupt {
            Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status()
                .unwrap();
            let (code, err) = finish(child);
            match code {
                Some(130) if err.contains("interrupted after step") => {
                    interrupts += 1;
                    assert!(err.contains("lora train --out"), "{err}");
                    assert!(err.contains("--resume"), "{err}");
                    assert!(out.join("checkpoint/trainer_state.json").is_file());
                }
                Some(130) => early_interrupts += 1,
                // The signal came before the handler was installed: its default action.
                None => early_interrupts += 1,
                Some(0) => {}
                other => panic!("SIGINT: exit {other:?}: {err}"),
            }
            code
        } else {
            child.kill().unwrap();
            let (code, err) = finish(child);
            assert!(
                code.is_none() || code == Some(0),
                "killed run: exit {code:?}: {err}"
            );
            if code.is_none() {
                kills += 1;
            }
            code
        };
        if code == Some(0) {
            // It finished before the signal: start the interrupted run again from scratch.
            std::fs::remove_dir_all(&out).unwrap();
            continue;
        }
        assert_nothing_torn(&out, &format!("after attempt {attempts}"));
    }
    assert!(
        kills >= 20 && interrupts >= 5,
        "{kills} kills, {interrupts} SIGINTs"
    );
    println!(
        "{attempts} processes: {kills} SIGKILLs, {interrupts} SIGINTs in training (each \
         checkpointed) and {early_interrupts} while loading; the final adapter equals the \
         uninterrupted run's"
    );
    assert_eq!(
        read(&out.join("adapter_model.safetensors")),
        expected_adapter,
        "the resumed adapter differs from the uninterrupted run's"
    );
    assert_eq!(
        read(&out.join("trainable.safetensors")),
        expected_weights,
        "the resumed weights differ from the uninterrupted run's"
    );
    // No killed process's temporaries stay behind.
    assert_no_temporaries(&out);
}

#[test]
fn a_second_run_on_the_same_out_is_refused_while_the_first_runs() {
    asset("movie-sentiment");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    std::fs::create_dir_all(&out).unwrap();
    let args = train_args(&out);
    let first = start(&args, false);
    // Give the first run time to take the lock (it does before loading anything).
    std::thread::sleep(Duration::from_millis(300));
    let (code, err) = finish(start(&args, false));
    let (first_code, first_err) = finish(first);
    assert_eq!(first_code, Some(0), "{first_err}");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("is in use by another run (pid"), "{err}");
    // Once the first has ended, its lock file is stale and a resume takes it over.
    let (code, err) = finish(start(&args, true));
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn a_read_only_out_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let locked = dir.path().join("locked");
    std::fs::create_dir_all(&locked).unwrap();
    let mut permissions = std::fs::metadata(&locked).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o555);
    std::fs::set_permissions(&locked, permissions).unwrap();
    // Root writes anywhere; /proc takes no new directories even from root.
    let out = if std::fs::create_dir(locked.join("probe")).is_ok() {
        PathBuf::from("/proc/lora-burn-read-only/run")
    } else {
        locked.join("run")
    };
    let (code, err) = finish(start(&train_args(&out), false));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("cannot write to") && err.contains("must be writable"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_full_disk_leaves_nothing_that_passes_for_a_checkpoint_or_an_adapter() {
    asset("movie-sentiment");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let args = train_args(&out);
    // 4 KiB per file: the run's settings fit, a checkpoint's weights do not.
    let script = format!(
        "ulimit -f 4; exec \"$0\" \"$@\"; echo never reached: {}",
        lora_binary().display()
    );
    let result = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .arg(lora_binary())
        .args(&args)
        .env("BURN_DEVICE", "flex")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(1), "{err}");
    assert!(err.contains("File too large"), "{err}");
    assert!(!out.join("checkpoint").exists() && !out.join(".checkpoint.old").exists());
    assert!(!out.join("adapter_config.json").exists());
    assert_no_temporaries(&out);
    // What is left is refused for what it is not: no adapter to predict with, and a resume
    // (with room on the disk) runs the recorded settings from the beginning.
    let predict = Command::new(lora_binary())
        .args(["predict", "--model"])
        .arg(fixtures_dir().join("tiny_bert/model"))
        .arg("--adapter")
        .arg(&out)
        .args(["--text", "fine"])
        .env("BURN_DEVICE", "flex")
        .output()
        .unwrap();
    assert_eq!(predict.status.code(), Some(1));
    let (code, err) = finish(start(&args, true));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.join("adapter_model.safetensors").is_file());
}
