//! Exports a responder is handed that are not the classic ones: Microsoft Graph audit
//! log query results (JSON pages, JSON lines, CSV), and ualhunt's own reports left in the
//! evidence folder by an earlier run, which are skipped with a note.

mod common;

use common::ualhunt;
use serde_json::{Value, json};

/// A raw bypass record (the one inside Graph's `auditData`).
fn raw(id: u32, target: &str) -> Value {
    json!({
        "CreationTime": "2024-03-05T10:11:12", "Id": format!("00000000-0000-0000-0000-{id:012}"),
        "Operation": "Set-MailboxAuditBypassAssociation", "RecordType": 1,
        "ResultStatus": "True", "UserType": 2, "Workload": "Exchange",
        "ClientIP": "203.0.113.25", "ObjectId": target, "UserId": "adm@contoso.com",
        "Parameters": [
            {"Name": "Identity", "Value": target},
            {"Name": "AuditBypassEnabled", "Value": "True"}
        ]
    })
}

/// A `microsoft.graph.security.auditLogRecord` holding `raw(id, target)`.
fn graph(id: u32, target: &str) -> Value {
    let mut data = raw(id, target);
    data["@odata.type"] = json!("#microsoft.graph.security.exchangeAdminAuditLogRecord");
    json!({
        "id": format!("00000000-0000-0000-0000-{id:012}"),
        "createdDateTime": "2024-03-05T10:11:12Z",
        "auditLogRecordType": "exchangeAdmin",
        "operation": "Set-MailboxAuditBypassAssociation",
        "organizationId": "3f2a9c1e-7b4d-4e8a-9c6f-2d1b5a8e7c30",
        "userType": "admin", "userId": "adm@contoso.com",
        "userPrincipalName": "adm@contoso.com", "clientIp": "203.0.113.25",
        "service": "Exchange", "objectId": target,
        "auditData": data
    })
}

fn page(records: &[Value]) -> Value {
    json!({
        "@odata.context": "https://graph.microsoft.com/beta/$metadata#security/auditLog/queries('q')/records",
        "value": records,
        "@odata.nextLink": "https://graph.microsoft.com/beta/security/auditLog/queries/q/records?$skiptoken=x"
    })
}

/// The bypassed accounts of a JSON report, and its coverage's reasons.
fn hunt(dir: &std::path::Path) -> (Vec<String>, Value) {
    let out = ualhunt(&["hunt", "--format", "json", dir.to_str().unwrap()]);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let mut accounts: Vec<String> = report["investigations"][0]["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["identity"].as_str().unwrap().to_string())
        .collect();
    accounts.sort();
    (accounts, report)
}

#[test]
fn graph_audit_log_query_results_are_read_in_every_layout() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    // A page as the API returns it, compact on one line and pretty-printed.
    std::fs::write(
        p("page1.json"),
        page(&[graph(1, "a@c.com"), graph(2, "b@c.com")]).to_string(),
    )
    .unwrap();
    std::fs::write(
        p("page2.json"),
        serde_json::to_string_pretty(&page(&[graph(3, "c@c.com")])).unwrap(),
    )
    .unwrap();
    // JSON lines, one record per line.
    std::fs::write(
        p("records.jsonl"),
        format!("{}\n{}\n", graph(4, "d@c.com"), graph(5, "e@c.com")),
    )
    .unwrap();
    // CSV with the API's camelCase columns, auditData as JSON text.
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "id",
        "createdDateTime",
        "auditLogRecordType",
        "operation",
        "userPrincipalName",
        "auditData",
    ])
    .unwrap();
    for (id, t) in [(6, "f@c.com"), (7, "g@c.com")] {
        let r = graph(id, t);
        w.write_record([
            r["id"].as_str().unwrap(),
            r["createdDateTime"].as_str().unwrap(),
            "exchangeAdmin",
            "Set-MailboxAuditBypassAssociation",
            "adm@contoso.com",
            &r["auditData"].to_string(),
        ])
        .unwrap();
    }
    std::fs::write(p("records.csv"), w.into_inner().unwrap()).unwrap();

    let (accounts, report) = hunt(dir.path());
    assert_eq!(
        accounts,
        [
            "a@c.com", "b@c.com", "c@c.com", "d@c.com", "e@c.com", "f@c.com", "g@c.com"
        ],
        "{report:#}"
    );
    assert_eq!(report["scan"]["malformed"], 0, "{report:#}");
    assert!(
        report["scan"]["warnings"].as_array().unwrap().is_empty(),
        "{report:#}"
    );
}

#[test]
fn reports_of_an_earlier_run_are_skipped_with_a_note() {
    let evidence = tempfile::tempdir().unwrap();
    let archive = evidence.path().join("ual.jsonl");
    std::fs::write(
        &archive,
        format!("{}\n{}\n", raw(1, "a@c.com"), raw(2, "b@c.com")),
    )
    .unwrap();
    let (clean, clean_report) = hunt(evidence.path());
    // Every format of report, written into the evidence folder itself.
    for (format, name) in [
        ("json", "r.json"),
        ("csv", "r.csv"),
        ("ndjson", "r.ndjson"),
        ("timeline", "r.timeline.jsonl"),
        ("ecs", "r.ecs.ndjson"),
        ("html", "r.html"),
        ("table", "r.txt"),
    ] {
        let out = ualhunt(&["hunt", "--format", format, archive.to_str().unwrap()]);
        std::fs::write(evidence.path().join(name), &out.stdout).unwrap();
    }
    let (accounts, report) = hunt(evidence.path());
    assert_eq!(accounts, clean);
    assert_eq!(report["scan"]["malformed"], 0, "{report:#}");
    assert_eq!(
        report["coverage"]["conclusive"],
        clean_report["coverage"]["conclusive"]
    );
    assert_eq!(
        report["coverage"]["reasons"],
        clean_report["coverage"]["reasons"]
    );
    let warnings = report["scan"]["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 7, "one note per report: {warnings:#?}");
    assert!(
        warnings.iter().all(|w| w["message"]
            .as_str()
            .unwrap()
            .contains("a report written by ualhunt")),
        "{warnings:#?}"
    );
}

#[test]
fn a_purview_export_saved_from_excel_is_read_with_its_row_numbers() {
    use rust_xlsxwriter::Workbook;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("export.xlsx");
    let mut book = Workbook::new();
    // A first sheet without the audit column (a pivot, notes) is passed over.
    let notes = book.add_worksheet();
    notes.set_name("Notes").unwrap();
    notes.write_string(0, 0, "exported for the case").unwrap();
    let sheet = book.add_worksheet();
    sheet.set_name("Audit").unwrap();
    for (c, h) in ["CreationDate", "UserIds", "Operations", "AuditData"]
        .iter()
        .enumerate()
    {
        sheet.write_string(0, c as u16, *h).unwrap();
    }
    // Rows 2 and 3 (Excel's numbering), a missing row 4, row 5 pretty-printed JSON with
    // line breaks between its tokens, and a number in a text column.
    let rows: [(u32, Value); 3] = [
        (1, raw(1, "a@c.com")),
        (2, raw(2, "b@c.com")),
        (4, raw(3, "c@c.com")),
    ];
    for (r, record) in &rows {
        sheet.write_string(*r, 0, "3/5/2024 10:11:12 AM").unwrap();
        sheet.write_string(*r, 1, "adm@contoso.com").unwrap();
        sheet
            .write_string(*r, 2, "Set-MailboxAuditBypassAssociation")
            .unwrap();
        let json = if *r == 4 {
            serde_json::to_string_pretty(record).unwrap()
        } else {
            record.to_string()
        };
        sheet.write_string(*r, 3, &json).unwrap();
    }
    sheet.write_number(5, 0, 45000.0).unwrap();
    book.save(&path).unwrap();

    let (accounts, report) = hunt(dir.path());
    assert_eq!(accounts, ["a@c.com", "b@c.com", "c@c.com"], "{report:#}");
    assert!(
        report["scan"]["warnings"].as_array().unwrap().is_empty(),
        "{report:#}"
    );
    // The evidence points at the Excel rows.
    let mut lines: Vec<u64> = report["actors"][0]["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_u64().unwrap())
        .collect();
    lines.sort_unstable();
    assert_eq!(lines, [2, 3, 5], "{report:#}");
    // The row of a number and nothing else is one malformed line? No: it holds no
    // literal, so it is a record that is no audit record, and counted as such.
    assert_eq!(report["scan"]["malformed"], 0, "{report:#}");
}

#[test]
fn a_damaged_workbook_is_an_error_naming_the_file() {
    use rust_xlsxwriter::Workbook;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("export.xlsx");
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    sheet.write_string(0, 0, "AuditData").unwrap();
    sheet
        .write_string(1, 0, raw(1, "a@c.com").to_string())
        .unwrap();
    book.save(&path).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    // Damage the middle of the archive: the workbook's parts no longer inflate.
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b = 0;
    }
    std::fs::write(&path, bytes).unwrap();
    let out = ualhunt(&["hunt", path.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("export.xlsx"), "{err}");
}
