//! ES|QL (Elasticsearch's piped query language): parser and evaluator of the subset
//! Elastic's Microsoft 365 rules use, split where a scan meets an aggregation.
//!
//! Place in the flow: a rule's query text is parsed once into a [`Query`] over the
//! caller's field type. Its **per-record part** (the commands before the first one that
//! looks at more than one row: `STATS`, `SORT`, `LIMIT`) runs on each candidate record
//! through [`Fields`] ([`Query::rows`]) and yields that record's rows, holding only the
//! columns the rest of the query reads ([`Row`]; it never keeps the record). The
//! **post part** runs over the rows kept, one rule run at a time ([`Query::finish`]),
//! and says which input rows fed each row it returns. The engine decides which records
//! and which runs; this module knows no file, no time window and no audit record.
//!
//! Commands: `FROM … [METADATA …]` (read, not used: every record is a candidate),
//! `WHERE`, `EVAL`, `GROK`, `DISSECT`, `KEEP`, `DROP`, `MV_EXPAND`, `STATS … BY`,
//! `SORT`, `LIMIT`.
//! Operators: `and`/`or`/`not` (three-valued), `==`, `!=`, `<`, `<=`, `>`, `>=`, `+`,
//! `-`, `*`, `/`, `%`, `IN`, `NOT IN`, `IS [NOT] NULL`, `[NOT] LIKE`, `[NOT] RLIKE`.
//! Functions: `case`, `coalesce`, `to_lower`, `to_upper`, `to_ip`, `to_string`,
//! `cidr_match`, `date_trunc`, `date_diff`, `round`, `abs`, `length`, `starts_with`,
//! `ends_with`, `mv_count`, `mv_sum`, `mv_min`, `mv_max`; aggregates `count(*)`,
//! `count`, `count_distinct`, `values`, `min`, `max`, `sum`, `avg`, which may sit
//! inside expressions (`round(mv_sum(values(x)) / 1048576.0, 2)`).
//!
//! Semantics are Elasticsearch's ES|QL (8.x/9.x):
//!
//! - Values are typed: keyword, integer (`long`), double, boolean, date
//!   (milliseconds), ip. A record field's type is the field's ([`Field::value_type`]).
//!   A column may hold several values (a multi-value); none is `null`. A record
//!   field's multi-value is read as Elasticsearch loads it: sorted, and without
//!   duplicates for keyword and ip fields.
//! - A comparison, arithmetic or single-value function with a `null` operand is
//!   `null`; one with a multi-valued operand is `null` too (Elasticsearch adds a
//!   warning). `WHERE` keeps rows whose condition is `true`. `IN` is `true` when a list
//!   element equals, else `null` when one is `null`, else `false`.
//! - `LIKE` (`*`, `?`) and `RLIKE` (Lucene's regular expressions, see
//!   `pattern::rlike`) match the whole value, case-sensitively.
//! - `integer / integer` divides in integers (truncating); with a double it is double;
//!   a division by zero or an integer overflow is `null`.
//! - `COUNT(*)` counts rows, `COUNT(x)` the values of `x` (each value of a
//!   multi-value); `COUNT_DISTINCT` is exact here (Elasticsearch's is exact up to its
//!   precision threshold, 3000 by default); `VALUES` gives the distinct values, sorted
//!   (Elasticsearch leaves their order unspecified). `STATS … BY` puts a row in the
//!   group of each value of a multi-valued key, and `null` keys in a group of their
//!   own; its columns are the aggregates, then the keys.
//! - `GROK` runs its regular expression unanchored; `DISSECT` cuts the text at its
//!   pattern's delimiters (`%{key}`, `%{?skip}`, `%{+append}`, `->` padding,
//!   `APPEND_SEPARATOR`); a value either does not match, or a `null`, gives `null`
//!   columns. `MV_EXPAND` makes a row per value.
//!
//! Not supported (a clear error at parse time): `RENAME`, `ENRICH`, `LOOKUP`, `ROW`,
//! `SHOW`, grok's `%{…}` pattern names, dissect's reference keys (`%{*k}`, `%{&k}`) and
//! append order (`/N`), calendar intervals (weeks,
//! months, years) in `date_trunc`, `KEEP`/`DROP` wildcards over a record's fields (a
//! record's field names are not listed), and every function not named above.
//!
//! This module never touches bytes from an archive: it only sees field values through
//! the [`Fields`] trait.

mod pattern;

use std::cmp::Ordering;
use std::fmt;

use chrono::{DateTime, NaiveDateTime, Utc};
use regex::Regex;

use crate::field::{Field, Fields, Spelling, ValueType};
use crate::kql::{IpBlock, parse_ip, parse_ip_block, safe_spellings, selectivity};

/// How deep expressions may nest.
pub const MAX_DEPTH: usize = 64;

/// A query that does not parse, or that uses what is not supported.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("ES|QL at byte {offset}: {message}")]
pub struct ParseError {
    /// Byte offset in the query text.
    pub offset: usize,
    /// What was wrong.
    pub message: String,
}

// ---------------------------------------------------------------------------------
// Values.

/// One value of a column.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    /// `boolean`.
    Bool(bool),
    /// `integer` or `long`.
    Int(i64),
    /// `double`.
    Double(f64),
    /// `keyword` or `text`.
    Str(String),
    /// `date`: milliseconds since the epoch, UTC.
    Date(i64),
    /// `ip`: IPv6, an IPv4 address mapped (`::ffff:a.b.c.d`).
    Ip(u128),
    /// A time span literal (`3 minutes`), in milliseconds.
    Span(i64),
}

/// A column's value: none (`null`), one, or several (a multi-value).
pub type Value = Vec<Scalar>;

/// A [`Scalar`] whose text is borrowed (a record's, while it is read; a row's): what
/// a comparison reads, without copying the text.
#[derive(Clone, Copy, Debug)]
enum View<'a> {
    Bool(bool),
    Int(i64),
    Double(f64),
    Str(&'a str),
    Date(i64),
    Ip(u128),
    Span(i64),
}

impl View<'_> {
    fn owned(self) -> Scalar {
        match self {
            View::Bool(b) => Scalar::Bool(b),
            View::Int(n) => Scalar::Int(n),
            View::Double(x) => Scalar::Double(x),
            View::Str(s) => Scalar::Str(s.to_string()),
            View::Date(t) => Scalar::Date(t),
            View::Ip(a) => Scalar::Ip(a),
            View::Span(d) => Scalar::Span(d),
        }
    }

    /// [`Scalar::compare`].
    fn compare(self, other: View<'_>) -> Option<Ordering> {
        use View::*;
        match (self, other) {
            (Bool(a), Bool(b)) => Some(a.cmp(&b)),
            (Int(a), Int(b)) => Some(a.cmp(&b)),
            (Int(a), Double(b)) => (a as f64).partial_cmp(&b),
            (Double(a), Int(b)) => a.partial_cmp(&(b as f64)),
            (Double(a), Double(b)) => a.partial_cmp(&b),
            (Str(a), Str(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
            (Date(a), Date(b)) | (Span(a), Span(b)) => Some(a.cmp(&b)),
            (Ip(a), Ip(b)) => Some(a.cmp(&b)),
            (Date(a), Str(s)) => parse_date(s).map(|b| a.cmp(&b)),
            (Str(s), Date(b)) => parse_date(s).map(|a| a.cmp(&b)),
            (Ip(a), Str(s)) => parse_ip(s).map(|b| a.cmp(&b)),
            (Str(s), Ip(b)) => parse_ip(s).map(|a| a.cmp(&b)),
            _ => None,
        }
    }
}

impl Scalar {
    fn view(&self) -> View<'_> {
        match self {
            Scalar::Bool(b) => View::Bool(*b),
            Scalar::Int(n) => View::Int(*n),
            Scalar::Double(x) => View::Double(*x),
            Scalar::Str(s) => View::Str(s),
            Scalar::Date(t) => View::Date(*t),
            Scalar::Ip(a) => View::Ip(*a),
            Scalar::Span(d) => View::Span(*d),
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Scalar::Bool(_) => 0,
            Scalar::Int(_) | Scalar::Double(_) => 1,
            Scalar::Str(_) => 2,
            Scalar::Date(_) => 3,
            Scalar::Ip(_) => 4,
            Scalar::Span(_) => 5,
        }
    }

    /// Elasticsearch's comparison of two values of comparable types (`None`: the
    /// types do not compare). A keyword compares with a date or an ip by reading it as
    /// one, as a string literal is read against a field of that type.
    fn compare(&self, other: &Scalar) -> Option<Ordering> {
        self.view().compare(other.view())
    }

    /// A total order over every value (types by rank), for `VALUES`, `SORT`,
    /// `COUNT_DISTINCT` and group keys.
    fn total(&self, other: &Scalar) -> Ordering {
        match (self, other) {
            (Scalar::Double(a), Scalar::Double(b)) => a.total_cmp(b),
            (Scalar::Int(a), Scalar::Double(b)) => (*a as f64).total_cmp(b),
            (Scalar::Double(a), Scalar::Int(b)) => a.total_cmp(&(*b as f64)),
            _ => self
                .rank()
                .cmp(&other.rank())
                .then_with(|| self.compare(other).unwrap_or(Ordering::Equal)),
        }
    }

    fn same(&self, other: &Scalar) -> bool {
        self.rank() == other.rank() && self.total(other) == Ordering::Equal
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Bool(b) => write!(f, "{b}"),
            Scalar::Int(n) => write!(f, "{n}"),
            Scalar::Double(x) if x.is_finite() && x.fract() == 0.0 && x.abs() < 1e15 => {
                write!(f, "{x:.1}")
            }
            Scalar::Double(x) => write!(f, "{x}"),
            Scalar::Str(s) => f.write_str(s),
            Scalar::Date(ms) => match DateTime::<Utc>::from_timestamp_millis(*ms) {
                Some(t) => write!(f, "{}", t.format("%Y-%m-%dT%H:%M:%S%.3fZ")),
                None => write!(f, "{ms}"),
            },
            Scalar::Ip(a) => {
                let v6 = std::net::Ipv6Addr::from(*a);
                match v6.to_ipv4_mapped() {
                    Some(v4) => write!(f, "{v4}"),
                    None => write!(f, "{v6}"),
                }
            }
            Scalar::Span(ms) => write!(f, "{ms}ms"),
        }
    }
}

/// A value as ES|QL prints it in a row: `null`, the value, or `[a, b]`.
pub fn show(value: &Value) -> String {
    match value.as_slice() {
        [] => "null".into(),
        [one] => one.to_string(),
        many => format!(
            "[{}]",
            many.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Reads a date: RFC 3339, or an ISO 8601 date-time without an offset (UTC), or a date.
fn parse_date(text: &str) -> Option<i64> {
    let t = text.trim();
    // The audit log's own `CreationTime` (`2024-01-01T00:00:00`), read without
    // chrono's format interpreter; anything else as before.
    if let Some(d) = crate::time::audit_date_time(t.as_bytes()) {
        return Some(d.timestamp_millis());
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Some(d.timestamp_millis());
    }
    if let Ok(d) = NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(d.and_utc().timestamp_millis());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis());
    }
    None
}

/// A record field's text as a value of its type (`None`: not of that type, as
/// Elasticsearch would have refused to index it).
fn typed(kind: ValueType, text: &str) -> Option<Scalar> {
    typed_view(kind, text).map(View::owned)
}

/// [`typed`], the text borrowed.
fn typed_view(kind: ValueType, text: &str) -> Option<View<'_>> {
    match kind {
        ValueType::Keyword => Some(View::Str(text)),
        ValueType::Number => {
            let t = text.trim();
            t.parse::<i64>().map(View::Int).ok().or_else(|| {
                t.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .map(View::Double)
            })
        }
        ValueType::Boolean => match text.trim() {
            "true" => Some(View::Bool(true)),
            "false" => Some(View::Bool(false)),
            _ => None,
        },
        ValueType::Date => parse_date(text)
            .or_else(|| text.trim().parse::<i64>().ok())
            .map(View::Date),
        ValueType::Ip => parse_ip(text).map(View::Ip),
    }
}

fn truth(v: &Value) -> Option<bool> {
    match v.as_slice() {
        [Scalar::Bool(b)] => Some(*b),
        _ => None,
    }
}

fn boolean(b: Option<bool>) -> Value {
    b.map(|b| vec![Scalar::Bool(b)]).unwrap_or_default()
}

// ---------------------------------------------------------------------------------
// Rows.

/// A row: named columns, in order. Before the first `KEEP`/`STATS` of the per-record
/// part, names not among the columns are read from the record.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Row {
    /// The columns.
    pub columns: Vec<(String, Value)>,
    /// The input rows (their indexes in what [`Query::finish`] was given) that fed it.
    pub from: Vec<u32>,
}

impl Row {
    /// A column's value.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.columns.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    fn set(&mut self, name: &str, value: Value) {
        self.columns.retain(|(n, _)| n != name);
        self.columns.push((name.to_string(), value));
    }
}

impl fmt::Display for Row {
    /// `a=1, b=[x, y], c=null`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, value)) in self.columns.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{name}={}", show(value))?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------
// The parsed query.

/// A parsed ES|QL query.
#[derive(Clone, Debug)]
pub struct Query<F> {
    text: String,
    /// `FROM`'s index patterns.
    pub sources: Vec<String>,
    per_record: Vec<Command<F>>,
    /// Conjuncts of the per-record part's `WHERE`s that read only record fields (no
    /// column an earlier command made or expanded, before any `KEEP`/`DROP`): a record
    /// that fails one gives no row whatever the commands before its `WHERE` do, so
    /// [`Query::rows`] tests them first and spares such a record every `EVAL`.
    early: Vec<Expr<F>>,
    post: Vec<Command<F>>,
    /// The columns a per-record row carries into the post part (`None`: the columns
    /// the per-record part left, its schema being closed).
    carry: Option<Vec<Column<F>>>,
}

/// A column a command reads: its name, and the record field it is when no earlier
/// command made a column of that name.
#[derive(Clone, Debug, PartialEq)]
struct Column<F> {
    name: String,
    field: F,
}

#[derive(Clone, Debug)]
enum Command<F> {
    Where(Expr<F>),
    Eval(Vec<(String, Expr<F>)>),
    /// `GROK` or `DISSECT`: columns `names` extracted from `input`'s text.
    Extract {
        input: Expr<F>,
        how: Extract,
        names: Vec<String>,
    },
    Keep(Vec<String>),
    Drop(Vec<String>),
    MvExpand(Column<F>),
    Stats {
        aggs: Vec<Agg<F>>,
        outputs: Vec<(String, Expr<F>)>,
        by: Vec<(String, Expr<F>)>,
    },
    Sort(Vec<SortKey<F>>),
    Limit(usize),
}

/// How `GROK` and `DISSECT` take columns out of a text.
#[derive(Clone, Debug)]
enum Extract {
    /// Capture group `gN` is column `N`.
    Grok(Regex),
    Dissect(pattern::Dissect),
}

impl Extract {
    /// The `n` columns of a value: each `null` unless the value is one text that the
    /// pattern matches.
    fn apply(&self, value: &Value, n: usize) -> Vec<Value> {
        let text = match one(value) {
            Some(Scalar::Str(t)) => t,
            _ => return vec![Vec::new(); n],
        };
        let found: Option<Vec<Option<String>>> = match self {
            Extract::Grok(regex) => regex.captures(text).map(|c| {
                (0..n)
                    .map(|i| c.name(&format!("g{i}")).map(|m| m.as_str().to_string()))
                    .collect()
            }),
            Extract::Dissect(d) => d.apply(text).map(|v| v.into_iter().map(Some).collect()),
        };
        match found {
            Some(values) => values
                .into_iter()
                .map(|v| v.map(|t| vec![Scalar::Str(t)]).unwrap_or_default())
                .collect(),
            None => vec![Vec::new(); n],
        }
    }
}

#[derive(Clone, Debug)]
struct SortKey<F> {
    expr: Expr<F>,
    descending: bool,
    nulls_first: bool,
}

#[derive(Clone, Debug)]
struct Agg<F> {
    func: AggFn,
    /// `None`: `COUNT(*)`.
    arg: Option<Expr<F>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AggFn {
    Count,
    CountDistinct,
    Values,
    Min,
    Max,
    Sum,
    Avg,
}

impl AggFn {
    fn of(name: &str) -> Option<AggFn> {
        Some(match name {
            "count" => AggFn::Count,
            "count_distinct" => AggFn::CountDistinct,
            "values" => AggFn::Values,
            "min" => AggFn::Min,
            "max" => AggFn::Max,
            "sum" => AggFn::Sum,
            "avg" => AggFn::Avg,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug)]
enum Expr<F> {
    Lit(Value),
    Col(Column<F>),
    /// The value of aggregate `n` of the `STATS` being computed.
    Agg(usize),
    Call(Func, Vec<Expr<F>>),
    Not(Box<Expr<F>>),
    And(Box<Expr<F>>, Box<Expr<F>>),
    Or(Box<Expr<F>>, Box<Expr<F>>),
    Cmp(CmpOp, Box<Expr<F>>, Box<Expr<F>>),
    Arith(ArithOp, Box<Expr<F>>, Box<Expr<F>>),
    Neg(Box<Expr<F>>),
    In(Box<Expr<F>>, Vec<Expr<F>>),
    IsNull(Box<Expr<F>>),
    Matches(Box<Expr<F>>, Box<Regex>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    /// The operator with its operands swapped (`k < x` is `x > k`).
    fn flipped(self) -> CmpOp {
        match self {
            CmpOp::Eq => CmpOp::Eq,
            CmpOp::Ne => CmpOp::Ne,
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Func {
    Case,
    Coalesce,
    ToLower,
    ToUpper,
    ToIp,
    ToString,
    CidrMatch,
    DateTrunc,
    DateDiff,
    Round,
    Abs,
    Length,
    StartsWith,
    EndsWith,
    MvCount,
    MvSum,
    MvMin,
    MvMax,
}

impl Func {
    /// The function of a name and how many arguments it takes (min, max).
    fn of(name: &str) -> Option<(Func, usize, usize)> {
        Some(match name {
            "case" => (Func::Case, 1, usize::MAX),
            "coalesce" => (Func::Coalesce, 1, usize::MAX),
            "to_lower" => (Func::ToLower, 1, 1),
            "to_upper" => (Func::ToUpper, 1, 1),
            "to_ip" => (Func::ToIp, 1, 1),
            "to_string" | "to_str" => (Func::ToString, 1, 1),
            "cidr_match" => (Func::CidrMatch, 2, usize::MAX),
            "date_trunc" => (Func::DateTrunc, 2, 2),
            "date_diff" => (Func::DateDiff, 3, 3),
            "round" => (Func::Round, 1, 2),
            "abs" => (Func::Abs, 1, 1),
            "length" => (Func::Length, 1, 1),
            "starts_with" => (Func::StartsWith, 2, 2),
            "ends_with" => (Func::EndsWith, 2, 2),
            "mv_count" => (Func::MvCount, 1, 1),
            "mv_sum" => (Func::MvSum, 1, 1),
            "mv_min" => (Func::MvMin, 1, 1),
            "mv_max" => (Func::MvMax, 1, 1),
            _ => return None,
        })
    }
}

// ---------------------------------------------------------------------------------
// Evaluation.

/// Where an expression reads columns from.
struct Scope<'a, F> {
    row: &'a Row,
    /// The record, while the per-record part's schema is open.
    record: Option<&'a dyn Fields<F>>,
    aggs: &'a [Value],
}

impl<F: Field> Scope<'_, F> {
    fn column(&self, col: &Column<F>) -> Value {
        if let Some(v) = self.row.get(&col.name) {
            return v.clone();
        }
        let Some(record) = self.record else {
            return Vec::new();
        };
        read_field(record, &col.field)
    }

    /// `f` of a column's value when it is null (`None`) or one value, read without
    /// copying it (a record field's text is borrowed while the record is read); `None`
    /// when it holds several values (the caller reads them as [`Scope::column`] does).
    fn with_one<R>(&self, col: &Column<F>, f: impl FnOnce(Option<View<'_>>) -> R) -> Option<R> {
        #[cfg(test)]
        if tests::OWNED_ONLY.get() {
            return None;
        }
        if let Some(v) = self.row.get(&col.name) {
            return match v.as_slice() {
                [] => Some(f(None)),
                [x] => Some(f(Some(x.view()))),
                _ => None,
            };
        }
        let Some(record) = self.record else {
            return Some(f(None));
        };
        let kind = col.field.value_type();
        let mut f = Some(f);
        let mut out = None;
        let mut seen = 0u8;
        record.any_value(&col.field, &mut |text| {
            let Some(v) = typed_view(kind, text) else {
                return false;
            };
            seen += 1;
            if seen > 1 {
                return true;
            }
            out = f.take().map(|f| f(Some(v)));
            false
        });
        match seen {
            0 => f.map(|f| f(None)),
            1 => out,
            _ => None,
        }
    }
}

/// Every value of a record field, typed by the field, as Elasticsearch loads a
/// multi-value from doc values: sorted, and for keyword and ip fields (sorted sets)
/// without duplicates.
fn read_field<F: Field>(record: &dyn Fields<F>, field: &F) -> Value {
    let kind = field.value_type();
    let mut out = Vec::new();
    record.any_value(field, &mut |text| {
        out.extend(typed(kind, text));
        false
    });
    if out.len() > 1 {
        out.sort_by(|a, b| a.rank().cmp(&b.rank()).then_with(|| a.total(b)));
        if matches!(kind, ValueType::Keyword | ValueType::Ip) {
            out.dedup_by(|a, b| a.same(b));
        }
    }
    out
}

impl<F: Field> Expr<F> {
    fn eval(&self, s: &Scope<'_, F>) -> Value {
        match self {
            Expr::Lit(v) => v.clone(),
            Expr::Col(c) => s.column(c),
            Expr::Agg(i) => s.aggs.get(*i).cloned().unwrap_or_default(),
            Expr::Call(f, args) => call(*f, args, s),
            Expr::Not(_)
            | Expr::And(..)
            | Expr::Or(..)
            | Expr::Cmp(..)
            | Expr::In(..)
            | Expr::IsNull(_)
            | Expr::Matches(..) => boolean(self.test(s)),
            Expr::Arith(op, a, b) => {
                let (l, r) = (a.eval(s), b.eval(s));
                let ([x], [y]) = (l.as_slice(), r.as_slice()) else {
                    return Vec::new();
                };
                arith(*op, x, y).into_iter().collect()
            }
            Expr::Neg(e) => match e.eval(s).as_slice() {
                [Scalar::Int(n)] => n.checked_neg().map(Scalar::Int).into_iter().collect(),
                [Scalar::Double(x)] => vec![Scalar::Double(-x)],
                _ => Vec::new(),
            },
        }
    }

    /// The expression's truth: `truth(&self.eval(s))`, a comparison of a column with
    /// literals read without copying the column's value.
    fn test(&self, s: &Scope<'_, F>) -> Option<bool> {
        match self {
            Expr::Not(e) => e.test(s).map(|b| !b),
            Expr::And(a, b) => {
                let l = a.test(s);
                if l == Some(false) {
                    return Some(false);
                }
                match (l, b.test(s)) {
                    (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                }
            }
            Expr::Or(a, b) => {
                let l = a.test(s);
                if l == Some(true) {
                    return Some(true);
                }
                match (l, b.test(s)) {
                    (_, Some(true)) => Some(true),
                    (Some(false), Some(false)) => Some(false),
                    _ => None,
                }
            }
            Expr::Cmp(op, a, b) => {
                let holds = |o: Ordering| match op {
                    CmpOp::Eq => o == Ordering::Equal,
                    CmpOp::Ne => o != Ordering::Equal,
                    CmpOp::Lt => o == Ordering::Less,
                    CmpOp::Le => o != Ordering::Greater,
                    CmpOp::Gt => o == Ordering::Greater,
                    CmpOp::Ge => o != Ordering::Less,
                };
                let borrowed = match (&**a, &**b) {
                    (Expr::Col(c), Expr::Lit(v)) => match v.as_slice() {
                        [y] => s.with_one(c, |x| x.and_then(|x| x.compare(y.view())).map(holds)),
                        _ => Some(None),
                    },
                    (Expr::Lit(v), Expr::Col(c)) => match v.as_slice() {
                        [x] => s.with_one(c, |y| y.and_then(|y| x.view().compare(y)).map(holds)),
                        _ => Some(None),
                    },
                    _ => None,
                };
                if let Some(result) = borrowed {
                    return result;
                }
                let (l, r) = (a.eval(s), b.eval(s));
                let ([x], [y]) = (l.as_slice(), r.as_slice()) else {
                    return None;
                };
                x.compare(y).map(holds)
            }
            Expr::In(e, list) => {
                fn literal<F>(item: &Expr<F>) -> Option<&Value> {
                    match item {
                        Expr::Lit(v) => Some(v),
                        _ => None,
                    }
                }
                if let Expr::Col(c) = &**e
                    && list.iter().all(|item| literal(item).is_some())
                    && let Some(result) = s.with_one(c, |x| {
                        let x = x?;
                        let mut saw_null = false;
                        for v in list.iter().filter_map(literal) {
                            match v.as_slice() {
                                [y] if x.compare(y.view()) == Some(Ordering::Equal) => {
                                    return Some(true);
                                }
                                [_] => {}
                                _ => saw_null = true,
                            }
                        }
                        (!saw_null).then_some(false)
                    })
                {
                    return result;
                }
                let v = e.eval(s);
                let [x] = v.as_slice() else {
                    return None;
                };
                let mut saw_null = false;
                for item in list {
                    match item.eval(s).as_slice() {
                        [y] if x.compare(y) == Some(Ordering::Equal) => {
                            return Some(true);
                        }
                        [_] => {}
                        _ => saw_null = true,
                    }
                }
                (!saw_null).then_some(false)
            }
            Expr::IsNull(e) => {
                if let Expr::Col(c) = &**e
                    && let Some(null) = s.with_one(c, |x| x.is_none())
                {
                    return Some(null);
                }
                Some(e.eval(s).is_empty())
            }
            Expr::Matches(e, re) => {
                let is_match = |x: Option<View<'_>>| match x {
                    Some(View::Str(t)) => Some(re.is_match(t)),
                    _ => None,
                };
                if let Expr::Col(c) = &**e
                    && let Some(result) = s.with_one(c, is_match)
                {
                    return result;
                }
                match e.eval(s).as_slice() {
                    [x] => is_match(Some(x.view())),
                    _ => None,
                }
            }
            _ => truth(&self.eval(s)),
        }
    }
}

fn arith(op: ArithOp, x: &Scalar, y: &Scalar) -> Option<Scalar> {
    use Scalar::{Double, Int};
    match (x, y) {
        (Int(a), Int(b)) => match op {
            ArithOp::Add => a.checked_add(*b),
            ArithOp::Sub => a.checked_sub(*b),
            ArithOp::Mul => a.checked_mul(*b),
            ArithOp::Div => a.checked_div(*b),
            ArithOp::Rem => a.checked_rem(*b),
        }
        .map(Int),
        (Int(_) | Double(_), Int(_) | Double(_)) => {
            let f = |s: &Scalar| match s {
                Int(n) => *n as f64,
                Double(x) => *x,
                _ => 0.0,
            };
            let (a, b) = (f(x), f(y));
            let r = match op {
                ArithOp::Add => a + b,
                ArithOp::Sub => a - b,
                ArithOp::Mul => a * b,
                ArithOp::Div if b == 0.0 => return None,
                ArithOp::Div => a / b,
                ArithOp::Rem if b == 0.0 => return None,
                ArithOp::Rem => a % b,
            };
            r.is_finite().then_some(Double(r))
        }
        (Scalar::Date(t), Scalar::Span(d)) => match op {
            ArithOp::Add => t.checked_add(*d).map(Scalar::Date),
            ArithOp::Sub => t.checked_sub(*d).map(Scalar::Date),
            _ => None,
        },
        _ => None,
    }
}

/// A single-valued argument, or `None` (null or a multi-value).
fn one(v: &Value) -> Option<&Scalar> {
    match v.as_slice() {
        [x] => Some(x),
        _ => None,
    }
}

fn call<F: Field>(func: Func, args: &[Expr<F>], s: &Scope<'_, F>) -> Value {
    let arg = |i: usize| args.get(i).map(|a| a.eval(s)).unwrap_or_default();
    match func {
        Func::Case => {
            let mut pairs = args.chunks_exact(2);
            for pair in &mut pairs {
                if pair[0].test(s) == Some(true) {
                    return pair[1].eval(s);
                }
            }
            match pairs.remainder() {
                [otherwise] => otherwise.eval(s),
                _ => Vec::new(),
            }
        }
        Func::Coalesce => args
            .iter()
            .map(|a| a.eval(s))
            .find(|v| !v.is_empty())
            .unwrap_or_default(),
        Func::ToLower | Func::ToUpper => arg(0)
            .into_iter()
            .filter_map(|x| match x {
                Scalar::Str(t) if func == Func::ToLower => Some(Scalar::Str(t.to_lowercase())),
                Scalar::Str(t) => Some(Scalar::Str(t.to_uppercase())),
                _ => None,
            })
            .collect(),
        Func::ToIp => arg(0)
            .into_iter()
            .filter_map(|x| match x {
                Scalar::Ip(a) => Some(Scalar::Ip(a)),
                Scalar::Str(t) => parse_ip(&t).map(Scalar::Ip),
                _ => None,
            })
            .collect(),
        Func::ToString => arg(0)
            .into_iter()
            .map(|x| Scalar::Str(x.to_string()))
            .collect(),
        Func::CidrMatch => {
            let v = arg(0);
            let Some(Scalar::Ip(addr)) = one(&v) else {
                return Vec::new();
            };
            let mut any = false;
            for a in &args[1..] {
                for block in a.eval(s) {
                    if let Scalar::Str(b) = block
                        && parse_ip_block(&b).is_some_and(|b: IpBlock| b.contains(*addr))
                    {
                        any = true;
                    }
                }
            }
            boolean(Some(any))
        }
        Func::DateTrunc => {
            let (span, date) = (arg(0), arg(1));
            match (one(&span), one(&date)) {
                (Some(Scalar::Span(d)), Some(Scalar::Date(t))) if *d > 0 => {
                    vec![Scalar::Date(t.div_euclid(*d) * d)]
                }
                _ => Vec::new(),
            }
        }
        Func::DateDiff => {
            let (unit, a, b) = (arg(0), arg(1), arg(2));
            match (one(&unit), one(&a), one(&b)) {
                (Some(Scalar::Str(u)), Some(Scalar::Date(x)), Some(Scalar::Date(y))) => {
                    match unit_millis(u) {
                        Some(ms) => vec![Scalar::Int((y - x) / ms)],
                        None => Vec::new(),
                    }
                }
                _ => Vec::new(),
            }
        }
        Func::Round => {
            let (v, d) = (arg(0), arg(1));
            let digits = match one(&d) {
                Some(Scalar::Int(n)) => *n,
                None if args.len() == 1 => 0,
                _ => return Vec::new(),
            };
            match one(&v) {
                Some(Scalar::Double(x)) => {
                    let p = 10f64.powi(digits.clamp(-300, 300) as i32);
                    let r = (x * p).round() / p;
                    vec![Scalar::Double(if r.is_finite() { r } else { *x })]
                }
                Some(Scalar::Int(n)) if digits >= 0 => vec![Scalar::Int(*n)],
                Some(Scalar::Int(n)) => {
                    let p = 10i64
                        .checked_pow((-digits).min(18) as u32)
                        .unwrap_or(i64::MAX);
                    let r = (*n as f64 / p as f64).round() as i64 * p;
                    vec![Scalar::Int(r)]
                }
                _ => Vec::new(),
            }
        }
        Func::Abs => match one(&arg(0)) {
            Some(Scalar::Int(n)) => n.checked_abs().map(Scalar::Int).into_iter().collect(),
            Some(Scalar::Double(x)) => vec![Scalar::Double(x.abs())],
            _ => Vec::new(),
        },
        Func::Length => match one(&arg(0)) {
            Some(Scalar::Str(t)) => vec![Scalar::Int(t.chars().count() as i64)],
            _ => Vec::new(),
        },
        Func::StartsWith | Func::EndsWith => {
            let (a, b) = (arg(0), arg(1));
            match (one(&a), one(&b)) {
                (Some(Scalar::Str(t)), Some(Scalar::Str(p))) => {
                    boolean(Some(if func == Func::StartsWith {
                        t.starts_with(p.as_str())
                    } else {
                        t.ends_with(p.as_str())
                    }))
                }
                _ => Vec::new(),
            }
        }
        Func::MvCount => {
            let v = arg(0);
            if v.is_empty() {
                Vec::new()
            } else {
                vec![Scalar::Int(v.len() as i64)]
            }
        }
        Func::MvSum => sum(&arg(0)).into_iter().collect(),
        Func::MvMin | Func::MvMax => {
            let v = arg(0);
            let pick = v.into_iter().reduce(|a, b| {
                let less = a.total(&b) == Ordering::Less;
                if less == (func == Func::MvMin) { a } else { b }
            });
            pick.into_iter().collect()
        }
    }
}

/// `date_diff`'s units, in milliseconds.
fn unit_millis(unit: &str) -> Option<i64> {
    Some(match unit {
        "millisecond" | "milliseconds" | "ms" => 1,
        "second" | "seconds" | "ss" | "s" => 1_000,
        "minute" | "minutes" | "mi" | "n" => 60_000,
        "hour" | "hours" | "hh" => 3_600_000,
        "day" | "days" | "dd" | "d" => 86_400_000,
        "week" | "weeks" | "wk" | "ww" => 604_800_000,
        _ => return None,
    })
}

/// The sum of numeric values: integers stay integers (`None` on overflow).
fn sum(values: &[Scalar]) -> Option<Scalar> {
    let mut int: Option<i64> = Some(0);
    let mut float = 0.0f64;
    let mut doubles = false;
    for v in values {
        match v {
            Scalar::Int(n) => {
                int = int.and_then(|s| s.checked_add(*n));
                float += *n as f64;
            }
            Scalar::Double(x) => {
                doubles = true;
                float += x;
            }
            _ => return None,
        }
    }
    if values.is_empty() {
        None
    } else if doubles {
        Some(Scalar::Double(float))
    } else {
        int.map(Scalar::Int)
    }
}

impl<F: Field> Agg<F> {
    /// The aggregate over the rows of a group.
    fn over(&self, rows: &[&Row]) -> Value {
        let Some(arg) = &self.arg else {
            return vec![Scalar::Int(rows.len() as i64)];
        };
        let mut values: Vec<Scalar> = Vec::new();
        for row in rows {
            let scope = Scope {
                row,
                record: None,
                aggs: &[],
            };
            values.extend(arg.eval(&scope));
        }
        match self.func {
            AggFn::Count => vec![Scalar::Int(values.len() as i64)],
            AggFn::CountDistinct => vec![Scalar::Int(distinct(values).len() as i64)],
            AggFn::Values => distinct(values),
            AggFn::Min => values
                .into_iter()
                .min_by(|a, b| a.total(b))
                .into_iter()
                .collect(),
            AggFn::Max => values
                .into_iter()
                .max_by(|a, b| a.total(b))
                .into_iter()
                .collect(),
            AggFn::Sum => sum(&values).into_iter().collect(),
            AggFn::Avg => match sum(&values) {
                Some(Scalar::Int(n)) => vec![Scalar::Double(n as f64 / values.len() as f64)],
                Some(Scalar::Double(x)) => vec![Scalar::Double(x / values.len() as f64)],
                _ => Vec::new(),
            },
        }
    }
}

/// The distinct values, sorted.
fn distinct(mut values: Vec<Scalar>) -> Vec<Scalar> {
    values.sort_by(|a, b| a.rank().cmp(&b.rank()).then_with(|| a.total(b)));
    values.dedup_by(|a, b| a.same(b));
    values
}

impl<F: Field> Query<F> {
    /// The rows a record gives through the per-record part (none: it does not match),
    /// each holding the columns the post part reads. `from` of each row is empty.
    pub fn rows(&self, record: &dyn Fields<F>) -> Vec<Row> {
        if !self.early.is_empty() {
            let row = Row::default();
            let scope = Scope {
                row: &row,
                record: Some(record),
                aggs: &[],
            };
            if self.early.iter().any(|c| c.test(&scope) != Some(true)) {
                return Vec::new();
            }
        }
        let mut rows = vec![Row::default()];
        let mut open = true;
        for command in &self.per_record {
            let source = open.then_some(record);
            if row_command(command, &mut rows, source) {
                if rows.is_empty() {
                    break;
                }
                continue;
            }
            match command {
                Command::Keep(names) if !open => {
                    for row in &mut rows {
                        row.columns = keep(std::mem::take(&mut row.columns), names);
                    }
                }
                Command::Keep(names) => {
                    for row in &mut rows {
                        let scope = Scope {
                            row,
                            record: source,
                            aggs: &[],
                        };
                        let columns = names
                            .iter()
                            .map(|n| {
                                let col = Column {
                                    name: n.clone(),
                                    field: F::parse(n),
                                };
                                (n.clone(), scope.column(&col))
                            })
                            .collect();
                        row.columns = columns;
                    }
                    open = false;
                }
                Command::MvExpand(col) => {
                    let mut out = Vec::with_capacity(rows.len());
                    for mut row in rows {
                        let scope = Scope {
                            row: &row,
                            record: source,
                            aggs: &[],
                        };
                        let values = scope.column(col);
                        if values.len() <= 1 {
                            row.set(&col.name, values);
                            out.push(row);
                        } else {
                            for v in values {
                                let mut r = row.clone();
                                r.set(&col.name, vec![v]);
                                out.push(r);
                            }
                        }
                    }
                    rows = out;
                }
                // Row commands are done above; the rest never in the per-record part
                // (see `split`).
                _ => {}
            }
            if rows.is_empty() {
                break;
            }
        }
        if let Some(carry) = &self.carry {
            for row in &mut rows {
                let scope = Scope {
                    row,
                    record: open.then_some(record),
                    aggs: &[],
                };
                let columns = carry
                    .iter()
                    .map(|c| (c.name.clone(), scope.column(c)))
                    .collect();
                row.columns = columns;
            }
        }
        rows
    }

    /// Whether a record gives at least one row.
    pub fn matches(&self, record: &dyn Fields<F>) -> bool {
        !self.rows(record).is_empty()
    }

    /// Whether the query has a post part (`STATS`, `SORT` or `LIMIT`): its rows are
    /// the post part's over many records, not each record's own.
    pub fn aggregates(&self) -> bool {
        !self.post.is_empty()
    }

    /// Runs the post part over rows from [`Query::rows`] (of one rule run, in the
    /// order the records came); each row returned names in `from` the input rows that
    /// fed it. Without a post part the rows come back as they are.
    pub fn finish(&self, rows: Vec<Row>) -> Vec<Row> {
        let mut rows: Vec<Row> = rows
            .into_iter()
            .enumerate()
            .map(|(i, mut r)| {
                r.from = vec![i as u32];
                r
            })
            .collect();
        for command in &self.post {
            if row_command(command, &mut rows, None) {
                continue;
            }
            match command {
                Command::Keep(names) => {
                    for row in &mut rows {
                        row.columns = keep(std::mem::take(&mut row.columns), names);
                    }
                }
                Command::MvExpand(col) => {
                    let mut out = Vec::with_capacity(rows.len());
                    for row in rows {
                        let values = row.get(&col.name).cloned().unwrap_or_default();
                        if values.len() <= 1 {
                            out.push(row);
                        } else {
                            for v in values {
                                let mut r = row.clone();
                                r.set(&col.name, vec![v]);
                                out.push(r);
                            }
                        }
                    }
                    rows = out;
                }
                Command::Stats { aggs, outputs, by } => rows = stats(&rows, aggs, outputs, by),
                Command::Sort(keys) => {
                    let keyed: Vec<Vec<Value>> = rows
                        .iter()
                        .map(|row| {
                            let scope = Scope {
                                row,
                                record: None,
                                aggs: &[],
                            };
                            keys.iter().map(|k| k.expr.eval(&scope)).collect()
                        })
                        .collect();
                    let mut order: Vec<usize> = (0..rows.len()).collect();
                    order.sort_by(|&a, &b| {
                        keys.iter()
                            .zip(keyed[a].iter().zip(&keyed[b]))
                            .map(|(k, (x, y))| sort_order(k, x, y))
                            .find(|o| *o != Ordering::Equal)
                            .unwrap_or(Ordering::Equal)
                    });
                    let mut taken: Vec<Option<Row>> = rows.into_iter().map(Some).collect();
                    rows = order.into_iter().filter_map(|i| taken[i].take()).collect();
                }
                Command::Limit(n) => rows.truncate(*n),
                // Done by `row_command` above.
                Command::Where(_)
                | Command::Eval(_)
                | Command::Extract { .. }
                | Command::Drop(_) => {}
            }
        }
        rows
    }

    /// The query text, as given.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// Runs a command that works row by row the same in both parts (`WHERE`, `EVAL`,
/// `GROK`/`DISSECT`, `DROP`) over `rows`, reading `record` where the per-record part's
/// schema is still open; returns false, touching nothing, for any other command.
fn row_command<F: Field>(
    command: &Command<F>,
    rows: &mut Vec<Row>,
    record: Option<&dyn Fields<F>>,
) -> bool {
    fn scope<'a, F>(row: &'a Row, record: Option<&'a dyn Fields<F>>) -> Scope<'a, F> {
        Scope {
            row,
            record,
            aggs: &[],
        }
    }
    match command {
        Command::Where(cond) => rows.retain(|row| cond.test(&scope(row, record)) == Some(true)),
        Command::Eval(assigns) => {
            for row in rows.iter_mut() {
                for (name, expr) in assigns {
                    let v = expr.eval(&scope(row, record));
                    row.set(name, v);
                }
            }
        }
        Command::Extract { input, how, names } => {
            for row in rows.iter_mut() {
                let values = how.apply(&input.eval(&scope(row, record)), names.len());
                for (name, value) in names.iter().zip(values) {
                    row.set(name, value);
                }
            }
        }
        Command::Drop(names) => {
            for row in rows.iter_mut() {
                row.columns
                    .retain(|(n, _)| !names.iter().any(|p| name_matches(p, n)));
            }
        }
        _ => return false,
    }
    true
}

/// How two rows' values of a sort key order: a multi-value sorts by its least value
/// ascending, its greatest descending; `null`s last ascending, first descending,
/// unless `NULLS FIRST`/`LAST` says otherwise.
fn sort_order<F>(key: &SortKey<F>, x: &Value, y: &Value) -> Ordering {
    let pick = |v: &Value| -> Option<Scalar> {
        let it = v.iter().cloned();
        if key.descending {
            it.max_by(|a, b| a.total(b))
        } else {
            it.min_by(|a, b| a.total(b))
        }
    };
    match (pick(x), pick(y)) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) if key.nulls_first => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) if key.nulls_first => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(a), Some(b)) if key.descending => b.total(&a),
        (Some(a), Some(b)) => a.total(&b),
    }
}

/// `STATS aggs BY keys` over rows: a group per distinct combination of key values (a
/// multi-valued key puts the row in each value's group), in the order groups are first
/// met; no key: one group, even over no rows.
fn stats<F: Field>(
    rows: &[Row],
    aggs: &[Agg<F>],
    outputs: &[(String, Expr<F>)],
    by: &[(String, Expr<F>)],
) -> Vec<Row> {
    let mut keys: Vec<Vec<Value>> = Vec::new();
    let mut members: Vec<Vec<usize>> = Vec::new();
    let mut index: std::collections::BTreeMap<String, usize> = Default::default();
    for (i, row) in rows.iter().enumerate() {
        let scope = Scope {
            row,
            record: None,
            aggs: &[],
        };
        let mut combos: Vec<Vec<Value>> = vec![Vec::new()];
        for (_, expr) in by {
            let v = expr.eval(&scope);
            let choices: Vec<Value> = if v.is_empty() {
                vec![Vec::new()]
            } else {
                distinct(v).into_iter().map(|x| vec![x]).collect()
            };
            combos = combos
                .into_iter()
                .flat_map(|c| {
                    choices.iter().map(move |x| {
                        let mut c = c.clone();
                        c.push(x.clone());
                        c
                    })
                })
                .collect();
        }
        for combo in combos {
            let id = group_id(&combo);
            let g = *index.entry(id).or_insert_with(|| {
                keys.push(combo);
                members.push(Vec::new());
                keys.len() - 1
            });
            members[g].push(i);
        }
    }
    if by.is_empty() && keys.is_empty() {
        keys.push(Vec::new());
        members.push(Vec::new());
    }
    keys.into_iter()
        .zip(members)
        .map(|(key, member)| {
            let group: Vec<&Row> = member.iter().map(|&i| &rows[i]).collect();
            let results: Vec<Value> = aggs.iter().map(|a| a.over(&group)).collect();
            let empty = Row::default();
            let scope = Scope {
                row: &empty,
                record: None,
                aggs: &results,
            };
            let mut columns: Vec<(String, Value)> = Vec::new();
            for (name, expr) in outputs {
                let v = expr.eval(&scope);
                columns.retain(|(n, _)| n != name);
                columns.push((name.clone(), v));
            }
            for ((name, _), v) in by.iter().zip(key) {
                columns.retain(|(n, _)| n != name);
                columns.push((name.clone(), v));
            }
            let mut from: Vec<u32> = group.iter().flat_map(|r| r.from.iter().copied()).collect();
            from.sort_unstable();
            from.dedup();
            Row { columns, from }
        })
        .collect()
}

/// A text that two group keys share exactly when they are the same values.
fn group_id(key: &[Value]) -> String {
    let mut id = String::new();
    for v in key {
        match v.as_slice() {
            [] => id.push_str("\u{0}n"),
            [x] => {
                id.push('\u{0}');
                id.push(char::from(b'a' + x.rank()));
                match x {
                    Scalar::Double(d) => id.push_str(&d.to_bits().to_string()),
                    other => id.push_str(&other.to_string()),
                }
            }
            _ => id.push_str("\u{0}m"),
        }
    }
    id
}

// ---------------------------------------------------------------------------------
// Prefilter literals and fields.

impl<F: Field> Query<F> {
    /// The literals one of which every line holding a record with rows holds (`None`:
    /// every line must be parsed). Each `WHERE` of the per-record part is a conjunct;
    /// as in the EQL module, the most selective set of a clause on a record field's
    /// exact keyword value (`==`, `IN`, their conjunctions and disjunctions) is chosen,
    /// broad values last, a field's key (`x IS NOT NULL`) only when no clause gives a
    /// value's literal.
    pub fn required_literals(&self) -> Option<Vec<String>> {
        self.literal_sets()
            .into_iter()
            .max_by_key(|(broad, value, set)| (!broad, *value, selectivity(set)))
            .map(|(_, _, set)| set)
    }

    /// Literal sets a line must hold a literal of each (sets of broad values left out),
    /// fields' keys among them.
    pub fn required_conjuncts(&self) -> Vec<Vec<String>> {
        self.literal_sets()
            .into_iter()
            .filter(|(broad, _, _)| !broad)
            .map(|(_, _, set)| set)
            .collect()
    }

    /// Each `WHERE` conjunct's literal set: whether it holds a broad value, and whether
    /// it holds values' literals (else a field's key, from `x IS NOT NULL`: the key is
    /// in every record holding the field; a key set is the required one only when no
    /// conjunct gives values', as in the KQL module).
    fn literal_sets(&self) -> Vec<(bool, bool, Vec<String>)> {
        let mut made: Vec<&str> = Vec::new();
        let mut out = Vec::new();
        for command in &self.per_record {
            match command {
                Command::Where(cond) => {
                    let mut conjuncts = Vec::new();
                    cond.conjuncts(&mut conjuncts);
                    for c in conjuncts {
                        if let Some(set) = c.literals(&made) {
                            out.push((c.is_broad(&made, &set), true, set));
                        } else if let Some(set) = c.key_literals(&made) {
                            out.push((c.is_broad(&made, &set), false, set));
                        }
                    }
                }
                Command::Eval(_) | Command::Extract { .. } => made.extend(command.made()),
                // After KEEP, a record field keeps its values under its name.
                Command::Keep(_)
                | Command::Drop(_)
                | Command::MvExpand(_)
                | Command::Stats { .. }
                | Command::Sort(_)
                | Command::Limit(_) => {}
            }
        }
        out
    }

    /// Every record field the query reads (names that no command made).
    pub fn fields(&self) -> Vec<&F> {
        fn push<'q, F: PartialEq>(c: &'q Column<F>, made: &[&str], out: &mut Vec<&'q F>) {
            if !made.contains(&c.name.as_str()) && !out.contains(&&c.field) {
                out.push(&c.field);
            }
        }
        let mut out: Vec<&F> = Vec::new();
        let mut made: Vec<&str> = Vec::new();
        let mut cols: Vec<&Column<F>> = Vec::new();
        for command in &self.per_record {
            cols.clear();
            command.columns(&mut cols);
            for c in &cols {
                push(c, &made, &mut out);
            }
            made.extend(command.made());
        }
        for c in self.carry.iter().flatten() {
            push(c, &made, &mut out);
        }
        out
    }
}

/// A condition that some record of a rule run must meet for the query to return any
/// row in that run: its post part keeps only groups where an aggregate over a per-record
/// column is not empty (`WHERE count_distinct(x) > 0`, `WHERE values(x) IS NOT NULL`),
/// and that column is null unless a literal-bearing condition holds (`x = case(f ==
/// "lit", …)`). The engine searches only [`Trigger::literals`] for such a rule, and reads
/// the rest of its records only around the records that meet it ([`Trigger::fires`]).
#[derive(Clone, Debug)]
pub struct Trigger<F> {
    /// Literals one of which every record meeting the condition holds.
    pub literals: Vec<String>,
    /// The aggregate's column in the post part (for messages).
    pub column: String,
    /// The per-record column (or expression over the carried columns) that must not
    /// be null: the aggregate's argument.
    arg: Expr<F>,
}

impl<F: Field> Trigger<F> {
    /// Whether a row from [`Query::rows`] meets the condition: it gives the aggregate a
    /// value, so the group it falls in may pass the post part's `WHERE`.
    pub fn fires(&self, row: &Row) -> bool {
        let scope = Scope {
            row,
            record: None,
            aggs: &[],
        };
        !self.arg.eval(&scope).is_empty()
    }
}

impl<F: Field> Query<F> {
    /// The query's trigger, if it has one ([`Trigger`]): the most selective of the
    /// conditions the post part's `WHERE` needs before any later `STATS` (which could
    /// make a row from no input).
    pub fn trigger(&self) -> Option<Trigger<F>> {
        let (Command::Stats { aggs, outputs, by }, rest) = self.post.split_first()? else {
            return None;
        };
        // Output columns that are one aggregate over an argument (the last of a name
        // wins, and a BY key of the same name replaces it).
        let mut gated: Vec<(&str, usize)> = outputs
            .iter()
            .enumerate()
            .filter_map(|(i, (name, e))| match e {
                Expr::Agg(n)
                    if aggs.get(*n).is_some_and(|a| a.arg.is_some())
                        && !outputs[i + 1..].iter().any(|(m, _)| m == name)
                        && !by.iter().any(|(k, _)| k == name) =>
                {
                    Some((name.as_str(), *n))
                }
                _ => None,
            })
            .collect();
        let mut best: Option<Trigger<F>> = None;
        for command in rest {
            match command {
                Command::Where(cond) => {
                    let mut conjuncts = Vec::new();
                    cond.conjuncts(&mut conjuncts);
                    for c in conjuncts {
                        for &(name, n) in &gated {
                            if !c.needs_values(name, aggs[n].func) {
                                continue;
                            }
                            let Some(arg) = &aggs[n].arg else { continue };
                            let Some(literals) = self.nonnull_literals(arg) else {
                                continue;
                            };
                            if best
                                .as_ref()
                                .is_none_or(|b| selectivity(&literals) > selectivity(&b.literals))
                            {
                                best = Some(Trigger {
                                    literals,
                                    column: name.to_string(),
                                    arg: arg.clone(),
                                });
                            }
                        }
                    }
                }
                Command::Eval(assigns) => {
                    gated.retain(|(name, _)| !assigns.iter().any(|(n, _)| n == name))
                }
                Command::Extract { names, .. } => {
                    gated.retain(|(name, _)| !names.iter().any(|n| n == name))
                }
                // A STATS without BY returns a row over no input: nothing after it gates.
                Command::Stats { .. } => break,
                // They only drop, reorder or split rows that passed.
                Command::Keep(_)
                | Command::Drop(_)
                | Command::MvExpand(_)
                | Command::Sort(_)
                | Command::Limit(_) => {}
            }
        }
        best
    }

    /// Literals one of which a record holds whenever `arg` (an expression over the
    /// carried columns, in the post part) is not null for one of its rows (`None`: not
    /// known).
    fn nonnull_literals(&self, arg: &Expr<F>) -> Option<Vec<String>> {
        match arg {
            Expr::Col(c) => {
                // The per-record command that last set the column.
                let mut made: Vec<&str> = Vec::new();
                let mut found = None;
                for command in &self.per_record {
                    match command {
                        Command::Eval(assigns) => {
                            for (name, e) in assigns {
                                if *name == c.name {
                                    found = Some((e, made.clone()));
                                }
                                made.push(name);
                            }
                        }
                        Command::Extract { names, .. } => {
                            if names.contains(&c.name) {
                                found = None;
                            }
                            made.extend(names.iter().map(String::as_str));
                        }
                        _ => {}
                    }
                }
                // Names made later (by the same EVAL or after it) count as made too:
                // they only ever take literals away.
                let (e, _) = found?;
                let set = e.nonnull_literals(&made)?;
                (!set.is_empty()).then_some(set)
            }
            Expr::Call(Func::ToIp | Func::ToLower | Func::ToUpper | Func::ToString, args) => {
                self.nonnull_literals(args.first()?)
            }
            _ => None,
        }
    }
}

impl<F: Field> Command<F> {
    /// The columns an `EVAL` or an extraction makes (none for any other command).
    fn made(&self) -> impl Iterator<Item = &str> {
        let names: Box<dyn Iterator<Item = &str>> = match self {
            Command::Eval(assigns) => Box::new(assigns.iter().map(|(n, _)| n.as_str())),
            Command::Extract { names, .. } => Box::new(names.iter().map(String::as_str)),
            _ => Box::new(std::iter::empty()),
        };
        names
    }

    /// The columns the command reads.
    fn columns<'a>(&'a self, out: &mut Vec<&'a Column<F>>) {
        match self {
            Command::Where(e) => e.columns(out),
            Command::Eval(assigns) => assigns.iter().for_each(|(_, e)| e.columns(out)),
            Command::Extract { input, .. } => input.columns(out),
            Command::MvExpand(c) => out.push(c),
            Command::Stats { aggs, by, .. } => {
                aggs.iter()
                    .flat_map(|a| &a.arg)
                    .for_each(|e| e.columns(out));
                by.iter().for_each(|(_, e)| e.columns(out));
            }
            Command::Sort(keys) => keys.iter().for_each(|k| k.expr.columns(out)),
            Command::Keep(_) | Command::Drop(_) | Command::Limit(_) => {}
        }
    }
}

impl<F: Field> Expr<F> {
    fn columns<'a>(&'a self, out: &mut Vec<&'a Column<F>>) {
        match self {
            Expr::Lit(_) | Expr::Agg(_) => {}
            Expr::Col(c) => out.push(c),
            Expr::Call(_, args) => args.iter().for_each(|a| a.columns(out)),
            Expr::Not(e) | Expr::Neg(e) | Expr::IsNull(e) | Expr::Matches(e, _) => e.columns(out),
            Expr::And(a, b) | Expr::Or(a, b) | Expr::Cmp(_, a, b) | Expr::Arith(_, a, b) => {
                a.columns(out);
                b.columns(out);
            }
            Expr::In(e, list) => {
                e.columns(out);
                list.iter().for_each(|x| x.columns(out));
            }
        }
    }

    fn conjuncts<'a>(&'a self, out: &mut Vec<&'a Expr<F>>) {
        match self {
            Expr::And(a, b) => {
                a.conjuncts(out);
                b.conjuncts(out);
            }
            other => out.push(other),
        }
    }

    /// The record field this is, if it is one (not a column a command made).
    fn record_field(&self, made: &[&str]) -> Option<&F> {
        match self {
            Expr::Col(c) if !made.contains(&c.name.as_str()) => Some(&c.field),
            _ => None,
        }
    }

    /// Whether this condition's literals `set` are shared by whole classes of records
    /// (see [`Field::is_broad_literal`]), so a poor prefilter.
    fn is_broad(&self, made: &[&str], set: &[String]) -> bool {
        let broad = |field: Option<&F>| field.is_some_and(|f| f.is_broad_set(set));
        match self {
            Expr::Cmp(_, a, b) => broad(a.record_field(made).or_else(|| b.record_field(made))),
            Expr::In(e, _) => broad(e.record_field(made)),
            Expr::Or(a, b) => a.is_broad(made, set) || b.is_broad(made, set),
            Expr::And(a, b) => a.is_broad(made, set) && b.is_broad(made, set),
            _ => false,
        }
    }

    /// Whether this condition on a row of a STATS's output is false (or null) when the
    /// aggregate `func` in column `name` had no value to aggregate: `count(x) > 0`,
    /// `count_distinct(x) >= 1`, `values(x) IS NOT NULL`, `min(x) < 5`.
    fn needs_values(&self, name: &str, func: AggFn) -> bool {
        let is_col = |e: &Expr<F>| matches!(e, Expr::Col(c) if c.name == name);
        let counts = matches!(func, AggFn::Count | AggFn::CountDistinct);
        match self {
            Expr::Not(inner) => matches!(inner.as_ref(), Expr::IsNull(e) if is_col(e)) && !counts,
            Expr::Cmp(op, a, b) => {
                let (op, lit) = match (a.as_ref(), b.as_ref()) {
                    (x, Expr::Lit(v)) if is_col(x) => (*op, v),
                    (Expr::Lit(v), x) if is_col(x) => (op.flipped(), v),
                    _ => return false,
                };
                if !counts {
                    // A comparison with the null of no values is null.
                    return true;
                }
                // A count of no values is 0: the comparison must be false at 0.
                let k = match lit.as_slice() {
                    [Scalar::Int(k)] => *k as f64,
                    [Scalar::Double(k)] => *k,
                    // A comparison with null is null: nothing passes at all.
                    [] => return true,
                    _ => return false,
                };
                let zero_passes = match op {
                    CmpOp::Eq => 0.0 == k,
                    CmpOp::Ne => 0.0 != k,
                    CmpOp::Lt => 0.0 < k,
                    CmpOp::Le => 0.0 <= k,
                    CmpOp::Gt => 0.0 > k,
                    CmpOp::Ge => 0.0 >= k,
                };
                !zero_passes && !k.is_nan()
            }
            _ => false,
        }
    }

    /// Literals one of which a record holds whenever this per-record expression is not
    /// null (`None`: not known; empty: it is always null).
    fn nonnull_literals(&self, made: &[&str]) -> Option<Vec<String>> {
        match self {
            Expr::Lit(v) if v.is_empty() => Some(Vec::new()),
            // `case(c1, v1, c2, v2, …[, else])`: a value comes from a condition that held,
            // or from the `else`.
            Expr::Call(Func::Case, args) => {
                let mut out = Vec::new();
                for pair in args.chunks(2) {
                    match pair {
                        [cond, value] => out.extend(
                            cond.literals(made)
                                .or_else(|| value.nonnull_literals(made))?,
                        ),
                        [otherwise] => out.extend(otherwise.nonnull_literals(made)?),
                        _ => return None,
                    }
                }
                Some(out)
            }
            Expr::Call(Func::ToIp | Func::ToLower | Func::ToUpper | Func::ToString, args) => {
                args.first()?.nonnull_literals(made)
            }
            _ => None,
        }
    }

    /// The key of the record field this condition needs a value of: `x IS NOT NULL`
    /// on a field read from the record's own keys ([`Field::key_literal`]).
    fn key_literals(&self, made: &[&str]) -> Option<Vec<String>> {
        let Expr::Not(inner) = self else { return None };
        let Expr::IsNull(e) = inner.as_ref() else {
            return None;
        };
        e.record_field(made)?.key_literal().map(|k| vec![k])
    }

    /// Literals one of which a record satisfying this condition holds.
    fn literals(&self, made: &[&str]) -> Option<Vec<String>> {
        match self {
            Expr::Cmp(CmpOp::Eq, a, b) => {
                let (field, value) = match (a.as_ref(), b.as_ref()) {
                    (x, Expr::Lit(v)) | (Expr::Lit(v), x) => (x.record_field(made)?, v),
                    _ => return None,
                };
                match value.as_slice() {
                    [Scalar::Str(s)] => exact_literals(field, s),
                    _ => None,
                }
            }
            Expr::In(e, list) => {
                let field = e.record_field(made)?;
                let mut out = Vec::new();
                for item in list {
                    match item {
                        Expr::Lit(v) => match v.as_slice() {
                            [Scalar::Str(s)] => out.extend(exact_literals(field, s)?),
                            _ => return None,
                        },
                        _ => return None,
                    }
                }
                (!out.is_empty()).then_some(out)
            }
            Expr::And(a, b) => {
                let (x, y) = (a.literals(made), b.literals(made));
                match (x, y) {
                    (Some(x), Some(y)) => Some(if selectivity(&x) >= selectivity(&y) {
                        x
                    } else {
                        y
                    }),
                    (x, y) => x.or(y),
                }
            }
            Expr::Or(a, b) => {
                let mut x = a.literals(made)?;
                x.extend(b.literals(made)?);
                Some(x)
            }
            _ => None,
        }
    }
}

/// The spellings of a keyword field's exact value in a record's bytes.
fn exact_literals<F: Field>(field: &F, value: &str) -> Option<Vec<String>> {
    if field.value_type() != ValueType::Keyword {
        return None;
    }
    let mut out = Vec::new();
    for form in field.spellings(value)? {
        match form {
            Spelling::Text(t) => out.extend(safe_spellings(&t)?),
            Spelling::Exact(literal) => out.push(literal),
        }
    }
    (!out.is_empty()).then_some(out)
}

impl<F> fmt::Display for Query<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

// ---------------------------------------------------------------------------------
// Lexing.

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    /// A (possibly dotted, possibly backquoted) name; `*` may appear in patterns.
    Name(String),
    Str(String),
    Int(i64),
    Double(f64),
    Pipe,
    Comma,
    LParen,
    RParen,
    Assign,
    Op(&'static str),
    Star,
    End,
}

struct Lexer<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Lexer<'a> {
    fn err<T>(&self, at: usize, message: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            offset: at,
            message: message.into(),
        })
    }

    fn skip_space(&mut self) -> Result<(), ParseError> {
        loop {
            let rest = &self.text[self.at..];
            let trimmed = rest.trim_start();
            self.at += rest.len() - trimmed.len();
            if trimmed.starts_with("//") {
                self.at += trimmed.find('\n').unwrap_or(trimmed.len());
            } else if let Some(body) = trimmed.strip_prefix("/*") {
                match body.find("*/") {
                    Some(end) => self.at += end + 4,
                    None => return self.err(self.at, "comment without its closing */"),
                }
            } else {
                return Ok(());
            }
        }
    }

    /// An index pattern of `FROM` (`logs-o365.audit-*`).
    fn source(&mut self) -> Result<Option<String>, ParseError> {
        self.skip_space()?;
        let rest = &self.text[self.at..];
        let len = rest
            .find(|c: char| c.is_whitespace() || c == ',' || c == '|')
            .unwrap_or(rest.len());
        if len == 0 {
            return Ok(None);
        }
        self.at += len;
        Ok(Some(rest[..len].to_string()))
    }

    fn peek(&mut self) -> Result<(usize, Tok), ParseError> {
        let save = self.at;
        let t = self.token();
        self.at = save;
        t
    }

    fn token(&mut self) -> Result<(usize, Tok), ParseError> {
        self.skip_space()?;
        let start = self.at;
        let rest = &self.text[start..];
        let Some(c) = rest.chars().next() else {
            return Ok((start, Tok::End));
        };
        let two = rest.get(..2).unwrap_or("");
        let tok = match c {
            '|' => {
                self.at += 1;
                Tok::Pipe
            }
            ',' => {
                self.at += 1;
                Tok::Comma
            }
            '(' => {
                self.at += 1;
                Tok::LParen
            }
            ')' => {
                self.at += 1;
                Tok::RParen
            }
            '*' => {
                self.at += 1;
                Tok::Star
            }
            '"' => return self.string(),
            '=' | '!' | '<' | '>' => {
                let op = match two {
                    "==" => "==",
                    "!=" => "!=",
                    "<=" => "<=",
                    ">=" => ">=",
                    _ => match c {
                        '<' => "<",
                        '>' => ">",
                        '=' => {
                            self.at += 1;
                            return Ok((start, Tok::Assign));
                        }
                        _ => return self.err(start, "unexpected '!'"),
                    },
                };
                self.at += op.len();
                Tok::Op(op)
            }
            '+' | '-' | '/' | '%' => {
                self.at += 1;
                Tok::Op(match c {
                    '+' => "+",
                    '-' => "-",
                    '/' => "/",
                    _ => "%",
                })
            }
            '0'..='9' => return self.number(),
            c if c.is_alphabetic() || c == '_' || c == '@' || c == '`' => return self.name(),
            other => return self.err(start, format!("unexpected character {other:?}")),
        };
        Ok((start, tok))
    }

    fn number(&mut self) -> Result<(usize, Tok), ParseError> {
        let start = self.at;
        let rest = &self.text[start..];
        let mut len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let mut float = false;
        if rest[len..].starts_with('.') && rest[len + 1..].starts_with(|c: char| c.is_ascii_digit())
        {
            float = true;
            len += 1 + rest[len + 1..]
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len() - len - 1);
        }
        if rest[len..].starts_with(['e', 'E']) {
            let exp = &rest[len + 1..];
            let sign = usize::from(exp.starts_with(['+', '-']));
            let digits = exp[sign..]
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(exp.len() - sign);
            if digits > 0 {
                float = true;
                len += 1 + sign + digits;
            }
        }
        let text = &rest[..len];
        self.at += len;
        if float {
            match text.parse::<f64>() {
                Ok(x) if x.is_finite() => Ok((start, Tok::Double(x))),
                _ => self.err(start, format!("number {text} is out of range")),
            }
        } else {
            match text.parse::<i64>() {
                Ok(n) => Ok((start, Tok::Int(n))),
                Err(_) => match text.parse::<f64>() {
                    Ok(x) if x.is_finite() => Ok((start, Tok::Double(x))),
                    _ => self.err(start, format!("number {text} is out of range")),
                },
            }
        }
    }

    fn name(&mut self) -> Result<(usize, Tok), ParseError> {
        let start = self.at;
        let mut name = String::new();
        loop {
            let rest = &self.text[self.at..];
            if let Some(quoted) = rest.strip_prefix('`') {
                // A backquoted part: `` stands for one backquote.
                let mut part = String::new();
                let mut chars = quoted.char_indices();
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    if c == '`' {
                        if quoted[i + 1..].starts_with('`') {
                            part.push('`');
                            chars.next();
                        } else {
                            end = Some(i);
                            break;
                        }
                    } else {
                        part.push(c);
                    }
                }
                let Some(end) = end else {
                    return self.err(start, "quoted name without its closing `");
                };
                name.push_str(&part);
                self.at += 1 + end + 1;
            } else {
                let len = rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '@' || c == '*'))
                    .unwrap_or(rest.len());
                if len == 0 {
                    return self.err(self.at, "a name is expected");
                }
                name.push_str(&rest[..len]);
                self.at += len;
            }
            let rest = &self.text[self.at..];
            let continues = rest.strip_prefix('.').is_some_and(|r| {
                r.starts_with(|c: char| c.is_alphanumeric() || c == '_' || c == '@' || c == '`')
                    || r.starts_with('*')
            });
            if !continues {
                break;
            }
            name.push('.');
            self.at += 1;
        }
        Ok((start, Tok::Name(name)))
    }

    fn string(&mut self) -> Result<(usize, Tok), ParseError> {
        let start = self.at;
        let rest = &self.text[start..];
        if let Some(body) = rest.strip_prefix("\"\"\"") {
            // Raw: no escapes; up to two more quotes belong to the text.
            let Some(end) = body.find("\"\"\"") else {
                return self.err(start, "string without its closing \"\"\"");
            };
            let mut end = end;
            while body[end + 3..].starts_with('"') && end + 3 < body.len() {
                end += 1;
            }
            self.at += 3 + end + 3;
            return Ok((start, Tok::Str(body[..end].to_string())));
        }
        let mut out = String::new();
        let mut chars = rest[1..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.at += 1 + i + 1;
                    return Ok((start, Tok::Str(out)));
                }
                '\\' => match chars.next() {
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 'r')) => out.push('\r'),
                    Some((_, 't')) => out.push('\t'),
                    Some((_, '"')) => out.push('"'),
                    Some((_, '\\')) => out.push('\\'),
                    Some((_, other)) => {
                        return self.err(start + 1 + i, format!("unknown escape \\{other}"));
                    }
                    None => break,
                },
                '\n' | '\r' => return self.err(start, "string without its closing quote"),
                c => out.push(c),
            }
        }
        self.err(start, "string without its closing quote")
    }
}

// ---------------------------------------------------------------------------------
// Parsing.

/// A command's name as a keyword.
fn keyword(t: &Tok, word: &str) -> bool {
    matches!(t, Tok::Name(n) if n.eq_ignore_ascii_case(word))
}

struct Parser<'a> {
    lex: Lexer<'a>,
    depth: usize,
}

/// Where an expression is parsed: aggregates are allowed only in `STATS`.
struct AggSlot<'s, F>(Option<&'s mut Vec<Agg<F>>>);

impl<'a> Parser<'a> {
    fn err<T>(&self, at: usize, message: impl Into<String>) -> Result<T, ParseError> {
        self.lex.err(at, message)
    }

    fn next(&mut self) -> Result<(usize, Tok), ParseError> {
        self.lex.token()
    }

    fn peek(&mut self) -> Result<Tok, ParseError> {
        self.lex.peek().map(|(_, t)| t)
    }

    fn expect(&mut self, want: Tok, what: &str) -> Result<(), ParseError> {
        let (at, t) = self.next()?;
        if t == want {
            Ok(())
        } else {
            self.err(at, format!("{what} expected, found {t:?}"))
        }
    }

    fn eat_keyword(&mut self, word: &str) -> Result<bool, ParseError> {
        if keyword(&self.peek()?, word) {
            self.next()?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn name(&mut self) -> Result<(usize, String), ParseError> {
        match self.next()? {
            (at, Tok::Name(n)) => Ok((at, n)),
            (at, t) => self.err(at, format!("a name expected, found {t:?}")),
        }
    }

    fn names(&mut self) -> Result<Vec<(usize, String)>, ParseError> {
        let mut out = vec![self.name()?];
        while self.peek()? == Tok::Comma {
            self.next()?;
            out.push(self.name()?);
        }
        Ok(out)
    }

    fn column<F: Field>(&self, at: usize, name: String) -> Result<Expr<F>, ParseError> {
        if name.contains('*') {
            return self.err(at, format!("{name}: a pattern is not a column"));
        }
        Ok(Expr::Col(Column {
            field: F::parse(&name),
            name,
        }))
    }

    fn expr<F: Field>(&mut self, aggs: &mut AggSlot<'_, F>) -> Result<Expr<F>, ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let at = self.lex.at;
            return self.err(at, format!("expression nests deeper than {MAX_DEPTH}"));
        }
        let e = self.or(aggs);
        self.depth -= 1;
        e
    }

    fn or<F: Field>(&mut self, aggs: &mut AggSlot<'_, F>) -> Result<Expr<F>, ParseError> {
        let mut e = self.and(aggs)?;
        while self.eat_keyword("or")? {
            let r = self.and(aggs)?;
            e = Expr::Or(Box::new(e), Box::new(r));
        }
        Ok(e)
    }

    fn and<F: Field>(&mut self, aggs: &mut AggSlot<'_, F>) -> Result<Expr<F>, ParseError> {
        let mut e = self.not(aggs)?;
        while self.eat_keyword("and")? {
            let r = self.not(aggs)?;
            e = Expr::And(Box::new(e), Box::new(r));
        }
        Ok(e)
    }

    fn not<F: Field>(&mut self, aggs: &mut AggSlot<'_, F>) -> Result<Expr<F>, ParseError> {
        if self.eat_keyword("not")? {
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                let at = self.lex.at;
                return self.err(at, format!("expression nests deeper than {MAX_DEPTH}"));
            }
            let e = self.not(aggs);
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(e?)));
        }
        self.predicate(aggs)
    }

    fn predicate<F: Field>(&mut self, aggs: &mut AggSlot<'_, F>) -> Result<Expr<F>, ParseError> {
        let e = self.additive(aggs)?;
        let (at, t) = self.lex.peek()?;
        if let Tok::Op(op) = t {
            let op = match op {
                "==" => Some(CmpOp::Eq),
                "!=" => Some(CmpOp::Ne),
                "<" => Some(CmpOp::Lt),
                "<=" => Some(CmpOp::Le),
                ">" => Some(CmpOp::Gt),
                ">=" => Some(CmpOp::Ge),
                _ => None,
            };
            if let Some(op) = op {
                self.next()?;
                let r = self.additive(aggs)?;
                return Ok(Expr::Cmp(op, Box::new(e), Box::new(r)));
            }
        }
        if keyword(&t, "is") {
            self.next()?;
            let negated = self.eat_keyword("not")?;
            if !self.eat_keyword("null")? {
                return self.err(at, "IS must be followed by [NOT] NULL");
            }
            let test = Expr::IsNull(Box::new(e));
            return Ok(if negated {
                Expr::Not(Box::new(test))
            } else {
                test
            });
        }
        let negated = keyword(&t, "not");
        if negated {
            self.next()?;
        }
        let (at2, t2) = self.lex.peek()?;
        let test = if keyword(&t2, "in") {
            self.next()?;
            self.expect(Tok::LParen, "( after IN")?;
            let mut list = vec![self.expr(aggs)?];
            while self.peek()? == Tok::Comma {
                self.next()?;
                list.push(self.expr(aggs)?);
            }
            self.expect(Tok::RParen, ") closing IN's list")?;
            Expr::In(Box::new(e), list)
        } else if keyword(&t2, "like") || keyword(&t2, "rlike") {
            self.next()?;
            let (pat_at, pat) = self.next()?;
            let Tok::Str(pat) = pat else {
                return self.err(pat_at, "a pattern string expected");
            };
            let re = if keyword(&t2, "like") {
                pattern::like(&pat)
            } else {
                pattern::rlike(&pat)
            }
            .or_else(|m| self.err(pat_at, m))?;
            Expr::Matches(Box::new(e), Box::new(re))
        } else if negated {
            return self.err(at2, "NOT must be followed by IN, LIKE or RLIKE here");
        } else {
            return Ok(e);
        };
        Ok(if negated {
            Expr::Not(Box::new(test))
        } else {
            test
        })
    }

    fn additive<F: Field>(&mut self, aggs: &mut AggSlot<'_, F>) -> Result<Expr<F>, ParseError> {
        let mut e = self.multiplicative(aggs)?;
        loop {
            let op = match self.peek()? {
                Tok::Op("+") => ArithOp::Add,
                Tok::Op("-") => ArithOp::Sub,
                _ => return Ok(e),
            };
            self.next()?;
            let r = self.multiplicative(aggs)?;
            e = Expr::Arith(op, Box::new(e), Box::new(r));
        }
    }

    fn multiplicative<F: Field>(
        &mut self,
        aggs: &mut AggSlot<'_, F>,
    ) -> Result<Expr<F>, ParseError> {
        let mut e = self.unary(aggs)?;
        loop {
            let op = match self.peek()? {
                Tok::Star => ArithOp::Mul,
                Tok::Op("/") => ArithOp::Div,
                Tok::Op("%") => ArithOp::Rem,
                _ => return Ok(e),
            };
            self.next()?;
            let r = self.unary(aggs)?;
            e = Expr::Arith(op, Box::new(e), Box::new(r));
        }
    }

    fn unary<F: Field>(&mut self, aggs: &mut AggSlot<'_, F>) -> Result<Expr<F>, ParseError> {
        if self.peek()? == Tok::Op("-") {
            self.next()?;
            let e = self.unary(aggs)?;
            return Ok(match e {
                Expr::Lit(v) => match v.as_slice() {
                    [Scalar::Int(n)] => Expr::Lit(vec![Scalar::Int(-n)]),
                    [Scalar::Double(x)] => Expr::Lit(vec![Scalar::Double(-x)]),
                    _ => Expr::Neg(Box::new(Expr::Lit(v))),
                },
                e => Expr::Neg(Box::new(e)),
            });
        }
        self.primary(aggs)
    }

    fn primary<F: Field>(&mut self, aggs: &mut AggSlot<'_, F>) -> Result<Expr<F>, ParseError> {
        let (at, t) = self.next()?;
        match t {
            Tok::Str(s) => Ok(Expr::Lit(vec![Scalar::Str(s)])),
            Tok::Int(n) => self.maybe_span(n as f64, Scalar::Int(n)),
            Tok::Double(x) => self.maybe_span(x, Scalar::Double(x)),
            Tok::LParen => {
                let e = self.expr(aggs)?;
                self.expect(Tok::RParen, ")")?;
                Ok(e)
            }
            Tok::Name(name) => {
                let lower = name.to_ascii_lowercase();
                match lower.as_str() {
                    "null" => return Ok(Expr::Lit(Vec::new())),
                    "true" => return Ok(Expr::Lit(vec![Scalar::Bool(true)])),
                    "false" => return Ok(Expr::Lit(vec![Scalar::Bool(false)])),
                    _ => {}
                }
                if self.peek()? != Tok::LParen {
                    return self.column(at, name);
                }
                self.next()?;
                self.call(at, &lower, aggs)
            }
            other => self.err(at, format!("an expression expected, found {other:?}")),
        }
    }

    /// A number, or a time span when a unit follows (`3 minutes`).
    fn maybe_span<F>(&mut self, n: f64, number: Scalar) -> Result<Expr<F>, ParseError> {
        let (at, t) = self.lex.peek()?;
        let Tok::Name(unit) = t else {
            return Ok(Expr::Lit(vec![number]));
        };
        let ms: i64 = match unit.to_ascii_lowercase().as_str() {
            "millisecond" | "milliseconds" | "ms" => 1,
            "second" | "seconds" | "sec" | "s" => 1_000,
            "minute" | "minutes" | "min" => 60_000,
            "hour" | "hours" | "h" => 3_600_000,
            "day" | "days" | "d" => 86_400_000,
            "week" | "weeks" | "w" | "month" | "months" | "mo" | "quarter" | "quarters" | "q"
            | "year" | "years" | "yr" | "y" => {
                return self.err(
                    at,
                    format!("calendar interval {unit:?} is not supported, only fixed spans"),
                );
            }
            _ => return Ok(Expr::Lit(vec![number])),
        };
        self.next()?;
        if n.fract() != 0.0 || n <= 0.0 || n > 1e12 {
            return self.err(at, "a time span needs a positive whole number");
        }
        Ok(Expr::Lit(vec![Scalar::Span(n as i64 * ms)]))
    }

    fn call<F: Field>(
        &mut self,
        at: usize,
        name: &str,
        aggs: &mut AggSlot<'_, F>,
    ) -> Result<Expr<F>, ParseError> {
        if let Some(func) = AggFn::of(name) {
            let Some(slot) = aggs.0.as_deref_mut() else {
                return self.err(at, format!("{name}() is an aggregate: only in STATS"));
            };
            let arg = if func == AggFn::Count && self.peek()? == Tok::Star {
                self.next()?;
                None
            } else {
                // An aggregate's argument is evaluated per row: no aggregate in it.
                Some(self.expr(&mut AggSlot(None))?)
            };
            self.expect(Tok::RParen, ") closing the aggregate")?;
            slot.push(Agg { func, arg });
            return Ok(Expr::Agg(slot.len() - 1));
        }
        let Some((func, min, max)) = Func::of(name) else {
            return self.err(at, format!("function {name}() is not supported"));
        };
        let mut args = Vec::new();
        if self.peek()? != Tok::RParen {
            args.push(self.expr(aggs)?);
            while self.peek()? == Tok::Comma {
                self.next()?;
                args.push(self.expr(aggs)?);
            }
        }
        self.expect(Tok::RParen, ") closing the call")?;
        if args.len() < min || args.len() > max {
            return self.err(at, format!("{name}() takes {min}..{max} arguments"));
        }
        Ok(Expr::Call(func, args))
    }

    /// `name = expr` or an expression named by its text (a column's name).
    fn assignment<F: Field>(
        &mut self,
        aggs: &mut AggSlot<'_, F>,
    ) -> Result<(String, Expr<F>), ParseError> {
        let start = self.lex.at;
        if let (_, Tok::Name(name)) = self.lex.peek()? {
            let save = self.lex.at;
            self.next()?;
            if self.peek()? == Tok::Assign {
                self.next()?;
                return Ok((name, self.expr(aggs)?));
            }
            self.lex.at = save;
        }
        let e = self.expr(aggs)?;
        let text = self.lex.text[start..self.lex.at].trim().to_string();
        Ok((text, e))
    }

    fn assignments<F: Field>(
        &mut self,
        aggs: &mut AggSlot<'_, F>,
    ) -> Result<Vec<(String, Expr<F>)>, ParseError> {
        let mut out = vec![self.assignment(aggs)?];
        while self.peek()? == Tok::Comma {
            self.next()?;
            out.push(self.assignment(aggs)?);
        }
        Ok(out)
    }

    fn command<F: Field>(&mut self) -> Result<Command<F>, ParseError> {
        let (at, name) = self.name()?;
        let lower = name.to_ascii_lowercase();
        let mut none = AggSlot(None);
        Ok(match lower.as_str() {
            "where" => Command::Where(self.expr(&mut none)?),
            "eval" => Command::Eval(self.assignments(&mut none)?),
            "grok" => {
                let input = self.expr(&mut none)?;
                let (pat_at, t) = self.next()?;
                let Tok::Str(pat) = t else {
                    return self.err(pat_at, "GROK needs a pattern string");
                };
                let (regex, names) = pattern::grok(&pat).or_else(|m| self.err(pat_at, m))?;
                Command::Extract {
                    input,
                    how: Extract::Grok(regex),
                    names,
                }
            }
            "dissect" => {
                let input = self.expr(&mut none)?;
                let (pat_at, t) = self.next()?;
                let Tok::Str(pat) = t else {
                    return self.err(pat_at, "DISSECT needs a pattern string");
                };
                let mut separator = String::new();
                if keyword(&self.peek()?, "append_separator") {
                    self.next()?;
                    self.expect(Tok::Assign, "= after APPEND_SEPARATOR")?;
                    match self.next()? {
                        (_, Tok::Str(sep)) => separator = sep,
                        (at, _) => return self.err(at, "APPEND_SEPARATOR needs a string"),
                    }
                }
                let dissect =
                    pattern::Dissect::parse(&pat, separator).or_else(|m| self.err(pat_at, m))?;
                let names = dissect.names().to_vec();
                Command::Extract {
                    input,
                    how: Extract::Dissect(dissect),
                    names,
                }
            }
            "keep" => Command::Keep(self.names()?.into_iter().map(|(_, n)| n).collect()),
            "drop" => Command::Drop(self.names()?.into_iter().map(|(_, n)| n).collect()),
            "mv_expand" => {
                let (at, n) = self.name()?;
                match self.column::<F>(at, n)? {
                    Expr::Col(c) => Command::MvExpand(c),
                    _ => unreachable!("column() makes a column"),
                }
            }
            "stats" => {
                let mut aggs = Vec::new();
                let outputs = if keyword(&self.peek()?, "by") {
                    Vec::new()
                } else {
                    self.assignments(&mut AggSlot(Some(&mut aggs)))?
                };
                let by = if self.eat_keyword("by")? {
                    self.assignments(&mut none)?
                } else {
                    Vec::new()
                };
                if outputs.is_empty() && by.is_empty() {
                    return self.err(at, "STATS needs an aggregate or a BY");
                }
                Command::Stats { aggs, outputs, by }
            }
            "sort" => {
                let mut keys = Vec::new();
                loop {
                    let expr = self.expr(&mut none)?;
                    let descending = if self.eat_keyword("desc")? {
                        true
                    } else {
                        self.eat_keyword("asc")?;
                        false
                    };
                    let nulls_first = if self.eat_keyword("nulls")? {
                        if self.eat_keyword("first")? {
                            true
                        } else if self.eat_keyword("last")? {
                            false
                        } else {
                            let at = self.lex.at;
                            return self.err(at, "NULLS FIRST or NULLS LAST");
                        }
                    } else {
                        descending
                    };
                    keys.push(SortKey {
                        expr,
                        descending,
                        nulls_first,
                    });
                    if self.peek()? != Tok::Comma {
                        break;
                    }
                    self.next()?;
                }
                Command::Sort(keys)
            }
            "limit" => match self.next()? {
                (_, Tok::Int(n)) if n >= 0 => Command::Limit(n as usize),
                (at, _) => return self.err(at, "LIMIT needs a whole number"),
            },
            other => {
                return self.err(at, format!("command {other} is not supported"));
            }
        })
    }
}

impl<F: Field> Query<F> {
    /// Parses a query text.
    pub fn parse(text: &str) -> Result<Query<F>, ParseError> {
        let mut p = Parser {
            lex: Lexer { text, at: 0 },
            depth: 0,
        };
        let (at, first) = p.next()?;
        if !keyword(&first, "from") {
            return p.err(at, "a query starts with FROM");
        }
        let mut sources = Vec::new();
        loop {
            match p.lex.source()? {
                Some(s) => sources.push(s),
                None => return p.err(p.lex.at, "FROM needs an index pattern"),
            }
            if p.peek()? != Tok::Comma {
                break;
            }
            p.next()?;
        }
        if p.eat_keyword("metadata")? {
            p.names()?;
        }
        let mut commands = Vec::new();
        loop {
            match p.next()? {
                (_, Tok::End) => break,
                (_, Tok::Pipe) => commands.push(p.command()?),
                (at, t) => return p.err(at, format!("| expected, found {t:?}")),
            }
        }
        let split = commands
            .iter()
            .position(|c| {
                matches!(
                    c,
                    Command::Stats { .. } | Command::Sort(_) | Command::Limit(_)
                )
            })
            .unwrap_or(commands.len());
        let post = commands.split_off(split);
        let per_record = commands;
        let closed = per_record.iter().any(|c| matches!(c, Command::Keep(_)));
        for c in &per_record {
            if let Command::Keep(names) | Command::Drop(names) = c
                && names.iter().any(|n| n.contains('*'))
                && !closed_before(&per_record, c)
            {
                return p.err(
                    0,
                    "KEEP/DROP patterns over a record's fields are not supported (name them)",
                );
            }
        }
        let carry = if post.is_empty() && closed {
            None
        } else {
            Some(carried(&per_record, &post, closed).map_err(|m| ParseError {
                offset: 0,
                message: m,
            })?)
        };
        Ok(Query {
            text: text.trim().to_string(),
            sources,
            early: early_conditions(&per_record),
            per_record,
            post,
            carry,
        })
    }
}

/// The conjuncts of `per_record`'s `WHERE`s that read record fields only (see
/// [`Query`]'s `early`): a `WHERE` keeps a row only where each of its conjuncts is true,
/// and such a conjunct is the same on every row a record gives up to there (an `EVAL`
/// or an extraction adds other columns, an `MV_EXPAND` of another column copies it).
fn early_conditions<F: Field>(per_record: &[Command<F>]) -> Vec<Expr<F>> {
    let mut made: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for command in per_record {
        match command {
            Command::Where(cond) => {
                let mut conjuncts = Vec::new();
                cond.conjuncts(&mut conjuncts);
                for c in conjuncts {
                    let mut cols = Vec::new();
                    c.columns(&mut cols);
                    if cols.iter().all(|col| !made.contains(&col.name.as_str())) {
                        out.push(c.clone());
                    }
                }
            }
            Command::Eval(_) | Command::Extract { .. } => made.extend(command.made()),
            Command::MvExpand(c) => made.push(&c.name),
            // A row no longer reads the record after these (nor do any come after).
            Command::Keep(_)
            | Command::Drop(_)
            | Command::Stats { .. }
            | Command::Sort(_)
            | Command::Limit(_) => break,
        }
    }
    out
}

/// Whether a KEEP closed the schema before this command.
fn closed_before<F>(commands: &[Command<F>], at: &Command<F>) -> bool {
    for c in commands {
        if std::ptr::eq(c, at) {
            return false;
        }
        if matches!(c, Command::Keep(_)) {
            return true;
        }
    }
    false
}

/// The columns a per-record row must carry: those the post part reads before its
/// first `STATS` (the `STATS` included), or, without one, every column it names; with
/// no post part, the columns the per-record commands made.
fn carried<F: Field>(
    per_record: &[Command<F>],
    post: &[Command<F>],
    closed: bool,
) -> Result<Vec<Column<F>>, String> {
    let mut out: Vec<Column<F>> = Vec::new();
    let mut add = |name: &str, field: &F| {
        if !out.iter().any(|c| c.name == name) {
            out.push(Column {
                name: name.to_string(),
                field: field.clone(),
            });
        }
    };
    if post.is_empty() {
        // No KEEP: the columns the per-record part made (the record's own fields are
        // the evidence itself).
        for c in per_record {
            match c {
                Command::Eval(assigns) => {
                    for (n, _) in assigns {
                        add(n, &F::parse(n));
                    }
                }
                Command::Extract { names, .. } => {
                    for n in names {
                        add(n, &F::parse(n));
                    }
                }
                _ => {}
            }
        }
        return Ok(out);
    }
    let mut made: Vec<String> = Vec::new();
    for c in post {
        let mut cols = Vec::new();
        c.columns(&mut cols);
        for col in cols {
            if !made.contains(&col.name) {
                add(&col.name, &col.field);
            }
        }
        match c {
            Command::Stats { .. } => break,
            Command::Eval(_) | Command::Extract { .. } => made.extend(c.made().map(str::to_string)),
            Command::Keep(names) | Command::Drop(names) => {
                if names.iter().any(|n| n.contains('*')) && !closed {
                    return Err(
                        "KEEP/DROP patterns over a record's fields are not supported (name them)"
                            .into(),
                    );
                }
                for n in names {
                    if !made.contains(n) {
                        add(n, &F::parse(n));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Whether a `KEEP`/`DROP` pattern (`*` any characters) names a column.
fn name_matches(pattern: &str, name: &str) -> bool {
    if !pattern.contains('*') {
        return pattern == name;
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, rest) = parts.split_first().expect("split gives one part at least");
    let Some((last, middle)) = rest.split_last() else {
        return name == *first;
    };
    let Some(mut tail) = name.strip_prefix(first) else {
        return false;
    };
    for part in middle {
        match tail.find(part) {
            Some(at) => tail = &tail[at + part.len()..],
            None => return false,
        }
    }
    tail.len() >= last.len() && tail.ends_with(last)
}

/// `KEEP patterns` over a closed row: each pattern's columns in the row's order, a
/// column once, where its first pattern puts it.
fn keep(columns: Vec<(String, Value)>, patterns: &[String]) -> Vec<(String, Value)> {
    let mut taken: Vec<Option<(String, Value)>> = columns.into_iter().map(Some).collect();
    let mut out = Vec::new();
    for p in patterns {
        let exact = !p.contains('*');
        let mut found = false;
        for slot in &mut taken {
            if slot.as_ref().is_some_and(|(n, _)| name_matches(p, n)) {
                out.extend(slot.take());
                found = true;
            }
        }
        // A named column that is not there is null (Elasticsearch: an unknown column).
        if exact && !found && !out.iter().any(|(n, _): &(String, Value)| n == p) {
            out.push((p.clone(), Vec::new()));
        }
    }
    out
}

#[cfg(test)]
mod tests;
