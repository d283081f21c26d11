//! Loader tests: golden error texts for the files in `fixtures/invalid-suites/`
//! (adding `NAME.yaml` there is enough; `UPDATE_GOLDEN=1 cargo test --lib suite`
//! writes `NAME.expected`), and suites that must load.

use std::path::{Path, PathBuf};

use super::model::*;
use super::*;

const INVALID_DIR: &str = "fixtures/invalid-suites";

/// The context golden tests validate with: the simulator's features (as in
/// `profile::KNOWN_FEATURES`), a few quirks and outcome profiles.
fn ctx() -> ValidationContext {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect();
    ValidationContext {
        known_features: s(&[
            "wrapper",
            "udp",
            "hdlc",
            "lls",
            "hls-gmac",
            "service-specific-ciphering",
            "general-ciphering",
            "key-transfer",
            "security-activate",
            "clock",
            "counter-objects",
        ]),
        known_quirks: s(&[
            "replay-accepted",
            "counter-not-checked",
            "tag-not-checked",
            "accepts-replayed-counter",
        ]),
        known_outcome_profiles: s(&["replayed-counter", "bad-key-wrap"]),
    }
}

fn update() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1")
}

/// Compare `actual` with `NAME.expected` (or write it when updating); the mismatch text.
fn golden(name: &str, actual: &str) -> Option<String> {
    let path = Path::new(INVALID_DIR).join(format!("{name}.expected"));
    let actual = format!("{actual}\n");
    if update() {
        std::fs::write(&path, &actual).unwrap();
        return None;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    (expected != actual).then(|| {
        format!(
            "--- {} (expected)\n{expected}+++ actual\n{actual}",
            path.display()
        )
    })
}

#[test]
fn invalid_suites_give_their_expected_errors() {
    let mut names: Vec<String> = std::fs::read_dir(INVALID_DIR)
        .unwrap()
        .filter_map(|e| {
            let n = e.ok()?.file_name().into_string().ok()?;
            n.strip_suffix(".yaml").map(str::to_owned)
        })
        .collect();
    names.sort();
    assert!(names.len() >= 10, "fixtures missing: {names:?}");
    let mut failures = Vec::new();
    for name in &names {
        let path = PathBuf::from(INVALID_DIR).join(format!("{name}.yaml"));
        match load_file_all_errors(&path, &ctx()) {
            Ok(_) => failures.push(format!("{name}.yaml loaded, but it should not")),
            Err(errs) => {
                for e in &errs {
                    assert_eq!(e.file, path);
                    assert_eq!(e.to_string(), e.rendered);
                    assert!(e.line.is_some(), "{name}: no line in {e}");
                }
                let text: Vec<String> = errs.iter().map(|e| e.rendered.clone()).collect();
                failures.extend(golden(name, &text.join("\n\n")));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n(run with UPDATE_GOLDEN=1 to accept the new texts)",
        failures.join("\n")
    );
}

#[test]
fn missing_file_names_the_path_and_the_os_reason() {
    let path = PathBuf::from(INVALID_DIR).join("does-not-exist.yaml");
    let e = load_file(&path, &ctx()).unwrap_err();
    assert_eq!(e.line, None);
    assert_eq!(e.file, path);
    if let Some(diff) = golden("missing-file", &e.rendered) {
        panic!("{diff}\n(run with UPDATE_GOLDEN=1 to accept the new text)");
    }
    let (ok, errs) = load_paths(&[PathBuf::from("no/such/dir")], &ctx());
    assert!(ok.is_empty());
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0]
            .rendered
            .starts_with("error: cannot read suite path: ")
    );
}

#[test]
fn load_paths_collects_every_error_in_sorted_order() {
    let (ok, errs) = load_paths(&[PathBuf::from(INVALID_DIR)], &ctx());
    assert!(ok.is_empty());
    let files: Vec<String> = errs.iter().map(|e| diag::display_path(&e.file)).collect();
    let mut sorted = files.clone();
    sorted.sort();
    assert_eq!(files, sorted);
    assert!(files.contains(&format!("{INVALID_DIR}/yaml-bomb.yaml")));
    // semantic-errors.yaml reports many problems, not just the first.
    let n = files
        .iter()
        .filter(|f| f.ends_with("semantic-errors.yaml"))
        .count();
    assert!(n > 10, "{n}");
}

fn load(src: &str) -> LoadedSuite {
    match load_source(Path::new("t.yaml"), src.to_owned(), &ctx()) {
        Ok(s) => s,
        Err(es) => panic!(
            "{}",
            es.iter()
                .map(|e| e.rendered.clone())
                .collect::<Vec<_>>()
                .join("\n\n")
        ),
    }
}

const VALID: &str = r#"
suite: hls-replay
title: Replay rejection on an HLS-GMAC association
references: [Green Book 9.2.7.2.4]
vars:
  client: 1
  obis: 0-0:1.0.0.255
  new-key: 000102030405060708090A0B0C0D0E0F
templates:
  mgmt: &mgmt {client: 1, mechanism: hls-gmac}
  secure: &secure {security: authenticated-encrypted, ciphering: general}
cases:
  - id: replay-1
    title: A replayed get-request is rejected
    checks: Green Book 9.2.7.2.4
    requires: [hls-gmac]
    detects: [replay-accepted]
    timeout: 10s
    steps:
      - connect: {client: '${client}'}
      - associate:
          <<: [*mgmt, *secure]
          ciphering: service-specific
          conformance: [get, set, action, block-transfer-with-get-or-read]
      - get: {class: 8, obis: '${obis}', attr: 2, save: t0}
      - replay:
          expect: [{exception: invocation-counter-error}, silence, {profile: replayed-counter}]
      - read-counter: {save: after}
      - check: {left: '${after}', op: gt, right: '${t0}'}
      - send:
          protected: {apdu: C0 01 C1 00 08 00 00 01 00 00 FF 02 00, counter: last-1, tamper: tag}
          expect: {exception: deciphering-error}
      - set:
          class: 64
          obis: 0-0:43.0.0.255
          attr: 2
          value: {structure: [{enum: 0}, {octet-string: '${new-key}'}, {bit-string: '0101'}]}
          expect: {result: read-write-denied}
      - get:
          class: 1
          obis: 0-0:96.1.0.255
          attr: 2
          expect: {value: {structure: [any, {long-unsigned: 7}, {octet-string-text: IDIS}]}}
      - key-transfer:
          keys: [{id: unicast, key: '${new-key}', save: old}, {id: 2, key: generate}]
      - security-activate: {policy: authenticated-encrypted}
      - wait: 200ms
      - listen: {for: 1s, expect: disconnect}
    teardown:
      - key-transfer: {keys: [{id: unicast, key: '${old}'}]}
      - release: {}
      - disconnect: {}
  - id: reject-1
    title: A wrong key is refused
    checks: Green Book 9.2.7.4
    steps:
      - associate:
          <<: *mgmt
          wrong: {encryption-key: 00000000000000000000000000000000, initiate-counter: last}
          expect: {rejected: {result: rejected-permanent, diagnostic: authentication-failure}}
      - associate: {conformance: 007E1F, expect: {initiate-error: dlms-version-too-low}}
      - send: {hdlc: {control: snrm, hcs: bad}, expect: {frame: ua}}
      - send: {bytes: '$$00', expect: success}
"#;

#[test]
fn accepts_a_suite_with_anchors_and_merge_keys() {
    let s = load(VALID).suite;
    assert_eq!(s.vars.get("client"), Some(&VarValue::Int(1)));
    let c = &s.cases[0];
    let Step::Associate(a) = &c.steps[1].value else {
        panic!("{:?}", c.steps[1].value)
    };
    // From the two merged templates, with the local `ciphering` winning.
    assert_eq!(
        a.client,
        Some(Tpl::Lit(crate::suite::model::ClientName::Sap(1)))
    );
    assert_eq!(a.mechanism.as_deref(), Some("hls-gmac"));
    assert_eq!(a.security.as_deref(), Some("authenticated-encrypted"));
    assert_eq!(a.ciphering.as_deref(), Some("service-specific"));
    assert_eq!(c.steps[1].value_line(), 21);
    let Step::Associate(r) = &s.cases[1].steps[0].value else {
        panic!()
    };
    assert_eq!(r.mechanism.as_deref(), Some("hls-gmac"));
    assert_eq!(
        r.expect,
        Some(Expect::One(Outcome::Rejected(RejectSpec {
            result: Some("rejected-permanent".into()),
            diagnostic: Some("authentication-failure".into()),
        })))
    );
    let Step::Replay(rp) = &c.steps[3].value else {
        panic!()
    };
    assert_eq!(rp.expect.as_ref().map(|e| e.outcomes().len()), Some(3));
    let Step::Associate(a2) = &s.cases[1].steps[1].value else {
        panic!()
    };
    assert_eq!(a2.conformance, Some(Conformance::Hex("007E1F".into())));
    assert_eq!(c.teardown.len(), 3);
}

trait Line {
    fn value_line(&self) -> u64;
}

impl<T> Line for serde_saphyr::Spanned<T> {
    fn value_line(&self) -> u64 {
        self.referenced.line()
    }
}

#[test]
fn tpl_values_parse_both_forms() {
    let s = load(VALID).suite;
    let steps = &s.cases[0].steps;
    let Step::Connect(c) = &steps[0].value else {
        panic!()
    };
    assert_eq!(c.client, Some(Tpl::Var("${client}".into())));
    let Step::Get(g) = &steps[2].value else {
        panic!()
    };
    assert_eq!(g.obis, Some(Tpl::Var("${obis}".into())));
    let Step::Set(st) = &steps[7].value else {
        panic!()
    };
    assert_eq!(st.obis, Some(Tpl::Lit("0-0:43.0.0.255".into())));
    let Step::Send(b) = &s.cases[1].steps[3].value else {
        panic!()
    };
    assert_eq!(b.bytes, Some(Tpl::Var("$$00".into())));

    // Directly, with the YAML forms people write.
    let tu: Vec<Tpl<u16>> = serde_saphyr::from_str("[16, '32', '${c}', 0x10]").unwrap();
    assert_eq!(
        tu,
        vec![
            Tpl::Lit(16),
            Tpl::Lit(32),
            Tpl::Var("${c}".into()),
            Tpl::Lit(16)
        ]
    );
    let ts: Vec<Tpl<String>> = serde_saphyr::from_str("[0102, 'C0 01', 'AA${k}', 5]").unwrap();
    assert_eq!(
        ts,
        vec![
            Tpl::Lit("0102".into()),
            Tpl::Lit("C0 01".into()),
            Tpl::Var("AA${k}".into()),
            Tpl::Lit("5".into())
        ]
    );
    let e = serde_saphyr::from_str::<Tpl<u16>>("70000").unwrap_err();
    assert!(e.to_string().contains("an integer from 0 to 65535"), "{e}");
}

#[test]
fn var_values_keep_their_text() {
    let v: std::collections::BTreeMap<String, VarValue> = serde_saphyr::from_str_with_options(
        "a: 007\nb: 12\nc: true\nd: yes\ne: 1.5\nf: text\n",
        loader::yaml_options(),
    )
    .unwrap();
    let text: Vec<String> = v.values().map(|x| x.to_string()).collect();
    assert_eq!(text, ["007", "12", "true", "yes", "1.5", "text"]);
    assert_eq!(v.get("c"), Some(&VarValue::Bool(true)));
    assert_eq!(v.get("d"), Some(&VarValue::Text("yes".into())));
}

#[test]
fn vocab_lists_match_the_model() {
    // serde's own list of names, taken from an unknown-variant error.
    fn expected_of<T: for<'de> serde::Deserialize<'de> + std::fmt::Debug>(
        yaml: &str,
    ) -> Vec<String> {
        match serde_saphyr::from_str::<T>(yaml)
            .unwrap_err()
            .without_snippet()
        {
            serde_saphyr::Error::SerdeUnknownVariant { expected, .. } => {
                expected.iter().map(|s| s.to_string()).collect()
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(expected_of::<Step>("nope: 1"), vocab::STEPS);
    assert_eq!(expected_of::<Outcome>("nope"), vocab::OUTCOMES);
    assert_eq!(expected_of::<DataSpec>("nope: 1"), vocab::DATA_SPECS);
}

#[test]
fn accepts_an_empty_context_without_name_checks() {
    let src = VALID.replace("requires: [hls-gmac]", "requires: [anything]");
    let s = load_source(Path::new("t.yaml"), src, &ValidationContext::default());
    assert!(s.is_ok());
}

#[test]
fn rejects_duplicate_suite_ids_across_files() {
    let dir = std::env::temp_dir().join(format!("idis-dup-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::create_dir_all(dir.join(".hidden")).unwrap();
    let one = "suite: same\ntitle: t\ncases:\n  - id: a\n    title: t\n    checks: c\n    steps: [{wait: 1ms}]\n";
    std::fs::write(dir.join("a.yaml"), one).unwrap();
    std::fs::write(dir.join("sub/b.yml"), one).unwrap();
    std::fs::write(dir.join(".hidden/c.yaml"), "not: [valid").unwrap();
    std::fs::write(dir.join(".d.yaml"), "not: [valid").unwrap();
    std::fs::write(dir.join("notes.txt"), "not yaml").unwrap();
    let (ok, errs) = load_paths(&[dir.clone(), dir.join("a.yaml")], &ctx());
    assert_eq!(ok.len(), 1);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].message, "duplicate suite id `same`");
    assert_eq!(errs[0].file, dir.join("sub/b.yml"));
    assert_eq!(errs[0].line, Some(1));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn rejects_oversized_and_non_utf8_files() {
    let dir = std::env::temp_dir().join(format!("idis-big-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let big = dir.join("big.yaml");
    std::fs::write(&big, vec![b'#'; (loader::MAX_FILE_BYTES + 1) as usize]).unwrap();
    let e = load_file(&big, &ctx()).unwrap_err();
    assert!(e.message.contains("too large"), "{e}");
    let bad = dir.join("latin1.yaml");
    std::fs::write(&bad, b"suite: s\ntitle: caf\xe9\n").unwrap();
    let e = load_file(&bad, &ctx()).unwrap_err();
    assert_eq!((e.line, e.column), (Some(2), Some(11)));
    assert!(e.message.contains("UTF-8"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_documented_example_loads() {
    let doc = std::fs::read_to_string("src/suite/mod.rs").unwrap();
    let lines: Vec<&str> = doc
        .lines()
        .map(|l| l.strip_prefix("//!").unwrap_or(l))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect();
    let start = lines.iter().position(|l| *l == "```yaml").unwrap() + 1;
    let len = lines[start..].iter().position(|l| *l == "```").unwrap();
    let example = lines[start..start + len].join("\n");
    let s = load(&example).suite;
    assert_eq!(s.suite, "replay-rejection");
    let Step::Given(given) = &s.cases[0].steps[1].value else {
        panic!("the example's second step is a precondition")
    };
    let Step::Associate(a) = given.as_ref() else {
        panic!("the precondition is an association")
    };
    assert_eq!(a.mechanism.as_deref(), Some("hls-gmac"));
    assert_eq!(a.client, Some(Tpl::Var("${client}".into())));
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Arbitrary text, YAML or not, gives a suite or errors, never a panic, and every
        /// located error's line exists.
        #[test]
        fn loading_arbitrary_text(src in "\\PC{0,200}") {
            check(&src);
        }

        /// A valid suite with bytes replaced, removed or inserted: the errors people make.
        #[test]
        fn loading_mutated_suites(edits in proptest::collection::vec((0usize..4000, 0u8..4, any::<char>()), 1..6)) {
            let mut s: Vec<char> = VALID.chars().collect();
            for (pos, op, c) in edits {
                let i = pos % (s.len() + 1);
                match op {
                    0 if i < s.len() => { s.remove(i); }
                    1 => s.insert(i, c),
                    2 if i < s.len() => s[i] = c,
                    _ => s.insert(i, [':', '{', '[', '-', '\n', ' ', '\'', '$'][pos % 8]),
                }
            }
            check(&s.into_iter().collect::<String>());
        }

        #[test]
        fn templates_and_names(t in "[$a-z{}_ -]{0,30}") {
            let _ = vars::resolve(&t, &Default::default());
            let _ = vocab::parse_hex(&t);
            let _ = vocab::parse_counter(&t);
            let _ = vocab::parse_type_spec(&t);
            let _ = did_you_mean(&t, vocab::STEPS);
        }
    }

    fn check(src: &str) {
        if let Err(es) = load_source(Path::new("p.yaml"), src.to_owned(), &ctx()) {
            assert!(!es.is_empty());
            for e in es {
                if let Some(l) = e.line {
                    assert!(l as usize <= src.split('\n').count() + 1, "{e}");
                }
                assert!(e.rendered.starts_with("error: "));
            }
        }
    }
}

#[test]
fn locates_steps_and_expectations_for_the_runner() {
    let s = load(VALID);
    let sp = s.step_span(0, false, 3).unwrap();
    assert_eq!((sp.line, sp.column, sp.len), (26, 9, 6)); // `replay`
    let ex = s.expect_span(0, false, 3).unwrap();
    assert_eq!((ex.line, ex.column), (27, 19)); // the `[` of the list
    let td = s.step_span(0, true, 1).unwrap();
    assert_eq!((td.line, td.len), (51, 7)); // `release`
    assert_eq!(s.expect_span(0, false, 0), s.step_span(0, false, 0));
    let d = Diagnostic::new(
        "expected exception-response invocation-counter-error, got get-response data",
    )
    .at(ex, "expected here");
    assert_eq!(
        s.render(&d),
        "error: expected exception-response invocation-counter-error, got get-response data\n  --> t.yaml:27:19\n   |\n27 |           expect: [{exception: invocation-counter-error}, silence, {profile: replayed-counter}]\n   |                   ^ expected here"
    );
    assert!(s.step_span(9, false, 0).is_none());
}
