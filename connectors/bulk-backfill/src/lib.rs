//! Stub (being written).
