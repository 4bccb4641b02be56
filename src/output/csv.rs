//! `--format csv`: one row per matched event, then one row per failed attempt
//! (`outcome` = `failure`), RFC 4180, every cell guarded against spreadsheet formula
//! injection. The columns after `risk_score` are the rule's evidence items, in the rule
//! file's order.

use std::io::{self, Write};

use super::{Exporter, rfc3339, spreadsheet_safe};
use crate::analysis::Change;
use crate::engine::Report;
use crate::findings::Finding;

/// The CSV exporter.
pub struct Csv;

const FIXED: [&str; 12] = [
    "rule_id",
    "rule_name",
    "severity",
    "actor",
    "timestamp",
    "path",
    "line",
    "record_id",
    "source_ip",
    "risk_score",
    "outcome",
    "change",
];

impl Exporter for Csv {
    fn write(&self, report: &Report, out: &mut dyn Write) -> io::Result<()> {
        let mut w = csv::Writer::from_writer(out);
        // The evidence columns of every rule that ran, first appearance first.
        let mut extra: Vec<&str> = Vec::new();
        for r in &report.rules {
            for e in &r.evidence {
                if !extra.contains(&e.name.as_str()) {
                    extra.push(&e.name);
                }
            }
        }
        let mut header: Vec<&str> = FIXED.to_vec();
        header.push("allowed");
        header.push("member");
        header.push("offset");
        header.extend(&extra);
        w.write_record(&header)?;
        let row = |f: &Finding, outcome: &str, change: Option<Change>| -> Vec<String> {
            let r = &report.rules[usize::from(f.rule)];
            let opt = |s: Option<&str>| s.map(spreadsheet_safe).unwrap_or_default().into_owned();
            let allowed = f
                .actor
                .as_deref()
                .and_then(|a| report.allowlist.find(a))
                .or_else(|| {
                    let i = r.evidence.iter().position(|e| e.name == "target")?;
                    report.allowlist.find(f.fields.get(i)?.as_ref()?.as_text()?)
                })
                .map(|i| report.allowlist.entries[i].reason.as_str());
            let mut cells = vec![
                spreadsheet_safe(&r.id).into_owned(),
                spreadsheet_safe(&r.name).into_owned(),
                spreadsheet_safe(&r.severity).into_owned(),
                opt(f.actor.as_deref()),
                f.timestamp.as_ref().map(rfc3339).unwrap_or_default(),
                spreadsheet_safe(&report.inputs[f.at.input as usize]).into_owned(),
                (f.at.line + 1).to_string(),
                opt(f.record_id.as_deref()),
                opt(f.source_ip.as_deref()),
                r.risk_score.to_string(),
                outcome.to_string(),
                change.map(|c| c.name().to_string()).unwrap_or_default(),
                opt(allowed),
                opt(report.members[f.at.input as usize].as_deref()),
                f.at.offset.to_string(),
            ];
            for name in &extra {
                let value = r
                    .evidence
                    .iter()
                    .position(|e| e.name == *name)
                    .and_then(|i| f.fields.get(i)?.as_ref())
                    .map(|v| spreadsheet_safe(&v.to_string()).into_owned());
                cells.push(value.unwrap_or_default());
            }
            cells
        };
        for actor in &report.actors {
            for e in &actor.evidence {
                w.write_record(row(&e.finding, "success", e.change))?;
            }
        }
        for inv in &report.investigations {
            for f in &inv.attempts {
                w.write_record(row(f, "failure", None))?;
            }
        }
        w.flush()
    }
}
