//! Building blocks shared by the encoder and decoder families: normalisation, rotary position
//! embeddings, and attention with its masks.

pub mod attention;
pub mod norm;
pub mod rope;

pub use attention::{MaskSpec, attend};
pub use norm::{Norm, NormKind};
pub use rope::{RopeConfig, RopeScaling, apply_rope};
