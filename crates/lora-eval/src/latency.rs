//! Inference latency: warm-up runs, then the median of timed repeats.

use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Timings of repeated runs, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub median_ms: f64,
    /// Fastest run.
    pub min_ms: f64,
    /// Slowest run.
    pub max_ms: f64,
    /// Timed runs.
    pub repeats: usize,
}

impl Latency {
    /// The same timings divided by `n` (per generated token, per example, …).
    pub fn per(&self, n: usize) -> Self {
        let n = n.max(1) as f64;
        Self {
            median_ms: self.median_ms / n,
            min_ms: self.min_ms / n,
            max_ms: self.max_ms / n,
            repeats: self.repeats,
        }
    }
}

/// Runs `f` `warmup` times untimed, then `repeats` times timed. `f` must wait for its result
/// (read it back to the host), or asynchronous backends would time only the dispatch.
pub fn measure<E>(
    warmup: usize,
    repeats: usize,
    mut f: impl FnMut() -> Result<(), E>,
) -> Result<Latency, E> {
    for _ in 0..warmup {
        f()?;
    }
    let mut times = Vec::with_capacity(repeats.max(1));
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let n = times.len();
    let median = if n % 2 == 1 {
        times[n / 2]
    } else {
        (times[n / 2 - 1] + times[n / 2]) / 2.0
    };
    Ok(Latency {
        median_ms: median,
        min_ms: times[0],
        max_ms: times[n - 1],
        repeats: n,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn median_of_known_sleeps() {
        let mut i = 0u64;
        let lat = super::measure::<()>(1, 3, || {
            i += 1;
            std::thread::sleep(std::time::Duration::from_millis(if i == 3 {
                40
            } else {
                5
            }));
            Ok(())
        })
        .unwrap();
        assert_eq!(lat.repeats, 3);
        assert!(
            lat.median_ms >= 5.0 && lat.median_ms < lat.max_ms,
            "{lat:?}"
        );
        assert!(lat.max_ms >= 40.0, "{lat:?}");
    }
}
