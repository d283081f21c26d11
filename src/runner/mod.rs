//! Runs cases against targets and emits [`event::Event`]s; prints nothing.

pub mod event;
