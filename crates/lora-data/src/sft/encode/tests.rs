use std::path::{Path, PathBuf};

use super::*;
use crate::chat::ChatTemplate;

fn model_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
        .join("model")
}

fn load(name: &str) -> (Tokenizer, ChatTemplate) {
    let dir = model_dir(name);
    let tokenizer = Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    (tokenizer, ChatTemplate::from_model_dir(&dir, None).unwrap())
}

fn options(max_len: usize) -> SftOptions {
    SftOptions {
        max_len,
        train_on_prompt: false,
    }
}

fn chat() -> Vec<Message> {
    vec![
        Message::user("What is the capital of France?"),
        Message::assistant("Paris."),
        Message::user(" And of Italy? One word, please. "),
        Message::assistant("Rome"),
    ]
}

/// The text of each run of labelled positions, sliced from the rendered conversation.
fn labelled_runs(text: &str, tokenizer: &Tokenizer, encoded: &SftEncoded) -> Vec<String> {
    let enc = tokenizer.encode(text, false).unwrap();
    assert_eq!(enc.get_ids(), encoded.ids.as_slice());
    let offsets = enc.get_offsets();
    let mut runs = Vec::new();
    let mut p = 0;
    while p < encoded.labels.len() {
        if encoded.labels[p] == IGNORE_INDEX {
            p += 1;
            continue;
        }
        let start = p;
        while p < encoded.labels.len() && encoded.labels[p] != IGNORE_INDEX {
            assert_eq!(encoded.labels[p], i64::from(encoded.ids[p]));
            p += 1;
        }
        runs.push(text[offsets[start].0..offsets[p - 1].1].to_string());
    }
    runs
}

/// Assistant-only loss labels exactly each answer and its end-of-turn marker, for every family's
/// real template, whether the turn was found by token prefixes or by character offsets.
#[test]
fn assistant_turns_are_labelled_with_their_end_of_turn_marker() {
    let llama = ["Paris.<|eot_id|>", "Rome<|eot_id|>"];
    let qwen = ["Paris.<|im_end|>", "Rome<|im_end|>"];
    let phi3 = ["Paris.<|end|>", "Rome<|end|>\n<|end|>"];
    let gemma = ["Paris.<end_of_turn>", "Rome<end_of_turn>"];
    let cases: [(&str, [&str; 2], usize); 11] = [
        ("tiny_llama", llama, 0),
        ("tiny_llama_rope_linear", llama, 0),
        ("tiny_llama_rope_llama3", llama, 0),
        ("tiny_qwen2", qwen, 0),
        ("tiny_qwen2_rope_yarn", qwen, 0),
        (
            "tiny_qwen3",
            ["Paris.<|im_end|>", "<think>\n\n</think>\n\nRome<|im_end|>"],
            1,
        ),
        ("tiny_mistral", [" Paris.</s>", " Rome</s>"], 0),
        ("tiny_phi3", phi3, 1),
        ("tiny_phi3_rope_longrope", phi3, 1),
        ("tiny_gemma2", gemma, 0),
        ("tiny_gemma3", gemma, 0),
    ];
    for (name, expected, fallbacks) in cases {
        let (tokenizer, template) = load(name);
        let encoder = SftEncoder::new(&tokenizer, Some(&template), options(512)).unwrap();
        let example = SftExample::Conversation(chat());
        let (encoded, stats) = encoder.encode_all(std::slice::from_ref(&example)).unwrap();
        let text = template.render(&chat(), false).unwrap();
        assert_eq!(
            labelled_runs(&text, &tokenizer, &encoded[0]),
            expected,
            "{name}"
        );
        assert_eq!(stats.offset_fallbacks, fallbacks, "{name}");
        assert_eq!(encoded[0].labels[0], IGNORE_INDEX);
        assert_eq!(encoder.encode(&example).unwrap(), encoded[0], "{name}");
    }
}

#[test]
fn a_template_that_refuses_names_the_example() {
    let (tokenizer, template) = load("tiny_gemma2");
    let encoder = SftEncoder::new(&tokenizer, Some(&template), options(64)).unwrap();
    let mut with_system = chat();
    with_system.insert(0, Message::system("Be brief."));
    let examples = [
        SftExample::Conversation(chat()),
        SftExample::Conversation(with_system),
    ];
    let e = encoder.encode_all(&examples).unwrap_err().to_string();
    assert!(
        e.starts_with("example 2 (counting from 1): the chat template")
            && e.ends_with("refused the conversation: System role not supported"),
        "{e}"
    );
}

#[test]
fn prompt_completion_with_a_template_is_a_user_and_an_assistant_turn() {
    let (tokenizer, template) = load("tiny_qwen2");
    let encoder = SftEncoder::new(&tokenizer, Some(&template), options(512)).unwrap();
    let pc = encoder
        .encode(&SftExample::prompt_completion("What is 2+2?", "4"))
        .unwrap();
    let conv = encoder
        .encode(&SftExample::Conversation(vec![
            Message::user("What is 2+2?"),
            Message::assistant("4"),
        ]))
        .unwrap();
    assert_eq!(pc, conv);
    let text = template
        .render(
            &SftExample::prompt_completion("What is 2+2?", "4").to_messages(),
            false,
        )
        .unwrap();
    assert_eq!(labelled_runs(&text, &tokenizer, &pc), ["4<|im_end|>"]);
}

#[test]
fn plain_prompt_completion_learns_the_completion_and_eos_with_one_bos() {
    let dir = model_dir("tiny_llama");
    let tokenizer = Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    let special = SpecialTokens::from_tokenizer_config(&dir.join("tokenizer_config.json")).unwrap();
    let bos = tokenizer.token_to_id("<|begin_of_text|>").unwrap();
    let eos = tokenizer.token_to_id("<|eot_id|>").unwrap();
    let encoder = SftEncoder::new(&tokenizer, None, options(512))
        .unwrap()
        .with_special_tokens(special);
    let e = encoder
        .encode(&SftExample::prompt_completion("The model is", " the best"))
        .unwrap();
    let prompt_len = tokenizer.encode("The model is", true).unwrap().len();
    assert_eq!(e.ids[0], bos);
    assert_eq!(*e.ids.last().unwrap(), eos);
    assert!(e.labels[..prompt_len].iter().all(|&l| l == IGNORE_INDEX));
    assert!(
        e.labels[prompt_len..]
            .iter()
            .zip(&e.ids[prompt_len..])
            .all(|(&l, &i)| l == i64::from(i))
    );
    assert_eq!(e.label_count(), e.len() - prompt_len);

    // BOS already in the text: not added again; EOS already at the end: not added again.
    let e2 = encoder
        .encode(&SftExample::prompt_completion(
            "<|begin_of_text|>The model is",
            " the best<|eot_id|>",
        ))
        .unwrap();
    assert_eq!(e2, e);

    // train_on_prompt: every position but the first.
    let all = SftEncoder::new(
        &tokenizer,
        None,
        SftOptions {
            max_len: 512,
            train_on_prompt: true,
        },
    )
    .unwrap()
    .with_special_tokens(
        SpecialTokens::from_tokenizer_config(&dir.join("tokenizer_config.json")).unwrap(),
    );
    let e3 = all
        .encode(&SftExample::prompt_completion("The model is", " the best"))
        .unwrap();
    assert_eq!(e3.ids, e.ids);
    assert_eq!(e3.label_count(), e.len() - 1);
}

#[test]
fn truncation_cuts_the_prompt_from_the_left_and_keeps_bos_and_answer() {
    let dir = model_dir("tiny_llama");
    let tokenizer = Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    let special = SpecialTokens::from_tokenizer_config(&dir.join("tokenizer_config.json")).unwrap();
    let long_prompt = "once upon a time ".repeat(20);
    let example = SftExample::prompt_completion(long_prompt.as_str(), "the end");
    let full = SftEncoder::new(&tokenizer, None, options(4096))
        .unwrap()
        .with_special_tokens(special.clone())
        .encode(&example)
        .unwrap();
    let answer = full.label_count();
    let cut = SftEncoder::new(&tokenizer, None, options(answer + 5))
        .unwrap()
        .with_special_tokens(special.clone());
    let (short, stats) = cut.encode_all(std::slice::from_ref(&example)).unwrap();
    let short = &short[0];
    assert!(short.truncated && !full.truncated);
    assert_eq!(stats.truncated, 1);
    assert_eq!(short.len(), answer + 5);
    assert_eq!(short.ids[0], full.ids[0], "BOS kept");
    assert_eq!(short.ids[1..], full.ids[full.len() - answer - 4..]);
    assert_eq!(short.label_count(), answer);

    // An answer longer than max_len on its own: no prompt, the answer's start.
    let tiny = SftEncoder::new(&tokenizer, None, options(3))
        .unwrap()
        .with_special_tokens(special);
    let t = tiny.encode(&example).unwrap();
    let answer_start = full.len() - answer;
    assert_eq!(
        t.ids,
        [
            full.ids[0],
            full.ids[answer_start],
            full.ids[answer_start + 1]
        ]
    );
    assert_eq!(t.labels[0], IGNORE_INDEX);
}

#[test]
fn conversations_need_a_template_and_max_len_two() {
    let tokenizer = Tokenizer::from_file(model_dir("tiny_gpt2").join("tokenizer.json")).unwrap();
    let encoder = SftEncoder::new(&tokenizer, None, options(16)).unwrap();
    let e = encoder
        .encode(&SftExample::Conversation(chat()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("conversations need a chat template"), "{e}");
    assert!(SftEncoder::new(&tokenizer, None, options(1)).is_err());
}

#[test]
fn a_conversation_may_open_with_the_assistant() {
    let cases = [
        ("tiny_qwen2", ["Hello there.<|im_end|>", "Bye<|im_end|>"]),
        ("tiny_llama", ["Hello there.<|eot_id|>", "Bye<|eot_id|>"]),
        ("tiny_phi3", ["Hello there.<|end|>", "Bye<|end|>\n<|end|>"]),
    ];
    let messages = vec![
        Message::assistant("Hello there."),
        Message::user("Hi"),
        Message::assistant("Bye"),
    ];
    for (name, expected) in cases {
        let (tokenizer, template) = load(name);
        let encoder = SftEncoder::new(&tokenizer, Some(&template), options(512)).unwrap();
        let encoded = encoder
            .encode(&SftExample::Conversation(messages.clone()))
            .unwrap();
        let text = template.render(&messages, false).unwrap();
        assert_eq!(
            labelled_runs(&text, &tokenizer, &encoded),
            expected,
            "{name}"
        );
    }
}

#[test]
fn a_post_processor_eos_is_not_doubled() {
    // RoBERTa's tokenizer writes `<s> … </s>` itself.
    let dir = model_dir("tiny_roberta");
    let tokenizer = Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    let special = SpecialTokens::from_tokenizer_config(&dir.join("tokenizer_config.json")).unwrap();
    let eos = tokenizer.token_to_id("</s>").unwrap();
    let encoder = SftEncoder::new(&tokenizer, None, options(64))
        .unwrap()
        .with_special_tokens(special);
    let (e, stats) = encoder
        .encode_all(&[SftExample::prompt_completion("the model", " is good")])
        .unwrap();
    let e = &e[0];
    assert_eq!(
        e.ids,
        tokenizer
            .encode("the model is good", true)
            .unwrap()
            .get_ids()
    );
    assert_eq!(e.ids.iter().filter(|&&i| i == eos).count(), 1);
    let prompt_len = tokenizer.encode("the model", true).unwrap().len() - 1;
    assert_eq!(e.label_count(), e.len() - prompt_len);
    assert_eq!(stats.offset_fallbacks, 0);
}
