//! Who is calling and what they may do: bearer JWTs (HS256 with a shared secret, a PEM public
//! key, or an OpenID Connect provider's key set chosen by `kid`) and static API keys, with roles
//! `viewer` (reads), `operator` (commands) and `admin` (rebuilds and other operations).
//! Signatures, algorithms, issuer and audience are checked by `jsonwebtoken`; what it does not
//! do as RFC 7519 asks (fractional NumericDates, `crit`) and the role claim are checked here.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use thiserror::Error;

pub use crate::config::Role;
use crate::config::{AuthConfig, JwtConfig, JwtKey};
use crate::jwks::{Key, KeySet};

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Recorded as the actor of its commands.
    pub actor: String,
    /// What it may do.
    pub role: Role,
}

/// Why a request is not let in.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    /// No credentials (401).
    #[error("credentials required: send Authorization: Bearer <jwt> or X-Api-Key: <key>")]
    Missing,
    /// Bad credentials (401).
    #[error("invalid credentials: {0}")]
    Invalid(String),
    /// Known caller, not allowed (403).
    #[error("{actor} has role {has}; this needs {needs}")]
    Forbidden {
        /// Who.
        actor: String,
        /// Their role.
        has: &'static str,
        /// The role needed.
        needs: &'static str,
    },
}

/// Where verification keys come from.
enum Keys {
    /// The one key of the configuration, for these algorithms.
    Static(DecodingKey, Vec<Algorithm>),
    /// The identity provider's key set.
    Provider(Arc<KeySet>),
}

/// Checks credentials against the configuration.
pub struct Authenticator {
    keys: Option<(Keys, JwtConfig)>,
    config: AuthConfig,
}

/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECONDS: f64 = 30.0;

impl Authenticator {
    /// Builds the checker; a public key that cannot be used is an error at start, not per
    /// request. A provider's key set is fetched by [`Authenticator::start`].
    ///
    /// # Errors
    /// A message saying what is wrong with the key.
    pub fn new(config: AuthConfig) -> Result<Self, String> {
        let keys = match &config.jwt {
            None => None,
            Some(jwt) => Some((
                match &jwt.key {
                    JwtKey::Hs256(secret) => {
                        if secret.expose().len() < 32 {
                            return Err("the HS256 secret must be at least 32 characters".into());
                        }
                        Keys::Static(DecodingKey::from_secret(secret.expose().as_bytes()), vec![Algorithm::HS256])
                    }
                    JwtKey::PublicPem(pem) => public_key(pem)?,
                    JwtKey::Jwks(jwks) => Keys::Provider(Arc::new(KeySet::new(jwks.clone())?)),
                },
                jwt.clone(),
            )),
        };
        Ok(Self { keys, config })
    }

    /// Fetches the identity provider's keys (if they come from one) and keeps them fresh
    /// until `shutdown`.
    ///
    /// # Errors
    /// The first fetch failed: a message naming the URL and why.
    pub async fn start(&self, shutdown: jetsource_runtime::Shutdown) -> Result<(), String> {
        let Some((Keys::Provider(set), _)) = &self.keys else { return Ok(()) };
        let count = set.refresh().await?;
        tracing::info!(service = "gateway", keys = count, "loaded the identity provider's signing keys");
        let set = Arc::clone(set);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(set.interval());
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if let Err(error) = set.refresh().await {
                            tracing::warn!(service = "gateway", %error, "could not refresh the identity provider's keys; the last ones stay in use");
                        }
                    }
                    () = shutdown.wait() => return,
                }
            }
        });
        Ok(())
    }

    /// True when some credential is configured.
    pub fn enabled(&self) -> bool {
        self.config.enabled()
    }

    /// The caller behind `authorization` / `api_key`, allowed to act as `needs`.
    ///
    /// # Errors
    /// [`AuthError`].
    pub async fn check(
        &self,
        authorization: Option<&str>,
        api_key: Option<&str>,
        needs: Role,
    ) -> Result<Principal, AuthError> {
        let principal = self.identify(authorization, api_key).await?;
        if principal.role < needs {
            return Err(AuthError::Forbidden {
                actor: principal.actor,
                has: principal.role.as_str(),
                needs: needs.as_str(),
            });
        }
        Ok(principal)
    }

    async fn identify(&self, authorization: Option<&str>, api_key: Option<&str>) -> Result<Principal, AuthError> {
        if !self.enabled() {
            return Ok(Principal { actor: "anonymous".into(), role: Role::Admin });
        }
        if let Some(given) = api_key {
            return self
                .config
                .api_keys
                .iter()
                .find(|k| constant_time_eq(k.key.expose().as_bytes(), given.as_bytes()))
                .map(|k| Principal { actor: k.name.clone(), role: k.role })
                .ok_or_else(|| AuthError::Invalid("unknown API key".into()));
        }
        let token = match authorization {
            None => return Err(AuthError::Missing),
            // The scheme is case-insensitive (RFC 9110 §11.1).
            Some(value) => match value.split_once(' ') {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
                _ => return Err(AuthError::Invalid("Authorization must be `Bearer <jwt>`".into())),
            },
        };
        let (keys, jwt) =
            self.keys.as_ref().ok_or_else(|| AuthError::Invalid("bearer tokens are not accepted here".into()))?;
        let header = header(token)?;
        let (key, algorithms) = match keys {
            Keys::Static(key, algorithms) => (key.clone(), algorithms.clone()),
            Keys::Provider(set) => {
                let kid = header.get("kid").and_then(Value::as_str);
                let found = match set.find(kid) {
                    Some(found) => found,
                    None => {
                        // A key the provider rotated in since the last fetch.
                        if let Err(error) = set.refetch_for_unknown_key().await {
                            tracing::warn!(service = "gateway", %error, "could not fetch the identity provider's keys");
                        }
                        set.find(kid).ok_or_else(|| {
                            AuthError::Invalid(match kid {
                                Some(kid) => format!("no signing key {kid:?} in the identity provider's key set"),
                                None => "the token names no key (kid) and the provider has several".into(),
                            })
                        })?
                    }
                };
                let Key { key, algorithm } = found;
                (key, vec![algorithm])
            }
        };
        verify(token, &header, &key, algorithms, jwt)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn invalid(message: &str) -> AuthError {
    AuthError::Invalid(message.to_owned())
}

/// The token's JOSE header, refused when it has no three parts or names `crit` extensions.
fn header(token: &str) -> Result<serde_json::Map<String, Value>, AuthError> {
    if token.split('.').count() != 3 {
        return Err(invalid("a JWT has three dot-separated parts"));
    }
    let encoded = token.split('.').next().unwrap_or_default();
    let bytes = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| invalid("not base64url"))?;
    let header: serde_json::Map<String, Value> =
        serde_json::from_slice(&bytes).map_err(|_| invalid("unreadable JWT header"))?;
    // Extensions the issuer says must be understood (RFC 7515 §4.1.11); this gateway knows none.
    if header.contains_key("crit") {
        return Err(invalid("the JWT header names crit extensions this gateway does not understand"));
    }
    Ok(header)
}

fn verify(
    token: &str,
    header: &serde_json::Map<String, Value>,
    key: &DecodingKey,
    algorithms: Vec<Algorithm>,
    jwt: &JwtConfig,
) -> Result<Principal, AuthError> {
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or_default().to_owned();
    let mut validation = Validation::new(algorithms[0]);
    validation.algorithms = algorithms;
    // NumericDates are checked below: RFC 7519 allows fractions, which the crate refuses.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.required_spec_claims.clear();
    if let Some(issuer) = &jwt.issuer {
        // With or without one trailing slash: providers differ (Auth0 ends its issuer in `/`),
        // and discovery already treats the two as one issuer.
        let bare = issuer.trim_end_matches('/');
        validation.set_issuer(&[bare.to_owned(), format!("{bare}/")]);
    }
    match &jwt.audience {
        Some(audience) => validation.set_audience(&[audience]),
        None => validation.validate_aud = false,
    }
    let claims = jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, key, &validation)
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => invalid("bad signature"),
            ErrorKind::InvalidAlgorithm => AuthError::Invalid(format!("algorithm {alg:?} is not the one configured")),
            ErrorKind::InvalidIssuer => invalid("wrong issuer"),
            ErrorKind::InvalidAudience => invalid("wrong audience"),
            ErrorKind::InvalidToken => invalid("a JWT has three dot-separated parts"),
            ErrorKind::Base64(_) => invalid("not base64url"),
            ErrorKind::Json(_) | ErrorKind::Utf8(_) => invalid("unreadable JWT claims"),
            _ => AuthError::Invalid(format!("the token cannot be verified: {e}")),
        })?
        .claims;
    let date = |name: &str| -> Result<Option<f64>, AuthError> {
        match claims.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => {
                value.as_f64().map(Some).ok_or_else(|| AuthError::Invalid(format!("{name} is not a NumericDate")))
            }
        }
    };
    // Float arithmetic on NumericDates cannot overflow: a huge `exp` is merely far away.
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
    match date("exp")? {
        None => return Err(invalid("the token has no exp")),
        Some(exp) if exp + LEEWAY_SECONDS < now => return Err(invalid("the token has expired")),
        _ => {}
    }
    if date("nbf")?.is_some_and(|nbf| nbf - LEEWAY_SECONDS > now) {
        return Err(invalid("the token is not valid yet"));
    }
    let role = roles(&claims, jwt.role_claim.as_deref()).filter_map(Role::parse).max().ok_or_else(|| {
        match &jwt.role_claim {
            None => invalid("no role claim (viewer, operator or admin)"),
            Some(path) => AuthError::Invalid(format!("no role (viewer, operator or admin) in claim {path:?}")),
        }
    })?;
    let actor = claims.get("sub").and_then(Value::as_str).filter(|s| !s.is_empty()).unwrap_or("jwt").to_owned();
    // The actor travels in a NATS header, which cannot carry control characters.
    if actor.chars().any(char::is_control) || actor.len() > 256 {
        return Err(invalid("sub must be at most 256 characters without control characters"));
    }
    Ok(Principal { actor, role })
}

/// The role names in the claims: at `path` (a claim of that name, else a dot-separated path),
/// or in `role` and `roles`.
fn roles<'a>(claims: &'a serde_json::Map<String, Value>, path: Option<&str>) -> impl Iterator<Item = &'a str> {
    let found: Vec<&Value> = match path {
        None => ["role", "roles"].iter().filter_map(|name| claims.get(*name)).collect(),
        Some(path) => claims
            .get(path)
            .or_else(|| {
                let mut parts = path.split('.');
                let first = claims.get(parts.next()?)?;
                parts.try_fold(first, |value, part| value.get(part))
            })
            .into_iter()
            .collect(),
    };
    found.into_iter().flat_map(|value| match value {
        Value::String(one) => vec![one.as_str()],
        Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    })
}

/// A PEM `PUBLIC KEY`: RSA (RS256 and the other RSA algorithms) or an elliptic curve (ES256,
/// ES384).
fn public_key(pem: &str) -> Result<Keys, String> {
    if let Ok(key) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
        use Algorithm::{PS256, PS384, PS512, RS256, RS384, RS512};
        return Ok(Keys::Static(key, vec![RS256, RS384, RS512, PS256, PS384, PS512]));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem.as_bytes()) {
        return Ok(Keys::Static(key, vec![Algorithm::ES256, Algorithm::ES384]));
    }
    if !pem.contains("-----BEGIN") {
        return Err("the public key is not PEM".into());
    }
    Err("the public key is neither RSA (RS256) nor an elliptic curve (ES256, ES384)".into())
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair};
    use ring::{hmac, signature};

    use super::*;
    use crate::config::{ApiKey, Secret};

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    pub(crate) fn hs256(claims: serde_json::Value) -> String {
        let head = format!("{}.{}", b64(br#"{"alg":"HS256","typ":"JWT"}"#), b64(claims.to_string().as_bytes()));
        let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
        format!("{head}.{}", b64(hmac::sign(&key, head.as_bytes()).as_ref()))
    }

    fn later() -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp() + 600
    }

    fn hs_auth() -> Authenticator {
        let jwt = JwtConfig {
            key: JwtKey::Hs256(Secret::new(SECRET)),
            issuer: Some("factory".into()),
            audience: None,
            role_claim: None,
        };
        let keys = vec![ApiKey { name: "ci".into(), role: Role::Viewer, key: Secret::new("ci-key-0123456789") }];
        Authenticator::new(AuthConfig { jwt: Some(jwt), api_keys: keys }).unwrap()
    }

    #[tokio::test]
    async fn numeric_dates_may_be_fractional_or_huge_and_the_scheme_any_case() {
        let auth = hs_auth();
        let far =
            hs256(serde_json::json!({"sub": "a", "role": "admin", "exp": i64::MAX, "nbf": i64::MIN, "iss": "factory"}));
        let fractional =
            hs256(serde_json::json!({"sub": "a", "role": "admin", "exp": later() as f64 + 0.5, "iss": "factory"}));
        for scheme in ["Bearer", "bearer", "BEARER", "BeArEr"] {
            for token in [&far, &fractional] {
                let principal = auth.check(Some(&format!("{scheme} {token}")), None, Role::Viewer).await;
                assert_eq!(principal.map(|p| p.actor), Ok("a".to_owned()), "{scheme}");
            }
        }
        assert!(
            auth.check(Some(&format!("Basic {far}")), None, Role::Viewer)
                .await
                .unwrap_err()
                .to_string()
                .contains("Bearer")
        );
    }

    #[tokio::test]
    async fn hs256_tokens_carry_actor_and_role() {
        let auth = hs_auth();
        let token = hs256(serde_json::json!({"sub": "alice", "role": "operator", "exp": later(), "iss": "factory"}));
        let alice = auth.check(Some(&format!("Bearer {token}")), None, Role::Operator).await.unwrap();
        assert_eq!(alice, Principal { actor: "alice".into(), role: Role::Operator });
        let slashed = hs256(serde_json::json!({"sub": "alice", "role": "operator", "exp": later(), "iss": "factory/"}));
        assert!(auth.check(Some(&format!("Bearer {slashed}")), None, Role::Viewer).await.is_ok(), "one trailing slash");
        assert!(matches!(
            auth.check(Some(&format!("Bearer {token}")), None, Role::Admin).await,
            Err(AuthError::Forbidden { .. })
        ));
    }

    #[tokio::test]
    async fn bad_tokens_are_refused_with_a_reason() {
        let auth = hs_auth();
        let expired = hs256(serde_json::json!({"sub": "a", "role": "admin", "exp": 1000, "iss": "factory"}));
        let wrong_iss = hs256(serde_json::json!({"sub": "a", "role": "admin", "exp": later(), "iss": "other"}));
        let no_role = hs256(serde_json::json!({"sub": "a", "exp": later(), "iss": "factory"}));
        let mut tampered = hs256(serde_json::json!({"sub": "a", "role": "viewer", "exp": later(), "iss": "factory"}));
        tampered.replace_range(tampered.len() - 4.., "AAAA");
        for (token, why) in [
            (expired, "expired"),
            (wrong_iss, "issuer"),
            (no_role, "role"),
            (tampered, "signature"),
            ("a.b".into(), "three"),
        ] {
            let err = auth.check(Some(&format!("Bearer {token}")), None, Role::Viewer).await.unwrap_err();
            assert!(err.to_string().contains(why), "{why}: {err}");
        }
        let crlf_sub =
            hs256(serde_json::json!({"sub": "a\r\nx: y", "role": "admin", "exp": later(), "iss": "factory"}));
        let crit = {
            let header = b64(br#"{"alg":"HS256","crit":["exp"]}"#);
            let claims = b64(br#"{"sub":"a","role":"admin","exp":99999999999,"iss":"factory"}"#);
            let key = hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes());
            let sig = URL_SAFE_NO_PAD.encode(hmac::sign(&key, format!("{header}.{claims}").as_bytes()));
            format!("{header}.{claims}.{sig}")
        };
        let early =
            hs256(serde_json::json!({"sub": "a", "role": "admin", "exp": later(), "nbf": f64::MAX, "iss": "factory"}));
        for (token, why) in [(crlf_sub, "control characters"), (crit, "crit"), (early, "not valid yet")] {
            let err = auth.check(Some(&format!("Bearer {token}")), None, Role::Viewer).await.unwrap_err();
            assert!(err.to_string().contains(why), "{why}: {err}");
        }
        assert_eq!(auth.check(None, None, Role::Viewer).await, Err(AuthError::Missing));
        let none_alg = format!("{}.{}.", b64(br#"{"alg":"none"}"#), b64(br#"{"role":"admin"}"#));
        assert!(auth.check(Some(&format!("Bearer {none_alg}")), None, Role::Viewer).await.is_err());
    }

    #[tokio::test]
    async fn api_keys_identify_their_owner() {
        let auth = hs_auth();
        assert_eq!(auth.check(None, Some("ci-key-0123456789"), Role::Viewer).await.unwrap().actor, "ci");
        assert!(matches!(
            auth.check(None, Some("ci-key-0123456789"), Role::Operator).await,
            Err(AuthError::Forbidden { .. })
        ));
        assert!(matches!(auth.check(None, Some("nope"), Role::Viewer).await, Err(AuthError::Invalid(_))));
    }

    #[tokio::test]
    async fn es256_tokens_verify_against_a_pem_public_key() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let pem = es256_pem(pair.public_key().as_ref());
        let auth = Authenticator::new(AuthConfig {
            jwt: Some(JwtConfig {
                key: JwtKey::PublicPem(pem),
                issuer: None,
                audience: Some("factory".into()),
                role_claim: None,
            }),
            api_keys: vec![],
        })
        .unwrap();
        let head = format!(
            "{}.{}",
            b64(br#"{"alg":"ES256"}"#),
            b64(serde_json::json!({"sub": "bob", "roles": ["viewer", "admin"], "exp": later(), "aud": ["factory"]})
                .to_string()
                .as_bytes())
        );
        let token = format!("{head}.{}", b64(pair.sign(&rng, head.as_bytes()).unwrap().as_ref()));
        assert_eq!(auth.check(Some(&format!("Bearer {token}")), None, Role::Admin).await.unwrap().role, Role::Admin);
        let hs = hs256(serde_json::json!({"sub": "x", "role": "admin", "exp": later()}));
        assert!(
            auth.check(Some(&format!("Bearer {hs}")), None, Role::Viewer)
                .await
                .unwrap_err()
                .to_string()
                .contains("algorithm")
        );
    }

    /// A P-256 SubjectPublicKeyInfo around an uncompressed point, as PEM.
    pub(crate) fn es256_pem(point: &[u8]) -> String {
        let mut der = hex("3059301306072a8648ce3d020106082a8648ce3d030107034200");
        der.extend_from_slice(point);
        format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", STANDARD.encode(der))
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
    }

    #[tokio::test]
    async fn unusable_keys_are_refused_at_start() {
        let short = AuthConfig {
            jwt: Some(JwtConfig {
                key: JwtKey::Hs256(Secret::new("short")),
                issuer: None,
                audience: None,
                role_claim: None,
            }),
            api_keys: vec![],
        };
        assert!(Authenticator::new(short).is_err());
        let junk = AuthConfig {
            jwt: Some(JwtConfig {
                key: JwtKey::PublicPem("not a key".into()),
                issuer: None,
                audience: None,
                role_claim: None,
            }),
            api_keys: vec![],
        };
        assert!(Authenticator::new(junk).is_err());
    }
}
