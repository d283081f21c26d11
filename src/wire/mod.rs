//! Pure codecs for the bytes DLMS/COSEM puts on the wire: no I/O, no clock, no tokio.
//!
//! Each codec follows the smoltcp pattern where it helps: a checked view over
//! bytes for the raw layer (so that a conformance test can build a broken frame on
//! purpose) and a separate typed representation with `decode`/`encode`.
//! Nothing in here may panic on bytes from a device: every read goes through
//! [`Reader`], which checks lengths.

pub mod apdu;
pub mod axdr;
pub mod hdlc;
pub mod obis;
pub mod wrapper;

mod reader;
mod security_control;

pub use reader::Reader;
pub use security_control::SecurityControl;

/// Errors of the wire layer. Each names what was being decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The input ended before the field was complete.
    #[error("{what}: truncated, {need} byte(s) needed but {have} left")]
    Truncated {
        what: &'static str,
        need: usize,
        have: usize,
    },
    /// A field holds a value the encoding does not allow.
    #[error("{what}: {detail}")]
    Invalid { what: &'static str, detail: String },
    /// Nested data goes deeper than the decoder allows.
    #[error("{what}: nesting deeper than {limit} levels")]
    TooDeep { what: &'static str, limit: usize },
    /// Bytes are left over after a complete structure.
    #[error("{what}: {count} unexpected trailing byte(s)")]
    Trailing { what: &'static str, count: usize },
}

impl WireError {
    pub(crate) fn invalid(what: &'static str, detail: impl Into<String>) -> Self {
        WireError::Invalid {
            what,
            detail: detail.into(),
        }
    }
}

/// Shorthand for results of the wire layer.
pub type WireResult<T> = Result<T, WireError>;
