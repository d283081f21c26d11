//! Semantic checks on a parsed suite: what the YAML types cannot say. Every problem
//! is reported (not just the first), each at the value it is about.

use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;

use super::diag::{Diagnostic, Span, did_you_mean, suggestion};
use super::loader::token_len;
use super::model::*;
use super::model_de::is_template;
use super::spans::{Node, Seg};
use super::vars::{Part, is_valid_name, parse_template};
use super::vocab;
use crate::wire::obis::Obis;

/// What the caller knows about the run, for checks that depend on it. An empty list
/// means "don't check" (the loader alone cannot know the device's features).
#[derive(Debug, Clone, Default)]
pub struct ValidationContext {
    /// Feature names a `requires:` may use (e.g. `crate::profile::KNOWN_FEATURES`).
    pub known_features: Vec<String>,
    /// Simulator quirk names a `detects:` may use.
    pub known_quirks: Vec<String>,
    /// Variation point names a `{profile: ...}` outcome may use.
    pub known_outcome_profiles: Vec<String>,
}

/// Check `suite` and return every problem found; `tree` is the same text parsed with
/// locations (see `spans`), `source` the text itself.
pub(crate) fn validate_suite(
    suite: &Suite,
    tree: Option<&Node>,
    source: &str,
    ctx: &ValidationContext,
) -> Vec<Diagnostic> {
    let mut v = Validator {
        tree,
        source,
        ctx,
        declared: suite
            .vars
            .keys()
            .cloned()
            .chain(super::vars::PROFILE_VARS.iter().map(|(n, _)| n.to_string()))
            .collect(),
        diags: Vec::new(),
    };
    v.suite(suite);
    let mut seen = BTreeSet::new();
    let mut diags: Vec<Diagnostic> = v
        .diags
        .into_iter()
        .filter(|d| seen.insert((d.span.map(|s| (s.line, s.column)), d.message.clone())))
        .collect();
    diags.sort_by_key(|d| d.span.map(|s| (s.line, s.column)));
    diags
}

/// A path into the suite, built as the walk goes down.
type Path = Vec<Seg>;

fn at(base: &[Seg], more: &[Seg]) -> Path {
    let mut p = base.to_vec();
    p.extend_from_slice(more);
    p
}

fn k(s: &str) -> Seg {
    Seg::Key(s.to_owned())
}

/// A problem before it is placed: where (a path, optionally a piece of the value's
/// text to underline) and what.
struct Problem {
    message: String,
    label: String,
    notes: Vec<String>,
    needle: Option<String>,
}

impl Problem {
    fn new(message: impl Into<String>, label: impl Into<String>) -> Self {
        Problem {
            message: message.into(),
            label: label.into(),
            notes: Vec::new(),
            needle: None,
        }
    }
    fn note(mut self, n: impl Into<String>) -> Self {
        self.notes.push(n.into());
        self
    }
    fn needle(mut self, n: impl Into<String>) -> Self {
        self.needle = Some(n.into());
        self
    }
}

struct Validator<'a> {
    tree: Option<&'a Node>,
    source: &'a str,
    ctx: &'a ValidationContext,
    declared: BTreeSet<String>,
    diags: Vec<Diagnostic>,
}

impl Validator<'_> {
    // -- placing problems -------------------------------------------------

    fn place(&self, path: &[Seg], needle: Option<&str>) -> (Option<Span>, Option<String>) {
        let Some(tree) = self.tree else {
            return (None, None);
        };
        let (node, _) = tree.nearest(path);
        let mut note = None;
        let mut sp = node.at;
        if node.defined != node.at && node.defined.line > 0 {
            note = Some(format!(
                "note: used through the alias or merge key at line {}, column {}",
                node.at.line, node.at.column
            ));
            sp = node.defined;
        }
        let chars: Vec<char> = super::diag::source_line(self.source, sp.line)
            .unwrap_or("")
            .chars()
            .collect();
        let col0 = (sp.column as usize).saturating_sub(1);
        if let Some(n) = needle.filter(|n| !n.is_empty()) {
            let needle: Vec<char> = n.chars().collect();
            if let Some(pos) = (col0..chars.len()).find(|i| {
                chars
                    .get(*i..*i + needle.len())
                    .is_some_and(|w| w == needle.as_slice())
            }) {
                let s = Span {
                    line: sp.line,
                    column: pos as u32 + 1,
                    len: needle.len() as u32,
                };
                return (Some(s), note);
            }
        }
        let len = if sp.len > 0 && col0 + (sp.len as usize) <= chars.len() {
            sp.len
        } else {
            token_len(&chars, col0) as u32
        };
        (Some(Span { len, ..sp }), note)
    }

    fn report(&mut self, path: &[Seg], p: Problem) {
        let (span, note) = self.place(path, p.needle.as_deref());
        let mut d = Diagnostic::new(p.message);
        if let Some(s) = span {
            d = d.at(s, p.label);
        }
        d.notes = p.notes;
        if let Some(n) = note {
            d.notes.push(n);
        }
        self.diags.push(d);
    }

    fn line_of(&self, path: &[Seg]) -> Option<u32> {
        self.place(path, None).0.map(|s| s.line)
    }

    // -- generic checks --------------------------------------------------

    /// `value` must be one of `names`.
    fn name_in(&mut self, path: &[Seg], what: &str, value: &str, names: &[&str]) {
        if names.contains(&value) {
            return;
        }
        let (label, notes) = suggestion(value, names);
        let mut p = Problem::new(format!("unknown {what} `{value}`"), label);
        p.notes = notes;
        self.report(path, p);
    }

    /// `value` must be in a caller-provided list (when the list is not empty).
    fn known(&mut self, path: &[Seg], what: &str, value: &str, names: &[String]) {
        if names.is_empty() || names.iter().any(|n| n == value) {
            return;
        }
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        self.name_in(path, what, value, &refs);
    }

    /// Every `${name}` in `text` must name a declared variable or a value saved earlier.
    fn refs(&mut self, path: &[Seg], text: &str, saved: &BTreeSet<String>) {
        match parse_template(text) {
            Err(e) => {
                let needle: String = text.get(e.offset..).unwrap_or("").chars().take(2).collect();
                self.report(path, Problem::new(e.message, "").needle(needle));
            }
            Ok(parts) => {
                for part in parts {
                    let Part::Var(name, _) = part else { continue };
                    if self.declared.contains(name) || saved.contains(name) {
                        continue;
                    }
                    let mut names: Vec<&str> = self.declared.iter().map(String::as_str).collect();
                    names.extend(saved.iter().map(String::as_str));
                    let label = did_you_mean(name, &names)
                        .map(|n| format!("did you mean `{n}`?"))
                        .unwrap_or_else(|| "not declared".into());
                    let p = Problem::new(format!("undefined variable `{name}`"), label)
                        .needle(format!("${{{name}}}"))
                        .note("help: declare it under `vars:` at the top of the suite, or save a value under this name in an earlier step (`save: name`)");
                    self.report(path, p);
                }
            }
        }
    }

    /// A text field that does not take variables: say so when it has one.
    fn no_template(&mut self, path: &[Seg], field: &str, value: &str) -> bool {
        if is_template(value) {
            self.report(
                path,
                Problem::new(
                    format!("`{field}` does not take variables"),
                    "a `${...}` reference is not resolved here",
                ),
            );
            return false;
        }
        true
    }

    fn hex(&mut self, path: &[Seg], field: &str, value: &str) {
        if !self.no_template(path, field, value) {
            return;
        }
        if let Err(e) = vocab::parse_hex(value) {
            self.report(
                path,
                Problem::new(
                    format!("invalid hex for `{field}`: {e}"),
                    "expected hex bytes, e.g. `C0 01 C1`",
                ),
            );
        }
    }

    fn hex_tpl(&mut self, path: &[Seg], field: &str, t: &Tpl<String>, saved: &BTreeSet<String>) {
        match t {
            Tpl::Var(s) => self.refs(path, s, saved),
            Tpl::Lit(s) => self.hex(path, field, s),
        }
    }

    fn var_tpl<T>(&mut self, path: &[Seg], t: &Option<Tpl<T>>, saved: &BTreeSet<String>) {
        if let Some(Tpl::Var(s)) = t {
            self.refs(path, s, saved);
        }
    }

    fn text_tpl(&mut self, path: &[Seg], t: &Tpl<String>, saved: &BTreeSet<String>) {
        if let Tpl::Var(s) = t {
            self.refs(path, s, saved);
        }
    }

    fn obis(&mut self, path: &[Seg], t: &Tpl<String>, saved: &BTreeSet<String>) {
        match t {
            Tpl::Var(s) => self.refs(path, s, saved),
            Tpl::Lit(s) => {
                if Obis::from_str(s).is_ok() {
                    return;
                }
                let big = s
                    .split(['-', ':', '.'])
                    .find(|g| g.trim().parse::<u32>().is_ok_and(|n| n > 255));
                let label = match big {
                    Some(g) => format!("`{}` is more than 255", g.trim()),
                    None => {
                        "expected A-B:C.D.E.F, A.B.C.D.E.F or 12 hex digits, each group 0..=255"
                            .into()
                    }
                };
                self.report(
                    path,
                    Problem::new(format!("invalid OBIS code `{s}`"), label),
                );
            }
        }
    }

    fn duration(&mut self, path: &[Seg], field: &str, value: &str) {
        if !self.no_template(path, field, value) {
            return;
        }
        if humantime::parse_duration(value.trim()).is_err() {
            self.report(
                path,
                Problem::new(
                    format!("invalid duration `{value}` for `{field}`"),
                    "expected a duration like `200ms`, `1s` or `2m`",
                ),
            );
        }
    }

    fn counter(&mut self, path: &[Seg], t: &Tpl<String>, saved: &BTreeSet<String>) {
        match t {
            Tpl::Var(s) => self.refs(path, s, saved),
            Tpl::Lit(s) => {
                if let Err(e) = vocab::parse_counter(s) {
                    let mut words: Vec<&str> = vocab::COUNTER_WORDS.to_vec();
                    words.push("last-1");
                    let label = did_you_mean(s, &words)
                        .map(|w| format!("did you mean `{w}`?"))
                        .unwrap_or_default();
                    self.report(path, Problem::new(e, label));
                }
            }
        }
    }

    fn save_name(&mut self, path: &[Seg], name: &str, saved: &mut BTreeSet<String>) {
        if is_valid_name(name) {
            saved.insert(name.to_owned());
        } else {
            self.report(
                path,
                Problem::new(
                    format!("invalid variable name `{name}`"),
                    "use a letter or `_`, then letters, digits, `_` or `-`",
                ),
            );
        }
    }

    fn security(&mut self, path: &[Seg], s: &Option<String>) {
        if let Some(s) = s {
            self.name_in(path, "security level", s, vocab::SECURITY);
        }
    }

    fn ciphering(&mut self, path: &[Seg], s: &Option<String>) {
        if let Some(s) = s {
            self.name_in(path, "ciphering", s, vocab::CIPHERING);
        }
    }

    // -- the walk ----------------------------------------------------------

    fn suite(&mut self, s: &Suite) {
        if s.suite.trim().is_empty() {
            self.report(
                &[k("suite")],
                Problem::new("the suite id is empty", "give the suite an id"),
            );
        }
        for name in s.vars.keys() {
            if !is_valid_name(name) {
                self.report(
                    &[k("vars"), k(name)],
                    Problem::new(
                        format!("invalid variable name `{name}`"),
                        "use a letter or `_`, then letters, digits, `_` or `-`",
                    ),
                );
            }
        }
        for (i, f) in s.requires.iter().enumerate() {
            self.known(
                &[k("requires"), Seg::Index(i)],
                "feature",
                f,
                &self.ctx.known_features.clone(),
            );
        }
        if s.cases.is_empty() {
            self.report(
                &[k("cases")],
                Problem::new("the suite has no cases", "add at least one case"),
            );
        }
        let mut first: HashMap<&str, usize> = HashMap::new();
        for (i, c) in s.cases.iter().enumerate() {
            let base = vec![k("cases"), Seg::Index(i)];
            if let Some(&j) = first.get(c.id.as_str()) {
                let line = self.line_of(&[k("cases"), Seg::Index(j), k("id")]);
                let mut p = Problem::new(
                    format!("duplicate case id `{}`", c.id),
                    "used by an earlier case",
                );
                if let Some(l) = line {
                    p = p.note(format!(
                        "note: first used at line {l}; case ids must be unique within a suite"
                    ));
                }
                self.report(&at(&base, &[k("id")]), p);
            } else {
                first.insert(&c.id, i);
            }
            self.case(&base, c);
        }
    }

    fn case(&mut self, base: &[Seg], c: &Case) {
        if c.id.trim().is_empty() {
            self.report(
                &at(base, &[k("id")]),
                Problem::new("the case id is empty", "give the case an id"),
            );
        }
        let features = self.ctx.known_features.clone();
        for (i, f) in c.requires.iter().enumerate() {
            self.known(
                &at(base, &[k("requires"), Seg::Index(i)]),
                "feature",
                f,
                &features,
            );
        }
        let quirks = self.ctx.known_quirks.clone();
        for (i, q) in c.detects.iter().enumerate() {
            self.known(
                &at(base, &[k("detects"), Seg::Index(i)]),
                "quirk",
                q,
                &quirks,
            );
        }
        if let Some(t) = &c.timeout {
            self.duration(&at(base, &[k("timeout")]), "timeout", t);
        }
        let empty = BTreeSet::new();
        self.var_tpl(&at(base, &[k("client")]), &c.client, &empty);
        if c.steps.is_empty() {
            self.report(
                &at(base, &[k("steps")]),
                Problem::new(
                    format!("case `{}` has no steps", c.id),
                    "add at least one step",
                ),
            );
        }
        let mut saved = BTreeSet::new();
        for (j, st) in c.steps.iter().enumerate() {
            self.step(
                &at(base, &[k("steps"), Seg::Index(j)]),
                &st.value,
                &mut saved,
            );
        }
        for (j, st) in c.teardown.iter().enumerate() {
            self.step(
                &at(base, &[k("teardown"), Seg::Index(j)]),
                &st.value,
                &mut saved,
            );
        }
    }

    fn step(&mut self, sp: &[Seg], step: &Step, saved: &mut BTreeSet<String>) {
        let p = |name: &str, more: &[&str]| -> Path {
            let mut v = sp.to_vec();
            v.push(k(name));
            v.extend(more.iter().map(|m| k(m)));
            v
        };
        match step {
            Step::Connect(c) => {
                self.var_tpl(&p("connect", &["client"]), &c.client, saved);
                self.expect(&p("connect", &[]), &c.expect, saved);
                // A connect step saves the negotiated HDLC parameters.
                for name in super::model::CONNECT_SAVES {
                    saved.insert((*name).to_owned());
                }
            }
            Step::Disconnect(d) => self.expect(&p("disconnect", &[]), &d.expect, saved),
            Step::Associate(a) => self.associate(&p("associate", &[]), a, saved),
            Step::Release(r) => self.expect(&p("release", &[]), &r.expect, saved),
            Step::Get(g) => {
                self.object(&p("get", &[]), &g.object, &g.of, g.class, &g.obis, saved);
                self.security(&p("get", &["security"]), &g.security);
                self.expect(&p("get", &[]), &g.expect, saved);
                if let Some(s) = &g.save {
                    self.save_name(&p("get", &["save"]), s, saved);
                }
            }
            Step::Set(s) => {
                self.object(&p("set", &[]), &s.object, &s.of, s.class, &s.obis, saved);
                self.data(&p("set", &["value"]), &s.value, false, saved);
                self.security(&p("set", &["security"]), &s.security);
                self.expect(&p("set", &[]), &s.expect, saved);
            }
            Step::Action(a) => {
                self.object(&p("action", &[]), &a.object, &a.of, a.class, &a.obis, saved);
                if let Some(d) = &a.params {
                    self.data(&p("action", &["params"]), d, false, saved);
                }
                self.security(&p("action", &["security"]), &a.security);
                self.expect(&p("action", &[]), &a.expect, saved);
                if let Some(s) = &a.save {
                    self.save_name(&p("action", &["save"]), s, saved);
                }
            }
            Step::Send(s) => self.send(sp, &p("send", &[]), s, saved),
            Step::Replay(r) => self.expect(&p("replay", &[]), &r.expect, saved),
            Step::KeyTransfer(kt) => self.key_transfer(&p("key-transfer", &[]), kt, saved),
            Step::SecurityActivate(s) => {
                let base = p("security-activate", &[]);
                match &s.policy {
                    Tpl::Var(v) => self.refs(&at(&base, &[k("policy")]), v, saved),
                    Tpl::Lit(v) => {
                        if v.trim().parse::<u8>().is_err() {
                            let names = vocab::names(vocab::SECURITY_POLICIES);
                            self.name_in(&at(&base, &[k("policy")]), "security policy", v, &names);
                        }
                    }
                }
                if let Some(o) = &s.obis {
                    self.obis(&at(&base, &[k("obis")]), o, saved);
                }
                self.expect(&base, &s.expect, saved);
            }
            Step::ReadCounter(r) => {
                self.var_tpl(&p("read-counter", &["client"]), &r.client, saved);
                self.save_name(&p("read-counter", &["save"]), &r.save, saved);
            }
            Step::Check(c) => {
                self.refs(&p("check", &["left"]), &c.left, saved);
                self.refs(&p("check", &["right"]), &c.right, saved);
                self.name_in(&p("check", &["op"]), "comparison", &c.op, vocab::CHECK_OPS);
            }
            Step::Wait(w) => self.duration(&p("wait", &[]), "wait", w),
            Step::Restart(r) => {
                if let Some(w) = &r.wait {
                    self.duration(&p("restart", &["wait"]), "wait", w);
                }
            }
            Step::Given(inner) => {
                if matches!(**inner, Step::Given(_)) {
                    self.report(
                        &p("given", &[]),
                        Problem::new(
                            "`given` inside `given`",
                            "write one `given:` around the step",
                        ),
                    );
                }
                self.step(&p("given", &[]), inner, saved);
            }
            Step::Listen(l) => {
                self.duration(&p("listen", &["for"]), "for", &l.r#for);
                self.expect(&p("listen", &[]), &l.expect, saved);
            }
        }
    }

    /// A step's object: a known `object` role, or `class` and `obis`, not both.
    fn object(
        &mut self,
        base: &[Seg],
        object: &Option<String>,
        of: &Option<Tpl<super::model::ClientName>>,
        class: Option<u16>,
        obis: &Option<Tpl<String>>,
        saved: &BTreeSet<String>,
    ) {
        self.var_tpl(&at(base, &[k("of")]), of, saved);
        match (object, class, obis) {
            (Some(role), None, None) => {
                let names = crate::profile::roles::object_role_names();
                self.name_in(&at(base, &[k("object")]), "object role", role, &names);
                let client_object =
                    crate::profile::roles::CLIENT_OBJECT_ROLES.contains(&role.as_str());
                if of.is_some() && !client_object {
                    self.report(
                        &at(base, &[k("of")]),
                        Problem::new(
                            format!("`of` names whose object; `{role}` belongs to the device"),
                            format!(
                                "`of` goes with {}",
                                crate::profile::roles::CLIENT_OBJECT_ROLES.join(" or ")
                            ),
                        ),
                    );
                }
            }
            (None, Some(_), Some(o)) => {
                self.obis(&at(base, &[k("obis")]), o, saved);
                if of.is_some() {
                    self.report(
                        &at(base, &[k("of")]),
                        Problem::new("`of` goes with `object`", "name the object by role"),
                    );
                }
            }
            (Some(_), _, _) => self.report(
                &at(base, &[k("object")]),
                Problem::new(
                    "both an `object` role and `class`/`obis`",
                    "give the object by role, or by class and obis, not both",
                ),
            ),
            (None, _, _) => self.report(
                base,
                Problem::new(
                    "the step names no object",
                    "give `object: ROLE` (e.g. `clock`), or both `class` and `obis`",
                ),
            ),
        }
    }

    fn associate(&mut self, base: &[Seg], a: &AssociateStep, saved: &BTreeSet<String>) {
        let f = |n: &str| at(base, &[k(n)]);
        self.var_tpl(&f("client"), &a.client, saved);
        if let Some(m) = &a.mechanism {
            self.name_in(&f("mechanism"), "mechanism", m, vocab::MECHANISMS);
        }
        self.security(&f("security"), &a.security);
        self.ciphering(&f("ciphering"), &a.ciphering);
        if let Some(pw) = &a.password {
            self.text_tpl(&f("password"), pw, saved);
        }
        if let Some(c) = &a.context {
            let is_oid = c.split('.').count() >= 2
                && c.split('.')
                    .all(|g| !g.is_empty() && g.bytes().all(|b| b.is_ascii_digit()));
            if !is_oid {
                let names = vocab::names(vocab::APPLICATION_CONTEXTS);
                let (label, mut notes) = suggestion(c, &names);
                if notes.is_empty() {
                    notes.push("help: or an OID in dotted form, e.g. `2.16.756.5.8.1.3`".into());
                } else {
                    notes = vec![format!(
                        "help: expected {}, or an OID in dotted form",
                        super::diag::one_of(&names)
                    )];
                }
                let mut p = Problem::new(format!("unknown application context `{c}`"), label);
                p.notes = notes;
                self.report(&f("context"), p);
            }
        }
        if let Some(v) = &a.protocol_version {
            self.hex(&f("protocol-version"), "protocol-version", v);
        }
        if let Some(t) = &a.calling_ap_title {
            self.hex_tpl(&f("calling-ap-title"), "calling-ap-title", t, saved);
        }
        match &a.conformance {
            Some(Conformance::Names(names)) => {
                for (i, n) in names.iter().enumerate() {
                    if n != "reserved-six" {
                        self.name_in(
                            &at(base, &[k("conformance"), Seg::Index(i)]),
                            "conformance bit",
                            n,
                            vocab::CONFORMANCE_BITS,
                        );
                    }
                }
            }
            Some(Conformance::Hex(h)) => {
                let ok = h.len() == 6 && h.bytes().all(|b| b.is_ascii_hexdigit());
                if !ok {
                    self.report(
                        &f("conformance"),
                        Problem::new(
                            format!("invalid conformance `{h}`"),
                            "expected 6 hex digits like `007E1F`, or a list of bit names",
                        ),
                    );
                }
            }
            None => {}
        }
        if let Some(c) = &a.challenge {
            self.hex(&f("challenge"), "challenge", c);
        }
        if let Some(w) = &a.wrong {
            let g = |n: &str| at(base, &[k("wrong"), k(n)]);
            // `original`: the device profile's key as loaded (the old key after a key transfer).
            if let Some(x) = w.encryption_key.as_ref().filter(|x| *x != "original") {
                self.hex(&g("encryption-key"), "encryption-key", x);
            }
            if let Some(x) = w.authentication_key.as_ref().filter(|x| *x != "original") {
                self.hex(&g("authentication-key"), "authentication-key", x);
            }
            if let Some(x) = &w.system_title {
                self.hex(&g("system-title"), "system-title", x);
            }
            if let Some(c) = &w.initiate_counter {
                self.counter(&g("initiate-counter"), c, saved);
            }
        }
        self.expect(base, &a.expect, saved);
    }

    fn send(&mut self, step_path: &[Seg], base: &[Seg], s: &SendStep, saved: &BTreeSet<String>) {
        let kinds: Vec<&str> = [
            ("apdu", s.apdu.is_some()),
            ("protected", s.protected.is_some()),
            ("hdlc", s.hdlc.is_some()),
            ("wrapper", s.wrapper.is_some()),
            ("bytes", s.bytes.is_some()),
        ]
        .iter()
        .filter(|(_, present)| *present)
        .map(|(n, _)| *n)
        .collect();
        let all = ["apdu", "protected", "hdlc", "wrapper", "bytes"];
        match kinds.as_slice() {
            [_] => {}
            [] => self.report(
                step_path,
                Problem::new(
                    format!("`send` needs one of {}", super::diag::one_of(&all)),
                    "nothing to send",
                ),
            ),
            more => {
                let found = super::diag::one_of(more).replace(" or ", " and ");
                self.report(
                    step_path,
                    Problem::new(
                        format!("`send` takes exactly one of {}", super::diag::one_of(&all)),
                        format!("found {found}"),
                    )
                    .note("help: use one `send` step for each thing to send"),
                );
            }
        }
        let f = |n: &[&str]| {
            let mut v = base.to_vec();
            v.extend(n.iter().map(|x| k(x)));
            v
        };
        if let Some(a) = &s.apdu {
            self.hex_tpl(&f(&["apdu"]), "apdu", a, saved);
        }
        if let Some(b) = &s.bytes {
            self.hex_tpl(&f(&["bytes"]), "bytes", b, saved);
        }
        if let Some(pr) = &s.protected {
            self.hex_tpl(&f(&["protected", "apdu"]), "apdu", &pr.apdu, saved);
            if let Some(c) = &pr.counter {
                self.counter(&f(&["protected", "counter"]), c, saved);
            }
            self.ciphering(&f(&["protected", "ciphering"]), &pr.ciphering);
            self.security(&f(&["protected", "security"]), &pr.security);
            if let Some(t) = &pr.tamper {
                self.name_in(
                    &f(&["protected", "tamper"]),
                    "tamper target",
                    t,
                    vocab::TAMPER,
                );
            }
        }
        if let Some(h) = &s.hdlc {
            if let Some(c) = &h.control {
                let is_byte = c.len() == 2 && c.bytes().all(|b| b.is_ascii_hexdigit());
                if !is_byte && !vocab::HDLC_CONTROLS.contains(&c.as_str()) {
                    let (label, _) = suggestion(c, vocab::HDLC_CONTROLS);
                    self.report(
                        &f(&["hdlc", "control"]),
                        Problem::new(format!("unknown HDLC control `{c}`"), label).note(format!(
                            "help: expected {}, or a control byte in hex like `93`",
                            super::diag::one_of(vocab::HDLC_CONTROLS)
                        )),
                    );
                }
            }
            if let Some(x) = &h.dest {
                self.hex_tpl(&f(&["hdlc", "dest"]), "dest", x, saved);
            }
            if let Some(x) = &h.prefix {
                self.hex(&f(&["hdlc", "prefix"]), "prefix", x);
            }
            if let Some(x) = &h.src {
                self.hex_tpl(&f(&["hdlc", "src"]), "src", x, saved);
            }
            if let Some(x) = &h.info {
                self.hex_tpl(&f(&["hdlc", "info"]), "info", x, saved);
            }
            for (name, v) in [("hcs", &h.hcs), ("fcs", &h.fcs)] {
                if let Some(x) = v
                    && x != vocab::BAD_CHECKSUM
                {
                    self.hex(&f(&["hdlc", name]), name, x);
                }
            }
        }
        if let Some(w) = &s.wrapper
            && let Some(x) = &w.payload
        {
            self.hex_tpl(&f(&["wrapper", "payload"]), "payload", x, saved);
        }
        self.expect(base, &s.expect, saved);
    }

    fn key_transfer(&mut self, base: &[Seg], kt: &KeyTransferStep, saved: &mut BTreeSet<String>) {
        if kt.keys.is_empty() {
            self.report(
                &at(base, &[k("keys")]),
                Problem::new("`key-transfer` has no keys", "list at least one key"),
            );
        }
        for (i, key) in kt.keys.iter().enumerate() {
            let kp = |n: &str| at(base, &[k("keys"), Seg::Index(i), k(n)]);
            if key.id.trim().parse::<u8>().is_err() {
                let names = vocab::names(vocab::KEY_IDS);
                self.name_in(&kp("id"), "key id", &key.id, &names);
            }
            match &key.key {
                Tpl::Var(v) => self.refs(&kp("key"), v, saved),
                Tpl::Lit(v) => {
                    if let (false, Err(e)) =
                        (vocab::KEY_WORDS.contains(&v.as_str()), vocab::parse_hex(v))
                    {
                        let (label, _) = suggestion(v, vocab::KEY_WORDS);
                        let looks_hex = v.chars().all(|c| c.is_ascii_hexdigit() || c == ' ');
                        let label = if !label.is_empty() {
                            label
                        } else if looks_hex {
                            e
                        } else {
                            "expected hex, `generate`, `original` or `${var}`".to_string()
                        };
                        self.report(
                            &kp("key"),
                            Problem::new(format!("invalid key `{v}`"), label),
                        );
                    }
                }
            }
            if let Some(s) = &key.save {
                self.save_name(&kp("save"), s, saved);
            }
        }
        if let Some(o) = &kt.obis {
            self.obis(&at(base, &[k("obis")]), o, saved);
        }
        if let Some(w) = &kt.wrap_with {
            self.hex(&at(base, &[k("wrap-with")]), "wrap-with", w);
        }
        self.expect(base, &kt.expect, saved);
    }

    fn expect(&mut self, step_base: &[Seg], e: &Option<Expect>, saved: &BTreeSet<String>) {
        let Some(e) = e else { return };
        let base = at(step_base, &[k("expect")]);
        match e {
            Expect::One(o) => self.outcome(&base, o, saved),
            Expect::AnyOf(v) => {
                for (i, o) in v.iter().enumerate() {
                    self.outcome(&at(&base, &[Seg::Index(i)]), o, saved);
                }
            }
        }
    }

    fn outcome(&mut self, base: &[Seg], o: &Outcome, saved: &BTreeSet<String>) {
        let f = |n: &str| at(base, &[k(n)]);
        match o {
            Outcome::Success | Outcome::Silence | Outcome::Disconnect => {}
            Outcome::Value(d) => self.data(&f("value"), d, true, saved),
            Outcome::Type(t) => {
                if let Err(e) = vocab::parse_type_spec(t) {
                    let name = t.split('(').next().unwrap_or(t).trim();
                    let names = vocab::names(vocab::DATA_TYPES);
                    if names.contains(&name) {
                        self.report(&f("type"), Problem::new(e, "e.g. `octet-string(16)`"));
                    } else {
                        let (label, notes) = suggestion(name, &names);
                        let mut p = Problem::new(format!("unknown data type `{name}`"), label);
                        p.notes = notes;
                        self.report(&f("type"), p);
                    }
                }
            }
            Outcome::Result(r) => {
                let names = vocab::names(vocab::RESULTS);
                self.name_in(&f("result"), "result", r, &names);
            }
            Outcome::Rejected(spec) => {
                if let Some(r) = &spec.result {
                    let names = vocab::names(vocab::REJECT_RESULTS);
                    self.name_in(
                        &at(base, &[k("rejected"), k("result")]),
                        "association result",
                        r,
                        &names,
                    );
                }
                if let Some(d) = &spec.diagnostic
                    && d.trim().parse::<u8>().is_err()
                {
                    let mut names = vocab::names(vocab::ACSE_USER_DIAGNOSTICS);
                    names.extend(vocab::names(vocab::ACSE_PROVIDER_DIAGNOSTICS));
                    let path = at(base, &[k("rejected"), k("diagnostic")]);
                    if !names.contains(&d.as_str()) {
                        let label = did_you_mean(d, &names)
                            .map(|n| format!("did you mean `{n}`?"))
                            .unwrap_or_default();
                        self.report(
                            &path,
                            Problem::new(format!("unknown ACSE diagnostic `{d}`"), label).note(
                                "help: expected an acse-service-user diagnostic such as `authentication-failure` (dlms-facts 2.3), `no-common-acse-version`, or a number",
                            ),
                        );
                    }
                }
            }
            Outcome::InitiateError(x) => {
                let names = vocab::names(vocab::INITIATE_ERRORS);
                self.name_in(&f("initiate-error"), "initiate error", x, &names);
            }
            Outcome::Exception(x) => {
                let mut names = vec![vocab::EXCEPTION_ANY];
                names.extend(vocab::names(vocab::EXCEPTIONS));
                self.name_in(&f("exception"), "exception", x, &names);
            }
            Outcome::Frame(x) => self.name_in(&f("frame"), "frame kind", x, vocab::FRAMES),
            Outcome::Profile(x) => {
                let profiles = self.ctx.known_outcome_profiles.clone();
                self.known(&f("profile"), "outcome profile", x, &profiles);
            }
        }
    }

    /// A data spec at `base` (the map `{octet-string: ...}`); `any` only in expectations.
    fn data(&mut self, base: &[Seg], d: &DataSpec, allow_any: bool, saved: &BTreeSet<String>) {
        let fixed_hex = |v: &mut Self, name: &str, s: &str, bytes: usize| {
            let path = at(base, &[k(name)]);
            match vocab::parse_hex(s) {
                Ok(b) if b.len() == bytes => {}
                Ok(b) => v.report(
                    &path,
                    Problem::new(
                        format!("invalid {name}: {} bytes, expected {bytes}", b.len()),
                        format!("expected {} hex digits", bytes * 2),
                    ),
                ),
                Err(e) => v.report(
                    &path,
                    Problem::new(format!("invalid {name}: {e}"), "expected hex"),
                ),
            }
        };
        match d {
            DataSpec::OctetString(t) => {
                self.hex_tpl(&at(base, &[k("octet-string")]), "octet-string", t, saved)
            }
            DataSpec::BitString(s) => {
                if let Some(c) = s.chars().find(|c| !matches!(c, '0' | '1' | ' ')) {
                    self.report(
                        &at(base, &[k("bit-string")]),
                        Problem::new(
                            format!("invalid bit-string: `{c}` is not a bit"),
                            "expected a string of 0 and 1, e.g. `'0101'`",
                        ),
                    );
                }
            }
            DataSpec::DateTime(s) => fixed_hex(self, "date-time", s, 12),
            DataSpec::Date(s) => fixed_hex(self, "date", s, 5),
            DataSpec::Time(s) => fixed_hex(self, "time", s, 4),
            DataSpec::Array(items) | DataSpec::Structure(items) => {
                let name = if matches!(d, DataSpec::Array(_)) {
                    "array"
                } else {
                    "structure"
                };
                for (i, it) in items.iter().enumerate() {
                    self.data(&at(base, &[k(name), Seg::Index(i)]), it, allow_any, saved);
                }
            }
            DataSpec::Any if !allow_any => self.report(
                base,
                Problem::new(
                    "`any` is only for expected values",
                    "a value to send must be concrete",
                ),
            ),
            _ => {}
        }
    }
}
