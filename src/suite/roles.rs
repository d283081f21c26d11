//! The roles a case needs: the clients and objects it names by role, so that a
//! case the device profile cannot map is skipped with the reason before it
//! runs, and `validate --device` can say so before a run.

use std::collections::{BTreeMap, BTreeSet};

use super::model::{Case, ClientName, Step, Tpl};
use crate::profile::DeviceProfile;

/// The SAP of a client named by role or number, from the device profile.
pub fn client_sap(profile: &DeviceProfile, name: &ClientName) -> Result<u16, String> {
    match name {
        ClientName::Sap(n) => Ok(*n),
        ClientName::Role(r) => profile.client_by_role(r).map(|c| c.sap).ok_or_else(|| {
            format!(
                "the device profile `{}` maps no client to the role `{r}`",
                profile.name
            )
        }),
    }
}

/// What a case names by role.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NeededRoles {
    /// Clients by role or SAP.
    pub clients: BTreeSet<ClientNameKey>,
    /// Objects by role, with the client whose object it is (for client objects).
    pub objects: BTreeSet<(String, Option<ClientNameKey>)>,
}

/// A client name as a sortable key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum ClientNameKey {
    Sap(u16),
    Role(String),
}

impl From<ClientName> for ClientNameKey {
    fn from(c: ClientName) -> Self {
        match c {
            ClientName::Sap(n) => ClientNameKey::Sap(n),
            ClientName::Role(r) => ClientNameKey::Role(r),
        }
    }
}

impl ClientNameKey {
    pub fn name(&self) -> ClientName {
        match self {
            ClientNameKey::Sap(n) => ClientName::Sap(*n),
            ClientNameKey::Role(r) => ClientName::Role(r.clone()),
        }
    }
}

/// The roles `case` names, with `${var}` references resolved against `vars`
/// (the suite's variables after overrides); a reference that does not resolve
/// is left to the run, which reports it.
pub fn needed_roles(case: &Case, vars: &BTreeMap<String, String>) -> NeededRoles {
    let resolve =
        |t: &Tpl<ClientName>| -> Option<ClientNameKey> { t.resolve(vars).ok().map(Into::into) };
    let default = match &case.client {
        Some(t) => resolve(t),
        None => match vars.get("client") {
            Some(v) => v.parse::<ClientName>().ok().map(Into::into),
            None => Some(ClientNameKey::Role("management".into())),
        },
    };
    let mut n = NeededRoles::default();
    n.clients.extend(default.clone());
    for s in case.steps.iter().chain(case.teardown.iter()) {
        step_roles(&s.value, &default, &resolve, &mut n);
    }
    n
}

fn step_roles(
    step: &Step,
    default: &Option<ClientNameKey>,
    resolve: &dyn Fn(&Tpl<ClientName>) -> Option<ClientNameKey>,
    n: &mut NeededRoles,
) {
    let client = |c: &Option<Tpl<ClientName>>, n: &mut NeededRoles| {
        if let Some(k) = c.as_ref().and_then(resolve) {
            n.clients.insert(k);
        }
    };
    let object = |o: &Option<String>, of: &Option<Tpl<ClientName>>, n: &mut NeededRoles| {
        if let Some(role) = o {
            let owner = if crate::profile::roles::CLIENT_OBJECT_ROLES.contains(&role.as_str()) {
                of.as_ref().and_then(resolve).or_else(|| default.clone())
            } else {
                None
            };
            n.clients.extend(owner.clone());
            n.objects.insert((role.clone(), owner));
        }
    };
    match step {
        Step::Connect(s) => client(&s.client, n),
        Step::Associate(s) => client(&s.client, n),
        Step::ReadCounter(s) => client(&s.client, n),
        Step::Get(s) => object(&s.object, &s.of, n),
        Step::Set(s) => object(&s.object, &s.of, n),
        Step::Action(s) => object(&s.object, &s.of, n),
        Step::Given(inner) => step_roles(inner, default, resolve, n),
        _ => {}
    }
}

/// Why `profile` cannot run a case that needs `needed`: one text per role it
/// does not map (empty when it maps them all).
pub fn unmapped(needed: &NeededRoles, profile: &DeviceProfile) -> Vec<String> {
    let mut out = Vec::new();
    let sap = |k: &ClientNameKey| client_sap(profile, &k.name()).ok();
    for c in &needed.clients {
        match c {
            ClientNameKey::Role(r) if sap(c).is_none() => {
                out.push(format!("no client plays the role `{r}`"))
            }
            ClientNameKey::Sap(s) if profile.client(*s).is_none() => {
                out.push(format!("it has no client {s}"))
            }
            _ => {}
        }
    }
    for (role, owner) in &needed.objects {
        let owner = owner.as_ref().and_then(sap).and_then(|s| profile.client(s));
        if crate::profile::roles::CLIENT_OBJECT_ROLES.contains(&role.as_str()) && owner.is_none() {
            continue; // reported with its client
        }
        if profile.object(role, owner).is_none() {
            out.push(format!("no object plays the role `{role}`"));
        }
    }
    out
}
