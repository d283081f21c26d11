//! The commands of the `idis-harness` binary, one module each (`run` and
//! `simulate` are still in main.rs), and what they share: suite arguments
//! resolved to files or to the built-in suites, and stdout that ends quietly
//! when its reader goes away.

pub mod list;
pub mod out;
pub mod read;
pub mod suites;
pub mod validate;

use idis_harness::profile::KNOWN_FEATURES;
use idis_harness::runner;
use idis_harness::sim::Quirk;
use idis_harness::suite::ValidationContext;

/// Exit code of usage, configuration and suite errors.
pub const USAGE_ERROR: u8 = idis_harness::runner::event::EXIT_USAGE;

/// What the suite validator checks names against.
pub fn validation_context() -> ValidationContext {
    ValidationContext {
        known_features: KNOWN_FEATURES.iter().map(|s| s.to_string()).collect(),
        known_quirks: Quirk::ALL.iter().map(|q| q.name().to_string()).collect(),
        known_outcome_profiles: runner::outcome::variation_point_names(),
    }
}

/// The exit code of a command that printed to `out`: success, also when the
/// reader went away; 1 when writing failed otherwise.
pub fn finish(out: out::Out) -> std::process::ExitCode {
    match out.finish() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: writing to standard output: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
