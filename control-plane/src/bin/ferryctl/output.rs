//! Plain-text rendering for humans: aligned tables, `key: value` blocks, times and
//! durations. No I/O here; callers decide where the text goes.
//!
//! Cell text comes from the server, so control characters are escaped: a hostile
//! description must not be able to move the cursor or fake extra rows.

use std::fmt::Write as _;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Shown for absent values, so columns never collapse.
pub const NONE: &str = "-";

/// Columns separated by two spaces, each as wide as its widest cell; headers upper-case.
#[derive(Debug, Clone)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| h.to_uppercase()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells show as [`NONE`], extra cells are dropped.
    pub fn row(&mut self, cells: Vec<String>) {
        let mut cells: Vec<String> = cells
            .into_iter()
            .take(self.headers.len())
            .map(|c| {
                if c.is_empty() {
                    NONE.to_owned()
                } else {
                    clean(&c)
                }
            })
            .collect();
        cells.resize(self.headers.len(), NONE.to_owned());
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', w - width(cell)));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A `key: value` block with the values aligned, for showing one resource.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let key_width = pairs.iter().map(|(k, _)| width(k)).max().unwrap_or(0);
    let mut out = String::new();
    for (key, value) in pairs {
        let value = if value.is_empty() {
            NONE.to_owned()
        } else {
            clean(value)
        };
        let pad = key_width - width(key);
        // Writing to a String cannot fail.
        let _ = writeln!(out, "{key}:{:pad$} {value}", "", pad = pad);
    }
    out
}

/// RFC 3339, as the API itself writes times.
pub fn time(t: OffsetDateTime) -> String {
    // Only years outside 0..=9999 fail to format; show them some other way than not at all.
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

pub fn opt_time(t: Option<OffsetDateTime>) -> String {
    t.map(time).unwrap_or_else(|| NONE.to_owned())
}

/// Seconds as the largest whole units: `3600` -> `1h`, `5400` -> `1h30m`, `0` -> `0s`.
pub fn duration(secs: u64) -> String {
    if secs == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    let mut rest = secs;
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if rest >= size {
            let _ = write!(out, "{}{unit}", rest / size);
            rest %= size;
        }
    }
    out
}

/// Shortens `s` to at most `max` characters, marking the cut with `...`.
pub fn truncate(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_owned();
    }
    let keep: String = s.chars().take(max.saturating_sub(3)).collect();
    format!("{keep}...")
}

/// Escapes control characters (newlines included) so one value stays one cell.
pub fn clean(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn width(s: &str) -> usize {
    s.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn tables_align_columns_and_trim_trailing_space() {
        let mut t = Table::new(&["name", "tenant", "created"]);
        t.row(vec![
            "web".into(),
            "default".into(),
            "2026-01-01T00:00:00Z".into(),
        ]);
        t.row(vec!["payments-api".into(), "acme".into(), "x".into()]);
        let expected = "\
NAME          TENANT   CREATED
web           default  2026-01-01T00:00:00Z
payments-api  acme     x
";
        assert_eq!(t.render(), expected);
    }

    #[test]
    fn tables_fill_missing_cells_and_escape_control_characters() {
        let mut t = Table::new(&["a", "b"]);
        t.row(vec!["evil\nrow".into()]);
        t.row(vec![String::new(), "é".into(), "dropped".into()]);
        assert_eq!(t.render(), "A          B\nevil\\nrow  -\n-          é\n");
        assert_eq!(Table::new(&["only"]).render(), "ONLY\n");
    }

    #[test]
    fn fields_align_values() {
        let text = fields(&[
            ("name", "web".into()),
            ("key type", "ed25519".into()),
            ("x", "".into()),
        ]);
        assert_eq!(text, "name:     web\nkey type: ed25519\nx:        -\n");
    }

    #[test]
    fn times_are_rfc3339_and_durations_are_compact() {
        assert_eq!(
            time(datetime!(2026-03-04 05:06:07 UTC)),
            "2026-03-04T05:06:07Z"
        );
        assert_eq!(opt_time(None), "-");
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(3600), "1h");
        assert_eq!(duration(5400), "1h30m");
        assert_eq!(duration(30 * 86_400 + 1), "30d1s");
    }

    #[test]
    fn truncate_keeps_short_text_and_marks_cuts() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("abcdefghijkl", 8), "abcde...");
    }
}
