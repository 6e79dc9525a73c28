//! An OpenTelemetry collector's OTLP/HTTP receiver on 127.0.0.1: `POST …/v1/traces` with an
//! `ExportTraceServiceRequest` in protobuf (`application/x-protobuf`), decoded with the
//! protocol's own generated types and kept as flat [`ReceivedSpan`]s, so tests assert the span
//! tree and attributes. Answers as the specification says: 200 with an empty
//! `ExportTraceServiceResponse`, 400 for a body that does not decode, 415 for JSON.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use prost::Message;
use serde_json::Value;

use super::serve;

/// One span as received: ids in lowercase hex, attributes as JSON values.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// OTLP `SpanKind` (1 internal, 2 server, 3 client).
    pub kind: i32,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub attributes: BTreeMap<String, Value>,
    /// The resource's attributes (`service.name`, …).
    pub resource: BTreeMap<String, Value>,
}

impl ReceivedSpan {
    pub fn attr(&self, key: &str) -> Option<&Value> {
        self.attributes.get(key)
    }
    pub fn attr_str(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).and_then(Value::as_str)
    }
}

/// One export request: where it went and its headers (names lowercased).
#[derive(Debug, Clone)]
pub struct ReceivedExport {
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub spans: usize,
}

#[derive(Default)]
struct Shared {
    spans: Mutex<Vec<ReceivedSpan>>,
    exports: Mutex<Vec<ReceivedExport>>,
}

pub struct FakeOtlp {
    shared: Arc<Shared>,
    url: String,
    handle: tokio::task::JoinHandle<()>,
}

impl Drop for FakeOtlp {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

impl FakeOtlp {
    pub async fn start() -> std::io::Result<FakeOtlp> {
        let shared = Arc::new(Shared::default());
        let router = axum::Router::new()
            .fallback(receive)
            .with_state(shared.clone());
        let (addr, handle) = serve(router).await?;
        Ok(FakeOtlp {
            shared,
            url: format!("http://{addr}"),
            handle,
        })
    }

    /// `http://127.0.0.1:PORT`: what `[telemetry] otlp_endpoint` is set to.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.shared
            .spans
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    pub fn exports(&self) -> Vec<ReceivedExport> {
        self.shared
            .exports
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default()
    }
}

async fn receive(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !uri.path().ends_with("/v1/traces") {
        return StatusCode::NOT_FOUND.into_response();
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type != "application/x-protobuf" {
        return StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response();
    }
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let mut received = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| attributes(r.attributes))
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                received.push(ReceivedSpan {
                    trace_id: hex::encode(&span.trace_id),
                    span_id: hex::encode(&span.span_id),
                    parent_span_id: hex::encode(&span.parent_span_id),
                    name: span.name,
                    kind: span.kind,
                    start_unix_nanos: span.start_time_unix_nano,
                    end_unix_nanos: span.end_time_unix_nano,
                    attributes: attributes(span.attributes),
                    resource: resource.clone(),
                });
            }
        }
    }
    if let Ok(mut exports) = shared.exports.lock() {
        exports.push(ReceivedExport {
            path: uri.path().to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_ascii_lowercase(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            spans: received.len(),
        });
    }
    if let Ok(mut spans) = shared.spans.lock() {
        spans.extend(received);
    }
    (
        StatusCode::OK,
        [("content-type", "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
        .into_response()
}

fn attributes(
    list: Vec<opentelemetry_proto::tonic::common::v1::KeyValue>,
) -> BTreeMap<String, Value> {
    list.into_iter()
        .map(|kv| (kv.key, kv.value.map(value).unwrap_or(Value::Null)))
        .collect()
}

fn value(v: AnyValue) -> Value {
    match v.value {
        Some(any_value::Value::StringValue(s)) => Value::from(s),
        Some(any_value::Value::BoolValue(b)) => Value::from(b),
        Some(any_value::Value::IntValue(i)) => Value::from(i),
        Some(any_value::Value::DoubleValue(d)) => Value::from(d),
        Some(any_value::Value::ArrayValue(a)) => {
            Value::Array(a.values.into_iter().map(value).collect())
        }
        Some(any_value::Value::BytesValue(b)) => Value::from(hex::encode(b)),
        Some(other) => Value::from(format!("{other:?}")),
        None => Value::Null,
    }
}
