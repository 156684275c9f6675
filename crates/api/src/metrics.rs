//! Prometheus metrics, one registry per application (so tests that start several servers in
//! one process do not share counters).

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder};

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub graphql_errors: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("taxbridge".into()), None)
            .unwrap_or_else(|_| unreachable!("a fixed, valid prefix"));
        let http_requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route and status"),
            &["route", "status"],
        )
        .unwrap_or_else(|_| unreachable!("fixed, valid metric names"));
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["route"],
        )
        .unwrap_or_else(|_| unreachable!("fixed, valid metric names"));
        let graphql_errors = IntCounterVec::new(
            Opts::new("graphql_errors_total", "GraphQL errors by extensions.code"),
            &["code"],
        )
        .unwrap_or_else(|_| unreachable!("fixed, valid metric names"));
        for collector in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_duration.clone()),
            Box::new(graphql_errors.clone()),
        ] {
            registry
                .register(collector)
                .unwrap_or_else(|_| unreachable!("each metric is registered once"));
        }
        Self {
            registry,
            http_requests,
            http_duration,
            graphql_errors,
        }
    }

    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}
