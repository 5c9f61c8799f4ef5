//! The built-in tasks read from the real assets, and tokenization with the real MiniLM tokenizer.

use lora_assets::BuiltinTask;
use lora_data::batching::{batch_order, collate, encode_batch, tokenize_examples};
use lora_data::{SeededRng, TaskSplits};
use lora_tests::asset;

#[test]
fn movie_sentiment_is_the_documented_binary_split() {
    let task = BuiltinTask::MovieSentiment
        .load_from(&asset("movie-sentiment"))
        .unwrap();
    // 10,605 snippets, 533 with |score| < 0.5 dropped; 10 % dev, 10 % test.
    assert_eq!(task.train.len() + task.dev.len() + task.test.len(), 10_072);
    assert_eq!(
        (task.train.len(), task.dev.len(), task.test.len()),
        (8_058, 1_007, 1_007)
    );
    assert_eq!(task.labels.names(), ["negative", "positive"]);
    let counts = TaskSplits::class_counts(&task.train, &task.labels);
    assert!(
        counts.iter().all(|&c| c > 3_000),
        "both classes are well represented: {counts:?}"
    );
    // The split is fixed: the same first dev example on every run and machine.
    let again = BuiltinTask::MovieSentiment
        .load_from(&asset("movie-sentiment"))
        .unwrap();
    assert_eq!(again.dev[0], task.dev[0]);
    assert!(
        task.train
            .iter()
            .all(|e| !e.text.is_empty() && !e.text.ends_with('\r'))
    );
}

#[test]
fn bbc_news_has_five_topics() {
    let task = BuiltinTask::BbcNews.load_from(&asset("bbc-news")).unwrap();
    assert_eq!(
        task.labels.names(),
        ["business", "entertainment", "politics", "sports", "tech"]
    );
    let all: Vec<_> = task
        .train
        .iter()
        .chain(&task.dev)
        .chain(&task.test)
        .cloned()
        .collect();
    assert_eq!(all.len(), 2_225);
    assert_eq!(
        TaskSplits::class_counts(&all, &task.labels),
        [510, 386, 417, 511, 401]
    );
    assert_eq!((task.dev.len(), task.test.len()), (222, 222));
}

#[test]
fn tokenization_truncates_and_pads_per_batch_with_the_real_tokenizer() {
    let dir = asset("minilm");
    let tokenizer = lora_models::load_tokenizer_json(&dir.join("tokenizer.json")).unwrap();
    let task = BuiltinTask::MovieSentiment
        .load_from(&asset("movie-sentiment"))
        .unwrap()
        .truncate(Some(200), Some(0), Some(0));
    let tokenized = tokenize_examples(&tokenizer, &task.train, 16).unwrap();
    assert!(
        tokenized
            .iter()
            .all(|e| e.ids.len() <= 16 && e.ids[0] == 101 && *e.ids.last().unwrap() == 102)
    );
    assert!(
        tokenized.iter().any(|e| e.ids.len() == 16),
        "some snippets are truncated"
    );
    // Collating a batch equals encoding its texts in one go (with the same truncation).
    let mut truncating = tokenizer.clone();
    lora_data::set_max_len(&mut truncating, Some(16)).unwrap();
    let lengths: Vec<usize> = tokenized.iter().map(|e| e.ids.len()).collect();
    let batches = batch_order(&lengths, 8, Some(&mut SeededRng::new(0)), true).unwrap();
    let (batch, labels) = collate(&tokenized, &batches[0], 0);
    let texts: Vec<(&str, Option<&str>)> = batches[0]
        .iter()
        .map(|&i| (task.train[i].text.as_str(), None))
        .collect();
    assert_eq!(batch, encode_batch(&truncating, &texts, 0).unwrap());
    assert_eq!(
        labels,
        batches[0]
            .iter()
            .map(|&i| task.train[i].label as i64)
            .collect::<Vec<_>>()
    );
    // The tokenizer passed in is unchanged: no truncation.
    let long = "word ".repeat(40);
    assert!(tokenizer.encode(long.as_str(), true).unwrap().len() > 16);
}
