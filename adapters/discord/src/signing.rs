//! Discord's request signature: Ed25519 over `X-Signature-Timestamp` ‖ raw body, checked
//! with the application's public key (hex, from the developer portal). Discord sends
//! deliberately bad signatures to check that an endpoint refuses them.

use ed25519_dalek::{Signature, VerifyingKey};

/// How far a request's timestamp may be from now, in seconds (replays of old requests).
pub const MAX_SKEW_SECS: i64 = 5 * 60;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Signature-Ed25519 or X-Signature-Timestamp")]
    Missing,
    #[error("the signature is not 64 hex-encoded bytes")]
    Malformed,
    #[error("the timestamp is not unix seconds, or too far from now")]
    Stale,
    #[error("the signature does not match")]
    Mismatch,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("discord.public_key must be 64 hex digits (an Ed25519 public key)")]
pub struct BadPublicKey;

/// The application's public key, parsed once.
#[derive(Clone, Debug)]
pub struct Verifier {
    key: VerifyingKey,
}

impl Verifier {
    pub fn new(public_key_hex: &str) -> Result<Verifier, BadPublicKey> {
        let bytes: [u8; 32] = hex::decode(public_key_hex.trim())
            .map_err(|_| BadPublicKey)?
            .try_into()
            .map_err(|_| BadPublicKey)?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| BadPublicKey)?;
        Ok(Verifier { key })
    }

    /// Checks one request. `now` is unix seconds; a timestamp more than [`MAX_SKEW_SECS`]
    /// away is refused even when signed (a replayed capture).
    pub fn verify(
        &self,
        timestamp: Option<&str>,
        signature_hex: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<(), SignatureError> {
        let (Some(ts), Some(sig)) = (timestamp, signature_hex) else {
            return Err(SignatureError::Missing);
        };
        let sig: [u8; 64] = hex::decode(sig.trim())
            .map_err(|_| SignatureError::Malformed)?
            .try_into()
            .map_err(|_| SignatureError::Malformed)?;
        let at: i64 = ts.trim().parse().map_err(|_| SignatureError::Stale)?;
        if (now - at).abs() > MAX_SKEW_SECS {
            return Err(SignatureError::Stale);
        }
        let mut msg = Vec::with_capacity(ts.len() + body.len());
        msg.extend_from_slice(ts.as_bytes());
        msg.extend_from_slice(body);
        self.key
            .verify_strict(&msg, &Signature::from_bytes(&sig))
            .map_err(|_| SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    #[test]
    fn a_signed_request_passes_and_any_change_fails() {
        let k = key();
        let v = Verifier::new(&hex::encode(k.verifying_key().to_bytes())).unwrap();
        let body = br#"{"type":1}"#;
        let sign = |ts: &str, b: &[u8]| {
            let mut m = ts.as_bytes().to_vec();
            m.extend_from_slice(b);
            hex::encode(k.sign(&m).to_bytes())
        };
        let sig = sign("1000", body);
        assert_eq!(v.verify(Some("1000"), Some(&sig), body, 1010), Ok(()));
        assert_eq!(
            v.verify(Some("1001"), Some(&sig), body, 1010),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            v.verify(Some("1000"), Some(&sig), br#"{"type":2}"#, 1010),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            v.verify(Some("1000"), Some(&sig), body, 1000 + MAX_SKEW_SECS + 1),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            v.verify(None, Some(&sig), body, 1000),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            v.verify(Some("1000"), Some("zz"), body, 1000),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn public_keys_must_be_32_hex_bytes() {
        assert!(Verifier::new("abcd").is_err());
        assert!(Verifier::new("not hex").is_err());
        assert!(Verifier::new(&hex::encode(key().verifying_key().to_bytes())).is_ok());
    }
}
