//! Readers for supervised fine-tuning data.
//!
//! | file | one example per | form |
//! |---|---|---|
//! | `.tsv`, `.csv` | row | a prompt column and a completion column (named by [`SftColumns`]) |
//! | `.jsonl` | line | `{"prompt": "…", "completion": "…"}` (the same column names) |
//! | `.jsonl` | line | `{"messages": [{"role": "system" \| "user" \| "assistant", "content": "…"}, …]}` |
//! | `.jsonl` | line | `{"prompt": [messages…], "completion": [messages…]}` (TRL's conversational prompt-completion: read as one conversation) |
//!
//! Only plain conversations are read: a line with tool definitions (`"tools"`), tool calls or a
//! `tool` turn is refused. Every problem is reported with the file and the 1-based line: malformed
//! JSON, a missing `prompt` / `completion` (with the fields the line has), a role outside
//! `system`, `user`, `assistant`, content that is not a string, an empty conversation, a
//! conversation with no assistant turn, or an empty completion.

use std::path::Path;

use serde_json::{Map, Value};

use super::{Message, Role, SftExample};
use crate::error::{DataError, Result, io};
use crate::readers::{Table, TableFormat};

/// The prompt and completion column names of a table (also the JSONL keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SftColumns {
    /// The prompt column (default `prompt`).
    pub prompt: String,
    /// The completion column (default `completion`).
    pub completion: String,
}

impl Default for SftColumns {
    fn default() -> Self {
        Self {
            prompt: "prompt".into(),
            completion: "completion".into(),
        }
    }
}

/// Reads supervised fine-tuning examples from `path` (format from its extension: `.tsv`, `.csv`
/// or `.jsonl`). A JSONL line with `messages` is a conversation; any other line must have the
/// prompt and completion fields.
///
/// ```no_run
/// use lora_data::sft::{SftColumns, read_sft};
///
/// let examples = read_sft("train.jsonl".as_ref(), &SftColumns::default())?;
/// println!("{} examples", examples.len());
/// # Ok::<(), lora_data::DataError>(())
/// ```
pub fn read_sft(path: &Path, columns: &SftColumns) -> Result<Vec<SftExample>> {
    match TableFormat::from_path(path)? {
        TableFormat::Jsonl => read_jsonl(path, |map, line| {
            if map.contains_key("messages") {
                conversation_line(map).map_err(|r| malformed(path, line, r))
            } else {
                prompt_completion_line(map, columns).map_err(|r| malformed(path, line, r))
            }
        }),
        format => read_table(path, format, columns),
    }
}

/// Reads prompt / completion examples from a TSV, CSV or JSONL file (format from the
/// extension). A missing column is an error that lists the file's columns.
pub fn read_prompt_completion(path: &Path, columns: &SftColumns) -> Result<Vec<SftExample>> {
    match TableFormat::from_path(path)? {
        TableFormat::Jsonl => read_jsonl(path, |map, line| {
            prompt_completion_line(map, columns).map_err(|r| malformed(path, line, r))
        }),
        format => read_table(path, format, columns),
    }
}

/// Reads conversations from a JSONL file, one `{"messages": […]}` object per line.
pub fn read_conversations(path: &Path) -> Result<Vec<SftExample>> {
    read_jsonl(path, |map, line| {
        if !map.contains_key("messages") {
            return Err(malformed(
                path,
                line,
                format!(
                    "no 'messages' field; its fields are: {}",
                    field_names(map).join(", ")
                ),
            ));
        }
        conversation_line(map).map_err(|r| malformed(path, line, r))
    })
}

fn malformed(path: &Path, line: usize, reason: impl Into<String>) -> DataError {
    DataError::Malformed {
        path: path.to_path_buf(),
        line,
        reason: reason.into(),
    }
}

fn field_names(map: &Map<String, Value>) -> Vec<String> {
    map.keys().map(|k| format!("'{k}'")).collect()
}

fn read_table(path: &Path, format: TableFormat, columns: &SftColumns) -> Result<Vec<SftExample>> {
    let table = Table::read(path, format)?;
    let prompt = table.column(&columns.prompt)?;
    let completion = table.column(&columns.completion)?;
    table
        .rows
        .iter()
        .map(|(line, row)| {
            if row[completion].trim().is_empty() {
                return Err(malformed(
                    path,
                    *line,
                    format!("the '{}' column is empty", columns.completion),
                ));
            }
            Ok(SftExample::prompt_completion(
                row[prompt].clone(),
                row[completion].clone(),
            ))
        })
        .collect()
}

fn read_jsonl(
    path: &Path,
    mut parse: impl FnMut(&Map<String, Value>, usize) -> Result<SftExample>,
) -> Result<Vec<SftExample>> {
    let bytes = std::fs::read(path).map_err(io("reading", path))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        malformed(path, line, "the file is not valid UTF-8")
    })?;
    let mut examples = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let line = i + 1;
        if l.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(l)
            .map_err(|e| malformed(path, line, format!("invalid JSON: {e}")))?;
        let Value::Object(map) = value else {
            return Err(malformed(path, line, "expected a JSON object"));
        };
        examples.push(parse(&map, line)?);
    }
    if examples.is_empty() {
        return Err(DataError::EmptyData {
            path: path.to_path_buf(),
            detail: String::new(),
        });
    }
    Ok(examples)
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn prompt_completion_line(
    map: &Map<String, Value>,
    columns: &SftColumns,
) -> Result<SftExample, String> {
    let get = |name: &str| {
        map.get(name).ok_or_else(|| {
            format!(
                "no '{name}' field; its fields are: {} (expected '{}' and '{}', or 'messages')",
                field_names(map).join(", "),
                columns.prompt,
                columns.completion
            )
        })
    };
    let (prompt, completion) = (get(&columns.prompt)?, get(&columns.completion)?);
    match (prompt, completion) {
        (Value::String(p), Value::String(c)) => {
            if c.trim().is_empty() {
                return Err(format!("'{}' is empty", columns.completion));
            }
            Ok(SftExample::prompt_completion(p.clone(), c.clone()))
        }
        (Value::Array(p), Value::Array(c)) => {
            refuse_tools(map)?;
            let mut messages = parse_messages(p, 0)?;
            let completion = parse_messages(c, p.len())?;
            if let Some(m) = completion.iter().find(|m| m.role != Role::Assistant) {
                return Err(format!(
                    "the '{}' messages must be assistant turns, found a {} turn",
                    columns.completion, m.role
                ));
            }
            messages.extend(completion);
            check_conversation(messages).map(SftExample::Conversation)
        }
        (p, c) => Err(format!(
            "'{}' and '{}' must both be strings (or both lists of messages); found {} and {}",
            columns.prompt,
            columns.completion,
            kind_of(p),
            kind_of(c)
        )),
    }
}

fn refuse_tools(map: &Map<String, Value>) -> Result<(), String> {
    match map.get("tools") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(a)) if a.is_empty() => Ok(()),
        Some(_) => Err(
            "tool definitions ('tools') are not supported: only plain system / user / assistant \
             conversations"
                .into(),
        ),
    }
}

fn conversation_line(map: &Map<String, Value>) -> Result<SftExample, String> {
    refuse_tools(map)?;
    let messages = match &map["messages"] {
        Value::Array(items) => parse_messages(items, 0)?,
        other => {
            return Err(format!(
                "'messages' must be a list of messages, found {}",
                kind_of(other)
            ));
        }
    };
    check_conversation(messages).map(SftExample::Conversation)
}

fn check_conversation(messages: Vec<Message>) -> Result<Vec<Message>, String> {
    if messages.is_empty() {
        return Err("the conversation is empty".into());
    }
    if !messages.iter().any(|m| m.role == Role::Assistant) {
        return Err(
            "the conversation has no assistant turn, so there is nothing to learn from it".into(),
        );
    }
    Ok(messages)
}

/// Parses a JSON list of messages; `offset` numbers them after earlier ones in errors.
fn parse_messages(items: &[Value], offset: usize) -> Result<Vec<Message>, String> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let n = offset + i + 1;
            let Value::Object(m) = item else {
                return Err(format!(
                    "message {n} must be an object with 'role' and 'content', found {}",
                    kind_of(item)
                ));
            };
            let role = match m.get("role") {
                Some(Value::String(r)) => Role::from_name(r).ok_or_else(|| {
                    format!(
                        "message {n} has role '{r}'; valid roles: {}",
                        Role::NAMES.join(", ")
                    )
                })?,
                Some(other) => {
                    return Err(format!(
                        "message {n}'s role must be a string, found {}",
                        kind_of(other)
                    ));
                }
                None => return Err(format!("message {n} has no 'role'")),
            };
            if m.get("tool_calls").is_some_and(|t| !t.is_null()) {
                return Err(format!(
                    "message {n} has tool calls, which are not supported"
                ));
            }
            let content = match m.get("content") {
                Some(Value::String(c)) => c.clone(),
                Some(other) => {
                    return Err(format!(
                        "message {n}'s content must be a string, found {}",
                        kind_of(other)
                    ));
                }
                None => return Err(format!("message {n} has no 'content'")),
            };
            Ok(Message { role, content })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn err(path: &Path) -> String {
        read_sft(path, &SftColumns::default())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn prompt_completion_reads_from_every_format() {
        let dir = tempfile::tempdir().unwrap();
        let jsonl = write(
            dir.path(),
            "a.jsonl",
            "{\"prompt\": \"2+2=\", \"completion\": \"4\"}\n\n{\"prompt\": \"Hi\", \"completion\": \"Hello\"}\n",
        );
        let tsv = write(
            dir.path(),
            "a.tsv",
            "prompt\tcompletion\n2+2=\t4\nHi\tHello\n",
        );
        let csv = write(dir.path(), "a.csv", "q,a\n\"2+2=\",4\nHi,\"Hello\"\n");
        let cols = SftColumns::default();
        let a = read_sft(&jsonl, &cols).unwrap();
        assert_eq!(a[0], SftExample::prompt_completion("2+2=", "4"));
        assert_eq!(read_prompt_completion(&tsv, &cols).unwrap(), a);
        let qa = SftColumns {
            prompt: "q".into(),
            completion: "a".into(),
        };
        assert_eq!(read_sft(&csv, &qa).unwrap(), a);
        let e = read_sft(&csv, &cols).unwrap_err().to_string();
        assert!(
            e.contains("no column 'prompt'") && e.contains("q, a"),
            "{e}"
        );
    }

    #[test]
    fn conversations_read_and_conversational_prompt_completion_joins() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "c.jsonl",
            concat!(
                r#"{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}"#,
                "\n",
                r#"{"prompt": [{"role": "user", "content": "Hi"}], "completion": [{"role": "assistant", "content": "Hello"}], "tools": null}"#,
                "\n"
            ),
        );
        let ex = read_conversations(&p);
        assert!(ex.is_err(), "line 2 has no messages");
        let ex = read_sft(&p, &SftColumns::default()).unwrap();
        assert_eq!(
            ex[0],
            SftExample::Conversation(vec![
                Message::system("Be brief."),
                Message::user("Hi"),
                Message::assistant("Hello")
            ])
        );
        assert_eq!(
            ex[1],
            SftExample::Conversation(ex[0].to_messages()[1..].to_vec())
        );
    }

    #[test]
    fn bad_lines_get_line_numbered_errors() {
        let dir = tempfile::tempdir().unwrap();
        let ok = r#"{"prompt": "a", "completion": "b"}"#;
        let cases = [
            ("{oops", "invalid JSON"),
            (
                r#"{"prompt": "a"}"#,
                "no 'completion' field; its fields are: 'prompt'",
            ),
            (r#"{"completion": "a"}"#, "no 'prompt' field"),
            (
                r#"{"prompt": "a", "completion": 3}"#,
                "found a string and a number",
            ),
            (
                r#"{"prompt": "a", "completion": "  "}"#,
                "'completion' is empty",
            ),
            (r#"{"messages": []}"#, "the conversation is empty"),
            (
                r#"{"messages": [{"role": "user", "content": "a"}]}"#,
                "no assistant turn",
            ),
            (
                r#"{"messages": [{"role": "tool", "content": "a"}]}"#,
                "message 1 has role 'tool'; valid roles: system, user, assistant",
            ),
            (
                r#"{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": null}]}"#,
                "message 2's content must be a string, found null",
            ),
            (
                r#"{"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}]}"#,
                "message 1's content must be a string, found a list",
            ),
            (
                r#"{"messages": [{"role": "user", "content": "a"}], "tools": [{"type": "function"}]}"#,
                "tool definitions ('tools') are not supported",
            ),
            (r#"{"messages": "hi"}"#, "'messages' must be a list"),
            ("[1, 2]", "expected a JSON object"),
        ];
        for (i, (bad, expected)) in cases.iter().enumerate() {
            let p = write(
                dir.path(),
                &format!("bad{i}.jsonl"),
                &format!("{ok}\n{bad}\n"),
            );
            let e = err(&p);
            assert!(
                e.contains("line 2") && e.contains(expected) && e.contains(&format!("bad{i}")),
                "{bad}: {e}"
            );
        }
        let empty = write(dir.path(), "empty.jsonl", "\n\n");
        assert!(err(&empty).contains("holds no examples"));
        let tsv = write(dir.path(), "e.tsv", "prompt\tcompletion\na\t\n");
        assert!(err(&tsv).contains("line 2: the 'completion' column is empty"));
    }
}
