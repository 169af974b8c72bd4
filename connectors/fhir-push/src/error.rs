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
    /// The exception class name for dead-letter headers (`__connect.errors.exception.class.name`).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Error::BadNotification(_) => "fhir_push::BadNotification",
            Error::UnsupportedFocus(_) => "fhir_push::UnsupportedFocus",
            Error::Unmappable(_) => "fhir_push::Unmappable",
            Error::Athena(_) => "fhir_push::Athena",
            Error::Core(_) => "fhir_push::Core",
            Error::Io(_) => "fhir_push::Io",
        }
    }
}

/// The metric label of a class.
pub fn class_label(c: ErrorClass) -> &'static str {
    match c {
        ErrorClass::Retriable => "retriable",
        ErrorClass::RateLimited { .. } => "rate_limited",
        ErrorClass::Permanent => "permanent",
        ErrorClass::Fatal => "fatal",
    }
}
