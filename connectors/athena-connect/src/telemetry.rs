//! The telemetry events of the supervisor (see [`connector_core::emit`]); the state gauge uses
//! the generic [`connector_core::emit::ConnectorStateChanged`]. Also the observer that turns the
//! athena client's request events into the generic athena events.

use athena_client::{ClientEvent, RequestObserver};
use connector_core::emit::{
    AthenaQuotaReported, AthenaRequestCompleted, AthenaThrottled, InternalEvent,
};
use connector_core::metrics::{ConnectorLabels, global};

/// Installed on the process's athena client by `run`: every attempt, throttle and quota header
/// becomes an [`AthenaRequestCompleted`], [`AthenaThrottled`] or [`AthenaQuotaReported`].
#[derive(Debug, Clone, Copy, Default)]
pub struct MetricsObserver;

impl RequestObserver for MetricsObserver {
    fn observe(&self, event: ClientEvent<'_>) {
        match event {
            ClientEvent::Request {
                method,
                route,
                status_class,
                elapsed,
            } => AthenaRequestCompleted {
                method,
                route,
                status_class,
                elapsed,
            }
            .emit(),
            ClientEvent::Throttled => AthenaThrottled.emit(),
            ClientEvent::QuotaRemaining(remaining) => AthenaQuotaReported { remaining }.emit(),
        }
    }
}

/// The supervisor starts a failed connector again after its back-off
/// (`connector_restarts_total{connector}`).
#[derive(Debug, Clone, Copy)]
pub struct ConnectorRestarted<'a> {
    /// Connector name.
    pub connector: &'a str,
    /// Failures in a row before this restart.
    pub attempt: u32,
}

impl InternalEvent for ConnectorRestarted<'_> {
    fn emit(self) {
        global()
            .connector_restarts
            .get_or_create(&ConnectorLabels::of(self.connector))
            .inc();
        tracing::info!(
            connector = self.connector,
            attempt = self.attempt,
            "Restarting connector."
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(series: &str) -> f64 {
        global().sample(series)
    }

    #[test]
    fn client_events_reach_the_athena_metrics() {
        let labels =
            "{method=\"GET\",route=\"/v1/{practiceid}/observer-test\",status_class=\"2xx\"}";
        let count = format!("athena_connect_athena_requests_total{labels}");
        let hist = format!("athena_connect_athena_request_seconds_count{labels}");
        let throttled = "athena_connect_athena_throttled_total";
        let (c0, h0, t0) = (sample(&count), sample(&hist), sample(throttled));
        let o = MetricsObserver;
        o.observe(ClientEvent::Request {
            method: "GET",
            route: "/v1/{practiceid}/observer-test",
            status_class: "2xx",
            elapsed: std::time::Duration::from_millis(3),
        });
        o.observe(ClientEvent::Throttled);
        // No other test of this crate's lib touches the quota gauge.
        o.observe(ClientEvent::QuotaRemaining(31337));
        assert_eq!(sample(&count) - c0, 1.0);
        assert_eq!(sample(&hist) - h0, 1.0);
        assert_eq!(sample(throttled) - t0, 1.0);
        assert_eq!(sample("athena_connect_athena_quota_remaining"), 31337.0);
    }

    #[test]
    fn restart_is_counted() {
        let value = || sample("athena_connect_connector_restarts_total{connector=\"tel-restart\"}");
        let before = value();
        ConnectorRestarted {
            connector: "tel-restart",
            attempt: 2,
        }
        .emit();
        assert_eq!(value() - before, 1.0);
    }
}
