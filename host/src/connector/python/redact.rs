//! Redaction of what a script prints, logs or raises, for one call's sensitive values.
//!
//! A value is replaced by `***` wherever it occurs whole. A multi-line value (a PEM private
//! key passed as a sensitive parameter) is also redacted line by line, because the worker's
//! stderr is streamed to the log a line at a time and output may be cut: each of its lines
//! of at least [`MIN_FRAGMENT`] characters is replaced wherever it occurs, and a shorter line
//! (the last base64 line of a PEM) wherever it makes up a whole line of the text.
//!
//! `bootstrap.py` applies the same rules (`_Redactor`) inside the worker before it cuts any
//! output to size; the host applies them again to everything it logs or reports.

/// Lines of a multi-line value at least this long are redacted wherever they occur.
pub(super) const MIN_FRAGMENT: usize = 8;

/// The redaction rules for one call's sensitive values.
#[derive(Debug, Clone, Default)]
pub(super) struct Redactor {
    /// Whole values, longest first.
    whole: Vec<String>,
    /// Lines of multi-line values with at least `MIN_FRAGMENT` characters, longest first.
    fragments: Vec<String>,
    /// Shorter lines of multi-line values: redacted when they are a whole line.
    short_lines: Vec<String>,
}

impl Redactor {
    /// Rules for these values (empty values are ignored).
    pub(super) fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let mut me = Self::default();
        for v in values.into_iter().filter(|v| !v.is_empty()) {
            push_unique(&mut me.whole, v);
            if v.contains('\n') {
                for line in v.lines().map(str::trim).filter(|l| !l.is_empty()) {
                    if line.chars().count() >= MIN_FRAGMENT {
                        push_unique(&mut me.fragments, line);
                    } else {
                        push_unique(&mut me.short_lines, line);
                    }
                }
            }
        }
        me.whole.sort_by_key(|v| std::cmp::Reverse(v.len()));
        me.fragments.sort_by_key(|v| std::cmp::Reverse(v.len()));
        me
    }

    /// True when there is nothing to redact.
    pub(super) fn is_empty(&self) -> bool {
        self.whole.is_empty()
    }

    /// The values these rules were made from, for the worker.
    pub(super) fn values(&self) -> &[String] {
        &self.whole
    }

    /// `text` with every sensitive value, and every line of a multi-line one, replaced by `***`.
    pub(super) fn redact(&self, text: &str) -> String {
        if self.is_empty() {
            return text.to_owned();
        }
        let mut out = text.to_owned();
        for v in &self.whole {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), "***");
            }
        }
        if self.fragments.is_empty() && self.short_lines.is_empty() {
            return out;
        }
        for f in &self.fragments {
            if out.contains(f.as_str()) {
                out = out.replace(f.as_str(), "***");
            }
        }
        if self.short_lines.is_empty() {
            return out;
        }
        out.split('\n')
            .map(
                |line| {
                    if self.short_lines.iter().any(|s| s == line.trim()) { "***".to_owned() } else { line.to_owned() }
                },
            )
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn push_unique(list: &mut Vec<String>, v: &str) {
    if !list.iter().any(|x| x == v) {
        list.push(v.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\nq7Zx9Q\n-----END PRIVATE KEY-----\n";

    #[test]
    fn single_line_values_are_replaced_longest_first() {
        let r = Redactor::new(["abc", "abcdef", ""]);
        assert_eq!(r.redact("x abcdef y abc"), "x *** y ***");
        assert_eq!(r.values(), ["abcdef", "abc"]);
        assert_eq!(Redactor::new([]).redact("abc"), "abc");
    }

    #[test]
    fn every_line_of_a_multi_line_value_is_replaced_on_its_own() {
        let r = Redactor::new([KEY]);
        assert_eq!(r.redact(&format!("key: {KEY}done")), "key: ***done");
        // The worker's stderr reaches the log a line at a time: no line of the key gets through.
        for line in KEY.lines() {
            assert_eq!(r.redact(line), "***", "{line}");
        }
        assert_eq!(r.redact("loaded -----END PRIVATE KEY-----"), "loaded ***");
        assert_eq!(r.redact("a\n  q7Zx9Q \nb"), "a\n***\nb");
        // A short line is only a secret as a whole line, not inside other text.
        assert_eq!(r.redact("xq7Zx9Qx"), "xq7Zx9Qx");
        // A long line of the key is replaced inside other text too.
        assert_eq!(r.redact("MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg tail"), "*** tail");
    }
}
