//! The worker's Prometheus series, registered in the registry `/metrics` renders.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct WorkerMetrics {
    /// Finished downloads by outcome (`success`, `error`).
    pub downloads: IntCounterVec,
    /// Bytes stored by successful downloads.
    pub download_bytes: IntCounter,
    /// Failed download attempts by `metadata.error.code` (retried ones included).
    pub download_failures: IntCounterVec,
}

impl WorkerMetrics {
    /// The series, registered in `registry` (series already there are reused).
    pub fn new(registry: &Registry) -> Self {
        let downloads = IntCounterVec::new(
            Opts::new("downloads_total", "Finished artifact downloads by outcome"),
            &["outcome"],
        )
        .unwrap_or_else(|_| unreachable!("fixed, valid metric names"));
        let download_bytes = IntCounter::new(
            "download_bytes_total",
            "Bytes stored by successful artifact downloads",
        )
        .unwrap_or_else(|_| unreachable!("fixed, valid metric names"));
        let download_failures = IntCounterVec::new(
            Opts::new(
                "download_failures_total",
                "Failed download attempts by error code",
            ),
            &["code"],
        )
        .unwrap_or_else(|_| unreachable!("fixed, valid metric names"));
        let _ = registry.register(Box::new(downloads.clone()));
        let _ = registry.register(Box::new(download_bytes.clone()));
        let _ = registry.register(Box::new(download_failures.clone()));
        Self {
            downloads,
            download_bytes,
            download_failures,
        }
    }
}
