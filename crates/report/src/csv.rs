//! `--format csv`: one row per matched event, then one row per failed attempt
//! (`outcome` = `failure`), RFC 4180, every cell guarded against spreadsheet formula
//! injection. The columns after `building_block` (Elastic's `building_block_type` of a
//! building-block rule, else empty) are the rule's evidence items, in the rule file's
//! order.

use std::io::{self, Write};

use crate::escape::spreadsheet_safe;
use crate::exporter::Exporter;
use crate::time::rfc3339;
use ualhunt_engine::Report;
use ualhunt_engine::analysis::Evidence;

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
        header.push("building_block");
        header.extend(&extra);
        w.write_record(&header)?;
        // Each rule's evidence item for each extra column, resolved once per rule.
        let slots: Vec<Vec<Option<usize>>> = report
            .rules
            .iter()
            .map(|r| {
                extra
                    .iter()
                    .map(|name| r.evidence.iter().position(|e| e.name == *name))
                    .collect()
            })
            .collect();
        let row = |e: &Evidence, outcome: &str| -> Vec<String> {
            let f = &e.finding;
            let r = &report.rules[usize::from(f.rule)];
            let opt = |s: Option<&str>| s.map(spreadsheet_safe).unwrap_or_default().into_owned();
            let allowed = e
                .allowed
                .map(|i| report.allowlist.entries[i].reason.as_str());
            let mut cells = vec![
                spreadsheet_safe(&r.id).into_owned(),
                spreadsheet_safe(&r.shown_name()).into_owned(),
                spreadsheet_safe(&r.severity).into_owned(),
                opt(f.actor.as_deref()),
                f.timestamp.as_ref().map(rfc3339).unwrap_or_default(),
                spreadsheet_safe(&report.inputs.path(f.at.input as usize)).into_owned(),
                (f.at.line + 1).to_string(),
                opt(f.record_id.as_deref()),
                opt(f.source_ip.as_deref()),
                r.risk_score.to_string(),
                outcome.to_string(),
                e.change.map(|c| c.name().to_string()).unwrap_or_default(),
                opt(allowed),
                opt(report.inputs.member(f.at.input as usize).as_deref()),
                f.at.offset.to_string(),
                opt(r.building_block.as_deref()),
            ];
            for &slot in &slots[usize::from(f.rule)] {
                let value = f
                    .field(slot)
                    .map(|v| spreadsheet_safe(&v.to_string()).into_owned());
                cells.push(value.unwrap_or_default());
            }
            cells
        };
        for actor in &report.actors {
            for e in &actor.evidence {
                w.write_record(row(e, "success"))?;
            }
        }
        for inv in &report.investigations {
            for e in &inv.attempts {
                w.write_record(row(e, "failure"))?;
            }
        }
        w.flush()
    }
}
