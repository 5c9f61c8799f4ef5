//! Readers for labelled text in TSV, CSV and JSONL files, and for plain-text corpora.
//!
//! Every reader reports problems with the file and the 1-based line: an empty file, a missing
//! column (listing the columns that exist), a malformed row, or a label outside the vocabulary.

use std::path::{Path, PathBuf};

use crate::dataset::{Example, LabelVocab};
use crate::error::{DataError, Result, io};

/// The layout of a labelled data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFormat {
    /// Tab-separated values with a header line.
    Tsv,
    /// Comma-separated values (RFC 4180 quoting) with a header line.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

impl TableFormat {
    /// The format a file name implies (`.tsv`, `.csv`, `.jsonl` / `.ndjson`).
    pub fn from_path(path: &Path) -> Result<Self> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("tsv") | Some("tab") => Ok(Self::Tsv),
            Some("csv") => Ok(Self::Csv),
            Some("jsonl") | Some("ndjson") => Ok(Self::Jsonl),
            _ => Err(DataError::InvalidArgument(format!(
                "cannot tell the format of {} from its extension; use .tsv, .csv or .jsonl",
                path.display()
            ))),
        }
    }
}

/// Which columns hold the text, the optional second text and the label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns {
    /// The text column.
    pub text: String,
    /// The second-text column of a pair task.
    pub text_pair: Option<String>,
    /// The label column.
    pub label: String,
}

impl Default for Columns {
    fn default() -> Self {
        Self {
            text: "text".into(),
            text_pair: None,
            label: "label".into(),
        }
    }
}

/// A parsed file: its column names and its rows (1-based line number, one value per column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// The file the table came from.
    pub path: PathBuf,
    /// Column names, in file order.
    pub columns: Vec<String>,
    /// Rows with the line each starts on.
    pub rows: Vec<(usize, Vec<String>)>,
}

impl Table {
    /// Reads `path` in `format`.
    pub fn read(path: &Path, format: TableFormat) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(io("reading", path))?;
        let text = String::from_utf8(bytes).map_err(|e| DataError::Malformed {
            path: path.to_path_buf(),
            line: 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count(),
            reason: "the file is not valid UTF-8".into(),
        })?;
        let table = match format {
            TableFormat::Tsv => parse_tsv(path, &text)?,
            TableFormat::Csv => parse_csv(path, &text)?,
            TableFormat::Jsonl => parse_jsonl(path, &text)?,
        };
        if table.rows.is_empty() {
            return Err(DataError::EmptyData {
                path: path.to_path_buf(),
                detail: String::new(),
            });
        }
        Ok(table)
    }

    /// The position of column `name`, or an error listing the columns that exist.
    pub fn column(&self, name: &str) -> Result<usize> {
        self.columns
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| DataError::MissingColumn {
                path: self.path.clone(),
                column: name.to_string(),
                available: self.columns.clone(),
            })
    }

    /// Turns the rows into examples. With `labels`, every label must be in it (the error names
    /// the line); without, the vocabulary is the sorted set of labels seen.
    pub fn examples(
        &self,
        columns: &Columns,
        labels: Option<&LabelVocab>,
    ) -> Result<(Vec<Example>, LabelVocab)> {
        let text = self.column(&columns.text)?;
        let pair = columns
            .text_pair
            .as_deref()
            .map(|c| self.column(c))
            .transpose()?;
        let label = self.column(&columns.label)?;
        let vocab = match labels {
            Some(v) => v.clone(),
            None => LabelVocab::from_observed(self.rows.iter().map(|(_, r)| r[label].as_str()))
                .map_err(|e| DataError::InvalidArgument(format!("{}: {e}", self.path.display())))?,
        };
        let examples = self
            .rows
            .iter()
            .map(|(line, row)| {
                let name = row[label].as_str();
                let class = vocab
                    .index_of(name)
                    .ok_or_else(|| DataError::UnknownLabel {
                        path: self.path.clone(),
                        line: *line,
                        label: name.to_string(),
                        known: vocab.names().to_vec(),
                    })?;
                Ok(Example {
                    text: row[text].clone(),
                    text_pair: pair.map(|p| row[p].clone()),
                    label: class,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((examples, vocab))
    }
}

/// Reads labelled examples from `path` (format from its extension). See [`Table::examples`].
///
/// ```no_run
/// use lora_data::readers::{read_examples, Columns};
///
/// let columns = Columns { text: "review".into(), text_pair: None, label: "sentiment".into() };
/// let (examples, labels) = read_examples("train.csv".as_ref(), &columns, None)?;
/// println!("{} examples, labels {:?}", examples.len(), labels.names());
/// # Ok::<(), lora_data::DataError>(())
/// ```
pub fn read_examples(
    path: &Path,
    columns: &Columns,
    labels: Option<&LabelVocab>,
) -> Result<(Vec<Example>, LabelVocab)> {
    Table::read(path, TableFormat::from_path(path)?)?.examples(columns, labels)
}

fn malformed(path: &Path, line: usize, reason: impl Into<String>) -> DataError {
    DataError::Malformed {
        path: path.to_path_buf(),
        line,
        reason: reason.into(),
    }
}

fn parse_tsv(path: &Path, text: &str) -> Result<Table> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Err(DataError::EmptyData {
            path: path.to_path_buf(),
            detail: " (not even a header line)".into(),
        });
    };
    let columns: Vec<String> = header.split('\t').map(|c| c.trim().to_string()).collect();
    let rows = lines
        .map(|(line, l)| {
            let fields: Vec<String> = l.split('\t').map(str::to_string).collect();
            if fields.len() != columns.len() {
                return Err(malformed(
                    path,
                    line,
                    format!(
                        "{} tab-separated fields, but the header has {}",
                        fields.len(),
                        columns.len()
                    ),
                ));
            }
            Ok((line, fields))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Table {
        path: path.to_path_buf(),
        columns,
        rows,
    })
}

fn parse_csv(path: &Path, text: &str) -> Result<Table> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(text.as_bytes());
    let columns: Vec<String> = reader
        .headers()
        .map_err(|e| malformed(path, 1, e.to_string()))?
        .iter()
        .map(|c| c.trim().to_string())
        .collect();
    if columns.iter().all(String::is_empty) {
        return Err(DataError::EmptyData {
            path: path.to_path_buf(),
            detail: " (not even a header line)".into(),
        });
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line() as usize);
            malformed(path, line, e.to_string())
        })?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        rows.push((line, record.iter().map(str::to_string).collect()));
    }
    Ok(Table {
        path: path.to_path_buf(),
        columns,
        rows,
    })
}

fn parse_jsonl(path: &Path, text: &str) -> Result<Table> {
    let mut columns: Vec<String> = Vec::new();
    let mut objects = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let line = i + 1;
        if l.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(l)
            .map_err(|e| malformed(path, line, format!("invalid JSON: {e}")))?;
        let serde_json::Value::Object(map) = value else {
            return Err(malformed(path, line, "expected a JSON object"));
        };
        for key in map.keys() {
            if !columns.contains(key) {
                columns.push(key.clone());
            }
        }
        objects.push((line, map));
    }
    let rows = objects
        .into_iter()
        .map(|(line, map)| {
            let row = columns
                .iter()
                .map(|c| match map.get(c) {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(serde_json::Value::Null) | None => String::new(),
                    Some(other) => other.to_string(),
                })
                .collect();
            (line, row)
        })
        .collect();
    Ok(Table {
        path: path.to_path_buf(),
        columns,
        rows,
    })
}

/// Reads a plain-text corpus: one document per non-empty line.
pub fn read_text_lines(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(io("reading", path))?;
    let lines: Vec<String> = text
        .lines()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if lines.is_empty() {
        return Err(DataError::EmptyData {
            path: path.to_path_buf(),
            detail: String::new(),
        });
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn the_three_formats_read_the_same_examples() {
        let dir = tempfile::tempdir().unwrap();
        let tsv = write(
            dir.path(),
            "a.tsv",
            "text\tlabel\ngood film\tpos\r\nbad film\tneg\n",
        );
        let csv = write(
            dir.path(),
            "a.csv",
            "text,label\n\"good film\",pos\n\"bad film\",neg\n",
        );
        let jsonl = write(
            dir.path(),
            "a.jsonl",
            "{\"text\": \"good film\", \"label\": \"pos\"}\n\n{\"text\": \"bad film\", \"label\": \"neg\"}\n",
        );
        let cols = Columns::default();
        let (a, va) = read_examples(&tsv, &cols, None).unwrap();
        let (b, _) = read_examples(&csv, &cols, None).unwrap();
        let (c, _) = read_examples(&jsonl, &cols, None).unwrap();
        assert_eq!(va.names(), ["neg", "pos"]);
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a[0].label, 1);
    }

    #[test]
    fn pair_columns_and_numeric_labels() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "p.jsonl",
            "{\"q\": \"a\", \"d\": \"b\", \"y\": 1}\n{\"q\": \"c\", \"d\": \"e\", \"y\": 0}\n",
        );
        let cols = Columns {
            text: "q".into(),
            text_pair: Some("d".into()),
            label: "y".into(),
        };
        let (ex, v) = read_examples(&p, &cols, None).unwrap();
        assert_eq!(v.names(), ["0", "1"]);
        assert_eq!(ex[0].text_pair.as_deref(), Some("b"));
        assert_eq!(ex[0].label, 1);
    }

    #[test]
    fn bad_data_gets_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let cols = Columns::default();
        let empty = write(dir.path(), "e.csv", "");
        let err = read_examples(&empty, &cols, None).unwrap_err().to_string();
        assert!(err.contains("holds no examples"), "{err}");
        let header_only = write(dir.path(), "h.tsv", "text\tlabel\n");
        let err = read_examples(&header_only, &cols, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("holds no examples"), "{err}");

        let missing = write(dir.path(), "m.tsv", "sentence\tlabel\nx\ty\nz\tw\n");
        let err = read_examples(&missing, &cols, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no column 'text'") && err.contains("sentence, label"),
            "{err}"
        );

        let vocab = LabelVocab::new(["neg", "pos"]).unwrap();
        let unknown = write(dir.path(), "u.tsv", "text\tlabel\na\tpos\nb\tmeh\n");
        let err = read_examples(&unknown, &cols, Some(&vocab))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 3") && err.contains("'meh'") && err.contains("neg, pos"),
            "{err}"
        );

        let ragged = write(dir.path(), "r.tsv", "text\tlabel\na\tpos\textra\n");
        let err = read_examples(&ragged, &cols, None).unwrap_err().to_string();
        assert!(
            err.contains("line 2") && err.contains("3 tab-separated fields"),
            "{err}"
        );

        let bad_json = write(
            dir.path(),
            "b.jsonl",
            "{\"text\": \"a\", \"label\": 1}\n{oops\n",
        );
        let err = read_examples(&bad_json, &cols, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 2") && err.contains("invalid JSON"),
            "{err}"
        );

        let unknown_ext = write(dir.path(), "x.txt", "a");
        let err = read_examples(&unknown_ext, &cols, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains(".tsv, .csv or .jsonl"), "{err}");

        let blank = write(dir.path(), "blank.txt", "\n  \n");
        assert!(read_text_lines(&blank).is_err());
    }
}
