//! What a scan keeps: generic findings, line accounting and mergeable partial results.
//!
//! Place in the flow: `scan` hands each selected record to a [`Sink`](crate::scan::Sink);
//! the first pass's sink is a [`Harvest`], which turns rule matches and context
//! selections into [`Finding`]s (rule id, where, when, who, and the evidence items the
//! rule file declares). One [`Partial`] per chunk is appended in input order (a chunk's,
//! a file's and a whole run's merge the same way: associative, and line numbers shift by
//! the lines before), so the result does not depend on scheduling. Every partial state
//! here is serializable, so a sharded run can persist and merge it. The analyses
//! (`analysis`) read the merged findings; nothing here knows about any one rule.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};

use crate::coverage::Coverage;

/// How many malformed-line samples a run keeps.
pub const MAX_SAMPLES: usize = 20;

/// Line and record accounting (DESIGN §3). For JSON lines a record is a non-blank line:
/// `lines = blank + records`; always `records = not_candidate + screened + candidates`
/// and `candidates = matched + not_matched + malformed` (`screened` is 0 but in the
/// context pass). In a CSV export or a JSON document
/// a record is a row or an object, which may span lines; `lines` stays the count of
/// physical lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Every line, blank ones and a last line without newline included.
    pub lines: u64,
    /// Empty or whitespace-only lines (JSON lines).
    pub blank: u64,
    /// Records: non-blank lines of JSON lines, rows of a CSV export, record objects of
    /// a JSON document (all of them, parsed or not: a document without any prefilter
    /// hit is still cut into its records), and each line of a JSON document where a rule
    /// literal stands outside every record (counted malformed).
    pub records: u64,
    /// Lines the prefilter let through (parsed).
    pub candidates: u64,
    /// Candidates that matched at least one rule (whatever their time).
    pub matched: u64,
    /// Candidates that parsed but matched no rule.
    pub not_matched: u64,
    /// Of `not_matched`: candidates selected only as context (e.g. a failed attempt).
    pub context: u64,
    /// Candidates that are not a JSON object (or are too long).
    pub malformed: u64,
    /// Lines the prefilter let through that the sink turned down from their bytes,
    /// unparsed ([`crate::scan::Sink::may_select`]: the context pass's screen): not
    /// candidates, since nothing was parsed (whether they would have parsed is unknown).
    #[serde(default)]
    pub screened: u64,
}

impl Counts {
    /// Records the prefilter ruled out without parsing.
    pub fn not_candidate(&self) -> u64 {
        self.records - self.candidates - self.screened
    }

    /// Adds another account of lines.
    pub fn add(&mut self, other: &Counts) {
        self.lines += other.lines;
        self.blank += other.blank;
        self.records += other.records;
        self.candidates += other.candidates;
        self.matched += other.matched;
        self.not_matched += other.not_matched;
        self.context += other.context;
        self.malformed += other.malformed;
        self.screened += other.screened;
    }
}

/// Text shared between findings: actors, targets and addresses repeat, so each distinct
/// value is allocated once per worker and shared.
pub type Text = Arc<str>;

/// Where a record is: the input (its index in input order), the 0-based line where the
/// record starts and the byte offset of that line, both in the decompressed input.
/// Until merged into a whole file, both are relative to the partial that holds them.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct At {
    /// Index of the input.
    pub input: u32,
    /// 0-based line index.
    pub line: u64,
    /// Byte offset of the record's first line.
    pub offset: u64,
}

/// A typed evidence value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// A boolean (a flag).
    Bool(bool),
    /// Text.
    Text(Text),
}

impl Value {
    /// The text, if this is text.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(t) => Some(t),
            Value::Bool(_) => None,
        }
    }

    /// The boolean, if this is a flag.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            Value::Text(_) => None,
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Text(t) => f.write_str(t),
        }
    }
}

/// Why a record was selected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Why {
    /// It matched the rule's query: a finding.
    Rule,
    /// It matched the rule's context selection with this index (e.g. a failed attempt).
    Context(u16),
}

/// One selected record: a rule match or a context selection, with its evidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Index of the rule.
    pub rule: u16,
    /// Rule match or context.
    pub why: Why,
    /// Where the record is.
    pub at: At,
    /// `@timestamp`.
    pub timestamp: Option<DateTime<Utc>>,
    /// `user.id`.
    pub actor: Option<Text>,
    /// The record's `Operation`, raw (`Record::operation`).
    #[serde(default)]
    pub action: Option<Text>,
    /// `event.id`.
    pub record_id: Option<Text>,
    /// `source.ip`.
    pub source_ip: Option<Text>,
    /// The rule's evidence items, in the rule file's order (`None`: no value).
    pub fields: Vec<Option<Value>>,
}

impl Finding {
    /// Evidence item `index` (from `Rule::evidence_index`).
    pub fn field(&self, index: Option<usize>) -> Option<&Value> {
        self.fields.get(index?)?.as_ref()
    }

    /// The total order of evidence: time (missing first), then input order.
    pub fn order_key(&self) -> (Option<DateTime<Utc>>, At, u16, Why) {
        (self.timestamp, self.at, self.rule, self.why)
    }
}

/// A malformed line kept as an example.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// Index of the input file.
    pub file: usize,
    /// 0-based line index, relative like [`At::line`].
    pub line: u64,
    /// Why the line was rejected.
    pub reason: String,
    /// The first bytes of the line, lossily decoded.
    pub excerpt: String,
}

/// What a sink keeps of the records handed to it, mergeable like a [`Partial`].
pub trait Merge: Default + Send {
    /// Appends the state of the records that follow; their lines and offsets shift by
    /// `shift` (nothing when whole files are merged).
    fn append(&mut self, next: Self, shift: Shift);
}

/// How much the positions of appended records move.
#[derive(Clone, Copy, Debug, Default)]
pub struct Shift {
    /// Lines before them.
    pub lines: u64,
    /// Bytes before them.
    pub bytes: u64,
}

/// The mergeable result of scanning some consecutive lines.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partial<S> {
    /// Line accounting.
    pub counts: Counts,
    /// Bytes covered (the offset the next partial's positions shift by).
    pub bytes: u64,
    /// The first malformed lines.
    pub samples: Vec<Sample>,
    /// Record times and kinds, counted at byte level.
    pub coverage: Coverage,
    /// How many records each selection was evaluated on.
    #[serde(default)]
    pub evaluated: Tallies,
    /// The first pass's block index: one span per chunk or block scanned, in order
    /// (`crate::index`); empty in other passes.
    #[serde(default)]
    pub index: Vec<crate::index::Span>,
    /// The first pass's seek points of each compressed file it read whole without
    /// error (`crate::index`); empty in other passes. A shard's partial carries them to
    /// the context plan, from which the context stage inflates only what it reads.
    #[serde(default)]
    pub seeks: Vec<crate::index::Seekable>,
    /// What the sink kept.
    pub sink: S,
}

/// One count per selection (index), growing as needed; merged by adding.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tallies(pub Vec<u64>);

impl Tallies {
    /// Counts one for `i`.
    #[inline]
    pub fn bump(&mut self, i: usize) {
        if i >= self.0.len() {
            self.0.resize(i + 1, 0);
        }
        self.0[i] += 1;
    }

    /// The count of `i`.
    pub fn get(&self, i: usize) -> u64 {
        self.0.get(i).copied().unwrap_or(0)
    }

    fn add(&mut self, other: &Tallies) {
        if other.0.len() > self.0.len() {
            self.0.resize(other.0.len(), 0);
        }
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a += b;
        }
    }
}

impl<S: Merge> Partial<S> {
    /// Appends the result of the lines that follow these: their line indexes and offsets
    /// shift by the lines and bytes already here.
    pub fn append(&mut self, next: Partial<S>) {
        let shift = Shift {
            lines: self.counts.lines,
            bytes: self.bytes,
        };
        self.append_at(next, shift);
    }

    /// Appends the result of lines that start `shift` into the input (the context
    /// pass reads stretches with gaps between them, `crate::index`).
    pub fn append_at(&mut self, next: Partial<S>, shift: Shift) {
        self.sink.append(next.sink, shift);
        self.index.extend(next.index.into_iter().map(|mut s| {
            s.offset += shift.bytes;
            s.line += shift.lines;
            s
        }));
        // A file's points come with the file's whole result, never shifted.
        self.seeks.extend(next.seeks);
        let room = MAX_SAMPLES.saturating_sub(self.samples.len());
        self.samples
            .extend(next.samples.into_iter().take(room).map(|mut s| {
                s.line += shift.lines;
                s
            }));
        self.counts.add(&next.counts);
        self.evaluated.add(&next.evaluated);
        self.coverage.merge(next.coverage);
        self.bytes += next.bytes;
    }

    /// Merges the result of another file: positions are already file-relative, so
    /// nothing shifts. Files must be merged in input order.
    pub fn absorb_file(&mut self, other: Partial<S>) {
        self.sink.append(other.sink, Shift::default());
        self.index.extend(other.index);
        self.seeks.extend(other.seeks);
        let room = MAX_SAMPLES.saturating_sub(self.samples.len());
        self.samples.extend(other.samples.into_iter().take(room));
        self.counts.add(&other.counts);
        self.evaluated.add(&other.evaluated);
        self.coverage.merge(other.coverage);
        self.bytes += other.bytes;
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

/// The first pass's sink: every rule match and context selection, in input order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Harvest {
    /// Selected records, in input order.
    pub findings: Vec<Finding>,
}

impl Merge for Harvest {
    fn append(&mut self, mut next: Harvest, shift: Shift) {
        for f in &mut next.findings {
            f.at.line += shift.lines;
            f.at.offset += shift.bytes;
        }
        if self.findings.is_empty() {
            self.findings = next.findings;
        } else {
            self.findings.append(&mut next.findings);
        }
    }
}

/// Serde for maps whose keys are not strings (tuples): written as a list of
/// `[key, value]` pairs, so every partial state serializes to JSON.
pub mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Writes the map as a list of pairs.
    pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        map: &BTreeMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter())
    }

    /// Reads a list of pairs into the map.
    pub fn deserialize<'de, K, V, D>(d: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}

/// Drops findings whose rule, selection and record id were already seen earlier in
/// input order (exports overlap and repeat records); findings without a record id are
/// all kept. Returns how many rule matches were dropped. `findings` must be in input
/// order.
///
/// The keys are hashed on the caller's rayon pool (reading each id's text is most of
/// the cost); the pass in input order then compares hashes, and two keys' texts only
/// where their hashes are equal.
pub fn drop_duplicates(findings: &mut Vec<Finding>) -> u64 {
    use rayon::prelude::*;
    use std::hash::BuildHasher;
    let hashes: Vec<Option<u64>> = findings
        .par_iter()
        .map(|f| dedup_key(f).map(|k| rustc_hash::FxBuildHasher.hash_one(k)))
        .collect();
    let keep = first_of_each_key(findings, &hashes);
    let dropped = findings
        .iter()
        .zip(&keep)
        .filter(|(f, k)| !**k && f.why == Why::Rule)
        .count();
    let mut keep = keep.into_iter();
    findings.retain(|_| keep.next().unwrap_or(true));
    dropped as u64
}

/// What makes two findings one for [`drop_duplicates`] (`None`: no record id).
fn dedup_key(f: &Finding) -> Option<(u16, Why, &str)> {
    f.record_id.as_deref().map(|id| (f.rule, f.why, id))
}

/// Whether each finding is the first of its key ([`dedup_key`]; one without is),
/// given each key's hash.
fn first_of_each_key(findings: &[Finding], hashes: &[Option<u64>]) -> Vec<bool> {
    use std::collections::hash_map::Entry;
    // Hash -> the first finding with it; keys whose hash an unequal key had first.
    let mut first: FxHashMap<u64, usize> = FxHashMap::default();
    let mut others: FxHashSet<(u16, Why, &str)> = FxHashSet::default();
    findings
        .iter()
        .zip(hashes)
        .enumerate()
        .map(|(i, (f, hash))| {
            let (Some(hash), Some(k)) = (hash, dedup_key(f)) else {
                return true;
            };
            match first.entry(*hash) {
                Entry::Vacant(e) => {
                    e.insert(i);
                    true
                }
                Entry::Occupied(e) if dedup_key(&findings[*e.get()]) == Some(k) => false,
                Entry::Occupied(_) => others.insert(k),
            }
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn finding(actor: &str, line: u64, ts: i64) -> Finding {
        Finding {
            rule: 0,
            why: Why::Rule,
            at: At {
                input: 0,
                line,
                offset: line * 100,
            },
            timestamp: DateTime::from_timestamp(ts, 0),
            actor: Some(actor.into()),
            action: None,
            record_id: None,
            source_ip: Some(format!("10.0.0.{}", line % 3).into()),
            fields: vec![],
        }
    }

    #[test]
    fn append_shifts_lines_offsets_and_counts() {
        let mut a = Partial::<Harvest> {
            bytes: 1000,
            ..Partial::default()
        };
        a.counts.lines = 10;
        let mut b = Partial::<Harvest>::default();
        b.counts.lines = 5;
        b.counts.candidates = 1;
        b.counts.matched = 1;
        b.sink.findings.push(finding("u", 2, 0));
        b.malformed(0, 3, "bad".into(), b"{oops");
        a.append(b);
        assert_eq!(a.counts.lines, 15);
        assert_eq!(a.counts.candidates, 2);
        assert_eq!(a.sink.findings[0].at.line, 12);
        assert_eq!(a.sink.findings[0].at.offset, 1200);
        assert_eq!(a.samples[0].line, 13);
    }

    #[test]
    fn append_is_associative() {
        let part = |lines, bytes, f: Option<Finding>| {
            let mut p = Partial::<Harvest> {
                bytes,
                ..Partial::default()
            };
            p.counts.lines = lines;
            p.sink.findings.extend(f);
            p
        };
        let (a, b, c) = (
            part(3, 30, Some(finding("x", 1, 0))),
            part(4, 40, Some(finding("y", 0, 0))),
            part(2, 20, Some(finding("z", 1, 0))),
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
    fn partials_round_trip_through_json() {
        let mut p = Partial::<Harvest>::default();
        let mut f = finding("u", 1, 5);
        f.fields = vec![Some(Value::Text("t".into())), Some(Value::Bool(true)), None];
        p.sink.findings.push(f);
        p.counts.lines = 3;
        let text = serde_json::to_string(&p).unwrap();
        let back: Partial<Harvest> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn duplicates_keep_the_first_in_input_order() {
        let mut a = finding("u", 1, 0);
        a.record_id = Some("r1".into());
        let mut b = finding("u", 9, 0);
        b.record_id = Some("r1".into());
        b.at.input = 1;
        let c = finding("u", 3, 0);
        let d = c.clone();
        let mut ctx = a.clone();
        ctx.why = Why::Context(0);
        let mut findings = vec![a.clone(), c, b, d, ctx];
        assert_eq!(drop_duplicates(&mut findings), 1);
        assert_eq!(
            findings.len(),
            4,
            "a context selection is not a duplicate of a match"
        );
        assert_eq!(findings[0], a);
    }

    proptest::proptest! {
        /// The first finding of each (rule, selection, record id) is kept, the rest
        /// dropped, whatever the hashes say: real ones, or all equal (every key
        /// colliding with every other).
        #[test]
        fn the_first_of_each_key_is_kept_whatever_the_hashes(
            keys in proptest::collection::vec(
                (0u16..3, proptest::bool::ANY, proptest::option::of(0u8..6)), 0..60),
        ) {
            let findings: Vec<Finding> = keys
                .iter()
                .enumerate()
                .map(|(i, (rule, context, id))| {
                    let mut f = finding("u", i as u64, 0);
                    f.rule = *rule;
                    f.why = if *context { Why::Context(0) } else { Why::Rule };
                    f.record_id = id.map(|n| format!("r{n}").into());
                    f
                })
                .collect();
            let mut seen = std::collections::HashSet::new();
            let naive: Vec<bool> = findings
                .iter()
                .map(|f| dedup_key(f).is_none_or(|k| seen.insert(k)))
                .collect();
            let colliding: Vec<Option<u64>> =
                findings.iter().map(|f| dedup_key(f).map(|_| 7)).collect();
            proptest::prop_assert_eq!(&first_of_each_key(&findings, &colliding), &naive);
            let mut dropped = findings.clone();
            let n = drop_duplicates(&mut dropped);
            let kept: Vec<Finding> = findings
                .iter()
                .zip(&naive)
                .filter(|(_, k)| **k)
                .map(|(f, _)| f.clone())
                .collect();
            proptest::prop_assert_eq!(&dropped, &kept);
            let rule_drops = findings.iter().zip(&naive).filter(|(f, k)| !**k && f.why == Why::Rule);
            proptest::prop_assert_eq!(n, rule_drops.count() as u64);
        }
    }

    #[test]
    fn samples_are_capped() {
        let mut p = Partial::<Harvest>::default();
        for i in 0..(MAX_SAMPLES as u64 + 5) {
            p.malformed(0, i, "x".into(), b"{");
        }
        assert_eq!(p.samples.len(), MAX_SAMPLES);
        assert_eq!(p.counts.malformed, MAX_SAMPLES as u64 + 5);
    }
}
