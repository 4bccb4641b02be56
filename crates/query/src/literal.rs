//! Prefilter literals that match whatever their ASCII case, and the literals a regular
//! expression requires.
//!
//! Place in the flow: the languages' `required_literals` / `required_conjuncts` give
//! sets of literal strings; a literal searched whatever its case travels in those sets
//! as [`Literal::any_case`] writes it (a mark byte before its text), and the caller's
//! searcher reads each one back with [`Literal::parse`]. This module decides which
//! pieces of a case-insensitive value are sure to be in a matching record's bytes; it
//! never searches bytes itself.
//!
//! What "sure" means: the evaluators compare without case through Unicode (`regex`'s
//! simple case folding for `:`, `like~`, `regex~`; `char::to_lowercase` for `in~` and
//! the `~` functions). Most ASCII letters then match only their two ASCII cases, but
//! `k` also matches the Kelvin sign (U+212A), `s` the long s (U+017F), and `İ`
//! (U+0130) lower-cases to `i` followed by U+0307. A caseless literal is therefore cut
//! at `k`, `s`, at an `i` that a non-ASCII character follows, and at every character a
//! JSON writer may escape ([`crate::kql`]'s safe fragments), so what is left is in the
//! record's bytes in some ASCII case.

use regex_syntax::hir::literal::{ExtractKind, Extractor};
use regex_syntax::hir::{Hir, HirKind};

/// The mark that starts a literal matched whatever its ASCII case (a control
/// character no query value yields as a literal: those are cut at control bytes).
const ANY_CASE_MARK: char = '\u{1}';

/// The mark that starts a literal standing for a record's whole operation
/// ([`Literal::Operation`]).
const OPERATION_MARK: char = '\u{2}';

/// A prefilter literal as a searcher reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Literal<'a> {
    /// Bytes to find as they are.
    Exact(&'a str),
    /// ASCII text to find in any ASCII case (`HOUND`, `Hound`, `hound`).
    AnyCase(&'a str),
    /// The whole value of the record's operation (what a field's
    /// [`crate::Spelling::Exact`] gives for an exact action): a searcher may read each
    /// record's operation and compare it, or find the text as an exact literal (every
    /// record whose operation it is holds the text).
    Operation(&'a str),
    /// [`Literal::Operation`] whatever its ASCII case (lower case here).
    OperationAnyCase(&'a str),
}

impl<'a> Literal<'a> {
    /// Reads a literal from a set `required_literals` or `required_conjuncts` gave.
    pub fn parse(literal: &'a str) -> Literal<'a> {
        if let Some(text) = literal.strip_prefix(ANY_CASE_MARK) {
            Literal::AnyCase(text)
        } else if let Some(text) = literal.strip_prefix(OPERATION_MARK) {
            match text.strip_prefix(ANY_CASE_MARK) {
                Some(text) => Literal::OperationAnyCase(text),
                None => Literal::Operation(text),
            }
        } else {
            Literal::Exact(literal)
        }
    }

    /// The literal string for a record whose operation is `text`, whole.
    pub fn operation(text: &str) -> String {
        format!("{OPERATION_MARK}{text}")
    }

    /// The literal string for a record whose operation is `text`, whole, whatever its
    /// ASCII case.
    pub fn operation_any_case(text: &str) -> String {
        format!(
            "{OPERATION_MARK}{ANY_CASE_MARK}{}",
            text.to_ascii_lowercase()
        )
    }

    /// Whether it stands for a record's whole operation.
    pub fn is_operation(self) -> bool {
        matches!(self, Literal::Operation(_) | Literal::OperationAnyCase(_))
    }

    /// The literal string for `text` found in any ASCII case (as the languages write
    /// it into their sets; a text without letters is exact).
    pub fn any_case(text: &str) -> String {
        if text.bytes().any(|b| b.is_ascii_alphabetic()) {
            format!("{ANY_CASE_MARK}{text}")
        } else {
            text.to_string()
        }
    }

    /// The text searched for.
    pub fn text(self) -> &'a str {
        match self {
            Literal::Exact(t)
            | Literal::AnyCase(t)
            | Literal::Operation(t)
            | Literal::OperationAnyCase(t) => t,
        }
    }

    /// Whether the text is found in any ASCII case.
    pub fn ignores_case(self) -> bool {
        matches!(self, Literal::AnyCase(_) | Literal::OperationAnyCase(_))
    }

    /// Whether every line holding `self` holds `other` too (`self` contains it, in a
    /// way that keeps when case is ignored).
    /// A record's operation implies its text, and another operation only when they are
    /// the same; no text implies an operation.
    pub fn implies(self, other: Literal<'_>) -> bool {
        match (self, other) {
            (Literal::Exact(a) | Literal::Operation(a), Literal::Exact(b)) => a.contains(b),
            (Literal::Operation(a), Literal::Operation(b)) => a == b,
            (
                Literal::Operation(a) | Literal::OperationAnyCase(a),
                Literal::OperationAnyCase(b),
            ) => a.eq_ignore_ascii_case(b),
            (_, Literal::Operation(_) | Literal::OperationAnyCase(_)) => false,
            (_, Literal::AnyCase(b)) => self
                .text()
                .to_ascii_lowercase()
                .contains(&b.to_ascii_lowercase()),
            (Literal::AnyCase(_) | Literal::OperationAnyCase(_), Literal::Exact(_)) => false,
        }
    }
}

/// Whether a character of a caseless value may stand in a caseless literal: it and
/// everything the evaluators fold together with it is ASCII that no JSON writer
/// escapes (`next` is the character after it in the value, for `i`).
fn caseless_safe(c: char, next: Option<char>) -> bool {
    if !c.is_ascii() || c.is_ascii_control() || "\"\\/<>&'".contains(c) {
        return false;
    }
    match c.to_ascii_lowercase() {
        'k' | 's' => false,
        // `İ` folds to `i` and a combining dot: an `i` followed by anything but ASCII,
        // or ending the value (a record's text may go on with `İ`), may be that.
        'i' => next.is_some_and(|n| n.is_ascii()),
        _ => true,
    }
}

/// A query's prefilter as alternatives: every matching line meets one branch, a branch
/// being literal sets of which the line holds a literal of each (an empty branch: the
/// line may match with no literal known). The languages' `required_branches` give them
/// (a disjunction's clauses are branches, a conjunction's branches are the products of
/// its clauses' ones), so a conjunct that only one side of an `or` needs is checked on
/// the lines of that side's literals, not lost: `(action A and x) or (action B and y)`
/// checks `x` on the lines holding `A` and `y` on those holding `B`.
pub type Branches = Vec<Vec<Vec<String>>>;

/// How many branches a query keeps: past it, a conjunction's clause adds its sets to
/// every branch instead of multiplying them, and a disjunction is one branch of its
/// literals' union (what the prefilter searches either way).
pub const MAX_BRANCHES: usize = 16;

/// The branches of a conjunction whose clauses give `parts` (each clause's branches,
/// and the sets it needs whatever its branch, asked for only when they are too many to
/// multiply).
pub(crate) fn and_branches<N: FnOnce() -> Vec<Vec<String>>>(
    parts: impl IntoIterator<Item = (Branches, N)>,
) -> Branches {
    let mut out: Branches = vec![Vec::new()];
    for (branches, needed) in parts {
        if branches.len() <= 1 || out.len() * branches.len() > MAX_BRANCHES {
            let sets = match branches.len() {
                1 => branches.into_iter().next().unwrap_or_default(),
                _ => needed(),
            };
            for branch in &mut out {
                branch.extend(sets.iter().cloned());
            }
            continue;
        }
        out = out
            .iter()
            .flat_map(|a| {
                branches.iter().map(move |b| {
                    let mut both = a.clone();
                    both.extend(b.iter().cloned());
                    both
                })
            })
            .collect();
    }
    out
}

/// The branches of a disjunction whose clauses give `parts`, or `None` where they are
/// more than [`MAX_BRANCHES`] (the caller's one branch of its literals' union then
/// stands for them). A clause with an empty branch makes the whole one empty branch:
/// a line may match it with no literal known.
pub(crate) fn or_branches(parts: impl IntoIterator<Item = Branches>) -> Option<Branches> {
    let mut out: Branches = Vec::new();
    for branches in parts {
        for branch in branches {
            if branch.is_empty() {
                return Some(vec![Vec::new()]);
            }
            out.push(branch);
        }
    }
    (out.len() <= MAX_BRANCHES).then_some(out)
}

/// The shortest caseless literal worth searching.
const MIN_CASELESS: usize = 3;

/// The longest piece of a value compared without case that every matching record holds
/// in some ASCII case, as a literal string ([`Literal::any_case`]; exact when it has no
/// letter).
pub(crate) fn caseless_literal(value: &str) -> Option<String> {
    let chars: Vec<char> = value.chars().collect();
    let mut best: Option<(usize, usize)> = None;
    let mut start = 0;
    for i in 0..=chars.len() {
        let safe = i < chars.len() && caseless_safe(chars[i], chars.get(i + 1).copied());
        if safe {
            continue;
        }
        if i > start && best.is_none_or(|(a, b)| i - start > b - a) {
            best = Some((start, i));
        }
        start = i + 1;
    }
    // A piece of one or two characters is in most records in some case: the field's
    // key (the caller's fallback) filters better.
    let (a, b) = best.filter(|(a, b)| b - a >= MIN_CASELESS)?;
    Some(Literal::any_case(&chars[a..b].iter().collect::<String>()))
}

/// The literals a regular expression (Rust syntax, matching a whole value) requires:
/// a set one of which every matching value holds, as literal strings (caseless ones
/// when `insensitive`, the pattern then matching without case); `None` when no piece
/// of every match is sure.
///
/// Each suffix of the expression's top-level concatenation is asked for the prefixes
/// of its matches (regex-syntax's literal extractor): every match of the whole holds a
/// match of each suffix, so a finite prefix set of one is required. Each prefix is cut
/// to its longest safe piece; the set whose shortest piece is longest wins.
pub(crate) fn regex_literals(pattern: &str, insensitive: bool) -> Option<Vec<String>> {
    // Case folding is applied by the search, not the extractor: parsed as written, a
    // letter stays one literal byte instead of a class of its case variants.
    let hir = regex_syntax::ParserBuilder::new()
        .dot_matches_new_line(true)
        .build()
        .parse(pattern)
        .ok()?;
    let parts: Vec<Hir> = match hir.kind() {
        HirKind::Concat(parts) => parts.clone(),
        _ => vec![hir],
    };
    let mut extractor = Extractor::new();
    extractor.kind(ExtractKind::Prefix);
    (0..parts.len())
        .filter_map(|i| {
            let suffix = Hir::concat(parts[i..].to_vec());
            let seq = extractor.extract(&suffix);
            let mut out = Vec::new();
            for lit in seq.literals()? {
                let text = std::str::from_utf8(lit.as_bytes()).ok()?;
                out.push(if insensitive {
                    caseless_literal(text)?
                } else {
                    crate::kql::safe_fragment(text)?.to_string()
                });
            }
            out.sort();
            out.dedup();
            (!out.is_empty()).then_some(out)
        })
        .max_by_key(|set| {
            let shortest = set.iter().map(|l| Literal::parse(l).text().len()).min();
            (shortest, std::cmp::Reverse(set.len()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caseless_literals_skip_what_folds_outside_ascii() {
        assert_eq!(caseless_literal("hound"), Some("\u{1}hound".into()));
        // `s` also matches U+017F, `k` U+212A: the literal stops at them.
        assert_eq!(
            caseless_literal("sharphound"),
            Some("\u{1}harphound".into())
        );
        assert_eq!(caseless_literal("kali365"), Some("\u{1}ali365".into()));
        // An `i` before a non-ASCII character may be half of `İ`.
        assert_eq!(caseless_literal("abci\u{307}x"), Some("\u{1}abc".into()));
        assert_eq!(caseless_literal("abcix"), Some("\u{1}abcix".into()));
        // No letter: an exact literal; nothing safe: none.
        assert_eq!(caseless_literal("1099"), Some("1099".into()));
        assert_eq!(caseless_literal("ss/k"), None);
        assert_eq!(caseless_literal("ab"), None);
    }

    #[test]
    fn literals_read_back_and_imply() {
        let any = Literal::any_case("Hound");
        assert_eq!(Literal::parse(&any), Literal::AnyCase("Hound"));
        assert_eq!(Literal::parse("Hound"), Literal::Exact("Hound"));
        assert!(Literal::Exact("BloodHound").implies(Literal::AnyCase("hound")));
        assert!(Literal::AnyCase("bloodhound").implies(Literal::AnyCase("HOUND")));
        assert!(!Literal::AnyCase("bloodhound").implies(Literal::Exact("hound")));
        assert!(!Literal::Exact("bloodhound").implies(Literal::Exact("Hound")));
        let (long, short) = (
            Literal::operation("Set-MailboxX"),
            Literal::operation("Set-Mailbox"),
        );
        let (long, short) = (Literal::parse(&long), Literal::parse(&short));
        assert!(long.implies(Literal::Exact("Set-Mailbox")));
        assert!(long.implies(Literal::AnyCase("mailbox")));
        assert!(long.implies(long));
        assert!(
            !long.implies(short),
            "an operation is whole: no other one holds it"
        );
        assert!(!Literal::Exact("Set-MailboxX").implies(short));
        assert_eq!(short.text(), "Set-Mailbox");
        assert!(!short.ignores_case());
        let any = Literal::operation_any_case("Set-Mailbox");
        let any = Literal::parse(&any);
        assert_eq!(any, Literal::OperationAnyCase("set-mailbox"));
        assert!(any.ignores_case() && any.is_operation());
        assert!(short.implies(any) && any.implies(any) && !any.implies(short));
        assert!(any.implies(Literal::AnyCase("MAILBOX")));
        assert!(!any.implies(Literal::Exact("set-mailbox")));
        assert!(!long.implies(any));
    }

    #[test]
    fn a_regex_gives_the_pieces_every_match_holds() {
        let set = |p: &str, i: bool| regex_literals(p, i);
        assert_eq!(
            set("(azure|sharp|blood)(hound)/.*", true),
            Some(vec![
                "\u{1}azurehound".into(),
                "\u{1}bloodhound".into(),
                "\u{1}harphound".into()
            ])
        );
        assert_eq!(
            set(".*Invoke-Mimikatz.*", false),
            Some(vec!["Invoke-Mimikatz".into()])
        );
        assert_eq!(set(".*", false), None);
        assert_eq!(set("a|.*", false), None);
        assert_eq!(set("(", false), None);
    }
}
