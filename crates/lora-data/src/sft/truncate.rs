//! Truncation that keeps the answer: the prompt is cut from the left, and only an answer longer
//! than the whole budget loses its end.

use std::ops::Range;

/// Cuts `ids` and `labels` (the same length) to at most `max_len` tokens.
///
/// `answer_start` is where the answer begins (the completion, or the last assistant turn). The
/// prompt `0..answer_start` is cut from the left so that the whole answer fits; if the answer
/// alone is longer than the budget, no prompt is kept and the answer is cut at its right end.
/// With `keep_first`, position 0 (the BOS token) survives a cut prompt and takes one place of
/// the budget. Returns the kept range of the original positions (after the first token when
/// it was kept), or `None` when nothing was cut.
pub fn truncate_keep_answer(
    ids: &mut Vec<u32>,
    labels: &mut Vec<i64>,
    answer_start: usize,
    max_len: usize,
    keep_first: bool,
) -> Option<Range<usize>> {
    let len = ids.len();
    if len <= max_len {
        return None;
    }
    let answer_start = answer_start.min(len);
    let keep_first = keep_first && answer_start > 0 && max_len > 1;
    let room = max_len - usize::from(keep_first);
    let answer_len = len - answer_start;
    let kept = if answer_len >= room {
        answer_start..answer_start + room
    } else {
        len - room..len
    };
    *ids = take(ids, keep_first, &kept);
    *labels = take(labels, keep_first, &kept);
    Some(kept)
}

fn take<T: Copy>(v: &[T], keep_first: bool, kept: &Range<usize>) -> Vec<T> {
    let mut out = Vec::with_capacity(kept.len() + 1);
    if keep_first {
        out.push(v[0]);
    }
    out.extend_from_slice(&v[kept.clone()]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(len: usize, answer_start: usize, max_len: usize, keep_first: bool) -> Vec<u32> {
        let mut ids: Vec<u32> = (0..len as u32).collect();
        let mut labels: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
        truncate_keep_answer(&mut ids, &mut labels, answer_start, max_len, keep_first);
        assert!(ids.iter().zip(&labels).all(|(&i, &l)| i as i64 == l));
        ids
    }

    #[test]
    fn the_prompt_is_cut_from_the_left() {
        assert_eq!(run(10, 6, 6, false), [4, 5, 6, 7, 8, 9]);
        assert_eq!(run(10, 6, 6, true), [0, 5, 6, 7, 8, 9]);
        assert_eq!(run(5, 2, 8, true), [0, 1, 2, 3, 4]);
    }

    #[test]
    fn a_long_answer_loses_its_end() {
        assert_eq!(run(10, 2, 4, false), [2, 3, 4, 5]);
        assert_eq!(run(10, 2, 4, true), [0, 2, 3, 4]);
        assert_eq!(run(10, 0, 3, true), [0, 1, 2]);
        assert_eq!(run(10, 6, 4, false), [6, 7, 8, 9]);
    }
}
