//! Wall time of a full run of the shipped suites against the built-in simulator
//! (`cargo bench --bench suite_run`). Target: every shipped suite in under 2 s in
//! release mode. Uses the default device profile, as `idis-harness run` does.
//! Under `cargo test` (no `--bench`) it runs once, as a smoke check.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use idis_harness::profile::DeviceProfile;
use idis_harness::runner::event::Verdict;
use idis_harness::runner::run_on_simulator;
use idis_harness::sim::Quirks;
use idis_harness::suite::{self, ValidationContext};

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("suites");
    let t = Instant::now();
    let (suites, errors) = suite::load_paths(&[root], &ValidationContext::default());
    assert!(errors.is_empty(), "{errors:?}");
    let load = t.elapsed();
    let suites = Arc::new(suites);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let runs = if measuring { 5 } else { 1 };
    let mut times: Vec<Duration> = Vec::new();
    let mut counts = (0, 0, 0);
    for _ in 0..runs {
        let t = Instant::now();
        let v = rt.block_on(run_on_simulator(
            suites.clone(),
            None,
            Quirks::none(),
            DeviceProfile::for_simulator(),
        ));
        times.push(t.elapsed());
        counts = (
            v.iter()
                .filter(|(_, _, x)| matches!(x, Verdict::Passed))
                .count(),
            v.iter()
                .filter(|(_, _, x)| matches!(x, Verdict::Skipped(_)))
                .count(),
            v.len(),
        );
        let bad: Vec<_> = v
            .iter()
            .filter(|(_, _, x)| matches!(x, Verdict::Failed(_) | Verdict::Error(_)))
            .collect();
        assert!(bad.is_empty(), "cases did not pass: {bad:?}");
    }
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "suite_run: {} suites, {} cases ({} passed, {} skipped)",
        suites.len(),
        counts.2,
        counts.0,
        counts.1
    );
    println!("  load and validate   {:.3} s", load.as_secs_f64());
    println!(
        "  full run (median of {runs})  {:.3} s   (min {:.3} s, max {:.3} s)",
        median.as_secs_f64(),
        times[0].as_secs_f64(),
        times[times.len() - 1].as_secs_f64()
    );
    println!(
        "  target < 2 s: {}",
        if median < Duration::from_secs(2) {
            "yes"
        } else {
            "NO"
        }
    );
}
