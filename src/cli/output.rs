//! What an operator command prints: aligned columns under a header row, `key: value` lines, or
//! one sentence for people; the same data as JSON with `--json`.

use std::fmt::Write as _;

use serde_json::{Map, Value};

/// The result of one command.
#[derive(Debug)]
pub enum Output {
    /// A change was made: a sentence for people, the changed object for machines.
    Done {
        /// One line (or a few) for people.
        text: String,
        /// The same for `--json`.
        json: Value,
    },
    /// One object: `key: value` lines.
    Record(Vec<(&'static str, Value)>),
    /// Rows under a header.
    Table {
        /// Column names (and the JSON keys).
        columns: &'static [&'static str],
        /// One value per column.
        rows: Vec<Vec<Value>>,
    },
}

impl Output {
    /// The text to print on stdout, ending in a newline (or empty).
    pub fn render(&self, json: bool) -> String {
        if json {
            let value = match self {
                Self::Done { json, .. } => json.clone(),
                Self::Record(fields) => object(fields.iter().map(|(k, v)| (*k, v))),
                Self::Table { columns, rows } => Value::Array(
                    rows.iter()
                        .map(|row| object(columns.iter().copied().zip(row)))
                        .collect(),
                ),
            };
            let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
            text.push('\n');
            return text;
        }
        match self {
            Self::Done { text, .. } => format!("{text}\n"),
            Self::Record(fields) => {
                let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
                let mut out = String::new();
                for (key, value) in fields {
                    let _ = writeln!(out, "{:<width$} {}", format!("{key}:"), cell(value));
                }
                out
            }
            Self::Table { columns, rows } => {
                let cells: Vec<Vec<String>> = rows
                    .iter()
                    .map(|row| row.iter().map(cell).collect())
                    .collect();
                let header: Vec<String> = columns.iter().map(|c| (*c).to_owned()).collect();
                let mut widths: Vec<usize> = header.iter().map(|c| c.chars().count()).collect();
                for row in &cells {
                    for (width, text) in widths.iter_mut().zip(row) {
                        *width = (*width).max(text.chars().count());
                    }
                }
                let mut out = String::new();
                for row in std::iter::once(&header).chain(&cells) {
                    let mut line = String::new();
                    for (i, (text, width)) in row.iter().zip(&widths).enumerate() {
                        if i + 1 == row.len() {
                            line.push_str(text);
                        } else {
                            let pad = width - text.chars().count();
                            let _ = write!(line, "{text}{:pad$}  ", "");
                        }
                    }
                    out.push_str(line.trim_end());
                    out.push('\n');
                }
                out
            }
        }
    }
}

fn object<'a>(pairs: impl Iterator<Item = (&'a str, &'a Value)>) -> Value {
    Value::Object(
        pairs
            .map(|(k, v)| (k.to_owned(), v.clone()))
            .collect::<Map<_, _>>(),
    )
}

/// A value as a table cell: strings unquoted, `null` as `-`.
fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_under_a_header_and_convert_to_json() {
        let table = Output::Table {
            columns: &["id", "name", "flag"],
            rows: vec![
                vec![json!("1"), json!("a long name"), json!(true)],
                vec![json!("22"), Value::Null, json!(false)],
            ],
        };
        assert_eq!(
            table.render(false),
            "id  name         flag\n1   a long name  true\n22  -            false\n"
        );
        let parsed: Value = serde_json::from_str(&table.render(true)).unwrap();
        assert_eq!(parsed[1], json!({"id": "22", "name": null, "flag": false}));
    }

    #[test]
    fn records_are_key_value_lines() {
        let record = Output::Record(vec![
            ("corp_id", json!("123")),
            ("cert_required", json!(true)),
        ]);
        assert_eq!(
            record.render(false),
            "corp_id:       123\ncert_required: true\n"
        );
    }
}
