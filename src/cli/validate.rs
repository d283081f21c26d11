//! `idis-harness validate`: checks suite files, and with `--device` the device
//! profile and that every client a case names (by SAP or role) is in it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use idis_harness::profile::DeviceProfile;
use idis_harness::suite::profile_check::{cases_skipped, validate_against_profile};

use super::list::plural;
use super::out::Out;
use super::{USAGE_ERROR, suites, validation_context};

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Suite files, folders or shipped suite names (default: suites/ when it
    /// exists here, else the suites built into the binary).
    #[arg(value_name = "SUITES")]
    pub paths: Vec<PathBuf>,
    /// Also check this device profile, and that it has every client the cases name.
    #[arg(long, short = 'd')]
    pub device: Option<PathBuf>,
}

pub fn cmd_validate(a: ValidateArgs) -> ExitCode {
    let mut out = Out::new();
    let mut problems = 0;
    let profile = match &a.device {
        Some(p) => match DeviceProfile::load(p) {
            Ok(d) => {
                out.line(format!(
                    "device profile {}: ok ({} {})",
                    p.display(),
                    d.clients.len(),
                    plural(d.clients.len(), "client", "clients")
                ));
                Some(d)
            }
            Err(e) => {
                eprintln!("error: {e}");
                problems += 1;
                None
            }
        },
        None => None,
    };
    let (suites, errors) = suites::load(&a.paths, &validation_context());
    for e in &errors {
        eprintln!("{e}\n");
    }
    problems += errors.len();
    if let Some(p) = &profile {
        let unmapped = validate_against_profile(&suites, p);
        for e in &unmapped {
            eprintln!("{e}\n");
        }
        problems += unmapped.len();
        let skipped = cases_skipped(&suites, p);
        if !skipped.is_empty() {
            out.line(format!(
                "{} {} will be skipped with this device profile:",
                skipped.len(),
                plural(skipped.len(), "case", "cases")
            ));
            for line in &skipped {
                out.line(format!("  {line}"));
            }
        }
    }
    let cases: usize = suites.iter().map(|s| s.suite.cases.len()).sum();
    if problems == 0 {
        out.line(format!(
            "{} {}, {cases} {}: ok",
            suites.len(),
            plural(suites.len(), "suite", "suites"),
            plural(cases, "case", "cases")
        ));
    } else {
        eprintln!(
            "{problems} {} found",
            plural(problems, "problem", "problems")
        );
    }
    let printed = super::finish(out);
    if problems > 0 {
        ExitCode::from(USAGE_ERROR)
    } else {
        printed
    }
}
