//! Signatures of remote cache entries (Ed25519, by `ring`): a trusted writer signs what it
//! pushes, every reader verifies with the public key the reviewed file names, so a job that
//! may push to the cache repository but holds no signing key cannot make an entry be used.
//!
//! A signature covers a domain string with its version, the cache key and the manifest digest
//! of the entry, so it vouches for exactly one image under exactly one key.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

/// What every signature's message starts with: a signature made for anything else (another
/// tool, another version of this format) never verifies here.
const DOMAIN: &str = "pipeline remote cache entry v1";

/// How a public key is written: `ed25519:` and the 32 bytes in standard base64.
const PREFIX: &str = "ed25519:";

/// The bytes a signature covers.
fn message(key: &str, digest: &str) -> Vec<u8> {
    format!("{DOMAIN}\nkey {key}\nmanifest {digest}\n").into_bytes()
}

/// Parses a public key written `ed25519:BASE64` (32 bytes).
pub(crate) fn parse_verify_key(text: &str) -> Result<[u8; 32], String> {
    let b64 = text
        .strip_prefix(PREFIX)
        .ok_or_else(|| format!("a verify key starts with `{PREFIX}`"))?;
    let bytes = STANDARD
        .decode(b64.trim())
        .map_err(|e| format!("not base64 after `{PREFIX}`: {e}"))?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| format!("an Ed25519 public key is 32 bytes, not {}", bytes.len()))
}

/// Writes a public key as `ed25519:BASE64`.
pub(crate) fn format_verify_key(key: &[u8; 32]) -> String {
    format!("{PREFIX}{}", STANDARD.encode(key))
}

/// True when `signature` (base64) is `public`'s signature of `key` and `digest`.
pub(crate) fn verify(public: &[u8; 32], key: &str, digest: &str, signature: &str) -> bool {
    let Ok(signature) = STANDARD.decode(signature.trim()) else {
        return false;
    };
    UnparsedPublicKey::new(&ED25519, public)
        .verify(&message(key, digest), &signature)
        .is_ok()
}

/// A private key, from the environment variable `[cache] signing_key_env` names.
pub(crate) struct SigningKey(Ed25519KeyPair);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        write!(f, "SigningKey({})", format_verify_key(&self.public()))
    }
}

impl SigningKey {
    /// Reads a private key: the base64 of its PKCS#8 document (what `pipeline keygen` prints,
    /// and what `openssl genpkey -algorithm ed25519 -outform DER | base64 -w0` gives).
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let der: String = text.split_whitespace().collect();
        let der = STANDARD
            .decode(der)
            .map_err(|_| "not base64 (of an Ed25519 PKCS#8 key)".to_string())?;
        Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
            .map(Self)
            .map_err(|e| format!("not an Ed25519 PKCS#8 key ({e})"))
    }

    /// The public key that verifies this key's signatures.
    pub(crate) fn public(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.0.public_key().as_ref());
        out
    }

    /// The signature (base64) of `key` and `digest`.
    pub(crate) fn sign(&self, key: &str, digest: &str) -> String {
        STANDARD.encode(self.0.sign(&message(key, digest)).as_ref())
    }
}

/// A new key pair: the private key as [`SigningKey::parse`] reads it, and the public key as
/// `verify_key` takes it.
pub(crate) fn generate() -> Result<(String, String), String> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|e| e.to_string())?;
    let secret = STANDARD.encode(pkcs8.as_ref());
    let key = SigningKey::parse(&secret)?;
    Ok((secret, format_verify_key(&key.public())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_for_its_key_and_digest_only() {
        let (secret, public) = generate().unwrap();
        let signer = SigningKey::parse(&secret).unwrap();
        let public = parse_verify_key(&public).unwrap();
        assert_eq!(public, signer.public());
        let sig = signer.sign("k1", "sha256:aa");
        assert!(verify(&public, "k1", "sha256:aa", &sig));
        assert!(!verify(&public, "k2", "sha256:aa", &sig), "another key");
        assert!(!verify(&public, "k1", "sha256:bb", &sig), "another image");
        assert!(
            !verify(&public, "k1", "sha256:aa", "bm90IGEgc2ln"),
            "garbage"
        );
        let (_, other) = generate().unwrap();
        let other = parse_verify_key(&other).unwrap();
        assert!(!verify(&other, "k1", "sha256:aa", &sig), "another signer");
        assert!(!format!("{signer:?}").contains(&secret));
    }

    #[test]
    fn keys_openssl_writes_are_read() {
        // `openssl genpkey -algorithm ed25519 -outform DER | base64 -w0` (PKCS#8 v1).
        let secret = "MC4CAQAwBQYDK2VwBCIEIO3dejKihekZxWN0no7LnxijBUuJNJapU91M2SUzX1fT";
        let key = SigningKey::parse(secret).unwrap();
        assert_eq!(
            format_verify_key(&key.public()),
            "ed25519:TPiXLamWvotcq3KwviY993NHKDSRwabmkI9gpNqlr48="
        );
    }

    #[test]
    fn malformed_keys_say_why() {
        assert!(parse_verify_key("KyMP")
            .unwrap_err()
            .contains("starts with"));
        assert!(parse_verify_key("ed25519:!!")
            .unwrap_err()
            .contains("base64"));
        assert!(parse_verify_key("ed25519:AAAA")
            .unwrap_err()
            .contains("32 bytes"));
        assert!(SigningKey::parse("AAAA").is_err());
    }
}
