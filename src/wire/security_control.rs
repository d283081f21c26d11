//! The security control byte of protected APDUs (Green Book 9.2.7.2.3; dlms-facts.md 1.1).

use std::fmt;

/// The security control byte (Green Book 9.2.7.2.3):
/// `b7 compression | b6 key set (0 unicast, 1 broadcast) | b5 encryption | b4 authentication | b3..b0 suite`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecurityControl(pub u8);

impl SecurityControl {
    pub const AUTHENTICATION: u8 = 0x10;
    pub const ENCRYPTION: u8 = 0x20;
    pub const BROADCAST_KEY: u8 = 0x40;
    pub const COMPRESSION: u8 = 0x80;

    /// Authenticated only, suite 0 (0x10).
    pub const AUTH: SecurityControl = SecurityControl(0x10);
    /// Encrypted only, suite 0 (0x20).
    pub const ENC: SecurityControl = SecurityControl(0x20);
    /// Authenticated and encrypted, suite 0 (0x30).
    pub const AUTH_ENC: SecurityControl = SecurityControl(0x30);

    pub fn new(authenticated: bool, encrypted: bool, suite: u8) -> Self {
        let mut b = suite & 0x0F;
        if authenticated {
            b |= Self::AUTHENTICATION;
        }
        if encrypted {
            b |= Self::ENCRYPTION;
        }
        SecurityControl(b)
    }
    pub fn suite(self) -> u8 {
        self.0 & 0x0F
    }
    pub fn authenticated(self) -> bool {
        self.0 & Self::AUTHENTICATION != 0
    }
    pub fn encrypted(self) -> bool {
        self.0 & Self::ENCRYPTION != 0
    }
    pub fn broadcast(self) -> bool {
        self.0 & Self::BROADCAST_KEY != 0
    }
    pub fn compressed(self) -> bool {
        self.0 & Self::COMPRESSION != 0
    }
}

impl fmt::Debug for SecurityControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecurityControl(0x{:02X})", self.0)
    }
}

impl fmt::Display for SecurityControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match (self.authenticated(), self.encrypted()) {
            (true, true) => "authenticated+encrypted",
            (true, false) => "authenticated",
            (false, true) => "encrypted",
            (false, false) => "none",
        };
        write!(f, "SC 0x{:02X} ({what}, suite {}", self.0, self.suite())?;
        if self.broadcast() {
            write!(f, ", broadcast key")?;
        }
        if self.compressed() {
            write!(f, ", compressed")?;
        }
        write!(f, ")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_control_bits_match_the_green_book_layout() {
        // Layout per dlms-facts.md 1.1 (u9n SecurityControlField masks).
        let sc = SecurityControl(0x30);
        assert!(sc.authenticated() && sc.encrypted() && sc.suite() == 0);
        assert_eq!(SecurityControl::new(true, false, 0), SecurityControl(0x10));
        assert_eq!(SecurityControl::new(false, true, 1), SecurityControl(0x21));
        let b = SecurityControl(0xF2);
        assert!(b.broadcast() && b.compressed() && b.suite() == 2);
        assert_eq!(
            SecurityControl(0x30).to_string(),
            "SC 0x30 (authenticated+encrypted, suite 0)"
        );
    }
}
