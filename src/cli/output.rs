//! How listing and show commands print: `-o table|wide|json|yaml`, and tables cut to the terminal's
//! width (a long cell ends in `…`) unless `-o wide` asks for every column in full.

use std::io::IsTerminal;

use serde_json::Value;

use super::show::emit;

/// `-o`, `--output`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns that fit the terminal.
    #[default]
    Table,
    /// More columns, none cut.
    Wide,
    /// The API's objects, as JSON.
    Json,
    /// The same objects, as YAML.
    Yaml,
}

/// `-o FORMAT` and its older spelling `--json`, global to a command's subcommands so that
/// `homeostat runs -o json show ID` reads as `homeostat runs show ID -o json`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Args {
    /// Output format: table (fits the terminal), wide (more columns, nothing cut), json or yaml.
    #[arg(
        long = "output",
        short = 'o',
        global = true,
        value_enum,
        value_name = "FORMAT"
    )]
    output: Option<Format>,
    /// The same as `-o json`.
    #[arg(long, global = true)]
    json: bool,
}

impl Args {
    pub fn format(&self) -> Format {
        match (self.output, self.json) {
            (Some(format), _) => format,
            (None, true) => Format::Json,
            (None, false) => Format::Table,
        }
    }
}

impl Format {
    /// Prints `data` as JSON or YAML; false (nothing printed) for the table formats.
    pub fn print_data(self, data: &(impl serde::Serialize + ?Sized)) -> bool {
        match self {
            Format::Json => {
                super::show::print_json(data);
                true
            }
            Format::Yaml => {
                match serde_yaml_ng::to_string(data) {
                    Ok(text) => emit(&text),
                    // Only a map with non-string keys fails, and the API sends none.
                    Err(error) => eprintln!("error: cannot write YAML: {error}"),
                }
                true
            }
            Format::Table | Format::Wide => false,
        }
    }

    /// Prints a table: `headers` and `rows`, fitted to the terminal unless wide.
    pub fn print_table(self, headers: &[&str], rows: Vec<Vec<String>>) {
        let limit = if self == Format::Wide {
            None
        } else {
            width_limit()
        };
        emit(&render(
            headers,
            rows,
            limit,
            std::io::stdout().is_terminal(),
        ));
    }
}

/// How wide a table may be: `COLUMNS` when set (as shells and `kubectl` honour it), else the
/// terminal's width when stdout is one; `None` (no limit) when piped, so scripts get whole cells.
pub fn width_limit() -> Option<usize> {
    if let Some(columns) = std::env::var("COLUMNS")
        .ok()
        .and_then(|text| text.trim().parse::<usize>().ok())
        .filter(|columns| *columns > 0)
    {
        return Some(columns);
    }
    if !std::io::stdout().is_terminal() {
        return None;
    }
    terminal_size::terminal_size_of(std::io::stdout()).map(|(width, _)| usize::from(width.0))
}

/// The narrowest a column is cut to: its header, and at least this many characters.
const MIN_COLUMN: usize = 6;

/// Rows as aligned columns under a header line (bold when `bold`). With a `limit`, the widest
/// columns are narrowed one character at a time until the line fits (never below their header or
/// [`MIN_COLUMN`]), and cells that no longer fit end in `…`.
pub fn render(
    headers: &[&str],
    rows: Vec<Vec<String>>,
    limit: Option<usize>,
    bold: bool,
) -> String {
    // Control characters (a newline in a title) would break the table's lines.
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|cell| {
                    cell.chars()
                        .map(|c| if c.is_control() { ' ' } else { c })
                        .collect()
                })
                .collect()
        })
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (index, cell) in row.iter().enumerate() {
            widths[index] = widths[index].max(cell.chars().count());
        }
    }
    if let Some(limit) = limit {
        let floor: Vec<usize> = headers
            .iter()
            .map(|h| h.chars().count().max(MIN_COLUMN))
            .collect();
        let total = |widths: &[usize]| widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
        while total(&widths) > limit {
            let widest = widths
                .iter()
                .enumerate()
                .filter(|(index, width)| **width > floor[*index])
                .max_by_key(|(index, width)| (**width, *index))
                .map(|(index, _)| index);
            match widest {
                Some(index) => widths[index] -= 1,
                // Every column is as narrow as it may be: the line stays longer than the limit.
                None => break,
            }
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len() - 1;
        cells
            .into_iter()
            .enumerate()
            .map(|(index, cell)| {
                let cell = cut(&cell, widths[index]);
                if index == last {
                    cell
                } else {
                    format!("{cell:<width$}", width = widths[index])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let header = line(headers.iter().map(|h| h.to_string()).collect());
    let mut out = if bold {
        format!("\x1b[1m{header}\x1b[0m\n")
    } else {
        format!("{header}\n")
    };
    for row in rows {
        out.push_str(line(row).trim_end());
        out.push('\n');
    }
    out
}

/// `text` in at most `width` characters, ending in `…` when cut.
fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// A JSON value as one table cell: text as is, `null` as `-`, anything else as compact JSON.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(text) if text.is_empty() => "-".into(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// `verdicts[].detail` joined by `; `, as events carry them; empty when there are none.
pub fn verdicts(value: &Value) -> String {
    value["verdicts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|verdict| verdict["detail"].as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Labels as `k=v,k=v`.
pub fn labels(value: &Value) -> String {
    value
        .as_object()
        .map(|labels| {
            labels
                .iter()
                .map(|(key, value)| format!("{key}={}", value.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// An RFC 3339 time as `2026-01-02 15:04:05` (UTC), or `-`.
pub fn time(value: &Value) -> String {
    value
        .as_str()
        .and_then(|text| text.parse::<chrono::DateTime<chrono::Utc>>().ok())
        .map(|at| at.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "-".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Vec<String>> {
        vec![
            vec![
                "1".into(),
                "open".into(),
                "x".repeat(200),
                "{service=\"a\"}".into(),
            ],
            vec!["22".into(), "resolved".into(), "short".into(), "-".into()],
        ]
    }

    #[test]
    fn a_table_fits_the_width_by_cutting_its_widest_cells() {
        let text = render(&["ID", "STATE", "TITLE", "GROUP"], rows(), Some(60), false);
        for line in text.lines() {
            assert!(line.chars().count() <= 60, "{line:?} is too wide");
        }
        assert!(text.contains('…'), "{text}");
        assert!(
            text.contains("{service=\"a\"}"),
            "narrow columns stay whole: {text}"
        );
        assert!(text.starts_with("ID  STATE     TITLE"), "{text}");
    }

    #[test]
    fn without_a_limit_nothing_is_cut() {
        let text = render(&["ID", "STATE", "TITLE", "GROUP"], rows(), None, false);
        assert!(text.contains(&"x".repeat(200)));
        assert!(!text.contains('…'));
    }

    #[test]
    fn a_limit_below_the_headers_keeps_every_header_whole() {
        let text = render(&["ID", "STATE", "TITLE", "GROUP"], rows(), Some(5), false);
        assert!(text.starts_with("ID  STATE   TITLE   GROUP"), "{text}");
    }

    #[test]
    fn newlines_in_cells_do_not_break_lines() {
        let text = render(
            &["A", "B"],
            vec![vec!["x\ny".into(), "z".into()]],
            None,
            false,
        );
        assert_eq!(text, "A    B\nx y  z\n");
    }

    #[test]
    fn verdicts_join_their_details_and_tolerate_absence() {
        let event = serde_json::json!({"verdicts": [
            {"kind": "repeat", "detail": "a repeat of a firing alert"},
            {"kind": "skipped", "rule": "r", "detail": "cooldown until 10:00"}
        ]});
        assert_eq!(
            verdicts(&event),
            "a repeat of a firing alert; cooldown until 10:00"
        );
        assert_eq!(verdicts(&serde_json::json!({})), "");
    }
}
