//! The evidence a responder reads: each rule's targets on their own, rule matches
//! located by `path:line`, ECS messages that say what happened, one spelling of action
//! names, and a record the inputs repeat counted once by the context pass too.
//!
//! The fixtures are written here: a bypass of alex's mailbox and two role assignments
//! to alex by the same admin (with a rule file for the role assignments beside the
//! built-in one), and two exports that overlap.

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value as Json;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(args: &[&str]) -> Output {
    let mut cmd = Command::cargo_bin("ualhunt").unwrap();
    cmd.current_dir(root()).env("COLUMNS", "400");
    cmd.args(args).output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn json_of(out: &Output) -> Json {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            stdout(out),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

const BYPASS_RULE: &str = "crates/engine/rules/o365_mailbox_audit_bypass.toml";
const ROLE_RULE_ID: &str = "22222222-0000-4000-8000-000000000022";
const ROLE_RULE: &str = r#"[metadata]
creation_date = "2024/01/01"

[rule]
author = ["ualhunt tests"]
description = "A management role assigned in Exchange Online."
name = "Exchange Management Role Assigned"
risk_score = 21
rule_id = "22222222-0000-4000-8000-000000000022"
severity = "low"
type = "query"
language = "kuery"
index = ["logs-o365*"]
query = '''
event.dataset:o365.audit and event.provider:Exchange and event.action:"New-ManagementRoleAssignment" and event.outcome:success
'''
"#;
const USER_RULE: &str = r#"[rule]
description = "An Entra ID user updated."
name = "Entra ID User Updated"
risk_score = 21
rule_id = "33333333-0000-4000-8000-000000000033"
severity = "low"
type = "query"
language = "kuery"
query = '''
event.dataset:o365.audit and event.action:"modified-user-account"
'''
"#;

fn bypass(id: &str, time: &str, actor: &str, target: &str) -> String {
    format!(
        r#"{{"CreationTime":"{time}","Id":"{id}","Operation":"Set-MailboxAuditBypassAssociation","OrganizationId":"o","RecordType":1,"ResultStatus":"True","UserType":2,"Version":1,"Workload":"Exchange","ClientIP":"203.0.113.5","ObjectId":"{target}","UserId":"{actor}","Parameters":[{{"Name":"Identity","Value":"{target}"}},{{"Name":"AuditBypassEnabled","Value":"True"}}]}}"#
    )
}

fn role(id: &str, time: &str, actor: &str, user: &str, role: &str) -> String {
    format!(
        r#"{{"CreationTime":"{time}","Id":"{id}","Operation":"New-ManagementRoleAssignment","OrganizationId":"o","RecordType":1,"ResultStatus":"True","UserType":2,"Version":1,"Workload":"Exchange","ClientIP":"203.0.113.5","ObjectId":"{role}-{user}","UserId":"{actor}","Parameters":[{{"Name":"Role","Value":"{role}"}},{{"Name":"User","Value":"{user}"}}]}}"#
    )
}

fn mailbox(id: &str, time: &str, user: &str) -> String {
    format!(
        r#"{{"CreationTime":"{time}","Id":"{id}","Operation":"MailItemsAccessed","OrganizationId":"o","RecordType":50,"ResultStatus":"Succeeded","UserType":0,"Version":1,"Workload":"Exchange","ClientIP":"198.51.100.9","UserId":"{user}"}}"#
    )
}

fn update_user(id: &str, time: &str, actor: &str, user: &str) -> String {
    format!(
        r#"{{"CreationTime":"{time}","Id":"{id}","Operation":"Update user.","OrganizationId":"o","RecordType":8,"ResultStatus":"Success","UserType":0,"Version":1,"Workload":"AzureActiveDirectory","ClientIP":"203.0.113.5","ObjectId":"{user}","UserId":"{actor}"}}"#
    )
}

const ADM: &str = "adm@contoso.com";
const ALEX: &str = "alex@contoso.com";

/// The archive of the role case and the rule files: (dir, archive, role rule, user rule).
fn role_case() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let lines = [
        bypass(
            "aaaaaaaa-0000-4000-8000-000000000001",
            "2024-03-05T10:00:00",
            ADM,
            ALEX,
        ),
        role(
            "aaaaaaaa-0000-4000-8000-000000000002",
            "2024-03-05T10:05:00",
            ADM,
            ALEX,
            "ApplicationImpersonation",
        ),
        role(
            "aaaaaaaa-0000-4000-8000-000000000003",
            "2024-03-05T10:06:00",
            ADM,
            ALEX,
            "Mailbox Import Export",
        ),
        update_user(
            "aaaaaaaa-0000-4000-8000-000000000004",
            "2024-03-05T10:07:00",
            ADM,
            ALEX,
        ),
    ];
    let archive = dir.path().join("audit.jsonl");
    std::fs::write(&archive, lines.join("\n") + "\n").unwrap();
    let role_rule = dir.path().join("role.toml");
    std::fs::write(&role_rule, ROLE_RULE).unwrap();
    let user_rule = dir.path().join("user.toml");
    std::fs::write(&user_rule, USER_RULE).unwrap();
    (dir, archive, role_rule, user_rule)
}

fn hunt_role_case(format: &str) -> (Output, String) {
    let (_dir, archive, role_rule, user_rule) = role_case();
    let out = run(&[
        "hunt",
        "-q",
        "--format",
        format,
        "--rules",
        BYPASS_RULE,
        "--rules",
        role_rule.to_str().unwrap(),
        "--rules",
        user_rule.to_str().unwrap(),
        archive.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out, archive.display().to_string())
}

// Regression (issue 22): the actor's targets merged the bypass of alex with two role
// assignments to alex into one "alex (on, 3)".
#[test]
fn each_rule_has_its_own_targets_and_only_the_bypass_has_a_state() {
    let (out, _) = hunt_role_case("json");
    let doc = json_of(&out);
    let adm = doc["actors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["actor"] == ADM)
        .expect("the admin's findings");
    let targets = adm["targets"].as_array().unwrap();
    let bypass_id = "675239ea-c1bc-4467-a6d3-b9e2cc7f676d";
    let of =
        |rule: &str| -> Vec<&Json> { targets.iter().filter(|t| t["rule_id"] == rule).collect() };
    let bypassed = of(bypass_id);
    assert_eq!(bypassed.len(), 1, "{targets:?}");
    assert_eq!(bypassed[0]["identity"], ALEX);
    assert_eq!(bypassed[0]["events"], 1);
    assert_eq!(bypassed[0]["bypass_enabled"], true);
    let assigned = of(ROLE_RULE_ID);
    assert_eq!(assigned.len(), 1, "{targets:?}");
    // The role assignee (`-User`), not the assignment's object name.
    assert_eq!(assigned[0]["identity"], ALEX);
    assert_eq!(assigned[0]["events"], 2);
    assert!(
        assigned[0].get("bypass_enabled").is_none(),
        "a role assignment has no bypass state: {:?}",
        assigned[0]
    );

    let (out, _) = hunt_role_case("table");
    let table = stdout(&out);
    assert!(!table.contains("(on, 3)"), "{table}");
    assert!(!table.contains("(?,"), "{table}");
    assert!(
        table.contains(&format!("Exchange Management Role Assigned: {ALEX} (2)")),
        "which rule hit which target: {table}"
    );
    assert!(table.contains(&format!("{ALEX} (on, 1)")), "{table}");
}

// Regression (issue 22): the table named failed attempts by path:line but not the rule
// matches (the bypass periods' changes, the other rules' matches).
#[test]
fn rule_matches_in_the_table_carry_path_and_line() {
    let (out, archive) = hunt_role_case("table");
    let table = stdout(&out);
    let period = table
        .lines()
        .find(|l| l.contains("-> OPEN"))
        .unwrap_or_else(|| panic!("a bypass period: {table}"));
    assert!(
        period.contains(&format!("set by {ADM} ({archive}:1)")),
        "{period}"
    );
    let related: Vec<&str> = table.lines().filter(|l| l.contains("(changer)")).collect();
    assert_eq!(related.len(), 3, "{table}");
    for (line, n) in related.iter().zip([2, 3, 4]) {
        assert!(line.ends_with(&format!("  {archive}:{n}")), "{line}");
    }
}

// Regression (issue 22): an ECS document of a published rule read "Rule: Rule matched:
// actor -> target", and the actions listed mixed the audit log's `Operation` with the
// pipeline's renamed `event.action` (`modified-user-account`).
#[test]
fn ecs_messages_say_who_did_what_to_whom_and_actions_are_spelled_raw() {
    let (out, _) = hunt_role_case("ecs");
    let docs: Vec<Json> = stdout(&out)
        .lines()
        .filter(|l| !l.starts_with("{\"create\""))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(docs.len(), 4);
    for d in &docs {
        let name = d["rule"]["name"].as_str().unwrap();
        let message = d["message"].as_str().unwrap();
        assert_eq!(message.matches(name).count(), 1, "{message}");
        assert!(!message.contains(" matched: "), "{message}");
    }
    let role: Vec<&Json> = docs
        .iter()
        .filter(|d| d["rule"]["id"] == ROLE_RULE_ID)
        .collect();
    assert_eq!(
        role[0]["message"],
        format!(
            "Exchange Management Role Assigned: New-ManagementRoleAssignment by {ADM} on {ALEX}"
        )
    );
    assert_eq!(role[0]["event"]["action"], "New-ManagementRoleAssignment");
    let user = docs
        .iter()
        .find(|d| d["rule"]["name"] == "Entra ID User Updated")
        .unwrap();
    assert_eq!(user["event"]["action"], "Update user.");
    assert_eq!(
        user["message"],
        format!("Entra ID User Updated: Update user. by {ADM} on {ALEX}")
    );

    let (out, _) = hunt_role_case("json");
    let doc = json_of(&out);
    let ops: Vec<&str> = doc["investigations"][0]["actor_context"][0]["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["operation"].as_str().unwrap())
        .collect();
    assert!(ops.contains(&"Update user."), "{ops:?}");
    assert!(!ops.contains(&"modified-user-account"), "{ops:?}");
}

/// Two exports that overlap: the enable and one mailbox record of the bypassed account
/// are in both.
fn overlapping() -> (tempfile::TempDir, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let enable = bypass(
        "bbbbbbbb-0000-4000-8000-000000000001",
        "2024-03-05T10:00:00",
        ADM,
        ALEX,
    );
    let read = mailbox(
        "bbbbbbbb-0000-4000-8000-000000000002",
        "2024-03-05T11:00:00",
        ALEX,
    );
    let later = mailbox(
        "bbbbbbbb-0000-4000-8000-000000000003",
        "2024-03-05T12:00:00",
        ALEX,
    );
    // A record without an id is never taken for a copy.
    let no_id = mailbox("", "2024-03-05T13:00:00", ALEX).replace(r#""Id":"","#, "");
    let a = dir.path().join("a.jsonl");
    let b = dir.path().join("b.jsonl");
    std::fs::write(
        &a,
        [enable.clone(), read.clone(), no_id.clone()].join("\n") + "\n",
    )
    .unwrap();
    std::fs::write(&b, [read, enable, later, no_id].join("\n") + "\n").unwrap();
    let paths = [a, b].map(|p| p.display().to_string()).to_vec();
    (dir, paths)
}

// Regression (issue 22): the context pass counted a record the exports repeat twice,
// "x2" beside one event and one duplicate dropped.
#[test]
fn the_context_pass_counts_a_repeated_record_once() {
    let (_dir, paths) = overlapping();
    for mode in [
        &[][..],
        &["--threads", "1"],
        &["--threads", "2", "--chunk-size", "64"],
        &["--no-prefilter"],
    ] {
        let mut args = vec!["hunt", "-q", "--format", "json"];
        args.extend(mode);
        args.extend(paths.iter().map(String::as_str));
        let doc = json_of(&run(&args));
        assert_eq!(doc["scan"]["duplicates"], 1, "{mode:?}");
        let inv = &doc["investigations"][0];
        let spot = &inv["accounts"][0]["blind_spot"];
        assert_eq!(spot["mailbox_audit_during"], 4, "{mode:?}: {spot}");
        let ops = &inv["actor_context"][0]["operations"];
        assert_eq!(ops.as_array().unwrap().len(), 1, "{mode:?}: {ops}");
        assert_eq!(ops[0]["operation"], "Set-MailboxAuditBypassAssociation");
        assert_eq!(ops[0]["count"], 1, "{mode:?}: {ops}");
    }
    let mut args = vec!["hunt", "-q"];
    args.extend(paths.iter().map(String::as_str));
    let table = stdout(&run(&args));
    assert!(
        table.contains("1 records (Set-MailboxAuditBypassAssociation x1)"),
        "{table}"
    );
    assert!(table.contains("1 duplicates dropped"), "{table}");

    // --keep-duplicates keeps every copy, in the context pass too.
    let mut args = vec!["hunt", "-q", "--format", "json", "--keep-duplicates"];
    args.extend(paths.iter().map(String::as_str));
    let doc = json_of(&run(&args));
    let inv = &doc["investigations"][0];
    assert_eq!(inv["accounts"][0]["blind_spot"]["mailbox_audit_during"], 5);
    assert_eq!(inv["actor_context"][0]["operations"][0]["count"], 2);
}

/// The JSON report's investigation points each related match at its place among the
/// actors' evidence (`[actor, index]`): the match of the rule it names, on the line the
/// table gives it (the positions are looked up for the related matches alone).
#[test]
fn related_matches_point_at_their_evidence() {
    let (out, archive) = hunt_role_case("json");
    let doc = json_of(&out);
    let related: Vec<&Json> = doc["investigations"]
        .as_array()
        .expect("investigations")
        .iter()
        .flat_map(|inv| inv["related"].as_array().expect("related"))
        .collect();
    assert_eq!(related.len(), 3, "{related:?}");
    let mut lines = Vec::new();
    for r in related {
        let at = r["evidence"].as_array().unwrap_or_else(|| panic!("{r}"));
        let (a, i) = (at[0].as_u64().unwrap(), at[1].as_u64().unwrap());
        let e = &doc["actors"][a as usize]["evidence"][i as usize];
        let rule = doc["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|rule| rule["id"] == e["rule_id"])
            .unwrap_or_else(|| panic!("the rule of {e}"));
        assert_eq!(rule["name"], r["rule_name"], "{r} -> {e}");
        assert_eq!(e["path"], archive.as_str(), "{e}");
        lines.push(e["line"].as_u64().unwrap());
    }
    lines.sort_unstable();
    assert_eq!(lines, [2, 3, 4]);
}
