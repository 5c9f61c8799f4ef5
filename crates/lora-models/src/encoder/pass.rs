//! [`EncoderPass`]: what every layer of one encoder forward pass reads besides its input, the
//! padding mask and, where the batch is padded, the positions of its real tokens, so that the
//! position-wise work skips the padding.
//!
//! A padded batch of `batch × seq` positions holds `n ≤ batch·seq` real tokens. Every linear
//! layer, the feed-forward block, the layer norms and the adapters act on each position alone,
//! so they run on the `n` real tokens packed into one row, `[1, n, hidden]`; only attention
//! mixes positions, and it runs in the padded layout (queries, keys and values scattered into
//! `[batch, seq, hidden]` with zeros at the padding, which the mask hides as keys). Results at
//! real positions equal those of the padded computation (each row's products are the same
//! sums); at padding positions the output is zero. The movie-review batches of the benchmarks
//! are half padding, so this halves the products of a forward and a backward pass.

use burn::tensor::{Int, Tensor, TensorData};

/// The real tokens of a padded batch: their flat positions `row · seq + t`, ascending.
#[derive(Debug, Clone)]
pub struct Packing {
    index: Tensor<1, Int>,
    batch: usize,
    seq: usize,
}

impl Packing {
    /// The packing of a batch whose rows mark real tokens `true` (`key_padding[row][t]`), or
    /// `None` when packing saves nothing: no padding, or no real token at all.
    pub fn of(key_padding: &[Vec<bool>], device: &burn::tensor::Device) -> Option<Self> {
        let batch = key_padding.len();
        let seq = key_padding.first().map_or(0, Vec::len);
        let positions: Vec<i64> = key_padding
            .iter()
            .enumerate()
            .flat_map(|(row, real)| {
                real.iter()
                    .enumerate()
                    .filter(|(_, r)| **r)
                    .map(move |(t, _)| (row * seq + t) as i64)
            })
            .collect();
        let tokens = positions.len();
        if tokens == 0 || tokens == batch * seq {
            return None;
        }
        let index = Tensor::from_data(TensorData::new(positions, [tokens]), device);
        Some(Self { index, batch, seq })
    }

    /// The number of real tokens.
    pub fn tokens(&self) -> usize {
        self.index.dims()[0]
    }

    /// `[batch, seq, d]` → the real positions, `[1, tokens, d]`.
    pub fn pack(&self, x: Tensor<3>) -> Tensor<3> {
        let d = x.dims()[2];
        x.reshape([self.batch * self.seq, d])
            .select(0, self.index.clone())
            .reshape([1, self.tokens(), d])
    }

    /// `[1, tokens, d]` → `[batch, seq, d]`, zero at the padding.
    pub fn unpack(&self, x: Tensor<3>) -> Tensor<3> {
        let d = x.dims()[2];
        Tensor::<2>::zeros([self.batch * self.seq, d], &x.device())
            .select_assign(
                0,
                self.index.clone(),
                x.reshape([self.tokens(), d]),
                burn::tensor::IndexingUpdateOp::Assign,
            )
            .reshape([self.batch, self.seq, d])
    }
}

/// What every layer of one forward pass reads: the additive padding mask of the padded layout
/// (`None`: no padding) and the packing of the hidden states between layers (`None`: they are
/// `[batch, seq, hidden]`; `Some`: `[1, tokens, hidden]`). Built by
/// [`Encoder::pass`](super::Encoder::pass).
#[derive(Debug, Clone)]
pub struct EncoderPass {
    /// The additive attention mask of the padding, `[batch, 1, 1 or seq, seq]`.
    pub mask: Option<Tensor<4>>,
    /// The real tokens, where the hidden states are packed.
    pub packing: Option<Packing>,
}

impl EncoderPass {
    /// Hidden states of the padded layout in this pass's layout (packed where it packs).
    pub fn packed(&self, x: Tensor<3>) -> Tensor<3> {
        match &self.packing {
            Some(p) => p.pack(x),
            None => x,
        }
    }

    /// Hidden states of this pass's layout in the padded layout `[batch, seq, d]` (zero at the
    /// padding where it packs).
    pub fn padded(&self, x: Tensor<3>) -> Tensor<3> {
        match &self.packing {
            Some(p) => p.unpack(x),
            None => x,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(t: Tensor<3>) -> Vec<f32> {
        t.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap()
    }

    #[test]
    fn packing_keeps_real_positions_in_order_and_zeroes_padding() {
        let device = lora_core::select_device(Some("flex")).unwrap();
        let real = vec![vec![true, true, false], vec![true, false, false]];
        let packing = Packing::of(&real, &device).expect("the batch is padded");
        assert_eq!(packing.tokens(), 3);
        let x = Tensor::<3>::from_data(
            TensorData::new((0..12).map(|v| v as f32).collect::<Vec<_>>(), [2, 3, 2]),
            &device,
        );
        let packed = packing.pack(x);
        assert_eq!(packed.dims(), [1, 3, 2]);
        assert_eq!(values(packed.clone()), [0.0, 1.0, 2.0, 3.0, 6.0, 7.0]);
        assert_eq!(
            values(packing.unpack(packed)),
            [0.0, 1.0, 2.0, 3.0, 0.0, 0.0, 6.0, 7.0, 0.0, 0.0, 0.0, 0.0]
        );
    }

    #[test]
    fn nothing_to_pack_without_padding_or_without_tokens() {
        let device = lora_core::select_device(Some("flex")).unwrap();
        assert!(Packing::of(&[vec![true; 4], vec![true; 4]], &device).is_none());
        assert!(Packing::of(&[vec![false; 4]], &device).is_none());
        assert!(Packing::of(&[], &device).is_none());
    }
}
