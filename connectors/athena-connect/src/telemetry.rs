//! The telemetry events of the supervisor (see [`connector_core::emit`]); the state gauge uses
//! the generic [`connector_core::emit::ConnectorStateChanged`].

use connector_core::emit::InternalEvent;
use connector_core::metrics::{ConnectorLabels, global};

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
            .get_or_create(&ConnectorLabels {
                connector: self.connector.to_string(),
            })
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

    #[test]
    fn restart_is_counted() {
        let series = "athena_connect_connector_restarts_total{connector=\"tel-restart\"} ";
        let value = || {
            global()
                .render()
                .lines()
                .find_map(|l| l.strip_prefix(series)?.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let before = value();
        ConnectorRestarted {
            connector: "tel-restart",
            attempt: 2,
        }
        .emit();
        assert_eq!(value() - before, 1.0);
    }
}
