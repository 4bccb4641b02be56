//! The block search for caseless literals over the raw bytes (the prefilter's SIMD
//! tables that pass both cases of a letter) against the reference path: Elastic's rules
//! and the Sigma rules together, over records carrying every caseless literal of the
//! pack in mixed case, cut short, or beside keys that pass the tables without being a
//! literal, and Sigma's caseless conjuncts (the forwarding parameters) the same ways,
//! report what `--no-prefilter` reports, whatever the threads and chunks.

mod common;

use serde_json::Value;

/// The caseless literals `ualhunt rules` lists for the rules (`"…" (any case)`).
fn caseless_literals(args: &[&str]) -> Vec<String> {
    let mut full = vec!["rules"];
    full.extend_from_slice(args);
    let out = common::ualhunt(&full);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut found = Vec::new();
    for line in text
        .lines()
        .filter(|l| l.trim_start().starts_with("prefilter:"))
    {
        for piece in line.split(" (any case)").filter(|p| p.ends_with('"')) {
            let piece = &piece[..piece.len() - 1];
            if let Some(at) = piece.rfind('"') {
                found.push(piece[at + 1..].to_string());
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

/// The values of the `Parameters|contains` lists of SigmaHQ's mail forwarding rule.
fn forwarding_words(sigma: &std::path::Path) -> Vec<String> {
    let rule = sigma.join("sigmahq/microsoft365_susp_email_forwarding_activity.yml");
    let text = std::fs::read_to_string(&rule).unwrap();
    let mut words = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        let item = line.trim_start().strip_prefix("- ");
        match item {
            Some(value) if inside => words.push(value.trim_matches('\'').to_string()),
            _ => inside = line.trim_start().starts_with("Parameters|contains:"),
        }
    }
    words
}

/// `text` with each letter's case taken from the bits of `seed` in turn.
fn recase(text: &str, seed: u64) -> String {
    text.chars()
        .enumerate()
        .map(|(i, c)| match seed >> (i % 64) & 1 {
            1 => c.to_ascii_uppercase(),
            _ => c.to_ascii_lowercase(),
        })
        .collect()
}

/// The report without its `scan` counts (candidates differ by design), and the count
/// of events it holds.
fn comparable(stdout: &[u8]) -> (Value, u64) {
    let mut report: Value = serde_json::from_slice(stdout).unwrap();
    let events = report["scan"]["events"].as_u64().unwrap();
    report.as_object_mut().unwrap().remove("scan");
    (report, events)
}

#[test]
fn caseless_literals_in_any_case_report_what_the_reference_path_reports() {
    let check = "caseless_block_search";
    let (Some(elastic), Some(sigma)) = (
        common::corpus("elastic-rules", check),
        common::corpus("sigma-m365", check),
    ) else {
        return;
    };
    let (e, s) = (elastic.to_str().unwrap(), sigma.to_str().unwrap());
    let rules = ["--rules", e, "--rules", s];
    let literals = caseless_literals(&rules);
    assert!(literals.len() >= 10, "{literals:?}");
    // The values a Sigma rule checks a line for beside its searched literal (the
    // router's caseless conjuncts): the forwarding parameters of SigmaHQ's mail
    // forwarding rule, which fires where `Parameters` is one string.
    let forwarding = forwarding_words(&sigma);
    assert!(forwarding.len() >= 4, "{forwarding:?}");
    let mut rng = fastrand::Rng::with_seed(23);
    let mut text = String::new();
    let workloads = [
        "Exchange",
        "AzureActiveDirectory",
        "SharePoint",
        "SecurityComplianceCenter",
    ];
    for i in 0..1500u32 {
        let literal = &literals[rng.usize(..literals.len())];
        let mut value = recase(literal, rng.u64(..));
        match rng.u8(..4) {
            // Cut short: no literal.
            0 => {
                value.pop();
            }
            // Inside other text.
            1 => value = format!("x {value} y"),
            _ => {}
        }
        let workload = workloads[rng.usize(..workloads.len())];
        let record_type = [1, 8, 15, 18, 28, 40][rng.usize(..6)];
        let secs = i % 60;
        let mins = i / 60 % 60;
        // The value as the operation, or as a name or a parameter elsewhere, beside
        // `"User…` keys (a quote, then letters: the shape that passes a bucket's
        // tables mixing two windows).
        let record = match rng.u8(..4) {
            0 => format!(
                r#"{{"CreationTime":"2024-05-02T10:{mins:02}:{secs:02}","Id":"00000000-0000-0000-0000-{i:012}","Operation":"{value}","OrganizationId":"o","RecordType":{record_type},"ResultStatus":"Succeeded","UserKey":"k{i}","UserType":0,"Workload":"{workload}","UserId":"u{}@contoso.com","ObjectId":"o{i}"}}"#,
                i % 7
            ),
            1 => format!(
                r#"{{"UserId":"u{}@contoso.com","Workload":"{workload}","RecordType":{record_type},"Operation":"Set-Mailbox","Parameters":[{{"Name":"Identity","Value":"{value}"}}],"Id":"00000000-0000-0000-0000-{i:012}","CreationTime":"2024-05-02T10:{mins:02}:{secs:02}","UserType":2}}"#,
                i % 5
            ),
            // A cmdlet whose parameters are one string, holding a forwarding parameter
            // in mixed case (or cut short: no match).
            2 => {
                let mut word = recase(&forwarding[rng.usize(..forwarding.len())], rng.u64(..));
                if rng.bool() {
                    word.pop();
                }
                let cmdlet = ["New-InboxRule", "Set-InboxRule", "Set-Mailbox"][rng.usize(..3)];
                format!(
                    r#"{{"CreationTime":"2024-05-02T10:{mins:02}:{secs:02}","Id":"00000000-0000-0000-0000-{i:012}","Operation":"{cmdlet}","RecordType":1,"Workload":"Exchange","UserId":"u{}@contoso.com","Parameters":"-Identity u{i} -{word} x@example.com"}}"#,
                    i % 3
                )
            }
            _ => format!(
                r#"{{"CreationTime":"2024-05-02T10:{mins:02}:{secs:02}","Id":"00000000-0000-0000-0000-{i:012}","Operation":"AlertTriggered","RecordType":40,"Workload":"SecurityComplianceCenter","Name":"{value}","UserId":"SecurityComplianceAlerts","ObjectId":"{value}","UserKey":"SecurityComplianceAlerts"}}"#
            ),
        };
        text.push_str(&record);
        text.push('\n');
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("caseless.jsonl");
    std::fs::write(&path, &text).unwrap();
    let p = path.to_str().unwrap();
    let run = |mode: &[&str]| {
        let mut args = vec!["hunt", "-q", "--format", "json", "--no-context"];
        args.extend_from_slice(&rules);
        args.extend_from_slice(mode);
        args.push(p);
        let out = common::ualhunt(&args);
        assert!(
            out.status.code().is_some_and(|c| c <= 1),
            "{mode:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        comparable(&out.stdout)
    };
    let (reference, events) = run(&["--no-prefilter"]);
    assert!(
        events > 0,
        "the records fire no rule: the comparison would prove nothing"
    );
    for mode in [
        &[][..],
        &["--threads", "1"],
        &["--threads", "2", "--chunk-size", "64"],
        &["--threads", "3", "--chunk-size", "1000"],
    ] {
        let (report, got) = run(mode);
        assert_eq!(got, events, "{mode:?}");
        assert!(
            report == reference,
            "{mode:?}: the report differs from --no-prefilter's"
        );
    }
}
