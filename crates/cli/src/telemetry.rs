//! OpenTelemetry traces over OTLP/HTTP (protobuf), when `[telemetry] otlp_endpoint` is set: the
//! spans the runner, gateway and tracker clients open become one trace per job (its id is the
//! job's id, whichever process drives it), exported in batches from the SDK's own thread with a
//! blocking client, and flushed before the command exits.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use codemill_core::config::{TelemetryConfig, parse_telemetry_headers};
use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SdkTracerProvider};
use tracing_subscriber::Layer;
use tracing_subscriber::registry::Registry;

/// The standard variable naming the collector, used when `[telemetry]` names none.
pub const OTLP_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// The exporter of this process; [`Traces::shutdown`] sends what is left.
pub struct Traces {
    provider: SdkTracerProvider,
}

/// The layer that turns spans into OpenTelemetry spans.
pub type TraceLayer = Box<dyn Layer<Registry> + Send + Sync>;

impl Traces {
    /// The exporter and its layer for `config`, or `None` when no endpoint is set. A header
    /// variable that is named but unset or malformed is an error naming it.
    pub fn start(config: &TelemetryConfig) -> Result<Option<(Traces, TraceLayer)>> {
        let Some(url) = config.traces_url() else {
            return Ok(None);
        };
        let mut headers = HashMap::new();
        if let Some(var) = &config.headers_env {
            let text = std::env::var(var).map_err(|_| {
                anyhow!(
                    "telemetry.headers_env names {var}, but that environment variable is not set"
                )
            })?;
            for (k, v) in parse_telemetry_headers(&text)
                .map_err(|e| anyhow!("telemetry: the headers in {var}: {e}"))?
            {
                headers.insert(k, v);
            }
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(url.clone())
            .with_headers(headers)
            .with_timeout(Duration::from_secs(10))
            .build()
            .with_context(|| format!("telemetry: cannot set up the OTLP exporter for {url}"))?;
        let name = config
            .service_name
            .clone()
            .unwrap_or_else(|| "codemill".into());
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_id_generator(JobTraceIds::default())
            .with_resource(
                Resource::builder()
                    .with_service_name(name)
                    .with_attribute(opentelemetry::KeyValue::new(
                        "service.version",
                        env!("CARGO_PKG_VERSION"),
                    ))
                    .build(),
            )
            .build();
        let tracer = provider.tracer("codemill");
        let layer = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_filter(only_codemill())
            .boxed();
        Ok(Some((Traces { provider }, layer)))
    }

    /// Sends every span still buffered and stops the exporter; called outside the async
    /// runtime, before the process exits.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            crate::output::err(&format!("telemetry: could not send the last traces: {e}"));
        }
    }
}

/// Spans and events of codemill's own crates at info and above, whatever `CODEMILL_LOG` says.
fn only_codemill() -> tracing_subscriber::filter::Targets {
    tracing_subscriber::filter::Targets::new()
        .with_target("codemill", tracing::Level::INFO)
        .with_target("codemill_runner", tracing::Level::INFO)
        .with_target("codemill_gateway", tracing::Level::INFO)
        .with_target("codemill_trackers", tracing::Level::INFO)
        .with_target("codemill_server", tracing::Level::INFO)
        .with_target("codemill_notify", tracing::Level::INFO)
}

/// Random ids, except that a job's root span takes the job's id as its trace id
/// (`codemill_runner::telemetry::requested_trace_id`).
#[derive(Debug, Default)]
struct JobTraceIds(RandomIdGenerator);

impl IdGenerator for JobTraceIds {
    fn new_trace_id(&self) -> TraceId {
        match codemill_runner::telemetry::requested_trace_id() {
            Some(id) if id != 0 => TraceId::from(id),
            _ => self.0.new_trace_id(),
        }
    }

    fn new_span_id(&self) -> SpanId {
        self.0.new_span_id()
    }
}
