//! Text generation with a [`DecoderForCausalLM`]: greedy or seeded temperature / top-k sampling
//! with a KV cache, stopping at the model's end-of-sequence tokens.

use burn::tensor::{Device, Int, Tensor, TensorData};

use super::cache::KvCache;
use super::model::{DecoderBatch, DecoderForCausalLM};
use crate::error::{ModelError, Result};

/// How [`DecoderForCausalLM::generate`] picks tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationConfig {
    /// Most new tokens to produce.
    pub max_new_tokens: usize,
    /// `0` for greedy decoding, otherwise the softmax temperature.
    pub temperature: f64,
    /// Sample only among the `top_k` most likely tokens (`0`: all).
    pub top_k: usize,
    /// Seed of the sampler (ignored when greedy).
    pub seed: u64,
    /// Stop at any of these ids (in addition to the config's `eos_token_id`).
    pub stop_tokens: Vec<u32>,
    /// Never stop before this many new tokens (stop ids are generated like any other token
    /// until then), as transformers' `min_new_tokens`.
    pub min_new_tokens: usize,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            max_new_tokens: 32,
            temperature: 0.0,
            top_k: 0,
            seed: 0,
            stop_tokens: Vec::new(),
            min_new_tokens: 0,
        }
    }
}

impl DecoderForCausalLM {
    /// Generates up to `config.max_new_tokens` tokens after `prompt`, greedily or by sampling,
    /// with a KV cache; stops early at an end-of-sequence token (which is not returned).
    pub fn generate(
        &self,
        prompt: &[u32],
        config: &GenerationConfig,
        device: &Device,
    ) -> Result<Vec<u32>> {
        if prompt.is_empty() {
            return Err(ModelError::Input(
                "generation needs a non-empty prompt".into(),
            ));
        }
        let vocab = self.config().vocab_size;
        if let Some(bad) = prompt.iter().find(|&&t| t as usize >= vocab) {
            return Err(ModelError::Input(format!(
                "token id {bad} is out of range for a vocabulary of {vocab}"
            )));
        }
        let mut stops = self.config().eos_token_ids.clone();
        stops.extend(&config.stop_tokens);
        let mut rng = SplitMix64(config.seed);
        let mut cache = KvCache::new();
        let mut sequence = prompt.to_vec();
        let mut out = Vec::new();
        for _ in 0..config.max_new_tokens {
            if sequence.len() > self.config().max_position_embeddings {
                break;
            }
            let logits = self.next_logits(&sequence, &mut cache, device)?;
            let logits = logits
                .into_data()
                .try_to_vec::<f32>()
                .map_err(|e| ModelError::Input(format!("cannot read logits back: {e:?}")))?;
            let token = pick_token(&logits, config, &mut rng);
            if out.len() >= config.min_new_tokens && stops.contains(&token) {
                break;
            }
            out.push(token);
            sequence.push(token);
        }
        Ok(out)
    }
}

impl DecoderForCausalLM {
    /// Generates for several prompts at once, left-padded into one batch with a KV cache (each
    /// row's positions count from its own first token, and padding is never attended): the
    /// same tokens as [`generate`](Self::generate) row by row, at the cost of one forward per
    /// step for the whole batch. Rows stop at end-of-sequence; sampling draws from one
    /// generator per row seeded `seed + row`.
    pub fn generate_batch(
        &self,
        prompts: &[Vec<u32>],
        config: &GenerationConfig,
        device: &Device,
    ) -> Result<Vec<Vec<u32>>> {
        let longrope = matches!(
            self.config().rope_for(0).map(|r| &r.scaling),
            Some(crate::layers::rope::RopeScaling::LongRope { .. })
        );
        if prompts.len() <= 1 || longrope {
            // LongRoPE may have to recompute a row's cache when it grows past the original
            // context (see `next_logits`): rows go one at a time.
            return prompts
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let seeded = GenerationConfig {
                        seed: config.seed.wrapping_add(i as u64),
                        ..config.clone()
                    };
                    self.generate(p, &seeded, device)
                })
                .collect();
        }
        let vocab = self.config().vocab_size;
        for p in prompts {
            if p.is_empty() {
                return Err(ModelError::Input(
                    "generation needs non-empty prompts".into(),
                ));
            }
            if let Some(bad) = p.iter().find(|&&t| t as usize >= vocab) {
                return Err(ModelError::Input(format!(
                    "token id {bad} is out of range for a vocabulary of {vocab}"
                )));
            }
        }
        let mut stops = self.config().eos_token_ids.clone();
        stops.extend(&config.stop_tokens);
        let rows = prompts.len();
        let width = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let pad = self.config().pad_token_id.unwrap_or(0);
        let mut ids = Vec::with_capacity(rows * width);
        let mut key_padding: Vec<Vec<bool>> = Vec::with_capacity(rows);
        let mut positions = Vec::with_capacity(rows * width);
        let mut next_position = Vec::with_capacity(rows);
        for p in prompts {
            let left = width - p.len();
            ids.extend(std::iter::repeat_n(i64::from(pad), left));
            ids.extend(p.iter().map(|&t| i64::from(t)));
            let mut mask = vec![false; left];
            mask.extend(std::iter::repeat_n(true, p.len()));
            key_padding.push(mask);
            positions.extend(std::iter::repeat_n(0, left));
            positions.extend(0..p.len());
            next_position.push(p.len());
        }
        let mut rngs: Vec<SplitMix64> = (0..rows)
            .map(|r| SplitMix64(config.seed.wrapping_add(r as u64)))
            .collect();
        let mut cache = KvCache::new();
        let mut out: Vec<Vec<u32>> = vec![Vec::new(); rows];
        let mut done = vec![false; rows];
        let mut input = Tensor::<2, Int>::from_data(TensorData::new(ids, [rows, width]), device);
        for _ in 0..config.max_new_tokens {
            if next_position
                .iter()
                .any(|&p| p >= self.config().max_position_embeddings)
            {
                break;
            }
            let batch = DecoderBatch {
                input_ids: input,
                key_padding: key_padding.clone(),
                positions,
                segments: Vec::new(),
            };
            let hidden = self.hidden_states(&batch, &mut cache)?;
            let [b, s, d] = hidden.dims();
            let last = hidden.slice([0..b, s - 1..s, 0..d]);
            let logits = self
                .logits(last)
                .into_data()
                .try_to_vec::<f32>()
                .map_err(|e| ModelError::Input(format!("cannot read logits back: {e:?}")))?;
            let mut next = Vec::with_capacity(rows);
            for r in 0..rows {
                let row = &logits[r * vocab..(r + 1) * vocab];
                let token = pick_token(row, config, &mut rngs[r]);
                if !done[r] {
                    if out[r].len() >= config.min_new_tokens && stops.contains(&token) {
                        done[r] = true;
                    } else {
                        out[r].push(token);
                    }
                }
                next.push(i64::from(token));
            }
            if done.iter().all(|&d| d) {
                break;
            }
            for mask in &mut key_padding {
                mask.push(true);
            }
            positions = next_position.clone();
            for p in &mut next_position {
                *p += 1;
            }
            input = Tensor::<2, Int>::from_data(TensorData::new(next, [rows, 1]), device);
        }
        Ok(out)
    }
}

/// Greedy argmax (ties go to the lowest id) or temperature / top-k sampling.
pub fn pick_token(logits: &[f32], config: &GenerationConfig, rng: &mut SplitMix64) -> u32 {
    if config.temperature <= 0.0 {
        let mut best = 0;
        for (i, &l) in logits.iter().enumerate() {
            if l > logits[best] {
                best = i;
            }
        }
        return best as u32;
    }
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    if config.top_k > 0 {
        order.truncate(config.top_k);
    }
    let max = logits[order[0]] as f64;
    let weights: Vec<f64> = order
        .iter()
        .map(|&i| ((logits[i] as f64 - max) / config.temperature).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let mut u = rng.next_f64() * total;
    for (&i, w) in order.iter().zip(&weights) {
        if u < *w {
            return i as u32;
        }
        u -= w;
    }
    order[order.len() - 1] as u32
}

/// A tiny deterministic generator for sampling (SplitMix64).
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// A uniform number in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum_and_sampling_is_seeded() {
        let logits = [0.0, 3.0, 3.0, -1.0];
        let greedy = GenerationConfig::default();
        assert_eq!(pick_token(&logits, &greedy, &mut SplitMix64(0)), 1);
        let sample = GenerationConfig {
            temperature: 1.0,
            top_k: 2,
            seed: 7,
            ..Default::default()
        };
        let draw = |seed| {
            let mut rng = SplitMix64(seed);
            (0..20)
                .map(|_| pick_token(&logits, &sample, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert!(draw(7).iter().all(|t| *t == 1 || *t == 2));
    }
}
