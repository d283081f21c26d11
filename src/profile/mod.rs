//! Device profiles: what the harness knows about a device under test, in the
//! spirit of the CTT's CTI file. Target, addresses, clients with their
//! mechanisms, system titles and keys, the counter objects, declared optional
//! features, and the accepted outcomes where meters legitimately differ.
//!
//! Without a profile, [`DeviceProfile::default`] gives the Green Book example
//! values, so that a meter or simulator with the example keys works out of the
//! box: client 16 public without security; client 1 HLS-GMAC, authenticated and
//! encrypted, EK 000102..0F, AK D0..DF, KEK 000102..0F, client system title
//! 4D4D4D0000000001; server logical address 1, physical address 17 on HDLC.
//! Clients 2 (HLS-GMAC, policy starting at 0), 3 (LLS, password 12345678) and
//! 4 (HLS-GMAC, spare for cases that use up a key) match the built-in
//! simulator's extra clients; 2 and 4 have keys of their own
//! ([`Key::example_for_client`]).
//!
//! Keys come from hex in the profile, an environment variable, or an entry of a
//! key file, and never appear in errors, logs or reports.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::security::{Key, SecurityControl, SystemTitle};
use crate::suite::model::Outcome;
use crate::wire::obis::Obis;

pub mod roles;
pub use roles::ObjectRef;

/// Authentication mechanism of a client association.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mechanism {
    None,
    Lls,
    HlsGmac,
}

impl Mechanism {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "none" => Mechanism::None,
            "lls" => Mechanism::Lls,
            "hls-gmac" => Mechanism::HlsGmac,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::None => "none",
            Mechanism::Lls => "lls",
            Mechanism::HlsGmac => "hls-gmac",
        }
    }
}

/// Protection applied to xDLMS services of an association.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protection {
    None,
    Authenticated,
    Encrypted,
    AuthenticatedEncrypted,
}

impl Protection {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "none" => Protection::None,
            "authenticated" => Protection::Authenticated,
            "encrypted" => Protection::Encrypted,
            "authenticated-encrypted" => Protection::AuthenticatedEncrypted,
            _ => return None,
        })
    }
    pub fn name(self) -> &'static str {
        match self {
            Protection::None => "none",
            Protection::Authenticated => "authenticated",
            Protection::Encrypted => "encrypted",
            Protection::AuthenticatedEncrypted => "authenticated-encrypted",
        }
    }
    /// The security control byte for suite 0, or `None` for no protection.
    pub fn control(self, suite: u8) -> Option<SecurityControl> {
        match self {
            Protection::None => None,
            Protection::Authenticated => Some(SecurityControl::new(true, false, suite)),
            Protection::Encrypted => Some(SecurityControl::new(false, true, suite)),
            Protection::AuthenticatedEncrypted => Some(SecurityControl::new(true, true, suite)),
        }
    }
    pub fn is_ciphered(self) -> bool {
        self != Protection::None
    }
}

/// Which ciphered APDUs a client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ciphering {
    /// Service-specific glo- APDUs (glo-get-request 0xC8 ...).
    ServiceSpecific,
    /// general-glo-ciphering (0xDB) carrying the system title.
    General,
}

impl Ciphering {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "service-specific" => Ciphering::ServiceSpecific,
            "general" => Ciphering::General,
            _ => return None,
        })
    }
}

/// What a meter does with its invocation counters after a key change
/// (dlms-facts.md 3.5: not settled normatively, so the profile says).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CounterPolicy {
    /// Counters restart at 0 (or the profile's value) with a new key.
    Reset,
    /// Counters continue.
    Continue,
    /// Either is accepted.
    Either,
}

/// One client association of the device.
#[derive(Clone, PartialEq)]
pub struct ClientProfile {
    pub sap: u16,
    pub name: String,
    /// The roles this client plays for suites (`public`, `management`, ...; see [`roles`]).
    pub roles: Vec<String>,
    pub mechanism: Mechanism,
    pub protection: Protection,
    pub ciphering: Ciphering,
    pub system_title: SystemTitle,
    pub encryption_key: Option<Key>,
    pub authentication_key: Option<Key>,
    pub broadcast_key: Option<Key>,
    pub master_key: Option<Key>,
    /// LLS password bytes.
    pub password: Option<Vec<u8>>,
    /// Invocation counter object read by the public client (0-0:43.1.e.255).
    pub counter_object: Obis,
    pub security_setup: Obis,
    /// Proposed conformance block (24 bits).
    pub conformance: u32,
    pub max_pdu_size: u16,
}

impl fmt::Debug for ClientProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientProfile")
            .field("sap", &self.sap)
            .field("name", &self.name)
            .field("roles", &self.roles)
            .field("mechanism", &self.mechanism)
            .field("protection", &self.protection)
            .field("ciphering", &self.ciphering)
            .field("system_title", &self.system_title)
            .field("encryption_key", &self.encryption_key)
            .field("authentication_key", &self.authentication_key)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .finish_non_exhaustive()
    }
}

impl ClientProfile {
    /// The IDIS public client: SAP 16, no authentication, no security.
    pub fn public() -> Self {
        ClientProfile {
            sap: 16,
            name: "public".into(),
            roles: vec!["public".into()],
            mechanism: Mechanism::None,
            protection: Protection::None,
            ciphering: Ciphering::ServiceSpecific,
            system_title: SystemTitle::EXAMPLE_CLIENT,
            encryption_key: None,
            authentication_key: None,
            broadcast_key: None,
            master_key: None,
            password: None,
            counter_object: Obis::new(0, 0, 43, 1, 0, 255),
            security_setup: Obis::SECURITY_SETUP,
            conformance: DEFAULT_CONFORMANCE,
            max_pdu_size: 1024,
        }
    }

    /// The IDIS management client with the Green Book example keys: SAP 1,
    /// HLS-GMAC, authenticated and encrypted.
    pub fn management() -> Self {
        ClientProfile {
            sap: 1,
            name: "management".into(),
            roles: vec!["management".into()],
            mechanism: Mechanism::HlsGmac,
            protection: Protection::AuthenticatedEncrypted,
            encryption_key: Some(Key::EXAMPLE_EK),
            authentication_key: Some(Key::EXAMPLE_AK),
            broadcast_key: Some(Key::EXAMPLE_EK),
            master_key: Some(Key::EXAMPLE_KEK),
            ..ClientProfile::public()
        }
    }
}

impl ClientProfile {
    /// Client 2 of the simulator: HLS-GMAC with its own security setup
    /// (0-0:43.0.2.255) whose policy starts at 0, for security_activate cases.
    pub fn policy_test() -> Self {
        ClientProfile {
            sap: 2,
            name: "policy test".into(),
            roles: vec!["policy-test".into()],
            security_setup: Obis::new(0, 0, 43, 0, 2, 255),
            counter_object: Obis::new(0, 0, 43, 1, 2, 255),
            encryption_key: Some(Key::example_for_client(2).0),
            authentication_key: Some(Key::example_for_client(2).1),
            broadcast_key: Some(Key::example_for_client(2).0),
            ..ClientProfile::management()
        }
    }

    /// Client 4 of the simulator: HLS-GMAC like the management client, with its
    /// own security setup (0-0:43.0.4.255), for cases that use up its key.
    pub fn spare() -> Self {
        ClientProfile {
            sap: 4,
            name: "spare (destructive tests)".into(),
            roles: vec!["spare".into()],
            security_setup: Obis::new(0, 0, 43, 0, 4, 255),
            counter_object: Obis::new(0, 0, 43, 1, 4, 255),
            encryption_key: Some(Key::example_for_client(4).0),
            authentication_key: Some(Key::example_for_client(4).1),
            broadcast_key: Some(Key::example_for_client(4).0),
            ..ClientProfile::management()
        }
    }

    /// Client 3 of the simulator: LLS with the password `12345678`, no ciphering.
    pub fn lls_reader() -> Self {
        ClientProfile {
            sap: 3,
            name: "reader (LLS)".into(),
            roles: vec!["lls".into()],
            mechanism: Mechanism::Lls,
            password: Some(b"12345678".to_vec()),
            counter_object: Obis::new(0, 0, 43, 1, 3, 255),
            ..ClientProfile::public()
        }
    }
}

/// Proposed conformance when a profile does not say: the Green Book example
/// 007E1F (dlms-facts.md 1.5) plus general-protection, so that a meter may
/// choose either ciphering.
pub const DEFAULT_CONFORMANCE: u32 = 0x40_7E1F;

/// HDLC settings of the device.
#[derive(Debug, Clone, PartialEq)]
pub struct HdlcSettings {
    pub server_logical: u16,
    pub server_physical: u16,
    /// Server address size in bytes (1, 2 or 4); `None` = the smallest that fits.
    pub address_size: Option<u8>,
    pub max_info_tx: u16,
    pub max_info_rx: u16,
    pub window: u32,
    /// Inactivity timeout the device is configured with (HDLC setup attribute 8).
    pub inactivity_timeout: Duration,
    /// HDLC over TCP reaches one serial line (a serial-to-IP converter): one
    /// HDLC link at a time, as on a serial port.
    pub single_link: bool,
}

impl Default for HdlcSettings {
    fn default() -> Self {
        HdlcSettings {
            server_logical: 1,
            server_physical: 17,
            address_size: None,
            max_info_tx: 128,
            max_info_rx: 128,
            window: 1,
            inactivity_timeout: Duration::from_secs(120),
            single_link: false,
        }
    }
}

/// Timeouts the harness applies to this device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Waiting for a response to a request.
    pub response: Duration,
    /// Opening the connection.
    pub connect: Duration,
    /// How long "silence" must last to count as no reply.
    pub silence: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            response: Duration::from_secs(5),
            connect: Duration::from_secs(5),
            silence: Duration::from_millis(300),
        }
    }
}

/// A device under test, resolved (keys loaded).
#[derive(Debug, Clone)]
pub struct DeviceProfile {
    pub name: String,
    /// The file it came from, or `None` for the built-in defaults.
    pub source: Option<PathBuf>,
    /// Default target when the command line gives none.
    pub target: Option<String>,
    pub hdlc: HdlcSettings,
    /// Server wPort (logical device) for the wrapper.
    pub server_wport: u16,
    pub timeouts: Timeouts,
    /// The server system title, when known in advance (otherwise learned from the AARE).
    pub server_system_title: Option<SystemTitle>,
    pub security_suite: u8,
    pub security_setup_version: u8,
    pub clients: Vec<ClientProfile>,
    /// Object roles mapped to class and logical name (see [`roles::OBJECT_ROLES`]).
    pub objects: BTreeMap<String, ObjectRef>,
    /// Declared features; a case that requires one not listed is skipped.
    pub features: BTreeSet<String>,
    /// Accepted outcomes per variation point, added to the standard's (not used with `--strict`).
    pub accepted_outcomes: BTreeMap<String, Vec<Outcome>>,
    pub counters_after_key_change: CounterPolicy,
    /// Where client invocation counters are kept between runs.
    pub state_file: Option<PathBuf>,
    /// How to restart (power-cycle) the device, for cases with a `restart` step.
    pub restart: Option<RestartSettings>,
}

/// How to restart a real device: a shell command (a programmable power
/// supply, a relay), its time limit, and how long the device takes to come back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartSettings {
    pub command: String,
    pub timeout: Duration,
    pub wait: Duration,
}

/// Features the built-in simulator has; the default profile declares all of them.
pub const KNOWN_FEATURES: &[&str] = &[
    "wrapper",
    "udp",
    "hdlc",
    "lls",
    "hls-gmac",
    "service-specific-ciphering",
    "general-ciphering",
    "key-transfer",
    "broadcast-key",
    "master-key-transfer",
    "security-activate",
    "block-transfer",
    "selective-access",
    "clock",
    "counter-objects",
    "idis-p2",
    "counter-wrap",
    "restart",
];

/// Known features a profile has only when it says so: they change the device
/// for good (`counter-wrap` uses a key up to invocation counter 0xFFFFFFFF).
pub const OPT_IN_FEATURES: &[&str] = &["counter-wrap"];

impl Default for DeviceProfile {
    fn default() -> Self {
        DeviceProfile {
            name: "built-in defaults (Green Book example keys)".into(),
            source: None,
            target: None,
            hdlc: HdlcSettings::default(),
            server_wport: 1,
            timeouts: Timeouts::default(),
            server_system_title: None,
            security_suite: 0,
            security_setup_version: 0,
            clients: vec![
                ClientProfile::public(),
                ClientProfile::management(),
                ClientProfile::policy_test(),
                ClientProfile::lls_reader(),
                ClientProfile::spare(),
            ],
            objects: roles::default_objects(),
            features: KNOWN_FEATURES
                .iter()
                .filter(|f| !OPT_IN_FEATURES.contains(f))
                .map(|s| s.to_string())
                .collect(),
            accepted_outcomes: BTreeMap::new(),
            counters_after_key_change: CounterPolicy::Either,
            state_file: None,
            restart: None,
        }
    }
}

impl DeviceProfile {
    /// The defaults for the built-in simulator: the same clients and keys, with
    /// timeouts for a meter in the same process, which answers in microseconds.
    pub fn for_simulator() -> Self {
        DeviceProfile {
            name: "built-in simulator (Green Book example keys)".into(),
            timeouts: Timeouts {
                response: Duration::from_secs(2),
                connect: Duration::from_secs(2),
                silence: Duration::from_millis(50),
            },
            ..DeviceProfile::default()
        }
    }

    pub fn client(&self, sap: u16) -> Option<&ClientProfile> {
        self.clients.iter().find(|c| c.sap == sap)
    }
    /// The client that plays `role`.
    pub fn client_by_role(&self, role: &str) -> Option<&ClientProfile> {
        self.clients
            .iter()
            .find(|c| c.roles.iter().any(|r| r == role))
    }

    /// The object that plays `role`; a client object role (`security-setup`,
    /// `invocation-counter`) is `client`'s.
    pub fn object(&self, role: &str, client: Option<&ClientProfile>) -> Option<ObjectRef> {
        match (roles::client_object_class(role), client) {
            (Some(class_id), Some(c)) => Some(ObjectRef {
                class_id,
                obis: if role == "security-setup" {
                    c.security_setup
                } else {
                    c.counter_object
                },
            }),
            (Some(_), None) => None,
            (None, _) => self.objects.get(role).copied(),
        }
    }

    /// The probe: the public client and the `probe` object, attribute 2.
    pub fn probe(&self) -> Option<(&ClientProfile, ObjectRef)> {
        Some((self.client_by_role("public")?, self.object("probe", None)?))
    }

    pub fn client_mut(&mut self, sap: u16) -> Option<&mut ClientProfile> {
        self.clients.iter_mut().find(|c| c.sap == sap)
    }
    pub fn has_feature(&self, f: &str) -> bool {
        self.features.contains(f)
    }

    /// Loads a profile file, resolving its keys from hex, the environment or key files.
    pub fn load(path: &Path) -> Result<DeviceProfile, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|e| ProfileError {
            file: path.to_owned(),
            message: format!("cannot read device profile: {e}"),
        })?;
        Self::parse(&text, path, &|name| std::env::var(name).ok())
    }

    /// Parses a profile. `env` looks up environment variables (a parameter so tests need not set any).
    pub fn parse(
        text: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<DeviceProfile, ProfileError> {
        let err = |message: String| ProfileError {
            file: path.to_owned(),
            message,
        };
        let raw: RawProfile = serde_saphyr::from_str(text)
            .map_err(|e| err(format!("invalid device profile:\n{e}")))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let resolver = KeyResolver {
            base,
            env,
            cache: Default::default(),
        };
        raw.resolve(path, &resolver).map_err(err)
    }
}

/// A device profile that could not be loaded: which file and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", file.display())]
pub struct ProfileError {
    pub file: PathBuf,
    pub message: String,
}

// ---------------------------------------------------------------------------
// The file format.

/// Where a key comes from. Exactly one of the fields.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct KeySource {
    hex: Option<String>,
    env: Option<String>,
    file: Option<PathBuf>,
    entry: Option<String>,
}

/// A key written as plain hex or as a source map.
#[derive(Debug, Clone)]
enum KeyField {
    Hex(String),
    Source(KeySource),
}

impl<'de> Deserialize<'de> for KeyField {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = KeyField;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a key as 32 hex digits, or {hex: ..}, {env: VAR} or {file: F, entry: E}",
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<KeyField, E> {
                Ok(KeyField::Hex(v.to_owned()))
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<KeyField, E> {
                Err(E::custom(
                    "this key reads as a number in YAML (it has only digits): put it in quotes",
                ))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<KeyField, E> {
                self.visit_u64(v.unsigned_abs())
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<KeyField, E> {
                self.visit_u64(0)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, m: A) -> Result<KeyField, A::Error> {
                KeySource::deserialize(serde::de::value::MapAccessDeserializer::new(m))
                    .map(KeyField::Source)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawHdlc {
    server_logical: Option<u16>,
    server_physical: Option<u16>,
    address_size: Option<u8>,
    max_info_tx: Option<u16>,
    max_info_rx: Option<u16>,
    window: Option<u32>,
    inactivity_timeout: Option<String>,
    single_link: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawTimeouts {
    response: Option<String>,
    connect: Option<String>,
    silence: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawClient {
    sap: u16,
    #[serde(default)]
    name: Option<String>,
    /// One role or a list (default: `public` for SAP 16, `management` for SAP 1).
    #[serde(default)]
    role: Option<OneOrMany>,
    mechanism: Mechanism,
    #[serde(default)]
    security: Option<Protection>,
    #[serde(default)]
    ciphering: Option<Ciphering>,
    #[serde(default)]
    system_title: Option<String>,
    #[serde(default)]
    encryption_key: Option<KeyField>,
    #[serde(default)]
    authentication_key: Option<KeyField>,
    #[serde(default)]
    broadcast_key: Option<KeyField>,
    #[serde(default)]
    master_key: Option<KeyField>,
    /// LLS password as text.
    #[serde(default)]
    password: Option<KeyFieldText>,
    #[serde(default)]
    counter_object: Option<String>,
    #[serde(default)]
    security_setup: Option<String>,
    #[serde(default)]
    conformance: Option<String>,
    #[serde(default)]
    max_pdu_size: Option<u16>,
}

/// One text or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// An object role: a logical name (class from the role), or class and logical name.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawObject {
    Obis(String),
    Full { class: u16, obis: String },
}

/// An LLS password: text, or a source (hex/env/file).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum KeyFieldText {
    Text(String),
    Source(KeySource),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawProfile {
    name: String,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    hdlc: Option<RawHdlc>,
    #[serde(default)]
    server_wport: Option<u16>,
    #[serde(default)]
    timeouts: Option<RawTimeouts>,
    #[serde(default)]
    server_system_title: Option<String>,
    #[serde(default)]
    security_suite: Option<u8>,
    #[serde(default)]
    security_setup_version: Option<u8>,
    /// Clients; when absent, the default public and management clients.
    #[serde(default)]
    clients: Option<Vec<RawClient>>,
    /// Object roles mapped to logical names (defaults: [`roles::OBJECT_ROLES`]).
    #[serde(default)]
    objects: BTreeMap<String, RawObject>,
    /// Features the device has; when absent, all known features.
    #[serde(default)]
    features: Option<Vec<String>>,
    /// Features the device declares absent (removed from `features`).
    #[serde(default)]
    absent_features: Vec<String>,
    #[serde(default)]
    accepted_outcomes: BTreeMap<String, Vec<Outcome>>,
    #[serde(default)]
    counters_after_key_change: Option<CounterPolicy>,
    #[serde(default)]
    state_file: Option<PathBuf>,
    #[serde(default)]
    restart: Option<RawRestart>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawRestart {
    command: String,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    wait: Option<String>,
}

struct KeyResolver<'a> {
    base: &'a Path,
    env: &'a dyn Fn(&str) -> Option<String>,
    cache: std::cell::RefCell<BTreeMap<PathBuf, BTreeMap<String, String>>>,
}

impl KeyResolver<'_> {
    fn text(&self, src: &KeySource, what: &str) -> Result<String, String> {
        let n = [src.hex.is_some(), src.env.is_some(), src.file.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if n != 1 {
            return Err(format!(
                "{what}: give exactly one of `hex`, `env`, or `file` with `entry`"
            ));
        }
        if let Some(h) = &src.hex {
            return Ok(h.clone());
        }
        if let Some(var) = &src.env {
            return (self.env)(var)
                .ok_or_else(|| format!("{what}: environment variable {var} is not set"));
        }
        let file = src
            .file
            .as_ref()
            .map(|f| self.base.join(f))
            .unwrap_or_default();
        let entry = src
            .entry
            .as_deref()
            .ok_or_else(|| format!("{what}: a key `file` needs an `entry`"))?;
        let mut cache = self.cache.borrow_mut();
        if !cache.contains_key(&file) {
            let entries = load_key_file(&file).map_err(|e| format!("{what}: {e}"))?;
            cache.insert(file.clone(), entries);
        }
        cache
            .get(&file)
            .and_then(|m| m.get(entry))
            .cloned()
            .ok_or_else(|| format!("{what}: key file {} has no entry {entry:?}", file.display()))
    }

    fn key(&self, field: &Option<KeyField>, what: &str) -> Result<Option<Key>, String> {
        let text = match field {
            None => return Ok(None),
            Some(KeyField::Hex(h)) => h.clone(),
            Some(KeyField::Source(s)) => self.text(s, what)?,
        };
        text.parse::<Key>()
            .map(Some)
            .map_err(|e| format!("{what}: {e}"))
    }
}

/// Reads a key file: a YAML map of entry name to hex key (nested maps are
/// flattened with `/`, so `meter-1: {encryption: ..}` gives `meter-1/encryption`).
pub fn load_key_file(path: &Path) -> Result<BTreeMap<String, String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read key file {}: {e}", path.display()))?;
    let v: serde_json::Value = serde_saphyr::from_str(&text)
        .map_err(|e| format!("key file {} is not a YAML map: {e}", path.display()))?;
    let mut out = BTreeMap::new();
    flatten_keys("", &v, &mut out);
    Ok(out)
}

fn flatten_keys(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}/{k}")
                };
                flatten_keys(&name, v, out);
            }
        }
        serde_json::Value::String(s) => {
            out.insert(prefix.to_owned(), s.clone());
        }
        other => {
            out.insert(prefix.to_owned(), other.to_string());
        }
    }
}

fn duration(s: &Option<String>, what: &str, default: Duration) -> Result<Duration, String> {
    match s {
        None => Ok(default),
        Some(t) => humantime::parse_duration(t)
            .map_err(|e| format!("{what}: {t:?} is not a duration like 5s or 300ms ({e})")),
    }
}

fn obis(s: &Option<String>, what: &str, default: Obis) -> Result<Obis, String> {
    match s {
        None => Ok(default),
        Some(t) => t.parse().map_err(|e| format!("{what}: {e}")),
    }
}

impl RawProfile {
    fn resolve(self, path: &Path, keys: &KeyResolver<'_>) -> Result<DeviceProfile, String> {
        let d = DeviceProfile::default();
        let h = self.hdlc.unwrap_or_default();
        if let Some(sz) = h.address_size
            && ![1, 2, 4].contains(&sz)
        {
            return Err(format!("hdlc.address-size must be 1, 2 or 4, not {sz}"));
        }
        let hdlc = HdlcSettings {
            server_logical: h.server_logical.unwrap_or(d.hdlc.server_logical),
            server_physical: h.server_physical.unwrap_or(d.hdlc.server_physical),
            address_size: h.address_size,
            max_info_tx: h.max_info_tx.unwrap_or(d.hdlc.max_info_tx),
            max_info_rx: h.max_info_rx.unwrap_or(d.hdlc.max_info_rx),
            window: h.window.unwrap_or(d.hdlc.window),
            inactivity_timeout: duration(
                &h.inactivity_timeout,
                "hdlc.inactivity-timeout",
                d.hdlc.inactivity_timeout,
            )?,
            single_link: h.single_link.unwrap_or(d.hdlc.single_link),
        };
        let t = self.timeouts.unwrap_or_default();
        let timeouts = Timeouts {
            response: duration(&t.response, "timeouts.response", d.timeouts.response)?,
            connect: duration(&t.connect, "timeouts.connect", d.timeouts.connect)?,
            silence: duration(&t.silence, "timeouts.silence", d.timeouts.silence)?,
        };
        let server_system_title = self
            .server_system_title
            .as_deref()
            .map(|s| s.parse::<SystemTitle>())
            .transpose()
            .map_err(|e| format!("server-system-title: {e}"))?;
        let clients = match self.clients {
            None => d.clients.clone(),
            Some(list) => {
                let mut out = Vec::new();
                let mut seen = BTreeSet::new();
                for c in list {
                    if !seen.insert(c.sap) {
                        return Err(format!("client {} is listed twice", c.sap));
                    }
                    out.push(c.resolve(keys)?);
                }
                let mut claimed = BTreeMap::new();
                for c in &out {
                    for r in &c.roles {
                        if let Some(other) = claimed.insert(r.clone(), c.sap) {
                            return Err(format!(
                                "role {r:?} is given to client {other} and to client {}",
                                c.sap
                            ));
                        }
                    }
                }
                out
            }
        };
        let mut objects = roles::default_objects();
        for (role, o) in self.objects {
            if roles::CLIENT_OBJECT_ROLES.contains(&role.as_str()) {
                return Err(format!(
                    "objects.{role}: this object belongs to a client; give it as `{role}:` of the client"
                ));
            }
            let Some((_, class_id, ..)) = roles::OBJECT_ROLES.iter().find(|(n, ..)| *n == role)
            else {
                let hint = crate::suite::did_you_mean(&role, &roles::object_role_names())
                    .map(|h| format!("; did you mean `{h}`?"))
                    .unwrap_or_default();
                return Err(format!("objects: unknown object role {role:?}{hint}"));
            };
            let (class_id, text) = match o {
                RawObject::Obis(t) => (*class_id, t),
                RawObject::Full { class, obis } => (class, obis),
            };
            let obis = text
                .parse::<Obis>()
                .map_err(|e| format!("objects.{role}: {e}"))?;
            objects.insert(role, ObjectRef { class_id, obis });
        }
        let mut features: BTreeSet<String> = match self.features {
            None => d.features.clone(),
            Some(f) => f.into_iter().collect(),
        };
        for f in features.iter().chain(self.absent_features.iter()) {
            if !KNOWN_FEATURES.contains(&f.as_str()) {
                return Err(format!(
                    "unknown feature {f:?}; known features: {}",
                    KNOWN_FEATURES.join(", ")
                ));
            }
        }
        for f in &self.absent_features {
            features.remove(f);
        }
        let suite = self.security_suite.unwrap_or(0);
        if suite != 0 {
            return Err(format!(
                "security-suite {suite} is not supported yet (only suite 0, AES-GCM-128)"
            ));
        }
        Ok(DeviceProfile {
            name: self.name,
            source: Some(path.to_owned()),
            target: self.target,
            hdlc,
            server_wport: self.server_wport.unwrap_or(d.server_wport),
            timeouts,
            server_system_title,
            security_suite: suite,
            security_setup_version: self.security_setup_version.unwrap_or(0),
            clients,
            objects,
            features,
            accepted_outcomes: self.accepted_outcomes,
            counters_after_key_change: self
                .counters_after_key_change
                .unwrap_or(d.counters_after_key_change),
            state_file: self.state_file,
            restart: match self.restart {
                None => None,
                Some(r) => Some(RestartSettings {
                    command: r.command,
                    timeout: duration(&r.timeout, "restart.timeout", Duration::from_secs(60))?,
                    wait: duration(&r.wait, "restart.wait", Duration::from_secs(10))?,
                }),
            },
        })
    }
}

impl RawClient {
    fn resolve(self, keys: &KeyResolver<'_>) -> Result<ClientProfile, String> {
        let sap = self.sap;
        let w = |f: &str| format!("client {sap} {f}");
        let d = ClientProfile::public();
        let protection = self.security.unwrap_or(Protection::None);
        let system_title = match &self.system_title {
            None => d.system_title,
            Some(s) => s
                .parse()
                .map_err(|e| format!("{}: {e}", w("system-title")))?,
        };
        let password = match &self.password {
            None => None,
            Some(KeyFieldText::Text(t)) => Some(t.as_bytes().to_vec()),
            Some(KeyFieldText::Source(s)) => {
                let t = keys.text(s, &w("password"))?;
                Some(if s.hex.is_some() {
                    hex::decode(t.trim()).map_err(|e| format!("{}: {e}", w("password")))?
                } else {
                    t.into_bytes()
                })
            }
        };
        let conformance = match &self.conformance {
            None => DEFAULT_CONFORMANCE,
            Some(h) => u32::from_str_radix(h.trim(), 16)
                .ok()
                .filter(|v| *v <= 0xFF_FFFF)
                .ok_or_else(|| format!("{}: {h:?} is not 6 hex digits", w("conformance")))?,
        };
        let roles = match self.role {
            None => roles::implied_client_role(sap)
                .map(|r| vec![r.to_string()])
                .unwrap_or_default(),
            Some(OneOrMany::One(r)) => vec![r],
            Some(OneOrMany::Many(v)) => v,
        };
        for r in &roles {
            if !roles::is_client_role(r) {
                let names: Vec<&str> = roles::CLIENT_ROLES.iter().map(|(n, _)| *n).collect();
                let hint = crate::suite::did_you_mean(r, &names)
                    .map(|h| format!("; did you mean `{h}`?"))
                    .unwrap_or_default();
                return Err(format!("{}: unknown role {r:?}{hint}", w("role")));
            }
        }
        let c = ClientProfile {
            sap,
            name: self.name.unwrap_or_else(|| format!("client {sap}")),
            roles,
            mechanism: self.mechanism,
            protection,
            ciphering: self.ciphering.unwrap_or(Ciphering::ServiceSpecific),
            system_title,
            encryption_key: keys.key(&self.encryption_key, &w("encryption-key"))?,
            authentication_key: keys.key(&self.authentication_key, &w("authentication-key"))?,
            broadcast_key: keys.key(&self.broadcast_key, &w("broadcast-key"))?,
            master_key: keys.key(&self.master_key, &w("master-key"))?,
            password,
            counter_object: obis(&self.counter_object, &w("counter-object"), d.counter_object)?,
            security_setup: obis(&self.security_setup, &w("security-setup"), d.security_setup)?,
            conformance,
            max_pdu_size: self.max_pdu_size.unwrap_or(d.max_pdu_size),
        };
        let needs_keys = c.mechanism == Mechanism::HlsGmac || c.protection.is_ciphered();
        if needs_keys && (c.encryption_key.is_none() || c.authentication_key.is_none()) {
            return Err(format!(
                "client {sap} uses {} with {} protection and needs encryption-key and authentication-key",
                c.mechanism.name(),
                c.protection.name()
            ));
        }
        if c.mechanism == Mechanism::Lls && c.password.is_none() {
            return Err(format!("client {sap} uses LLS and needs a password"));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<DeviceProfile, ProfileError> {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        DeviceProfile::parse(text, Path::new("fixtures/devices/test.yaml"), &|k| {
            env.get(k).cloned()
        })
    }

    #[test]
    fn defaults_are_the_green_book_example() {
        let p = DeviceProfile::default();
        let m = p.client(1).unwrap();
        assert_eq!(m.mechanism, Mechanism::HlsGmac);
        assert_eq!(m.encryption_key, Some(Key::EXAMPLE_EK));
        assert_eq!(m.authentication_key, Some(Key::EXAMPLE_AK));
        assert_eq!(m.system_title, SystemTitle::EXAMPLE_CLIENT);
        assert_eq!(p.client(16).unwrap().protection, Protection::None);
        assert_eq!((p.hdlc.server_logical, p.hdlc.server_physical), (1, 17));
    }

    #[test]
    fn reads_a_single_link_converter() {
        let p = parse(
            "name: Behind a converter\ntarget: hdlc+tcp://192.0.2.1:10001\nhdlc: {single-link: true, inactivity-timeout: 30s}\n",
            &[],
        )
        .unwrap();
        assert!(p.hdlc.single_link);
        assert_eq!(
            p.hdlc.inactivity_timeout,
            std::time::Duration::from_secs(30)
        );
        assert!(!DeviceProfile::default().hdlc.single_link);
    }

    #[test]
    fn accepts_keys_from_hex_env_and_absent_features() {
        let p = parse(
            r#"
name: Test meter
clients:
  - sap: 1
    mechanism: hls-gmac
    security: authenticated-encrypted
    encryption-key: 000102030405060708090A0B0C0D0E0F
    authentication-key: {env: IDIS_AK}
absent-features: [broadcast-key]
accepted-outcomes:
  replayed-counter: [{exception: invocation-counter-error}, silence]
"#,
            &[("IDIS_AK", "D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF")],
        )
        .unwrap();
        let c = p.client(1).unwrap();
        assert_eq!(c.authentication_key, Some(Key::EXAMPLE_AK));
        assert!(!p.has_feature("broadcast-key"));
        assert!(p.has_feature("hdlc"));
        assert_eq!(p.accepted_outcomes["replayed-counter"].len(), 2);
    }

    #[test]
    fn rejects_a_missing_env_key_without_echoing_keys() {
        let e = parse(
            "name: x\nclients:\n  - sap: 1\n    mechanism: hls-gmac\n    security: authenticated-encrypted\n    encryption-key: 000102030405060708090A0B0C0D0E0F\n    authentication-key: {env: NOPE}\n",
            &[],
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("environment variable NOPE is not set"),
            "{e}"
        );
        assert!(!e.to_string().contains("000102"), "{e}");
    }

    #[test]
    fn rejects_bad_keys_features_and_missing_credentials() {
        let bad_key = "name: x\nclients:\n  - sap: 1\n    mechanism: hls-gmac\n    encryption-key: 00AA\n    authentication-key: 00AA\n";
        assert!(
            parse(bad_key, &[])
                .unwrap_err()
                .to_string()
                .contains("32 hex digits")
        );
        let digits = bad_key.replace("00AA", "0011");
        let e = parse(&digits, &[]).unwrap_err().to_string();
        assert!(e.contains("put it in quotes"), "{e}");
        let no_keys = "name: x\nclients:\n  - sap: 1\n    mechanism: hls-gmac\n";
        assert!(
            parse(no_keys, &[])
                .unwrap_err()
                .to_string()
                .contains("needs encryption-key")
        );
        let feat = "name: x\nfeatures: [hdlcc]\n";
        assert!(
            parse(feat, &[])
                .unwrap_err()
                .to_string()
                .contains("unknown feature")
        );
        let lls = "name: x\nclients:\n  - sap: 2\n    mechanism: lls\n";
        assert!(
            parse(lls, &[])
                .unwrap_err()
                .to_string()
                .contains("needs a password")
        );
    }

    #[test]
    fn reads_keys_from_a_key_file_entry() {
        let dir = std::env::temp_dir().join(format!("idis-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("keys.yaml"),
            "meter-1:\n  ek: 000102030405060708090A0B0C0D0E0F\n  ak: D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF\n",
        )
        .unwrap();
        let text = "name: x\nclients:\n  - sap: 1\n    mechanism: hls-gmac\n    security: authenticated-encrypted\n    encryption-key: {file: keys.yaml, entry: meter-1/ek}\n    authentication-key: {file: keys.yaml, entry: meter-1/ak}\n";
        let p = DeviceProfile::parse(text, &dir.join("p.yaml"), &|_| None).unwrap();
        assert_eq!(
            p.client(1).unwrap().authentication_key,
            Some(Key::EXAMPLE_AK)
        );
        let missing = text.replace("meter-1/ak", "meter-2/ak");
        let e = DeviceProfile::parse(&missing, &dir.join("p.yaml"), &|_| None).unwrap_err();
        assert!(e.to_string().contains("no entry \"meter-2/ak\""), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn maps_client_and_object_roles_with_idis_defaults() {
        let p = parse(
            "name: x\nclients:\n  - sap: 16\n    mechanism: none\n  - sap: 17\n    mechanism: lls\n    password: abc\n    role: lls\nobjects:\n  probe: 0-0:96.1.0.255\n  clock: {class: 8, obis: 0-0:1.0.0.255}\n",
            &[],
        )
        .unwrap();
        assert_eq!(p.client_by_role("public").map(|c| c.sap), Some(16));
        assert_eq!(p.client_by_role("lls").map(|c| c.sap), Some(17));
        assert!(p.client_by_role("management").is_none());
        let probe = p.object("probe", None).unwrap();
        assert_eq!(
            (probe.class_id, probe.obis.to_string().as_str()),
            (1, "0-0:96.1.0.255")
        );
        let lls = p.client(17).unwrap();
        assert_eq!(p.object("security-setup", Some(lls)).unwrap().class_id, 64);
        assert!(p.object("security-setup", None).is_none());
    }

    #[test]
    fn rejects_unknown_and_doubly_given_roles() {
        let e = parse(
            "name: x\nclients:\n  - sap: 16\n    mechanism: none\n    role: publik\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("unknown role \"publik\"") && e.contains("`public`"),
            "{e}"
        );
        let e = parse("name: x\nclients:\n  - sap: 16\n    mechanism: none\n  - sap: 17\n    mechanism: none\n    role: public\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("role \"public\" is given to client 16 and to client 17"),
            "{e}"
        );
        let e = parse("name: x\nobjects: {clok: 0-0:1.0.0.255}\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown object role \"clok\"") && e.contains("`clock`"),
            "{e}"
        );
    }
}
