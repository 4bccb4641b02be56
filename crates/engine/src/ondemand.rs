//! On-demand reading of a raw audit record: a rule is evaluated against the fields it
//! reads, taken from the line's bytes, without building a parse tree.
//!
//! Place in the flow: `scan` hands each candidate line here before parsing it. One pass
//! over the line checks that it is JSON the full parse would read the same way, and
//! notes where each top-level value lies; the raw record mapping of `record`
//! (`RawView`) then reads the fields a query asks for from those spans, descending
//! into a value only when a field needs it. A record that matches no selection is done
//! with here; one that matches is parsed in full for its evidence, so sinks only ever
//! see the full parse.
//!
//! It answers only for what it can vouch for, and says so by giving no view; the line is
//! then parsed in full, which decides everything as before (malformed or not, its shape,
//! its fields). It vouches for a line only when the line is valid UTF-8 and, in every
//! token, a strict subset of the JSON the full parse accepts: a top-level object whose
//! keys and strings hold no escape (`\`) and no control character, numbers of at most 18
//! digits without exponent, nesting at most [`MAX_DEPTH`] deep, and whose keys make it a
//! raw record (`Operation`) with no wrapper or ECS key (`_source`, `o365audit`,
//! `AuditData`, `event`, `event.*`). So a line it evaluates is one the full parse reads
//! without error into the same values: malformed counts and samples cannot differ.
//!
//! Values are read as the full parse gives them: a repeated key reads as its last value,
//! as there, and a number is its keyword text (`record::float_text`).

use std::borrow::Cow;

use crate::field::{Field, Fields};
use crate::record::{Json, RawKeys, RawView, float_text};

/// How deeply values may nest for the line to be read here.
pub const MAX_DEPTH: usize = 64;

/// One top-level entry of a line: the byte ranges of its key (without quotes) and of its
/// value.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Entry {
    key: (u32, u32),
    value: (u32, u32),
}

/// The top-level keys that make a line something other than a plain raw record.
fn is_wrapper_key(key: &[u8]) -> bool {
    matches!(key, b"_source" | b"o365audit" | b"AuditData" | b"event") || key.starts_with(b"event.")
}

/// A raw record read on demand: answers fields as the full parse's record would.
pub(crate) struct RawLine<'a, 'i> {
    root: Lazy<'a, 'i>,
    keys: RawKeys<Lazy<'a, 'i>>,
}

impl<'a, 'i> RawLine<'a, 'i> {
    /// Reads `line` (already trimmed) if it can vouch for it; `entries` is a reusable
    /// buffer. `None`: the line must be parsed in full.
    pub(crate) fn read(line: &'i [u8], entries: &'a mut Vec<Entry>) -> Option<RawLine<'a, 'i>> {
        if line.len() > u32::MAX as usize || memchr::memchr(b'\\', line).is_some() {
            return None;
        }
        let text = std::str::from_utf8(line).ok()?;
        entries.clear();
        let mut p = Scanner { b: line, at: 0 };
        p.top_object(entries)?;
        let mut keys = RawKeys::default();
        for e in entries.iter() {
            let key = &text[e.key.0 as usize..e.key.1 as usize];
            if is_wrapper_key(key.as_bytes()) {
                return None;
            }
            if let Some(slot) = keys.slot(key) {
                // The last of a repeated key wins, as in the full parse's mapping.
                *slot = Some(Lazy::Value(&text[e.value.0 as usize..e.value.1 as usize]));
            }
        }
        if !keys.has_operation() {
            return None;
        }
        Some(RawLine {
            root: Lazy::Root { text, entries },
            keys,
        })
    }
}

impl Fields<Field> for RawLine<'_, '_> {
    fn any_value(&self, field: &Field, pred: &mut dyn FnMut(&str) -> bool) -> bool {
        RawView {
            root: self.root,
            keys: &self.keys,
        }
        .visit(field, &mut |v| pred(&v))
    }
}

/// A value of a line read on demand: the line's top-level object (its entries found by
/// the scan), or the text of a value inside it (validated, without escapes).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Lazy<'a, 'i> {
    /// The top-level object.
    Root {
        /// The whole line.
        text: &'i str,
        /// Its entries, in order.
        entries: &'a [Entry],
    },
    /// A value's exact text.
    Value(&'i str),
}

impl<'i> Json<'i> for Lazy<'_, 'i> {
    fn string(self) -> Option<&'i str> {
        match self {
            Lazy::Value(t) if t.starts_with('"') => Some(&t[1..t.len() - 1]),
            _ => None,
        }
    }

    fn boolean(self) -> Option<bool> {
        match self {
            Lazy::Value("true") => Some(true),
            Lazy::Value("false") => Some(false),
            _ => None,
        }
    }

    fn is_null(self) -> bool {
        matches!(self, Lazy::Value("null"))
    }

    fn is_object(self) -> bool {
        match self {
            Lazy::Root { .. } => true,
            Lazy::Value(t) => t.starts_with('{'),
        }
    }

    fn number(self) -> Option<Cow<'i, str>> {
        let Lazy::Value(t) = self else { return None };
        if !t.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
            return None;
        }
        // The scan let through only `-?(0|[1-9][0-9]*)(\.[0-9]+)?` of at most 18 digits.
        if t.contains('.') {
            return t.parse::<f64>().ok().map(|n| Cow::Owned(float_text(n)));
        }
        Some(if t == "-0" {
            Cow::Borrowed("0")
        } else {
            Cow::Borrowed(t)
        })
    }

    fn get(self, key: &str) -> Option<Self> {
        // The last entry named `key`, as the full parse reads it.
        let mut found = None;
        self.any_entry(&mut |k, v| {
            if k == key {
                found = Some(v);
            }
            false
        });
        found
    }

    fn any_entry(self, f: &mut dyn FnMut(&'i str, Self) -> bool) -> Option<bool> {
        match self {
            Lazy::Root { text, entries } => Some(entries.iter().any(|e| {
                let key = &text[e.key.0 as usize..e.key.1 as usize];
                f(
                    key,
                    Lazy::Value(&text[e.value.0 as usize..e.value.1 as usize]),
                )
            })),
            Lazy::Value(t) if t.starts_with('{') => {
                let mut at = 1;
                loop {
                    at = skip_space(t, at);
                    if t.as_bytes()[at] != b'"' {
                        return Some(false); // `}`
                    }
                    let end = at + 1 + memchr::memchr(b'"', &t.as_bytes()[at + 1..])?;
                    let key = &t[at + 1..end];
                    let start = skip_space(t, end + 1) + 1; // past `:`
                    let start = skip_space(t, start);
                    let stop = value_end(t, start);
                    if f(key, Lazy::Value(&t[start..stop])) {
                        return Some(true);
                    }
                    at = skip_space(t, stop) + 1; // past `,` or `}`
                    if t.as_bytes()[at - 1] == b'}' {
                        return Some(false);
                    }
                }
            }
            Lazy::Value(_) => None,
        }
    }

    fn any_element(self, f: &mut dyn FnMut(Self) -> bool) -> Option<bool> {
        let Lazy::Value(t) = self else { return None };
        if !t.starts_with('[') {
            return None;
        }
        let mut at = skip_space(t, 1);
        if t.as_bytes()[at] == b']' {
            return Some(false);
        }
        loop {
            let stop = value_end(t, at);
            if f(Lazy::Value(&t[at..stop])) {
                return Some(true);
            }
            at = skip_space(t, stop) + 1; // past `,` or `]`
            if t.as_bytes()[at - 1] == b']' {
                return Some(false);
            }
            at = skip_space(t, at);
        }
    }
}

/// The first position at or after `at` that is not JSON whitespace.
fn skip_space(t: &str, mut at: usize) -> usize {
    let b = t.as_bytes();
    while at < b.len() && matches!(b[at], b' ' | b'\t' | b'\n' | b'\r') {
        at += 1;
    }
    at
}

/// Where the (validated, escape-free) value starting at `at` ends.
fn value_end(t: &str, at: usize) -> usize {
    let b = t.as_bytes();
    match b[at] {
        b'"' => memchr::memchr(b'"', &b[at + 1..]).map_or(b.len(), |i| at + 2 + i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = at;
            while i < b.len() {
                match b[i] {
                    b'"' => {
                        i += 1 + memchr::memchr(b'"', &b[i + 1..]).unwrap_or(b.len() - i - 1);
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            b.len()
        }
        _ => {
            let mut i = at;
            while i < b.len() && !matches!(b[i], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            {
                i += 1;
            }
            i
        }
    }
}

/// The validating pass over a line: every method returns `None` for anything outside
/// the subset this module vouches for.
struct Scanner<'b> {
    b: &'b [u8],
    at: usize,
}

impl Scanner<'_> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.at).copied()
    }

    #[inline]
    fn space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    #[inline]
    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek() == Some(byte)).then(|| self.at += 1)
    }

    /// The whole line: one object and nothing after it; its entries noted.
    fn top_object(&mut self, entries: &mut Vec<Entry>) -> Option<()> {
        self.space();
        self.expect(b'{')?;
        self.space();
        if self.peek() == Some(b'}') {
            self.at += 1;
        } else {
            loop {
                let key = self.string()?;
                self.space();
                self.expect(b':')?;
                self.space();
                let start = self.at;
                self.value(1)?;
                entries.push(Entry {
                    key: (key.0 as u32 + 1, key.1 as u32 - 1),
                    value: (start as u32, self.at as u32),
                });
                self.space();
                match self.peek()? {
                    b',' => {
                        self.at += 1;
                        self.space();
                    }
                    b'}' => {
                        self.at += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        self.space();
        (self.at == self.b.len()).then_some(())
    }

    /// A string without escapes or control characters: its range with the quotes.
    #[inline]
    fn string(&mut self) -> Option<(usize, usize)> {
        let start = self.at;
        self.expect(b'"')?;
        let rest = &self.b[self.at..];
        let end = memchr::memchr(b'"', rest)?;
        // No backslash is in the line; control characters are left to the full parse.
        if rest[..end].iter().any(|&c| c < 0x20) {
            return None;
        }
        self.at += end + 1;
        Some((start, self.at))
    }

    fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                self.at += 1;
                self.space();
                if self.peek() == Some(b'}') {
                    self.at += 1;
                    return Some(());
                }
                loop {
                    self.string()?;
                    self.space();
                    self.expect(b':')?;
                    self.space();
                    self.value(depth + 1)?;
                    self.space();
                    match self.peek()? {
                        b',' => {
                            self.at += 1;
                            self.space();
                        }
                        b'}' => {
                            self.at += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b'[' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                self.at += 1;
                self.space();
                if self.peek() == Some(b']') {
                    self.at += 1;
                    return Some(());
                }
                loop {
                    self.value(depth + 1)?;
                    self.space();
                    match self.peek()? {
                        b',' => {
                            self.at += 1;
                            self.space();
                        }
                        b']' => {
                            self.at += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b't' => self.word(b"true"),
            b'f' => self.word(b"false"),
            b'n' => self.word(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn word(&mut self, word: &[u8]) -> Option<()> {
        self.b[self.at..]
            .starts_with(word)
            .then(|| self.at += word.len())
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?`, at most 18 digits; an exponent, or more digits
    /// (whose range the full parse checks), is left to the full parse.
    fn number(&mut self) -> Option<()> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        let int = self.digits();
        if int == 0 || (int > 1 && self.b[self.at - int] == b'0') {
            return None;
        }
        let mut count = int;
        if self.peek() == Some(b'.') {
            self.at += 1;
            let frac = self.digits();
            if frac == 0 {
                return None;
            }
            count += frac;
        }
        if count > 18 || matches!(self.peek(), Some(b'e' | b'E' | b'0'..=b'9')) {
            return None;
        }
        debug_assert!(self.at > start);
        Some(())
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
        self.at - start
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Record, Shape};
    use proptest::prelude::*;
    use std::path::Path;

    /// The published rules, when the shared corpus is there.
    fn corpus_rules() -> Vec<crate::rule::Rule> {
        let dir =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/elastic-rules");
        if !dir.is_dir() {
            eprintln!("skipped the corpus rules: {} is absent", dir.display());
            return Vec::new();
        }
        crate::rule::load::load(&[dir])
            .expect("the corpus rules load")
            .rules
    }

    /// Every field the mapping knows, the fields of the published rules, and paths into
    /// the values the hostile records below hold.
    fn fields() -> Vec<Field> {
        let mut names: Vec<String> = [
            "event.dataset",
            "data_stream.dataset",
            "event.provider",
            "event.action",
            "event.outcome",
            "user.id",
            "@timestamp",
            "event.id",
            "organization.id",
            "source.ip",
            "event.code",
            "event.category",
            "user.email",
            "user.name",
            "user.domain",
            "user_agent.original",
            "rule.name",
            "host.name",
            "o365.audit.Parameters.Identity",
            "o365.audit.Parameters.AuditBypassEnabled",
            "o365.audit.Parameters._raw",
            "o365.audit.ExtendedProperties.UserAgent",
            "o365.audit.ModifiedProperties.Role_DisplayName.NewValue",
            "o365.audit.ModifiedProperties.Role_DisplayName.OldValue",
            "o365.audit.ErrorNumber",
            "o365.audit.RecordType",
            "o365.audit.UserType",
            "o365.audit.ObjectId",
            "o365.audit.Members",
            "o365.audit.PolicyDetails.Rules.RuleName",
            "o365.audit.Nested.a.b",
            "o365.audit.Nested.a",
            "o365.audit.a.b",
            "o365.audit.Num",
            "o365.audit.Flag",
            "o365.audit.Target.ID",
            "o365.audit.Dup",
            "o365.audit.Name",
            "o365.audit.Operation",
            "o365.audit.Workload",
            "o365.audit.ResultStatus",
            "o365.audit.OrganizationName",
            "o365.audit.ClientInfoString",
            "o365.audit.UserAgent",
            "o365.audit.Parameters",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for rule in corpus_rules() {
            names.extend(rule.query.fields().into_iter().map(Field::name));
        }
        names.sort();
        names.dedup();
        names.iter().map(|n| Field::parse(n)).collect()
    }

    /// Every value of `field`, in order.
    fn values(source: &dyn Fields<Field>, field: &Field) -> Vec<String> {
        let mut out = Vec::new();
        source.any_value(field, &mut |v| {
            out.push(v.to_string());
            false
        });
        out
    }

    /// Checks one line: when it is read on demand, the full parse reads it without error
    /// as a plain raw record, and every field has the same values both ways. Returns
    /// whether it was read on demand.
    fn same_both_ways(line: &str, fields: &[Field]) -> bool {
        let line = line.as_bytes().trim_ascii();
        let mut entries = Vec::new();
        let Some(lazy) = RawLine::read(line, &mut entries) else {
            return false;
        };
        let mut bytes = line.to_vec();
        let tape = simd_json::to_tape(&mut bytes).unwrap_or_else(|e| {
            panic!(
                "read on demand, yet not JSON ({e}): {}",
                String::from_utf8_lossy(line)
            )
        });
        let record = Record::new(tape.as_value()).expect("an object");
        assert!(
            record.shape() == Shape::Raw && record.is_recognised() && record.embedded().is_none(),
            "{}",
            String::from_utf8_lossy(line)
        );
        for field in fields {
            assert_eq!(
                values(&lazy, field),
                values(&record, field),
                "{} of {}",
                field.name(),
                String::from_utf8_lossy(line)
            );
        }
        true
    }

    #[test]
    fn the_rule_pack_records_read_the_same_both_ways() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/rule_pack/records.jsonl");
        let text = std::fs::read_to_string(path).expect("the rule pack's records");
        let fields = fields();
        let read = text.lines().filter(|l| same_both_ways(l, &fields)).count();
        // Most are plain raw records; the on-demand path must actually take them.
        assert!(read * 2 > text.lines().count(), "{read}");
    }

    #[test]
    fn what_it_cannot_vouch_for_is_left_to_the_full_parse() {
        let fields = fields();
        for line in [
            // Escapes anywhere, escaped keys.
            r#"{"Operation":"X","UserId":"NT AUTHORITY\\SYSTEM"}"#,
            r#"{"Operation":"X","User\u0049d":"u"}"#,
            r#"{"Operation":"X","Other":"caf\u00e9"}"#,
            // Wrappers and ECS documents.
            r#"{"Operation":"X","AuditData":"{}"}"#,
            r#"{"_source":{"Operation":"X"}}"#,
            r#"{"o365audit":{"Operation":"X"}}"#,
            r#"{"Operation":"X","event":{"action":"Y"}}"#,
            r#"{"Operation":"X","event.action":"Y"}"#,
            // No record shape.
            r#"{"Workload":"Exchange"}"#,
            // Numbers the full parse range-checks, control characters, bad JSON.
            r#"{"Operation":"X","N":1e400}"#,
            r#"{"Operation":"X","N":1E2}"#,
            r#"{"Operation":"X","N":12345678901234567890}"#,
            "{\"Operation\":\"X\",\"N\":\"a\tb\"}",
            r#"{"Operation":"X","N":01}"#,
            r#"{"Operation":"X","N":1.}"#,
            r#"{"Operation":"X","N":-}"#,
            r#"{"Operation":"X","N":tru}"#,
            r#"{"Operation":"X",}"#,
            r#"{"Operation":"X"} x"#,
            r#"{"Operation":"X""#,
            r#"["Operation"]"#,
            "{\"Operation\":\"X\",\"N\":\"\u{0}\"}",
        ] {
            let mut entries = Vec::new();
            assert!(
                RawLine::read(line.as_bytes(), &mut entries).is_none(),
                "{line}"
            );
            assert!(!same_both_ways(line, &fields));
        }
        let deep = format!(
            r#"{{"Operation":"X","N":{}1{}}}"#,
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        );
        assert!(!same_both_ways(&deep, &fields));
        let invalid_utf8 = b"{\"Operation\":\"X\",\"N\":\"\xff\"}";
        assert!(RawLine::read(invalid_utf8, &mut Vec::new()).is_none());
    }

    #[test]
    fn numbers_are_their_keyword_text() {
        let fields = [Field::parse("o365.audit.N")];
        for (number, text) in [
            ("20001", "20001"),
            ("-5", "-5"),
            ("-0", "0"),
            ("0", "0"),
            ("20001.0", "20001.0"),
            ("1.50", "1.5"),
            ("-0.0", "-0.0"),
            ("123456789012345678", "123456789012345678"),
            ("0.1", "0.1"),
        ] {
            let line = format!(r#"{{"Operation":"X","N":{number}}}"#);
            assert!(same_both_ways(&line, &fields), "{line}");
            let mut entries = Vec::new();
            let lazy = RawLine::read(line.as_bytes(), &mut entries).unwrap();
            assert_eq!(values(&lazy, &fields[0]), vec![text.to_string()], "{line}");
        }
        // The full parse gives a number with an exponent the same kind of text.
        let mut bytes = br#"{"Operation":"X","N":2.0001e4}"#.to_vec();
        let tape = simd_json::to_tape(&mut bytes).unwrap();
        let record = Record::new(tape.as_value()).unwrap();
        assert_eq!(values(&record, &fields[0]), vec!["20001.0".to_string()]);
    }

    /// A JSON value from a pool of the shapes raw records hold, and the hostile ones.
    fn value() -> impl Strategy<Value = String> {
        let hostile = prop::sample::select(vec![
            "\"NT AUTHORITY\\\\SYSTEM\"",
            "\"\\u0041\"",
            "\"a\\\"b\"",
            "1e3",
            "99999999999999999999",
        ])
        .prop_map(str::to_string);
        let plain = prop::sample::select(vec![
            "\"Exchange\"",
            "\"\"",
            "\"café ünï 😀\"",
            "\"Succeeded\"",
            "\"Failed\"",
            "\"[10.1.2.3]:443\"",
            "\"u@contoso.com\"",
            "\"AzureActiveDirectoryStsLogon\"",
            "\"UserLoggedIn\"",
            "\"Add user.\"",
            "\"2024-03-05T10:11:12\"",
            "true",
            "false",
            "null",
        ])
        .prop_map(str::to_string);
        let leaf = prop_oneof![
            1 => hostile,
            14 => plain,
            4 => (-100_000i64..100_000).prop_map(|n| n.to_string()),
            2 => (0u32..100_000, 0u32..1000).prop_map(|(a, b)| format!("{a}.{b}")),
            4 => prop::sample::select(vec![1u16, 8, 15, 25, 40, 11, 200]).prop_map(|n| n.to_string()),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec((key(), inner.clone()), 0..4).prop_map(|v| {
                    let items: Vec<String> =
                        v.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                    format!("{{{}}}", items.join(","))
                }),
                (
                    prop::sample::select(vec![
                        "Identity",
                        "AuditBypassEnabled",
                        "UserAgent",
                        "Role.DisplayName"
                    ]),
                    inner.clone()
                )
                    .prop_map(|(n, v)| format!("[{{\"Name\":\"{n}\",\"Value\":{v}}}]")),
                (inner.clone(), inner).prop_map(|(a, b)| format!(
                    "[{{\"Name\":\"Role DisplayName\",\"NewValue\":{a},\"OldValue\":{b}}}]"
                )),
            ]
        })
    }

    /// A key from the mapping's own and others, now and then a wrapper's.
    fn key() -> impl Strategy<Value = String> {
        let plain = prop::sample::select(TOP_KEYS.iter().copied().chain([""]).collect::<Vec<_>>());
        let wrapper = prop::sample::select(vec![
            "event",
            "event.action",
            "AuditData",
            "_source",
            "o365audit",
        ]);
        prop_oneof![30 => plain, 1 => wrapper].prop_map(str::to_string)
    }

    /// JSON whitespace, mostly none.
    fn space() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["", "", "", " ", "\t", "\r", " \r\t "])
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Records of any keys, values, duplicates and whitespace, with or without a
        /// damaged byte: whatever is read on demand reads the same as the full parse,
        /// and is never a line the full parse refuses.
        #[test]
        fn on_demand_reads_what_the_full_parse_reads(
            operation in prop::sample::select(vec!["Set-Mailbox", "UserLoggedIn", "Add user.", "MemberAdded"]),
            entries in prop::collection::vec((key(), value(), space(), space()), 0..14),
            damage in prop::option::weighted(0.2, (any::<prop::sample::Index>(), any::<u8>())),
        ) {
            let mut line = format!("{{\"Operation\":\"{operation}\"");
            for (k, v, s1, s2) in &entries {
                line.push_str(&format!(",{s1}\"{k}\"{s2}:{s1}{v}{s2}"));
            }
            line.push('}');
            let mut bytes = line.into_bytes();
            if let Some((at, byte)) = damage {
                let at = at.index(bytes.len());
                bytes[at] = byte;
            }
            if let Ok(text) = std::str::from_utf8(&bytes) {
                // About half the lines are read on demand (measured when written).
                same_both_ways(text, &fields_once());
            } else {
                prop_assert!(RawLine::read(&bytes, &mut Vec::new()).is_none());
            }
        }
    }

    /// The top-level keys [`key`] draws besides the wrappers (and the empty key), read as
    /// `o365.audit.*` paths.
    const TOP_KEYS: [&str; 33] = [
        "Operation",
        "Workload",
        "ResultStatus",
        "UserId",
        "CreationTime",
        "Id",
        "OrganizationId",
        "ClientIPAddress",
        "ClientIP",
        "ActorIpAddress",
        "Parameters",
        "ObjectId",
        "RecordType",
        "UserType",
        "UserAgent",
        "ExtendedProperties",
        "ModifiedProperties",
        "OrganizationName",
        "ClientInfoString",
        "Name",
        "PolicyName",
        "PolicyDetails",
        "ErrorNumber",
        "Num",
        "Flag",
        "Nested",
        "a",
        "a.b",
        "Nested.a",
        "Target",
        "Dup",
        "Members",
        "CreationDate",
    ];

    /// `event.code` and `event.action` of every record type number (and numbers around
    /// them, negative, too large, fractional, as text): the full parse looks an integer
    /// up by number and reads the type only for an operation renamed for some type; both
    /// give what naming the number's text gives, and the on-demand reading agrees.
    #[test]
    fn record_types_and_renamed_actions_read_as_their_text_names_them() {
        let mut numbers: Vec<String> = (-3..=300).map(|n: i64| n.to_string()).collect();
        numbers.extend(
            ["65535", "65536", "70000", "-65536", "15.0", "1e1", "8e0"].map(str::to_string),
        );
        numbers.extend(["\"15\"", "\" 8 \"", "\"AzureActiveDirectory\""].map(str::to_string));
        let code = Field::parse("event.code");
        let action = Field::parse("event.action");
        let mut lazily = 0;
        for rt in &numbers {
            for (_, op, _) in crate::field::RENAMED_ACTIONS
                .iter()
                .chain(&[("", "Set-Mailbox", "")])
            {
                let line = format!("{{\"Operation\":\"{op}\",\"RecordType\":{rt}}}");
                let mut bytes = line.clone().into_bytes();
                let tape = simd_json::to_tape(&mut bytes).expect("JSON");
                let record = Record::new(tape.as_value()).expect("an object");
                let text = crate::record::walked(record.root_for_tests(), "RecordType");
                let name = text.first().and_then(|t| crate::field::record_type_name(t));
                assert_eq!(
                    values(&record, &code),
                    Vec::from_iter(name.map(str::to_string)),
                    "{line}"
                );
                let renamed = crate::field::RENAMED_ACTIONS
                    .iter()
                    .find(|(c, raw, _)| Some(*c) == name && raw == op)
                    .map_or(*op, |(_, _, ecs)| *ecs);
                assert_eq!(
                    values(&record, &action),
                    vec![renamed.to_string()],
                    "{line}"
                );
                let mut entries = Vec::new();
                // What it cannot vouch for (a number it leaves to the full parse) aside.
                if let Some(lazy) = RawLine::read(line.as_bytes(), &mut entries) {
                    assert_eq!(values(&lazy, &code), values(&record, &code), "{line}");
                    assert_eq!(values(&lazy, &action), values(&record, &action), "{line}");
                    lazily += 1;
                }
            }
        }
        assert!(lazily > 300 * 7, "{lazily} read on demand");
    }

    #[test]
    fn held_keys_are_the_keys_slots_keep() {
        for key in TOP_KEYS {
            let mut keys: RawKeys<u8> = RawKeys::default();
            let held = keys.slot(key).map(|slot| *slot = Some(7)).is_some();
            assert_eq!(keys.held(key), held.then_some(Some(7)), "{key}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// A top-level key read from the keys found once per record reads as the walk
        /// of the record's object did (repeated keys, arrays, objects, numbers), in the
        /// full parse and on demand.
        #[test]
        fn a_held_key_reads_as_the_walk_of_the_object(
            operation in prop::sample::select(vec!["Set-Mailbox", "UserLoggedIn", "Add user."]),
            entries in prop::collection::vec((key(), value(), space(), space()), 0..14),
        ) {
            let mut line = format!("{{\"Operation\":\"{operation}\"");
            for (k, v, s1, s2) in &entries {
                line.push_str(&format!(",{s1}\"{k}\"{s2}:{s1}{v}{s2}"));
            }
            line.push('}');
            let mut bytes = line.clone().into_bytes();
            let Ok(tape) = simd_json::to_tape(&mut bytes) else {
                return Ok(());
            };
            let record = Record::new(tape.as_value()).expect("an object");
            let mut entries = Vec::new();
            let lazy = RawLine::read(line.as_bytes(), &mut entries);
            // `ObjectId`, `RecordType` and `UserType` keep their own reading (one level
            // of array), as before keys were held.
            let walks = TOP_KEYS
                .iter()
                .filter(|k| !matches!(**k, "ObjectId" | "RecordType" | "UserType"));
            for &key in walks {
                let field = Field::parse(&format!("o365.audit.{key}"));
                if record.shape() == Shape::Raw {
                    let walked = crate::record::walked(record.root_for_tests(), key);
                    prop_assert_eq!(&values(&record, &field), &walked, "{} of {}", key, line);
                }
                if let Some(lazy) = &lazy {
                    let walked = crate::record::walked(lazy.root, key);
                    prop_assert_eq!(&values(lazy, &field), &walked, "{} of {}", key, line);
                }
            }
        }
    }

    /// [`fields`], computed once for the property test.
    fn fields_once() -> Vec<Field> {
        static FIELDS: std::sync::OnceLock<Vec<Field>> = std::sync::OnceLock::new();
        FIELDS.get_or_init(fields).clone()
    }
}
