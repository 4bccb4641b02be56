//! The byte prefilter: which lines could possibly match.
//!
//! Place in the flow: `scan` asks it for the next hit in a block of a chunk and widens
//! each hit to its line; only those lines are parsed. Contract (ripgrep's
//! `find_candidate_line`): false positives are fine, a false negative is a bug. The
//! literals come from the rules' parsed queries, never from a constant here. Several
//! literals are searched through rare four-byte windows of theirs ([`Windowed`]), so a
//! hit is a position inside a literal's line, not always the literal's first byte. The
//! [`Router`] then tells which rules a candidate may satisfy and turns it away when it
//! lacks another literal a rule needs.

use std::borrow::Cow;

use aho_corasick::packed;
use aho_corasick::{AhoCorasick, AhoCorasickKind, Input, MatchKind, Span};
use memchr::memmem;

use ualhunt_query::Literal;

use crate::enrich::Enrichment;
use crate::field::marked_record_type;
use crate::rule::Query;
use crate::rule::Rule;

pub(crate) mod frequency;
mod nibbles;

/// A compiled search for the literals the rules require.
// One prefilter exists per run; keeping the finder inline spares the hot loop a pointer hop.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Prefilter {
    /// Every non-blank line is a candidate (`--no-prefilter`, or a rule with no literal).
    Everything,
    /// One literal: memchr's SIMD substring search.
    One(memmem::Finder<'static>),
    /// A few literals: aho-corasick's packed Teddy searcher (SIMD over all of them at
    /// once) over rare windows of theirs ([`Windowed`]), chosen whenever it builds,
    /// whatever byte statistics aho-corasick's own prefilter heuristic would weigh (on
    /// audit text it picked a rare-byte search three to five times slower here).
    Packed {
        /// The searcher.
        searcher: Box<Windowed>,
        /// How many literals.
        count: usize,
        /// Length of the longest literal.
        longest: usize,
    },
    /// Literals matched whatever their ASCII case: the inner prefilter searches the
    /// lower-cased literals, through rare windows of theirs, in a lower-cased copy of
    /// the range (so it keeps its SIMD search; a case-insensitive automaton has none).
    /// The copy starts up to [`Prefilter::overlap`] bytes before the range, so a window
    /// found there is checked against its whole literal, as [`Windowed`] checks one.
    /// The scan collects its hits per block ([`Prefilter::hits`]: one copy a block).
    Folded(Box<Prefilter>),
    /// More literals than one Teddy searcher takes: groups of at most 64, each its own
    /// Teddy (SIMD) searcher. The scan collects every group's hits over a block once
    /// ([`Prefilter::hits`]), so no group rescans bytes; [`Prefilter::find`] takes the
    /// first hit of any group.
    Groups {
        /// One searcher per group.
        searchers: Vec<Windowed>,
        /// How many literals in all.
        count: usize,
        /// Length of the longest literal.
        longest: usize,
    },
    /// Literals matched whatever their ASCII case, and maybe exact ones beside them,
    /// over the bytes as they are, in one pass: a Teddy-style SIMD search through rare
    /// windows whose tables pass both cases of a caseless window's letters
    /// (`nibbles::Nibbles`; no lower-cased copy, no pattern per case variant).
    Nibbles(Box<nibbles::Nibbles>),
    /// Exact literals and caseless ones ([`Literal::AnyCase`]): each kind searched as
    /// it would be alone (the caseless ones through their windows in every case, no
    /// lower-cased copy of the block where they fit one Teddy searcher), their hits
    /// collected per block and merged ([`Prefilter::hits`]).
    Both {
        /// The search for the exact literals.
        exact: Box<Prefilter>,
        /// The search for the caseless ones ([`Prefilter::case_insensitive`]).
        any_case: Box<Prefilter>,
    },
    /// Several literals: aho-corasick.
    Many {
        /// The automaton.
        searcher: Box<AhoCorasick>,
        /// Length of the longest literal.
        longest: usize,
    },
}

impl Prefilter {
    /// Builds the prefilter for a rule set, as a run without GeoIP databases searches
    /// it: a line is a candidate when it contains a literal required by any rule. A
    /// rule that yields no literal disables filtering.
    pub fn for_rules(rules: &[Rule]) -> Prefilter {
        Prefilter::for_queries(rules.iter().map(|r| &r.query), &Enrichment::default())
    }

    /// Builds the prefilter for a set of queries (rule and context selections alike)
    /// as a run with `enrichment` searches them ([`Query::searched`]): a line is a
    /// candidate when it contains a literal required by any of them. A query that
    /// yields no literal disables filtering.
    pub fn for_queries<'q>(
        queries: impl IntoIterator<Item = &'q Query>,
        enrichment: &Enrichment,
    ) -> Prefilter {
        let mut literals = Vec::new();
        for query in queries {
            match query.searched(enrichment).literals {
                // A `RecordType` requirement is read from each record, not searched for.
                Some(set) => {
                    literals.extend(set.into_iter().filter(|l| marked_record_type(l).is_none()))
                }
                None => return Prefilter::Everything,
            }
        }
        Prefilter::from_literals(literals)
    }

    /// Builds a prefilter for a set of literals as the query crate writes them (exact
    /// ones and [`Literal::AnyCase`] ones; none: everything is a candidate).
    pub fn from_literals(literals: Vec<String>) -> Prefilter {
        let (caseless, exact): (Vec<String>, Vec<String>) = literals
            .into_iter()
            .partition(|l| Literal::parse(l).ignores_case());
        if caseless.is_empty() {
            return Prefilter::build(exact, false, true);
        }
        let caseless: Vec<String> = caseless
            .iter()
            .map(|l| Literal::parse(l).text().to_string())
            .collect();
        if !exact.is_empty()
            && let Some(both) = Prefilter::one_pass(&exact, &caseless)
        {
            return both;
        }
        let any_case = Prefilter::case_insensitive(caseless);
        match Prefilter::build(exact, false, true) {
            Prefilter::Everything => any_case,
            exact => Prefilter::Both {
                exact: Box::new(exact),
                any_case: Box::new(any_case),
            },
        }
    }

    /// Exact literals (as the query crate writes them) and caseless ones (their text)
    /// in one SIMD pass ([`Prefilter::Nibbles`]): the exact ones as [`Prefilter::build`]
    /// takes them (an operation as its text, [`Prefilter::exact_kept`]); `None` where it
    /// does not build (`nibbles::Nibbles::new`).
    fn one_pass(exact: &[String], caseless: &[String]) -> Option<Prefilter> {
        let lower = Prefilter::lower_kept(caseless);
        let texts = Prefilter::exact_kept(exact.iter().cloned().map(searched_text).collect());
        let exact: Vec<&[u8]> = texts.iter().map(|l| l.as_bytes()).collect();
        let lower: Vec<&[u8]> = lower.iter().map(|l| l.as_bytes()).collect();
        nibbles::Nibbles::new(&exact, &lower).map(|s| Prefilter::Nibbles(Box::new(s)))
    }

    /// Builds a prefilter for literals that match whatever their ASCII case (account
    /// names: `Alice@Contoso.com` is `alice@contoso.com`); none: everything.
    ///
    /// Each name is searched through a rare four-byte window of its own whatever its
    /// case, over the raw bytes ([`Prefilter::Nibbles`]: SIMD tables that pass both
    /// cases of a letter), a window found checked against the whole name
    /// case-insensitively (a name shorter than a window is its own). Without AVX2, the
    /// window's case variants (`e@co`, `E@co`, …) go to aho-corasick's Teddy where they
    /// fit one slim searcher (`CASE_VARIANTS`); else the lower-cased names are searched
    /// through rare windows of theirs in a lower-cased copy of each block
    /// ([`Prefilter::Folded`]).
    pub fn case_insensitive(literals: Vec<String>) -> Prefilter {
        Prefilter::nibbles(&literals)
            .or_else(|| Prefilter::case_windows(&literals))
            .unwrap_or_else(|| Prefilter::folded(literals))
    }

    /// The literals each once, none holding another (a line with it has the other, so
    /// it adds no candidate), none empty.
    fn exact_kept(mut literals: Vec<String>) -> Vec<String> {
        literals.sort();
        literals.dedup();
        literals.retain(|l| !l.is_empty());
        let all = literals.clone();
        literals.retain(|a| !all.iter().any(|b| b != a && a.contains(b.as_str())));
        literals
    }

    /// The literals in lower case, each once, none holding another (a line with it
    /// has the other), none empty.
    fn lower_kept(literals: &[String]) -> Vec<String> {
        Prefilter::exact_kept(literals.iter().map(|l| l.to_ascii_lowercase()).collect())
    }

    /// The search of [`nibbles::Nibbles`]; `None` without AVX2 or without a literal.
    fn nibbles(literals: &[String]) -> Option<Prefilter> {
        let lower = Prefilter::lower_kept(literals);
        let bytes: Vec<&[u8]> = lower.iter().map(|l| l.as_bytes()).collect();
        nibbles::Nibbles::new(&[], &bytes).map(|s| Prefilter::Nibbles(Box::new(s)))
    }

    /// The literals searched through rare windows, whatever their ASCII case, in a
    /// lower-cased copy of the haystack (the fallback of
    /// [`Prefilter::case_insensitive`]).
    pub fn folded(literals: Vec<String>) -> Prefilter {
        Prefilter::build(literals, true, true)
    }

    /// The case variants of each literal's four-byte window, all in one slim Teddy
    /// searcher (at most [`CASE_VARIANTS`] patterns); `None` when they do not fit, when
    /// there is no literal, or when Teddy does not build.
    fn case_windows(literals: &[String]) -> Option<Prefilter> {
        let lower = Prefilter::lower_kept(literals);
        if lower.is_empty() {
            return None;
        }
        let bytes: Vec<&[u8]> = lower.iter().map(|l| l.as_bytes()).collect();
        let searcher = Windowed::any_case(&bytes)?;
        Some(Prefilter::Packed {
            searcher: Box::new(searcher),
            count: lower.len(),
            longest: lower.iter().map(String::len).max().unwrap_or(0),
        })
    }

    /// `windows`: Teddy searches each literal from its rarest four bytes (a match
    /// found there is checked against the whole literal, which may begin before it:
    /// only [`Prefilter::find_at`] and [`Prefilter::hits`] see those bytes).
    fn build(literals: Vec<String>, ignore_case: bool, windows: bool) -> Prefilter {
        // An operation is searched for as its text here (only the router reads it).
        let literals: Vec<String> = literals.into_iter().map(searched_text).collect();
        if ignore_case {
            let lower = literals.iter().map(|l| l.to_ascii_lowercase()).collect();
            // Windows rare in lower-cased text, where both cases of a letter count.
            let rank: Rarity = rarity_any_case;
            return match Prefilter::build_ranked(lower, windows.then_some(rank)) {
                Prefilter::Everything => Prefilter::Everything,
                inner => Prefilter::Folded(Box::new(inner)),
            };
        }
        let rank: Rarity = rarity;
        Prefilter::build_ranked(literals, windows.then_some(rank))
    }

    /// The search for exact literals, each through the window `windows` ranks rarest
    /// (`None`: from its first bytes).
    fn build_ranked(literals: Vec<String>, windows: Option<Rarity>) -> Prefilter {
        let literals = Prefilter::exact_kept(literals);
        match literals.len() {
            0 => Prefilter::Everything,
            1 => Prefilter::One(memmem::Finder::new(literals[0].as_bytes()).into_owned()),
            _ => {
                let longest = literals.iter().map(String::len).max().unwrap_or(0);
                // Teddy: one searcher, or a rule pack's groups (a DFA over hundreds of
                // literals runs a state transition per byte, several times slower here).
                match Windowed::grouped(&literals, windows) {
                    Some(mut one) if one.len() == 1 => {
                        return Prefilter::Packed {
                            searcher: Box::new(one.remove(0)),
                            count: literals.len(),
                            longest,
                        };
                    }
                    Some(searchers) => {
                        return Prefilter::Groups {
                            searchers,
                            count: literals.len(),
                            longest,
                        };
                    }
                    None => {}
                }
                let built = AhoCorasick::builder()
                    .kind(Some(AhoCorasickKind::DFA))
                    .match_kind(MatchKind::LeftmostFirst)
                    .build(&literals);
                let searcher = match built {
                    Ok(s) => s,
                    // Too many literals for a DFA: let the builder pick a smaller kind.
                    Err(_) => AhoCorasick::builder()
                        .match_kind(MatchKind::LeftmostFirst)
                        .build(&literals)
                        // Non-empty literals always build without a size-bounded kind.
                        .expect("prefilter automaton builds"),
                };
                Prefilter::Many {
                    searcher: Box::new(searcher),
                    longest,
                }
            }
        }
    }

    /// The literals searched for, for `--stats` and tests.
    pub fn describe(&self) -> String {
        match self {
            Prefilter::Everything => "none (every line is parsed)".to_string(),
            Prefilter::One(f) => format!("{:?}", String::from_utf8_lossy(f.needle())),
            Prefilter::Packed {
                count, searcher, ..
            } if searcher.ignore_case => format!(
                "{count} literals (Teddy over every ASCII case of a window of each: {} \
                 patterns)",
                searcher.windows.len()
            ),
            Prefilter::Packed { count, .. } => format!("{count} literals (Teddy)"),
            Prefilter::Nibbles(s) => s.describe(),
            Prefilter::Groups {
                searchers, count, ..
            } => format!("{count} literals (Teddy, {} groups)", searchers.len()),
            Prefilter::Folded(inner) => format!(
                "{}, ASCII case folded (searched through windows in a lower-cased copy of each \
                 block)",
                inner.describe()
            ),
            Prefilter::Both { exact, any_case } => {
                format!(
                    "{}; and any case: {}",
                    exact.describe(),
                    any_case.describe()
                )
            }
            Prefilter::Many { searcher, .. } => {
                format!(
                    "{} literals (aho-corasick {:?})",
                    searcher.patterns_len(),
                    searcher.kind()
                )
            }
        }
    }

    /// Whether hits are collected per block with [`Prefilter::hits`] rather than found
    /// one after another.
    pub fn collects_hits(&self) -> bool {
        matches!(
            self,
            Prefilter::Groups { .. } | Prefilter::Both { .. } | Prefilter::Folded(_)
        )
    }

    /// Every hit in `data[from..to]` (of every group, a group's hits not overlapping
    /// one another), sorted, as positions in `data`; each group scans the range once.
    pub fn hits(&self, data: &[u8], from: usize, to: usize, out: &mut Vec<usize>) {
        out.clear();
        self.push_hits(data, from, to, out);
        if self.collects_hits() {
            out.sort_unstable();
            out.dedup();
        }
    }

    /// Appends the hits of `data[from..to]` to `out` (sorted within each searcher).
    fn push_hits(&self, data: &[u8], from: usize, to: usize, out: &mut Vec<usize>) {
        match self {
            Prefilter::Groups { searchers, .. } => {
                for s in searchers {
                    s.hits(data, from, to, out);
                }
            }
            Prefilter::Both { exact, any_case } => {
                exact.push_hits(data, from, to, out);
                any_case.push_hits(data, from, to, out);
            }
            Prefilter::Nibbles(s) => s.hits(data, from, to, out),
            Prefilter::Folded(inner) => {
                // Folded once for the whole range, not once per hit.
                let first = out.len();
                let back = from.saturating_sub(inner.overlap());
                with_folded(&data[back..to], |folded| {
                    inner.push_hits(folded, from - back, to - back, out)
                });
                for hit in &mut out[first..] {
                    *hit += back;
                }
            }
            _ => {
                let mut at = from;
                while let Some(hit) = self.find_at(data, at, to) {
                    out.push(hit);
                    at = hit + 1;
                }
            }
        }
    }

    /// Whether the haystack must be folded to ASCII lower case first.
    pub fn folds_case(&self) -> bool {
        matches!(self, Prefilter::Folded(_))
    }

    /// Whether every line is a candidate.
    pub fn is_everything(&self) -> bool {
        matches!(self, Prefilter::Everything)
    }

    /// How many bytes past a block's end a hit starting inside it can reach.
    pub fn overlap(&self) -> usize {
        match self {
            Prefilter::Everything => 0,
            Prefilter::One(f) => f.needle().len().saturating_sub(1),
            Prefilter::Packed { longest, .. }
            | Prefilter::Groups { longest, .. }
            | Prefilter::Many { longest, .. } => longest.saturating_sub(1),
            Prefilter::Nibbles(s) => s.longest().saturating_sub(1),
            Prefilter::Folded(inner) => inner.overlap(),
            Prefilter::Both { exact, any_case } => exact.overlap().max(any_case.overlap()),
        }
    }

    /// The offset of the first hit in `haystack` (a literal wholly inside it).
    #[inline]
    pub fn find(&self, haystack: &[u8]) -> Option<usize> {
        self.find_at(haystack, 0, haystack.len())
    }

    /// The first hit in `data[from..to]`, as a position in `data`. A hit is where a
    /// literal's searched window starts: the literal ends inside the range but may
    /// begin before `from` (the bytes before it are read to check it).
    #[inline]
    pub fn find_at(&self, data: &[u8], from: usize, to: usize) -> Option<usize> {
        match self {
            Prefilter::Everything => None,
            Prefilter::One(f) => f.find(&data[from..to]).map(|i| from + i),
            Prefilter::Packed { searcher, .. } => searcher.find_in(data, from, to),
            Prefilter::Nibbles(s) => s.find_at(data, from, to),
            Prefilter::Many { searcher, .. } => searcher
                .find(Input::new(data).span(from..to))
                .map(|m| m.start()),
            Prefilter::Groups { searchers, .. } => searchers
                .iter()
                .filter_map(|s| s.find_in(data, from, to))
                .min(),
            Prefilter::Folded(inner) => {
                let back = from.saturating_sub(inner.overlap());
                with_folded(&data[back..to], |folded| {
                    inner.find_at(folded, from - back, to - back)
                })
                .map(|i| back + i)
            }
            Prefilter::Both { exact, any_case } => {
                match (
                    exact.find_at(data, from, to),
                    any_case.find_at(data, from, to),
                ) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
        }
    }
}

/// The readers of `ualhunt_input` ask a prefilter whether a line they cannot hand over
/// (too long to hold, text between a document's records) held a literal.
impl ualhunt_input::Literals for Prefilter {
    fn find(&self, haystack: &[u8]) -> Option<usize> {
        Prefilter::find(self, haystack)
    }

    fn overlap(&self) -> usize {
        Prefilter::overlap(self)
    }
}

/// A Teddy (SIMD) search for up to 64 literals, each searched through four of its bytes
/// that are rare in audit text (a window; literals share one where they can): Teddy's
/// fingerprint is a pattern's first bytes, and a literal's own first bytes are often the
/// commonest (`Set-`, `Remove-`, `User…`). A window found is checked against the whole
/// literal around it before it counts, so a hit means what it meant before: a literal is
/// there.
#[derive(Clone, Debug)]
pub struct Windowed {
    searcher: packed::Searcher,
    /// The windows searched (pattern ids index them).
    windows: Vec<Box<[u8]>>,
    /// Pattern id -> the literals searched through that window.
    sources: Vec<Vec<Source>>,
    /// Pattern id -> the patterns that can match where it does (a prefix of it, or it
    /// of them: Teddy reports one of them there), itself included.
    related: Vec<Vec<u32>>,
    /// Every window is its whole literal: a match needs no check.
    whole: bool,
    /// Literals are lower case and match whatever their ASCII case (each case variant
    /// of a window is a pattern of its own).
    ignore_case: bool,
    /// Length of the longest literal.
    longest: usize,
}

/// A literal searched through a window.
#[derive(Clone, Debug)]
struct Source {
    /// Where the window starts in the literal.
    at: usize,
    literal: Box<[u8]>,
    /// Its index in the list the search was built from.
    index: u32,
}

impl Source {
    /// Whether the literal is in `data` with its window at `window`.
    #[inline]
    fn is_at(&self, data: &[u8], window: usize) -> bool {
        window >= self.at && data[window - self.at..].starts_with(&self.literal)
    }

    /// Whether the literal is in `data`, whatever its ASCII case, with its window at
    /// `window`.
    #[inline]
    fn is_at_any_case(&self, data: &[u8], window: usize) -> bool {
        window >= self.at
            && data[window - self.at..]
                .get(..self.literal.len())
                .is_some_and(|d| d.eq_ignore_ascii_case(&self.literal))
    }

    #[inline]
    fn is_at_as(&self, data: &[u8], window: usize, ignore_case: bool) -> bool {
        if ignore_case {
            self.is_at_any_case(data, window)
        } else {
            self.is_at(data, window)
        }
    }
}

impl Windowed {
    /// The search for `literals` (leftmost first, each through the window `windows`
    /// ranks rarest, `None`: whole): one searcher when their windows fit one (literals
    /// share windows, so more than 64 literals often do), else groups of [`GROUP`]
    /// literals, each group a pass over every byte (none for no literal); `None` when
    /// Teddy does not build.
    fn grouped<S: AsRef<[u8]>>(literals: &[S], windows: Option<Rarity>) -> Option<Vec<Windowed>> {
        let kind = packed::MatchKind::LeftmostFirst;
        if literals.is_empty() {
            return Some(Vec::new());
        }
        if let Some(all) = Windowed::ranked(literals, kind, windows) {
            return Some(vec![all]);
        }
        if literals.len() <= GROUP {
            return None;
        }
        literals
            .chunks(GROUP)
            .map(|group| Windowed::ranked(group, kind, windows))
            .collect()
    }

    /// The search for `literals`, each through the window `windows` ranks rarest
    /// (`None`: whole); `None` when Teddy does not build (no SIMD, or too many windows).
    fn ranked<S: AsRef<[u8]>>(
        literals: &[S],
        kind: packed::MatchKind,
        windows: Option<Rarity>,
    ) -> Option<Windowed> {
        let literals: Vec<&[u8]> = literals.iter().map(AsRef::as_ref).collect();
        let chosen = match windows {
            Some(rank) => shared_windows(&literals, rank),
            None => literals.iter().map(|l| (0, l.len())).collect(),
        };
        let mut patterns: Vec<(Box<[u8]>, Vec<Source>)> = Vec::new();
        for (index, (literal, (at, end))) in literals.iter().zip(chosen).enumerate() {
            let window = &literal[at..end];
            let source = Source {
                at,
                literal: Box::from(*literal),
                index: index as u32,
            };
            match patterns.iter_mut().find(|(w, _)| **w == *window) {
                Some((_, sources)) => sources.push(source),
                None => patterns.push((window.into(), vec![source])),
            }
        }
        Windowed::from_patterns(patterns, kind, false)
    }

    /// The search for lower-case literals whatever their ASCII case: every case
    /// variant of a four-byte window of each ([`case_window`]), in one slim Teddy
    /// searcher; `None` when there are more than [`CASE_VARIANTS`] variants or Teddy
    /// does not build. Each literal's first variant comes before any other variant, so
    /// Teddy gives each window a bucket of its own in turn (it puts a pattern whose
    /// bytes' low halves match an earlier one's in that one's bucket, as a letter's two
    /// cases do): while there are no more windows than buckets, the SIMD fingerprint is
    /// exactly the window in any case.
    fn any_case(lower: &[&[u8]]) -> Option<Windowed> {
        let patterns = case_patterns(lower, WINDOW);
        if patterns.len() > CASE_VARIANTS {
            return None;
        }
        let (first, rest): (Vec<_>, Vec<_>) = patterns
            .into_iter()
            .partition(|(w, _)| !w.iter().any(u8::is_ascii_uppercase));
        let patterns = first.into_iter().chain(rest).collect();
        Windowed::from_patterns(patterns, packed::MatchKind::LeftmostFirst, true)
    }

    /// A search for the windows given, each with the literals searched through it
    /// (`ignore_case`: slim Teddy, with no cap on the patterns but the packed
    /// searcher's own, [`CASE_VARIANTS`]).
    fn from_patterns(
        patterns: Vec<(Box<[u8]>, Vec<Source>)>,
        kind: packed::MatchKind,
        ignore_case: bool,
    ) -> Option<Windowed> {
        let (searched, sources): (Vec<Box<[u8]>>, Vec<Vec<Source>>) = patterns.into_iter().unzip();
        let related = searched
            .iter()
            .map(|a| {
                (0..searched.len() as u32)
                    .filter(|&j| {
                        let b = &searched[j as usize];
                        a.starts_with(b) || b.starts_with(a)
                    })
                    .collect()
            })
            .collect();
        let whole = sources
            .iter()
            .zip(&searched)
            .all(|(s, w)| s.iter().all(|s| s.at == 0 && s.literal.len() == w.len()));
        let longest = sources
            .iter()
            .flatten()
            .map(|s| s.literal.len())
            .max()
            .unwrap_or(0);
        // Case variants: slim (8 buckets, 32 bytes a step) measured faster than fat here,
        // and aho-corasick's cap of 64 patterns is a heuristic for distinct ones.
        let searcher = packed::Config::new()
            .match_kind(kind)
            .heuristic_pattern_limits(!ignore_case)
            .only_teddy_fat(ignore_case.then_some(false))
            .builder()
            .extend(&searched)
            .build()?;
        Some(Windowed {
            longest,
            searcher,
            windows: searched,
            sources,
            related,
            whole,
            ignore_case,
        })
    }

    /// The first window in `data[from..to]` whose literal is there in full.
    #[inline]
    fn find_in(&self, data: &[u8], from: usize, to: usize) -> Option<usize> {
        let mut at = from;
        while at < to {
            let m = self.searcher.find_in(data, Span::from(at..to))?;
            if self.whole || self.holds_literal(data, to, m.start(), m.pattern().as_usize()) {
                return Some(m.start());
            }
            at = m.start() + 1;
        }
        None
    }

    /// Appends every hit of `data[from..to]` to `out`, hits not overlapping.
    fn hits(&self, data: &[u8], from: usize, to: usize, out: &mut Vec<usize>) {
        let mut at = from;
        while at < to {
            let Some(m) = self.searcher.find_in(data, Span::from(at..to)) else {
                break;
            };
            if self.whole || self.holds_literal(data, to, m.start(), m.pattern().as_usize()) {
                out.push(m.start());
                at = m.end();
            } else {
                at = m.start() + 1;
            }
        }
    }

    /// Whether a literal searched through a window matching at `at` is there whole,
    /// ending by `to`.
    fn holds_literal(&self, data: &[u8], to: usize, at: usize, pattern: usize) -> bool {
        let data = &data[..to];
        self.related[pattern].iter().any(|&p| {
            let p = p as usize;
            data[at..].starts_with(&self.windows[p])
                && self.sources[p]
                    .iter()
                    .any(|s| s.is_at_as(data, at, self.ignore_case))
        })
    }

    /// Calls `found` with the index (in the list it was built from) of each literal in
    /// `data`, once per occurrence: every position where a window matches is tried.
    fn each_literal(&self, data: &[u8], mut found: impl FnMut(usize)) {
        self.each_hit(data, 0, data.len(), |_, i| found(i));
    }

    /// Calls `found` with the window's position and the literal's index (in the list it
    /// was built from) of each literal in `data` whose window starts in `from..to` and
    /// which ends by `to`, once per occurrence: every position where a window matches is
    /// tried, so no occurrence hides another.
    fn each_hit(&self, data: &[u8], from: usize, to: usize, mut found: impl FnMut(usize, usize)) {
        let data = &data[..to];
        let mut at = from;
        while at < to {
            let Some(m) = self.searcher.find_in(data, Span::from(at..to)) else {
                break;
            };
            let p = m.start();
            for &r in &self.related[m.pattern().as_usize()] {
                let r = r as usize;
                if !data[p..].starts_with(&self.windows[r]) {
                    continue;
                }
                for s in &self.sources[r] {
                    if s.is_at_as(data, p, self.ignore_case) {
                        found(p, s.index as usize);
                    }
                }
            }
            at = p + 1;
        }
    }
}

/// How many bytes of a literal are searched (Teddy's fingerprint is a pattern's first
/// four bytes).
const WINDOW: usize = 4;

/// How rare a window is in the text searched (lower is rarer).
type Rarity = fn(&[u8]) -> u32;

/// How rare four bytes are in audit text (lower is rarer): the sum of their
/// frequencies, and far more for a string common there as a whole (`User` is made of
/// middling bytes but starts three keys of every record).
fn rarity(window: &[u8]) -> u32 {
    let bytes: u32 = window
        .iter()
        .map(|&b| frequency::PER_MILLION[usize::from(b)])
        .sum();
    let common = <[u8; 4]>::try_from(window).is_ok_and(|w| {
        frequency::COMMON.binary_search(&w).is_ok() || in_common_text(&w, |a, b| a == b)
    });
    bytes + if common { 1_000_000 } else { 0 }
}

/// memchr's substring search with bytes ranked by their frequency in audit text
/// ([`frequency::PER_MILLION`]) rather than by its own table (of English and code): the
/// two bytes it compares first at every position are then the rarest in a record.
pub(crate) fn finder(needle: &[u8]) -> memmem::Finder<'static> {
    memmem::FinderBuilder::new().build_forward_with_ranker_owned(AuditRank, needle)
}

/// Each byte's rank by [`frequency::PER_MILLION`] (0 the rarest; ties by value).
#[derive(Clone, Copy, Debug)]
struct AuditRank;

impl memchr::arch::all::packedpair::HeuristicFrequencyRank for AuditRank {
    fn rank(&self, byte: u8) -> u8 {
        AUDIT_RANK[usize::from(byte)]
    }
}

/// [`AuditRank`]'s table: each byte's place among all 256 by frequency in audit text.
const AUDIT_RANK: [u8; 256] = {
    let f = frequency::PER_MILLION;
    let mut rank = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let mut below = 0;
        let mut c = 0;
        while c < 256 {
            if f[c] < f[b] || (f[c] == f[b] && c < b) {
                below += 1;
            }
            c += 1;
        }
        rank[b] = below as u8;
        b += 1;
    }
    rank
};

/// Text that most records of some kind hold, beyond what the sample archives the byte
/// table comes from show: the parts every browser's user agent shares (a sign-in's
/// `UserAgent`, and `ExtendedProperties` of others) and the null GUID, which empty
/// identifiers are written as. A window inside them is as common as a key's.
const COMMON_TEXT: [&[u8]; 3] = [
    b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/",
    b" Safari/537.36 Edg/ Firefox/ Mobile/",
    b"00000000-0000-0000-0000-000000000000",
];

/// Whether a window is in [`COMMON_TEXT`] (bytes compared by `eq`).
fn in_common_text(window: &[u8; 4], eq: impl Fn(&[u8], &[u8]) -> bool) -> bool {
    COMMON_TEXT
        .iter()
        .any(|text| text.windows(4).any(|w| eq(w, window)))
}

/// The window each literal is searched through, as a range of it: four of its bytes,
/// few enough distinct windows that Teddy keeps its fast layout. Each literal may use
/// any four bytes whose [`rarity`] is within half again its rarest's (plus a little, for
/// literals whose rarest bytes hardly occur); the window shared by the most literals
/// still without one is taken first, the rarer on a tie. A literal of four bytes or
/// fewer is searched whole.
///
/// `rarity` ranks the windows: [`rarity`] for literals searched as they are,
/// [`rarity_any_case`] for lower-cased ones searched in lower-cased text.
fn shared_windows(literals: &[&[u8]], rarity: Rarity) -> Vec<(usize, usize)> {
    // Each window's rarity is reckoned once (a pack's planning asks for thousands).
    let mut rarities: rustc_hash::FxHashMap<&[u8], u32> = Default::default();
    let admissible: Vec<Vec<&[u8]>> = literals
        .iter()
        .map(|l| {
            if l.len() <= WINDOW {
                rarities.entry(l).or_insert_with(|| rarity(l));
                return vec![*l];
            }
            let ranked: Vec<(&[u8], u32)> = l
                .windows(WINDOW)
                .map(|w| (w, *rarities.entry(w).or_insert_with(|| rarity(w))))
                .collect();
            let best = ranked.iter().map(|&(_, r)| r).min().unwrap_or(0);
            let limit = best.saturating_add(best / 2).saturating_add(1_000);
            ranked
                .into_iter()
                .filter(|&(_, r)| r <= limit)
                .map(|(w, _)| w)
                .collect()
        })
        .collect();
    // Every admissible window is ranked above.
    let rarity_of = |w: &[u8]| rarities[w];
    let mut chosen: Vec<Option<(usize, usize)>> = vec![None; literals.len()];
    // Each admissible window -> how many literals still without one admit it (kept as
    // literals are given theirs, not counted again each round).
    let mut counts: rustc_hash::FxHashMap<&[u8], usize> = Default::default();
    for windows in &admissible {
        for w in windows {
            *counts.entry(w).or_default() += 1;
        }
    }
    while chosen.iter().any(Option::is_none) {
        // The order is total (the bytes break the last tie): the map's order is moot.
        let Some((&window, _)) = counts.iter().filter(|(_, n)| **n > 0).max_by(|a, b| {
            a.1.cmp(b.1)
                .then(rarity_of(b.0).cmp(&rarity_of(a.0)))
                .then(b.0.cmp(a.0))
        }) else {
            break;
        };
        for (i, windows) in admissible.iter().enumerate() {
            if chosen[i].is_none() && windows.contains(&window) {
                for w in windows {
                    if let Some(n) = counts.get_mut(w) {
                        *n -= 1;
                    }
                }
                let at = memmem::find(literals[i], window).unwrap_or(0);
                chosen[i] = Some((at, at + window.len()));
            }
        }
    }
    chosen
        .into_iter()
        .zip(literals)
        .map(|(c, l)| c.unwrap_or((0, l.len())))
        .collect()
}

/// How rare four bytes are whatever their ASCII case (lower is rarer): each letter
/// counts as often as it occurs in either case, and the string is common if it is in
/// lower, capitalised or upper case.
fn rarity_any_case(window: &[u8]) -> u32 {
    let bytes: u32 = window
        .iter()
        .map(|&b| {
            let (lo, up) = (b.to_ascii_lowercase(), b.to_ascii_uppercase());
            let f = |c: u8| frequency::PER_MILLION[usize::from(c)];
            if lo == up { f(b) } else { f(lo) + f(up) }
        })
        .sum();
    let common = <[u8; 4]>::try_from(window).is_ok_and(|w| {
        let lower = w.map(|b| b.to_ascii_lowercase());
        let mut capital = lower;
        capital[0].make_ascii_uppercase();
        [lower, capital, w.map(|b| b.to_ascii_uppercase())]
            .iter()
            .any(|w| frequency::COMMON.binary_search(w).is_ok())
            || in_common_text(&w, |a, b| a.eq_ignore_ascii_case(b))
    });
    bytes + if common { 1_000_000 } else { 0 }
}

/// The window of `width` bytes a lower-case literal is searched through in every
/// case, as a range of it: among its windows as rare as [`shared_windows`] admits (by
/// [`rarity_any_case`]), the one with the fewest letters (fewest case variants), the
/// rarer on a tie. A literal of `width` bytes or fewer is searched whole.
fn case_window(literal: &[u8], width: usize) -> (usize, usize) {
    if literal.len() <= width {
        return (0, literal.len());
    }
    let ranked: Vec<(usize, &[u8], u32)> = literal
        .windows(width)
        .enumerate()
        .map(|(at, w)| (at, w, rarity_any_case(w)))
        .collect();
    let best = ranked.iter().map(|&(_, _, r)| r).min().unwrap_or(0);
    let limit = best.saturating_add(best / 2).saturating_add(1_000);
    let letters = |w: &[u8]| w.iter().filter(|b| b.is_ascii_alphabetic()).count();
    ranked
        .into_iter()
        .filter(|&(_, _, r)| r <= limit)
        .min_by_key(|&(at, w, r)| (letters(w), r, at))
        .map_or((0, width), |(at, _, _)| (at, at + width))
}

/// The most patterns one aho-corasick packed searcher takes (its `PATTERN_LIMIT`):
/// eight literals whose windows have four letters (16 variants each), one slim Teddy
/// bucket each. Measured on the first 128 MiB of the bench archive (machine loaded):
/// Elastic's 3 caseless literals, 48 variants, searched a block in about half the time
/// the 24 variants of three-byte windows did; Elastic's and Sigma's 38 in five such
/// searchers took longer than lower-casing a copy of the block and searching it
/// once ([`Prefilter::Folded`]).
const CASE_VARIANTS: usize = 128;

/// Every case variant of each lower-case literal's window of `width` bytes, each with
/// the literals searched through it (a literal's index is its place in `lower`).
fn case_patterns(lower: &[&[u8]], width: usize) -> Vec<(Box<[u8]>, Vec<Source>)> {
    let mut patterns: Vec<(Box<[u8]>, Vec<Source>)> = Vec::new();
    for (index, &literal) in lower.iter().enumerate() {
        let (at, end) = case_window(literal, width);
        let source = Source {
            at,
            literal: Box::from(literal),
            index: index as u32,
        };
        for variant in case_variants(&literal[at..end]) {
            match patterns.iter_mut().find(|(w, _)| **w == *variant) {
                Some((_, sources)) => sources.push(source.clone()),
                None => patterns.push((variant.into(), vec![source.clone()])),
            }
        }
    }
    patterns
}

/// Every ASCII case variant of `window` (two for each letter).
fn case_variants(window: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![window.to_ascii_lowercase()];
    for (i, b) in window.iter().enumerate() {
        if b.is_ascii_alphabetic() {
            let upper: Vec<Vec<u8>> = out
                .iter()
                .map(|v| {
                    let mut v = v.clone();
                    v[i].make_ascii_uppercase();
                    v
                })
                .collect();
            out.extend(upper);
        }
    }
    out
}

/// Which selections a candidate can satisfy: the literals of every selection in one
/// automaton whose pattern ids map back to the selections that require them, so a
/// candidate is evaluated only against the rules whose literals it holds. A selection
/// with no literal is evaluated on every candidate.
#[derive(Clone, Debug)]
pub struct Router {
    /// Lane (one alternative of a selection, [`Router::with_alternatives`]) -> its
    /// selection, in increasing order; everything below routes lanes.
    lanes: Vec<u32>,
    /// Every literal, searched as the prefilter searches them (Teddy over their
    /// windows), every occurrence of each reported: in one searcher when their windows
    /// fit one, else in groups of [`GROUP`]. Empty when a selection names an operation
    /// (`lane` searches then).
    groups: Vec<Windowed>,
    /// The operations ([`Literal::Operation`]), read from each line instead of searched
    /// for, and the search for the other literals; `None` when no selection names one.
    lane: Option<Lane>,
    /// Literal (numbered as `groups` are) -> the lanes that require it.
    by_pattern: Vec<Vec<u32>>,
    /// The search that tells the caseless literals ([`Literal::AnyCase`]) apart in a
    /// line the block search found one in, every occurrence in any ASCII case.
    caseless: Option<Caseless>,
    /// Caseless literal -> the lanes that require it.
    by_caseless: Vec<Vec<u32>>,
    /// The search over a block ([`Router::block_hits`]).
    block: Block,
    /// Lanes with no literal.
    always: Vec<u32>,
    /// Per lane: the literal sets it also needs beyond the one searched for
    /// (indices into `distinct`), checked on a candidate's bytes before it is parsed.
    conjuncts: Vec<Vec<u32>>,
    /// Every distinct literal set of `conjuncts` once: lanes needing the same set
    /// share one check of a line.
    distinct: Vec<Conjunct>,
    /// Whether a conjunct reads the `RecordType`.
    conjunct_types: bool,
    /// `RecordType` number -> the lanes that accept it (empty: no such lane).
    by_type: Vec<Vec<u32>>,
    /// The lanes that accept some `RecordType`: a record whose `RecordType`
    /// cannot be read goes to all of them.
    any_type: Vec<u32>,
}

impl Router {
    /// The router for selections that each require one of their literals (`None`: no
    /// literal, evaluated on every candidate) and, each, every set of `conjuncts` (one
    /// literal of each; the sets equal to the requirement are not checked twice).
    /// `None` when routing cannot narrow anything: every selection with literals
    /// requires the same ones and no more.
    pub fn new(
        requirements: &[Option<Vec<String>>],
        conjuncts: &[Vec<Vec<String>>],
    ) -> Option<Router> {
        let alternatives: Vec<Vec<Alternative>> = requirements
            .iter()
            .zip(conjuncts)
            .map(|(req, sets)| vec![(req.clone(), sets.clone())])
            .collect();
        Router::with_alternatives(&alternatives)
    }

    /// [`Router::new`] for selections that each may be met in several ways (a query's
    /// branches, [`ualhunt_query::Branches`]): each alternative routed and checked as a
    /// selection of its own (a lane), a candidate going to a selection when it may meet
    /// any of its alternatives.
    pub fn with_alternatives(alternatives: &[Vec<Alternative>]) -> Option<Router> {
        let mut lanes: Vec<u32> = Vec::new();
        let mut requirements: Vec<Option<Vec<String>>> = Vec::new();
        let mut conjuncts: Vec<Vec<Vec<String>>> = Vec::new();
        for (selection, alternatives) in alternatives.iter().enumerate() {
            for (req, sets) in alternatives {
                lanes.push(selection as u32);
                requirements.push(req.clone());
                conjuncts.push(sets.clone());
            }
        }
        let mut keys: Vec<Vec<String>> = Vec::new();
        let mut distinct: Vec<Conjunct> = Vec::new();
        let conjuncts: Vec<Vec<u32>> = requirements
            .iter()
            .zip(&conjuncts)
            .map(|(req, sets)| {
                // Each distinct set's search is built once, however many lanes need it.
                Conjunct::keys(req.as_deref(), sets)
                    .into_iter()
                    .map(|key| match keys.iter().position(|k| *k == key) {
                        Some(at) => at as u32,
                        None => {
                            distinct.push(Conjunct::of(&key));
                            keys.push(key);
                            (distinct.len() - 1) as u32
                        }
                    })
                    .collect()
            })
            .collect();
        let conjunct_types = distinct.iter().any(|c| !c.types.is_empty());
        let mut literals: Vec<&str> = Vec::new();
        let mut by_pattern: Vec<Vec<u32>> = Vec::new();
        let mut always = Vec::new();
        let mut by_type: Vec<Vec<u32>> = Vec::new();
        for (i, req) in requirements.iter().enumerate() {
            let Some(set) = req else {
                always.push(i as u32);
                continue;
            };
            for lit in set.iter().filter(|l| !l.is_empty()) {
                if let Some(n) = marked_record_type(lit) {
                    let n = usize::from(n);
                    if by_type.len() <= n {
                        by_type.resize(n + 1, Vec::new());
                    }
                    by_type[n].push(i as u32);
                    continue;
                }
                match literals.iter().position(|l| *l == lit.as_str()) {
                    Some(p) => by_pattern[p].push(i as u32),
                    None => {
                        literals.push(lit);
                        by_pattern.push(vec![i as u32]);
                    }
                }
            }
        }
        let mut sets: Vec<Vec<&String>> = requirements
            .iter()
            .flatten()
            .map(|set| {
                let mut v: Vec<&String> = set.iter().collect();
                v.sort();
                v.dedup();
                v
            })
            .collect();
        sets.dedup();
        // A `RecordType` requirement narrows even alone: without a router every line of
        // a pass whose only literals are record types would be parsed.
        if sets.len() <= 1 && conjuncts.iter().all(Vec::is_empty) && by_type.is_empty() {
            return None;
        }
        // A literal holding another one that routes to all its selections too need not
        // be searched (the TeamFiltration user agent holds `Electron`).
        for sels in &mut by_pattern {
            sels.sort_unstable();
            sels.dedup();
        }
        let redundant: Vec<bool> = (0..literals.len())
            .map(|i| {
                (0..literals.len()).any(|j| {
                    j != i
                        && Literal::parse(literals[i]).implies(Literal::parse(literals[j]))
                        && by_pattern[i].iter().all(|s| by_pattern[j].contains(s))
                        // Of two literals implying each other, the first is kept.
                        && !(j > i && Literal::parse(literals[j]).implies(Literal::parse(literals[i])))
                })
            })
            .collect();
        let kept = literals
            .into_iter()
            .zip(by_pattern)
            .zip(&redundant)
            .filter(|(_, r)| !**r)
            .map(|(pair, _)| pair);
        let (caseless, exact): (Routed, Routed) =
            kept.partition(|(l, _)| matches!(Literal::parse(l), Literal::AnyCase(_)));
        let (caseless, by_caseless): (Vec<&str>, Vec<Vec<u32>>) = caseless.into_iter().unzip();
        let (literals, by_pattern): (Vec<&str>, Vec<Vec<u32>>) = exact.into_iter().unzip();
        let lower: Vec<String> = caseless
            .iter()
            .map(|l| Literal::parse(l).text().to_ascii_lowercase())
            .collect();
        let caseless = match lower.is_empty() {
            true => None,
            false => Some(Caseless::new(&lower)?),
        };
        let lane = Lane::new(&literals)?;
        let groups = match lane {
            Some(_) => Vec::new(),
            None => Windowed::grouped(&literals, Some(rarity))?,
        };
        let block = match OnePass::new(lane.as_ref(), &literals, &lower) {
            Some(one) => Block::One(one),
            None => Block::Apart {
                rest: match &lane {
                    Some(lane) => Windowed::grouped(&lane.rest_texts, Some(rarity))?,
                    None => Vec::new(),
                },
                gate: (!lower.is_empty()).then(|| Prefilter::case_insensitive(lower.clone())),
            },
        };
        let mut any_type: Vec<u32> = by_type.iter().flatten().copied().collect();
        any_type.sort_unstable();
        any_type.dedup();
        Some(Router {
            lanes,
            groups,
            lane,
            by_pattern,
            caseless,
            by_caseless,
            block,
            always,
            conjuncts,
            distinct,
            conjunct_types,
            by_type,
            any_type,
        })
    }

    /// Writes into `out`, in increasing order, the selections `line` may satisfy (none:
    /// the line is no candidate after all).
    pub fn route(&self, line: &[u8], out: &mut Vec<u32>) {
        if self.lane.is_some() {
            return self.route_read(line, out);
        }
        out.clear();
        out.extend_from_slice(&self.always);
        for (g, searcher) in self.groups.iter().enumerate() {
            searcher.each_literal(line, |i| {
                out.extend_from_slice(&self.by_pattern[g * GROUP + i])
            });
        }
        self.route_rest(line, true, None, out);
    }

    /// [`Router::route`] for a router that reads operations: the block search and
    /// [`Router::operations`] over the line alone.
    fn route_read(&self, line: &[u8], out: &mut Vec<u32>) {
        let mut found = Vec::new();
        self.block_hits(line, 0, line.len(), &mut found);
        let mut read = Vec::new();
        self.operations(line, 0, Some(&found), &mut read);
        found.append(&mut read);
        self.route_found(line, found.into_iter().map(|(_, l)| l), None, out);
    }

    /// [`Router::route`] for a line whose literals the block search already found
    /// ([`Router::block_hits`]): `found` are the literals it holds, every occurrence of
    /// every exact literal in it among them, [`Router::CASELESS`] for a caseless hit
    /// (the caseless literals are told apart here, only in a line that has one).
    /// `record_type`: the line's `RecordType` number when the caller read it (`None`:
    /// read here if a check needs it).
    pub fn route_found(
        &self,
        line: &[u8],
        found: impl Iterator<Item = u32>,
        record_type: Option<Option<u16>>,
        out: &mut Vec<u32>,
    ) {
        out.clear();
        out.extend_from_slice(&self.always);
        let mut caseless = false;
        for literal in found {
            match self.by_pattern.get(literal as usize) {
                Some(sels) => out.extend_from_slice(sels),
                None => caseless |= literal == Router::CASELESS,
            }
        }
        self.route_rest(line, caseless, record_type, out);
    }

    /// The search over a block that stands for the prefilter's when routing: every
    /// occurrence of every exact literal whose window starts in `data[from..to]` and
    /// which ends by `to`, as (window position, literal), and each hit of the caseless
    /// literals, as (position, [`Router::CASELESS`]); sorted. A line is a candidate when
    /// it holds one: the same lines as the prefilter's search (the same literals, or
    /// literals they imply), with what [`Router::route_found`] needs, so no candidate
    /// is searched again.
    ///
    /// A router that reads operations ([`Router::reads_operations`]) searches for the
    /// other exact literals and the [`Router::GUARD`]s here; [`Router::operations`]
    /// tells the operations each line holds.
    pub fn block_hits(&self, data: &[u8], from: usize, to: usize, out: &mut Vec<(usize, u32)>) {
        out.clear();
        let (rest, gate) = match &self.block {
            Block::One(OnePass { search, ids }) => {
                search.each_hit(data, from, to, |at, i| out.push((at, ids[i as usize])));
                // Literals at one position come in no set order; caseless ones sharing a
                // window are one hit.
                out.sort_unstable();
                out.dedup();
                return;
            }
            Block::Apart { rest, gate } => (rest, gate),
        };
        match &self.lane {
            Some(lane) => {
                for (g, searcher) in rest.iter().enumerate() {
                    searcher.each_hit(data, from, to, |at, i| {
                        out.push((at, lane.rest_ids[g * GROUP + i]))
                    });
                }
            }
            None => {
                for (g, searcher) in self.groups.iter().enumerate() {
                    searcher.each_hit(data, from, to, |at, i| {
                        out.push((at, (g * GROUP + i) as u32))
                    });
                }
            }
        }
        if let Some(gate) = gate {
            let mut at = Vec::new();
            gate.hits(data, from, to, &mut at);
            out.extend(at.into_iter().map(|p| (p, Router::CASELESS)));
        }
        out.sort_unstable();
    }

    /// The literal of a caseless hit of [`Router::block_hits`].
    pub const CASELESS: u32 = u32::MAX;

    /// The literal of a hit of [`Router::block_hits`] that is no literal of a
    /// selection: a key or an escape (a record as JSON text, an ECS document's key, an
    /// escaped key) that may make the full parse read another operation than the one
    /// [`Router::operations`] reads.
    pub const GUARD: u32 = u32::MAX - 1;

    /// How many operations are read from each line ([`Router::operations`]).
    pub fn operations_read(&self) -> usize {
        self.lane.as_ref().map_or(0, |l| {
            l.text_ids.len() + l.lower.as_ref().map_or(0, |(_, ids)| ids.len())
        })
    }

    /// Whether some selection names an operation, which is read from each line
    /// ([`Router::operations`]) instead of searched for.
    pub fn reads_operations(&self) -> bool {
        self.lane.is_some()
    }

    /// Appends to `out` the operation literals `line` (at `at` in the data) holds, as
    /// `(at, literal)`, for a router that reads operations. A line with one
    /// `"Operation"` key whose value is a string, and with no guard (`found`:
    /// the block search's hits in the line, [`Router::block_hits`]; `None`: the line
    /// was not searched whole, and is searched for the guards here) is a candidate for
    /// the operation it names (its escapes decoded), whatever else it holds. Any other
    /// line (an ECS document, a wrapper, an export, a repeated or escaped key) is
    /// searched for the operations' names, as every line is when no operation is read
    /// (and is a candidate for the operation its one key names, if it has one).
    pub fn operations(
        &self,
        line: &[u8],
        at: usize,
        found: Option<&[(usize, u32)]>,
        out: &mut Vec<(usize, u32)>,
    ) {
        let Some(lane) = &self.lane else {
            return;
        };
        let guarded = match found {
            Some(found) => found.iter().any(|&(_, literal)| literal == Router::GUARD),
            None => lane.guards.find(line).is_some(),
        };
        let name = lane.operation(line);
        if let Some(name) = &name {
            // Looked up only where the name's sign is one of the names' (most lines'
            // operations are none of them).
            let sign = lower_sign(name);
            let (word, bit) = (sign / 64, 1u64 << (sign % 64));
            if lane.name_signs[word] & bit != 0
                && let Some(&literal) = lane.by_name.get(&**name)
            {
                out.push((at, literal));
            }
            if lane.lower_signs[word] & bit != 0 {
                // Lower-cased on the stack: names are short.
                let mut buf = [0u8; 64];
                let lower: Cow<[u8]> = match buf.get_mut(..name.len()) {
                    Some(b) => {
                        b.copy_from_slice(name);
                        b.make_ascii_lowercase();
                        Cow::Borrowed(b)
                    }
                    None => Cow::Owned(name.to_ascii_lowercase()),
                };
                if let Some(literals) = lane.by_lower.get(&*lower) {
                    out.extend(literals.iter().map(|&l| (at, l)));
                }
            }
        }
        if guarded || name.is_none() {
            for (g, searcher) in lane.texts.iter().enumerate() {
                searcher.each_literal(line, |i| out.push((at, lane.text_ids[g * GROUP + i])));
            }
            if let Some((search, ids)) = &lane.lower {
                search.each_literal(line, |i| out.push((at, ids[i])));
            }
        }
    }

    /// How many bytes past a block's end a literal whose window starts inside it can
    /// reach.
    pub fn overlap(&self) -> usize {
        match &self.block {
            Block::One(one) => one.search.longest().saturating_sub(1),
            Block::Apart { rest, gate } => {
                let exact = self.groups.iter().chain(rest).map(|g| g.longest).max();
                let caseless = gate.as_ref().map_or(0, Prefilter::overlap);
                exact.unwrap_or(0).saturating_sub(1).max(caseless)
            }
        }
    }

    /// The caseless literals (when `caseless`: the line may hold one), the
    /// `RecordType`s and the conjuncts of [`Router::route`] (`record_type`: as
    /// [`Router::route_found`] takes it).
    fn route_rest(
        &self,
        line: &[u8],
        caseless: bool,
        record_type: Option<Option<u16>>,
        out: &mut Vec<u32>,
    ) {
        if let Some(each) = self.caseless.as_ref().filter(|_| caseless) {
            each.each_literal(line, |i| out.extend_from_slice(&self.by_caseless[i]));
        }
        let record_type = if self.by_type.is_empty() && !self.conjunct_types {
            None
        } else {
            record_type.unwrap_or_else(|| crate::coverage::record_type_number(line))
        };
        if !self.by_type.is_empty() {
            match record_type {
                Some(n) => {
                    if let Some(sels) = self.by_type.get(usize::from(n)) {
                        out.extend_from_slice(sels);
                    }
                }
                // Unreadable: every selection that reads a `RecordType` evaluates it.
                None => out.extend_from_slice(&self.any_type),
            }
        }
        out.sort_unstable();
        out.dedup();
        // Each distinct set checked at most once per line (the first 64 remembered);
        // a lane whose selection another lane already routes is not checked.
        let (mut known, mut held) = (0u64, 0u64);
        let mut routed: Option<u32> = None;
        out.retain(|&i| {
            let selection = self.lanes[i as usize];
            if routed == Some(selection) {
                return false;
            }
            let holds = self.conjuncts[i as usize].iter().all(|&c| {
                let bit = 1u64.checked_shl(c).unwrap_or(0);
                if known & bit != 0 {
                    return held & bit != 0;
                }
                let holds = self.distinct[c as usize].holds(line, record_type);
                known |= bit;
                held |= if holds { bit } else { 0 };
                holds
            });
            if holds {
                routed = Some(selection);
            }
            holds
        });
        // Lanes to their selections (in order, so a selection's lanes are neighbours).
        for lane in out.iter_mut() {
            *lane = self.lanes[*lane as usize];
        }
    }

    /// Whether a candidate's bytes are checked for more literals (or record types)
    /// before it is parsed: some selection has a conjunct.
    pub fn checks_conjuncts(&self) -> bool {
        !self.distinct.is_empty()
    }

    /// The block search when it is one SIMD pass (`nibbles::Nibbles::describe`), for
    /// `--stats`; `None` when it is Teddy's and the caseless literals' own.
    pub fn describe_block(&self) -> Option<String> {
        match &self.block {
            Block::One(one) => Some(one.search.describe()),
            Block::Apart { .. } => None,
        }
    }

    /// How many distinct literals it searches for.
    pub fn literals(&self) -> usize {
        self.by_pattern.len() + self.by_caseless.len()
    }
}

/// The router's operations ([`Literal::Operation`]), read from each line, and the search
/// for the other exact literals and the guards.
#[derive(Clone, Debug)]
struct Lane {
    /// The exact literals that are no operation, and the guards ([`GUARDS`]), searched
    /// over each block ([`Block`]).
    rest_texts: Vec<Box<[u8]>>,
    /// Index in `rest` -> literal (as [`Router::block_hits`] numbers them) or guard.
    rest_ids: Vec<u32>,
    /// The operations' names, searched for in a line whose operation is not read.
    texts: Vec<Windowed>,
    /// Index in `texts` -> literal.
    text_ids: Vec<u32>,
    /// The names of the operations matched in any case, lower case, searched for in
    /// any case in a line whose operation is not read; index -> literal.
    lower: Option<(Caseless, Vec<u32>)>,
    /// Operation name -> its literal.
    by_name: rustc_hash::FxHashMap<Box<[u8]>, u32>,
    /// Operation name in lower case -> the literals matching it in any case.
    by_lower: rustc_hash::FxHashMap<Box<[u8]>, Vec<u32>>,
    /// The `by_name` names' [`lower_sign`]s, a bit each: a line's name whose sign is
    /// not set is none of them (most lines: it is not looked up).
    name_signs: Box<[u64; 64]>,
    /// The `by_lower` names' signs: a line's name whose sign is not set is in no case
    /// one of them (it is neither lower-cased nor looked up).
    lower_signs: Box<[u64; 64]>,
    /// The `"Operation"` key.
    key: memmem::Finder<'static>,
    /// The guards, for a line the block search did not see whole.
    guards: Prefilter,
}

/// The set of the names' [`lower_sign`]s, a bit each.
fn signs<'a>(names: impl Iterator<Item = &'a Box<[u8]>>) -> Box<[u64; 64]> {
    let mut set = Box::new([0u64; 64]);
    for name in names {
        let sign = lower_sign(name);
        set[sign / 64] |= 1 << (sign % 64);
    }
    set
}

/// A name's sign, the same in any ASCII case: its length and its first and last bytes
/// lower-cased, mixed into 0..4096.
fn lower_sign(name: &[u8]) -> usize {
    let (first, last) = match name {
        [] => (0, 0),
        [first, .., last] | [first @ last] => {
            (first.to_ascii_lowercase(), last.to_ascii_lowercase())
        }
    };
    let mixed = (name.len() as u32)
        .wrapping_mul(0x9e37_79b9)
        .wrapping_add(u32::from(first) << 8 | u32::from(last))
        .wrapping_mul(0x85eb_ca6b);
    (mixed >> 20) as usize
}

/// What, in a line with one `"Operation"` key, may make the full parse read another
/// operation than that key's (`record::Found`): a record held as JSON text
/// (`AuditData`, `auditData`: its keys are escaped), an ECS document's keys (`event`,
/// `event.*`: `event.action` is its action), or a key spelled with an escape
/// (`\u004f…`: an ASCII character escaped). A second `"Operation"` key is searched for
/// in the line ([`Lane::operation`]; as a guard it would be a hit on every line). A
/// wrapper holding the record as an object (`_source`, `o365audit`) needs none: the
/// one key is the record's, or the record has none.
const GUARDS: [&str; 3] = ["uditData\"", "\"event", "\\u00"];

impl Lane {
    /// The lane of a router's exact literals (numbered as they are listed); `Some(None)`
    /// when none is an operation, `None` when Teddy does not build.
    fn new(literals: &[&str]) -> Option<Option<Lane>> {
        if !literals.iter().any(|l| Literal::parse(l).is_operation()) {
            return Some(None);
        }
        let (mut rest, mut rest_ids, mut texts, mut text_ids) = (vec![], vec![], vec![], vec![]);
        let (mut lower, mut lower_ids) = (vec![], vec![]);
        let mut by_name = rustc_hash::FxHashMap::default();
        let mut by_lower: rustc_hash::FxHashMap<Box<[u8]>, Vec<u32>> = Default::default();
        for (i, l) in literals.iter().enumerate() {
            match Literal::parse(l) {
                Literal::Operation(text) => {
                    texts.push(text);
                    text_ids.push(i as u32);
                    by_name.insert(Box::from(text.as_bytes()), i as u32);
                }
                Literal::OperationAnyCase(text) => {
                    lower.push(text.to_string());
                    lower_ids.push(i as u32);
                    by_lower
                        .entry(Box::from(text.as_bytes()))
                        .or_default()
                        .push(i as u32);
                }
                literal => {
                    rest.push(literal.text());
                    rest_ids.push(i as u32);
                }
            }
        }
        for guard in GUARDS {
            rest.push(guard);
            rest_ids.push(Router::GUARD);
        }
        Some(Some(Lane {
            rest_texts: rest.iter().map(|t| Box::from(t.as_bytes())).collect(),
            rest_ids,
            texts: Windowed::grouped(&texts, Some(rarity))?,
            text_ids,
            lower: match lower.is_empty() {
                true => None,
                false => Some((Caseless::new(&lower)?, lower_ids)),
            },
            name_signs: signs(by_name.keys()),
            lower_signs: signs(by_lower.keys()),
            by_name,
            by_lower,
            key: finder(OPERATION_KEY),
            guards: Prefilter::build(GUARDS.map(String::from).to_vec(), false, true),
        }))
    }

    /// The name a line's one `"Operation"` key gives, when its value is a string (its
    /// escapes decoded); `None` for no such key, a second one (a repeated key: the
    /// full parse reads the last; or a nested one), or another value.
    fn operation<'a>(&self, line: &'a [u8]) -> Option<Cow<'a, [u8]>> {
        let mut keys = self.key.find_iter(line);
        let at = keys.next()?;
        if keys.next().is_some() {
            return None;
        }
        let value = line[at + OPERATION_KEY.len()..].strip_prefix(b":\"")?;
        let name = &value[..memchr::memchr(b'"', value)?];
        if !name.contains(&b'\\') {
            return Some(Cow::Borrowed(name));
        }
        // An escape (rare): the string as JSON reads it, up to its closing quote.
        let mut end = 0;
        loop {
            end += memchr::memchr(b'"', &value[end..])?;
            let escapes = value[..end].iter().rev().take_while(|&&b| b == b'\\');
            if escapes.count() % 2 == 0 {
                break;
            }
            end += 1;
        }
        let quoted = &line[at + OPERATION_KEY.len() + 1..][..end + 2];
        let text: String = serde_json::from_slice(quoted).ok()?;
        Some(Cow::Owned(text.into_bytes()))
    }
}

/// The key a raw record names its operation with.
const OPERATION_KEY: &[u8] = b"\"Operation\"";

/// The router's search over a block.
#[derive(Clone, Debug)]
enum Block {
    /// Everything in one SIMD pass.
    One(OnePass),
    /// Where that does not build: Teddy over the exact literals (`rest`: a reading
    /// router's, numbered by its lane's `rest_ids`; empty otherwise, its `groups`
    /// searching them) and the caseless literals' own search (`gate`), each a pass.
    Apart {
        rest: Vec<Windowed>,
        gate: Option<Prefilter>,
    },
}

/// The router's block search in one SIMD pass ([`nibbles::Nibbles`]), where the CPU
/// has AVX2 and every literal searched has a window's four bytes: the exact literals
/// (a reading router's: those that are no operation, and the [`GUARDS`]) and the
/// caseless ones.
#[derive(Clone, Debug)]
struct OnePass {
    search: nibbles::Nibbles,
    /// Literal (as `search` numbers them) -> the literal its hits carry (as
    /// `by_pattern` numbers them, [`Router::GUARD`], [`Router::CASELESS`]).
    ids: Vec<u32>,
}

impl OnePass {
    /// The search of a router's exact `literals` (a reading router's `lane` searches
    /// its own) and its caseless ones (`lower`, lower case); `None` where it does not
    /// build ([`nibbles::Nibbles::new`]).
    fn new(lane: Option<&Lane>, literals: &[&str], lower: &[String]) -> Option<OnePass> {
        let (exact, mut ids): (Vec<&[u8]>, Vec<u32>) = match lane {
            Some(lane) => (
                lane.rest_texts.iter().map(|t| &**t).collect(),
                lane.rest_ids.clone(),
            ),
            None => (
                literals.iter().map(|l| l.as_bytes()).collect(),
                (0..literals.len() as u32).collect(),
            ),
        };
        ids.extend(lower.iter().map(|_| Router::CASELESS));
        let lower: Vec<&[u8]> = lower.iter().map(String::as_bytes).collect();
        let search = nibbles::Nibbles::new(&exact, &lower)?;
        Some(OnePass { search, ids })
    }
}

/// How many literals a group of Teddy searchers holds when they do not all fit one
/// (a literal's index is its group's times this plus its own in the group).
const GROUP: usize = 64;

/// One way a selection may be met, for [`Router::with_alternatives`]: the literals one
/// of which it requires (`None`: none), and the literal sets it needs a literal of each.
pub type Alternative = (Option<Vec<String>>, Vec<Vec<String>>);

/// Literals, each with the selections that require it.
type Routed<'a> = Vec<(&'a str, Vec<u32>)>;

/// The router's search for caseless literals: every occurrence of each, in any ASCII
/// case, in one SIMD pass over the line (no automaton: one stepping through every byte
/// of every candidate cost more than the search that finds them).
#[derive(Clone, Debug)]
enum Caseless {
    /// The case variants of each literal's window, over the line as it is
    /// ([`Windowed::any_case`]).
    Variants(Windowed),
    /// Too many variants for one searcher: the lower-cased literals through rare
    /// windows, in groups of 64, over a lower-cased copy of the line.
    Folded(Vec<Windowed>),
}

impl Caseless {
    /// The search for lower-case literals; `None` when Teddy does not build.
    fn new(lower: &[String]) -> Option<Caseless> {
        let bytes: Vec<&[u8]> = lower.iter().map(String::as_bytes).collect();
        if let Some(searcher) = Windowed::any_case(&bytes) {
            return Some(Caseless::Variants(searcher));
        }
        let rank: Rarity = rarity_any_case;
        lower
            .chunks(64)
            .map(|group| Windowed::ranked(group, packed::MatchKind::LeftmostFirst, Some(rank)))
            .collect::<Option<Vec<Windowed>>>()
            .map(Caseless::Folded)
    }

    /// Calls `found` with the index of each literal in `line`, once per occurrence.
    fn each_literal(&self, line: &[u8], mut found: impl FnMut(usize)) {
        match self {
            Caseless::Variants(searcher) => searcher.each_literal(line, found),
            Caseless::Folded(groups) => with_folded(line, |folded| {
                for (g, searcher) in groups.iter().enumerate() {
                    searcher.each_literal(folded, |i| found(g * 64 + i));
                }
            }),
        }
    }
}

/// One more condition of a selection on a candidate's bytes: it holds one of the
/// literals, or its `RecordType` is one of the numbers (or cannot be read).
#[derive(Clone, Debug)]
struct Conjunct {
    /// The exact literals, any of them found in one search of the line (one SIMD
    /// substring search for one literal, Teddy over rare windows for several: a line
    /// lacking all of them is read once, not once per literal).
    texts: Prefilter,
    /// The caseless literals ([`Literal::AnyCase`]), any of them found in any case
    /// (through their windows' case variants, SIMD).
    caseless: Option<Prefilter>,
    types: Vec<u16>,
}

impl Conjunct {
    /// The conjuncts of a selection that requires `required` (searched for, so not
    /// checked again), each as its key (its literals sorted, once each), in the order
    /// they are checked: the `RecordType` ones first (read once per line), then the
    /// others by their longest literal (the likeliest to be missing).
    fn keys(required: Option<&[String]>, sets: &[Vec<String>]) -> Vec<Vec<String>> {
        let mut required: Vec<&String> = required.into_iter().flatten().collect();
        required.sort();
        required.dedup();
        let mut out: Vec<(bool, usize, Vec<String>)> = Vec::new();
        for set in sets {
            let mut sorted: Vec<&String> = set.iter().collect();
            sorted.sort();
            sorted.dedup();
            if sorted == required || sorted.iter().any(|l| l.is_empty()) {
                continue;
            }
            let typed = sorted.iter().any(|l| marked_record_type(l).is_some());
            let longest = sorted
                .iter()
                .filter(|l| marked_record_type(l).is_none())
                .map(|l| Literal::parse(l).text().len())
                .max()
                .unwrap_or(0);
            let key = sorted.into_iter().cloned().collect();
            out.push((!typed, usize::MAX - longest, key));
        }
        out.sort_by_key(|a| (a.0, a.1));
        out.into_iter().map(|(_, _, key)| key).collect()
    }

    /// The check of one conjunct, from its key ([`Conjunct::keys`]).
    fn of(key: &[String]) -> Conjunct {
        let types: Vec<u16> = key.iter().filter_map(|l| marked_record_type(l)).collect();
        let (caseless, exact): (Vec<&String>, Vec<&String>) = key
            .iter()
            .filter(|l| marked_record_type(l).is_none())
            .partition(|l| Literal::parse(l).ignores_case());
        let exact: Vec<String> = exact.iter().map(|l| l.to_string()).collect();
        let caseless: Vec<String> = caseless
            .iter()
            .map(|l| Literal::parse(l).text().to_string())
            .collect();
        // Several literals, or both kinds: one SIMD pass where it builds.
        if exact.len() + caseless.len() > 1
            && let Some(texts) = Prefilter::one_pass(&exact, &caseless)
        {
            return Conjunct {
                texts,
                caseless: None,
                types,
            };
        }
        let caseless = match caseless.is_empty() {
            true => None,
            false => Some(Prefilter::case_insensitive(caseless)),
        };
        Conjunct {
            texts: Prefilter::build(exact, false, true),
            caseless,
            types,
        }
    }

    /// Whether `line` (whose `RecordType` is `record_type`) meets this condition.
    fn holds(&self, line: &[u8], record_type: Option<u16>) -> bool {
        (!self.types.is_empty() && record_type.is_none_or(|n| self.types.contains(&n)))
            || self.texts.find(line).is_some()
            || self
                .caseless
                .as_ref()
                .is_some_and(|c| c.find(line).is_some())
    }
}

/// The text a literal string is searched for as: a [`Literal::Operation`]'s name, any
/// other literal string as it is.
fn searched_text(literal: String) -> String {
    match Literal::parse(&literal) {
        Literal::Operation(text) => text.to_string(),
        _ => literal,
    }
}

/// Why a query yields no prefilter literal, for `ualhunt rules` and `--stats`.
pub fn why_no_literal(query: &Query) -> String {
    let mut mapped: Vec<String> = query
        .fields()
        .into_iter()
        .filter(|f| !f.is_verbatim())
        .map(|f| f.name())
        .collect();
    mapped.sort();
    mapped.dedup();
    if let Query::Sigma(q) = query {
        let folded = q
            .folded_literals()
            .map(|l| {
                let texts: Vec<&str> = l.iter().map(|l| Literal::parse(l).text()).collect();
                texts.join(", ")
            })
            .unwrap_or_else(|| "none".into());
        return format!(
            "Sigma values match whatever their ASCII case: only cased values, runs without \
             letters and fields' keys give literals to a case-sensitive search (lower-cased \
             literals for a search that folds case: {folded})"
        );
    }
    if matches!(query, Query::Eql(_)) {
        // EQL compares most strings without case: their letters give no literal.
        let mapped = match mapped.is_empty() {
            true => String::new(),
            false => format!(
                ", or read fields raw records spell differently: {}",
                mapped.join(", ")
            ),
        };
        return format!(
            "its selective clauses are regexes or case-insensitive comparisons (: like~ \
             regex~ in~ and the ~ functions give only what has no letter case){mapped}"
        );
    }
    if mapped.is_empty() {
        "its clauses are negations, ranges, existence tests or wildcards without a safe fragment"
            .to_string()
    } else {
        format!(
            "its selective clauses read fields that raw records spell differently: {}",
            mapped.join(", ")
        )
    }
}

/// Writes `data` in ASCII lower case into `out` (same length, same offsets).
pub fn fold_into(data: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend(data.iter().map(u8::to_ascii_lowercase));
}

thread_local! {
    /// The lower-cased copy [`with_folded`] writes: one per thread, reused (a block's
    /// copy is megabytes).
    static FOLDED: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Calls `f` with `data` in ASCII lower case (a buffer of this thread's, taken for
/// the call: a nested call gets a fresh one).
fn with_folded<T>(data: &[u8], f: impl FnOnce(&[u8]) -> T) -> T {
    let mut folded = FOLDED.take();
    fold_into(data, &mut folded);
    let out = f(&folded);
    FOLDED.set(folded);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name's sign is its sign in any ASCII case (the caseless operations are
    /// looked up only for a name whose sign is set), and the signs spread.
    #[test]
    fn an_operation_names_sign_ignores_case() {
        let names = [
            "",
            "a",
            "Ab",
            "New-InboxRule",
            "UserLoginFailed",
            "Add-MailboxPermission",
        ];
        for name in names {
            let lower = name.to_ascii_lowercase();
            let upper = name.to_ascii_uppercase();
            let sign = lower_sign(name.as_bytes());
            assert!(sign < 4096);
            assert_eq!(sign, lower_sign(lower.as_bytes()), "{name}");
            assert_eq!(sign, lower_sign(upper.as_bytes()), "{name}");
        }
        let names: Vec<[u8; 3]> = (b'a'..=b'z')
            .flat_map(|a| (b'a'..=b'z').map(move |b| [a, b'-', b]))
            .collect();
        let signs: std::collections::HashSet<usize> = names.iter().map(|n| lower_sign(n)).collect();
        assert!(
            signs.len() > 550,
            "{} signs of {}",
            signs.len(),
            names.len()
        );
    }

    #[test]
    fn the_audit_rank_orders_every_byte_by_its_frequency() {
        let mut seen = [false; 256];
        let by_byte = AUDIT_RANK.iter().zip(frequency::PER_MILLION);
        for (b, (&rank, f)) in by_byte.clone().enumerate() {
            seen[usize::from(rank)] = true;
            for (c, (&other, g)) in by_byte.clone().enumerate() {
                assert!(f >= g || rank < other, "{b:#x} {c:#x}");
            }
        }
        assert!(seen.iter().all(|&s| s), "a rank per byte");
        let key = finder(OPERATION_KEY);
        assert_eq!(key.find(b"{\"Object\":1,\"Operation\":\"x\"}"), Some(12));
    }

    #[test]
    fn builtin_rule_gives_one_memmem_literal() {
        let p = Prefilter::for_rules(&Rule::builtin());
        assert!(matches!(p, Prefilter::One(_)), "{p:?}");
        assert_eq!(p.describe(), "\"Set-MailboxAuditBypassAssociation\"");
        assert_eq!(p.find(b"xx Set-MailboxAuditBypassAssociation"), Some(3));
        assert_eq!(p.find(b"set-mailboxauditbypassassociation"), None);
    }

    #[test]
    fn several_literals_use_aho_corasick() {
        let p = Prefilter::from_literals(vec!["New-InboxRule".into(), "Set-InboxRule".into()]);
        // A hit is inside the literal (where its searched window starts).
        assert!(
            p.find(b"....Set-InboxRule")
                .is_some_and(|i| (4..17).contains(&i))
        );
        assert_eq!(p.find(b"....Set-InboxRul"), None);
        assert_eq!(p.overlap(), 12);
        assert!(Prefilter::from_literals(vec![]).is_everything());
        let p = Prefilter::case_insensitive(vec!["Alice@Contoso.com".into()]);
        assert!(
            p.find(b"xx ALICE@contoso.COM")
                .is_some_and(|i| (3..20).contains(&i))
        );
        let p = Prefilter::folded(vec!["Alice@Contoso.com".into()]);
        assert_eq!(p.find(b"xx ALICE@contoso.COM"), Some(3));
        assert!(p.folds_case());
        let mut folded = Vec::new();
        fold_into(b"xx aLiCe@CONTOSO.com", &mut folded);
        assert_eq!(folded, b"xx alice@contoso.com");
    }

    #[test]
    fn the_folded_search_reads_a_literal_that_begins_before_its_range() {
        // More variants than one searcher takes: lower-cased windows in a folded copy.
        let animals = [
            "Kraken", "Walrus", "Jaguar", "Pelican", "Vulture", "Quokka", "Ferret", "Gazelle",
            "Hyena", "Iguana", "Lobster", "Narwhal",
        ];
        let names: Vec<String> = animals.iter().map(|a| format!("Set-Mailbox{a}")).collect();
        let folded = Prefilter::folded(names.clone());
        assert!(folded.folds_case(), "{}", folded.describe());
        assert!(folded.collects_hits());
        // The search over the raw bytes (where the CPU has AVX2) reads it the same way.
        let raw = Prefilter::case_insensitive(names.clone());
        assert_eq!(matches!(raw, Prefilter::Nibbles(_)), nibbles::has_avx2());
        for p in [&folded, &raw] {
            let lit = "sET-mAILBOXqUOKKA";
            let data = format!("....{lit}....");
            let end = 4 + lit.len();
            // The window is past the literal's start (`Set-` is common): a range starting
            // inside the literal, before its window, still holds it.
            let hit = p.find(data.as_bytes()).unwrap();
            assert!(hit > 4 && hit < end, "{hit}");
            assert_eq!(p.find_at(data.as_bytes(), hit, data.len()), Some(hit));
            let mut hits = Vec::new();
            p.hits(data.as_bytes(), hit, data.len(), &mut hits);
            assert_eq!(hits, [hit]);
            // Not past its end, nor past its window.
            assert_eq!(p.find_at(data.as_bytes(), 0, end - 1), None);
            p.hits(data.as_bytes(), hit + 1, data.len(), &mut hits);
            assert_eq!(hits, [] as [usize; 0]);
            // The lower-cased copy is never the text handed over.
            assert!(p.find(b"....set-mailboxquokk....").is_none());
        }
    }

    #[test]
    fn a_literal_is_searched_from_its_rarest_bytes_and_checked_whole() {
        // `Set-` starts many literals (and records); the window is further in.
        let lit = "Set-MailboxAuditBypassAssociation";
        let (at, end) = shared_windows(&[lit.as_bytes()], rarity)[0];
        assert!(at > 0 && end == at + WINDOW, "{at}..{end}");
        let p = Prefilter::from_literals(vec![lit.to_string(), "Remove-InboxRule".to_string()]);
        assert!(matches!(p, Prefilter::Packed { .. }), "{p:?}");
        // The window alone, or the literal cut before its window, is no hit.
        let window = &lit[at..end];
        assert_eq!(p.find(format!("xx {window} yy").as_bytes()), None);
        assert_eq!(p.find(format!("xx{}{window}", &lit[..at]).as_bytes()), None);
        // The literal may begin before the searched range: the bytes before are read.
        let data = format!("....{lit}....");
        let hit = p.find_at(data.as_bytes(), 6, data.len()).unwrap();
        assert!((6..4 + lit.len()).contains(&hit), "{hit}");
        // But not past its end: the range must hold the literal's end.
        assert_eq!(p.find_at(data.as_bytes(), 0, 4 + lit.len() - 1), None);
        let mut hits = Vec::new();
        let twice = format!("{lit}\n{lit}");
        p.hits(twice.as_bytes(), 0, twice.len(), &mut hits);
        assert_eq!(hits.len(), 2, "{hits:?}");
    }

    #[test]
    fn literals_sharing_a_window_or_its_start_are_each_checked() {
        // Both end in `tRule`-like windows; one window may be a prefix of another.
        let lits = [
            "Disable-TransportRule",
            "Remove-TransportRule",
            "TransportRuleX",
        ];
        let p = Prefilter::from_literals(lits.iter().map(|l| l.to_string()).collect());
        for l in lits {
            assert!(p.find(format!("..{l}..").as_bytes()).is_some(), "{l}");
        }
        assert_eq!(p.find(b"..New-TransportRule.."), None);
        // More than one Teddy takes: groups, each checked the same way.
        let many: Vec<String> = (0..150).map(|i| format!("Set-Literal{i:03}Zq")).collect();
        let p = Prefilter::from_literals(many.clone());
        assert!(matches!(p, Prefilter::Groups { .. }), "{}", p.describe());
        for l in &many {
            let data = format!("{{\"Operation\":\"{l}\"}}");
            assert!(p.find(data.as_bytes()).is_some(), "{l}");
        }
        assert_eq!(p.find(b"Set-Literal150Zq Literal001Zq"), None);
    }

    #[test]
    fn a_candidate_must_hold_every_conjunct_of_a_selection() {
        let mark = |n: u16| format!("{}{n}", crate::field::RECORD_TYPE_MARK);
        let reqs = vec![
            Some(vec!["MailItemsAccessed".to_string()]),
            Some(vec!["Remove-InboxRule".to_string()]),
        ];
        let conjuncts = vec![
            vec![
                vec!["MailItemsAccessed".to_string()],
                vec![mark(50)],
                vec!["IsThrottled".to_string(), "OperationCount".to_string()],
            ],
            vec![],
        ];
        let router = Router::new(&reqs, &conjuncts).unwrap();
        let mut out = Vec::new();
        let line = |rt: &str, more: &str| {
            format!("{{\"Operation\":\"MailItemsAccessed\",{rt}\"x\":\"{more}\"}}")
        };
        router.route(
            line("\"RecordType\":50,", "IsThrottled").as_bytes(),
            &mut out,
        );
        assert_eq!(out, [0]);
        // Another RecordType, or no literal of the third set: no candidate.
        router.route(
            line("\"RecordType\":2,", "IsThrottled").as_bytes(),
            &mut out,
        );
        assert_eq!(out, [] as [u32; 0]);
        router.route(line("\"RecordType\":50,", "nothing").as_bytes(), &mut out);
        assert_eq!(out, [] as [u32; 0]);
        // A RecordType that cannot be read: evaluated in full.
        router.route(line("", "OperationCount").as_bytes(), &mut out);
        assert_eq!(out, [0]);
    }

    #[test]
    fn the_router_maps_literals_back_to_their_selections() {
        let reqs = vec![
            Some(vec!["New-InboxRule".to_string()]),
            Some(vec!["New-Inbox".to_string(), "Set-InboxRule".to_string()]),
            None,
            Some(vec!["New-InboxRule".to_string()]),
        ];
        let router = Router::new(&reqs, &[vec![], vec![], vec![], vec![]]).unwrap();
        assert_eq!(router.literals(), 3);
        let mut out = Vec::new();
        // Overlapping: "New-Inbox" inside "New-InboxRule" routes to both.
        router.route(b"{\"Operation\":\"New-InboxRule\"}", &mut out);
        assert_eq!(out, [0, 1, 2, 3]);
        router.route(b"Set-InboxRule", &mut out);
        assert_eq!(out, [1, 2]);
        router.route(b"nothing", &mut out);
        assert_eq!(out, [2]);
        // One literal set shared by every selection: nothing to route.
        let same = vec![Some(vec!["A".to_string()]), Some(vec!["A".to_string()])];
        assert!(Router::new(&same, &[vec![], vec![]]).is_none());
    }

    /// Flips the case of the letters of `s` where `flips` (cycled) says so.
    fn recase(s: &str, flips: &[bool]) -> String {
        s.chars()
            .zip(flips.iter().cycle())
            .map(|(c, &f)| {
                if f {
                    if c.is_ascii_lowercase() {
                        c.to_ascii_uppercase()
                    } else {
                        c.to_ascii_lowercase()
                    }
                } else {
                    c
                }
            })
            .collect()
    }

    #[test]
    fn watched_names_are_searched_through_windows_in_every_case() {
        let p =
            Prefilter::case_insensitive(vec!["Alice@Contoso.com".into(), "svc-backup01".into()]);
        assert!(!p.folds_case(), "{}", p.describe());
        let line = br#"{"UserId":"ALICE@contoso.COM","Operation":"x"}"#;
        assert!(p.find(line).is_some());
        assert!(p.find(br#"{"UserId":"SVC-Backup01@x"}"#).is_some());
        assert!(p.find(br#"{"UserId":"alice@contoso.co"}"#).is_none());
        assert_eq!(case_variants(b"e@co").len(), 8);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, ..Default::default() })]

        /// The windowed search in every case finds a name in exactly the lines the
        /// folded search (a lower-cased copy of each block) finds it in, both through
        /// `find` and through the hits the scan collects.
        #[test]
        fn case_windows_find_what_the_folded_search_finds(
            names in proptest::collection::vec("[a-zA-Z0-9@._ -]{3,24}", 1..100),
            noise in proptest::collection::vec("[a-zA-Z0-9@._ :,{}\"-]{0,60}", 1..30),
            picks in proptest::collection::vec((0usize..128, proptest::collection::vec(proptest::bool::ANY, 1..9), 0usize..60), 0..40),
            cut in 0usize..2000,
        ) {
            let fast = Prefilter::case_insensitive(names.clone());
            let folded = Prefilter::folded(names.clone());
            let mut data = Vec::new();
            let mut lines = Vec::new();
            for (i, n) in noise.iter().enumerate() {
                let mut line = n.clone();
                for (pick, flips, at) in picks.iter().filter(|p| p.0 % noise.len() == i) {
                    // Cut the noise at a char boundary (all ASCII) and insert a name, its
                    // case flipped, sometimes cut short.
                    let name = recase(&names[pick % names.len()], flips);
                    let name = if flips[0] && flips.len() > 3 { &name[..name.len() - 1] } else { &name[..] };
                    let at = (*at).min(line.len());
                    line.insert_str(at, name);
                }
                lines.push(line.clone());
                data.extend_from_slice(line.as_bytes());
                data.push(b'\n');
            }
            let lowered: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
            for line in &lines {
                let lower = line.to_ascii_lowercase();
                let naive = lowered.iter().any(|n| lower.contains(n.as_str()));
                proptest::prop_assert_eq!(folded.find(line.as_bytes()).is_some(), naive, "{}", line);
                proptest::prop_assert_eq!(fast.find(line.as_bytes()).is_some(), naive, "{} {}", line, fast.describe());
            }
            // The hits over the whole text, widened to lines, as the scan takes them.
            let line_of = |hit: usize| data[..hit].iter().filter(|&&b| b == b'\n').count();
            let mut hit_lines = Vec::new();
            fast.hits(&data, 0, data.len(), &mut hit_lines);
            let mut hit_lines: Vec<usize> = hit_lines.into_iter().map(line_of).collect();
            hit_lines.dedup();
            let expected: Vec<usize> = lines
                .iter()
                .enumerate()
                .filter(|(_, l)| {
                    let lower = l.to_ascii_lowercase();
                    lowered.iter().any(|n| lower.contains(n.as_str()))
                })
                .map(|(i, _)| i)
                .collect();
            proptest::prop_assert_eq!(&hit_lines, &expected);
            // Two blocks cut anywhere, as the scan searches them: the first reaches
            // `overlap` bytes past the cut and keeps the hits before it; the second
            // starts at the cut, a literal straddling it found from its window.
            let cut = cut.min(data.len());
            for p in [&fast, &folded] {
                let mut lines_found = Vec::new();
                let mut hits = Vec::new();
                p.hits(&data, 0, (cut + p.overlap()).min(data.len()), &mut hits);
                lines_found.extend(hits.iter().filter(|&&h| h < cut).map(|&h| line_of(h)));
                p.hits(&data, cut, data.len(), &mut hits);
                lines_found.extend(hits.iter().map(|&h| line_of(h)));
                lines_found.sort_unstable();
                lines_found.dedup();
                proptest::prop_assert_eq!(&lines_found, &expected, "cut {} {}", cut, p.describe());
            }
        }

        /// Exact and caseless literals together ([`Prefilter::Both`]): a line is a hit
        /// exactly when it holds an exact literal as it is or a caseless one in any case,
        /// through `find` and through the hits the scan collects; the router sends a
        /// line to exactly the selections whose literal it holds.
        #[test]
        fn exact_and_caseless_literals_are_found_as_a_naive_search_finds_them(
            exact in proptest::collection::vec(("[a-zA-Z0-9._-]{3,16}", proptest::bool::ANY), 0..6),
            caseless in proptest::collection::vec("[a-zA-Z0-9._ -]{3,16}", 1..90),
            noise in proptest::collection::vec("[a-zA-Z0-9._ :,{}\"-]{0,60}", 1..30),
            picks in proptest::collection::vec((0usize..128, proptest::collection::vec(proptest::bool::ANY, 1..9), 0usize..60), 0..40),
        ) {
            // Some exact literals are operations (a line without an `Operation` key is
            // searched for their names).
            let exact: Vec<String> = exact
                .iter()
                .map(|(l, op)| if *op { Literal::operation(l) } else { l.clone() })
                .collect();
            let marked: Vec<String> = caseless.iter().map(|l| Literal::any_case(l)).collect();
            let all: Vec<String> = exact.iter().cloned().chain(marked.iter().cloned()).collect();
            let p = Prefilter::from_literals(all.clone());
            let holds = |line: &str| -> Vec<usize> {
                let lower = line.to_ascii_lowercase();
                all.iter()
                    .enumerate()
                    .filter(|(_, l)| match Literal::parse(l) {
                        Literal::Exact(t) | Literal::Operation(t) => line.contains(t),
                        Literal::AnyCase(t) | Literal::OperationAnyCase(t) => {
                            lower.contains(&t.to_ascii_lowercase())
                        }
                    })
                    .map(|(i, _)| i)
                    .collect()
            };
            let mut data = Vec::new();
            let mut lines = Vec::new();
            for (i, n) in noise.iter().enumerate() {
                let mut line = n.clone();
                for (pick, flips, at) in picks.iter().filter(|p| p.0 % noise.len() == i) {
                    let literal = Literal::parse(&all[pick % all.len()]).text();
                    let literal = recase(literal, flips);
                    let at = (*at).min(line.len());
                    line.insert_str(at, &literal);
                }
                lines.push(line.clone());
                data.extend_from_slice(line.as_bytes());
                data.push(b'\n');
            }
            for line in &lines {
                let naive = !holds(line).is_empty();
                proptest::prop_assert_eq!(p.find(line.as_bytes()).is_some(), naive, "{} {}", line, p.describe());
            }
            let line_of = |hit: usize| data[..hit].iter().filter(|&&b| b == b'\n').count();
            let mut hits = Vec::new();
            p.hits(&data, 0, data.len(), &mut hits);
            let mut hit_lines: Vec<usize> = hits.into_iter().map(line_of).collect();
            hit_lines.dedup();
            let expected: Vec<usize> = lines
                .iter()
                .enumerate()
                .filter(|(_, l)| !holds(l).is_empty())
                .map(|(i, _)| i)
                .collect();
            proptest::prop_assert_eq!(hit_lines, expected);
            // One selection per literal, and one needing every literal: the router.
            let mut reqs: Vec<Option<Vec<String>>> = all.iter().map(|l| Some(vec![l.clone()])).collect();
            reqs.push(None);
            let conjuncts: Vec<Vec<Vec<String>>> = vec![vec![]; reqs.len()];
            if let Some(router) = Router::new(&reqs, &conjuncts) {
                let mut out = Vec::new();
                for line in &lines {
                    router.route(line.as_bytes(), &mut out);
                    let held = holds(line);
                    let mut expected: Vec<u32> = held.iter().map(|&i| i as u32).collect();
                    // Equal literals are one selection's literal each.
                    expected.extend(
                        (0..all.len())
                            .filter(|&i| all.iter().enumerate().any(|(j, l)| j != i && held.contains(&j) && *l == all[i]))
                            .map(|i| i as u32),
                    );
                    expected.push(all.len() as u32);
                    expected.sort_unstable();
                    expected.dedup();
                    proptest::prop_assert_eq!(&out, &expected, "{}", line);
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, ..Default::default() })]

        /// A selection is routed exactly when the line meets one of its alternatives:
        /// holds one of that alternative's literals and one literal of each of its
        /// conjunct sets (exact ones as they are, caseless ones in any case), whether
        /// sets are shared between selections (checked once per line) or not, and
        /// whatever the sets' sizes (one literal, several, over 64).
        #[test]
        fn conjuncts_route_as_a_naive_check_of_each_set(
            pool in proptest::collection::vec("[abAB.-]{1,7}", 2..12),
            sets in proptest::collection::vec(
                (proptest::collection::vec(0usize..12, 1..4), proptest::bool::ANY), 1..6),
            selections in proptest::collection::vec(
                proptest::collection::vec(
                    (0usize..12, proptest::collection::vec(0usize..6, 0..3)), 1..4),
                1..8),
            wide in 0usize..3,
            lines in proptest::collection::vec("[abAB.-]{0,60}", 1..20),
        ) {
            let text = |l: &String| Literal::parse(l).text().to_string();
            let sets: Vec<Vec<String>> = sets
                .iter()
                .enumerate()
                .map(|(n, (picks, caseless))| {
                    let mut set: Vec<String> = picks
                        .iter()
                        .map(|&i| pool[i % pool.len()].clone())
                        .map(|l| if *caseless { Literal::any_case(&l.to_ascii_lowercase()) } else { l })
                        .collect();
                    // A set of more literals than one Teddy searcher takes.
                    if n == 0 && wide == 0 {
                        set.extend((0..70).map(|i| format!("{i:03}zz")));
                    }
                    set
                })
                .collect();
            let alternatives: Vec<Vec<Alternative>> = selections
                .iter()
                .map(|alternatives| {
                    alternatives
                        .iter()
                        .map(|(r, c)| {
                            let req = Some(vec![pool[r % pool.len()].clone()]);
                            (req, c.iter().map(|&k| sets[k % sets.len()].clone()).collect())
                        })
                        .collect()
                })
                .collect();
            let router = match alternatives.iter().all(|a| a.len() == 1) {
                true => {
                    let (reqs, conjuncts): (Vec<_>, Vec<_>) =
                        alternatives.iter().map(|a| a[0].clone()).unzip();
                    Router::new(&reqs, &conjuncts)
                }
                false => Router::with_alternatives(&alternatives),
            };
            let Some(router) = router else {
                return Ok(());
            };
            let holds = |line: &str, l: &String| match Literal::parse(l).ignores_case() {
                true => line.to_ascii_lowercase().contains(&text(l).to_ascii_lowercase()),
                false => line.contains(l.as_str()),
            };
            let mut out = Vec::new();
            for (n, line) in lines.iter().enumerate() {
                // Some lines hold the literals themselves.
                let line = format!("{line}{}{}", pool[n % pool.len()], text(&sets[n % sets.len()][0]));
                router.route(line.as_bytes(), &mut out);
                let expected: Vec<u32> = (0..alternatives.len())
                    .filter(|&i| {
                        alternatives[i].iter().any(|(req, conjuncts)| {
                            req.as_ref().is_none_or(|r| r.iter().any(|l| holds(&line, l)))
                                && conjuncts.iter().all(|set| set.iter().any(|l| holds(&line, l)))
                        })
                    })
                    .map(|i| i as u32)
                    .collect();
                proptest::prop_assert_eq!(&out, &expected, "{}", line);
            }
        }

        /// The block search of a router ([`Router::block_hits`]) finds every occurrence
        /// of every literal, so the route of a line from its hits is the route of a
        /// search of the line, for literals that overlap, hold one another and share
        /// windows, over any stretch of the data (the scan's blocks).
        #[test]
        fn the_routers_block_hits_route_a_line_as_searching_it_does(
            exact in proptest::collection::vec("[abAB.-]{1,9}", 1..70),
            caseless in proptest::collection::vec("[ab.]{3,6}", 0..3),
            noise in proptest::collection::vec("[abAB.-]{0,40}", 1..30),
            picks in proptest::collection::vec((0usize..128, 0usize..40), 0..60),
            cut in (0usize..2000, 0usize..2000),
        ) {
            let all: Vec<String> = exact
                .iter()
                .cloned()
                .chain(caseless.iter().map(|l| Literal::any_case(l)))
                .collect();
            let mut reqs: Vec<Option<Vec<String>>> = all.iter().map(|l| Some(vec![l.clone()])).collect();
            reqs.push(Some(all.clone()));
            let conjuncts: Vec<Vec<Vec<String>>> = vec![vec![]; reqs.len()];
            let Some(router) = Router::new(&reqs, &conjuncts) else {
                return Ok(());
            };
            let mut data = Vec::new();
            let mut lines = Vec::new();
            for (i, n) in noise.iter().enumerate() {
                let mut line = n.clone();
                for (pick, at) in picks.iter().filter(|p| p.0 % noise.len() == i) {
                    let literal = Literal::parse(&all[pick % all.len()]).text();
                    line.insert_str((*at).min(line.len()), literal);
                }
                lines.push((data.len(), data.len() + line.len()));
                data.extend_from_slice(line.as_bytes());
                data.push(b'\n');
            }
            let (from, to) = (cut.0.min(data.len()), cut.1.min(data.len()));
            let (from, to) = (from.min(to), from.max(to));
            let mut found = Vec::new();
            router.block_hits(&data, from, to, &mut found);
            let (mut searched, mut routed) = (Vec::new(), Vec::new());
            for &(start, end) in lines.iter().filter(|&&(s, e)| s >= from && e <= to) {
                let line = &data[start..end];
                router.route(line, &mut searched);
                let literals = found
                    .iter()
                    .filter(|&&(at, _)| at >= start && at < end)
                    .map(|&(_, l)| l);
                router.route_found(line, literals, None, &mut routed);
                proptest::prop_assert_eq!(&routed, &searched, "{}", String::from_utf8_lossy(line));
                // A line is a hit of the block search exactly when it routes somewhere.
                let hit = found.iter().any(|&(at, _)| at >= start && at < end);
                proptest::prop_assert_eq!(hit, !searched.is_empty(), "{}", String::from_utf8_lossy(line));
            }
        }
    }

    #[test]
    fn an_operation_is_read_from_the_one_key_that_names_it() {
        let ops = [Literal::operation("Set-Mailbox"), "Electron".to_string()];
        let literals: Vec<&str> = ops.iter().map(String::as_str).collect();
        let lane = Lane::new(&literals).unwrap().expect("an operation is read");
        let read = |line: &str| lane.operation(line.as_bytes()).map(|n| n.into_owned());
        assert_eq!(
            read(r#"{"Operation":"Set-Mailbox","x":1}"#),
            Some(b"Set-Mailbox".to_vec())
        );
        // Escapes are decoded, an escaped quote included.
        assert_eq!(
            read(r#"{"Operation":"\u0053et-Mailbox"}"#),
            Some(b"Set-Mailbox".to_vec())
        );
        assert_eq!(
            read(r#"{"Operation":"a\"b\\","x":1}"#),
            Some(br#"a"b\"#.to_vec())
        );
        // No key, a second one (repeated or nested), another value: not read.
        assert_eq!(read(r#"{"Operations":"Set-Mailbox"}"#), None);
        assert_eq!(read(r#"{"Operation":"A","Operation":"Set-Mailbox"}"#), None);
        assert_eq!(read(r#"{"Operation":"A","x":{"Operation":"B"}}"#), None);
        assert_eq!(read(r#"{"Operation" : "Set-Mailbox"}"#), None);
        assert_eq!(read(r#"{"Operation":["Set-Mailbox"]}"#), None);
        assert_eq!(read(r#"{"Operation":"Set-Mail"#), None);
        // A line not read is searched for the operations' names; a guard sends a line
        // read to that search too; a line read whole names only its own operation.
        let reqs = vec![Some(vec![ops[0].clone()]), Some(vec![ops[1].clone()])];
        let router = Router::new(&reqs, &[vec![], vec![]]).unwrap();
        let route = |line: &str| {
            let mut out = Vec::new();
            router.route(line.as_bytes(), &mut out);
            out
        };
        assert_eq!(route(r#"{"Operation":"Set-Mailbox"}"#), [0]);
        assert_eq!(route(r#"{"Operation":"Set-MailboxX"}"#), [] as [u32; 0]);
        assert_eq!(
            route(r#"{"Operation":"A","Parameters":"Set-Mailbox"}"#),
            [] as [u32; 0]
        );
        assert_eq!(route(r#"{"Operation" : "Set-Mailbox"}"#), [0]);
        assert_eq!(
            route(r#"{"Operation":"A","event":{"action":"Set-Mailbox"}}"#),
            [0]
        );
        assert_eq!(
            route(r#"{"Operation":"A","AuditData":"{\"Operation\":\"Set-Mailbox\"}"}"#),
            [0]
        );
        assert_eq!(route(r#"{"Operation":"Electron"}"#), [1]);
    }

    #[test]
    fn a_conjunct_holds_a_caseless_literal_in_any_case() {
        let reqs = vec![Some(vec!["Set-Mailbox".to_string()]), None];
        let conjuncts = vec![vec![vec![Literal::any_case("ForwardTo")]], vec![]];
        let router = Router::new(&reqs, &conjuncts).unwrap();
        let mut out = Vec::new();
        router.route(b"Set-Mailbox FORWARDTO", &mut out);
        assert_eq!(out, [0, 1]);
        router.route(b"Set-Mailbox Forward", &mut out);
        assert_eq!(out, [1]);
    }
}
