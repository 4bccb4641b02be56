//! A new user's first hour: what the tool says when it is pointed at the wrong thing or
//! given a broken option file must be short, readable and name what to fix.

mod common;

use common::ualhunt;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_directory_of_unrelated_files_is_summed_up_after_a_few_warnings() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..40 {
        std::fs::write(
            dir.path().join(format!("note{i:02}.txt")),
            format!("hello {i}\n"),
        )
        .unwrap();
    }
    let out = ualhunt(&["hunt", "--format", "json", dir.path().to_str().unwrap()]);
    let err = stderr(&out);
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("ualhunt: warning:"))
        .collect();
    assert_eq!(warnings.len(), 11, "{err}");
    assert!(
        warnings[10].contains("30 more like this: not recognised")
            && warnings[10].contains("all 40"),
        "{err}"
    );
    // Nothing is lost: the JSON report has every one.
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["scan"]["warnings"].as_array().unwrap().len(), 40);
}

#[test]
fn warnings_of_different_kinds_are_counted_apart() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..12 {
        std::fs::write(dir.path().join(format!("t{i:02}.txt")), b"plain text\n").unwrap();
    }
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    let empty = dir.path().join("empty");
    let out = ualhunt(&[
        "hunt",
        dir.path().to_str().unwrap(),
        empty.to_str().unwrap(),
    ]);
    let err = stderr(&out);
    assert!(err.contains("directory holds no files to read"), "{err}");
    assert!(err.contains("2 more like this: not recognised"), "{err}");
}

#[test]
fn a_broken_option_file_prints_its_error_as_lines_and_names_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "x = [\n").unwrap();
    for flag in ["--allow", "--rules"] {
        let out = ualhunt(&["hunt", flag, bad.to_str().unwrap(), "testdata/"]);
        assert_eq!(out.status.code(), Some(2));
        let err = stderr(&out);
        assert!(err.starts_with(&format!("ualhunt: {flag}: ")), "{err}");
        assert!(!err.contains("\\u{a}"), "newlines escaped: {err}");
        assert!(err.lines().count() >= 3, "one line: {err}");
        assert!(err.lines().any(|l| l.contains('^')), "{err}");
    }
}

#[test]
fn a_missing_rule_path_names_the_option() {
    for command in ["hunt", "rules"] {
        let mut args = vec![command, "--rules", "/nonexistent/rules"];
        if command == "hunt" {
            args.push("testdata/");
        }
        let out = ualhunt(&args);
        assert_eq!(out.status.code(), Some(2));
        let err = stderr(&out);
        assert!(
            err.starts_with("ualhunt: --rules: /nonexistent/rules: "),
            "{err}"
        );
    }
}

#[test]
fn control_characters_in_a_multi_line_error_stay_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "x = \"\u{1b}[31m\n").unwrap();
    let out = ualhunt(&["hunt", "--allow", bad.to_str().unwrap(), "testdata/"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(!err.contains('\u{1b}'), "{err}");
}
