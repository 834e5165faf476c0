//! Connecting to NATS, refusing servers too old for atomic batch publish.

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

/// Connects to `url` (comma-separated for a cluster) with `name` as the connection name, and
/// checks the server version.
///
/// # Errors
/// [`ConnectError::Unreachable`] or [`ConnectError::ServerTooOld`].
pub async fn connect(url: &str, name: &str) -> Result<Client, ConnectError> {
    let addrs = server_addrs(url)?;
    // Credentials in the URL (`nats://user:password@host:4222`) authenticate the connection.
    let options = match addrs.iter().find(|a| a.has_user_pass()) {
        Some(addr) => ConnectOptions::with_user_and_password(
            percent_decode(addr.username().unwrap_or_default()),
            percent_decode(addr.password().unwrap_or_default()),
        ),
        None => ConnectOptions::new(),
    };
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
