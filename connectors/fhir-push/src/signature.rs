//! WebSub-style request signing as athena uses it: `X-Hub-Signature: sha256=<hex>` where `<hex>`
//! is the HMAC-SHA256 of the exact raw request body keyed by the subscription's shared secret.
//!
//! Verification runs over the bytes as received (no re-serialisation: whitespace matters) and
//! compares in constant time with `subtle`, so response timing reveals nothing about how much of
//! a forged signature was right.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// The header athena signs with.
pub const SIGNATURE_HEADER: &str = "x-hub-signature";

/// Why a request's signature was refused (never says which byte differed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// No signature header.
    Missing,
    /// Not `sha256=<64 hex digits>` (an unknown method prefix counts too).
    Malformed,
    /// Well-formed but wrong.
    Mismatch,
}

/// `sha256=<hex>` for `body` under `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in tag {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    // Hex digits only: `u8::from_str_radix` alone would also take a sign (`+f`), giving a
    // second spelling of a valid signature.
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Checks a header value against `body` under `secret`.
pub fn verify(secret: &[u8], header: Option<&str>, body: &[u8]) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?.trim();
    let (method, hex) = header.split_once('=').ok_or(SignatureError::Malformed)?;
    // athena warns the method prefix may change; anything but sha256 is refused, not guessed.
    if !method.eq_ignore_ascii_case("sha256") {
        return Err(SignatureError::Malformed);
    }
    let given = unhex(hex)
        .filter(|g| g.len() == 32)
        .ok_or(SignatureError::Malformed)?;
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    if bool::from(expected.as_slice().ct_eq(&given)) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_hex_pair_is_not_a_second_spelling() {
        let body = b"{}";
        let sig = sign(b"s3cret", body);
        // Replace the first hex pair `xy` by `+y` only where `y` alone spells the same byte.
        let hex = &sig["sha256=".len()..];
        if let Some(rest) = hex.strip_prefix('0') {
            let forged = format!("sha256=+{rest}");
            assert!(verify(b"s3cret", Some(&forged), body).is_err());
        }
        assert!(unhex("+f").is_none() && unhex("0f") == Some(vec![15]));
    }

    #[test]
    fn round_trip_and_forgeries() {
        let body = br#"{"resourceType":"Bundle"}"#;
        let sig = sign(b"s3cret", body);
        assert!(sig.starts_with("sha256=") && sig.len() == 71);
        assert_eq!(verify(b"s3cret", Some(&sig), body), Ok(()));
        assert_eq!(
            verify(
                b"s3cret",
                Some(&sig.to_uppercase().replacen("SHA256", "sha256", 1)),
                body
            ),
            Ok(())
        );
        assert_eq!(
            verify(b"other", Some(&sig), body),
            Err(SignatureError::Mismatch)
        );
        // Whitespace matters: the same JSON re-serialised is a different body.
        assert_eq!(
            verify(b"s3cret", Some(&sig), br#"{"resourceType": "Bundle"}"#),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(verify(b"s3cret", None, body), Err(SignatureError::Missing));
        assert_eq!(
            verify(b"s3cret", Some("sha1=abcd"), body),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(b"s3cret", Some("sha256=zz"), body),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(b"s3cret", Some("sha256=abcd"), body),
            Err(SignatureError::Malformed)
        );
    }
}
