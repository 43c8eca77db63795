//! Small, strict helpers for the outer framing of DER and PEM inputs.
//!
//! Uploaded CSRs and imported files come from outside; these checks turn "truncated",
//! "trailing garbage" and "wrong block" into precise errors before a parser sees the bytes.

/// How a DER object's outer length relates to the bytes given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Exactly one complete object.
    Exact,
    /// The object claims more bytes than were given.
    Truncated,
    /// Bytes follow the object.
    TrailingData(usize),
    /// Not even a SEQUENCE header.
    NotASequence,
}

/// Checks that `der` is exactly one DER SEQUENCE (tag 0x30, definite length).
pub fn framing(der: &[u8]) -> Framing {
    let Some((&tag, rest)) = der.split_first() else {
        return Framing::Truncated;
    };
    if tag != 0x30 {
        return Framing::NotASequence;
    }
    let Some((&first, rest)) = rest.split_first() else {
        return Framing::Truncated;
    };
    let (len, header) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return Framing::NotASequence;
        }
        if rest.len() < n {
            return Framing::Truncated;
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, 2 + n)
    };
    let total = header + len;
    match der.len().cmp(&total) {
        std::cmp::Ordering::Equal => Framing::Exact,
        std::cmp::Ordering::Less => Framing::Truncated,
        std::cmp::Ordering::Greater => Framing::TrailingData(der.len() - total),
    }
}

/// PEM text with Unix line endings (the `pem` crate defaults to CRLF, which tools and diffs
/// treat as noise).
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(label, der.to_vec()), config)
}

/// Every block of a PEM text in the plain form CAs and tools write, as (label, DER) — or
/// `None` for anything else (text around the blocks, headers, blank lines, odd labels, bad
/// base64), which the caller hands to the `pem` crate so that what is accepted, and every
/// error message, stay the crate's. For text this accepts, the crate returns the same blocks
/// (a test holds the two to that).
///
/// Why it exists: the crate scans byte by byte and gathers each block into a new `String`
/// char by char before decoding, and every issuance reads its certificate and chain. For a
/// leaf, intermediate and root this reads in 5 µs what the crate reads in 14
/// (`cargo bench -p certhost --bench crypto -- pem_read`).
pub fn plain_pem_blocks(text: &str) -> Option<Vec<(&str, Vec<u8>)>> {
    use base64::Engine as _;
    const SPACE: [char; 4] = [' ', '\t', '\r', '\n'];
    let mut rest = text.trim_start_matches(SPACE);
    let mut blocks = Vec::new();
    let mut base64_text = Vec::with_capacity(text.len());
    while !rest.is_empty() {
        let after_begin = rest.strip_prefix("-----BEGIN ")?;
        let label_len = after_begin.find("-----")?;
        let label = &after_begin[..label_len];
        if label.is_empty() || !label.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' ') {
            return None;
        }
        let mut lines = end_of_line(&after_begin[label_len + 5..])?;
        base64_text.clear();
        rest = loop {
            if let Some(after_end) = lines.strip_prefix("-----END ") {
                break after_end.strip_prefix(label)?.strip_prefix("-----")?.trim_start_matches(SPACE);
            }
            let line_len = lines.find('\n')?;
            let line = &lines[..line_len];
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.is_empty() || !line.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)) {
                return None;
            }
            base64_text.extend_from_slice(line.as_bytes());
            lines = &lines[line_len + 1..];
        };
        // The engine the crate decodes with, so that both accept the same encodings.
        blocks.push((label, base64::engine::general_purpose::STANDARD.decode(&base64_text).ok()?));
    }
    Some(blocks)
}

/// `text` after the line ending it starts with (`\n` or `\r\n`), if it starts with one.
fn end_of_line(text: &str) -> Option<&str> {
    text.strip_prefix('\n').or_else(|| text.strip_prefix("\r\n"))
}

/// Whether `input` looks like PEM text rather than DER.
pub fn looks_like_pem(input: &[u8]) -> bool {
    let start = input.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(input.len());
    input[start..].starts_with(b"-----BEGIN ")
}

/// Why a PEM text is not exactly one block of an expected label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PemError {
    /// Not valid PEM (bad base64, missing END line, ...).
    #[error("malformed PEM: {0}")]
    Malformed(String),
    /// A block with another label.
    #[error("expected a PEM block labelled {expected}, found {found:?}")]
    WrongLabel {
        /// Labels accepted.
        expected: &'static str,
        /// Label found.
        found: String,
    },
    /// More than one block, or text around the block.
    #[error("unexpected data after the PEM block")]
    TrailingData,
    /// Text before the first block.
    #[error("unexpected data before the PEM block")]
    LeadingData,
}

/// Parses text that must hold exactly one PEM block whose label is one of `labels`.
pub fn single_pem_block(text: &str, labels: &[&'static str]) -> Result<Vec<u8>, PemError> {
    let trimmed = text.trim_start();
    if !trimmed.starts_with("-----BEGIN ") {
        return Err(PemError::LeadingData);
    }
    let block = pem::parse(trimmed).map_err(|e| PemError::Malformed(e.to_string()))?;
    if !labels.contains(&block.tag()) {
        return Err(PemError::WrongLabel {
            expected: labels.first().copied().unwrap_or("?"),
            found: block.tag().to_owned(),
        });
    }
    let end_marker = format!("-----END {}-----", block.tag());
    let end = trimmed.find(&end_marker).ok_or_else(|| PemError::Malformed("missing END line".into()))?;
    if !trimmed[end + end_marker.len()..].trim().is_empty() {
        return Err(PemError::TrailingData);
    }
    Ok(block.into_contents())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_detects_truncation_and_trailing_bytes() {
        let der = [0x30, 0x03, 1, 2, 3];
        assert_eq!(framing(&der), Framing::Exact);
        assert_eq!(framing(&der[..4]), Framing::Truncated);
        assert_eq!(framing(&[0x30, 0x03, 1, 2, 3, 9]), Framing::TrailingData(1));
        assert_eq!(framing(&[0x04, 0x00]), Framing::NotASequence);
        assert_eq!(framing(&[]), Framing::Truncated);
        assert_eq!(framing(&[0x30, 0x82, 0x01]), Framing::Truncated);
    }

    /// What the `pem` crate reads from `text`, as `plain_pem_blocks` would report it.
    fn crate_blocks(text: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
        pem::parse_many(text)
            .map(|blocks| blocks.into_iter().map(|b| (b.tag().to_owned(), b.into_contents())).collect())
            .map_err(|e| e.to_string())
    }

    fn owned(blocks: Vec<(&str, Vec<u8>)>) -> Vec<(String, Vec<u8>)> {
        blocks.into_iter().map(|(label, der)| (label.to_owned(), der)).collect()
    }

    fn sample() -> String {
        let bytes =
            |n: usize, seed: u8| (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect::<Vec<_>>();
        format!(
            "{}{}{}",
            pem_encode("CERTIFICATE", &bytes(300, 1)),
            pem_encode("EC PRIVATE KEY", &bytes(121, 2)),
            pem_encode("CERTIFICATE", &bytes(47, 3))
        )
    }

    #[test]
    fn plain_pem_reads_what_the_crate_reads() {
        let text = sample();
        let fast = plain_pem_blocks(&text).expect("plain");
        assert_eq!(fast.iter().map(|(l, _)| *l).collect::<Vec<_>>(), ["CERTIFICATE", "EC PRIVATE KEY", "CERTIFICATE"]);
        assert_eq!(Ok(owned(fast)), crate_blocks(&text));
        let crlf = text.replace('\n', "\r\n");
        assert_eq!(Ok(owned(plain_pem_blocks(&crlf).expect("CRLF is plain"))), crate_blocks(&crlf));
        let spaced = format!("\n  {}\n\n", text.replace("-----\n-----", "-----\n\n \t-----"));
        assert_eq!(Ok(owned(plain_pem_blocks(&spaced).expect("space between blocks"))), crate_blocks(&spaced));
        assert_eq!(plain_pem_blocks(" \n").expect("blank"), []);
        // Anything else is left to the crate.
        for other in [
            format!("subject=CN=x\n{text}"),
            text.replacen("-----\n", "-----\nProc-Type: 4,ENCRYPTED\n\n", 1),
            text.replacen("-----END CERTIFICATE-----", "-----END CERTIFICATE REQUEST-----", 1),
            text.replacen('\n', "\n\n", 2),
            text.replacen("-----\n", "-----\n ", 1),
            format!("{text}trailing"),
        ] {
            assert!(plain_pem_blocks(&other).is_none(), "{other}");
        }
    }

    /// Mutated PEM texts: whatever the fast reader accepts, the crate reads the same way.
    #[test]
    fn plain_pem_never_disagrees_with_the_crate() {
        let text = sample().into_bytes();
        let alphabet = b"-\n\r \tA=+/:ENDBGI";
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let mut accepted = 0;
        for _ in 0..20_000 {
            let mut t = text.clone();
            for _ in 0..=next(3) {
                let at = next(t.len());
                match next(3) {
                    0 => t[at] = alphabet[next(alphabet.len())],
                    1 => t.insert(at, alphabet[next(alphabet.len())]),
                    _ => {
                        t.remove(at);
                    }
                }
            }
            let t = String::from_utf8(t).expect("ASCII");
            if let Some(fast) = plain_pem_blocks(&t) {
                accepted += 1;
                assert_eq!(Ok(owned(fast)), crate_blocks(&t), "{t}");
            }
        }
        assert!(accepted > 1_000, "the mutations should leave many texts plain ({accepted})");
    }
}
