//! Tokenization, dynamic padding, length bucketing and seeded batch order.
//!
//! Datasets are tokenized once ([`tokenize_examples`], truncating to `max_len`); each batch is
//! then padded only to its own longest sequence ([`collate`]). [`batch_order`] decides which
//! examples go together: in a seeded random order, optionally bucketed by length so that
//! batches waste little padding.

use tokenizers::{EncodeInput, Tokenizer};

use crate::dataset::Example;
use crate::error::{DataError, Result};
use crate::rng::SeededRng;

/// A tokenized batch, right-padded to its longest sequence, row-major `[batch, seq]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedBatch {
    /// Token ids (padding positions hold the pad id).
    pub input_ids: Vec<i64>,
    /// 1 for tokens, 0 for padding.
    pub attention_mask: Vec<i64>,
    /// Segment ids (0 for padding).
    pub token_type_ids: Vec<i64>,
    /// Number of sequences.
    pub batch: usize,
    /// Length of the longest sequence.
    pub seq: usize,
}

impl EncodedBatch {
    /// Pads `(ids, type_ids)` sequences on the right with `pad_id` to the longest one.
    pub fn from_sequences<'a>(
        sequences: impl IntoIterator<Item = (&'a [u32], &'a [u32])> + Clone,
        pad_id: u32,
    ) -> Self {
        let seq = sequences
            .clone()
            .into_iter()
            .map(|(ids, _)| ids.len())
            .max()
            .unwrap_or(0);
        let mut out = Self {
            input_ids: Vec::new(),
            attention_mask: Vec::new(),
            token_type_ids: Vec::new(),
            batch: 0,
            seq,
        };
        for (ids, type_ids) in sequences {
            let pad = seq - ids.len();
            out.input_ids.extend(ids.iter().map(|&i| i as i64));
            out.input_ids
                .extend(std::iter::repeat_n(pad_id as i64, pad));
            out.attention_mask.extend(std::iter::repeat_n(1, ids.len()));
            out.attention_mask.extend(std::iter::repeat_n(0, pad));
            out.token_type_ids
                .extend(type_ids.iter().map(|&i| i as i64));
            out.token_type_ids.extend(std::iter::repeat_n(0, pad));
            out.batch += 1;
        }
        out
    }

    /// Number of real (non-padding) tokens.
    pub fn tokens(&self) -> usize {
        self.attention_mask.iter().filter(|&&m| m == 1).count()
    }
}

/// Makes `tokenizer` truncate every encoding to `max_len` tokens (special tokens included), or
/// stop truncating with `None`.
pub fn set_max_len(tokenizer: &mut Tokenizer, max_len: Option<usize>) -> Result<()> {
    if max_len == Some(0) {
        return Err(DataError::InvalidArgument(
            "max_len must be at least 1".into(),
        ));
    }
    let params = max_len.map(|max_length| tokenizers::TruncationParams {
        max_length,
        ..Default::default()
    });
    tokenizer
        .with_truncation(params)
        .map(|_| ())
        .map_err(|e| DataError::Tokenizer(format!("setting max_len {max_len:?}: {e}")))
}

fn encode_all(
    tokenizer: &Tokenizer,
    texts: &[(&str, Option<&str>)],
) -> Result<Vec<tokenizers::Encoding>> {
    let inputs: Vec<EncodeInput> = texts
        .iter()
        .map(|(a, b)| match b {
            Some(b) => (*a, *b).into(),
            None => (*a).into(),
        })
        .collect();
    tokenizer
        .encode_batch(inputs, true)
        .map_err(|e| DataError::Tokenizer(e.to_string()))
}

/// Encodes texts (or text pairs) with special tokens and pads them on the right with `pad_id`
/// to the longest in the batch: dynamic padding, whatever the tokenizer file presets.
pub fn encode_batch(
    tokenizer: &Tokenizer,
    texts: &[(&str, Option<&str>)],
    pad_id: u32,
) -> Result<EncodedBatch> {
    let encodings = encode_all(tokenizer, texts)?;
    Ok(EncodedBatch::from_sequences(
        encodings.iter().map(|e| (e.get_ids(), e.get_type_ids())),
        pad_id,
    ))
}

/// One tokenized example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizedExample {
    /// Token ids, special tokens included.
    pub ids: Vec<u32>,
    /// Segment ids.
    pub type_ids: Vec<u32>,
    /// Class id.
    pub label: usize,
}

/// Tokenizes every example once, truncated to `max_len` tokens (special tokens included).
/// `tokenizer` itself is not changed.
pub fn tokenize_examples(
    tokenizer: &Tokenizer,
    examples: &[Example],
    max_len: usize,
) -> Result<Vec<TokenizedExample>> {
    let mut tokenizer = tokenizer.clone();
    set_max_len(&mut tokenizer, Some(max_len))?;
    let texts: Vec<(&str, Option<&str>)> = examples
        .iter()
        .map(|e| (e.text.as_str(), e.text_pair.as_deref()))
        .collect();
    let encodings = encode_all(&tokenizer, &texts)?;
    Ok(encodings
        .into_iter()
        .zip(examples)
        .map(|(enc, ex)| TokenizedExample {
            ids: enc.get_ids().to_vec(),
            type_ids: enc.get_type_ids().to_vec(),
            label: ex.label,
        })
        .collect())
}

/// Pads the examples at `indices` into one batch; returns it with their class ids.
pub fn collate(
    examples: &[TokenizedExample],
    indices: &[usize],
    pad_id: u32,
) -> (EncodedBatch, Vec<i64>) {
    let picked = indices.iter().map(|&i| &examples[i]);
    let batch = EncodedBatch::from_sequences(
        picked
            .clone()
            .map(|e| (e.ids.as_slice(), e.type_ids.as_slice())),
        pad_id,
    );
    (batch, picked.map(|e| e.label as i64).collect())
}

/// How many batches a bucket spans: examples are sorted by length within windows of this many
/// batches.
pub const BUCKET_WINDOW_BATCHES: usize = 50;

/// The batches of one pass over `lengths.len()` examples, as index lists.
///
/// With `rng`, the examples are shuffled first (and, when bucketing, the batches are shuffled
/// again afterwards); without, the order is the data's. With `bucket`, examples are sorted by
/// length inside windows of [`BUCKET_WINDOW_BATCHES`] batches, so each batch holds similar
/// lengths and pads little, while the windows keep the order random.
///
/// ```
/// use lora_data::{SeededRng, batching::batch_order};
///
/// let lengths = [5, 9, 3, 7, 2];
/// let batches = batch_order(&lengths, 2, Some(&mut SeededRng::new(1)), true).unwrap();
/// assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 5);
/// ```
pub fn batch_order(
    lengths: &[usize],
    batch_size: usize,
    rng: Option<&mut SeededRng>,
    bucket: bool,
) -> Result<Vec<Vec<usize>>> {
    if batch_size == 0 {
        return Err(DataError::InvalidArgument(
            "batch size must be at least 1".into(),
        ));
    }
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    let mut rng = rng;
    if let Some(rng) = rng.as_deref_mut() {
        rng.shuffle(&mut order);
    }
    if bucket {
        for window in order.chunks_mut(batch_size * BUCKET_WINDOW_BATCHES) {
            window.sort_by_key(|&i| lengths[i]);
        }
    }
    let mut batches: Vec<Vec<usize>> = order.chunks(batch_size).map(<[usize]>::to_vec).collect();
    if bucket && let Some(rng) = rng {
        rng.shuffle(&mut batches);
    }
    Ok(batches)
}

/// Concatenates tokenized documents (each followed by `separator`, e.g. the EOS id) and cuts the
/// stream into blocks of `block_len` tokens for causal-LM training; the incomplete tail is
/// dropped.
pub fn token_blocks(
    tokenizer: &Tokenizer,
    documents: &[String],
    block_len: usize,
    separator: Option<u32>,
) -> Result<Vec<Vec<u32>>> {
    if block_len < 2 {
        return Err(DataError::InvalidArgument(
            "a causal-LM block needs at least 2 tokens".into(),
        ));
    }
    let texts: Vec<(&str, Option<&str>)> = documents.iter().map(|d| (d.as_str(), None)).collect();
    let mut stream = Vec::new();
    for enc in encode_all(tokenizer, &texts)? {
        stream.extend_from_slice(enc.get_ids());
        stream.extend(separator);
    }
    Ok(stream
        .chunks_exact(block_len)
        .map(<[u32]>::to_vec)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_is_dynamic_and_masks_match() {
        let a: (&[u32], &[u32]) = (&[1, 2, 3], &[0, 0, 0]);
        let b: (&[u32], &[u32]) = (&[4], &[0]);
        let batch = EncodedBatch::from_sequences([a, b], 9);
        assert_eq!(batch.seq, 3);
        assert_eq!(batch.input_ids, [1, 2, 3, 4, 9, 9]);
        assert_eq!(batch.attention_mask, [1, 1, 1, 1, 0, 0]);
        assert_eq!(batch.tokens(), 4);
    }

    #[test]
    fn batch_order_covers_every_example_once() {
        let lengths: Vec<usize> = (0..1037).map(|i| (i * 7919) % 113).collect();
        for bucket in [false, true] {
            let batches = batch_order(&lengths, 16, Some(&mut SeededRng::new(3)), bucket).unwrap();
            let mut all: Vec<usize> = batches.concat();
            all.sort();
            assert_eq!(all, (0..1037).collect::<Vec<_>>());
            assert!(batches.iter().all(|b| b.len() <= 16));
        }
        assert_eq!(
            batch_order(&lengths, 16, None, false).unwrap()[0],
            (0..16).collect::<Vec<_>>()
        );
        assert!(batch_order(&lengths, 0, None, false).is_err());
    }

    #[test]
    fn bucketing_reduces_padding() {
        let lengths: Vec<usize> = (0..800).map(|i| 5 + (i * 7919) % 60).collect();
        let padded = |batches: &[Vec<usize>]| -> usize {
            batches
                .iter()
                .map(|b| b.len() * b.iter().map(|&i| lengths[i]).max().unwrap())
                .sum()
        };
        let plain = batch_order(&lengths, 16, Some(&mut SeededRng::new(1)), false).unwrap();
        let bucketed = batch_order(&lengths, 16, Some(&mut SeededRng::new(1)), true).unwrap();
        assert!(
            padded(&bucketed) * 10 < padded(&plain) * 8,
            "{} vs {}",
            padded(&bucketed),
            padded(&plain)
        );
    }
}
