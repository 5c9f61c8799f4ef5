//! Metrics for generated text: exact match, corpus BLEU-4 and ROUGE-L, computed exactly as the
//! reference Python packages compute them, so reported numbers can be compared with papers and
//! Hugging Face evaluations.
//!
//! - [`exact_match`]: the prediction equals the reference after trimming whitespace at both ends
//!   (Python's `str.strip()`: whitespace is what `str.isspace()` accepts).
//! - [`corpus_bleu`]: sacrebleu 2.6.0's `BLEU()` with its defaults: the `13a` tokenizer
//!   (mteval-v13a: [`tokenize_13a`]), case-sensitive, `smooth_method='exp'`, `force=False`,
//!   `effective_order=False`, n-grams up to 4, one reference per prediction; statistics summed
//!   over the corpus, then the geometric mean of the four precisions times the brevity penalty,
//!   on sacrebleu's 0–100 scale. As in sacrebleu, an order with no n-gram at all (a corpus of
//!   sentences shorter than four tokens) makes the score 0.
//! - [`rouge_l`]: rouge-score 0.1.2's `RougeScorer(['rougeL'], use_stemmer=False).score(reference,
//!   prediction)`: both texts lower-cased, every run of characters other than `a-z0-9` replaced
//!   by a space ([`rouge_tokenize`]), then precision = LCS / prediction tokens, recall = LCS /
//!   reference tokens, F1 = 2PR / (P + R) (0 when either text has no token);
//!   [`GenerationMetrics::rouge_l_f1`] is the mean F1 over pairs, on a 0–1 scale.
//!
//! `tests/fixtures/generation_metrics/pairs.json` (written by
//! `xtask/fixtures/generation_metrics.py` with the real sacrebleu and rouge-score) holds 586
//! pairs: BBC headlines against their articles' first sentences, perturbed headlines, and
//! edge cases (empty text, punctuation, HTML entities, Unicode spaces and case); the tests
//! below match every tokenization and every score to 1e-6 or better.
//!
//! ```
//! use lora_train::metrics::generation::GenerationMetrics;
//!
//! let predictions = ["The cat sat on the mat.", "Stocks rise"];
//! let references = ["The cat sat on the mat.", "Stocks fall sharply"];
//! let m = GenerationMetrics::compute(&predictions, &references)?;
//! assert_eq!(m.exact_match, 0.5);
//! assert!(m.bleu.score > 0.0 && m.bleu.score < 100.0);
//! assert!((m.rouge_l_f1 - (1.0 + 0.4) / 2.0).abs() < 1e-12);
//! # Ok::<(), lora_train::metrics::generation::GenerationMetricsError>(())
//! ```

use std::collections::HashMap;

/// The highest n-gram order of BLEU-4.
pub const BLEU_MAX_ORDER: usize = 4;

/// What can go wrong when scoring generated text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenerationMetricsError {
    /// Predictions and references do not pair up.
    #[error(
        "{predictions} predictions but {references} references: each prediction needs exactly one reference"
    )]
    LengthMismatch {
        /// Number of predictions.
        predictions: usize,
        /// Number of references.
        references: usize,
    },
    /// There is nothing to score.
    #[error("no predictions to score")]
    Empty,
}

/// Whether `c` is whitespace to Python's `str.isspace()` (Unicode White_Space plus the ASCII
/// information separators `\x1c`–`\x1f`), which `str.split()` and `str.strip()` use.
pub fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()`.
fn py_strip(s: &str) -> &str {
    s.trim_matches(is_python_space)
}

/// Python's `str.split()` (no argument): the non-empty runs between whitespace.
fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_python_space).filter(|t| !t.is_empty())
}

/// Whether `prediction` equals `reference` once whitespace is trimmed from both ends.
pub fn exact_match(prediction: &str, reference: &str) -> bool {
    py_strip(prediction) == py_strip(reference)
}

fn check_pairs<P: AsRef<str>, R: AsRef<str>>(
    predictions: &[P],
    references: &[R],
) -> Result<(), GenerationMetricsError> {
    if predictions.len() != references.len() {
        return Err(GenerationMetricsError::LengthMismatch {
            predictions: predictions.len(),
            references: references.len(),
        });
    }
    if predictions.is_empty() {
        return Err(GenerationMetricsError::Empty);
    }
    Ok(())
}

/// The fraction of predictions that [`exact_match`] their reference.
pub fn exact_match_rate<P: AsRef<str>, R: AsRef<str>>(
    predictions: &[P],
    references: &[R],
) -> Result<f64, GenerationMetricsError> {
    check_pairs(predictions, references)?;
    let hits = predictions
        .iter()
        .zip(references)
        .filter(|(p, r)| exact_match(p.as_ref(), r.as_ref()))
        .count();
    Ok(hits as f64 / predictions.len() as f64)
}

/// Characters the first mteval-v13a rule surrounds with spaces: `{|}~`, ``[\]^_` ``, space to
/// `&`, `(` to `+`, `:` to `@`, and `/` (not `'`, `,`, `-`, `.`).
fn is_13a_punct(c: char) -> bool {
    matches!(c, '{'..='~' | '['..='`' | ' '..='&' | '('..='+' | ':'..='@' | '/')
}

/// Applies a two-character rewrite the way Python's `re.sub` applies a two-character pattern:
/// left to right, matches not overlapping.
fn rewrite_pairs(
    chars: &[char],
    matches: impl Fn(char, char) -> bool,
    write: impl Fn(char, char, &mut Vec<char>),
) -> Vec<char> {
    let mut out = Vec::with_capacity(chars.len() + chars.len() / 4);
    let mut i = 0;
    while i < chars.len() {
        if i + 1 < chars.len() && matches(chars[i], chars[i + 1]) {
            write(chars[i], chars[i + 1], &mut out);
            i += 2;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// sacrebleu's `13a` tokenization of one segment (after its `rstrip()`), the tokens joined by
/// single spaces: `<skipped>` removed, `-\n` joined, newlines made spaces, `&quot;` `&amp;`
/// `&lt;` `&gt;` unescaped (in that order, when the text has a `&`), then mteval-v13a's rules:
/// punctuation other than `' , - .` split off; `.` and `,` split off unless between digits;
/// `-` split off after a digit.
pub fn tokenize_13a(segment: &str) -> String {
    let mut line = segment
        .trim_end_matches(is_python_space)
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if line.contains('&') {
        line = line
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    let mut chars: Vec<char> = Vec::with_capacity(line.len() + 8);
    chars.push(' ');
    for c in line.chars() {
        if is_13a_punct(c) {
            chars.extend([' ', c, ' ']);
        } else {
            chars.push(c);
        }
    }
    chars.push(' ');
    let is_period_comma = |c: char| c == '.' || c == ',';
    let chars = rewrite_pairs(
        &chars,
        |a, b| !a.is_ascii_digit() && is_period_comma(b),
        |a, b, out| out.extend([a, ' ', b, ' ']),
    );
    let chars = rewrite_pairs(
        &chars,
        |a, b| is_period_comma(a) && !b.is_ascii_digit(),
        |a, b, out| out.extend([' ', a, ' ', b]),
    );
    let chars = rewrite_pairs(
        &chars,
        |a, b| a.is_ascii_digit() && b == '-',
        |a, b, out| out.extend([a, ' ', b, ' ']),
    );
    let line: String = chars.into_iter().collect();
    py_split(&line).collect::<Vec<_>>().join(" ")
}

/// BLEU of a corpus with its sufficient statistics, as sacrebleu's `BLEUScore` reports them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BleuScore {
    /// BLEU on a 0–100 scale.
    pub score: f64,
    /// Matched n-grams of each order (clipped by the reference counts).
    pub counts: [usize; BLEU_MAX_ORDER],
    /// Prediction n-grams of each order.
    pub totals: [usize; BLEU_MAX_ORDER],
    /// The (smoothed) precision of each order, 0–100.
    pub precisions: [f64; BLEU_MAX_ORDER],
    /// The brevity penalty.
    pub bp: f64,
    /// Prediction tokens in all.
    pub sys_len: usize,
    /// Reference tokens in all.
    pub ref_len: usize,
}

fn ngram_counts(tokens: &[&str], n: usize) -> HashMap<Vec<String>, usize> {
    let mut counts = HashMap::new();
    for gram in tokens.windows(n) {
        *counts
            .entry(gram.iter().map(|t| t.to_string()).collect())
            .or_insert(0) += 1;
    }
    counts
}

/// Corpus BLEU-4 exactly as sacrebleu 2.6.0's `BLEU().corpus_score(predictions, [references])`
/// computes it (see the module documentation).
///
/// ```
/// use lora_train::metrics::generation::corpus_bleu;
///
/// let b = corpus_bleu(&["the cat is on the mat"], &["the cat is on the mat"])?;
/// assert!((b.score - 100.0).abs() < 1e-9);
/// let b = corpus_bleu(&["the cat"], &["the cat is on the mat"])?;
/// assert_eq!(b.score, 0.0); // no 3- or 4-gram in the prediction
/// # Ok::<(), lora_train::metrics::generation::GenerationMetricsError>(())
/// ```
pub fn corpus_bleu<P: AsRef<str>, R: AsRef<str>>(
    predictions: &[P],
    references: &[R],
) -> Result<BleuScore, GenerationMetricsError> {
    check_pairs(predictions, references)?;
    let mut counts = [0usize; BLEU_MAX_ORDER];
    let mut totals = [0usize; BLEU_MAX_ORDER];
    let (mut sys_len, mut ref_len) = (0, 0);
    for (p, r) in predictions.iter().zip(references) {
        let (hyp, reference) = (tokenize_13a(p.as_ref()), tokenize_13a(r.as_ref()));
        let hyp: Vec<&str> = py_split(&hyp).collect();
        let reference: Vec<&str> = py_split(&reference).collect();
        sys_len += hyp.len();
        ref_len += reference.len();
        for n in 1..=BLEU_MAX_ORDER {
            let ref_grams = ngram_counts(&reference, n);
            for (gram, count) in ngram_counts(&hyp, n) {
                totals[n - 1] += count;
                counts[n - 1] += count.min(ref_grams.get(&gram).copied().unwrap_or(0));
            }
        }
    }
    Ok(bleu_from_stats(counts, totals, sys_len, ref_len))
}

/// sacrebleu's `BLEU.compute_bleu` with `smooth_method='exp'` and `effective_order=False`.
fn bleu_from_stats(
    counts: [usize; BLEU_MAX_ORDER],
    totals: [usize; BLEU_MAX_ORDER],
    sys_len: usize,
    ref_len: usize,
) -> BleuScore {
    let bp = if sys_len < ref_len {
        if sys_len > 0 {
            (1.0 - ref_len as f64 / sys_len as f64).exp()
        } else {
            0.0
        }
    } else {
        1.0
    };
    let mut precisions = [0.0; BLEU_MAX_ORDER];
    let mut score = 0.0;
    if counts.iter().any(|&c| c > 0) {
        let mut smooth = 1.0;
        for n in 0..BLEU_MAX_ORDER {
            if totals[n] == 0 {
                break;
            }
            precisions[n] = if counts[n] == 0 {
                smooth *= 2.0;
                100.0 / (smooth * totals[n] as f64)
            } else {
                100.0 * counts[n] as f64 / totals[n] as f64
            };
        }
        // sacrebleu's my_log: log(0) is floored to -9999999999.
        let log_sum: f64 = precisions
            .iter()
            .map(|&p| if p == 0.0 { -9_999_999_999.0 } else { p.ln() })
            .sum();
        score = bp * (log_sum / BLEU_MAX_ORDER as f64).exp();
    }
    BleuScore {
        score,
        counts,
        totals,
        precisions,
        bp,
        sys_len,
        ref_len,
    }
}

/// rouge-score's default tokenizer without stemming: lower-case, every run of characters other
/// than `a-z0-9` becomes a separator, empty tokens dropped.
pub fn rouge_tokenize(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// ROUGE-L of one pair.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RougeScore {
    /// LCS length over the prediction's tokens.
    pub precision: f64,
    /// LCS length over the reference's tokens.
    pub recall: f64,
    /// The harmonic mean of precision and recall.
    pub f1: f64,
}

fn lcs_len(a: &[String], b: &[String]) -> usize {
    let mut row = vec![0usize; b.len() + 1];
    for x in a {
        let mut diagonal = 0;
        for (j, y) in b.iter().enumerate() {
            let up = row[j + 1];
            row[j + 1] = if x == y { diagonal + 1 } else { up.max(row[j]) };
            diagonal = up;
        }
    }
    row[b.len()]
}

/// ROUGE-L of `prediction` against `reference`, as rouge-score 0.1.2's
/// `RougeScorer(['rougeL'], use_stemmer=False).score(reference, prediction)['rougeL']`.
///
/// ```
/// use lora_train::metrics::generation::rouge_l;
///
/// let r = rouge_l("the cat was found under the bed", "the cat was under the bed");
/// assert_eq!((r.precision, r.recall), (6.0 / 7.0, 1.0));
/// ```
pub fn rouge_l(prediction: &str, reference: &str) -> RougeScore {
    let (pred, reference) = (rouge_tokenize(prediction), rouge_tokenize(reference));
    if pred.is_empty() || reference.is_empty() {
        return RougeScore {
            precision: 0.0,
            recall: 0.0,
            f1: 0.0,
        };
    }
    let lcs = lcs_len(&reference, &pred) as f64;
    let precision = lcs / pred.len() as f64;
    let recall = lcs / reference.len() as f64;
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    RougeScore {
        precision,
        recall,
        f1,
    }
}

/// The mean ROUGE-L F1 over pairs.
pub fn mean_rouge_l_f1<P: AsRef<str>, R: AsRef<str>>(
    predictions: &[P],
    references: &[R],
) -> Result<f64, GenerationMetricsError> {
    check_pairs(predictions, references)?;
    let sum: f64 = predictions
        .iter()
        .zip(references)
        .map(|(p, r)| rouge_l(p.as_ref(), r.as_ref()).f1)
        .sum();
    Ok(sum / predictions.len() as f64)
}

/// Every generation metric of a set of predictions.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GenerationMetrics {
    /// Number of prediction / reference pairs.
    pub count: usize,
    /// The fraction of exact matches (0–1).
    pub exact_match: f64,
    /// Corpus BLEU-4 (0–100) and its statistics.
    pub bleu: BleuScore,
    /// The mean ROUGE-L F1 over pairs (0–1).
    pub rouge_l_f1: f64,
}

impl GenerationMetrics {
    /// Scores `predictions` against `references` (one each, in the same order).
    pub fn compute<P: AsRef<str>, R: AsRef<str>>(
        predictions: &[P],
        references: &[R],
    ) -> Result<Self, GenerationMetricsError> {
        Ok(Self {
            count: predictions.len(),
            exact_match: exact_match_rate(predictions, references)?,
            bleu: corpus_bleu(predictions, references)?,
            rouge_l_f1: mean_rouge_l_f1(predictions, references)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::Value;

    use super::*;

    const TOL: f64 = 1e-6;

    fn fixture() -> Value {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/generation_metrics/pairs.json");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (xtask/fixtures/generation_metrics.py writes it)",
                path.display()
            )
        });
        serde_json::from_str(&text).unwrap()
    }

    fn usizes(v: &Value) -> Vec<usize> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect()
    }

    fn floats(v: &Value) -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    }

    /// Compares a BLEU score with sacrebleu's; returns the largest float difference.
    fn same_bleu(got: &BleuScore, want: &Value, what: &str) -> f64 {
        assert_eq!(
            got.counts.to_vec(),
            usizes(&want["counts"]),
            "{what}: counts"
        );
        assert_eq!(
            got.totals.to_vec(),
            usizes(&want["totals"]),
            "{what}: totals"
        );
        assert_eq!(
            got.sys_len,
            want["sys_len"].as_u64().unwrap() as usize,
            "{what}"
        );
        assert_eq!(
            got.ref_len,
            want["ref_len"].as_u64().unwrap() as usize,
            "{what}"
        );
        let mut worst: f64 = 0.0;
        for (g, w) in got.precisions.iter().zip(floats(&want["precisions"])) {
            worst = worst.max((g - w).abs());
        }
        worst = worst.max((got.bp - want["bp"].as_f64().unwrap()).abs());
        worst = worst.max((got.score - want["score"].as_f64().unwrap()).abs());
        assert!(worst <= TOL, "{what}: {got:?} vs {want}");
        worst
    }

    #[test]
    fn every_pair_matches_sacrebleu_and_rouge_score() {
        let fixture = fixture();
        let pairs = fixture["pairs"].as_array().unwrap();
        assert!(pairs.len() >= 500, "{}", pairs.len());
        let (mut worst_bleu, mut worst_rouge): (f64, f64) = (0.0, 0.0);
        for (i, pair) in pairs.iter().enumerate() {
            let pred = pair["prediction"].as_str().unwrap();
            let reference = pair["reference"].as_str().unwrap();
            let what = format!("pair {i}: {pred:?} / {reference:?}");
            assert_eq!(
                exact_match(pred, reference),
                pair["exact_match"].as_bool().unwrap(),
                "{what}"
            );
            let tok = &pair["tokens_13a"];
            assert_eq!(tokenize_13a(pred), tok[0].as_str().unwrap(), "{what}: 13a");
            assert_eq!(
                tokenize_13a(reference),
                tok[1].as_str().unwrap(),
                "{what}: 13a"
            );
            let words = |v: &Value| -> Vec<String> {
                v.as_array()
                    .unwrap()
                    .iter()
                    .map(|w| w.as_str().unwrap().to_string())
                    .collect()
            };
            assert_eq!(
                rouge_tokenize(pred),
                words(&pair["tokens_rouge"][0]),
                "{what}"
            );
            assert_eq!(
                rouge_tokenize(reference),
                words(&pair["tokens_rouge"][1]),
                "{what}"
            );
            let r = rouge_l(pred, reference);
            let want = &pair["rouge_l"];
            for (g, key) in [
                (r.precision, "precision"),
                (r.recall, "recall"),
                (r.f1, "f1"),
            ] {
                let d = (g - want[key].as_f64().unwrap()).abs();
                assert!(d <= TOL, "{what}: rouge {key} {g} vs {}", want[key]);
                worst_rouge = worst_rouge.max(d);
            }
            let b = corpus_bleu(&[pred], &[reference]).unwrap();
            worst_bleu = worst_bleu.max(same_bleu(&b, &pair["bleu"], &what));
        }
        println!(
            "max |diff| over {} pairs: BLEU {worst_bleu:e}, ROUGE-L {worst_rouge:e}",
            pairs.len()
        );
    }

    #[test]
    fn every_corpus_matches_sacrebleu_and_rouge_score() {
        let fixture = fixture();
        let pairs = fixture["pairs"].as_array().unwrap();
        let mut names = Vec::new();
        for corpus in fixture["corpora"].as_array().unwrap() {
            let range = usizes(&corpus["pairs"]);
            let sel = &pairs[range[0]..range[1]];
            let preds: Vec<&str> = sel
                .iter()
                .map(|p| p["prediction"].as_str().unwrap())
                .collect();
            let refs: Vec<&str> = sel
                .iter()
                .map(|p| p["reference"].as_str().unwrap())
                .collect();
            let name = corpus["name"].as_str().unwrap();
            let m = GenerationMetrics::compute(&preds, &refs).unwrap();
            let worst = same_bleu(&m.bleu, &corpus["bleu"], name);
            let d_rouge = (m.rouge_l_f1 - corpus["rouge_l_f1_mean"].as_f64().unwrap()).abs();
            let d_em = (m.exact_match - corpus["exact_match_rate"].as_f64().unwrap()).abs();
            assert!(d_rouge <= TOL && d_em <= TOL, "{name}: {m:?}");
            assert_eq!(m.count, sel.len());
            println!(
                "{name}: {} pairs, BLEU {:.4} (|diff| {worst:e}), ROUGE-L F1 {:.4} (|diff| {d_rouge:e})",
                sel.len(),
                m.bleu.score,
                m.rouge_l_f1
            );
            names.push(name.to_string());
        }
        assert_eq!(names, ["bbc", "perturbed", "edge", "all"]);
    }

    #[test]
    fn mismatched_or_empty_inputs_are_errors() {
        let e = corpus_bleu(&["a"], &["a", "b"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "1 predictions but 2 references: each prediction needs exactly one reference"
        );
        let none: [&str; 0] = [];
        assert_eq!(
            GenerationMetrics::compute(&none, &none).unwrap_err(),
            GenerationMetricsError::Empty
        );
    }

    #[test]
    fn the_13a_rules_in_isolation() {
        assert_eq!(tokenize_13a("Hello, world."), "Hello , world .");
        assert_eq!(
            tokenize_13a("3.14, 1,000 and 5-4"),
            "3.14 , 1,000 and 5 - 4"
        );
        assert_eq!(tokenize_13a("&quot;a&quot; &amp; b"), "\" a \" & b");
        assert_eq!(tokenize_13a("co-\noperate\nnow"), "cooperate now");
        assert_eq!(tokenize_13a("x\u{1c}y "), "x y");
        assert!(is_python_space('\u{1f}') && !'\u{1f}'.is_whitespace());
    }
}
