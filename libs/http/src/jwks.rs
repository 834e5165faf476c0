//! The identity provider's signing keys: found by OpenID Connect discovery (or a JWKS URL given
//! directly), fetched at start, refreshed on an interval, and fetched again (at most once a
//! second) when a token names a key id not seen yet, so a provider's key rotation is followed
//! without a restart and without a burst of refusals.

use std::collections::HashMap;
use std::str::FromStr as _;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jetsource_telemetry::https;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::config::{JwksConfig, JwksSource};

/// Largest discovery document or key set read.
const MAX_BYTES: usize = 1 << 20;
/// Longest a fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Fetches caused by unknown key ids are at least this far apart.
const MIN_REFETCH: Duration = Duration::from_secs(1);

/// A verification key and the algorithm it is for.
#[derive(Clone)]
pub(crate) struct Key {
    pub(crate) key: DecodingKey,
    pub(crate) algorithm: Algorithm,
}

/// The keys of one fetch.
#[derive(Default)]
struct Loaded {
    by_kid: HashMap<String, Key>,
    /// Keys the set gives no id; used for tokens that name none.
    anonymous: Vec<Key>,
}

/// The provider's current keys.
pub(crate) struct KeySet {
    config: JwksConfig,
    connector: https::Connector,
    keys: RwLock<Arc<Loaded>>,
    /// One fetch at a time; when the last one ended.
    fetching: tokio::sync::Mutex<Option<Instant>>,
    /// The key set's URL once discovered.
    jwks_uri: RwLock<Option<String>>,
}

impl KeySet {
    /// An empty key set for `config`; [`KeySet::refresh`] fills it.
    pub(crate) fn new(config: JwksConfig) -> Result<Self, String> {
        let connector = https::connector(config.ca_file.as_deref(), None)?;
        let jwks_uri = match &config.source {
            JwksSource::Url(url) => Some(url.clone()),
            JwksSource::Discovery { .. } => None,
        };
        Ok(Self {
            config,
            connector,
            keys: RwLock::new(Arc::default()),
            fetching: tokio::sync::Mutex::new(None),
            jwks_uri: RwLock::new(jwks_uri),
        })
    }

    /// The interval between scheduled refreshes.
    pub(crate) fn interval(&self) -> Duration {
        self.config.refresh
    }

    /// The key for a token naming `kid` (or none): `None` when the set has no such key.
    pub(crate) fn find(&self, kid: Option<&str>) -> Option<Key> {
        let keys = Arc::clone(&self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner));
        match kid {
            Some(kid) => keys.by_kid.get(kid).cloned(),
            None => match (keys.anonymous.as_slice(), keys.by_kid.len()) {
                ([only], _) => Some(only.clone()),
                ([], 1) => keys.by_kid.values().next().cloned(),
                _ => None,
            },
        }
    }

    /// Fetches the key set again, unless another fetch ended less than `MIN_REFETCH` ago
    /// (then the keys it brought are used).
    pub(crate) async fn refetch_for_unknown_key(&self) -> Result<(), String> {
        let mut last = self.fetching.lock().await;
        if last.is_some_and(|at| at.elapsed() < MIN_REFETCH) {
            return Ok(());
        }
        let result = self.fetch().await;
        *last = Some(Instant::now());
        result.map(|_| ())
    }

    /// Fetches the key set now (at start and on the interval).
    pub(crate) async fn refresh(&self) -> Result<usize, String> {
        let mut last = self.fetching.lock().await;
        let result = self.fetch().await;
        *last = Some(Instant::now());
        result
    }

    async fn fetch(&self) -> Result<usize, String> {
        let known = self.jwks_uri.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let uri = match known {
            Some(uri) => uri,
            None => {
                let uri = self.discover().await?;
                *self.jwks_uri.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(uri.clone());
                uri
            }
        };
        let body = https::get(&self.connector, &uri, MAX_BYTES, FETCH_TIMEOUT).await?;
        let loaded = parse(&body).map_err(|e| format!("{uri}: {e}"))?;
        let count = loaded.by_kid.len() + loaded.anonymous.len();
        *self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(loaded);
        Ok(count)
    }

    /// The `jwks_uri` of the issuer's discovery document, which must name the same issuer.
    async fn discover(&self) -> Result<String, String> {
        let JwksSource::Discovery { issuer } = &self.config.source else {
            return Err("no key set URL".into());
        };
        let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
        let body = https::get(&self.connector, &url, MAX_BYTES, FETCH_TIMEOUT).await?;
        #[derive(serde::Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: String,
        }
        let doc: Discovery =
            serde_json::from_slice(&body).map_err(|e| format!("{url}: not an OpenID Provider configuration ({e})"))?;
        if doc.issuer.trim_end_matches('/') != issuer.trim_end_matches('/') {
            return Err(format!("{url} names issuer {:?}, not {issuer:?}", doc.issuer));
        }
        Ok(doc.jwks_uri)
    }
}

/// The signing keys of a JWKS document. Keys this gateway cannot use (encryption keys, unknown
/// types or algorithms) are skipped, as a provider's set often holds some.
fn parse(body: &[u8]) -> Result<Loaded, String> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_slice(body).map_err(|e| format!("not a JWK set ({e})"))?;
    let mut loaded = Loaded::default();
    for value in set.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else { continue };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let Some(algorithm) = algorithm_of(&jwk) else { continue };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else { continue };
        let key = Key { key, algorithm };
        match jwk.common.key_id {
            Some(kid) => {
                loaded.by_kid.insert(kid, key);
            }
            None => loaded.anonymous.push(key),
        }
    }
    if loaded.by_kid.is_empty() && loaded.anonymous.is_empty() {
        return Err("no signing key this gateway can use (RSA, P-256, P-384 or Ed25519)".into());
    }
    Ok(loaded)
}

/// The key's `alg`, or the one its type implies.
fn algorithm_of(jwk: &Jwk) -> Option<Algorithm> {
    if let Some(declared) = jwk.common.key_algorithm {
        return Algorithm::from_str(&declared.to_string()).ok();
    }
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Some(Algorithm::ES256),
            EllipticCurve::P384 => Some(Algorithm::ES384),
            _ => None,
        },
        AlgorithmParameters::OctetKeyPair(_) => Some(Algorithm::EdDSA),
        // A shared secret has no place in a public key set.
        AlgorithmParameters::OctetKey(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

        /// Whatever a provider (or whoever answers in its place) sends, the key set is parsed or
        /// refused with a reason, never a panic.
        #[test]
        fn any_key_set_document_is_parsed_or_refused(
            keys in proptest::collection::vec(
                prop_oneof![
                    Just(serde_json::json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"})),
                    Just(serde_json::json!({"kty": "RSA", "n": "AQAB", "e": "AQAB", "alg": "RS512"})),
                    Just(serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"})),
                    "[ -~]{0,30}".prop_map(serde_json::Value::String),
                    any::<i64>().prop_map(serde_json::Value::from),
                    ("[a-z]{1,5}", "[ -~]{0,12}").prop_map(|(k, v)| serde_json::json!({"kty": v, k: "x"})),
                ],
                0..6,
            ),
            junk in "[ -~]{0,80}",
        ) {
            for body in [serde_json::json!({"keys": keys}).to_string(), junk] {
                if let Err(reason) = parse(body.as_bytes()) {
                    prop_assert!(!reason.is_empty());
                }
            }
        }
    }

    #[test]
    fn unusable_keys_are_skipped_and_an_empty_set_is_an_error() {
        let set = serde_json::json!({"keys": [
            {"kty": "RSA", "use": "enc", "kid": "enc", "alg": "RSA-OAEP", "n": "AQAB", "e": "AQAB"},
            {"kty": "XYZ", "kid": "odd"},
            {"kty": "EC", "crv": "P-256", "kid": "ec",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
        ]});
        let loaded = parse(set.to_string().as_bytes()).unwrap();
        assert_eq!(loaded.by_kid.keys().collect::<Vec<_>>(), ["ec"]);
        assert_eq!(loaded.by_kid["ec"].algorithm, Algorithm::ES256);
        let error = |body: &[u8]| parse(body).err().unwrap_or_default();
        assert!(error(br#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#).contains("no signing key"));
        assert!(error(b"[]").contains("not a JWK set"));
    }
}
