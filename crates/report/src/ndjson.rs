//! `--format ndjson`: one line per matched event, with its evidence and the rule's
//! metadata, in the same order as the JSON evidence; then one line per failed attempt
//! (`"outcome": "failure"`), in time order.

use std::io::{self, Write};

use serde::Serialize;

use crate::exporter::Exporter;
use crate::json::{EvidenceOut, RuleOut};
use ualhunt_engine::Report;
use ualhunt_engine::findings::Finding;

/// The NDJSON exporter.
pub struct Ndjson;

#[derive(Serialize)]
struct Line<'a> {
    rule: RuleOut<'a>,
    outcome: &'static str,
    #[serde(flatten)]
    evidence: EvidenceOut<'a>,
}

fn rule_of<'a>(report: &'a Report, f: &Finding) -> RuleOut<'a> {
    RuleOut::meta(&report.rules[usize::from(f.rule)])
}

impl Exporter for Ndjson {
    fn write(&self, report: &Report, out: &mut dyn Write) -> io::Result<()> {
        for actor in &report.actors {
            for e in &actor.evidence {
                let line = Line {
                    rule: rule_of(report, &e.finding),
                    outcome: "success",
                    evidence: EvidenceOut::new(report, e).with_actor(),
                };
                crate::escape::json_to_writer(&mut *out, &line)?;
                out.write_all(b"\n")?;
            }
        }
        for inv in &report.investigations {
            for e in &inv.attempts {
                let line = Line {
                    rule: rule_of(report, &e.finding),
                    outcome: "failure",
                    evidence: EvidenceOut::new(report, e).with_actor(),
                };
                crate::escape::json_to_writer(&mut *out, &line)?;
                out.write_all(b"\n")?;
            }
        }
        Ok(())
    }
}
