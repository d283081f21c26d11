//! Test suites: the YAML model and its loader.

pub mod model;
