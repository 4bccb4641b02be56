//! Reports written from one scan: `--export FORMAT=FILE` beside `--format` and `-o`
//! (every file byte for byte what a separate run with that `--format` writes), and
//! clear errors for an unknown format or a file that cannot be created.

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

const S4: &str = "tests/fixtures/investigation/s4_trial_and_error.jsonl";

/// The binary, run from the repository root with a fixed table width.
fn ualhunt() -> Command {
    let mut cmd = Command::cargo_bin("ualhunt").unwrap();
    cmd.current_dir(root()).env_remove("COLUMNS");
    cmd.args(["hunt", "--quiet"]);
    cmd
}

fn run(args: &[&str]) -> Output {
    ualhunt().args(args).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A finding run: exit status 0.
fn findings(args: &[&str]) -> Output {
    let out = run(args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    out
}

fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn read(path: &PathBuf) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn exports_are_byte_identical_to_separate_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let formats = ["table", "csv", "ndjson"];
    let mut args: Vec<String> = vec!["--format".into(), "json".into()];
    for f in formats {
        args.push("--export".into());
        args.push(format!("{f}={}", arg(&path(f))));
    }
    args.push(S4.into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let main = findings(&args);
    assert_eq!(main.stdout, findings(&["--format", "json", S4]).stdout);
    for f in formats {
        let alone = findings(&["--format", f, S4]).stdout;
        assert!(!alone.is_empty(), "{f}: empty");
        assert_eq!(
            read(&path(f)),
            alone,
            "--export {f} differs from --format {f}"
        );
    }
}

#[test]
fn an_unknown_export_format_is_a_usage_error() {
    let out = run(&["--export", "xml=findings.xml", S4]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("unknown format \"xml\""), "{err}");
    assert!(err.contains("csv"), "the formats are listed: {err}");
    for bad in ["csv", "csv=", "=a.csv", "csv=-"] {
        let out = run(&["--export", bad, S4]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr(&out));
    }
}

#[test]
fn an_export_file_that_cannot_be_created_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/such/dir/findings.csv");
    let out = run(&["--export", &format!("csv={}", arg(&missing)), S4]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains(arg(&missing)), "{err}");
    assert!(
        out.stdout.is_empty(),
        "nothing is written when a file fails"
    );
}

#[test]
fn one_file_named_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out");
    let f = arg(&file);
    let out = run(&["-o", f, "--export", &format!("csv={f}"), S4]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("named twice"), "{}", stderr(&out));
}
