//! Sigma rules: YAML documents read into metadata and a detection, compiled over any
//! [`Field`] type.
//!
//! Place in the flow: beside [`kql`](crate::kql) and [`eql`](crate::eql). [`parse`] reads
//! a file's text (one rule per YAML document, several documents per file) into
//! [`Document`]s; the caller resolves each Sigma field name into its own fields (a
//! field mapping, like a pySigma processing pipeline) and [`Document::query`] compiles
//! the detection into a [`Query`] that evaluates against [`Fields`] and gives the literal
//! strings a matching record must hold. This module knows no audit record and no file;
//! it never reads input the rule does not name.
//!
//! The subset of the Sigma specification (v2) that compiles: named selections (a map's
//! fields ANDed, a list's items ORed, a value list ORed), keyword (field-less)
//! selections, `null`, the modifiers `contains`, `startswith`, `endswith`, `all`, `re`
//! (with `i`, `m`, `s`), `cidr`, `exists`, `base64`, `base64offset`, `cased`, `gt`,
//! `gte`, `lt`, `lte`, and conditions with `and`, `or`, `not`, parentheses, `1 of`,
//! `any of`, `all of` (a pattern or `them`). Strings match whatever their ASCII case
//! unless `cased` (regular expressions are case-sensitive unless `i`), with the `*` and
//! `?` wildcards and `\` escapes of the specification. A correlation rule's section is
//! read into a [`Correlation`] for the caller to replay. Anything else (`windash`,
//! `wide`/`utf16*`, `fieldref`, `expand`, rule collections, the deprecated aggregation
//! conditions) is refused with the reason: [`Unsupported`].

use std::fmt;

use regex::{Regex, RegexBuilder};
use yaml_rust2::Yaml;

use crate::field::{Field, Fields, Spelling};
use crate::kql::{IpBlock, parse_ip, parse_ip_block, parse_number, safe_fragment, selectivity};
use crate::literal::{Branches, and_branches, or_branches};

/// A file that is not YAML at all (or uses YAML aliases, which no Sigma rule needs and
/// which could expand without bound).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("Sigma YAML: {message}")]
pub struct ParseError {
    /// What was wrong, with the line where the parser saw it.
    pub message: String,
}

/// A document that is not a rule ualhunt runs, with the reason (a feature outside the
/// supported subset, or a rule that is malformed).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unsupported(pub String);

/// Where a rule's records come from (Sigma `logsource`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogSource {
    /// `product` (`m365`, `azure`).
    pub product: Option<String>,
    /// `service` (`audit`, `exchange`, `threat_management`, `m365`, …).
    pub service: Option<String>,
    /// `category`.
    pub category: Option<String>,
}

/// A rule document's metadata, as published.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// `title`.
    pub title: String,
    /// `id` (a UUID), empty when absent.
    pub id: String,
    /// `name` (a rule a correlation refers to by name).
    pub name: Option<String>,
    /// `author`: the Detection Rule License asks that reports of matches keep it.
    pub author: Option<String>,
    /// `status` (`stable`, `test`, `experimental`, …).
    pub status: Option<String>,
    /// `description`.
    pub description: String,
    /// `level` (`informational`, `low`, `medium`, `high`, `critical`).
    pub level: Option<String>,
    /// `tags` (`attack.t1562.001`, `attack.defense-evasion`, …).
    pub tags: Vec<String>,
    /// `falsepositives`.
    pub falsepositives: Vec<String>,
    /// `references`.
    pub references: Vec<String>,
    /// `date`.
    pub date: Option<String>,
    /// `logsource`.
    pub logsource: LogSource,
}

/// A correlation rule's `correlation` section: how the matches of other rules are
/// counted (the engine replays it over the archive).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Correlation {
    /// `type`: `event_count`, `value_count`, `temporal`, `temporal_ordered`.
    pub kind: String,
    /// `rules`: the names or ids of the rules whose matches count.
    pub rules: Vec<String>,
    /// `group-by`: the Sigma fields whose values make a group.
    pub group_by: Vec<String>,
    /// `timespan` (`5m`, `1h`, `1d`, …), as written.
    pub timespan: String,
    /// `condition`: operator (`gte`, `gt`, …) to value, in order; `field` too for
    /// `value_count`.
    pub condition: Vec<(String, String)>,
    /// `generate`: whether the referenced rules also report their own matches.
    pub generate: bool,
    /// `aliases`: a name `group-by` may use, to the field it names in each rule's
    /// events (rule name or id to Sigma field), in order.
    pub aliases: Vec<(String, Vec<(String, String)>)>,
}

/// One YAML document of a rule file.
#[derive(Clone, Debug)]
pub struct Document {
    /// Its metadata.
    pub meta: Meta,
    /// Its `correlation` section, for a correlation rule.
    pub correlation: Option<Correlation>,
    /// Its YAML text, as the file has it: [`parse`] of it gives this document again.
    pub text: String,
    /// The detection, or why the document has none that compiles.
    body: Result<Yaml, Unsupported>,
}

/// Reads every YAML document of a file. A document that is not a detection rule of the
/// supported subset is still returned (with its metadata), so the caller can say why it
/// does not run; only text that is not YAML is an error.
pub fn parse(text: &str) -> Result<Vec<Document>, ParseError> {
    check_events(text)?;
    let mut out = Vec::new();
    for segment in segments(text) {
        let docs = yaml_rust2::YamlLoader::load_from_str(segment).map_err(|e| ParseError {
            message: e.to_string(),
        })?;
        let mut docs = docs.into_iter().filter(|d| !d.is_null());
        let Some(doc) = docs.next() else { continue };
        if docs.next().is_some() {
            return Err(ParseError {
                message: "documents after `...` without a `---` line: start each with `---`".into(),
            });
        }
        let mut document = Document::read(doc);
        document.text = segment.to_string();
        out.push(document);
    }
    Ok(out)
}

/// The file cut before each `---` line. YAML reads a `---` at the start of a line as a
/// document start wherever it is (a scalar's lines cannot begin with it), so each piece
/// is one document, with its own text.
fn segments(text: &str) -> Vec<&str> {
    let mut cuts = vec![0];
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let rest = line.strip_prefix("---");
        if at > 0 && rest.is_some_and(|r| r.is_empty() || r.starts_with(char::is_whitespace)) {
            cuts.push(at);
        }
        at += line.len();
    }
    cuts.push(text.len());
    cuts.windows(2).map(|w| &text[w[0]..w[1]]).collect()
}

/// Checks the whole text is YAML, refusing aliases: they are copied where they are used,
/// so a few lines of them can expand into gigabytes, and Sigma rules have none.
fn check_events(text: &str) -> Result<(), ParseError> {
    use yaml_rust2::parser::{Event, Parser};
    let mut parser = Parser::new_from_str(text);
    loop {
        match parser.next_token() {
            Ok((Event::StreamEnd, _)) => return Ok(()),
            Ok((Event::Alias(_), mark)) => {
                return Err(ParseError {
                    message: format!(
                        "line {}: a YAML alias (*name); Sigma rules use none",
                        mark.line()
                    ),
                });
            }
            Ok(_) => {}
            Err(e) => {
                return Err(ParseError {
                    message: e.to_string(),
                });
            }
        }
    }
}

/// The text of a scalar node: strings as they are, numbers and booleans as YAML wrote
/// them.
fn scalar(node: &Yaml) -> Option<String> {
    match node {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A scalar or a list of scalars, as a list.
fn strings(node: &Yaml) -> Vec<String> {
    match node {
        Yaml::Array(items) => items.iter().filter_map(scalar).collect(),
        other => scalar(other).into_iter().collect(),
    }
}

impl Document {
    fn read(doc: Yaml) -> Document {
        let text = |key: &str| scalar(&doc[key]);
        let logsource = &doc["logsource"];
        let meta = Meta {
            title: text("title").unwrap_or_default(),
            id: text("id").unwrap_or_default(),
            name: text("name"),
            author: text("author"),
            status: text("status"),
            description: text("description").unwrap_or_default(),
            level: text("level"),
            tags: strings(&doc["tags"]),
            falsepositives: strings(&doc["falsepositives"]),
            references: strings(&doc["references"]),
            date: text("date"),
            logsource: LogSource {
                product: scalar(&logsource["product"]),
                service: scalar(&logsource["service"]),
                category: scalar(&logsource["category"]),
            },
        };
        let body = Document::body(&doc);
        let c = &doc["correlation"];
        let correlation = c.is_hash().then(|| Correlation {
            kind: scalar(&c["type"]).unwrap_or_default(),
            rules: strings(&c["rules"]),
            group_by: strings(&c["group-by"]),
            timespan: scalar(&c["timespan"]).unwrap_or_default(),
            condition: c["condition"]
                .as_hash()
                .map(|h| {
                    h.iter()
                        .filter_map(|(k, v)| Some((scalar(k)?, scalar(v)?)))
                        .collect()
                })
                .unwrap_or_default(),
            generate: c["generate"].as_bool().unwrap_or(false),
            aliases: c["aliases"]
                .as_hash()
                .map(|h| {
                    h.iter()
                        .filter_map(|(alias, per_rule)| {
                            let fields = per_rule
                                .as_hash()?
                                .iter()
                                .filter_map(|(r, f)| Some((scalar(r)?, scalar(f)?)))
                                .collect();
                            Some((scalar(alias)?, fields))
                        })
                        .collect()
                })
                .unwrap_or_default(),
        });
        Document {
            meta,
            correlation,
            text: String::new(),
            body,
        }
    }

    /// The detection node, or why there is none to compile.
    fn body(doc: &Yaml) -> Result<Yaml, Unsupported> {
        let no = |why: &str| Err(Unsupported(why.to_string()));
        if !doc.is_hash() {
            return no("not a Sigma rule: the document is not a map");
        }
        if let Some(action) = scalar(&doc["action"]) {
            return Err(Unsupported(format!(
                "rule collection (action: {action}): merging documents is not supported"
            )));
        }
        if !doc["correlation"].is_badvalue() {
            let kind = scalar(&doc["correlation"]["type"]).unwrap_or_default();
            return Err(Unsupported(format!(
                "correlation rule ({kind}): no detection of its own"
            )));
        }
        if !doc["filter"].is_badvalue() {
            return no("Sigma filter document: not supported");
        }
        let detection = &doc["detection"];
        if !detection.is_hash() {
            return no("not a Sigma rule: no detection map");
        }
        if scalar(&doc["title"]).is_none() {
            return no("not a Sigma rule: no title");
        }
        Ok(detection.clone())
    }

    /// Why the document does not compile whatever the field mapping, if it does not.
    pub fn unsupported(&self) -> Option<&Unsupported> {
        self.body.as_ref().err()
    }

    /// Compiles the detection. `resolve` gives the fields a Sigma field name reads (the
    /// first of them that has a value in a record is the one tested); `keywords`, the
    /// field whose values keyword (field-less) selections search, if any.
    pub fn query<F: Field>(
        &self,
        resolve: &mut dyn FnMut(&str) -> Vec<F>,
        keywords: Option<&F>,
    ) -> Result<Query<F>, Unsupported> {
        let detection = self.body.clone()?;
        let Some(map) = detection.as_hash() else {
            return Err(Unsupported("not a Sigma rule: no detection map".into()));
        };
        let mut names = Vec::new();
        let mut condition = None;
        for (key, value) in map {
            let Some(key) = key.as_str() else {
                return Err(Unsupported("detection: a key that is not a string".into()));
            };
            match key {
                "condition" => condition = Some(value.clone()),
                "timeframe" => {
                    return Err(Unsupported(
                        "detection timeframe (an aggregation window): not supported".into(),
                    ));
                }
                name => names.push((name.to_string(), value.clone())),
            }
        }
        let mut selections = Vec::new();
        for (name, node) in &names {
            let sel = Selection::compile(node, resolve, keywords)
                .map_err(|Unsupported(why)| Unsupported(format!("selection {name}: {why}")))?;
            selections.push((name.clone(), sel));
        }
        let conditions = match condition {
            Some(Yaml::Array(items)) => items.iter().filter_map(scalar).collect(),
            Some(node) => scalar(&node).into_iter().collect::<Vec<_>>(),
            None => Vec::new(),
        };
        if conditions.is_empty() {
            return Err(Unsupported("not a Sigma rule: no condition".into()));
        }
        let mut parts = Vec::new();
        for text in &conditions {
            parts.push(parse_condition(text, &selections)?);
        }
        Ok(Query(one_or(parts, Cond::Or)))
    }
}

/// A compiled Sigma detection over fields of type `F`.
#[derive(Clone, Debug)]
pub struct Query<F>(Cond<F>);

/// A condition with its selections in place.
#[derive(Clone, Debug)]
enum Cond<F> {
    And(Vec<Cond<F>>),
    Or(Vec<Cond<F>>),
    Not(Box<Cond<F>>),
    Sel(String, Selection<F>),
}

/// A named selection.
#[derive(Clone, Debug)]
enum Selection<F> {
    /// A map: every test holds.
    AllOf(Vec<Test<F>>),
    /// A list of maps (or of keywords): one holds.
    AnyOf(Vec<Selection<F>>),
}

/// One field of a selection map with its values (or a keyword search).
#[derive(Clone, Debug)]
struct Test<F> {
    /// The name as the rule writes it (`Operation|contains`).
    shown: String,
    /// The fields it reads: the first with a value in a record is tested.
    fields: Vec<F>,
    /// The values.
    values: Vec<Matcher>,
    /// `|all`: every value must hold (else one).
    all: bool,
    /// Every value is a test of one value of the field (no `null`, no `exists`) and one
    /// is enough: the record's values are read once for all of them
    /// ([`Test::matches_by_value`]).
    by_value: bool,
}

/// One value of a test.
#[derive(Clone, Debug)]
enum Matcher {
    /// A string with wildcards, matched whole.
    Glob(Glob),
    /// `re`: a regular expression found anywhere in the value.
    Regex(Regex),
    /// `cidr`: an address in the block.
    Cidr(IpBlock),
    /// `gt`, `gte`, `lt`, `lte`: a number compared.
    Compare(Cmp, f64),
    /// `null`: the field has no value.
    Null,
    /// `exists`: the field has a value (or has none).
    Exists(bool),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmp {
    Gt,
    Gte,
    Lt,
    Lte,
}

/// A Sigma string: literal pieces and wildcards, matched against a whole value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    toks: Vec<Tok>,
    /// Compared byte for byte (`cased`); else whatever the ASCII case.
    cased: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    /// Literal text (lower-cased when the glob is not cased).
    Lit(String),
    /// `*`: any run of characters.
    Star,
    /// `?`: one character.
    One,
}

impl Glob {
    /// A Sigma string value: `*` and `?` are wildcards, `\*`, `\?` and `\\` their
    /// literal characters, any other `\` itself.
    pub fn new(value: &str, cased: bool) -> Glob {
        let mut toks = Vec::new();
        let mut lit = String::new();
        let mut chars = value.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.peek() {
                    Some(&n @ ('*' | '?' | '\\')) => {
                        lit.push(n);
                        chars.next();
                    }
                    _ => lit.push('\\'),
                },
                '*' | '?' => {
                    if !lit.is_empty() {
                        toks.push(Tok::Lit(std::mem::take(&mut lit)));
                    }
                    toks.push(if c == '*' { Tok::Star } else { Tok::One });
                }
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            toks.push(Tok::Lit(lit));
        }
        Glob::of(toks, cased)
    }

    /// A literal string (no wildcards), as `base64` makes.
    fn literal(value: &str, cased: bool) -> Glob {
        Glob::of(vec![Tok::Lit(value.to_string())], cased)
    }

    fn of(toks: Vec<Tok>, cased: bool) -> Glob {
        let toks = toks
            .into_iter()
            .map(|t| match t {
                Tok::Lit(s) if !cased => Tok::Lit(s.to_ascii_lowercase()),
                t => t,
            })
            .collect();
        Glob { toks, cased }
    }

    /// `contains`, `startswith`, `endswith`: a `*` before and/or after.
    fn wrap(mut self, before: bool, after: bool) -> Glob {
        if before && self.toks.first() != Some(&Tok::Star) {
            self.toks.insert(0, Tok::Star);
        }
        if after && self.toks.last() != Some(&Tok::Star) {
            self.toks.push(Tok::Star);
        }
        self
    }

    /// Whether the whole `text` matches.
    pub fn matches(&self, text: &str) -> bool {
        if !self.toks.contains(&Tok::One) {
            return self.matches_stars(text.as_bytes());
        }
        self.matches_chars(text)
    }

    /// A glob of literal pieces and `*` only, over bytes: the first piece is a prefix,
    /// the last a suffix, the others found leftmost in order between them (leftmost is
    /// always right for `*`-only globs). Byte comparison is sound for UTF-8: the pieces
    /// are whole characters, and only ASCII letters fold.
    fn matches_stars(&self, text: &[u8]) -> bool {
        let eq = |a: &[u8], b: &[u8]| {
            if self.cased {
                a == b
            } else {
                a.eq_ignore_ascii_case(b)
            }
        };
        let mut rest = text;
        let n = self.toks.len();
        for (i, t) in self.toks.iter().enumerate() {
            let Tok::Lit(piece) = t else { continue };
            let p = piece.as_bytes();
            let after_star = i > 0;
            let before_star = i + 1 < n;
            match (after_star, before_star) {
                (false, false) => return eq(rest, p),
                (false, true) => {
                    if rest.len() < p.len() || !eq(&rest[..p.len()], p) {
                        return false;
                    }
                    rest = &rest[p.len()..];
                }
                (true, false) => {
                    return rest.len() >= p.len() && eq(&rest[rest.len() - p.len()..], p);
                }
                // A piece is never empty (`Glob::new` keeps none).
                (true, true) => match rest.windows(p.len()).position(|w| eq(w, p)) {
                    Some(at) => rest = &rest[at + p.len()..],
                    None => return false,
                },
            }
        }
        // Ends in `*` (or is only stars): whatever is left matches; no token at all
        // (the empty string) matches only the empty value.
        n > 0 || text.is_empty()
    }

    /// Any glob, character by character.
    fn matches_chars(&self, text: &str) -> bool {
        let eq = |a: char, b: char| {
            if self.cased {
                a == b
            } else {
                a.to_ascii_lowercase() == b
            }
        };
        // Literal pieces as characters, `*` and `?` as markers: the classic greedy
        // wildcard match with one backtrack point (the last `*`), linear in practice.
        let pat: Vec<Option<Option<char>>> = self
            .toks
            .iter()
            .flat_map(|t| -> Box<dyn Iterator<Item = Option<Option<char>>>> {
                match t {
                    Tok::Lit(s) => Box::new(s.chars().map(|c| Some(Some(c)))),
                    Tok::One => Box::new(std::iter::once(Some(None))),
                    Tok::Star => Box::new(std::iter::once(None)),
                }
            })
            .collect();
        let text: Vec<char> = text.chars().collect();
        let (mut p, mut t) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match pat.get(p) {
                Some(None) => {
                    star = Some((p, t));
                    p += 1;
                }
                Some(Some(None)) => {
                    p += 1;
                    t += 1;
                }
                Some(Some(Some(c))) if eq(text[t], *c) => {
                    p += 1;
                    t += 1;
                }
                _ => match star {
                    Some((sp, st)) => {
                        p = sp + 1;
                        t = st + 1;
                        star = Some((sp, st + 1));
                    }
                    None => return false,
                },
            }
        }
        pat[p..].iter().all(Option::is_none)
    }

    /// The literal pieces, in order.
    fn pieces(&self) -> impl Iterator<Item = &str> {
        self.toks.iter().filter_map(|t| match t {
            Tok::Lit(s) => Some(s.as_str()),
            _ => None,
        })
    }

    /// The whole value when it has no wildcard.
    fn exact(&self) -> Option<&str> {
        match self.toks.as_slice() {
            [Tok::Lit(s)] => Some(s),
            _ => None,
        }
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("'")?;
        for t in &self.toks {
            match t {
                Tok::Lit(s) => {
                    for c in s.chars() {
                        if matches!(c, '*' | '?' | '\\' | '\'') {
                            f.write_str("\\")?;
                        }
                        write!(f, "{c}")?;
                    }
                }
                Tok::Star => f.write_str("*")?,
                Tok::One => f.write_str("?")?,
            }
        }
        f.write_str("'")?;
        if self.cased {
            f.write_str(" (cased)")?;
        }
        Ok(())
    }
}

/// The modifiers a field key names.
#[derive(Default)]
struct Modifiers {
    contains: bool,
    startswith: bool,
    endswith: bool,
    all: bool,
    cased: bool,
    base64: bool,
    base64offset: bool,
    re: Option<(bool, bool, bool)>,
    cidr: bool,
    exists: bool,
    cmp: Option<Cmp>,
}

impl Modifiers {
    fn parse(names: &[&str]) -> Result<Modifiers, Unsupported> {
        let mut m = Modifiers::default();
        for name in names {
            match *name {
                "contains" => m.contains = true,
                "startswith" => m.startswith = true,
                "endswith" => m.endswith = true,
                "all" => m.all = true,
                "cased" => m.cased = true,
                "base64" => m.base64 = true,
                "base64offset" => m.base64offset = true,
                "re" => m.re = Some((false, false, false)),
                "i" | "m" | "s" => {
                    let Some((i, ml, s)) = m.re.as_mut() else {
                        return Err(Unsupported(format!(
                            "modifier {name:?} without a preceding \"re\""
                        )));
                    };
                    match *name {
                        "i" => *i = true,
                        "m" => *ml = true,
                        _ => *s = true,
                    }
                }
                "cidr" => m.cidr = true,
                "exists" => m.exists = true,
                "gt" => m.cmp = Some(Cmp::Gt),
                "gte" => m.cmp = Some(Cmp::Gte),
                "lt" => m.cmp = Some(Cmp::Lt),
                "lte" => m.cmp = Some(Cmp::Lte),
                "windash" | "wide" | "utf16" | "utf16le" | "utf16be" | "fieldref" | "expand" => {
                    return Err(Unsupported(format!(
                        "modifier {name:?} is outside the supported subset"
                    )));
                }
                other => {
                    return Err(Unsupported(format!("unknown modifier {other:?}")));
                }
            }
        }
        let kinds = [
            m.contains || m.startswith || m.endswith,
            m.re.is_some(),
            m.cidr,
            m.exists,
            m.cmp.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() > 1
            || (m.contains as u8 + m.startswith as u8 + m.endswith as u8) > 1
        {
            return Err(Unsupported(format!(
                "modifiers {:?} do not combine",
                names.join("|")
            )));
        }
        if (m.base64 || m.base64offset) && (m.re.is_some() || m.cidr || m.exists || m.cmp.is_some())
        {
            return Err(Unsupported("base64 applies to string values only".into()));
        }
        Ok(m)
    }

    /// The matchers of one value.
    fn matchers(&self, value: &Yaml) -> Result<Vec<Matcher>, Unsupported> {
        if value.is_null() {
            if self.exists || self.re.is_some() || self.cidr || self.cmp.is_some() {
                return Err(Unsupported("null with a modifier".into()));
            }
            return Ok(vec![Matcher::Null]);
        }
        let Some(text) = scalar(value) else {
            return Err(Unsupported("a value that is a list or a map".into()));
        };
        if self.exists {
            return match value {
                Yaml::Boolean(b) => Ok(vec![Matcher::Exists(*b)]),
                _ => Err(Unsupported("exists takes true or false".into())),
            };
        }
        if let Some((i, m, s)) = self.re {
            let re = RegexBuilder::new(&text)
                .case_insensitive(i)
                .multi_line(m)
                .dot_matches_new_line(s)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| Unsupported(format!("regular expression {text:?}: {e}")))?;
            return Ok(vec![Matcher::Regex(re)]);
        }
        if self.cidr {
            return parse_ip_block(text.trim())
                .map(|b| vec![Matcher::Cidr(b)])
                .ok_or_else(|| Unsupported(format!("cidr: {text:?} is not an address block")));
        }
        if let Some(cmp) = self.cmp {
            return parse_number(&text)
                .map(|n| vec![Matcher::Compare(cmp, n)])
                .ok_or_else(|| Unsupported(format!("{cmp:?}: {text:?} is not a number")));
        }
        let wrap = |g: Glob| {
            g.wrap(
                self.contains || self.endswith,
                self.contains || self.startswith,
            )
        };
        if self.base64offset {
            return Ok(base64_offsets(text.as_bytes())
                .into_iter()
                .map(|v| Matcher::Glob(wrap(Glob::literal(&v, self.cased))))
                .collect());
        }
        if self.base64 {
            let encoded = base64(text.as_bytes());
            return Ok(vec![Matcher::Glob(wrap(Glob::literal(
                &encoded, self.cased,
            )))]);
        }
        Ok(vec![Matcher::Glob(wrap(Glob::new(&text, self.cased)))])
    }
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `base64offset`: the three encodings of `value` at each offset in a 3-byte group, cut
/// to the characters that do not depend on the bytes around it (as pySigma cuts them).
fn base64_offsets(value: &[u8]) -> Vec<String> {
    const START: [usize; 3] = [0, 2, 3];
    const END_CUT: [usize; 3] = [0, 3, 2];
    (0..3)
        .map(|i| {
            let mut padded = vec![b' '; i];
            padded.extend_from_slice(value);
            let enc = base64(&padded);
            let end = enc.len() - END_CUT[(value.len() + i) % 3];
            enc.get(START[i]..end).unwrap_or("").to_string()
        })
        .collect()
}

impl<F: Field> Selection<F> {
    fn compile(
        node: &Yaml,
        resolve: &mut dyn FnMut(&str) -> Vec<F>,
        keywords: Option<&F>,
    ) -> Result<Selection<F>, Unsupported> {
        match node {
            Yaml::Hash(map) => {
                let mut tests = Vec::new();
                for (key, value) in map {
                    let Some(key) = scalar(key) else {
                        return Err(Unsupported("a field name that is not a string".into()));
                    };
                    tests.push(Test::compile(&key, value, resolve, keywords)?);
                }
                Ok(Selection::AllOf(tests))
            }
            Yaml::Array(items) if items.iter().all(|i| i.is_hash()) => Ok(Selection::AnyOf(
                items
                    .iter()
                    .map(|i| Selection::compile(i, resolve, keywords))
                    .collect::<Result<_, _>>()?,
            )),
            Yaml::Array(items) if items.iter().all(|i| scalar(i).is_some()) => Ok(
                Selection::AllOf(vec![Test::compile("", node, resolve, keywords)?]),
            ),
            node if scalar(node).is_some() => Ok(Selection::AllOf(vec![Test::compile(
                "", node, resolve, keywords,
            )?])),
            _ => Err(Unsupported(
                "a selection that is neither a map, a list of maps nor keywords".into(),
            )),
        }
    }

    fn matches(&self, source: &dyn Fields<F>) -> bool {
        match self {
            Selection::AllOf(tests) => tests.iter().all(|t| t.matches(source)),
            Selection::AnyOf(items) => items.iter().any(|s| s.matches(source)),
        }
    }

    fn literals(&self, mode: Lits) -> Option<Vec<String>> {
        match self {
            Selection::AllOf(tests) => best(tests.iter().map(|t| t.literals(mode))),
            Selection::AnyOf(items) => union(items.iter().map(|s| s.literals(mode))),
        }
    }

    fn conjuncts(&self, mode: Lits) -> Vec<Vec<String>> {
        match self {
            Selection::AllOf(tests) => tests
                .iter()
                .filter_map(|t| necessary(true, |m| t.literals(m)))
                .collect(),
            other => necessary(mode.keys, |m| other.literals(m))
                .into_iter()
                .collect(),
        }
    }

    /// The selection's alternatives ([`Branches`]): a list's items each its own.
    fn branches(&self, mode: Lits) -> Branches {
        match self {
            Selection::AllOf(_) => vec![self.conjuncts(mode)],
            Selection::AnyOf(items) => or_branches(items.iter().map(|s| s.branches(mode)))
                .unwrap_or_else(|| vec![self.conjuncts(mode)]),
        }
    }

    fn fields<'a>(&'a self, out: &mut Vec<&'a F>) {
        match self {
            Selection::AllOf(tests) => tests.iter().for_each(|t| out.extend(&t.fields)),
            Selection::AnyOf(items) => items.iter().for_each(|s| s.fields(out)),
        }
    }
}

impl<F: Field> Test<F> {
    fn compile(
        key: &str,
        value: &Yaml,
        resolve: &mut dyn FnMut(&str) -> Vec<F>,
        keywords: Option<&F>,
    ) -> Result<Test<F>, Unsupported> {
        let mut parts = key.split('|');
        let name = parts.next().unwrap_or("");
        let mods: Vec<&str> = parts.collect();
        let m = Modifiers::parse(&mods)?;
        let fields = if name.is_empty() {
            match keywords {
                Some(k) => vec![k.clone()],
                None => {
                    return Err(Unsupported(
                        "keyword search: the field mapping names no field for it".into(),
                    ));
                }
            }
        } else {
            resolve(name)
        };
        if fields.is_empty() {
            return Err(Unsupported(format!(
                "field {name:?}: the field mapping maps it to nothing"
            )));
        }
        // A keyword is searched for inside the record's values.
        let m = if name.is_empty() && !(m.startswith || m.endswith || m.exists) {
            Modifiers {
                contains: true,
                ..m
            }
        } else {
            m
        };
        let mut values = Vec::new();
        match value {
            Yaml::Array(items) => {
                for item in items {
                    values.extend(m.matchers(item)?);
                }
            }
            one => values.extend(m.matchers(one)?),
        }
        if m.base64offset && m.all {
            return Err(Unsupported("base64offset with all".into()));
        }
        let by_value = !m.all && values.iter().all(Matcher::is_by_value);
        Ok(Test {
            shown: key.to_string(),
            fields,
            values,
            all: m.all,
            by_value,
        })
    }

    /// The field tested in this record: the first that has a value (the last when none
    /// has, so `null` and `exists: false` see an absent field).
    fn field<'a>(&'a self, source: &dyn Fields<F>) -> &'a F {
        match self.fields.as_slice() {
            [one] => one,
            many => many
                .iter()
                .find(|f| source.any_value(f, &mut |_| true))
                // `compile` refuses an empty field list.
                .unwrap_or(&many[many.len() - 1]),
        }
    }

    fn matches(&self, source: &dyn Fields<F>) -> bool {
        if self.by_value {
            return self.matches_by_value(source);
        }
        self.matches_simple(source)
    }

    /// [`Test::matches_simple`] reading each field's values once: the fields are tried
    /// in order, and the first with a value is the one tested (as [`Test::field`] picks
    /// it), every value of the test checked on each of its values; a field without a
    /// value lets the next be tried, and none with a value matches nothing (the value
    /// tests of an absent field all fail).
    fn matches_by_value(&self, source: &dyn Fields<F>) -> bool {
        for field in &self.fields {
            let mut seen = false;
            let found = source.any_value(field, &mut |v| {
                seen = true;
                self.values.iter().any(|m| m.holds_for(v))
            });
            if seen {
                return found;
            }
        }
        false
    }

    /// The test as the specification reads it: the field tested picked first, then
    /// each value checked against it.
    fn matches_simple(&self, source: &dyn Fields<F>) -> bool {
        let field = self.field(source);
        let holds = |m: &Matcher| m.holds(field, source);
        if self.values.is_empty() {
            return false;
        }
        if self.all {
            self.values.iter().all(holds)
        } else {
            self.values.iter().any(holds)
        }
    }

    fn literals(&self, mode: Lits) -> Option<Vec<String>> {
        let of_field = |field: &F| -> Option<Vec<String>> {
            let sets = self.values.iter().map(|m| m.literals(field, mode));
            if self.all { best(sets) } else { union(sets) }
        };
        union(self.fields.iter().map(of_field))
    }
}

impl Matcher {
    fn holds<F: Field>(&self, field: &F, source: &dyn Fields<F>) -> bool {
        match self {
            Matcher::Null => !source.any_value(field, &mut |_| true),
            Matcher::Exists(want) => source.any_value(field, &mut |_| true) == *want,
            _ => source.any_value(field, &mut |v| self.holds_for(v)),
        }
    }

    /// Whether the matcher tests one value at a time (everything but `null` and
    /// `exists`, which ask whether the field has a value at all).
    fn is_by_value(&self) -> bool {
        !matches!(self, Matcher::Null | Matcher::Exists(_))
    }

    /// Whether one value of the field satisfies a matcher that tests values
    /// ([`Matcher::is_by_value`]); `false` for `null` and `exists`.
    fn holds_for(&self, v: &str) -> bool {
        match self {
            Matcher::Glob(g) => g.matches(v),
            Matcher::Regex(re) => re.is_match(v),
            Matcher::Cidr(block) => address(v).is_some_and(|a| block.contains(a)),
            Matcher::Compare(cmp, n) => parse_number(v).is_some_and(|v| match cmp {
                Cmp::Gt => v > *n,
                Cmp::Gte => v >= *n,
                Cmp::Lt => v < *n,
                Cmp::Lte => v <= *n,
            }),
            Matcher::Null | Matcher::Exists(_) => false,
        }
    }

    /// The literals one of which a record this value matches holds (see [`Lits`]).
    fn literals<F: Field>(&self, field: &F, mode: Lits) -> Option<Vec<String>> {
        let key = || {
            mode.keys
                .then(|| field.key_literal().map(|k| vec![k]))
                .flatten()
        };
        match self {
            Matcher::Glob(g) => glob_literals(g, field, mode).or_else(key),
            Matcher::Exists(true) | Matcher::Compare(..) | Matcher::Cidr(_) | Matcher::Regex(_) => {
                key()
            }
            Matcher::Exists(false) | Matcher::Null => None,
        }
    }
}

/// An address in a value as audit records write it: bare, `[ip]:port`, `ip:port`.
fn address(text: &str) -> Option<u128> {
    let t = text.trim();
    parse_ip(t).or_else(|| {
        let host = match t.strip_prefix('[') {
            Some(rest) => rest.split(']').next()?,
            None => t.rsplit_once(':').map(|(h, _)| h)?,
        };
        parse_ip(host)
    })
}

/// Which literals a query gives.
#[derive(Clone, Copy, Debug)]
struct Lits {
    /// For a search that ignores ASCII case (literals lower-cased); else only literals
    /// that a case-sensitive search finds in every matching record.
    folded: bool,
    /// A field's key where a clause gives no value's literal.
    keys: bool,
}

/// Whether a literal string is a marker of the caller's ([`Spelling::Exact`] text
/// starting with a NUL byte, which no text literal holds) or a record's operation
/// ([`crate::Literal::Operation`]): its case is its own.
fn is_marker(literal: &str) -> bool {
    literal.starts_with('\0') || crate::Literal::parse(literal).is_operation()
}

/// A glob's literals: its whole value (in the field's spellings) when it has no wildcard,
/// else its longest piece no writer escapes. A glob that ignores case gives, for a
/// case-sensitive search, only a run without ASCII letters.
fn glob_literals<F: Field>(g: &Glob, field: &F, mode: Lits) -> Option<Vec<String>> {
    let usable = |s: &str| -> Option<String> {
        let s = safe_fragment(s)?;
        if mode.folded || g.cased {
            // An uncased glob's pieces are lower case already.
            return Some(s.to_string());
        }
        s.split(|c: char| c.is_ascii_alphabetic())
            .filter(|r| r.len() >= 4)
            .max_by_key(|r| r.len())
            .map(str::to_string)
    };
    if let Some(value) = g.exact() {
        let mut out = Vec::new();
        for form in field.spellings(value)? {
            match form {
                Spelling::Text(t) => out.push(usable(&t)?),
                Spelling::Exact(literal) => match crate::Literal::parse(&literal) {
                    // A record's whole operation, in any case unless the glob is cased.
                    crate::Literal::Operation(_) if g.cased => out.push(literal),
                    crate::Literal::Operation(t) => out.push(crate::Literal::operation_any_case(t)),
                    // A marker of the caller's (a record type): its own case.
                    _ if mode.folded || g.cased => out.push(literal),
                    _ => return None,
                },
            }
        }
        return (!out.is_empty()).then_some(out);
    }
    if !field.is_verbatim() {
        return None;
    }
    g.pieces()
        .filter_map(usable)
        .max_by_key(String::len)
        .map(|s| vec![s])
}

/// The literals one of which every line a clause matches holds, as one conjunct of a
/// selection for the router's case-sensitive check (`literals`: the clause's, by
/// [`Lits`]): its exact literals, else its values' literals found in any ASCII case
/// (Sigma strings match whatever their ASCII case), else, with `keys`, its fields'
/// keys: [`Query::required_literals`]'s order.
fn necessary(keys: bool, literals: impl Fn(Lits) -> Option<Vec<String>>) -> Option<Vec<String>> {
    let exact = |keys| Lits {
        folded: false,
        keys,
    };
    let folded = Lits {
        folded: true,
        keys: false,
    };
    literals(exact(false))
        .or_else(|| literals(folded).map(any_case))
        .or_else(|| keys.then(|| literals(exact(true))).flatten())
}

/// Folded literals as the prefilter reads literals matched in any ASCII case
/// ([`crate::Literal::any_case`]); a marker of the caller's, or an operation, stays.
fn any_case(set: Vec<String>) -> Vec<String> {
    set.into_iter()
        .map(|s| match is_marker(&s) {
            true => s,
            false => crate::Literal::any_case(&s.to_ascii_lowercase()),
        })
        .collect()
}

/// The most selective of the sets (none: `None`).
fn best(sets: impl Iterator<Item = Option<Vec<String>>>) -> Option<Vec<String>> {
    sets.flatten().max_by_key(|s| selectivity(s))
}

/// Every set's literals (any set `None`: `None`).
fn union(sets: impl Iterator<Item = Option<Vec<String>>>) -> Option<Vec<String>> {
    crate::kql::union(sets)
}

impl<F: Field> Cond<F> {
    fn matches(&self, source: &dyn Fields<F>) -> bool {
        match self {
            Cond::And(parts) => parts.iter().all(|c| c.matches(source)),
            Cond::Or(parts) => parts.iter().any(|c| c.matches(source)),
            Cond::Not(inner) => !inner.matches(source),
            Cond::Sel(_, sel) => sel.matches(source),
        }
    }

    fn literals(&self, mode: Lits) -> Option<Vec<String>> {
        match self {
            Cond::And(parts) => best(parts.iter().map(|c| c.literals(mode))),
            Cond::Or(parts) => union(parts.iter().map(|c| c.literals(mode))),
            Cond::Not(_) => None,
            Cond::Sel(_, sel) => sel.literals(mode),
        }
    }

    /// The condition's alternatives ([`Branches`]), as the KQL module's
    /// `required_branches`: an `or`'s sides (and a list selection's items) are branches,
    /// an `and` multiplies its sides'.
    fn branches(&self, mode: Lits) -> Branches {
        match self {
            Cond::And(parts) => and_branches(
                parts
                    .iter()
                    .map(|c| (c.branches(mode), move || c.conjuncts(mode))),
            ),
            Cond::Or(parts) => or_branches(parts.iter().map(|c| c.branches(mode)))
                .unwrap_or_else(|| vec![self.conjuncts(mode)]),
            Cond::Sel(_, sel) => sel.branches(mode),
            Cond::Not(_) => vec![self.conjuncts(mode)],
        }
    }

    fn conjuncts(&self, mode: Lits) -> Vec<Vec<String>> {
        match self {
            Cond::And(parts) => parts.iter().flat_map(|c| c.conjuncts(mode)).collect(),
            Cond::Sel(_, sel) => sel.conjuncts(mode),
            other => necessary(true, |m| other.literals(m)).into_iter().collect(),
        }
    }

    fn fields<'a>(&'a self, out: &mut Vec<&'a F>) {
        match self {
            Cond::And(parts) | Cond::Or(parts) => parts.iter().for_each(|c| c.fields(out)),
            Cond::Not(inner) => inner.fields(out),
            Cond::Sel(_, sel) => sel.fields(out),
        }
    }
}

impl<F: Field> Query<F> {
    /// Evaluates the detection against a record.
    pub fn matches(&self, source: &dyn Fields<F>) -> bool {
        self.0.matches(source)
    }

    /// The literals one of which every matching line contains (`None`: none can be
    /// derived; every line is parsed), as the prefilter reads them
    /// ([`crate::Literal`]): the values' exact literals (`cased` values, runs of a value
    /// without ASCII letters) when there are, else the values' literals found in any
    /// ASCII case (Sigma strings match whatever their ASCII case; see
    /// [`Query::folded_literals`]), else fields' keys (for `exists`, numbers, addresses,
    /// regular expressions).
    pub fn required_literals(&self) -> Option<Vec<String>> {
        let mode = |keys| Lits {
            folded: false,
            keys,
        };
        let folded = Lits {
            folded: true,
            keys: false,
        };
        self.0
            .literals(mode(false))
            .or_else(|| self.0.literals(folded).map(any_case))
            .or_else(|| self.0.literals(mode(true)))
    }

    /// The literals, lower-cased, one of which every matching line contains whatever
    /// its ASCII case: for a search that folds case (values' literals first, then
    /// fields' keys, lower-cased too).
    pub fn folded_literals(&self) -> Option<Vec<String>> {
        let mode = |keys| Lits { folded: true, keys };
        let lower = |set: Vec<String>| {
            set.into_iter()
                .map(|s| match is_marker(&s) {
                    true => s,
                    false => s.to_ascii_lowercase(),
                })
                .collect()
        };
        self.0
            .literals(mode(false))
            .or_else(|| self.0.literals(mode(true)))
            .map(lower)
    }

    /// Literal sets (case-sensitive, as [`Query::required_literals`]) a matching line
    /// holds a literal of each: one per necessary test.
    pub fn required_conjuncts(&self) -> Vec<Vec<String>> {
        self.0.conjuncts(Lits {
            folded: false,
            keys: false,
        })
    }

    /// The detection's prefilter as alternatives ([`Branches`], case-sensitive sets as
    /// [`Query::required_conjuncts`]'): every matching line meets one.
    pub fn required_branches(&self) -> Branches {
        self.0.branches(Lits {
            folded: false,
            keys: false,
        })
    }

    /// Every field the detection reads.
    pub fn fields(&self) -> Vec<&F> {
        let mut out = Vec::new();
        self.0.fields(&mut out);
        out
    }

    /// One of the queries holds (the rules a correlation counts); `None` for none.
    pub fn any(parts: Vec<Query<F>>) -> Option<Query<F>> {
        match parts.len() {
            0 => None,
            _ => Some(Query(one_or(
                parts.into_iter().map(|q| q.0).collect(),
                Cond::Or,
            ))),
        }
    }

    /// Both conditions hold (a log source's records and a rule's detection).
    pub fn and(self, other: Query<F>) -> Query<F> {
        Query(Cond::And(vec![self.0, other.0]))
    }
}

// ---------------------------------------------------------------------------------
// Field mappings.

/// A field mapping as data, the part of a pySigma processing pipeline ualhunt needs:
/// which log sources it knows (and which records each one's rules see), and the fields
/// a Sigma field name reads. Read from YAML:
///
/// ```yaml
/// default: o365.audit.         # any name not listed: this prefix and the name
/// keywords: o365.audit.*       # the field keyword (field-less) selections search
/// fields:                      # a name (or `Prefix.*`): the fields it reads, the first
///   Operation: [o365.audit.Operation, event.action]   # with a value tested
/// logsources:                  # the first entry whose keys all hold applies
///   - product: m365
///     service: [audit, exchange]
///     fields: {eventName: [o365.audit.Operation]}     # before the global ones
///     where:                   # a Sigma detection: the records the rules see
///       sel: {Workload|exists: true}
///       condition: sel
/// ```
#[derive(Clone, Debug)]
pub struct Mapping {
    default: Option<String>,
    keywords: Option<String>,
    fields: Vec<(String, Vec<String>)>,
    sources: Vec<Source>,
}

/// One log source entry of a [`Mapping`].
#[derive(Clone, Debug)]
struct Source {
    /// `(key, accepted values)`: `product`, `service`, `category`.
    keys: Vec<(String, Vec<String>)>,
    fields: Vec<(String, Vec<String>)>,
    /// The records the source's rules see, as a Sigma detection node.
    where_: Option<Yaml>,
}

/// The part of a [`Mapping`] one rule's log source selects.
#[derive(Clone, Copy, Debug)]
pub struct Scope<'m> {
    mapping: &'m Mapping,
    source: &'m Source,
}

/// `name: value` or `name: [values]` pairs of a map node, in order.
fn pairs(node: &Yaml, what: &str) -> Result<Vec<(String, Vec<String>)>, ParseError> {
    let Some(map) = node.as_hash() else {
        return match node {
            Yaml::BadValue | Yaml::Null => Ok(Vec::new()),
            _ => Err(ParseError {
                message: format!("mapping: {what} is not a map"),
            }),
        };
    };
    map.iter()
        .map(|(k, v)| {
            let key = scalar(k).ok_or_else(|| ParseError {
                message: format!("mapping: a key of {what} is not a string"),
            })?;
            Ok((key, strings(v)))
        })
        .collect()
}

impl Mapping {
    /// Reads a mapping file.
    pub fn parse(text: &str) -> Result<Mapping, ParseError> {
        check_events(text)?;
        let docs = yaml_rust2::YamlLoader::load_from_str(text).map_err(|e| ParseError {
            message: e.to_string(),
        })?;
        let [doc] = docs.as_slice() else {
            return Err(ParseError {
                message: "mapping: one YAML document expected".into(),
            });
        };
        let mut sources = Vec::new();
        for entry in doc["logsources"].as_vec().map(Vec::as_slice).unwrap_or(&[]) {
            let keys = ["product", "service", "category"]
                .iter()
                .filter(|k| !entry[**k].is_badvalue())
                .map(|k| (k.to_string(), strings(&entry[*k])))
                .collect();
            let where_ = match &entry["where"] {
                Yaml::BadValue | Yaml::Null => None,
                w if w.is_hash() => Some(w.clone()),
                _ => {
                    return Err(ParseError {
                        message: "mapping: a log source's where is not a detection map".into(),
                    });
                }
            };
            sources.push(Source {
                keys,
                fields: pairs(&entry["fields"], "a log source's fields")?,
                where_,
            });
        }
        Ok(Mapping {
            default: scalar(&doc["default"]),
            keywords: scalar(&doc["keywords"]),
            fields: pairs(&doc["fields"], "fields")?,
            sources,
        })
    }

    /// The entry for a rule's log source, or why the rule has none.
    pub fn scope(&self, logsource: &LogSource) -> Result<Scope<'_>, Unsupported> {
        let of = |key: &str| match key {
            "product" => logsource.product.as_deref(),
            "service" => logsource.service.as_deref(),
            _ => logsource.category.as_deref(),
        };
        self.sources
            .iter()
            .find(|s| {
                s.keys
                    .iter()
                    .all(|(k, accepted)| of(k).is_some_and(|v| accepted.iter().any(|a| a == v)))
            })
            .map(|source| Scope {
                mapping: self,
                source,
            })
            .ok_or_else(|| {
                Unsupported(format!(
                    "log source product={} service={} category={} is not in the Sigma field \
                     mapping",
                    logsource.product.as_deref().unwrap_or("-"),
                    logsource.service.as_deref().unwrap_or("-"),
                    logsource.category.as_deref().unwrap_or("-"),
                ))
            })
    }

    /// The field keyword selections search.
    pub fn keywords(&self) -> Option<&str> {
        self.keywords.as_deref()
    }
}

impl Scope<'_> {
    /// The field names a Sigma field name reads, in order: the log source's entry, then
    /// the global one (an exact name before a `Prefix.*` pattern, whose `*` in the
    /// targets takes the rest of the name), then the default prefix.
    pub fn resolve(&self, name: &str) -> Vec<String> {
        for table in [&self.source.fields, &self.mapping.fields] {
            if let Some((_, to)) = table.iter().find(|(k, _)| k == name) {
                return to.clone();
            }
            for (key, to) in table.iter() {
                if let Some(rest) = key.strip_suffix('*').and_then(|p| name.strip_prefix(p)) {
                    return to.iter().map(|t| t.replacen('*', rest, 1)).collect();
                }
            }
        }
        match &self.mapping.default {
            Some(prefix) => vec![format!("{prefix}{name}")],
            None => Vec::new(),
        }
    }

    /// The records of this log source, as a query over fields of type `F` (`None`: every
    /// record).
    pub fn records<F: Field>(&self) -> Option<Result<Query<F>, Unsupported>> {
        let detection = self.source.where_.clone()?;
        let doc = Document {
            meta: Meta::default(),
            correlation: None,
            text: String::new(),
            body: Ok(detection),
        };
        let keywords = self.mapping.keywords.as_deref().map(F::parse);
        Some(
            doc.query(
                &mut |n| self.resolve(n).iter().map(|f| F::parse(f)).collect(),
                keywords.as_ref(),
            )
            .map_err(|Unsupported(why)| {
                Unsupported(format!("the mapping's log source condition: {why}"))
            }),
        )
    }
}

// ---------------------------------------------------------------------------------
// Conditions.

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Open,
    Close,
    Word(String),
}

fn tokens(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        if c == '(' || c == ')' || c.is_whitespace() {
            if !word.is_empty() {
                out.push(Token::Word(std::mem::take(&mut word)));
            }
            match c {
                '(' => out.push(Token::Open),
                ')' => out.push(Token::Close),
                _ => {}
            }
        } else {
            word.push(c);
        }
    }
    if !word.is_empty() {
        out.push(Token::Word(word));
    }
    out
}

/// The nesting a condition may have: deeper is refused rather than risking the stack.
const MAX_DEPTH: usize = 64;

struct CondParser<'s, F> {
    toks: Vec<Token>,
    pos: usize,
    depth: usize,
    selections: &'s [(String, Selection<F>)],
}

fn parse_condition<F: Field>(
    text: &str,
    selections: &[(String, Selection<F>)],
) -> Result<Cond<F>, Unsupported> {
    if text.contains('|') {
        return Err(Unsupported(format!(
            "condition {text:?}: aggregation (| count() …) is deprecated Sigma and not supported; \
             correlation rules replace it"
        )));
    }
    let mut p = CondParser {
        toks: tokens(text),
        pos: 0,
        depth: 0,
        selections,
    };
    let cond = p.or()?;
    match p.toks.get(p.pos) {
        None => Ok(cond),
        Some(t) => Err(p.error(text, &format!("unexpected {t:?}"))),
    }
}

impl<F: Field> CondParser<'_, F> {
    fn error(&self, text: &str, why: &str) -> Unsupported {
        Unsupported(format!("condition {text:?}: {why}"))
    }

    fn word(&self, w: &str) -> bool {
        matches!(self.toks.get(self.pos), Some(Token::Word(x)) if x == w)
    }

    fn or(&mut self) -> Result<Cond<F>, Unsupported> {
        let mut parts = vec![self.and()?];
        while self.word("or") {
            self.pos += 1;
            parts.push(self.and()?);
        }
        Ok(one_or(parts, Cond::Or))
    }

    fn and(&mut self) -> Result<Cond<F>, Unsupported> {
        let mut parts = vec![self.not()?];
        while self.word("and") {
            self.pos += 1;
            parts.push(self.not()?);
        }
        Ok(one_or(parts, Cond::And))
    }

    fn not(&mut self) -> Result<Cond<F>, Unsupported> {
        if self.word("not") {
            self.pos += 1;
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(Unsupported("condition nested too deeply".into()));
            }
            let inner = self.not()?;
            self.depth -= 1;
            return Ok(Cond::Not(Box::new(inner)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Cond<F>, Unsupported> {
        let tok = self.toks.get(self.pos).cloned();
        self.pos += 1;
        match tok {
            Some(Token::Open) => {
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err(Unsupported("condition nested too deeply".into()));
                }
                let inner = self.or()?;
                self.depth -= 1;
                if self.toks.get(self.pos) != Some(&Token::Close) {
                    return Err(Unsupported("condition: unbalanced parenthesis".into()));
                }
                self.pos += 1;
                Ok(inner)
            }
            Some(Token::Word(w)) if matches!(w.as_str(), "1" | "any" | "all") => {
                if !self.word("of") {
                    return Err(Unsupported(format!("condition: {w:?} without \"of\"")));
                }
                self.pos += 1;
                let Some(Token::Word(pattern)) = self.toks.get(self.pos).cloned() else {
                    return Err(Unsupported(format!("condition: \"{w} of\" without a name")));
                };
                self.pos += 1;
                let picked: Vec<Cond<F>> = self
                    .selections
                    .iter()
                    .filter(|(name, _)| {
                        if pattern == "them" {
                            !name.starts_with('_')
                        } else {
                            Glob::new(&pattern, true).matches(name)
                        }
                    })
                    .map(|(name, sel)| Cond::Sel(name.clone(), sel.clone()))
                    .collect();
                if picked.is_empty() {
                    return Err(Unsupported(format!(
                        "condition: \"{w} of {pattern}\" names no selection"
                    )));
                }
                Ok(if w == "all" {
                    one_or(picked, Cond::And)
                } else {
                    one_or(picked, Cond::Or)
                })
            }
            Some(Token::Word(w)) if !matches!(w.as_str(), "and" | "or" | "not" | "of") => self
                .selections
                .iter()
                .find(|(name, _)| *name == w)
                .map(|(name, sel)| Cond::Sel(name.clone(), sel.clone()))
                .ok_or_else(|| Unsupported(format!("condition: no selection named {w:?}"))),
            other => Err(Unsupported(format!("condition: unexpected {other:?}"))),
        }
    }
}

fn one_or<T>(mut parts: Vec<T>, join: fn(Vec<T>) -> T) -> T {
    if parts.len() == 1 {
        // Just checked: one element.
        parts.pop().expect("one part")
    } else {
        join(parts)
    }
}

// ---------------------------------------------------------------------------------
// Printing, for `ualhunt rules`.

impl<F: Field> fmt::Display for Query<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.write(f, true)
    }
}

impl<F: Field> Cond<F> {
    fn write(&self, f: &mut fmt::Formatter<'_>, top: bool) -> fmt::Result {
        let join = |f: &mut fmt::Formatter<'_>, parts: &[Cond<F>], op: &str| {
            if !top {
                f.write_str("(")?;
            }
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    write!(f, " {op} ")?;
                }
                p.write(f, false)?;
            }
            if !top {
                f.write_str(")")?;
            }
            Ok(())
        };
        match self {
            Cond::And(parts) => join(f, parts, "and"),
            Cond::Or(parts) => join(f, parts, "or"),
            Cond::Not(inner) => {
                f.write_str("not ")?;
                inner.write(f, false)
            }
            Cond::Sel(name, sel) => {
                write!(f, "{name}{{")?;
                sel.write(f)?;
                f.write_str("}")
            }
        }
    }
}

impl<F: Field> Selection<F> {
    fn write(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selection::AllOf(tests) => {
                for (i, t) in tests.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    let names: Vec<String> = t.fields.iter().map(|x| x.name()).collect();
                    write!(f, "{} [{}]: ", t.shown, names.join(" | "))?;
                    let values: Vec<String> = t.values.iter().map(|m| m.to_string()).collect();
                    if values.len() == 1 {
                        f.write_str(&values[0])?;
                    } else {
                        let sep = if t.all { " and " } else { " or " };
                        write!(f, "({})", values.join(sep))?;
                    }
                }
                Ok(())
            }
            Selection::AnyOf(items) => {
                for (i, s) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" or ")?;
                    }
                    f.write_str("{")?;
                    s.write(f)?;
                    f.write_str("}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Matcher::Glob(g) => g.fmt(f),
            Matcher::Regex(re) => write!(f, "re '{}'", re.as_str()),
            Matcher::Cidr(b) => write!(f, "cidr {b:?}"),
            Matcher::Compare(cmp, n) => write!(f, "{cmp:?} {n}"),
            Matcher::Null => f.write_str("null"),
            Matcher::Exists(b) => write!(f, "exists {b}"),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Conformance cases written from the Sigma specification (v2): every modifier and
    //! condition form, a record that matches and one that does not.

    use super::*;
    use crate::field::Named;

    /// A record: field name to its values.
    struct Rec(Vec<(&'static str, &'static str)>);

    impl Fields<Named> for Rec {
        fn any_value(&self, field: &Named, pred: &mut dyn FnMut(&str) -> bool) -> bool {
            self.0
                .iter()
                .filter(|(k, _)| *k == field.name() || field.name() == "*")
                .any(|(_, v)| pred(v))
        }
    }

    /// The query of a one-document rule whose `detection` is `detection` (YAML, indented
    /// by four spaces), fields resolved by name, keywords searched in every field.
    fn rule(detection: &str) -> Result<Query<Named>, Unsupported> {
        let text = format!("title: t\nid: x\nlogsource:\n  product: m365\ndetection:\n{detection}");
        let docs = parse(&text).expect("YAML");
        assert_eq!(docs.len(), 1);
        docs[0].query(
            &mut |name| vec![<Named as Field>::parse(name)],
            Some(&<Named as Field>::parse("*")),
        )
    }

    fn q(detection: &str) -> Query<Named> {
        rule(detection).unwrap_or_else(|e| panic!("{e}\n{detection}"))
    }

    /// A field whose values a caller reads instead of searching (as the engine reads a
    /// record type): it spells a value as a marker of its own.
    #[derive(Clone, Debug, PartialEq)]
    struct Coded(String);

    impl Field for Coded {
        fn parse(name: &str) -> Coded {
            Coded(name.to_string())
        }

        fn name(&self) -> String {
            self.0.clone()
        }

        fn spellings(&self, value: &str) -> Option<Vec<Spelling>> {
            Some(vec![match self.0.as_str() {
                "code" => Spelling::Exact(format!("\0Type={value}")),
                _ => Spelling::Text(value.to_string()),
            }])
        }
    }

    #[test]
    fn a_marker_of_the_callers_keeps_its_case_when_values_are_caseless() {
        let text = "title: t\nid: x\nlogsource:\n  product: m365\ndetection:\n    s:\n        code: Logon\n    condition: s\n";
        let docs = parse(text).expect("YAML");
        let query = docs[0]
            .query(&mut |name| vec![Coded::parse(name)], None)
            .unwrap();
        // Sigma compares `Logon` without case: no case-sensitive literal, so the
        // caseless ones, where the marker must stay the caller's, not lower-cased.
        let literals = query.required_literals().unwrap();
        assert!(
            literals.contains(&"\0Type=logon".to_string()),
            "{literals:?}"
        );
        assert!(literals.iter().all(|l| l.starts_with('\0')), "{literals:?}");
        assert_eq!(query.folded_literals(), Some(literals));
    }

    fn hit(query: &Query<Named>, rec: &[(&'static str, &'static str)]) -> bool {
        query.matches(&Rec(rec.to_vec()))
    }

    #[test]
    fn a_map_ands_its_fields_and_a_value_list_ors_its_values() {
        let query = q(
            "    sel:\n        Operation: ['New-InboxRule', 'Set-InboxRule']\n        Workload: Exchange\n    condition: sel\n",
        );
        assert!(hit(
            &query,
            &[("Operation", "Set-InboxRule"), ("Workload", "Exchange")]
        ));
        assert!(!hit(
            &query,
            &[
                ("Operation", "Set-InboxRule"),
                ("Workload", "AzureActiveDirectory")
            ]
        ));
        assert!(!hit(
            &query,
            &[("Operation", "Remove-InboxRule"), ("Workload", "Exchange")]
        ));
        assert!(!hit(&query, &[("Workload", "Exchange")]));
    }

    #[test]
    fn a_list_of_maps_ors_the_maps() {
        let query = q(
            "    sel:\n        - Operation: A\n          Workload: X\n        - Operation: B\n    condition: sel\n",
        );
        assert!(hit(&query, &[("Operation", "A"), ("Workload", "X")]));
        assert!(!hit(&query, &[("Operation", "A"), ("Workload", "Y")]));
        assert!(hit(&query, &[("Operation", "B")]));
    }

    #[test]
    fn strings_match_whatever_their_ascii_case_unless_cased() {
        let query = q("    sel:\n        Operation: 'set-mailbox'\n    condition: sel\n");
        assert!(hit(&query, &[("Operation", "Set-Mailbox")]));
        assert!(hit(&query, &[("Operation", "SET-MAILBOX")]));
        assert!(!hit(&query, &[("Operation", "Set-Mailboxes")]));
        let query = q("    sel:\n        Operation|cased: 'Set-Mailbox'\n    condition: sel\n");
        assert!(hit(&query, &[("Operation", "Set-Mailbox")]));
        assert!(!hit(&query, &[("Operation", "set-mailbox")]));
    }

    #[test]
    fn wildcards_and_their_escapes() {
        let query = q(
            "    sel:\n        a: 'Set-*Rule'\n        b: 'x?z'\n        c: 'lit\\*eral'\n        d: 'back\\\\*'\n        e: 'C:\\Windows'\n    condition: sel\n",
        );
        let base = [
            ("a", "set-inboxrule"),
            ("b", "xYz"),
            ("c", "lit*eral"),
            ("d", "back\\slash"),
            ("e", "c:\\windows"),
        ];
        assert!(hit(&query, &base));
        for (i, bad) in [
            ("a", "Set-Inbox"),
            ("b", "xz"),
            ("c", "litXeral"),
            ("d", "backslash"),
            ("e", "C:Windows"),
        ]
        .iter()
        .enumerate()
        {
            let mut rec = base.to_vec();
            rec[i] = *bad;
            assert!(!hit(&query, &rec), "{bad:?}");
        }
        // `?` is one character, not one byte.
        let query = q("    sel:\n        b: 'x?z'\n    condition: sel\n");
        assert!(hit(&query, &[("b", "xéz")]));
    }

    #[test]
    fn contains_startswith_endswith_and_all() {
        let query = q(
            "    sel:\n        a|contains: 'Mail'\n        b|startswith: 'New-'\n        c|endswith: '.exe'\n    condition: sel\n",
        );
        assert!(hit(
            &query,
            &[("a", "Set-MAILbox"), ("b", "new-x"), ("c", "A.EXE")]
        ));
        assert!(!hit(
            &query,
            &[("a", "Set-Mbox"), ("b", "new-x"), ("c", "A.EXE")]
        ));
        assert!(!hit(
            &query,
            &[("a", "Mail"), ("b", "x-new-"), ("c", "A.EXE")]
        ));
        assert!(!hit(
            &query,
            &[("a", "Mail"), ("b", "new-"), ("c", "A.exe.txt")]
        ));
        let query = q(
            "    sel:\n        Payload|contains|all:\n            - 'New-ComplianceSearchAction'\n            - 'Export'\n            - 'pst'\n    condition: sel\n",
        );
        assert!(hit(
            &query,
            &[("Payload", "New-ComplianceSearchAction -Export -Format PST")]
        ));
        assert!(!hit(
            &query,
            &[("Payload", "New-ComplianceSearchAction -Export -Format msg")]
        ));
        // `all` may be met by different values of a list field.
        assert!(hit(
            &query,
            &[
                ("Payload", "New-ComplianceSearchAction"),
                ("Payload", "Export pst")
            ]
        ));
        // Wildcards inside a contains value still work.
        let query = q("    sel:\n        a|contains: 'Mail*box'\n    condition: sel\n");
        assert!(hit(&query, &[("a", "Set-Mail-big-box-x")]));
    }

    #[test]
    fn regular_expressions_are_case_sensitive_unless_i() {
        let query = q("    sel:\n        a|re: '^Set-(Mailbox|CASMailbox)$'\n    condition: sel\n");
        assert!(hit(&query, &[("a", "Set-CASMailbox")]));
        assert!(!hit(&query, &[("a", "set-casmailbox")]));
        let query = q("    sel:\n        a|re|i: 'set-.*box'\n    condition: sel\n");
        assert!(hit(&query, &[("a", "xSET-MAILBOXx")]));
        let query = q("    sel:\n        a|re|s: 'a.b'\n    condition: sel\n");
        assert!(hit(&query, &[("a", "a\nb")]));
        let query = q("    sel:\n        a|re|m: '^b$'\n    condition: sel\n");
        assert!(hit(&query, &[("a", "a\nb\nc")]));
        assert!(rule("    sel:\n        a|re: '('\n    condition: sel\n").is_err());
    }

    #[test]
    fn cidr_matches_addresses_in_the_block_in_any_audit_spelling() {
        let query = q(
            "    sel:\n        ClientIP|cidr:\n            - '10.0.0.0/8'\n            - '2001:db8::/32'\n    condition: sel\n",
        );
        for yes in [
            "10.1.2.3",
            "10.1.2.3:443",
            "[2001:db8::1]:443",
            "2001:db8::5",
        ] {
            assert!(hit(&query, &[("ClientIP", yes)]), "{yes}");
        }
        for no in ["11.0.0.1", "2001:db9::1", "not an ip", ""] {
            assert!(!hit(&query, &[("ClientIP", no)]), "{no}");
        }
    }

    #[test]
    fn exists_and_null() {
        let query =
            q("    sel:\n        Parameters.AuditLogAgeLimit|exists: true\n    condition: sel\n");
        assert!(hit(&query, &[("Parameters.AuditLogAgeLimit", "")]));
        assert!(!hit(&query, &[("Parameters.Other", "0")]));
        let query = q("    sel:\n        a|exists: false\n    condition: sel\n");
        assert!(hit(&query, &[("b", "1")]));
        assert!(!hit(&query, &[("a", "1")]));
        let query = q("    sel:\n        a: null\n    condition: sel\n");
        assert!(hit(&query, &[("b", "1")]));
        assert!(!hit(&query, &[("a", "")]));
        let query =
            q("    sel:\n        a:\n            - null\n            - 'x'\n    condition: sel\n");
        assert!(hit(&query, &[("b", "1")]));
        assert!(hit(&query, &[("a", "X")]));
        assert!(!hit(&query, &[("a", "y")]));
        assert!(rule("    sel:\n        a|exists: 'yes'\n    condition: sel\n").is_err());
    }

    #[test]
    fn numbers_and_booleans_compare_through_their_text_and_gt_lt_as_numbers() {
        let query = q("    sel:\n        RecordType: 1\n        Flag: true\n    condition: sel\n");
        assert!(hit(&query, &[("RecordType", "1"), ("Flag", "True")]));
        assert!(!hit(&query, &[("RecordType", "10"), ("Flag", "True")]));
        let query = q("    sel:\n        n|gte: 10\n        m|lt: 2.5\n    condition: sel\n");
        assert!(hit(&query, &[("n", "10"), ("m", "2")]));
        assert!(!hit(&query, &[("n", "9"), ("m", "2")]));
        assert!(!hit(&query, &[("n", "10"), ("m", "2.5")]));
        assert!(!hit(&query, &[("n", "ten"), ("m", "2")]));
        let query = q("    sel:\n        n|gt: 10\n        m|lte: 2.5\n    condition: sel\n");
        assert!(hit(&query, &[("n", "11"), ("m", "2.5")]));
        assert!(!hit(&query, &[("n", "10"), ("m", "2.5")]));
    }

    #[test]
    fn base64_and_base64offset_encode_the_value() {
        assert_eq!(base64(b"Set-Mailbox"), "U2V0LU1haWxib3g=");
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"ab"), "YWI=");
        // pySigma's three offsets of "/bin/bash".
        assert_eq!(
            base64_offsets(b"/bin/bash"),
            vec!["L2Jpbi9iYXNo", "9iaW4vYmFza", "vYmluL2Jhc2"]
        );
        let query = q("    sel:\n        a|base64: 'Set-Mailbox'\n    condition: sel\n");
        assert!(hit(&query, &[("a", "U2V0LU1haWxib3g=")]));
        assert!(!hit(&query, &[("a", "Set-Mailbox")]));
        let query =
            q("    sel:\n        a|base64offset|contains: '/bin/bash'\n    condition: sel\n");
        for offset in 0..3 {
            let mut text = "x".repeat(offset).into_bytes();
            text.extend_from_slice(b"/bin/bash -c");
            let encoded: &'static str = Box::leak(base64(&text).into_boxed_str());
            assert!(hit(&query, &[("a", encoded)]), "offset {offset}: {encoded}");
        }
        assert!(!hit(&query, &[("a", "L2Jpbi9zaA==")]));
    }

    #[test]
    fn keywords_search_every_value() {
        let query = q(
            "    keywords:\n        - 'AzureHound'\n        - 'bloodhound'\n    condition: keywords\n",
        );
        assert!(hit(&query, &[("UserAgent", "azurehound/v2.0")]));
        assert!(hit(&query, &[("Other", "xBloodHoundx")]));
        assert!(!hit(&query, &[("UserAgent", "Mozilla")]));
        let query = q("    keywords: 'Set-Mailbox'\n    condition: keywords\n");
        assert!(hit(&query, &[("x", "Set-Mailbox -Identity a")]));
        // Without a field to search, a keyword selection does not compile.
        let text =
            "title: t\nlogsource: {product: m365}\ndetection:\n    k: ['a']\n    condition: k\n";
        let docs = parse(text).unwrap();
        let err = docs[0]
            .query::<Named>(&mut |n| vec![<Named as Field>::parse(n)], None)
            .unwrap_err();
        assert!(err.0.contains("keyword"), "{err}");
    }

    #[test]
    fn conditions_and_or_not_parentheses_and_precedence() {
        let sels = "    a:\n        f: a\n    b:\n        f: b\n    c:\n        g: c\n";
        let cases = [
            ("a or b and c", [true, true, true, false]),
            ("(a or b) and c", [true, true, false, false]),
            ("not a and c", [false, true, false, false]),
            ("not (a or b)", [false, false, false, true]),
            ("a and not c", [false, false, true, false]),
        ];
        // Records: f=a,g=c; f=b,g=c; f=a; f=x.
        let recs: [&[(&'static str, &'static str)]; 4] = [
            &[("f", "a"), ("g", "c")],
            &[("f", "b"), ("g", "c")],
            &[("f", "a")],
            &[("f", "x")],
        ];
        for (cond, want) in cases {
            let query = q(&format!("{sels}    condition: {cond}\n"));
            for (rec, want) in recs.iter().zip(want) {
                assert_eq!(hit(&query, rec), want, "{cond} on {rec:?}");
            }
        }
    }

    #[test]
    fn of_forms_pick_selections_by_pattern_and_them_skips_underscores() {
        let sels = "    sel_a:\n        f: a\n    sel_b:\n        g: b\n    _hidden:\n        h: h\n    filter:\n        f: x\n";
        let one = q(&format!("{sels}    condition: 1 of sel_*\n"));
        let any = q(&format!("{sels}    condition: any of sel_*\n"));
        let all = q(&format!("{sels}    condition: all of sel_*\n"));
        for query in [&one, &any] {
            assert!(hit(query, &[("g", "b")]));
            assert!(!hit(query, &[("f", "x")]));
        }
        assert!(hit(&all, &[("f", "a"), ("g", "b")]));
        assert!(!hit(&all, &[("f", "a")]));
        let them = q(&format!("{sels}    condition: all of them\n"));
        // `them` leaves out `_hidden` but takes `filter`: f cannot be both a and x.
        assert!(!hit(&them, &[("f", "a"), ("g", "b")]));
        let them = q(&format!("{sels}    condition: 1 of them\n"));
        assert!(hit(&them, &[("f", "x")]));
        assert!(!hit(&them, &[("h", "h")]));
        let not_of = q(&format!(
            "{sels}    condition: sel_a and not 1 of filter*\n"
        ));
        assert!(hit(&not_of, &[("f", "a")]));
        assert!(rule(&format!("{sels}    condition: 1 of nothing_*\n")).is_err());
    }

    #[test]
    fn a_condition_list_ors_its_conditions() {
        let query = q(
            "    a:\n        f: a\n    b:\n        f: b\n    condition:\n        - a\n        - b\n",
        );
        assert!(hit(&query, &[("f", "b")]));
        assert!(!hit(&query, &[("f", "c")]));
    }

    #[test]
    fn what_is_outside_the_subset_says_why() {
        for (detection, why) in [
            (
                "    sel:\n        a|windash: '-x'\n    condition: sel\n",
                "windash",
            ),
            (
                "    sel:\n        a|wide|base64: 'x'\n    condition: sel\n",
                "wide",
            ),
            (
                "    sel:\n        a|fieldref: b\n    condition: sel\n",
                "fieldref",
            ),
            (
                "    sel:\n        a|expand: '%x%'\n    condition: sel\n",
                "expand",
            ),
            (
                "    sel:\n        a|bogus: x\n    condition: sel\n",
                "unknown modifier",
            ),
            (
                "    sel:\n        a: x\n    condition: sel | count() > 5\n",
                "aggregation",
            ),
            (
                "    sel:\n        a: x\n    timeframe: 5m\n    condition: sel\n",
                "timeframe",
            ),
            (
                "    sel:\n        a: x\n    condition: other\n",
                "no selection named",
            ),
            (
                "    sel:\n        a: x\n    condition: (sel\n",
                "parenthesis",
            ),
            ("    sel:\n        a: x\n", "no condition"),
            (
                "    sel:\n        a:\n            b: c\n    condition: sel\n",
                "a list or a map",
            ),
        ] {
            let err = rule(detection).expect_err(detection);
            assert!(err.0.contains(why), "{err} lacks {why}");
        }
        let corr = "title: c\nid: y\ncorrelation:\n  type: event_count\n  rules: [x]\n  group-by: [UserId]\n  timespan: 5m\n  condition: {gte: 10}\n";
        let docs = parse(corr).unwrap();
        assert!(docs[0].unsupported().unwrap().0.contains("event_count"));
        let c = docs[0].correlation.as_ref().unwrap();
        assert_eq!(c.kind, "event_count");
        assert_eq!(c.group_by, vec!["UserId"]);
        assert_eq!(c.timespan, "5m");
        assert_eq!(c.condition, vec![("gte".to_string(), "10".to_string())]);
        assert!(c.aliases.is_empty());
        let temporal = "title: t\ncorrelation:\n  type: temporal\n  rules: [a, b]\n  group-by: [ip]\n  timespan: 10s\n  aliases:\n    ip:\n      a: ClientIP\n      b: ActorIpAddress\n";
        let docs = parse(temporal).unwrap();
        let c = docs[0].correlation.as_ref().unwrap();
        assert_eq!(
            c.aliases,
            vec![(
                "ip".to_string(),
                vec![
                    ("a".to_string(), "ClientIP".to_string()),
                    ("b".to_string(), "ActorIpAddress".to_string())
                ]
            )]
        );
        let deep = format!(
            "title: d\nlogsource: {{}}\ndetection:\n    s:\n        a: x\n    condition: {}s{}\n",
            "(".repeat(100),
            ")".repeat(100)
        );
        assert!(
            parse(&deep).unwrap()[0]
                .query::<Named>(&mut |n| vec![<Named as Field>::parse(n)], None)
                .is_err()
        );
    }

    #[test]
    fn several_documents_and_aliases() {
        let text = "title: a\nid: 1\nauthor: A\nlevel: high\ntags: [attack.t1562.001]\nfalsepositives: [x]\nreferences: ['https://e']\nlogsource: {product: m365, service: audit}\ndetection:\n  s: {Operation: A}\n  condition: s\n---\ntitle: b\nid: 2\nlogsource: {product: azure, service: m365}\ndetection:\n  s: {Operation: B}\n  condition: s\n";
        let docs = parse(text).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].meta.author.as_deref(), Some("A"));
        assert_eq!(docs[0].meta.level.as_deref(), Some("high"));
        assert_eq!(docs[0].meta.tags, vec!["attack.t1562.001"]);
        assert_eq!(docs[0].meta.references, vec!["https://e"]);
        assert_eq!(docs[1].meta.logsource.service.as_deref(), Some("m365"));
        let bomb = "a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n";
        assert!(parse(bomb).unwrap_err().message.contains("alias"));
        assert!(parse("a: [unclosed").is_err());
        // Each document keeps its own text, which parses back to it.
        assert!(docs[0].text.starts_with("title: a\n"), "{:?}", docs[0].text);
        assert!(
            docs[1].text.starts_with("---\ntitle: b\n"),
            "{:?}",
            docs[1].text
        );
        let again = parse(&docs[1].text).unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].meta, docs[1].meta);
        // A `---` inside a line, or indented, is no cut.
        let text = "title: 'x --- y'\ndescription: |\n  ---\n  z\n";
        assert_eq!(parse(text).unwrap().len(), 1);
    }

    #[test]
    fn each_side_of_an_or_and_each_item_of_a_list_is_a_branch() {
        let set = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let query = q("    a:\n        f|cased: one\n        g|cased: ten\n    \
             b:\n        f|cased: two\n    \
             c:\n        h|cased: six\n    condition: (a or b) and c\n");
        assert_eq!(
            query.required_branches(),
            vec![
                vec![set(&["one"]), set(&["ten"]), set(&["six"])],
                vec![set(&["two"]), set(&["six"])],
            ]
        );
        // A list of maps: each map a branch.
        let query = q(
            "    sel:\n        - f|cased: one\n          g|cased: ten\n        \
             - f|cased: two\n    condition: sel\n",
        );
        assert_eq!(
            query.required_branches(),
            vec![vec![set(&["one"]), set(&["ten"])], vec![set(&["two"])]]
        );
        // A side with nothing known: one branch knowing nothing.
        let query = q(
            "    a:\n        f|cased: one\n    b:\n        f|cased: two\n    \
             condition: a or not b\n",
        );
        assert_eq!(query.required_branches(), vec![Vec::<Vec<String>>::new()]);
    }

    #[test]
    fn literals_are_sound_for_a_case_sensitive_search() {
        // An uncased value gives no literal of its letters; a cased one does; a run
        // without letters does; folded literals are lower case.
        let query = q("    sel:\n        Operation: 'Set-Mailbox'\n    condition: sel\n");
        // Found in any ASCII case by the prefilter.
        assert_eq!(
            query.required_literals(),
            Some(vec![crate::Literal::any_case("set-mailbox")])
        );
        assert_eq!(query.folded_literals(), Some(vec!["set-mailbox".into()]));
        let query = q("    sel:\n        Operation|cased: 'Set-Mailbox'\n    condition: sel\n");
        assert_eq!(query.required_literals(), Some(vec!["Set-Mailbox".into()]));
        let query = q(
            "    sel:\n        ApplicationId: '9ba1a5c7-f17a-4de9-a1f1-6178c8d51223'\n    condition: sel\n",
        );
        assert_eq!(query.required_literals(), Some(vec!["1-6178".into()]));
        // `exists` gives the key where no value gives a literal (Named has none).
        let query = q("    sel:\n        a|exists: true\n    condition: sel\n");
        assert_eq!(query.required_literals(), None);
        // A negation gives none; an `or` the union.
        let query = q(
            "    a:\n        f|cased: one\n    b:\n        f|cased: two\n    condition: a or b\n",
        );
        assert_eq!(
            query.required_literals(),
            Some(vec!["one".into(), "two".into()])
        );
        let query = q("    a:\n        f|cased: one\n    condition: not a\n");
        assert_eq!(query.required_literals(), None);
    }

    /// An uncased value with no exact literal still checks a line before it is parsed:
    /// its literal in any ASCII case is a conjunct, as it is the searched literal where
    /// nothing better is known; a run without letters stays exact.
    #[test]
    fn uncased_values_give_caseless_conjuncts() {
        let any = |l: &str| crate::Literal::any_case(l);
        let query = q(
            "    sel:\n        Operation|contains: 'Set-Mailbox'\n        \
             Parameters|contains:\n            - 'ForwardTo'\n            - 'RedirectTo'\n    \
             condition: sel\n",
        );
        assert_eq!(
            query.required_conjuncts(),
            vec![
                vec![any("set-mailbox")],
                vec![any("forwardto"), any("redirectto")]
            ]
        );
        // Either side of an `or` a branch of its own, each with its caseless sets.
        let query = q(
            "    a:\n        f: 'One'\n        g: '1234-x'\n    b:\n        f|cased: 'Two'\n    \
             condition: a or b\n",
        );
        assert_eq!(
            query.required_branches(),
            vec![
                vec![vec![any("one")], vec!["1234-".to_string()]],
                vec![vec!["Two".into()]]
            ]
        );
        // A negated side gives nothing to check.
        let query = q("    a:\n        f: one\n    condition: not a\n");
        assert_eq!(query.required_conjuncts(), Vec::<Vec<String>>::new());
    }

    /// Differential check of the `*`-only fast path against the character matcher.
    #[test]
    fn both_glob_matchers_agree() {
        let values = [
            "", "a", "ab", "abc", "aXbXc", "ABC", "é", "aéb", "abab", "bca",
        ];
        let patterns = [
            "", "*", "a*", "*c", "a*c", "*b*", "ab", "a*b*c", "*ab*ab*", "**", "A*B", "é*",
        ];
        for cased in [false, true] {
            for p in patterns {
                let g = Glob::new(p, cased);
                for v in values {
                    assert_eq!(
                        g.matches_stars(v.as_bytes()),
                        g.matches_chars(v),
                        "{p:?} on {v:?} cased={cased}"
                    );
                }
            }
        }
    }

    /// Every test of a selection, in order.
    fn tests_of<F>(sel: &Selection<F>, out: &mut Vec<Test<F>>)
    where
        F: Clone,
    {
        match sel {
            Selection::AllOf(tests) => out.extend(tests.iter().cloned()),
            Selection::AnyOf(items) => items.iter().for_each(|s| tests_of(s, out)),
        }
    }

    #[test]
    fn reading_values_once_agrees_with_the_field_then_its_values() {
        // A name the mapping reads from three fields, the first with a value tested;
        // records with each of them absent or holding one or two values.
        let detection = "    sel:\n        - N: ['set-mailbox', 'New-*', '*Rule']\n        - N|contains: ['box', 'x']\n        - N|startswith|cased: 'Set'\n        - N|re: '^[0-9]+$'\n        - N|cidr: '10.0.0.0/8'\n        - N|gt: 5\n        - N: ['7', 'set-mailbox']\n        - N: ''\n        - N|all: ['*box*', 'set*']\n        - N: null\n        - N|exists: true\n        - N|exists: false\n    condition: sel\n";
        let text = format!("title: t\nid: x\nlogsource:\n  product: m365\ndetection:\n{detection}");
        let docs = parse(&text).expect("YAML");
        let query = docs[0]
            .query(
                &mut |name| {
                    ["1", "2", "3"]
                        .iter()
                        .map(|i| <Named as Field>::parse(&format!("{name}{i}")))
                        .collect()
                },
                Some(&<Named as Field>::parse("*")),
            )
            .expect("compiles");
        let Cond::Sel(_, sel) = &query.0 else {
            panic!("one selection");
        };
        let mut tests = Vec::new();
        tests_of(sel, &mut tests);
        assert_eq!(tests.len(), 12);
        assert_eq!(tests.iter().filter(|t| t.by_value).count(), 8);
        let values: [&[&'static str]; 7] = [
            &[],
            &["Set-Mailbox"],
            &["set-mailboxes"],
            &["New-InboxRule", "10.1.2.3:443"],
            &["12", ""],
            &[""],
            &["7", "xbox"],
        ];
        let mut checked = 0;
        for a in values {
            for b in values {
                for c in values {
                    let mut rec = Vec::new();
                    for (name, vals) in [("N1", a), ("N2", b), ("N3", c)] {
                        rec.extend(vals.iter().map(|v| (name, *v)));
                    }
                    let rec = Rec(rec);
                    for t in &tests {
                        let simple = t.matches_simple(&rec);
                        if t.by_value {
                            assert_eq!(
                                t.matches_by_value(&rec),
                                simple,
                                "{} on {:?}",
                                t.shown,
                                rec.0
                            );
                            checked += usize::from(simple);
                        }
                        assert_eq!(t.matches(&rec), simple, "{} on {:?}", t.shown, rec.0);
                    }
                }
            }
        }
        // Both outcomes were seen.
        assert!(checked > 0 && checked < 8 * 7 * 7 * 7);
    }
}
