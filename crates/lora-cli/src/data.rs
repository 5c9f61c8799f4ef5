//! Reading the user's data, shared by `lora train` and `lora eval`.

use std::path::Path;

use anyhow::Result;
use clap::Args;
use lora_data::readers::{Columns, Table, TableFormat, read_text_lines};

/// The column flags of a table file.
#[derive(Args, Clone, Default)]
pub struct ColumnArgs {
    /// The text column (default: text).
    #[arg(long)]
    pub text_col: Option<String>,
    /// The second-text column of a pair task.
    #[arg(long)]
    pub text_pair_col: Option<String>,
    /// The label column (default: label).
    #[arg(long)]
    pub label_col: Option<String>,
}

impl ColumnArgs {
    /// The columns these flags name.
    pub fn columns(&self) -> Columns {
        columns(
            self.text_col.as_deref(),
            self.text_pair_col.as_deref(),
            self.label_col.as_deref(),
        )
    }
}

/// The columns named by `--text-col`, `--text-pair-col` and `--label-col` (defaults: `text`,
/// none, `label`).
pub fn columns(text: Option<&str>, text_pair: Option<&str>, label: Option<&str>) -> Columns {
    let default = Columns::default();
    Columns {
        text: text.map_or(default.text, str::to_string),
        text_pair: text_pair.map(str::to_string),
        label: label.map_or(default.label, str::to_string),
    }
}

/// Documents for a causal LM: the lines of a `.txt` file, or the `text_column` of a table.
pub fn read_documents(path: &Path, text_column: &str) -> Result<Vec<String>> {
    if path.extension().is_some_and(|e| e == "txt") {
        return Ok(read_text_lines(path)?);
    }
    let table = Table::read(path, TableFormat::from_path(path)?)?;
    let column = table.column(text_column)?;
    Ok(table
        .rows
        .iter()
        .map(|(_, row)| row[column].clone())
        .collect())
}
