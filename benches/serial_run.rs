//! Wall time of a full run of the shipped suites over a serial line
//! (`cargo bench --bench serial_run`): `idis-harness simulate --serial` on one
//! end of a socat pseudo-terminal pair, `idis-harness run -t serial://...` on
//! the other, once with plain HDLC and once behind the IEC 62056-21 mode E
//! sign-on (which the meter returns to after every DISC). Needs socat. Under
//! `cargo test` (no `--bench`) it does nothing: tests/serial_suites.rs runs the
//! same and checks the verdicts.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{PtyPair, path_str};

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_idis-harness"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// One full run; the wall time of `run`, and its exit code.
fn full_run(mode_e: bool) -> (Duration, Option<i32>) {
    let pty = PtyPair::new();
    let mut sim = bin();
    sim.args(["simulate", "--serial", path_str(&pty.peer)]);
    if mode_e {
        sim.arg("--mode-e");
    }
    let _sim = Process(sim.spawn().expect("start the simulator"));
    // The simulator opens its end at once; give it a moment to listen.
    std::thread::sleep(Duration::from_millis(500));
    let dir = tempfile::tempdir().expect("a temporary folder");
    let target = format!(
        "serial://{}{}",
        path_str(&pty.dut),
        if mode_e { "?mode-e" } else { "" }
    );
    let t = Instant::now();
    let status = bin()
        .args(["run", "-t", &target, "--no-progress", "--color", "never"])
        .arg("--junit")
        .arg(dir.path().join("junit.xml"))
        .arg("--state")
        .arg(dir.path().join("counters.yaml"))
        .status()
        .expect("run idis-harness");
    (t.elapsed(), status.code())
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("serial_run: measured under `cargo bench --bench serial_run` only");
        return;
    }
    let runs = 3;
    for (name, mode_e) in [("plain HDLC", false), ("mode E", true)] {
        let mut times = Vec::new();
        for _ in 0..runs {
            let (t, code) = full_run(mode_e);
            assert_eq!(code, Some(0), "the {name} run did not pass");
            times.push(t);
        }
        times.sort();
        println!(
            "serial_run: every shipped suite over a pty pair, {name}: median {:.2} s (min {:.2} s, max {:.2} s, {runs} runs)",
            times[runs / 2].as_secs_f64(),
            times[0].as_secs_f64(),
            times[runs - 1].as_secs_f64()
        );
    }
}
