//! Signatures this process made itself, so that invariant 1 need not verify them again.
//!
//! A contract-0.3 connector (local-ca) has the host sign its certificates (`crypto.sign`); the
//! host then verifies the very certificate it signed, before storing it, that the chain links
//! (`cert::issued_by`). That verification was the largest single cost of an issuance (an
//! ECDSA verification costs two to three signatures). Its answer is known: a signature ring
//! made with a key verifies under that key's public key.
//!
//! So each host signature is remembered as the SHA-256 of (the signing key's
//! SubjectPublicKeyInfo, the algorithm OID, the message, the signature). `issued_by` asks
//! with the issuer certificate's SPKI, the certificate's signature algorithm, its TBS bytes
//! and its signature value: every one of them must be exactly what the host signed and with
//! which key, or the answer is "not made here" and the signature is verified as always. A
//! connector that alters the certificate, its algorithm, its signature or the issuer's key
//! gets a full verification. Process memory only, bounded, oldest forgotten first.

use std::collections::{HashSet, VecDeque};
use std::sync::{Mutex, OnceLock, PoisonError};

use sha2::{Digest, Sha256};

/// Signatures remembered at most (a few hundred requests in flight at the very most).
const CAPACITY: usize = 4096;

/// Remembered signatures, as digests, oldest first in `order`.
#[derive(Default)]
struct Memory {
    known: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
}

impl Memory {
    fn record(&mut self, id: [u8; 32]) {
        if self.known.insert(id) {
            self.order.push_back(id);
            if self.order.len() > CAPACITY
                && let Some(oldest) = self.order.pop_front()
            {
                self.known.remove(&oldest);
            }
        }
    }
}

fn memory() -> std::sync::MutexGuard<'static, Memory> {
    static MEMORY: OnceLock<Mutex<Memory>> = OnceLock::new();
    // The set stays consistent whatever a panicking holder was doing: entries are whole.
    MEMORY.get_or_init(Default::default).lock().unwrap_or_else(PoisonError::into_inner)
}

/// One digest over the four parts, each length-prefixed so no two tuples run together.
fn digest(spki_der: &[u8], algorithm_oid: &str, message: &[u8], signature: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [spki_der, algorithm_oid.as_bytes(), message, signature] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}

/// Records that the host signed `message` with the private key whose public key is
/// `spki_der`, under `algorithm_oid` (dotted), giving `signature`.
pub fn record(spki_der: &[u8], algorithm_oid: &str, message: &[u8], signature: &[u8]) {
    let id = digest(spki_der, algorithm_oid, message, signature);
    memory().record(id);
}

/// Whether the host itself made exactly this signature with the key of `spki_der`: if so it
/// verifies, and checking it again would only repeat the host's own arithmetic.
pub fn made_here(spki_der: &[u8], algorithm_oid: &str, message: &[u8], signature: &[u8]) -> bool {
    let id = digest(spki_der, algorithm_oid, message, signature);
    memory().known.contains(&id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_signature_with_the_exact_key_is_known() {
        record(b"spki", "1.2.840.10045.4.3.2", b"tbs", b"sig");
        assert!(made_here(b"spki", "1.2.840.10045.4.3.2", b"tbs", b"sig"));
        assert!(!made_here(b"other spki", "1.2.840.10045.4.3.2", b"tbs", b"sig"));
        assert!(!made_here(b"spki", "1.2.840.10045.4.3.3", b"tbs", b"sig"));
        assert!(!made_here(b"spki", "1.2.840.10045.4.3.2", b"tbs!", b"sig"));
        assert!(!made_here(b"spki", "1.2.840.10045.4.3.2", b"tbs", b"sig!"));
        // Length prefixes: moving a byte from one part to the next is another tuple.
        assert!(!made_here(b"spk", "i1.2.840.10045.4.3.2", b"tbs", b"sig"));
    }

    #[test]
    fn the_oldest_are_forgotten_past_capacity() {
        let mut m = Memory::default();
        let id = |n: usize| digest(b"spki", "1.2.3", &n.to_be_bytes(), b"s");
        for n in 0..=CAPACITY {
            m.record(id(n));
        }
        assert!(!m.known.contains(&id(0)));
        assert!(m.known.contains(&id(1)) && m.known.contains(&id(CAPACITY)));
        assert_eq!(m.known.len(), CAPACITY);
    }
}
