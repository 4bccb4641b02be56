//! A small KQL (Kibana Query Language) parser and evaluator.
//!
//! Place in the flow: `rule` compiles a published query text into a [`Query`] once;
//! `scan` evaluates it against each candidate record's field view, and `prefilter`
//! asks it which literal byte strings every matching line must contain.
//!
//! Supported: `field:value`, quoted values (`field:"a b"`), unquoted values with `*`
//! wildcards, `field:*` (exists), `and` / `or` / `not` (any case), parentheses, and value
//! lists `field:(a or b)`. Matching on keyword fields is exact and case-sensitive, as in
//! Elasticsearch. Ranges (`field > 3`) and nested queries (`field:{...}`) are rejected
//! with a clear message rather than misread.
//!
//! This module never touches bytes from an archive: it only sees field values through
//! the [`FieldSource`] trait.

use std::fmt;

use crate::field::Field;
pub use crate::field::FieldSource;

/// A parsed KQL query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    /// Every clause must hold.
    And(Vec<Query>),
    /// At least one clause must hold.
    Or(Vec<Query>),
    /// The clause must not hold.
    Not(Box<Query>),
    /// `field:value-expression`.
    Match {
        /// The field, resolved once at parse time.
        field: Field,
        /// What the field's values must satisfy.
        value: ValueExpr,
    },
}

/// The right-hand side of `field:...`.
#[derive(Clone, Debug, PartialEq, Eq)]
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

/// A single value pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// Exact, case-sensitive equality.
    Exact(String),
    /// A pattern with `*` wildcards (unquoted values only).
    Wildcard(String),
    /// `field:*`: the field exists with a non-null value.
    Exists,
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

impl Query {
    /// Parses a KQL query text.
    pub fn parse(text: &str) -> Result<Query, ParseError> {
        let tokens = tokenize(text)?;
        let mut parser = Parser { tokens, pos: 0 };
        let query = parser.or_query()?;
        match parser.peek() {
            None => Ok(query),
            Some(tok) => Err(parser.error_at(tok.offset, format!("unexpected {}", tok.kind))),
        }
    }

    /// Evaluates the query against a record.
    pub fn matches(&self, source: &dyn FieldSource) -> bool {
        match self {
            Query::And(parts) => parts.iter().all(|q| q.matches(source)),
            Query::Or(parts) => parts.iter().any(|q| q.matches(source)),
            Query::Not(inner) => !inner.matches(source),
            Query::Match { field, value } => value.matches(field, source),
        }
    }

    /// The literal byte strings a matching line must contain: a line that contains none
    /// of them cannot match. `None` means no such set can be derived (every line must be
    /// parsed). False positives are fine; this must never exclude a matching line.
    pub fn required_literals(&self) -> Option<Vec<String>> {
        match self {
            Query::Match { field, value } if field.is_verbatim() => value.required_literals(),
            Query::Match { .. } | Query::Not(_) => None,
            Query::And(parts) => parts
                .iter()
                .filter_map(Query::required_literals)
                .max_by_key(|set| selectivity(set)),
            Query::Or(parts) => union(parts.iter().map(Query::required_literals)),
        }
    }

    /// Every field the query reads.
    pub fn fields(&self) -> Vec<&Field> {
        let mut out = Vec::new();
        self.collect_fields(&mut out);
        out
    }

    fn collect_fields<'a>(&'a self, out: &mut Vec<&'a Field>) {
        match self {
            Query::And(parts) | Query::Or(parts) => {
                parts.iter().for_each(|q| q.collect_fields(out))
            }
            Query::Not(inner) => inner.collect_fields(out),
            Query::Match { field, .. } => out.push(field),
        }
    }
}

impl ValueExpr {
    fn matches(&self, field: &Field, source: &dyn FieldSource) -> bool {
        match self {
            ValueExpr::And(parts) => parts.iter().all(|v| v.matches(field, source)),
            ValueExpr::Or(parts) => parts.iter().any(|v| v.matches(field, source)),
            ValueExpr::Not(inner) => !inner.matches(field, source),
            ValueExpr::Term(pattern) => source.any_value(field, &mut |v| pattern.matches(v)),
        }
    }

    fn required_literals(&self) -> Option<Vec<String>> {
        match self {
            ValueExpr::Term(Pattern::Exact(s)) => safe_fragment(s).map(|f| vec![f.to_string()]),
            ValueExpr::Term(Pattern::Wildcard(s)) => s
                .split('*')
                .filter_map(safe_fragment)
                .max_by_key(|f| f.len())
                .map(|f| vec![f.to_string()]),
            ValueExpr::Term(Pattern::Exists) | ValueExpr::Not(_) => None,
            ValueExpr::And(parts) => parts
                .iter()
                .filter_map(ValueExpr::required_literals)
                .max_by_key(|set| selectivity(set)),
            ValueExpr::Or(parts) => union(parts.iter().map(ValueExpr::required_literals)),
        }
    }
}

impl Pattern {
    /// Whether a field value satisfies this pattern.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            Pattern::Exact(s) => s == value,
            Pattern::Wildcard(p) => wildcard_match(p.as_bytes(), value.as_bytes()),
            Pattern::Exists => true,
        }
    }
}

/// How good a literal set is for a prefilter: fewer literals first, then longer ones.
fn selectivity(set: &[String]) -> (std::cmp::Reverse<usize>, usize) {
    let shortest = set.iter().map(String::len).min().unwrap_or(0);
    (std::cmp::Reverse(set.len()), shortest)
}

fn union(sets: impl Iterator<Item = Option<Vec<String>>>) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for set in sets {
        out.extend(set?);
    }
    out.sort();
    out.dedup();
    (!out.is_empty()).then_some(out)
}

/// The longest run of `value` that every JSON writer leaves as it is. Writers may
/// escape `"`, `\`, `/`, control characters, non-ASCII, and (PowerShell) `<>&'`, so a
/// literal containing those could be spelled differently in the bytes.
fn safe_fragment(value: &str) -> Option<&str> {
    let unsafe_byte = |b: u8| !b.is_ascii() || b.is_ascii_control() || b"\"\\/<>&'".contains(&b);
    value
        .split(|c: char| c.is_ascii() && unsafe_byte(c as u8) || !c.is_ascii())
        .max_by_key(|f| f.len())
        .filter(|f| !f.is_empty())
}

/// Glob match with `*` only (KQL wildcards), iterative with backtracking.
fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    LParen,
    RParen,
    Colon,
    And,
    Or,
    Not,
    /// An unquoted word; `escaped` says whether any `\` escape was used (a `*` written
    /// as `\*` is a literal star, not a wildcard).
    Word {
        text: String,
        has_wildcard: bool,
    },
    Quoted(String),
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::LParen => f.write_str("'('"),
            Kind::RParen => f.write_str("')'"),
            Kind::Colon => f.write_str("':'"),
            Kind::And => f.write_str("'and'"),
            Kind::Or => f.write_str("'or'"),
            Kind::Not => f.write_str("'not'"),
            Kind::Word { text, .. } => write!(f, "word {text:?}"),
            Kind::Quoted(s) => write!(f, "quoted value {s:?}"),
        }
    }
}

#[derive(Clone, Debug)]
struct Token {
    kind: Kind,
    offset: usize,
}

fn tokenize(text: &str) -> Result<Vec<Token>, ParseError> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'(' | b')' | b':' => {
                let kind = match c {
                    b'(' => Kind::LParen,
                    b')' => Kind::RParen,
                    _ => Kind::Colon,
                };
                tokens.push(Token {
                    kind,
                    offset: start,
                });
                i += 1;
            }
            b'<' | b'>' | b'{' | b'}' => {
                return Err(ParseError {
                    offset: start,
                    message: format!(
                        "{:?} (ranges and nested queries) is not supported",
                        c as char
                    ),
                });
            }
            b'"' => {
                let mut value = String::new();
                i += 1;
                loop {
                    let Some(&b) = bytes.get(i) else {
                        return Err(ParseError {
                            offset: start,
                            message: "unterminated quoted value".into(),
                        });
                    };
                    match b {
                        b'"' => {
                            i += 1;
                            break;
                        }
                        b'\\' => {
                            let next = next_char(text, i + 1).ok_or_else(|| ParseError {
                                offset: i,
                                message: "dangling escape".into(),
                            })?;
                            value.push(next);
                            i += 1 + next.len_utf8();
                        }
                        _ => {
                            // A char boundary: i only moves by whole chars.
                            let ch = next_char(text, i).unwrap_or('\u{FFFD}');
                            value.push(ch);
                            i += ch.len_utf8();
                        }
                    }
                }
                tokens.push(Token {
                    kind: Kind::Quoted(value),
                    offset: start,
                });
            }
            _ => {
                let mut word = String::new();
                let mut has_wildcard = false;
                while let Some(&b) = bytes.get(i) {
                    match b {
                        b' ' | b'\t' | b'\r' | b'\n' | b'(' | b')' | b':' | b'"' | b'<' | b'>'
                        | b'{' | b'}' => break,
                        b'\\' => {
                            let next = next_char(text, i + 1).ok_or_else(|| ParseError {
                                offset: i,
                                message: "dangling escape".into(),
                            })?;
                            word.push(next);
                            i += 1 + next.len_utf8();
                        }
                        b'*' => {
                            has_wildcard = true;
                            word.push('*');
                            i += 1;
                        }
                        _ => {
                            let ch = next_char(text, i).unwrap_or('\u{FFFD}');
                            word.push(ch);
                            i += ch.len_utf8();
                        }
                    }
                }
                let kind = match word.to_ascii_lowercase().as_str() {
                    "and" if !has_wildcard => Kind::And,
                    "or" if !has_wildcard => Kind::Or,
                    "not" if !has_wildcard => Kind::Not,
                    _ => Kind::Word {
                        text: word,
                        has_wildcard,
                    },
                };
                tokens.push(Token {
                    kind,
                    offset: start,
                });
            }
        }
    }
    Ok(tokens)
}

fn next_char(text: &str, at: usize) -> Option<char> {
    text.get(at..)?.chars().next()
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn peek_kind(&self) -> Option<&Kind> {
        self.peek().map(|t| &t.kind)
    }

    fn end_offset(&self) -> usize {
        self.tokens.last().map_or(0, |t| t.offset + 1)
    }

    fn error_at(&self, offset: usize, message: String) -> ParseError {
        ParseError { offset, message }
    }

    fn expect(&mut self, kind: Kind) -> Result<(), ParseError> {
        match self.peek() {
            Some(tok) if tok.kind == kind => {
                self.pos += 1;
                Ok(())
            }
            Some(tok) => {
                Err(self.error_at(tok.offset, format!("expected {kind}, found {}", tok.kind)))
            }
            None => Err(self.error_at(self.end_offset(), format!("expected {kind}, found end"))),
        }
    }

    fn or_query(&mut self) -> Result<Query, ParseError> {
        let mut parts = vec![self.and_query()?];
        while self.peek_kind() == Some(&Kind::Or) {
            self.pos += 1;
            parts.push(self.and_query()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Query::Or(parts)
        })
    }

    fn and_query(&mut self) -> Result<Query, ParseError> {
        let mut parts = vec![self.not_query()?];
        while self.peek_kind() == Some(&Kind::And) {
            self.pos += 1;
            parts.push(self.not_query()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Query::And(parts)
        })
    }

    fn not_query(&mut self) -> Result<Query, ParseError> {
        if self.peek_kind() == Some(&Kind::Not) {
            self.pos += 1;
            return Ok(Query::Not(Box::new(self.not_query()?)));
        }
        self.primary_query()
    }

    fn primary_query(&mut self) -> Result<Query, ParseError> {
        let Some(tok) = self.peek().cloned() else {
            return Err(self.error_at(self.end_offset(), "expected a clause, found end".into()));
        };
        match tok.kind {
            Kind::LParen => {
                self.pos += 1;
                let inner = self.or_query()?;
                self.expect(Kind::RParen)?;
                Ok(inner)
            }
            Kind::Word { text, has_wildcard } => {
                self.pos += 1;
                if has_wildcard {
                    return Err(self.error_at(
                        tok.offset,
                        format!("wildcard field names are not supported ({text:?})"),
                    ));
                }
                if self.peek_kind() != Some(&Kind::Colon) {
                    return Err(self.error_at(
                        tok.offset,
                        format!("free-text search {text:?} is not supported; use field:value"),
                    ));
                }
                self.pos += 1;
                let value = self.value_operand()?;
                Ok(Query::Match {
                    field: Field::parse(&text),
                    value,
                })
            }
            other => Err(self.error_at(tok.offset, format!("expected a field, found {other}"))),
        }
    }

    /// After `field:`: one value, or a parenthesised value list.
    fn value_operand(&mut self) -> Result<ValueExpr, ParseError> {
        if self.peek_kind() == Some(&Kind::LParen) {
            self.pos += 1;
            let inner = self.value_or()?;
            self.expect(Kind::RParen)?;
            return Ok(inner);
        }
        self.value_term()
    }

    fn value_or(&mut self) -> Result<ValueExpr, ParseError> {
        let mut parts = vec![self.value_and()?];
        while self.peek_kind() == Some(&Kind::Or) {
            self.pos += 1;
            parts.push(self.value_and()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            ValueExpr::Or(parts)
        })
    }

    fn value_and(&mut self) -> Result<ValueExpr, ParseError> {
        let mut parts = vec![self.value_not()?];
        while self.peek_kind() == Some(&Kind::And) {
            self.pos += 1;
            parts.push(self.value_not()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            ValueExpr::And(parts)
        })
    }

    fn value_not(&mut self) -> Result<ValueExpr, ParseError> {
        if self.peek_kind() == Some(&Kind::Not) {
            self.pos += 1;
            return Ok(ValueExpr::Not(Box::new(self.value_not()?)));
        }
        self.value_operand()
    }

    fn value_term(&mut self) -> Result<ValueExpr, ParseError> {
        let Some(tok) = self.peek().cloned() else {
            return Err(self.error_at(self.end_offset(), "expected a value, found end".into()));
        };
        self.pos += 1;
        let pattern = match tok.kind {
            Kind::Quoted(s) => Pattern::Exact(s),
            Kind::Word {
                text,
                has_wildcard: false,
            } => Pattern::Exact(text),
            Kind::Word {
                text,
                has_wildcard: true,
            } if text.bytes().all(|b| b == b'*') => Pattern::Exists,
            Kind::Word {
                text,
                has_wildcard: true,
            } => Pattern::Wildcard(text),
            other => {
                return Err(self.error_at(tok.offset, format!("expected a value, found {other}")));
            }
        };
        Ok(ValueExpr::Term(pattern))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A record as a map from field name to values.
    struct Fake(HashMap<String, Vec<String>>);

    impl Fake {
        fn new(pairs: &[(&str, &str)]) -> Fake {
            let mut map: HashMap<String, Vec<String>> = HashMap::new();
            for (k, v) in pairs {
                map.entry(Field::parse(k).name())
                    .or_default()
                    .push(v.to_string());
            }
            Fake(map)
        }
    }

    impl FieldSource for Fake {
        fn any_value(&self, field: &Field, pred: &mut dyn FnMut(&str) -> bool) -> bool {
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
                field: Field::parse("event.action"),
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

    #[test]
    fn wildcard_matcher_backtracks() {
        assert!(wildcard_match(b"*a*b", b"xxaxxab"));
        assert!(wildcard_match(b"a**", b"a"));
        assert!(!wildcard_match(b"*ab", b"aba"));
        assert!(wildcard_match(b"*", b""));
    }

    #[test]
    fn syntax_errors_name_the_offset() {
        let e = Query::parse("a:x and (b:y").unwrap_err();
        assert!(e.message.contains("expected ')'"), "{e}");
        let e = Query::parse("a > 3").unwrap_err();
        assert_eq!(e.offset, 2);
        assert!(Query::parse("a:\"open").is_err());
        assert!(Query::parse("justtext").is_err());
        assert!(Query::parse("a:x b:y").is_err());
        assert!(Query::parse("").is_err());
        assert!(Query::parse("a:").is_err());
    }
}
