//! OTLP exporters as the OpenTelemetry SDKs configure them: the `OTEL_EXPORTER_OTLP_*`
//! variables (per signal first, then general), gRPC or HTTP (protobuf or JSON), `https://`
//! endpoints with the system's roots or `OTEL_EXPORTER_OTLP_CERTIFICATE`, client certificates,
//! and `OTEL_TRACES_EXPORTER` / `OTEL_LOGS_EXPORTER`. A value this build cannot honour is an
//! error at start that names it, never telemetry silently dropped.

use std::path::PathBuf;
use std::time::Duration;

use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig, Identity};
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _, WithTonicConfig as _};

use crate::TelemetryError;
use crate::https;

/// A signal exported over OTLP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    Traces,
    Logs,
}

impl Signal {
    fn upper(self) -> &'static str {
        match self {
            Signal::Traces => "TRACES",
            Signal::Logs => "LOGS",
        }
    }
}

/// How one signal is exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Export {
    pub(crate) protocol: Transport,
    /// The endpoint is `https://`.
    pub(crate) tls: bool,
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) client_cert: Option<(PathBuf, PathBuf)>,
}

/// The wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Grpc,
    Http(Protocol),
}

/// An environment lookup (the process's, or a test's table).
pub(crate) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, blank values as unset.
pub(crate) fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// `OTEL_EXPORTER_OTLP_<SIGNAL>_<name>`, else `OTEL_EXPORTER_OTLP_<name>`.
fn setting(env: Env<'_>, signal: Signal, name: &str) -> Option<String> {
    env(&format!("OTEL_EXPORTER_OTLP_{}_{name}", signal.upper())).or_else(|| env(&format!("OTEL_EXPORTER_OTLP_{name}")))
}

/// Whether `signal` is exported, and how; `None` when it is not.
///
/// Traces are exported when an endpoint is set or `OTEL_TRACES_EXPORTER=otlp`; logs only when
/// `OTEL_LOGS_EXPORTER=otlp` (they always go to stdout and the `LOGS` stream).
pub(crate) fn plan(env: Env<'_>, signal: Signal) -> Result<Option<Export>, TelemetryError> {
    let selector = match signal {
        Signal::Traces => "OTEL_TRACES_EXPORTER",
        Signal::Logs => "OTEL_LOGS_EXPORTER",
    };
    let endpoint = setting(env, signal, "ENDPOINT");
    let wanted = match env(selector).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None => signal == Signal::Traces && endpoint.is_some(),
        Some("otlp") => true,
        Some("none") => false,
        Some(other) => {
            return Err(TelemetryError::Exporter(format!(
                "{selector}={other:?}: this build exports over OTLP only; use otlp or none"
            )));
        }
    };
    if !wanted {
        return Ok(None);
    }
    let protocol = match setting(env, signal, "PROTOCOL").as_deref().map(str::trim) {
        None | Some("http/protobuf") => Transport::Http(Protocol::HttpBinary),
        Some("http/json") => Transport::Http(Protocol::HttpJson),
        Some("grpc") => Transport::Grpc,
        Some(other) => {
            return Err(TelemetryError::Exporter(format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL={other:?} is not a protocol; use grpc, http/protobuf or http/json"
            )));
        }
    };
    let scheme = endpoint.as_deref().map(|e| e.trim().to_ascii_lowercase());
    if let Some(scheme) = &scheme
        && !scheme.starts_with("http://")
        && !scheme.starts_with("https://")
    {
        return Err(TelemetryError::Exporter(format!(
            "endpoint {:?} must start with http:// or https://",
            endpoint.unwrap_or_default()
        )));
    }
    let tls = scheme.is_some_and(|s| s.starts_with("https://"));
    let path = |name: &str| setting(env, signal, name).map(PathBuf::from);
    let client_cert = match (path("CLIENT_CERTIFICATE"), path("CLIENT_KEY")) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => {
            return Err(TelemetryError::Exporter(
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY go together".into(),
            ));
        }
    };
    Ok(Some(Export { protocol, tls, ca_file: path("CERTIFICATE"), client_cert }))
}

/// The other standard variables this build honours only in part: a value it cannot carry out
/// is an error naming it.
pub(crate) fn check_others(env: Env<'_>) -> Result<(), TelemetryError> {
    match env("OTEL_METRICS_EXPORTER").map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("prometheus") | Some("none") => {}
        Some(other) => {
            return Err(TelemetryError::Exporter(format!(
                "OTEL_METRICS_EXPORTER={other:?}: metrics are served for Prometheus at /metrics; this build \
                 exports no metrics over OTLP (use prometheus or none, and scrape /metrics, or let a \
                 collector's prometheus receiver do it)"
            )));
        }
    }
    if let Some(list) = env("OTEL_PROPAGATORS") {
        for propagator in list.split(',').map(|p| p.trim().to_ascii_lowercase()) {
            if !matches!(propagator.as_str(), "tracecontext" | "none" | "") {
                return Err(TelemetryError::Exporter(format!(
                    "OTEL_PROPAGATORS names {propagator:?}: this build propagates W3C tracecontext only"
                )));
            }
        }
    }
    Ok(())
}

fn read(path: &PathBuf) -> Result<Vec<u8>, TelemetryError> {
    std::fs::read(path).map_err(|e| TelemetryError::Exporter(format!("{}: {e}", path.display())))
}

/// One exporter from an OTLP exporter builder (spans and logs have no common trait for it): the
/// tonic one, with TLS for an `https://` endpoint, or the HTTP one with our client.
macro_rules! exporter {
    ($export:expr, $builder:expr) => {{
        let export = $export;
        let built = match export.protocol {
            Transport::Grpc => {
                let tonic = $builder.with_tonic().with_protocol(Protocol::Grpc);
                if export.tls { tonic.with_tls_config(export.tonic_tls()?).build() } else { tonic.build() }
            }
            Transport::Http(protocol) => {
                $builder.with_http().with_protocol(protocol).with_http_client(export.http_client()?).build()
            }
        };
        built.map_err(|e| TelemetryError::Exporter(e.to_string()))
    }};
}

impl Export {
    /// The TLS settings for gRPC: system roots, the CA file, the client certificate.
    fn tonic_tls(&self) -> Result<ClientTlsConfig, TelemetryError> {
        let mut tls = ClientTlsConfig::new().with_native_roots();
        if let Some(ca) = &self.ca_file {
            tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        if let Some((cert, key)) = &self.client_cert {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        Ok(tls)
    }

    /// The HTTP client: plain or TLS by the endpoint's scheme, trusting the CA file.
    fn http_client(&self) -> Result<opentelemetry_http::hyper::HyperClient<https::Connector>, TelemetryError> {
        let client_cert = self.client_cert.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
        let connector = https::connector(self.ca_file.as_deref(), client_cert).map_err(TelemetryError::Exporter)?;
        Ok(opentelemetry_http::hyper::HyperClient::new(connector, Duration::from_secs(10), None))
    }

    /// The span exporter.
    pub(crate) fn spans(&self) -> Result<opentelemetry_otlp::SpanExporter, TelemetryError> {
        exporter!(self, opentelemetry_otlp::SpanExporter::builder())
    }

    /// The log exporter.
    pub(crate) fn logs(&self) -> Result<opentelemetry_otlp::LogExporter, TelemetryError> {
        exporter!(self, opentelemetry_otlp::LogExporter::builder())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn plan_with(vars: &[(&str, &str)], signal: Signal) -> Result<Option<Export>, TelemetryError> {
        let table: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        plan(&move |name: &str| table.get(name).cloned(), signal)
    }

    #[test]
    fn the_sdk_variables_choose_protocol_tls_and_signals() {
        assert_eq!(plan_with(&[], Signal::Traces).unwrap(), None, "nothing set: nothing exported");
        let grpc = plan_with(
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4317"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
            Signal::Traces,
        )
        .unwrap()
        .unwrap();
        assert_eq!((grpc.protocol, grpc.tls), (Transport::Grpc, true));
        let http = plan_with(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/v1/traces")], Signal::Traces)
            .unwrap()
            .unwrap();
        assert_eq!((http.protocol, http.tls), (Transport::Http(Protocol::HttpBinary), false));
        // Logs go over OTLP only when asked, with their own protocol if set.
        assert_eq!(plan_with(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")], Signal::Logs).unwrap(), None);
        let logs = plan_with(
            &[
                ("OTEL_LOGS_EXPORTER", "otlp"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ],
            Signal::Logs,
        )
        .unwrap()
        .unwrap();
        assert_eq!(logs.protocol, Transport::Grpc);
        assert_eq!(
            plan_with(&[("OTEL_TRACES_EXPORTER", "none"), ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c")], Signal::Traces)
                .unwrap(),
            None
        );
    }

    #[test]
    fn settings_this_build_cannot_honour_are_errors_naming_them() {
        for (vars, needle) in [
            (vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift")], "thrift"),
            (vec![("OTEL_TRACES_EXPORTER", "zipkin")], "zipkin"),
            (vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")], "collector:4317"),
            (
                vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c"), ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/k.pem")],
                "CLIENT_CERTIFICATE",
            ),
        ] {
            let err = plan_with(&vars, Signal::Traces).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
        let others = |vars: &[(&str, &str)]| {
            let table: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
            check_others(&move |name: &str| table.get(name).cloned()).map_err(|e| e.to_string())
        };
        assert!(others(&[("OTEL_METRICS_EXPORTER", "prometheus"), ("OTEL_PROPAGATORS", "tracecontext")]).is_ok());
        assert!(others(&[("OTEL_METRICS_EXPORTER", "otlp")]).unwrap_err().contains("OTEL_METRICS_EXPORTER=\"otlp\""));
        assert!(others(&[("OTEL_PROPAGATORS", "tracecontext,b3")]).unwrap_err().contains("\"b3\""));
    }
}
