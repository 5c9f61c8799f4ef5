//! Rotary position embeddings as transformers 5 computes them: the default frequencies and the
//! `linear`, `dynamic`, `llama3`, `yarn` and `longrope` scalings, half-split (`rotate_half`)
//! layout, optional partial rotary dimension, and the attention factor that multiplies both
//! `cos` and `sin`.
//!
//! Settings come from `config.json`: transformers 5 writes a `rope_parameters` object
//! (`{"rope_type": …, "rope_theta": …, …}`, or one such object per layer type for Gemma 3);
//! older files have a top-level `rope_theta` and a `rope_scaling` object (with `type` or
//! `rope_type`). Both are read; an unknown `rope_type` is an error that names the supported ones.

use burn::tensor::{Device, Tensor, TensorData};
use serde_json::{Map, Value};

/// The RoPE scaling types implemented here.
pub const ROPE_TYPES: [&str; 6] = ["default", "linear", "dynamic", "llama3", "yarn", "longrope"];

/// How inverse frequencies are scaled.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    Default,
    /// Positions divided by `factor` (`inv_freq / factor`).
    Linear {
        /// The factor.
        factor: f64,
    },
    /// NTK-aware: the base grows once a sequence is longer than `max_position_embeddings`.
    Dynamic {
        /// The factor.
        factor: f64,
    },
    /// Llama 3.1's frequency-dependent smoothing.
    Llama3 {
        /// The factor.
        factor: f64,
        /// `low_freq_factor`.
        low_freq_factor: f64,
        /// `high_freq_factor`.
        high_freq_factor: f64,
        /// `original_max_position_embeddings`.
        original_max: f64,
    },
    /// YaRN: interpolation blended with extrapolation by a linear ramp over the frequencies, and
    /// an attention factor.
    Yarn {
        /// The factor.
        factor: f64,
        /// `original_max_position_embeddings`.
        original_max: f64,
        /// `beta_fast` (default 32).
        beta_fast: f64,
        /// `beta_slow` (default 1).
        beta_slow: f64,
        /// `truncate` (default true).
        truncate: bool,
        /// The attention factor (`attention_factor`, or the mscale formula).
        attention_factor: f64,
    },
    /// Phi-3's LongRoPE: per-frequency factors, `long` once a forward reaches past
    /// `original_max_position_embeddings`, else `short`.
    LongRope {
        /// `short_factor`, one per frequency.
        short: Vec<f64>,
        /// `long_factor`, one per frequency.
        long: Vec<f64>,
        /// `original_max_position_embeddings`.
        original_max: usize,
        /// The attention factor.
        attention_factor: f64,
    },
}

/// RoPE settings for one kind of layer.
#[derive(Debug, Clone, PartialEq)]
pub struct RopeConfig {
    /// The base `θ`.
    pub theta: f64,
    /// Dimensions rotated (`head_dim · partial_rotary_factor`), even.
    pub rotary_dim: usize,
    /// `max_position_embeddings` (for `dynamic`).
    pub max_positions: usize,
    /// The scaling.
    pub scaling: RopeScaling,
}

/// Reads one flat RoPE parameter object (`rope_parameters`, or a legacy `rope_scaling` merged
/// with `rope_theta`). `top` is the whole config (for `original_max_position_embeddings`, which
/// Phi-3 keeps at the top level).
pub fn parse_rope(
    params: &Map<String, Value>,
    top: &Map<String, Value>,
    head_dim: usize,
    max_positions: usize,
    default_theta: f64,
) -> Result<RopeConfig, String> {
    let num = |key: &str| params.get(key).and_then(Value::as_f64);
    let theta = num("rope_theta").unwrap_or(default_theta);
    if !(theta.is_finite() && theta > 1.0) {
        return Err(format!(
            "rope_theta {theta} must be a finite number above 1"
        ));
    }
    let partial = num("partial_rotary_factor")
        .or_else(|| top.get("partial_rotary_factor").and_then(Value::as_f64))
        .unwrap_or(1.0);
    if !(partial > 0.0 && partial <= 1.0) {
        return Err(format!(
            "partial_rotary_factor {partial} must lie in (0, 1]"
        ));
    }
    let rotary_dim = (head_dim as f64 * partial) as usize;
    if rotary_dim == 0 || !rotary_dim.is_multiple_of(2) {
        return Err(format!(
            "the rotary dimension {rotary_dim} (head_dim {head_dim} × partial_rotary_factor \
             {partial}) must be even and positive"
        ));
    }
    let kind = params
        .get("rope_type")
        .or_else(|| params.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let original_max = || {
        num("original_max_position_embeddings")
            .or_else(|| {
                top.get("original_max_position_embeddings")
                    .and_then(Value::as_f64)
            })
            .unwrap_or(max_positions as f64)
    };
    let factor = |required: bool| -> Result<f64, String> {
        match num("factor") {
            Some(f) if f.is_finite() && f > 0.0 => Ok(f),
            Some(f) => Err(format!("rope factor {f} must be finite and positive")),
            None if required => Err(format!("rope_type '{kind}' needs a 'factor'")),
            None => Ok(max_positions as f64 / original_max()),
        }
    };
    let scaling = match kind {
        "default" => RopeScaling::Default,
        "linear" => RopeScaling::Linear {
            factor: factor(true)?,
        },
        "dynamic" => RopeScaling::Dynamic {
            factor: factor(true)?,
        },
        "llama3" => {
            let need =
                |key: &str| num(key).ok_or_else(|| format!("rope_type 'llama3' needs '{key}'"));
            let (low, high) = (need("low_freq_factor")?, need("high_freq_factor")?);
            if high <= low {
                return Err(format!(
                    "llama3 rope needs high_freq_factor ({high}) > low_freq_factor ({low})"
                ));
            }
            RopeScaling::Llama3 {
                factor: factor(true)?,
                low_freq_factor: low,
                high_freq_factor: high,
                original_max: original_max(),
            }
        }
        "yarn" => {
            let factor = factor(false)?;
            let mscale = |scale: f64, m: f64| {
                if scale <= 1.0 {
                    1.0
                } else {
                    0.1 * m * scale.ln() + 1.0
                }
            };
            let attention_factor = match num("attention_factor") {
                Some(a) => a,
                None => match (num("mscale"), num("mscale_all_dim")) {
                    (Some(m), Some(all)) if m != 0.0 && all != 0.0 => {
                        mscale(factor, m) / mscale(factor, all)
                    }
                    _ => mscale(factor, 1.0),
                },
            };
            RopeScaling::Yarn {
                factor,
                original_max: original_max(),
                beta_fast: num("beta_fast").filter(|b| *b != 0.0).unwrap_or(32.0),
                beta_slow: num("beta_slow").filter(|b| *b != 0.0).unwrap_or(1.0),
                truncate: params
                    .get("truncate")
                    .and_then(Value::as_bool)
                    .unwrap_or(true),
                attention_factor,
            }
        }
        "longrope" | "su" => {
            let list = |key: &str| -> Result<Vec<f64>, String> {
                let v: Option<Vec<f64>> = params
                    .get(key)
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_f64).collect());
                match v {
                    Some(v) if v.len() == rotary_dim / 2 => Ok(v),
                    Some(v) => Err(format!(
                        "longrope '{key}' has {} values; the rotary dimension needs {}",
                        v.len(),
                        rotary_dim / 2
                    )),
                    None => Err(format!("rope_type 'longrope' needs '{key}'")),
                }
            };
            let original = original_max();
            let factor = num("factor").unwrap_or(max_positions as f64 / original);
            let attention_factor = num("attention_factor").unwrap_or(if factor <= 1.0 {
                1.0
            } else {
                (1.0 + factor.ln() / original.ln()).sqrt()
            });
            RopeScaling::LongRope {
                short: list("short_factor")?,
                long: list("long_factor")?,
                original_max: original as usize,
                attention_factor,
            }
        }
        other => {
            return Err(format!(
                "rope_type '{other}' is not supported (supported: {})",
                ROPE_TYPES.join(", ")
            ));
        }
    };
    Ok(RopeConfig {
        theta,
        rotary_dim,
        max_positions,
        scaling,
    })
}

impl RopeConfig {
    /// Plain RoPE with base `theta` over `rotary_dim` dimensions.
    pub fn plain(theta: f64, rotary_dim: usize, max_positions: usize) -> Self {
        Self {
            theta,
            rotary_dim,
            max_positions,
            scaling: RopeScaling::Default,
        }
    }

    /// `base ** (2i / dim)` for `i < dim / 2`, in `f32` as PyTorch computes it.
    fn powers(&self, base: f64) -> Vec<f32> {
        let dim = self.rotary_dim;
        (0..dim / 2)
            .map(|i| (base as f32).powf((2 * i) as f32 / dim as f32))
            .collect()
    }

    /// The inverse frequencies and the attention factor for a forward whose largest position is
    /// `max_position` (only `dynamic` and `longrope` depend on it).
    pub fn inv_freq(&self, max_position: usize) -> (Vec<f32>, f32) {
        let dim = self.rotary_dim as f64;
        let plain = |base: f64| -> Vec<f32> { self.powers(base).iter().map(|p| 1.0 / p).collect() };
        match &self.scaling {
            RopeScaling::Default => (plain(self.theta), 1.0),
            RopeScaling::Linear { factor } => (
                plain(self.theta)
                    .into_iter()
                    .map(|f| f / *factor as f32)
                    .collect(),
                1.0,
            ),
            RopeScaling::Dynamic { factor } => {
                let seq = (max_position + 1).max(self.max_positions) as f64;
                let max = self.max_positions as f64;
                let base =
                    self.theta * ((factor * seq / max) - (factor - 1.0)).powf(dim / (dim - 2.0));
                (plain(base), 1.0)
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max,
            } => {
                let (factor, lf, hf) = (
                    *factor as f32,
                    *low_freq_factor as f32,
                    *high_freq_factor as f32,
                );
                let old = *original_max as f32;
                let (low_wavelen, high_wavelen) = (old / lf, old / hf);
                let two_pi = (2.0 * std::f64::consts::PI) as f32;
                let inv = plain(self.theta)
                    .into_iter()
                    .map(|f| {
                        let wavelen = two_pi / f;
                        let scaled = if wavelen > low_wavelen { f / factor } else { f };
                        let smooth = (old / wavelen - lf) / (hf - lf);
                        let smoothed = (1.0 - smooth) * scaled / factor + smooth * scaled;
                        // NaN-free here: both comparisons as transformers writes them.
                        let medium = wavelen >= high_wavelen && wavelen <= low_wavelen;
                        if medium { smoothed } else { scaled }
                    })
                    .collect();
                (inv, 1.0)
            }
            RopeScaling::Yarn {
                factor,
                original_max,
                beta_fast,
                beta_slow,
                truncate,
                attention_factor,
            } => {
                let base = self.theta;
                let correction = |rotations: f64| {
                    (dim * (original_max / (rotations * 2.0 * std::f64::consts::PI)).ln())
                        / (2.0 * base.ln())
                };
                let (mut low, mut high) = (correction(*beta_fast), correction(*beta_slow));
                if *truncate {
                    low = low.floor();
                    high = high.ceil();
                }
                let low = low.max(0.0);
                let mut high = high.min(dim - 1.0);
                if low == high {
                    high += 0.001;
                }
                let inv = self
                    .powers(base)
                    .into_iter()
                    .enumerate()
                    .map(|(i, p)| {
                        let ramp =
                            ((i as f32 - low as f32) / (high as f32 - low as f32)).clamp(0.0, 1.0);
                        let extrapolation = 1.0 - ramp;
                        let inv_extrap = 1.0 / p;
                        let inv_interp = 1.0 / (*factor as f32 * p);
                        inv_interp * (1.0 - extrapolation) + inv_extrap * extrapolation
                    })
                    .collect();
                (inv, *attention_factor as f32)
            }
            RopeScaling::LongRope {
                short,
                long,
                original_max,
                attention_factor,
            } => {
                let ext = if max_position + 1 > *original_max {
                    long
                } else {
                    short
                };
                let inv = self
                    .powers(self.theta)
                    .into_iter()
                    .zip(ext)
                    .map(|(p, e)| 1.0 / (*e as f32 * p))
                    .collect();
                (inv, *attention_factor as f32)
            }
        }
    }

    /// `cos` and `sin` tables `[rows, 1, seq, rotary_dim]` for the positions of each row
    /// (`positions.len() == rows · seq`), each frequency repeated over both halves, times the
    /// attention factor.
    pub fn tables(
        &self,
        positions: &[usize],
        rows: usize,
        device: &Device,
    ) -> (Tensor<4>, Tensor<4>) {
        let seq = positions.len() / rows.max(1);
        let max_position = positions.iter().copied().max().unwrap_or(0);
        let (inv_freq, factor) = self.inv_freq(max_position);
        let dim = self.rotary_dim;
        let mut cos = Vec::with_capacity(positions.len() * dim);
        let mut sin = Vec::with_capacity(positions.len() * dim);
        for &pos in positions {
            for _half in 0..2 {
                for f in &inv_freq {
                    let angle = pos as f32 * f;
                    cos.push(angle.cos() * factor);
                    sin.push(angle.sin() * factor);
                }
            }
        }
        let make =
            |v: Vec<f32>| Tensor::<4>::from_data(TensorData::new(v, [rows, 1, seq, dim]), device);
        (make(cos), make(sin))
    }
}

/// `x·cos + rotate_half(x)·sin` on the first `cos.dims()[3]` dimensions of `x` (`[b, h, s, d]`),
/// the rest passed through, with `rotate_half([x1, x2]) = [-x2, x1]`.
pub fn apply_rope(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
    let [b, h, s, d] = x.dims();
    let rot = cos.dims()[3];
    let (rotated, rest) = if rot == d {
        (x, None)
    } else {
        (
            x.clone().slice([0..b, 0..h, 0..s, 0..rot]),
            Some(x.slice([0..b, 0..h, 0..s, rot..d])),
        )
    };
    let x1 = rotated.clone().slice([0..b, 0..h, 0..s, 0..rot / 2]);
    let x2 = rotated.clone().slice([0..b, 0..h, 0..s, rot / 2..rot]);
    let half = Tensor::cat(vec![x2.neg(), x1], 3);
    let out = rotated * cos.clone() + half * sin.clone();
    match rest {
        Some(rest) => Tensor::cat(vec![out, rest], 3),
        None => out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(params: Value) -> Result<RopeConfig, String> {
        let top = Map::new();
        parse_rope(params.as_object().unwrap(), &top, 8, 64, 10_000.0)
    }

    #[test]
    fn default_and_linear_frequencies() {
        let plain = parse(json!({"rope_theta": 10000.0})).unwrap();
        let (inv, f) = plain.inv_freq(0);
        assert_eq!(f, 1.0);
        let expected: Vec<f32> = (0..4)
            .map(|i| 1.0 / 10000f32.powf(i as f32 / 4.0))
            .collect();
        assert_eq!(inv, expected);
        let linear = parse(json!({"rope_type": "linear", "factor": 4.0})).unwrap();
        let (lin, _) = linear.inv_freq(0);
        for (a, b) in lin.iter().zip(&expected) {
            assert_eq!(*a, b / 4.0);
        }
    }

    #[test]
    fn llama3_keeps_high_frequencies_and_divides_low_ones() {
        let llama3 = |original: f64| {
            parse(
                json!({"type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": original}),
            )
            .unwrap()
            .inv_freq(0)
            .0
        };
        let (plain, _) = parse(json!({})).unwrap().inv_freq(0);
        // Every wavelength (2π·10000^(2i/d) ≥ 2π) is longer than the low-frequency wavelength
        // 1/1: all are divided by the factor.
        for (a, b) in llama3(1.0).iter().zip(&plain) {
            assert!((a - b / 8.0).abs() <= 1e-7 * b, "{a} vs {b}");
        }
        // Every wavelength is shorter than the high-frequency wavelength 1e5/4: none changes.
        assert_eq!(llama3(100_000.0), plain);
        // In between, a frequency is smoothed between the two.
        let mid = llama3(64.0);
        assert!(mid[1] < plain[1] && mid[1] > plain[1] / 8.0, "{mid:?}");
    }

    #[test]
    fn longrope_switches_factors_past_the_original_length() {
        let cfg = parse(
            json!({"rope_type": "longrope", "short_factor": [1.0, 1.0, 1.0, 1.0],
            "long_factor": [2.0, 2.0, 2.0, 2.0], "original_max_position_embeddings": 16}),
        )
        .unwrap();
        let (short, factor) = cfg.inv_freq(15);
        let (long, _) = cfg.inv_freq(16);
        assert!((factor - (1.0f64 + 4f64.ln() / 16f64.ln()).sqrt() as f32).abs() < 1e-7);
        assert_eq!(long[1], short[1] / 2.0);
    }

    #[test]
    fn unsupported_and_malformed_settings_are_named() {
        let e = parse(json!({"rope_type": "proportional"})).unwrap_err();
        assert!(
            e.contains("rope_type 'proportional' is not supported"),
            "{e}"
        );
        assert!(e.contains("llama3"), "{e}");
        assert!(
            parse(json!({"rope_type": "linear"}))
                .unwrap_err()
                .contains("'factor'")
        );
        assert!(parse(json!({"rope_type": "llama3", "factor": 8.0})).is_err());
        assert!(
            parse(json!({"rope_type": "longrope", "short_factor": [1.0],
            "long_factor": [1.0]}))
            .unwrap_err()
            .contains("needs 4")
        );
    }
}
