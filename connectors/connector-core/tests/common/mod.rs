//! Helpers shared by this crate's integration tests.

pub mod cases;
pub mod toml_fuzz;
