//! [`KvCache`]: the keys and values of the positions a decoder has already seen, kept in buffers
//! that grow geometrically, so that decoding one more token writes one position instead of
//! copying the whole cache.

use burn::tensor::Tensor;

/// One layer's cached keys and values, `[batch, kv_heads, capacity, head_dim]`, of which the
/// first `len` positions are filled.
#[derive(Debug, Clone)]
pub struct LayerCache {
    keys: Tensor<4>,
    values: Tensor<4>,
    len: usize,
}

impl LayerCache {
    /// A cache holding exactly `keys` and `values` (`[batch, kv_heads, seq, head_dim]`),
    /// without copying them.
    fn new(keys: Tensor<4>, values: Tensor<4>) -> Self {
        let len = keys.dims()[2];
        Self { keys, values, len }
    }

    /// Appends `keys` and `values` after the cached positions and returns views of all of them.
    /// The buffers double when full (one copy per doubling); otherwise the new positions are
    /// written in place (`slice_assign` reuses a uniquely owned buffer: the cache owns its
    /// buffers alone between steps, since the views handed out are dropped with the step).
    fn append(self, keys: Tensor<4>, values: Tensor<4>) -> (Self, Tensor<4>, Tensor<4>) {
        let [b, h, s, d] = keys.dims();
        let dv = values.dims()[3];
        let Self {
            keys: mut key_buffer,
            values: mut value_buffer,
            len,
        } = self;
        let capacity = key_buffer.dims()[2];
        let end = len + s;
        if end > capacity {
            let grown = (2 * capacity).max(end);
            let grow = |old: Tensor<4>, width: usize| {
                let filled = old.slice([0..b, 0..h, 0..len, 0..width]);
                Tensor::zeros([b, h, grown, width], &filled.device())
                    .slice_assign([0..b, 0..h, 0..len, 0..width], filled)
            };
            key_buffer = grow(key_buffer, d);
            value_buffer = grow(value_buffer, dv);
        }
        let key_buffer = key_buffer.slice_assign([0..b, 0..h, len..end, 0..d], keys.detach());
        let value_buffer =
            value_buffer.slice_assign([0..b, 0..h, len..end, 0..dv], values.detach());
        let all_keys = key_buffer.clone().slice([0..b, 0..h, 0..end, 0..d]);
        let all_values = value_buffer.clone().slice([0..b, 0..h, 0..end, 0..dv]);
        let cache = Self {
            keys: key_buffer,
            values: value_buffer,
            len: end,
        };
        (cache, all_keys, all_values)
    }
}

/// Cached keys and values of earlier positions, one entry per layer, `[batch, kv_heads, past,
/// head_dim]`, after RoPE.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    pub(crate) layers: Vec<Option<LayerCache>>,
}

impl KvCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .map(|l| l.len)
            .unwrap_or(0)
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Adds a layer's new `keys` and `values` to its cache `entry` and returns the keys and values
/// of every position so far (the new ones themselves when the cache was empty: no copy).
pub(crate) fn extend(
    entry: &mut Option<LayerCache>,
    keys: Tensor<4>,
    values: Tensor<4>,
) -> (Tensor<4>, Tensor<4>) {
    match entry.take() {
        Some(cache) => {
            let (cache, all_keys, all_values) = cache.append(keys, values);
            *entry = Some(cache);
            (all_keys, all_values)
        }
        None => {
            *entry = Some(LayerCache::new(
                keys.clone().detach(),
                values.clone().detach(),
            ));
            (keys, values)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn values(t: Tensor<4>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn appending_equals_concatenating() {
        let device = lora_core::select_device(Some("flex")).unwrap();
        let step = |s: usize| {
            (
                Tensor::<4>::random([2, 3, s, 4], Distribution::Normal(0.0, 1.0), &device),
                Tensor::<4>::random([2, 3, s, 4], Distribution::Normal(0.0, 1.0), &device),
            )
        };
        let mut entry = None;
        let (k0, v0) = step(5);
        let (mut all_k, mut all_v) = (k0.clone(), v0.clone());
        extend(&mut entry, k0, v0);
        // Single tokens past several doublings, then a block of three.
        for s in [1, 1, 1, 1, 1, 1, 3, 1] {
            let (k, v) = step(s);
            all_k = Tensor::cat(vec![all_k, k.clone()], 2);
            all_v = Tensor::cat(vec![all_v, v.clone()], 2);
            let (ck, cv) = extend(&mut entry, k, v);
            assert_eq!(values(ck), values(all_k.clone()));
            assert_eq!(values(cv), values(all_v.clone()));
        }
        // 5 + 6 + 3 + 1 positions; the buffer grew 5 → 10 → 20, twice in ten appends.
        assert_eq!(entry.as_ref().unwrap().len, 15);
        assert_eq!(entry.as_ref().unwrap().keys.dims()[2], 20);
    }
}
