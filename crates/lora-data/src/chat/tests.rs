use std::path::{Path, PathBuf};

use super::*;
use crate::sft::Message;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn plain(source: &str) -> ChatTemplate {
    let special = SpecialTokens {
        bos: Some("<s>".into()),
        eos: Some("</s>".into()),
        ..Default::default()
    };
    ChatTemplate::new(source, "test", special).unwrap()
}

#[test]
fn raise_exception_reports_the_templates_message() {
    let t = plain(
        "{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}ok",
    );
    assert_eq!(t.render(&[Message::user("a")], false).unwrap(), "ok");
    let e = t.render(&[Message::system("a")], false).unwrap_err();
    assert!(
        matches!(&e, DataError::TemplateRaised { message, .. } if message == "System role not supported"),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("(test) refused the conversation: System role not supported")
    );
}

#[test]
fn syntax_and_render_errors_name_origin_and_line() {
    let e = ChatTemplate::new(
        "line one\n{% for m in messages %}\n{{ m.content }",
        "my.jinja",
        SpecialTokens::default(),
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with("chat template (my.jinja), line 3: syntax error"),
        "{msg}"
    );
    let t = plain("a\n{{ messages[0].content + 1 }}");
    let msg = t
        .render(&[Message::user("x")], false)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("(test), line 2: invalid operation"), "{msg}");
}

#[test]
fn python_methods_namespace_slices_and_loop_controls_work() {
    let t = plain(concat!(
        "{%- set ns = namespace(n=0) -%}",
        "{%- for m in messages[::-1] -%}{%- if loop.index0 > 1 %}{% break %}{% endif -%}",
        "{%- set ns.n = ns.n + 1 -%}",
        "[{{ m.content.strip().split(' ')[0] }}|{{ m.content.startswith(' a') }}|{{ m['role'].upper() }}]",
        "{%- endfor -%}{{ ns.n }}{{ bos_token }}{{ eos_token }}{{ tools is none }}",
    ));
    let msgs = [
        Message::user(" a b "),
        Message::assistant("c d"),
        Message::user("e"),
    ];
    assert_eq!(
        t.render(&msgs, false).unwrap(),
        "[e|False|USER][c|False|ASSISTANT]2<s></s>True"
    );
}

#[test]
fn tojson_writes_what_python_json_dumps_writes() {
    // (serde_json's map sorts its keys, so the template sees "a" before "b")
    let t = plain("{{ x | tojson }}|{{ x | tojson(indent=2) }}|{{ 'é<&\"\\n' | tojson }}")
        .with_variable(
            "x",
            serde_json::json!({"b": [1, 2.5, true, null], "a": "x"}),
        );
    assert_eq!(
        t.render(&[], false).unwrap(),
        "{\"a\": \"x\", \"b\": [1, 2.5, true, null]}|{\n  \"a\": \"x\",\n  \"b\": [\n    1,\n    2.5,\n    true,\n    null\n  ]\n}|\"é<&\\\"\\n\""
    );
}

#[test]
fn generation_tags_render_their_body() {
    let t = plain(
        "{% for m in messages %}{% generation %}{{ m.content }}{% endgeneration %}{% endfor %}",
    );
    assert_eq!(t.render(&[Message::assistant("hi")], false).unwrap(), "hi");
}

#[test]
fn loads_from_config_lists_and_model_dirs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tokenizer_config.json");
    std::fs::write(
        &cfg,
        r#"{"eos_token": {"content": "<|im_end|>"}, "chat_template": [
            {"name": "default", "template": "D{{ eos_token }}"},
            {"name": "tool_use", "template": "T"}]}"#,
    )
    .unwrap();
    let t = ChatTemplate::from_tokenizer_config(&cfg, None).unwrap();
    assert_eq!(t.render(&[], false).unwrap(), "D<|im_end|>");
    let t = ChatTemplate::from_model_dir(dir.path(), Some("tool_use")).unwrap();
    assert_eq!(t.render(&[], false).unwrap(), "T");
    std::fs::write(dir.path().join("chat_template.jinja"), "J{{ eos_token }}").unwrap();
    let t = ChatTemplate::from_model_dir(dir.path(), None).unwrap();
    assert_eq!(t.render(&[], false).unwrap(), "J<|im_end|>");
    assert!(t.origin().ends_with("chat_template.jinja"));
    let e = ChatTemplate::from_tokenizer_config(
        &fixtures().join("tiny_gpt2/model/tokenizer_config.json"),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("tokenizer_config.json: has no 'chat_template'"),
        "{e}"
    );
}
