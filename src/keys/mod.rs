//! Key custody: where keys live outside the device profile and the meter.
//! Beside `security` (which does no I/O): this module writes files.
//!
//! * [`escrow`]: the escrow key file, where every key the harness generates is
//!   written before it is sent to a meter.

pub mod escrow;

pub use escrow::{DepositRequest, Deposited, Escrow, EscrowError, key_id_name};
