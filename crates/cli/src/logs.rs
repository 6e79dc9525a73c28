//! Log lines on stderr: plain text, or with `--log-format json` (`CODEMILL_LOG_FORMAT=json`) one
//! JSON object per line — `time`, `level`, `target`, `message`, the event's own fields, and the
//! fields of the spans it ran in: `job`, `ticket`, `trace_id` of the job, `stage` of the step.
//! What the binary says on stderr (progress, worker lines, errors) goes through the same lines,
//! so a log service reads nothing else.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// The target of what the binary says on stderr; always logged, whatever `CODEMILL_LOG` says.
pub const SAID: &str = "codemill::said";

static JSON: AtomicBool = AtomicBool::new(false);

/// Whether stderr speaks JSON lines.
pub fn json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// Start logging to stderr in `format` (`CODEMILL_LOG` filters; `warn` by default), and hand
/// spans to `traces` when given (it filters for itself, so traces do not depend on the log level).
pub fn init(json_lines: bool, traces: Option<crate::telemetry::TraceLayer>) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = match std::env::var("CODEMILL_LOG") {
        Ok(spec) if !spec.trim().is_empty() => {
            tracing_subscriber::EnvFilter::try_new(&spec).unwrap_or_else(|e| {
                crate::output::err(&format!(
                    "warning: CODEMILL_LOG={spec:?} is not a log filter ({e}); logging warnings only"
                ));
                tracing_subscriber::EnvFilter::new("warn")
            })
        }
        _ => tracing_subscriber::EnvFilter::new("warn"),
    };
    let registry = tracing_subscriber::registry().with(traces);
    if json_lines {
        let filter = match format!("{SAID}=info").parse() {
            Ok(said) => filter.add_directive(said),
            Err(_) => filter,
        };
        JSON.store(true, Ordering::Relaxed);
        registry.with(JsonLines.with_filter(filter)).init();
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    // Colours only for a person at a terminal: not in files, pipes or log services.
                    .with_ansi(
                        std::io::IsTerminal::is_terminal(&std::io::stderr())
                            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
                    )
                    .with_filter(filter),
            )
            .init();
    }
}

/// Field values as JSON.
#[derive(Default)]
struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::from(format!("{value:?}")));
    }
}

/// The JSON lines layer: span fields kept with each span, merged into every event under it.
struct JsonLines;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for JsonLines {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        // `otel.*` fields name and classify a span for the trace exporter; not log content.
        fields.0.retain(|k, _| !k.starts_with("otel."));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<Fields>()
        {
            values.record(fields);
            fields.0.retain(|k, _| !k.starts_with("otel."));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert(
            "time".into(),
            Value::from(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        );
        line.insert(
            "level".into(),
            Value::from(meta.level().as_str().to_ascii_lowercase()),
        );
        line.insert("target".into(), Value::from(meta.target()));
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<Fields>() {
                    for (k, v) in &fields.0 {
                        line.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        line.extend(fields.0);
        // Every line has a message; some libraries' events name theirs differently.
        if !line.contains_key("message") {
            let message = line
                .get("summary")
                .cloned()
                .unwrap_or_else(|| Value::from(meta.name()));
            line.insert("message".into(), message);
        }
        if let Ok(mut text) = serde_json::to_string(&Value::Object(line)) {
            text.push('\n');
            // Nowhere left to report a failure to write a log line.
            let _ = std::io::stderr().lock().write_all(text.as_bytes());
        }
    }
}
