//! `--format timeline`: JSON lines for timeline tools (Timesketch; Timeline Explorer
//! through a CSV conversion). One line per event: each rule match, each failed attempt,
//! the start and the end of each bypass period of the accounts the report shows and,
//! when the context pass ran, each audit-tampering record of the actors.
//!
//! Every line carries the fields Timesketch's JSONL importer requires — `message`,
//! `datetime` (RFC 3339 in UTC) and `timestamp_desc` — then `timestamp` (microseconds
//! since the epoch, for older importers), `data_type` (what kind of event) and the
//! evidence. The same common keys are on every line, `null` where they do not apply, so
//! a fixed column pick (jq to CSV) works on any line. Lines are in time order; ties in
//! input order (input, line), then by kind, then rule, then report order: a total order
//! that depends on nothing but the report. An event without a time cannot be placed on
//! a timeline and is left out; [`undated`] counts them (the JSON report has them).

use std::io::{self, Write};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::ser::SerializeMap;

use crate::exporter::Exporter;
use crate::json::ValueOut;
use ualhunt_engine::Report;
use ualhunt_engine::allow::Entry;
use ualhunt_engine::analysis::Change;
use ualhunt_engine::analysis::bypass::{Account, ActorContext, Period};
use ualhunt_engine::analysis::context::Tampering;
use ualhunt_engine::findings::{At, Finding, Text, Value};
use ualhunt_engine::rule::Items;

/// The timeline exporter.
pub struct Timeline;

/// What a line is, in the order events at the same time and place are listed: the
/// change before the period it opens or closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Match,
    Attempt,
    PeriodStart,
    PeriodEnd,
    Tampering,
}

impl Kind {
    fn data_type(self) -> &'static str {
        match self {
            Kind::Match => "ualhunt:rule_match",
            Kind::Attempt => "ualhunt:failed_attempt",
            Kind::PeriodStart => "ualhunt:bypass_period_start",
            Kind::PeriodEnd => "ualhunt:bypass_period_end",
            Kind::Tampering => "ualhunt:audit_tampering",
        }
    }
}

/// What an event is about.
enum Item<'a> {
    /// A rule match or a failed attempt.
    Finding {
        finding: &'a Finding,
        change: Option<Change>,
        allowed: Option<&'a Entry>,
    },
    /// One end of a bypass period, with the change that made it, if it is known.
    Period {
        account: &'a Account,
        period: &'a Period,
        change: Option<&'a Finding>,
    },
    /// An audit-tampering record of an actor near one of its changes.
    Tampering {
        context: &'a ActorContext,
        tampering: &'a Tampering,
    },
}

struct Event<'a> {
    time: DateTime<Utc>,
    at: At,
    kind: Kind,
    rule: u16,
    item: Item<'a>,
}

/// Every event of the report that has a time, in timeline order.
fn events(report: &Report) -> Vec<Event<'_>> {
    let mut out = Vec::new();
    let mut push = |time: Option<DateTime<Utc>>, at: At, kind, rule, item| {
        if let Some(time) = time {
            out.push(Event {
                time,
                at,
                kind,
                rule,
                item,
            });
        }
    };
    for e in report.actors.iter().flat_map(|a| &a.evidence) {
        let f = &e.finding;
        let item = Item::Finding {
            finding: f,
            change: e.change,
            allowed: e.allowed.map(|i| &report.allowlist.entries[i]),
        };
        push(f.timestamp, f.at, Kind::Match, f.rule, item);
    }
    for inv in &report.investigations {
        for e in &inv.attempts {
            let f = &e.finding;
            let item = Item::Finding {
                finding: f,
                change: None,
                allowed: e.allowed.map(|i| &report.allowlist.entries[i]),
            };
            push(f.timestamp, f.at, Kind::Attempt, f.rule, item);
        }
        for account in &inv.accounts {
            let change_at = |at: Option<At>| {
                let at = at?;
                let c = account.changes.iter().find(|c| c.finding.at == at)?;
                Some(&c.finding)
            };
            for period in &account.periods {
                // A period that predates the data has no start, an open one no end:
                // nothing is missing there.
                if !period.predates_data {
                    let item = Item::Period {
                        account,
                        period,
                        change: change_at(period.start_at),
                    };
                    let at = period.start_at.unwrap_or_default();
                    push(period.start, at, Kind::PeriodStart, inv.rule, item);
                }
                if !period.open {
                    let item = Item::Period {
                        account,
                        period,
                        change: change_at(period.end_at),
                    };
                    let at = period.end_at.unwrap_or_default();
                    push(period.end, at, Kind::PeriodEnd, inv.rule, item);
                }
            }
        }
        for context in inv.actor_context.iter().flatten() {
            for tampering in &context.tampering {
                let item = Item::Tampering { context, tampering };
                let (t, at) = (Some(tampering.timestamp), tampering.at);
                push(t, at, Kind::Tampering, inv.rule, item);
            }
        }
    }
    // Stable: events equal in all of these keep the report's (deterministic) order.
    out.sort_by_key(|e| (e.time, e.at, e.kind, e.rule));
    out
}

/// How many events of the report a timeline leaves out for having no time, counted
/// without building the timeline.
pub fn undated(report: &Report) -> usize {
    let findings = report
        .actors
        .iter()
        .flat_map(|a| a.evidence.iter().map(|e| &e.finding));
    let attempts = report
        .investigations
        .iter()
        .flat_map(|i| i.attempts.iter().map(|e| &e.finding));
    let periods = report
        .investigations
        .iter()
        .flat_map(|i| &i.accounts)
        .flat_map(|a| &a.periods);
    findings
        .chain(attempts)
        .filter(|f| f.timestamp.is_none())
        .count()
        + periods
            .map(|p| {
                usize::from(!p.predates_data && p.start.is_none())
                    + usize::from(!p.open && p.end.is_none())
            })
            .sum::<usize>()
}

impl Exporter for Timeline {
    fn write(&self, report: &Report, out: &mut dyn Write) -> io::Result<()> {
        for event in events(report) {
            crate::escape::json_to_writer(&mut *out, &Line { report, event })?;
            out.write_all(b"\n")?;
        }
        Ok(())
    }
}

/// The text of a finding's evidence item (an index from its rule's [`Items`]).
pub(super) fn evidence_text(f: &Finding, index: Option<usize>) -> Option<&str> {
    f.field(index)?.as_text()
}

fn or<'a>(text: Option<&'a str>, missing: &'a str) -> &'a str {
    text.filter(|t| !t.is_empty()).unwrap_or(missing)
}

/// A rule match that changes no bypass, in one sentence: who did which operation (the
/// record's raw `Operation`, as every list of the reports spells it) to what (the rule's
/// `target` item), without the rule's name (the line or document names the rule).
fn what_happened(f: &Finding, items: &Items) -> String {
    let actor = or(f.actor.as_deref(), "(unknown actor)");
    let action = f.action.as_deref().filter(|a| !a.trim().is_empty());
    match (
        action,
        evidence_text(f, items.target).filter(|t| !t.is_empty()),
    ) {
        (Some(action), Some(target)) => format!("{action} by {actor} on {target}"),
        (Some(action), None) => format!("{action} by {actor}"),
        (None, Some(target)) => format!("a record by {actor} on {target}"),
        (None, None) => format!("a record by {actor}"),
    }
}

/// One sentence for a rule match (`failed`: a failed attempt), as the timeline and the
/// ECS documents show it; neither repeats the rule's name.
pub(super) fn describe(
    items: &Items,
    f: &Finding,
    change: Option<Change>,
    failed: bool,
    allowed: Option<&Entry>,
) -> String {
    let actor = or(f.actor.as_deref(), "(unknown actor)");
    let target = or(evidence_text(f, items.target), "(no target)");
    let mut text = if failed {
        let status = evidence_text(f, items.result_status)
            .map(|s| format!(" (ResultStatus {s})"))
            .unwrap_or_default();
        match f.field(items.flag).and_then(Value::as_bool) {
            Some(on) => format!(
                "{actor} tried to turn the mailbox audit bypass {} for {target} and failed{status}",
                if on { "ON" } else { "OFF" }
            ),
            None => format!(
                "{actor} tried to change the mailbox audit bypass of {target} and failed{status}"
            ),
        }
    } else {
        match change {
            Some(Change::Enable) => {
                format!("{actor} turned the mailbox audit bypass ON for {target}")
            }
            Some(Change::Disable) => {
                format!("{actor} turned the mailbox audit bypass OFF for {target}")
            }
            Some(Change::Unknown) => format!(
                "{actor} changed the mailbox audit bypass of {target} (AuditBypassEnabled unreadable)"
            ),
            None => what_happened(f, items),
        }
    };
    if let Some(entry) = allowed {
        text.push_str(&format!(" [allowed: {}]", entry.reason));
    }
    text
}

/// `24h`, `90m`, `45s`.
fn duration(d: chrono::Duration) -> String {
    let s = d.num_seconds();
    if s != 0 && s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else if s != 0 && s % 60 == 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

fn mailbox_counts(p: &Period) -> String {
    p.mailbox_audit
        .map(|[b, d, a]| format!("; mailbox audit records {b} before / {d} during / {a} after"))
        .unwrap_or_default()
}

/// One timeline line.
struct Line<'a> {
    report: &'a Report,
    event: Event<'a>,
}

/// The common keys of every line, in order; evidence items of a rule file that bear
/// one of these names are not written twice.
const COMMON: [&str; 17] = [
    "message",
    "datetime",
    "timestamp",
    "timestamp_desc",
    "data_type",
    "rule_id",
    "rule_name",
    "actor",
    "target",
    "change",
    "outcome",
    "allowed",
    "source_ip",
    "record_id",
    "command_line",
    "path",
    "line",
];

/// The common values of a line (`message` to `line` but the time fields).
struct Common<'a> {
    message: String,
    desc: &'static str,
    actor: Option<&'a str>,
    target: Option<&'a str>,
    change: Option<&'static str>,
    outcome: Option<&'static str>,
    allowed: Option<&'a str>,
    source_ip: Option<&'a str>,
    record_id: Option<&'a str>,
    command_line: Option<&'a str>,
}

impl<'a> Line<'a> {
    fn common(&self) -> Common<'a> {
        let r = self.report;
        let e = &self.event;
        let rule = &r.rules[usize::from(e.rule)];
        let items = &r.items[usize::from(e.rule)];
        match e.item {
            Item::Finding {
                finding: f,
                change,
                allowed,
            } => {
                let failed = e.kind == Kind::Attempt;
                let desc = match (failed, change) {
                    (true, _) => "Failed attempt",
                    (false, Some(Change::Enable)) => "Mailbox audit bypass enabled",
                    (false, Some(Change::Disable)) => "Mailbox audit bypass disabled",
                    (false, Some(Change::Unknown)) => "Mailbox audit bypass changed",
                    (false, None) => "Rule match",
                };
                let mut message = describe(items, f, change, failed, allowed);
                if change.is_none() && !failed {
                    // A plain rule match: the rule is what the line is about.
                    message = format!("{}: {message}", rule.shown_name());
                }
                Common {
                    message,
                    desc,
                    actor: f.actor.as_deref(),
                    target: evidence_text(f, items.target),
                    change: change.map(Change::name),
                    outcome: Some(if failed { "failure" } else { "success" }),
                    allowed: allowed.map(|a| a.reason.as_str()),
                    source_ip: f.source_ip.as_deref(),
                    record_id: f.record_id.as_deref(),
                    command_line: evidence_text(f, items.command_line),
                }
            }
            Item::Period {
                account,
                period: p,
                change,
            } => {
                let start = e.kind == Kind::PeriodStart;
                let who = |t: &'a Option<Text>| t.as_deref();
                let message = if start {
                    format!(
                        "Mailbox audit bypass period of {} begins (set by {}){}{}",
                        account.identity,
                        or(who(&p.set_by), "(unknown actor)"),
                        match crate::time::open_as_of(p, &r.window) {
                            Some(until) => format!("; {}", crate::time::still_open_at(&until)),
                            None if p.open => "; still on at the end of the data".to_string(),
                            None => String::new(),
                        },
                        mailbox_counts(p)
                    )
                } else {
                    format!(
                        "Mailbox audit bypass period of {} ends (ended by {}){}{}",
                        account.identity,
                        or(who(&p.ended_by), "(unknown actor)"),
                        if p.predates_data {
                            "; it began before the data"
                        } else {
                            ""
                        },
                        mailbox_counts(p)
                    )
                };
                let allowed = account.allowed.map(|i| &r.allowlist.entries[i]);
                Common {
                    message,
                    desc: if start {
                        "Bypass period start"
                    } else {
                        "Bypass period end"
                    },
                    actor: who(if start { &p.set_by } else { &p.ended_by }),
                    target: Some(&account.identity),
                    change: Some(if start { "enable" } else { "disable" }),
                    outcome: None,
                    allowed: allowed.map(|a| a.reason.as_str()),
                    source_ip: change.and_then(|f| f.source_ip.as_deref()),
                    record_id: change.and_then(|f| f.record_id.as_deref()),
                    command_line: change.and_then(|f| evidence_text(f, items.command_line)),
                }
            }
            Item::Tampering { context, tampering } => {
                let command = tampering
                    .command_line
                    .as_deref()
                    .map(|c| format!(": {c}"))
                    .unwrap_or_default();
                let allowed = r.allowlist.find(&context.actor);
                Common {
                    message: format!(
                        "{} ran {} (audit tampering, within {} of one of their bypass changes){command}",
                        context.actor,
                        tampering.operation,
                        duration(context.window)
                    ),
                    desc: "Audit tampering",
                    actor: Some(&context.actor),
                    target: None,
                    change: None,
                    outcome: None,
                    allowed: allowed.map(|i| r.allowlist.entries[i].reason.as_str()),
                    source_ip: None,
                    record_id: None,
                    command_line: tampering.command_line.as_deref(),
                }
            }
        }
    }
}

impl Serialize for Line<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.report;
        let e = &self.event;
        let rule = &r.rules[usize::from(e.rule)];
        let c = self.common();
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("message", &c.message)?;
        m.serialize_entry("datetime", &super::Rfc3339::new(&e.time))?;
        m.serialize_entry("timestamp", &e.time.timestamp_micros())?;
        m.serialize_entry("timestamp_desc", c.desc)?;
        m.serialize_entry("data_type", e.kind.data_type())?;
        m.serialize_entry("rule_id", &rule.id)?;
        m.serialize_entry("rule_name", &rule.name)?;
        if let Some(author) = &rule.author {
            m.serialize_entry("rule_author", author)?;
        }
        m.serialize_entry("actor", &c.actor)?;
        m.serialize_entry("target", &c.target)?;
        m.serialize_entry("change", &c.change)?;
        m.serialize_entry("outcome", &c.outcome)?;
        m.serialize_entry("allowed", &c.allowed)?;
        m.serialize_entry("source_ip", &c.source_ip)?;
        m.serialize_entry("record_id", &c.record_id)?;
        m.serialize_entry("command_line", &c.command_line)?;
        m.serialize_entry("path", &r.inputs.path(e.at.input as usize))?;
        m.serialize_entry("line", &(e.at.line + 1))?;
        match e.item {
            Item::Finding { finding: f, .. } => {
                for (spec, value) in rule.evidence.iter().zip(&f.fields) {
                    if COMMON.contains(&spec.name.as_str()) {
                        continue;
                    }
                    m.serialize_entry(&spec.name, &value.as_ref().map(ValueOut))?;
                }
            }
            Item::Period { period: p, .. } => {
                let time = |t: &Option<DateTime<Utc>>| t.as_ref().map(super::Rfc3339::new);
                m.serialize_entry("period_start", &time(&p.start))?;
                m.serialize_entry("period_end", &time(&p.end))?;
                m.serialize_entry("open", &p.open)?;
                let open_as_of = crate::time::open_as_of(p, &r.window);
                m.serialize_entry("open_as_of", &open_as_of.as_ref().map(super::Rfc3339::new))?;
                m.serialize_entry("predates_data", &p.predates_data)?;
                m.serialize_entry("set_by", &p.set_by.as_deref())?;
                let place = |at: &Option<ualhunt_engine::findings::At>| {
                    at.as_ref().map(|at| crate::json::PlaceOut::new(r, at))
                };
                m.serialize_entry("set_at", &place(&p.start_at))?;
                m.serialize_entry("ended_by", &p.ended_by.as_deref())?;
                m.serialize_entry("ended_at", &place(&p.end_at))?;
                let count = |k: usize| p.mailbox_audit.map(|m| m[k]);
                m.serialize_entry("mailbox_audit_before", &count(0))?;
                m.serialize_entry("mailbox_audit_during", &count(1))?;
                m.serialize_entry("mailbox_audit_after", &count(2))?;
            }
            Item::Tampering { context, tampering } => {
                m.serialize_entry("operation", &*tampering.operation)?;
                m.serialize_entry("context_window_seconds", &context.window.num_seconds())?;
            }
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_the_flag() {
        assert_eq!(duration(chrono::Duration::hours(24)), "24h");
        assert_eq!(duration(chrono::Duration::minutes(90)), "90m");
        assert_eq!(duration(chrono::Duration::seconds(45)), "45s");
        assert_eq!(duration(chrono::Duration::zero()), "0s");
    }

    #[test]
    fn kinds_order_a_change_before_its_period() {
        assert!(Kind::Match < Kind::PeriodStart);
        assert!(Kind::Match < Kind::PeriodEnd);
        assert!(Kind::PeriodStart < Kind::PeriodEnd);
    }
}
