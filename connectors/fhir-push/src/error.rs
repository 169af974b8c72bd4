//! This crate's errors and the one place they are classified.

use connector_core::{CoreError, ErrorClass};

/// Errors of the FHIR push connector.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request body is not a notification bundle we understand (no payload echoed).
    #[error("not a subscription notification: {0}")]
    BadNotification(String),
    /// A notification's focus cannot be mapped to a readable resource.
    #[error("unsupported notification focus: {0}")]
    UnsupportedFocus(String),
    /// A FHIR resource its typed mapper rejects (a field US Core requires is missing).
    #[error("unmappable resource: {0}")]
    Unmappable(#[from] athena_contracts::events::fhir::FhirMapError),
    /// An athena call failed.
    #[error("athena: {0}")]
    Athena(#[from] athena_client::Error),
    /// Kafka, the registry or configuration failed.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The receiver's listener failed.
    #[error("receiver I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// The one place errors are classified.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::BadNotification(_) | Error::UnsupportedFocus(_) => ErrorClass::Permanent,
            Error::Unmappable(e) => e.class(),
            // A focus this app may not read (a topic whose resource type the token has no scope
            // for, e.g. a notification for a topic nobody subscribed to) is a problem of that
            // one record, not of the connector: it is dead-lettered with athena's answer (which
            // names the missing scope) and can be replayed once the scope is granted. Stopping
            // the inflater would let one notification halt every other one.
            Error::Athena(athena_client::Error::Forbidden { .. }) => ErrorClass::Permanent,
            Error::Athena(e) => match e.class() {
                athena_client::ErrorClass::Retriable => ErrorClass::Retriable,
                athena_client::ErrorClass::RateLimited { retry_after } => {
                    ErrorClass::RateLimited { retry_after }
                }
                // Reads are never ambiguous; treat it as transient.
                athena_client::ErrorClass::Ambiguous => ErrorClass::Retriable,
                athena_client::ErrorClass::Permanent => ErrorClass::Permanent,
                athena_client::ErrorClass::Fatal => ErrorClass::Fatal,
            },
            Error::Core(e) => e.class(),
            Error::Io(_) => ErrorClass::Fatal,
        }
    }
}

impl Error {
    /// Why a notification is dead-lettered because of this error: the failing stage, the class
    /// and a short error name (`fhir_push::UnsupportedFocus`, `athena.NotFound`, ...), and the message.
    pub fn dlq_reason(&self, stage: connector_core::dlq::Stage) -> connector_core::dlq::Reason {
        use connector_core::dlq::Reason;
        let name = match self {
            Error::BadNotification(_) => "fhir_push::BadNotification",
            Error::UnsupportedFocus(_) => "fhir_push::UnsupportedFocus",
            Error::Unmappable(_) => "fhir_push::Unmappable",
            Error::Athena(e) => e.name(),
            Error::Core(e) => return Reason::from_core(e, stage),
            Error::Io(_) => "fhir_push::Io",
        };
        Reason::new(stage, self.class(), name, self)
    }
}

/// The metric label of a class.
pub fn class_label(c: ErrorClass) -> &'static str {
    c.label()
}

#[cfg(test)]
mod tests {
    use super::*;
    use connector_core::dlq::Stage;

    #[test]
    fn dead_letter_reasons_name_the_real_error() {
        let gone = Error::Athena(athena_client::Error::NotFound {
            message: "The patient does not exist.".into(),
        });
        let r = gone.dlq_reason(Stage::Task);
        assert_eq!(r.error, "athena.NotFound");
        assert_eq!(r.class, ErrorClass::Permanent);
        assert_eq!(r.stage.as_str(), "TASK_PUT");
        let bad = Error::BadNotification("no entries".into()).dlq_reason(Stage::Task);
        assert_eq!(bad.error, "fhir_push::BadNotification");
        let decode = Error::Core(CoreError::Decode("x".into())).dlq_reason(Stage::Task);
        assert_eq!(decode.error, "AvroDecodeError");
    }

    #[test]
    fn a_focus_without_scope_is_dead_lettered_not_fatal() {
        let forbidden = Error::Athena(athena_client::Error::Forbidden {
            status: 403,
            reason: "insufficient_scope system/Encounter.read".into(),
        });
        // The client alone calls it fatal (a whole credential problem) ...
        assert_eq!(
            athena_client::Error::Forbidden {
                status: 403,
                reason: String::new()
            }
            .class(),
            athena_client::ErrorClass::Fatal
        );
        // ... but for one notification's focus it is that record's problem.
        assert_eq!(forbidden.class(), ErrorClass::Permanent);
        let r = forbidden.dlq_reason(Stage::Task);
        assert_eq!(r.error, "athena.Forbidden");
        assert_eq!(r.class, ErrorClass::Permanent);
    }
}
