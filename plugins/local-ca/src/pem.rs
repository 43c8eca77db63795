//! PEM in and out, table-driven. Certificates and CSRs are public, so the constant-time
//! base64 of the key crates (several times slower here, in WebAssembly) buys nothing.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Each byte's 6-bit value, or `INVALID`.
const INVALID: u8 = 0xff;
const DECODE: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < 64 {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// The bytes of the first PEM block, whatever its label. Text around the block and
/// whitespace inside it are ignored; the error says what is missing or wrong.
pub fn decode(pem: &str) -> Result<Vec<u8>, &'static str> {
    let begin = pem.find("-----BEGIN ").ok_or("no -----BEGIN line")?;
    let body = &pem[begin..];
    let body = &body[body.find('\n').ok_or("nothing after the -----BEGIN line")? + 1..];
    let end = body.find("-----END ").ok_or("no -----END line")?;
    const MALFORMED: &str = "the base64 inside it is malformed";
    let mut out = Vec::with_capacity(end / 4 * 3);
    // Four characters make three bytes; `=` may only end the last group.
    let (mut group, mut filled, mut padding) = (0u32, 0, 0);
    for &c in &body.as_bytes()[..end] {
        let v = DECODE[usize::from(c)];
        if v != INVALID && padding == 0 {
            group = (group << 6) | u32::from(v);
            filled += 1;
            if filled == 4 {
                out.extend_from_slice(&group.to_be_bytes()[1..]);
                (group, filled) = (0, 0);
            }
        } else if c == b'=' && filled >= 2 {
            padding += 1;
        } else if !c.is_ascii_whitespace() {
            return Err(MALFORMED);
        }
    }
    match (filled, padding) {
        (0, 0) => {}
        // A final group of two or three characters (padded or not), its spare bits zero.
        (2, 0 | 2) if group & 0xf == 0 => out.push((group >> 4) as u8),
        (3, 0 | 1) if group & 0x3 == 0 => out.extend_from_slice(&((group >> 2) as u16).to_be_bytes()),
        _ => return Err(MALFORMED),
    }
    Ok(out)
}

/// PEM with 64-column base64 lines.
pub fn encode(label: &str, der: &[u8]) -> String {
    let mut out = Vec::with_capacity(der.len() / 3 * 4 + der.len() / 48 + 2 * label.len() + 40);
    out.extend_from_slice(b"-----BEGIN ");
    out.extend_from_slice(label.as_bytes());
    out.extend_from_slice(b"-----\n");
    // 48 bytes make one 64-character line.
    for line in der.chunks(48) {
        for chunk in line.chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
            let sextet = |i: usize| ALPHABET[((n >> (18 - 6 * i)) & 63) as usize];
            out.extend_from_slice(&[
                sextet(0),
                sextet(1),
                if chunk.len() > 1 { sextet(2) } else { b'=' },
                if chunk.len() > 2 { sextet(3) } else { b'=' },
            ]);
        }
        out.push(b'\n');
    }
    out.extend_from_slice(b"-----END ");
    out.extend_from_slice(label.as_bytes());
    out.extend_from_slice(b"-----\n");
    // Only the label can be other than ASCII, and it came in as a str: always valid UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_length_with_64_column_lines() {
        for len in 0..200 {
            let der: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let text = encode("CERTIFICATE", &der);
            assert!(text.lines().all(|l| l.len() <= 64), "{text}");
            assert_eq!(decode(&text).expect("decodes"), der, "{text}");
        }
    }

    #[test]
    fn mangled_text_is_an_error_never_a_panic() {
        let good = encode("CERTIFICATE", &(0..300u32).map(|i| (i * 7) as u8).collect::<Vec<_>>());
        let mut next = crate::tests_support::xorshift(0x9e37_79b9_7f4a_7c15_u64);
        for _ in 0..20_000 {
            let mut bytes = good.clone().into_bytes();
            for _ in 0..1 + next() % 4 {
                let at = (next() % bytes.len() as u64) as usize;
                // ASCII only, so the text stays a str: any byte the alphabet, `=`, space or `-` may be.
                const CHOICES: &[u8] = b"AZaz09+/= \r\n-!";
                bytes[at] = CHOICES[(next() % CHOICES.len() as u64) as usize];
            }
            bytes.truncate((next() % (bytes.len() as u64 + 1)) as usize);
            let _ = decode(std::str::from_utf8(&bytes).expect("ascii"));
        }
    }

    #[test]
    fn text_around_and_crlf_lines_are_ignored_and_bad_base64_is_refused() {
        let text = "Bag Attributes: x\r\n-----BEGIN CERTIFICATE-----\r\nAAEC\r\nAw==\r\n-----END CERTIFICATE-----\r\n";
        assert_eq!(decode(text).expect("decodes"), [0, 1, 2, 3]);
        for bad in [
            "-----BEGIN X-----\nAA!C\n-----END X-----",
            "-----BEGIN X-----\nAw==AA\n-----END X-----",
            "-----BEGIN X-----\nAAECA\n-----END X-----",
            "-----BEGIN X-----\nAx==\n-----END X-----",
            "-----BEGIN X-----\nAAEC=\n-----END X-----",
        ] {
            assert!(decode(bad).is_err(), "{bad}");
        }
        assert_eq!(decode("no pem here"), Err("no -----BEGIN line"));
        assert_eq!(decode("-----BEGIN X-----\nAAEC\n"), Err("no -----END line"));
    }
}
