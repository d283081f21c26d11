//! idis-harness: an IDIS / DLMS-COSEM conformance and interoperability test harness.
//!
//! The layers, from the bytes up (the dependency arrows point one way):
//!
//! * [`wire`]: pure codecs (HDLC, TCP/UDP wrapper, A-XDR, APDUs, OBIS). No I/O.
//! * [`security`]: security suite 0 (AES-GCM-128, HLS-GMAC, AES key wrap, counters). No I/O.
//! * [`keys`]: key custody (the escrow file of generated keys).
//! * [`profile`]: device profiles (what the harness knows of a device under test).
//! * [`transport`]: tokio drivers for the wrapper, HDLC, serial and mode E; the target syntax.
//! * [`suite`]: the YAML suite model and loader.
//! * [`runner`]: runs cases against targets and emits events.
//! * [`report`]: console, JUnit and trace writers, consumers of runner events.
#![forbid(unsafe_code)]
#![warn(missing_debug_implementations)]

pub mod client;
pub mod keys;
pub mod profile;
pub mod report;
pub mod runner;
pub mod security;
pub mod session;
pub mod sim;
pub mod suite;
pub mod transport;
pub mod wire;
