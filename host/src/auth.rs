//! JWT on both sides: eb checks the CL's token with the CL secret, and signs a fresh token for
//! each EL with that EL's own secret (Engine API `authentication.md`: HS256, `iat` within ±60 s).

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};
use zeroize::Zeroizing;

/// How far `iat` may be from eb's clock.
pub const IAT_LEEWAY_SECS: i64 = 60;

/// A 32-byte HMAC key, zeroized on drop and never printed.
#[derive(Clone)]
pub struct JwtSecret(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for JwtSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtSecret(..)")
    }
}

/// Why a secret file was refused.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The content is not 64 hex digits (optionally `0x`-prefixed).
    #[error("{path} does not hold a 32-byte hex secret")]
    Malformed {
        /// The file.
        path: String,
    },
}

impl JwtSecret {
    /// Parses hex text as geth and reth do: whitespace and an optional `0x` stripped, then
    /// exactly 32 bytes.
    pub fn from_hex(text: &str) -> Option<JwtSecret> {
        let text = text.trim();
        let text = text.strip_prefix("0x").unwrap_or(text);
        let mut key = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text, key.as_mut()).ok()?;
        Some(JwtSecret(key))
    }

    /// Reads a secret file.
    pub fn read(path: &Path) -> Result<JwtSecret, SecretError> {
        let name = path.display().to_string();
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| SecretError::Read {
                    path: name.clone(),
                    source,
                })?,
            );
        JwtSecret::from_hex(&text).ok_or(SecretError::Malformed { path: name })
    }

    fn bytes(&self) -> &[u8] {
        self.0.as_ref()
    }

    /// The secret's SHA-256: tells two secrets apart without keeping a second copy of either.
    pub fn fingerprint(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        Sha256::digest(self.bytes()).into()
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
}

/// Why the CL's request was refused (answered 401).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("missing token")]
    Missing,
    /// Bad signature, wrong algorithm, malformed token, expired `exp`.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// No `iat` claim.
    #[error("missing issued-at")]
    MissingIat,
    /// `iat` more than 60 s in the past.
    #[error("stale token")]
    Stale,
    /// `iat` more than 60 s in the future.
    #[error("future token")]
    Future,
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Checks the CL's tokens.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl Verifier {
    /// A verifier for tokens signed with `secret`.
    pub fn new(secret: &JwtSecret) -> Verifier {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.required_spec_claims.clear();
        validation.validate_exp = true;
        validation.leeway = 0;
        Verifier {
            key: DecodingKey::from_secret(secret.bytes()),
            validation,
        }
    }

    /// Checks an `Authorization` header value at the current time.
    pub fn verify(&self, authorization: Option<&str>) -> Result<(), AuthError> {
        self.verify_at(authorization, now_secs())
    }

    /// Checks an `Authorization` header value as if the time were `now` (Unix seconds).
    pub fn verify_at(&self, authorization: Option<&str>, now: i64) -> Result<(), AuthError> {
        let header = authorization.ok_or(AuthError::Missing)?;
        let token = header
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case("bearer "))
            .map(|_| header[7..].trim())
            .ok_or(AuthError::Missing)?;
        let claims = decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?
            .claims;
        let iat = claims.iat.ok_or(AuthError::MissingIat)?;
        if iat < now - IAT_LEEWAY_SECS {
            Err(AuthError::Stale)
        } else if iat > now + IAT_LEEWAY_SECS {
            Err(AuthError::Future)
        } else {
            Ok(())
        }
    }
}

/// Signs tokens for one EL; a token is reused within the same second (it is still fresh).
pub struct Minter {
    key: EncodingKey,
    last: Mutex<(i64, String)>,
}

impl std::fmt::Debug for Minter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Minter(..)")
    }
}

impl Minter {
    /// A minter signing with `secret`.
    pub fn new(secret: &JwtSecret) -> Minter {
        Minter {
            key: EncodingKey::from_secret(secret.bytes()),
            last: Mutex::new((i64::MIN, String::new())),
        }
    }

    /// `Bearer <token>` with `iat` = now.
    pub fn bearer(&self) -> String {
        let now = now_secs();
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if last.0 != now {
            let claims = Claims {
                iat: Some(now),
                id: Some("eb".to_owned()),
            };
            // HS256 signing of a small struct cannot fail; an empty token would be refused by
            // the EL and show up as an authentication failure, never as a panic.
            let token =
                encode(&Header::new(Algorithm::HS256), &claims, &self.key).unwrap_or_default();
            *last = (now, format!("Bearer {token}"));
        }
        last.1.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> JwtSecret {
        JwtSecret::from_hex(&"ab".repeat(32)).expect("valid hex")
    }

    fn token(secret: &JwtSecret, claims: serde_json::Value, alg: Algorithm) -> String {
        let key = EncodingKey::from_secret(secret.bytes());
        format!(
            "Bearer {}",
            encode(&Header::new(alg), &claims, &key).expect("encodes")
        )
    }

    #[test]
    fn parses_secrets_like_geth() {
        assert!(JwtSecret::from_hex(&format!("0x{}\n", "00".repeat(32))).is_some());
        assert!(JwtSecret::from_hex(&"00".repeat(31)).is_none());
        assert!(JwtSecret::from_hex(&"zz".repeat(32)).is_none());
        assert_eq!(format!("{:?}", secret()), "JwtSecret(..)");
    }

    #[test]
    fn accepts_fresh_tokens_and_refuses_the_rest() {
        let s = secret();
        let verifier = Verifier::new(&s);
        let now = 1_700_000_000;
        let ok = token(
            &s,
            serde_json::json!({"iat": now - 5, "clv": "x"}),
            Algorithm::HS256,
        );
        assert_eq!(verifier.verify_at(Some(&ok), now), Ok(()));
        let lower = ok.replacen("Bearer", "bearer", 1);
        assert_eq!(verifier.verify_at(Some(&lower), now), Ok(()));
        assert_eq!(verifier.verify_at(None, now), Err(AuthError::Missing));
        assert_eq!(
            verifier.verify_at(Some("Basic abc"), now),
            Err(AuthError::Missing)
        );
        let stale = token(&s, serde_json::json!({"iat": now - 61}), Algorithm::HS256);
        assert_eq!(verifier.verify_at(Some(&stale), now), Err(AuthError::Stale));
        let future = token(&s, serde_json::json!({"iat": now + 61}), Algorithm::HS256);
        assert_eq!(
            verifier.verify_at(Some(&future), now),
            Err(AuthError::Future)
        );
        let no_iat = token(&s, serde_json::json!({"id": "cl"}), Algorithm::HS256);
        assert_eq!(
            verifier.verify_at(Some(&no_iat), now),
            Err(AuthError::MissingIat)
        );
        let other = JwtSecret::from_hex(&"cd".repeat(32)).expect("valid");
        let forged = token(&other, serde_json::json!({"iat": now}), Algorithm::HS256);
        assert!(matches!(
            verifier.verify_at(Some(&forged), now),
            Err(AuthError::Invalid(_))
        ));
        let hs512 = token(&s, serde_json::json!({"iat": now}), Algorithm::HS512);
        assert!(matches!(
            verifier.verify_at(Some(&hs512), now),
            Err(AuthError::Invalid(_))
        ));
        let expired = token(
            &s,
            serde_json::json!({"iat": now, "exp": 1}),
            Algorithm::HS256,
        );
        assert!(matches!(
            verifier.verify_at(Some(&expired), now),
            Err(AuthError::Invalid(_))
        ));
    }

    #[test]
    fn minted_tokens_verify_with_the_same_secret() {
        let s = secret();
        let bearer = Minter::new(&s).bearer();
        assert_eq!(Verifier::new(&s).verify(Some(&bearer)), Ok(()));
    }

    #[test]
    fn the_spec_example_token_verifies() {
        let text = include_str!("../../tests/fixtures/engine/jwt.example.json");
        let example: serde_json::Value = serde_json::from_str(text).expect("json");
        let field = |name: &str| example[name].as_str().unwrap_or_default().to_owned();
        let secret = JwtSecret::from_hex(&field("secretFileContent")).expect("valid");
        let header = field("httpHeader");
        let value = header.trim_start_matches("Authorization: ");
        let verifier = Verifier::new(&secret);
        assert_eq!(verifier.verify_at(Some(value), 1_754_000_000), Ok(()));
        assert_eq!(
            verifier.verify_at(Some(value), 1_754_000_061),
            Err(AuthError::Stale)
        );
    }
}
