//! Aggregation over seeds (mean ± standard deviation) and bootstrap confidence intervals.

use lora_data::SeededRng;
use lora_train::ConfusionMatrix;
use serde::{Deserialize, Serialize};

/// Mean and sample standard deviation of repeated measurements.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeanStd {
    /// Arithmetic mean.
    pub mean: f64,
    /// Sample standard deviation (divisor `n − 1`; 0 for a single value).
    pub std: f64,
    /// Number of values.
    pub n: usize,
}

impl MeanStd {
    /// Summarises `values` (NaN mean for none).
    ///
    /// ```
    /// let s = lora_eval::MeanStd::of(&[1.0, 2.0, 3.0]);
    /// assert_eq!((s.mean, s.std, s.n), (2.0, 1.0, 3));
    /// ```
    pub fn of(values: &[f64]) -> Self {
        let n = values.len();
        let mean = values.iter().sum::<f64>() / n as f64;
        let std = if n > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        Self { mean, std, n }
    }

    /// `mean ± std` with `digits` decimals (just the mean for one value).
    pub fn format(&self, digits: usize) -> String {
        if self.n > 1 {
            format!("{:.digits$} ± {:.digits$}", self.mean, self.std)
        } else {
            format!("{:.digits$}", self.mean)
        }
    }

    /// Like [`format`](Self::format) with the values scaled by 100 (percentages).
    pub fn percent(&self, digits: usize) -> String {
        Self {
            mean: self.mean * 100.0,
            std: self.std * 100.0,
            n: self.n,
        }
        .format(digits)
    }
}

/// A percentile bootstrap interval of `metric` over the examples behind `confusion`: the
/// examples are resampled with replacement `resamples` times (seeded), and the interval holds
/// the central `confidence` fraction of the resampled values.
pub fn bootstrap_ci(
    confusion: &ConfusionMatrix,
    metric: impl Fn(&ConfusionMatrix) -> f64,
    resamples: usize,
    confidence: f64,
    seed: u64,
) -> (f64, f64) {
    let pairs: Vec<(usize, usize)> = confusion
        .counts
        .iter()
        .enumerate()
        .flat_map(|(t, row)| {
            row.iter()
                .enumerate()
                .flat_map(move |(p, &c)| std::iter::repeat_n((t, p), c))
        })
        .collect();
    if pairs.is_empty() || resamples == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mut rng = SeededRng::new(seed);
    let mut values: Vec<f64> = (0..resamples)
        .map(|_| {
            let mut m = ConfusionMatrix::new(confusion.classes());
            for _ in 0..pairs.len() {
                let (t, p) = pairs[rng.below(pairs.len())];
                m.add(t, p);
            }
            metric(&m)
        })
        .collect();
    values.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0;
    let at = |q: f64| values[((q * (resamples - 1) as f64).round() as usize).min(resamples - 1)];
    (at(tail), at(1.0 - tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_std() {
        let s = MeanStd::of(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert_eq!(s.mean, 5.0);
        assert!((s.std - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
        assert_eq!(MeanStd::of(&[0.8]).format(2), "0.80");
        assert_eq!(MeanStd::of(&[0.8, 0.9]).percent(1), "85.0 ± 7.1");
    }

    #[test]
    fn bootstrap_interval_matches_the_normal_approximation() {
        // 1000 examples, 80 % correct: the 95 % interval is about ±1.96·sqrt(.8·.2/1000) = ±2.5 %.
        let truth: Vec<usize> = (0..1000).map(|i| i % 2).collect();
        let pred: Vec<usize> = truth
            .iter()
            .enumerate()
            .map(|(i, &t)| if i % 5 == 0 { 1 - t } else { t })
            .collect();
        let m = ConfusionMatrix::from_pairs(2, &truth, &pred);
        let (lo, hi) = bootstrap_ci(&m, ConfusionMatrix::accuracy, 2000, 0.95, 7);
        assert!(lo < 0.8 && hi > 0.8, "({lo}, {hi})");
        assert!(
            ((hi - lo) / 2.0 - 0.0248).abs() < 0.004,
            "half-width {}",
            (hi - lo) / 2.0
        );
    }
}
