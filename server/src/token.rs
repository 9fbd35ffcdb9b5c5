//! Keys derived from the server key, invitation tokens and pseudonyms.
//!
//! A token is `<invitation id>.<tag>`, where the tag is base64url of the first
//! 16 bytes of HMAC-SHA256(token key, invitation id). No token is stored: the
//! tag is recomputed and compared in constant time, so a forged token is
//! rejected before any store lookup.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

const TAG_BYTES: usize = 16;
const INVITATION_PREFIX: &str = "inv_";
const INVITATION_HEX_LEN: usize = 32;

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// The server key (`ALLIANCE_SECRET_KEY`), at least 32 bytes. The token key
/// and the pseudonym key are derived from it, so it never signs anything itself.
#[derive(Clone)]
pub struct ServerKey(Vec<u8>);

impl fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerKey(redacted)")
    }
}

impl ServerKey {
    pub const MIN_BYTES: usize = 32;

    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, String> {
        if bytes.len() < Self::MIN_BYTES {
            return Err(format!(
                "decodes to {} bytes; it must be base64 of at least {} random bytes \
                 (for example: head -c 32 /dev/urandom | base64)",
                bytes.len(),
                Self::MIN_BYTES
            ));
        }
        Ok(Self(bytes))
    }

    pub fn token_key(&self) -> TokenKey {
        TokenKey(hmac(&self.0, &[b"alliance/token-key/v1"]))
    }

    pub fn pseudonym_key(&self) -> PseudonymKey {
        let key = hmac(&self.0, &[b"alliance/pseudonym-key/v1"]);
        PseudonymKey(HmacSha256::new_from_slice(&key).expect("HMAC accepts any key length"))
    }
}

/// Key that tags invitation tokens.
#[derive(Clone)]
pub struct TokenKey([u8; 32]);

/// Key that turns platform ids into stored pseudonyms, kept as an HMAC
/// with the key already absorbed, so each pseudonym hashes only its input.
#[derive(Clone)]
pub struct PseudonymKey(HmacSha256);

impl PseudonymKey {
    /// Returns the keyed hash of a platform id, as 64 hex digits. `kind`
    /// separates chat ids from participant ids that happen to be equal.
    pub fn pseudonym(&self, kind: &str, id: &str) -> String {
        let mut mac = self.0.clone();
        mac.update(kind.as_bytes());
        mac.update(b"\0");
        mac.update(id.as_bytes());
        hex(&mac.finalize().into_bytes())
    }
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        // Without `write!`: pseudonyms and invitation ids are encoded on
        // every webhook, and the formatting machinery took 5 % of a handler's time.
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// An invitation id: `inv_` followed by 32 lowercase hex digits.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InvitationId(String);

impl InvitationId {
    pub fn generate() -> Self {
        let bytes: [u8; 16] = rand::random();
        Self(format!("{INVITATION_PREFIX}{}", hex(&bytes)))
    }

    /// Makes an id of 4 random bytes followed by `locator`, by which the
    /// store finds the invitation's chat. The random part comes first, so the
    /// ids of one chat differ from their first digit.
    pub fn with_locator(locator: [u8; 12]) -> Self {
        let random: [u8; 4] = rand::random();
        Self(format!("{INVITATION_PREFIX}{}{}", hex(&random), hex(&locator)))
    }

    pub fn parse(value: &str) -> Result<Self, String> {
        let valid = value.strip_prefix(INVITATION_PREFIX).is_some_and(|rest| {
            rest.len() == INVITATION_HEX_LEN && rest.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        });
        if valid {
            Ok(Self(value.to_string()))
        } else {
            Err("invitation id must be \"inv_\" followed by 32 lowercase hex digits".into())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for InvitationId {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        Self::parse(&value)
    }
}

impl From<InvitationId> for String {
    fn from(id: InvitationId) -> String {
        id.0
    }
}

impl fmt::Display for InvitationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TokenKey {
    fn tag(&self, id: &InvitationId) -> [u8; TAG_BYTES] {
        let digest = hmac(&self.0, &[id.as_str().as_bytes()]);
        let mut tag = [0u8; TAG_BYTES];
        tag.copy_from_slice(&digest[..TAG_BYTES]);
        tag
    }

    /// Builds the token for an invitation; the same id always gives the same token.
    pub fn token(&self, id: &InvitationId) -> String {
        format!("{id}.{}", URL_SAFE_NO_PAD.encode(self.tag(id)))
    }

    /// Checks a token and returns its invitation id. Any malformed or forged
    /// token gives `None`, without telling which part was wrong.
    pub fn verify(&self, token: &str) -> Option<InvitationId> {
        let (id, tag) = token.split_once('.')?;
        let id = InvitationId::parse(id).ok()?;
        let given = URL_SAFE_NO_PAD.decode(tag).ok()?;
        if given.len() != TAG_BYTES {
            return None;
        }
        let expected = self.tag(&id);
        bool::from(expected.ct_eq(&given)).then_some(id)
    }
}

/// Removes the tag from anything shaped like a token in a request path, for
/// logging: `/q/inv_…abc.TAG` becomes `/q/inv_…abc.<tag>`. Any segment with
/// a dot after a word is treated as a token, whatever its case, so a tag
/// sent with a mistyped id is not logged either. The dot may also be
/// percent-encoded (`%2E`), because the router decodes it before the token
/// is checked.
pub fn redact_path(path: &str) -> String {
    path.split('/')
        .map(|segment| match split_token(segment) {
            Some((id, tag)) if !id.is_empty() && !tag.is_empty() && !looks_like_file(segment) => {
                format!("{id}.<tag>")
            }
            _ => segment.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Splits a path segment at its first dot, written as `.` or `%2E` in either case.
fn split_token(segment: &str) -> Option<(&str, &str)> {
    let plain = segment.find('.').map(|at| (at, 1));
    let encoded = segment.to_ascii_lowercase().find("%2e").map(|at| (at, 3));
    let (at, width) = match (plain, encoded) {
        (Some(plain), Some(encoded)) => plain.min(encoded),
        (found, None) | (None, found) => found?,
    };
    Some((&segment[..at], &segment[at + width..]))
}

/// Asset names such as `alliance-questionnaire.js` are not tokens.
fn looks_like_file(segment: &str) -> bool {
    [".js", ".css", ".json", ".ico", ".png", ".svg", ".html"]
        .iter()
        .any(|extension| segment.ends_with(extension))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TokenKey {
        ServerKey::from_bytes(vec![7; 32]).unwrap().token_key()
    }

    #[test]
    fn token_round_trip() {
        let id = InvitationId::generate();
        let token = key().token(&id);
        assert_eq!(key().verify(&token), Some(id));
    }

    #[test]
    fn altered_tokens_fail() {
        let id = InvitationId::generate();
        let token = key().token(&id);
        let other_key = ServerKey::from_bytes(vec![8; 32]).unwrap().token_key();
        assert_eq!(other_key.verify(&token), None);
        let mut bytes = token.clone().into_bytes();
        let last = bytes.len() - 1;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(key().verify(std::str::from_utf8(&bytes).unwrap()), None);
        assert_eq!(key().verify(id.as_str()), None);
        assert_eq!(key().verify(""), None);
        assert_eq!(key().verify("inv_zz.abc"), None);
        assert_eq!(key().verify(&format!("{token}A")), None);
    }

    #[test]
    fn hex_is_lowercase_two_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0x10, 0xa5, 0xff]), "000f10a5ff");
        assert_eq!(hex(&[]), "");
        let all: Vec<u8> = (0..=255).collect();
        let expected: String = all.iter().map(|byte| format!("{byte:02x}")).collect();
        assert_eq!(hex(&all), expected);
    }

    #[test]
    fn short_server_key_rejected() {
        assert!(ServerKey::from_bytes(vec![1; 31]).is_err());
    }

    #[test]
    fn redacted_path_hides_tag() {
        let id = InvitationId::generate();
        let token = key().token(&id);
        let path = format!("/api/questionnaires/{token}/items/3");
        let redacted = redact_path(&path);
        assert!(!redacted.contains(token.split_once('.').unwrap().1));
        assert!(redacted.contains(id.as_str()));
        let upper = format!("/api/questionnaires/{}", token.to_uppercase());
        assert!(!redact_path(&upper).contains(&token.split_once('.').unwrap().1.to_uppercase()));
        assert_eq!(
            redact_path("/widget/alliance-questionnaire.js"),
            "/widget/alliance-questionnaire.js"
        );
    }

    #[test]
    fn redacted_path_hides_tag_after_encoded_dot() {
        let id = InvitationId::generate();
        let token = key().token(&id);
        let (_, tag) = token.split_once('.').unwrap();
        for dot in ["%2E", "%2e"] {
            let path = format!("/api/questionnaires/{}{dot}{tag}/submit", id.as_str());
            let redacted = redact_path(&path);
            assert!(!redacted.contains(tag), "{redacted}");
            assert_eq!(redacted, format!("/api/questionnaires/{}.<tag>/submit", id.as_str()));
        }
    }

    #[test]
    fn pseudonyms_differ_by_kind() {
        let key = ServerKey::from_bytes(vec![7; 32]).unwrap().pseudonym_key();
        assert_ne!(key.pseudonym("chat", "42"), key.pseudonym("participant", "42"));
        assert_eq!(key.pseudonym("chat", "42").len(), 64);
    }

    /// Stored chats are keyed by pseudonyms, so their value must never change.
    #[test]
    fn pseudonym_is_hmac_of_kind_and_id() {
        let server_key = vec![7; 32];
        let derived = hmac(&server_key, &[b"alliance/pseudonym-key/v1"]);
        let expected = hex(&hmac(&derived, &[b"chat", b"\0", b"42"]));
        let key = ServerKey::from_bytes(server_key).unwrap().pseudonym_key();
        assert_eq!(key.pseudonym("chat", "42"), expected);
        assert_eq!(
            key.pseudonym("chat", "42"),
            key.pseudonym("chat", "42"),
            "the key state is not used up"
        );
    }
}
