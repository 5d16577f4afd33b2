//! The `[telemetry]` section: log format and level, trace export and sampling.

use serde::{Deserialize, Serialize};

use super::{Invalid, invalid};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum LogFormat {
    Human,
    Json,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct TelemetryConfig {
    pub(crate) log_format: LogFormat,
    /// tracing-subscriber filter, e.g. `info,ferry=debug`.
    pub(crate) log_level: String,
    /// OTLP gRPC endpoint for traces (e.g. http://jaeger:4317); none: tracing off.
    pub(crate) otlp_endpoint: Option<String>,
    /// Fraction of new traces sampled, 0.0..=1.0; traces continued from a sampled
    /// parent are always kept.
    pub(crate) sample_ratio: f64,
    /// service.name of the spans.
    pub(crate) service_name: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Human,
            log_level: "info".to_owned(),
            otlp_endpoint: None,
            sample_ratio: 1.0,
            service_name: "ferry".to_owned(),
        }
    }
}

impl TelemetryConfig {
    pub(super) fn validate(&self, bad: &mut Vec<Invalid>) {
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            bad.push(invalid("telemetry.sample_ratio", "between 0.0 and 1.0"));
        }
    }
}
