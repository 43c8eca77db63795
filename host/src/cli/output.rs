//! Shared output shapes: the stable JSON view of a certificate and plain-text tables.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde::Serialize;

pub use certhost::view::{CertView, days_until, rfc3339};

/// Unix seconds now.
pub fn now() -> i64 {
    certhost::clock::unix_now()
}

/// `text` with its control characters (C0, DEL, C1) and Unicode bidirectional controls written
/// as escapes (`\x1b`, `\u{9b}`, `\u{202e}`), for human output. Names in certificates come
/// from whoever made them: an imported certificate whose CN holds `ESC[2J` or a carriage return
/// would otherwise clear the screen or overwrite rows of a listing, and one holding U+202E
/// (right-to-left override) would show `www.example.com` for a name that is not. JSON output
/// needs none of this (serde escapes control characters; bidi controls are data there).
pub fn terminal_safe(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c as u32 {
            // Writing to a String cannot fail.
            code @ (0..=0x1f | 0x7f) => {
                let _ = write!(out, "\\x{code:02x}");
            }
            code if needs_escape(c) => {
                let _ = write!(out, "\\u{{{code:x}}}");
            }
            _ => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Control characters and the bidirectional formatting characters that reorder what a terminal
/// shows.
fn needs_escape(c: char) -> bool {
    c.is_control() || certhost::view::reorders_text(c)
}

/// `n` with the noun in the right number ("1 certificate", "2 certificates").
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Prints rows as an aligned table with a header. Cells are shown [`terminal_safe`].
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let rows: Vec<Vec<Cow<'_, str>>> =
        rows.iter().map(|row| row.iter().map(|cell| terminal_safe(cell)).collect()).collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{:<w$}  ", cell, w = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(|cell| cell.as_ref()).collect());
    }
}

/// Prints a JSON value as an indented outline, for a human reading one object (`account show`,
/// `profile show`): `key: value` lines, nested objects indented under their key, lists of
/// plain values on one line, empty values left out. `--json` prints the same value exactly.
pub fn outline(value: &serde_json::Value) {
    let mut out = String::new();
    outline_into(&mut out, value, 0);
    print!("{out}");
}

fn outline_into(out: &mut String, value: &serde_json::Value, depth: usize) {
    use serde_json::Value;
    let pad = "  ".repeat(depth);
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match v {
                    Value::Null => {}
                    Value::Array(items) if items.is_empty() => {}
                    Value::Object(inner) if inner.is_empty() => {}
                    Value::Object(_) => {
                        let _ = writeln!(out, "{pad}{}:", terminal_safe(key));
                        outline_into(out, v, depth + 1);
                    }
                    Value::Array(items) if items.iter().any(|i| i.is_object() || i.is_array()) => {
                        let _ = writeln!(out, "{pad}{}:", terminal_safe(key));
                        for item in items {
                            let _ = writeln!(out, "{pad}  -");
                            outline_into(out, item, depth + 2);
                        }
                    }
                    other => {
                        let _ = writeln!(out, "{pad}{}: {}", terminal_safe(key), terminal_safe(&plain(other)));
                    }
                }
            }
        }
        other => {
            let _ = writeln!(out, "{pad}{}", terminal_safe(&plain(other)));
        }
    }
}

/// A scalar as its text, a list of them comma-separated.
fn plain(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => items.iter().map(plain).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

/// Prints JSON to stdout.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{outline_into, terminal_safe};

    #[test]
    fn control_characters_are_escaped_and_other_text_kept() {
        assert_eq!(terminal_safe("www.example.com, Zürich"), "www.example.com, Zürich");
        assert_eq!(terminal_safe("a\x1b[2Jb\rc\0d\x7fe\u{9b}31m"), r"a\x1b[2Jb\x0dc\x00d\x7fe\u{9b}31m");
        assert_eq!(terminal_safe("tab\tnewline\n"), r"tab\x09newline\x0a");
        assert_eq!(terminal_safe("moc.elpmaxe\u{202e}.www"), r"moc.elpmaxe\u{202e}.www");
        assert_eq!(terminal_safe("a\u{2066}b\u{200f}c\u{61c}"), r"a\u{2066}b\u{200f}c\u{61c}");
    }

    #[test]
    fn an_outline_indents_objects_and_joins_plain_lists() {
        let value = serde_json::json!({
            "name": "demo", "description": null, "accounts": ["a", "b"], "tags": [],
            "cn": {"required": true, "max_length": 64},
            "targets": [{"type": "file", "path": "/x"}],
            "evil": "a\u{1b}[2J",
        });
        let mut out = String::new();
        outline_into(&mut out, &value, 0);
        assert_eq!(
            out,
            "accounts: a, b\ncn:\n  max_length: 64\n  required: true\nevil: a\\x1b[2J\nname: demo\ntargets:\n  -\n    path: /x\n    type: file\n"
        );
    }
}
