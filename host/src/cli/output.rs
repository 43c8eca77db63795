//! Shared output shapes: the stable JSON view of a certificate and plain-text tables.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde::Serialize;

pub use certhost::view::{CertView, days_until, rfc3339};

/// Unix seconds now.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
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
/// shows (the "Trojan Source" set: LRM, RLM, ALM, LRE…RLO, LRI…PDI).
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
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

/// Prints JSON to stdout.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::terminal_safe;

    #[test]
    fn control_characters_are_escaped_and_other_text_kept() {
        assert_eq!(terminal_safe("www.example.com, Zürich"), "www.example.com, Zürich");
        assert_eq!(terminal_safe("a\x1b[2Jb\rc\0d\x7fe\u{9b}31m"), r"a\x1b[2Jb\x0dc\x00d\x7fe\u{9b}31m");
        assert_eq!(terminal_safe("tab\tnewline\n"), r"tab\x09newline\x0a");
        assert_eq!(terminal_safe("moc.elpmaxe\u{202e}.www"), r"moc.elpmaxe\u{202e}.www");
        assert_eq!(terminal_safe("a\u{2066}b\u{200f}c\u{61c}"), r"a\u{2066}b\u{200f}c\u{61c}");
    }
}
