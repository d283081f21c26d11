//! Suite arguments: a file or folder on disk (as always), or the name of a
//! shipped suite (`association`), which is `suites/association.yaml` when that
//! file is here and the copy built into the binary otherwise. With no argument,
//! `suites/` when it exists here, else every built-in suite: `idis-harness run`
//! works from any directory.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use idis_harness::suite::builtin::{self, BuiltinSuite};
use idis_harness::suite::{self, LoadedSuite, ValidationContext, did_you_mean};

/// The folder of shipped suites in a checkout, and the default argument.
pub const DEFAULT_DIR: &str = "suites";

/// Where suites come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SuiteSource {
    /// A file or folder on disk.
    Path(PathBuf),
    /// A suite built into the binary.
    Builtin(&'static BuiltinSuite),
}

/// The sources the arguments name (the default when there are none), or one
/// error per argument that names nothing.
pub fn resolve(args: &[PathBuf]) -> Result<Vec<SuiteSource>, Vec<String>> {
    resolve_in(args, Path::new("."))
}

fn all_builtin() -> Vec<SuiteSource> {
    builtin::BUILTIN_SUITES
        .iter()
        .map(SuiteSource::Builtin)
        .collect()
}

/// [`resolve`] with paths taken relative to `cwd` (tests).
fn resolve_in(args: &[PathBuf], cwd: &Path) -> Result<Vec<SuiteSource>, Vec<String>> {
    let local = |p: &Path| cwd.join(p);
    if args.is_empty() {
        return Ok(if local(Path::new(DEFAULT_DIR)).is_dir() {
            vec![SuiteSource::Path(PathBuf::from(DEFAULT_DIR))]
        } else {
            all_builtin()
        });
    }
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for a in args {
        if local(a).exists() {
            out.push(SuiteSource::Path(a.clone()));
            continue;
        }
        let text = a.to_string_lossy();
        let trimmed = text.trim_end_matches('/');
        if trimmed == DEFAULT_DIR {
            out.extend(all_builtin());
            continue;
        }
        // `association`, `association.yaml`, or `suites/association.yaml` away from a checkout.
        let name = trimmed
            .strip_prefix(&format!("{DEFAULT_DIR}/"))
            .unwrap_or(trimmed);
        if let Some(b) = builtin::find(name) {
            let on_disk = Path::new(DEFAULT_DIR).join(b.file);
            out.push(if local(&on_disk).is_file() {
                SuiteSource::Path(on_disk)
            } else {
                SuiteSource::Builtin(b)
            });
            continue;
        }
        let names = builtin::names();
        let hint = did_you_mean(name.trim_end_matches(".yaml"), &names)
            .map(|n| format!("did you mean `{n}`? "))
            .unwrap_or_default();
        errors.push(format!(
            "error: `{text}` is neither a suite file or folder nor a shipped suite\n  = help: {hint}the shipped suites are {}",
            names.join(", ")
        ));
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Loads the suites `args` name. Returns the suites and every problem, each
/// rendered (file, line, column and caret for suite errors).
pub fn load(args: &[PathBuf], ctx: &ValidationContext) -> (Vec<LoadedSuite>, Vec<String>) {
    let sources = match resolve(args) {
        Ok(s) => s,
        Err(e) => return (vec![], e),
    };
    let paths: Vec<PathBuf> = sources
        .iter()
        .filter_map(|s| match s {
            SuiteSource::Path(p) => Some(p.clone()),
            SuiteSource::Builtin(_) => None,
        })
        .collect();
    let (mut suites, errors) = if paths.is_empty() {
        (vec![], vec![])
    } else {
        suite::load_paths(&paths, ctx)
    };
    let mut errors: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    let mut seen = HashSet::new();
    for s in &sources {
        let SuiteSource::Builtin(b) = s else {
            continue;
        };
        if !seen.insert(b.name) {
            continue;
        }
        match b.load(ctx) {
            Ok(l) => {
                if let Some(other) = suites.iter().find(|o| o.suite.suite == l.suite.suite) {
                    errors.push(format!(
                        "error: duplicate suite id `{}` in {} and {}\n  = note: suite ids name the JUnit test suites, so each must be unique",
                        l.suite.suite,
                        other.path.display(),
                        l.path.display()
                    ));
                } else {
                    suites.push(l);
                }
            }
            Err(es) => errors.extend(es.iter().map(|e| e.to_string())),
        }
    }
    (suites, errors)
}

/// Loads suites for `run` and `list`; prints every problem and returns `None`
/// when there was one (nothing is run then).
pub fn load_or_report(args: &[PathBuf], ctx: &ValidationContext) -> Option<Vec<LoadedSuite>> {
    let (suites, errors) = load(args, ctx);
    for e in &errors {
        eprintln!("{e}\n");
    }
    if !errors.is_empty() {
        eprintln!(
            "error: {} problem(s) in suite files; nothing was run",
            errors.len()
        );
        return None;
    }
    if suites.is_empty() {
        eprintln!(
            "error: no suite files (*.yaml) under {}",
            args.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return None;
    }
    Some(suites)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(s: &[SuiteSource]) -> Vec<String> {
        s.iter()
            .map(|s| match s {
                SuiteSource::Path(p) => p.display().to_string(),
                SuiteSource::Builtin(b) => b.path().display().to_string(),
            })
            .collect()
    }

    #[test]
    fn names_resolve_to_the_files_here_or_to_the_built_in_copies() {
        let checkout = Path::new(env!("CARGO_MANIFEST_DIR"));
        let elsewhere = tempfile::tempdir().unwrap();
        let args = [PathBuf::from("association")];
        assert_eq!(
            names(&resolve_in(&args, checkout).unwrap()),
            ["suites/association.yaml"]
        );
        assert_eq!(
            names(&resolve_in(&args, elsewhere.path()).unwrap()),
            ["<built-in>/association.yaml"]
        );
        let args = [PathBuf::from("suites/hdlc.yaml")];
        assert_eq!(
            names(&resolve_in(&args, elsewhere.path()).unwrap()),
            ["<built-in>/hdlc.yaml"]
        );
        assert_eq!(names(&resolve_in(&[], checkout).unwrap()), ["suites"]);
        let all = resolve_in(&[], elsewhere.path()).unwrap();
        assert_eq!(all.len(), builtin::BUILTIN_SUITES.len());
        let err = resolve_in(&[PathBuf::from("asociation")], elsewhere.path()).unwrap_err();
        assert!(err[0].contains("did you mean `association`?"), "{}", err[0]);
    }
}
