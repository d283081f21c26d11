//! Quirks: deliberate non-conformances of the simulated meter, each switchable
//! per run (`--quirk NAME`, or `sim?quirk=NAME`). Every quirk undoes one
//! conformant behaviour, so that each negative case of the shipped suites can be
//! shown to fail against a meter with exactly that fault.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

macro_rules! quirks {
    ($($variant:ident = $name:literal : $doc:literal,)*) => {
        /// A deliberate fault of the simulated meter.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Quirk {
            $(#[doc = $doc] $variant,)*
        }

        impl Quirk {
            /// Every quirk, in documentation order.
            pub const ALL: &'static [Quirk] = &[$(Quirk::$variant,)*];

            /// The name used on the command line.
            pub fn name(self) -> &'static str {
                match self { $(Quirk::$variant => $name,)* }
            }

            /// What the meter does wrong.
            pub fn description(self) -> &'static str {
                match self { $(Quirk::$variant => $doc,)* }
            }
        }

        impl FromStr for Quirk {
            type Err = UnknownQuirk;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok(Quirk::$variant),)*
                    _ => Err(UnknownQuirk(s.to_owned())),
                }
            }
        }
    };
}

quirks! {
    // Invocation counters and replay protection.
    AcceptsReplayedCounter = "accepts-replayed-counter": "accepts a protected request whose invocation counter equals the last accepted one (an exact replay)",
    IgnoresInvocationCounter = "ignores-invocation-counter": "accepts any invocation counter, even a lower one",
    ForgetsCounterOnReassociation = "forgets-counter-on-reassociation": "forgets the client's last invocation counter when a new association opens, so a used counter is accepted again",
    AcceptsReplayedInitiate = "accepts-replayed-initiate": "does not check the invocation counter of the glo-initiate-request in the AARQ",
    RepeatsOwnCounter = "repeats-own-counter": "protects every response with the same invocation counter",
    RestartsOwnCounter = "restarts-own-counter": "restarts its own invocation counter at the same value in each association",
    WrongCounterInException = "wrong-counter-in-exception": "answers a replayed counter with invocation-counter-error but reports the received counter instead of the expected one",
    CounterBackAfterRefusedKeyTransfer = "counter-back-after-refused-key-transfer": "sets its own invocation counter back after refusing a key transfer, so it protects two APDUs with the same counter under one key",
    CountsRefusedRequests = "counts-refused-requests": "moves its lowest acceptable invocation counter on a protected request it refused, so the counter of a refused request cannot be used again",
    WrapsCounter = "wraps-counter": "accepts an invocation counter that wrapped from 0xFFFFFFFF to 0 under the same key",
    // Ciphering.
    IgnoresGcmTag = "ignores-gcm-tag": "deciphers protected service requests without verifying the authentication tag",
    IgnoresInitiateTag = "ignores-initiate-tag": "deciphers the glo-initiate-request of an AARQ without verifying its authentication tag",
    AcceptsUndecipherableInitiate = "accepts-undecipherable-initiate": "opens an association whose glo-initiate-request does not verify or decipher (a wrong key), with default xDLMS parameters",
    AcceptsWeakerProtection = "accepts-weaker-protection": "accepts requests protected less than the security policy requires (e.g. authenticated only)",
    AcceptsUnprotectedRequests = "accepts-unprotected-requests": "serves plain requests on a ciphered association",
    UnprotectedResponses = "unprotected-responses": "answers protected requests with plain responses",
    NoGeneralCiphering = "no-general-ciphering": "answers general-glo-ciphering requests with an exception-response",
    // Association and authentication.
    AcceptsWrongHlsReply = "accepts-wrong-hls-reply": "does not verify the client's f(StoC) in HLS pass 3",
    SendsWrongFCtoS = "sends-wrong-fctos": "answers HLS pass 3 with a wrong f(CtoS)",
    ServesBeforeHls = "serves-before-hls": "serves protected requests before HLS pass 3 has completed",
    RepeatsHlsChallenge = "repeats-hls-challenge": "sends the same HLS server challenge (StoC) in every association",
    ChangesSystemTitle = "changes-system-title": "uses another server system title in every second association",
    FixedChallengeLength = "fixed-challenge-length": "accepts only 16-byte HLS client challenges (CtoS), though 8 to 64 bytes are allowed",
    AcceptsWrongPassword = "accepts-wrong-password": "accepts any LLS password",
    AcceptsUnknownContext = "accepts-unknown-context": "accepts an AARQ with an unknown application context name",
    AcceptsBadApTitle = "accepts-bad-ap-title": "accepts a calling AP title that is not 8 bytes",
    AcceptsOldDlmsVersion = "accepts-old-dlms-version": "accepts an InitiateRequest with a DLMS version below 6",
    AcceptsTinyPdu = "accepts-tiny-pdu": "accepts a client max receive PDU size below the minimum",
    RejectsProtocolVersion = "rejects-protocol-version": "rejects an AARQ that carries the protocol-version field",
    IgnoresProposedConformance = "ignores-proposed-conformance": "answers with its whole conformance block instead of the intersection with the client's",
    AcceptsLowerMechanism = "accepts-lower-mechanism": "lets a client that must use HLS-GMAC associate with no authentication",
    AnswersWithoutAssociation = "answers-without-association": "serves a GET that arrives without an association",
    NoReleaseResponse = "no-release-response": "does not answer an RLRQ",
    RefusesRelease = "refuses-release": "answers an RLRQ on an open association with an exception-response and stays associated",
    AcceptsUnprotectedRelease = "accepts-unprotected-release": "releases a ciphered association on an RLRQ without protected user-information",
    // Security setup.
    AppliesKeyBeforeResponse = "applies-key-before-response": "protects the response to a key transfer with the new global unicast encryption key",
    AcceptsBadKeyWrap = "accepts-bad-key-wrap": "reports success for a key transfer whose AES key wrap does not verify",
    AcceptsUnknownKeyId = "accepts-unknown-key-id": "reports success for a key transfer with an unknown key_id",
    KeepsOldKey = "keeps-old-key": "reports success for a key transfer but keeps using the old key",
    OldKeyStillValid = "old-key-still-valid": "accepts associations with the old key as well as the new one after a key transfer",
    WeakensPolicy = "weakens-policy": "lets security_activate lower the security policy",
    IgnoresSecurityPolicy = "ignores-security-policy": "does not enforce a policy set with security_activate",
    // HDLC.
    AnswersBadFcs = "answers-bad-fcs": "processes HDLC frames whose HCS or FCS is wrong instead of discarding them",
    AnswersOtherAddress = "answers-other-address": "answers HDLC frames addressed to another server address, or to its own in another size",
    AnswersLongSourceAddress = "answers-long-source-address": "answers HDLC frames whose source (client) address has more than one byte",
    AnswersStrayBytes = "answers-stray-bytes": "answers FRMR to stray bytes and to a frame without its opening flag instead of discarding them silently",
    AnswersShortFrames = "answers-short-frames": "answers FRMR to an HDLC frame too short to hold its header instead of discarding it silently",
    AnswersBadFormatType = "answers-bad-format-type": "answers FRMR to an HDLC frame whose format type is not 1010 instead of discarding it silently",
    AnswersWrongLength = "answers-wrong-length": "answers FRMR to an HDLC frame whose length field does not match instead of discarding it silently",
    AnswersBadAddressLength = "answers-bad-address-length": "answers FRMR to an HDLC frame with a 3-byte address instead of discarding it silently",
    IgnoresUnknownCommands = "ignores-unknown-commands": "stays silent on an HDLC frame with an unknown control field instead of answering FRMR",
    IgnoresSnrmParameters = "ignores-snrm-parameters": "ignores the SNRM parameters and uses its own maxima",
    AcceptsOversizedFrames = "accepts-oversized-frames": "accepts I-frames longer than the negotiated maximum information length",
    IgnoresSequenceNumbers = "ignores-sequence-numbers": "does not check N(S) and N(R) of received I-frames",
    AnswersInNdm = "answers-in-ndm": "answers I-frames received before the SNRM instead of DM",
    NoSegmentation = "no-segmentation": "sends long responses in one frame above the negotiated maximum information length",
    // Wrapper.
    AcceptsWrongWrapperVersion = "accepts-wrong-wrapper-version": "accepts wrapper frames whose version is not 1",
    AnswersUnknownWport = "answers-unknown-wport": "answers wrapper frames addressed to an unknown wPort",
    FramesBySegment = "frames-by-segment": "takes each TCP read as one wrapper frame instead of following the length field",
    ForgetsStateOnRestart = "forgets-state-on-restart": "comes back from a restart with the keys, counters and policies it was configured with, not the ones it had",
    StopsAfterWrongWrapperVersion = "stops-after-wrong-wrapper-version": "stops answering requests on every connection (until restarted) after it receives a wrapper frame whose version is not 1",
    // COSEM objects.
    WrongInvokeId = "wrong-invoke-id": "answers with a different invoke-id than the request's",
    ServesUndefinedObject = "serves-undefined-object": "answers a GET of an object it does not have with data (null) instead of object-undefined",
    MalformedClock = "malformed-clock": "answers the clock's time (attribute 2) with 18 bytes too many after the 12-byte date-time",
    SecuritySetupWrongTypes = "security-setup-wrong-types": "returns the security policy as an unsigned instead of an enum",
    StaleCounterObject = "stale-counter-object": "shows the same value in the invocation counter object whatever requests it accepted",
    CounterObjectPrivate = "counter-object-private": "refuses to let the public client read the invocation counter object",
    BadLogicalDeviceName = "bad-logical-device-name": "has a logical device name that does not start with a 3-letter FLAG id",
}

impl fmt::Display for Quirk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A quirk name that does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownQuirk(pub String);

impl fmt::Display for UnknownQuirk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let best = Quirk::ALL
            .iter()
            .map(|q| (strsim::jaro_winkler(&self.0, q.name()), q.name()))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        write!(f, "unknown quirk {:?}", self.0)?;
        match best {
            Some((score, name)) if score > 0.8 => write!(f, "; did you mean `{name}`?"),
            _ => write!(f, "; `idis-harness simulate --list-quirks` lists them"),
        }
    }
}

impl std::error::Error for UnknownQuirk {}

/// The set of quirks switched on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quirks(BTreeSet<Quirk>);

impl Quirks {
    pub fn none() -> Self {
        Quirks::default()
    }
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Self, UnknownQuirk> {
        names
            .iter()
            .map(|n| n.as_ref().parse::<Quirk>())
            .collect::<Result<BTreeSet<_>, _>>()
            .map(Quirks)
    }
    pub fn has(&self, q: Quirk) -> bool {
        self.0.contains(&q)
    }
    pub fn insert(&mut self, q: Quirk) {
        self.0.insert(q);
    }
    pub fn iter(&self) -> impl Iterator<Item = Quirk> + '_ {
        self.0.iter().copied()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_quirk_round_trips_its_name_and_names_are_unique() {
        let mut seen = BTreeSet::new();
        for q in Quirk::ALL {
            assert_eq!(q.name().parse::<Quirk>(), Ok(*q));
            assert!(seen.insert(q.name()), "duplicate {}", q.name());
            assert!(!q.description().is_empty());
        }
    }

    #[test]
    fn rejects_unknown_names_with_a_hint() {
        let e = Quirks::from_names(&["accepts-replayed-countr"]).unwrap_err();
        assert!(
            e.to_string()
                .contains("did you mean `accepts-replayed-counter`"),
            "{e}"
        );
    }
}
