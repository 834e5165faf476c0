//! The gateway's configuration: where it listens, its limits, and who may do what.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::auth::Role;

/// Text that must not be printed (secrets, keys): `Debug` shows `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How bearer JWTs are checked.
#[derive(Debug, Clone)]
pub enum JwtKey {
    /// HMAC-SHA256 with a shared secret.
    Hs256(Secret),
    /// A PEM public key (`-----BEGIN PUBLIC KEY-----`): RSA for RS256, P-256 for ES256.
    PublicPem(String),
}

/// JWT settings.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// The verification key.
    pub key: JwtKey,
    /// Required `iss`, if set.
    pub issuer: Option<String>,
    /// Required `aud`, if set.
    pub audience: Option<String>,
}

/// A static API key.
#[derive(Debug, Clone)]
pub struct ApiKey {
    /// Who it is (the actor recorded on commands).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The key.
    pub key: Secret,
}

/// Authentication; both empty means auth is off (loopback only).
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// Bearer JWTs.
    pub jwt: Option<JwtConfig>,
    /// API keys (`X-Api-Key`).
    pub api_keys: Vec<ApiKey>,
}

impl AuthConfig {
    /// True when some credential is configured.
    pub fn enabled(&self) -> bool {
        self.jwt.is_some() || !self.api_keys.is_empty()
    }

    /// Reads `<PREFIX>_JWT_HS256_SECRET` or `<PREFIX>_JWT_PUBLIC_KEY_FILE` (with optional
    /// `<PREFIX>_JWT_ISSUER` / `<PREFIX>_JWT_AUDIENCE`) and `<PREFIX>_API_KEYS`
    /// (`name:role:key,...`, or a file named by `<PREFIX>_API_KEYS_FILE`, one per line), where
    /// `prefix` is the application's (`FACTORY`).
    ///
    /// # Errors
    /// A message naming the setting that does not parse.
    pub fn from_env(prefix: &str) -> Result<Self, String> {
        let var = |name: &str| std::env::var(format!("{prefix}_{name}")).ok().filter(|v| !v.trim().is_empty());
        let key = match (var("JWT_HS256_SECRET"), var("JWT_PUBLIC_KEY_FILE")) {
            (Some(secret), _) => Some(JwtKey::Hs256(Secret::new(secret))),
            (None, Some(path)) => Some(JwtKey::PublicPem(
                std::fs::read_to_string(&path).map_err(|e| format!("{prefix}_JWT_PUBLIC_KEY_FILE {path}: {e}"))?,
            )),
            (None, None) => None,
        };
        let jwt = key.map(|key| JwtConfig { key, issuer: var("JWT_ISSUER"), audience: var("JWT_AUDIENCE") });
        let mut keys = var("API_KEYS").unwrap_or_default().replace(',', "\n");
        if let Some(path) = var("API_KEYS_FILE") {
            keys.push('\n');
            keys.push_str(&std::fs::read_to_string(&path).map_err(|e| format!("{prefix}_API_KEYS_FILE {path}: {e}"))?);
        }
        let api_keys = keys
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|line| {
                let mut parts = line.splitn(3, ':');
                match (parts.next(), parts.next().and_then(Role::parse), parts.next()) {
                    (Some(name), Some(role), Some(key)) if !name.is_empty() && key.len() >= 16 => {
                        Ok(ApiKey { name: name.to_owned(), role, key: Secret::new(key) })
                    }
                    _ => Err(format!("API key entry must be name:role:key with role viewer|operator|admin and a key of 16+ characters, got {:?}", line.split(':').next().unwrap_or_default())),
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { jwt, api_keys })
    }
}

/// Everything the gateway needs.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Where to listen.
    pub addr: SocketAddr,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Requests handled at once; more get 429.
    pub max_in_flight: usize,
    /// Longest a request may take; then 504.
    pub request_timeout: Duration,
    /// Longest a view query waits for its `Consistency-Token`.
    pub consistency_wait: Duration,
    /// Authentication.
    pub auth: AuthConfig,
    /// Origins a browser may call the API from (`https://console.example.com`; `*` for any);
    /// none: no CORS headers, and browsers allow only the gateway's own origin.
    pub cors_origins: Vec<String>,
    /// The trace UI a console links trace ids to, with `{trace_id}` in it
    /// (`http://tempo:3200/trace/{trace_id}`); none: trace ids are shown, not linked.
    pub console_trace_url: Option<String>,
}

impl GatewayConfig {
    /// `<PREFIX>_CONSOLE_TRACE_URL`: the trace UI's URL template, with `{trace_id}`.
    pub fn console_trace_url_from_env(prefix: &str) -> Option<String> {
        std::env::var(format!("{prefix}_CONSOLE_TRACE_URL")).ok().filter(|u| u.contains("{trace_id}"))
    }

    /// `<PREFIX>_CORS_ORIGINS`: comma-separated origins, or `*`.
    pub fn cors_from_env(prefix: &str) -> Vec<String> {
        std::env::var(format!("{prefix}_CORS_ORIGINS"))
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            addr: ([127, 0, 0, 1], 8080).into(),
            max_body_bytes: 256 * 1024,
            max_in_flight: 1024,
            request_timeout: Duration::from_secs(10),
            consistency_wait: Duration::from_secs(5),
            auth: AuthConfig::default(),
            cors_origins: Vec::new(),
            console_trace_url: None,
        }
    }
}
