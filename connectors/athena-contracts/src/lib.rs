//! The Avro contracts of athena-connect and the one mapping from athena to events.
//!
//! The `.avsc` files in `schemas/` are the source of truth (consumers in other languages read
//! them); each struct here has exactly the same field names, `["null", T]` unions are
//! `Option<T>`, and logical types sit behind [`TimestampMillis`] and [`Date`]. Every connector
//! that writes or reads an event or a command result depends on this crate and on no other
//! connector, so one athena record state gives one event (id and payload) whichever path saw it:
//! the changed-data source, push inflation, the push gap catch-up or the bulk backfill.
//!
//! # Layout
//! - [`time`]: the Avro `timestamp-millis` and `date` newtypes and [`parse_athena_time`], the
//!   only parser of athena's timestamps (US Eastern `MM/DD/YYYY HH:MM:SS` and ISO 8601).
//! - [`envelope`]: [`EventEnvelope`], [`SourceKind`] and the Kafka headers every event record
//!   carries ([`envelope::event_headers`]).
//! - [`events`]: one small file per entity: its Rust mirror and its field mapping
//!   ([`events::FeedEvent::build`] from an athena record; `patient_from_fhir` and
//!   `resource_from_fhir` from FHIR), plus the [`events::Rec`] lenient record accessor, the
//!   per-feed table ([`events::spec`], [`events::visit`]) and [`events::feed_name`].
//! - [`events::fhir`]: the typed FHIR clinical events' shared part (the event shape
//!   [`events::fhir::FhirChanged`], the [`events::fhir::FhirPayload`] and
//!   [`events::fhir::FhirEvent`] traits, the typed [`events::fhir::FhirMapError`], the common
//!   `Coding`/`Quantity`/`Attachment` records and the resource accessor); one file per resource
//!   type (`observations`, `conditions`, ...: payload and mapper) and one line per type in the
//!   FHIR table ([`events::fhir_visit`], [`events::FHIR_RESOURCE_TYPES`]), mapped by
//!   [`mapping::typed_from_fhir`] and encoded by [`mapping::encode_typed_fhir`].
//! - [`mapping`]: what every path shares around the payload: version markers, event ids, the
//!   envelope, `original`, and the entry points each path calls.
//! - [`commands`]: every command payload's mirror (one file per command, data only; the
//!   write-back sink holds what each does) and [`CommandResult`] (one per command).
//!
//! Field mapping sits in each entity's file rather than in a `mapping/` tree so that a new
//! event type is one file (mirror and mapping together) plus one line in the feed table (or,
//! for a typed FHIR event, one line `module => EventType;` in the FHIR table, which also
//! declares the module; the schema and its example live in `schemas/`); the
//! envelope and id derivation are in one place ([`mapping`]) because they must not differ
//! between entities or paths.
//!
//! This crate depends on `athena-client` for its model only: [`Feed`](athena_client::api::changed::Feed),
//! the lenient helpers for athena's loosely typed JSON, and the FHIR id rules. It does no I/O.

pub mod commands;
pub mod envelope;
pub mod events;
pub mod mapping;
pub mod time;

pub use commands::{BookAppointment, CommandError, CommandResult, CommandStatus};
pub use envelope::{EventEnvelope, SourceKind};
pub use events::appointments::{Appointment, AppointmentChanged};
pub use events::fhir_resources::FhirResourceChanged;
pub use events::patients::{Patient, PatientChanged};
pub use time::{Date, TimestampMillis, parse_athena_time};
