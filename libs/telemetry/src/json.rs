//! JSON log lines: `timestamp, level, service, instance, target, message, trace_id, span_id`
//! and the event's fields (one readable line each instead, on a terminal). The service is the nearest span's `service` field (all services can
//! share one process), else the process's own name.

use std::fmt;

use opentelemetry::trace::TraceContextExt as _;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The service name a span declared with a `service` field.
#[derive(Debug, Clone)]
pub(crate) struct ServiceName(pub(crate) String);

/// Remembers the `service` field of new spans so log lines can name their service.
pub(crate) struct ServiceFields;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for ServiceFields {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        struct Find(Option<String>);
        impl Visit for Find {
            fn record_str(&mut self, field: &Field, value: &str) {
                if field.name() == "service" {
                    self.0 = Some(value.to_owned());
                }
            }
            fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
                if field.name() == "service" {
                    self.0 = Some(format!("{value:?}").trim_matches('"').to_owned());
                }
            }
        }
        let mut find = Find(None);
        attrs.record(&mut find);
        if let (Some(name), Some(span)) = (find.0, ctx.span(id)) {
            span.extensions_mut().insert(ServiceName(name));
        }
    }
}

/// The `service` of the innermost span of `scope` that declared one.
pub(crate) fn scope_service<'a, R: LookupSpan<'a>>(
    scope: Option<tracing_subscriber::registry::Scope<'a, R>>,
) -> Option<String> {
    scope?
        .from_root()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .find_map(|span| span.extensions().get::<ServiceName>().map(|s| s.0.clone()))
}

/// Collects an event's fields into a JSON map.
pub(crate) struct Fields<'a>(pub(crate) &'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().to_owned(), value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}").into());
    }
}

/// One log record, as written to stdout and shipped to the LOGS stream.
pub(crate) fn record(
    event: &Event<'_>,
    scope_service: Option<String>,
    default_service: &str,
    instance: &str,
) -> Map<String, Value> {
    let mut out = Map::new();
    let now = OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default();
    let meta = event.metadata();
    out.insert("timestamp".into(), now.into());
    out.insert("level".into(), meta.level().as_str().to_lowercase().into());
    out.insert("service".into(), scope_service.unwrap_or_else(|| default_service.to_owned()).into());
    out.insert("instance".into(), instance.into());
    out.insert("target".into(), meta.target().into());
    let ids = opentelemetry::Context::map_current(|cx| {
        let span = cx.span();
        let sc = span.span_context();
        sc.is_valid().then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
    });
    if let Some((trace_id, span_id)) = ids {
        out.insert("trace_id".into(), trace_id.into());
        out.insert("span_id".into(), span_id.into());
    }
    let mut fields = Map::new();
    event.record(&mut Fields(&mut fields));
    out.insert("message".into(), fields.remove("message").unwrap_or(Value::String(String::new())));
    out.extend(fields);
    out
}

/// A log record as one line a person reads: `<timestamp> <LEVEL> <service> <message>
/// key=value… trace=<id>` (what `logs` prints, and stdout on a terminal).
pub fn readable(record: &Value) -> String {
    let text = |key: &str| record[key].as_str().unwrap_or_default().to_owned();
    let mut line =
        format!("{} {:5} {:10} {}", text("timestamp"), text("level").to_uppercase(), text("service"), text("message"));
    if let Some(fields) = record.as_object() {
        for (key, value) in fields {
            if matches!(
                key.as_str(),
                "timestamp" | "level" | "service" | "message" | "instance" | "target" | "trace_id" | "span_id"
            ) {
                continue;
            }
            match value.as_str() {
                Some(s) => line.push_str(&format!(" {key}={s}")),
                None => line.push_str(&format!(" {key}={value}")),
            }
        }
    }
    if let Some(trace) = record["trace_id"].as_str() {
        line.push_str(&format!(" trace={trace}"));
    }
    line
}

/// The stdout formatter: JSON lines, or [`readable`] lines.
pub(crate) struct JsonLines {
    pub(crate) service: String,
    pub(crate) instance: String,
    pub(crate) readable: bool,
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let line = Value::Object(record(event, scope_service(ctx.event_scope()), &self.service, &self.instance));
        if self.readable { writeln!(writer, "{}", readable(&line)) } else { writeln!(writer, "{line}") }
    }
}
