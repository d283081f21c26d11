//! Test suites: the YAML format test engineers write, its loader and its checks.
//!
//! # The suite format
//!
//! One YAML file is one suite. A suite has an id, a title, optional variables and
//! a list of cases; a case has steps, run in order, and a teardown that always runs.
//! Each step is a one-key map naming what to do (`connect`, `disconnect`,
//! `associate`, `release`, `get`, `set`, `action`, `send`, `replay`, `key-transfer`,
//! `security-activate`, `read-counter`, `check`, `wait`, `listen`, `restart`). Steps
//! that talk to the meter may say what they `expect:`: one outcome, or a list of
//! outcomes of which any one passes.
//!
//! Only the point of a case may fail it: a step written `- given: {STEP}`
//! establishes a precondition, and when it does not hold the case is
//! inconclusive ("precondition failed: ..."), never failed.
//!
//! Clients and objects are named by role, which the device profile maps
//! ([`crate::profile::roles`]): `client: management` (or a SAP number, for
//! suites of one's own), `get: {object: clock, attr: 2}`, `get: {object:
//! invocation-counter, of: management, attr: 2}`; or by `class` and `obis`.
//! The profile's settings reach a case as variables without declaring them
//! ([`vars::PROFILE_VARS`]: `${probe_get}`, `${server_system_title}`, the HDLC
//! addresses, ...).
//!
//! ```yaml
//! # yaml-language-server: $schema=schema.json
//! suite: replay-rejection
//! title: A meter rejects replayed and tampered requests
//! references: [Green Book 9.2.7.2.4]
//! vars:
//!   client: management             # override: --var client=public, IDIS_VAR_CLIENT=16
//!   clock: 0-0:1.0.0.255
//! templates:                       # anchors to reuse; not interpreted
//!   mgmt: &mgmt {mechanism: hls-gmac, security: authenticated-encrypted}
//! cases:
//!   - id: replay-1
//!     title: A replayed get-request is rejected
//!     checks: Green Book 9.2.7.2.4 (invocation counter must grow)
//!     requires: [hls-gmac]
//!     detects: [accepts-replayed-counter]  # the simulator fault this case must catch
//!     steps:
//!       - given: {connect: {client: '${client}'}}
//!       - given: {associate: {<<: *mgmt, client: '${client}'}}
//!       - get: {class: 8, obis: '${clock}', attr: 2, save: time}
//!       - replay:
//!           expect: [{exception: invocation-counter-error}, silence, {profile: replayed-counter}]
//!       - send:
//!           protected: {apdu: C0 01 C1 00 08 00 00 01 00 00 FF 02 00, tamper: tag}
//!           expect: {exception: deciphering-error}
//!       - listen: {for: 500ms, expect: silence}
//!     teardown:
//!       - release: {}
//!       - disconnect: {}
//! ```
//!
//! * Outcomes: `success`, `silence`, `disconnect`, or a one-key map: `{value: DATA}`,
//!   `{type: octet-string(16)}`, `{result: read-write-denied}`, `{exception: NAME}`,
//!   `{rejected: {result: rejected-permanent, diagnostic: authentication-failure}}`,
//!   `{initiate-error: dlms-version-too-low}`, `{frame: ua}`, `{profile: NAME}` (the
//!   outcomes the device profile accepts for a point where meters legitimately differ).
//! * Data values name their COSEM type: `{long-unsigned: 7}`, `{octet-string: 0102}`,
//!   `{visible-string: IDIS}`, `{structure: [{enum: 1}, {boolean: true}]}`; `any` matches
//!   anything in an expected value.
//! * Hex is written as pairs of digits, spaces allowed: `C0 01 C1`.
//! * Variables: `${name}` in a value refers to a suite variable or to a value saved
//!   earlier in the case (`save: name` on `get`/`action`, `read-counter`, a key of
//!   `key-transfer`); `$$` is a literal `$`. Overrides come from `--var name=value`, a
//!   vars file, then `IDIS_VAR_<NAME>` in the environment (see [`vars`]).
//! * YAML anchors, aliases and merge keys (`<<: *name`) work anywhere; `templates:`
//!   is a place to keep them.
//! * Unknown keys are errors everywhere, so a typo never silently disables a check.
//!   `suites/schema.json` (from [`json_schema`]) gives editors completion.
//!
//! # Errors
//!
//! The loader checks types and names (steps, outcomes, data types, mechanisms, result
//! and exception names, conformance bits, OBIS codes, hex, durations, counters,
//! variables) and reports every problem with its file, line and column, the source
//! line, a caret and, for a misspelling, the likely intended name:
//!
//! ```text
//! error: unknown step `gett`
//!   --> suites/replay.yaml:12:9
//!    |
//! 12 |       - gett: {class: 8, obis: 0-0:1.0.0.255, attr: 2}
//!    |         ^^^^ did you mean `get`?
//! ```
//!
//! The same text (no colour) goes to the console and into JUnit reports. Files are
//! limited to 1 MiB and to a bounded number of YAML nodes, aliases and nesting levels
//! (see [`loader`]), so a YAML bomb is an error, not an out-of-memory.

pub mod builtin;
pub mod diag;
pub mod loader;
pub mod model;
mod model_de;
pub mod profile_check;
pub mod roles;
pub mod schema;
mod spans;
pub mod validate;
pub mod vars;
pub mod vocab;

pub use diag::{Diagnostic, Span, SuiteError, did_you_mean, render_snippet};
pub use loader::{LoadedSuite, load_file, load_file_all_errors, load_paths, load_source};
pub use model_de::{TplScalar, is_template};
pub use schema::json_schema;
pub use validate::ValidationContext;
pub use vars::{VarOverrides, VarSource, resolve};

#[cfg(test)]
mod tests;
