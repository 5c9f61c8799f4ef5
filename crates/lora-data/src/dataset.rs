//! Labelled examples, label vocabularies and seeded train / dev / test splits.

use crate::error::{DataError, Result};
use crate::rng::SeededRng;

/// One classification example: a text (and optional second text, for pair tasks) and the index
/// of its label in a [`LabelVocab`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// The text.
    pub text: String,
    /// The second text of a pair task (encoded as `[CLS] text [SEP] pair [SEP]` by BERT).
    pub text_pair: Option<String>,
    /// Index of the label in the task's [`LabelVocab`].
    pub label: usize,
}

/// The label names of a task; a label's index is its class id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelVocab {
    names: Vec<String>,
}

impl LabelVocab {
    /// A vocabulary with these names, in this order (class `i` is `names[i]`).
    pub fn new<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Result<Self> {
        let names: Vec<String> = names.into_iter().map(Into::into).collect();
        if names.len() < 2 {
            return Err(DataError::InvalidArgument(format!(
                "a classification task needs at least 2 labels, got {names:?}"
            )));
        }
        for (i, name) in names.iter().enumerate() {
            if names[..i].contains(name) {
                return Err(DataError::InvalidArgument(format!(
                    "label '{name}' appears twice in the label list"
                )));
            }
        }
        Ok(Self { names })
    }

    /// The sorted distinct labels seen in `labels` (numbers sort numerically when every label is
    /// an integer, so `"2"` comes before `"10"`).
    pub fn from_observed<'a>(labels: impl IntoIterator<Item = &'a str>) -> Result<Self> {
        let mut names: Vec<String> = labels.into_iter().map(str::to_string).collect();
        names.sort();
        names.dedup();
        if names.iter().all(|n| n.parse::<i64>().is_ok()) {
            names.sort_by_key(|n| n.parse::<i64>().unwrap_or_default());
        }
        Self::new(names)
    }

    /// The class id of `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// The label name of class `index`.
    pub fn name(&self, index: usize) -> Option<&str> {
        self.names.get(index).map(String::as_str)
    }

    /// Every label, in class order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Number of classes.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Always `false`: a vocabulary has at least two labels.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// A classification task split three ways.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSplits {
    /// The task's name (`movie-sentiment`, or the training file's name).
    pub name: String,
    /// Training examples.
    pub train: Vec<Example>,
    /// Development examples (model selection, early stopping).
    pub dev: Vec<Example>,
    /// Held-out test examples.
    pub test: Vec<Example>,
    /// The label names.
    pub labels: LabelVocab,
}

impl TaskSplits {
    /// Keeps at most `train`, `dev` and `test` examples of each split (`None`: all). The splits
    /// are already in seeded random order, so the first `n` are a random sample.
    pub fn truncate(
        mut self,
        train: Option<usize>,
        dev: Option<usize>,
        test: Option<usize>,
    ) -> Self {
        if let Some(n) = train {
            self.train.truncate(n);
        }
        if let Some(n) = dev {
            self.dev.truncate(n);
        }
        if let Some(n) = test {
            self.test.truncate(n);
        }
        self
    }

    /// How many examples of each class a split holds, in class order.
    pub fn class_counts(examples: &[Example], labels: &LabelVocab) -> Vec<usize> {
        let mut counts = vec![0; labels.len()];
        for e in examples {
            if let Some(c) = counts.get_mut(e.label) {
                *c += 1;
            }
        }
        counts
    }
}

/// Shuffles `examples` with `seed` and cuts them into train / dev / test, giving dev and test
/// `dev_fraction` and `test_fraction` of the examples (rounded down, at least one each when the
/// fraction is positive). The permutation depends only on the number of examples and the seed,
/// so two lists of the same length built from the same source in the same order (labelled
/// examples and their instruction-tuning form, say) are split the same way.
pub fn split_seeded<T>(
    mut examples: Vec<T>,
    dev_fraction: f64,
    test_fraction: f64,
    seed: u64,
) -> Result<(Vec<T>, Vec<T>, Vec<T>)> {
    let valid = |f: f64| (0.0..1.0).contains(&f);
    if !valid(dev_fraction) || !valid(test_fraction) || dev_fraction + test_fraction >= 1.0 {
        return Err(DataError::InvalidArgument(format!(
            "split fractions must be in [0, 1) and leave training data: dev {dev_fraction}, \
             test {test_fraction}"
        )));
    }
    let n = examples.len();
    let size = |f: f64| {
        if f > 0.0 {
            ((n as f64 * f) as usize).max(1)
        } else {
            0
        }
    };
    let (n_dev, n_test) = (size(dev_fraction), size(test_fraction));
    if n_dev + n_test >= n {
        return Err(DataError::InvalidArgument(format!(
            "{n} examples are too few to split off {n_dev} dev and {n_test} test examples"
        )));
    }
    SeededRng::new(seed).shuffle(&mut examples);
    let test = examples.split_off(n - n_test);
    let dev = examples.split_off(n - n_test - n_dev);
    Ok((examples, dev, test))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn examples(n: usize) -> Vec<Example> {
        (0..n)
            .map(|i| Example {
                text: format!("t{i}"),
                text_pair: None,
                label: i % 2,
            })
            .collect()
    }

    #[test]
    fn split_is_seeded_disjoint_and_complete() {
        let (tr, dev, te) = split_seeded(examples(100), 0.1, 0.1, 5).unwrap();
        assert_eq!((tr.len(), dev.len(), te.len()), (80, 10, 10));
        let mut all: Vec<String> = tr
            .iter()
            .chain(&dev)
            .chain(&te)
            .map(|e| e.text.clone())
            .collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 100);
        let again = split_seeded(examples(100), 0.1, 0.1, 5).unwrap();
        assert_eq!(again.1, dev);
        let other = split_seeded(examples(100), 0.1, 0.1, 6).unwrap();
        assert_ne!(other.1, dev);
    }

    #[test]
    fn split_refuses_impossible_fractions() {
        assert!(split_seeded(examples(10), 0.6, 0.5, 0).is_err());
        assert!(split_seeded(examples(2), 0.4, 0.4, 0).is_err());
    }

    #[test]
    fn vocab_orders_numbers_numerically_and_refuses_duplicates() {
        let v = LabelVocab::from_observed(["10", "2", "1", "2"]).unwrap();
        assert_eq!(v.names(), ["1", "2", "10"]);
        assert_eq!(v.index_of("10"), Some(2));
        assert!(LabelVocab::new(["a", "a"]).is_err());
        assert!(LabelVocab::new(["only"]).is_err());
    }
}
