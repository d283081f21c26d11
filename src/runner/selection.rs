//! Which cases a run takes: `--id`, `--tag` and `--skip-tag`.
//!
//! An `--id` value is exact: `APPL_OPEN_1` or `association::APPL_OPEN_1`
//! selects that one case and not `APPL_OPEN_12`. A value holding `*`, `?` or
//! `[` is a glob pattern (`APPL_OPEN_*`, `association::*`, `*FraCount*`),
//! matched against both forms with the `glob` crate's rules. A value that
//! names no case is reported with its near misses (see [`Selection::unmatched_ids`]).

use std::fmt;

use crate::suite::LoadedSuite;
use crate::suite::model::Case;

/// Which cases to run.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Case ids (`ID` or `SUITE::ID`) or glob patterns; empty = all.
    pub ids: Vec<String>,
    /// Run only cases carrying one of these tags (empty = no restriction).
    pub tags: Vec<String>,
    /// Do not run cases carrying one of these tags.
    pub skip_tags: Vec<String>,
}

/// Whether an `--id` value is a glob pattern rather than an exact id.
pub fn is_pattern(id: &str) -> bool {
    id.contains(['*', '?', '['])
}

/// Whether the `--id` value `given` names the case `case` of suite `suite`.
/// A malformed pattern (an unclosed `[`) matches nothing; [`Selection::check`]
/// reports it.
pub fn id_matches(given: &str, suite: &str, case: &str) -> bool {
    let full = format!("{suite}::{case}");
    if is_pattern(given) {
        match glob::Pattern::new(given) {
            Ok(p) => p.matches(case) || p.matches(&full),
            Err(_) => false,
        }
    } else {
        given == case || given == full
    }
}

impl Selection {
    pub fn selects(&self, suite: &LoadedSuite, case: &Case) -> bool {
        let tags: Vec<&String> = suite.suite.tags.iter().chain(case.tags.iter()).collect();
        let id_ok = self.ids.is_empty()
            || self
                .ids
                .iter()
                .any(|s| id_matches(s, &suite.suite.suite, &case.id));
        let tag_ok = self.tags.is_empty() || self.tags.iter().any(|t| tags.contains(&t));
        let skip = self.skip_tags.iter().any(|t| tags.contains(&t));
        id_ok && tag_ok && !skip
    }

    /// Whether the run monitor `id` (suite `monitors`, tag `monitor`) is
    /// reported: with no `--id`, or an `--id` naming it; and the tags allow it.
    pub fn selects_monitor(&self, id: &str) -> bool {
        let suite = crate::runner::monitor::SUITE;
        let tag = "monitor".to_string();
        let id_ok = self.ids.is_empty() || self.ids.iter().any(|s| id_matches(s, suite, id));
        let tag_ok = self.tags.is_empty() || self.tags.contains(&tag);
        id_ok && tag_ok && !self.skip_tags.contains(&tag)
    }

    /// The `--id` values that name no case of `suites` (tags aside), each
    /// with its near misses; and malformed patterns.
    pub fn unmatched_ids(&self, suites: &[LoadedSuite]) -> Vec<UnmatchedId> {
        let all: Vec<(&str, &str)> = suites
            .iter()
            .flat_map(|s| {
                s.suite
                    .cases
                    .iter()
                    .map(move |c| (s.suite.suite.as_str(), c.id.as_str()))
            })
            .chain(
                crate::runner::monitor::MONITORS
                    .iter()
                    .map(|m| (crate::runner::monitor::SUITE, m.id)),
            )
            .collect();
        let mut out = Vec::new();
        for given in &self.ids {
            if is_pattern(given)
                && let Err(e) = glob::Pattern::new(given)
            {
                out.push(UnmatchedId {
                    given: given.clone(),
                    problem: Problem::BadPattern(e.msg.to_string()),
                });
                continue;
            }
            if all.iter().any(|(s, c)| id_matches(given, s, c)) {
                continue;
            }
            out.push(UnmatchedId {
                given: given.clone(),
                problem: near_misses(given, &all),
            });
        }
        out
    }
}

/// An `--id` value that selects nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnmatchedId {
    pub given: String,
    pub problem: Problem,
}

/// Why an `--id` value selects nothing, and what was probably meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A pattern the glob rules reject.
    BadPattern(String),
    /// Ids that contain the text (the value was probably meant as a prefix or part).
    PartOf(Vec<String>),
    /// Ids spelt nearly the same.
    Near(Vec<String>),
}

/// Most near misses named.
const MAX_NEAR: usize = 5;

fn near_misses(given: &str, all: &[(&str, &str)]) -> Problem {
    let literal: String = given
        .chars()
        .filter(|c| !matches!(c, '*' | '?' | '[' | ']'))
        .collect();
    let bare = literal.rsplit("::").next().unwrap_or(&literal).to_owned();
    let lower = bare.to_lowercase();
    if !is_pattern(given) && !lower.is_empty() {
        let mut part: Vec<String> = all
            .iter()
            .filter(|(_, c)| c.to_lowercase().contains(&lower) && c.len() > bare.len())
            .map(|(_, c)| (*c).to_owned())
            .collect();
        part.dedup();
        if !part.is_empty() {
            return Problem::PartOf(part);
        }
    }
    let mut scored: Vec<(usize, &str)> = all
        .iter()
        .map(|(_, c)| (strsim::damerau_levenshtein(&lower, &c.to_lowercase()), *c))
        .filter(|(d, _)| *d <= (bare.chars().count() / 3).max(2))
        .collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    Problem::Near(
        scored
            .into_iter()
            .take(MAX_NEAR)
            .map(|(_, c)| c.to_owned())
            .collect(),
    )
}

fn quoted(ids: &[String]) -> String {
    let shown: Vec<String> = ids
        .iter()
        .take(MAX_NEAR)
        .map(|i| format!("`{i}`"))
        .collect();
    let more = ids.len().saturating_sub(MAX_NEAR);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

impl fmt::Display for UnmatchedId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let given = &self.given;
        match &self.problem {
            Problem::BadPattern(why) => write!(f, "--id `{given}`: not a valid pattern ({why})"),
            Problem::PartOf(ids) if ids.len() == 1 => write!(
                f,
                "--id `{given}` names no case (ids are matched exactly); did you mean {}?",
                quoted(ids)
            ),
            Problem::PartOf(ids) => write!(
                f,
                "--id `{given}` names no case (ids are matched exactly); `--id '*{given}*'` selects the {} cases containing it: {}",
                ids.len(),
                quoted(ids)
            ),
            Problem::Near(ids) if ids.is_empty() => write!(
                f,
                "--id `{given}` names no case (`idis-harness list` shows the ids)"
            ),
            Problem::Near(ids) => {
                write!(
                    f,
                    "--id `{given}` names no case; did you mean {}?",
                    quoted(ids)
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_ids_match_alone_or_with_their_suite() {
        assert!(id_matches("APPL_OPEN_1", "association", "APPL_OPEN_1"));
        assert!(!id_matches("APPL_OPEN_1", "association", "APPL_OPEN_12"));
        assert!(id_matches(
            "association::APPL_OPEN_1",
            "association",
            "APPL_OPEN_1"
        ));
        assert!(!id_matches(
            "association::APPL_OPEN_1",
            "hdlc",
            "APPL_OPEN_1"
        ));
        assert!(!id_matches("OPEN_1", "association", "APPL_OPEN_1"));
    }

    #[test]
    fn patterns_match_several() {
        for id in ["APPL_OPEN_1", "APPL_OPEN_12", "APPL_OPEN_14"] {
            assert!(id_matches("APPL_OPEN_*", "association", id), "{id}");
            assert!(id_matches("association::*", "association", id), "{id}");
        }
        assert!(id_matches("APPL_OPEN_1?", "association", "APPL_OPEN_12"));
        assert!(!id_matches("APPL_OPEN_1?", "association", "APPL_OPEN_1"));
        assert!(!id_matches("APPL_OPEN_*", "association", "APPL_REL_P1"));
        assert!(!id_matches("hdlc::*", "association", "APPL_OPEN_1"));
        assert!(!id_matches("[", "association", "["));
    }

    #[test]
    fn near_misses_name_what_was_meant() {
        let all = [
            ("association", "APPL_OPEN_1"),
            ("association", "APPL_OPEN_12"),
            ("association", "APPL_REL_P1"),
        ];
        assert_eq!(
            near_misses("APPL_OPN_1", &all),
            Problem::Near(vec!["APPL_OPEN_1".into(), "APPL_OPEN_12".into()])
        );
        assert_eq!(
            near_misses("appl_open", &all),
            Problem::PartOf(vec!["APPL_OPEN_1".into(), "APPL_OPEN_12".into()])
        );
        assert_eq!(near_misses("HDLC_FRAME_P1", &all), Problem::Near(vec![]));
        let u = UnmatchedId {
            given: "REL_P".into(),
            problem: near_misses("REL_P", &all),
        };
        assert_eq!(
            u.to_string(),
            "--id `REL_P` names no case (ids are matched exactly); did you mean `APPL_REL_P1`?"
        );
        let u = UnmatchedId {
            given: "APPL_OPN_1".into(),
            problem: near_misses("APPL_OPN_1", &all),
        };
        assert_eq!(
            u.to_string(),
            "--id `APPL_OPN_1` names no case; did you mean `APPL_OPEN_1`, `APPL_OPEN_12`?"
        );
    }
}
