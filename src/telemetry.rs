//! Logs (human or JSON), traces (OpenTelemetry over OTLP, off unless configured) and
//! the Prometheus recorder. Trace context crosses Kafka in W3C `traceparent` headers
//! so one trace follows a message from the WebSocket request to every push.

use std::sync::OnceLock;

use bytes::Bytes;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::config::{LogFormat, TelemetryConfig};

/// Kept to flush spans on exit.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Logs go to stderr; stdout is for what a command prints (addresses, tokens).
/// Must run inside the tokio runtime when OTLP is on (the exporter uses it).
pub(crate) fn init(cfg: &TelemetryConfig, pod: &str) -> anyhow::Result<()> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.log_level));
    let max_level = filter.max_level_hint();
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match cfg.log_format {
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
        LogFormat::Human => fmt.boxed(),
    };
    let otel = match &cfg.otlp_endpoint {
        Some(endpoint) => {
            opentelemetry::global::set_text_map_propagator(
                opentelemetry_sdk::propagation::TraceContextPropagator::new(),
            );
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()?;
            let resource = opentelemetry_sdk::Resource::builder()
                .with_service_name(cfg.service_name.clone())
                .with_attribute(opentelemetry::KeyValue::new(
                    "service.instance.id",
                    pod.to_owned(),
                ))
                .build();
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                    cfg.sample_ratio,
                ))))
                .with_resource(resource)
                .build();
            let tracer = provider.tracer("ferry");
            let _ = PROVIDER.set(provider);
            // Spans only for ferry's own work: the drivers' internals stay out of traces.
            Some(
                tracing_opentelemetry::layer()
                    .with_tracer(tracer)
                    .with_filter(EnvFilter::new("ferry=info")),
            )
        }
        None => None,
    };
    let _ = tracing_subscriber::registry()
        .with(filter.and_then(fmt))
        .with(otel)
        .try_init();
    // The WebSocket layer logs through the `log` crate at trace level several times per
    // frame, and `try_init` left `log`'s own level check open: every one of those calls
    // went through the subscriber's filter (`LogTracer::log`, 3.7% of an idle pod's CPU
    // samples at 15k sockets). `log` now drops what the filter would.
    log::set_max_level(log_level(max_level));
    Ok(())
}

/// The `log` crate's level for the filter's most verbose one (None: anything).
fn log_level(max: Option<tracing::level_filters::LevelFilter>) -> log::LevelFilter {
    use tracing::Level;
    match max.map(|m| m.into_level()) {
        None => log::LevelFilter::Trace,
        Some(None) => log::LevelFilter::Off,
        Some(Some(Level::ERROR)) => log::LevelFilter::Error,
        Some(Some(Level::WARN)) => log::LevelFilter::Warn,
        Some(Some(Level::INFO)) => log::LevelFilter::Info,
        Some(Some(Level::DEBUG)) => log::LevelFilter::Debug,
        Some(Some(_)) => log::LevelFilter::Trace,
    }
}

/// Whether spans are exported (OTLP configured). Per-recipient spans are made only
/// then: without an exporter they are per-delivery work that nobody reads.
pub(crate) fn exporting() -> bool {
    PROVIDER.get().is_some()
}

/// Flushes buffered spans (on exit).
pub(crate) fn shutdown() {
    if let Some(p) = PROVIDER.get() {
        let _ = p.shutdown();
    }
}

pub(crate) fn init_metrics() -> Option<PrometheusHandle> {
    let buckets = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    ];
    PrometheusBuilder::new()
        .set_buckets(&buckets)
        .ok()?
        .install_recorder()
        .ok()
}

struct HeaderInjector<'a>(&'a mut Vec<(String, Bytes)>);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.retain(|(k, _)| k != key);
        self.0.push((key.to_owned(), Bytes::from(value)));
    }
}

struct HeaderExtractor<'a>(&'a [(String, Bytes)]);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).collect()
    }
}

/// Writes the current span's context into record headers.
pub(crate) fn inject(headers: &mut Vec<(String, Bytes)>) {
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut HeaderInjector(headers))
    });
}

/// Makes `span` a child of the context carried in record headers.
pub(crate) fn follow(span: &tracing::Span, headers: &[(String, Bytes)]) {
    let cx =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    let _ = span.set_parent(cx);
}

#[cfg(test)]
mod tests {
    use tracing::level_filters::LevelFilter;

    #[test]
    fn the_log_crate_drops_what_the_filter_would() {
        for (filter, log) in [
            (Some(LevelFilter::WARN), log::LevelFilter::Warn),
            (Some(LevelFilter::INFO), log::LevelFilter::Info),
            (Some(LevelFilter::OFF), log::LevelFilter::Off),
            (Some(LevelFilter::TRACE), log::LevelFilter::Trace),
            (None, log::LevelFilter::Trace),
        ] {
            assert_eq!(super::log_level(filter), log, "{filter:?}");
        }
    }
}
