//! Monitors: checks over all the traffic of a run rather than inside one case.
//!
//! Some faults show in every exchange: a meter that reuses GCM nonces, repeats
//! its HLS challenge, changes its system title, answers protected requests in
//! clear or with another invoke-id. Judged step by step, one such fault would
//! fail dozens of cases about something else; here each is watched across the
//! run (and across runs with `--state`, for the meter's counters) and reported
//! once, as its own test case in the suite `monitors`. Each monitor names the
//! simulator quirk that proves it can fail (the mutation test holds it to that).

use std::collections::BTreeMap;

use crate::client::{Anomaly, AnomalyKind};
use crate::runner::event::{Direction, TrafficRecord};
use crate::wire::apdu::Apdu;

/// A monitor as a test case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonitorDef {
    pub id: &'static str,
    pub title: &'static str,
    pub checks: &'static str,
    /// The simulator faults this monitor exists to catch.
    pub detects: &'static [&'static str],
}

/// The suite id monitors report under.
pub const SUITE: &str = "monitors";

pub const NONCES: MonitorDef = MonitorDef {
    id: "MONITOR_SERVER_NONCE",
    title: "The meter never reuses a GCM nonce: under one key its invocation counter never repeats or goes back",
    checks: "Green Book 9.2.7.2.4 (the sender increments its IC for each protected APDU; DLMS UA 1001-6 SYMSEC_0_FraCount_3); NIST SP 800-38D 8 (an IV is never used twice under one key)",
    detects: &[
        "repeats-own-counter",
        "restarts-own-counter",
        "counter-back-after-refused-key-transfer",
    ],
};

pub const CHALLENGES: MonitorDef = MonitorDef {
    id: "MONITOR_HLS_CHALLENGE",
    title: "The meter's HLS server challenges (StoC) never repeat",
    checks: "Green Book 9.2.2.2.3 (StoC is a random challenge; a repeated one lets a recorded f(StoC) be replayed)",
    detects: &["repeats-hls-challenge"],
};

pub const SYSTEM_TITLE: MonitorDef = MonitorDef {
    id: "MONITOR_SYSTEM_TITLE",
    title: "The meter's system title does not change",
    checks: "Green Book 9.2.7.1 (the system title identifies the meter and is part of every GCM nonce); dlms-facts.md 5",
    detects: &["changes-system-title"],
};

pub const PROTECTED_RESPONSES: MonitorDef = MonitorDef {
    id: "MONITOR_PROTECTED_RESPONSES",
    title: "Protected requests get protected responses",
    checks: "Green Book 9.2.7.2 (a response is protected as its request; only an exception-response may come in clear)",
    detects: &["unprotected-responses"],
};

pub const INVOKE_IDS: MonitorDef = MonitorDef {
    id: "MONITOR_INVOKE_ID",
    title: "Every response carries the invoke-id of its request",
    checks: "Green Book 9.3 (Invoke-Id-And-Priority: the server returns the request's invoke-id)",
    detects: &["wrong-invoke-id"],
};

pub const LINK: MonitorDef = MonitorDef {
    id: "MONITOR_HDLC_LINK",
    title: "The meter keeps the HDLC link procedures in every exchange (sequence numbers, polling, frame sizes)",
    checks: "IEC 62056-46 6.4 (ISO/IEC 13239 N(S)/N(R), P/F, negotiated information length), outside the cases about the link (tagged `link`), which judge it themselves",
    // Proven over HDLC in tests/verdicts.rs: against the in-process simulator
    // only the `link` cases run over HDLC.
    detects: &[],
};

/// Every monitor, in report order.
pub const MONITORS: &[MonitorDef] = &[
    NONCES,
    CHALLENGES,
    SYSTEM_TITLE,
    PROTECTED_RESPONSES,
    INVOKE_IDS,
    LINK,
];

/// Findings beyond this many per monitor are counted, not listed.
const MAX_LISTED: usize = 10;

/// Where something was seen: the case and the APDU.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    case: String,
    /// The start of the APDU in hex (a run remembers one per counter, so not all of it).
    hex: String,
}

/// How much of an APDU's hex a finding quotes.
const QUOTED_HEX: usize = 48;

impl Seen {
    fn new(case: &str, hex: &str) -> Self {
        let mut quoted: String = hex.chars().take(QUOTED_HEX).collect();
        if hex.len() > QUOTED_HEX {
            quoted.push_str("...");
        }
        Seen {
            case: case.to_owned(),
            hex: quoted,
        }
    }

    fn describe(&self) -> String {
        format!("{} ({})", self.case, self.hex)
    }
}

/// What one monitor found.
#[derive(Debug, Default, Clone)]
struct Findings {
    /// How many observations it judged.
    observed: usize,
    listed: Vec<String>,
    more: usize,
}

impl Findings {
    fn add(&mut self, text: String) {
        if self.listed.len() < MAX_LISTED {
            self.listed.push(text);
        } else {
            self.more += 1;
        }
    }
}

/// The monitors' memory over a run.
#[derive(Debug, Default)]
pub struct Monitors {
    /// Per key (fingerprint and server system title): counter -> where it was used.
    nonces: BTreeMap<(String, String), BTreeMap<u32, Seen>>,
    /// The highest counter per key carried over from earlier runs (`--state`).
    earlier: BTreeMap<(String, String), u32>,
    challenges: BTreeMap<Vec<u8>, Seen>,
    /// The first server system title and where it was seen.
    title: Option<(Vec<u8>, Seen)>,
    /// The server system title of the last AARE per client.
    assoc_title: BTreeMap<u16, Vec<u8>>,
    findings: BTreeMap<&'static str, Findings>,
}

/// Where the meter's counter stood at the end of a run, per key, for `--state`.
pub type CounterMarks = BTreeMap<(String, String), u32>;

/// How the meter's counter marks are named in the counter store (`--state`):
/// `meter-counter/<system title>/key-<key identity>` (the identity is a GMAC
/// of a fixed label, not the key).
const STORE_PREFIX: &str = "meter-counter/";

/// The marks kept in a counter store.
pub fn marks_from_store(store: &crate::client::CounterStore) -> CounterMarks {
    store
        .entries()
        .filter_map(|(k, v)| {
            let rest = k.strip_prefix(STORE_PREFIX)?;
            let (title, key) = rest.split_once("/key-")?;
            Some(((key.to_owned(), title.to_owned()), v))
        })
        .collect()
}

/// Keeps `marks` in a counter store, never lowering one.
pub fn marks_to_store(marks: &CounterMarks, store: &mut crate::client::CounterStore) {
    for ((key, title), ic) in marks {
        store.advance(&format!("{STORE_PREFIX}{title}/key-{key}"), *ic);
    }
}

impl Monitors {
    pub fn new() -> Self {
        Monitors::default()
    }

    /// Counters from earlier runs against the same meter: a counter at or
    /// below one of these under the same key is a reused nonce.
    pub fn with_earlier(mut self, marks: CounterMarks) -> Self {
        self.earlier = marks;
        self
    }

    /// The highest counter seen per key (with the earlier runs'), to keep for the next run.
    pub fn marks(&self) -> CounterMarks {
        let mut out = self.earlier.clone();
        for (k, seen) in &self.nonces {
            if let Some((&ic, _)) = seen.last_key_value() {
                let e = out.entry(k.clone()).or_insert(ic);
                *e = (*e).max(ic);
            }
        }
        out
    }

    fn finding(&mut self, m: &MonitorDef, text: String) {
        self.findings.entry(m.id).or_default().add(text);
    }

    fn observed(&mut self, m: &MonitorDef) {
        self.findings.entry(m.id).or_default().observed += 1;
    }

    /// An anomaly a client noted during `case`.
    pub fn anomaly(&mut self, case: &str, a: &Anomaly) {
        let m = match a.kind {
            AnomalyKind::UnprotectedResponse => &PROTECTED_RESPONSES,
            AnomalyKind::InvokeIdMismatch => &INVOKE_IDS,
        };
        self.finding(m, format!("{case}: {}", a.text));
    }

    /// A link protocol violation the link saw during `case`.
    pub fn link_violation(&mut self, case: &str, text: &str) {
        self.finding(&LINK, format!("{case}: {text}"));
    }

    /// An HDLC exchange the link watched (so the link monitor knows it watched something).
    fn hdlc_seen(&mut self) {
        self.observed(&LINK);
    }

    /// One traffic record of `case` on the link of client `sap`, whose
    /// encryption key has the identity `key` ([`crate::security::Key::identity`];
    /// its first four digits, the fingerprint, are what messages show).
    pub fn record(&mut self, case: &str, sap: u16, key: Option<&str>, r: &TrafficRecord) {
        if r.direction == Direction::Received && r.layer == "hdlc" {
            self.hdlc_seen();
        }
        if r.direction != Direction::Received || r.layer != "apdu" {
            return;
        }
        let Ok(bytes) = hex::decode(&r.hex) else {
            return;
        };
        let Ok(apdu) = Apdu::decode(&bytes) else {
            return;
        };
        let seen = Seen::new(case, &r.hex);
        match &apdu {
            Apdu::Aare(a) => {
                if let Some(t) = &a.responding_ap_title {
                    self.system_title(t, &seen);
                    self.assoc_title.insert(sap, t.clone());
                }
                if let Some(stoc) = &a.responding_authentication_value {
                    self.challenge(stoc, &seen);
                }
                if let Some(ui) = &a.user_information
                    && let Ok(inner) = Apdu::decode(ui)
                {
                    let seen = Seen::new(case, &hex::encode_upper(ui));
                    self.ciphered(sap, key, &inner, &seen);
                }
            }
            other => {
                // Responses the anomaly monitors watch (clients report what is wrong).
                if matches!(
                    other,
                    Apdu::Ciphered(_) | Apdu::GeneralGloCiphering(_) | Apdu::GeneralDedCiphering(_)
                ) {
                    self.observed(&PROTECTED_RESPONSES);
                    self.observed(&INVOKE_IDS);
                } else if other.invoke_id().is_some() {
                    self.observed(&INVOKE_IDS);
                }
                self.ciphered(sap, key, other, &seen)
            }
        }
    }

    fn system_title(&mut self, t: &[u8], seen: &Seen) {
        self.observed(&SYSTEM_TITLE);
        match &self.title {
            None => self.title = Some((t.to_vec(), seen.clone())),
            Some((first, _)) if first == t => {}
            Some((first, at)) => {
                let text = format!(
                    "{} carries the system title {}; {} carried {}",
                    seen.case,
                    hex::encode_upper(t),
                    at.case,
                    hex::encode_upper(first)
                );
                self.finding(&SYSTEM_TITLE, text);
            }
        }
    }

    fn challenge(&mut self, stoc: &[u8], seen: &Seen) {
        self.observed(&CHALLENGES);
        if let Some(first) = self.challenges.get(stoc) {
            let text = format!(
                "the server challenge {} of {} repeats the one of {}",
                hex::encode_upper(stoc),
                seen.case,
                first.case
            );
            self.finding(&CHALLENGES, text);
        } else {
            self.challenges.insert(stoc.to_vec(), seen.clone());
        }
    }

    fn ciphered(&mut self, sap: u16, key: Option<&str>, apdu: &Apdu, seen: &Seen) {
        let (ic, title) = match apdu {
            Apdu::Ciphered(c) if c.is_global() => {
                (c.invocation_counter(), self.assoc_title.get(&sap).cloned())
            }
            Apdu::GeneralGloCiphering(g) => (g.invocation_counter(), Some(g.system_title.clone())),
            _ => return,
        };
        let (Some(ic), Some(key)) = (ic, key) else {
            return;
        };
        self.observed(&NONCES);
        let title = title.map(hex::encode_upper).unwrap_or_default();
        let k = (key.to_owned(), title.clone());
        let key = key.get(..4).unwrap_or(key);
        if let Some(&mark) = self.earlier.get(&k)
            && ic <= mark
        {
            let text = format!(
                "{} uses invocation counter {ic} under the key {key} (system title {title}); an earlier run already saw counters up to {mark} under it",
                seen.describe()
            );
            self.finding(&NONCES, text);
        }
        let used = self.nonces.entry(k).or_default();
        let text = if let Some(first) = used.get(&ic) {
            Some(format!(
                "nonce reuse: invocation counter {ic} under the key {key} (system title {title}) in {} and again in {}",
                first.describe(),
                seen.describe()
            ))
        } else {
            match used.last_key_value() {
                Some((&top, at)) if top > ic => Some(format!(
                    "the counter went back: {} uses {ic} after {} used {top} under the same key {key}",
                    seen.describe(),
                    at.describe()
                )),
                _ => None,
            }
        };
        used.entry(ic).or_insert_with(|| seen.clone());
        if let Some(t) = text {
            self.finding(&NONCES, t);
        }
    }

    /// Each monitor's verdict: failed with what it found, passed, or skipped
    /// when the run gave it nothing to watch.
    pub fn verdicts(&self) -> Vec<(MonitorDef, MonitorVerdict)> {
        MONITORS
            .iter()
            .map(|m| {
                let f = self.findings.get(m.id).cloned().unwrap_or_default();
                let v = if !f.listed.is_empty() {
                    let mut lines = f.listed.clone();
                    if f.more > 0 {
                        lines.push(format!("... and {} more", f.more));
                    }
                    MonitorVerdict::Failed(lines)
                } else if f.observed == 0 {
                    MonitorVerdict::NothingSeen
                } else {
                    MonitorVerdict::Passed(f.observed)
                };
                (*m, v)
            })
            .collect()
    }
}

/// A monitor's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MonitorVerdict {
    /// How many observations it judged.
    Passed(usize),
    Failed(Vec<String>),
    NothingSeen,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn rec(hex: &str) -> TrafficRecord {
        TrafficRecord {
            at: Duration::ZERO,
            direction: Direction::Received,
            layer: "apdu",
            hex: hex.into(),
            decoded: String::new(),
        }
    }

    /// A general-glo-ciphering APDU (0xDB) with system title 4D4D4D0000BC614E,
    /// security control 0x30 and the counter `ic`, content bytes not checked here.
    fn general_glo(ic: u32) -> String {
        format!("DB084D4D4D0000BC614E1230{ic:08X}00112233445566778899AABBCC")
    }

    #[test]
    fn rejects_a_counter_used_twice_and_one_going_back() {
        let mut m = Monitors::new();
        m.record("A", 1, Some("k1"), &rec(&general_glo(5)));
        m.record("A", 1, Some("k1"), &rec(&general_glo(6)));
        m.record("B", 1, Some("k1"), &rec(&general_glo(6)));
        m.record("C", 1, Some("k1"), &rec(&general_glo(4)));
        let v = m.verdicts();
        let MonitorVerdict::Failed(lines) = &v[0].1 else {
            panic!("{v:?}")
        };
        assert!(
            lines[0].contains("nonce reuse: invocation counter 6"),
            "{lines:?}"
        );
        assert!(
            lines[0].contains("A (") && lines[0].contains("B ("),
            "{lines:?}"
        );
        assert!(lines[1].contains("went back"), "{lines:?}");
    }

    #[test]
    fn accepts_growing_counters_and_a_new_key_starting_again() {
        let mut m = Monitors::new();
        for ic in 1..5 {
            m.record("A", 1, Some("k1"), &rec(&general_glo(ic)));
        }
        m.record("B", 1, Some("k2"), &rec(&general_glo(1)));
        assert_eq!(m.verdicts()[0].1, MonitorVerdict::Passed(5));
        assert_eq!(m.verdicts()[1].1, MonitorVerdict::NothingSeen);
    }

    #[test]
    fn counter_marks_round_trip_through_the_counter_store() {
        let mut m = Monitors::new();
        m.record("A", 1, Some("k1"), &rec(&general_glo(9)));
        let mut store = crate::client::CounterStore::memory();
        marks_to_store(&m.marks(), &mut store);
        assert_eq!(marks_from_store(&store), m.marks());
        assert!(!m.marks().is_empty());
    }

    #[test]
    fn remembers_counters_of_earlier_runs() {
        let mut first = Monitors::new();
        first.record("A", 1, Some("k1"), &rec(&general_glo(9)));
        let mut second = Monitors::new().with_earlier(first.marks());
        second.record("B", 1, Some("k1"), &rec(&general_glo(3)));
        assert!(matches!(second.verdicts()[0].1, MonitorVerdict::Failed(_)));
    }
}
