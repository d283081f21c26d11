//! The YAML suite format, as typed Rust: what test engineers write.
//!
//! One file is one suite; a suite has cases; a case has steps, run in order, and
//! a teardown that always runs. Every step that talks to the device can carry
//! `expect:`, one outcome or a list of accepted outcomes. Fields that may hold a
//! `${variable}` are [`Tpl`] values, resolved when the case runs.
//!
//! Unknown keys are rejected everywhere (`deny_unknown_fields`), so a typo is an
//! error with a location, never a silently ignored check.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

/// A client named by its role (`management`, mapped by the device profile) or
/// by its SAP number. Shipped suites use roles only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientName {
    Sap(u16),
    Role(String),
}

impl std::fmt::Display for ClientName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientName::Sap(n) => write!(f, "client {n}"),
            ClientName::Role(r) => write!(f, "the {r} client"),
        }
    }
}

impl std::str::FromStr for ClientName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        <ClientName as super::TplScalar>::from_text(s).ok_or_else(|| {
            format!(
                "`{s}` is not {}",
                <ClientName as super::TplScalar>::EXPECTING
            )
        })
    }
}

/// A value that is either written literally or as a `${name}` reference to a
/// suite variable, resolved at run time. A string containing `${name}` inside
/// other text is also allowed for string-typed values.
/// (`Deserialize` is written by hand in `model_de.rs`, so errors say what was expected.)
#[derive(Debug, Clone, PartialEq)]
pub enum Tpl<T> {
    Lit(T),
    Var(String),
}

/// A suite file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Suite {
    /// Suite id, e.g. `replay-rejection`. Used as the JUnit classname.
    pub suite: String,
    /// One-line title.
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
    /// The documents this suite checks (Green Book clauses, Yellow Book test ids, IDIS documents).
    #[serde(default)]
    pub references: Vec<String>,
    /// Variables and their defaults; overridable from the command line, the environment and a vars file.
    #[serde(default)]
    pub vars: BTreeMap<String, VarValue>,
    /// Device features every case of this suite needs (merged with each case's `requires`).
    #[serde(default)]
    pub requires: Vec<String>,
    /// Tags every case of this suite carries.
    #[serde(default)]
    pub tags: Vec<String>,
    /// A free place for YAML anchors (`&name`) reused with aliases and merge keys (`<<: *name`).
    /// Its content is not interpreted.
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Value>")]
    pub templates: Option<serde::de::IgnoredAny>,
    pub cases: Vec<Case>,
}

/// A variable value: text, number or boolean.
/// (`Deserialize` is written by hand in `model_de.rs`, so errors say what was expected.)
#[derive(Debug, Clone, PartialEq)]
pub enum VarValue {
    Bool(bool),
    Int(i64),
    Text(String),
}

impl std::fmt::Display for VarValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VarValue::Bool(b) => write!(f, "{b}"),
            VarValue::Int(i) => write!(f, "{i}"),
            VarValue::Text(t) => write!(f, "{t}"),
        }
    }
}

/// A test case.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Case {
    /// The Yellow Book id where one exists (e.g. `SYMSEC_0_FraCount_1`), otherwise a descriptive id.
    pub id: String,
    pub title: String,
    /// The clause or source this case checks.
    pub checks: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Device features this case needs; when the device profile lacks one, the case is skipped with the reason.
    #[serde(default)]
    pub requires: Vec<String>,
    /// The simulator faults (quirk names) this case exists to catch. The mutation
    /// test asserts that each listed quirk makes this case fail.
    #[serde(default)]
    pub detects: Vec<String>,
    /// Time limit for the whole case, e.g. `10s` (default: the runner's).
    #[serde(default)]
    #[schemars(schema_with = "super::schema::duration")]
    pub timeout: Option<String>,
    /// The client SAP for steps that do not name one (default: the suite variable `client`, else 1).
    #[serde(default)]
    pub client: Option<Tpl<ClientName>>,
    #[schemars(with = "Vec<Step>")]
    pub steps: Vec<Spanned<Step>>,
    /// Steps that always run after `steps`, even after a failure (release, restore keys).
    #[serde(default)]
    #[schemars(with = "Vec<Step>")]
    pub teardown: Vec<Spanned<Step>>,
}

/// One step. Written as a one-key map: `- get: {...}`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum Step {
    /// Open the link: TCP connect for the wrapper, plus SNRM/UA for HDLC.
    Connect(ConnectStep),
    /// Close the link: DISC for HDLC, then close the connection.
    Disconnect(DisconnectStep),
    /// Open an application association (AARQ/AARE, then HLS pass 3/4 when the mechanism needs it).
    Associate(AssociateStep),
    /// Release the association (RLRQ/RLRE).
    Release(ReleaseStep),
    /// GET an attribute.
    Get(GetStep),
    /// SET an attribute.
    Set(SetStep),
    /// ACTION: invoke a method.
    Action(ActionStep),
    /// Send a hand-made APDU, protected APDU, HDLC frame, wrapper frame or raw bytes.
    Send(SendStep),
    /// Send the last protected request again, byte for byte.
    Replay(ReplayStep),
    /// Security Setup key transfer (global_key_transfer / key_transfer).
    KeyTransfer(KeyTransferStep),
    /// Security Setup security_activate.
    SecurityActivate(SecurityActivateStep),
    /// Read an invocation counter object through the public client and keep it in a variable.
    ReadCounter(ReadCounterStep),
    /// Compare saved values.
    Check(CheckStep),
    /// Wait, e.g. `wait: 200ms`.
    Wait(#[schemars(schema_with = "super::schema::duration")] String),
    /// Expect the device to stay silent, or to close the link, with nothing sent.
    Listen(ListenStep),
    /// Restart the meter (a power cycle): the simulator restarts from its memory;
    /// a real meter runs the device profile's restart command. Links are closed first.
    Restart(RestartStep),
    /// A step that establishes a precondition of the case rather than its point:
    /// `- given: {associate: {}}`. When it does not hold, the case is inconclusive
    /// ("precondition failed: ..."), never failed.
    Given(Box<Step>),
}

/// The variables a `connect` step sets: the negotiated HDLC parameters as the
/// client sees them (tx = toward the meter).
pub const CONNECT_SAVES: &[&str] = &["max_info_tx", "max_info_rx", "window_tx", "window_rx"];

/// `connect:` (sets the variables in [`CONNECT_SAVES`]).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConnectStep {
    /// Client SAP for the link (HDLC source address / wrapper source wPort). Default: the case's client.
    #[serde(default)]
    pub client: Option<Tpl<ClientName>>,
    /// HDLC: propose these link parameters in the SNRM (omitted: no parameters sent).
    #[serde(default)]
    pub max_info_tx: Option<u16>,
    #[serde(default)]
    pub max_info_rx: Option<u16>,
    #[serde(default)]
    pub window_tx: Option<u32>,
    #[serde(default)]
    pub window_rx: Option<u32>,
    #[serde(default)]
    pub expect: Option<Expect>,
}

/// `disconnect:`
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DisconnectStep {
    #[serde(default)]
    pub expect: Option<Expect>,
}

/// `associate:`. Without overrides, the association the device profile
/// declares for the client; every field below changes one thing, often on purpose wrong.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AssociateStep {
    /// Client SAP (default: the case's client).
    #[serde(default)]
    pub client: Option<Tpl<ClientName>>,
    /// `none`, `lls`, `hls-gmac` (default: the profile's for this client).
    #[serde(default)]
    #[schemars(schema_with = "super::schema::mechanism")]
    pub mechanism: Option<String>,
    /// `none`, `authenticated`, `encrypted`, `authenticated-encrypted` for ciphered services.
    #[serde(default)]
    #[schemars(schema_with = "super::schema::security")]
    pub security: Option<String>,
    /// `service-specific` (glo-) or `general` (general-glo-ciphering).
    #[serde(default)]
    #[schemars(schema_with = "super::schema::ciphering")]
    pub ciphering: Option<String>,
    /// LLS password (text).
    #[serde(default)]
    pub password: Option<Tpl<String>>,
    /// Application context: `ln`, `ln-ciphered`, `sn`, `sn-ciphered`, or an OID in dotted form.
    #[serde(default)]
    #[schemars(schema_with = "super::schema::context")]
    pub context: Option<String>,
    /// Raw protocol-version bit string content in hex, e.g. `0780`.
    #[serde(default)]
    pub protocol_version: Option<String>,
    /// Calling AP title in hex (default: the client system title when ciphering or HLS).
    #[serde(default)]
    pub calling_ap_title: Option<Tpl<String>>,
    #[serde(default)]
    pub dlms_version: Option<u8>,
    #[serde(default)]
    pub max_pdu_size: Option<u16>,
    /// Proposed conformance: a list of conformance bit names, or 6 hex digits.
    #[serde(default)]
    pub conformance: Option<Conformance>,
    /// Propose a dedicated key (a generated one when `true`).
    #[serde(default)]
    pub dedicated_key: Option<bool>,
    /// Client-to-server challenge in hex (default: 16 random bytes).
    #[serde(default)]
    pub challenge: Option<String>,
    /// Deliberate faults to inject.
    #[serde(default)]
    pub wrong: Option<AssociateFaults>,
    /// Expected outcome (default: `accepted`, and for HLS the meter's f(CtoS) verified).
    #[serde(default)]
    pub expect: Option<Expect>,
}

/// Proposed conformance block.
/// (`Deserialize` is written by hand in `model_de.rs`, so errors say what was expected.)
#[derive(Debug, Clone, PartialEq)]
pub enum Conformance {
    Names(Vec<String>),
    Hex(String),
}

/// Faults to put into an association attempt.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AssociateFaults {
    /// Protect with this encryption key instead of the right one (hex), or
    /// `original`: the device profile's key as loaded (the old one after a key transfer).
    #[serde(default)]
    pub encryption_key: Option<String>,
    /// Use this authentication key instead of the right one (hex), or `original`.
    #[serde(default)]
    pub authentication_key: Option<String>,
    /// Send this client system title in the calling AP title (hex) while protecting with the real one.
    #[serde(default)]
    pub system_title: Option<String>,
    /// Send a wrong f(StoC) in pass 3.
    #[serde(default)]
    pub challenge_reply: bool,
    /// Use this invocation counter for the glo-initiate-request: `last` (a replay of the previous AARQ's), or a number.
    #[serde(default)]
    #[schemars(schema_with = "super::schema::counter")]
    pub initiate_counter: Option<Tpl<String>>,
    /// Skip pass 3 (stay at "authentication pending").
    #[serde(default)]
    pub skip_pass3: bool,
}

/// `release:`
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ReleaseStep {
    /// Protect the RLRQ's user-information (default: as the association requires).
    #[serde(default)]
    pub protected: Option<bool>,
    #[serde(default)]
    pub expect: Option<Expect>,
}

/// `get:`
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GetStep {
    /// The object by role (`clock`, `probe`, `security-setup`, ...), mapped by the device profile; or `class` and `obis`.
    #[serde(default)]
    #[schemars(schema_with = "super::schema::object_role")]
    pub object: Option<String>,
    /// For a client's object (`security-setup`, `invocation-counter`): whose (default: the case's client).
    #[serde(default)]
    pub of: Option<Tpl<ClientName>>,
    #[serde(default)]
    pub class: Option<u16>,
    #[serde(default)]
    pub obis: Option<Tpl<String>>,
    pub attr: i8,
    /// Save the returned value under this variable name.
    #[serde(default)]
    pub save: Option<String>,
    /// Send the request without protection even on a ciphered association.
    #[serde(default)]
    pub unprotected: bool,
    /// Protect with this security control (e.g. `authenticated` when `authenticated-encrypted` is required).
    #[serde(default)]
    #[schemars(schema_with = "super::schema::security")]
    pub security: Option<String>,
    #[serde(default)]
    pub expect: Option<Expect>,
}

/// `set:`
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SetStep {
    /// The object by role (`clock`, `probe`, `security-setup`, ...), mapped by the device profile; or `class` and `obis`.
    #[serde(default)]
    #[schemars(schema_with = "super::schema::object_role")]
    pub object: Option<String>,
    /// For a client's object (`security-setup`, `invocation-counter`): whose (default: the case's client).
    #[serde(default)]
    pub of: Option<Tpl<ClientName>>,
    #[serde(default)]
    pub class: Option<u16>,
    #[serde(default)]
    pub obis: Option<Tpl<String>>,
    pub attr: i8,
    pub value: DataSpec,
    #[serde(default)]
    pub unprotected: bool,
    #[serde(default)]
    #[schemars(schema_with = "super::schema::security")]
    pub security: Option<String>,
    #[serde(default)]
    pub expect: Option<Expect>,
}

/// `action:`
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ActionStep {
    /// The object by role (`clock`, `probe`, `security-setup`, ...), mapped by the device profile; or `class` and `obis`.
    #[serde(default)]
    #[schemars(schema_with = "super::schema::object_role")]
    pub object: Option<String>,
    /// For a client's object (`security-setup`, `invocation-counter`): whose (default: the case's client).
    #[serde(default)]
    pub of: Option<Tpl<ClientName>>,
    #[serde(default)]
    pub class: Option<u16>,
    #[serde(default)]
    pub obis: Option<Tpl<String>>,
    pub method: i8,
    #[serde(default)]
    pub params: Option<DataSpec>,
    #[serde(default)]
    pub save: Option<String>,
    #[serde(default)]
    pub unprotected: bool,
    #[serde(default)]
    #[schemars(schema_with = "super::schema::security")]
    pub security: Option<String>,
    #[serde(default)]
    pub expect: Option<Expect>,
}

/// `send:` exactly one of `apdu`, `protected`, `hdlc`, `wrapper`, `bytes`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SendStep {
    /// A plain APDU in hex, sent as is through the link.
    #[serde(default)]
    pub apdu: Option<Tpl<String>>,
    /// A plain APDU protected with the association's keys, with control over the counter and tampering.
    #[serde(default)]
    pub protected: Option<ProtectedSpec>,
    /// An HDLC frame built field by field (HDLC links only).
    #[serde(default)]
    pub hdlc: Option<HdlcFrameSpec>,
    /// A wrapper frame built field by field (wrapper links only).
    #[serde(default)]
    pub wrapper: Option<WrapperFrameSpec>,
    /// Raw bytes in hex onto the link, no framing added.
    #[serde(default)]
    pub bytes: Option<Tpl<String>>,
    #[serde(default)]
    pub expect: Option<Expect>,
}

/// A protected APDU built on purpose.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProtectedSpec {
    /// The plain APDU in hex (a get-request, say).
    pub apdu: Tpl<String>,
    /// Invocation counter: `next` (default), `last` (the previous one again), `last-N`, `+N` (skip ahead), or a number / `${var}`.
    #[serde(default)]
    #[schemars(schema_with = "super::schema::counter")]
    pub counter: Option<Tpl<String>>,
    /// `service-specific` or `general` (default: the association's).
    #[serde(default)]
    #[schemars(schema_with = "super::schema::ciphering")]
    pub ciphering: Option<String>,
    /// Security: `authenticated`, `encrypted`, `authenticated-encrypted` (default: the association's).
    #[serde(default)]
    #[schemars(schema_with = "super::schema::security")]
    pub security: Option<String>,
    /// Corrupt one part after protection: `tag`, `ciphertext`, `security-control`, `counter`.
    #[serde(default)]
    #[schemars(schema_with = "super::schema::tamper")]
    pub tamper: Option<String>,
}

/// An HDLC frame, any field overridable. Omitted fields are correct for the link.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HdlcFrameSpec {
    /// `snrm`, `disc`, `ui`, `rr`, `rnr`, `i` (the next I-frame), or a control byte in hex.
    #[serde(default)]
    #[schemars(schema_with = "super::schema::hdlc_control")]
    pub control: Option<String>,
    /// Destination address bytes in hex exactly as sent, or `${var}` (default: the server address).
    #[serde(default)]
    pub dest: Option<Tpl<String>>,
    /// Source address bytes in hex exactly as sent, or `${var}` (default: the client address).
    #[serde(default)]
    pub src: Option<Tpl<String>>,
    /// Information field in hex (for `i`: an APDU, the LLC header is added unless `llc: false`).
    #[serde(default)]
    pub info: Option<Tpl<String>>,
    #[serde(default)]
    pub llc: Option<bool>,
    /// N(S) and N(R) overrides for I and RR frames.
    #[serde(default)]
    pub send_seq: Option<u8>,
    #[serde(default)]
    pub recv_seq: Option<u8>,
    /// Format type nibble (default 10 = 0xA).
    #[serde(default)]
    pub format_type: Option<u8>,
    #[serde(default)]
    pub segmented: Option<bool>,
    /// Length field value (default: correct).
    #[serde(default)]
    pub length: Option<u16>,
    /// `bad` for a wrong HCS/FCS, or a hex value.
    #[serde(default)]
    #[schemars(schema_with = "super::schema::checksum")]
    pub hcs: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "super::schema::checksum")]
    pub fcs: Option<String>,
    /// Bytes in hex sent just before the frame, in the same write (stray bytes on the line).
    #[serde(default)]
    pub prefix: Option<String>,
    /// Leave out the opening / closing flag.
    #[serde(default)]
    pub no_opening_flag: bool,
    #[serde(default)]
    pub no_closing_flag: bool,
}

/// A wrapper frame, any field overridable.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WrapperFrameSpec {
    #[serde(default)]
    pub version: Option<u16>,
    #[serde(default)]
    pub source: Option<u16>,
    #[serde(default)]
    pub destination: Option<u16>,
    /// Length field (default: the payload length).
    #[serde(default)]
    pub length: Option<u16>,
    /// Payload in hex (an APDU).
    #[serde(default)]
    pub payload: Option<Tpl<String>>,
    /// Split the frame into this many TCP writes, with a pause between them.
    #[serde(default)]
    pub split: Option<u8>,
    /// Send the frame this many times in one write.
    #[serde(default)]
    pub repeat: Option<u8>,
}

/// `replay:`
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ReplayStep {
    /// Which saved request: `last` (default) or the name given with `save-request`.
    #[serde(default)]
    pub request: Option<String>,
    #[serde(default)]
    pub expect: Option<Expect>,
}

/// `key-transfer:`
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KeyTransferStep {
    pub keys: Vec<KeySpec>,
    /// Security Setup logical name (default 0-0:43.0.0.255, or the client's from the profile).
    #[serde(default)]
    pub obis: Option<Tpl<String>>,
    /// Wrap under this KEK instead of the device's master key (hex) — a wrong wrapping on purpose.
    #[serde(default)]
    pub wrap_with: Option<String>,
    /// Corrupt the wrapped bytes.
    #[serde(default)]
    pub corrupt_wrap: bool,
    /// After success, use the new keys for this client from now on (default true).
    #[serde(default)]
    pub adopt: Option<bool>,
    #[serde(default)]
    pub expect: Option<Expect>,
}

/// One key to transfer.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KeySpec {
    /// `unicast` (0, GUEK), `broadcast` (1, GBEK), `authentication` (2, AK), `master` (3, KEK), or a number.
    #[schemars(schema_with = "super::schema::key_id")]
    pub id: String,
    /// The new key in hex, `generate` (random), `original` (the profile's key of that kind), or `${var}`.
    #[schemars(schema_with = "super::schema::key_value")]
    pub key: Tpl<String>,
    /// Save the key under this variable (so a teardown can restore it).
    #[serde(default)]
    pub save: Option<String>,
}

/// `security-activate:`
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SecurityActivateStep {
    /// The new policy: for version 0 a number 0..3 or a name (`nothing`, `authenticated`, `encrypted`, `authenticated-encrypted`); for version 1 a number (bit flags).
    #[schemars(schema_with = "super::schema::policy")]
    pub policy: Tpl<String>,
    #[serde(default)]
    pub obis: Option<Tpl<String>>,
    #[serde(default)]
    pub expect: Option<Expect>,
}

/// `read-counter:` reads `0-0:43.1.e.255` as the public client over its own link.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ReadCounterStep {
    /// The client whose counter object to read (default: the case's client).
    #[serde(default)]
    pub client: Option<Tpl<ClientName>>,
    /// Variable to save the value in.
    pub save: String,
}

/// `check:` compares two values, e.g. `{left: "${after}", op: gt, right: "${before}"}`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CheckStep {
    pub left: String,
    /// `eq`, `ne`, `gt`, `ge`, `lt`, `le`.
    #[schemars(schema_with = "super::schema::check_op")]
    pub op: String,
    pub right: String,
    /// Message shown on failure.
    #[serde(default)]
    pub message: Option<String>,
}

/// `restart:`
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RestartStep {
    /// How long to wait after the restart before going on (default: the device profile's).
    #[serde(default)]
    #[schemars(schema_with = "super::schema::duration")]
    pub wait: Option<String>,
}

/// `listen:` expects silence or a disconnect for a while.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ListenStep {
    /// How long, e.g. `500ms`.
    #[schemars(schema_with = "super::schema::duration")]
    pub r#for: String,
    #[serde(default)]
    pub expect: Option<Expect>,
}

/// Accepted outcomes: one, or a list of which any one passes.
/// (`Deserialize` is written by hand in `model_de.rs`, so errors say what was expected.)
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    One(Outcome),
    AnyOf(Vec<Outcome>),
}

impl Expect {
    /// The accepted outcomes, one or many.
    pub fn outcomes(&self) -> &[Outcome] {
        match self {
            Expect::One(o) => std::slice::from_ref(o),
            Expect::AnyOf(v) => v,
        }
    }
}

/// An outcome of a step.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum Outcome {
    /// Any success: association accepted (and HLS completed), data returned, result success, UA.
    Success,
    /// The returned data equals this value.
    Value(DataSpec),
    /// The returned data has this type (e.g. `octet-string`), optionally with a length.
    Type(#[schemars(schema_with = "super::schema::data_type")] String),
    /// A data-access-result or action-result by name, e.g. `read-write-denied`.
    Result(#[schemars(schema_with = "super::schema::result")] String),
    /// AARE rejected, optionally with a result (`rejected-permanent`, `rejected-transient`) and a diagnostic name or number.
    Rejected(RejectSpec),
    /// An AARE carrying a confirmed-service-error (initiate error) by name, e.g. `dlms-version-too-low`.
    InitiateError(#[schemars(schema_with = "super::schema::initiate_error")] String),
    /// An exception-response with this service error (e.g. `invocation-counter-error`, `deciphering-error`), or `any`.
    Exception(#[schemars(schema_with = "super::schema::exception")] String),
    /// An HDLC frame of this kind came back: `ua`, `dm`, `frmr`, `rr`, `i`.
    Frame(#[schemars(schema_with = "super::schema::frame")] String),
    /// Nothing came back within the step's wait (default 1s for silence).
    Silence,
    /// The device closed the link (TCP close or HDLC DISC/DM).
    Disconnect,
    /// The outcomes the device profile accepts for this named variation point
    /// (e.g. `replayed-counter`); with `--strict`, only the standard's.
    Profile(String),
}

/// Details of an expected AARE rejection.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RejectSpec {
    #[serde(default)]
    #[schemars(schema_with = "super::schema::reject_result")]
    pub result: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "super::schema::diagnostic")]
    pub diagnostic: Option<String>,
}

/// A COSEM data value written in YAML: a one-key map naming the type.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub enum DataSpec {
    Null,
    Boolean(bool),
    Integer(i8),
    Long(i16),
    DoubleLong(i32),
    Long64(i64),
    Unsigned(u8),
    LongUnsigned(u16),
    DoubleLongUnsigned(u32),
    Long64Unsigned(u64),
    Enum(u8),
    Float32(f32),
    Float64(f64),
    /// Hex, or `${var}`.
    OctetString(Tpl<String>),
    /// An octet-string given as ASCII text.
    OctetStringText(String),
    VisibleString(String),
    Utf8String(String),
    /// Bits as a string of 0 and 1.
    BitString(String),
    /// 24 hex digits.
    DateTime(String),
    Date(String),
    Time(String),
    Array(Vec<DataSpec>),
    Structure(Vec<DataSpec>),
    /// Any value at this position (in expectations only).
    Any,
}
