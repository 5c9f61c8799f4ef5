//! Classification metrics from a confusion matrix, and perplexity.
//!
//! Definitions follow scikit-learn: precision, recall and F1 are 0 when undefined (no predicted
//! or no true examples of a class); `binary` scores class 1 as the positive class; `macro`
//! averages classes equally; `weighted` weights them by their true counts; MCC is the
//! multi-class form of Gorodkin (2004), which equals the binary phi coefficient for two classes.
//! Generated text is scored by [`generation`] (exact match, BLEU, ROUGE-L).

pub mod generation;

use serde::{Deserialize, Serialize};

/// Counts of (true class, predicted class) pairs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    /// `counts[true][predicted]`.
    pub counts: Vec<Vec<usize>>,
}

impl ConfusionMatrix {
    /// An all-zero matrix for `classes` classes.
    pub fn new(classes: usize) -> Self {
        Self {
            counts: vec![vec![0; classes]; classes],
        }
    }

    /// Builds the matrix from paired true and predicted class ids.
    pub fn from_pairs(classes: usize, truth: &[usize], predicted: &[usize]) -> Self {
        let mut m = Self::new(classes);
        for (&t, &p) in truth.iter().zip(predicted) {
            m.add(t, p);
        }
        m
    }

    /// Counts one prediction.
    pub fn add(&mut self, truth: usize, predicted: usize) {
        self.counts[truth][predicted] += 1;
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.counts.len()
    }

    /// Number of examples.
    pub fn total(&self) -> usize {
        self.counts.iter().flatten().sum()
    }

    fn true_count(&self, c: usize) -> usize {
        self.counts[c].iter().sum()
    }

    fn predicted_count(&self, c: usize) -> usize {
        self.counts.iter().map(|row| row[c]).sum()
    }

    /// Fraction of correct predictions.
    pub fn accuracy(&self) -> f64 {
        let correct: usize = (0..self.classes()).map(|c| self.counts[c][c]).sum();
        ratio(correct, self.total())
    }

    /// Precision, recall and F1 of class `c`.
    pub fn class_scores(&self, c: usize) -> ClassScores {
        let tp = self.counts[c][c];
        let precision = ratio(tp, self.predicted_count(c));
        let recall = ratio(tp, self.true_count(c));
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        ClassScores {
            precision,
            recall,
            f1,
            support: self.true_count(c),
        }
    }

    /// Unweighted mean of the per-class scores.
    pub fn macro_scores(&self) -> ClassScores {
        let n = self.classes() as f64;
        let all: Vec<ClassScores> = (0..self.classes()).map(|c| self.class_scores(c)).collect();
        ClassScores {
            precision: all.iter().map(|s| s.precision).sum::<f64>() / n,
            recall: all.iter().map(|s| s.recall).sum::<f64>() / n,
            f1: all.iter().map(|s| s.f1).sum::<f64>() / n,
            support: self.total(),
        }
    }

    /// Mean of the per-class scores weighted by each class's true count.
    pub fn weighted_scores(&self) -> ClassScores {
        let total = self.total().max(1) as f64;
        let mut out = ClassScores {
            support: self.total(),
            ..ClassScores::default()
        };
        for c in 0..self.classes() {
            let s = self.class_scores(c);
            let w = s.support as f64 / total;
            out.precision += w * s.precision;
            out.recall += w * s.recall;
            out.f1 += w * s.f1;
        }
        out
    }

    /// Matthews correlation coefficient (0 when undefined).
    pub fn mcc(&self) -> f64 {
        let s = self.total() as f64;
        let c: f64 = (0..self.classes()).map(|k| self.counts[k][k] as f64).sum();
        let t: Vec<f64> = (0..self.classes())
            .map(|k| self.true_count(k) as f64)
            .collect();
        let p: Vec<f64> = (0..self.classes())
            .map(|k| self.predicted_count(k) as f64)
            .collect();
        let tp: f64 = t.iter().zip(&p).map(|(a, b)| a * b).sum();
        let denom = ((s * s - p.iter().map(|x| x * x).sum::<f64>())
            * (s * s - t.iter().map(|x| x * x).sum::<f64>()))
        .sqrt();
        if denom > 0.0 {
            (c * s - tp) / denom
        } else {
            0.0
        }
    }

    /// The usual summary: binary scores for two classes, macro scores otherwise.
    pub fn metrics(&self) -> ClassificationMetrics {
        let headline = if self.classes() == 2 {
            self.class_scores(1)
        } else {
            self.macro_scores()
        };
        ClassificationMetrics {
            accuracy: self.accuracy(),
            precision: headline.precision,
            recall: headline.recall,
            f1: headline.f1,
            macro_f1: self.macro_scores().f1,
            weighted_f1: self.weighted_scores().f1,
            mcc: self.mcc(),
            confusion: self.clone(),
        }
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Precision, recall and F1 of one class (or an average), with the number of true examples.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ClassScores {
    /// Precision.
    pub precision: f64,
    /// Recall.
    pub recall: f64,
    /// F1.
    pub f1: f64,
    /// True examples counted.
    pub support: usize,
}

/// The metrics reported for a classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassificationMetrics {
    /// Accuracy.
    pub accuracy: f64,
    /// Precision: of the positive class (1) for binary tasks, macro-averaged otherwise.
    pub precision: f64,
    /// Recall, averaged like `precision`.
    pub recall: f64,
    /// F1, averaged like `precision`.
    pub f1: f64,
    /// Macro-averaged F1.
    pub macro_f1: f64,
    /// Support-weighted F1.
    pub weighted_f1: f64,
    /// Matthews correlation coefficient.
    pub mcc: f64,
    /// The confusion matrix (`counts[true][predicted]`).
    pub confusion: ConfusionMatrix,
}

/// Perplexity from a summed negative log-likelihood (natural log) over `tokens` tokens.
pub fn perplexity(nll_sum: f64, tokens: usize) -> f64 {
    (nll_sum / tokens.max(1) as f64).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }

    #[test]
    fn binary_metrics_match_hand_counts() {
        // tp=3, fn=1, fp=2, tn=4
        let truth = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0];
        let pred = [1, 1, 1, 0, 1, 1, 0, 0, 0, 0];
        let m = ConfusionMatrix::from_pairs(2, &truth, &pred).metrics();
        close(m.accuracy, 0.7);
        close(m.precision, 3.0 / 5.0);
        close(m.recall, 3.0 / 4.0);
        close(m.f1, 2.0 * 0.6 * 0.75 / 1.35);
        // phi = (tp·tn − fp·fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn))
        close(m.mcc, (12.0 - 2.0) / (5.0f64 * 4.0 * 6.0 * 5.0).sqrt());
    }

    #[test]
    fn multiclass_averages_match_hand_counts() {
        // y_true=[0,0,1,1,2,2,2], y_pred=[0,1,1,1,2,0,2]
        let m = ConfusionMatrix::from_pairs(3, &[0, 0, 1, 1, 2, 2, 2], &[0, 1, 1, 1, 2, 0, 2]);
        let macro_ = m.macro_scores();
        close(macro_.precision, (0.5 + 2.0 / 3.0 + 1.0) / 3.0);
        close(macro_.recall, (0.5 + 1.0 + 2.0 / 3.0) / 3.0);
        let w = m.weighted_scores();
        close(w.recall, 5.0 / 7.0); // weighted recall equals accuracy
        close(m.accuracy(), 5.0 / 7.0);
        // By hand: s=7, c=5, t=[2,2,3], p=[2,3,2]: (5·7 − 16) / sqrt((49 − 17)(49 − 17)) = 19/32.
        close(m.mcc(), 19.0 / 32.0);
    }

    #[test]
    fn undefined_scores_are_zero_and_perfect_is_one() {
        let m = ConfusionMatrix::from_pairs(2, &[0, 0], &[0, 0]).metrics();
        assert_eq!((m.precision, m.recall, m.f1, m.mcc), (0.0, 0.0, 0.0, 0.0));
        let p = ConfusionMatrix::from_pairs(2, &[0, 1], &[0, 1]).metrics();
        assert_eq!((p.accuracy, p.f1, p.mcc), (1.0, 1.0, 1.0));
        close(perplexity(2.0 * 3.0, 3), 2.0f64.exp());
    }
}
