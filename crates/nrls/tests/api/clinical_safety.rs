//! The clinical safety case (docs/clinical-safety.md) names, for each
//! hazard, the tests that prove its controls. This keeps those names true: a
//! renamed or deleted test fails here until the hazard log is updated.

use std::path::{Path, PathBuf};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// Every `` `path.rs::test_name` `` reference in `text`.
fn references(text: &str) -> Vec<(String, String)> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|quoted| {
            let (path, name) = quoted.split_once("::")?;
            let plain = name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            (path.ends_with(".rs") && plain && !name.is_empty())
                .then(|| (path.to_owned(), name.to_owned()))
        })
        .collect()
}

/// The references whose file lacks a function of that name.
fn missing(references: &[(String, String)]) -> Vec<String> {
    references
        .iter()
        .filter(|(path, name)| {
            let source = std::fs::read_to_string(repo(path)).unwrap_or_default();
            !source.contains(&format!("fn {name}("))
        })
        .map(|(path, name)| format!("{path}::{name}"))
        .collect()
}

#[test]
fn every_control_names_a_test_that_exists() {
    let log = std::fs::read_to_string(repo("docs/clinical-safety.md")).unwrap();
    let hazards: Vec<&str> = log.split("\n### H").skip(1).collect();
    assert!(hazards.len() >= 10, "the log covers at least ten hazards");
    for hazard in &hazards {
        let title = hazard.lines().next().unwrap_or_default();
        let testing = hazard
            .split("**Controls in testing**")
            .nth(1)
            .unwrap_or_default();
        let named = references(testing);
        assert!(!named.is_empty(), "hazard H{title} names no test");
        let gone = missing(&named);
        assert!(
            gone.is_empty(),
            "hazard H{title} names tests that do not exist: {gone:?}"
        );
    }
}

#[test]
fn a_reference_to_a_missing_test_is_caught() {
    let named = references(
        "`crates/nrls/tests/api/clinical_safety.rs::every_control_names_a_test_that_exists`, \
         `crates/nrls/tests/api/clinical_safety.rs::no_such_test`, `not a reference`",
    );
    assert_eq!(named.len(), 2);
    assert_eq!(
        missing(&named),
        ["crates/nrls/tests/api/clinical_safety.rs::no_such_test"]
    );
}
