//! Real-tenant audit records: the 39 sample files of `tests/fixtures/real_tenant/`
//! (simulated attacks in a Microsoft 365 tenant, exported as `Search-UnifiedAuditLog`
//! CSV and as JSON; see its PROVENANCE.md) run through Elastic's rules and the Sigma
//! corpus, both read from `../shared/corpus/`.
//!
//! The expectation is written per file from its records (their `Operation` and the
//! parameters the rules read), not from a report: which rules must fire on each file,
//! and that no other does.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Each file and the rules that fire on its records, Elastic's and Sigma's.
const EXPECTED: &[(&str, &[&str])] = &[
    // `Add member to role.` of Company Administrator (Global Administrator).
    (
        "t1098.001_Add a user to company administrator role.csv",
        &[
            "M365 Identity Global Administrator Role Assigned",
            "M365 Member Added to Privileged Directory Role",
        ],
    ),
    // `New-RoleGroup` holding the ApplicationImpersonation role.
    (
        "t1098.002_ApplicationImpersonation.csv",
        &["M365 Exchange Management Role Group Created"],
    ),
    // `Add-MailboxPermission` FullAccess. The CSV's is Exchange's own (`NT AUTHORITY\SYSTEM
    // (Microsoft.Exchange.ServiceHost)` on the discovery mailbox), which Elastic's rule
    // leaves out by `user.id`; the JSON's is an administrator's.
    (
        "t1098.002_Mail Account Delegation full access permissions.csv",
        &["M365 Mailbox Full Access Permission Granted"],
    ),
    (
        "t1098.002_Mail Account Delegation full access permissions.json",
        &[
            "M365 Exchange Mailbox High-Risk Permission Delegated",
            "M365 Mailbox Full Access Permission Granted",
        ],
    ),
    // `Add-RecipientPermission` SendAs.
    (
        "t1098.002_Mail account delegation-SendAs permission.csv",
        &[
            "M365 Exchange Mailbox High-Risk Permission Delegated",
            "M365 Mailbox SendAs Permission Granted",
        ],
    ),
    // A password reset, `Update user.` and `Add-MailboxPermission` FullAccess.
    (
        "t1098.002_user-reset_mailbox_full_access.json",
        &[
            "M365 Exchange Mailbox High-Risk Permission Delegated",
            "M365 Mailbox Full Access Permission Granted",
            "M365 User Object Updated",
        ],
    ),
    (
        "t1098.003_add_role_global_admin.json",
        &[
            "M365 Identity Global Administrator Role Assigned",
            "M365 Member Added to Privileged Directory Role",
        ],
    ),
    (
        "t1098_Add a user to company administrator role.json",
        &[
            "M365 Identity Global Administrator Role Assigned",
            "M365 Member Added to Privileged Directory Role",
        ],
    ),
    // Password sprays: `UserLoginFailed`, some then a `UserLoggedIn`; MSOLSpray's
    // PowerShell client says so in its user agent.
    (
        "t1110.003_msolspray-powershell.json",
        &[
            "M365 Failed User Login (Password Spray / Brute Force)",
            "M365 Sign-in with PowerShell User Agent",
        ],
    ),
    (
        "t1110.003_msolspray-python.json",
        &["M365 Failed User Login (Password Spray / Brute Force)"],
    ),
    (
        "t1110.003_msolspraywithsuccess_1.csv",
        &[
            "M365 Failed User Login (Password Spray / Brute Force)",
            "M365 Sign-in with PowerShell User Agent",
        ],
    ),
    (
        "t1110.003_o365spray_default.json",
        &["M365 Failed User Login (Password Spray / Brute Force)"],
    ),
    (
        "t1110.003_o365spray_reporting.csv",
        &["M365 Failed User Login (Password Spray / Brute Force)"],
    ),
    (
        "t1110.003_o365spray_reporting.json",
        &["M365 Failed User Login (Password Spray / Brute Force)"],
    ),
    // `Set-CASMailbox` enabling POP, IMAP, OWA.
    (
        "t1114.002_Enable_POP_IMAP_OWA.csv",
        &["M365 Mailbox POP/IMAP/OWA Protocol Change"],
    ),
    (
        "t1114.002_Enable_POP_IMAP_OWA.json",
        &["M365 Mailbox POP/IMAP/OWA Protocol Change"],
    ),
    // `Set-Mailbox -ForwardingSmtpAddress` on five mailboxes to one address.
    (
        "t1114.003_Forward_Rule_Multi_Users_Same_Forward_dest.json",
        &[
            "M365 Exchange Inbox Forwarding Rule Created",
            "M365 Mailbox Forwarding Configured via Set-Mailbox",
        ],
    ),
    // `New-InboxRule` forwarding mail, each record wrapped in an export's `AuditData`
    // object.
    (
        "t1114.003_rule_mail_forward_same_dest.json",
        &[
            "M365 Exchange Inbox Forwarding Rule Created",
            "M365 New Inbox Rule Created",
        ],
    ),
    (
        "t1114_Set-Mailbox-ForwardSMTPAddress.csv",
        &[
            "M365 Exchange Inbox Forwarding Rule Created",
            "M365 Mailbox Forwarding Configured via Set-Mailbox",
        ],
    ),
    // Sign-ins with AzureHound's user agent.
    (
        "t1482_azurehound_list.csv",
        &[
            "Entra ID Sign-in BloodHound Suite User-Agent Detected",
            "M365 Sign-in from AzureHound",
        ],
    ),
    (
        "t1531_Remove-Admin members from a group.csv",
        &["M365 Member Removed from Directory Role"],
    ),
    // Ten `Delete user.`.
    (
        "t1531_mass_delete_users.json",
        &["M365 User Account Deleted"],
    ),
    // Users allowed to consent to any application.
    (
        "t1550.001_Allusers_consent_to_grant_permission_granted.json",
        &["M365 Authorization Policy Updated"],
    ),
    // `Add application.` (rclone's default registration).
    (
        "t1550.001_default_rclone_app_registration.json",
        &["M365 Application Registered"],
    ),
    // `Disable Strong Authentication.` beside an `Update user.`.
    (
        "t1556.006_Disable Strong Authentication.csv",
        &[
            "Disabling Multi Factor Authentication",
            "M365 Strong Authentication (MFA) Disabled for User",
            "M365 User Object Updated",
        ],
    ),
    (
        "t1556_Disable _Strong_Authentication.json",
        &[
            "Disabling Multi Factor Authentication",
            "M365 Strong Authentication (MFA) Disabled for User",
            "M365 User Object Updated",
        ],
    ),
    // The bypass itself, as JSON and (the same record) as CSV.
    (
        "t1562-Set-MailboxAuditBypassAssociation.json",
        &[
            "M365 Exchange Mailbox Audit Logging Bypass Added",
            "M365 Mailbox Audit Bypass Association Configured",
        ],
    ),
    // `Set-AdminAuditLogConfig -UnifiedAuditLogIngestionEnabled $false`.
    (
        "t1562-UnifiedAuditlogIngestion-Stopped.json",
        &["M365 Unified Audit Log Ingestion Disabled"],
    ),
    // `Remove-DlpCompliancePolicy` (a Security & Compliance cmdlet).
    (
        "t1562.001_Remove-DlpCompliancePolicy.csv",
        &[
            "M365 DLP Compliance Policy Removed",
            "M365 Security Compliance Admin Signal",
        ],
    ),
    // `Set-Mailbox -AuditLogAgeLimit 0`.
    (
        "t1562.001_Set-Mailbox-AuditLogAgeLimitoZero.csv",
        &["M365 Mailbox Audit Log Age Limit Changed"],
    ),
    // The auditing licence removed: an `Update user.`.
    (
        "t1562.008_Advanced Auditing policy removed from a user.csv",
        &["M365 User Object Updated"],
    ),
    (
        "t1562.008_Disable UAL ingestion.csv",
        &["M365 Unified Audit Log Ingestion Disabled"],
    ),
    (
        "t1562.008_Set-MailboxAuditBypassAssociation.csv",
        &[
            "M365 Exchange Mailbox Audit Logging Bypass Added",
            "M365 Mailbox Audit Bypass Association Configured",
        ],
    ),
    (
        "t1562_Set-Mailbox-AuditLogAgeLimitoZero.json",
        &["M365 Mailbox Audit Log Age Limit Changed"],
    ),
    // `New-InboxRule` deleting, or moving and marking read; Elastic's delete-or-move rule
    // also wants a subject word it lists (one has "Attention", the others none).
    (
        "t1564.008_New inbox rule to delete email.csv",
        &["M365 New Inbox Rule Created"],
    ),
    // `Set-InboxRule` moving mail whose subject says "invoice" to Deleted Items.
    (
        "t1564.008_Update existing mailbox rule using Set-InboxRule.csv",
        &[
            "M365 Exchange Inbox Phishing Evasion Rule Created",
            "M365 Existing Inbox Rule Modified",
        ],
    ),
    (
        "t1564.008_markasread_delete_all_email.json",
        &["M365 New Inbox Rule Created"],
    ),
    (
        "t1564.008_rule_mark_as_read_move.json",
        &["M365 New Inbox Rule Created"],
    ),
    // MFASweep's sign-ins, some through the PowerShell client.
    (
        "t1592.004_mfa_sweep.csv",
        &["M365 Sign-in with PowerShell User Agent"],
    ),
];

const MODES: [&[&str]; 4] = [
    &[],
    &["--threads", "1"],
    &["--threads", "2", "--chunk-size", "64"],
    &["--no-prefilter"],
];

fn dataset() -> std::path::PathBuf {
    common::root().join("tests/fixtures/real_tenant/dataset")
}

/// `hunt -q --format json --no-context EXTRA… --rules R… DATASET`, asserted to exit 0
/// (findings, like grep) with nothing on stderr but the enrichment warnings of rules that read a
/// GeoIP or ASN field.
fn hunt(rules: &[&Path], extra: &[&str]) -> Value {
    let dir = dataset();
    let mut args = vec!["hunt", "-q", "--format", "json", "--no-context"];
    args.extend_from_slice(extra);
    for r in rules {
        args.extend(["--rules", r.to_str().unwrap()]);
    }
    args.push(dir.to_str().unwrap());
    let out = common::ualhunt(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    for line in stderr.lines() {
        assert!(line.starts_with("ualhunt: warning: --geoip-db: "), "{line}");
    }
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Elastic's rules and the Sigma corpus (`../shared/corpus/`), or `None` after saying
/// that `check` was skipped without them.
fn packs(check: &str) -> Option<(PathBuf, PathBuf)> {
    let elastic = common::corpus("elastic-rules", check);
    let sigma = common::corpus("sigma-m365", check);
    Some((elastic?, sigma?))
}

/// File name -> the names of the rules that fired on its records.
fn fired(report: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for rule in report["by_rule"].as_array().unwrap() {
        let name = rule["name"].as_str().unwrap();
        for at in rule["evidence"].as_array().unwrap() {
            let evidence = &report["actors"][at[0].as_u64().unwrap() as usize]["evidence"]
                [at[1].as_u64().unwrap() as usize];
            let path = Path::new(evidence["path"].as_str().unwrap());
            let file = path.file_name().unwrap().to_str().unwrap().to_string();
            out.entry(file).or_default().insert(name.to_string());
        }
    }
    out
}

fn expected(keep: impl Fn(&str) -> bool) -> BTreeMap<String, BTreeSet<String>> {
    EXPECTED
        .iter()
        .map(|(file, rules)| {
            let rules: BTreeSet<String> = rules
                .iter()
                .filter(|r| keep(r))
                .map(|r| r.to_string())
                .collect();
            (file.to_string(), rules)
        })
        .filter(|(_, rules)| !rules.is_empty())
        .collect()
}

/// The table above names every file of the dataset once.
#[test]
fn the_expectation_covers_every_file() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(dataset())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let listed: BTreeSet<String> = EXPECTED.iter().map(|(f, _)| f.to_string()).collect();
    assert_eq!(listed.len(), EXPECTED.len(), "a file is listed twice");
    assert_eq!(on_disk, listed);
    assert_eq!(on_disk.len(), 39);
}

/// With Elastic's rules and the Sigma corpus every file is flagged, by exactly the
/// expected rules, the same in every engine mode; every record is read (none
/// malformed, no error) and each matched record is one event per rule.
#[test]
fn elastic_and_sigma_flag_every_file() {
    let Some((elastic, sigma)) = packs("real_tenant::elastic_and_sigma_flag_every_file") else {
        return;
    };
    let reports: Vec<Value> = MODES
        .iter()
        .map(|mode| {
            let mut extra = vec!["--keep-duplicates"];
            extra.extend_from_slice(mode);
            hunt(&[&elastic, &sigma], &extra)
        })
        .collect();
    let first = &reports[0];
    assert_eq!(fired(first), expected(|_| true));
    let scan = &first["scan"];
    assert_eq!(scan["files"], 39);
    assert_eq!(scan["records"], 125);
    assert_eq!(scan["malformed"], 0);
    assert_eq!(scan["errors"].as_array().unwrap().len(), 0);
    for (mode, report) in MODES.iter().zip(&reports).skip(1) {
        assert_eq!(report["actors"], first["actors"], "{mode:?}");
        assert_eq!(report["by_rule"], first["by_rule"], "{mode:?}");
    }
}

/// Elastic's rules alone flag the files the expectation gives them, and the Sigma corpus
/// alone the others: each rule fires on the same files in a pack of its own as in the
/// joint one.
#[test]
fn each_pack_alone_flags_its_share() {
    let Some((elastic, sigma)) = packs("real_tenant::each_pack_alone_flags_its_share") else {
        return;
    };
    let alone = hunt(&[&elastic], &["--keep-duplicates"]);
    let names: BTreeSet<String> = alone["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    let elastic_files = expected(|r| names.contains(r));
    assert_eq!(fired(&alone), elastic_files);
    assert_eq!(elastic_files.len(), 14);
    let sigma_alone = hunt(&[&sigma], &["--keep-duplicates"]);
    assert_eq!(fired(&sigma_alone), expected(|r| !names.contains(r)));
}

/// By default a record exported twice is reported once, at its first sight: the bypass
/// (as JSON and, one `Id`, as CSV: that file then has no event of its own), two of the
/// forwarding changes and six of the spray's failed sign-ins (each twice in one file).
#[test]
fn a_record_exported_twice_is_reported_once() {
    let Some((elastic, sigma)) = packs("real_tenant::a_record_exported_twice_is_reported_once")
    else {
        return;
    };
    let kept = hunt(&[&elastic, &sigma], &["--keep-duplicates"]);
    let deduplicated = hunt(&[&elastic, &sigma], &[]);
    // (rule, record id) -> how many events.
    let events = |report: &Value| {
        let mut out: BTreeMap<(String, String), usize> = BTreeMap::new();
        for (rule, e) in common::by_rule_findings(report) {
            let record = e["record_id"].as_str().unwrap().to_string();
            *out.entry((rule.to_string(), record)).or_default() += 1;
        }
        out
    };
    let (all, once) = (events(&kept), events(&deduplicated));
    assert!(once.values().all(|&n| n == 1), "{once:?}");
    assert_eq!(
        all.keys().collect::<Vec<_>>(),
        once.keys().collect::<Vec<_>>()
    );
    let repeated: BTreeSet<&str> = all
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|((_, record), _)| record.as_str())
        .collect();
    assert_eq!(repeated.len(), 9, "{repeated:?}");
    assert!(repeated.contains("20fd5006-645b-42be-e9de-08db592255ac"));
    let mut expected = fired(&kept);
    expected.remove("t1562.008_Set-MailboxAuditBypassAssociation.csv");
    assert_eq!(fired(&deduplicated), expected);
    let count = |r: &Value| r["scan"]["events"].as_u64().unwrap() as usize;
    let extra: usize = all.values().map(|n| n - 1).sum();
    assert_eq!(count(&kept) - count(&deduplicated), extra);
}
