//! Telemetry as events: one small struct per thing that happens (a feed polled, events
//! produced, a command finished, a message dead-lettered, a connector's state changed), whose
//! [`InternalEvent::emit`] logs it and counts it in one place, the way vector's
//! `internal_events` do. Call sites say *what happened* (`FeedPolled { .. }.emit()`), never which
//! metric family or label set to touch, so a metric cannot be forgotten on one path and every
//! log line about the same happening reads the same.
//!
//! Rules for an event: fields are ids, names from fixed sets and counts (no PHI, never a
//! payload); labels come from [`crate::metrics`]; the log level follows the telemetry rule
//! (`error` an operator must act, `warn` recovered, `info`/`debug` otherwise).

/// Something that happened, logged and counted by [`InternalEvent::emit`].
pub trait InternalEvent: Sized {
    /// Logs the event and updates its metrics.
    fn emit(self);
}

/// Emits `event` (for call sites that read better as a function call).
pub fn emit(event: impl InternalEvent) {
    event.emit();
}

mod events;

pub use events::{
    AthenaQuotaReported, AthenaRequestCompleted, AthenaThrottled, ConnectionShed,
    ConnectorStateChanged, DeadLettered, ErrorRecorded, EventsProduced, OffsetCommitted,
    ShedReason,
};
