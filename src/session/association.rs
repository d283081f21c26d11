//! The client side of an application association (Green Book 9.3, ACSE + xDLMS
//! initiate; HLS-GMAC pass 3 and 4, dlms-facts.md 2.5), sans-IO.
//!
//! States are types named for what they wait for: [`ExpectAare`], then
//! [`ExpectHlsReply`] for HLS, then [`Associated`]. A transition consumes the
//! old state. Every field of the AARQ comes from an [`AssociationRequest`], so a
//! negative test can change any one of them.

use crate::profile::{Ciphering, ClientProfile, Mechanism, Protection};
use crate::security::{Key, ReplayGuard, SecurityControl, SystemTitle, hls_gmac, verify_hls_gmac};
use crate::session::cipher::{CipherContext, CipherError};
use crate::wire::WireError;
use crate::wire::apdu::{
    Aare, Aarq, AcseDiagnostic, ActionRequest, ActionResponse, ActionResult, Apdu, AppContext,
    ConfirmedServiceError, Conformance, ExceptionResponse, GetDataResult, InitiateRequest,
    InitiateResponse, MethodDescriptor, Rlrq,
};
use crate::wire::axdr::Data;
use crate::wire::obis::Obis;

/// Errors of the association layer, named for what the peer did.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the device sent bytes that do not decode as an APDU: {0}")]
    Wire(#[from] WireError),
    #[error("{0}")]
    Cipher(#[from] CipherError),
    #[error("expected {expected}, got {got}")]
    Unexpected { expected: &'static str, got: String },
    #[error("the association needs a {0}, and the profile gives none")]
    MissingKey(&'static str),
    #[error("the meter's f(CtoS) does not verify: {0}")]
    ServerAuthentication(String),
    #[error("the AARE is malformed: {0}")]
    BadAare(String),
}

/// Everything that goes into an association attempt.
#[derive(Debug, Clone)]
pub struct AssociationRequest {
    pub client_sap: u16,
    pub mechanism: Mechanism,
    pub protection: Protection,
    pub ciphering: Ciphering,
    pub context: AppContext,
    /// Raw protocol-version bit string content; `None` leaves the field out.
    pub protocol_version: Option<Vec<u8>>,
    /// Our system title, used for protection (IV).
    pub system_title: SystemTitle,
    /// What goes into calling-AP-title; by default the system title when ciphering or HLS.
    pub calling_ap_title: Option<Vec<u8>>,
    pub encryption_key: Option<Key>,
    pub authentication_key: Option<Key>,
    pub password: Option<Vec<u8>>,
    /// Client-to-server challenge (HLS).
    pub challenge: Vec<u8>,
    pub dlms_version: u8,
    pub max_pdu_size: u16,
    pub conformance: u32,
    pub dedicated_key: Option<Key>,
    /// The invocation counter of our first protected APDU.
    pub invocation_counter: u32,
    /// Protect the glo-initiate-request with this counter instead of the next one.
    pub initiate_counter: Option<u32>,
    /// Send a wrong f(StoC) in pass 3.
    pub wrong_challenge_reply: bool,
    /// The lowest invocation counter acceptable from the meter (carried across
    /// associations, so that a meter restarting its counter is caught).
    pub server_guard: Option<ReplayGuard>,
    /// Refuse protected APDUs from the meter whose counter did not grow
    /// (default); off, the counters are only watched (the harness's monitors judge them).
    pub check_server_counter: bool,
}

impl AssociationRequest {
    /// The request a device profile's client makes, with a given challenge and counter.
    pub fn from_profile(c: &ClientProfile, challenge: Vec<u8>, invocation_counter: u32) -> Self {
        let ciphered = c.protection.is_ciphered();
        AssociationRequest {
            client_sap: c.sap,
            mechanism: c.mechanism,
            protection: c.protection,
            ciphering: c.ciphering,
            context: if ciphered {
                AppContext::LnCipher
            } else {
                AppContext::LnNoCipher
            },
            protocol_version: None,
            system_title: c.system_title,
            calling_ap_title: None,
            encryption_key: c.encryption_key.clone(),
            authentication_key: c.authentication_key.clone(),
            password: c.password.clone(),
            challenge,
            dlms_version: 6,
            max_pdu_size: c.max_pdu_size,
            conformance: c.conformance,
            dedicated_key: None,
            invocation_counter,
            initiate_counter: None,
            wrong_challenge_reply: false,
            server_guard: None,
            check_server_counter: true,
        }
    }

    fn needs_keys(&self) -> bool {
        self.protection.is_ciphered() || self.mechanism == Mechanism::HlsGmac
    }

    fn cipher_context(&self) -> Result<Option<CipherContext>, SessionError> {
        if !self.needs_keys() {
            return Ok(None);
        }
        let ek = self
            .encryption_key
            .clone()
            .ok_or(SessionError::MissingKey("encryption key"))?;
        let ak = self
            .authentication_key
            .clone()
            .ok_or(SessionError::MissingKey("authentication key"))?;
        let mut ctx = CipherContext::new(
            self.system_title,
            ek,
            ak,
            self.protection,
            self.ciphering,
            self.invocation_counter,
        );
        if let Some(g) = &self.server_guard {
            ctx.peer_guard = g.clone();
        }
        ctx.check_peer_counter = self.check_server_counter;
        Ok(Some(ctx))
    }

    /// The InitiateRequest this request proposes.
    pub fn initiate_request(&self) -> InitiateRequest {
        InitiateRequest {
            dedicated_key: self.dedicated_key.as_ref().map(|k| k.expose().to_vec()),
            response_allowed: true,
            proposed_quality_of_service: None,
            proposed_dlms_version: self.dlms_version,
            proposed_conformance: Conformance(self.conformance),
            client_max_receive_pdu_size: self.max_pdu_size,
        }
    }
}

/// Mechanism name for the AARQ.
pub fn mechanism_name(m: Mechanism) -> Option<crate::wire::apdu::Mechanism> {
    use crate::wire::apdu::Mechanism as M;
    match m {
        Mechanism::None => None,
        Mechanism::Lls => Some(M::Lls),
        Mechanism::HlsGmac => Some(M::HlsGmac),
    }
}

/// Starts an association: returns the state waiting for the AARE and the AARQ to send.
pub fn start(req: AssociationRequest) -> Result<(ExpectAare, Apdu), SessionError> {
    let mut cipher = req.cipher_context()?;
    let initiate = Apdu::InitiateRequest(req.initiate_request()).encode();
    let user_information = match (&mut cipher, req.protection.is_ciphered()) {
        (Some(ctx), true) => {
            let ic = match req.initiate_counter {
                Some(ic) => ic,
                None => ctx.take_ic()?,
            };
            let sc = ctx.control();
            ctx.protect_with(&initiate, sc, ic, Ciphering::ServiceSpecific)?
        }
        _ => initiate,
    };
    let title_needed = req.needs_keys();
    let calling_ap_title = req
        .calling_ap_title
        .clone()
        .or_else(|| title_needed.then(|| req.system_title.0.to_vec()));
    let auth_value = match req.mechanism {
        Mechanism::None => None,
        Mechanism::Lls => req.password.clone(),
        Mechanism::HlsGmac => Some(req.challenge.clone()),
    };
    let aarq = Aarq {
        protocol_version: req.protocol_version.clone(),
        application_context: req.context.clone(),
        called_ap_title: None,
        called_ae_qualifier: None,
        calling_ap_title,
        calling_ae_qualifier: None,
        calling_ap_invocation_id: None,
        calling_ae_invocation_id: None,
        sender_acse_requirements: (req.mechanism != Mechanism::None).then(|| vec![0x07, 0x80]),
        mechanism: mechanism_name(req.mechanism),
        calling_authentication_value: auth_value,
        implementation_information: None,
        user_information: Some(user_information),
        unknown: vec![],
    };
    Ok((ExpectAare { req, cipher }, Apdu::from(aarq)))
}

/// Waiting for the AARE.
#[derive(Debug)]
pub struct ExpectAare {
    req: AssociationRequest,
    cipher: Option<CipherContext>,
}

/// Why an association was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// AARE with result rejected-permanent (1) or rejected-transient (2).
    Rejected {
        result: u8,
        diagnostic: AcseDiagnostic,
        /// A confirmed-service-error in the user-information (an initiate error).
        initiate_error: Option<ConfirmedServiceError>,
    },
    /// An AARE that accepts but carries a confirmed-service-error.
    InitiateError(ConfirmedServiceError),
    /// An exception-response instead of an AARE.
    Exception(ExceptionResponse),
    /// HLS pass 3 refused with this action result.
    Pass3Refused(ActionResult),
}

/// What an AARE led to.
#[derive(Debug)]
pub enum AareOutcome {
    /// Accepted; no further pass needed.
    Associated(Associated),
    /// Accepted pending HLS: send `request` (pass 3) and give the reply to `next`.
    Pass3 {
        next: ExpectHlsReply,
        request: Vec<u8>,
    },
    Refused(Refusal),
}

impl ExpectAare {
    pub fn request(&self) -> &AssociationRequest {
        &self.req
    }

    /// Handles the reply to the AARQ.
    pub fn handle(self, bytes: &[u8]) -> Result<AareOutcome, SessionError> {
        let aare = match Apdu::decode(bytes)? {
            Apdu::Aare(a) => a,
            Apdu::ExceptionResponse(e) => return Ok(AareOutcome::Refused(Refusal::Exception(e))),
            other => {
                return Err(SessionError::Unexpected {
                    expected: "AARE",
                    got: other.to_string(),
                });
            }
        };
        self.handle_aare(*aare)
    }

    fn handle_aare(mut self, aare: Aare) -> Result<AareOutcome, SessionError> {
        let server_title = match &aare.responding_ap_title {
            Some(t) => Some(SystemTitle::from_slice(t).ok_or_else(|| {
                SessionError::BadAare(format!(
                    "responding-AP-title has {} byte(s), a system title has 8",
                    t.len()
                ))
            })?),
            None => None,
        };
        if let Some(ctx) = &mut self.cipher {
            ctx.peer_title = server_title;
        }
        // The user-information: InitiateResponse, glo-initiate-response or confirmed-service-error.
        let user = match &aare.user_information {
            None => None,
            Some(bytes) => Some(self.open_user_information(bytes)?),
        };
        if aare.result != 0 {
            let initiate_error = match user {
                Some(Apdu::ConfirmedServiceError(e)) => Some(e),
                _ => None,
            };
            return Ok(AareOutcome::Refused(Refusal::Rejected {
                result: aare.result,
                diagnostic: aare.diagnostic,
                initiate_error,
            }));
        }
        let negotiated = match user {
            Some(Apdu::InitiateResponse(r)) => r,
            Some(Apdu::ConfirmedServiceError(e)) => {
                return Ok(AareOutcome::Refused(Refusal::InitiateError(e)));
            }
            Some(other) => {
                return Err(SessionError::Unexpected {
                    expected: "InitiateResponse in the AARE user-information",
                    got: other.to_string(),
                });
            }
            None => {
                return Err(SessionError::BadAare(
                    "an accepting AARE carries no user-information (InitiateResponse)".into(),
                ));
            }
        };
        let mut assoc = Associated {
            client_sap: self.req.client_sap,
            mechanism: self.req.mechanism,
            protection: self.req.protection,
            cipher: self.cipher,
            server_title,
            negotiated,
            invoke_counter: 0,
            authenticated: self.req.mechanism != Mechanism::HlsGmac,
        };
        if self.req.mechanism != Mechanism::HlsGmac {
            return Ok(AareOutcome::Associated(assoc));
        }
        if aare.diagnostic != AcseDiagnostic::User(14) {
            return Err(SessionError::BadAare(format!(
                "HLS-GMAC needs diagnostic authentication-required (14), got {:?}",
                aare.diagnostic
            )));
        }
        let stoc = aare
            .responding_authentication_value
            .clone()
            .ok_or_else(|| {
                SessionError::BadAare(
                    "HLS-GMAC AARE without a responding-authentication-value (StoC)".into(),
                )
            })?;
        let ctx = assoc
            .cipher
            .as_mut()
            .ok_or(SessionError::MissingKey("encryption key"))?;
        let ic = ctx.take_ic()?;
        let mut reply = hls_gmac(
            SecurityControl::new(true, false, ctx.suite),
            &ctx.own_title,
            ic,
            &ctx.encryption_key,
            &ctx.authentication_key,
            &stoc,
        );
        if self.req.wrong_challenge_reply {
            reply[16] ^= 0x01;
        }
        let action = Apdu::ActionRequest(ActionRequest::Normal {
            invoke_id: assoc.next_invoke_id(),
            method: MethodDescriptor {
                class_id: 15,
                instance: Obis::CURRENT_ASSOCIATION,
                method_id: 1,
            },
            parameters: Some(Data::OctetString(reply.to_vec())),
        });
        let plain_request = action.encode();
        let request = assoc.wrap(&plain_request)?;
        Ok(AareOutcome::Pass3 {
            next: ExpectHlsReply {
                assoc,
                challenge: self.req.challenge,
                plain_request,
            },
            request,
        })
    }

    fn open_user_information(&mut self, bytes: &[u8]) -> Result<Apdu, SessionError> {
        let apdu = Apdu::decode(bytes)?;
        match (&apdu, &mut self.cipher) {
            (Apdu::Ciphered(_), Some(ctx)) => Ok(ctx.unprotect(&apdu)?.apdu),
            (Apdu::Ciphered(c), None) => Err(SessionError::Unexpected {
                expected: "a plain InitiateResponse (the association is not ciphered)",
                got: c.kind().to_owned(),
            }),
            _ => Ok(apdu),
        }
    }
}

/// Waiting for the reply to HLS pass 3 (the meter's f(CtoS), pass 4).
#[derive(Debug)]
pub struct ExpectHlsReply {
    assoc: Associated,
    challenge: Vec<u8>,
    /// The pass 3 action-request before protection (f(StoC) is a GMAC, no secret).
    plain_request: Vec<u8>,
}

/// What pass 4 led to.
#[derive(Debug)]
pub enum HlsOutcome {
    Associated(Associated),
    Refused(Refusal, Associated),
}

impl ExpectHlsReply {
    /// Gives up on pass 3 (for tests that skip it) and keeps the unauthenticated association.
    pub fn abandon(self) -> Associated {
        self.assoc
    }

    /// The pass 3 action-request as sent before protection (for traces).
    pub fn plain_request(&self) -> &[u8] {
        &self.plain_request
    }

    /// Handles the action-response to pass 3 and verifies f(CtoS).
    pub fn handle(self, bytes: &[u8]) -> Result<HlsOutcome, SessionError> {
        self.handle_traced(bytes).1
    }

    /// As [`Self::handle`], and also gives the reply as unprotected (when it
    /// could be), so that a trace shows what the meter answered to pass 3.
    pub fn handle_traced(
        mut self,
        bytes: &[u8],
    ) -> (Option<Vec<u8>>, Result<HlsOutcome, SessionError>) {
        match self.assoc.unwrap(bytes) {
            Err(e) => (None, Err(e)),
            Ok(r) => (r.protection.map(|_| r.apdu.encode()), self.finish(r)),
        }
    }

    fn finish(mut self, r: Received) -> Result<HlsOutcome, SessionError> {
        let response = match r.apdu {
            Apdu::ActionResponse(ActionResponse::Normal { response, .. }) => response,
            Apdu::ExceptionResponse(e) => {
                return Ok(HlsOutcome::Refused(Refusal::Exception(e), self.assoc));
            }
            other => {
                return Err(SessionError::Unexpected {
                    expected: "action-response to reply_to_HLS_authentication",
                    got: other.to_string(),
                });
            }
        };
        if response.result != ActionResult::Success {
            return Ok(HlsOutcome::Refused(
                Refusal::Pass3Refused(response.result),
                self.assoc,
            ));
        }
        let f_ctos = match response.return_parameters {
            Some(GetDataResult::Data(Data::OctetString(v))) => v,
            other => {
                return Err(SessionError::ServerAuthentication(format!(
                    "the action-response to pass 3 says success but carries {} instead of an \
                     octet-string f(CtoS)",
                    describe_return_parameters(other.as_ref())
                )));
            }
        };
        let ctx = self
            .assoc
            .cipher
            .as_ref()
            .ok_or(SessionError::MissingKey("encryption key"))?;
        let server_title = self.assoc.server_title.ok_or_else(|| {
            SessionError::ServerAuthentication("the AARE gave no server system title".into())
        })?;
        verify_hls_gmac(
            &f_ctos,
            &server_title,
            &ctx.encryption_key,
            &ctx.authentication_key,
            &self.challenge,
        )
        .map_err(|e| {
            SessionError::ServerAuthentication(format!(
                "{e} (f(CtoS) = {})",
                hex::encode_upper(&f_ctos)
            ))
        })?;
        self.assoc.authenticated = true;
        Ok(HlsOutcome::Associated(self.assoc))
    }
}

/// What an action-response carries where f(CtoS) should be, for messages.
fn describe_return_parameters(r: Option<&GetDataResult>) -> String {
    match r {
        None => "no return parameters".into(),
        Some(GetDataResult::Data(d)) => format!("the data {d}"),
        Some(GetDataResult::Error(e)) => format!("the data-access-result {e}"),
    }
}

/// A response after unwrapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// The plain APDU.
    pub apdu: Apdu,
    /// When it came protected: the security control, counter and carrier.
    pub protection: Option<(SecurityControl, u32, &'static str)>,
}

/// An open association.
#[derive(Debug)]
pub struct Associated {
    pub client_sap: u16,
    pub mechanism: Mechanism,
    pub protection: Protection,
    pub cipher: Option<CipherContext>,
    pub server_title: Option<SystemTitle>,
    pub negotiated: InitiateResponse,
    invoke_counter: u8,
    /// HLS completed (always true for other mechanisms).
    pub authenticated: bool,
}

impl Associated {
    /// The next invoke-id-and-priority byte: high priority, confirmed, id 1..15 rotating.
    pub fn next_invoke_id(&mut self) -> u8 {
        self.invoke_counter = self.invoke_counter % 15 + 1;
        0xC0 | self.invoke_counter
    }

    /// Does this association protect its xDLMS services?
    pub fn ciphered(&self) -> bool {
        self.protection.is_ciphered() && self.cipher.is_some()
    }

    /// Protects a plain request as the association requires (or leaves it plain).
    pub fn wrap(&mut self, plain: &[u8]) -> Result<Vec<u8>, SessionError> {
        match (&mut self.cipher, self.protection.is_ciphered()) {
            (Some(ctx), true) => Ok(ctx.protect(plain)?),
            _ => Ok(plain.to_vec()),
        }
    }

    /// Decodes a response, unprotecting it when ciphered (checking the meter's
    /// counter). Plain responses pass through: a meter may answer an
    /// exception-response in clear, and the caller judges.
    pub fn unwrap(&mut self, bytes: &[u8]) -> Result<Received, SessionError> {
        let apdu = Apdu::decode(bytes)?;
        let ciphered = matches!(
            apdu,
            Apdu::Ciphered(_) | Apdu::GeneralGloCiphering(_) | Apdu::GeneralDedCiphering(_)
        );
        match (&mut self.cipher, ciphered) {
            (Some(ctx), true) => {
                let u = ctx.unprotect_owned(apdu)?;
                Ok(Received {
                    apdu: u.apdu,
                    protection: Some((u.sc, u.ic, u.carrier)),
                })
            }
            _ => Ok(Received {
                apdu,
                protection: None,
            }),
        }
    }

    /// An RLRQ; with `protected`, its user-information carries a protected InitiateRequest.
    pub fn release_request(&mut self, protected: bool) -> Result<Apdu, SessionError> {
        let user_information = if protected {
            match &mut self.cipher {
                Some(ctx) => {
                    let init = Apdu::InitiateRequest(InitiateRequest {
                        dedicated_key: None,
                        response_allowed: true,
                        proposed_quality_of_service: None,
                        proposed_dlms_version: 6,
                        proposed_conformance: self.negotiated.negotiated_conformance,
                        client_max_receive_pdu_size: self.negotiated.server_max_receive_pdu_size,
                    })
                    .encode();
                    let ic = ctx.take_ic()?;
                    let sc = ctx.control();
                    Some(ctx.protect_with(&init, sc, ic, Ciphering::ServiceSpecific)?)
                }
                None => None,
            }
        } else {
            None
        };
        Ok(Apdu::Rlrq(Rlrq {
            reason: Some(0),
            user_information,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_client_aarq_is_the_minimal_ln_form() {
        let c = ClientProfile::public();
        let mut req = AssociationRequest::from_profile(&c, vec![], 0);
        req.conformance = 0x007E1F;
        req.max_pdu_size = 0x04B0;
        let (_, aarq) = start(req).unwrap();
        let bytes = aarq.encode();
        // 60 len A1 09 06 07 60857405080101 BE 10 04 0E 01 00 00 00 06 5F1F0400007E1F 04B0
        assert_eq!(
            hex::encode_upper(&bytes),
            "601DA109060760857405080101BE10040E01000000065F1F0400007E1F04B0"
        );
    }

    #[test]
    fn a_pass4_without_fctos_is_described_in_the_domain_words() {
        // The Gurux Python server answers a wrong f(StoC) with success and no
        // return parameters (action-response C7 01 C1 00 00).
        assert_eq!(describe_return_parameters(None), "no return parameters");
        let d = describe_return_parameters(Some(&GetDataResult::Data(Data::Unsigned(5))));
        assert!(d.starts_with("the data ") && d.contains('5'), "{d}");
        assert!(!d.contains("Unsigned") && !d.contains("Some"), "{d}");
        let e = describe_return_parameters(Some(&GetDataResult::Error(
            crate::wire::apdu::DataAccessResult::ReadWriteDenied,
        )));
        assert!(e.contains("read-write-denied"), "{e}");
    }

    #[test]
    fn hls_aarq_carries_title_mechanism_and_challenge() {
        let c = ClientProfile::management();
        let (_, aarq) = start(AssociationRequest::from_profile(
            &c,
            b"K56iVagY".to_vec(),
            1,
        ))
        .unwrap();
        let Apdu::Aarq(a) = aarq else { panic!() };
        assert_eq!(
            a.calling_ap_title,
            Some(SystemTitle::EXAMPLE_CLIENT.0.to_vec())
        );
        assert_eq!(a.mechanism, Some(crate::wire::apdu::Mechanism::HlsGmac));
        assert_eq!(a.calling_authentication_value, Some(b"K56iVagY".to_vec()));
        assert_eq!(a.application_context, AppContext::LnCipher);
        // The user-information is a glo-initiate-request protected with IC 1.
        let ui = Apdu::decode(a.user_information.as_ref().unwrap()).unwrap();
        let Apdu::Ciphered(c) = ui else {
            panic!("{ui:?}")
        };
        assert_eq!(c.tag, 0x21);
        assert_eq!(c.invocation_counter(), Some(1));
    }
}
