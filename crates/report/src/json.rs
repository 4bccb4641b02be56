//! `--format json`: one document, schema version 3. The one complete record of a run:
//! every other format is derived from the same report.
//!
//! Each finding is written once. A rule match is in `actors[].evidence`; the rules
//! that fired (`by_rule[].evidence`) and the other rules' matches beside an
//! investigation (`related[].evidence`) point at it as `[actor, index]`, its position
//! in `actors` and in that actor's `evidence`. Failed attempts, which are no rule
//! match, are in their investigation's `attempts`. (Version 2 repeated every match in
//! `by_rule[].findings` and `related[].finding`.)

use std::borrow::Cow;
use std::io::{self, Write};

use rustc_hash::FxHashMap;
use serde::Serialize;
use serde::ser::SerializeMap;

use crate::exporter::Exporter;
use crate::time::Rfc3339;
use ualhunt_engine::Report;
use ualhunt_engine::allow::Entry;
use ualhunt_engine::analysis::Evidence;
use ualhunt_engine::analysis::actors::ActorFindings;
use ualhunt_engine::analysis::bypass::{Account, ActorContext, Investigation, Period};
use ualhunt_engine::analysis::context::{OpKey, OpStat, Tampering};
use ualhunt_engine::error::{InputError, Warning};
use ualhunt_engine::findings::{At, Finding, Value};
use ualhunt_engine::report::MalformedLine;
use ualhunt_engine::rule::{Alerting, Threat};

/// The JSON exporter.
pub struct Json;

/// The schema version written.
pub const VERSION: u32 = 3;

/// The document's members before `actors` ([`Json`] writes the document in three parts:
/// this, `actors`, [`Tail`]).
#[derive(Serialize)]
struct Head<'a> {
    version: u32,
    rules: Vec<RuleOut<'a>>,
    scan: ScanOut<'a>,
    window: WindowOut,
}

/// The document's members after `actors`.
#[derive(Serialize)]
struct Tail<'a> {
    coverage: CoverageOut<'a>,
    /// Every investigation (one per rule that asks for it).
    investigations: Vec<BypassOut<'a>>,
    /// The findings of each rule that fired, in the table's order (severity first).
    by_rule: Vec<ByRuleOut<'a>>,
    /// Rules loaded that cannot run offline, with why.
    not_run: &'a [ualhunt_engine::rule::load::NotRun],
    allowlist: AllowlistOut<'a>,
}

#[derive(Serialize)]
struct ByRuleOut<'a> {
    rule_id: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    author: Option<&'a str>,
    /// Elastic's `building_block_type`, for a building-block rule (its findings count
    /// in no verdict unless `--building-blocks`).
    #[serde(skip_serializing_if = "Option::is_none")]
    building_block: Option<&'a str>,
    severity: &'a str,
    risk_score: u32,
    events: u64,
    allowed: u64,
    actors: Vec<Option<&'a str>>,
    first_seen: Option<Rfc3339>,
    last_seen: Option<Rfc3339>,
    /// Where its matches are: `[actor, index]` into `actors[actor].evidence[index]`.
    evidence: Vec<[usize; 2]>,
}

#[derive(Serialize)]
pub(super) struct RuleOut<'a> {
    pub id: &'a str,
    pub name: &'a str,
    /// Who wrote it (Sigma rules: the Detection Rule License asks reports to keep it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<&'a str>,
    /// Elastic's `building_block_type`, for a building-block rule: a signal for other
    /// rules, counted in no verdict unless `--building-blocks`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub building_block: Option<&'a str>,
    pub severity: &'a str,
    pub risk_score: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threat: Option<&'a [Threat]>,
    /// Matched events reported for the rule (JSON report only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<u64>,
    /// Distinct actors of those events (JSON report only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actors: Option<u64>,
    /// How the rule's matches alert (`new_terms`, `threshold`; JSON report only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alerting: Option<&'a Alerting>,
    /// Matches its alerting held back (JSON report only, rules with alerting).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_back: Option<u64>,
    /// Known benign causes (JSON report only, when the rule names some).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub false_positives: Option<&'a [String]>,
    /// Where to read more (JSON report only, when the rule names some).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub references: Option<&'a [String]>,
}

impl<'a> RuleOut<'a> {
    /// A rule's metadata, without the run's figures (what NDJSON lines carry).
    pub(super) fn meta(r: &'a ualhunt_engine::rule::RuleMeta) -> RuleOut<'a> {
        RuleOut {
            id: &r.id,
            name: &r.name,
            author: r.author.as_deref(),
            building_block: r.building_block.as_deref(),
            severity: &r.severity,
            risk_score: r.risk_score,
            query: None,
            threat: None,
            events: None,
            actors: None,
            alerting: None,
            held_back: None,
            false_positives: None,
            references: None,
        }
    }
}

#[derive(Serialize)]
struct ScanOut<'a> {
    files: u64,
    bytes: u64,
    lines: u64,
    blank: u64,
    records: u64,
    not_candidate: u64,
    candidates: u64,
    matched: u64,
    not_matched: u64,
    context_selected: u64,
    malformed: u64,
    outside_window: u64,
    duplicates: u64,
    held_back: u64,
    events: usize,
    attempts: usize,
    context_pass: bool,
    errors: Vec<ErrorOut<'a>>,
    warnings: &'a [Warning],
    malformed_samples: &'a [MalformedLine],
}

#[derive(Serialize)]
struct ErrorOut<'a> {
    path: &'a str,
    message: String,
    kind: &'static str,
    offset: Option<u64>,
    line: Option<u64>,
}

impl<'a> ErrorOut<'a> {
    fn new(e: &'a InputError) -> ErrorOut<'a> {
        ErrorOut {
            path: e.path(),
            message: e.to_string(),
            kind: e.kind(),
            offset: e.offset(),
            line: e.line(),
        }
    }
}

#[derive(Serialize)]
struct WindowOut {
    since: Option<Rfc3339>,
    until: Option<Rfc3339>,
}

/// An actor's members before its `evidence` (written after them by [`Json`]).
#[derive(Serialize)]
struct ActorOut<'a> {
    actor: Option<&'a str>,
    events: usize,
    first_seen: Option<Rfc3339>,
    last_seen: Option<Rfc3339>,
    user_types: Vec<&'a str>,
    targets: Vec<TargetOut<'a>>,
    source_ips: Vec<&'a str>,
}

/// One rule's target: `bypass_enabled` only for a rule with a flag item (the bypass
/// rule), where `null` means the last event did not say.
#[derive(Serialize)]
struct TargetOut<'a> {
    rule_id: &'a str,
    identity: Option<&'a str>,
    events: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    bypass_enabled: Option<Option<bool>>,
}

/// One finding with its evidence items flattened in, as JSON and NDJSON write it.
pub(super) struct EvidenceOut<'a> {
    report: &'a Report,
    finding: &'a Finding,
    change: Option<&'static str>,
    allowed: Option<&'a Entry>,
    /// Whether to write the actor too (NDJSON lines stand alone).
    with_actor: bool,
}

impl<'a> EvidenceOut<'a> {
    pub(super) fn new(report: &'a Report, e: &'a Evidence) -> EvidenceOut<'a> {
        EvidenceOut {
            report,
            finding: &e.finding,
            change: e.change.map(|c| c.name()),
            allowed: e.allowed.map(|i| &report.allowlist.entries[i]),
            with_actor: false,
        }
    }

    pub(super) fn with_actor(mut self) -> Self {
        self.with_actor = true;
        self
    }
}

impl EvidenceOut<'_> {
    /// Appends the evidence as [`crate::escape::json_to_writer`] writes its
    /// [`Serialize`] form, byte for byte (a test holds them equal), with the keys
    /// written as they are and plain values copied ([`crate::escape::json_str`]): a
    /// report of a hundred thousand events spent most of its JSON time in serde's
    /// examination of every byte of every key and value.
    fn write_json(&self, out: &mut Vec<u8>) -> io::Result<()> {
        use crate::escape::json_str;
        let opt = |out: &mut Vec<u8>, text: Option<&str>| match text {
            Some(t) => json_str(out, t),
            None => {
                out.extend_from_slice(b"null");
                Ok(())
            }
        };
        let f = self.finding;
        let r = self.report;
        let mut numbers = itoa::Buffer::new();
        out.extend_from_slice(b"{\"rule_id\":");
        json_str(out, &r.rules[usize::from(f.rule)].id)?;
        if self.with_actor {
            out.extend_from_slice(b",\"actor\":");
            opt(out, f.actor.as_deref())?;
        }
        out.extend_from_slice(b",\"path\":");
        json_str(out, &r.inputs.path(f.at.input as usize))?;
        out.extend_from_slice(b",\"member\":");
        opt(out, r.inputs.member(f.at.input as usize).as_deref())?;
        out.extend_from_slice(b",\"line\":");
        out.extend_from_slice(numbers.format(f.at.line + 1).as_bytes());
        out.extend_from_slice(b",\"offset\":");
        out.extend_from_slice(numbers.format(f.at.offset).as_bytes());
        out.extend_from_slice(b",\"timestamp\":");
        opt(
            out,
            f.timestamp
                .as_ref()
                .map(Rfc3339::new)
                .as_ref()
                .map(Rfc3339::as_str),
        )?;
        out.extend_from_slice(b",\"record_id\":");
        opt(out, f.record_id.as_deref())?;
        out.extend_from_slice(b",\"source_ip\":");
        opt(out, f.source_ip.as_deref())?;
        if let Some(rule) = report_rule(r, f) {
            for (spec, value) in rule.evidence.iter().zip(&f.fields) {
                out.push(b',');
                json_str(out, &spec.name)?;
                out.push(b':');
                match value {
                    None => out.extend_from_slice(b"null"),
                    Some(Value::Bool(true)) => out.extend_from_slice(b"true"),
                    Some(Value::Bool(false)) => out.extend_from_slice(b"false"),
                    Some(Value::Text(t)) => json_str(out, t)?,
                }
            }
        }
        out.extend_from_slice(b",\"change\":");
        opt(out, self.change)?;
        out.extend_from_slice(b",\"allowed\":");
        match self.allowed {
            Some(entry) => crate::escape::json_to_writer(&mut *out, entry)?,
            None => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
        Ok(())
    }
}

fn report_rule<'a>(report: &'a Report, f: &Finding) -> Option<&'a ualhunt_engine::rule::RuleMeta> {
    report.rules.get(usize::from(f.rule))
}

impl Serialize for EvidenceOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let f = self.finding;
        let r = self.report;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("rule_id", &r.rules[usize::from(f.rule)].id)?;
        if self.with_actor {
            m.serialize_entry("actor", &f.actor.as_deref())?;
        }
        m.serialize_entry("path", &r.inputs.path(f.at.input as usize))?;
        m.serialize_entry("member", &r.inputs.member(f.at.input as usize))?;
        m.serialize_entry("line", &(f.at.line + 1))?;
        m.serialize_entry("offset", &f.at.offset)?;
        m.serialize_entry("timestamp", &f.timestamp.as_ref().map(Rfc3339::new))?;
        m.serialize_entry("record_id", &f.record_id.as_deref())?;
        m.serialize_entry("source_ip", &f.source_ip.as_deref())?;
        if let Some(rule) = report_rule(r, f) {
            for (spec, value) in rule.evidence.iter().zip(&f.fields) {
                m.serialize_entry(&spec.name, &value.as_ref().map(ValueOut))?;
            }
        }
        m.serialize_entry("change", &self.change)?;
        m.serialize_entry("allowed", &self.allowed)?;
        m.end()
    }
}

/// An evidence value as JSON: a boolean or a string.
pub(super) struct ValueOut<'a>(pub(super) &'a Value);

impl Serialize for ValueOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Text(t) => s.serialize_str(t),
        }
    }
}

fn actor_out<'a>(report: &'a Report, a: &'a ActorFindings) -> ActorOut<'a> {
    ActorOut {
        actor: a.actor.as_deref(),
        events: a.evidence.len(),
        first_seen: a.first_seen.as_ref().map(Rfc3339::new),
        last_seen: a.last_seen.as_ref().map(Rfc3339::new),
        user_types: a.user_types.iter().map(|t| &**t).collect(),
        targets: a
            .targets
            .iter()
            .map(|t| TargetOut {
                rule_id: &report.rules[usize::from(t.rule)].id,
                identity: t.identity.as_deref(),
                events: t.events,
                bypass_enabled: t.has_state(&report.items).then_some(t.flag),
            })
            .collect(),
        source_ips: a.source_ips.iter().map(|t| &**t).collect(),
    }
}

/// How many findings one task serializes (a task's findings are written in order).
const EVIDENCE_TASK: usize = 512;

/// How many tasks run at once: the findings' text held before it is written is
/// bounded by this many tasks', whatever the number of findings.
const TASKS_AT_ONCE: usize = 32;

/// Writes an actor's findings as the members of a JSON array (comma-separated, no
/// brackets), serialized in parallel on `pool` in runs of [`EVIDENCE_TASK`] findings,
/// [`TASKS_AT_ONCE`] runs at a time, each written in turn: the bytes are those of one
/// serializer writing them in order.
fn write_evidence(
    pool: &rayon::ThreadPool,
    out: &mut impl Write,
    report: &Report,
    evidence: &[Evidence],
) -> io::Result<()> {
    use rayon::prelude::*;
    let run = |findings: &[Evidence]| -> io::Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(findings.len() * 512);
        for (i, e) in findings.iter().enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            EvidenceOut::new(report, e).write_json(&mut buf)?;
        }
        Ok(buf)
    };
    for (w, window) in evidence.chunks(EVIDENCE_TASK * TASKS_AT_ONCE).enumerate() {
        if w > 0 {
            out.write_all(b",")?;
        }
        if window.len() <= EVIDENCE_TASK {
            out.write_all(&run(window)?)?;
            continue;
        }
        let parts: Vec<io::Result<Vec<u8>>> =
            pool.install(|| window.par_chunks(EVIDENCE_TASK).map(run).collect());
        for (i, part) in parts.into_iter().enumerate() {
            if i > 0 {
                out.write_all(b",")?;
            }
            out.write_all(&part?)?;
        }
    }
    Ok(())
}

/// Writes `value` (serialized as a JSON object) without its closing brace, for members
/// written after it.
fn write_open<T: Serialize>(out: &mut impl Write, value: &T) -> io::Result<()> {
    let mut buf = Vec::new();
    crate::escape::json_to_writer(&mut buf, value)?;
    debug_assert_eq!(buf.last(), Some(&b'}'));
    out.write_all(&buf[..buf.len() - 1])
}

/// Writes the members of `value` (serialized as a JSON object with at least one) after
/// members written before them, and its closing brace.
fn write_rest<T: Serialize>(out: &mut impl Write, value: &T) -> io::Result<()> {
    let mut buf = Vec::new();
    crate::escape::json_to_writer(&mut buf, value)?;
    debug_assert!(buf.starts_with(b"{\""));
    out.write_all(b",")?;
    out.write_all(&buf[1..])
}

#[derive(Serialize)]
struct DayOut {
    date: String,
    records: u64,
}

#[derive(Serialize)]
struct CoverageOut<'a> {
    first: Option<Rfc3339>,
    last: Option<Rfc3339>,
    records: u64,
    undated: u64,
    days: Vec<DayOut>,
    gap_days: Vec<String>,
    exchange_admin_records: u64,
    conclusive: bool,
    reasons: &'a [String],
    /// Rule matches that repeated an earlier one's record id (`scan.duplicates`): the
    /// inputs repeat records, which `records` and `days` count each time they are read.
    repeated_matches: u64,
}

#[derive(Serialize)]
struct BypassOut<'a> {
    rule_id: &'a str,
    context_pass: bool,
    accounts: Vec<AccountOut<'a>>,
    attempts: Vec<EvidenceOut<'a>>,
    attempts_outside_window: u64,
    actor_context: Option<Vec<ActorContextOut<'a>>>,
    /// Other rules' matches by the changers (within the context window of a change)
    /// and the bypassed accounts (inside a period).
    related: Vec<RelatedOut<'a>>,
}

#[derive(Serialize)]
struct RelatedOut<'a> {
    who: &'a str,
    role: ualhunt_engine::analysis::bypass::Role,
    rule_name: &'a str,
    severity: &'a str,
    /// Where the match is: `[actor, index]` into `actors[actor].evidence[index]`.
    evidence: Option<[usize; 2]>,
}

#[derive(Serialize)]
struct AccountOut<'a> {
    identity: &'a str,
    spellings: &'a [String],
    state_at_end: ualhunt_engine::analysis::bypass::State,
    allowed: Option<&'a Entry>,
    changes: Vec<ChangeOut<'a>>,
    periods: Vec<PeriodOut<'a>>,
    blind_spot: Option<BlindSpotOut<'a>>,
}

#[derive(Serialize)]
struct ChangeOut<'a> {
    timestamp: Option<Rfc3339>,
    change: &'static str,
    actor: Option<&'a str>,
    path: Cow<'a, str>,
    line: u64,
    record_id: Option<&'a str>,
    command_line: Option<&'a str>,
}

#[derive(Serialize)]
struct PeriodOut<'a> {
    start: Option<Rfc3339>,
    end: Option<Rfc3339>,
    open: bool,
    /// Under `--until`, the window's end for a period open there (what the table's
    /// `OPEN at T (--until)` says); else `null`.
    open_as_of: Option<Rfc3339>,
    predates_data: bool,
    set_by: Option<&'a str>,
    /// Where the record that set it is (`null` for a period that predates the data).
    set_at: Option<PlaceOut<'a>>,
    ended_by: Option<&'a str>,
    /// Where the record that ended it is (`null` while it is open).
    ended_at: Option<PlaceOut<'a>>,
    mailbox_audit_before: Option<u64>,
    mailbox_audit_during: Option<u64>,
    mailbox_audit_after: Option<u64>,
}

/// Where a record is: `path` (`archive.zip!entry` for a zip member) and its 1-based
/// `line`, as a change's and an evidence item's.
#[derive(Serialize)]
pub(crate) struct PlaceOut<'a> {
    path: Cow<'a, str>,
    line: u64,
}

impl<'a> PlaceOut<'a> {
    pub(crate) fn new(report: &'a Report, at: &At) -> PlaceOut<'a> {
        PlaceOut {
            path: report.inputs.path(at.input as usize),
            line: at.line + 1,
        }
    }
}

#[derive(Serialize)]
struct BlindSpotOut<'a> {
    mailbox_audit_before: u64,
    mailbox_audit_during: u64,
    mailbox_audit_after: u64,
    mailbox_audit_per_day: Vec<DayOut>,
    other_activity_during: Vec<OpOut<'a>>,
}

#[derive(Serialize)]
struct OpOut<'a> {
    workload: &'a str,
    operation: &'a str,
    count: u64,
    first: Option<Rfc3339>,
    last: Option<Rfc3339>,
    source_ips: Vec<&'a str>,
}

fn op_out<'a>((k, s): &'a (OpKey, OpStat)) -> OpOut<'a> {
    OpOut {
        workload: &k.0,
        operation: &k.1,
        count: s.count,
        first: s.first.as_ref().map(Rfc3339::new),
        last: s.last.as_ref().map(Rfc3339::new),
        source_ips: s.source_ips.iter().map(|t| &**t).collect(),
    }
}

#[derive(Serialize)]
struct ActorContextOut<'a> {
    actor: &'a str,
    spelled: &'a str,
    changes: u64,
    window_seconds: i64,
    operations: Vec<OpOut<'a>>,
    source_ips: Vec<&'a str>,
    tampering: Vec<TamperingOut<'a>>,
}

#[derive(Serialize)]
struct TamperingOut<'a> {
    timestamp: Rfc3339,
    operation: &'a str,
    path: Cow<'a, str>,
    line: u64,
    command_line: Option<&'a str>,
}

#[derive(Serialize)]
struct AllowlistOut<'a> {
    entries: usize,
    expired: Vec<&'a Entry>,
}

fn change_out<'a>(
    report: &'a Report,
    c: &'a ualhunt_engine::analysis::bypass::ChangeItem,
) -> ChangeOut<'a> {
    let f = &c.finding;
    let command_line = report.text(f, report.items(f).command_line);
    ChangeOut {
        timestamp: f.timestamp.as_ref().map(Rfc3339::new),
        change: c.change.name(),
        actor: f.actor.as_deref(),
        path: report.inputs.path(f.at.input as usize),
        line: f.at.line + 1,
        record_id: f.record_id.as_deref(),
        command_line,
    }
}

fn period_out<'a>(report: &'a Report, p: &'a Period) -> PeriodOut<'a> {
    PeriodOut {
        start: p.start.as_ref().map(Rfc3339::new),
        end: p.end.as_ref().map(Rfc3339::new),
        open: p.open,
        open_as_of: crate::time::open_as_of(p, &report.window)
            .as_ref()
            .map(Rfc3339::new),
        predates_data: p.predates_data,
        set_by: p.set_by.as_deref(),
        set_at: p.start_at.as_ref().map(|at| PlaceOut::new(report, at)),
        ended_by: p.ended_by.as_deref(),
        ended_at: p.end_at.as_ref().map(|at| PlaceOut::new(report, at)),
        mailbox_audit_before: p.mailbox_audit.map(|m| m[0]),
        mailbox_audit_during: p.mailbox_audit.map(|m| m[1]),
        mailbox_audit_after: p.mailbox_audit.map(|m| m[2]),
    }
}

fn account_out<'a>(report: &'a Report, a: &'a Account) -> AccountOut<'a> {
    AccountOut {
        identity: &a.identity,
        spellings: &a.spellings,
        state_at_end: a.state_at_end,
        allowed: a.allowed.map(|i| &report.allowlist.entries[i]),
        changes: a.changes.iter().map(|c| change_out(report, c)).collect(),
        periods: a.periods.iter().map(|p| period_out(report, p)).collect(),
        blind_spot: a.blind_spot.as_ref().map(|b| BlindSpotOut {
            mailbox_audit_before: b.before,
            mailbox_audit_during: b.during,
            mailbox_audit_after: b.after,
            mailbox_audit_per_day: b
                .per_day
                .iter()
                .map(|(d, n)| DayOut {
                    date: d.to_string(),
                    records: *n,
                })
                .collect(),
            other_activity_during: b.other_during.iter().map(op_out).collect(),
        }),
    }
}

fn actor_context_out<'a>(report: &'a Report, c: &'a ActorContext) -> ActorContextOut<'a> {
    ActorContextOut {
        actor: &c.actor,
        spelled: &c.spelled,
        changes: c.changes,
        window_seconds: c.window.num_seconds(),
        operations: c.operations.iter().map(op_out).collect(),
        source_ips: c.source_ips.iter().map(|t| &**t).collect(),
        tampering: c
            .tampering
            .iter()
            .map(|t| tampering_out(report, t))
            .collect(),
    }
}

fn tampering_out<'a>(report: &'a Report, t: &'a Tampering) -> TamperingOut<'a> {
    TamperingOut {
        timestamp: Rfc3339::new(&t.timestamp),
        operation: &t.operation,
        path: report.inputs.path(t.at.input as usize),
        line: t.at.line + 1,
        command_line: t.command_line.as_deref(),
    }
}

fn bypass_out<'a>(report: &'a Report, inv: &'a Investigation, at: &Positions) -> BypassOut<'a> {
    BypassOut {
        rule_id: &report.rules[usize::from(inv.rule)].id,
        context_pass: report.context_ran,
        accounts: inv
            .accounts
            .iter()
            .map(|a| account_out(report, a))
            .collect(),
        attempts: inv
            .attempts
            .iter()
            .map(|e| EvidenceOut::new(report, e).with_actor())
            .collect(),
        attempts_outside_window: inv.attempts_outside_window,
        actor_context: inv
            .actor_context
            .as_ref()
            .map(|list| list.iter().map(|c| actor_context_out(report, c)).collect()),
        related: inv
            .related
            .iter()
            .map(|r| {
                let rule = &report.rules[usize::from(r.finding.rule)];
                RelatedOut {
                    who: &r.who,
                    role: r.role,
                    rule_name: &rule.name,
                    severity: &rule.severity,
                    evidence: at.get(&r.finding),
                }
            })
            .collect(),
    }
}

/// Where the rule matches an investigation relates are in `actors`: `[actor, index]`,
/// found by the match's rule and place (a rule matches a record once).
struct Positions(FxHashMap<(u16, u32, u64), Option<[usize; 2]>>);

impl Positions {
    /// The positions of the matches the investigations relate (a handful), not of
    /// every match: a report of 100,000 events hashed each one for them.
    fn of(report: &Report) -> Positions {
        let mut map: FxHashMap<_, Option<[usize; 2]>> = report
            .investigations
            .iter()
            .flat_map(|inv| &inv.related)
            .map(|r| (Positions::key(&r.finding), None))
            .collect();
        if !map.is_empty() {
            for (a, actor) in report.actors.iter().enumerate() {
                for (i, e) in actor.evidence.iter().enumerate() {
                    if let Some(at @ None) = map.get_mut(&Positions::key(&e.finding)) {
                        *at = Some([a, i]);
                    }
                }
            }
        }
        Positions(map)
    }

    fn key(f: &Finding) -> (u16, u32, u64) {
        (f.rule, f.at.input, f.at.offset)
    }

    fn get(&self, f: &Finding) -> Option<[usize; 2]> {
        self.0.get(&Positions::key(f)).copied().flatten()
    }
}

/// The rules that fired, severity first, each with where its matches are, in evidence
/// order (actor, then time).
fn by_rule_out<'a>(report: &'a Report) -> Vec<ByRuleOut<'a>> {
    report
        .fired_rules()
        .iter()
        .map(|s| {
            let r = &report.rules[usize::from(s.rule)];
            let mine = |a: &&'a ActorFindings| a.evidence.iter().any(|e| e.finding.rule == s.rule);
            ByRuleOut {
                rule_id: &r.id,
                name: &r.name,
                author: r.author.as_deref(),
                building_block: r.building_block.as_deref(),
                severity: &r.severity,
                risk_score: r.risk_score,
                events: s.events,
                allowed: s.allowed,
                actors: report
                    .actors
                    .iter()
                    .filter(mine)
                    .map(|a| a.actor.as_deref())
                    .collect(),
                first_seen: s.first_seen.as_ref().map(Rfc3339::new),
                last_seen: s.last_seen.as_ref().map(Rfc3339::new),
                evidence: report
                    .actors
                    .iter()
                    .enumerate()
                    .flat_map(|(a, actor)| (0..actor.evidence.len()).map(move |i| (a, i)))
                    .filter(|&(a, i)| report.actors[a].evidence[i].finding.rule == s.rule)
                    .map(|(a, i)| [a, i])
                    .collect(),
            }
        })
        .collect()
}

impl Exporter for Json {
    fn write(&self, report: &Report, out: &mut dyn Write) -> io::Result<()> {
        let (head, tail) = parts(report);
        // Written into a buffer of a concrete type: the many small writes of a report of
        // thousands of events are then copies, not calls through `dyn Write`. The
        // findings, most of a large report, are serialized on the run's threads.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(report.stats.threads.max(1))
            .build()
            .map_err(io::Error::other)?;
        let mut buffered = io::BufWriter::with_capacity(1 << 16, &mut *out);
        write_open(&mut buffered, &head)?;
        buffered.write_all(b",\"actors\":[")?;
        for (i, a) in report.actors.iter().enumerate() {
            if i > 0 {
                buffered.write_all(b",")?;
            }
            write_open(&mut buffered, &actor_out(report, a))?;
            buffered.write_all(b",\"evidence\":[")?;
            write_evidence(&pool, &mut buffered, report, &a.evidence)?;
            buffered.write_all(b"]}")?;
        }
        buffered.write_all(b"]")?;
        write_rest(&mut buffered, &tail)?;
        buffered.flush()?;
        drop(buffered);
        writeln!(out)
    }
}

/// The document's members before and after `actors`.
fn parts(report: &Report) -> (Head<'_>, Tail<'_>) {
    let c = &report.counts;
    let cov = &report.coverage;
    let summaries = report.by_rule();
    let positions = Positions::of(report);
    let head = Head {
        version: VERSION,
        rules: report
            .rules
            .iter()
            .zip(&summaries)
            .zip(&report.held_back)
            .map(|((r, sum), held)| RuleOut {
                query: Some(&r.query),
                threat: Some(&r.threat),
                events: Some(sum.events),
                actors: Some(sum.actors),
                alerting: r.alerting.as_ref(),
                held_back: (r.alerting.is_some() || r.is_sequence()).then_some(*held),
                false_positives: (!r.false_positives.is_empty())
                    .then_some(r.false_positives.as_slice()),
                references: (!r.references.is_empty()).then_some(r.references.as_slice()),
                ..RuleOut::meta(r)
            })
            .collect(),
        scan: ScanOut {
            files: report.files,
            bytes: report.bytes,
            lines: c.lines,
            blank: c.blank,
            records: c.records,
            not_candidate: c.not_candidate(),
            candidates: c.candidates,
            matched: c.matched,
            not_matched: c.not_matched,
            context_selected: c.context,
            malformed: c.malformed,
            outside_window: report.outside_window,
            duplicates: report.duplicates,
            held_back: report.held_back.iter().sum(),
            events: report.events(),
            attempts: report.attempts(),
            context_pass: report.context_ran,
            errors: report.errors.iter().map(ErrorOut::new).collect(),
            warnings: &report.warnings,
            malformed_samples: &report.malformed,
        },
        window: WindowOut {
            since: report.window.since.as_ref().map(Rfc3339::new),
            until: report.window.until.as_ref().map(Rfc3339::new),
        },
    };
    let tail = Tail {
        coverage: CoverageOut {
            first: cov.first.as_ref().map(Rfc3339::new),
            last: cov.last.as_ref().map(Rfc3339::new),
            records: cov.records,
            undated: cov.undated,
            days: cov
                .days
                .iter()
                .map(|(d, n)| DayOut {
                    date: d.to_string(),
                    records: *n,
                })
                .collect(),
            gap_days: cov.gap_days.iter().map(|d| d.to_string()).collect(),
            exchange_admin_records: cov.exchange_admin_records,
            conclusive: cov.conclusive,
            reasons: &cov.reasons,
            repeated_matches: report.duplicates,
        },
        investigations: report
            .investigations
            .iter()
            .map(|i| bypass_out(report, i, &positions))
            .collect(),
        by_rule: by_rule_out(report),
        not_run: &report.not_run,
        allowlist: AllowlistOut {
            entries: report.allowlist.entries.len(),
            expired: report
                .allowlist
                .expired()
                .into_iter()
                .map(|i| &report.allowlist.entries[i])
                .collect(),
        },
    };
    (head, tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document as one serializer writes it in one pass: the reference for the
    /// parts [`Json`] writes (its findings serialized in parallel runs).
    #[derive(Serialize)]
    struct Whole<'a> {
        #[serde(flatten)]
        head: Head<'a>,
        actors: Vec<WholeActor<'a>>,
        #[serde(flatten)]
        tail: Tail<'a>,
    }

    #[derive(Serialize)]
    struct WholeActor<'a> {
        #[serde(flatten)]
        head: ActorOut<'a>,
        evidence: Vec<EvidenceOut<'a>>,
    }

    /// The report of the investigation fixture, on one thread.
    fn fixture_report() -> Report {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/investigation");
        let mut config = ualhunt_engine::Config::new(vec![dir]);
        config.threads = 1;
        ualhunt_engine::run(&config).unwrap()
    }

    /// Findings enough for several windows of parallel runs (and a partial one), an
    /// actor of fewer than one run, one of none: the bytes are one serializer's, on
    /// one thread as on several.
    #[test]
    fn findings_written_in_parallel_runs_are_one_serializers_bytes() {
        let mut report = fixture_report();
        assert!(report.actors.len() >= 2, "{}", report.actors.len());
        let many = EVIDENCE_TASK * TASKS_AT_ONCE * 2 + EVIDENCE_TASK / 2 + 3;
        let one = report.actors[0].evidence.clone();
        while report.actors[0].evidence.len() < many {
            report.actors[0].evidence.extend(one.iter().cloned());
        }
        let mut none = report.actors[1].clone();
        none.evidence.clear();
        report.actors.push(none);
        let (head, tail) = parts(&report);
        let whole = Whole {
            head,
            actors: report
                .actors
                .iter()
                .map(|a| WholeActor {
                    head: actor_out(&report, a),
                    evidence: a
                        .evidence
                        .iter()
                        .map(|e| EvidenceOut::new(&report, e))
                        .collect(),
                })
                .collect(),
            tail,
        };
        let mut expected = Vec::new();
        crate::escape::json_to_writer(&mut expected, &whole).unwrap();
        expected.push(b'\n');
        for threads in [1, 3] {
            report.stats.threads = threads;
            let mut out = Vec::new();
            Json.write(&report, &mut out).unwrap();
            assert!(out == expected, "{threads} threads: the bytes differ");
        }
    }

    /// An evidence's own writer ([`EvidenceOut::write_json`]) writes the bytes of its
    /// [`Serialize`] form, whatever its texts hold (quotes, backslashes, controls,
    /// hidden characters, non-ASCII), for absent and boolean values, a change, an
    /// allowlist entry, no time, with and without the actor.
    #[test]
    fn an_evidences_writer_is_its_serialized_form() {
        use ualhunt_engine::analysis::Change;
        use ualhunt_engine::findings::Text;
        let mut report = fixture_report();
        report.allowlist.entries.push(Entry {
            account: "a\"b".into(),
            reason: "why\u{1b}[2J".into(),
            owner: None,
            expires: None,
        });
        let texts = [
            "plain",
            "",
            "q\"uote",
            "back\\slash",
            "ctl\u{1b}[31m",
            "del\u{7f}",
            "rtl\u{202e}x",
            "zw\u{200b}j",
            "caf\u{e9} \u{540d}",
            "tab\tnl\n",
            "\u{e0041}",
        ];
        let mut rng = fastrand::Rng::with_seed(3);
        let mut text = || -> Text { texts[rng.usize(..texts.len())].into() };
        let mut evidence = Vec::new();
        for (i, e) in report.actors.iter().flat_map(|a| &a.evidence).enumerate() {
            let mut e = e.clone();
            let f = &mut e.finding;
            f.actor = (i % 3 != 0).then(&mut text);
            f.record_id = (i % 4 != 1).then(&mut text);
            f.source_ip = (i % 5 != 2).then(&mut text);
            if i % 6 == 0 {
                f.timestamp = None;
            }
            for (j, v) in f.fields.iter_mut().enumerate() {
                *v = match (i + j) % 4 {
                    0 => None,
                    1 => Some(Value::Bool(j % 2 == 0)),
                    _ => Some(Value::Text(text())),
                };
            }
            e.change = [None, Some(Change::Enable), Some(Change::Unknown)][i % 3];
            e.allowed = (i % 2 == 0).then_some(report.allowlist.entries.len() - 1);
            evidence.push(e);
        }
        assert!(evidence.len() > 10, "{}", evidence.len());
        for e in &evidence {
            for actor in [false, true] {
                let mut out = EvidenceOut::new(&report, e);
                if actor {
                    out = out.with_actor();
                }
                let mut expected = Vec::new();
                crate::escape::json_to_writer(&mut expected, &out).unwrap();
                let mut written = Vec::new();
                out.write_json(&mut written).unwrap();
                assert_eq!(
                    String::from_utf8(written).unwrap(),
                    String::from_utf8(expected).unwrap()
                );
            }
        }
    }
}
