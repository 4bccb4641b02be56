//! `--format csv`: one row per matched event (RFC 4180), every cell guarded against
//! spreadsheet formula injection.

use std::io::{self, Write};

use super::{Exporter, rfc3339, spreadsheet_safe};
use crate::engine::Report;

/// The CSV exporter.
pub struct Csv;

const HEADER: [&str; 12] = [
    "rule_id",
    "rule_name",
    "severity",
    "actor",
    "timestamp",
    "path",
    "line",
    "record_id",
    "target",
    "bypass_enabled",
    "source_ip",
    "risk_score",
];

impl Exporter for Csv {
    fn write(&self, report: &Report, out: &mut dyn Write) -> io::Result<()> {
        let mut w = csv::Writer::from_writer(out);
        w.write_record(HEADER)?;
        for actor in &report.actors {
            for e in &actor.evidence {
                let r = &report.rules[e.rule];
                let opt =
                    |s: Option<&str>| s.map(spreadsheet_safe).unwrap_or_default().into_owned();
                w.write_record([
                    spreadsheet_safe(&r.id).into_owned(),
                    spreadsheet_safe(&r.name).into_owned(),
                    spreadsheet_safe(&r.severity).into_owned(),
                    opt(actor.actor.as_deref()),
                    e.timestamp.as_ref().map(rfc3339).unwrap_or_default(),
                    spreadsheet_safe(&report.inputs[e.file]).into_owned(),
                    (e.line + 1).to_string(),
                    opt(e.record_id.as_deref()),
                    opt(e.target.as_deref()),
                    e.bypass_enabled.map(|b| b.to_string()).unwrap_or_default(),
                    opt(e.source_ip.as_deref()),
                    r.risk_score.to_string(),
                ])?;
            }
        }
        w.flush()
    }
}
