//! Security suite 0 of the Green Book (DLMS UA 1000-2, 9.2): AES-GCM-128 with a
//! 12-byte tag, HLS-GMAC authentication, AES-128 key wrap (RFC 3394), the
//! security control byte and invocation counters. No I/O, no clock.
//!
//! Keys are held in [`Key`], whose `Debug` and `Display` never show key bytes,
//! so a key cannot reach a log, a trace or a report by accident.

mod cipher;
mod counter;
mod gcm;
mod keys;
mod keywrap;

/// The security control byte lives with the codecs; re-exported here.
pub use crate::wire::SecurityControl;
pub use cipher::{
    GcmKey, Protected, hls_gmac, protect, protect_append, protect_with_key, protected_len,
    unprotect, unprotect_vec, unprotect_with_key, verify_hls_gmac,
};
pub use counter::{CounterCheck, ReplayGuard};
pub use keys::{Key, KeyParseError, SystemTitle};
pub use keywrap::{unwrap_key, wrap_key};

/// Errors of the security layer, named for what the peer did wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecurityError {
    /// The GCM tag did not verify: wrong key, wrong system title or counter, or a tampered APDU.
    #[error(
        "authentication tag does not verify (wrong key, system title or counter, or tampered data)"
    )]
    TagMismatch,
    /// The security control byte names a suite this harness does not implement.
    #[error("security suite {0} is not supported (only suite 0)")]
    UnsupportedSuite(u8),
    /// The protected content is too short for SC, IC and (when authenticated) the tag.
    #[error("protected content too short: {len} byte(s), need at least {need}")]
    TooShort { len: usize, need: usize },
    /// A message longer than AES-GCM allows under one IV (64 GiB).
    #[error("message of {len} bytes is longer than AES-GCM allows under one IV")]
    TooLong { len: usize },
    /// A security control byte with neither authentication nor encryption where one is required.
    #[error("security control 0x{0:02X} requests neither authentication nor encryption")]
    NoProtection(u8),
    /// A key of the wrong length.
    #[error("key must be {expected} bytes, got {got}")]
    KeyLength { expected: usize, got: usize },
    /// RFC 3394 integrity check failed when unwrapping a key.
    #[error(
        "key unwrap failed: integrity check value does not match (wrong KEK or corrupted data)"
    )]
    UnwrapFailed,
}
