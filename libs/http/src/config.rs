//! The gateway's configuration: where it listens, its limits, and who may do what.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    /// A PEM public key (`-----BEGIN PUBLIC KEY-----`): RSA for RS256 (RS384, RS512, PS256,
    /// PS384, PS512), an elliptic curve for ES256 or ES384.
    PublicPem(String),
    /// An identity provider's key set (JWKS), keys chosen by the token's `kid`.
    Jwks(JwksConfig),
}

/// Where the identity provider's keys are, and how often to look again.
#[derive(Debug, Clone)]
pub struct JwksConfig {
    /// The key set's URL, or the issuer whose discovery document names it.
    pub source: JwksSource,
    /// How often the key set is fetched again (a token naming an unknown `kid` also fetches it,
    /// at most once a second).
    pub refresh: Duration,
    /// A PEM CA file trusted beside the system's roots for the provider's `https://` URLs.
    pub ca_file: Option<PathBuf>,
}

/// How the key set is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// OpenID Connect discovery: `<issuer>/.well-known/openid-configuration` names `jwks_uri`.
    Discovery {
        /// The issuer URL (`https://keycloak.example/realms/factory`).
        issuer: String,
    },
    /// The key set's URL itself.
    Url(String),
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
    /// Where the role is in the claims: a claim of that name, else a dot-separated path
    /// (`realm_access.roles` for Keycloak, `https://factory.example/roles` for Auth0, `roles`
    /// for Entra ID app roles); a string or a list of strings. None: `role`, then `roles`.
    pub role_claim: Option<String>,
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

    /// Reads the JWT key from one of `<PREFIX>_JWT_HS256_SECRET`, `<PREFIX>_JWT_PUBLIC_KEY_FILE`,
    /// `<PREFIX>_JWT_JWKS_URL` or `<PREFIX>_OIDC_ISSUER` (discovery; also the required `iss`),
    /// with optional `<PREFIX>_JWT_ISSUER`, `<PREFIX>_JWT_AUDIENCE`, `<PREFIX>_JWT_ROLE_CLAIM`,
    /// `<PREFIX>_JWT_JWKS_REFRESH` (seconds, default 300) and `<PREFIX>_OIDC_CA_FILE`; and
    /// `<PREFIX>_API_KEYS` (`name:role:key,...`, or a file named by `<PREFIX>_API_KEYS_FILE`, one
    /// per line), where `prefix` is the application's (`FACTORY`).
    ///
    /// # Errors
    /// A message naming the setting that does not parse, or two keys set at once.
    pub fn from_env(prefix: &str) -> Result<Self, String> {
        let var = |name: &str| std::env::var(format!("{prefix}_{name}")).ok().filter(|v| !v.trim().is_empty());
        let sources = ["JWT_HS256_SECRET", "JWT_PUBLIC_KEY_FILE", "JWT_JWKS_URL", "OIDC_ISSUER"];
        let set: Vec<String> =
            sources.iter().filter(|name| var(name).is_some()).map(|n| format!("{prefix}_{n}")).collect();
        if set.len() > 1 {
            return Err(format!("set one JWT key source, not {}", set.join(" and ")));
        }
        let refresh = match var("JWT_JWKS_REFRESH") {
            None => Duration::from_secs(300),
            Some(text) => match text.trim().trim_end_matches('s').parse::<u64>() {
                Ok(seconds) if seconds > 0 => Duration::from_secs(seconds),
                _ => return Err(format!("{prefix}_JWT_JWKS_REFRESH must be a number of seconds, got {text:?}")),
            },
        };
        let jwks =
            |source| JwtKey::Jwks(JwksConfig { source, refresh, ca_file: var("OIDC_CA_FILE").map(PathBuf::from) });
        let key = if let Some(secret) = var("JWT_HS256_SECRET") {
            Some(JwtKey::Hs256(Secret::new(secret)))
        } else if let Some(path) = var("JWT_PUBLIC_KEY_FILE") {
            Some(JwtKey::PublicPem(
                std::fs::read_to_string(&path).map_err(|e| format!("{prefix}_JWT_PUBLIC_KEY_FILE {path}: {e}"))?,
            ))
        } else if let Some(url) = var("JWT_JWKS_URL") {
            Some(jwks(JwksSource::Url(url)))
        } else {
            var("OIDC_ISSUER").map(|issuer| jwks(JwksSource::Discovery { issuer }))
        };
        let issuer = var("JWT_ISSUER").or_else(|| var("OIDC_ISSUER"));
        let jwt =
            key.map(|key| JwtConfig { key, issuer, audience: var("JWT_AUDIENCE"), role_claim: var("JWT_ROLE_CLAIM") });
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
    /// The most requests handled at once; the admission learns a limit up to it from their
    /// latency (ADR 21, `docs/adr/0021-adaptive-admission.md`).
    pub max_in_flight: usize,
    /// Longest a request waits for a place before it is answered `503 overloaded`
    /// (`Retry-After`); at most 8 × `max_in_flight` wait at once.
    pub admission_wait: Duration,
    /// Requests a second each caller (principal) may make; more get 429 with `Retry-After`.
    pub rate_limit: Option<RateLimit>,
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

/// Requests a second per caller, with a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: std::num::NonZeroU32,
    /// Requests allowed at once after a quiet spell.
    pub burst: std::num::NonZeroU32,
}

impl RateLimit {
    /// `<PREFIX>_RATE_LIMIT` (requests per second per caller, `50` or `50/s`, or `600/min`)
    /// and `<PREFIX>_RATE_BURST` (default: one second's worth); unset: no limit.
    ///
    /// # Errors
    /// A message naming the setting that does not parse.
    pub fn from_env(prefix: &str) -> Result<Option<Self>, String> {
        let var = |name: &str| std::env::var(format!("{prefix}_{name}")).ok().filter(|v| !v.trim().is_empty());
        let Some(text) = var("RATE_LIMIT") else { return Ok(None) };
        let bad = || {
            format!("{prefix}_RATE_LIMIT must be requests per second (50, 50/s) or per minute (600/min), got {text:?}")
        };
        let (count, per) = text.trim().split_once('/').unwrap_or((text.trim(), "s"));
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let per_second = match per.trim() {
            "s" | "sec" | "second" => count,
            "m" | "min" | "minute" => count.div_ceil(60),
            _ => return Err(bad()),
        };
        let per_second = std::num::NonZeroU32::new(per_second).ok_or_else(bad)?;
        let burst = match var("RATE_BURST") {
            None => per_second,
            Some(b) => b
                .trim()
                .parse::<u32>()
                .ok()
                .and_then(std::num::NonZeroU32::new)
                .ok_or_else(|| format!("{prefix}_RATE_BURST must be a positive number, got {b:?}"))?,
        };
        Ok(Some(Self { per_second, burst }))
    }
}

impl GatewayConfig {
    /// Reads what the environment says about the gateway: authentication
    /// ([`AuthConfig::from_env`]), the most requests in flight (`<PREFIX>_MAX_IN_FLIGHT`),
    /// per-caller rate limits ([`RateLimit::from_env`]), CORS origins and the console's trace
    /// links.
    ///
    /// # Errors
    /// A message naming the setting that does not parse.
    pub fn apply_env(&mut self, prefix: &str) -> Result<(), String> {
        self.auth = AuthConfig::from_env(prefix)?;
        if let Ok(text) = std::env::var(format!("{prefix}_MAX_IN_FLIGHT"))
            && !text.trim().is_empty()
        {
            self.max_in_flight = text
                .trim()
                .parse()
                .map_err(|_| format!("{prefix}_MAX_IN_FLIGHT must be a number of requests, got {text:?}"))?;
        }
        self.rate_limit = RateLimit::from_env(prefix)?;
        self.cors_origins = Self::cors_from_env(prefix);
        self.console_trace_url = Self::console_trace_url_from_env(prefix);
        Ok(())
    }

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
            admission_wait: Duration::from_secs(1),
            rate_limit: None,
            request_timeout: Duration::from_secs(10),
            consistency_wait: Duration::from_secs(5),
            auth: AuthConfig::default(),
            cors_origins: Vec::new(),
            console_trace_url: None,
        }
    }
}
