//! `--format table` (default): one row per actor, then a one-line scan summary. Every
//! value from an archive is made terminal-safe.

use std::io::{self, Write};

use super::{Exporter, rfc3339, terminal_safe};
use crate::engine::Report;
use crate::findings::ActorFindings;

/// The table exporter.
pub struct Table;

const HEADER: [&str; 6] = [
    "ACTOR",
    "EVENTS",
    "FIRST SEEN",
    "LAST SEEN",
    "SOURCE IPS",
    "TARGETS (BYPASS, EVENTS)",
];

/// At most this many targets and source IPs are listed per actor (the IPs column is
/// also padded, so it lists fewer); the JSON, CSV and NDJSON outputs have all of them.
const TARGETS_MAX: usize = 8;
const IPS_MAX: usize = 3;

fn listing(items: impl ExactSizeIterator<Item = String>, max: usize) -> String {
    let total = items.len();
    if total == 0 {
        return "-".to_string();
    }
    let mut shown: Vec<String> = items.take(max).collect();
    if total > max {
        shown.push(format!("+{} more", total - max));
    }
    shown.join(", ")
}

fn row(a: &ActorFindings) -> [String; 6] {
    let when =
        |t: &Option<chrono::DateTime<chrono::Utc>>| t.as_ref().map_or("-".to_string(), rfc3339);
    let targets = listing(
        a.targets.iter().map(|t| {
            let flag = match t.bypass_enabled {
                Some(true) => "on",
                Some(false) => "off",
                None => "?",
            };
            let name = t.identity.as_deref().unwrap_or("(none)");
            format!("{} ({flag}, {})", terminal_safe(name), t.events)
        }),
        TARGETS_MAX,
    );
    let ips = listing(a.source_ips.iter().map(|ip| terminal_safe(ip)), IPS_MAX);
    [
        terminal_safe(a.actor.as_deref().unwrap_or("(none)")),
        a.evidence.len().to_string(),
        when(&a.first_seen),
        when(&a.last_seen),
        ips,
        targets,
    ]
}

impl Exporter for Table {
    fn write(&self, report: &Report, out: &mut dyn Write) -> io::Result<()> {
        for r in &report.rules {
            writeln!(
                out,
                "rule: {} [{} / risk {}] {}",
                r.name, r.severity, r.risk_score, r.id
            )?;
        }
        if report.actors.is_empty() {
            writeln!(out, "no findings")?;
        } else {
            let rows: Vec<[String; 6]> = report.actors.iter().map(row).collect();
            let mut widths = HEADER.map(|h| h.chars().count());
            for r in &rows {
                for (w, cell) in widths.iter_mut().zip(r) {
                    *w = (*w).max(cell.chars().count());
                }
            }
            let line = |cells: &[String]| {
                let mut s = String::new();
                for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                    if i == cells.len() - 1 {
                        s.push_str(cell);
                    } else if i == 1 {
                        s.push_str(&format!("{cell:>w$}  "));
                    } else {
                        s.push_str(&format!("{cell:<w$}  "));
                    }
                }
                s
            };
            writeln!(out, "{}", line(&HEADER.map(String::from)))?;
            for r in &rows {
                writeln!(out, "{}", line(r))?;
            }
        }
        let c = &report.counts;
        writeln!(
            out,
            "{} events by {} actors; scanned {} files, {} bytes, {} lines ({} candidates, {} malformed), {} errors",
            report.events(),
            report.actors.len(),
            report.files,
            report.bytes,
            c.lines,
            c.candidates,
            c.malformed,
            report.errors.len()
        )
    }
}
