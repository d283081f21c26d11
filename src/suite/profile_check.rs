//! Checks suites against a device profile before a run (`validate --device`):
//! every client a case names, by SAP or by role, must be one the profile has.
//!
//! A `client:` value is a SAP (`client: 3`), a variable that resolves to one
//! with the suite's defaults (`client: '${client}'`), or, any other text, a
//! client role (`client: management`) looked up with
//! [`DeviceProfile::client_by_role`]. A value that only exists at run time (a
//! variable saved by an earlier step) is not checked here.

use std::collections::BTreeMap;

use super::diag::{Diagnostic, SuiteError};
use super::loader::LoadedSuite;
use super::model::{ClientName, Step, Tpl};
use super::spans::{self, Node, Seg};
use crate::profile::DeviceProfile;

/// The client a `client:` value names, with the suite variables' defaults;
/// `None` when it depends on something known only at run time.
fn client_name(value: &Tpl<ClientName>, vars: &BTreeMap<String, String>) -> Option<ClientName> {
    value.resolve(vars).ok()
}

/// The `client:` of a step, if it names one.
fn step_client(step: &Step) -> Option<&Tpl<ClientName>> {
    match step {
        Step::Connect(s) => s.client.as_ref(),
        Step::Associate(s) => s.client.as_ref(),
        Step::ReadCounter(s) => s.client.as_ref(),
        _ => None,
    }
}

/// The `client:` node of the step at `path` (its one key's body).
fn step_client_node<'a>(tree: Option<&'a Node>, path: &[Seg]) -> Option<&'a Node> {
    let step = tree?.get(path)?;
    match &step.kind {
        spans::Kind::Map(entries) => entries.first()?.1.get(&[Seg::from("client")]),
        _ => None,
    }
}

/// Every client SAP or role a case of `suites` names that `profile` lacks,
/// each with its case and its place in the file.
pub fn validate_against_profile(
    suites: &[LoadedSuite],
    profile: &DeviceProfile,
) -> Vec<SuiteError> {
    let mut out = Vec::new();
    let saps: Vec<String> = profile.clients.iter().map(|c| c.sap.to_string()).collect();
    let profile_name = profile
        .source
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| profile.name.clone());
    for s in suites {
        let tree = spans::parse(&s.source);
        let vars: BTreeMap<String, String> = s
            .suite
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
        for (ci, case) in s.suite.cases.iter().enumerate() {
            let mut named: Vec<(&Tpl<ClientName>, Vec<Seg>, Option<&Node>)> = Vec::new();
            if let Some(c) = &case.client {
                let path = vec![Seg::from("cases"), Seg::Index(ci), Seg::from("client")];
                let node = tree.as_ref().and_then(|t| t.get(&path));
                named.push((c, path, node));
            }
            for (list, steps) in [("steps", &case.steps), ("teardown", &case.teardown)] {
                for (si, step) in steps.iter().enumerate() {
                    if let Some(c) = step_client(&step.value) {
                        let path = vec![
                            Seg::from("cases"),
                            Seg::Index(ci),
                            Seg::from(list),
                            Seg::Index(si),
                        ];
                        let node = step_client_node(tree.as_ref(), &path);
                        named.push((c, path, node));
                    }
                }
            }
            for (value, _, node) in named {
                let Some(name) = client_name(value, &vars) else {
                    continue;
                };
                let (missing, what, hint) = match &name {
                    ClientName::Sap(sap) => (
                        profile.client(*sap).is_none(),
                        format!("client {sap}"),
                        format!("the profile's clients are {}", list_or_none(&saps)),
                    ),
                    // A role the profile does not map skips the case (see [`cases_skipped`]).
                    ClientName::Role(_) => continue,
                };
                if !missing {
                    continue;
                }
                let mut d = Diagnostic::new(format!(
                    "case `{}` uses {what}, which the device profile `{profile_name}` does not have",
                    case.id
                ));
                if let Some(n) = node {
                    d = d.at(n.at, "not in the device profile");
                }
                d = d.note(hint);
                out.push(d.into_error(&s.path, &s.source));
            }
        }
    }
    out
}

/// The cases `profile` cannot run because it maps no client or object to a
/// role they name, each as `suite::CASE: why` (the run skips them with the same reason).
pub fn cases_skipped(suites: &[LoadedSuite], profile: &DeviceProfile) -> Vec<String> {
    let mut out = Vec::new();
    for s in suites {
        let vars: BTreeMap<String, String> = s
            .suite
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
        for case in &s.suite.cases {
            let needed = super::roles::needed_roles(case, &vars);
            let why = super::roles::unmapped(&needed, profile);
            if !why.is_empty() {
                out.push(format!(
                    "{}::{}: {}",
                    s.suite.suite,
                    case.id,
                    why.join("; ")
                ));
            }
        }
    }
    out
}

fn list_or_none<S: AsRef<str>>(items: &[S]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items
            .iter()
            .map(|i| i.as_ref().to_owned())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::{ValidationContext, load_source};
    use std::path::Path;

    const SUITE: &str = "\
suite: clients
title: Clients
vars:
  client: 3
cases:
  - id: BY_SAP
    title: t
    checks: c
    client: 16
    steps:
      - connect: {client: 7}
      - associate: {client: '${client}'}
  - id: BY_VAR
    title: t
    checks: c
    client: '${client}'
    steps:
      - release: {}
";

    fn load() -> LoadedSuite {
        let ctx = ValidationContext {
            known_features: vec![],
            known_quirks: vec![],
            known_outcome_profiles: vec![],
        };
        load_source(Path::new("suites/clients.yaml"), SUITE.into(), &ctx)
            .unwrap_or_else(|e| panic!("{}", e[0]))
    }

    #[test]
    fn reports_each_unmapped_client_with_its_case_and_place() {
        let s = load();
        let mut p = DeviceProfile::default();
        // The defaults have 16 and 1; 3 is taken away, 7 was never there.
        p.clients.retain(|c| c.sap != 3);
        let problems = validate_against_profile(std::slice::from_ref(&s), &p);
        let text: Vec<String> = problems.iter().map(|e| e.to_string()).collect();
        assert_eq!(problems.len(), 3, "{text:#?}");
        assert!(
            text[0].contains("case `BY_SAP` uses client 7"),
            "{}",
            text[0]
        );
        assert!(text[0].contains("suites/clients.yaml:11:"), "{}", text[0]);
        assert!(
            text[1].contains("case `BY_SAP` uses client 3"),
            "{}",
            text[1]
        );
        assert!(
            text[2].contains("case `BY_VAR` uses client 3"),
            "{}",
            text[2]
        );
        assert!(text[2].contains("suites/clients.yaml:16:"), "{}", text[2]);
        p.clients.push(p.clients[0].clone());
        let n = p.clients.len();
        p.clients[n - 1].sap = 3;
        let q = p.clients.len();
        p.clients.push(p.clients[0].clone());
        p.clients[q].sap = 7;
        assert!(validate_against_profile(std::slice::from_ref(&s), &p).is_empty());
    }

    #[test]
    fn a_non_numeric_client_is_a_role() {
        let vars = BTreeMap::from([("who".to_string(), "management".to_string())]);
        assert_eq!(
            client_name(&Tpl::Var("${who}".into()), &vars),
            Some(ClientName::Role("management".into()))
        );
        assert_eq!(
            client_name(
                &Tpl::Var("${n}".into()),
                &BTreeMap::from([("n".into(), "4".into())])
            ),
            Some(ClientName::Sap(4))
        );
        assert_eq!(
            client_name(&Tpl::Var("${saved}".into()), &BTreeMap::new()),
            None
        );
    }
}
