//! The `jwt` capability: the host signs a JSON Web Token with a key from the vault, so that a
//! plugin can authenticate with a signed assertion (a GitHub App, a Google service account,
//! the OAuth2 JWT-bearer grant) without ever holding the key. The host sets the times and the
//! token id itself, and masks the token like a secret in whatever the step returns.

use std::str::FromStr as _;
use std::time::{Duration, SystemTime};

use jsonwebtoken::{Algorithm, AlgorithmFamily, EncodingKey, Header, encode};

use super::bindings::jwt::SignRequest;
use super::secrets::{Encoding, PLACEHOLDER_PREFIX, SecretScope};

/// Largest claims object a plugin may ask to sign.
pub const MAX_CLAIMS_BYTES: usize = 16 * 1024;

/// Longest token lifetime: a signed assertion is a bearer credential, so it should be short.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// Longest `kid` header.
const MAX_KEY_ID_BYTES: usize = 256;

/// The claims the host sets, which a plugin may not.
const HOST_CLAIMS: [&str; 3] = ["iat", "exp", "jti"];

/// Signs `request` at `now`, with the key its placeholder names, if `scope` may reveal it.
pub fn sign(scope: &SecretScope, request: &SignRequest, now: SystemTime) -> Result<String, String> {
    let algorithm = Algorithm::from_str(&request.algorithm).map_err(|_| {
        format!(
            "unknown JWT algorithm `{}`; use one of RS256, RS384, RS512, PS256, PS384, PS512, \
             ES256, ES384, EdDSA, HS256, HS384, HS512",
            request.algorithm
        )
    })?;
    let ttl = Duration::from_millis(request.ttl_ms);
    if ttl < Duration::from_secs(1) || ttl > MAX_TTL {
        return Err("a JWT's ttl must be between 1s and 24h".into());
    }
    if request
        .key_id
        .as_ref()
        .is_some_and(|kid| kid.len() > MAX_KEY_ID_BYTES)
    {
        return Err(format!(
            "a JWT's key id must be at most {MAX_KEY_ID_BYTES} bytes"
        ));
    }
    let mut claims = claims_object(&request.claims)?;
    let key = reveal_key(scope, &request.key)?;
    let key = encoding_key(algorithm, key.as_bytes())
        // The key is remembered by the scope: a library message that quoted it is masked.
        .map_err(|err| scope.mask(&err))?;

    let iat = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    claims.insert("iat".into(), iat.into());
    claims.insert("exp".into(), iat.saturating_add(ttl.as_secs()).into());
    claims.insert("jti".into(), ulid::Ulid::new().to_string().into());
    let mut header = Header::new(algorithm);
    header.kid.clone_from(&request.key_id);
    let token = encode(&header, &claims, &key)
        .map_err(|err| scope.mask(&format!("cannot sign the JWT: {err}")))?;
    // A bearer credential: masked wherever it comes back, like the secrets it was made from.
    scope.remember_derived(&token);
    Ok(token)
}

/// The claims as a JSON object, without the ones the host sets.
fn claims_object(claims: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    if claims.len() > MAX_CLAIMS_BYTES {
        return Err(format!(
            "the JWT's claims are {} bytes; at most {MAX_CLAIMS_BYTES} are signed",
            claims.len()
        ));
    }
    let serde_json::Value::Object(claims) = serde_json::from_str(claims)
        .map_err(|err| format!("the JWT's claims are not JSON: {err}"))?
    else {
        return Err("the JWT's claims must be a JSON object".into());
    };
    if let Some(name) = HOST_CLAIMS.iter().find(|name| claims.contains_key(**name)) {
        return Err(format!(
            "the JWT claim `{name}` is set by the host (from the time of signing and the ttl)"
        ));
    }
    Ok(claims)
}

/// The key's value: only a placeholder of a secret the step may use is accepted, so that a
/// key is never written into a runbook, nor guessed at by a plugin.
fn reveal_key(scope: &SecretScope, placeholder: &str) -> Result<String, String> {
    if !placeholder.contains(PLACEHOLDER_PREFIX) {
        return Err(
            "a JWT signing key comes from the vault: write it as \"{{ secrets.NAME }}\"".into(),
        );
    }
    let key = scope.substitute(placeholder.trim(), Encoding::Raw)?;
    if key.contains(PLACEHOLDER_PREFIX) {
        return Err(
            "the JWT signing key names a secret that this step's templates do not read".into(),
        );
    }
    Ok(key)
}

fn encoding_key(algorithm: Algorithm, key: &[u8]) -> Result<EncodingKey, String> {
    let (parsed, kind) = match algorithm.family() {
        AlgorithmFamily::Hmac => return Ok(EncodingKey::from_secret(key)),
        AlgorithmFamily::Rsa => (EncodingKey::from_rsa_pem(key), "an RSA"),
        AlgorithmFamily::Ec => (EncodingKey::from_ec_pem(key), "an EC (P-256 or P-384)"),
        AlgorithmFamily::Ed => (EncodingKey::from_ed_pem(key), "an Ed25519"),
    };
    parsed.map_err(|err| {
        format!("the signing key is not {kind} private key in PEM, as {algorithm:?} needs: {err}")
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeSet;
    use std::sync::Arc;

    use jsonwebtoken::{DecodingKey, Validation, decode};
    use secrecy::SecretString;

    use super::*;
    use crate::secrets::SecretSource;

    /// Test keys, generated for these tests only.
    const RSA_PRIVATE: &str = include_str!("../../../tests/fixtures/jwt/rsa-private.pem");
    const RSA_PUBLIC: &str = include_str!("../../../tests/fixtures/jwt/rsa-public.pem");
    const EC_PRIVATE: &str = include_str!("../../../tests/fixtures/jwt/ec-private.pem");
    const EC_PUBLIC: &str = include_str!("../../../tests/fixtures/jwt/ec-public.pem");

    struct Vault(Vec<(&'static str, String)>);

    impl SecretSource for Vault {
        fn placeholders(&self) -> Vec<(String, String)> {
            self.0
                .iter()
                .map(|(name, _)| ((*name).to_owned(), placeholder(name)))
                .collect()
        }

        fn reveal(&self, name: &str) -> Result<Option<SecretString>, String> {
            Ok(self
                .0
                .iter()
                .find(|(known, _)| *known == name)
                .map(|(_, value)| SecretString::from(value.clone())))
        }
    }

    fn placeholder(name: &str) -> String {
        format!("{PLACEHOLDER_PREFIX}ab12cd34ef56.{name}__")
    }

    fn scope(allowed: &[&str]) -> SecretScope {
        let vault = Vault(vec![
            ("rsa", RSA_PRIVATE.to_owned()),
            ("ec", EC_PRIVATE.to_owned()),
            ("hmac", "a shared secret of at least 32 bytes!".to_owned()),
        ]);
        SecretScope::new(
            Some(Arc::new(vault)),
            allowed
                .iter()
                .map(|name| (*name).to_owned())
                .collect::<BTreeSet<_>>(),
        )
    }

    fn request(key: &str, algorithm: &str) -> SignRequest {
        SignRequest {
            key: placeholder(key),
            algorithm: algorithm.into(),
            claims: r#"{"iss": "runbook", "aud": "https://api", "sub": "deploy"}"#.into(),
            ttl_ms: 300_000,
            key_id: Some("k1".into()),
        }
    }

    fn verify(token: &str, algorithm: Algorithm, key: &DecodingKey) -> serde_json::Value {
        let mut validation = Validation::new(algorithm);
        validation.set_audience(&["https://api"]);
        decode::<serde_json::Value>(token, key, &validation)
            .unwrap()
            .claims
    }

    #[test]
    fn every_key_kind_signs_a_token_its_public_key_verifies() {
        let now = SystemTime::now();
        let iat = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let cases = [
            (
                "rsa",
                "RS256",
                DecodingKey::from_rsa_pem(RSA_PUBLIC.as_bytes()).unwrap(),
            ),
            (
                "rsa",
                "PS512",
                DecodingKey::from_rsa_pem(RSA_PUBLIC.as_bytes()).unwrap(),
            ),
            (
                "ec",
                "ES256",
                DecodingKey::from_ec_pem(EC_PUBLIC.as_bytes()).unwrap(),
            ),
            (
                "hmac",
                "HS256",
                DecodingKey::from_secret(b"a shared secret of at least 32 bytes!"),
            ),
        ];
        for (key, algorithm, public) in cases {
            let scope = scope(&[key]);
            let token = sign(&scope, &request(key, algorithm), now).unwrap();
            let header = jsonwebtoken::decode_header(&token).unwrap();
            assert_eq!(header.kid.as_deref(), Some("k1"));
            let claims = verify(&token, Algorithm::from_str(algorithm).unwrap(), &public);
            assert_eq!(claims["sub"], "deploy", "{algorithm}");
            assert_eq!(claims["iat"], iat);
            assert_eq!(claims["exp"], iat + 300);
            assert_eq!(claims["jti"].as_str().unwrap().len(), 26, "a ULID");
            assert_eq!(
                scope.mask(&token),
                "***",
                "the token is masked like a secret"
            );
        }
        let first = sign(&scope(&["hmac"]), &request("hmac", "HS256"), now).unwrap();
        let second = sign(&scope(&["hmac"]), &request("hmac", "HS256"), now).unwrap();
        assert_ne!(first, second, "each token has its own jti");
    }

    #[test]
    fn keys_come_only_from_the_steps_own_secrets() {
        let now = SystemTime::now();
        let mut literal = request("rsa", "RS256");
        literal.key = RSA_PRIVATE.into();
        let err = sign(&scope(&["rsa"]), &literal, now).unwrap_err();
        assert_eq!(
            err,
            "a JWT signing key comes from the vault: write it as \"{{ secrets.NAME }}\""
        );
        assert!(!err.contains("PRIVATE"));
        let err = sign(&scope(&["hmac"]), &request("rsa", "RS256"), now).unwrap_err();
        assert_eq!(
            err,
            "the JWT signing key names a secret that this step's templates do not read"
        );
    }

    #[test]
    fn bad_requests_are_explained_without_the_key() {
        let now = SystemTime::now();
        let scope = scope(&["rsa", "ec", "hmac"]);
        let err = sign(&scope, &request("rsa", "RS999"), now).unwrap_err();
        assert!(err.starts_with("unknown JWT algorithm `RS999`"), "{err}");
        let err = sign(&scope, &request("hmac", "RS256"), now).unwrap_err();
        assert!(
            err.starts_with("the signing key is not an RSA private key in PEM, as RS256 needs"),
            "{err}"
        );
        assert!(!err.contains("shared secret"), "{err}");
        let err = sign(&scope, &request("rsa", "ES256"), now).unwrap_err();
        assert!(
            err.contains("not an EC (P-256 or P-384) private key"),
            "{err}"
        );
        assert!(!err.contains("BEGIN"), "{err}");

        let mut claims = request("hmac", "HS256");
        claims.claims = r#"{"exp": 1}"#.into();
        assert_eq!(
            sign(&scope, &claims, now).unwrap_err(),
            "the JWT claim `exp` is set by the host (from the time of signing and the ttl)"
        );
        claims.claims = "[1]".into();
        assert_eq!(
            sign(&scope, &claims, now).unwrap_err(),
            "the JWT's claims must be a JSON object"
        );
        claims.claims = format!(r#"{{"x": "{}"}}"#, "y".repeat(MAX_CLAIMS_BYTES));
        assert!(
            sign(&scope, &claims, now)
                .unwrap_err()
                .contains("at most 16384")
        );
        let mut forever = request("hmac", "HS256");
        forever.ttl_ms = 25 * 3600 * 1000;
        assert_eq!(
            sign(&scope, &forever, now).unwrap_err(),
            "a JWT's ttl must be between 1s and 24h"
        );
    }
}
