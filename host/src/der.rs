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
}
