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

/// The first complete DER object of `der` (header and contents), or `None` when `der` does
/// not hold one. An OpenSSL `TRUSTED CERTIFICATE` block is a certificate followed by its
/// trust settings (`X509_AUX`): this is the certificate.
pub fn leading_object(der: &[u8]) -> Option<&[u8]> {
    let (_, _, rest) = first_object(der)?;
    der.get(..der.len() - rest.len())
}

/// The first complete DER object of `der` as its tag, its contents and what follows it; `None`
/// when `der` does not start with one (short or long definite length, up to 4 length bytes).
pub fn first_object(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *der.first()?;
    let first = *der.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = der.get(2..2 + n)?;
        (bytes.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b)), 2 + n)
    };
    let end = header.checked_add(len)?;
    Some((tag, der.get(header..end)?, der.get(end..)?))
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
    pem_start(input).is_some()
}

/// Where the first PEM block of `input` begins, if `input` is text holding one: after a UTF-8
/// byte-order mark, and after any text before it (`openssl req -text` and `openssl x509
/// -text` print the decoded fields first; openssl itself reads past them). Input starting
/// with a DER SEQUENCE is DER, whatever bytes it holds.
pub fn pem_start(input: &[u8]) -> Option<usize> {
    const BOM: &[u8] = b"\xef\xbb\xbf";
    let start = if input.starts_with(BOM) { BOM.len() } else { 0 };
    let first = input[start..].iter().position(|b| !b.is_ascii_whitespace()).map_or(input.len(), |i| start + i);
    if input.get(first) == Some(&0x30) {
        return None;
    }
    input[start..].windows(11).position(|w| w == b"-----BEGIN ").map(|i| start + i)
}

/// What a DER object that is not the certificate or request expected looks like, when it is
/// one of the containers people hand over instead (`.p7b`, `.p12`), for an error that says so.
pub fn container_kind(der: &[u8]) -> Option<&'static str> {
    // The first element inside the outer SEQUENCE: PKCS#7's ContentInfo starts with the
    // pkcs7 content-type OID (1.2.840.113549.1.7.x), PKCS#12's PFX with the version INTEGER 3.
    const PKCS7_OID: &[u8] = &[0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07];
    let header = match der.get(1)? {
        n @ 0x81..=0x84 => 2 + usize::from(n & 0x7f),
        n if *n < 0x80 => 2,
        _ => return None,
    };
    let inner = der.get(header..)?;
    if der.first() != Some(&0x30) {
        return None;
    }
    if inner.starts_with(PKCS7_OID) {
        Some("a PKCS#7 file")
    } else if inner.starts_with(&[0x02, 0x01, 0x03]) {
        Some("a PKCS#12 file")
    } else {
        None
    }
}

/// The sentence for a [`container_kind`] given where a certificate or request was expected.
pub fn container_sentence(kind: &str, expected: &str) -> String {
    format!(
        "it is {kind}, not {expected} (PKCS#7 and PKCS#12 files are not supported: convert with openssl, e.g. `openssl pkcs7 -print_certs -in FILE`, or `openssl pkcs12 -in FILE -nodes` for the certificates and the key as PEM, which import takes together)"
    )
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

/// The `pem` crate's error as a sentence: its framing error prints as "malformedframing".
pub fn pem_error_sentence(e: &pem::PemError) -> String {
    match e {
        pem::PemError::MalformedFraming => {
            "a block is cut short: its BEGIN line has no matching END line, or lines are missing".into()
        }
        // The crate's words ("invalid data: Invalid symbol 33, offset 9.") name its decoder,
        // not the text (black-box review of stop 36).
        pem::PemError::InvalidData(_) => {
            "a block's content is not base64 (a character that does not belong, or a line cut short)".into()
        }
        pem::PemError::MismatchedTags(begin, end) => format!("a block begins as {begin:?} but ends as {end:?}"),
        pem::PemError::MissingBeginTag => "a block has no BEGIN line".into(),
        pem::PemError::MissingEndTag => "a block has no END line".into(),
        pem::PemError::MissingData => "a block holds no data".into(),
        other => other.to_string(),
    }
}

/// Parses text that must hold exactly one PEM block whose label is one of `labels`.
pub fn single_pem_block(text: &str, labels: &[&'static str]) -> Result<Vec<u8>, PemError> {
    let trimmed = text.trim_start();
    if !trimmed.starts_with("-----BEGIN ") {
        return Err(PemError::LeadingData);
    }
    let block = pem::parse(trimmed).map_err(|e| PemError::Malformed(pem_error_sentence(&e)))?;
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
    fn pem_is_found_after_a_byte_order_mark_or_leading_text_and_der_stays_der() {
        let block = "-----BEGIN CERTIFICATE REQUEST-----\nMA==\n-----END CERTIFICATE REQUEST-----\n";
        assert_eq!(pem_start(block.as_bytes()), Some(0));
        assert_eq!(pem_start(format!("\u{feff}{block}").as_bytes()), Some(3));
        let text = format!("Certificate Request:\n    Data: ...\n{block}");
        assert_eq!(pem_start(text.as_bytes()), text.find("-----BEGIN"));
        let mut der = vec![0x30, 0x0e];
        der.extend_from_slice(b"-----BEGIN ...");
        assert_eq!(pem_start(&der), None, "a DER SEQUENCE is DER");
        assert_eq!(pem_start(b"just text"), None);
    }

    #[test]
    fn the_leading_object_is_cut_from_what_follows_it() {
        assert_eq!(leading_object(&[0x30, 0x02, 1, 2, 0x30, 0x00]), Some(&[0x30, 0x02, 1, 2][..]));
        let long = [&[0x30, 0x81, 0x80][..], &[7; 0x80], &[0xa0, 0x00]].concat();
        assert_eq!(leading_object(&long).map(<[u8]>::len), Some(0x83));
        assert_eq!(leading_object(&[0x30, 0x05, 1]), None, "truncated");
        assert_eq!(leading_object(&[0x30]), None);
        assert_eq!(leading_object(&[0x30, 0x80, 0, 0]), None, "indefinite length is not DER");
    }

    #[test]
    fn pkcs7_and_pkcs12_containers_are_recognised() {
        let pkcs7 = [0x30, 0x0b, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
        assert_eq!(container_kind(&pkcs7), Some("a PKCS#7 file"));
        assert_eq!(container_kind(&[0x30, 0x82, 0x01, 0x00, 0x02, 0x01, 0x03]), Some("a PKCS#12 file"));
        assert_eq!(container_kind(&[0x30, 0x03, 0x02, 0x01, 0x00]), None);
        assert_eq!(container_kind(&[0x30, 0x02, 0x30, 0x00]), None);
        assert_eq!(container_kind(&[]), None);
    }

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
