//! Standard Webhooks signing and verification over raw request bytes.
//!
//! The signed content is `id.timestamp.body`; the HMAC-SHA256 key is the
//! base64-decoded part of a `whsec_` secret. Verification is constant-time
//! and never reveals the expected signature.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Largest allowed distance between a webhook's timestamp and the service
/// clock, in seconds; the boundary itself is inside the window.
pub const TIMESTAMP_TOLERANCE_SECS: i64 = 300;

const SECRET_PREFIX: &str = "whsec_";
const MIN_SECRET_BYTES: usize = 24;
const MAX_SECRET_BYTES: usize = 64;

/// A Standard Webhooks HMAC secret (`whsec_` + base64 of 24 to 64 bytes).
///
/// Exists only in valid form; its `Debug` output never shows the key.
#[derive(Clone)]
pub struct WebhookSecret {
    key: Vec<u8>,
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(redacted)")
    }
}

impl WebhookSecret {
    /// Parses a `whsec_` secret. The error says what is wrong without
    /// repeating the value.
    pub fn parse(value: &str) -> Result<Self, String> {
        if value.trim() != value {
            return Err("has white space before or after it; remove it".into());
        }
        if value.starts_with("v1,") || value.starts_with("v1a,") {
            return Err("is a signature (it starts with \"v1,\"), not a secret; \
                        paste the secret that starts with \"whsec_\""
                .into());
        }
        let Some(encoded) = value.strip_prefix(SECRET_PREFIX) else {
            return Err("does not start with \"whsec_\"; paste the whole secret, e.g. \"whsec_MfKQ…\"".into());
        };
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| "is not valid base64 after \"whsec_\"; paste the whole secret".to_string())?;
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&key.len()) {
            return Err(format!(
                "decodes to {} bytes; a secret must be {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} random bytes",
                key.len()
            ));
        }
        Ok(Self { key })
    }

    /// Generates a new random 32-byte secret and returns it with its `whsec_` text.
    pub fn generate() -> (Self, String) {
        let key: [u8; 32] = rand::random();
        let text = format!("{SECRET_PREFIX}{}", STANDARD.encode(key));
        (Self { key: key.to_vec() }, text)
    }

    /// Returns the `whsec_` text of the secret, for handing it to a process
    /// that must share it (the demo's simulated platform). Never log it.
    pub fn expose_text(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.key))
    }

    fn mac(&self, id: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC accepts any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// Signs `id.timestamp.body` and returns one `v1,<base64>` entry.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = self.mac(id, &timestamp.to_string(), body).finalize().into_bytes();
        format!("v1,{}", STANDARD.encode(tag))
    }

    fn verify_entry(&self, id: &str, timestamp: &str, body: &[u8], signature: &[u8]) -> bool {
        self.mac(id, timestamp, body).verify_slice(signature).is_ok()
    }
}

/// A Standard Webhooks ed25519 public key (`whpk_` + base64 of 32 bytes),
/// for `v1a` signatures from a platform that keeps its signing key to itself.
#[derive(Clone, Debug)]
pub struct WebhookPublicKey {
    key: ed25519_dalek::VerifyingKey,
}

impl WebhookPublicKey {
    /// Parses a `whpk_` key; the error says what is wrong.
    pub fn parse(value: &str) -> Result<Self, String> {
        if value.trim() != value {
            return Err("has white space before or after it; remove it".into());
        }
        let Some(encoded) = value.strip_prefix("whpk_") else {
            return Err("does not start with \"whpk_\"; paste the whole public key".into());
        };
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|_| "is not valid base64 after \"whpk_\"; paste the whole public key".to_string())?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|bytes: Vec<u8>| format!("decodes to {} bytes; an ed25519 public key has 32", bytes.len()))?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map_err(|_| "is not a valid ed25519 public key".to_string())?;
        Ok(Self { key })
    }

    /// Returns the `whpk_` text of the key.
    pub fn to_text(&self) -> String {
        format!("whpk_{}", STANDARD.encode(self.key.as_bytes()))
    }

    fn verify_entry(&self, id: &str, timestamp: &str, body: &[u8], signature: &[u8]) -> bool {
        let Ok(signature) = ed25519_dalek::Signature::from_slice(signature) else {
            return false;
        };
        let mut message = Vec::with_capacity(id.len() + timestamp.len() + body.len() + 2);
        message.extend_from_slice(id.as_bytes());
        message.push(b'.');
        message.extend_from_slice(timestamp.as_bytes());
        message.push(b'.');
        message.extend_from_slice(body);
        self.key.verify_strict(&message, &signature).is_ok()
    }
}

/// Why a signed request was rejected. Each maps to one error code of the
/// inbound webhook contract.
#[derive(Debug, PartialEq, Eq)]
pub enum VerifyError {
    InvalidTimestamp,
    /// The timestamp is this many seconds from the service clock (positive
    /// when it lies in the future).
    OutOfWindow {
        offset_secs: i128,
    },
    InvalidSignature,
}

/// Parses a Unix timestamp in canonical decimal form: digits only, no sign,
/// no leading zero, and within `i64`.
pub fn parse_timestamp(value: &str) -> Option<i64> {
    let bytes = value.as_bytes();
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if bytes.len() > 1 && bytes[0] == b'0' {
        return None;
    }
    value.parse::<i64>().ok()
}

/// Checks the timestamp against `now` (Unix seconds) and the signature header
/// against every secret. `signature_header` holds space-separated
/// `v1,<base64>` entries; malformed entries and other versions count as not
/// matching.
pub fn verify(
    secrets: &[WebhookSecret],
    id: &str,
    timestamp: &str,
    body: &[u8],
    signature_header: &str,
    now: i64,
) -> Result<(), VerifyError> {
    verify_with_public_keys(secrets, &[], id, timestamp, body, signature_header, now)
}

/// Like [`verify`], and also accepts a `v1a,<base64 ed25519>` entry that
/// verifies with one of `public_keys`.
pub fn verify_with_public_keys(
    secrets: &[WebhookSecret],
    public_keys: &[WebhookPublicKey],
    id: &str,
    timestamp: &str,
    body: &[u8],
    signature_header: &str,
    now: i64,
) -> Result<(), VerifyError> {
    let Some(sent_at) = parse_timestamp(timestamp) else {
        return Err(VerifyError::InvalidTimestamp);
    };

    let offset = i128::from(sent_at) - i128::from(now);
    if offset.abs() > i128::from(TIMESTAMP_TOLERANCE_SECS) {
        return Err(VerifyError::OutOfWindow { offset_secs: offset });
    }

    let candidates: Vec<Vec<u8>> = signature_header
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|encoded| STANDARD.decode(encoded).ok())
        .filter(|signature| signature.len() == 32)
        .collect();

    // Every secret is tried against every entry, so the time taken does not
    // depend on which one matched.
    let mut matched = false;
    for secret in secrets {
        for signature in &candidates {
            matched |= secret.verify_entry(id, timestamp, body, signature);
        }
    }

    let asymmetric: Vec<Vec<u8>> = signature_header
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1a,"))
        .filter_map(|encoded| STANDARD.decode(encoded).ok())
        .filter(|signature| signature.len() == 64)
        .collect();
    for key in public_keys {
        for signature in &asymmetric {
            matched |= key.verify_entry(id, timestamp, body, signature);
        }
    }

    if matched {
        Ok(())
    } else {
        Err(VerifyError::InvalidSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const EXAMPLE_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const EXAMPLE_TS: i64 = 1614265330;
    const EXAMPLE_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const EXAMPLE_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn example_secret() -> WebhookSecret {
        WebhookSecret::parse(EXAMPLE_SECRET).unwrap()
    }

    #[test]
    fn specification_example_signs_and_verifies() {
        let secret = example_secret();
        assert_eq!(secret.sign(EXAMPLE_ID, EXAMPLE_TS, EXAMPLE_BODY), EXAMPLE_SIGNATURE);
        let result = verify(
            &[secret],
            EXAMPLE_ID,
            "1614265330",
            EXAMPLE_BODY,
            EXAMPLE_SIGNATURE,
            EXAMPLE_TS,
        );
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn one_changed_byte_fails() {
        let secrets = [example_secret()];
        let ts = "1614265330";
        let mut body = EXAMPLE_BODY.to_vec();
        body[3] ^= 1;
        let cases: [(&str, &str, &[u8]); 3] = [
            ("msg_p5jXN8AQM9LWM0D4loKWxJeK", ts, EXAMPLE_BODY),
            (EXAMPLE_ID, "1614265331", EXAMPLE_BODY),
            (EXAMPLE_ID, ts, &body),
        ];
        for (id, timestamp, body) in cases {
            let result = verify(&secrets, id, timestamp, body, EXAMPLE_SIGNATURE, EXAMPLE_TS);
            assert_eq!(result, Err(VerifyError::InvalidSignature), "id {id} ts {timestamp}");
        }
    }

    #[test]
    fn second_secret_matches_after_malformed_entries() {
        let (other, _) = WebhookSecret::generate();
        let header = format!("v1,!!! v2,abc v1, {EXAMPLE_SIGNATURE}");
        let result = verify(
            &[other, example_secret()],
            EXAMPLE_ID,
            "1614265330",
            EXAMPLE_BODY,
            &header,
            EXAMPLE_TS,
        );
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn unknown_secret_fails() {
        let (other, _) = WebhookSecret::generate();
        let result = verify(
            &[other],
            EXAMPLE_ID,
            "1614265330",
            EXAMPLE_BODY,
            EXAMPLE_SIGNATURE,
            EXAMPLE_TS,
        );
        assert_eq!(result, Err(VerifyError::InvalidSignature));
    }

    #[test]
    fn window_edges() {
        let secret = example_secret();
        for (offset, inside) in [
            (-301, false),
            (-300, true),
            (-299, true),
            (299, true),
            (300, true),
            (301, false),
        ] {
            let ts = EXAMPLE_TS + offset;
            let signature = secret.sign(EXAMPLE_ID, ts, EXAMPLE_BODY);
            let result = verify(
                std::slice::from_ref(&secret),
                EXAMPLE_ID,
                &ts.to_string(),
                EXAMPLE_BODY,
                &signature,
                EXAMPLE_TS,
            );
            assert_eq!(result.is_ok(), inside, "offset {offset}");
        }
    }

    #[test]
    fn timestamp_must_be_canonical() {
        assert_eq!(parse_timestamp("1800000000"), Some(1_800_000_000));
        assert_eq!(parse_timestamp("0"), Some(0));
        for bad in [
            "+1800000000",
            "01800000000",
            " 1800000000",
            "1.8e9",
            "-1",
            "-9223372036854775808",
            "99999999999999999999",
            "",
            "１８",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn secret_validation_names_the_problem() {
        assert!(WebhookSecret::parse(EXAMPLE_SECRET).is_ok());
        let cases = [
            (" whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "white space"),
            ("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", "signature"),
            ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_"),
            ("whsec_not base64!", "base64"),
            ("whsec_c2hvcnQ=", "bytes"),
        ];
        for (value, expected) in cases {
            let error = WebhookSecret::parse(value).unwrap_err();
            assert!(error.contains(expected), "{value}: {error}");
            assert!(
                !error.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
                "error repeats the secret"
            );
        }
    }

    #[test]
    fn v1a_signature_verifies_with_public_key() {
        let signing = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
        let public =
            WebhookPublicKey::parse(&format!("whpk_{}", STANDARD.encode(signing.verifying_key().as_bytes()))).unwrap();
        let content = format!("{EXAMPLE_ID}.1614265330.{}", std::str::from_utf8(EXAMPLE_BODY).unwrap());
        let signature = ed25519_dalek::Signer::sign(&signing, content.as_bytes());
        let header = format!("v1,bm90IGl0 v1a,{}", STANDARD.encode(signature.to_bytes()));

        let keys = [public];
        let ok = verify_with_public_keys(&[], &keys, EXAMPLE_ID, "1614265330", EXAMPLE_BODY, &header, EXAMPLE_TS);
        assert_eq!(ok, Ok(()));
        let mut changed = EXAMPLE_BODY.to_vec();
        changed[2] ^= 1;
        let bad = verify_with_public_keys(&[], &keys, EXAMPLE_ID, "1614265330", &changed, &header, EXAMPLE_TS);
        assert_eq!(bad, Err(VerifyError::InvalidSignature));
        let without_keys = verify(&[], EXAMPLE_ID, "1614265330", EXAMPLE_BODY, &header, EXAMPLE_TS);
        assert_eq!(without_keys, Err(VerifyError::InvalidSignature));
    }

    #[test]
    fn public_key_validation_names_the_problem() {
        assert!(WebhookPublicKey::parse("whpk_c2hvcnQ=").unwrap_err().contains("32"));
        assert!(WebhookPublicKey::parse("whsec_c2hvcnQ=").unwrap_err().contains("whpk_"));
        assert!(
            WebhookPublicKey::parse(" whpk_c2hvcnQ=")
                .unwrap_err()
                .contains("white space")
        );
    }

    #[test]
    fn debug_hides_the_key() {
        assert_eq!(format!("{:?}", example_secret()), "WebhookSecret(redacted)");
    }
}
