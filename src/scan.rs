//! The hot loop: one line-aligned chunk in, one [`Partial`] out.
//!
//! Place in the flow: `engine` hands each chunk (a slice of a mapped file or of a
//! decompressed block) to [`scan_chunk`] on a rayon worker. The chunk is walked in
//! cache-sized blocks: the prefilter searches the whole block for the rule literals,
//! then one newline pass over the same, still cache-hot, block counts lines, spots
//! blank ones and numbers the candidate lines. Only candidates are copied into the
//! worker's scratch buffer and parsed (simd-json parses in place; the mapping stays
//! read-only). No I/O and no printing happen here.

use std::time::{Duration, Instant};

use memchr::{memchr, memchr_iter, memrchr};

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use rustc_hash::{FxHashMap, FxHashSet};
use simd_json::tape::Tape;

use crate::field::Field;
use crate::findings::{Event, Partial, Text};
use crate::prefilter::Prefilter;
use crate::record::{Embedded, Record, reduce_ip};
use crate::rule::{Rule, parse_flag};

/// Bytes walked at a time: small enough that the newline pass finds the block still in
/// the L2 cache after the literal search.
pub const DEFAULT_BLOCK: usize = 256 * 1024;

/// Everything a worker needs to evaluate lines; shared read-only by all workers.
#[derive(Debug)]
pub struct Matcher {
    rules: Vec<Rule>,
    prefilter: Prefilter,
    /// The rules' literals, searched for whatever `prefilter` is (exports, issue 8: a
    /// record holding one must be accounted for even with `--no-prefilter`).
    literals: Prefilter,
    max_line: usize,
    block: usize,
    timed: bool,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
}

impl Matcher {
    /// Compiles the matcher. With `prefilter` false every non-blank line is parsed
    /// (the slow reference path). Lines longer than `max_line` bytes are counted as
    /// malformed instead of being parsed.
    pub fn new(rules: Vec<Rule>, prefilter: bool, max_line: usize) -> Matcher {
        let literals = Prefilter::for_rules(&rules);
        let prefilter = if prefilter {
            literals.clone()
        } else {
            Prefilter::Everything
        };
        Matcher {
            rules,
            prefilter,
            literals,
            max_line,
            block: DEFAULT_BLOCK,
            timed: false,
            since: None,
            until: None,
        }
    }

    /// Measures time spent parsing candidates (for `--stats`; costs two clock reads
    /// per candidate).
    pub fn with_timing(mut self, timed: bool) -> Matcher {
        self.timed = timed;
        self
    }

    /// Sets how many bytes are searched at a time inside a chunk (tests use tiny blocks
    /// to force literals across block edges).
    pub fn with_block(mut self, block: usize) -> Matcher {
        self.block = block.max(1);
        self
    }

    /// Reports only events with `since <= time < until` (either bound optional; an
    /// event without a time is outside any window).
    pub fn with_window(
        mut self,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    ) -> Matcher {
        self.since = since;
        self.until = until;
        self
    }

    fn in_window(&self, t: Option<DateTime<Utc>>) -> bool {
        if self.since.is_none() && self.until.is_none() {
            return true;
        }
        t.is_some_and(|t| self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t < u))
    }

    /// The prefilter in use.
    pub fn prefilter(&self) -> &Prefilter {
        &self.prefilter
    }

    /// The longest line that is parsed.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// The search for the rules' literals, whatever `--no-prefilter` says (it is
    /// `Everything` only when a rule requires no literal).
    pub fn literals(&self) -> &Prefilter {
        &self.literals
    }

    /// Whether `bytes` hold a literal a rule requires (always, when a rule requires none).
    pub fn holds_literal(&self, bytes: &[u8]) -> bool {
        self.literals.is_everything() || self.literals.find(bytes).is_some()
    }
}

/// Per-worker reusable buffers.
#[derive(Default)]
pub struct Scratch {
    buf: Vec<u8>,
    buffers: Option<simd_json::Buffers>,
    /// The tape of the last parse, kept (empty) for its allocation.
    tape: Option<Tape<'static>>,
    /// Candidate lines of the current block: (start, end without newline, line index).
    candidates: Vec<(usize, usize, u64)>,
    /// Shared evidence text.
    texts: Interner,
    /// Buffers of the second parse of a record held as JSON text in a string (exports,
    /// issue 8); made on first use.
    reparse: Option<Box<Reparse>>,
    /// Time spent parsing and evaluating candidates.
    pub parse_time: Duration,
}

/// Reusable buffers of a second parse: a record held as JSON text in a string of the
/// object first parsed (PowerShell's `AuditData` string, Elastic's `event.original`).
#[derive(Default)]
struct Reparse {
    buf: Vec<u8>,
    buffers: Option<simd_json::Buffers>,
    tape: Option<Tape<'static>>,
}

/// Scans one line-aligned chunk of file `file`. Line indexes in the result are
/// relative to the chunk's first line.
pub fn scan_chunk(data: &[u8], file: usize, m: &Matcher, scratch: &mut Scratch) -> Partial {
    let mut out = Partial::default();
    if data.is_empty() {
        return out;
    }
    if m.prefilter.is_everything() {
        scan_every_line(data, file, m, scratch, &mut out);
    } else {
        scan_prefiltered(data, file, m, scratch, &mut out);
    }
    out
}

/// The reference path: every non-blank line is a candidate.
fn scan_every_line(
    data: &[u8],
    file: usize,
    m: &Matcher,
    scratch: &mut Scratch,
    out: &mut Partial,
) {
    let mut start = 0;
    let mut index = 0u64;
    while start < data.len() {
        let end = memchr(b'\n', &data[start..]).map_or(data.len(), |i| start + i);
        let line = &data[start..end];
        if is_blank(line) {
            out.counts.blank += 1;
        } else {
            candidate(line, file, index, m, scratch, out);
        }
        index += 1;
        start = end + 1;
    }
    out.counts.lines = index;
    out.counts.records = index - out.counts.blank;
}

/// The fast path: search each block for the literals, then count its lines in one pass
/// while it is cache-hot, numbering the candidate lines on the way.
fn scan_prefiltered(
    data: &[u8],
    file: usize,
    m: &Matcher,
    scratch: &mut Scratch,
    out: &mut Partial,
) {
    let len = data.len();
    let overlap = m.prefilter.overlap();
    let mut lines_before_block = 0u64;
    // Hits before this position belong to lines already taken.
    let mut search_from = 0usize;
    let mut block_start = 0usize;
    // The first line of the chunk starts at 0; every other line starts after a newline.
    if is_blank_at(data, 0) {
        out.counts.blank += 1;
    }
    let mut cands = std::mem::take(&mut scratch.candidates);
    while block_start < len {
        let block_end = (block_start + m.block).min(len);

        // 1. Literal search over the block (a hit may run past its end by `overlap`).
        cands.clear();
        let window_end = (block_end + overlap).min(len);
        let mut from = search_from.max(block_start);
        while from < block_end {
            let Some(off) = m.prefilter.find(&data[from..window_end]) else {
                break;
            };
            let hit = from + off;
            if hit >= block_end {
                break;
            }
            let line_start = memrchr(b'\n', &data[..hit]).map_or(0, |i| i + 1);
            let line_end = memchr(b'\n', &data[hit..]).map_or(len, |i| hit + i);
            cands.push((line_start, line_end, 0));
            from = line_end + 1;
        }
        search_from = search_from.max(from);

        // 2. One newline pass: count lines, spot blank ones, number the candidates.
        let mut seen = 0u64;
        let mut next = 0usize;
        for nl in memchr_iter(b'\n', &data[block_start..block_end]) {
            let nl = block_start + nl;
            while next < cands.len() && cands[next].0 <= nl {
                cands[next].2 = lines_before_block + seen_before(cands[next].0, block_start, seen);
                next += 1;
            }
            seen += 1;
            if is_blank_at(data, nl + 1) {
                out.counts.blank += 1;
            }
        }
        for c in &mut cands[next..] {
            c.2 = lines_before_block + seen_before(c.0, block_start, seen);
        }

        // 3. Parse the candidates while the block is still warm.
        for &(start, end, index) in &cands {
            candidate(&data[start..end], file, index, m, scratch, out);
        }
        lines_before_block += seen;
        block_start = block_end;
    }
    scratch.candidates = cands;
    out.counts.lines = lines_before_block + u64::from(data[len - 1] != b'\n');
    out.counts.records = out.counts.lines - out.counts.blank;
}

/// Newlines of the current block before a line start: a line that began in an earlier
/// block has none between its start and the block start.
#[inline]
fn seen_before(line_start: usize, block_start: usize, seen: u64) -> u64 {
    if line_start < block_start { 0 } else { seen }
}

/// Whether the line starting at `start` is blank; a position at the very end of the
/// data starts no line.
#[inline]
fn is_blank_at(data: &[u8], start: usize) -> bool {
    match data.get(start) {
        None => false,
        // Lines almost always start with `{`: one compare decides.
        Some(b'\n' | b'\r' | b' ' | b'\t' | b'\x0c') => {
            let end = memchr(b'\n', &data[start..]).map_or(data.len(), |i| start + i);
            is_blank(&data[start..end])
        }
        Some(_) => false,
    }
}

fn is_blank(line: &[u8]) -> bool {
    line.iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\x0c'))
}

/// Parses one candidate line and evaluates the rules on it.
/// Parses one candidate record (a line, a CSV cell or a JSON object) and evaluates the
/// rules on it; `index` is the 0-based line where it starts.
pub(crate) fn candidate(
    line: &[u8],
    file: usize,
    index: u64,
    m: &Matcher,
    scratch: &mut Scratch,
    out: &mut Partial,
) {
    let started = m.timed.then(Instant::now);
    let line = line.trim_ascii();
    if line.len() > m.max_line {
        let reason = format!(
            "line of {} bytes is longer than the limit of {}",
            line.len(),
            m.max_line
        );
        out.malformed(file, index, reason, line);
    } else {
        evaluate(line, file, index, m, scratch, out);
    }
    if let Some(t) = started {
        scratch.parse_time += t.elapsed();
    }
}

fn evaluate(
    line: &[u8],
    file: usize,
    index: u64,
    m: &Matcher,
    scratch: &mut Scratch,
    out: &mut Partial,
) {
    let Scratch {
        buf,
        buffers,
        tape: spare,
        texts,
        reparse,
        ..
    } = scratch;
    // One copy of the line, padded as simd-json's SIMD loads need, parsed in place
    // into a tape whose allocation is reused from line to line.
    buf.clear();
    buf.extend_from_slice(line);
    buf.resize(line.len() + simd_json::INPUT_PADDING, 0);
    let buffers = buffers.get_or_insert_with(|| simd_json::Buffers::new(line.len()));
    let mut tape = spare.take().unwrap_or_else(Tape::null).reset();
    if let Err(e) = simd_json::fill_tape_padded(buf, line.len(), buffers, &mut tape) {
        out.malformed(file, index, format!("invalid JSON: {e}"), line);
        *spare = Some(tape.reset());
        return;
    }
    let Ok(record) = Record::new(tape.as_value()) else {
        out.malformed(file, index, "not a JSON object".to_string(), line);
        *spare = Some(tape.reset());
        return;
    };
    // Exports (issue 8): a record held as JSON text in a string is parsed once more.
    if let Some(inner) = record.embedded() {
        let reparse = reparse.get_or_insert_with(Box::default);
        evaluate_embedded(inner, line, file, index, m, reparse, texts, out);
    } else {
        judge(&record, line, file, index, m, texts, out);
    }
    *spare = Some(tape.reset());
}

/// Exports (issue 8): parses a record held as JSON text in a string of its wrapper
/// (PowerShell's `AuditData` string, Elastic's `event.original`) from a second scratch
/// buffer, then judges it like any record, at the wrapper's line. `line` is the
/// wrapper's text, for the sample of a malformed one.
#[allow(clippy::too_many_arguments)]
fn evaluate_embedded(
    embedded: Embedded<'_>,
    line: &[u8],
    file: usize,
    index: u64,
    m: &Matcher,
    r: &mut Reparse,
    texts: &mut Interner,
    out: &mut Partial,
) {
    let json = embedded.json.trim().as_bytes();
    r.buf.clear();
    r.buf.extend_from_slice(json);
    r.buf.resize(json.len() + simd_json::INPUT_PADDING, 0);
    let buffers = r
        .buffers
        .get_or_insert_with(|| simd_json::Buffers::new(json.len()));
    let mut tape = r.tape.take().unwrap_or_else(Tape::null).reset();
    match simd_json::fill_tape_padded(&mut r.buf, json.len(), buffers, &mut tape) {
        Err(e) => {
            let reason = format!("invalid JSON in the record's JSON text: {e}");
            out.malformed(file, index, reason, line);
        }
        Ok(()) => match Record::new(tape.as_value()) {
            Ok(record) => {
                let record = record.with_fallback_time(embedded.fallback_time);
                judge(&record, json, file, index, m, texts, out);
            }
            Err(_) => {
                let reason = "the record's JSON text is not an object".to_string();
                out.malformed(file, index, reason, line);
            }
        },
    }
    r.tape = Some(tape.reset());
}

/// Evaluates the rules on a parsed record and counts it; `text` is its JSON text.
fn judge(
    record: &Record<'_, '_>,
    text: &[u8],
    file: usize,
    index: u64,
    m: &Matcher,
    texts: &mut Interner,
    out: &mut Partial,
) {
    // Exports (issue 8): an object of no record shape that holds a rule literal is
    // malformed, never silently "not matched".
    if !record.is_recognised() && m.holds_literal(text) {
        let reason = "JSON object of no audit record shape (no Operation, event, AuditData, \
                      _source or o365audit)";
        out.malformed(file, index, reason.to_string(), text);
        return;
    }
    out.counts.candidates += 1;
    let before = out.events.len();
    let mut outside = false;
    for (i, rule) in m.rules.iter().enumerate() {
        if rule.query.matches(record) {
            let timestamp = record.timestamp();
            if m.in_window(timestamp) {
                out.events
                    .push(event(record, timestamp, rule, i, file, index, texts));
            } else {
                outside = true;
            }
        }
    }
    if out.events.len() > before {
        out.counts.matched += 1;
    } else {
        out.counts.not_matched += 1;
        out.counts.outside_window += u64::from(outside);
    }
}

fn event(
    record: &Record<'_, '_>,
    timestamp: Option<DateTime<Utc>>,
    rule: &Rule,
    index: usize,
    file: usize,
    line: u64,
    texts: &mut Interner,
) -> Event {
    Event {
        rule: index,
        file,
        line,
        actor: record.actor().map(|s| texts.text(&s)),
        timestamp,
        record_id: record.text(&Field::EventId).map(Cow::into_owned),
        target: rule
            .target
            .iter()
            .find_map(|f| record.text(f))
            .map(|s| texts.text(&s)),
        bypass_enabled: rule
            .flag
            .as_ref()
            .and_then(|f| record.text(f))
            .and_then(|s| parse_flag(&s)),
        source_ip: record.client_address().and_then(|a| texts.ip(a)),
    }
}

/// Shares the text of repeated evidence values (actors, targets, addresses) and the
/// reduction of each distinct client address, per worker. Bounded: it starts afresh
/// past `Interner::MAX` entries, so unique-per-record values cannot grow it forever.
#[derive(Default)]
pub struct Interner {
    texts: FxHashSet<Text>,
    ips: FxHashMap<Text, Option<Text>>,
}

impl Interner {
    const MAX: usize = 1 << 16;

    fn text(&mut self, s: &str) -> Text {
        if let Some(t) = self.texts.get(s) {
            return t.clone();
        }
        if self.texts.len() >= Self::MAX {
            self.texts.clear();
        }
        let t: Text = s.into();
        self.texts.insert(t.clone());
        t
    }

    fn ip(&mut self, address: &str) -> Option<Text> {
        if let Some(ip) = self.ips.get(address) {
            return ip.clone();
        }
        if self.ips.len() >= Self::MAX {
            self.ips.clear();
        }
        let ip: Option<Text> = reduce_ip(address).map(|ip| self.text(&ip));
        self.ips.insert(address.into(), ip.clone());
        ip
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HIT: &str = r#"{"Operation":"Set-MailboxAuditBypassAssociation","Workload":"Exchange","UserId":"u","CreationTime":"2024-01-01T00:00:00","Id":"1","Parameters":[{"Name":"Identity","Value":"m"},{"Name":"AuditBypassEnabled","Value":"True"}]}"#;
    const MISS: &str = r#"{"Operation":"Set-Mailbox","Workload":"Exchange","UserId":"u"}"#;
    const DECOY: &str = r#"{"Operation":"Set-Mailbox","Workload":"Exchange","ObjectId":"Set-MailboxAuditBypassAssociation"}"#;

    fn scan(data: &str, prefilter: bool) -> Partial {
        let m = Matcher::new(Rule::builtin(), prefilter, 1 << 20);
        scan_chunk(data.as_bytes(), 0, &m, &mut Scratch::default())
    }

    #[test]
    fn counts_and_numbers_lines() {
        let data = format!(
            "{MISS}\n\n{HIT}\n  \n{DECOY}\n{{broken Set-MailboxAuditBypassAssociation\n{HIT}"
        );
        for prefilter in [true, false] {
            let p = scan(&data, prefilter);
            assert_eq!(p.counts.lines, 7, "prefilter={prefilter}");
            assert_eq!(p.counts.blank, 2);
            assert_eq!(p.counts.matched, 2);
            assert_eq!(p.counts.malformed, 1);
            assert_eq!(
                p.events.iter().map(|e| e.line).collect::<Vec<_>>(),
                vec![2, 6]
            );
            assert_eq!(p.samples[0].line, 5);
            let c = p.counts;
            assert_eq!(c.lines, c.blank + c.not_candidate() + c.candidates);
            assert_eq!(c.candidates, c.matched + c.not_matched + c.malformed);
        }
        assert_eq!(scan(&data, true).counts.candidates, 4);
        assert_eq!(scan(&data, false).counts.candidates, 5);
    }

    #[test]
    fn evidence_fields_are_read() {
        let p = scan(HIT, true);
        let e = &p.events[0];
        assert_eq!(e.actor.as_deref(), Some("u"));
        assert_eq!(e.target.as_deref(), Some("m"));
        assert_eq!(e.bypass_enabled, Some(true));
        assert_eq!(e.record_id.as_deref(), Some("1"));
    }

    #[test]
    fn crlf_lines_and_hits_across_block_boundaries() {
        // Lines long enough that hits straddle the 256 KiB blocks.
        let pad = "x".repeat(DEFAULT_BLOCK / 3);
        let line = HIT.replace("\"Id\":\"1\"", &format!("\"Pad\":\"{pad}\",\"Id\":\"1\""));
        let data = [line.as_str(); 7].join("\r\n") + "\r\n";
        let p = scan(&data, true);
        assert_eq!(p.counts.lines, 7);
        assert_eq!(p.counts.matched, 7);
        assert_eq!(
            p.events.iter().map(|e| e.line).collect::<Vec<_>>(),
            (0..7).collect::<Vec<_>>()
        );
    }

    #[test]
    fn overlong_lines_are_malformed_not_parsed() {
        let m = Matcher::new(Rule::builtin(), true, 16);
        let p = scan_chunk(HIT.as_bytes(), 0, &m, &mut Scratch::default());
        assert_eq!(p.counts.malformed, 1);
        assert!(
            p.samples[0].reason.contains("longer than"),
            "{}",
            p.samples[0].reason
        );
    }

    #[test]
    fn only_whitespace_is_blank() {
        let p = scan("\n \t\r\n\n", true);
        assert_eq!((p.counts.lines, p.counts.blank), (3, 3));
        let p = scan("\r", false);
        assert_eq!((p.counts.lines, p.counts.blank), (1, 1));
    }
}
