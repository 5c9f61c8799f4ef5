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
    let mut latencies = measure_interleaved(warmup, repeats, &mut [&mut f])?;
    Ok(latencies.pop().expect("one latency per function"))
}

/// Times several functions against each other: `warmup` untimed rounds, then `repeats` timed
/// rounds, each running every function once, the first one of the round rotating so that
/// none always runs first. A slow spell of the machine then falls on all of them alike, which
/// separate processes minutes apart cannot promise. Returns each function's latency, in
/// order. As with [`measure`], each function must wait for its result.
pub fn measure_interleaved<E>(
    warmup: usize,
    repeats: usize,
    fs: &mut [&mut dyn FnMut() -> Result<(), E>],
) -> Result<Vec<Latency>, E> {
    let n = fs.len();
    for _ in 0..warmup {
        for f in fs.iter_mut() {
            f()?;
        }
    }
    let mut times = vec![Vec::with_capacity(repeats.max(1)); n];
    for round in 0..repeats.max(1) {
        for k in 0..n {
            let i = (round + k) % n;
            let start = Instant::now();
            fs[i]()?;
            times[i].push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(times.into_iter().map(latency_of).collect())
}

/// Median, fastest and slowest of one function's timed runs (at least one).
fn latency_of(mut times: Vec<f64>) -> Latency {
    times.sort_by(f64::total_cmp);
    let n = times.len();
    let median = if n % 2 == 1 {
        times[n / 2]
    } else {
        (times[n / 2 - 1] + times[n / 2]) / 2.0
    };
    Latency {
        median_ms: median,
        min_ms: times[0],
        max_ms: times[n - 1],
        repeats: n,
    }
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

    #[test]
    fn interleaved_functions_take_turns_and_keep_their_own_times() {
        let order = std::cell::RefCell::new(Vec::new());
        let mut fast = || -> Result<(), ()> {
            order.borrow_mut().push('f');
            Ok(())
        };
        let mut slow = || -> Result<(), ()> {
            order.borrow_mut().push('s');
            std::thread::sleep(std::time::Duration::from_millis(10));
            Ok(())
        };
        let lat = super::measure_interleaved(1, 3, &mut [&mut fast, &mut slow]).unwrap();
        // One warm-up round in order, then the first function of each round rotates.
        assert_eq!(order.into_inner(), ['f', 's', 'f', 's', 's', 'f', 'f', 's']);
        assert_eq!(lat.len(), 2);
        assert!(lat.iter().all(|l| l.repeats == 3));
        assert!(lat[0].median_ms < 10.0 && lat[1].min_ms >= 10.0, "{lat:?}");
    }
}
