//! Dynamic padding of encoded SFT examples into batches, one example per row or several packed
//! into one ([`super::pack`]).
//!
//! Every row carries per-token `segment_ids` (1, 2, … for the examples in the row, 0 for
//! padding) and `position_ids` that restart at 0 for every example, so a packed row can be
//! attended block-diagonally: a token may attend only to earlier tokens of its own segment.
//! Labels are padded with [`IGNORE_INDEX`].

use super::IGNORE_INDEX;
use super::encode::SftEncoded;
use crate::batching::batch_order;
use crate::error::Result;
use crate::rng::SeededRng;

/// A batch of SFT rows, right-padded to its longest row; every vector is row-major
/// `[batch, seq]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SftBatch {
    /// Token ids (padding positions hold the pad id).
    pub input_ids: Vec<i64>,
    /// 1 for tokens, 0 for padding.
    pub attention_mask: Vec<i64>,
    /// The target of each position ([`IGNORE_INDEX`] where no loss is taken, padding included).
    pub labels: Vec<i64>,
    /// Position of each token within its example (restarting at 0 per example; 0 for padding).
    pub position_ids: Vec<i64>,
    /// Which example of the row a token belongs to (1, 2, …; 0 for padding).
    pub segment_ids: Vec<i64>,
    /// Number of rows.
    pub batch: usize,
    /// Length of the longest row.
    pub seq: usize,
}

impl SftBatch {
    /// Number of real (non-padding) tokens.
    pub fn tokens(&self) -> usize {
        self.attention_mask.iter().filter(|&&m| m == 1).count()
    }

    /// Number of positions that take the loss (the denominator of TRL's mean loss).
    pub fn label_count(&self) -> usize {
        self.labels.iter().filter(|&&l| l != IGNORE_INDEX).count()
    }

    /// Whether some row holds more than one example.
    pub fn is_packed(&self) -> bool {
        self.segment_ids.iter().any(|&s| s > 1)
    }
}

/// Number of positions of `batch` that take the loss.
pub fn label_count(batch: &SftBatch) -> usize {
    batch.label_count()
}

/// Pads the examples at `indices` into a batch, one example per row.
pub fn collate_sft(examples: &[SftEncoded], indices: &[usize], pad_id: u32) -> SftBatch {
    let rows: Vec<Vec<usize>> = indices.iter().map(|&i| vec![i]).collect();
    collate_rows(examples, &rows, pad_id)
}

/// Builds a batch whose row `r` holds the examples `rows[r]` one after another (a packed row
/// when it has several), right-padded to the longest row.
pub fn collate_rows(examples: &[SftEncoded], rows: &[Vec<usize>], pad_id: u32) -> SftBatch {
    let row_len = |row: &Vec<usize>| row.iter().map(|&i| examples[i].len()).sum::<usize>();
    let seq = rows.iter().map(row_len).max().unwrap_or(0);
    let mut out = SftBatch {
        input_ids: Vec::with_capacity(rows.len() * seq),
        attention_mask: Vec::with_capacity(rows.len() * seq),
        labels: Vec::with_capacity(rows.len() * seq),
        position_ids: Vec::with_capacity(rows.len() * seq),
        segment_ids: Vec::with_capacity(rows.len() * seq),
        batch: rows.len(),
        seq,
    };
    for row in rows {
        for (segment, &i) in row.iter().enumerate() {
            let ex = &examples[i];
            out.input_ids.extend(ex.ids.iter().map(|&t| i64::from(t)));
            out.labels.extend_from_slice(&ex.labels);
            out.attention_mask.extend(std::iter::repeat_n(1, ex.len()));
            out.position_ids.extend(0..ex.len() as i64);
            out.segment_ids
                .extend(std::iter::repeat_n(segment as i64 + 1, ex.len()));
        }
        let pad = seq - row_len(row);
        out.input_ids
            .extend(std::iter::repeat_n(i64::from(pad_id), pad));
        out.labels.extend(std::iter::repeat_n(IGNORE_INDEX, pad));
        out.attention_mask.extend(std::iter::repeat_n(0, pad));
        out.position_ids.extend(std::iter::repeat_n(0, pad));
        out.segment_ids.extend(std::iter::repeat_n(0, pad));
    }
    out
}

/// The batches of one pass over `examples`, each a list of rows, each row the examples it holds.
///
/// With `pack_to`, examples are first packed into rows of at most that many tokens
/// ([`super::pack_rows`]); without, every row is one example. Rows are then ordered by
/// [`batch_order`]: shuffled with `rng`, and with `bucket` sorted by length within windows.
///
/// ```
/// use lora_data::SeededRng;
/// use lora_data::sft::{SftEncoded, batch::{batch_plan, collate_rows}};
///
/// let ex = |n: usize| SftEncoded { ids: vec![1; n], labels: vec![1; n], truncated: false };
/// let examples = [ex(3), ex(5), ex(2), ex(6)];
/// let lengths: Vec<usize> = examples.iter().map(SftEncoded::len).collect();
/// let plan = batch_plan(&lengths, 2, Some(&mut SeededRng::new(0)), false, Some(8))?;
/// assert_eq!(plan.iter().flatten().flatten().count(), 4);
/// let batch = collate_rows(&examples, &plan[0], 0);
/// assert!(batch.seq <= 8);
/// # Ok::<(), lora_data::DataError>(())
/// ```
pub fn batch_plan(
    lengths: &[usize],
    batch_size: usize,
    rng: Option<&mut SeededRng>,
    bucket: bool,
    pack_to: Option<usize>,
) -> Result<Vec<Vec<Vec<usize>>>> {
    let rows: Vec<Vec<usize>> = match pack_to {
        Some(max_len) => super::pack::pack_rows(lengths, max_len)?,
        None => (0..lengths.len()).map(|i| vec![i]).collect(),
    };
    let row_lengths: Vec<usize> = rows
        .iter()
        .map(|r| r.iter().map(|&i| lengths[i]).sum())
        .collect();
    Ok(batch_order(&row_lengths, batch_size, rng, bucket)?
        .into_iter()
        .map(|batch| batch.into_iter().map(|r| rows[r].clone()).collect())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(ids: &[u32], labels: &[i64]) -> SftEncoded {
        SftEncoded {
            ids: ids.to_vec(),
            labels: labels.to_vec(),
            truncated: false,
        }
    }

    #[test]
    fn rows_are_padded_with_ignored_labels() {
        let examples = [ex(&[1, 2, 3], &[-100, -100, 3]), ex(&[4], &[-100])];
        let b = collate_sft(&examples, &[0, 1], 9);
        assert_eq!((b.batch, b.seq), (2, 3));
        assert_eq!(b.input_ids, [1, 2, 3, 4, 9, 9]);
        assert_eq!(b.labels, [-100, -100, 3, -100, -100, -100]);
        assert_eq!(b.attention_mask, [1, 1, 1, 1, 0, 0]);
        assert_eq!(b.position_ids, [0, 1, 2, 0, 0, 0]);
        assert_eq!(b.segment_ids, [1, 1, 1, 1, 0, 0]);
        assert_eq!((b.tokens(), label_count(&b), b.is_packed()), (4, 1, false));
    }

    #[test]
    fn packed_rows_restart_positions_and_keep_labels() {
        let examples = [
            ex(&[1, 2, 3], &[-100, 2, 3]),
            ex(&[4, 5], &[-100, 5]),
            ex(&[6], &[-100]),
        ];
        let b = collate_rows(&examples, &[vec![0, 1], vec![2]], 0);
        assert_eq!(b.seq, 5);
        assert_eq!(b.input_ids, [1, 2, 3, 4, 5, 6, 0, 0, 0, 0]);
        assert_eq!(
            b.labels,
            [-100, 2, 3, -100, 5, -100, -100, -100, -100, -100]
        );
        assert_eq!(b.position_ids, [0, 1, 2, 0, 1, 0, 0, 0, 0, 0]);
        assert_eq!(b.segment_ids, [1, 1, 1, 2, 2, 1, 0, 0, 0, 0]);
        assert!(b.is_packed());
        assert_eq!(b.label_count(), 3);
    }

    #[test]
    fn a_plan_covers_every_example_once() {
        let lengths: Vec<usize> = (0..300).map(|i| 1 + (i * 7919) % 50).collect();
        for pack in [None, Some(64)] {
            let plan = batch_plan(&lengths, 4, Some(&mut SeededRng::new(2)), true, pack).unwrap();
            let mut all: Vec<usize> = plan.iter().flatten().flatten().copied().collect();
            all.sort();
            assert_eq!(all, (0..300).collect::<Vec<_>>());
        }
    }
}
