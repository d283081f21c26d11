//! Transports (tokio): the TCP and UDP wrapper, HDLC over TCP and serial, the
//! IEC 62056-21 mode E handshake, and the target syntax.

pub mod link;
pub mod open;
pub mod port;
pub mod serial;
pub mod target;
