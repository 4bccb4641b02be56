//! The byte prefilter: which lines could possibly match.
//!
//! Place in the flow: `scan` asks it for the next hit in a block of a chunk and widens
//! each hit to its line; only those lines are parsed. Contract (ripgrep's
//! `find_candidate_line`): false positives are fine, a false negative is a bug. The
//! literals come from the rules' parsed queries, never from a constant here.

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use memchr::memmem;

use crate::field::marked_record_type;
use crate::rule::Rule;
use crate::rule::kql::Query;

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
    /// once), chosen whenever it builds, whatever byte statistics aho-corasick's own
    /// prefilter heuristic would weigh (on audit text it picked a rare-byte search
    /// three to five times slower here).
    Packed {
        /// The searcher.
        searcher: Box<aho_corasick::packed::Searcher>,
        /// How many literals.
        count: usize,
        /// Length of the longest literal.
        longest: usize,
    },
    /// Literals matched whatever their ASCII case: the inner prefilter searches the
    /// lower-cased literals in a lower-cased copy of the haystack (so it keeps its SIMD
    /// search; a case-insensitive automaton has none). The scan folds each block once
    /// ([`Prefilter::find_folded`]); [`Prefilter::find`] folds what it is given.
    Folded(Box<Prefilter>),
    /// More literals than one Teddy searcher takes: groups of at most 64, each its own
    /// Teddy (SIMD) searcher. The scan collects every group's hits over a block once
    /// ([`Prefilter::hits`]), so no group rescans bytes; [`Prefilter::find`] takes the
    /// first hit of any group.
    Groups {
        /// One searcher per group.
        searchers: Vec<aho_corasick::packed::Searcher>,
        /// How many literals in all.
        count: usize,
        /// Length of the longest literal.
        longest: usize,
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
    /// Builds the prefilter for a rule set: a line is a candidate when it contains a
    /// literal required by any rule. A rule that yields no literal disables filtering.
    pub fn for_rules(rules: &[Rule]) -> Prefilter {
        Prefilter::for_queries(rules.iter().map(|r| &r.query))
    }

    /// Builds the prefilter for a set of queries (rule and context selections alike):
    /// a line is a candidate when it contains a literal required by any of them. A
    /// query that yields no literal disables filtering.
    pub fn for_queries<'q>(queries: impl IntoIterator<Item = &'q Query>) -> Prefilter {
        let mut literals = Vec::new();
        for query in queries {
            match query.required_literals() {
                // A `RecordType` requirement is read from each record, not searched for.
                Some(set) => {
                    literals.extend(set.into_iter().filter(|l| marked_record_type(l).is_none()))
                }
                None => return Prefilter::Everything,
            }
        }
        Prefilter::from_literals(literals)
    }

    /// Builds a prefilter for a set of literals (none: everything is a candidate).
    pub fn from_literals(literals: Vec<String>) -> Prefilter {
        Prefilter::build(literals, false)
    }

    /// Builds a prefilter for literals that match whatever their ASCII case (account
    /// names: `Alice@Contoso.com` is `alice@contoso.com`); none: everything.
    pub fn case_insensitive(literals: Vec<String>) -> Prefilter {
        Prefilter::build(literals, true)
    }

    fn build(mut literals: Vec<String>, ignore_case: bool) -> Prefilter {
        if ignore_case {
            let lower = literals.iter().map(|l| l.to_ascii_lowercase()).collect();
            return match Prefilter::build(lower, false) {
                Prefilter::Everything => Prefilter::Everything,
                inner => Prefilter::Folded(Box::new(inner)),
            };
        }
        literals.sort();
        literals.dedup();
        literals.retain(|l| !l.is_empty());
        match literals.len() {
            0 => Prefilter::Everything,
            1 if !ignore_case => {
                Prefilter::One(memmem::Finder::new(literals[0].as_bytes()).into_owned())
            }
            _ => {
                let longest = literals.iter().map(String::len).max().unwrap_or(0);
                if !ignore_case
                    && literals.len() <= 64
                    && let Some(searcher) = aho_corasick::packed::Config::new()
                        .match_kind(aho_corasick::packed::MatchKind::LeftmostFirst)
                        .builder()
                        .extend(&literals)
                        .build()
                {
                    return Prefilter::Packed {
                        searcher: Box::new(searcher),
                        count: literals.len(),
                        longest,
                    };
                }
                // A rule pack: Teddy in groups of 64 (a DFA over hundreds of literals
                // runs a state transition per byte, several times slower here).
                if !ignore_case && literals.len() > 64 {
                    let kind = aho_corasick::packed::MatchKind::LeftmostFirst;
                    if let Some(searchers) = teddy_groups(&literals, kind) {
                        return Prefilter::Groups {
                            searchers,
                            count: literals.len(),
                            longest,
                        };
                    }
                }
                let built = AhoCorasick::builder()
                    .kind(Some(AhoCorasickKind::DFA))
                    .match_kind(MatchKind::LeftmostFirst)
                    .ascii_case_insensitive(ignore_case)
                    .build(&literals);
                let searcher = match built {
                    Ok(s) => s,
                    // Too many literals for a DFA: let the builder pick a smaller kind.
                    Err(_) => AhoCorasick::builder()
                        .match_kind(MatchKind::LeftmostFirst)
                        .ascii_case_insensitive(ignore_case)
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
            Prefilter::Packed { count, .. } => format!("{count} literals (Teddy)"),
            Prefilter::Groups {
                searchers, count, ..
            } => format!("{count} literals (Teddy, {} groups)", searchers.len()),
            Prefilter::Folded(inner) => format!("{}, ASCII case folded", inner.describe()),
            Prefilter::Many { searcher, .. } => {
                format!(
                    "{} literals (aho-corasick {:?})",
                    searcher.patterns_len(),
                    searcher.kind()
                )
            }
        }
    }

    /// The search over a haystack already folded with [`fold_into`] when this
    /// prefilter folds case, else over the haystack as it is.
    #[inline]
    pub fn find_folded(&self, folded: &[u8]) -> Option<usize> {
        match self {
            Prefilter::Folded(inner) => inner.find(folded),
            other => other.find(folded),
        }
    }

    /// Whether hits are collected per block with [`Prefilter::hits`] rather than found
    /// one after another.
    pub fn collects_hits(&self) -> bool {
        matches!(self, Prefilter::Groups { .. })
    }

    /// Every hit's start in `haystack` (of every group, a group's hits not overlapping
    /// one another), sorted; each group scans the haystack once.
    pub fn hits(&self, haystack: &[u8], out: &mut Vec<usize>) {
        out.clear();
        if let Prefilter::Groups { searchers, .. } = self {
            for s in searchers {
                out.extend(s.find_iter(haystack).map(|m| m.start()));
            }
            out.sort_unstable();
            out.dedup();
        } else {
            let mut from = 0;
            while let Some(i) = self.find(&haystack[from..]) {
                out.push(from + i);
                from += i + 1;
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
            Prefilter::Folded(inner) => inner.overlap(),
        }
    }

    /// The offset of the first hit in `haystack`.
    #[inline]
    pub fn find(&self, haystack: &[u8]) -> Option<usize> {
        match self {
            Prefilter::Everything => None,
            Prefilter::One(f) => f.find(haystack),
            Prefilter::Packed { searcher, .. } => searcher.find(haystack).map(|m| m.start()),
            Prefilter::Many { searcher, .. } => searcher.find(haystack).map(|m| m.start()),
            Prefilter::Groups { searchers, .. } => searchers
                .iter()
                .filter_map(|s| s.find(haystack).map(|m| m.start()))
                .min(),
            Prefilter::Folded(inner) => {
                let mut folded = Vec::new();
                fold_into(haystack, &mut folded);
                inner.find(&folded)
            }
        }
    }
}

/// Which selections a candidate can satisfy: the literals of every selection in one
/// automaton whose pattern ids map back to the selections that require them, so a
/// candidate is evaluated only against the rules whose literals it holds. A selection
/// with no literal is evaluated on every candidate.
#[derive(Clone, Debug)]
pub struct Router {
    /// Every literal, in groups of at most 64 (Teddy), each reporting the longest
    /// literal at a position; the search restarts one byte after each match, so every
    /// position where a literal starts is seen.
    groups: Vec<aho_corasick::packed::Searcher>,
    /// Pattern id -> the selections that require that literal.
    by_pattern: Vec<Vec<u32>>,
    /// Selections with no literal.
    always: Vec<u32>,
    /// `RecordType` number -> the selections that accept it (empty: no such selection).
    by_type: Vec<Vec<u32>>,
}

impl Router {
    /// The router for selections that each require one of their literals (`None`: no
    /// literal, evaluated on every candidate). `None` when routing cannot narrow
    /// anything: every selection with literals requires the same ones.
    pub fn new(requirements: &[Option<Vec<String>>]) -> Option<Router> {
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
        if sets.len() <= 1 {
            return None;
        }
        // At a position only the longest literal is reported: the literals it contains
        // (a shorter one starting there, or inside it) route too.
        let by_pattern: Vec<Vec<u32>> = (0..literals.len())
            .map(|i| {
                let mut sels: Vec<u32> = (0..literals.len())
                    .filter(|&j| literals[i].contains(literals[j]))
                    .flat_map(|j| by_pattern[j].iter().copied())
                    .collect();
                sels.sort_unstable();
                sels.dedup();
                sels
            })
            .collect();
        let groups = teddy_groups(&literals, aho_corasick::packed::MatchKind::LeftmostLongest)?;
        Some(Router {
            groups,
            by_pattern,
            always,
            by_type,
        })
    }

    /// Writes into `out`, in increasing order, the selections `line` may satisfy.
    pub fn route(&self, line: &[u8], out: &mut Vec<u32>) {
        out.clear();
        out.extend_from_slice(&self.always);
        for (g, searcher) in self.groups.iter().enumerate() {
            let mut at = 0;
            while at < line.len() {
                let Some(m) = searcher.find_in(line, aho_corasick::Span::from(at..line.len()))
                else {
                    break;
                };
                out.extend_from_slice(&self.by_pattern[g * 64 + m.pattern().as_usize()]);
                at = m.start() + 1;
            }
        }
        if !self.by_type.is_empty()
            && let Some(n) = crate::coverage::record_type_number(line)
            && let Some(sels) = self.by_type.get(usize::from(n))
        {
            out.extend_from_slice(sels);
        }
        out.sort_unstable();
        out.dedup();
    }

    /// How many distinct literals it searches for.
    pub fn literals(&self) -> usize {
        self.by_pattern.len()
    }
}

/// Teddy searchers over `literals` in groups of at most 64 (what one takes), pattern
/// `i` of group `g` being literal `64 * g + i`; `None` when one does not build.
fn teddy_groups<S: AsRef<[u8]>>(
    literals: &[S],
    kind: aho_corasick::packed::MatchKind,
) -> Option<Vec<aho_corasick::packed::Searcher>> {
    literals
        .chunks(64)
        .map(|group| {
            aho_corasick::packed::Config::new()
                .match_kind(kind)
                .builder()
                .extend(group)
                .build()
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(p.find(b"....Set-InboxRule"), Some(4));
        assert_eq!(p.overlap(), 12);
        assert!(Prefilter::from_literals(vec![]).is_everything());
        let p = Prefilter::case_insensitive(vec!["Alice@Contoso.com".into()]);
        assert_eq!(p.find(b"xx ALICE@contoso.COM"), Some(3));
        assert!(p.folds_case());
        let mut folded = Vec::new();
        fold_into(b"xx aLiCe@CONTOSO.com", &mut folded);
        assert_eq!(p.find_folded(&folded), Some(3));
    }

    #[test]
    fn the_router_maps_literals_back_to_their_selections() {
        let reqs = vec![
            Some(vec!["New-InboxRule".to_string()]),
            Some(vec!["New-Inbox".to_string(), "Set-InboxRule".to_string()]),
            None,
            Some(vec!["New-InboxRule".to_string()]),
        ];
        let router = Router::new(&reqs).unwrap();
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
        assert!(Router::new(&same).is_none());
    }
}
