//! The error type of `lora-core`.

/// Everything that can go wrong in `lora-core`: invalid configuration, unknown adapter names,
/// merge-state mistakes and device selection problems. Every message names the offending value
/// and, where there is a fixed set of valid choices, lists them.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum LoraError {
    /// `r` must be at least 1.
    #[error("invalid LoRA rank r = {r}: the rank must be at least 1")]
    ZeroRank {
        /// The rejected rank.
        r: usize,
    },
    /// `alpha` must be a finite number greater than zero.
    #[error("invalid LoRA alpha = {alpha}: alpha must be finite and greater than 0")]
    InvalidAlpha {
        /// The rejected alpha.
        alpha: f64,
    },
    /// The scaling `alpha / r` does not fit `f32`, in which the update is computed.
    #[error(
        "LoRA scaling lora_alpha / r = {scaling:e} (alpha {alpha:e}) does not fit f32: every \
         output of the adapted layers would be infinite"
    )]
    NonFiniteScaling {
        /// The scaling.
        scaling: f64,
        /// The alpha it comes from.
        alpha: f64,
    },
    /// Dropout must lie in `[0, 1)`.
    #[error("invalid LoRA dropout = {dropout}: dropout must lie in [0, 1)")]
    InvalidDropout {
        /// The rejected probability.
        dropout: f64,
    },
    /// A bottleneck adapter needs a non-zero size.
    #[error("invalid bottleneck size {size} for a layer of width {d_model}: use 1..={d_model}")]
    InvalidBottleneck {
        /// The rejected bottleneck size.
        size: usize,
        /// The width of the residual stream.
        d_model: usize,
    },
    /// An adapter name that the layer does not hold.
    #[error("unknown adapter '{name}'; known adapters: [{}]", known.join(", "))]
    UnknownAdapter {
        /// The requested name.
        name: String,
        /// The names the layer holds.
        known: Vec<String>,
    },
    /// Adding an adapter under a name that is already taken.
    #[error("an adapter named '{name}' already exists; delete it first or pick another name")]
    DuplicateAdapter {
        /// The duplicated name.
        name: String,
    },
    /// Adapter names must be non-empty and must not contain `.`, which separates module paths.
    #[error("invalid adapter name '{name}': names must be non-empty and must not contain '.'")]
    InvalidAdapterName {
        /// The rejected name.
        name: String,
    },
    /// Merging an adapter would make the weight NaN or infinite (its scaling or factors
    /// overflow `f32`).
    #[error(
        "merging adapter '{name}' gives a weight that is not finite (NaN or infinite): its \
         scaling ({scaling:e}) or its factors overflow f32"
    )]
    NonFiniteMerge {
        /// The adapter name.
        name: String,
        /// Its scaling (`alpha / r`, or `alpha / √r` with rsLoRA).
        scaling: f64,
    },
    /// An adapter's update `s·B·A` dwarfs the weight it adapts (or is not finite): the layer's
    /// outputs would be the adapter's alone, or overflow.
    #[error(
        "adapter '{name}': its update scaling·B·A reaches {update:e}, {ratio:e} times the largest \
         entry of the weight it adapts (scaling {scaling:e}); an adapter this large (limit \
         {limit:e} times) makes the outputs meaningless: check lora_alpha and r"
    )]
    UpdateOutOfRange {
        /// The adapter name.
        name: String,
        /// The largest entry of the update.
        update: f32,
        /// That over the largest entry of the base weight.
        ratio: f32,
        /// The adapter's scaling.
        scaling: f64,
        /// The largest ratio accepted.
        limit: f32,
    },
    /// Merging an adapter that is already merged into the base weight.
    #[error("adapter '{name}' is already merged into the base weight; unmerge it first")]
    AlreadyMerged {
        /// The adapter name.
        name: String,
    },
    /// A base-weight form that is not one of [`BaseDType`](crate::BaseDType)'s.
    #[error("unknown base dtype '{given}'; valid choices: {}", valid.join(", "))]
    UnknownBaseDType {
        /// The rejected name.
        given: String,
        /// The accepted names.
        valid: Vec<String>,
    },
    /// A base-weight form the device's backend cannot hold.
    #[error(
        "the {backend} backend cannot hold the base weights as {dtype}; it supports {} \
         (the flex backend supports every form)",
        supported.join(", ")
    )]
    UnsupportedBaseDType {
        /// The requested form.
        dtype: crate::BaseDType,
        /// The device's backend.
        backend: String,
        /// The forms it can hold.
        supported: Vec<String>,
    },
    /// Merging into (or unmerging from) a base stored in a narrower form than `f32`.
    #[error(
        "cannot merge adapter '{name}': the base weight is stored as {dtype} and merging needs an \
         f32 base; load the model with `--base-dtype f32` to merge (`lora merge --dtype` chooses \
         the dtype of the merged model it writes)"
    )]
    MergeIntoStoredBase {
        /// The adapter name.
        name: String,
        /// The form the base is stored in.
        dtype: crate::BaseDType,
    },
    /// Unmerging an adapter that is not merged.
    #[error("adapter '{name}' is not merged, so it cannot be unmerged")]
    NotMerged {
        /// The adapter name.
        name: String,
    },
    /// Deactivating or deleting an adapter while its update is folded into the base weight.
    #[error("adapter '{name}' is merged into the base weight; unmerge it before you {action} it")]
    MergedAdapterBusy {
        /// The adapter name.
        name: String,
        /// What the caller tried to do.
        action: &'static str,
    },
    /// A tensor with the wrong shape was given for a layer.
    #[error("shape mismatch for {what}: expected {expected:?}, got {actual:?}")]
    ShapeMismatch {
        /// What the tensor is for.
        what: String,
        /// The expected shape.
        expected: Vec<usize>,
        /// The given shape.
        actual: Vec<usize>,
    },
    /// A device specification that names no known backend.
    #[error("unknown device '{spec}'; valid choices: {}", valid.join(", "))]
    UnknownDevice {
        /// The rejected specification.
        spec: String,
        /// What would have been accepted.
        valid: Vec<String>,
    },
    /// A backend that exists but was not compiled into this build.
    #[error(
        "the '{backend}' backend is not compiled into this build (compiled: {}); \
         rebuild with `--features {backend}`",
        compiled.join(", ")
    )]
    BackendNotCompiled {
        /// The requested backend.
        backend: String,
        /// The backends this build has.
        compiled: Vec<String>,
    },
    /// A compiled backend that found no usable device on this machine.
    #[error("no '{backend}' device is available on this machine: {reason}")]
    NoDevice {
        /// The requested backend.
        backend: String,
        /// Why no device could be opened.
        reason: String,
    },
}

/// Shorthand for results whose error is [`LoraError`].
pub type Result<T, E = LoraError> = core::result::Result<T, E>;
