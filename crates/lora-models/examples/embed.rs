//! Sentence embeddings from MiniLM (all-MiniLM-L6-v2) in Rust, as sentence-transformers
//! computes them (mean over the real tokens, then L2 normalisation), with and without a LoRA
//! adapter, and after merging the adapter into the weights.
//!
//! `cargo run -p lora-models --example embed` prints the similarities; the example is also a
//! test (`[[example]] test = true`): `cargo test -p lora-models --example embed` runs
//! `tests::embeddings_merge_exactly_and_rank_paraphrases`. The model is fetched once into the
//! asset cache (`LORA_BURN_CACHE`).

use burn::tensor::{Device, Tensor};
use lora_assets::{AssetCache, resolve_model};
use lora_core::LoraInit;
use lora_models::{Encoder, ModelSource, TokenBatch, load_encoder, mean_pool};
use lora_surgery::{PeftConfig, PeftModel, TaskType};
use tokenizers::Tokenizer;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A paraphrase pair (0, 1), an unrelated sentence (2) and one more of another length (3).
const SENTENCES: [&str; 4] = [
    "A man is playing a guitar.",
    "Someone plays the guitar.",
    "The stock market fell sharply today.",
    "A woman is slicing an onion in the kitchen.",
];

/// Mean-pooled, L2-normalised embeddings `[n, hidden]` of `sentences`, tokenized with
/// `[CLS]`/`[SEP]` and padded right to the longest (padding is left out of the mean).
fn embed(
    encoder: &Encoder,
    tokenizer: &Tokenizer,
    sentences: &[&str],
    device: &Device,
) -> Result<Tensor<2>, Error> {
    let encodings = tokenizer.encode_batch(sentences.to_vec(), true)?;
    let seq = encodings.iter().map(|e| e.len()).max().unwrap_or(0);
    let pad = encoder.config().pad_token_id as i64;
    let (mut ids, mut mask, mut types) = (Vec::new(), Vec::new(), Vec::new());
    for e in &encodings {
        let padding = seq - e.len();
        ids.extend(e.get_ids().iter().map(|&t| t as i64));
        ids.extend(std::iter::repeat_n(pad, padding));
        mask.extend(e.get_attention_mask().iter().map(|&m| m as i64));
        mask.extend(std::iter::repeat_n(0, padding));
        types.extend(e.get_type_ids().iter().map(|&t| t as i64));
        types.extend(std::iter::repeat_n(0, padding));
    }
    let batch = TokenBatch::from_ids(ids, mask, types, [sentences.len(), seq], device)?;
    let pooled = mean_pool(encoder.forward(&batch)?, batch.attention_mask.clone());
    let norm = pooled
        .clone()
        .powi_scalar(2)
        .sum_dim(1)
        .sqrt()
        .clamp_min(1e-12);
    Ok(pooled / norm)
}

/// Rows of a `[n, d]` tensor.
fn rows(t: Tensor<2>) -> Vec<Vec<f32>> {
    let [_, d] = t.dims();
    let values = t.try_into_vec_as::<f32>().expect("f32 embeddings");
    values.chunks(d).map(<[f32]>::to_vec).collect()
}

/// The cosine similarity of two unit vectors.
fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn max_abs_diff(a: Tensor<2>, b: Tensor<2>) -> f32 {
    (a - b).abs().max().into_scalar()
}

/// What the example measured.
#[derive(Debug)]
struct Report {
    /// cos(sentence 0, sentence 1): the paraphrase pair, plain MiniLM.
    paraphrase: f32,
    /// max(cos(0, 2), cos(1, 2)): against the unrelated sentence, plain MiniLM.
    unrelated: f32,
    /// Max |e(batch) − e(alone)| of sentence 0: padding does not leak into the mean.
    padding_max_diff: f32,
    /// Max |e(adapted) − e(plain)|: the random adapter does change the embeddings.
    adapter_effect: f32,
    /// Max |e(adapted, unmerged) − e(merged)|.
    merge_max_diff: f32,
}

fn run() -> Result<Report, Error> {
    let device = lora_core::select_device(Some("flex"))?;
    let dir = resolve_model(&AssetCache::from_env(), "minilm")?;
    let (encoder, tokenizer) = load_encoder(&ModelSource::path(dir), &device)?;

    // The plain model: paraphrases are closer than unrelated sentences.
    let plain = embed(&encoder, &tokenizer, &SENTENCES, &device)?;
    let alone = embed(&encoder, &tokenizer, &SENTENCES[..1], &device)?;
    let e = rows(plain.clone());
    let paraphrase = cosine(&e[0], &e[1]);
    let unrelated = cosine(&e[0], &e[2]).max(cosine(&e[1], &e[2]));
    let padding_max_diff = max_abs_diff(plain.clone().narrow(0, 0, 1), alone);

    // LoRA on the attention's query and value projections with both factors random (PEFT's
    // `init_lora_weights=False`), so that the adapter changes the outputs before any training.
    let mut config = PeftConfig::for_targets(&["query", "value"])
        .with_r(8)
        .with_alpha(16.0)
        .with_task_type(TaskType::FeatureExtraction);
    config.lora = config.lora.with_init(LoraInit::Random);
    device.seed(0);
    let peft = PeftModel::new(encoder, config, "default")?;
    assert_eq!(
        peft.report().targeted.len(),
        2 * 6,
        "query and value in 6 layers"
    );
    let adapted = embed(peft.model(), &tokenizer, &SENTENCES, &device)?;
    let adapter_effect = max_abs_diff(adapted.clone(), plain);

    // Merged into the weights: a plain encoder with the adapted encoder's embeddings.
    let merged = peft.merge_and_unload()?;
    let merge_max_diff = max_abs_diff(embed(&merged, &tokenizer, &SENTENCES, &device)?, adapted);

    Ok(Report {
        paraphrase,
        unrelated,
        padding_max_diff,
        adapter_effect,
        merge_max_diff,
    })
}

impl Report {
    fn check(&self) {
        assert!(
            self.paraphrase > self.unrelated + 0.2,
            "paraphrases should be closer than unrelated sentences: {self:?}"
        );
        assert!(self.padding_max_diff <= 1e-5, "{self:?}");
        assert!(
            self.adapter_effect > 1e-3,
            "the adapter had no effect: {self:?}"
        );
        assert!(
            self.merge_max_diff <= 1e-5,
            "merging changed the embeddings: {self:?}"
        );
    }
}

fn main() -> Result<(), Error> {
    let report = run()?;
    println!(
        "cos({:?}, {:?}) = {:.3}",
        SENTENCES[0], SENTENCES[1], report.paraphrase
    );
    println!(
        "largest cos with {:?} = {:.3}",
        SENTENCES[2], report.unrelated
    );
    println!(
        "max |Δ| batch vs alone {:e}; adapter effect {:.3e}; merged vs unmerged {:e}",
        report.padding_max_diff, report.adapter_effect, report.merge_max_diff
    );
    report.check();
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn embeddings_merge_exactly_and_rank_paraphrases() {
        let report = super::run().unwrap();
        println!("{report:?}");
        report.check();
    }
}
