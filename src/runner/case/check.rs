//! The `check` step: compares two resolved values (numbers, text, or a
//! regular expression).

use super::{CaseRun, StepError, StepResult, harness};
use crate::suite::model as m;
use crate::suite::resolve;

impl CaseRun<'_> {
    pub(super) fn check(&self, c: &m::CheckStep) -> StepResult {
        let l = resolve(&c.left, &self.vars).map_err(StepError::Harness)?;
        let r = resolve(&c.right, &self.vars).map_err(StepError::Harness)?;
        let ord = match (l.trim().parse::<i128>(), r.trim().parse::<i128>()) {
            (Ok(a), Ok(b)) => a.cmp(&b),
            _ => l.cmp(&r),
        };
        use std::cmp::Ordering::*;
        let ok = match c.op.as_str() {
            "eq" => ord == Equal,
            "ne" => ord != Equal,
            "gt" => ord == Greater,
            "ge" => ord != Less,
            "lt" => ord == Less,
            "le" => ord != Greater,
            // `right` is a regular expression the whole of `left` must match.
            "matches" => match regex::Regex::new(&format!("^(?:{r})$")) {
                Ok(re) => re.is_match(&l),
                Err(e) => return harness(format!("check: `{r}` is not a regular expression: {e}")),
            },
            other => return harness(format!("unknown check operator `{other}`")),
        };
        if ok {
            Ok(())
        } else {
            let why = c
                .message
                .clone()
                .unwrap_or_else(|| format!("`{}` {} `{}` does not hold", c.left, c.op, c.right));
            Err(StepError::Fail {
                message: format!("{why} ({l} {} {r})", c.op),
                label: format!("{l} vs {r}"),
            })
        }
    }
}
