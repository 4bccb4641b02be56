//! One rule of a set found by what a user types: its id, its name, or a part of its
//! name (`ualhunt rules --guide`).
//!
//! Place in the flow: beside [`super::load`], used by the command line to show one
//! rule's investigation guide. It reads no records and prints nothing: a name that fits
//! no rule, or several, is an answer ([`Lookup::Unknown`], [`Lookup::Ambiguous`]) that
//! the caller words.

use super::Rule;
use super::load::{NotRun, RuleSet};

/// How many close matches [`Lookup::Unknown`] offers at most.
pub const CLOSE_MATCHES: usize = 5;

/// How alike a rule must be to what was asked for (0 to 1, see [`closeness`]) to be
/// offered as a close match.
const CLOSE_ENOUGH: f64 = 0.75;

/// A rule of a set, one that runs or one that was loaded and does not.
#[derive(Clone, Copy, Debug)]
pub enum Entry<'a> {
    /// A rule that runs.
    Runs(&'a Rule),
    /// A rule that was loaded and does not run, with why.
    NotRun(&'a NotRun),
}

impl<'a> Entry<'a> {
    /// Its id (Elastic's `rule_id`, a Sigma rule's `id`).
    pub fn id(&self) -> &'a str {
        match self {
            Entry::Runs(r) => &r.meta.id,
            Entry::NotRun(n) => &n.id,
        }
    }

    /// Its name.
    pub fn name(&self) -> &'a str {
        match self {
            Entry::Runs(r) => &r.meta.name,
            Entry::NotRun(n) => &n.name,
        }
    }

    /// A later name of the same rule upstream, if any.
    pub fn renamed(&self) -> Option<&'a str> {
        match self {
            Entry::Runs(r) => r.meta.renamed.as_deref(),
            Entry::NotRun(_) => None,
        }
    }

    /// The file it came from (`None` for a built-in rule).
    pub fn path(&self) -> Option<&'a str> {
        match self {
            Entry::Runs(r) => r.path.as_deref(),
            Entry::NotRun(n) => Some(n.path.as_str()).filter(|p| !p.is_empty()),
        }
    }

    /// Its investigation guide (Markdown), if its file has one.
    pub fn note(&self) -> Option<&'a str> {
        match self {
            Entry::Runs(r) => r.meta.note.as_deref(),
            Entry::NotRun(n) => n.note.as_deref(),
        }
    }

    /// What it needs set up (Markdown), if its file says.
    pub fn setup(&self) -> Option<&'a str> {
        match self {
            Entry::Runs(r) => r.meta.setup.as_deref(),
            Entry::NotRun(n) => n.setup.as_deref(),
        }
    }

    /// Why it does not run, for a rule that does not.
    pub fn not_run(&self) -> Option<&'a str> {
        match self {
            Entry::Runs(_) => None,
            Entry::NotRun(n) => Some(&n.reason),
        }
    }

    /// Its names, the current one first.
    fn names(&self) -> impl Iterator<Item = &'a str> {
        std::iter::once(self.name()).chain(self.renamed())
    }
}

/// What [`RuleSet::lookup`] found.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// The one rule asked for.
    Found(Entry<'a>),
    /// Several rules fit equally well (their names hold the text, or share it): every
    /// one of them, in load order.
    Ambiguous(Vec<Entry<'a>>),
    /// No rule fits: the closest ones, best first (at most [`CLOSE_MATCHES`]; none when
    /// nothing is close).
    Unknown(Vec<Entry<'a>>),
}

impl RuleSet {
    /// Every rule of the set: those that run, then those that do not, each in load order.
    pub fn entries(&self) -> impl Iterator<Item = Entry<'_>> {
        self.rules
            .iter()
            .map(Entry::Runs)
            .chain(self.not_run.iter().map(Entry::NotRun))
    }

    /// The rule that `wanted` names, compared trimmed, ignoring case and runs of
    /// spaces: the rule with that id; else the rules with that name (or upstream
    /// rename); else the rules whose name holds `wanted`, or whose id starts with it;
    /// else the rules with a name in which each word of `wanted` begins a word
    /// (`mailbox bypass` for "Mailbox Audit Logging Bypass").
    /// One rule is [`Lookup::Found`]; several at the first step that finds any are
    /// [`Lookup::Ambiguous`]; none, [`Lookup::Unknown`] with the closest.
    pub fn lookup(&self, wanted: &str) -> Lookup<'_> {
        let want = fold(wanted);
        if want.is_empty() {
            return Lookup::Unknown(Vec::new());
        }
        let wanted_words = words(&want);
        let steps: [&dyn Fn(&Entry<'_>) -> bool; 4] = [
            &|e| fold(e.id()) == want,
            &|e| e.names().any(|n| fold(n) == want),
            &|e| fold(e.id()).starts_with(&want) || e.names().any(|n| fold(n).contains(&want)),
            &|e| {
                e.names().any(|n| {
                    let theirs = words(n);
                    !wanted_words.is_empty()
                        && wanted_words
                            .iter()
                            .all(|w| theirs.iter().any(|t| t.starts_with(w.as_str())))
                })
            },
        ];
        for fits in steps {
            let mut found: Vec<Entry<'_>> = self.entries().filter(|e| fits(e)).collect();
            match found.len() {
                0 => continue,
                1 => return Lookup::Found(found.remove(0)),
                _ => return Lookup::Ambiguous(found),
            }
        }
        let mut close: Vec<(f64, usize, Entry<'_>)> = self
            .entries()
            .enumerate()
            .map(|(i, e)| (closeness(&want, &e), i, e))
            .filter(|(score, _, _)| *score >= CLOSE_ENOUGH)
            .collect();
        // Best first; ties in load order.
        close.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        Lookup::Unknown(
            close
                .into_iter()
                .take(CLOSE_MATCHES)
                .map(|(_, _, e)| e)
                .collect(),
        )
    }
}

/// Trimmed, lower case, one space between words.
fn fold(text: &str) -> String {
    text.split_whitespace()
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The words of a text, lower case: its runs of letters and digits.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// How alike `want` (folded) is to a rule, 0 to 1: for each word of `want`, the best
/// Jaro–Winkler similarity to a word of one of the rule's names, averaged (so a
/// misspelt word still counts); or the whole of `want` against the id, whichever is
/// more.
fn closeness(want: &str, entry: &Entry<'_>) -> f64 {
    let wanted = words(want);
    let by_words = entry
        .names()
        .map(|name| {
            let theirs = words(name);
            if wanted.is_empty() || theirs.is_empty() {
                return 0.0;
            }
            wanted
                .iter()
                .map(|w| {
                    theirs
                        .iter()
                        .map(|t| strsim::jaro_winkler(w, t))
                        .fold(0.0, f64::max)
                })
                .sum::<f64>()
                / wanted.len() as f64
        })
        .fold(0.0, f64::max);
    by_words.max(strsim::jaro_winkler(want, &fold(entry.id())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> RuleSet {
        let rule = |id: &str, name: &str| {
            let text = format!(
                "id = \"{id}\"\nname = \"{name}\"\ntype = \"query\"\nlanguage = \"kuery\"\n\
                 severity = \"low\"\nrisk_score = 21\nquery = \"event.action:X\"\n"
            );
            Rule::from_toml(&text).unwrap()
        };
        RuleSet {
            rules: vec![
                rule("aaaa-1111", "M365 Exchange Inbox Rule Created"),
                rule("bbbb-2222", "M365 Exchange Inbox Rule Deleted"),
                rule("cccc-3333", "Entra ID Sign-in From Rare Country"),
            ],
            not_run: vec![NotRun {
                id: "dddd-4444".into(),
                name: "Unusual Mail Volume".into(),
                path: "ml.toml".into(),
                rule_type: "machine_learning".into(),
                language: String::new(),
                reason: "needs an Elastic machine-learning job".into(),
                note: Some("## Triage".into()),
                setup: None,
            }],
        }
    }

    fn found(set: &RuleSet, wanted: &str) -> Option<String> {
        match set.lookup(wanted) {
            Lookup::Found(e) => Some(e.id().to_string()),
            _ => None,
        }
    }

    #[test]
    fn an_id_a_name_or_a_part_only_one_name_holds_finds_the_rule() {
        let set = set();
        assert_eq!(found(&set, "CCCC-3333").as_deref(), Some("cccc-3333"));
        assert_eq!(
            found(&set, "  m365 exchange   inbox rule created ").as_deref(),
            Some("aaaa-1111")
        );
        assert_eq!(found(&set, "rare country").as_deref(), Some("cccc-3333"));
        assert_eq!(found(&set, "bbbb").as_deref(), Some("bbbb-2222"));
        assert_eq!(found(&set, "sign countr").as_deref(), Some("cccc-3333"));
        // A rule that does not run is found too, with its guide.
        match set.lookup("mail volume") {
            Lookup::Found(e) => {
                assert_eq!(e.note(), Some("## Triage"));
                assert!(e.not_run().is_some());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_part_of_several_names_is_ambiguous_and_lists_them_all() {
        let set = set();
        match set.lookup("inbox rule") {
            Lookup::Ambiguous(all) => assert_eq!(
                all.iter().map(|e| e.id()).collect::<Vec<_>>(),
                ["aaaa-1111", "bbbb-2222"]
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_unknown_name_offers_the_close_ones_best_first() {
        let set = set();
        match set.lookup("inbx rule delted") {
            Lookup::Unknown(close) => {
                assert_eq!(close.first().map(|e| e.id()), Some("bbbb-2222"));
                assert!(close.iter().all(|e| e.id() != "dddd-4444"), "{close:?}");
            }
            other => panic!("{other:?}"),
        }
        match set.lookup("kerberos golden ticket") {
            Lookup::Unknown(close) => assert!(close.is_empty(), "{close:?}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(set.lookup("   "), Lookup::Unknown(c) if c.is_empty()));
    }
}
