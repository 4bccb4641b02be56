//! The pattern languages ES|QL hands to other engines: `RLIKE` (Lucene's regular
//! expressions), `LIKE` (wildcards) and `GROK` (a Joni regular expression with named
//! captures), translated to Rust's `regex`; and `DISSECT` (delimiters), matched here.
//!
//! Place in the flow: called once per pattern when a query is parsed; evaluation only
//! runs the compiled [`regex::Regex`]. Never sees a record.

use regex::Regex;

/// Compiles an `RLIKE` pattern with Lucene's `RegExp` grammar (what Elasticsearch
/// builds its automaton from), matched against the whole value, case-sensitively.
///
/// The translation follows Lucene's recursive descent step by step, so its quirks come
/// along: `^` and `$` are literal characters, `.` matches any character (newlines
/// too), `@` is any string, `#` the empty language, `"…"` a quoted literal, `()` the
/// empty string, and a character where an expression must start (the second `|` of
/// `a||b`, say) is a literal. Intersection (`&`), complement (`~`) and numeric
/// intervals (`<1-9>`) have no `regex` equivalent and are refused.
pub(crate) fn rlike(pattern: &str) -> Result<Regex, String> {
    let mut p = Lucene {
        chars: pattern.chars().collect(),
        at: 0,
        depth: 0,
    };
    let body = p.union()?;
    if p.at < p.chars.len() {
        return Err(format!(
            "RLIKE pattern {pattern:?}: unexpected {:?} at character {}",
            p.chars[p.at], p.at
        ));
    }
    Regex::new(&format!(r"\A(?:{body})\z")).map_err(|e| format!("RLIKE pattern {pattern:?}: {e}"))
}

/// How deep a pattern's groups may nest.
const MAX_PATTERN_DEPTH: usize = 64;

struct Lucene {
    chars: Vec<char>,
    at: usize,
    depth: usize,
}

impl Lucene {
    fn peek(&self, any_of: &str) -> bool {
        self.chars.get(self.at).is_some_and(|c| any_of.contains(*c))
    }

    fn eat(&mut self, c: char) -> bool {
        if self.chars.get(self.at) == Some(&c) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn next(&mut self) -> Result<char, String> {
        let c = *self
            .chars
            .get(self.at)
            .ok_or("RLIKE pattern ends where a character is expected")?;
        self.at += 1;
        Ok(c)
    }

    fn more(&self) -> bool {
        self.at < self.chars.len()
    }

    fn union(&mut self) -> Result<String, String> {
        let mut out = self.inter()?;
        while self.eat('|') {
            out.push('|');
            out.push_str(&self.inter()?);
        }
        Ok(out)
    }

    fn inter(&mut self) -> Result<String, String> {
        let e = self.concat()?;
        if self.peek("&") {
            return Err("RLIKE intersection (&) is not supported".into());
        }
        Ok(e)
    }

    fn concat(&mut self) -> Result<String, String> {
        let mut out = self.repeat()?;
        while self.more() && !self.peek(")|&") {
            out.push_str(&self.repeat()?);
        }
        Ok(out)
    }

    fn repeat(&mut self) -> Result<String, String> {
        let mut e = self.compl()?;
        while self.peek("?*+{") {
            let op = self.next()?;
            e = match op {
                '{' => {
                    let n = self.number()?;
                    let bounds = if self.eat(',') {
                        if self.peek("}") {
                            format!("{n},")
                        } else {
                            let m = self.number()?;
                            format!("{n},{m}")
                        }
                    } else {
                        n.to_string()
                    };
                    if !self.eat('}') {
                        return Err("RLIKE repetition without its closing }".into());
                    }
                    format!("(?:{e}){{{bounds}}}")
                }
                _ => format!("(?:{e}){op}"),
            };
        }
        Ok(e)
    }

    fn number(&mut self) -> Result<u32, String> {
        let start = self.at;
        while self.chars.get(self.at).is_some_and(char::is_ascii_digit) {
            self.at += 1;
        }
        let text: String = self.chars[start..self.at].iter().collect();
        text.parse::<u32>()
            .ok()
            .filter(|&n| n <= 1000)
            .ok_or_else(|| format!("RLIKE repetition count {text:?} is not 0..=1000"))
    }

    fn compl(&mut self) -> Result<String, String> {
        if self.peek("~") {
            return Err("RLIKE complement (~) is not supported".into());
        }
        self.class_exp()
    }

    fn class_exp(&mut self) -> Result<String, String> {
        if !self.eat('[') {
            return self.simple();
        }
        let negate = self.eat('^');
        let mut items = String::new();
        loop {
            let from = self.char_exp()?;
            if self.eat('-') {
                let to = self.char_exp()?;
                match (from, to) {
                    (Char::One(a), Char::One(b)) if a <= b => {
                        items.push_str(&format!("{}-{}", hex(a), hex(b)));
                    }
                    _ => return Err("RLIKE class range out of order".into()),
                }
            } else {
                items.push_str(&from.in_class());
            }
            if !self.more() || self.peek("]") {
                break;
            }
        }
        if !self.eat(']') {
            return Err("RLIKE class without its closing ]".into());
        }
        Ok(format!("[{}{items}]", if negate { "^" } else { "" }))
    }

    fn simple(&mut self) -> Result<String, String> {
        if self.eat('.') {
            return Ok("(?s:.)".into());
        }
        if self.eat('#') {
            return Ok("[a&&b]".into());
        }
        if self.eat('@') {
            return Ok("(?s:.*)".into());
        }
        if self.eat('"') {
            let mut lit = String::new();
            loop {
                match self.chars.get(self.at) {
                    Some('"') => break,
                    Some(&c) => {
                        lit.push_str(&hex(c));
                        self.at += 1;
                    }
                    None => return Err("RLIKE quoted string without its closing \"".into()),
                }
            }
            self.at += 1;
            return Ok(format!("(?:{lit})"));
        }
        if self.eat('(') {
            if self.eat(')') {
                return Ok("(?:)".into());
            }
            self.depth += 1;
            if self.depth > MAX_PATTERN_DEPTH {
                return Err("RLIKE pattern nests too deep".into());
            }
            let e = self.union()?;
            self.depth -= 1;
            if !self.eat(')') {
                return Err("RLIKE group without its closing )".into());
            }
            return Ok(format!("(?:{e})"));
        }
        if self.peek("<") {
            return Err("RLIKE numeric interval (<n-m>) is not supported".into());
        }
        Ok(self.char_exp()?.outside())
    }

    fn char_exp(&mut self) -> Result<Char, String> {
        if self.eat('\\') {
            let c = self.next()?;
            return Ok(match c {
                'd' => Char::Class(r"0-9", false),
                'D' => Char::Class(r"0-9", true),
                's' => Char::Class(r"\t\n\x0B\f\r ", false),
                'S' => Char::Class(r"\t\n\x0B\f\r ", true),
                'w' => Char::Class(r"a-zA-Z0-9_", false),
                'W' => Char::Class(r"a-zA-Z0-9_", true),
                c => Char::One(c),
            });
        }
        self.next().map(Char::One)
    }
}

/// One character of a pattern, or one of Lucene's predefined classes (`\d`, `\w`, …).
enum Char {
    One(char),
    Class(&'static str, bool),
}

impl Char {
    fn outside(&self) -> String {
        match self {
            Char::One(c) => hex(*c),
            Char::Class(set, negated) => format!("[{}{set}]", if *negated { "^" } else { "" }),
        }
    }

    fn in_class(&self) -> String {
        match self {
            Char::One(c) => hex(*c),
            // A negated class inside a class: Rust's nested class says the same.
            Char::Class(set, negated) => format!("[{}{set}]", if *negated { "^" } else { "" }),
        }
    }
}

/// A character as a `regex` escape, literal wherever it stands.
fn hex(c: char) -> String {
    format!(r"\x{{{:X}}}", u32::from(c))
}

/// Compiles a `LIKE` pattern: `*` any characters, `?` one, `\` escapes the next
/// character; matched against the whole value, case-sensitively.
pub(crate) fn like(pattern: &str) -> Result<Regex, String> {
    let mut out = String::from(r"\A");
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' => out.push_str("(?s:.*)"),
            '?' => out.push_str("(?s:.)"),
            '\\' => match chars.next() {
                Some(e) => out.push_str(&hex(e)),
                None => return Err(format!("LIKE pattern {pattern:?} ends with an escape")),
            },
            c => out.push_str(&hex(c)),
        }
    }
    out.push_str(r"\z");
    Regex::new(&out).map_err(|e| format!("LIKE pattern {pattern:?}: {e}"))
}

/// Compiles a `GROK` pattern made of a regular expression with named captures
/// `(?<name>…)`; returns the regex and the capture names in order (group `gN` is name
/// `N`). `%{SYNTAX:name}` references to grok's pattern library are refused.
pub(crate) fn grok(pattern: &str) -> Result<(Regex, Vec<String>), String> {
    if pattern.contains("%{") {
        return Err(format!(
            "GROK pattern {pattern:?}: %{{…}} pattern names are not supported, only named \
             captures (?<name>…)"
        ));
    }
    let mut out = String::new();
    let mut names = Vec::new();
    let mut rest = pattern;
    while let Some(at) = rest.find("(?<") {
        // `(?<=` and `(?<!` are look-behinds (refused by `regex` below).
        let after = &rest[at + 3..];
        let escaped = rest[..at].chars().rev().take_while(|&c| c == '\\').count() % 2 == 1;
        let Some(end) = after
            .find('>')
            .filter(|_| !after.starts_with(['=', '!']) && !escaped)
        else {
            out.push_str(&rest[..at + 3]);
            rest = after;
            continue;
        };
        out.push_str(&rest[..at]);
        out.push_str(&format!("(?P<g{}>", names.len()));
        names.push(after[..end].to_string());
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    if names.is_empty() {
        return Err(format!("GROK pattern {pattern:?} names no capture"));
    }
    let regex = Regex::new(&out).map_err(|e| format!("GROK pattern {pattern:?}: {e}"))?;
    Ok((regex, names))
}

/// A `DISSECT` pattern: a leading literal, then keys each followed by the delimiter
/// that ends it (the last key's may be empty: it takes the rest).
#[derive(Clone, Debug)]
pub(crate) struct Dissect {
    prefix: String,
    keys: Vec<DissectKey>,
    names: Vec<String>,
    separator: String,
}

#[derive(Clone, Debug)]
struct DissectKey {
    /// The output column (`None`: a skipped key, `%{}` or `%{?name}`).
    column: Option<usize>,
    /// `->`: repeats of the delimiter after the value are skipped.
    pad: bool,
    delimiter: String,
}

impl Dissect {
    /// Parses `%{key}`, `%{?skip}`, `%{+append}` and `%{key->}` between literal
    /// delimiters; reference keys (`%{*k}`, `%{&k}`) and append order (`/N`) are
    /// refused, as are two keys with no delimiter between them.
    pub(crate) fn parse(pattern: &str, separator: String) -> Result<Dissect, String> {
        let mut rest = pattern;
        let prefix_len = rest.find("%{").unwrap_or(rest.len());
        let prefix = rest[..prefix_len].to_string();
        rest = &rest[prefix_len..];
        let mut keys: Vec<DissectKey> = Vec::new();
        let mut names: Vec<String> = Vec::new();
        while let Some(body) = rest.strip_prefix("%{") {
            let end = body
                .find('}')
                .ok_or_else(|| format!("DISSECT pattern {pattern:?}: a key without its }}"))?;
            let mut key = &body[..end];
            rest = &body[end + 1..];
            let pad = key.ends_with("->");
            if pad {
                key = &key[..key.len() - 2];
            }
            if key.starts_with(['*', '&']) || key.contains('/') {
                return Err(format!(
                    "DISSECT pattern {pattern:?}: reference keys and append order are not \
                     supported"
                ));
            }
            let column = if key.is_empty() || key.starts_with('?') {
                None
            } else {
                let name = key.strip_prefix('+').unwrap_or(key).to_string();
                // `%{+k}` appends to `k`; a repeated plain key is the same column too.
                Some(match names.iter().position(|n| *n == name) {
                    Some(i) => i,
                    None => {
                        names.push(name);
                        names.len() - 1
                    }
                })
            };
            let delimiter_len = rest.find("%{").unwrap_or(rest.len());
            let delimiter = rest[..delimiter_len].to_string();
            rest = &rest[delimiter_len..];
            if delimiter.is_empty() && !rest.is_empty() {
                return Err(format!(
                    "DISSECT pattern {pattern:?}: two keys with no delimiter between them"
                ));
            }
            keys.push(DissectKey {
                column,
                pad,
                delimiter,
            });
        }
        if names.is_empty() {
            return Err(format!("DISSECT pattern {pattern:?} names no key"));
        }
        Ok(Dissect {
            prefix,
            keys,
            names,
            separator,
        })
    }

    /// The output columns, in order.
    pub(crate) fn names(&self) -> &[String] {
        &self.names
    }

    /// Each column's value (appended values joined by the separator), or `None` when
    /// the text does not hold the pattern's delimiters in order.
    pub(crate) fn apply(&self, text: &str) -> Option<Vec<String>> {
        let mut at = text.strip_prefix(self.prefix.as_str())?;
        let mut values: Vec<Option<String>> = vec![None; self.names.len()];
        for key in &self.keys {
            let value = if key.delimiter.is_empty() {
                let v = at;
                at = "";
                v
            } else {
                let end = at.find(key.delimiter.as_str())?;
                let v = &at[..end];
                at = &at[end + key.delimiter.len()..];
                if key.pad {
                    while let Some(r) = at.strip_prefix(key.delimiter.as_str()) {
                        at = r;
                    }
                }
                v
            };
            if let Some(c) = key.column {
                values[c] = Some(match values[c].take() {
                    Some(before) => format!("{before}{}{value}", self.separator),
                    None => value.to_string(),
                });
            }
        }
        Some(values.into_iter().map(Option::unwrap_or_default).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rl(p: &str, s: &str) -> bool {
        rlike(p).unwrap().is_match(s)
    }

    #[test]
    fn rlike_matches_the_whole_value_case_sensitively() {
        assert!(rl("oauth.*", "oauth2:token"));
        assert!(!rl("oauth.*", "OAuth2:Token"));
        assert!(!rl("auth", "oauth"));
        assert!(rl(".*auth.*", "oauth"));
    }

    #[test]
    fn rlike_anchors_are_literal_characters() {
        assert!(rl("a$", "a$"));
        assert!(!rl("a$", "a"));
        assert!(rl("^a", "^a"));
    }

    #[test]
    fn rlike_second_bar_is_a_literal_as_lucene_reads_it() {
        // Lucene parses `a||b` as `a` or `|b`: no empty alternative.
        let p = "(oauth.*||.*login.*)";
        assert!(rl(p, "oauth2:token"));
        assert!(rl(p, "|login:login"));
        assert!(!rl(p, "login:login"));
        assert!(!rl(p, ""));
    }

    #[test]
    fn rlike_lucene_operators() {
        assert!(rl("a@", "abc\nd"));
        assert!(!rl("#", ""));
        assert!(rl("\"a.b\"", "a.b"));
        assert!(!rl("\"a.b\"", "axb"));
        assert!(rl("a()b", "ab"));
        assert!(rl("a{2,3}", "aaa"));
        assert!(!rl("a{2,3}", "aaaa"));
        assert!(rl(r"\d+", "123"));
        assert!(rl("[^a-c]x", "dx"));
        assert!(!rl("[^a-c]x", "bx"));
        assert!(rlike("a&b").is_err());
        assert!(rlike("~a").is_err());
        assert!(rlike("<1-5>").is_err());
        assert!(rlike("(a").is_err());
        assert!(rlike("a|").is_err());
    }

    #[test]
    fn rlike_special_character_class_of_the_inbox_rule() {
        let p = r#"[!@#$%^&*()_+={[\]|\\:;"'<,>.?/~` \-]+"#;
        for s in ["...", "-", "\\", "]", "[", "~~ ~", "@#", "\"'"] {
            assert!(rl(p, s), "{s:?}");
        }
        for s in ["a", "", ".a.", "é"] {
            assert!(!rl(p, s), "{s:?}");
        }
    }

    #[test]
    fn like_wildcards_and_escapes() {
        let m = |p: &str, s: &str| like(p).unwrap().is_match(s);
        assert!(m("New-*", "New-InboxRule"));
        assert!(!m("new-*", "New-InboxRule"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(m(r"a\*", "a*"));
        assert!(!m(r"a\*", "ab"));
        assert!(m("a.c", "a.c"));
        assert!(!m("a.c", "abc"));
    }

    #[test]
    fn dissect_cuts_at_delimiters() {
        let d = Dissect::parse("%{a} %{?x} [%{b->}]%{+a}", "-".into()).unwrap();
        assert_eq!(d.names(), ["a", "b"]);
        assert_eq!(
            d.apply("one two [three]]]four"),
            Some(vec!["one-four".to_string(), "three".to_string()])
        );
        assert_eq!(d.apply("one two three"), None);
        let prefixed = Dissect::parse("user=%{u},", String::new()).unwrap();
        assert_eq!(
            prefixed.apply("user=bob,rest"),
            Some(vec!["bob".to_string()])
        );
        assert_eq!(prefixed.apply("name=bob,"), None);
        assert!(Dissect::parse("%{a}%{b}", String::new()).is_err());
        assert!(Dissect::parse("%{*k} %{&k}", String::new()).is_err());
        assert!(Dissect::parse("%{?only}", String::new()).is_err());
    }

    #[test]
    fn grok_named_captures() {
        let (re, names) = grok(r".*\\(?<Esql.rule>.*)$").unwrap();
        assert_eq!(names, ["Esql.rule"]);
        let caps = re.captures(r"org\alice\...").unwrap();
        assert_eq!(&caps["g0"], "...");
        assert!(grok("%{WORD:x}").is_err());
        assert!(grok("abc").is_err());
    }
}
