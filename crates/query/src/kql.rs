//! KQL (Kibana Query Language): parser, printer, evaluator and prefilter literals.
//!
//! A query text is parsed once into a [`Query`] over the caller's field type; the caller
//! evaluates it against each record's [`Fields`] view ([`Query::matches`]), and may ask
//! which literal byte strings every matching record must contain
//! ([`Query::required_literals`], [`Query::required_conjuncts`]) to skip the records
//! that cannot match without parsing them. [`Query`] prints back (`Display`) as KQL text
//! that parses to the same query.
//!
//! The syntax is Kibana's (`kbn-es-query` kuery grammar), evaluated the way
//! Elasticsearch answers the query Kibana builds, and the way Elastic's own offline
//! evaluator (`detection-rules`, `lib/kql`) does:
//!
//! - `or` < `and` < `not` in precedence; keywords in any case; `and`/`or` need
//!   whitespace on both sides, `not` after it; parentheses group.
//! - `field:value`, `field:"quoted value"`, value lists `field:(a or b and not c)`,
//!   `field:*` (the field exists), ranges `field < v`, `<=`, `>`, `>=`, nested queries
//!   `field:{ inner query }` (inner field names are relative to `field`; the inner query
//!   must hold within one element where the source offers element views, see
//!   [`Fields::each_element`], else anywhere in the record).
//! - Unquoted values may contain spaces (trimmed at both ends) and end before ` and `,
//!   ` or `, `not `, or one of `\ ( ) : < > " * { }`. Those are escaped with `\`, as are
//!   `\t \r \n`, `\uXXXX` and the keywords (`\and`, `\or`; `\not` reads as `\n` + `ot`,
//!   exactly as in Kibana and detection-rules). An unescaped `*` is a wildcard.
//! - Quoted values have no wildcards; their only escapes are `\\`, `\"`, `\t \r \n` and
//!   `\uXXXX`; any other backslash is kept as it is (`"NT AUTHORITY\SYSTEM"`).
//! - Comparison follows the field's [`ValueType`]: keywords exactly and case-sensitively
//!   (ranges byte-lexicographic), numbers numerically, booleans as `true`/`false`, dates
//!   as instants (a value stands for its whole precision: `@timestamp:2024-05-01` is that
//!   day), IPs as addresses or CIDR blocks. A value that cannot have the field's type is
//!   a parse error, as Elasticsearch refuses the query. Arrays match when any element
//!   does; `not` holds on a missing field.
//!
//! Rejected with a clear error, never misread: free text (a value with no field), field
//! names with wildcards (the record view cannot list fields), an empty query (Kibana
//! would match every document), date math (`now-1d`), `not not` without parentheses
//! (Kibana rejects it too), and nesting deeper than [`MAX_DEPTH`]. Accepted beyond
//! Kibana, as detection-rules does: `field: not value` without parentheses.
//!
//! This module never touches bytes from an archive: it only sees field values through
//! the [`Fields`] trait.

use std::cmp::Ordering;
use std::fmt;
use std::marker::PhantomData;
use std::net::IpAddr;

use chrono::Datelike;

use crate::field::{Field, Fields, Spelling, ValueType};
use crate::literal::{Branches, and_branches, or_branches};

/// How deep parentheses, nested queries and value lists may nest.
pub const MAX_DEPTH: usize = 64;

/// A parsed KQL query.
#[derive(Clone, Debug, PartialEq)]
pub enum Query<F> {
    /// Every clause must hold.
    And(Vec<Query<F>>),
    /// At least one clause must hold.
    Or(Vec<Query<F>>),
    /// The clause must not hold.
    Not(Box<Query<F>>),
    /// `field:value-expression`.
    Match {
        /// The field, resolved once at parse time.
        field: F,
        /// What the field's values must satisfy.
        value: ValueExpr,
    },
    /// `field < bound` and the other range operators.
    Range {
        /// The field.
        field: F,
        /// The operator.
        op: RangeOp,
        /// The bound, typed for the field.
        bound: Bound,
    },
    /// `path:{ query }`: the inner query holds within one element of `path`. Inner
    /// fields are stored with their full names (`path.inner`).
    Nested {
        /// The object (array) field.
        path: F,
        /// The query each element is tested against.
        query: Box<Query<F>>,
    },
}

/// The right-hand side of `field:...`.
#[derive(Clone, Debug, PartialEq)]
pub enum ValueExpr {
    /// Every part must hold.
    And(Vec<ValueExpr>),
    /// At least one part must hold.
    Or(Vec<ValueExpr>),
    /// The part must not hold.
    Not(Box<ValueExpr>),
    /// One value pattern.
    Term(Pattern),
}

/// A single value pattern, typed for its field.
#[derive(Clone, Debug, PartialEq)]
pub enum Pattern {
    /// Exact, case-sensitive equality (keyword fields).
    Exact(String),
    /// An unquoted value with `*` wildcards (keyword fields).
    Wildcard(Glob),
    /// `field:*`: the field has a value.
    Exists,
    /// Numeric equality (numeric fields).
    Number(f64),
    /// `true` or `false` (boolean fields).
    Boolean(bool),
    /// An address or a CIDR block (ip fields).
    Ip(IpBlock),
    /// An instant or a whole day, month… (date fields).
    Date(DateSpan),
}

/// A wildcard pattern: the literal pieces between its `*`s (at least two pieces).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    parts: Vec<String>,
}

/// An IP address with a prefix length (128 for one address), IPv4 held as IPv4-mapped
/// IPv6 as Elasticsearch does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpBlock {
    text: String,
    net: u128,
    prefix: u8,
}

/// A date value as the span of time it names, in milliseconds since the epoch,
/// inclusive at both ends (`2024-05-01` is the whole day).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DateSpan {
    text: String,
    first: i64,
    last: i64,
}

/// A range operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeOp {
    /// `<`
    Lt,
    /// `<=`
    Lte,
    /// `>`
    Gt,
    /// `>=`
    Gte,
}

/// The bound of a range, typed for its field.
#[derive(Clone, Debug, PartialEq)]
pub enum Bound {
    /// Byte-lexicographic (keyword fields).
    Keyword(String),
    /// Numeric.
    Number(f64),
    /// `false` < `true`.
    Boolean(bool),
    /// One address.
    Ip(IpBlock),
    /// A date; `>` and `<=` compare with the end of its span, `<` and `>=` with its start.
    Date(DateSpan),
}

/// A query text that could not be parsed, with the byte offset of the problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("KQL syntax error at offset {offset}: {message}")]
pub struct ParseError {
    /// Byte offset in the query text.
    pub offset: usize,
    /// What was wrong.
    pub message: String,
}

impl<F: Field> Query<F> {
    /// Parses a KQL query text.
    pub fn parse(text: &str) -> Result<Query<F>, ParseError> {
        let mut p = Parser {
            text,
            pos: 0,
            depth: 0,
            nest: Vec::new(),
            field: PhantomData,
        };
        p.skip_spaces();
        if p.at_end() {
            return Err(p.error_at(0, "empty query (Kibana would match every document)".into()));
        }
        let query = p.or_query()?;
        p.skip_spaces();
        match p.peek_char() {
            None => Ok(query),
            Some(c) => Err(p.error_at(p.pos, p.unexpected(c))),
        }
    }

    /// Evaluates the query against a record.
    pub fn matches(&self, source: &dyn Fields<F>) -> bool {
        match self {
            Query::And(parts) => parts.iter().all(|q| q.matches(source)),
            Query::Or(parts) => parts.iter().any(|q| q.matches(source)),
            Query::Not(inner) => !inner.matches(source),
            Query::Match { field, value } => value.matches(field, source),
            Query::Range { field, op, bound } => {
                source.any_value(field, &mut |v| bound.admits(*op, v))
            }
            Query::Nested { path, query } => source
                .each_element(path, &mut |element| query.matches(element))
                .unwrap_or_else(|| query.matches(source)),
        }
    }

    /// The literal byte strings a matching line must contain: a line that contains none
    /// of them cannot match. `None` means no such set can be derived (every line must be
    /// parsed). False positives are fine; this must never exclude a matching line.
    /// Exact and wildcard values of verbatim keyword fields give literals (their
    /// values'); where a query has none, a clause that needs a value of a field read
    /// from the record's own keys (existence, a range, a number: JSON may spell `1000`
    /// as `1e3`, a typed value) gives the field's key ([`Field::key_literal`]), which is
    /// in every record holding the field; negations give none.
    pub fn required_literals(&self) -> Option<Vec<String>> {
        self.literals(false).or_else(|| self.literals(true))
    }

    /// [`Query::required_literals`]: values' literals only, or (`keys`) with fields'
    /// keys where a clause has none.
    fn literals(&self, keys: bool) -> Option<Vec<String>> {
        match self {
            Query::Match { field, value } => value.required_literals(field, keys),
            Query::Range { field, .. } if keys => field.key_literal().map(|k| vec![k]),
            Query::Not(_) | Query::Range { .. } => None,
            Query::Nested { query, .. } => query.literals(keys),
            // The most selective clause; a clause on a value whole classes of records
            // share (most workloads' names) only when no other has literals, and a
            // field's key only when no clause has a value's.
            Query::And(parts) => parts
                .iter()
                .filter_map(|q| match q.literals(false) {
                    Some(set) => Some((q.is_broad(&set), true, set)),
                    None if keys => {
                        let set = q.literals(true)?;
                        Some((q.is_broad(&set), false, set))
                    }
                    None => None,
                })
                .max_by_key(|(broad, value, set)| (!broad, *value, selectivity(set)))
                .map(|(_, _, set)| set),
            Query::Or(parts) => union(parts.iter().map(|q| q.literals(keys))),
        }
    }

    /// Literal sets a matching line must hold a literal of each (conditions that are
    /// all necessary): every clause of a conjunction gives its own set, any other query
    /// its [`Query::required_literals`]. The prefilter searches one set (the
    /// [`Query::required_literals`] of the whole); the others are checked on the
    /// candidate's bytes before it is parsed. Clauses on a value whole classes of records
    /// share (most workloads' names, [`Field::is_broad_literal`]) give none: they would
    /// exclude next to nothing, and a broken line holding a rule's action is still
    /// parsed and reported.
    pub fn required_conjuncts(&self) -> Vec<Vec<String>> {
        match self {
            Query::And(parts) => parts
                .iter()
                .filter(|q| !q.required_literals().is_some_and(|set| q.is_broad(&set)))
                .flat_map(Query::required_conjuncts)
                .collect(),
            Query::Nested { query, .. } => query.required_conjuncts(),
            other => other.required_literals().into_iter().collect(),
        }
    }

    /// The query's prefilter as alternatives ([`Branches`]): a disjunction's clauses
    /// are branches of their own, a conjunction's are multiplied (up to
    /// [`crate::MAX_BRANCHES`]), any other clause is one branch of its
    /// [`Query::required_conjuncts`]. Every matching line meets a branch; each branch
    /// needs all that [`Query::required_conjuncts`] needs and may need more.
    pub fn required_branches(&self) -> Branches {
        match self {
            Query::And(parts) => and_branches(
                parts
                    .iter()
                    .filter(|q| !q.required_literals().is_some_and(|set| q.is_broad(&set)))
                    .map(|q| (q.required_branches(), || q.required_conjuncts())),
            ),
            Query::Or(parts) => or_branches(parts.iter().map(Query::required_branches))
                .unwrap_or_else(|| vec![self.required_conjuncts()]),
            Query::Nested { query, .. } => query.required_branches(),
            other => vec![other.required_conjuncts()],
        }
    }

    /// Whether this clause's literals `set` are shared by whole classes of records
    /// (see [`Field::is_broad_literal`]), so a poor prefilter.
    fn is_broad(&self, set: &[String]) -> bool {
        matches!(self, Query::Match { field, .. } if field.is_broad_set(set))
    }

    /// Every field the query reads (a nested query's path, then its inner fields).
    pub fn fields(&self) -> Vec<&F> {
        let mut out = Vec::new();
        self.collect_fields(&mut out);
        out
    }

    fn collect_fields<'a>(&'a self, out: &mut Vec<&'a F>) {
        match self {
            Query::And(parts) | Query::Or(parts) => {
                parts.iter().for_each(|q| q.collect_fields(out))
            }
            Query::Not(inner) => inner.collect_fields(out),
            Query::Match { field, .. } | Query::Range { field, .. } => out.push(field),
            Query::Nested { path, query } => {
                out.push(path);
                query.collect_fields(out);
            }
        }
    }
}

impl ValueExpr {
    fn matches<F: Field>(&self, field: &F, source: &dyn Fields<F>) -> bool {
        match self {
            ValueExpr::And(parts) => parts.iter().all(|v| v.matches(field, source)),
            ValueExpr::Or(parts) => parts.iter().any(|v| v.matches(field, source)),
            ValueExpr::Not(inner) => !inner.matches(field, source),
            ValueExpr::Term(pattern) => source.any_value(field, &mut |v| pattern.matches(v)),
        }
    }

    fn required_literals<F: Field>(&self, field: &F, keys: bool) -> Option<Vec<String>> {
        match self {
            ValueExpr::Term(pattern) => pattern
                .required_literals(field)
                .or_else(|| keys.then(|| field.key_literal().map(|k| vec![k]))?),
            ValueExpr::Not(_) => None,
            ValueExpr::And(parts) => parts
                .iter()
                .filter_map(|v| v.required_literals(field, keys))
                .max_by_key(|set| selectivity(set)),
            ValueExpr::Or(parts) => union(parts.iter().map(|v| v.required_literals(field, keys))),
        }
    }
}

impl Pattern {
    /// The literals of a value: exact and wildcard values of verbatim keyword fields.
    fn required_literals<F: Field>(&self, field: &F) -> Option<Vec<String>> {
        if field.value_type() != ValueType::Keyword {
            return None;
        }
        match self {
            Pattern::Exact(s) if is_literal_text(s) => {
                // How the value is spelled in the bytes of every record shape: itself
                // for a verbatim field (cut to a fragment no writer escapes), its
                // `RecordType` forms for `event.code`, the raw operation for a renamed
                // action.
                let mut out = Vec::new();
                for form in field.spellings(s)? {
                    match form {
                        Spelling::Text(t) => out.extend(safe_spellings(&t)?),
                        Spelling::Exact(literal) => out.push(literal),
                    }
                }
                (!out.is_empty()).then_some(out)
            }
            Pattern::Wildcard(_) if !field.is_verbatim() => None,
            Pattern::Wildcard(glob) => glob
                .parts
                .iter()
                .filter_map(|p| safe_fragment(p))
                .max_by_key(|f| f.len())
                .map(|f| vec![f.to_string()]),
            _ => None,
        }
    }

    /// Whether a field value (its text) satisfies this pattern.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Pattern::Exact(s) => s == value,
            Pattern::Wildcard(glob) => glob.matches(value),
            Pattern::Exists => true,
            Pattern::Number(n) => parse_number(value) == Some(*n),
            Pattern::Boolean(b) => parse_bool(value) == Some(*b),
            Pattern::Ip(block) => parse_ip(value).is_some_and(|a| block.contains(a)),
            Pattern::Date(span) => {
                parse_date(value).is_some_and(|(t, _)| span.first <= t && t <= span.last)
            }
        }
    }
}

impl Glob {
    /// Whether `text` matches: the first piece is a prefix, the last a suffix, and the
    /// others appear in order between them (leftmost is always right for `*`-only globs).
    pub fn matches(&self, text: &str) -> bool {
        let (first, rest) = match self.parts.split_first() {
            Some(split) => split,
            None => return text.is_empty(),
        };
        let Some((last, middle)) = rest.split_last() else {
            return text == first;
        };
        let Some(mut tail) = text.strip_prefix(first.as_str()) else {
            return false;
        };
        for part in middle {
            match tail.find(part.as_str()) {
                Some(at) => tail = &tail[at + part.len()..],
                None => return false,
            }
        }
        tail.ends_with(last.as_str())
    }
}

impl IpBlock {
    pub(crate) fn contains(&self, addr: u128) -> bool {
        let host_bits = 128 - u32::from(self.prefix);
        host_bits >= 128 || (addr ^ self.net) >> host_bits == 0
    }
}

impl RangeOp {
    fn holds(self, ord: Ordering) -> bool {
        match self {
            RangeOp::Lt => ord == Ordering::Less,
            RangeOp::Lte => ord != Ordering::Greater,
            RangeOp::Gt => ord == Ordering::Greater,
            RangeOp::Gte => ord != Ordering::Less,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            RangeOp::Lt => "<",
            RangeOp::Lte => "<=",
            RangeOp::Gt => ">",
            RangeOp::Gte => ">=",
        }
    }
}

impl Bound {
    /// Whether a field value (its text) lies on the right side of this bound.
    fn admits(&self, op: RangeOp, value: &str) -> bool {
        let ord = match self {
            Bound::Keyword(b) => Some(value.as_bytes().cmp(b.as_bytes())),
            Bound::Number(b) => parse_number(value).and_then(|v| v.partial_cmp(b)),
            Bound::Boolean(b) => parse_bool(value).map(|v| v.cmp(b)),
            Bound::Ip(b) => parse_ip(value).map(|v| v.cmp(&b.net)),
            Bound::Date(span) => {
                let Some((t, _)) = parse_date(value) else {
                    return false;
                };
                // Elasticsearch rounds the bound up for `>` and `<=`, down for the others.
                let edge = match op {
                    RangeOp::Gt | RangeOp::Lte => span.last,
                    RangeOp::Lt | RangeOp::Gte => span.first,
                };
                Some(t.cmp(&edge))
            }
        };
        ord.is_some_and(|ord| op.holds(ord))
    }
}

/// How good a literal set is for a prefilter: exact literals before caseless ones
/// (searched through every case variant, so slower and less selective), then text
/// before a caller's marker of a number before runs of digits, then fewer literals,
/// then longer ones.
pub(crate) fn selectivity(set: &[String]) -> (bool, u8, std::cmp::Reverse<usize>, usize) {
    let exact = set.iter().all(|l| !crate::Literal::parse(l).ignores_case());
    // What a set is made of: text is searched well; a caller's marker of a number
    // (`\0RecordType=15`: a record type, read from each record) selects a whole class
    // of records; runs of digits (error codes) are everywhere in identifiers and
    // addresses, so a search for them stops every few bytes.
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let kind = |l: &String| {
        let text = crate::Literal::parse(l).text();
        match text.strip_prefix('\0').and_then(|m| m.split_once('=')) {
            Some((_, value)) if digits(value) => 1,
            Some(_) => 2,
            None if digits(text) => 0,
            None => 2,
        }
    };
    let quality = set.iter().map(kind).min().unwrap_or(0);
    let shortest = set
        .iter()
        .map(|l| crate::Literal::parse(l).text().len())
        .min()
        .unwrap_or(0);
    (exact, quality, std::cmp::Reverse(set.len()), shortest)
}

pub(crate) fn union(sets: impl Iterator<Item = Option<Vec<String>>>) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for set in sets {
        out.extend(set?);
    }
    out.sort();
    out.dedup();
    (!out.is_empty()).then_some(out)
}

/// The spellings of `value` a matching record holds one of. A value whose only
/// character writers may escape is `/` (user agents, URLs) is searched whole, as it is
/// and with every `/` escaped `\/` (.NET's `DataContractJsonSerializer`, PHP): a whole
/// user agent is far rarer than its longest fragment. Any other value: its longest
/// fragment no writer escapes.
pub(crate) fn safe_spellings(value: &str) -> Option<Vec<String>> {
    let fragment = safe_fragment(value)?;
    if fragment.len() < value.len()
        && value.contains('/')
        && safe_fragment(&value.replace('/', ""))
            .is_some_and(|f| f.len() == value.len() - value.matches('/').count())
    {
        return Some(vec![value.to_string(), value.replace('/', "\\/")]);
    }
    Some(vec![fragment.to_string()])
}

/// The longest run of `value` that every JSON writer leaves as it is. Writers may
/// escape `"`, `\`, `/`, control characters, non-ASCII, and (PowerShell) `<>&'`, so a
/// literal containing those could be spelled differently in the bytes.
pub(crate) fn safe_fragment(value: &str) -> Option<&str> {
    let unsafe_byte = |b: u8| !b.is_ascii() || b.is_ascii_control() || b"\"\\/<>&'".contains(&b);
    value
        .split(|c: char| c.is_ascii() && unsafe_byte(c as u8) || !c.is_ascii())
        .max_by_key(|f| f.len())
        .filter(|f| !f.is_empty())
}

// ---------------------------------------------------------------------------------
// Typed values. Record values are parsed without allocating: this runs per record.

/// Whether an exact keyword value is sure to be in the bytes of every record whose field
/// holds it: any text but a number, and an integer of three digits or more. A keyword
/// field compares a JSON number by its text (as Elasticsearch indexes the number's
/// original JSON text); an integer has one JSON spelling (records give `-0` as `0`,
/// which the bytes `-0` hold), while a fraction or an exponent has many (`1.5` is
/// `15e-1` too). One or two digits are in nearly every line (times, ids): the field's
/// key is searched instead.
pub(crate) fn is_literal_text(value: &str) -> bool {
    if parse_number(value).is_none() {
        return true;
    }
    let digits = value.strip_prefix('-').unwrap_or(value);
    digits.len() >= 3 && digits.bytes().all(|b| b.is_ascii_digit())
}

/// A finite number, as Elasticsearch would read it for a numeric field.
pub(crate) fn parse_number(text: &str) -> Option<f64> {
    let t = text.trim();
    // Rust also reads "inf" and "NaN", which no numeric field holds.
    if !t.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse::<f64>().ok().filter(|n| n.is_finite())
}

fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// An address as a 128-bit number, IPv4 mapped into IPv6 (`::ffff:a.b.c.d`).
pub(crate) fn parse_ip(text: &str) -> Option<u128> {
    let addr: IpAddr = text.trim().parse().ok()?;
    Some(match addr {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    })
}

pub(crate) fn parse_ip_block(text: &str) -> Option<IpBlock> {
    let (addr, prefix) = match text.split_once('/') {
        Some((addr, bits)) => {
            let bits: u8 = bits.parse().ok()?;
            let v4 = addr.parse::<std::net::Ipv4Addr>().is_ok();
            let prefix = if v4 { bits.checked_add(96)? } else { bits };
            (addr, prefix)
        }
        None => (text, 128),
    };
    if prefix > 128 {
        return None;
    }
    let addr = parse_ip(addr)?;
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix))
    };
    Some(IpBlock {
        text: text.to_string(),
        net: addr & mask,
        prefix,
    })
}

/// A date as the inclusive span of milliseconds its precision names. Accepts
/// `YYYY[-MM[-DD[THH[:MM[:SS[.fff…]]]]]]` with an optional `Z` or `±HH[:MM]` zone (UTC
/// when absent, as Microsoft's `CreationTime` is written), and epoch milliseconds.
fn parse_date(text: &str) -> Option<(i64, i64)> {
    let t = text.trim();
    let b = t.as_bytes();
    if b.len() > 4 && b.iter().all(u8::is_ascii_digit) {
        let ms: i64 = t.parse().ok()?;
        return Some((ms, ms));
    }
    let mut i = 0;
    let num = |len: usize, i: &mut usize| -> Option<u32> {
        let digits = b.get(*i..*i + len)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        *i += len;
        Some(digits.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
    };
    let year = num(4, &mut i)? as i32;
    let mut month = 1;
    let mut day = 1;
    let (mut hour, mut minute, mut second, mut milli) = (0, 0, 0, 0);
    // How much was given: 0 year, 1 month, 2 day, 3 hour, 4 minute, 5 second, 6 fraction.
    let mut given = 0;
    if b.get(i) == Some(&b'-') {
        i += 1;
        month = num(2, &mut i)?;
        given = 1;
        if b.get(i) == Some(&b'-') {
            i += 1;
            day = num(2, &mut i)?;
            given = 2;
            if b.get(i) == Some(&b'T') {
                i += 1;
                hour = num(2, &mut i)?;
                given = 3;
                if b.get(i) == Some(&b':') {
                    i += 1;
                    minute = num(2, &mut i)?;
                    given = 4;
                    if b.get(i) == Some(&b':') {
                        i += 1;
                        second = num(2, &mut i)?;
                        given = 5;
                        if matches!(b.get(i), Some(b'.' | b',')) {
                            i += 1;
                            let start = i;
                            while b.get(i).is_some_and(u8::is_ascii_digit) {
                                i += 1;
                            }
                            let frac = &b[start..i];
                            if frac.is_empty() {
                                return None;
                            }
                            milli = frac
                                .iter()
                                .chain(std::iter::repeat(&b'0'))
                                .take(3)
                                .fold(0, |n, d| n * 10 + u32::from(d - b'0'));
                            given = 6;
                        }
                    }
                }
            }
        }
    }
    let offset_minutes: i64 = match b.get(i) {
        None => 0,
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if given >= 3 => {
            i += 1;
            let h = num(2, &mut i)?;
            if b.get(i) == Some(&b':') {
                i += 1;
            }
            let m = if i < b.len() { num(2, &mut i)? } else { 0 };
            if i != b.len() || h > 23 || m > 59 {
                return None;
            }
            let total = i64::from(h * 60 + m);
            if sign == b'+' { total } else { -total }
        }
        _ => return None,
    };
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let date = chrono::NaiveDate::from_ymd_opt(year, month, day)?;
    let days = i64::from(date.num_days_from_ce() - 719_163);
    let first = days * 86_400_000
        + i64::from(hour) * 3_600_000
        + i64::from(minute) * 60_000
        + i64::from(second) * 1000
        + i64::from(milli)
        - offset_minutes * 60_000;
    let next = match given {
        0 => chrono::NaiveDate::from_ymd_opt(year + 1, 1, 1)?,
        1 => date.checked_add_months(chrono::Months::new(1))?,
        _ => date,
    };
    let span = match given {
        0 | 1 => (i64::from(next.num_days_from_ce() - 719_163) - days) * 86_400_000,
        2 => 86_400_000,
        3 => 3_600_000,
        4 => 60_000,
        5 => 1000,
        _ => 1,
    };
    Some((first, first + span - 1))
}

// ---------------------------------------------------------------------------------
// The parser: a recursive descent that follows Kibana's PEG grammar rule by rule.

/// `[\ \t\r\n\u00A0]`, Kibana's whitespace.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n' | '\u{A0}')
}

/// Characters an unquoted literal must escape.
const SPECIAL: &str = "\\():<>\"*{}";

/// A literal as written: its unescaped text and, if unquoted with unescaped `*`s, the
/// pieces between them.
struct Literal {
    text: String,
    glob: Option<Vec<String>>,
}

struct Parser<'a, F> {
    text: &'a str,
    pos: usize,
    depth: usize,
    /// Full names of the nested queries around the current position.
    nest: Vec<String>,
    field: PhantomData<F>,
}

impl<F: Field> Parser<'_, F> {
    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    fn rest(&self) -> &str {
        &self.text[self.pos..]
    }

    fn peek_char(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn error_at(&self, offset: usize, message: String) -> ParseError {
        ParseError { offset, message }
    }

    fn unexpected(&self, c: char) -> String {
        match c {
            ':' => "unexpected ':' (an unquoted value runs until 'and', 'or' or a \
                    special character: quote it, or join clauses with and/or)"
                .into(),
            _ => format!("unexpected {c:?}; expected 'and', 'or', or the end of the group"),
        }
    }

    fn skip_spaces(&mut self) -> usize {
        let start = self.pos;
        while let Some(c) = self.peek_char().filter(|&c| is_space(c)) {
            self.pos += c.len_utf8();
        }
        self.pos - start
    }

    fn space_at(&self, at: usize) -> bool {
        self.text[at..].chars().next().is_some_and(is_space)
    }

    fn word_at(&self, at: usize, word: &str) -> bool {
        self.text
            .as_bytes()
            .get(at..at + word.len())
            .is_some_and(|b| b.eq_ignore_ascii_case(word.as_bytes()))
    }

    /// Kibana's `Keyword` lookahead inside unquoted literals: ` or `, ` and `, `not `.
    fn keyword_at(&self, at: usize) -> bool {
        if self.word_at(at, "not") && self.space_at(at + 3) {
            return true;
        }
        let Some(c) = self.text[at..].chars().next().filter(|&c| is_space(c)) else {
            return false;
        };
        let after = at + c.len_utf8();
        (self.word_at(after, "or") && self.space_at(after + 2))
            || (self.word_at(after, "and") && self.space_at(after + 3))
    }

    /// `Space+ word Space+` (`and`, `or`); consumes nothing unless all of it is there.
    fn conjunction(&mut self, word: &str) -> bool {
        let start = self.pos;
        if self.skip_spaces() > 0 && self.word_at(self.pos, word) {
            self.pos += word.len();
            if self.skip_spaces() > 0 {
                return true;
            }
        }
        self.pos = start;
        false
    }

    /// `not Space+`.
    fn negation(&mut self) -> bool {
        if self.word_at(self.pos, "not") && self.space_at(self.pos + 3) {
            self.pos += 3;
            self.skip_spaces();
            true
        } else {
            false
        }
    }

    fn descend(&mut self, at: usize) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error_at(at, format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    fn close(&mut self, closing: char, opened_at: usize) -> Result<(), ParseError> {
        self.skip_spaces();
        if self.peek_char() == Some(closing) {
            self.pos += 1;
            self.depth -= 1;
            return Ok(());
        }
        let found = match self.peek_char() {
            Some(c) => format!("{c:?}"),
            None => "the end".into(),
        };
        Err(self.error_at(
            self.pos,
            format!("expected '{closing}' to close the group opened at offset {opened_at}, found {found}"),
        ))
    }

    fn or_query(&mut self) -> Result<Query<F>, ParseError> {
        let mut parts = vec![self.and_query()?];
        while self.conjunction("or") {
            parts.push(self.and_query()?);
        }
        Ok(one_or(parts, Query::Or))
    }

    fn and_query(&mut self) -> Result<Query<F>, ParseError> {
        let mut parts = vec![self.not_query()?];
        while self.conjunction("and") {
            parts.push(self.not_query()?);
        }
        Ok(one_or(parts, Query::And))
    }

    fn not_query(&mut self) -> Result<Query<F>, ParseError> {
        if !self.negation() {
            return self.sub_query();
        }
        if self.word_at(self.pos, "not") && self.space_at(self.pos + 3) {
            return Err(self.error_at(
                self.pos,
                "'not not' is not KQL; put the inner negation in parentheses".into(),
            ));
        }
        Ok(Query::Not(Box::new(self.sub_query()?)))
    }

    fn sub_query(&mut self) -> Result<Query<F>, ParseError> {
        if self.peek_char() != Some('(') {
            return self.expression();
        }
        let open = self.pos;
        self.descend(open)?;
        self.pos += 1;
        self.skip_spaces();
        let query = self.or_query()?;
        self.close(')', open)?;
        Ok(query)
    }

    /// `field:{…}`, `field:values`, `field <op> value`; a lone value is free text.
    fn expression(&mut self) -> Result<Query<F>, ParseError> {
        let start = self.pos;
        let Some(name) = self.literal()? else {
            let message = match self.peek_char() {
                Some(c) => format!("expected a field name, found {c:?}"),
                None => "expected a field name, found the end".into(),
            };
            return Err(self.error_at(self.pos, message));
        };
        self.skip_spaces();
        let op = match self.peek_char() {
            Some(':') => None,
            Some('<') | Some('>') => Some(self.range_operator()),
            _ => {
                return Err(self.error_at(
                    start,
                    format!(
                        "free-text search {:?} is not supported: name a field (field:value)",
                        name.text
                    ),
                ));
            }
        };
        let field = self.field(name, start)?;
        self.skip_spaces();
        if let Some(op) = op {
            return self.range(field, op);
        }
        self.pos += 1; // the ':'
        self.skip_spaces();
        if self.peek_char() == Some('{') {
            return self.nested(field);
        }
        let value = self.list_of_values(&field)?;
        Ok(Query::Match { field, value })
    }

    fn range_operator(&mut self) -> RangeOp {
        let rest = self.rest();
        let (op, len) = if rest.starts_with("<=") {
            (RangeOp::Lte, 2)
        } else if rest.starts_with(">=") {
            (RangeOp::Gte, 2)
        } else if rest.starts_with('<') {
            (RangeOp::Lt, 1)
        } else {
            (RangeOp::Gt, 1)
        };
        self.pos += len;
        op
    }

    fn field(&self, name: Literal, start: usize) -> Result<F, ParseError> {
        if name.glob.is_some() {
            return Err(self.error_at(
                start,
                format!(
                    "wildcard field names ({:?}) are not supported: a record view cannot \
                     list its fields; name each field",
                    name.text
                ),
            ));
        }
        Ok(F::parse(&match self.nest.last() {
            Some(path) => format!("{path}.{}", name.text),
            None => name.text,
        }))
    }

    fn range(&mut self, field: F, op: RangeOp) -> Result<Query<F>, ParseError> {
        let start = self.pos;
        let Some(value) = self.literal()? else {
            return Err(self.error_at(start, format!("expected a value after '{}'", op.symbol())));
        };
        if value.glob.is_some() {
            return Err(self.error_at(start, "a range bound cannot have wildcards".into()));
        }
        let bound = typed_bound(&field, value.text).map_err(|m| self.error_at(start, m))?;
        Ok(Query::Range { field, op, bound })
    }

    fn nested(&mut self, path: F) -> Result<Query<F>, ParseError> {
        let open = self.pos;
        self.descend(open)?;
        self.pos += 1;
        self.skip_spaces();
        self.nest.push(path.name());
        let query = self.or_query();
        self.nest.pop();
        let query = query?;
        self.close('}', open)?;
        Ok(Query::Nested {
            path,
            query: Box::new(query),
        })
    }

    /// A value, a parenthesised value list, or (as detection-rules allows) `not` values.
    fn list_of_values(&mut self, field: &F) -> Result<ValueExpr, ParseError> {
        let start = self.pos;
        if self.peek_char() == Some('(') {
            self.descend(start)?;
            self.pos += 1;
            self.skip_spaces();
            let value = self.or_values(field)?;
            self.close(')', start)?;
            return Ok(value);
        }
        if self.negation() {
            self.descend(start)?;
            let inner = self.list_of_values(field)?;
            self.depth -= 1;
            return Ok(ValueExpr::Not(Box::new(inner)));
        }
        let Some(value) = self.literal()? else {
            let message = match self.peek_char() {
                Some(c) => format!("expected a value, found {c:?}"),
                None => "expected a value, found the end".into(),
            };
            return Err(self.error_at(self.pos, message));
        };
        let pattern = typed_pattern(field, value).map_err(|m| self.error_at(start, m))?;
        Ok(ValueExpr::Term(pattern))
    }

    fn or_values(&mut self, field: &F) -> Result<ValueExpr, ParseError> {
        let mut parts = vec![self.and_values(field)?];
        while self.conjunction("or") {
            parts.push(self.and_values(field)?);
        }
        Ok(one_or(parts, ValueExpr::Or))
    }

    fn and_values(&mut self, field: &F) -> Result<ValueExpr, ParseError> {
        let mut parts = vec![self.list_of_values(field)?];
        while self.conjunction("and") {
            parts.push(self.list_of_values(field)?);
        }
        Ok(one_or(parts, ValueExpr::And))
    }

    /// A quoted or unquoted literal; `None` if none starts here.
    fn literal(&mut self) -> Result<Option<Literal>, ParseError> {
        if self.peek_char() == Some('"') {
            return self.quoted().map(Some);
        }
        self.unquoted()
    }

    fn quoted(&mut self) -> Result<Literal, ParseError> {
        let open = self.pos;
        self.pos += 1;
        let mut text = String::new();
        loop {
            let Some(c) = self.peek_char() else {
                return Err(self.error_at(open, "unterminated quoted value".into()));
            };
            match c {
                '"' => {
                    self.pos += 1;
                    return Ok(Literal { text, glob: None });
                }
                '\\' => {
                    let after = &self.text[self.pos + 1..];
                    let (ch, len) = match after.as_bytes().first() {
                        Some(b't') => ('\t', 2),
                        Some(b'r') => ('\r', 2),
                        Some(b'n') => ('\n', 2),
                        Some(b'\\') => ('\\', 2),
                        Some(b'"') => ('"', 2),
                        Some(b'u') => self.unicode_escape(self.pos)?.unwrap_or(('\\', 1)),
                        // Any other backslash is itself (Kibana's QuotedCharacter).
                        _ => ('\\', 1),
                    };
                    text.push(ch);
                    self.pos += len;
                }
                c => {
                    text.push(c);
                    self.pos += c.len_utf8();
                }
            }
        }
    }

    /// `\uXXXX` at `at` (a surrogate pair takes two); `None` if not four hex digits.
    fn unicode_escape(&self, at: usize) -> Result<Option<(char, usize)>, ParseError> {
        let hex = |from: usize| -> Option<u32> {
            let digits = self.text.get(from..from + 4)?;
            if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            u32::from_str_radix(digits, 16).ok()
        };
        if !self.text[at..].starts_with("\\u") {
            return Ok(None);
        }
        let Some(unit) = hex(at + 2) else {
            return Ok(None);
        };
        if let Some(c) = char::from_u32(unit) {
            return Ok(Some((c, 6)));
        }
        // A UTF-16 surrogate: only a high one followed by a low one makes a character.
        let low = self.text[at + 6..]
            .starts_with("\\u")
            .then(|| hex(at + 8))
            .flatten()
            .filter(|low| (0xDC00..0xE000).contains(low));
        match low {
            Some(low) if (0xD800..0xDC00).contains(&unit) => {
                let code = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                // In range by construction: a surrogate pair always decodes.
                Ok(char::from_u32(code).map(|c| (c, 12)))
            }
            _ => Err(self.error_at(at, format!("lone surrogate \\u{unit:04X}"))),
        }
    }

    fn unquoted(&mut self) -> Result<Option<Literal>, ParseError> {
        let start = self.pos;
        let mut pieces: Vec<String> = Vec::new();
        let mut current = String::new();
        let mut wildcard = false;
        while let Some(c) = self.peek_char() {
            match c {
                '\\' => {
                    let after = &self.text[self.pos + 1..];
                    let Some(next) = after.chars().next() else {
                        return Err(self.error_at(self.pos, "dangling '\\' at the end".into()));
                    };
                    let (ch, len) = match next {
                        // Whitespace first, as Kibana: `\not` is a newline and "ot".
                        't' => ('\t', 2),
                        'r' => ('\r', 2),
                        'n' => ('\n', 2),
                        c if SPECIAL.contains(c) => (c, 2),
                        'u' => match self.unicode_escape(self.pos)? {
                            Some(decoded) => decoded,
                            None => return Err(self.bad_escape()),
                        },
                        _ => {
                            let keyword = ["or", "and", "not"]
                                .into_iter()
                                .find(|k| self.word_at(self.pos + 1, k));
                            match keyword {
                                Some(k) => {
                                    current.push_str(&after[..k.len()]);
                                    self.pos += 1 + k.len();
                                    continue;
                                }
                                None => return Err(self.bad_escape()),
                            }
                        }
                    };
                    current.push(ch);
                    self.pos += len;
                }
                '*' => {
                    wildcard = true;
                    pieces.push(std::mem::take(&mut current));
                    self.pos += 1;
                }
                c if SPECIAL.contains(c) => break,
                c => {
                    if self.keyword_at(self.pos) {
                        break;
                    }
                    current.push(c);
                    self.pos += c.len_utf8();
                }
            }
        }
        if self.pos == start {
            return Ok(None);
        }
        pieces.push(current);
        // Kibana trims the whole literal, wildcards included as non-space symbols.
        let last = pieces.len() - 1;
        let trimmed_end = pieces[last].trim_end().len();
        pieces[last].truncate(trimmed_end);
        let lead = pieces[0].len() - pieces[0].trim_start().len();
        pieces[0].drain(..lead);
        let text = pieces.join("*");
        Ok(Some(Literal {
            text,
            glob: wildcard.then_some(pieces),
        }))
    }

    fn bad_escape(&self) -> ParseError {
        let shown: String = self.text[self.pos..].chars().take(2).collect();
        self.error_at(
            self.pos,
            format!(
                "{shown:?} is not a KQL escape (escape one of \\():<>\"*{{}}, \\t \\r \\n, \
                 \\uXXXX or a keyword)"
            ),
        )
    }
}

fn one_or<T>(mut parts: Vec<T>, join: fn(Vec<T>) -> T) -> T {
    match (parts.pop(), parts.is_empty()) {
        (Some(only), true) => only,
        (Some(last), false) => {
            parts.push(last);
            join(parts)
        }
        (None, _) => join(parts),
    }
}

fn typed_pattern<F: Field>(field: &F, value: Literal) -> Result<Pattern, String> {
    let kind = field.value_type();
    if let Some(parts) = value.glob {
        if parts.iter().all(String::is_empty) {
            return Ok(Pattern::Exists);
        }
        if kind != ValueType::Keyword {
            return Err(format!(
                "wildcard value {:?} on {kind} field {}",
                value.text,
                field.name()
            ));
        }
        return Ok(Pattern::Wildcard(Glob { parts }));
    }
    let text = value.text;
    let wrong = |text: &str| {
        format!(
            "{text:?} is not a {kind} value ({} is {kind})",
            field.name()
        )
    };
    Ok(match kind {
        ValueType::Keyword => Pattern::Exact(text),
        ValueType::Number => Pattern::Number(parse_number(&text).ok_or_else(|| wrong(&text))?),
        ValueType::Boolean => Pattern::Boolean(parse_bool(&text).ok_or_else(|| wrong(&text))?),
        ValueType::Ip => Pattern::Ip(parse_ip_block(&text).ok_or_else(|| wrong(&text))?),
        ValueType::Date => Pattern::Date(date_span(text, field)?),
    })
}

fn typed_bound<F: Field>(field: &F, text: String) -> Result<Bound, String> {
    let kind = field.value_type();
    let wrong = |text: &str| {
        format!(
            "{text:?} is not a {kind} value ({} is {kind})",
            field.name()
        )
    };
    Ok(match kind {
        ValueType::Keyword => Bound::Keyword(text),
        ValueType::Number => Bound::Number(parse_number(&text).ok_or_else(|| wrong(&text))?),
        ValueType::Boolean => Bound::Boolean(parse_bool(&text).ok_or_else(|| wrong(&text))?),
        ValueType::Ip => match parse_ip_block(&text) {
            Some(block) if !text.contains('/') => Bound::Ip(block),
            _ => return Err(wrong(&text)),
        },
        ValueType::Date => Bound::Date(date_span(text, field)?),
    })
}

fn date_span(text: String, field: &impl Field) -> Result<DateSpan, String> {
    if text.contains("now") || text.contains("||") {
        return Err(format!(
            "date math {text:?} is not supported offline: give a date ({} is a date)",
            field.name()
        ));
    }
    match parse_date(&text) {
        Some((first, last)) => Ok(DateSpan { text, first, last }),
        None => Err(format!(
            "{text:?} is not a date (RFC 3339, a date alone, or epoch milliseconds; {} is a date)",
            field.name()
        )),
    }
}

// ---------------------------------------------------------------------------------
// Printing: KQL text that parses back to the same query.

impl<F: Field> fmt::Display for Query<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, None)
    }
}

impl<F: Field> Query<F> {
    fn write(&self, f: &mut fmt::Formatter<'_>, nest: Option<&str>) -> fmt::Result {
        let grouped = |q: &Query<F>| matches!(q, Query::And(_) | Query::Or(_) | Query::Not(_));
        match self {
            Query::And(parts) | Query::Or(parts) => {
                let joiner = if matches!(self, Query::And(_)) {
                    " and "
                } else {
                    " or "
                };
                for (i, part) in parts.iter().enumerate() {
                    if i > 0 {
                        f.write_str(joiner)?;
                    }
                    if grouped(part) {
                        f.write_str("(")?;
                        part.write(f, nest)?;
                        f.write_str(")")?;
                    } else {
                        part.write(f, nest)?;
                    }
                }
                Ok(())
            }
            Query::Not(inner) => {
                f.write_str("not ")?;
                if grouped(inner) {
                    f.write_str("(")?;
                    inner.write(f, nest)?;
                    f.write_str(")")
                } else {
                    inner.write(f, nest)
                }
            }
            Query::Match { field, value } => {
                write_field(f, field, nest)?;
                f.write_str(": ")?;
                value.write(f, true)
            }
            Query::Range { field, op, bound } => {
                write_field(f, field, nest)?;
                write!(f, " {} ", op.symbol())?;
                match bound {
                    Bound::Keyword(s) => write_quoted(f, s),
                    Bound::Number(n) => write!(f, "{n}"),
                    Bound::Boolean(b) => write!(f, "{b}"),
                    Bound::Ip(b) => write_quoted(f, &b.text),
                    Bound::Date(d) => write_quoted(f, &d.text),
                }
            }
            Query::Nested { path, query } => {
                write_field(f, path, nest)?;
                f.write_str(": { ")?;
                query.write(f, Some(&path.name()))?;
                f.write_str(" }")
            }
        }
    }
}

impl fmt::Display for ValueExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, true)
    }
}

impl ValueExpr {
    fn write(&self, f: &mut fmt::Formatter<'_>, top: bool) -> fmt::Result {
        match self {
            ValueExpr::And(parts) | ValueExpr::Or(parts) => {
                let joiner = if matches!(self, ValueExpr::And(_)) {
                    " and "
                } else {
                    " or "
                };
                f.write_str("(")?;
                for (i, part) in parts.iter().enumerate() {
                    if i > 0 {
                        f.write_str(joiner)?;
                    }
                    part.write(f, false)?;
                }
                f.write_str(")")
            }
            ValueExpr::Not(inner) if top => {
                f.write_str("(not ")?;
                inner.write(f, false)?;
                f.write_str(")")
            }
            ValueExpr::Not(inner) => {
                f.write_str("not ")?;
                inner.write(f, false)
            }
            ValueExpr::Term(pattern) => write!(f, "{pattern}"),
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Exact(s) => write_quoted(f, s),
            Pattern::Wildcard(glob) => {
                for (i, part) in glob.parts.iter().enumerate() {
                    if i > 0 {
                        f.write_str("*")?;
                    }
                    write_unquoted(f, part)?;
                }
                Ok(())
            }
            Pattern::Exists => f.write_str("*"),
            Pattern::Number(n) => write!(f, "{n}"),
            Pattern::Boolean(b) => write!(f, "{b}"),
            Pattern::Ip(b) => write_quoted(f, &b.text),
            Pattern::Date(d) => write_quoted(f, &d.text),
        }
    }
}

fn write_field<F: Field>(f: &mut fmt::Formatter<'_>, field: &F, nest: Option<&str>) -> fmt::Result {
    let full = field.name();
    let name = nest
        .and_then(|path| full.strip_prefix(path)?.strip_prefix('.'))
        .unwrap_or(&full);
    // A field named like a keyword is quoted: `not < "and"` would read as a negation. So
    // is one ending in `not`: the space a range prints after it would make that a keyword
    // (`andnot < x` reads as the value `and`, then `not < x`), as Kibana's grammar has it.
    let lower = name.to_ascii_lowercase();
    let keyword = ["and", "or"].contains(&lower.as_str()) || lower.ends_with("not");
    let plain = !name.is_empty()
        && !keyword
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.@-/".contains(&b));
    if plain {
        f.write_str(name)
    } else {
        write_quoted(f, name)
    }
}

fn write_quoted(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in text.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\t' => f.write_str("\\t")?,
            '\r' => f.write_str("\\r")?,
            '\n' => f.write_str("\\n")?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

/// One piece of a wildcard value, escaped so that it reads back as the same text.
fn write_unquoted(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    let lower = text.to_ascii_lowercase();
    let mut after_space = false;
    for (i, c) in text.char_indices() {
        let rest = &lower[i..];
        // The end counts as a space: the printer may follow a value with ` or `/` and `.
        let space_after = |len: usize| rest[len..].chars().next().is_none_or(is_space);
        match c {
            '\t' => f.write_str("\\t")?,
            '\r' => f.write_str("\\r")?,
            '\n' => f.write_str("\\n")?,
            c if SPECIAL.contains(c) => write!(f, "\\{c}")?,
            // `not ` would be a keyword, and `\not` is a newline: spell the n in hex.
            'n' | 'N' if rest.starts_with("not") && space_after(3) => {
                write!(f, "\\u{:04X}", c as u32)?
            }
            'o' | 'O' if after_space && rest.starts_with("or") && space_after(2) => {
                f.write_str("\\")?;
                f.write_str(&text[i..i + 1])?;
            }
            'a' | 'A' if after_space && rest.starts_with("and") && space_after(3) => {
                f.write_str("\\")?;
                f.write_str(&text[i..i + 1])?;
            }
            c => write!(f, "{c}")?,
        }
        after_space = is_space(c);
    }
    Ok(())
}
#[cfg(test)]
mod tests {

    #[test]
    fn a_value_with_slashes_is_searched_whole_in_both_spellings() {
        let q = Query::parse(r#"user_agent.original:"Mozilla/5.0 Teams/1.3""#).unwrap();
        assert_eq!(
            q.required_literals(),
            Some(vec![
                "Mozilla/5.0 Teams/1.3".to_string(),
                r"Mozilla\/5.0 Teams\/1.3".to_string()
            ])
        );
        // Any other character a writer may escape: the longest safe fragment.
        let q = Query::parse(r#"user_agent.original:"a/b <c> defgh""#).unwrap();
        assert_eq!(q.required_literals(), Some(vec![" defgh".to_string()]));
    }

    use super::*;
    use std::collections::HashMap;

    /// A small ECS-like schema for the tests: two mapped fields (no literal), one
    /// broad one (`event.provider`, but `OneDrive`), and a field of each type.
    #[derive(Clone, Debug, PartialEq)]
    struct Ecs(String);

    impl Field for Ecs {
        fn parse(name: &str) -> Ecs {
            Ecs(name.to_string())
        }

        fn name(&self) -> String {
            self.0.clone()
        }

        fn value_type(&self) -> ValueType {
            match self.0.as_str() {
                "@timestamp" => ValueType::Date,
                "source.ip" => ValueType::Ip,
                n if n.ends_with("OperationCount") => ValueType::Number,
                n if n.ends_with(".enabled") => ValueType::Boolean,
                _ => ValueType::Keyword,
            }
        }

        fn is_verbatim(&self) -> bool {
            !matches!(self.0.as_str(), "event.outcome" | "event.dataset")
        }

        fn spellings(&self, value: &str) -> Option<Vec<Spelling>> {
            self.is_verbatim()
                .then(|| vec![Spelling::Text(value.to_string())])
        }

        fn is_broad_literal(&self, literal: &str) -> bool {
            self.0 == "event.provider" && literal != "OneDrive"
        }
    }

    type Query = super::Query<Ecs>;

    /// A record as a map from field name to values.
    struct Fake(HashMap<String, Vec<String>>);

    impl Fake {
        fn new(pairs: &[(&str, &str)]) -> Fake {
            let mut map: HashMap<String, Vec<String>> = HashMap::new();
            for (k, v) in pairs {
                map.entry(Ecs::parse(k).name())
                    .or_default()
                    .push(v.to_string());
            }
            Fake(map)
        }
    }

    impl Fields<Ecs> for Fake {
        fn any_value(&self, field: &Ecs, pred: &mut dyn FnMut(&str) -> bool) -> bool {
            self.0
                .get(&field.name())
                .is_some_and(|vs| vs.iter().any(|v| pred(v)))
        }
    }

    const RULE: &str = "event.dataset:o365.audit and event.provider:Exchange and \
        event.action:Set-MailboxAuditBypassAssociation and event.outcome:success";

    fn matching() -> Vec<(&'static str, &'static str)> {
        vec![
            ("event.dataset", "o365.audit"),
            ("event.provider", "Exchange"),
            ("event.action", "Set-MailboxAuditBypassAssociation"),
            ("event.outcome", "success"),
        ]
    }

    #[test]
    fn published_rule_parses_into_four_clauses() {
        let q = Query::parse(RULE).unwrap();
        let Query::And(parts) = &q else {
            panic!("not an and: {q:?}")
        };
        assert_eq!(parts.len(), 4);
        assert_eq!(
            parts[2],
            Query::Match {
                field: Ecs::parse("event.action"),
                value: ValueExpr::Term(Pattern::Exact("Set-MailboxAuditBypassAssociation".into()))
            }
        );
    }

    #[test]
    fn rule_matches_only_when_every_clause_holds() {
        let q = Query::parse(RULE).unwrap();
        assert!(q.matches(&Fake::new(&matching())));
        for i in 0..4 {
            let mut pairs = matching();
            pairs.remove(i);
            assert!(!q.matches(&Fake::new(&pairs)), "matched without clause {i}");
        }
        let mut wrong_case = matching();
        wrong_case[2].1 = "set-mailboxauditbypassassociation";
        assert!(
            !q.matches(&Fake::new(&wrong_case)),
            "keyword match must be case-sensitive"
        );
    }

    #[test]
    fn literal_comes_from_the_most_selective_verbatim_clause() {
        let q = Query::parse(RULE).unwrap();
        assert_eq!(
            q.required_literals(),
            Some(vec!["Set-MailboxAuditBypassAssociation".to_string()])
        );
    }

    #[test]
    fn a_set_of_numbers_is_searched_last_and_a_caller_marker_before_it() {
        let set = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let numbers = set(&["50012", "50053", "50126"]);
        let marker = set(&["\0RecordType=15"]);
        let texts = set(&["UserLoginFailed", "PasswordLogonInitialAuthUsingPassword"]);
        assert!(selectivity(&numbers) < selectivity(&marker));
        assert!(selectivity(&marker) < selectivity(&texts));
        // Among sets of text, fewer literals first, then the longer shortest one.
        assert!(selectivity(&set(&["a-long-one"])) > selectivity(&texts));
        // A clause of error codes gives way to another one with text.
        let q = Query::parse(
            "o365.audit.ErrorNumber:(50012 or 50053) and event.action:UserLoginFailed",
        )
        .unwrap();
        assert_eq!(q.required_literals(), Some(set(&["UserLoginFailed"])));
        assert_eq!(
            q.required_conjuncts(),
            vec![set(&["50012", "50053"]), set(&["UserLoginFailed"])]
        );
    }

    #[test]
    fn a_broad_workload_is_no_conjunct_and_a_narrow_one_is() {
        let broad = Query::parse("event.provider:Exchange and event.action:New-InboxRule").unwrap();
        assert_eq!(
            broad.required_conjuncts(),
            vec![vec!["New-InboxRule".to_string()]]
        );
        let narrow =
            Query::parse("event.provider:OneDrive and event.action:FileDownloaded").unwrap();
        assert_eq!(
            narrow.required_conjuncts(),
            vec![
                vec!["OneDrive".to_string()],
                vec!["FileDownloaded".to_string()]
            ]
        );
        // Alone, a broad workload is still the required literal.
        let alone = Query::parse("event.provider:Exchange").unwrap();
        assert_eq!(
            alone.required_literals(),
            Some(vec!["Exchange".to_string()])
        );
    }

    #[test]
    fn each_side_of_an_or_is_a_branch_with_its_own_conjuncts() {
        let set = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // The high-risk delegation rule's shape: what a side needs besides its action is
        // needed only on that side, so the whole has no such conjunct.
        let q = Query::parse(
            "event.provider:Exchange and not o365.audit.UserType:(3 or 4) and ( \
             (event.action:Add-MailboxPermission and o365.audit.ErrorNumber:50012) or \
             (event.action:Set-Mailbox and o365.audit.ErrorNumber:(50053 or 50126)) )",
        )
        .unwrap();
        assert_eq!(
            q.required_literals(),
            Some(set(&["Add-MailboxPermission", "Set-Mailbox"]))
        );
        assert_eq!(
            q.required_conjuncts(),
            vec![set(&["Add-MailboxPermission", "Set-Mailbox"])]
        );
        assert_eq!(
            q.required_branches(),
            vec![
                vec![set(&["Add-MailboxPermission"]), set(&["50012"])],
                vec![set(&["Set-Mailbox"]), set(&["50053", "50126"])],
            ]
        );
        // A conjunction multiplies its clauses' branches.
        let q = Query::parse(
            "(event.action:A or event.action:B) and \
             (o365.audit.ErrorNumber:50001 or o365.audit.ErrorNumber:50002)",
        )
        .unwrap();
        assert_eq!(
            q.required_branches(),
            vec![
                vec![set(&["A"]), set(&["50001"])],
                vec![set(&["A"]), set(&["50002"])],
                vec![set(&["B"]), set(&["50001"])],
                vec![set(&["B"]), set(&["50002"])],
            ]
        );
        // A side with no literal makes the whole one branch knowing nothing.
        let q = Query::parse("event.action:A or not event.action:B").unwrap();
        assert_eq!(q.required_branches(), vec![Vec::<Vec<String>>::new()]);
        // No disjunction: one branch, the conjuncts.
        let q = Query::parse("event.action:A and o365.audit.ErrorNumber:50001").unwrap();
        assert_eq!(q.required_branches(), vec![q.required_conjuncts()]);
        // Past MAX_BRANCHES an `or` is one branch of its union, and a clause that would
        // multiply past it adds its conjuncts to every branch.
        let many = (0..=crate::MAX_BRANCHES)
            .map(|i| format!("event.action:A{i}"))
            .collect::<Vec<_>>()
            .join(" or ");
        let q = Query::parse(&many).unwrap();
        assert_eq!(q.required_branches(), vec![q.required_conjuncts()]);
        let wide = (0..crate::MAX_BRANCHES / 2 + 1)
            .map(|i| format!("o365.audit.ErrorNumber:{}", 50000 + i))
            .collect::<Vec<_>>()
            .join(" or ");
        let q = Query::parse(&format!("(event.action:A or event.action:B) and ({wide})")).unwrap();
        let branches = q.required_branches();
        assert_eq!(branches.len(), 2);
        assert!(
            branches
                .iter()
                .all(|b| b.len() == 2 && b[1].len() == crate::MAX_BRANCHES / 2 + 1)
        );
    }

    #[test]
    fn literals_of_an_or_are_the_union() {
        let q = Query::parse("event.action:(New-InboxRule or Set-InboxRule)").unwrap();
        assert_eq!(
            q.required_literals(),
            Some(vec![
                "New-InboxRule".to_string(),
                "Set-InboxRule".to_string()
            ])
        );
        let q = Query::parse("event.action:New-InboxRule or event.outcome:failure").unwrap();
        assert_eq!(
            q.required_literals(),
            None,
            "outcome is mapped, not verbatim"
        );
    }

    #[test]
    fn no_literal_from_negations_or_mapped_fields() {
        assert_eq!(
            Query::parse("not event.action:X")
                .unwrap()
                .required_literals(),
            None
        );
        assert_eq!(
            Query::parse("event.outcome:success")
                .unwrap()
                .required_literals(),
            None
        );
        assert_eq!(
            Query::parse("event.dataset:o365.audit")
                .unwrap()
                .required_literals(),
            None
        );
    }

    #[test]
    fn literal_avoids_characters_writers_may_escape() {
        let q = Query::parse(r#"user.id:"NT AUTHORITY\\SYSTEM (Microsoft.Exchange.ServiceHost)""#)
            .unwrap();
        assert_eq!(
            q.required_literals(),
            Some(vec!["SYSTEM (Microsoft.Exchange.ServiceHost)".to_string()])
        );
    }

    #[test]
    fn value_lists_not_and_parentheses() {
        let q = Query::parse("event.action:(A or B) and not (event.outcome:failure)").unwrap();
        assert!(q.matches(&Fake::new(&[
            ("event.action", "B"),
            ("event.outcome", "success")
        ])));
        assert!(!q.matches(&Fake::new(&[
            ("event.action", "B"),
            ("event.outcome", "failure")
        ])));
        assert!(!q.matches(&Fake::new(&[("event.action", "C")])));
        let q = Query::parse("tags:(a and b)").unwrap();
        assert!(q.matches(&Fake::new(&[("tags", "a"), ("tags", "b")])));
        assert!(!q.matches(&Fake::new(&[("tags", "a")])));
    }

    #[test]
    fn keywords_are_case_insensitive_and_quoted_keywords_are_values() {
        let q = Query::parse("a:x AND NOT b:y Or c:\"and\"").unwrap();
        assert!(q.matches(&Fake::new(&[("c", "and")])));
        assert!(q.matches(&Fake::new(&[("a", "x")])));
        assert!(!q.matches(&Fake::new(&[("a", "x"), ("b", "y")])));
    }

    #[test]
    fn wildcards_and_exists() {
        let q = Query::parse("event.action:Set-Mailbox*").unwrap();
        assert!(q.matches(&Fake::new(&[(
            "event.action",
            "Set-MailboxAuditBypassAssociation"
        )])));
        assert!(!q.matches(&Fake::new(&[("event.action", "New-Mailbox")])));
        assert_eq!(q.required_literals(), Some(vec!["Set-Mailbox".to_string()]));
        let q = Query::parse("source.ip:*").unwrap();
        assert!(q.matches(&Fake::new(&[("source.ip", "1.2.3.4")])));
        assert!(!q.matches(&Fake::new(&[])));
        let q = Query::parse(r"a:x\*y").unwrap();
        assert!(q.matches(&Fake::new(&[("a", "x*y")])));
        assert!(!q.matches(&Fake::new(&[("a", "xzy")])));
    }

    fn glob(pattern: &str) -> Glob {
        match Query::parse(&format!("a:{pattern}")) {
            Ok(Query::Match {
                value: ValueExpr::Term(Pattern::Wildcard(g)),
                ..
            }) => g,
            other => panic!("{pattern}: {other:?}"),
        }
    }

    /// The old tokenizer dropped any backslash in quotes, so the published
    /// `not user.id:"NT AUTHORITY\SYSTEM (…)"` exclusion never matched.
    #[test]
    fn quoted_backslash_before_an_ordinary_letter_is_kept() {
        let q = Query::parse(r#"user.id:"NT AUTHORITY\SYSTEM (w3wp)""#).unwrap();
        assert!(q.matches(&Fake::new(&[("user.id", r"NT AUTHORITY\SYSTEM (w3wp)")])));
        assert!(!q.matches(&Fake::new(&[("user.id", "NT AUTHORITYSYSTEM (w3wp)")])));
    }

    #[test]
    fn glob_matches_pieces_in_order() {
        assert!(glob("*a*b").matches("xxaxxab"));
        assert!(glob("a**").matches("a"));
        assert!(!glob("*ab").matches("aba"));
        assert!(glob("a*a").matches("aa"));
        assert!(
            !glob("a*a").matches("a"),
            "prefix and suffix may not overlap"
        );
        assert!(glob("*b*b*").matches("bb"));
        assert!(!glob("*b*b*").matches("b"));
        assert!(glob(r"x\**").matches("x*yz"));
        assert!(!glob(r"x\**").matches("xyz"), "an escaped star is literal");
    }

    #[test]
    fn dates_name_their_whole_precision() {
        let day = parse_date("2024-05-01").unwrap();
        assert_eq!(day.1 - day.0, 86_400_000 - 1);
        assert_eq!(day.0, 1_714_521_600_000);
        assert_eq!(parse_date("2024-05-01T00:00:00Z").unwrap().0, day.0);
        assert_eq!(parse_date("2024-05-01T02:00:00+02:00").unwrap().0, day.0);
        assert_eq!(parse_date("2024-05-01T00:00:00.5").unwrap().0, day.0 + 500);
        assert_eq!(parse_date("1714521600000"), Some((day.0, day.0)));
        let feb = parse_date("2024-02").unwrap();
        assert_eq!(feb.1 - feb.0 + 1, 29 * 86_400_000, "leap February");
        for bad in [
            "2024-13-01",
            "2024-05-01 10:00",
            "yesterday",
            "2024-05-01T25",
            "",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn ips_compare_as_addresses() {
        let block = parse_ip_block("10.0.0.0/8").unwrap();
        assert!(block.contains(parse_ip("10.200.1.1").unwrap()));
        assert!(!block.contains(parse_ip("11.0.0.1").unwrap()));
        assert!(block.contains(parse_ip("::ffff:10.1.2.3").unwrap()));
        let v6 = parse_ip_block("2001:db8::/32").unwrap();
        assert!(v6.contains(parse_ip("2001:db8::1").unwrap()));
        let any_v4 = parse_ip_block("0.0.0.0/0").unwrap();
        assert!(any_v4.contains(parse_ip("203.0.113.9").unwrap()));
        assert!(
            !any_v4.contains(parse_ip("::1").unwrap()),
            "IPv4 blocks hold no IPv6"
        );
        assert!(parse_ip_block("::/0").unwrap().contains(1));
        assert!(parse_ip_block("10.0.0.0/33").is_none());
        assert!(parse_ip_block("host.example").is_none());
    }

    #[test]
    fn numbers_are_finite_decimals() {
        assert_eq!(parse_number("100"), Some(100.0));
        assert_eq!(parse_number("1e3"), Some(1000.0));
        assert_eq!(parse_number("-0.5"), Some(-0.5));
        assert_eq!(parse_number("NaN"), None);
        assert_eq!(parse_number("inf"), None);
        assert_eq!(parse_number("12abc"), None);
    }

    #[test]
    fn printing_parses_back_to_the_same_query() {
        for text in [
            RULE,
            "a:(x or y and not z) or not (b:1 and c:\"q \\\" t\")",
            "top:{ a:x and mid:{ b:y* } } and o365.audit.OperationCount >= 100",
            r"a:foo \or bar* and b:*no\u0074 this*",
            "a:(not not x)",
            "@timestamp < 2024-05-01 and source.ip:10.0.0.0/8",
        ] {
            let q = Query::parse(text).unwrap();
            let printed = q.to_string();
            assert_eq!(
                Query::parse(&printed).as_ref(),
                Ok(&q),
                "{text} -> {printed}"
            );
        }
    }

    #[test]
    fn syntax_errors_name_the_offset() {
        let e = Query::parse("a:x and (b:y").unwrap_err();
        assert!(e.message.contains("expected ')'"), "{e}");
        let e = Query::parse("a:x and ").unwrap_err();
        assert!(
            e.message.contains("expected a field name, found the end"),
            "{e}"
        );
        let e = Query::parse("event.action:{a:b").unwrap_err();
        assert_eq!(e.offset, 17);
        assert!(Query::parse("a:\"open").is_err());
        assert!(Query::parse("justtext").is_err());
        assert!(Query::parse("a:x b:y").is_err());
        assert!(Query::parse("").is_err());
        assert!(Query::parse("a:").is_err());
    }
}
