//! Text generation with a [`DecoderForCausalLM`]: greedy or seeded temperature / top-k sampling
//! with a KV cache, stopping at the model's end-of-sequence tokens.

use burn::tensor::Device;

use super::model::{DecoderForCausalLM, KvCache};
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
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            max_new_tokens: 32,
            temperature: 0.0,
            top_k: 0,
            seed: 0,
            stop_tokens: Vec::new(),
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
            if stops.contains(&token) {
                break;
            }
            out.push(token);
            sequence.push(token);
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
