//! The simulated meters' memory kept across restarts (`idis-harness simulate
//! --state FILE`): per meter and client, the keys in force (Green Book key
//! transfer, security setup method 2), the security policy (method 1), the
//! lowest acceptable invocation counter from the client and the meter's own
//! next counter (Green Book 9.2.7.2.4, dlms-facts.md 4.1), and the clock offset.
//!
//! The file holds secret keys in hex: it is the meters' memory and must be
//! protected like a key file. It is written with mode 0600, atomically (a
//! temporary file renamed over the old one).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::security::{Key, ReplayGuard, SystemTitle};
use crate::sim::meter::{ClientState, Meter, MeterState};

/// The state of one meter, as saved.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedMeter {
    /// The meter's system title: state saved for another meter is not applied.
    pub system_title: SystemTitle,
    pub state: MeterState,
}

/// The state file: saved meters by fleet index.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StateFile {
    pub meters: BTreeMap<u32, SavedMeter>,
}

const HEADER: &str = "\
# idis-harness simulated meter state: the meters' memory (keys in force,
# security policies, invocation counters, clock offset), by meter index.
# SECRET: it holds the meters' keys in hex. Protect it like a key file.
";

fn hex_key(k: &Key) -> String {
    hex::encode_upper(k.expose())
}

fn guard_lowest(g: &ReplayGuard) -> Option<u32> {
    g.lowest_acceptable()
}

/// A guard whose lowest acceptable counter is `lowest`, or an exhausted one for `None`.
fn guard_from(lowest: Option<u32>) -> ReplayGuard {
    match lowest {
        Some(l) => ReplayGuard::starting_at(l),
        None => {
            let mut g = ReplayGuard::new();
            g.force(u32::MAX);
            g
        }
    }
}

impl StateFile {
    /// Reads a state file; a missing file is an empty state.
    pub fn load(path: &Path) -> Result<StateFile, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                StateFile::parse(&text).map_err(|e| format!("state file {}: {e}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StateFile::default()),
            Err(e) => Err(format!("cannot read state file {}: {e}", path.display())),
        }
    }

    /// Parses the text of a state file.
    pub fn parse(text: &str) -> Result<StateFile, String> {
        if text.trim().is_empty() {
            return Ok(StateFile::default());
        }
        let raw: RawFile = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        if raw.version != 1 {
            return Err(format!("unknown state file version {}", raw.version));
        }
        let mut meters = BTreeMap::new();
        for (index, m) in raw.meters {
            let what = |f: &str| format!("meter {index}: {f}");
            let system_title = m
                .system_title
                .parse()
                .map_err(|e| format!("{}: {e}", what("system-title")))?;
            let mut clients = BTreeMap::new();
            for (sap, c) in m.clients {
                let w = |f: &str| what(&format!("client {sap}: {f}"));
                let key = |v: &str, f: &str| v.parse::<Key>().map_err(|e| format!("{}: {e}", w(f)));
                let previous_keys = match (
                    &c.previous_encryption_key,
                    &c.previous_authentication_key,
                ) {
                    (Some(e), Some(a)) => Some((
                        key(e, "previous-encryption-key")?,
                        key(a, "previous-authentication-key")?,
                    )),
                    (None, None) => None,
                    _ => {
                        return Err(w(
                            "give both previous-encryption-key and previous-authentication-key, or neither",
                        ));
                    }
                };
                let lowest = if c.counter_exhausted {
                    None
                } else {
                    Some(c.lowest_acceptable_counter.unwrap_or(0))
                };
                clients.insert(
                    sap,
                    ClientState {
                        encryption_key: key(&c.encryption_key, "encryption-key")?,
                        authentication_key: key(&c.authentication_key, "authentication-key")?,
                        broadcast_key: key(&c.broadcast_key, "broadcast-key")?,
                        master_key: key(&c.master_key, "master-key")?,
                        previous_keys,
                        policy: c.policy,
                        client_guard: guard_from(lowest),
                        own_counter: c.own_counter,
                    },
                );
            }
            meters.insert(
                index,
                SavedMeter {
                    system_title,
                    state: MeterState {
                        clients,
                        clock_offset: m.clock_offset,
                    },
                },
            );
        }
        Ok(StateFile { meters })
    }

    /// The text of the state file.
    pub fn to_yaml(&self) -> String {
        use std::fmt::Write;
        let mut s = String::from(HEADER);
        s.push_str("version: 1\nmeters:\n");
        if self.meters.is_empty() {
            s.truncate(s.len() - 1);
            s.push_str(" {}\n");
        }
        for (index, m) in &self.meters {
            let _ = writeln!(s, "  {index}:");
            let _ = writeln!(
                s,
                "    system-title: \"{}\"",
                hex::encode_upper(m.system_title.0)
            );
            let _ = writeln!(s, "    clock-offset: {}", m.state.clock_offset);
            if m.state.clients.is_empty() {
                s.push_str("    clients: {}\n");
                continue;
            }
            s.push_str("    clients:\n");
            for (sap, c) in &m.state.clients {
                let _ = writeln!(s, "      {sap}:");
                let _ = writeln!(
                    s,
                    "        encryption-key: \"{}\"",
                    hex_key(&c.encryption_key)
                );
                let _ = writeln!(
                    s,
                    "        authentication-key: \"{}\"",
                    hex_key(&c.authentication_key)
                );
                let _ = writeln!(
                    s,
                    "        broadcast-key: \"{}\"",
                    hex_key(&c.broadcast_key)
                );
                let _ = writeln!(s, "        master-key: \"{}\"", hex_key(&c.master_key));
                if let Some((e, a)) = &c.previous_keys {
                    let _ = writeln!(s, "        previous-encryption-key: \"{}\"", hex_key(e));
                    let _ = writeln!(s, "        previous-authentication-key: \"{}\"", hex_key(a));
                }
                let _ = writeln!(s, "        policy: {}", c.policy);
                match guard_lowest(&c.client_guard) {
                    Some(l) => {
                        let _ = writeln!(s, "        lowest-acceptable-counter: {l}");
                    }
                    None => s.push_str("        counter-exhausted: true\n"),
                }
                let _ = writeln!(s, "        own-counter: {}", c.own_counter);
            }
        }
        s
    }

    /// Writes the state file atomically (temporary file, then rename), mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        write_secret_file(path, &self.to_yaml())
    }

    /// Applies the saved state of meter `index` to `meter`. Returns a warning when
    /// the saved state belongs to another meter (another system title) and was
    /// ignored. Clients the meter does not have are ignored; clients the file
    /// does not name keep their initial state.
    pub fn apply(&self, index: u32, meter: &mut Meter) -> Option<String> {
        let saved = self.meters.get(&index)?;
        if saved.system_title != meter.config.system_title {
            return Some(format!(
                "state of meter {index} was saved for system title {}, not {}: ignored",
                hex::encode_upper(saved.system_title.0),
                hex::encode_upper(meter.config.system_title.0)
            ));
        }
        meter.state.clock_offset = saved.state.clock_offset;
        for (sap, c) in &saved.state.clients {
            if let Some(st) = meter.state.clients.get_mut(sap) {
                *st = c.clone();
            }
        }
        None
    }
}

/// Writes `text` to `path` atomically (a temporary file beside it, renamed
/// over it), readable and writable by the owner only (mode 0600 on Unix).
pub fn write_secret_file(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".idis-harness-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| format!("cannot create a temporary file in {}: {e}", dir.display()))?;
    // tempfile creates the file with mode 0600 on Unix.
    tmp.write_all(text.as_bytes())
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| format!("cannot write {}: {e}", tmp.path().display()))?;
    tmp.persist(path)
        .map_err(|e| format!("cannot write {}: {}", path.display(), e.error))?;
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    version: u32,
    #[serde(default)]
    meters: BTreeMap<u32, RawMeter>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawMeter {
    system_title: String,
    #[serde(default)]
    clock_offset: i64,
    #[serde(default)]
    clients: BTreeMap<u16, RawClient>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawClient {
    encryption_key: String,
    authentication_key: String,
    broadcast_key: String,
    master_key: String,
    #[serde(default)]
    previous_encryption_key: Option<String>,
    #[serde(default)]
    previous_authentication_key: Option<String>,
    #[serde(default)]
    policy: u8,
    #[serde(default)]
    lowest_acceptable_counter: Option<u32>,
    #[serde(default)]
    counter_exhausted: bool,
    #[serde(default)]
    own_counter: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{MeterConfig, Quirks};

    fn sample() -> StateFile {
        let cfg = MeterConfig::default();
        let mut st = MeterState::new(&cfg);
        st.clock_offset = -3600;
        let c = st.clients.get_mut(&1).unwrap();
        c.client_guard = ReplayGuard::starting_at(42);
        c.own_counter = 77;
        c.policy = 3;
        c.previous_keys = Some((Key::EXAMPLE_AK, Key::EXAMPLE_EK));
        c.encryption_key = Key::new([0xA5; 16]);
        st.clients.get_mut(&2).unwrap().client_guard = guard_from(None);
        let mut meters = BTreeMap::new();
        meters.insert(
            0,
            SavedMeter {
                system_title: cfg.system_title,
                state: st,
            },
        );
        StateFile { meters }
    }

    #[test]
    fn accepts_its_own_output_round_trip() {
        let s = sample();
        let text = s.to_yaml();
        assert!(text.contains("SECRET"), "{text}");
        assert_eq!(StateFile::parse(&text).unwrap(), s);
        assert_eq!(
            StateFile::parse(&StateFile::default().to_yaml()).unwrap(),
            StateFile::default()
        );
    }

    #[test]
    fn exhausted_guard_survives_the_round_trip() {
        let s = StateFile::parse(&sample().to_yaml()).unwrap();
        let g = &s.meters[&0].state.clients[&2].client_guard;
        assert_eq!(g.lowest_acceptable(), None);
    }

    #[test]
    fn rejects_bad_keys_and_unknown_fields() {
        let text = sample().to_yaml();
        let bad = text.replacen("encryption-key: \"A5", "encryption-key: \"ZZ", 1);
        let e = StateFile::parse(&bad).unwrap_err();
        assert!(e.contains("meter 0: client 1: encryption-key"), "{e}");
        let e = StateFile::parse(&text.replace("own-counter", "own-countr")).unwrap_err();
        assert!(e.contains("own-countr"), "{e}");
        assert!(StateFile::parse("version: 2\nmeters: {}\n").is_err());
    }

    #[test]
    fn save_is_atomic_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.yaml");
        sample().save(&path).unwrap();
        sample().save(&path).unwrap();
        assert_eq!(StateFile::load(&path).unwrap(), sample());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let left: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 1, "temporary files left: {left:?}");
        assert_eq!(
            StateFile::load(&dir.path().join("missing.yaml")).unwrap(),
            StateFile::default()
        );
    }

    #[test]
    fn applies_only_to_the_same_meter() {
        let s = sample();
        let mut m = Meter::new(MeterConfig::default(), Quirks::none());
        assert_eq!(s.apply(0, &mut m), None);
        assert_eq!(m.state, s.meters[&0].state);
        let mut other = Meter::new(MeterConfig::default().derived(1, 0), Quirks::none());
        let before = other.state.clone();
        assert!(s.apply(0, &mut other).unwrap().contains("ignored"));
        assert_eq!(other.state, before);
        assert_eq!(s.apply(5, &mut m), None);
    }
}
