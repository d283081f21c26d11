//! Every case of the shipped suites as a test against the built-in simulator
//! (libtest-mimic: `cargo test --test suites -- FILTER` selects cases).
//! Each case runs against a fresh, conformant simulator and must pass.

use std::path::PathBuf;
use std::sync::Arc;

use idis_harness::runner::event::Verdict;
use idis_harness::runner::{run_on_simulator, simulator_test_profile};
use idis_harness::sim::Quirks;
use idis_harness::suite::{self, ValidationContext};
use libtest_mimic::{Arguments, Failed, Trial};

fn main() {
    let args = Arguments::from_args();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("suites");
    let (suites, errors) = suite::load_paths(&[root], &ValidationContext::default());
    let mut trials = Vec::new();
    if !errors.is_empty() {
        let text = errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n\n");
        trials.push(Trial::test("suites load without errors", move || {
            Err(Failed::from(text))
        }));
    }
    let suites = Arc::new(suites);
    for (si, s) in suites.iter().enumerate() {
        for (ci, c) in s.suite.cases.iter().enumerate() {
            let suites = suites.clone();
            let name = format!("{}::{}", s.suite.suite, c.id);
            trials.push(Trial::test(name, move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| Failed::from(e.to_string()))?;
                let results = rt.block_on(run_on_simulator(
                    suites,
                    Some(vec![(si, ci)]),
                    Quirks::none(),
                    simulator_test_profile(),
                ));
                match results.into_iter().next() {
                    Some((_, _, Verdict::Passed)) => Ok(()),
                    Some((_, _, Verdict::Failed(d) | Verdict::Error(d))) => {
                        Err(Failed::from(d.detail))
                    }
                    Some((_, _, Verdict::Skipped(r))) => Err(Failed::from(format!(
                        "skipped against the default simulator: {r}"
                    ))),
                    None => Err(Failed::from("the case did not run")),
                }
            }));
        }
    }
    libtest_mimic::run(&args, trials).exit();
}
