//! The context pass: what the bypassed accounts and the actors did, gathered in a
//! second prefiltered scan that runs only when the first one found something.
//!
//! Place in the flow: `engine` builds a [`Watch`] from the first pass's analysis (each
//! bypassed account with its periods, each actor with the times of its changes), a
//! case-insensitive prefilter from their names as JSON spells them, and scans the
//! inputs again with the [`Activity`] sink. The sink keeps only bounded aggregates
//! (counts per day and per period, per-operation statistics, a capped list of
//! audit-tampering records), never the records themselves, and its state merges like
//! every partial (commutative sums; the tampering list in input order).
//!
//! A record is counted once however often the inputs repeat it (exports overlap), as
//! the first pass drops a repeated rule match: the sink notes each counted record's id
//! (`event.id`, 16 bytes) with what it added, every copy after the first is counted
//! as a repeat, and [`Activity::drop_duplicates`] takes the repeats off once the pass
//! is merged. Past [`MAX_IDS`] distinct ids the notes are dropped and the counts keep
//! the copies (the report says so), so memory stays bounded.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::allow::key;
use crate::field::Field;
use crate::findings::{At, Merge, Shift, Text};
use crate::record::Record;
use crate::scan::{Sink, SinkCx};

/// Most distinct source IPs kept per operation statistic.
pub const MAX_IPS: usize = 32;
/// Most audit-tampering records kept per run.
pub const MAX_TAMPERING: usize = 1000;
/// Most distinct record ids the pass remembers to count repeated records once (some
/// 40 bytes each).
pub const MAX_IDS: usize = 1 << 21;

/// Unix-second spans `[start, end)` of an account's periods (a missing start: from
/// the beginning; a missing end: open).
pub type Spans = Vec<(Option<i64>, Option<i64>)>;

/// Whom the context pass watches, and when.
#[derive(Clone, Debug, Default)]
pub struct Watch {
    /// Bypassed accounts (keys: trimmed, lower case) and their periods as Unix-second
    /// spans `[start, end)` (a missing start: from the beginning; a missing end: open).
    pub accounts: Vec<(String, Spans)>,
    /// Actors (keys) and the windows around their changes, merged and sorted.
    pub actors: Vec<(String, Vec<(i64, i64)>)>,
    /// How many changes each actor made (before their windows were merged).
    pub actor_changes: Vec<u64>,
    /// Each actor as first spelled in its changes (for reports).
    pub actor_names: Vec<String>,
    /// Every spelling of the watched names seen in the findings (the prefilter
    /// searches these, their lower and their upper case).
    pub spellings: Vec<String>,
    /// How far before and after its periods an account's mailbox-audit records are
    /// counted (seconds; `--context-horizon`).
    pub horizon: i64,
    by_key: FxHashMap<String, (Vec<u32>, Vec<u32>)>,
    by_local: FxHashMap<String, (Vec<u32>, Vec<u32>)>,
}

impl Watch {
    /// Builds the lookup tables.
    pub fn new(accounts: Vec<(String, Spans)>, actors: Vec<(String, Vec<(i64, i64)>)>) -> Watch {
        let mut w = Watch {
            accounts,
            actors,
            ..Watch::default()
        };
        for (i, (k, _)) in w.accounts.iter().enumerate() {
            w.by_key.entry(k.clone()).or_default().0.push(i as u32);
            w.by_local
                .entry(local(k).to_string())
                .or_default()
                .0
                .push(i as u32);
        }
        for (i, (k, _)) in w.actors.iter().enumerate() {
            w.by_key.entry(k.clone()).or_default().1.push(i as u32);
            w.by_local
                .entry(local(k).to_string())
                .or_default()
                .1
                .push(i as u32);
        }
        w
    }

    /// Whether account `a`'s records at `t` are counted: `t` within the horizon of
    /// one of its periods (an open side reaches as far as the data).
    fn in_reach(&self, a: usize, t: i64) -> bool {
        let h = self.horizon;
        self.accounts[a].1.iter().any(|&(start, end)| {
            start.is_none_or(|s| t >= s.saturating_sub(h))
                && end.is_none_or(|e| t < e.saturating_add(h))
        })
    }

    /// Every time the context pass counts a record at: each account's periods widened
    /// by the horizon, each actor's windows. A record at another time changes nothing
    /// in its [`Activity`], so the pass may skip the blocks that hold no such time.
    pub fn times(&self) -> crate::index::Times {
        let h = self.horizon;
        let accounts = self.accounts.iter().flat_map(|(_, spans)| {
            spans.iter().map(move |&(start, end)| {
                (
                    start.map_or(i64::MIN, |s| s.saturating_sub(h)),
                    end.map_or(i64::MAX, |e| e.saturating_add(h)),
                )
            })
        });
        let actors = self.actors.iter().flat_map(|(_, w)| w.iter().copied());
        crate::index::Times::new(accounts.chain(actors).collect())
    }

    /// Whether there is anyone to watch.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty() && self.actors.is_empty()
    }

    /// The literals a record of a watched name must hold: each name's longest run
    /// that JSON writers leave as it is (case is ignored by the prefilter). `None` when
    /// a name has no such run long enough: then every record must be parsed.
    pub fn literals(&self) -> Option<Vec<String>> {
        let mut names = self
            .accounts
            .iter()
            .map(|a| &a.0)
            .chain(self.actors.iter().map(|a| &a.0));
        names.try_fold(Vec::new(), |mut out, n| {
            out.push(literal_of(n)?);
            // A domainless name also matches user ids with that local part: its literal
            // is a substring of theirs, so it serves both.
            Some(out)
        })
    }

    /// Whether the record on `line` (trimmed) may be one [`Activity`] counts, judged
    /// from its bytes before it is parsed: `false` only when the line shows that the
    /// parsed record's actor (`UserId`) names no watched account or actor whose reach
    /// (an account's periods widened by the horizon, an actor's windows) holds its time
    /// (`CreationTime`), so that [`Activity::selected`] would add nothing.
    ///
    /// It answers `false` only for a line it can read as the full parse would: no
    /// escape but `\\` and `\/` (so every `"` is a string's edge, and in JSON that
    /// parses, a `"` followed by a key's name opens that key), no key that makes the record a wrapper
    /// or an ECS document (`_source`, `o365audit`, `AuditData`, `auditData`, `event…`:
    /// the actor and time are then read elsewhere), and every `UserId` and
    /// `CreationTime` key, at any depth and however often repeated, with a string value.
    /// Every pair of those values is tried, so the pair the parsed record reads (the
    /// top-level keys, the last of a repeated one) is among them. A line that does not
    /// parse gives no record to count either way.
    pub fn may_count(&self, line: &[u8]) -> bool {
        // The escapes PowerShell and .NET write in names and paths (`NT
        // AUTHORITY\\SYSTEM`, `\/Date(…)\/`) leave every `"` a string's edge; any
        // other (`\"`, `\u0073`) may not, or may spell a key.
        let mut escaped = false;
        let mut from = 0;
        while let Some(i) = memchr::memchr(b'\\', &line[from..]) {
            let at = from + i;
            if !matches!(line.get(at + 1), Some(b'\\' | b'/')) {
                return true;
            }
            escaped = true;
            from = at + 2;
        }
        // Every key the screen reads, in one search: the values of `UserId` and
        // `CreationTime` (up to `SCREEN_VALUES` of each; a line with more is parsed), and
        // any wrapper key, which settles it. Each search starts one byte past the last
        // key found, so no key is missed however keys sit next to each other.
        let mut users: [&[u8]; SCREEN_VALUES] = [&[]; SCREEN_VALUES];
        let mut times: [&[u8]; SCREEN_VALUES] = [&[]; SCREEN_VALUES];
        let (mut n_users, mut n_times) = (0, 0);
        // A `CreationTime` the screen cannot read matters only for a watched actor.
        let mut unread_time = false;
        let keys = &*SCREEN_KEYS;
        let mut from = 0;
        while let Some((pattern, start, end)) = keys.find(line, from) {
            from = start + 1;
            let user = match pattern {
                KEY_USER => true,
                KEY_TIME => false,
                _ => return true,
            };
            match (string_value(line, end), user) {
                (Value::NotAKey, _) => {}
                (Value::Other, true) => return true,
                (Value::Other, false) => unread_time = true,
                (Value::String(v), true) if n_users < SCREEN_VALUES => {
                    users[n_users] = v;
                    n_users += 1;
                }
                (Value::String(v), false) if n_times < SCREEN_VALUES => {
                    times[n_times] = v;
                    n_times += 1;
                }
                (Value::String(_), true) => return true,
                (Value::String(_), false) => unread_time = true,
            }
        }
        // The watched names the actors name.
        let mut hits = [Watched::Account(0); SCREEN_HITS];
        let mut n_hits = 0;
        let mut overflow = false;
        for &value in &users[..n_users] {
            let Ok(text) = std::str::from_utf8(value) else {
                return true;
            };
            let mut buf = [0u8; NAME_BUF];
            let owned;
            let folded = match copy_value(value, escaped, true, &mut buf).and_then(trim_ascii) {
                Some(k) => k,
                // Not ASCII, or long: the names' own folding.
                None => {
                    owned = key(&unescape_owned(text, escaped));
                    owned.as_str()
                }
            };
            self.lookup_each(folded, |w| match hits.get_mut(n_hits) {
                Some(slot) => {
                    *slot = w;
                    n_hits += 1;
                }
                None => overflow = true,
            });
        }
        if n_hits == 0 {
            // No watched actor: the time does not matter.
            return false;
        }
        if overflow || unread_time {
            return true;
        }
        let mut at = [0i64; SCREEN_VALUES];
        let mut n_at = 0;
        for &value in &times[..n_times] {
            let Ok(text) = std::str::from_utf8(value) else {
                return true;
            };
            let mut buf = [0u8; NAME_BUF];
            let parsed = match copy_value(value, escaped, false, &mut buf) {
                // Unescaping keeps UTF-8 (only ASCII backslashes go).
                Some(v) => std::str::from_utf8(v)
                    .ok()
                    .and_then(crate::record::parse_timestamp),
                None => crate::record::parse_timestamp(&unescape_owned(text, escaped)),
            };
            if let Some(t) = parsed {
                at[n_at] = t.timestamp();
                n_at += 1;
            }
        }
        at[..n_at].iter().any(|&t| {
            hits[..n_hits].iter().any(|&w| match w {
                Watched::Account(a) => self.in_reach(a as usize, t),
                Watched::Actor(i) => {
                    let windows = &self.actors[i as usize].1;
                    windows.iter().any(|&(s, e)| s <= t && t <= e)
                }
            })
        })
    }

    /// The watched accounts and actors a user id names: the same name, or, where one
    /// side has no domain (`alice` for `alice@contoso.com`), the same local part.
    fn lookup(&self, user: &str) -> (Vec<u32>, Vec<u32>) {
        let mut accounts = Vec::new();
        let mut actors = Vec::new();
        self.lookup_each(&key(user), |w| match w {
            Watched::Account(a) => accounts.push(a),
            Watched::Actor(i) => actors.push(i),
        });
        accounts.sort_unstable();
        accounts.dedup();
        actors.sort_unstable();
        actors.dedup();
        (accounts, actors)
    }

    /// Calls `each` with every watched account and actor the user id `k` (already
    /// folded as [`key`] folds it) names: the same name, or, where one side has no
    /// domain (`alice` for `alice@contoso.com`), the same local part. A name may come
    /// more than once.
    fn lookup_each(&self, k: &str, mut each: impl FnMut(Watched)) {
        let mut take = |hit: Option<&(Vec<u32>, Vec<u32>)>, domainless_only: bool| {
            if let Some((a, b)) = hit {
                for &i in a {
                    if !domainless_only || !self.accounts[i as usize].0.contains('@') {
                        each(Watched::Account(i));
                    }
                }
                for &i in b {
                    if !domainless_only || !self.actors[i as usize].0.contains('@') {
                        each(Watched::Actor(i));
                    }
                }
            }
        };
        take(self.by_key.get(k), false);
        if k.contains('@') {
            // A watched name without a domain matches this user's local part.
            take(self.by_key.get(local(k)), true);
        } else {
            // This domainless user id matches watched names with its local part.
            take(self.by_local.get(k), false);
        }
    }
}

/// A watched account or actor, by its index in the [`Watch`].
#[derive(Clone, Copy, Debug)]
enum Watched {
    Account(u32),
    Actor(u32),
}

/// Most values of `UserId` or of `CreationTime` the screen reads on one line (a line
/// with more is parsed).
const SCREEN_VALUES: usize = 8;

/// Most watched names the screen notes for one line's actors (past that it parses).
const SCREEN_HITS: usize = 16;

/// The longest value the screen folds on the stack (a longer one is folded as [`key`]
/// folds it).
const NAME_BUF: usize = 256;

/// `value` copied into `buf`, each `\\` and `\/` read as the byte after it when the
/// line holds escapes (only those are left), ASCII letters lower-cased with `lower`;
/// `None` when it does not fit, or, with `lower`, is not all ASCII (its folding is then
/// [`key`]'s).
fn copy_value<'a>(
    value: &[u8],
    escaped: bool,
    lower: bool,
    buf: &'a mut [u8; NAME_BUF],
) -> Option<&'a [u8]> {
    let mut n = 0;
    let mut bytes = value.iter();
    while let Some(&b) = bytes.next() {
        let b = if escaped && b == b'\\' {
            *bytes.next()?
        } else {
            b
        };
        if lower && !b.is_ascii() {
            return None;
        }
        *buf.get_mut(n)? = if lower { b.to_ascii_lowercase() } else { b };
        n += 1;
    }
    Some(&buf[..n])
}

/// `value` with each `\\` and `\/` read as the byte after it (when the line holds
/// escapes; only those are left).
fn unescape_owned(value: &str, escaped: bool) -> String {
    if !escaped || !value.contains('\\') {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        out.extend(if c == '\\' { chars.next() } else { Some(c) });
    }
    out
}

/// An ASCII name trimmed as [`key`] trims it (`str::trim`: `\x0b` too, which
/// `trim_ascii` keeps).
fn trim_ascii(name: &[u8]) -> Option<&str> {
    let space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r');
    let start = name.iter().position(|b| !space(b)).unwrap_or(name.len());
    let end = name
        .iter()
        .rposition(|b| !space(b))
        .map_or(start, |i| i + 1);
    std::str::from_utf8(&name[start..end]).ok()
}

/// The keys [`Watch::may_count`] reads, each with its quotes: `UserId` and
/// `CreationTime`, then those of wrappers and ECS documents, whose actor and time are
/// read elsewhere.
const SCREEN_PATTERNS: [&str; 6] = [
    "\"UserId\"",
    "\"CreationTime\"",
    "\"event",
    "\"_source\"",
    "\"o365audit\"",
    "uditData\"",
];

/// The search for [`SCREEN_PATTERNS`] in one pass over a line: Teddy where the CPU has
/// it (the automaton's own choice, a search for the rare bytes `"` among them, is
/// slower than the six substring searches it replaces on JSON, where `"` is everywhere).
enum ScreenKeys {
    Teddy(aho_corasick::packed::Searcher),
    Automaton(aho_corasick::AhoCorasick),
}

impl ScreenKeys {
    fn new() -> ScreenKeys {
        let kind = aho_corasick::packed::MatchKind::LeftmostFirst;
        let teddy = aho_corasick::packed::Config::new()
            .match_kind(kind)
            .builder()
            .extend(SCREEN_PATTERNS)
            .build();
        match teddy {
            Some(t) => ScreenKeys::Teddy(t),
            None => ScreenKeys::Automaton(
                aho_corasick::AhoCorasick::builder()
                    .match_kind(aho_corasick::MatchKind::LeftmostFirst)
                    .build(SCREEN_PATTERNS)
                    .expect("fixed patterns build"),
            ),
        }
    }

    /// The first key at or after `from`: (its pattern, its start, its end).
    #[inline]
    fn find(&self, line: &[u8], from: usize) -> Option<(usize, usize, usize)> {
        let m = match self {
            ScreenKeys::Teddy(t) => t.find_in(line, aho_corasick::Span::from(from..line.len()))?,
            ScreenKeys::Automaton(a) => a.find(aho_corasick::Input::new(line).range(from..))?,
        };
        Some((m.pattern().as_usize(), m.start(), m.end()))
    }
}

static SCREEN_KEYS: std::sync::LazyLock<ScreenKeys> = std::sync::LazyLock::new(ScreenKeys::new);
/// [`SCREEN_KEYS`]' pattern of `UserId`.
const KEY_USER: usize = 0;
/// [`SCREEN_KEYS`]' pattern of `CreationTime`.
const KEY_TIME: usize = 1;

/// What follows a quoted name at `at` in a line without backslashes.
#[derive(Debug, PartialEq, Eq)]
enum Value<'a> {
    /// No `:`: the name is not a key (a value, or the line is not JSON).
    NotAKey,
    /// A key whose value is not a string (or does not end on the line).
    Other,
    /// A key with this string value (its bytes, without quotes).
    String(&'a [u8]),
}

fn string_value(line: &[u8], at: usize) -> Value<'_> {
    let space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let skip = |from: usize| {
        from + line[from.min(line.len())..]
            .iter()
            .take_while(|b| space(b))
            .count()
    };
    let colon = skip(at);
    if line.get(colon) != Some(&b':') {
        return Value::NotAKey;
    }
    let open = skip(colon + 1);
    if line.get(open) != Some(&b'"') {
        return Value::Other;
    }
    match memchr::memchr(b'"', &line[open + 1..]) {
        Some(len) => Value::String(&line[open + 1..open + 1 + len]),
        None => Value::Other,
    }
}

fn local(k: &str) -> &str {
    k.split('@').next().unwrap_or(k)
}

/// The longest run of a name that every JSON writer leaves as it is (no quote,
/// backslash, slash, control or non-ASCII character, nothing PowerShell escapes).
pub fn literal_of(name: &str) -> Option<String> {
    let unsafe_char = |c: char| !c.is_ascii() || c.is_ascii_control() || "\"\\/<>&'".contains(c);
    name.split(unsafe_char)
        .max_by_key(|f| f.len())
        .filter(|f| f.len() >= 3)
        .map(str::to_string)
}

/// Count, first and last time, and source IPs of one operation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpStat {
    /// Records.
    pub count: u64,
    /// First record time.
    pub first: Option<DateTime<Utc>>,
    /// Last record time.
    pub last: Option<DateTime<Utc>>,
    /// Distinct source IPs: the [`MAX_IPS`] lowest in text order.
    pub source_ips: BTreeSet<Text>,
}

impl OpStat {
    fn add(&mut self, t: DateTime<Utc>, ip: Option<&Text>) {
        self.count += 1;
        self.first = Some(self.first.map_or(t, |f| f.min(t)));
        self.last = Some(self.last.map_or(t, |l| l.max(t)));
        if let Some(ip) = ip {
            self.keep_ip(ip);
        }
    }

    /// Keeps the [`MAX_IPS`] lowest addresses (in text order): the same set however the
    /// records are grouped into chunks, files or shards before merging.
    fn keep_ip(&mut self, ip: &Text) {
        let full = self.source_ips.len() >= MAX_IPS;
        if full && self.source_ips.last().is_some_and(|last| ip >= last) {
            return;
        }
        self.source_ips.insert(ip.clone());
        if self.source_ips.len() > MAX_IPS {
            self.source_ips.pop_last();
        }
    }

    fn merge(&mut self, o: OpStat) {
        self.count += o.count;
        self.first = match (self.first, o.first) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last = match (self.last, o.last) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        for ip in &o.source_ips {
            self.keep_ip(ip);
        }
    }
}

/// An audit-tampering record by a watched actor, near one of its changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tampering {
    /// The actor's index in the watch.
    pub actor: u32,
    /// When.
    pub timestamp: DateTime<Utc>,
    /// The operation.
    pub operation: Text,
    /// Where the record is.
    pub at: At,
    /// The cmdlet, rebuilt.
    pub command_line: Option<String>,
    /// The record's id as [`record_key`] reads it (a repeated record is listed once).
    #[serde(default)]
    pub key: Option<u128>,
}

/// A record id as 16 bytes: a GUID in lower case (how Microsoft 365 spells `Id`) as its
/// 128 bits, any other id (an upper-case GUID too: ids compare as written) as the first
/// 16 bytes of its SHA-256 (two ids meet by chance with odds of 2^-128).
pub fn record_key(id: &str) -> u128 {
    let b = id.as_bytes();
    if b.len() == 36 {
        // Lower case only: ids compare as written, as the first pass compares them.
        let mut n: u128 = 0;
        let guid = b.iter().enumerate().all(|(i, &c)| match (i, c) {
            (8 | 13 | 18 | 23, b'-') => true,
            (8 | 13 | 18 | 23, _) => false,
            (_, b'0'..=b'9') => {
                n = n << 4 | u128::from(c - b'0');
                true
            }
            (_, b'a'..=b'f') => {
                n = n << 4 | u128::from(c - b'a' + 10);
                true
            }
            _ => false,
        });
        if guid {
            return n;
        }
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(id.as_bytes());
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    u128::from_be_bytes(first)
}

/// One count a record added to: the slots of [`Activity`] it is taken off from when the
/// record turns out to be a repeat.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Share {
    /// `mailbox_days[(account, day)]`.
    Day(u32, i32),
    /// `mailbox_slots[(account, slot)]`.
    Slot(u32, u32),
    /// `other_during[(account, op)]`.
    Other(u32, OpKey),
    /// `actor_ops[(actor, op)]`.
    Actor(u32, OpKey),
}

/// The distinct share lists of a partial, each once (records of one day and operation
/// share one), so a remembered id costs an index, not a list.
#[derive(Clone, Debug, Default)]
struct Shares {
    lists: Vec<Vec<Share>>,
    index: FxHashMap<Vec<Share>, u32>,
}

impl Shares {
    fn intern(&mut self, list: Vec<Share>) -> u32 {
        if self.index.len() != self.lists.len() {
            // Read back from a partial file: the index is not written.
            self.index = self.lists.iter().cloned().zip(0..).collect();
        }
        if let Some(&i) = self.index.get(&list) {
            return i;
        }
        let i = self.lists.len() as u32;
        self.lists.push(list.clone());
        self.index.insert(list, i);
        i
    }
}

impl Serialize for Shares {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.lists.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Shares {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Shares {
            lists: Vec::deserialize(d)?,
            index: FxHashMap::default(),
        })
    }
}

/// (workload, operation) of a record.
pub type OpKey = (Text, Text);

/// What the context pass keeps: bounded aggregates per watched name.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Activity {
    /// Records selected and attributed to a watched name.
    pub records: u64,
    /// Mailbox-audit records per (account, day number).
    #[serde(with = "crate::findings::pairs")]
    pub mailbox_days: BTreeMap<(u32, i32), u64>,
    /// Mailbox-audit records per (account, slot): slot `2k` is the time before period
    /// `k` (after period `k - 1`), slot `2k + 1` is period `k`.
    #[serde(with = "crate::findings::pairs")]
    pub mailbox_slots: BTreeMap<(u32, u32), u64>,
    /// Other activity of an account inside its periods.
    #[serde(with = "crate::findings::pairs")]
    pub other_during: BTreeMap<(u32, OpKey), OpStat>,
    /// Activity of an actor inside the windows around its changes.
    #[serde(with = "crate::findings::pairs")]
    pub actor_ops: BTreeMap<(u32, OpKey), OpStat>,
    /// Audit-tampering records of actors inside their windows, in input order.
    pub tampering: Vec<Tampering>,
    /// Each counted record's id ([`record_key`]) with what its first copy added (an
    /// index into `shares`); emptied past [`MAX_IDS`] and by `drop_duplicates`.
    #[serde(default, with = "crate::findings::pairs")]
    ids: BTreeMap<u128, u32>,
    #[serde(default)]
    shares: Shares,
    /// What the copies after the first of a counted record added.
    #[serde(default, with = "crate::findings::pairs")]
    repeated: BTreeMap<Share, u64>,
    /// Copies after the first of counted records.
    #[serde(default)]
    pub repeats: u64,
    /// More than [`MAX_IDS`] distinct record ids: repeated records stay counted.
    #[serde(default)]
    pub ids_overflow: bool,
}

impl PartialEq for Activity {
    /// The same counts, and the same ids noted with the same shares, however the
    /// records were grouped into partials.
    fn eq(&self, o: &Activity) -> bool {
        let ids = |a: &Activity| -> Vec<(u128, Vec<Share>)> {
            a.ids
                .iter()
                .map(|(&k, &i)| (k, a.shares.lists[i as usize].clone()))
                .collect()
        };
        self.records == o.records
            && self.mailbox_days == o.mailbox_days
            && self.mailbox_slots == o.mailbox_slots
            && self.other_during == o.other_during
            && self.actor_ops == o.actor_ops
            && self.tampering == o.tampering
            && self.repeated == o.repeated
            && self.repeats == o.repeats
            && self.ids_overflow == o.ids_overflow
            && ids(self) == ids(o)
    }
}

impl Eq for Activity {}

impl Activity {
    /// Notes record `key`, which added `list`; `false` when it is a repeat (its shares
    /// are then kept to be taken off).
    fn note(&mut self, key: u128, list: Vec<Share>) -> bool {
        if self.ids_overflow {
            return true;
        }
        if self.ids.contains_key(&key) {
            self.repeat(list);
            return false;
        }
        let i = self.shares.intern(list);
        self.ids.insert(key, i);
        if self.ids.len() > MAX_IDS {
            self.overflow();
        }
        true
    }

    fn repeat(&mut self, list: Vec<Share>) {
        self.repeats += 1;
        for share in list {
            *self.repeated.entry(share).or_default() += 1;
        }
    }

    fn overflow(&mut self) {
        self.ids_overflow = true;
        self.ids = BTreeMap::new();
        self.shares = Shares::default();
        self.repeated = BTreeMap::new();
        self.repeats = 0;
    }

    /// Takes the copies after the first of each counted record off the counts (the
    /// records, the mailbox-audit days and slots, the operation counts; a repeated
    /// audit-tampering record is listed once), then forgets the ids. Call it once the
    /// pass is merged. Nothing is taken off past [`MAX_IDS`] ids (`ids_overflow`).
    pub fn drop_duplicates(&mut self) -> u64 {
        let repeats = self.repeats;
        self.records -= repeats.min(self.records);
        let sub = |n: &mut u64, by: u64| *n -= by.min(*n);
        for (share, by) in std::mem::take(&mut self.repeated) {
            match share {
                Share::Day(a, d) => sub(self.mailbox_days.entry((a, d)).or_default(), by),
                Share::Slot(a, s) => sub(self.mailbox_slots.entry((a, s)).or_default(), by),
                Share::Other(a, op) => {
                    sub(&mut self.other_during.entry((a, op)).or_default().count, by)
                }
                Share::Actor(i, op) => {
                    sub(&mut self.actor_ops.entry((i, op)).or_default().count, by)
                }
            }
        }
        self.mailbox_days.retain(|_, n| *n > 0);
        self.mailbox_slots.retain(|_, n| *n > 0);
        self.other_during.retain(|_, s| s.count > 0);
        self.actor_ops.retain(|_, s| s.count > 0);
        let mut listed = rustc_hash::FxHashSet::default();
        self.tampering
            .retain(|t| t.key.is_none_or(|k| listed.insert((t.actor, k))));
        self.ids = BTreeMap::new();
        self.shares = Shares::default();
        self.repeats = 0;
        repeats
    }
}

impl Merge for Activity {
    fn append(&mut self, mut next: Activity, shift: Shift) {
        // The ids first: a record of `next` already noted here is a repeat.
        if self.ids_overflow || next.ids_overflow {
            if !self.ids_overflow {
                self.overflow();
            }
        } else {
            // Each of next's share lists is looked up here once, not once per id.
            let lists = std::mem::take(&mut next.shares.lists);
            let mut mapped: Vec<Option<u32>> = vec![None; lists.len()];
            for (key, i) in std::mem::take(&mut next.ids) {
                let list = &lists[i as usize];
                match self.ids.entry(key) {
                    std::collections::btree_map::Entry::Occupied(_) => {
                        self.repeats += 1;
                        for share in list {
                            *self.repeated.entry(share.clone()).or_default() += 1;
                        }
                    }
                    std::collections::btree_map::Entry::Vacant(slot) => {
                        let j = *mapped[i as usize]
                            .get_or_insert_with(|| self.shares.intern(list.clone()));
                        slot.insert(j);
                    }
                }
                if self.ids.len() > MAX_IDS {
                    self.overflow();
                    break;
                }
            }
            if !self.ids_overflow {
                for (share, n) in std::mem::take(&mut next.repeated) {
                    *self.repeated.entry(share).or_default() += n;
                }
                self.repeats += next.repeats;
            }
        }
        self.records += next.records;
        for (k, n) in next.mailbox_days {
            *self.mailbox_days.entry(k).or_default() += n;
        }
        for (k, n) in next.mailbox_slots {
            *self.mailbox_slots.entry(k).or_default() += n;
        }
        for (k, s) in next.other_during {
            self.other_during.entry(k).or_default().merge(s);
        }
        for (k, s) in next.actor_ops {
            self.actor_ops.entry(k).or_default().merge(s);
        }
        let room = MAX_TAMPERING.saturating_sub(self.tampering.len());
        self.tampering
            .extend(next.tampering.into_iter().take(room).map(|mut t| {
                t.at.line += shift.lines;
                t.at.offset += shift.bytes;
                t
            }));
    }
}

/// Mailbox-audit record types: Exchange mailbox item records (`ExchangeItem` 2,
/// `ExchangeItemGroup` 3, `ExchangeItemAggregated` 50 — MailItemsAccessed, Send,
/// HardDelete, …), the records a bypass association stops.
pub fn is_mailbox_audit(record_type: &str) -> bool {
    matches!(
        record_type.trim(),
        "2" | "3" | "50" | "ExchangeItem" | "ExchangeItemGroup" | "ExchangeItemAggregated"
    )
}

/// Operations that reduce or stop what is audited (besides the bypass itself), judged
/// from their `parameters` (name, value):
///
/// - removing the audit configuration or a retention policy, and creating or changing a
///   retention policy (it may shorten what is kept), always;
/// - `Set-Mailbox`, `Set-OrganizationConfig`, `Set-MailboxDatabase` and
///   `Set-AdminAuditLogConfig` when one of their audit parameters reduces auditing:
///   an `…Enabled` set to false (`-AuditEnabled $false`,
///   `-UnifiedAuditLogIngestionEnabled $false`), an `…Disabled` set to true, an age
///   limit or an audited-action list that is replaced or has items removed (either may
///   shorten), an excluded-cmdlet list. Turning auditing on (`-AuditEnabled $true`) or
///   adding audited actions (`@{Add=…}`) is not tampering. A value that cannot be read
///   counts as reducing, and so does `Set-AdminAuditLogConfig` with no readable
///   parameter: what it changed is unknown.
pub fn is_tampering(operation: &str, parameters: &[(String, Option<String>)]) -> bool {
    if !may_be_tampering(operation) {
        return false;
    }
    match operation {
        "Remove-AdminAuditLogConfig"
        | "New-UnifiedAuditLogRetentionPolicy"
        | "Set-UnifiedAuditLogRetentionPolicy"
        | "Remove-UnifiedAuditLogRetentionPolicy"
        | "Set-MailboxAuditBypassAssociation" => true,
        "Set-Mailbox" | "Set-OrganizationConfig" | "Set-MailboxDatabase" => parameters
            .iter()
            .any(|(n, v)| reduces_auditing(n, v.as_deref())),
        "Set-AdminAuditLogConfig" => {
            parameters.is_empty()
                || parameters
                    .iter()
                    .any(|(n, v)| reduces_auditing(n, v.as_deref()))
        }
        _ => false,
    }
}

/// Whether [`is_tampering`] may hold for `operation` with some parameters: the
/// operations it names, so that a record of any other is judged without reading its
/// parameters.
pub fn may_be_tampering(operation: &str) -> bool {
    matches!(
        operation,
        "Remove-AdminAuditLogConfig"
            | "New-UnifiedAuditLogRetentionPolicy"
            | "Set-UnifiedAuditLogRetentionPolicy"
            | "Remove-UnifiedAuditLogRetentionPolicy"
            | "Set-MailboxAuditBypassAssociation"
            | "Set-Mailbox"
            | "Set-OrganizationConfig"
            | "Set-MailboxDatabase"
            | "Set-AdminAuditLogConfig"
    )
}

/// Whether setting the parameter `name` to `value` reduces what is audited (see
/// [`is_tampering`]); a parameter that is not about auditing never does.
fn reduces_auditing(name: &str, value: Option<&str>) -> bool {
    let lower = name.to_ascii_lowercase();
    if !lower.contains("audit") {
        return false;
    }
    let flag = value.and_then(crate::record::parse_flag);
    if lower.ends_with("enabled") {
        return flag != Some(true);
    }
    if lower.ends_with("disabled") {
        return flag != Some(false);
    }
    if lower.contains("excluded") || lower.contains("agelimit") {
        return true;
    }
    // An audited-action list (AuditOwner, AuditDelegate, AuditAdmin, AdminAuditLogCmdlets,
    // …): only adding to it leaves everything audited that was.
    match value {
        Some(v) => {
            let v = v.to_ascii_lowercase();
            !v.contains("add") || v.contains("remove")
        }
        None => true,
    }
}

/// Which slot of an account's periods a time falls in (see [`Activity::mailbox_slots`]).
pub fn slot(periods: &[(Option<i64>, Option<i64>)], t: i64) -> u32 {
    for (k, &(start, end)) in periods.iter().enumerate() {
        if start.is_some_and(|s| t < s) {
            return 2 * k as u32;
        }
        if end.is_none_or(|e| t < e) {
            return 2 * k as u32 + 1;
        }
    }
    2 * periods.len() as u32
}

/// The index of the period a time falls in, if any.
fn during(periods: &[(Option<i64>, Option<i64>)], t: i64) -> bool {
    slot(periods, t) % 2 == 1
}

static RECORD_TYPE: std::sync::LazyLock<Field> =
    std::sync::LazyLock::new(|| Field::parse("o365.audit.RecordType"));
static EVENT_CODE: std::sync::LazyLock<Field> =
    std::sync::LazyLock::new(|| Field::parse("event.code"));

impl Sink for Activity {
    type Params = Watch;

    fn may_select(line: &[u8], watch: &Watch) -> bool {
        watch.may_count(line)
    }

    fn selected(
        &mut self,
        _: &[usize],
        record: &Record<'_, '_>,
        at: At,
        cx: &mut SinkCx<'_, Watch>,
    ) {
        let Some(user) = record.actor() else { return };
        let (mut accounts, mut actors) = cx.params.lookup(&user);
        if accounts.is_empty() && actors.is_empty() {
            return;
        }
        let Some(t) = record.timestamp() else { return };
        let secs = t.timestamp();
        // Only records at watched times count (`Watch::times`): what the index lets
        // the pass skip is then exactly what would not count.
        let watch = cx.params;
        accounts.retain(|&a| watch.in_reach(a as usize, secs));
        actors.retain(|&i| {
            let windows = &watch.actors[i as usize].1;
            windows.iter().any(|&(s, e)| s <= secs && secs <= e)
        });
        if accounts.is_empty() && actors.is_empty() {
            return;
        }
        self.records += 1;
        let workload = record.text(&Field::Provider).map(|s| cx.texts.text(&s));
        let operation = record.operation().map(|s| cx.texts.text(&s));
        let op: OpKey = (
            workload.unwrap_or_else(|| Text::from("")),
            operation.clone().unwrap_or_else(|| Text::from("")),
        );
        let ip = record.client_address().and_then(|a| cx.texts.ip(a));
        let mailbox = record
            .text(&RECORD_TYPE)
            .or_else(|| record.text(&EVENT_CODE))
            .is_some_and(|rt| is_mailbox_audit(&rt));
        let key = record.text(&Field::EventId).map(|id| record_key(&id));
        let mut shares = Vec::new();
        for a in accounts {
            let periods = &cx.params.accounts[a as usize].1;
            if mailbox {
                let day = secs.div_euclid(86_400) as i32;
                let slot = slot(periods, secs);
                *self.mailbox_days.entry((a, day)).or_default() += 1;
                *self.mailbox_slots.entry((a, slot)).or_default() += 1;
                shares.extend([Share::Day(a, day), Share::Slot(a, slot)]);
            } else if during(periods, secs) {
                self.other_during
                    .entry((a, op.clone()))
                    .or_default()
                    .add(t, ip.as_ref());
                shares.push(Share::Other(a, op.clone()));
            }
        }
        for &i in &actors {
            self.actor_ops
                .entry((i, op.clone()))
                .or_default()
                .add(t, ip.as_ref());
            shares.push(Share::Actor(i, op.clone()));
        }
        if let Some(key) = key {
            self.note(key, shares);
        }
        // Only an operation that may reduce auditing has its parameters read, once for
        // every actor the record names.
        let tampering = !actors.is_empty()
            && self.tampering.len() < MAX_TAMPERING
            && operation.as_deref().is_some_and(|op| {
                op != "Set-MailboxAuditBypassAssociation"
                    && may_be_tampering(op)
                    && is_tampering(op, &record.parameters())
            });
        for i in actors {
            if tampering
                && let Some(operation) = &operation
                && self.tampering.len() < MAX_TAMPERING
            {
                self.tampering.push(Tampering {
                    actor: i,
                    timestamp: t,
                    operation: operation.clone(),
                    at,
                    command_line: record.command_line(),
                    key,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_exactly_or_by_local_part_when_one_side_has_no_domain() {
        let w = Watch::new(
            vec![
                ("svc@contoso.com".into(), vec![]),
                ("archiver".into(), vec![]),
            ],
            vec![("adm@contoso.com".into(), vec![])],
        );
        assert_eq!(w.lookup(" SVC@Contoso.com"), (vec![0], vec![]));
        assert_eq!(w.lookup("svc"), (vec![0], vec![]));
        assert_eq!(w.lookup("archiver@contoso.com"), (vec![1], vec![]));
        assert_eq!(w.lookup("adm@contoso.com"), (vec![], vec![0]));
        assert_eq!(w.lookup("svc@other.com"), (vec![], vec![]));
        assert_eq!(w.lookup("nobody"), (vec![], vec![]));
    }

    #[test]
    fn literals_avoid_what_json_escapes() {
        assert_eq!(
            literal_of("a.b@contoso.com").as_deref(),
            Some("a.b@contoso.com")
        );
        assert_eq!(
            literal_of(r"NT AUTHORITY\SYSTEM (Microsoft.Exchange.ServiceHost)").as_deref(),
            Some("SYSTEM (Microsoft.Exchange.ServiceHost)")
        );
        assert_eq!(literal_of("ab"), None);
    }

    #[test]
    fn slots_alternate_gaps_and_periods() {
        let p = [(Some(10), Some(20)), (Some(30), None)];
        assert_eq!(slot(&p, 5), 0);
        assert_eq!(slot(&p, 10), 1);
        assert_eq!(slot(&p, 20), 2);
        assert_eq!(slot(&p, 30), 3);
        assert_eq!(slot(&p, 1000), 3);
        let predates = [(None, Some(20))];
        assert_eq!(slot(&predates, 0), 1);
        assert_eq!(slot(&predates, 25), 2);
        assert_eq!(slot(&[], 7), 0);
    }

    #[test]
    fn activity_merges_in_any_grouping_and_round_trips_through_json() {
        let t = |s: i64| DateTime::from_timestamp(s, 0).unwrap();
        let op = |n: &str| (Text::from("Exchange"), Text::from(n));
        let part = |day: i32, n: &str, ip: &str, line: u64| {
            let mut a = Activity {
                records: 1,
                ..Activity::default()
            };
            *a.mailbox_days.entry((0, day)).or_default() += 1;
            *a.mailbox_slots.entry((0, 1)).or_default() += 1;
            a.actor_ops
                .entry((0, op(n)))
                .or_default()
                .add(t(i64::from(day) * 86_400), Some(&Text::from(ip)));
            a.tampering.push(Tampering {
                actor: 0,
                timestamp: t(5),
                operation: op(n).1,
                at: At {
                    input: 0,
                    line,
                    offset: line * 10,
                },
                command_line: None,
                key: None,
            });
            a
        };
        let (a, b, c) = (
            part(1, "A", "1.1.1.1", 0),
            part(2, "B", "2.2.2.2", 1),
            part(2, "A", "3.3.3.3", 2),
        );
        let shift = Shift {
            lines: 10,
            bytes: 100,
        };
        let mut left = a.clone();
        left.append(b.clone(), shift);
        left.append(c.clone(), shift);
        let mut bc = b;
        bc.append(c, Shift::default());
        let mut right = a;
        right.append(bc, shift);
        assert_eq!(left, right);
        assert_eq!(left.actor_ops[&(0, op("A"))].count, 2);
        let text = serde_json::to_string(&left).unwrap();
        let back: Activity = serde_json::from_str(&text).unwrap();
        assert_eq!(back, left);
    }

    // Regression (issue 22): a record that overlapping exports repeat was counted once
    // per copy ("x2" beside one event and one duplicate dropped).
    #[test]
    fn a_repeated_record_counts_once_however_the_partials_are_grouped() {
        let t = DateTime::from_timestamp(86_400, 0).unwrap();
        let op = (Text::from("Exchange"), Text::from("Send"));
        // One counted record: a mailbox record of account 0 and an operation of actor 0.
        let record = |key: u128| {
            let mut a = Activity {
                records: 1,
                ..Activity::default()
            };
            *a.mailbox_days.entry((0, 1)).or_default() += 1;
            *a.mailbox_slots.entry((0, 1)).or_default() += 1;
            a.actor_ops.entry((0, op.clone())).or_default().add(t, None);
            let shares = vec![
                Share::Day(0, 1),
                Share::Slot(0, 1),
                Share::Actor(0, op.clone()),
            ];
            assert!(a.note(key, shares));
            a
        };
        // Records 1, 2, 1 again, 3, 2 again: three distinct.
        let keys = [1u128, 2, 1, 3, 2];
        let settled = |mut a: Activity| {
            assert_eq!(a.repeats, 2);
            assert_eq!(a.drop_duplicates(), 2);
            a
        };
        let mut one_by_one = Activity::default();
        for &k in &keys {
            one_by_one.append(record(k), Shift::default());
        }
        let mut halves = Activity::default();
        let (left, right) = keys.split_at(2);
        let mut l = Activity::default();
        left.iter()
            .for_each(|&k| l.append(record(k), Shift::default()));
        let mut r = Activity::default();
        right
            .iter()
            .for_each(|&k| r.append(record(k), Shift::default()));
        halves.append(l, Shift::default());
        halves.append(r, Shift::default());
        let a = settled(one_by_one);
        assert_eq!(a, settled(halves));
        assert_eq!(a.records, 3);
        assert_eq!(a.mailbox_days[&(0, 1)], 3);
        assert_eq!(a.mailbox_slots[&(0, 1)], 3);
        assert_eq!(a.actor_ops[&(0, op.clone())].count, 3);
        // Through a partial file and back, the notes still find the copies.
        let guid = record_key("0b11ea75-40f7-4a36-a971-df6d3cba4c42");
        let mut first = record(guid);
        let text = serde_json::to_string(&first).unwrap();
        first = serde_json::from_str(&text).unwrap();
        first.append(record(guid), Shift::default());
        first.drop_duplicates();
        assert_eq!(first.mailbox_days[&(0, 1)], 1);
    }

    #[test]
    fn record_ids_are_guid_bits_or_a_digest() {
        assert_eq!(
            record_key("0b11ea75-40f7-4a36-a971-df6d3cba4c42"),
            0x0b11ea7540f74a36a971df6d3cba4c42
        );
        assert_ne!(
            record_key("0B11EA75-40F7-4A36-A971-DF6D3CBA4C42"),
            record_key("0b11ea75-40f7-4a36-a971-df6d3cba4c42"),
            "ids compare as written, as in the first pass"
        );
        assert_ne!(record_key("r1"), record_key("r2"));
        assert_ne!(
            record_key("0b11ea7540f74a36a971df6d3cba4c42"),
            0x0b11ea7540f74a36a971df6d3cba4c42
        );
    }

    // Regression: only the first 32 addresses seen were kept, so the set depended on
    // how records were grouped before merging (chunks, files, shards).
    #[test]
    fn source_ips_are_the_same_whatever_the_grouping() {
        let t = DateTime::from_timestamp(0, 0).unwrap();
        let ips: Vec<Text> = (0..100)
            .map(|i| Text::from(format!("10.0.{}.{}", i % 7, i)))
            .collect();
        let stat = |ips: &[Text]| {
            let mut s = OpStat::default();
            for ip in ips {
                s.add(t, Some(ip));
            }
            s
        };
        let whole = stat(&ips);
        assert_eq!(whole.source_ips.len(), MAX_IPS);
        for cut in [1, 10, 33, 60, 99] {
            let (a, b) = ips.split_at(cut);
            let mut left = stat(a);
            left.merge(stat(b));
            assert_eq!(left, whole, "cut at {cut}");
            let mut right = stat(b);
            right.merge(stat(a));
            assert_eq!(
                right.source_ips, whole.source_ips,
                "either order, cut at {cut}"
            );
        }
    }

    #[test]
    fn tampering_operations() {
        let p = |pairs: &[(&str, &str)]| -> Vec<(String, Option<String>)> {
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), Some(v.to_string())))
                .collect()
        };
        assert!(is_tampering("Set-AdminAuditLogConfig", &[]));
        assert!(is_tampering(
            "Set-AdminAuditLogConfig",
            &p(&[("UnifiedAuditLogIngestionEnabled", "False")])
        ));
        assert!(!is_tampering(
            "Set-AdminAuditLogConfig",
            &p(&[("UnifiedAuditLogIngestionEnabled", "True")])
        ));
        assert!(is_tampering(
            "Set-Mailbox",
            &p(&[("Identity", "x"), ("AuditEnabled", "False")])
        ));
        assert!(!is_tampering(
            "Set-Mailbox",
            &p(&[("Identity", "x"), ("AuditEnabled", "$true")])
        ));
        assert!(!is_tampering("Set-Mailbox", &p(&[("Identity", "x")])));
        assert!(is_tampering(
            "Set-Mailbox",
            &p(&[("AuditLogAgeLimit", "0")])
        ));
        assert!(is_tampering(
            "Set-Mailbox",
            &p(&[("AuditOwner", "@{Remove=\"MailboxLogin\"}")])
        ));
        assert!(!is_tampering(
            "Set-Mailbox",
            &p(&[("AuditOwner", "@{Add=\"MailboxLogin\"}")])
        ));
        assert!(is_tampering(
            "Set-OrganizationConfig",
            &p(&[("AuditDisabled", "True")])
        ));
        assert!(!is_tampering(
            "Set-OrganizationConfig",
            &p(&[("AuditDisabled", "False")])
        ));
        assert!(!is_tampering(
            "New-InboxRule",
            &p(&[("AuditEnabled", "False")])
        ));
        assert!(is_tampering("Remove-AdminAuditLogConfig", &[]));
    }

    /// 2024-01-01T00:00:00Z.
    const T0: i64 = 1_704_067_200;

    /// `svc@contoso.com` bypassed over [T0 + 1000, T0 + 2000), `adm@contoso.com` acting
    /// around T0 + 5000..=T0 + 6000, no horizon.
    fn screen_watch() -> Watch {
        Watch::new(
            vec![(
                "svc@contoso.com".into(),
                vec![(Some(T0 + 1000), Some(T0 + 2000))],
            )],
            vec![("adm@contoso.com".into(), vec![(T0 + 5000, T0 + 6000)])],
        )
    }

    fn at(secs: i64) -> String {
        let t = DateTime::from_timestamp(T0 + secs, 0).unwrap();
        t.format("%Y-%m-%dT%H:%M:%S").to_string()
    }

    fn raw(user: &str, secs: i64) -> String {
        format!(
            r#"{{"CreationTime":"{}","Id":"0b0e5a52-0000-4000-8000-00000000000{}","Operation":"Set-Mailbox","RecordType":1,"Workload":"Exchange","UserId":{user},"ClientIP":"192.0.2.1","Parameters":[{{"Name":"Identity","Value":"adm@contoso.com svc@contoso.com"}}]}}"#,
            at(secs),
            secs % 10
        )
    }

    #[test]
    fn the_screen_turns_down_only_records_of_no_watched_name_in_reach() {
        let w = screen_watch();
        let yes = |l: &str| assert!(w.may_count(l.as_bytes()), "turned down: {l}");
        let no = |l: &str| assert!(!w.may_count(l.as_bytes()), "let through: {l}");
        // The account inside its period, the actor inside its window, in any case,
        // with spaces, by local part.
        yes(&raw(r#""svc@contoso.com""#, 1500));
        yes(&raw(r#"" SVC@Contoso.COM ""#, 1000));
        yes(&raw(r#""svc""#, 1999));
        yes(&raw(r#""adm@contoso.com""#, 5000));
        yes(&raw(r#""adm@contoso.com""#, 6000));
        // Outside: the names at other times, other names, no actor.
        no(&raw(r#""svc@contoso.com""#, 999));
        no(&raw(r#""svc@contoso.com""#, 2000));
        no(&raw(r#""adm@contoso.com""#, 4999));
        no(&raw(r#""adm@contoso.com""#, 1500));
        no(&raw(r#""other@contoso.com""#, 1500));
        no(&raw(r#""svc@contoso.com""#, 1500).replace(r#""UserId":"#, r#""User":"#));
        no(&raw(r#""svc@contoso.com""#, 1500).replace("CreationTime", "Created"));
        // A key's name as a value is no key.
        no(&raw(r#""other@contoso.com""#, 1500).replace("\"Identity\"", "\"UserId\""));
        // What the bytes cannot vouch for is parsed.
        yes(&raw(r#""\u0073vc@contoso.com""#, 1500));
        yes(&raw(r#""other@contoso.com""#, 999).replace("192.0.2.1", r#"a\"b"#));
        yes(&raw(r#""other@contoso.com""#, 999).replace("192.0.2.1", r"a\nb"));
        // `\\` and `\/` are read through.
        let system = Watch::new(
            vec![],
            vec![(r"nt authority\system (x)".into(), vec![(T0, T0 + 10)])],
        );
        let by_system = |secs: i64| raw(r#""NT AUTHORITY\\SYSTEM (x)""#, secs);
        assert!(system.may_count(by_system(5).as_bytes()));
        assert!(!system.may_count(by_system(11).as_bytes()));
        assert!(!system.may_count(by_system(11).replace("192.0.2.1", r"\/a\\").as_bytes()));
        let slashed = Watch::new(vec![], vec![("a/b@c.com".into(), vec![(T0, T0 + 10)])]);
        assert!(slashed.may_count(raw(r#""a\/b@c.com""#, 5).as_bytes()));
        assert!(!slashed.may_count(raw(r#""a\/b@c.com""#, 11).as_bytes()));
        yes(&raw(r#"["svc@contoso.com"]"#, 1500));
        yes(&raw(r#"null"#, 1500));
        yes(&raw(r#""other@contoso.com""#, 1500).replace("\"Id\"", "\"AuditData\":{},\"Id\""));
        yes(&raw(r#""other@contoso.com""#, 1500).replace("\"Id\"", "\"event.action\":\"x\",\"Id\""));
        yes(&raw(r#""other@contoso.com""#, 1500).replace("\"Id\"", "\"_source\":1,\"Id\""));
        // Every value of a repeated or nested key is tried.
        let twice = raw(r#""other@contoso.com""#, 1500).replace(
            "\"Workload\"",
            "\"UserId\" : \"svc@contoso.com\",\"Workload\"",
        );
        yes(&twice);
        let nested = raw(r#""other@contoso.com""#, 999).replace(
            "\"Name\":\"Identity\"",
            &format!(
                "\"CreationTime\":\"{}\",\"UserId\":\"svc@contoso.com\"",
                at(1500)
            ),
        );
        yes(&nested);
    }

    #[test]
    fn the_screen_finds_the_same_keys_with_teddy_as_with_the_automaton() {
        let automaton = ScreenKeys::Automaton(
            aho_corasick::AhoCorasick::builder()
                .match_kind(aho_corasick::MatchKind::LeftmostFirst)
                .build(SCREEN_PATTERNS)
                .unwrap(),
        );
        let teddy = ScreenKeys::new();
        assert!(matches!(teddy, ScreenKeys::Teddy(_)) || !cfg!(target_arch = "x86_64"));
        let all = |k: &ScreenKeys, line: &[u8]| {
            let mut out = Vec::new();
            let mut from = 0;
            while let Some(m) = k.find(line, from) {
                from = m.1 + 1;
                out.push(m);
            }
            out
        };
        let lines = [
            raw(r#""svc@contoso.com""#, 1500),
            raw(r#""x""#, 1).replace("\"Id\"", "\"AuditData\":{\"UserId\":\"a\"},\"Id\""),
            "\"UserId\"\"CreationTime\"uditData\"event\"_source\"\"o365audit\"".to_string(),
            "\"Us".to_string(),
            String::new(),
        ];
        for line in &lines {
            let found = all(&automaton, line.as_bytes());
            assert!(!found.is_empty() || line.len() < 6, "{line}");
            assert_eq!(all(&teddy, line.as_bytes()), found, "{line}");
        }
    }

    #[test]
    fn the_context_matcher_screens_unless_reading_in_full() {
        let mut config = crate::Config::new(Vec::new());
        let w = screen_watch();
        assert!(crate::stages::context_matcher(&config, &w).screens());
        config.context_full_read = true;
        assert!(!crate::stages::context_matcher(&config, &w).screens());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// The context pass counts the same with the screen as with every candidate
        /// parsed, on records of watched and other names at times in and out of reach,
        /// spelled every way the screen must see through or give up on.
        #[test]
        fn the_screened_pass_counts_what_the_full_parse_counts(
            lines in proptest::collection::vec((0usize..15, 0usize..8, 0u16..8192), 1..40),
            block in 64usize..4096,
        ) {
            use crate::rule::Rule;
            use crate::scan::{Matcher, Pass, Scratch, scan_chunk};
            let users = [
                r#""svc@contoso.com""#,
                r#"" Svc@CONTOSO.com""#,
                r#""svc""#,
                r#""adm@contoso.com""#,
                r#""adm""#,
                r#""other@contoso.com""#,
                r#""\u0073vc@contoso.com""#,
                r#""adm\/x@contoso.com""#,
                r#""ADM@contoso.com\\""#,
                r#"["adm@contoso.com"]"#,
                r#"17"#,
                // Past the stack buffer: folded as the names are.
                &format!(r#""{}svc@contoso.com""#, " ".repeat(300)),
                &format!(r#""{}@contoso.com""#, "x".repeat(300)),
                // Not ASCII: a no-break space `str::trim` takes, and a name it keeps.
                "\"svc@contoso.com\u{a0}\"",
                "\"\u{e9}adm@contoso.com\"",
            ];
            let times = [0, 999, 1000, 1500, 2000, 4999, 5500, 6001];
            let mut data = String::new();
            for (i, &(u, t, extra)) in lines.iter().enumerate() {
                let mut line = raw(users[u], times[t]).replace("000000000", &format!("{i:09}"));
                if extra & 1 != 0 {
                    line = line.replace("\"RecordType\"", "\"UserId\":\"adm@contoso.com\",\"RecordType\"");
                }
                if extra & 2 != 0 {
                    line = line.replace("\"ClientIP\"", &format!("\"CreationTime\":\"{}\",\"ClientIP\"", at(1200)));
                }
                if extra & 4 != 0 {
                    line = line.replace("\"Name\":\"Identity\"", &format!("\"UserId\":\"svc\",\"CreationTime\":\"{}\"", at(5500)));
                }
                if extra & 8 != 0 {
                    line = line.replace("\":", "\" :\t");
                }
                if extra & 16 != 0 {
                    line = format!("{{\"AuditData\":{line},\"CreationDate\":\"{}\",\"Operation\":\"x\"}}", at(1500));
                }
                if extra & 64 != 0 {
                    line = line.replace("192.0.2.1", r"a\\b\/c");
                }
                if extra & 128 != 0 {
                    // More actors than the screen notes.
                    let many = "\"UserId\":\"other@contoso.com\",".repeat(9);
                    line = line.replace("\"Workload\"", &format!("{many}\"Workload\""));
                }
                if extra & 256 != 0 {
                    // A time the screen cannot read, nested.
                    line = line.replace("\"Name\":\"Identity\"", "\"CreationTime\":17");
                }
                if extra & 512 != 0 {
                    // More times than the screen notes.
                    let many = format!("\"CreationTime\":\"{}\",", at(1500)).repeat(9);
                    line = line.replace("\"ClientIP\"", &format!("{many}\"ClientIP\""));
                }
                if extra & 32 != 0 {
                    line = line.replace("\"Workload\"", "\"event.action\":\"Set-Mailbox\",\"Workload\"");
                }
                if extra & 1024 != 0 {
                    // Audit tampering: listed with its line.
                    line = line.replace("\"Parameters\":[", "\"Parameters\":[{\"Name\":\"AuditEnabled\",\"Value\":\"False\"},");
                }
                if extra & 2048 != 0 {
                    // Blank lines before it, counted apart.
                    data.push_str(["\n", "  \r\n", "\t\x0c\n \n"][i % 3]);
                }
                data.push_str(&line);
                data.push_str(if extra & 4096 != 0 { "\r\n" } else { "\n" });
            }
            if lines[0].2 & 2048 != 0 {
                // The last line without its newline, or blank.
                if lines[0].2 & 1 != 0 {
                    data.pop();
                } else {
                    data.push_str("  ");
                }
            }
            let w = screen_watch();
            let run = |screen: bool| {
                let m = Matcher::for_literals(Rule::builtin(), w.literals(), 1 << 20)
                    .with_block(block)
                    .with_screen(screen);
                let p: crate::findings::Partial<Activity> = scan_chunk(
                    data.as_bytes(),
                    0,
                    Pass::new(&m, &w),
                    &mut Scratch::default(),
                );
                // Every line the full parse takes is parsed or screened out unparsed.
                let c = p.counts;
                (p.sink, c.candidates + c.screened, (c.lines, c.blank, c.records, c.malformed))
            };
            let screens = |on: bool| {
                Matcher::for_literals(Rule::builtin(), w.literals(), 1 << 20).with_screen(on).screens()
            };
            proptest::prop_assert!(screens(true) && !screens(false));
            let (screened, full) = (run(true), run(false));
            proptest::prop_assert_eq!(&screened.0, &full.0);
            proptest::prop_assert_eq!(screened.1, full.1);
            proptest::prop_assert_eq!(screened.2, full.2);
        }
    }
}
