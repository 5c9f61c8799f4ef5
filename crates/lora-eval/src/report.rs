//! Result tables as Markdown and CSV, and the machine they were measured on.

use serde::{Deserialize, Serialize};

/// A titled table of strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    /// Title (a Markdown heading in reports).
    pub title: String,
    /// Column names.
    pub header: Vec<String>,
    /// Rows, one string per column.
    pub rows: Vec<Vec<String>>,
    /// A note printed under the table.
    pub note: Option<String>,
}

impl Table {
    /// An empty table.
    pub fn new<S: Into<String>>(
        title: impl Into<String>,
        header: impl IntoIterator<Item = S>,
    ) -> Self {
        Self {
            title: title.into(),
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
            note: None,
        }
    }

    /// Appends a row.
    pub fn push<S: Into<String>>(&mut self, row: impl IntoIterator<Item = S>) {
        self.rows.push(row.into_iter().map(Into::into).collect());
    }

    /// A Markdown table (pipes in cells are escaped).
    ///
    /// ```
    /// let mut t = lora_eval::Table::new("Demo", ["method", "accuracy"]);
    /// t.push(["lora", "0.81"]);
    /// assert_eq!(t.to_markdown(), "| method | accuracy |\n|---|---|\n| lora | 0.81 |\n");
    /// ```
    pub fn to_markdown(&self) -> String {
        let cell = |s: &String| s.replace('|', "\\|");
        let mut out = format!(
            "| {} |\n",
            self.header.iter().map(cell).collect::<Vec<_>>().join(" | ")
        );
        out += &format!("|{}\n", "---|".repeat(self.header.len()));
        for row in &self.rows {
            out += &format!(
                "| {} |\n",
                row.iter().map(cell).collect::<Vec<_>>().join(" | ")
            );
        }
        out
    }

    /// CSV with a header line (RFC 4180 quoting).
    pub fn to_csv(&self) -> String {
        let cell = |s: &String| {
            if s.contains([',', '"', '\n']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.clone()
            }
        };
        let line = |r: &Vec<String>| r.iter().map(cell).collect::<Vec<_>>().join(",") + "\n";
        std::iter::once(&self.header)
            .chain(&self.rows)
            .map(line)
            .collect()
    }
}

/// Facts about the machine and build, for reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineInfo {
    /// CPU model name.
    pub cpu: String,
    /// Logical CPUs available to this process.
    pub cpus: usize,
    /// Total memory in GiB.
    pub memory_gib: Option<f64>,
    /// Operating system and architecture.
    pub os: String,
    /// The lora-burn version.
    pub lora_burn: String,
    /// The device the measurements ran on.
    pub device: String,
}

impl MachineInfo {
    /// Reads what it can from the system (`/proc` on Linux).
    pub fn collect(device: &str) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let memory_gib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
            let kib: f64 = m.lines().next()?.split_whitespace().nth(1)?.parse().ok()?;
            Some((kib / (1024.0 * 1024.0) * 10.0).round() / 10.0)
        });
        Self {
            cpu,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib,
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            lora_burn: env!("CARGO_PKG_VERSION").into(),
            device: device.into(),
        }
    }

    /// One line for a report.
    pub fn describe(&self) -> String {
        format!(
            "{} ({} CPUs{}), {}, device {}, lora-burn {}",
            self.cpu,
            self.cpus,
            self.memory_gib
                .map(|g| format!(", {g} GiB"))
                .unwrap_or_default(),
            self.os,
            self.device,
            self.lora_burn
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_it() {
        let mut t = Table::new("t", ["a", "b"]);
        t.push(["x,y", "say \"hi\""]);
        assert_eq!(t.to_csv(), "a,b\n\"x,y\",\"say \"\"hi\"\"\"\n");
        assert!(t.to_markdown().contains("| x,y | say \"hi\" |"));
    }
}
