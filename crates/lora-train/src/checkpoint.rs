//! Checkpoints: trainable weights, optimizer moments and trainer state, written atomically.
//!
//! A checkpoint directory holds
//!
//! - `trainable.safetensors`: every trainable parameter by its path (F32), enough to rebuild
//!   the trained model from the base model and the method;
//! - for LoRA, also the PEFT adapter (`adapter_config.json`, `adapter_model.safetensors`), so any
//!   checkpoint loads in PEFT or `lora predict --adapter`;
//! - `optimizer.safetensors`: Adam's first and second moments (`m.<path>`, `v.<path>`);
//! - `trainer_state.json`: the [`TrainerState`] (step, epoch, position in the epoch, running
//!   sums, evaluation history, best metric, the settings it was made with).
//!
//! A directory is written under a temporary name and then renamed into place (the previous one
//! is renamed aside first and removed last), so an interrupted write never leaves a
//! half-written checkpoint under the real name.

use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError, checkpoint_err};
use crate::params::NamedTensors;
use crate::task::EvalMetrics;
use crate::trainer::{EpochRecord, TrainConfig};

/// File of the trainable weights.
pub const TRAINABLE_FILE: &str = "trainable.safetensors";
/// File of the optimizer moments.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// File of the trainer state.
pub const STATE_FILE: &str = "trainer_state.json";

/// One evaluation on the dev data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// 0-based epoch during which it ran.
    pub epoch: usize,
    /// Optimizer steps taken before it.
    pub step: usize,
    /// The metrics.
    pub metrics: EvalMetrics,
}

/// Everything besides tensors that a resumed run needs to continue exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// The settings of the run (a resumed run must use the same method, seed and batching).
    pub config: TrainConfig,
    /// The epoch in progress (0-based).
    pub epoch: usize,
    /// Batches of that epoch already consumed (the epoch's order follows from the seed).
    pub batches_done: usize,
    /// Optimizer steps taken.
    pub global_step: usize,
    /// Sum of per-example training loss in the current epoch.
    pub epoch_loss_sum: f64,
    /// Examples seen in the current epoch.
    pub epoch_examples: usize,
    /// Tokens seen in the current epoch.
    pub epoch_tokens: usize,
    /// Seconds spent training in the current epoch (excluding evaluation).
    pub epoch_seconds: f64,
    /// Records of the finished epochs.
    pub history: Vec<EpochRecord>,
    /// Every evaluation so far.
    pub evals: Vec<EvalRecord>,
    /// The best evaluation so far by the selection metric.
    pub best: Option<EvalRecord>,
    /// Evaluations since the best one (for early stopping).
    pub evals_since_best: usize,
    /// Whether early stopping ended the run.
    pub early_stopped: bool,
    /// The mean training loss of every optimizer step so far (the loss curve).
    pub step_losses: Vec<f64>,
}

impl TrainerState {
    /// The state at the start of a run.
    pub fn new(config: TrainConfig) -> Self {
        Self {
            config,
            epoch: 0,
            batches_done: 0,
            global_step: 0,
            epoch_loss_sum: 0.0,
            epoch_examples: 0,
            epoch_tokens: 0,
            epoch_seconds: 0.0,
            history: Vec::new(),
            evals: Vec::new(),
            best: None,
            evals_since_best: 0,
            early_stopped: false,
            step_losses: Vec::new(),
        }
    }
}

/// Serialises tensors to safetensors bytes (F32, sorted by name).
pub fn safetensors_bytes(tensors: &NamedTensors) -> Result<Vec<u8>> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(k, (shape, v))| {
            (
                k.clone(),
                shape.clone(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(k, shape, b)| {
            TensorView::new(Dtype::F32, shape.clone(), b)
                .map(|view| (k.clone(), view))
                .map_err(|e| TrainError::Checkpoint {
                    path: k.into(),
                    reason: e.to_string(),
                })
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, None).map_err(|e| TrainError::Checkpoint {
        path: PathBuf::new(),
        reason: e.to_string(),
    })
}

/// Reads an F32 safetensors file into host tensors.
pub fn read_safetensors(path: &Path) -> Result<NamedTensors> {
    let err = |reason: String| TrainError::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| err(e.to_string()))?;
    file.tensors()
        .into_iter()
        .map(|(key, view)| {
            if view.dtype() != Dtype::F32 {
                return Err(err(format!(
                    "tensor '{key}' is {:?}, expected F32",
                    view.dtype()
                )));
            }
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            Ok((key, (view.shape().to_vec(), values)))
        })
        .collect()
}

/// Writes a directory atomically: `fill` writes into a fresh temporary sibling, which then
/// replaces `dir`.
pub fn write_dir_atomically(dir: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "checkpoint".into());
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| checkpoint_err(parent)(e.to_string()))?;
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let old = parent.join(format!(".{name}.old"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| checkpoint_err(&tmp)(e.to_string()))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| checkpoint_err(&tmp)(e.to_string()))?;
    fill(&tmp)?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| checkpoint_err(&old)(e.to_string()))?;
    }
    if dir.exists() {
        std::fs::rename(dir, &old).map_err(|e| checkpoint_err(dir)(e.to_string()))?;
    }
    std::fs::rename(&tmp, dir).map_err(|e| checkpoint_err(dir)(e.to_string()))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| checkpoint_err(&old)(e.to_string()))?;
    }
    Ok(())
}

/// The directory to resume from: `dir`, or the previous one kept aside if a replacement was
/// interrupted between its two renames.
pub fn existing_dir(dir: &Path) -> Option<PathBuf> {
    if dir.join(STATE_FILE).is_file() {
        return Some(dir.to_path_buf());
    }
    let name = dir.file_name()?.to_string_lossy().into_owned();
    let old = dir.parent()?.join(format!(".{name}.old"));
    old.join(STATE_FILE).is_file().then_some(old)
}

/// Writes `bytes` to `dir/name` (inside a directory being filled, so no extra rename needed).
pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).map_err(|e| checkpoint_err(&path)(e.to_string()))
}

/// Reads the trainer state of a checkpoint directory.
pub fn read_state(dir: &Path) -> Result<TrainerState> {
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| checkpoint_err(&path)(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| checkpoint_err(&path)(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safetensors_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = NamedTensors::new();
        t.insert("a.weight".into(), (vec![2, 2], vec![1.0, -2.0, 3.5, 0.0]));
        t.insert("b".into(), (vec![1], vec![7.0]));
        write_dir_atomically(&dir.path().join("ck"), |d| {
            write_file(d, TRAINABLE_FILE, &safetensors_bytes(&t)?)
        })
        .unwrap();
        assert_eq!(
            read_safetensors(&dir.path().join("ck").join(TRAINABLE_FILE)).unwrap(),
            t
        );
    }

    #[test]
    fn a_failed_write_keeps_the_previous_directory() {
        let dir = tempfile::tempdir().unwrap();
        let ck = dir.path().join("ck");
        write_dir_atomically(&ck, |d| write_file(d, STATE_FILE, b"first")).unwrap();
        let failed = write_dir_atomically(&ck, |d| {
            write_file(d, STATE_FILE, b"second")?;
            Err(TrainError::Config("disk full".into()))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read(ck.join(STATE_FILE)).unwrap(), b"first");
        write_dir_atomically(&ck, |d| write_file(d, STATE_FILE, b"third")).unwrap();
        assert_eq!(std::fs::read(ck.join(STATE_FILE)).unwrap(), b"third");
        // The failed attempt's temporary directory was cleared by the next write.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
