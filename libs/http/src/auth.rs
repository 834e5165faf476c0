//! Who is calling and what they may do: bearer JWTs (HS256 with a shared secret, RS256 or
//! ES256 with a public key) and static API keys, with roles `viewer` (reads), `operator`
//! (commands) and `admin` (rebuilds and other operations). Verified with `ring`.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::{hmac, signature};
use serde::Deserialize;
use thiserror::Error;

use crate::config::{AuthConfig, JwtConfig, JwtKey};

/// What a caller may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads: views, aggregates, history, command status, status.
    Viewer,
    /// Sends commands.
    Operator,
    /// Runs rebuilds and retries.
    Admin,
}

impl Role {
    /// Parses `viewer`, `operator` or `admin`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

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

enum Verifier {
    Hs256(hmac::Key),
    Rs256(Vec<u8>),
    Es256(Vec<u8>),
}

/// Checks credentials against the configuration.
pub struct Authenticator {
    verifier: Option<(Verifier, JwtConfig)>,
    config: AuthConfig,
}

#[derive(Debug, Deserialize)]
struct Header {
    alg: String,
    /// Extensions the issuer says must be understood (RFC 7515 §4.1.11); this verifier knows none.
    crit: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: Option<String>,
    /// NumericDate: seconds, fractions allowed (RFC 7519 §2).
    exp: Option<f64>,
    nbf: Option<f64>,
    iss: Option<String>,
    #[serde(default)]
    aud: Option<serde_json::Value>,
    role: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
}

/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECONDS: f64 = 30.0;

impl Authenticator {
    /// Builds the checker; a public key that cannot be used is an error at start, not per
    /// request.
    ///
    /// # Errors
    /// A message saying what is wrong with the key.
    pub fn new(config: AuthConfig) -> Result<Self, String> {
        let verifier = match &config.jwt {
            None => None,
            Some(jwt) => Some((
                match &jwt.key {
                    JwtKey::Hs256(secret) => {
                        if secret.expose().len() < 32 {
                            return Err("the HS256 secret must be at least 32 characters".into());
                        }
                        Verifier::Hs256(hmac::Key::new(hmac::HMAC_SHA256, secret.expose().as_bytes()))
                    }
                    JwtKey::PublicPem(pem) => public_key(pem)?,
                },
                jwt.clone(),
            )),
        };
        Ok(Self { verifier, config })
    }

    /// True when some credential is configured.
    pub fn enabled(&self) -> bool {
        self.config.enabled()
    }

    /// The caller behind `authorization` / `api_key`, allowed to act as `needs`.
    ///
    /// # Errors
    /// [`AuthError`].
    pub fn check(
        &self,
        authorization: Option<&str>,
        api_key: Option<&str>,
        needs: Role,
    ) -> Result<Principal, AuthError> {
        let principal = self.identify(authorization, api_key)?;
        if principal.role < needs {
            return Err(AuthError::Forbidden {
                actor: principal.actor,
                has: principal.role.as_str(),
                needs: needs.as_str(),
            });
        }
        Ok(principal)
    }

    fn identify(&self, authorization: Option<&str>, api_key: Option<&str>) -> Result<Principal, AuthError> {
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
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token,
                _ => return Err(AuthError::Invalid("Authorization must be `Bearer <jwt>`".into())),
            },
        };
        let (verifier, jwt) =
            self.verifier.as_ref().ok_or_else(|| AuthError::Invalid("bearer tokens are not accepted here".into()))?;
        verify(token.trim(), verifier, jwt)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn verify(token: &str, verifier: &Verifier, jwt: &JwtConfig) -> Result<Principal, AuthError> {
    let invalid = |m: &str| AuthError::Invalid(m.to_owned());
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(sig), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("a JWT has three dot-separated parts"));
    };
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|_| invalid("not base64url"));
    let header: Header = serde_json::from_slice(&decode(header)?).map_err(|_| invalid("unreadable JWT header"))?;
    if header.crit.is_some() {
        return Err(invalid("the JWT header names crit extensions this gateway does not understand"));
    }
    let signature = decode(sig)?;
    let signed = &token.as_bytes()[..token.len() - sig.len() - 1];
    let verified = match (verifier, header.alg.as_str()) {
        (Verifier::Hs256(key), "HS256") => hmac::verify(key, signed, &signature).is_ok(),
        (Verifier::Rs256(der), "RS256") => {
            signature::UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, der)
                .verify(signed, &signature)
                .is_ok()
        }
        (Verifier::Es256(point), "ES256") => {
            signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(signed, &signature)
                .is_ok()
        }
        (_, alg) => return Err(AuthError::Invalid(format!("algorithm {alg:?} is not the one configured"))),
    };
    if !verified {
        return Err(invalid("bad signature"));
    }
    let claims: Claims = serde_json::from_slice(&decode(payload)?).map_err(|_| invalid("unreadable JWT claims"))?;
    // Float arithmetic on NumericDates cannot overflow: a huge `exp` is merely far away.
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
    match claims.exp {
        None => return Err(invalid("the token has no exp")),
        Some(exp) if exp + LEEWAY_SECONDS < now => return Err(invalid("the token has expired")),
        _ => {}
    }
    if claims.nbf.is_some_and(|nbf| nbf - LEEWAY_SECONDS > now) {
        return Err(invalid("the token is not valid yet"));
    }
    if let Some(issuer) = &jwt.issuer
        && claims.iss.as_deref() != Some(issuer.as_str())
    {
        return Err(invalid("wrong issuer"));
    }
    if let Some(audience) = &jwt.audience {
        let ok = match &claims.aud {
            Some(serde_json::Value::String(a)) => a == audience,
            Some(serde_json::Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(audience.as_str())),
            _ => false,
        };
        if !ok {
            return Err(invalid("wrong audience"));
        }
    }
    let role = claims
        .role
        .iter()
        .chain(&claims.roles)
        .filter_map(|r| Role::parse(r))
        .max()
        .ok_or_else(|| invalid("no role claim (viewer, operator or admin)"))?;
    let actor = claims.sub.filter(|s| !s.is_empty()).unwrap_or_else(|| "jwt".into());
    // The actor travels in a NATS header, which cannot carry control characters.
    if actor.chars().any(char::is_control) || actor.len() > 256 {
        return Err(invalid("sub must be at most 256 characters without control characters"));
    }
    Ok(Principal { actor, role })
}

/// Reads a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) and picks RS256 or ES256 by its algorithm.
fn public_key(pem: &str) -> Result<Verifier, String> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = STANDARD.decode(body.trim()).map_err(|_| "the public key is not PEM (base64)".to_owned())?;
    let (spki, _) = der_item(&der, 0x30).ok_or("the public key is not a SubjectPublicKeyInfo")?;
    let (algorithm, rest) = der_item(spki, 0x30).ok_or("no algorithm in the public key")?;
    let (bits, _) = der_item(rest, 0x03).ok_or("no key bits in the public key")?;
    let key = bits.get(1..).ok_or("empty key bits")?.to_vec();
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    const EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let (oid, params) = der_item(algorithm, 0x06).ok_or("no algorithm id in the public key")?;
    match oid {
        RSA => Ok(Verifier::Rs256(key)),
        EC if der_item(params, 0x06).is_some_and(|(curve, _)| curve == P256) => Ok(Verifier::Es256(key)),
        EC => Err("only P-256 elliptic-curve keys (ES256) are supported".into()),
        _ => Err("the public key is neither RSA (RS256) nor P-256 (ES256)".into()),
    }
}

/// One DER item with tag `tag` at the start of `data`: (its contents, what follows).
fn der_item(data: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    if *data.first()? != tag {
        return None;
    }
    let first = *data.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        let bytes = data.get(2..2 + n)?;
        (bytes.iter().fold(0_usize, |acc, b| (acc << 8) | usize::from(*b)), 2 + n)
    };
    let contents = data.get(header..header + len)?;
    Some((contents, &data[header + len..]))
}

#[cfg(test)]
mod tests {
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair};

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
        let jwt = JwtConfig { key: JwtKey::Hs256(Secret::new(SECRET)), issuer: Some("factory".into()), audience: None };
        let keys = vec![ApiKey { name: "ci".into(), role: Role::Viewer, key: Secret::new("ci-key-0123456789") }];
        Authenticator::new(AuthConfig { jwt: Some(jwt), api_keys: keys }).unwrap()
    }

    #[test]
    fn numeric_dates_may_be_fractional_or_huge_and_the_scheme_any_case() {
        let auth = hs_auth();
        let far =
            hs256(serde_json::json!({"sub": "a", "role": "admin", "exp": i64::MAX, "nbf": i64::MIN, "iss": "factory"}));
        let fractional =
            hs256(serde_json::json!({"sub": "a", "role": "admin", "exp": later() as f64 + 0.5, "iss": "factory"}));
        for scheme in ["Bearer", "bearer", "BEARER", "BeArEr"] {
            for token in [&far, &fractional] {
                let principal = auth.check(Some(&format!("{scheme} {token}")), None, Role::Viewer);
                assert_eq!(principal.map(|p| p.actor), Ok("a".to_owned()), "{scheme}");
            }
        }
        assert!(
            auth.check(Some(&format!("Basic {far}")), None, Role::Viewer).unwrap_err().to_string().contains("Bearer")
        );
    }

    #[test]
    fn hs256_tokens_carry_actor_and_role() {
        let auth = hs_auth();
        let token = hs256(serde_json::json!({"sub": "alice", "role": "operator", "exp": later(), "iss": "factory"}));
        let alice = auth.check(Some(&format!("Bearer {token}")), None, Role::Operator).unwrap();
        assert_eq!(alice, Principal { actor: "alice".into(), role: Role::Operator });
        assert!(matches!(
            auth.check(Some(&format!("Bearer {token}")), None, Role::Admin),
            Err(AuthError::Forbidden { .. })
        ));
    }

    #[test]
    fn bad_tokens_are_refused_with_a_reason() {
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
            let err = auth.check(Some(&format!("Bearer {token}")), None, Role::Viewer).unwrap_err();
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
            let err = auth.check(Some(&format!("Bearer {token}")), None, Role::Viewer).unwrap_err();
            assert!(err.to_string().contains(why), "{why}: {err}");
        }
        assert_eq!(auth.check(None, None, Role::Viewer), Err(AuthError::Missing));
        let none_alg = format!("{}.{}.", b64(br#"{"alg":"none"}"#), b64(br#"{"role":"admin"}"#));
        assert!(auth.check(Some(&format!("Bearer {none_alg}")), None, Role::Viewer).is_err());
    }

    #[test]
    fn api_keys_identify_their_owner() {
        let auth = hs_auth();
        assert_eq!(auth.check(None, Some("ci-key-0123456789"), Role::Viewer).unwrap().actor, "ci");
        assert!(matches!(
            auth.check(None, Some("ci-key-0123456789"), Role::Operator),
            Err(AuthError::Forbidden { .. })
        ));
        assert!(matches!(auth.check(None, Some("nope"), Role::Viewer), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn es256_tokens_verify_against_a_pem_public_key() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let pem = es256_pem(pair.public_key().as_ref());
        let auth = Authenticator::new(AuthConfig {
            jwt: Some(JwtConfig { key: JwtKey::PublicPem(pem), issuer: None, audience: Some("factory".into()) }),
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
        assert_eq!(auth.check(Some(&format!("Bearer {token}")), None, Role::Admin).unwrap().role, Role::Admin);
        let hs = hs256(serde_json::json!({"sub": "x", "role": "admin", "exp": later()}));
        assert!(
            auth.check(Some(&format!("Bearer {hs}")), None, Role::Viewer)
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

    #[test]
    fn unusable_keys_are_refused_at_start() {
        let short = AuthConfig {
            jwt: Some(JwtConfig { key: JwtKey::Hs256(Secret::new("short")), issuer: None, audience: None }),
            api_keys: vec![],
        };
        assert!(Authenticator::new(short).is_err());
        let junk = AuthConfig {
            jwt: Some(JwtConfig { key: JwtKey::PublicPem("not a key".into()), issuer: None, audience: None }),
            api_keys: vec![],
        };
        assert!(Authenticator::new(junk).is_err());
    }
}
