//! What a query language asks of the records it runs on: a [`Field`] type that names
//! and types fields, and a [`Fields`] view that answers their values.

use std::fmt;

/// How a field's values compare. Elasticsearch compares by the field's mapping:
/// `OperationCount >= 100` compares numbers, while the same text on a keyword field
/// compares strings byte by byte (`"500" > "1023"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// Exact, case-sensitive text; ranges are lexicographic. The default.
    Keyword,
    /// A number (`long`, `float`, …): equality and ranges are numeric.
    Number,
    /// `true` or `false`.
    Boolean,
    /// A point in time: RFC 3339, a date alone, or epoch milliseconds.
    Date,
    /// An IPv4 or IPv6 address; a query value may be a CIDR block.
    Ip,
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValueType::Keyword => "keyword",
            ValueType::Number => "numeric",
            ValueType::Boolean => "boolean",
            ValueType::Date => "date",
            ValueType::Ip => "ip",
        })
    }
}

/// One spelling of a field's value in the bytes of a record, for the prefilter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Spelling {
    /// The text of the value: a writer may escape some of its characters, so the query
    /// offers only fragments that no writer escapes (and both spellings of `/`).
    Text(String),
    /// A literal string the caller's searcher understands as it is (a marker of its
    /// own, say); passed through untouched.
    Exact(String),
}

/// A field as a query names it, resolved once at parse time. The implementation
/// decides what a name means in its records.
pub trait Field: Clone + fmt::Debug + PartialEq + Sized {
    /// Resolves a full field name (a nested query's inner names come joined to its path
    /// with `.`).
    fn parse(name: &str) -> Self;

    /// The full name, as a query writes it.
    fn name(&self) -> String;

    /// How the field's values compare.
    fn value_type(&self) -> ValueType {
        ValueType::Keyword
    }

    /// How a keyword value of this field is spelled in the bytes of every record that
    /// holds it (`None`: no spelling is sure, the value gives no literal). The default:
    /// the value's own text.
    fn spellings(&self, value: &str) -> Option<Vec<Spelling>> {
        Some(vec![Spelling::Text(value.to_string())])
    }

    /// Whether a wildcard value's fixed pieces appear byte for byte in the record (the
    /// default), so its longest safe piece can be a literal.
    fn is_verbatim(&self) -> bool {
        true
    }

    /// A literal every record that holds any value of this field contains (its key, say),
    /// used for clauses that give no value literal (existence, ranges, numbers).
    fn key_literal(&self) -> Option<String> {
        None
    }

    /// Whether whole classes of records hold this literal of the field's (a workload's
    /// name: Exchange's is in most records), so that it is a poor prefilter: a clause
    /// giving it is used only when no other clause of a conjunction gives literals, and
    /// is never a conjunct.
    fn is_broad_literal(&self, literal: &str) -> bool {
        let _ = literal;
        false
    }

    /// Whether a clause on this field giving the literals `set` is broad: one of them
    /// is ([`Field::is_broad_literal`]).
    fn is_broad_set(&self, set: &[String]) -> bool {
        set.iter().any(|l| self.is_broad_literal(l))
    }
}

/// Where a query reads field values from (a parsed record, in practice).
pub trait Fields<F> {
    /// Calls `pred` on each text value of `field` (several for an array) until it
    /// returns true; returns whether any call did. Booleans come as JSON writes them
    /// (`true`); a number as its JSON text, as Elasticsearch indexes a number in a
    /// keyword field (`5`, never `5.0` for `5`), so that an integer value is a sound
    /// prefilter literal.
    fn any_value(&self, field: &F, pred: &mut dyn FnMut(&str) -> bool) -> bool;

    /// For a KQL nested query `field:{ … }`: calls `pred` with a view of each element of
    /// the object array at `field` (or of the object itself) until it returns true, and
    /// returns `Some(whether any call did)`; no element gives `Some(false)`. An element
    /// view answers the same full field names (`deltas.action`), restricted to that one
    /// element, so that all of the inner query must hold within one element.
    ///
    /// The default, `None`, says this source has no element boundaries: the inner
    /// query is then evaluated against the whole record, as Elasticsearch does on an
    /// `object` (not `nested`) mapping, where conditions may be met by different elements.
    fn each_element(
        &self,
        field: &F,
        pred: &mut dyn FnMut(&dyn Fields<F>) -> bool,
    ) -> Option<bool> {
        let _ = (field, pred);
        None
    }
}

/// The simplest [`Field`]: a name, every value a keyword spelled as it is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Named(String);

impl Named {
    /// The field's name.
    pub fn name(&self) -> &str {
        &self.0
    }
}

impl Field for Named {
    fn parse(name: &str) -> Named {
        Named(name.to_string())
    }

    fn name(&self) -> String {
        self.0.clone()
    }
}
