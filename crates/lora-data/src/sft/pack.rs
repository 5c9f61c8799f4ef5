//! Packing: several encoded examples per row, up to `max_len` tokens, so that rows waste little
//! padding (TRL's `packing=True` with its best-fit-decreasing strategy).
//!
//! The examples are placed longest first, each into the row with the least room that still fits
//! it (ties: the earliest row), else into a new row; a row lists its examples in their original
//! order. The result depends only on the lengths. Examples are not split: each keeps its labels
//! (whose first position is already ignored, so no loss crosses from one example into the next)
//! and [`super::collate_rows`] gives every example its own segment id and positions from 0.

use std::collections::BTreeSet;

use crate::error::{DataError, Result};

/// Groups examples of these `lengths` into rows of at most `max_len` tokens; returns the
/// example indices of each row. Every length must be between 1 and `max_len` (truncate first).
///
/// ```
/// use lora_data::sft::pack_rows;
///
/// let rows = pack_rows(&[6, 3, 5, 2, 4], 8)?;
/// assert_eq!(rows, [vec![0, 3], vec![1, 2], vec![4]]);
/// # Ok::<(), lora_data::DataError>(())
/// ```
pub fn pack_rows(lengths: &[usize], max_len: usize) -> Result<Vec<Vec<usize>>> {
    if let Some((i, &len)) = lengths
        .iter()
        .enumerate()
        .find(|&(_, &l)| l == 0 || l > max_len)
    {
        return Err(DataError::InvalidArgument(format!(
            "example {i} has {len} tokens; packing into rows of {max_len} needs every example \
             to have 1 to {max_len} tokens (truncate to max_len first)"
        )));
    }
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    let mut rows: Vec<Vec<usize>> = Vec::new();
    // (room left, row index): the best fit is the first entry with enough room.
    let mut room: BTreeSet<(usize, usize)> = BTreeSet::new();
    for i in order {
        let len = lengths[i];
        match room.range((len, 0)..).next().copied() {
            Some((left, r)) => {
                room.remove(&(left, r));
                rows[r].push(i);
                if left > len {
                    room.insert((left - len, r));
                }
            }
            None => {
                rows.push(vec![i]);
                if max_len > len {
                    room.insert((max_len - len, rows.len() - 1));
                }
            }
        }
    }
    for row in &mut rows {
        row.sort_unstable();
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_fit_and_hold_every_example_once() {
        let lengths: Vec<usize> = (0..500).map(|i| 1 + (i * 7919) % 97).collect();
        let rows = pack_rows(&lengths, 128).unwrap();
        let mut all: Vec<usize> = rows.concat();
        all.sort();
        assert_eq!(all, (0..500).collect::<Vec<_>>());
        assert!(
            rows.iter()
                .all(|r| r.iter().map(|&i| lengths[i]).sum::<usize>() <= 128)
        );
        let total: usize = lengths.iter().sum();
        let lower_bound = total.div_ceil(128);
        assert!(
            rows.len() <= lower_bound + lower_bound / 20 + 1,
            "{} rows",
            rows.len()
        );
    }

    #[test]
    fn too_long_or_empty_examples_are_refused() {
        let e = pack_rows(&[3, 9], 8).unwrap_err().to_string();
        assert!(e.contains("example 1 has 9 tokens"), "{e}");
        assert!(pack_rows(&[0], 8).is_err());
        assert!(pack_rows(&[], 8).unwrap().is_empty());
    }
}
