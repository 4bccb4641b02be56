//! Partial results of a scan and their grouping by actor.
//!
//! Place in the flow: `scan` produces one [`Partial`] per chunk; partials are appended
//! in input order (a chunk's, a file's and a whole run's merge the same way), then
//! [`group`] turns the matched events into per-actor findings in a total order, so the
//! output is identical whatever the thread count, chunk size or scheduling.
//!
//! Orders (documented in the README):
//! - actors by actor id (byte order; a missing actor sorts first);
//! - evidence by time (a missing time first), then input order (file, line);
//! - targets by identity; source IPs by their text.

use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// How many malformed-line samples a run keeps.
pub const MAX_SAMPLES: usize = 20;

/// Line and record accounting (DESIGN §3). For JSON lines a record is a non-blank line:
/// `lines = blank + records`; always `records = not_candidate + candidates` and
/// `candidates = matched + not_matched + malformed`. In a CSV export or a JSON document
/// a record is a row or an object, which may span lines; `lines` stays the count of
/// physical lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Every line, blank ones and a last line without newline included.
    pub lines: u64,
    /// Empty or whitespace-only lines (JSON lines).
    pub blank: u64,
    /// Records: non-blank lines of JSON lines, rows of a CSV export, record objects of
    /// a JSON document (a document skipped for having no prefilter hit counts none).
    pub records: u64,
    /// Lines the prefilter let through (parsed).
    pub candidates: u64,
    /// Candidates that matched at least one rule.
    pub matched: u64,
    /// Candidates that parsed but matched no rule (or only outside the time window).
    pub not_matched: u64,
    /// Of `not_matched`: candidates that matched a rule at a time outside
    /// `--since`/`--until`.
    pub outside_window: u64,
    /// Candidates that are not a JSON object (or are too long).
    pub malformed: u64,
}

impl Counts {
    /// Records the prefilter ruled out without parsing.
    pub fn not_candidate(&self) -> u64 {
        self.records - self.candidates
    }

    fn add(&mut self, other: &Counts) {
        self.lines += other.lines;
        self.blank += other.blank;
        self.records += other.records;
        self.candidates += other.candidates;
        self.matched += other.matched;
        self.not_matched += other.not_matched;
        self.outside_window += other.outside_window;
        self.malformed += other.malformed;
    }
}

/// Text shared between events: actors, targets and addresses repeat, so each distinct
/// value is allocated once per worker and shared.
pub type Text = Arc<str>;

/// One matched record and its evidence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Index of the rule that matched.
    pub rule: usize,
    /// Index of the input file (input order).
    pub file: usize,
    /// 0-based line index, relative to the partial that holds the event until merged.
    pub line: u64,
    /// `user.id`.
    pub actor: Option<Text>,
    /// `@timestamp`.
    pub timestamp: Option<DateTime<Utc>>,
    /// `event.id`.
    pub record_id: Option<String>,
    /// The rule's target field.
    pub target: Option<Text>,
    /// The rule's flag field.
    pub bypass_enabled: Option<bool>,
    /// `source.ip`.
    pub source_ip: Option<Text>,
}

/// A malformed line kept as an example.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Index of the input file.
    pub file: usize,
    /// 0-based line index, relative like [`Event::line`].
    pub line: u64,
    /// Why the line was rejected.
    pub reason: String,
    /// The first bytes of the line, lossily decoded.
    pub excerpt: String,
}

/// The mergeable result of scanning some consecutive lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Partial {
    /// Line accounting.
    pub counts: Counts,
    /// Matched events, in line order.
    pub events: Vec<Event>,
    /// The first malformed lines.
    pub samples: Vec<Sample>,
}

impl Partial {
    /// Appends the result of the lines that follow these: their line indexes shift by
    /// the lines already counted here.
    pub fn append(&mut self, mut next: Partial) {
        let offset = self.counts.lines;
        for e in &mut next.events {
            e.line += offset;
        }
        self.events.append(&mut next.events);
        let room = MAX_SAMPLES.saturating_sub(self.samples.len());
        self.samples
            .extend(next.samples.into_iter().take(room).map(|mut s| {
                s.line += offset;
                s
            }));
        self.counts.add(&next.counts);
    }

    /// Merges the result of another file: line indexes are already file-relative, so
    /// nothing shifts. Files must be merged in input order.
    pub fn absorb_file(&mut self, mut other: Partial) {
        self.events.append(&mut other.events);
        let room = MAX_SAMPLES.saturating_sub(self.samples.len());
        self.samples.extend(other.samples.into_iter().take(room));
        self.counts.add(&other.counts);
    }

    /// Records a malformed candidate.
    /// (It counts the candidate; the caller counts the record.)
    pub fn malformed(&mut self, file: usize, line: u64, reason: String, bytes: &[u8]) {
        self.counts.candidates += 1;
        self.counts.malformed += 1;
        if self.samples.len() < MAX_SAMPLES {
            let cut = &bytes[..bytes.len().min(80)];
            self.samples.push(Sample {
                file,
                line,
                reason,
                excerpt: String::from_utf8_lossy(cut).into_owned(),
            });
        }
    }
}

/// The findings for one target of one actor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Target {
    /// The target (a mailbox for the built-in rule); `null` when the record names none.
    pub identity: Option<String>,
    /// Matched events on this target.
    pub events: u64,
    /// The flag as the last event (in evidence order) set it.
    pub bypass_enabled: Option<bool>,
}

/// Everything one actor did that matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActorFindings {
    /// `user.id`; `None` when records name no actor.
    pub actor: Option<Text>,
    /// First event time.
    pub first_seen: Option<DateTime<Utc>>,
    /// Last event time.
    pub last_seen: Option<DateTime<Utc>>,
    /// Per-target summary, by identity.
    pub targets: Vec<Target>,
    /// Distinct source IPs, sorted.
    pub source_ips: Vec<String>,
    /// The matched events, in evidence order.
    pub evidence: Vec<Event>,
}

/// Drops events whose rule and record id were already reported by an earlier event in
/// input order (exports overlap and repeat records); events without a record id are
/// all kept. Returns how many were dropped. `events` must be in input order.
pub fn drop_duplicates(events: &mut Vec<Event>) -> u64 {
    // Decide with borrowed ids first (no copy of each id), then drop.
    let keep: Vec<bool> = {
        let mut seen: FxHashSet<(usize, &str)> = FxHashSet::default();
        events
            .iter()
            .map(|e| {
                e.record_id
                    .as_deref()
                    .is_none_or(|id| seen.insert((e.rule, id)))
            })
            .collect()
    };
    let before = events.len();
    let mut keep = keep.into_iter();
    events.retain(|_| keep.next().unwrap_or(true));
    (before - events.len()) as u64
}

/// Groups events by actor, in the documented total orders. Strings are compared only
/// to find an event's group and once per distinct actor, target and IP, never inside the
/// evidence sort (the worst case is hundreds of thousands of events).
pub fn group(events: Vec<Event>) -> Vec<ActorFindings> {
    let mut by_actor: FxHashMap<Option<Text>, Vec<Event>> = FxHashMap::default();
    for e in events {
        match by_actor.get_mut(&e.actor) {
            Some(list) => list.push(e),
            None => {
                by_actor.insert(e.actor.clone(), vec![e]);
            }
        }
    }
    let mut groups: Vec<(Option<Text>, Vec<Event>)> = by_actor.into_iter().collect();
    groups.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    groups
        .into_par_iter()
        .map(|(actor, mut evidence)| {
            // (file, line, rule) is unique per event, so this order is total.
            evidence.sort_unstable_by_key(|e| (e.timestamp, e.file, e.line, e.rule));
            let (targets, source_ips) = summarize(&evidence);
            ActorFindings {
                actor,
                first_seen: evidence.iter().filter_map(|e| e.timestamp).min(),
                last_seen: evidence.iter().filter_map(|e| e.timestamp).max(),
                targets,
                source_ips,
                evidence,
            }
        })
        .collect()
}

/// Per-target counts and last flag, and the distinct source IPs, of one actor's evidence
/// (already in evidence order).
fn summarize(evidence: &[Event]) -> (Vec<Target>, Vec<String>) {
    let mut targets: FxHashMap<Option<&str>, (u64, Option<bool>)> = FxHashMap::default();
    let mut ips: FxHashSet<&str> = FxHashSet::default();
    for e in evidence {
        let t = targets.entry(e.target.as_deref()).or_default();
        t.0 += 1;
        if e.bypass_enabled.is_some() {
            t.1 = e.bypass_enabled;
        }
        ips.extend(e.source_ip.as_deref());
    }
    let mut targets: Vec<Target> = targets
        .into_iter()
        .map(|(identity, (events, bypass_enabled))| Target {
            identity: identity.map(str::to_string),
            events,
            bypass_enabled,
        })
        .collect();
    targets.sort_unstable_by(|a, b| a.identity.cmp(&b.identity));
    let mut ips: Vec<String> = ips.into_iter().map(str::to_string).collect();
    ips.sort_unstable();
    (targets, ips)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(actor: &str, line: u64, ts: i64, target: &str, flag: Option<bool>) -> Event {
        Event {
            rule: 0,
            file: 0,
            line,
            actor: Some(actor.into()),
            timestamp: DateTime::from_timestamp(ts, 0),
            record_id: None,
            target: Some(target.into()),
            bypass_enabled: flag,
            source_ip: Some(format!("10.0.0.{}", line % 3).into()),
        }
    }

    #[test]
    fn append_shifts_lines_and_counts() {
        let mut a = Partial::default();
        a.counts.lines = 10;
        let mut b = Partial::default();
        b.counts.lines = 5;
        b.counts.candidates = 1;
        b.counts.matched = 1;
        b.events.push(event("u", 2, 0, "t", None));
        b.malformed(0, 3, "bad".into(), b"{oops");
        a.append(b);
        assert_eq!(a.counts.lines, 15);
        assert_eq!(a.counts.candidates, 2);
        assert_eq!(a.events[0].line, 12);
        assert_eq!(a.samples[0].line, 13);
    }

    #[test]
    fn append_is_associative() {
        let part = |lines, ev: Option<Event>| {
            let mut p = Partial::default();
            p.counts.lines = lines;
            p.events.extend(ev);
            p
        };
        let (a, b, c) = (
            part(3, Some(event("x", 1, 0, "t", None))),
            part(4, Some(event("y", 0, 0, "t", None))),
            part(2, Some(event("z", 1, 0, "t", None))),
        );
        let mut left = a.clone();
        left.append(b.clone());
        left.append(c.clone());
        let mut bc = b;
        bc.append(c);
        let mut right = a;
        right.append(bc);
        assert_eq!(left, right);
    }

    #[test]
    fn group_orders_actors_targets_and_evidence() {
        let events = vec![
            event("bob", 7, 300, "mbx2", Some(false)),
            event("alice", 5, 200, "mbx1", Some(true)),
            event("bob", 1, 100, "mbx2", Some(true)),
            event("bob", 3, 100, "mbx1", Some(true)),
        ];
        let g = group(events);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].actor.as_deref(), Some("alice"));
        let bob = &g[1];
        assert_eq!(
            bob.evidence.iter().map(|e| e.line).collect::<Vec<_>>(),
            vec![1, 3, 7]
        );
        assert_eq!(bob.first_seen, DateTime::from_timestamp(100, 0));
        assert_eq!(bob.last_seen, DateTime::from_timestamp(300, 0));
        assert_eq!(bob.targets.len(), 2);
        assert_eq!(bob.targets[0].identity.as_deref(), Some("mbx1"));
        assert_eq!(bob.targets[1].events, 2);
        assert_eq!(
            bob.targets[1].bypass_enabled,
            Some(false),
            "last event's flag wins"
        );
        assert_eq!(bob.source_ips, vec!["10.0.0.0", "10.0.0.1"]);
    }

    #[test]
    fn duplicates_keep_the_first_in_input_order() {
        let mut a = event("u", 1, 0, "t", None);
        a.record_id = Some("r1".into());
        let mut b = event("u", 9, 0, "t", None);
        b.record_id = Some("r1".into());
        b.file = 1;
        let c = event("u", 3, 0, "t", None);
        let d = c.clone();
        let mut events = vec![a.clone(), c, b, d];
        assert_eq!(drop_duplicates(&mut events), 1);
        assert_eq!(events.len(), 3);
        assert_eq!(events[0], a);
    }

    #[test]
    fn samples_are_capped() {
        let mut p = Partial::default();
        for i in 0..(MAX_SAMPLES as u64 + 5) {
            p.malformed(0, i, "x".into(), b"{");
        }
        assert_eq!(p.samples.len(), MAX_SAMPLES);
        assert_eq!(p.counts.malformed, MAX_SAMPLES as u64 + 5);
    }
}
