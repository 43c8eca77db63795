//! Redaction of what a connector prints, logs, raises or returns, for one call's sensitive
//! values: the one set of rules behind `Args::redact`, the WASM guest log and the Python
//! runtime.
//!
//! A value is replaced by `***` wherever it occurs whole, and so is each of its
//! [`encoded_forms`]: a script rarely prints a password as it is, but often inside a URL
//! (`requests` percent-encodes query parameters), a `repr` of its args or a `json.dumps`.
//! A multi-line value (a PEM private key passed as a sensitive parameter) is also redacted
//! line by line, because a Python worker's stderr is streamed to the log a line at a time
//! and output may be cut: each of its lines of at least [`MIN_FRAGMENT`] characters is
//! replaced wherever it occurs, and a shorter line (the last base64 line of a PEM) wherever it
//! makes up a whole line of the text.
//!
//! The encoded forms are computed here only: the host hands them to a Python worker with each
//! call, and `bootstrap.py` (`_Redactor`) applies the same rules to them inside the worker
//! before it cuts any output to size.

/// Lines of a multi-line value at least this long are redacted wherever they occur.
pub(super) const MIN_FRAGMENT: usize = 8;

/// Values (and forms) shorter than this many characters are replaced only where they stand
/// alone — no letter or digit right before or after. Replaced everywhere, a one-letter secret
/// turned every word holding it into `l***ak: rais***d` and so gave itself away to anyone
/// reading the audit log; a 2–7 character one nearly as plainly.
pub(crate) const MIN_ANYWHERE: usize = 8;

/// The redaction rules for one call's sensitive values. Its copies of the values are wiped
/// when it is dropped, as `Args` wipes its own.
#[derive(Clone, Default)]
pub(crate) struct Redactor {
    /// The values themselves, as given.
    values: Vec<String>,
    /// The values and their encoded forms, longest first.
    whole: Vec<String>,
    /// Lines of multi-line values with at least `MIN_FRAGMENT` characters, longest first.
    fragments: Vec<String>,
    /// Shorter lines of multi-line values: redacted when they are a whole line.
    short_lines: Vec<String>,
    /// [`percent_pattern`]s of the values, as sent to a Python worker.
    percent: Vec<String>,
    /// Those compiled, on the first text that could hold one (most redactions see none).
    percent_compiled: std::sync::OnceLock<Vec<regex::Regex>>,
}

impl Redactor {
    /// Rules for these values (empty values are ignored). A value with whitespace around it
    /// (a secret file's `\r`, a pasted space) is also redacted without it, as a script that
    /// `.strip()`s it prints it — when what is left has at least [`MIN_FRAGMENT`] characters,
    /// the rule for a multi-line value's lines, so a short remainder does not redact ordinary
    /// words.
    pub(crate) fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let mut me = Self::default();
        for v in values.into_iter().filter(|v| !v.is_empty()) {
            push_unique(&mut me.values, v);
            let trimmed = v.trim();
            let bare =
                (trimmed != v && !trimmed.contains('\n') && trimmed.chars().count() >= MIN_FRAGMENT).then_some(trimmed);
            for w in std::iter::once(v).chain(bare) {
                push_unique(&mut me.whole, w);
                for form in encoded_forms(w) {
                    push_unique(&mut me.whole, &form);
                }
                if let Some(pattern) = percent_pattern(w).map(zeroize::Zeroizing::new) {
                    push_unique(&mut me.percent, &pattern);
                }
            }
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
    pub(crate) fn is_empty(&self) -> bool {
        self.whole.is_empty()
    }

    /// The values these rules were made from.
    #[cfg(test)]
    pub(crate) fn values(&self) -> &[String] {
        &self.values
    }

    /// The values and their encoded forms, longest first: what a Python worker redacts.
    pub(crate) fn patterns(&self) -> &[String] {
        &self.whole
    }

    /// The values' [`percent_pattern`]s (regular expressions): what a Python worker redacts
    /// after the [`patterns`](Self::patterns).
    pub(crate) fn percent_patterns(&self) -> &[String] {
        &self.percent
    }

    /// `text` with every sensitive value (and each of its encoded forms), and every line of a
    /// multi-line one, replaced by `***`.
    pub(crate) fn redact(&self, text: &str) -> String {
        if self.is_empty() {
            return text.to_owned();
        }
        let mut out = text.to_owned();
        for v in &self.whole {
            if out.contains(v.as_str()) {
                out = if v.chars().count() >= MIN_ANYWHERE {
                    out.replace(v.as_str(), "***")
                } else {
                    replace_standalone(&out, v)
                };
            }
        }
        if !self.percent.is_empty() && out.contains(['%', '+']) {
            // A pattern is built of escapes and literal characters only: it always compiles.
            let compiled = self
                .percent_compiled
                .get_or_init(|| self.percent.iter().filter_map(|p| regex::Regex::new(p).ok()).collect());
            for pattern in compiled {
                if let std::borrow::Cow::Owned(replaced) = pattern.replace_all(&out, "***") {
                    out = replaced;
                }
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

/// `text` with each occurrence of `value` that no letter or digit touches replaced by `***`.
fn replace_standalone(text: &str, value: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut before: Option<char> = None;
    while let Some(at) = rest.find(value) {
        let (head, tail) = rest.split_at(at);
        let after = tail[value.len()..].chars().next();
        let prev = head.chars().next_back().or(before);
        out.push_str(head);
        if prev.is_some_and(char::is_alphanumeric) || after.is_some_and(char::is_alphanumeric) {
            // Part of a longer word: keep its first character and look again after it.
            let first = tail.chars().next().map_or(1, char::len_utf8);
            out.push_str(&tail[..first]);
            before = tail[..first].chars().next();
            rest = &tail[first..];
        } else {
            out.push_str("***");
            before = value.chars().next_back();
            rest = &tail[value.len()..];
        }
    }
    out.push_str(rest);
    out
}

impl Drop for Redactor {
    fn drop(&mut self) {
        for list in [&mut self.values, &mut self.whole, &mut self.fragments, &mut self.short_lines, &mut self.percent] {
            list.iter_mut().for_each(zeroize::Zeroize::zeroize);
        }
    }
}

/// Never prints a value: only how many rules there are.
impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor").field("values", &self.values.len()).finish_non_exhaustive()
    }
}

/// Text from outside (a guest's log line, a script's output, a hook's) made one log line:
/// control characters other than a tab escaped (`\n`, `\r`, `\u{1b}`), so it can neither
/// start a line that reads as the host's nor drive a terminal.
pub(crate) fn one_line(text: &str) -> String {
    if !text.chars().any(escaped_in_a_line) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if escaped_in_a_line(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// What [`one_line`] escapes: control characters but the tab, and the bidirectional formatting
/// characters that reorder what a terminal shows of a log line (red-team walkthrough of stop 48).
fn escaped_in_a_line(c: char) -> bool {
    (c.is_control() && c != '\t') || crate::view::reorders_text(c)
}

/// Whether `text` could hold any of `values` in a form [`Redactor::redact`] replaces — a cheap
/// test that spares building the rules (every encoded form of a CA key) for a log line that
/// holds none. Sound, not exact: each readable form keeps the value's ASCII letters and digits
/// as they are, so a text without the value's longest run of them holds none of those; the
/// opaque forms (hex, base64) are looked for by their own longest run; a multi-line value's
/// lines are looked for as they are; a value of [`MIN_ANYWHERE`] characters or more in upper and
/// lower case too.
pub(crate) fn might_hold_any<'a>(values: impl IntoIterator<Item = &'a str>, text: &str) -> bool {
    let found = |form: &str| {
        let anchor = form.split(|c: char| !c.is_ascii_alphanumeric()).max_by_key(|run| run.len()).unwrap_or("");
        anchor.len() < 4 || text.contains(anchor)
    };
    values.into_iter().filter(|v| !v.is_empty()).any(|v| {
        let cased = || v.chars().count() >= MIN_ANYWHERE && (found(&v.to_uppercase()) || found(&v.to_lowercase()));
        // An opaque form is never shorter than 4/3 of the value less 4 (a base64 core): a
        // shorter text (an order id against a CA key) cannot hold one, and is spared building them.
        found(v)
            || cased()
            || (text.len() + 4 >= v.len() * 4 / 3 && opaque_forms(v).iter().any(|f| found(f)))
            || (v.contains('\n') && v.lines().map(str::trim).any(|l| !l.is_empty() && text.contains(l)))
    })
}

/// The forms in which a script commonly writes `value` without meaning to: inside a Python
/// `repr` (of the value or of the args dict holding it; of its UTF-8 bytes too), JSON-escaped
/// (`json.dumps` with and without `ensure_ascii`), and percent-encoded as `urllib.parse.quote`
/// (default `/` kept, and `safe=""`) and `quote_plus` / `urlencode` (what `requests` does to
/// query parameters and form bodies) write it, with upper- and lower-case hex digits. A value of
/// at least [`MIN_OPAQUE`] bytes also in the forms that hide its letters: hex of its bytes, and
/// [`base64_cores`] — what HTTP Basic authentication sends (`user:password` in base64) and
/// what a debug log of the request shows. Then what a CA's answer commonly echoes it as: in
/// HTML or XML (`&amp;`, `&lt;`, `&quot;`, `&#39;` … as Python's `html.escape`, Go's
/// `html.EscapeString`, XML writers and PHP write them), in JSON as Go (`\u003c`, `\u0026`)
/// and PHP (`\/`) write it, and, from [`MIN_ANYWHERE`] characters, all upper or lower case.
/// Forms equal to the value itself are left out.
pub(crate) fn encoded_forms(value: &str) -> Vec<String> {
    let mut forms = vec![python_repr_body(value), python_bytes_repr_body(value)];
    for ascii in [false, true] {
        for style in [JsonStyle::Plain, JsonStyle::Slash, JsonStyle::Html] {
            forms.push(json_escaped(value, ascii, style));
        }
    }
    for quotes in [
        None,
        Some(("&quot;", "&#x27;")),
        Some(("&#34;", "&#39;")),
        Some(("&quot;", "&apos;")),
        Some(("&quot;", "&#39;")),
        Some(("&quot;", "'")),
    ] {
        forms.push(entity_escaped(value, quotes));
    }
    if value.chars().count() >= MIN_ANYWHERE {
        forms.push(value.to_uppercase());
        forms.push(value.to_lowercase());
    }
    // Python's quote keeps `_.-~` (and `/` by default); quote_plus writes a space as `+`.
    for (kept, plus) in [(&b"_.-~/"[..], false), (&b"_.-~"[..], false), (&b"_.-~"[..], true)] {
        for lower in [false, true] {
            forms.push(percent_encoded(value, kept, plus, lower));
        }
    }
    // What `requests` makes of a URL it is handed whole (`requote_uri`: reserved characters
    // kept, a space and anything else escaped), and urllib3 of one's query (RFC 3986).
    forms.push(percent_encoded(value, b"_.-~!#$%&'()*+,/:;=?@[]", false, false));
    forms.push(percent_encoded(value, b"_.-~!$&'()*+,;=:@/?", false, false));
    // What a Rust component writes with `url`/`form_urlencoded` (WHATWG: `*` kept, `~`
    // escaped, space as `+`), and JavaScript's encodeURIComponent.
    forms.push(percent_encoded(value, b"*-._", true, false));
    forms.push(percent_encoded(value, b"-_.!~*'()", false, false));
    forms.extend(opaque_forms(value));
    let mut unique: Vec<String> = Vec::with_capacity(forms.len());
    for form in forms {
        if form != value && !unique.contains(&form) {
            unique.push(form);
        }
    }
    unique
}

/// Longest value (in bytes) given a [`percent_pattern`]: a URL or form carries passwords and
/// tokens, not keys, and the pattern grows eightfold with the value.
const MAX_PERCENT_PATTERN: usize = 512;

/// A regular expression for `value` percent-encoded by any encoder, whatever it keeps: each
/// character other than an ASCII letter or digit as it is or as `%XX` of each of its UTF-8
/// bytes (either case of hex), a space also as `+`. The listed [`encoded_forms`] name what
/// common libraries write; this catches the rest (walkthrough of stop 46: a URL built by hand
/// and given to `requests` kept `&` and escaped the space, a form none of them had). For values
/// of [`MIN_ANYWHERE`] to [`MAX_PERCENT_PATTERN`] characters on one line, that have something to
/// encode. The syntax is the subset Rust's `regex` and Python's `re` read alike: `\xHH` for
/// ASCII punctuation, non-ASCII characters as they are, `(?:…|…)` and `[..]`.
pub(crate) fn percent_pattern(value: &str) -> Option<String> {
    if value.chars().count() < MIN_ANYWHERE
        || value.len() > MAX_PERCENT_PATTERN
        || value.contains(['\n', '\r'])
        || value.chars().all(|c| c.is_ascii_alphanumeric())
    {
        return None;
    }
    let hex_digit = |out: &mut String, nibble: u8| {
        let upper = char::from(b"0123456789ABCDEF"[usize::from(nibble)]);
        if upper.is_ascii_digit() {
            out.push(upper);
        } else {
            push_fmt(out, format_args!("[{upper}{}]", upper.to_ascii_lowercase()));
        }
    };
    // Each byte of the value makes at most 16 characters of the pattern (`(?:\x2F|%2[Ff])`),
    // so the text is never moved, and no copy of the value is left behind unwiped.
    let mut out = String::with_capacity(value.len() * 16);
    for c in value.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
            continue;
        }
        out.push_str("(?:");
        if c.is_ascii() {
            push_fmt(&mut out, format_args!("\\x{:02X}", u32::from(c)));
        } else {
            out.push(c);
        }
        out.push('|');
        let mut buf = [0u8; 4];
        for b in c.encode_utf8(&mut buf).bytes() {
            out.push('%');
            hex_digit(&mut out, b >> 4);
            hex_digit(&mut out, b & 0xf);
        }
        if c == ' ' {
            out.push_str("|\\+");
        }
        out.push(')');
    }
    Some(out)
}

/// Shortest value (in bytes) whose hex and base64 forms are redacted: a shorter one's base64
/// core is a handful of characters that ordinary text holds by chance.
pub(super) const MIN_OPAQUE: usize = 8;

/// The forms of `value` that keep none of its characters: lower- and upper-case hex of its
/// UTF-8 bytes and its [`base64_cores`]. None for a value shorter than [`MIN_OPAQUE`] bytes.
fn opaque_forms(value: &str) -> Vec<String> {
    if value.len() < MIN_OPAQUE {
        return Vec::new();
    }
    let lower = hex::encode(value.as_bytes());
    let mut forms = vec![lower.to_ascii_uppercase(), lower];
    forms.extend(base64_cores(value.as_bytes()));
    forms
}

/// The base64 characters that `bytes` alone decide wherever they sit in a longer input: for
/// each of the three positions a byte string can start at within a 3-byte group, the encoding
/// of the whole, less the characters shared with the bytes before and after. Standard and
/// URL-safe alphabets. So `user:PASSWORD` in base64 still contains a core of `PASSWORD`'s.
pub(crate) fn base64_cores(bytes: &[u8]) -> Vec<String> {
    use base64::Engine as _;
    let mut cores = Vec::new();
    for offset in 0..3usize {
        let mut input = vec![0u8; offset];
        input.extend_from_slice(bytes);
        let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&input);
        // The last character of a partial group also holds bits of the next byte.
        let end = if input.len() % 3 == 0 { encoded.len() } else { encoded.len() - 1 };
        // The first characters hold bits of the bytes before: none, two or three of them.
        let start = [0, 2, 3][offset];
        let Some(core) = encoded.get(start..end) else { continue };
        for form in [core.to_owned(), core.replace('+', "-").replace('/', "_")] {
            if !cores.contains(&form) {
                cores.push(form);
            }
        }
    }
    cores
}

/// What CPython's `repr(value.encode())` writes between `b'` and `'`: printable ASCII as it
/// is (`\` and `'` escaped), `\t`, `\n`, `\r`, every other byte as `\xNN`.
fn python_bytes_repr_body(value: &str) -> String {
    let bytes = value.as_bytes();
    let quote = if bytes.contains(&b'\'') && !bytes.contains(&b'"') { b'"' } else { b'\'' };
    let mut out = String::with_capacity(bytes.len() + 8);
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b if b == quote => {
                out.push('\\');
                out.push(char::from(b));
            }
            0x20..=0x7e => out.push(char::from(b)),
            b => push_fmt(&mut out, format_args!("\\x{b:02x}")),
        }
    }
    out
}

/// What CPython's `repr(value)` writes between its quotes: it quotes with `"` when the value
/// holds `'` and no `"`, else with `'` (escaped inside); escapes `\`, `\t`, `\n`, `\r`, other
/// control characters as `\xNN`, and other characters it does not print as `\xNN`, `\uNNNN`
/// or `\UNNNNNNNN`.
fn python_repr_body(value: &str) -> String {
    let quote = if value.contains('\'') && !value.contains('"') { '"' } else { '\'' };
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if python_printable(c) => out.push(c),
            c if u32::from(c) <= 0xff => push_fmt(&mut out, format_args!("\\x{:02x}", u32::from(c))),
            c if u32::from(c) <= 0xffff => push_fmt(&mut out, format_args!("\\u{:04x}", u32::from(c))),
            c => push_fmt(&mut out, format_args!("\\U{:08x}", u32::from(c))),
        }
    }
    out
}

/// Python's `str.isprintable` for one character, for the characters passwords and keys are
/// made of: not a control, a separator other than the space, or a common format character.
/// (Python also escapes unassigned code points; those are not told apart here.)
fn python_printable(c: char) -> bool {
    let n = u32::from(c);
    if c == ' ' {
        return true;
    }
    let format = matches!(n, 0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x180e | 0x200b..=0x200f
        | 0x202a..=0x202e | 0x2060..=0x2064 | 0x2066..=0x206f | 0xfeff | 0xfff9..=0xfffb);
    let private = matches!(n, 0xe000..=0xf8ff | 0xf0000..=0x10ffff);
    !(c.is_control() || c.is_whitespace() || format || private)
}

/// What a JSON writer escapes besides what JSON requires.
#[derive(Clone, Copy, PartialEq, Eq)]
enum JsonStyle {
    /// Nothing more (Python, serde_json, JavaScript).
    Plain,
    /// `/` as `\/` (PHP's `json_encode`).
    Slash,
    /// `<`, `>`, `&`, U+2028 and U+2029 as `\u003c` … (Go's `encoding/json`).
    Html,
}

/// `value` as a JSON string's body: `"`, `\` and control characters escaped (short forms where
/// JSON has them, else `\u00NN`, lower-case hex as Python and serde_json write them); with
/// `ascii`, every non-ASCII character (and DEL) as `\uNNNN`, in surrogate pairs above U+FFFF;
/// and what `style` escapes as well.
fn json_escaped(value: &str, ascii: bool, style: JsonStyle) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '/' if style == JsonStyle::Slash => out.push_str("\\/"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' if style == JsonStyle::Html => {
                push_fmt(&mut out, format_args!("\\u{:04x}", u32::from(c)));
            }
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 || (ascii && !(' '..='~').contains(&c)) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    push_fmt(&mut out, format_args!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// `value` with `&`, `<` and `>` written as HTML and XML entities, and `"` and `'` as `quotes`
/// gives them (kept when `None`, as an XML text node keeps them).
fn entity_escaped(value: &str, quotes: Option<(&str, &str)>) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match (c, quotes) {
            ('&', _) => out.push_str("&amp;"),
            ('<', _) => out.push_str("&lt;"),
            ('>', _) => out.push_str("&gt;"),
            ('"', Some((double, _))) => out.push_str(double),
            ('\'', Some((_, single))) => out.push_str(single),
            (c, _) => out.push(c),
        }
    }
    out
}

/// `value` percent-encoded as UTF-8: letters, digits and the bytes of `kept` as they are
/// (`urllib.parse.quote` keeps `_.-~` and its `safe`), a space as `+` with `plus`
/// (`quote_plus`, form bodies), every other byte as `%XX` in `lower` or upper case.
fn percent_encoded(value: &str, kept: &[u8], plus: bool, lower: bool) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for &b in value.as_bytes() {
        if b.is_ascii_alphanumeric() || kept.contains(&b) {
            out.push(char::from(b));
        } else if plus && b == b' ' {
            out.push('+');
        } else if lower {
            push_fmt(&mut out, format_args!("%{b:02x}"));
        } else {
            push_fmt(&mut out, format_args!("%{b:02X}"));
        }
    }
    out
}

impl Redactor {
    /// [`Redactor::redact`] for text that was cut after its end: the text is redacted, then
    /// any end of it that could be the start of a sensitive value (or of one of its forms or
    /// lines) is dropped, so a cut never leaves part of a secret.
    pub(crate) fn redact_cut(&self, text: &str) -> String {
        let mut out = self.redact(text);
        let longest = self
            .whole
            .iter()
            .chain(&self.fragments)
            .filter_map(|p| (1..p.len()).rev().filter(|k| p.is_char_boundary(*k)).find(|k| out.ends_with(&p[..*k])))
            .max();
        if let Some(k) = longest {
            out.truncate(out.len() - k);
        }
        out
    }
}

/// Appends formatted text without a `String` of its own (an escape per byte adds up).
fn push_fmt(out: &mut String, args: std::fmt::Arguments<'_>) {
    // Writing into a `String` cannot fail.
    let _ = std::fmt::Write::write_fmt(out, args);
}

fn push_unique(list: &mut Vec<String>, v: &str) {
    if !list.iter().any(|x| x == v) {
        list.push(v.to_owned());
    }
}

/// What a hook printed, without private key material it may have printed while checking the key
/// it was given: PEM private key blocks and colon-separated hex dumps. Hook output goes to the
/// log and the audit log, which keeps it forever.
pub fn without_key_material(text: &str) -> String {
    without_hex_dumps(&without_private_key_blocks(text))
}

/// `text` with every PEM private key block (any key, encrypted or not) replaced by a note.
fn without_private_key_blocks(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let header_end = rest[start..].find('\n').map_or(rest.len(), |i| start + i);
        let header = &rest[start..header_end];
        if !header.contains("PRIVATE KEY-----") && !header.contains("PRIVATE KEY BLOCK-----") {
            out.push_str(&rest[..header_end]);
            rest = &rest[header_end..];
            continue;
        }
        out.push_str(&rest[..start]);
        out.push_str("[private key removed]");
        // To the end of the END line, or everything when the block is cut off.
        rest = match rest[start..].find("-----END ") {
            Some(i) => {
                let end = start + i;
                let line_end = rest[end..].find('\n').map_or(rest.len(), |j| end + j);
                &rest[line_end..]
            }
            None => "",
        };
    }
    out.push_str(rest);
    out
}

/// `text` with the lines of a colon-separated hex dump replaced: `openssl pkey -text` prints
/// a private key's scalar (`priv:`), an RSA key's exponent and primes, this way, fifteen bytes
/// a line. Public values printed alike go too; an audit log needs neither.
fn without_hex_dumps(text: &str) -> String {
    // Hex pairs joined by colons, at least `min` of them (a dump's last line may be short).
    let pairs = |line: &str, min: usize| {
        let t = line.trim().trim_end_matches(':');
        t.len() >= min * 3 - 1 && t.split(':').all(|b| b.len() == 2 && b.bytes().all(|c| c.is_ascii_hexdigit()))
    };
    if !text.lines().any(|l| pairs(l, 8)) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut in_dump = false;
    for line in text.split_inclusive('\n') {
        if pairs(line, if in_dump { 1 } else { 8 }) {
            if !in_dump {
                out.push_str("    [hex dump removed]\n");
            }
            in_dump = true;
        } else {
            in_dump = false;
            out.push_str(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log line cannot start another, nor be shown reordered (red-team walkthrough of stop
    /// 48: U+202E passed into serve's log as it was).
    #[test]
    fn one_line_escapes_line_breaks_and_reordering_characters() {
        assert_eq!(one_line("plain\ttext"), "plain\ttext");
        assert_eq!(one_line("a\r\nERROR certhost: forged"), "a\\r\\nERROR certhost: forged");
        assert_eq!(one_line("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
        assert_eq!(one_line("\u{2066}x\u{2069}"), "\\u{2066}x\\u{2069}");
    }

    #[test]
    fn private_key_blocks_are_removed_from_hook_output() {
        let out = "Key is valid\n-----BEGIN PRIVATE KEY-----\nMIGHAgEA\n-----END PRIVATE KEY-----\ndone\n\
                   -----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n-----BEGIN EC PRIVATE KEY-----\nMHcC";
        assert_eq!(
            without_private_key_blocks(out),
            "Key is valid\n[private key removed]\ndone\n-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n[private key removed]"
        );
    }

    /// Regression (review of stop 32): `openssl pkey -text` in a hook put the private scalar
    /// in the audit log as colon-separated hex.
    #[test]
    fn hex_dumps_are_removed_from_hook_output() {
        let out = "Private-Key: (256 bit)\npriv:\n    21:5e:e9:52:78:cf:01:02:03:04:05:06:07:08:09:\n    0a:0b:0c:0d:0e:0f:10:11:12:13:14:15:16:17:18:\n    19:1a\nASN1 OID: prime256v1\n";
        assert_eq!(
            without_hex_dumps(out),
            "Private-Key: (256 bit)\npriv:\n    [hex dump removed]\nASN1 OID: prime256v1\n"
        );
        assert_eq!(without_hex_dumps("reloaded at 12:30:45\n"), "reloaded at 12:30:45\n");
    }

    #[test]
    fn outside_text_stays_one_log_line() {
        assert_eq!(one_line("plain text\twith a tab"), "plain text\twith a tab");
        assert_eq!(
            one_line("hello\n2026-12-01T00:00:00Z ERROR certhost: forged\r\u{1b}[31m"),
            "hello\\n2026-12-01T00:00:00Z ERROR certhost: forged\\r\\u{1b}[31m"
        );
    }

    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\nq7Zx9Q\n-----END PRIVATE KEY-----\n";

    #[test]
    fn the_cheap_test_never_misses_what_the_rules_replace() {
        let values = ["q8Zr+Tk/3vXw==", "s3cr\\et-Pässwörd", KEY, "ab"];
        for v in values {
            let r = Redactor::new([v]);
            let lines = v.lines().map(str::to_owned);
            for form in encoded_forms(v).into_iter().chain([v.to_owned()]).chain(lines) {
                let text = format!("before {form} after");
                if r.redact(&text) != text {
                    assert!(might_hold_any([v], &text), "{v:?} in {text:?}");
                }
            }
        }
        assert!(!might_hold_any([KEY, "q8Zr+Tk/3vXw=="], "signed a certificate for www.example.com (request 01ab)"));
    }

    /// Regression: "CrLfSecret1\r" (a secret file with CRLF) was redacted only as it was, so a
    /// script that stripped it printed the bare value.
    #[test]
    fn a_value_with_surrounding_whitespace_is_also_redacted_trimmed() {
        let r = Redactor::new(["CrLfSecret1\r", " padded-value-9 \t"]);
        assert_eq!(r.redact("auth CrLfSecret1 failed"), "auth *** failed");
        assert_eq!(r.redact("auth CrLfSecret1%0D x"), "auth *** x");
        assert_eq!(r.redact("user=padded-value-9&x=CrLfSecret1"), "user=***&x=***");
        // The rules a worker gets include the trimmed value and its forms.
        assert!(r.patterns().iter().any(|p| p == "CrLfSecret1"));
        // A short remainder is not a rule: it would redact ordinary words.
        let r = Redactor::new(["on\r"]);
        assert_eq!(r.redact("turned on"), "turned on");
        assert_eq!(r.values(), ["on\r"]);
    }

    #[test]
    fn single_line_values_are_replaced_longest_first() {
        let r = Redactor::new(["abc", "abcdef", ""]);
        assert_eq!(r.redact("x abcdef y abc"), "x *** y ***");
        assert_eq!(r.values(), ["abc", "abcdef"]);
        assert_eq!(Redactor::new([]).redact("abc"), "abc");
    }

    #[test]
    fn a_cut_text_keeps_no_start_of_a_sensitive_value() {
        let r = Redactor::new(["s3cret-value", KEY]);
        assert_eq!(r.redact_cut("token s3cret-value then s3cr"), "token *** then ");
        assert_eq!(r.redact_cut("key MIGHAgEAMBMGByq"), "key ");
        // The start of a percent-encoded form too.
        let r = Redactor::new(["a+b/c=="]);
        assert_eq!(r.redact_cut("q=a%2Bb%2"), "q=");
        assert_eq!(r.redact_cut("nothing secret"), "nothing secret");
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

    /// Values with every character class the forms treat differently.
    const TRICKY: &[&str] = &[
        "q8Zr+Tk/3vXw==",
        "s3cr\\et-P\u{e4}ssw\u{f6}rd",
        "it's",
        "it's \"both\"",
        "tab\there\nnew\r\u{7}\u{7f}\u{85}\u{a0}\u{ad}\u{2028}\u{20ac}\u{1d11e} x&y=z;%",
    ];

    /// The lines the interpreter certhost is built against prints for `script` given `input`
    /// as JSON on stdin: the forms Python itself writes, so the tests do not check the Rust
    /// against itself.
    fn python_lines(script: &str, input: &(impl serde::Serialize + ?Sized)) -> Vec<String> {
        let mut child = std::process::Command::new(env!("CERTHOST_PYTHON_EXECUTABLE"))
            .args(["-c", script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run the pinned python");
        let input = serde_json::to_vec(input).expect("json");
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), &input).expect("write");
        let out = child.wait_with_output().expect("python");
        assert!(out.status.success());
        String::from_utf8(out.stdout).expect("utf8").lines().map(str::to_owned).collect()
    }

    #[test]
    fn base64_of_a_value_inside_longer_bytes_holds_one_of_its_cores() {
        // What Python's base64 writes for the value after 0-5 bytes and before 0-2 (HTTP Basic:
        // `user:password`), both alphabets.
        let script = r#"
import base64, json, sys
for v in json.load(sys.stdin):
    out = []
    for pre in ["", "u", "us", "use", "user", "user:"]:
        for post in ["", "!", "!!"]:
            raw = (pre + v + post).encode()
            out += [base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()]
    print(json.dumps(out))
"#;
        let values = ["MARKENVq9w8Secret", "s3cr\\et-Pässwörd", "12345678", "~~~~????>>>>"];
        for (value, line) in values.iter().zip(python_lines(script, &values)) {
            let encodings: Vec<String> = serde_json::from_str(&line).expect("json");
            let r = Redactor::new([*value]);
            for b64 in encodings {
                let redacted = r.redact(&format!("Authorization: Basic {b64}"));
                assert!(redacted.contains("***"), "{value:?}: {b64} not redacted");
                assert!(might_hold_any([*value], &b64), "{value:?}: the cheap test missed {b64}");
            }
        }
        // A short value's base64 is not redacted: its core would match ordinary text.
        assert!(opaque_forms("short").is_empty());
    }

    /// Regression (review of stop 30): a secret a Rust component put in a query string
    /// (`form_urlencoded`: `*` kept, `~` escaped) matched none of Python's forms.
    #[test]
    fn rust_and_javascript_url_encodings_of_a_secret_are_redacted() {
        let secret = "Pa55*word~2024! x";
        let forms = encoded_forms(secret);
        assert!(forms.contains(&"Pa55*word%7E2024%21+x".to_owned()), "{forms:?}");
        assert!(forms.contains(&"Pa55*word~2024!%20x".to_owned()), "{forms:?}");
    }

    #[test]
    fn the_encoded_forms_are_those_real_python_writes() {
        // The interpreter certhost is built against writes each form, so this test does not
        // check the Rust against itself.
        let script = r#"
import json, re, sys, urllib.parse as u
for v in json.load(sys.stdin):
    qs = [u.quote(v), u.quote(v, safe=""), u.quote_plus(v)]
    qs += [re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(), q) for q in qs]
    b = v.encode()
    qs += [repr(b)[2:-1]] + ([b.hex(), b.hex().upper()] if len(b) >= 8 else [])
    print(json.dumps([repr(v)[1:-1], json.dumps(v, ensure_ascii=False)[1:-1], json.dumps(v)[1:-1]] + qs))
"#;
        let lines: Vec<Vec<String>> =
            python_lines(script, &TRICKY).iter().map(|l| serde_json::from_str(l).expect("forms")).collect();
        assert_eq!(lines.len(), TRICKY.len());
        for (value, python_forms) in TRICKY.iter().zip(lines) {
            let ours = encoded_forms(value);
            for form in python_forms.iter().filter(|f| f.as_str() != *value) {
                assert!(ours.contains(form), "{form:?} (of {value:?}) missing from {ours:?}");
            }
        }
    }

    /// Regression (review of stop 33): a one-letter secret replaced everywhere turned the
    /// error into `script l***ak: rais***d Runtim***Error`, which named it.
    #[test]
    fn a_short_value_is_replaced_only_where_it_stands_alone() {
        let r = Redactor::new(["e", "hunter2"]);
        assert_eq!(r.redact("script leak: raised RuntimeError: e"), "script leak: raised RuntimeError: ***");
        assert_eq!(r.redact("pw=hunter2; user hunter2x hunter22 (hunter2)"), "pw=***; user hunter2x hunter22 (***)");
        assert_eq!(r.redact("e-e e"), "***-*** ***");
        assert_eq!(r.redact("ee"), "ee", "two touching copies are one word");
        assert_eq!(r.redact("\u{e9}e \u{e9}"), "\u{e9}e \u{e9}", "letters beyond ASCII count too");
        // From eight characters a value is replaced wherever it occurs.
        let r = Redactor::new(["Summer24"]);
        assert_eq!(r.redact("xSummer24x"), "x***x");
    }

    /// Regression (review of stop 33): a CA's HTML error page, and JSON from Go or PHP, echoed a
    /// secret holding `&<>"'/` in forms none of the rules had.
    #[test]
    fn html_xml_go_and_php_echoes_of_a_secret_are_redacted() {
        let secret = "S3cr3t-Canary-7f2a9&<x>/\"q'";
        let script = r#"
import html, json, sys, xml.sax.saxutils as sx
for v in json.load(sys.stdin):
    print(json.dumps([html.escape(v), html.escape(v, quote=False), sx.escape(v), sx.quoteattr(v)[1:-1],
                      json.dumps(v).replace("/", "\\/")[1:-1]]))
"#;
        let python: Vec<String> = serde_json::from_str(&python_lines(script, &[secret])[0]).expect("python forms");
        let go = "S3cr3t-Canary-7f2a9\\u0026\\u003cx\\u003e/\\\"q'";
        let go_html = "S3cr3t-Canary-7f2a9&amp;&lt;x&gt;/&#34;q&#39;";
        let r = Redactor::new([secret]);
        for echo in python.iter().map(String::as_str).chain([go, go_html, "S3CR3T-CANARY-7F2A9&<X>/\"Q'"]) {
            assert_eq!(r.redact(&format!("<p>invalid key {echo}</p>")), "<p>invalid key ***</p>", "{echo}");
            assert!(might_hold_any([secret], echo), "the cheap test missed {echo}");
        }
    }

    #[test]
    fn a_value_percent_encoded_by_any_encoder_is_redacted() {
        // The walkthrough's leak: `requests` re-quoting a URL built by hand keeps `&` and `+`
        // and escapes a space; a mix of literal and escaped characters in either hex case.
        let r = Redactor::new(["Tr0ub4dor&3 horse", "p@ss w0rd/+&=\u{c4}-xyz!Q9"]);
        assert_eq!(r.redact("url: /x?token=Tr0ub4dor&3%20horse (x)"), "url: /x?token=*** (x)");
        assert_eq!(r.redact("Tr0ub4dor%263+horse"), "***");
        assert_eq!(r.redact("p@ss%20w0rd/+&=%c3%84-xyz!Q9 and p%40ss+w0rd%2F%2B%26%3D\u{c4}-xyz%21Q9"), "*** and ***");
        // Letters and digits are never escaped by an encoder; nor matched escaped.
        assert_eq!(r.redact("Tr%30ub4dor&3 horse"), "Tr%30ub4dor&3 horse");
        // A short value or one with nothing to escape has no pattern (its forms cover it).
        assert!(percent_pattern("a+b c").is_none() && percent_pattern("abcdefghij").is_none());
        assert_eq!(Redactor::new(["a+b c"]).redact("x=a+b%20c;"), "x=***;");
        // The pattern reads the same in Python's `re` (bootstrap.py compiles it there).
        let p = percent_pattern("p@ss w0rd/+&=\u{c4}").expect("pattern");
        assert!(p.is_ascii() || p.contains('\u{c4}'));
        assert!(!p.contains("\\x{") && !p.contains("\\p"), "{p}");
        assert_eq!(r.percent_patterns().len(), 2);
    }

    #[test]
    fn encoded_forms_are_redacted_wherever_they_occur() {
        let r = Redactor::new(["q8Zr+Tk/3vXw==", "s3cr\\et-P\u{e4}ssw\u{f6}rd"]);
        let text = "GET /x?apikey=q8Zr%2BTk%2F3vXw%3D%3D&b=q8zr; {'password': 's3cr\\\\et-P\u{e4}ssw\u{f6}rd'} \
                    {\"password\": \"s3cr\\\\et-P\\u00e4ssw\\u00f6rd\"} q8Zr%2bTk%2f3vXw%3d%3d";
        assert_eq!(r.redact(text), "GET /x?apikey=***&b=q8zr; {'password': '***'} {\"password\": \"***\"} ***");
        // Sent to a Python worker: the values and every form, longest first.
        assert!(r.patterns().windows(2).all(|w| w[0].len() >= w[1].len()));
        assert_eq!(r.patterns().len(), r.values().iter().map(|v| 1 + encoded_forms(v).len()).sum::<usize>());
        // Args redact with the same rules.
        let mut args = super::super::Args::new();
        args.insert_sensitive("password", "q8Zr+Tk/3vXw==");
        assert_eq!(args.redact("apikey=q8Zr%2BTk%2F3vXw%3D%3D"), "apikey=***");
    }
}
