//! The mutation proof (DESIGN.md: "a test that cannot fail is worth nothing"):
//! for every quirk of the simulator, the shipped suites run against a simulator
//! with that fault, and every case (or run monitor) that names the quirk in
//! `detects:` must FAIL. Every quirk must be named by at least one case, every
//! case must pass against the conformant simulator, and one fault fails at
//! most two cases (DESIGN.md, "one fault, one failure"; monitors included):
//! the matrix prints how many each quirk fails.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use idis_harness::runner::event::Verdict;
use idis_harness::runner::{CaseVerdicts, run_on_simulator, simulator_test_profile};
use idis_harness::sim::{Quirk, Quirks};
use idis_harness::suite::{self, ValidationContext};

/// One deviation fails at most this many cases (issue 10: "one fault fails one
/// case, or two, never a dozen").
const MAX_FAILED_PER_FAULT: usize = 2;

#[test]
fn every_quirk_fails_the_cases_that_name_it() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("suites");
    let (suites, errors) = suite::load_paths(&[root], &ValidationContext::default());
    assert!(errors.is_empty(), "suites do not load: {errors:?}");
    let suites = Arc::new(suites);

    // Which cases name which quirk.
    let mut named: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for s in suites.iter() {
        for c in &s.suite.cases {
            for d in &c.detects {
                let q: Quirk = d.parse().unwrap_or_else(|_| {
                    panic!("{}::{} names unknown quirk {d}", s.suite.suite, c.id)
                });
                named
                    .entry(q.name())
                    .or_default()
                    .push(format!("{}::{}", s.suite.suite, c.id));
            }
        }
    }
    for m in idis_harness::runner::monitor::MONITORS {
        for d in m.detects {
            let q: Quirk = d
                .parse()
                .unwrap_or_else(|_| panic!("monitor {} names unknown quirk {d}", m.id));
            named.entry(q.name()).or_default().push(format!(
                "{}::{}",
                idis_harness::runner::monitor::SUITE,
                m.id
            ));
        }
    }
    let unnamed: Vec<&str> = Quirk::ALL
        .iter()
        .map(|q| q.name())
        .filter(|n| !named.contains_key(n))
        .collect();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    // The baseline: one conformant simulator for the whole run, as in the main
    // job, so that a case leaving the meter in a state the next one trips on shows.
    let baseline = rt.block_on(run_on_simulator(
        suites.clone(),
        None,
        Quirks::none(),
        simulator_test_profile(),
    ));
    let bad: Vec<String> = baseline
        .iter()
        .filter(|(_, _, v)| !matches!(v, Verdict::Passed))
        .map(|(s, c, v)| format!("{s}::{c}: {v:?}"))
        .collect();
    assert!(
        bad.is_empty(),
        "against the conformant simulator, in one run:\n{}",
        bad.join("\n")
    );
    let results: Vec<(Quirk, CaseVerdicts)> = rt.block_on(async {
        // A few runs at a time: enough to use both cores, few enough that a
        // loaded machine does not push a simulator reply past its timeout.
        let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(4));
        let mut handles = Vec::new();
        for q in Quirk::ALL {
            let suites = suites.clone();
            let q = *q;
            let permits = permits.clone();
            handles.push(tokio::spawn(async move {
                let _permit = permits.acquire_owned().await;
                let mut quirks = Quirks::none();
                quirks.insert(q);
                (
                    q,
                    run_on_simulator(suites, None, quirks, simulator_test_profile()).await,
                )
            }));
        }
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap());
        }
        out
    });

    let mut problems = Vec::new();
    for (q, verdicts) in &results {
        let failed: Vec<String> = verdicts
            .iter()
            .filter(|(_, _, v)| matches!(v, Verdict::Failed(_)))
            .map(|(s, c, _)| format!("{s}::{c}"))
            .collect();
        println!(
            "{:<40} fails {} case(s): {}",
            q.name(),
            failed.len(),
            failed.join(", ")
        );
        if failed.len() > MAX_FAILED_PER_FAULT {
            problems.push(format!(
                "quirk `{}` fails {} cases, more than {MAX_FAILED_PER_FAULT}: {}",
                q.name(),
                failed.len(),
                failed.join(", ")
            ));
        }
        for case in named.get(q.name()).into_iter().flatten() {
            if !failed.contains(case) {
                let verdict = verdicts
                    .iter()
                    .find(|(s, c, _)| format!("{s}::{c}") == *case)
                    .map(|(_, _, v)| format!("{v:?}"))
                    .unwrap_or_else(|| "did not run".into());
                problems.push(format!(
                    "quirk `{}`: {case} names it but did not fail ({verdict})",
                    q.name()
                ));
            }
        }
    }
    for n in &unnamed {
        problems.push(format!(
            "quirk `{n}` is named by no case: add a case that detects it"
        ));
    }
    assert!(
        problems.is_empty(),
        "mutation matrix:\n{}",
        problems.join("\n")
    );
}
