//! Just enough DER reading for local-ca: the parts of a CSR and of a CA certificate that a new
//! certificate copies, found by walking the encoding in place.
//!
//! x509-parser parsed both whole, and every call runs in a fresh instance, so its lazily built
//! tables of extension and attribute parsers (hash maps seeded from the host's random source)
//! were built again on every call: with PEM handling that was most of local-ca's own CPU. Only
//! byte ranges are taken here; nothing is interpreted beyond what is copied, and the host
//! verifies every certificate local-ca returns (invariant 1).

/// DER tags used below (universal class, or context-specific where noted).
pub const BOOLEAN: u8 = 0x01;
pub const INTEGER: u8 = 0x02;
pub const BIT_STRING: u8 = 0x03;
pub const OCTET_STRING: u8 = 0x04;
pub const OID: u8 = 0x06;
pub const SEQUENCE: u8 = 0x30;
pub const SET: u8 = 0x31;
/// `[0]` constructed: a certificate's version, a CSR's attributes.
pub const CONTEXT_0: u8 = 0xa0;
/// `[3]` constructed: a certificate's extensions.
pub const CONTEXT_3: u8 = 0xa3;

/// Encoded OIDs (content bytes only).
const OID_EXTENSION_REQUEST: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x0e]; // 1.2.840.113549.1.9.14
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11]; // 2.5.29.17
const OID_SUBJECT_KEY_ID: &[u8] = &[0x55, 0x1d, 0x0e]; // 2.5.29.14

/// One tag-length-value: `raw` is the whole encoding, `content` the value.
#[derive(Debug, Clone, Copy)]
pub struct Tlv<'a> {
    pub tag: u8,
    pub raw: &'a [u8],
    pub content: &'a [u8],
}

/// Why a value could not be walked (or, for a CSR, could be read two ways); phrased to follow
/// "… does not parse: ".
pub type Error = &'static str;

/// Reads the TLV at the front of `input`; returns it and what follows.
pub fn read(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), Error> {
    const TRUNCATED: Error = "the DER ends inside a value";
    let (&tag, rest) = input.split_first().ok_or(TRUNCATED)?;
    if tag & 0x1f == 0x1f {
        return Err("a DER tag uses the high-number form, which certificates do not");
    }
    let (&first, rest) = rest.split_first().ok_or(TRUNCATED)?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return Err("a DER length is indefinite or longer than four bytes");
        }
        let (bytes, rest) = rest.split_at_checked(n).ok_or(TRUNCATED)?;
        (bytes.iter().fold(0usize, |len, b| (len << 8) | usize::from(*b)), rest)
    };
    let (content, after) = rest.split_at_checked(len).ok_or(TRUNCATED)?;
    let header = input.len() - rest.len();
    Ok((Tlv { tag, raw: &input[..header + len], content }, after))
}

/// Reads a TLV that must have `tag`.
pub fn expect(input: &[u8], tag: u8) -> Result<(Tlv<'_>, &[u8]), Error> {
    let (tlv, rest) = read(input)?;
    if tlv.tag == tag { Ok((tlv, rest)) } else { Err("a DER value is not of the type its place requires") }
}

/// Reads a TLV only if the next one has `tag`; otherwise returns `input` untouched.
fn optional(input: &[u8], tag: u8) -> Result<(Option<Tlv<'_>>, &[u8]), Error> {
    match input.first() {
        Some(&t) if t == tag => read(input).map(|(tlv, rest)| (Some(tlv), rest)),
        _ => Ok((None, input)),
    }
}

/// The elements of a constructed value's content, in order.
fn elements(mut content: &[u8]) -> impl Iterator<Item = Result<Tlv<'_>, Error>> {
    std::iter::from_fn(move || {
        if content.is_empty() {
            return None;
        }
        let next = read(content);
        // After an error nothing more is read: the walk ends with it.
        content = next.as_ref().map_or(&[], |(_, rest)| *rest);
        Some(next.map(|(tlv, _)| tlv))
    })
}

/// An `Extensions` sequence's entries as (OID content, extnValue content).
fn extensions(seq: &[u8]) -> impl Iterator<Item = Result<(&[u8], &[u8]), Error>> {
    elements(seq).map(|ext| {
        let (oid, rest) = expect(ext?.content, OID)?;
        let (_critical, rest) = optional(rest, BOOLEAN)?;
        let (value, _) = expect(rest, OCTET_STRING)?;
        Ok((oid.content, value.content))
    })
}

/// A SubjectPublicKeyInfo's key bits (the BIT STRING without its unused-bits byte).
fn key_bits(spki: &[u8]) -> Result<&[u8], Error> {
    let (_algorithm, rest) = expect(spki, SEQUENCE)?;
    let (bits, _) = expect(rest, BIT_STRING)?;
    bits.content.get(1..).ok_or("a public key's BIT STRING is empty")
}

/// What a new certificate takes from the CSR.
pub struct Csr<'a> {
    /// The subject Name, whole encoding.
    pub subject: &'a [u8],
    /// Whether the subject has no attributes (then the SAN extension must be critical).
    pub subject_empty: bool,
    /// The SubjectPublicKeyInfo, whole encoding.
    pub spki: &'a [u8],
    /// The public key's bits, for the subject key identifier.
    pub public_key: &'a [u8],
    /// The requested subjectAltName extension's value, if any.
    pub san: Option<&'a [u8]>,
}

/// Walks a PKCS#10 request (RFC 2986) to the parts copied into the certificate.
pub fn csr(der: &[u8]) -> Result<Csr<'_>, Error> {
    let (request, _) = expect(der, SEQUENCE)?;
    let (info, _) = expect(request.content, SEQUENCE)?;
    let (_version, rest) = expect(info.content, INTEGER)?;
    let (subject, rest) = expect(rest, SEQUENCE)?;
    let (spki, rest) = expect(rest, SEQUENCE)?;
    let public_key = key_bits(spki.content)?;
    // The host checked the names of the one extensionRequest attribute and its one SAN
    // extension against the profile and refuses CSRs with more (`csr::parse`); a second one
    // here is refused too, never chosen between.
    let (mut san, mut requests) = (None, 0);
    let (attributes, _) = optional(rest, CONTEXT_0)?;
    for attribute in elements(attributes.map_or(&[][..], |a| a.content)) {
        let (oid, values) = expect(attribute?.content, OID)?;
        if oid.content != OID_EXTENSION_REQUEST {
            continue;
        }
        requests += 1;
        if requests > 1 {
            return Err("it carries more than one extensionRequest attribute");
        }
        let (values, _) = expect(values, SET)?;
        let (requested, _) = expect(values.content, SEQUENCE)?;
        for ext in extensions(requested.content) {
            let (oid, value) = ext?;
            if oid == OID_SUBJECT_ALT_NAME && san.replace(value).is_some() {
                return Err("it requests the subjectAltName extension more than once");
            }
        }
    }
    Ok(Csr { subject: subject.raw, subject_empty: subject.content.is_empty(), spki: spki.raw, public_key, san })
}

/// What a new certificate takes from its issuer's certificate.
pub struct Issuer<'a> {
    /// The issuer's subject Name, whole encoding: the new certificate's issuer.
    pub subject: &'a [u8],
    /// The issuer's public key bits.
    pub public_key: &'a [u8],
    /// The issuer's subject key identifier, if it has one.
    pub key_id: Option<&'a [u8]>,
}

/// Walks an X.509 certificate (RFC 5280) to its subject, key and key identifier.
pub fn issuer(der: &[u8]) -> Result<Issuer<'_>, Error> {
    let (certificate, _) = expect(der, SEQUENCE)?;
    let (tbs, _) = expect(certificate.content, SEQUENCE)?;
    let (_version, rest) = optional(tbs.content, CONTEXT_0)?;
    let (_serial, rest) = expect(rest, INTEGER)?;
    let (_signature, rest) = expect(rest, SEQUENCE)?;
    let (_issuer, rest) = expect(rest, SEQUENCE)?;
    let (_validity, rest) = expect(rest, SEQUENCE)?;
    let (subject, rest) = expect(rest, SEQUENCE)?;
    let (spki, rest) = expect(rest, SEQUENCE)?;
    let public_key = key_bits(spki.content)?;
    let (_issuer_uid, rest) = optional(rest, 0x81)?;
    let (_subject_uid, rest) = optional(rest, 0x82)?;
    let (wrapped, _) = optional(rest, CONTEXT_3)?;
    let mut key_id = None;
    if let Some(wrapped) = wrapped {
        let (list, _) = expect(wrapped.content, SEQUENCE)?;
        for ext in extensions(list.content) {
            let (oid, value) = ext?;
            if oid == OID_SUBJECT_KEY_ID {
                key_id = Some(expect(value, OCTET_STRING)?.0.content);
            }
        }
    }
    Ok(Issuer { subject: subject.raw, public_key, key_id })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made with openssl: a P-256 CA with a subject key identifier, a CSR asking for two DNS
    // names, and a CSR with an empty subject and no extensions.
    fn testdata(name: &str) -> Vec<u8> {
        crate::pem::decode(
            &std::fs::read_to_string(format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))).expect("read"),
        )
        .expect("pem")
    }

    #[test]
    fn a_csr_yields_its_subject_key_and_requested_names() {
        let der = testdata("leaf.csr");
        let csr = csr(&der).expect("walks");
        assert!(!csr.subject_empty);
        assert_eq!(read(csr.subject).expect("tlv").0.raw, csr.subject);
        assert!(csr.subject.windows(15).any(|w| w == b"www.example.com"));
        assert_eq!(&csr.spki[..2], [0x30, 0x59]);
        assert_eq!((csr.public_key.len(), csr.public_key[0]), (65, 0x04));
        let mut san = vec![0x30, 0x1e, 0x82, 0x0f];
        san.extend(b"www.example.com");
        san.extend([0x82, 0x0b]);
        san.extend(b"example.com");
        assert_eq!(csr.san, Some(&san[..]));

        let der = testdata("empty.csr");
        let bare = super::csr(&der).expect("walks");
        assert!(bare.subject_empty);
        assert_eq!(bare.san, None);
    }

    #[test]
    fn a_ca_certificate_yields_its_subject_key_and_key_identifier() {
        let der = testdata("ca.pem");
        let ca = issuer(&der).expect("walks");
        let id = [
            0xed, 0xe9, 0xfe, 0x91, 0x0c, 0x72, 0xe0, 0xf2, 0xe6, 0xa5, 0x40, 0xea, 0x42, 0x0d, 0x6c, 0x6e, 0x8e, 0xa5,
            0x10, 0x6a,
        ];
        assert_eq!(ca.key_id, Some(&id[..]));
        assert!(ca.subject.windows(7).any(|w| w == b"Test CA"));
        assert_eq!((ca.public_key.len(), ca.public_key[0]), (65, 0x04));
        for cut in [0, 1, 2, 50, der.len() - 1] {
            assert!(issuer(&der[..cut]).is_err(), "cut at {cut}");
        }
        assert!(issuer(&testdata("leaf.csr")).is_err(), "a CSR is not a certificate");
    }

    /// One DER value (lengths up to 65,535).
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let len = content.len();
        let mut out = vec![tag];
        match len {
            0..=127 => out.push(len as u8),
            128..=255 => out.extend([0x81, len as u8]),
            _ => out.extend([0x82, (len >> 8) as u8, len as u8]),
        }
        out.extend(content);
        out
    }

    #[test]
    fn a_csr_whose_names_could_be_read_two_ways_is_refused() {
        let der = testdata("leaf.csr");
        let parts = csr(&der).expect("walks");
        let names = parts.san.expect("the fixture requests names").to_vec();
        let san = || tlv(SEQUENCE, &[tlv(OID, OID_SUBJECT_ALT_NAME), tlv(OCTET_STRING, &names)].concat());
        let request = |exts: &[Vec<u8>]| {
            tlv(SEQUENCE, &[tlv(OID, OID_EXTENSION_REQUEST), tlv(SET, &tlv(SEQUENCE, &exts.concat()))].concat())
        };
        // Signature left empty: the host checked it before any connector sees a CSR.
        let build = |attributes: &[Vec<u8>]| {
            let info =
                [&[INTEGER, 1, 0][..], parts.subject, parts.spki, &tlv(CONTEXT_0, &attributes.concat())].concat();
            let algorithm = tlv(SEQUENCE, &tlv(OID, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]));
            tlv(SEQUENCE, &[tlv(SEQUENCE, &info), algorithm, tlv(BIT_STRING, &[0])].concat())
        };
        let one = build(&[request(&[san()])]);
        assert_eq!(csr(&one).expect("one of each").san, Some(&names[..]));
        let two_requests = build(&[request(&[san()]), request(&[san()])]);
        assert_eq!(csr(&two_requests).err(), Some("it carries more than one extensionRequest attribute"));
        let two_sans = build(&[request(&[san(), san()])]);
        assert_eq!(csr(&two_sans).err(), Some("it requests the subjectAltName extension more than once"));
    }

    #[test]
    fn mangled_input_is_an_error_never_a_panic() {
        // 10,000 mangled copies of each fixture, the same on every run.
        let mut next = crate::tests_support::xorshift(0x2545_f491_4f6c_dd1d_u64);
        for name in ["leaf.csr", "empty.csr", "ca.pem"] {
            let der = testdata(name);
            for _ in 0..10_000 {
                let mut bytes = der.clone();
                for _ in 0..1 + next() % 4 {
                    let at = (next() % bytes.len() as u64) as usize;
                    bytes[at] = next() as u8;
                }
                bytes.truncate(1 + (next() % der.len() as u64) as usize);
                let _ = csr(&bytes);
                let _ = issuer(&bytes);
            }
        }
    }

    #[test]
    fn lengths_in_short_and_long_form_and_truncation() {
        let (tlv, rest) = read(&[0x04, 0x02, 0xaa, 0xbb, 0xcc]).expect("short form");
        assert_eq!((tlv.tag, tlv.content, tlv.raw.len(), rest), (0x04, &[0xaa, 0xbb][..], 4, &[0xcc][..]));
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend([7u8; 0x80]);
        assert_eq!(read(&long).expect("long form").0.content.len(), 0x80);
        assert!(read(&[0x04, 0x03, 0xaa]).is_err(), "content shorter than its length");
        assert!(read(&[0x04, 0x80]).is_err(), "indefinite length");
        assert!(read(&[0x04, 0x85, 1, 0, 0, 0, 0]).is_err(), "length of five bytes");
        assert!(read(&[0x1f, 0x01, 0x00]).is_err(), "high tag number");
        assert!(read(&[]).is_err());
        assert!(expect(&[0x05, 0x00], SEQUENCE).is_err(), "wrong tag");
    }
}
