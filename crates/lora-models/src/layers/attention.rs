//! Scaled dot-product attention shared by every family: the additive mask (bidirectional or
//! causal, an optional sliding window, key padding, packed segments) and the core
//! `softmax(softcap(q·kᵀ·scale) + mask)·v` with grouped-query heads.

use burn::nn::Dropout;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};

/// The additive value that hides a key (`exp` underflows to exactly 0 in `f32`).
pub const MASKED: f32 = -1.0e9;

/// Which keys each query may see.
#[derive(Debug, Clone, Default)]
pub struct MaskSpec {
    /// Keys after the query are hidden (decoders).
    pub causal: bool,
    /// A query at position `i` sees keys `j` with `i − j < window` only (Mistral, Gemma).
    pub window: Option<usize>,
    /// Per row, `true` for real tokens and `false` for padding, over all keys (past and
    /// present): padding keys are hidden. Empty: no padding.
    pub key_padding: Vec<Vec<bool>>,
    /// Per row, a segment id per key position (packing): a query sees keys of its own segment
    /// only. Empty: one segment.
    pub segments: Vec<Vec<u32>>,
}

impl MaskSpec {
    /// The additive mask `[rows, 1, seq, past + seq]` for `seq` queries after `past` cached
    /// positions, or `None` when nothing is hidden.
    pub fn build(
        &self,
        rows: usize,
        past: usize,
        seq: usize,
        device: &Device,
    ) -> Option<Tensor<4>> {
        let total = past + seq;
        let per_row = !self.key_padding.is_empty() || !self.segments.is_empty();
        let hides_something =
            self.causal && seq > 1 || self.window.is_some_and(|w| total > w) || per_row;
        if !hides_something {
            return None;
        }
        let rows_built = if per_row { rows } else { 1 };
        let mut data = Vec::with_capacity(rows_built * seq * total);
        for r in 0..rows_built {
            for i in 0..seq {
                let q = past + i;
                for j in 0..total {
                    let visible = (!self.causal || j <= q)
                        && self.window.is_none_or(|w| q < j + w)
                        && self
                            .key_padding
                            .get(r)
                            .is_none_or(|pad| pad.get(j).copied().unwrap_or(true))
                        && self
                            .segments
                            .get(r)
                            .is_none_or(|seg| seg.get(j) == seg.get(q));
                    data.push(if visible { 0.0 } else { MASKED });
                }
            }
        }
        Some(Tensor::from_data(
            TensorData::new(data, [rows_built, 1, seq, total]),
            device,
        ))
    }
}

/// `dropout(softmax(softcap(q·kᵀ·scale) + mask))·v` with `q: [b, heads, s, d]` and `k`, `v`:
/// `[b, kv_heads, t, d]` (query head `h` uses key/value head `h / (heads / kv_heads)`), as
/// `[b, s, heads·d]`. Dropout on the probabilities acts only while training.
pub fn attend(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    scale: f64,
    softcap: Option<f64>,
    mask: Option<&Tensor<4>>,
    dropout: Option<&Dropout>,
) -> Tensor<3> {
    let [b, heads, s, d] = q.dims();
    let [_, kv_heads, t, dv] = v.dims();
    // Grouped-query attention without repeating keys and values: the `n_rep` query heads that
    // share a key/value head (heads `g·n_rep .. (g+1)·n_rep`, as transformers' `repeat_kv`
    // pairs them) are stacked along the query axis, `[b, kv_heads, n_rep·s, d]`, so each
    // matmul reads the (possibly cached, strided) keys and values once.
    let n_rep = heads / kv_heads;
    let grouped = n_rep > 1;
    let q = if grouped {
        q.reshape([b, kv_heads, n_rep * s, d])
    } else {
        q
    };
    let mut scores = q
        .matmul(k.swap_dims(2, 3))
        .reshape([b, heads, s, t])
        .mul_scalar(scale);
    if let Some(cap) = softcap {
        scores = scores.div_scalar(cap).tanh().mul_scalar(cap);
    }
    if let Some(mask) = mask {
        scores = scores + mask.clone();
    }
    let mut probs = softmax(scores, 3);
    if let Some(dropout) = dropout {
        probs = dropout.forward(probs);
    }
    let probs = if grouped {
        probs.reshape([b, kv_heads, n_rep * s, t])
    } else {
        probs
    };
    probs
        .matmul(v)
        .reshape([b, heads, s, dv])
        .swap_dims(1, 2)
        .reshape([b, s, heads * dv])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visible(spec: &MaskSpec, rows: usize, past: usize, seq: usize) -> Vec<Vec<Vec<bool>>> {
        let device = lora_core::select_device(Some("flex")).unwrap();
        let mask = spec.build(rows, past, seq, &device).unwrap();
        let [r, _, s, t] = mask.dims();
        let data = mask.into_data().try_to_vec::<f32>().unwrap();
        (0..r)
            .map(|r| {
                (0..s)
                    .map(|i| (0..t).map(|j| data[(r * s + i) * t + j] == 0.0).collect())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn sliding_window_counts_the_query_itself() {
        // transformers: key j is visible from query i iff 0 <= i - j < window.
        let spec = MaskSpec {
            causal: true,
            window: Some(3),
            ..Default::default()
        };
        let m = &visible(&spec, 1, 0, 5)[0];
        assert_eq!(m[3], [false, true, true, true, false]);
        assert_eq!(m[4], [false, false, true, true, true]);
        // With two cached positions, the first new query is position 2.
        let m = &visible(&spec, 1, 2, 2)[0];
        assert_eq!(m[0], [true, true, true, false]);
    }

    #[test]
    fn padding_and_segments_hide_keys_per_row() {
        let spec = MaskSpec {
            causal: true,
            key_padding: vec![vec![true, true, false], vec![true, true, true]],
            segments: vec![vec![0, 0, 0], vec![0, 1, 1]],
            ..Default::default()
        };
        let m = visible(&spec, 2, 0, 3);
        assert_eq!(m[0][2], [true, true, false]);
        assert_eq!(m[1][2], [false, true, true]);
        let none = MaskSpec::default();
        let device = lora_core::select_device(Some("flex")).unwrap();
        assert!(none.build(2, 0, 3, &device).is_none());
    }
}
