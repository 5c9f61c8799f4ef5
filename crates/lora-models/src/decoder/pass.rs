//! [`DecoderPass`]: what every layer of one forward pass reads besides its input — RoPE tables
//! and attention masks (full and sliding-window), built once per batch and checked against it.

use burn::tensor::{Device, Int, Tensor, TensorData};

use super::config::{DecoderConfig, LayerKind, Positions};
use super::model::DecoderBatch;
use crate::error::{ModelError, Result};
use crate::layers::attention::MaskSpec;

/// The per-batch state of one decoder forward pass: position ids, RoPE tables and masks. Built by
/// [`DecoderPass::new`]; [`DecoderForCausalLM::layer_forward`](super::DecoderForCausalLM::layer_forward)
/// reads it, so a pass that runs the layers one at a time (layer-wise recomputation) builds it
/// once.
#[derive(Debug, Clone)]
pub struct DecoderPass {
    positions: Vec<usize>,
    device: Device,
    rows: usize,
    seq: usize,
    full_tables: Option<(Tensor<4>, Tensor<4>)>,
    sliding_tables: Option<(Tensor<4>, Tensor<4>)>,
    full_mask: Option<Tensor<4>>,
    sliding_mask: Option<Tensor<4>>,
}

impl DecoderPass {
    /// Checks `batch` (position ids, padding and segment rows) for a model with `config` whose
    /// cache already holds `past` positions, and builds the tables and masks on the batch's
    /// device.
    pub fn new(config: &DecoderConfig, batch: &DecoderBatch, past: usize) -> Result<Self> {
        let [rows, seq] = batch.input_ids.dims();
        if seq == 0 {
            return Err(ModelError::Input("empty input sequence".into()));
        }
        let positions: Vec<usize> = if batch.positions.is_empty() {
            (0..rows).flat_map(|_| past..past + seq).collect()
        } else if batch.positions.len() == rows * seq {
            batch.positions.clone()
        } else {
            return Err(ModelError::Input(format!(
                "{} position ids for a batch of {rows} × {seq} tokens",
                batch.positions.len()
            )));
        };
        let max_position = positions.iter().copied().max().unwrap_or(0);
        if max_position >= config.max_position_embeddings
            && matches!(config.positions, Positions::Learned(_))
        {
            return Err(ModelError::Input(format!(
                "position {max_position} is past the {} learned positions of this model",
                config.max_position_embeddings
            )));
        }
        let keys = past + seq;
        let bad_rows = |lens: Vec<usize>| {
            !lens.is_empty() && (lens.len() != rows || lens.iter().any(|&l| l != keys))
        };
        if bad_rows(batch.key_padding.iter().map(Vec::len).collect())
            || bad_rows(batch.segments.iter().map(Vec::len).collect())
        {
            return Err(ModelError::Input(format!(
                "key_padding and segments must have {rows} rows of {keys} keys"
            )));
        }
        let device = batch.input_ids.device();
        // Positions shared by every row need one table row, not one per batch row.
        let shared = batch.positions.is_empty();
        let table_rows = if shared { 1 } else { rows };
        let table_positions = if shared {
            &positions[..seq]
        } else {
            &positions[..]
        };
        let (full_tables, sliding_tables) = match &config.positions {
            Positions::Learned(_) => (None, None),
            Positions::Rope { full, sliding } => (
                Some(full.tables(table_positions, table_rows, &device)),
                sliding
                    .as_ref()
                    .map(|r| r.tables(table_positions, table_rows, &device)),
            ),
        };
        let mask = |window: Option<usize>| {
            MaskSpec {
                causal: true,
                window,
                key_padding: batch.key_padding.clone(),
                segments: batch.segments.clone(),
            }
            .build(rows, past, seq, &device)
        };
        let full_mask = mask(None);
        let sliding_mask = config
            .layer_kinds
            .contains(&LayerKind::Sliding)
            .then(|| mask(config.sliding_window))
            .flatten();
        Ok(Self {
            positions,
            device,
            rows,
            seq,
            full_tables,
            sliding_tables,
            full_mask,
            sliding_mask,
        })
    }

    /// The RoPE tables and mask of a layer of `kind` (a sliding layer falls back to the full
    /// ones where the model has no separate sliding tables or window).
    pub fn for_layer(
        &self,
        kind: LayerKind,
    ) -> (Option<&(Tensor<4>, Tensor<4>)>, Option<&Tensor<4>>) {
        match kind {
            LayerKind::Sliding => (
                self.sliding_tables.as_ref().or(self.full_tables.as_ref()),
                self.sliding_mask.as_ref().or(self.full_mask.as_ref()),
            ),
            _ => (self.full_tables.as_ref(), self.full_mask.as_ref()),
        }
    }

    /// Every new token's position id, `[batch, seq]` (for learned position embeddings).
    pub fn position_ids(&self) -> Tensor<2, Int> {
        let ids: Vec<i64> = self.positions.iter().map(|&p| p as i64).collect();
        Tensor::from_data(TensorData::new(ids, [self.rows, self.seq]), &self.device)
    }
}
