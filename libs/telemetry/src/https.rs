//! The one outbound HTTP(S) client of a process: OTLP/HTTP export and the identity provider's
//! discovery document and keys go through it. TLS is rustls with ring (as the NATS client's);
//! servers are trusted by the system's roots plus, if given, a PEM CA file of one's own.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A connector for `http://` and `https://` URLs.
pub type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// A connector trusting the system's roots and the certificates in `ca_file` (PEM), presenting
/// `client_cert` (certificate chain and private key, PEM files) when given.
///
/// # Errors
/// A file cannot be read or holds nothing usable.
pub fn connector(ca_file: Option<&Path>, client_cert: Option<(&Path, &Path)>) -> Result<Connector, String> {
    let mut roots = rustls::RootCertStore::empty();
    // The platform's roots; one that cannot be read or parsed is skipped, as browsers do.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("CA file {}: {e}", path.display()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("CA file {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("CA file {}: no PEM certificate in it", path.display()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| format!("CA file {}: {e}", path.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let tls = match client_cert {
        None => tls.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("client certificate {}: {e}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("client key {}: {e}", key.display()))?;
            tls.with_client_auth_cert(chain, key).map_err(|e| format!("client certificate: {e}"))?
        }
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

/// `GET url` with a bounded body and time: the body of a 2xx answer.
///
/// # Errors
/// A message naming the URL and what went wrong (unreachable, status, too large, too slow).
pub async fn get(connector: &Connector, url: &str, max_bytes: usize, timeout: Duration) -> Result<Bytes, String> {
    let client: Client<Connector, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector.clone());
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: not a URL ({e})"))?;
    let request = hyper::Request::get(uri)
        .header("accept", "application/json")
        .body(Empty::new())
        .map_err(|e| format!("{url}: {e}"))?;
    let exchange = async {
        let response = client.request(request).await.map_err(|e| format!("{url}: {}", chain(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("{url}: answered {status}"));
        }
        let body = Limited::new(response.into_body(), max_bytes)
            .collect()
            .await
            .map_err(|e| format!("{url}: {e} (at most {max_bytes} bytes are read)"))?;
        Ok(body.to_bytes())
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| format!("{url}: no answer within {timeout:?}"))?
}

/// An error with its causes, as one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
