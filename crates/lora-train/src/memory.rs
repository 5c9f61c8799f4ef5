//! Resident memory of this process (Linux `/proc`; `None` elsewhere) and where a training
//! run's memory goes ([`MemoryBreakdown`]).

use serde::{Deserialize, Serialize};

const MIB: f64 = 1024.0 * 1024.0;

/// Where a training epoch's memory went, in MiB: the parts known from the model (base
/// weights as stored, trainable weights, optimizer moments) and the measured rest.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct MemoryBreakdown {
    /// Frozen (base) parameters, as stored (`--base-dtype`).
    pub base_mib: f64,
    /// Trainable parameters (adapters, heads, or everything for full fine-tuning).
    pub trainable_mib: f64,
    /// Optimizer state: Adam's two `f32` moments per trainable value.
    pub optimizer_mib: f64,
    /// Measured: the epoch's peak resident memory above what the process held when the epoch
    /// began, less optimizer state created during it. This is what the steps themselves
    /// needed: saved activations, gradients and workspace.
    pub activations_mib: Option<f64>,
    /// The epoch's peak resident memory of the whole process.
    pub peak_rss_mib: Option<f64>,
}

impl MemoryBreakdown {
    /// The breakdown from the model's parameter bytes and the resident memory when the epoch
    /// began (`start_rss`, bytes) and at its peak; `optimizer_new` says whether the optimizer
    /// state was created during the epoch (the first one) rather than held from the start.
    pub fn new(
        params: lora_core::ParamBytes,
        start_rss: Option<u64>,
        peak_rss: Option<u64>,
        optimizer_new: bool,
    ) -> Self {
        let optimizer = 2.0 * params.trainable as f64;
        let activations = match (start_rss, peak_rss) {
            (Some(start), Some(peak)) => {
                let extra = peak.saturating_sub(start) as f64;
                Some(((extra - if optimizer_new { optimizer } else { 0.0 }) / MIB).max(0.0))
            }
            _ => None,
        };
        Self {
            base_mib: params.frozen as f64 / MIB,
            trainable_mib: params.trainable as f64 / MIB,
            optimizer_mib: optimizer / MIB,
            activations_mib: activations,
            peak_rss_mib: peak_rss.map(|b| b as f64 / MIB),
        }
    }

    /// One line for a summary.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "memory: base {:.0} MiB · trainable {:.1} MiB · optimizer {:.1} MiB",
            self.base_mib, self.trainable_mib, self.optimizer_mib
        );
        if let Some(a) = self.activations_mib {
            s += &format!(" · activations and workspace {a:.0} MiB");
        }
        if let Some(p) = self.peak_rss_mib {
            s += &format!(" · peak {p:.0} MiB");
        }
        s
    }
}

/// The resident set size now, in bytes (`VmRSS`).
pub fn current_rss_bytes() -> Option<u64> {
    status_kib("VmRSS:").map(|k| k * 1024)
}

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The peak resident set size since the process started or since the last
/// [`reset_peak_rss`], in bytes (`VmHWM`).
pub fn peak_rss_bytes() -> Option<u64> {
    status_kib("VmHWM:").map(|k| k * 1024)
}

/// Starts a new peak-memory window (writes `5` to `/proc/self/clear_refs`); returns whether the
/// kernel accepted it.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn peak_grows_with_a_large_allocation() {
        super::reset_peak_rss();
        let before = super::peak_rss_bytes().unwrap();
        let block = vec![1u8; 64 << 20];
        std::hint::black_box(&block);
        let after = super::peak_rss_bytes().unwrap();
        assert!(after >= before + (60 << 20), "{before} -> {after}");
        assert!(super::current_rss_bytes().unwrap() >= 60 << 20);
    }

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn freed_memory_kept_for_reuse_can_be_released() {
        // With the allocator keeping freed blocks (as `lora` runs), 96 MiB of freed 1 MiB
        // tensors lying between live ones stay resident (`free` returns only the top of a
        // heap); released, they leave, so the next peak window starts from what is in use.
        assert!(lora_core::host_memory::keep_freed_memory());
        let blocks: Vec<Vec<u8>> = (0..192).map(|_| vec![1u8; 1 << 20]).collect();
        let live: Vec<Vec<u8>> = blocks
            .into_iter()
            .enumerate()
            .filter_map(|(i, block)| (i % 2 == 0).then_some(block))
            .collect();
        std::hint::black_box(&live);
        let kept = super::current_rss_bytes().unwrap();
        assert!(lora_core::host_memory::release_freed_memory());
        let released = super::current_rss_bytes().unwrap();
        assert!(kept >= released + (64 << 20), "{kept} -> {released}");
        drop(live);
    }

    #[test]
    fn breakdown_takes_new_optimizer_state_out_of_the_measured_rest() {
        let params = lora_core::ParamBytes {
            trainable: 1 << 20,
            frozen: 100 << 20,
        };
        let m = super::MemoryBreakdown::new(params, Some(500 << 20), Some(560 << 20), true);
        assert_eq!(m.base_mib, 100.0);
        assert_eq!(m.optimizer_mib, 2.0);
        assert_eq!(m.activations_mib, Some(58.0));
        let later = super::MemoryBreakdown::new(params, Some(500 << 20), Some(560 << 20), false);
        assert_eq!(later.activations_mib, Some(60.0));
        assert!(m.describe().contains("activations and workspace 58 MiB"));
    }
}
