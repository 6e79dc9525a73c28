//! `[telemetry]`: where traces go (OTLP over HTTP) and which environment variable holds the
//! extra headers (an API key, Basic auth) the collector wants. Secrets only by variable name.

use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// The collector's OTLP/HTTP base URL, e.g. `http://host:4318`; traces are POSTed to
    /// `{otlp_endpoint}/v1/traces`. No traces are sent when unset.
    pub otlp_endpoint: Option<String>,
    /// The NAME of an environment variable holding extra headers, `key=value` pairs separated by
    /// commas (the form of `OTEL_EXPORTER_OTLP_HEADERS`), e.g. `Authorization=Basic …`.
    pub headers_env: Option<String>,
    /// `service.name` of the traces; default `codemill`.
    pub service_name: Option<String>,
    /// A link to a job's trace in the tracing backend, with `{trace_id}` where its id goes
    /// (e.g. `https://cloud.langfuse.com/project/P/traces/{trace_id}`): the dashboard's job
    /// page links to it.
    pub trace_url: Option<String>,
}

impl TelemetryConfig {
    /// This config, sending to `fallback` when it names no endpoint (the binary passes the
    /// standard `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub fn or_endpoint(mut self, fallback: Option<String>) -> TelemetryConfig {
        if self.otlp_endpoint.is_none() {
            self.otlp_endpoint = fallback.filter(|v| !v.trim().is_empty());
        }
        self
    }

    /// The link to the trace `trace_id` (32 hex digits), when `trace_url` is set.
    pub fn trace_link(&self, trace_id: &str) -> Option<String> {
        self.trace_url
            .as_deref()
            .map(|t| t.replace("{trace_id}", trace_id))
    }

    /// `{otlp_endpoint}/v1/traces`, when traces are wanted.
    pub fn traces_url(&self) -> Option<String> {
        let base = self.otlp_endpoint.as_deref()?.trim_end_matches('/');
        if base.ends_with("/v1/traces") {
            return Some(base.to_string());
        }
        Some(format!("{base}/v1/traces"))
    }

    pub(super) fn check(&self, file: &str) -> Result<(), ConfigError> {
        if let Some(url) = &self.otlp_endpoint
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::at(
                file,
                "telemetry.otlp_endpoint",
                format!("expected an http:// or https:// URL, got `{url}`"),
            ));
        }
        if let Some(url) = &self.trace_url
            && (!(url.starts_with("http://") || url.starts_with("https://"))
                || !url.contains("{trace_id}"))
        {
            return Err(ConfigError::at(
                file,
                "telemetry.trace_url",
                format!(
                    "expected an http(s) URL with {{trace_id}} where the trace id goes, got `{url}`"
                ),
            ));
        }
        if let Some(var) = &self.headers_env
            && var.trim().is_empty()
        {
            return Err(ConfigError::at(
                file,
                "telemetry.headers_env",
                "is empty; name the environment variable that holds the headers",
            ));
        }
        Ok(())
    }
}

/// Parses `key=value,key2=value2` (values may hold `=`; each side trimmed; values
/// percent-decoded as OTLP exporters do). An entry without `=` is an error naming it.
pub fn parse_headers(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((key, value)) = entry.split_once('=') else {
            let shown: String = entry.chars().take(20).collect();
            return Err(format!(
                "a header entry has no `=` (it starts `{shown}`); expected key=value pairs separated by commas"
            ));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err("a header entry has an empty name".into());
        }
        out.push((key.to_string(), percent_decode(value.trim())));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_traces_url_is_the_endpoint_plus_v1_traces() {
        let t = |e: &str| TelemetryConfig {
            otlp_endpoint: Some(e.into()),
            ..Default::default()
        };
        assert_eq!(
            t("http://host:4318").traces_url().as_deref(),
            Some("http://host:4318/v1/traces")
        );
        assert_eq!(
            t("https://cloud.langfuse.com/api/public/otel/")
                .traces_url()
                .as_deref(),
            Some("https://cloud.langfuse.com/api/public/otel/v1/traces")
        );
        assert_eq!(
            t("http://h/v1/traces").traces_url().as_deref(),
            Some("http://h/v1/traces")
        );
        assert_eq!(TelemetryConfig::default().traces_url(), None);
    }

    #[test]
    fn headers_are_key_value_pairs_with_percent_decoding() {
        assert_eq!(
            parse_headers("Authorization=Basic abc==, x-team = a%20b").unwrap(),
            vec![
                ("Authorization".to_string(), "Basic abc==".to_string()),
                ("x-team".to_string(), "a b".to_string())
            ]
        );
        let err = parse_headers("Authorization Basic secretvalue").unwrap_err();
        assert!(err.contains("no `=`"), "{err}");
        assert!(parse_headers("=x").is_err());
        assert_eq!(parse_headers("").unwrap(), vec![]);
    }

    #[test]
    fn a_trace_link_puts_the_id_in_the_template() {
        let t = TelemetryConfig {
            trace_url: Some("https://lf.example/project/p/traces/{trace_id}".into()),
            ..Default::default()
        };
        assert_eq!(
            t.trace_link("0192abcd").as_deref(),
            Some("https://lf.example/project/p/traces/0192abcd")
        );
        assert!(t.check("codemill.toml").is_ok());
        let bad = TelemetryConfig {
            trace_url: Some("https://lf.example/traces/".into()),
            ..Default::default()
        };
        let e = bad.check("codemill.toml").unwrap_err();
        assert!(e.to_string().contains("telemetry.trace_url"), "{e}");
    }

    #[test]
    fn a_non_http_endpoint_is_refused_by_name() {
        let t = TelemetryConfig {
            otlp_endpoint: Some("host:4318".into()),
            ..Default::default()
        };
        let e = t.check("codemill.toml").unwrap_err();
        assert!(e.to_string().contains("telemetry.otlp_endpoint"), "{e}");
    }
}
