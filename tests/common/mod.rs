//! Helpers shared by the integration tests (each test crate uses some of them).
#![allow(dead_code)]

/// The same records as a CSV export (classic layout), every cell RFC 4180-quoted.
pub fn as_csv(records: &[serde_json::Value]) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    w.write_record(["CreationDate", "UserIds", "Operations", "AuditData"])
        .unwrap();
    for r in records {
        let cell = |k: &str| r[k].as_str().unwrap_or_default().to_string();
        w.write_record([
            cell("CreationTime"),
            cell("UserId"),
            cell("Operation"),
            r.to_string(),
        ])
        .unwrap();
    }
    w.into_inner().unwrap()
}

/// The project's root (the tests' working directory).
pub fn root() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `ualhunt` with `args` in the project's root.
pub fn ualhunt(args: &[&str]) -> std::process::Output {
    use assert_cmd::prelude::*;
    let mut cmd = std::process::Command::cargo_bin("ualhunt").unwrap();
    cmd.current_dir(root());
    cmd.args(args).output().unwrap()
}

/// Runs the first stage of a sharded hunt, `count` shards, each `hunt -q --shard
/// k/count --partial DIR/partK ARGS…`, each asserted to succeed (exit 0 or 1); returns
/// the partials' paths in shard order.
pub fn shard_partials(dir: &std::path::Path, count: u32, args: &[&str]) -> Vec<String> {
    (0..count)
        .map(|k| {
            let part = dir.join(format!("part{k}")).to_str().unwrap().to_string();
            let shard = format!("{k}/{count}");
            let mut all = vec!["hunt", "-q", "--shard", &shard, "--partial", &part];
            all.extend_from_slice(args);
            let out = ualhunt(&all);
            assert!(
                out.status.code().is_some_and(|c| c < 2),
                "shard {shard}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            part
        })
        .collect()
}

/// `ualhunt merge EXTRA… PARTIALS…`.
pub fn merge(parts: &[String], extra: &[&str]) -> std::process::Output {
    let mut args = vec!["merge"];
    args.extend_from_slice(extra);
    args.extend(parts.iter().map(String::as_str));
    ualhunt(&args)
}

/// `ualhunt hunt --format json --no-context --rules RULES MODE… ARCHIVES…`.
#[allow(dead_code)]
pub fn hunt_rules_json(
    rules: &std::path::Path,
    mode: &[&str],
    archives: &[&std::path::Path],
) -> std::process::Output {
    let mut args = vec!["hunt", "--format", "json", "--no-context", "--rules"];
    args.push(rules.to_str().unwrap());
    args.extend_from_slice(mode);
    args.extend(archives.iter().map(|a| a.to_str().unwrap()));
    ualhunt(&args)
}

/// Runs `hunt -q --format json ARGS…` once, and as `count` shards merged; asserts both
/// exit alike and the merged report is the single run's byte for byte. Returns the
/// single run's JSON report.
#[allow(dead_code)]
pub fn shards_merge_into_single_run(
    dir: &std::path::Path,
    count: u32,
    args: &[&str],
) -> serde_json::Value {
    let mut single = vec!["hunt", "-q", "--format", "json"];
    single.extend_from_slice(args);
    let single = ualhunt(&single);
    assert_eq!(
        single.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&single.stderr)
    );
    let parts = shard_partials(dir, count, args);
    let merged = merge(&parts, &["--format", "json"]);
    assert_eq!(merged.status.code(), single.status.code());
    assert_eq!(
        String::from_utf8_lossy(&merged.stdout),
        String::from_utf8_lossy(&single.stdout)
    );
    serde_json::from_slice(&single.stdout).unwrap()
}

/// The matches of each rule that fired, from a JSON report (schema 3): `by_rule[]`
/// points at them in `actors[].evidence` as `[actor, index]`.
#[allow(dead_code)]
pub fn by_rule_findings(report: &serde_json::Value) -> Vec<(&str, &serde_json::Value)> {
    let mut out = Vec::new();
    for rule in report["by_rule"].as_array().unwrap() {
        let id = rule["rule_id"].as_str().unwrap();
        for at in rule["evidence"].as_array().unwrap() {
            let actor = at[0].as_u64().unwrap() as usize;
            let index = at[1].as_u64().unwrap() as usize;
            out.push((id, &report["actors"][actor]["evidence"][index]));
        }
    }
    out
}

/// Says that a check was skipped and why, where every `cargo test` run shows it: on the
/// process's stderr, not through the harness's captured output. Under
/// `UALHUNT_TESTS_STRICT=1` (CI) a skip is a failure instead: there everything a test
/// needs is installed, so a missing part is a broken set-up, not a reason to pass.
pub fn skipped(check: &str, why: &str) {
    use std::io::Write;
    if std::env::var("UALHUNT_TESTS_STRICT").as_deref() == Ok("1") {
        panic!("{check}: {why} (UALHUNT_TESTS_STRICT=1 makes a skip a failure)");
    }
    let _ = writeln!(std::io::stderr(), "SKIPPED {check}: {why}");
}

/// A folder of `../shared/corpus/` (the reference material beside the repository), or
/// `None` after saying that `check` was skipped without it.
pub fn corpus(folder: &str, check: &str) -> Option<std::path::PathBuf> {
    let path = root().join("../shared/corpus").join(folder);
    if path.exists() {
        Some(path)
    } else {
        skipped(check, &format!("{} is absent", path.display()));
        None
    }
}

/// The rule id and record id of every finding of a report.
#[allow(dead_code)]
pub fn finding_pairs(
    report: &ualhunt_engine::Report,
) -> std::collections::BTreeSet<(String, String)> {
    report
        .actors
        .iter()
        .flat_map(|a| &a.evidence)
        .map(|e| {
            (
                report.rules[usize::from(e.finding.rule)].id.clone(),
                e.finding.record_id.as_deref().unwrap_or("").to_string(),
            )
        })
        .collect()
}
