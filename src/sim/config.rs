//! The meter profile of the simulator: its identity, clients, keys, policies and
//! link settings. Defaults describe an IDIS package 2 style meter with the
//! Green Book example keys (dlms-facts.md 1.5, 3.6, 5), so independent tools
//! connect out of the box. `fixtures/meters/*.yaml` holds profiles in the same shape.

use std::path::Path;

use serde::Deserialize;

use crate::profile::{Mechanism, Protection};
use crate::security::{Key, SystemTitle};
use crate::wire::obis::Obis;

/// One client association the meter offers.
#[derive(Debug, Clone, PartialEq)]
pub struct SimClient {
    pub sap: u16,
    pub name: String,
    /// The mechanism the client must use.
    pub mechanism: Mechanism,
    /// Whether the association uses the ciphered LN context.
    pub ciphered: bool,
    pub password: Option<Vec<u8>>,
    pub encryption_key: Key,
    pub authentication_key: Key,
    pub broadcast_key: Key,
    pub master_key: Key,
    /// The client's system title the meter expects (informational; any 8-byte title is accepted).
    pub system_title: SystemTitle,
    /// Security setup object of this client, and its initial security policy.
    pub security_setup: Obis,
    pub initial_policy: u8,
    /// Invocation counter object (0-0:43.1.e.255) holding the meter's next counter for this client.
    pub counter_object: Obis,
    /// Full access (management) or read-only (public and others).
    pub full_access: bool,
}

impl SimClient {
    fn new(sap: u16, name: &str, mechanism: Mechanism, ciphered: bool, e: u8, policy: u8) -> Self {
        SimClient {
            sap,
            name: name.into(),
            mechanism,
            ciphered,
            password: None,
            encryption_key: Key::EXAMPLE_EK,
            authentication_key: Key::EXAMPLE_AK,
            broadcast_key: Key::EXAMPLE_EK,
            master_key: Key::EXAMPLE_KEK,
            system_title: SystemTitle::EXAMPLE_CLIENT,
            security_setup: Obis::new(0, 0, 43, 0, e, 255),
            initial_policy: policy,
            counter_object: Obis::new(0, 0, 43, 1, e, 255),
            full_access: false,
        }
    }

    /// The least protection this client's requests need under a security policy (version 0 enum or version 1 flags).
    pub fn required_protection(policy: u8, version: u8) -> Protection {
        let (auth, enc) = if version == 0 {
            (policy == 1 || policy == 3, policy == 2 || policy == 3)
        } else {
            (policy & 0x04 != 0, policy & 0x08 != 0)
        };
        match (auth, enc) {
            (false, false) => Protection::None,
            (true, false) => Protection::Authenticated,
            (false, true) => Protection::Encrypted,
            (true, true) => Protection::AuthenticatedEncrypted,
        }
    }
}

/// The simulated meter's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterConfig {
    pub name: String,
    /// Logical device name (0-0:42.0.0.255): a 3-letter FLAG id and up to 13 more octets.
    pub logical_device_name: Vec<u8>,
    pub system_title: SystemTitle,
    /// Security setup version (0 or 1).
    pub security_setup_version: u8,
    pub clients: Vec<SimClient>,
    /// HDLC server address.
    pub hdlc_logical: u16,
    pub hdlc_physical: u16,
    pub hdlc_max_info: u16,
    pub hdlc_window: u32,
    /// HDLC inactivity timeout in seconds (HDLC setup attribute 8).
    pub hdlc_inactivity_timeout: u16,
    /// Answer frames addressed to our upper/lower address in the other length
    /// (2 or 4 bytes) too, replying in the length used. Whether a server must
    /// is unverified (tests/interop.rs, "Findings"); off by default.
    pub hdlc_any_address_form: bool,
    /// Wrapper wPort of the logical device.
    pub wport: u16,
    /// Conformance block the meter supports.
    pub conformance: u32,
    /// Largest APDU the meter receives.
    pub max_pdu_size: u16,
    /// Smallest client max receive PDU size the meter accepts.
    pub min_client_pdu_size: u16,
    /// The meter's first invocation counter.
    pub initial_invocation_counter: u32,
    /// Serial number (0-0:96.1.0.255).
    pub serial_number: String,
}

/// The conformance a default meter offers: general-protection, block transfer
/// with get/set/action, multiple references, get, set, selective access, action.
pub const METER_CONFORMANCE: u32 = 0x40_1E1D;

impl Default for MeterConfig {
    fn default() -> Self {
        let mut management = SimClient::new(1, "management", Mechanism::HlsGmac, true, 0, 3);
        management.full_access = true;
        let mut policy = SimClient::new(2, "policy test", Mechanism::HlsGmac, true, 2, 0);
        policy.full_access = true;
        (policy.encryption_key, policy.authentication_key) = Key::example_for_client(2);
        policy.broadcast_key = policy.encryption_key.clone();
        let mut lls = SimClient::new(3, "reader (LLS)", Mechanism::Lls, false, 3, 0);
        lls.password = Some(b"12345678".to_vec());
        // A spare client for cases that use up its key (counter wrap).
        let mut spare = SimClient::new(
            4,
            "spare (destructive tests)",
            Mechanism::HlsGmac,
            true,
            4,
            3,
        );
        (spare.encryption_key, spare.authentication_key) = Key::example_for_client(4);
        spare.broadcast_key = spare.encryption_key.clone();
        MeterConfig {
            name: "idis-harness simulated IDIS P2 meter".into(),
            logical_device_name: b"MMM0000012345678".to_vec(),
            system_title: SystemTitle::EXAMPLE_SERVER,
            security_setup_version: 0,
            clients: vec![
                SimClient::new(16, "public", Mechanism::None, false, 16, 0),
                management,
                policy,
                lls,
                spare,
            ],
            hdlc_logical: 1,
            hdlc_physical: 17,
            hdlc_max_info: 128,
            hdlc_window: 1,
            hdlc_inactivity_timeout: 120,
            hdlc_any_address_form: false,
            wport: 1,
            conformance: METER_CONFORMANCE,
            max_pdu_size: 1024,
            min_client_pdu_size: 64,
            initial_invocation_counter: 1,
            serial_number: "12345678".into(),
        }
    }
}

impl MeterConfig {
    pub fn client(&self, sap: u16) -> Option<&SimClient> {
        self.clients.iter().find(|c| c.sap == sap)
    }

    /// A meter of a fleet: the same shape, with keys and system title derived from `seed` and `index`.
    pub fn derived(&self, seed: u64, index: u32) -> MeterConfig {
        let mut m = self.clone();
        let serial = 0x0010_0000u32.wrapping_add(index);
        let mut st = self.system_title.0;
        st[4..].copy_from_slice(&serial.to_be_bytes());
        m.system_title = SystemTitle(st);
        m.serial_number = format!("{serial:08}");
        m.logical_device_name = format!("MMM{:013}", index).into_bytes();
        for c in &mut m.clients {
            if c.mechanism == Mechanism::HlsGmac || c.ciphered {
                c.encryption_key = derive_key(seed, index, c.sap, 0);
                c.authentication_key = derive_key(seed, index, c.sap, 2);
                c.broadcast_key = derive_key(seed, index, c.sap, 1);
                c.master_key = derive_key(seed, index, c.sap, 3);
            }
        }
        m
    }

    /// Loads a meter profile (YAML); omitted fields keep the defaults.
    pub fn load(path: &Path) -> Result<MeterConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read meter profile: {e}", path.display()))?;
        let raw: RawMeter = serde_saphyr::from_str(&text)
            .map_err(|e| format!("{}: invalid meter profile:\n{e}", path.display()))?;
        raw.resolve()
            .map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// A key derived from a seed, for fleets of simulated meters. Deterministic, so a
/// key file exported once stays valid for the same seed. Not for real meters.
pub fn derive_key(seed: u64, index: u32, sap: u16, id: u8) -> Key {
    let mut label = Vec::with_capacity(24);
    label.extend_from_slice(b"idis-sim");
    label.extend_from_slice(&seed.to_be_bytes());
    label.extend_from_slice(&index.to_be_bytes());
    label.extend_from_slice(&sap.to_be_bytes());
    label.push(id);
    // AES-CMAC-like derivation is not needed here: a GMAC under a fixed key of
    // a unique label gives 12 distinct bytes; two of them give 16 bytes of key.
    let base = Key::new(*b"idis-harness sim");
    let a = crate::security::hls_gmac(
        crate::security::SecurityControl::AUTH,
        &SystemTitle([0; 8]),
        0,
        &base,
        &base,
        &label,
    );
    label.push(0xFF);
    let b = crate::security::hls_gmac(
        crate::security::SecurityControl::AUTH,
        &SystemTitle([0; 8]),
        1,
        &base,
        &base,
        &label,
    );
    let mut k = [0u8; 16];
    k[..12].copy_from_slice(&a[5..]);
    k[12..].copy_from_slice(&b[5..9]);
    Key::new(k)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawClient {
    sap: u16,
    #[serde(default)]
    name: Option<String>,
    mechanism: Mechanism,
    #[serde(default)]
    ciphered: Option<bool>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    encryption_key: Option<String>,
    #[serde(default)]
    authentication_key: Option<String>,
    #[serde(default)]
    broadcast_key: Option<String>,
    #[serde(default)]
    master_key: Option<String>,
    #[serde(default)]
    security_setup: Option<String>,
    #[serde(default)]
    policy: Option<u8>,
    #[serde(default)]
    counter_object: Option<String>,
    #[serde(default)]
    full_access: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawMeter {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    logical_device_name: Option<String>,
    #[serde(default)]
    system_title: Option<String>,
    #[serde(default)]
    security_setup_version: Option<u8>,
    #[serde(default)]
    clients: Option<Vec<RawClient>>,
    #[serde(default)]
    hdlc_logical: Option<u16>,
    #[serde(default)]
    hdlc_physical: Option<u16>,
    #[serde(default)]
    hdlc_max_info: Option<u16>,
    #[serde(default)]
    hdlc_window: Option<u32>,
    #[serde(default)]
    hdlc_inactivity_timeout: Option<u16>,
    #[serde(default)]
    hdlc_any_address_form: Option<bool>,
    #[serde(default)]
    wport: Option<u16>,
    #[serde(default)]
    conformance: Option<String>,
    #[serde(default)]
    max_pdu_size: Option<u16>,
    #[serde(default)]
    initial_invocation_counter: Option<u32>,
    #[serde(default)]
    serial_number: Option<String>,
}

fn key(v: &Option<String>, default: &Key, what: &str) -> Result<Key, String> {
    match v {
        None => Ok(default.clone()),
        Some(h) => h.parse().map_err(|e| format!("{what}: {e}")),
    }
}

impl RawMeter {
    fn resolve(self) -> Result<MeterConfig, String> {
        let d = MeterConfig::default();
        let clients = match self.clients {
            None => d.clients.clone(),
            Some(list) => list
                .into_iter()
                .map(|c| {
                    let w = |f: &str| format!("client {} {f}", c.sap);
                    let base = SimClient::new(c.sap, "", c.mechanism, false, 0, 0);
                    let security_setup = match &c.security_setup {
                        Some(s) => s
                            .parse()
                            .map_err(|e| format!("{}: {e}", w("security-setup")))?,
                        None => base.security_setup,
                    };
                    let counter_object = match &c.counter_object {
                        Some(s) => s
                            .parse()
                            .map_err(|e| format!("{}: {e}", w("counter-object")))?,
                        None => Obis::new(0, 0, 43, 1, security_setup.0[4], 255),
                    };
                    let policy = c.policy.unwrap_or(0);
                    if self.security_setup_version.unwrap_or(0) == 0 && policy > 3 {
                        return Err(format!("{}: a version 0 policy is 0..3", w("policy")));
                    }
                    let sc = SimClient {
                        sap: c.sap,
                        name: c
                            .name
                            .clone()
                            .unwrap_or_else(|| format!("client {}", c.sap)),
                        mechanism: c.mechanism,
                        ciphered: c.ciphered.unwrap_or(c.mechanism == Mechanism::HlsGmac),
                        password: c.password.map(String::into_bytes),
                        encryption_key: key(
                            &c.encryption_key,
                            &base.encryption_key,
                            &w("encryption-key"),
                        )?,
                        authentication_key: key(
                            &c.authentication_key,
                            &base.authentication_key,
                            &w("authentication-key"),
                        )?,
                        broadcast_key: key(
                            &c.broadcast_key,
                            &base.broadcast_key,
                            &w("broadcast-key"),
                        )?,
                        master_key: key(&c.master_key, &base.master_key, &w("master-key"))?,
                        system_title: base.system_title,
                        security_setup,
                        initial_policy: policy,
                        counter_object,
                        full_access: c.full_access.unwrap_or(c.sap == 1),
                    };
                    if sc.mechanism == Mechanism::Lls && sc.password.is_none() {
                        return Err(format!("client {} uses LLS and needs a password", sc.sap));
                    }
                    Ok(sc)
                })
                .collect::<Result<Vec<_>, String>>()?,
        };
        let conformance = match &self.conformance {
            None => d.conformance,
            Some(h) => u32::from_str_radix(h, 16)
                .ok()
                .filter(|v| *v <= 0xFF_FFFF)
                .ok_or_else(|| format!("conformance {h:?} is not 6 hex digits"))?,
        };
        let ldn = self
            .logical_device_name
            .map(String::into_bytes)
            .unwrap_or(d.logical_device_name);
        if ldn.len() > 16 {
            return Err("logical-device-name is at most 16 octets".into());
        }
        Ok(MeterConfig {
            name: self.name.unwrap_or(d.name),
            logical_device_name: ldn,
            system_title: match self.system_title {
                Some(s) => s.parse().map_err(|e| format!("system-title: {e}"))?,
                None => d.system_title,
            },
            security_setup_version: self.security_setup_version.unwrap_or(0),
            clients,
            hdlc_logical: self.hdlc_logical.unwrap_or(d.hdlc_logical),
            hdlc_physical: self.hdlc_physical.unwrap_or(d.hdlc_physical),
            hdlc_max_info: self.hdlc_max_info.unwrap_or(d.hdlc_max_info),
            hdlc_window: self.hdlc_window.unwrap_or(d.hdlc_window),
            hdlc_inactivity_timeout: self
                .hdlc_inactivity_timeout
                .unwrap_or(d.hdlc_inactivity_timeout),
            hdlc_any_address_form: self
                .hdlc_any_address_form
                .unwrap_or(d.hdlc_any_address_form),
            wport: self.wport.unwrap_or(d.wport),
            conformance,
            max_pdu_size: self.max_pdu_size.unwrap_or(d.max_pdu_size),
            min_client_pdu_size: d.min_client_pdu_size,
            initial_invocation_counter: self
                .initial_invocation_counter
                .unwrap_or(d.initial_invocation_counter),
            serial_number: self.serial_number.unwrap_or(d.serial_number),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_use_the_green_book_identity() {
        let m = MeterConfig::default();
        assert_eq!(m.system_title, SystemTitle::EXAMPLE_SERVER);
        let mgmt = m.client(1).unwrap();
        assert_eq!(mgmt.encryption_key, Key::EXAMPLE_EK);
        assert_eq!(mgmt.security_setup, Obis::SECURITY_SETUP);
        assert_eq!(mgmt.counter_object, Obis::new(0, 0, 43, 1, 0, 255));
        assert_eq!(&m.logical_device_name[..3], b"MMM");
    }

    #[test]
    fn the_address_form_setting_is_read_and_off_by_default() {
        let raw: RawMeter = serde_saphyr::from_str("hdlc-any-address-form: true\n").unwrap();
        assert!(raw.resolve().unwrap().hdlc_any_address_form);
        let raw: RawMeter = serde_saphyr::from_str("name: x\n").unwrap();
        assert!(!raw.resolve().unwrap().hdlc_any_address_form);
    }

    #[test]
    fn derived_meters_differ_and_are_deterministic() {
        let m = MeterConfig::default();
        let a = m.derived(7, 0);
        let b = m.derived(7, 1);
        assert_ne!(a.system_title, b.system_title);
        assert_ne!(
            a.client(1).unwrap().encryption_key,
            b.client(1).unwrap().encryption_key
        );
        assert_eq!(a, m.derived(7, 0));
        assert_ne!(
            a.client(1).unwrap().encryption_key,
            m.derived(8, 0).client(1).unwrap().encryption_key
        );
    }

    #[test]
    fn policy_maps_to_required_protection() {
        assert_eq!(
            SimClient::required_protection(3, 0),
            Protection::AuthenticatedEncrypted
        );
        assert_eq!(
            SimClient::required_protection(1, 0),
            Protection::Authenticated
        );
        assert_eq!(
            SimClient::required_protection(0x0C, 1),
            Protection::AuthenticatedEncrypted
        );
        assert_eq!(SimClient::required_protection(0, 1), Protection::None);
    }
}
