//! Shared fixtures for the cross-crate tests in `tests/tests/`.

pub mod fixtures;
pub mod scenarios;
