//! Connecting to NATS as NATS users configure it — credentials in the URL or the standard
//! variables of NATS tooling (`NATS_CREDS`, `NATS_NKEY`, `NATS_USER`/`NATS_PASSWORD`,
//! `NATS_TOKEN`, TLS with `NATS_CA`, `NATS_CERT`, `NATS_KEY`) — and refusing servers too old
//! for atomic batch publish.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use async_nats::{Client, ConnectOptions};
use thiserror::Error;

/// The oldest nats-server jetsource runs on (atomic batch publish, ADR-50).
pub const MIN_SERVER_VERSION: (u64, u64, u64) = (2, 12, 0);

/// Why connecting failed.
#[derive(Debug, Error)]
pub enum ConnectError {
    /// The server did not answer.
    #[error("cannot reach NATS at {url}: {reason}")]
    Unreachable {
        /// The URL tried.
        url: String,
        /// What the client said.
        reason: String,
    },
    /// A credential or certificate setting cannot be used.
    #[error("{setting}: {reason}")]
    Credentials {
        /// The setting (`NATS_CREDS /etc/nats/app.creds`).
        setting: String,
        /// What is wrong.
        reason: String,
    },
    /// The server is older than [`MIN_SERVER_VERSION`].
    #[error(
        "nats-server {found} at {url} is too old: jetsource needs 2.12 or newer (atomic batch publish). \
         Install the pinned server with `nats/install-server.sh` (or run `make up`, which does), \
         or point NATS_SERVER_BIN / --nats-url at a newer one"
    )]
    ServerTooOld {
        /// The URL connected to.
        url: String,
        /// The version the server reported.
        found: String,
    },
}

/// How a connection authenticates and secures itself, beyond credentials in the URL (which
/// take precedence).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatsAuth {
    /// A credentials file: user JWT and nkey seed (`NATS_CREDS`, `--creds`).
    pub creds: Option<PathBuf>,
    /// A file holding an nkey seed (`NATS_NKEY`).
    pub nkey: Option<PathBuf>,
    /// User and password (`NATS_USER`, `NATS_PASSWORD`).
    pub user: Option<(String, String)>,
    /// A token (`NATS_TOKEN`).
    pub token: Option<String>,
    /// CA certificates to trust, in PEM; TLS is then required (`NATS_CA`).
    pub ca: Option<PathBuf>,
    /// A client certificate and its key, in PEM (`NATS_CERT`, `NATS_KEY`).
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// A credentials file given on the command line (`--creds`), for every connection of the
/// process; set once, before connecting.
static CREDS: OnceLock<PathBuf> = OnceLock::new();

/// Uses the credentials file `path` for every connection this process makes (`--creds`).
pub fn use_credentials_file(path: PathBuf) {
    let _ = CREDS.set(path);
}

impl NatsAuth {
    /// The standard NATS variables (and `--creds`, when given).
    ///
    /// # Errors
    /// [`ConnectError::Credentials`] when `NATS_CERT` comes without `NATS_KEY` or the other
    /// way round, or `NATS_USER` without `NATS_PASSWORD`.
    pub fn from_env() -> Result<Self, ConnectError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let both = |a: &str, b: &str| match (var(a), var(b)) {
            (Some(x), Some(y)) => Ok(Some((x, y))),
            (None, None) => Ok(None),
            (Some(_), None) => Err(missing(a, b)),
            (None, Some(_)) => Err(missing(b, a)),
        };
        Ok(Self {
            creds: CREDS.get().cloned().or_else(|| var("NATS_CREDS").map(PathBuf::from)),
            nkey: var("NATS_NKEY").map(PathBuf::from),
            user: both("NATS_USER", "NATS_PASSWORD")?,
            token: var("NATS_TOKEN"),
            ca: var("NATS_CA").map(PathBuf::from),
            client_cert: both("NATS_CERT", "NATS_KEY")?.map(|(c, k)| (PathBuf::from(c), PathBuf::from(k))),
        })
    }

    async fn options(&self, url_user: Option<(String, String)>) -> Result<ConnectOptions, ConnectError> {
        let unusable =
            |setting: String, e: std::io::Error| ConnectError::Credentials { setting, reason: e.to_string() };
        let mut options = match (url_user, &self.creds, &self.nkey, &self.user, &self.token) {
            (Some((user, password)), ..) => ConnectOptions::with_user_and_password(user, password),
            (None, Some(creds), ..) => ConnectOptions::with_credentials_file(creds)
                .await
                .map_err(|e| unusable(format!("NATS_CREDS {}", creds.display()), e))?,
            (None, None, Some(nkey), ..) => {
                let seed =
                    std::fs::read_to_string(nkey).map_err(|e| unusable(format!("NATS_NKEY {}", nkey.display()), e))?;
                ConnectOptions::with_nkey(seed.trim().to_owned())
            }
            (None, None, None, Some((user, password)), _) => {
                ConnectOptions::with_user_and_password(user.clone(), password.clone())
            }
            (None, None, None, None, Some(token)) => ConnectOptions::with_token(token.clone()),
            _ => ConnectOptions::new(),
        };
        for (setting, path) in [("NATS_CA", self.ca.as_ref())]
            .into_iter()
            .chain(self.client_cert.iter().flat_map(|(c, k)| [("NATS_CERT", Some(c)), ("NATS_KEY", Some(k))]))
        {
            if let Some(path) = path {
                std::fs::metadata(path).map_err(|e| unusable(format!("{setting} {}", path.display()), e))?;
            }
        }
        if let Some(ca) = &self.ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let Some((cert, key)) = &self.client_cert {
            options = options.add_client_certificate(cert.clone(), key.clone()).require_tls(true);
        }
        Ok(options)
    }
}

fn missing(given: &str, needed: &str) -> ConnectError {
    ConnectError::Credentials { setting: given.to_owned(), reason: format!("{needed} is needed with it") }
}

/// Connects to `url` (comma-separated for a cluster) with `name` as the connection name,
/// authenticated as the URL or the standard NATS variables say ([`NatsAuth::from_env`]), and
/// checks the server version.
///
/// # Errors
/// [`ConnectError::Unreachable`], [`ConnectError::Credentials`] or
/// [`ConnectError::ServerTooOld`].
pub async fn connect(url: &str, name: &str) -> Result<Client, ConnectError> {
    connect_with(url, name, &NatsAuth::from_env()?).await
}

/// [`connect`] with explicit credentials and TLS settings instead of the environment's.
///
/// # Errors
/// As [`connect`].
pub async fn connect_with(url: &str, name: &str, auth: &NatsAuth) -> Result<Client, ConnectError> {
    let addrs = server_addrs(url)?;
    // Credentials in the URL (`nats://user:password@host:4222`) authenticate the connection.
    let url_user = addrs.iter().find(|a| a.has_user_pass()).map(|addr| {
        (percent_decode(addr.username().unwrap_or_default()), percent_decode(addr.password().unwrap_or_default()))
    });
    let options = auth.options(url_user).await?;
    let client = options
        .name(name)
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None)
        .connect(addrs)
        .await
        .map_err(|e| ConnectError::Unreachable { url: redact(url), reason: e.to_string() })?;
    check_server_version(url, &client.server_info().version)?;
    Ok(client)
}

/// Splits a comma-separated server list (`nats://a:4222,nats://b:4222`).
/// `%XX` escapes of a URL's user information decoded (a malformed escape stays as written).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The URL(s) with any password replaced by `***`, for messages and logs.
pub fn redact(url: &str) -> String {
    url.split(',')
        .map(|one| match (one.find("://"), one.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                let userinfo = &one[scheme + 3..at];
                match userinfo.split_once(':') {
                    Some((user, _)) => format!("{}{user}:***{}", &one[..scheme + 3], &one[at..]),
                    None => one.to_owned(),
                }
            }
            _ => one.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn server_addrs(url: &str) -> Result<Vec<async_nats::ServerAddr>, ConnectError> {
    url.split(',')
        .map(|one| {
            one.trim()
                .parse()
                .map_err(|e: std::io::Error| ConnectError::Unreachable { url: redact(url), reason: e.to_string() })
        })
        .collect()
}

/// Refuses a server version older than [`MIN_SERVER_VERSION`].
///
/// # Errors
/// [`ConnectError::ServerTooOld`] naming the version found.
pub fn check_server_version(url: &str, found: &str) -> Result<(), ConnectError> {
    let too_old = || ConnectError::ServerTooOld { url: redact(url), found: found.to_owned() };
    let core = found.trim_start_matches('v').split(['-', '+']).next().unwrap_or_default();
    let mut parts = core.split('.').map(|p| p.parse::<u64>());
    let version = match (parts.next(), parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor)), patch) => (major, minor, patch.and_then(Result::ok).unwrap_or(0)),
        _ => return Err(too_old()),
    };
    if version < MIN_SERVER_VERSION { Err(too_old()) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_percent_decoded() {
        assert_eq!(percent_decode("p%40ss%3Aw0rd"), "p@ss:w0rd");
        assert_eq!(percent_decode("plain"), "plain");
        assert_eq!(percent_decode("bad%zz"), "bad%zz");
    }

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(redact("nats://stock:s3cret@nats:4222"), "nats://stock:***@nats:4222");
        assert_eq!(redact("nats://a:b@n1:4222,nats://n2:4222"), "nats://a:***@n1:4222,nats://n2:4222");
        assert_eq!(redact("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(redact("nats://token@host:4222"), "nats://token@host:4222");
    }

    #[test]
    fn refuses_servers_before_2_12_and_names_the_version() {
        let err = check_server_version("nats://x", "2.9.25").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("2.9.25") && text.contains("install-server.sh"), "{text}");
        assert!(check_server_version("nats://x", "2.11.9").is_err());
        assert!(check_server_version("nats://x", "garbage").is_err());
    }

    #[test]
    fn accepts_2_12_and_newer_including_prereleases() {
        for v in ["2.12.0", "2.15.1", "v2.16.0-beta.1", "3.0.0"] {
            assert!(check_server_version("nats://x", v).is_ok(), "{v}");
        }
    }
}
