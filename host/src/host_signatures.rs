//! Signatures known to verify, so that invariant 1 need not verify them again: those this
//! process made itself, and the links between CA certificates it has verified.
//!
//! A contract-0.3 connector (local-ca) has the host sign its certificates (`crypto.sign`); the
//! host then verifies the very certificate it signed, before storing it, that the chain links
//! (`cert::issued_by`). That verification was the largest single cost of an issuance (an
//! ECDSA verification costs two to three signatures). Its answer is known: a signature ring
//! made with a key verifies under that key's public key. Likewise a CA that answers with
//! leaf, intermediate and root sends the same intermediate, signed by the same root, every
//! time: once that signature verified, it verifies again (the check depends on nothing else).
//!
//! So each such signature is remembered as the SHA-256 of (the signing key's
//! SubjectPublicKeyInfo, the algorithm OID, the message, the signature). `issued_by` asks
//! with the issuer certificate's SPKI, the certificate's signature algorithm, its TBS bytes
//! and its signature value: every one of them must be exactly what was signed or verified
//! and with which key, or the answer is "not known" and the signature is verified as always.
//! A connector that alters the certificate, its algorithm, its signature or the issuer's key
//! gets a full verification. Leaf signatures verified here are not remembered: no leaf comes
//! twice. Process memory only, bounded, oldest forgotten first.

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

/// Records that `signature` of `message` under `algorithm_oid` (dotted) verifies with the
/// key of `spki_der`: the host made it with that key, or has just verified it.
pub fn record(spki_der: &[u8], algorithm_oid: &str, message: &[u8], signature: &[u8]) {
    let id = digest(spki_der, algorithm_oid, message, signature);
    memory().record(id);
}

/// Whether exactly this signature is known to verify with the key of `spki_der`: checking it
/// again would only repeat arithmetic whose answer is known.
pub fn known(spki_der: &[u8], algorithm_oid: &str, message: &[u8], signature: &[u8]) -> bool {
    let id = digest(spki_der, algorithm_oid, message, signature);
    memory().known.contains(&id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_signature_with_the_exact_key_is_known() {
        record(b"spki", "1.2.840.10045.4.3.2", b"tbs", b"sig");
        assert!(known(b"spki", "1.2.840.10045.4.3.2", b"tbs", b"sig"));
        assert!(!known(b"other spki", "1.2.840.10045.4.3.2", b"tbs", b"sig"));
        assert!(!known(b"spki", "1.2.840.10045.4.3.3", b"tbs", b"sig"));
        assert!(!known(b"spki", "1.2.840.10045.4.3.2", b"tbs!", b"sig"));
        assert!(!known(b"spki", "1.2.840.10045.4.3.2", b"tbs", b"sig!"));
        // Length prefixes: moving a byte from one part to the next is another tuple.
        assert!(!known(b"spk", "i1.2.840.10045.4.3.2", b"tbs", b"sig"));
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
