//! Building blocks shared by the encoder and decoder families: normalisation, rotary position
//! embeddings, attention with its masks, and the fused SwiGLU feed-forward product.

pub mod attention;
pub mod norm;
pub mod rope;
pub mod swiglu;

pub use attention::{MaskSpec, attend};
pub use norm::{Norm, NormKind};
pub use rope::{RopeConfig, RopeScaling, apply_rope};
pub use swiglu::{SwiGluBackend, swiglu};
