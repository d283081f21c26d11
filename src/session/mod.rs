//! Sans-IO protocol state machines shared by the client and the simulator: the
//! HDLC link (both sides), the client association (AARQ/AARE, HLS-GMAC pass 3
//! and 4, ciphered services, release) and the ciphering context with its
//! invocation counters. No tokio, no clock: time is passed in.

pub mod association;
pub mod cipher;
pub mod hdlc;
