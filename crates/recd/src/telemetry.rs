//! Logs, and the optional OpenTelemetry export of the request spans.
//!
//! Logs go to stderr: plain text (colour only on a terminal) or one JSON object per line
//! (`RECD_LOG_FORMAT=json`), filtered by `RECD_LOG` (default `info`). Built with the cargo
//! feature `otel` and run with `OTEL_EXPORTER_OTLP_ENDPOINT` set (e.g.
//! `http://collector:4318`), every span — one per HTTP request, with its request id — is
//! also exported over OTLP/HTTP (batched, on its own thread; the standard `OTEL_*`
//! variables tune it). Without the feature the binary carries none of that code.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Keeps the exporter alive; dropping it flushes what is still batched.
#[derive(Default)]
pub struct Guard {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        #[cfg(feature = "otel")]
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("recd: OpenTelemetry export did not shut down cleanly: {e}");
        }
    }
}

/// Installs the global subscriber; keep the guard until the process ends.
pub fn init() -> Guard {
    let filter = EnvFilter::try_from_env("RECD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only on a terminal: a log written to a file must not carry escape codes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let fmt = if std::env::var("RECD_LOG_FORMAT").is_ok_and(|f| f == "json") {
        fmt.json().boxed()
    } else {
        fmt.boxed()
    };
    let registry = tracing_subscriber::registry().with(filter).with(fmt);
    #[cfg(feature = "otel")]
    {
        let (layer, guard) = match otel::layer() {
            Some((layer, provider)) => (
                Some(layer),
                Guard {
                    provider: Some(provider),
                },
            ),
            None => (None, Guard::default()),
        };
        registry.with(layer).init();
        guard
    }
    #[cfg(not(feature = "otel"))]
    {
        registry.init();
        Guard::default()
    }
}

#[cfg(feature = "otel")]
mod otel {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::SpanExporter;
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing::Subscriber;
    use tracing_subscriber::registry::LookupSpan;

    /// The export layer and its provider, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
    pub fn layer<S>() -> Option<(
        tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>,
        SdkTracerProvider,
    )>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT")?;
        let exporter = match SpanExporter::builder().with_http().build() {
            Ok(e) => e,
            Err(e) => {
                eprintln!("recd: OpenTelemetry export off: {e}");
                return None;
            }
        };
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(Resource::builder().with_service_name("recd").build())
            .build();
        let tracer = provider.tracer("recd");
        Some((tracing_opentelemetry::layer().with_tracer(tracer), provider))
    }
}
