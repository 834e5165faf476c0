//! W3C trace context over NATS headers: continue the caller's trace in a span, and write the
//! span's context into outgoing requests and stored events.

use async_nats::HeaderMap;
use jetsource::TraceContext;
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(async_nats::HeaderValue::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_ref()).collect()
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if !value.is_empty() {
            self.0.insert(key, value);
        }
    }
}

/// Makes `span` continue the trace whose `traceparent` the headers carry (a new trace when
/// there is none). Call it right after creating the span, before it is entered.
pub fn set_parent_from_headers(span: &tracing::Span, headers: Option<&HeaderMap>) {
    let Some(headers) = headers else { return };
    if headers.get("traceparent").is_none() {
        return;
    }
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    let _ = span.set_parent(parent);
}

/// Makes `span` continue the trace of a stored [`TraceContext`] (an event's headers).
pub fn set_parent_from_trace(span: &tracing::Span, trace: &TraceContext) {
    let mut headers = HeaderMap::new();
    if let Some(parent) = &trace.traceparent {
        headers.insert("traceparent", parent.as_str());
    }
    if let Some(state) = &trace.tracestate {
        headers.insert("tracestate", state.as_str());
    }
    set_parent_from_headers(span, Some(&headers));
}

/// Writes `span`'s trace context (`traceparent`, `tracestate`) into outgoing headers.
pub fn inject(span: &tracing::Span, headers: &mut HeaderMap) {
    let cx = span.context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut HeaderInjector(headers)));
}

/// `span`'s trace context as stored with events. Empty when tracing is not initialised.
pub fn trace_context(span: &tracing::Span) -> TraceContext {
    let cx = span.context();
    let otel = cx.span();
    let sc = otel.span_context();
    if !sc.is_valid() {
        return TraceContext::default();
    }
    let state = sc.trace_state().header();
    TraceContext {
        traceparent: Some(format!("00-{}-{}-{:02x}", sc.trace_id(), sc.span_id(), sc.trace_flags().to_u8())),
        tracestate: (!state.is_empty()).then_some(state),
    }
}

/// `span`'s trace id (32 hex digits), when it has one.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let otel = cx.span();
    let sc = otel.span_context();
    sc.is_valid().then(|| sc.trace_id().to_string())
}
