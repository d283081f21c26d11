//! The `restart` step: a power cycle of the meter (simulator restart or the
//! device profile's restart command), then the wait.

use std::time::Duration;

use super::{CaseRun, StepResult, harness, parse_duration};
use crate::suite::model as m;

impl CaseRun<'_> {
    /// A power cycle of the meter: links closed, then the simulator restarted,
    /// or the device profile's restart command run, then the wait.
    pub(super) async fn restart(&mut self, r: &m::RestartStep) -> StepResult {
        self.collect_traffic();
        self.close_all().await;
        let wait = match &r.wait {
            Some(w) => parse_duration(w)?,
            None => self
                .t
                .profile
                .restart
                .as_ref()
                .map_or(Duration::ZERO, |x| x.wait),
        };
        if let Some(sim) = &self.t.sim {
            sim.meter.restart();
            self.note("the simulated meter restarted (from its memory)");
        } else if let Some(rs) = self.t.profile.restart.clone() {
            let run = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(&rs.command)
                .kill_on_drop(true)
                .output();
            let out = match tokio::time::timeout(rs.timeout, run).await {
                Err(_) => {
                    return harness(format!(
                        "the restart command did not end within {}",
                        humantime::format_duration(rs.timeout)
                    ));
                }
                Ok(Err(e)) => return harness(format!("cannot run the restart command: {e}")),
                Ok(Ok(o)) => o,
            };
            if !out.status.success() {
                return harness(format!(
                    "the restart command failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            self.note("the device profile's restart command ran");
        } else {
            return harness(
                "the device profile gives no restart command (restart: {command: ...})",
            );
        }
        tokio::time::sleep(wait).await;
        Ok(())
    }
}
