//! The ciphering context of one association, used by both sides: it protects
//! outgoing xDLMS APDUs as glo- (service-specific) or general-glo-ciphering
//! APDUs, and unprotects incoming ones, checking the peer's invocation counter
//! (Green Book 9.2.7.2; dlms-facts.md 1.2-1.3, 4.1).

use crate::profile::{Ciphering, Protection};
use crate::security::{
    CounterCheck, Key, ReplayGuard, SecurityControl, SecurityError, SystemTitle, protect, unprotect,
};
use crate::wire::apdu::{self, Apdu, CipheredApdu, GeneralCiphering};

/// Why an incoming protected APDU was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    #[error("{0}")]
    Security(#[from] SecurityError),
    /// The invocation counter is not above the last accepted one.
    #[error(
        "invocation counter {received} rejected: the lowest acceptable value is {lowest_acceptable}"
    )]
    Replayed {
        received: u32,
        lowest_acceptable: u32,
    },
    /// The peer's counter reached 0xFFFFFFFF before.
    #[error("invocation counter {0} rejected: the counter is exhausted for this key")]
    Exhausted(u32),
    /// The APDU is protected less than the association requires.
    #[error("{got} does not meet the required {required} protection")]
    Insufficient {
        got: SecurityControl,
        required: &'static str,
    },
    /// The APDU is not a ciphered APDU.
    #[error("expected a ciphered APDU, got {0}")]
    NotCiphered(String),
    /// The peer's system title is not known (no AP title in the AARQ/AARE).
    #[error("the peer's system title is unknown, so its APDUs cannot be deciphered")]
    NoPeerTitle,
    /// A general-glo-ciphering system title that is not 8 bytes.
    #[error("general-glo-ciphering carries a system title of {0} byte(s), not 8")]
    BadSystemTitle(usize),
    /// The deciphered content is not an APDU.
    #[error("the deciphered content does not decode: {0}")]
    Garbled(String),
    /// Our own counter would wrap.
    #[error("our invocation counter is exhausted (0xFFFFFFFF used); a new key is needed")]
    OwnCounterExhausted,
}

/// What was inside a protected APDU.
#[derive(Debug, Clone, PartialEq)]
pub struct Unprotected {
    pub apdu: Apdu,
    /// The plain bytes.
    pub plain: Vec<u8>,
    pub sc: SecurityControl,
    pub ic: u32,
    /// `glo-get-response`, `general-glo-ciphering`, ...
    pub carrier: &'static str,
    /// The system title carried by general-glo-ciphering.
    pub system_title: Option<SystemTitle>,
}

/// Keys and counters of one side of a ciphered association.
#[derive(Debug, Clone)]
pub struct CipherContext {
    pub own_title: SystemTitle,
    /// The peer's system title, from the AARQ calling-AP-title or the AARE responding-AP-title.
    pub peer_title: Option<SystemTitle>,
    pub encryption_key: Key,
    pub authentication_key: Key,
    /// Protection applied to what we send, and required of what we receive.
    pub protection: Protection,
    pub ciphering: Ciphering,
    pub suite: u8,
    /// The invocation counter our next protected APDU uses.
    pub next_ic: u32,
    /// Checks the peer's counters.
    pub peer_guard: ReplayGuard,
    /// Whether our counter has been used at 0xFFFFFFFF.
    own_exhausted: bool,
}

impl CipherContext {
    pub fn new(
        own_title: SystemTitle,
        encryption_key: Key,
        authentication_key: Key,
        protection: Protection,
        ciphering: Ciphering,
        next_ic: u32,
    ) -> Self {
        CipherContext {
            own_title,
            peer_title: None,
            encryption_key,
            authentication_key,
            protection,
            ciphering,
            suite: 0,
            next_ic,
            peer_guard: ReplayGuard::new(),
            own_exhausted: false,
        }
    }

    /// The security control byte for our protection level (authenticated and
    /// encrypted when the level is `None`, e.g. for the glo-initiate-request).
    pub fn control(&self) -> SecurityControl {
        self.protection
            .control(self.suite)
            .unwrap_or(SecurityControl::new(true, true, self.suite))
    }

    /// Takes the next invocation counter.
    pub fn take_ic(&mut self) -> Result<u32, CipherError> {
        if self.own_exhausted {
            return Err(CipherError::OwnCounterExhausted);
        }
        let ic = self.next_ic;
        match ic.checked_add(1) {
            Some(n) => self.next_ic = n,
            None => self.own_exhausted = true,
        }
        Ok(ic)
    }

    /// Protects a plain APDU with our protection level and the next counter.
    pub fn protect(&mut self, plain: &[u8]) -> Result<Vec<u8>, CipherError> {
        let ic = self.take_ic()?;
        let sc = self.control();
        self.protect_with(plain, sc, ic, self.ciphering)
    }

    /// Protects with explicit values; does not touch our counter. The raw way
    /// for negative tests (a replayed counter, a weaker SC, the other ciphering).
    pub fn protect_with(
        &self,
        plain: &[u8],
        sc: SecurityControl,
        ic: u32,
        ciphering: Ciphering,
    ) -> Result<Vec<u8>, CipherError> {
        let content = protect(
            sc,
            &self.own_title,
            ic,
            &self.encryption_key,
            &self.authentication_key,
            plain,
        )?;
        let plain_tag = plain.first().copied().unwrap_or(0);
        let wrapped = match ciphering {
            Ciphering::General => Apdu::GeneralGloCiphering(GeneralCiphering {
                system_title: self.own_title.0.to_vec(),
                content,
            }),
            Ciphering::ServiceSpecific => match apdu::ciphered_tag_for(plain_tag, false) {
                Some(tag) => Apdu::Ciphered(CipheredApdu { tag, content }),
                // No glo- tag for this APDU (e.g. an exception-response): general ciphering.
                None => Apdu::GeneralGloCiphering(GeneralCiphering {
                    system_title: self.own_title.0.to_vec(),
                    content,
                }),
            },
        };
        Ok(wrapped.encode())
    }

    /// Unprotects a ciphered APDU from the peer: verifies, deciphers, checks the
    /// counter against the replay guard, and checks the protection level.
    pub fn unprotect(&mut self, apdu: &Apdu) -> Result<Unprotected, CipherError> {
        let u = self.open(apdu)?;
        match self.peer_guard.check(u.ic) {
            CounterCheck::Accepted => {}
            CounterCheck::Replayed { lowest_acceptable } => {
                return Err(CipherError::Replayed {
                    received: u.ic,
                    lowest_acceptable,
                });
            }
            CounterCheck::Exhausted => return Err(CipherError::Exhausted(u.ic)),
        }
        Ok(u)
    }

    /// Verifies and deciphers without checking or moving the counter, and
    /// without checking the protection level.
    pub fn open(&self, apdu: &Apdu) -> Result<Unprotected, CipherError> {
        let (content, title, carrier): (&[u8], Option<SystemTitle>, &'static str) = match apdu {
            Apdu::Ciphered(c) => (&c.content, None, c.kind()),
            Apdu::GeneralGloCiphering(g) | Apdu::GeneralDedCiphering(g) => {
                let st = SystemTitle::from_slice(&g.system_title)
                    .ok_or(CipherError::BadSystemTitle(g.system_title.len()))?;
                let carrier = if matches!(apdu, Apdu::GeneralGloCiphering(_)) {
                    "general-glo-ciphering"
                } else {
                    "general-ded-ciphering"
                };
                (&g.content, Some(st), carrier)
            }
            other => return Err(CipherError::NotCiphered(other.name().to_owned())),
        };
        let sender = title.or(self.peer_title).ok_or(CipherError::NoPeerTitle)?;
        let p = unprotect(
            content,
            &sender,
            &self.encryption_key,
            &self.authentication_key,
        )?;
        let inner = Apdu::decode(&p.apdu).map_err(|e| CipherError::Garbled(e.to_string()))?;
        Ok(Unprotected {
            apdu: inner,
            plain: p.apdu,
            sc: p.sc,
            ic: p.ic,
            carrier,
            system_title: title,
        })
    }

    /// Checks that `sc` gives at least the protection `required`.
    pub fn meets(sc: SecurityControl, required: Protection) -> Result<(), CipherError> {
        let ok = match required {
            Protection::None => true,
            Protection::Authenticated => sc.authenticated(),
            Protection::Encrypted => sc.encrypted(),
            Protection::AuthenticatedEncrypted => sc.authenticated() && sc.encrypted(),
        };
        if ok {
            Ok(())
        } else {
            Err(CipherError::Insufficient {
                got: sc,
                required: required.name(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(ciphering: Ciphering) -> (CipherContext, CipherContext) {
        let mut client = CipherContext::new(
            SystemTitle::EXAMPLE_CLIENT,
            Key::EXAMPLE_EK,
            Key::EXAMPLE_AK,
            Protection::AuthenticatedEncrypted,
            ciphering,
            1,
        );
        let mut server = CipherContext::new(
            SystemTitle::EXAMPLE_SERVER,
            Key::EXAMPLE_EK,
            Key::EXAMPLE_AK,
            Protection::AuthenticatedEncrypted,
            ciphering,
            0x01234567,
        );
        client.peer_title = Some(server.own_title);
        server.peer_title = Some(client.own_title);
        (client, server)
    }

    const GET_CLOCK: &str = "C0010000080000010000FF0200";

    #[test]
    fn service_specific_matches_the_green_book_vector() {
        // dlms-facts.md 1.5: the server-titled SC 0x30 glo-get-request.
        let (_, server) = pair(Ciphering::ServiceSpecific);
        let out = server
            .protect_with(
                &hex::decode(GET_CLOCK).unwrap(),
                SecurityControl::AUTH_ENC,
                0x01234567,
                Ciphering::ServiceSpecific,
            )
            .unwrap();
        assert_eq!(
            hex::encode_upper(out),
            "C81E3001234567411312FF935A47566827C467BC7D825C3BE4A77C3FCC056B6B"
        );
    }

    #[test]
    fn round_trips_both_cipherings_and_rejects_replays() {
        for c in [Ciphering::ServiceSpecific, Ciphering::General] {
            let (mut client, mut server) = pair(c);
            let plain = hex::decode(GET_CLOCK).unwrap();
            let req = client.protect(&plain).unwrap();
            let apdu = Apdu::decode(&req).unwrap();
            let u = server.unprotect(&apdu).unwrap();
            assert_eq!(u.plain, plain);
            assert_eq!(u.ic, 1);
            assert!(matches!(u.apdu, Apdu::GetRequest(_)));
            // The exact same bytes again: rejected.
            assert_eq!(
                server.unprotect(&apdu),
                Err(CipherError::Replayed {
                    received: 1,
                    lowest_acceptable: 2
                })
            );
        }
    }

    #[test]
    fn rejects_weaker_protection_than_required() {
        assert!(
            CipherContext::meets(SecurityControl::AUTH, Protection::AuthenticatedEncrypted)
                .is_err()
        );
        assert!(CipherContext::meets(SecurityControl::AUTH_ENC, Protection::Authenticated).is_ok());
        assert!(CipherContext::meets(SecurityControl::ENC, Protection::None).is_ok());
    }

    #[test]
    fn own_counter_never_wraps() {
        let (mut client, _) = pair(Ciphering::ServiceSpecific);
        client.next_ic = u32::MAX;
        assert_eq!(client.take_ic(), Ok(u32::MAX));
        assert_eq!(client.take_ic(), Err(CipherError::OwnCounterExhausted));
    }
}
