//! How steps are named in events and messages, and the expectation a step carries.

use crate::suite::model::{self as m, Expect, Step};

/// A description of a step for events and messages.
pub fn step_label(step: &Step) -> String {
    match step {
        Step::Connect(_) => "connect".into(),
        Step::Disconnect(_) => "disconnect".into(),
        Step::Associate(a) => format!(
            "associate{}",
            a.mechanism
                .as_ref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default()
        ),
        Step::Release(_) => "release".into(),
        Step::Get(g) => format!(
            "get {}/{}",
            object_label(&g.object, &g.of, g.class, &g.obis),
            g.attr
        ),
        Step::Set(s) => format!(
            "set {}/{}",
            object_label(&s.object, &s.of, s.class, &s.obis),
            s.attr
        ),
        Step::Action(a) => format!(
            "action {}/{}",
            object_label(&a.object, &a.of, a.class, &a.obis),
            a.method
        ),
        Step::Given(inner) => format!("given {}", step_label(inner)),
        Step::Restart(_) => "restart".into(),
        Step::Send(s) => {
            let what = if s.apdu.is_some() {
                "apdu"
            } else if s.protected.is_some() {
                "protected apdu"
            } else if s.hdlc.is_some() {
                "hdlc frame"
            } else if s.wrapper.is_some() {
                "wrapper frame"
            } else {
                "bytes"
            };
            format!("send {what}")
        }
        Step::Replay(_) => "replay".into(),
        Step::KeyTransfer(_) => "key-transfer".into(),
        Step::SecurityActivate(_) => "security-activate".into(),
        Step::ReadCounter(_) => "read-counter".into(),
        Step::Check(_) => "check".into(),
        Step::Wait(w) => format!("wait {w}"),
        Step::Listen(l) => format!("listen {}", l.r#for),
    }
}

/// `clock`, `security-setup of the spare client`, or `8/0-0:1.0.0.255`.
fn object_label(
    object: &Option<String>,
    of: &Option<m::Tpl<m::ClientName>>,
    class: Option<u16>,
    obis: &Option<m::Tpl<String>>,
) -> String {
    match (object, of) {
        (Some(o), Some(who)) => format!("{o} of {}", tpl_text(who)),
        (Some(o), None) => o.clone(),
        (None, _) => format!(
            "{}/{}",
            class.map(|c| c.to_string()).unwrap_or_default(),
            obis.as_ref().map(tpl_text).unwrap_or_default()
        ),
    }
}

fn tpl_text<T: std::fmt::Display>(t: &m::Tpl<T>) -> String {
    match t {
        m::Tpl::Lit(v) => v.to_string(),
        m::Tpl::Var(s) => s.clone(),
    }
}

pub(crate) fn step_expect(step: &Step) -> Option<&Expect> {
    match step {
        Step::Connect(s) => s.expect.as_ref(),
        Step::Disconnect(s) => s.expect.as_ref(),
        Step::Associate(s) => s.expect.as_ref(),
        Step::Release(s) => s.expect.as_ref(),
        Step::Get(s) => s.expect.as_ref(),
        Step::Set(s) => s.expect.as_ref(),
        Step::Action(s) => s.expect.as_ref(),
        Step::Send(s) => s.expect.as_ref(),
        Step::Replay(s) => s.expect.as_ref(),
        Step::KeyTransfer(s) => s.expect.as_ref(),
        Step::SecurityActivate(s) => s.expect.as_ref(),
        Step::Listen(s) => s.expect.as_ref(),
        Step::Given(inner) => step_expect(inner),
        Step::ReadCounter(_) | Step::Check(_) | Step::Wait(_) | Step::Restart(_) => None,
    }
}
