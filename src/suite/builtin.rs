//! The shipped suites, embedded in the binary at build time (see `build.rs`),
//! so `idis-harness run` and `run association` work from any directory.
//! Diagnostics name them `<built-in>/association.yaml`.

use std::path::PathBuf;

use super::{LoadedSuite, SuiteError, ValidationContext, load_source};

/// The folder name diagnostics give built-in suites.
pub const BUILTIN_DIR: &str = "<built-in>";

/// A shipped suite file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltinSuite {
    /// The file name without `.yaml`, e.g. `association`.
    pub name: &'static str,
    /// The file name, e.g. `association.yaml`.
    pub file: &'static str,
    /// The YAML text.
    pub source: &'static str,
}

/// Every shipped suite, sorted by file name.
pub const BUILTIN_SUITES: &[BuiltinSuite] =
    include!(concat!(env!("OUT_DIR"), "/builtin_suites.rs"));

impl BuiltinSuite {
    /// The path diagnostics name: `<built-in>/association.yaml`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("{BUILTIN_DIR}/{}", self.file))
    }

    /// Parses and validates the suite.
    pub fn load(&self, ctx: &ValidationContext) -> Result<LoadedSuite, Vec<SuiteError>> {
        load_source(&self.path(), self.source.to_owned(), ctx)
    }
}

/// The shipped suite called `name` (`association` or `association.yaml`).
pub fn find(name: &str) -> Option<&'static BuiltinSuite> {
    let name = name.strip_suffix(".yaml").unwrap_or(name);
    BUILTIN_SUITES.iter().find(|s| s.name == name)
}

/// The names of the shipped suites.
pub fn names() -> Vec<&'static str> {
    BUILTIN_SUITES.iter().map(|s| s.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_file_is_embedded_as_it_is_on_disk() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("suites");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yaml"))
            .collect();
        on_disk.sort();
        let embedded: Vec<&str> = BUILTIN_SUITES.iter().map(|s| s.file).collect();
        assert_eq!(embedded, on_disk);
        for s in BUILTIN_SUITES {
            assert_eq!(
                s.source,
                std::fs::read_to_string(dir.join(s.file)).unwrap(),
                "{}",
                s.file
            );
        }
        assert_eq!(
            find("association.yaml").map(|s| s.name),
            Some("association")
        );
        assert_eq!(
            find("association").unwrap().path(),
            PathBuf::from("<built-in>/association.yaml")
        );
        assert!(find("nosuch").is_none());
    }
}
