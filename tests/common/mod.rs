//! Helpers shared by the integration tests.

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
