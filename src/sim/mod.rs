//! The simulated IDIS meter: the built-in default target and a standalone
//! simulator. A conformant meter by default, and a precisely wrong one on
//! request ([`quirks`]).
//!
//! [`meter::Meter`] is the application layer (associations, security, COSEM
//! objects), synchronous and transport-agnostic; the servers in `server` drive
//! it over the wrapper, HDLC and serial links; [`standalone`] is
//! `idis-harness simulate` (one meter or a fleet, on ports or a serial port),
//! and [`state`] keeps the meters' memory across restarts.

pub mod config;
pub mod meter;
pub mod objects;
pub mod quirks;
pub mod server;
pub mod standalone;
pub mod state;

pub use config::MeterConfig;
pub use meter::{Connection, Meter};
pub use quirks::{Quirk, Quirks};

#[cfg(test)]
mod tests;
