//! What a step observed, and whether that is one of the accepted outcomes.
//!
//! Where meters legitimately differ, suites name a *variation point*
//! (`expect: {profile: replayed-counter}`): the harness knows the outcomes the
//! standard or the reference implementations give (used alone with `--strict`),
//! a wider default set, and the device profile may add more.

use std::fmt;

use crate::profile::DeviceProfile;
use crate::suite::model::{DataSpec, Outcome, RejectSpec};
use crate::suite::vocab;
use crate::wire::apdu::{AcseDiagnostic, ActionResult, DataAccessResult};
use crate::wire::axdr::Data;
use crate::wire::hdlc::Control;

/// What happened in reply to a step.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// Association accepted (and HLS completed).
    Associated,
    /// AARE with a rejection.
    Rejected {
        result: u8,
        diagnostic: AcseDiagnostic,
        initiate_error: Option<u8>,
    },
    /// AARE accepting but carrying a confirmed-service-error.
    InitiateError(u8),
    /// HLS pass 3 refused.
    Pass3Refused(ActionResult),
    /// The meter's f(CtoS) did not verify.
    ServerAuthenticationFailed(String),
    /// GET returned data.
    Data(Data),
    /// GET error or SET result.
    Access(DataAccessResult),
    /// ACTION result.
    Action(ActionResult, Option<Data>),
    /// An exception-response.
    Exception {
        state: u8,
        service: u8,
        counter: Option<u32>,
    },
    /// RLRE.
    Released,
    /// An HDLC frame (other than an I-frame carrying an APDU).
    Frame(Control),
    /// Some other APDU, described.
    Other(String),
    Silence,
    Disconnect,
    /// Several replies (for `repeat`): how many came.
    Replies(usize),
}

impl Observed {
    /// A short name for messages.
    pub fn describe(&self) -> String {
        match self {
            Observed::Associated => "association accepted".into(),
            Observed::Rejected {
                result,
                diagnostic,
                initiate_error,
            } => {
                let r = vocab::REJECT_RESULTS
                    .iter()
                    .find(|(_, c)| c == result)
                    .map_or_else(|| format!("result {result}"), |(n, _)| (*n).to_string());
                let d = match diagnostic {
                    AcseDiagnostic::User(c) => name_of(vocab::ACSE_USER_DIAGNOSTICS, *c),
                    AcseDiagnostic::Provider(c) => name_of(vocab::ACSE_PROVIDER_DIAGNOSTICS, *c),
                };
                let mut s = format!("AARE {r}, diagnostic {d}");
                if let Some(e) = initiate_error {
                    s.push_str(&format!(
                        ", initiate error {}",
                        name_of(vocab::INITIATE_ERRORS, *e)
                    ));
                }
                s
            }
            Observed::InitiateError(e) => {
                format!("initiate error {}", name_of(vocab::INITIATE_ERRORS, *e))
            }
            Observed::Pass3Refused(r) => format!("HLS pass 3 refused: {}", r.name()),
            Observed::ServerAuthenticationFailed(why) => {
                format!("the meter's f(CtoS) does not verify ({why})")
            }
            Observed::Data(d) => {
                let mut s = d.to_string();
                if s.len() > 160 {
                    let mut cut = 157;
                    while !s.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    s.truncate(cut);
                    s.push_str("...");
                }
                format!("data {s}")
            }
            Observed::Access(r) => format!("result {}", r.name()),
            Observed::Action(r, _) => format!("result {}", r.name()),
            Observed::Exception {
                service, counter, ..
            } => {
                let mut s = format!(
                    "exception-response {}",
                    name_of(vocab::EXCEPTIONS, *service)
                );
                if let Some(c) = counter {
                    s.push_str(&format!(" (expected counter {c})"));
                }
                s
            }
            Observed::Released => "RLRE (released)".into(),
            Observed::Frame(c) => format!("HDLC {}", frame_name(c)),
            Observed::Other(s) => s.clone(),
            Observed::Silence => "no reply".into(),
            Observed::Disconnect => "the device closed the link".into(),
            Observed::Replies(n) => format!("{n} replies"),
        }
    }
}

impl fmt::Display for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

fn name_of(table: &[(&str, u8)], code: u8) -> String {
    table
        .iter()
        .find(|(_, c)| *c == code)
        .map_or_else(|| code.to_string(), |(n, _)| format!("{n}({code})"))
}

/// The frame-kind name of a control field (`ua`, `dm`, ...).
pub fn frame_name(c: &Control) -> &'static str {
    match c {
        Control::I { .. } => "i",
        Control::Rr { .. } => "rr",
        Control::Rnr { .. } => "rnr",
        Control::Snrm { .. } => "snrm",
        Control::Ua { .. } => "ua",
        Control::Disc { .. } => "disc",
        Control::Dm { .. } => "dm",
        Control::Frmr { .. } => "frmr",
        Control::Ui { .. } => "ui",
        Control::Unknown(_) => "unknown",
    }
}

/// Describes an expected outcome.
pub fn describe_outcome(o: &Outcome) -> String {
    match o {
        Outcome::Success => "success".into(),
        Outcome::Value(v) => format!("value {}", describe_spec(v)),
        Outcome::Type(t) => format!("a value of type {t}"),
        Outcome::Result(r) => format!("result {r}"),
        Outcome::Rejected(r) => {
            let mut s = "AARE rejected".to_string();
            if let Some(x) = &r.result {
                s.push_str(&format!(" {x}"));
            }
            if let Some(d) = &r.diagnostic {
                s.push_str(&format!(", diagnostic {d}"));
            }
            s
        }
        Outcome::InitiateError(e) => format!("initiate error {e}"),
        Outcome::Exception(e) => format!("exception-response {e}"),
        Outcome::Frame(f) => format!("HDLC {f}"),
        Outcome::Silence => "no reply".into(),
        Outcome::Disconnect => "the device closing the link".into(),
        Outcome::Profile(p) => format!("the accepted outcomes of `{p}`"),
    }
}

fn describe_spec(v: &DataSpec) -> String {
    format!("{v:?}")
}

/// A variation point: outcomes where meters legitimately differ.
#[derive(Debug, Clone, Copy)]
pub struct VariationPoint {
    pub name: &'static str,
    pub what: &'static str,
    /// The standard's outcome (or the reference implementations' where the standard is not available).
    pub strict: &'static [&'static str],
    /// Further outcomes accepted by default.
    pub lenient: &'static [&'static str],
}

/// Outcomes are written in a small text form here: `exception:NAME`, `result:NAME`,
/// `silence`, `disconnect`, `frame:KIND`, `success`.
pub const VARIATION_POINTS: &[VariationPoint] = &[
    VariationPoint {
        name: "replayed-counter",
        what: "a protected request whose invocation counter is not above the last accepted one (dlms-facts 4.1-4.3)",
        strict: &["exception:invocation-counter-error"],
        lenient: &["exception:deciphering-error", "silence", "disconnect"],
    },
    VariationPoint {
        name: "bad-tag",
        what: "a protected request whose authentication tag or ciphertext is wrong (Gurux C and .NET servers: deciphering-error; a silent drop or a closed association are seen in the field; dlms-facts 4.3)",
        strict: &["exception:deciphering-error"],
        lenient: &["silence", "disconnect"],
    },
    VariationPoint {
        name: "refused-service",
        what: "a request the association may not make: under-protected, before HLS completes, or without access rights",
        strict: &["exception:operation-not-possible"],
        lenient: &[
            "exception:any",
            "result:read-write-denied",
            "result:scope-of-access-violated",
            "result:other-reason",
            "silence",
        ],
    },
    VariationPoint {
        name: "no-association",
        what: "a request without an application association (APPL_IDLE_N1; Gurux: service-not-supported, FRMR or no reply)",
        strict: &["exception:service-not-supported"],
        lenient: &["exception:any", "frame:frmr", "silence", "disconnect"],
    },
    VariationPoint {
        name: "wrong-hls-reply",
        what: "HLS pass 3 with a wrong f(StoC) (Gurux: read-write-denied; jDLMS: other-reason; dlms-facts 2.5)",
        strict: &["result:read-write-denied"],
        lenient: &["result:other-reason", "result:any", "exception:any"],
    },
    VariationPoint {
        name: "bad-key-wrap",
        what: "a key transfer whose AES key wrap does not verify (Gurux: object-class-inconsistent; dlms-facts 3.4)",
        strict: &["result:object-class-inconsistent"],
        lenient: &["result:any"],
    },
    VariationPoint {
        name: "unknown-key-id",
        what: "a key transfer with an unknown key_id (Gurux: object-class-inconsistent; dlms-facts 3.4)",
        strict: &["result:object-class-inconsistent"],
        lenient: &["result:any"],
    },
    VariationPoint {
        name: "refused-weakening",
        what: "security_activate with a policy weaker than the current one (the method only strengthens)",
        strict: &["result:other-reason"],
        lenient: &["result:any"],
    },
    VariationPoint {
        name: "undefined-object",
        what: "a GET of an object the meter does not have (Blue Book / Green Book Data-Access-Result object-undefined (4)); some meters answer object-unavailable or, for objects outside the association's list, read-write-denied",
        strict: &["result:object-undefined"],
        lenient: &["result:object-unavailable", "result:read-write-denied"],
    },
    VariationPoint {
        name: "counter-after-refusal",
        what: "a protected request with the counter of an earlier request the meter refused (bad tag): the lowest acceptable value moves only when verification succeeds (Green Book 9.2.7.2.4 as quoted in dlms-facts 4.1), so it is served",
        strict: &["success"],
        lenient: &[],
    },
    VariationPoint {
        name: "not-served",
        what: "a request the meter must not serve where the form of the refusal is another case's point (APPL_IDLE_N1 judges it without an association): any answer but data or success",
        strict: &[
            "exception:any",
            "initiate-error:any",
            "result:any",
            "frame:frmr",
            "silence",
            "disconnect",
        ],
        lenient: &[],
    },
    VariationPoint {
        name: "insufficient-release",
        what: "an RLRQ without the protected user-information a ciphered association needs (SYMSEC_REL_N1)",
        strict: &["exception:operation-not-possible"],
        lenient: &["exception:any", "silence", "rejected"],
    },
];

pub fn variation_point(name: &str) -> Option<&'static VariationPoint> {
    VARIATION_POINTS.iter().find(|v| v.name == name)
}

/// Names of all variation points (for the suite validator).
pub fn variation_point_names() -> Vec<String> {
    VARIATION_POINTS
        .iter()
        .map(|v| v.name.to_string())
        .collect()
}

/// Parses the small text form used in [`VARIATION_POINTS`].
fn short_outcome(s: &str) -> Outcome {
    match s.split_once(':') {
        Some(("exception", n)) => Outcome::Exception(n.into()),
        Some(("result", n)) => Outcome::Result(n.into()),
        Some(("frame", n)) => Outcome::Frame(n.into()),
        Some(("initiate-error", n)) => Outcome::InitiateError(n.into()),
        _ => match s {
            "silence" => Outcome::Silence,
            "disconnect" => Outcome::Disconnect,
            "rejected" => Outcome::Rejected(RejectSpec::default()),
            _ => Outcome::Success,
        },
    }
}

/// The outcomes a variation point accepts for this profile and mode.
pub fn accepted(point: &str, profile: &DeviceProfile, strict: bool) -> Vec<Outcome> {
    let Some(v) = variation_point(point) else {
        return vec![];
    };
    let mut out: Vec<Outcome> = v.strict.iter().map(|s| short_outcome(s)).collect();
    if !strict {
        out.extend(v.lenient.iter().map(|s| short_outcome(s)));
        if let Some(extra) = profile.accepted_outcomes.get(point) {
            out.extend(extra.iter().cloned());
        }
    }
    out
}

/// Does `observed` satisfy `expected`? (`data_eq` compares a value spec with data.)
pub fn matches(
    expected: &Outcome,
    observed: &Observed,
    profile: &DeviceProfile,
    strict: bool,
    data_eq: &dyn Fn(&DataSpec, &Data) -> bool,
) -> bool {
    match expected {
        Outcome::Success => matches!(
            observed,
            Observed::Associated
                | Observed::Data(_)
                | Observed::Access(DataAccessResult::Success)
                | Observed::Action(ActionResult::Success, _)
                | Observed::Released
                | Observed::Frame(Control::Ua { .. })
                | Observed::Replies(_)
        ),
        Outcome::Value(spec) => matches!(observed, Observed::Data(d) if data_eq(spec, d)),
        Outcome::Type(t) => match observed {
            Observed::Data(d) => type_matches(t, d),
            _ => false,
        },
        Outcome::Result(name) => {
            let code = match observed {
                Observed::Access(r) => r.to_u8(),
                Observed::Action(r, _) => r.to_u8(),
                Observed::Pass3Refused(r) => r.to_u8(),
                _ => return false,
            };
            if name == "any" {
                // Any result but success.
                return code != 0;
            }
            vocab::code(vocab::RESULTS, name).or_else(|| name.parse().ok()) == Some(code)
        }
        Outcome::Rejected(spec) => match observed {
            Observed::Rejected {
                result, diagnostic, ..
            } => {
                let result_ok = spec.result.as_deref().is_none_or(|r| {
                    vocab::code(vocab::REJECT_RESULTS, r).or_else(|| r.parse().ok())
                        == Some(*result)
                });
                let diag_ok = spec.diagnostic.as_deref().is_none_or(|d| {
                    let (code, provider) = match vocab::code(vocab::ACSE_USER_DIAGNOSTICS, d) {
                        Some(c) => (Some(c), false),
                        None => match vocab::code(vocab::ACSE_PROVIDER_DIAGNOSTICS, d) {
                            Some(c) => (Some(c), true),
                            None => (d.parse().ok(), false),
                        },
                    };
                    match (diagnostic, provider) {
                        (AcseDiagnostic::User(c), false) => Some(*c) == code,
                        (AcseDiagnostic::Provider(c), true) => Some(*c) == code,
                        (AcseDiagnostic::Provider(c), false) => d.parse::<u8>().ok() == Some(*c),
                        _ => false,
                    }
                });
                result_ok && diag_ok
            }
            _ => false,
        },
        Outcome::InitiateError(name) => {
            let code = vocab::code(vocab::INITIATE_ERRORS, name).or_else(|| name.parse().ok());
            let seen = match observed {
                Observed::Rejected {
                    initiate_error: Some(e),
                    ..
                } => *e,
                Observed::InitiateError(e) => *e,
                _ => return false,
            };
            name == "any" || Some(seen) == code
        }
        Outcome::Exception(name) => match observed {
            Observed::Exception { service, .. } => {
                name == vocab::EXCEPTION_ANY
                    || vocab::code(vocab::EXCEPTIONS, name).or_else(|| name.parse().ok())
                        == Some(*service)
            }
            _ => false,
        },
        Outcome::Frame(kind) => matches!(observed, Observed::Frame(c) if frame_name(c) == kind),
        Outcome::Silence => matches!(observed, Observed::Silence),
        Outcome::Disconnect => {
            matches!(observed, Observed::Disconnect)
                || matches!(
                    observed,
                    Observed::Frame(Control::Dm { .. } | Control::Disc { .. })
                )
        }
        Outcome::Profile(p) => accepted(p, profile, strict)
            .iter()
            .any(|o| matches(o, observed, profile, strict, data_eq)),
    }
}

fn type_matches(spec: &str, d: &Data) -> bool {
    let Ok((name, len)) = vocab::parse_type_spec(spec) else {
        return false;
    };
    if d.type_name() != name {
        return false;
    }
    match len {
        None => true,
        Some(n) => match d {
            Data::Array(v) | Data::Structure(v) => v.len() == n,
            Data::OctetString(v) | Data::VisibleString(v) | Data::Utf8String(v) => v.len() == n,
            Data::BitString(b) => b.bits == n,
            _ => true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(e: &Outcome, o: &Observed, strict: bool) -> bool {
        matches(e, o, &DeviceProfile::default(), strict, &|_, _| false)
    }

    #[test]
    fn variation_points_accept_their_sets_and_strict_narrows() {
        let replay = Outcome::Profile("replayed-counter".into());
        let ic = Observed::Exception {
            state: 1,
            service: 6,
            counter: Some(5),
        };
        let dec = Observed::Exception {
            state: 1,
            service: 5,
            counter: None,
        };
        assert!(m(&replay, &ic, false) && m(&replay, &ic, true));
        assert!(m(&replay, &dec, false));
        assert!(!m(&replay, &dec, true));
        assert!(!m(&replay, &Observed::Data(Data::Null), false));
        assert!(m(&replay, &Observed::Silence, false));
    }

    #[test]
    fn profile_adds_accepted_outcomes_except_in_strict_mode() {
        let mut p = DeviceProfile::default();
        p.accepted_outcomes
            .insert("bad-key-wrap".into(), vec![Outcome::Silence]);
        let e = Outcome::Profile("bad-key-wrap".into());
        assert!(matches(&e, &Observed::Silence, &p, false, &|_, _| false));
        assert!(!matches(&e, &Observed::Silence, &p, true, &|_, _| false));
    }

    #[test]
    fn rejections_match_by_name_or_number() {
        let o = Observed::Rejected {
            result: 1,
            diagnostic: AcseDiagnostic::User(2),
            initiate_error: None,
        };
        let spec = |r: Option<&str>, d: Option<&str>| {
            Outcome::Rejected(RejectSpec {
                result: r.map(Into::into),
                diagnostic: d.map(Into::into),
            })
        };
        assert!(m(
            &spec(
                Some("rejected-permanent"),
                Some("application-context-name-not-supported")
            ),
            &o,
            false
        ));
        assert!(m(&spec(None, Some("2")), &o, false));
        assert!(!m(
            &spec(None, Some("calling-ap-title-not-recognized")),
            &o,
            false
        ));
        let p = Observed::Rejected {
            result: 1,
            diagnostic: AcseDiagnostic::Provider(2),
            initiate_error: None,
        };
        assert!(m(&spec(None, Some("no-common-acse-version")), &p, false));
    }

    #[test]
    fn result_any_means_any_failure() {
        let any = Outcome::Result("any".into());
        assert!(m(
            &any,
            &Observed::Action(ActionResult::OtherReason, None),
            false
        ));
        assert!(!m(
            &any,
            &Observed::Action(ActionResult::Success, None),
            false
        ));
    }

    #[test]
    fn every_variation_point_outcome_parses() {
        for v in VARIATION_POINTS {
            for s in v.strict.iter().chain(v.lenient) {
                let o = short_outcome(s);
                if *s != "success" {
                    assert_ne!(o, Outcome::Success, "{} {s}", v.name);
                }
            }
        }
    }
}
