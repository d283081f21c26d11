//! Roles: how suites name clients and objects without numbers.
//!
//! A suite says `client: management` or `get: {object: clock, attr: 2}`; the
//! device profile maps each role to a client SAP or to a class and OBIS code, as
//! the CTT's CTI file does, with the built-in simulator's values as defaults. A
//! case that needs a role the profile does not map is skipped with the reason,
//! and `validate --device` reports it before a run.

use std::collections::BTreeMap;

use crate::wire::obis::Obis;

/// The client roles suites may name, with what a device must offer for each.
pub const CLIENT_ROLES: &[(&str, &str)] = &[
    (
        "public",
        "the public client: no authentication, no security (IDIS SAP 16)",
    ),
    (
        "management",
        "the management client: HLS-GMAC, authenticated and encrypted (IDIS SAP 1)",
    ),
    ("lls", "a client that authenticates with LLS (a password)"),
    (
        "policy-test",
        "an HLS-GMAC client with a security setup of its own whose policy a case may raise",
    ),
    (
        "spare",
        "an HLS-GMAC client with a security setup of its own whose key a case may use up",
    ),
];

/// The role a client without `role:` takes from its SAP (IDIS fixes these two;
/// dlms-facts.md 5).
pub fn implied_client_role(sap: u16) -> Option<&'static str> {
    match sap {
        16 => Some("public"),
        1 => Some("management"),
        _ => None,
    }
}

pub fn is_client_role(name: &str) -> bool {
    CLIENT_ROLES.iter().any(|(n, _)| *n == name)
}

/// An object by class and logical name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectRef {
    pub class_id: u16,
    pub obis: Obis,
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "class {} {}", self.class_id, self.obis)
    }
}

/// Object roles that belong to a client (its security setup and its
/// invocation counter object); the others belong to the device.
pub const CLIENT_OBJECT_ROLES: &[&str] = &["security-setup", "invocation-counter"];

/// The device's object roles with their class and the default logical name
/// (Blue Book / IDIS values, as the built-in simulator has them).
pub const OBJECT_ROLES: &[(&str, u16, Obis, &str)] = &[
    (
        "probe",
        1,
        Obis::LOGICAL_DEVICE_NAME,
        "the cheapest object every client may read, used to see that the meter answers",
    ),
    ("clock", 8, Obis::CLOCK, "the clock"),
    (
        "logical-device-name",
        1,
        Obis::LOGICAL_DEVICE_NAME,
        "the logical device name (COSEM logical device name object)",
    ),
    (
        "current-association",
        15,
        Obis::CURRENT_ASSOCIATION,
        "the current association (association LN)",
    ),
    (
        "sap-assignment",
        17,
        Obis::new(0, 0, 41, 0, 0, 255),
        "the SAP assignment",
    ),
    (
        "undefined",
        1,
        Obis::new(0, 0, 96, 99, 99, 255),
        "a logical name the meter does NOT have, for the object-undefined case",
    ),
];

/// The class of a client object role.
pub fn client_object_class(role: &str) -> Option<u16> {
    match role {
        "security-setup" => Some(64),
        "invocation-counter" => Some(1),
        _ => None,
    }
}

pub fn is_object_role(name: &str) -> bool {
    CLIENT_OBJECT_ROLES.contains(&name) || OBJECT_ROLES.iter().any(|(n, ..)| *n == name)
}

/// Every object role name, for messages and did-you-mean hints.
pub fn object_role_names() -> Vec<&'static str> {
    OBJECT_ROLES
        .iter()
        .map(|(n, ..)| *n)
        .chain(CLIENT_OBJECT_ROLES.iter().copied())
        .collect()
}

/// The default object map: every device object role at its default.
pub fn default_objects() -> BTreeMap<String, ObjectRef> {
    OBJECT_ROLES
        .iter()
        .map(|(n, class_id, obis, _)| {
            (
                n.to_string(),
                ObjectRef {
                    class_id: *class_id,
                    obis: *obis,
                },
            )
        })
        .collect()
}
