//! The key escrow file: every key the harness generates is written here
//! before it is sent to a meter, so no meter is ever left with a key nobody
//! holds (DESIGN.md "Verdicts": generated keys are escrowed before they are
//! transferred).
//!
//! The file is a key file in the format device profiles read
//! ([`crate::profile::load_key_file`]: a YAML map, nested maps flattened with
//! `/`). Each deposit is one top-level entry named
//! `<meter>/client-<sap>/<time>` (the meter's system title, or its target
//! with characters other than letters, digits, `-`, `.` and `_` replaced by
//! `_`; the UTC time as `20261204T180532.123Z`, with `-2`, `-3` .. added if
//! two deposits share a millisecond). Under it are `time`, `target`, `case`,
//! an optional `note`, and one key per key id, named `unicast`, `broadcast`,
//! `authentication` or `master`. A key is therefore named in a device profile
//! as
//!
//! ```yaml
//! encryption-key: {file: escrow-keys.yaml, entry: 4D4D4D0000BC614E/client-1/20261204T180532.123Z/unicast}
//! ```
//!
//! The file is rewritten whole for each deposit: the old content plus the new
//! entry go to a temporary file with mode 0600 in the same folder, which is
//! synced and renamed over the old one (and the folder synced), so a crash
//! leaves either the old or the new file, never half of one. The written file
//! is read back and the new entry checked before [`Escrow::deposit`] returns.
//! This is the one place keys are written in clear.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::security::Key;

/// The name of a key id in escrow entries (Blue Book class 64 key_id).
pub fn key_id_name(id: u8) -> &'static str {
    match id {
        0 => "unicast",
        1 => "broadcast",
        2 => "authentication",
        3 => "master",
        _ => "unknown",
    }
}

/// Where escrowed keys go.
#[derive(Debug)]
enum Dest {
    File(PathBuf),
    /// Kept in memory only: for the project's own tests against a simulator
    /// that lives no longer than the test.
    Memory,
}

/// One escrowed key, as kept in memory (never printed).
#[derive(Debug, Clone)]
pub struct Deposited {
    /// The full entry name, e.g. `4D4D4D0000BC614E/client-1/20261204T180532.123Z/unicast`.
    pub entry: String,
    pub client: u16,
    pub key_id: u8,
    pub key: Key,
}

/// What to escrow: generated keys for one client of one meter.
#[derive(Debug)]
pub struct DepositRequest<'a> {
    /// The meter: its system title, or its target.
    pub meter: &'a str,
    pub target: &'a str,
    pub client: u16,
    /// `suite::case`.
    pub case: &'a str,
    /// (key id, key).
    pub keys: &'a [(u8, Key)],
    pub note: Option<&'a str>,
}

/// Why a key could not be escrowed. The key transfer is then not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot escrow the generated key(s) in {}: {why}", file.display())]
pub struct EscrowError {
    pub file: PathBuf,
    pub why: String,
}

/// The escrow of a run: a key file, shared by every target of the run.
#[derive(Debug)]
pub struct Escrow {
    dest: Dest,
    deposits: Mutex<Vec<Deposited>>,
}

impl Escrow {
    /// Escrow into `path` (created with mode 0600 on the first deposit).
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Escrow {
            dest: Dest::File(path.into()),
            deposits: Mutex::new(Vec::new()),
        }
    }

    /// Escrow in memory only (tests against a short-lived simulator).
    pub fn memory() -> Self {
        Escrow {
            dest: Dest::Memory,
            deposits: Mutex::new(Vec::new()),
        }
    }

    /// The escrow file, when there is one.
    pub fn path(&self) -> Option<&Path> {
        match &self.dest {
            Dest::File(p) => Some(p),
            Dest::Memory => None,
        }
    }

    /// The file as people should be told about it.
    pub fn location(&self) -> String {
        match &self.dest {
            Dest::File(p) => p.display().to_string(),
            Dest::Memory => "the in-memory escrow of this run".into(),
        }
    }

    /// The keys deposited during this run, oldest first.
    pub fn deposits(&self) -> Vec<Deposited> {
        self.deposits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Writes the keys, synced, and returns the entry name of each key (in
    /// the order given). Only when this returns `Ok` may the keys be sent.
    pub fn deposit(
        &self,
        req: &DepositRequest<'_>,
        now: SystemTime,
    ) -> Result<Vec<String>, EscrowError> {
        // One deposit at a time: targets running in parallel share the file.
        let mut deposits = self.deposits.lock().unwrap_or_else(|p| p.into_inner());
        let stamp = chrono::DateTime::<chrono::Utc>::from(now);
        let base = format!(
            "{}/client-{}/{}",
            entry_safe(req.meter),
            req.client,
            stamp.format("%Y%m%dT%H%M%S%.3fZ")
        );
        let taken = |name: &str| {
            deposits
                .iter()
                .any(|d| d.entry.starts_with(&format!("{name}/")))
        };
        let existing = match &self.dest {
            Dest::File(path) => read_existing(path)?,
            Dest::Memory => String::new(),
        };
        let mut prefix = base.clone();
        let mut n = 1;
        while taken(&prefix) || existing.contains(&format!("{}:", quoted(&prefix))) {
            n += 1;
            prefix = format!("{base}-{n}");
        }
        let entries: Vec<String> = req
            .keys
            .iter()
            .map(|(id, _)| format!("{prefix}/{}", key_id_name(*id)))
            .collect();
        if let Dest::File(path) = &self.dest {
            let mut text = if existing.trim().is_empty() {
                HEADER.to_owned()
            } else {
                existing
            };
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&block(&prefix, req, &stamp));
            let err = |why: String| EscrowError {
                file: path.clone(),
                why,
            };
            write_synced(path, text.as_bytes()).map_err(|e| err(e.to_string()))?;
            check_written(path, &prefix, req.keys).map_err(err)?;
        }
        for ((id, key), entry) in req.keys.iter().zip(&entries) {
            deposits.push(Deposited {
                entry: entry.clone(),
                client: req.client,
                key_id: *id,
                key: key.clone(),
            });
        }
        Ok(entries)
    }
}

const HEADER: &str = "\
# idis-harness key escrow. Every key the harness generated, written here
# before it was sent to a meter. Keep this file secret (mode 0600).
# Name a key in a device profile as
#   encryption-key: {file: escrow-keys.yaml, entry: METER/client-N/TIME/unicast}
";

/// A meter name usable inside an entry name (no `/`, nothing YAML minds).
fn entry_safe(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() { "meter".into() } else { out }
}

/// A YAML double-quoted scalar (JSON string syntax is valid YAML).
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{}\"", s.escape_default()))
}

fn block(prefix: &str, req: &DepositRequest<'_>, stamp: &chrono::DateTime<chrono::Utc>) -> String {
    let mut b = format!("{}:\n", quoted(prefix));
    let mut line = |k: &str, v: &str| {
        b.push_str(&format!("  {k}: {}\n", quoted(v)));
    };
    line("time", &stamp.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string());
    line("target", req.target);
    line("case", req.case);
    if let Some(n) = req.note {
        line("note", n);
    }
    for (id, key) in req.keys {
        line(key_id_name(*id), &hex::encode_upper(key.expose()));
    }
    b
}

fn read_existing(path: &Path) -> Result<String, EscrowError> {
    let err = |why: String| EscrowError {
        file: path.to_owned(),
        why,
    };
    match std::fs::read_to_string(path) {
        Ok(t) => {
            if !t.trim().is_empty() {
                // Never append to something that is not a key file: the result
                // would not load, and the keys in it would be as good as lost.
                serde_saphyr::from_str::<serde_json::Value>(&t)
                    .ok()
                    .filter(serde_json::Value::is_object)
                    .ok_or_else(|| {
                        err("the file exists and is not a YAML map of keys; move it away or choose another with --escrow".into())
                    })?;
            }
            Ok(t)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(err(format!("cannot read it: {e}"))),
    }
}

/// Writes `bytes` to `path` through a synced 0600 temporary file and a rename.
fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(parent)?;
    // NamedTempFile is created with mode 0600.
    let mut tmp = tempfile::Builder::new()
        .prefix(".idis-escrow-")
        .suffix(".tmp")
        .tempfile_in(parent)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// Reads the file back and checks the new entry holds the keys.
fn check_written(path: &Path, prefix: &str, keys: &[(u8, Key)]) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read it back: {e}"))?;
    let v: serde_json::Value =
        serde_saphyr::from_str(&text).map_err(|e| format!("it does not read back as YAML: {e}"))?;
    for (id, key) in keys {
        let got = v
            .get(prefix)
            .and_then(|e| e.get(key_id_name(*id)))
            .and_then(serde_json::Value::as_str);
        if got != Some(hex::encode_upper(key.expose()).as_str()) {
            return Err(format!(
                "entry {prefix}/{} does not read back",
                key_id_name(*id)
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn key(b: u8) -> Key {
        Key::new([b; 16])
    }

    fn req<'a>(keys: &'a [(u8, Key)], case: &'a str) -> DepositRequest<'a> {
        DepositRequest {
            meter: "4D4D4D0000BC614E",
            target: "tcp://127.0.0.1:4059",
            client: 1,
            case,
            keys,
            note: None,
        }
    }

    #[test]
    fn deposits_load_as_a_key_file_with_stable_entry_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/escrow-keys.yaml");
        let e = Escrow::file(&path);
        let at = UNIX_EPOCH + Duration::from_millis(1_796_400_000_123);
        let k1 = [(0, key(0x11)), (2, key(0x22))];
        let names = e.deposit(&req(&k1, "key-transfer::P3"), at).unwrap();
        assert_eq!(
            names,
            [
                "4D4D4D0000BC614E/client-1/20261204T160000.123Z/unicast",
                "4D4D4D0000BC614E/client-1/20261204T160000.123Z/authentication"
            ]
        );
        // Same millisecond: a distinct entry, the first one kept.
        let k2 = [(0, key(0x33))];
        let names2 = e.deposit(&req(&k2, "key-transfer::P1"), at).unwrap();
        assert_eq!(
            names2,
            ["4D4D4D0000BC614E/client-1/20261204T160000.123Z-2/unicast"]
        );
        let loaded = crate::profile::load_key_file(&path).unwrap();
        assert_eq!(loaded[&names[0]], "11".repeat(16));
        assert_eq!(loaded[&names[1]], "22".repeat(16));
        assert_eq!(loaded[&names2[0]], "33".repeat(16));
        assert_eq!(
            loaded["4D4D4D0000BC614E/client-1/20261204T160000.123Z/case"],
            "key-transfer::P3"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // No temporary file left behind.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert_eq!(e.deposits().len(), 3);
    }

    #[test]
    fn refuses_to_append_to_a_file_that_is_not_a_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("escrow-keys.yaml");
        std::fs::write(&path, "- not\n- a map\n").unwrap();
        let e = Escrow::file(&path);
        let k = [(0, key(1))];
        let err = e.deposit(&req(&k, "c"), SystemTime::now()).unwrap_err();
        assert!(err.to_string().contains("not a YAML map of keys"), "{err}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "- not\n- a map\n",
            "the file is left alone"
        );
        assert!(e.deposits().is_empty());
    }

    #[test]
    fn meter_names_are_made_entry_safe() {
        assert_eq!(entry_safe("tcp://10.0.0.5:4059"), "tcp___10.0.0.5_4059");
        assert_eq!(entry_safe(""), "meter");
    }

    #[test]
    fn memory_escrow_keeps_keys_without_a_file() {
        let e = Escrow::memory();
        let k = [(3, key(9))];
        let names = e.deposit(&req(&k, "c"), SystemTime::now()).unwrap();
        assert!(names[0].ends_with("/master"));
        assert!(e.path().is_none());
        assert_eq!(e.deposits()[0].key, key(9));
    }
}
