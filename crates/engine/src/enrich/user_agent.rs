//! `user_agent.*` from `user_agent.original`, as Elasticsearch's `user_agent` ingest
//! processor parses it: uap-core's `regexes.yaml` (embedded, Apache 2.0, licence beside
//! it in `uap-core/`) tried in order, the first pattern that gives a name winning, and
//! the processor's own rules for what it writes (`name` "Other" when no pattern gives
//! one, `version` and `os.version` joined with dots up to the first missing part,
//! `os.full` the name and version, `device.name` "Other" when no device pattern
//! matches; no device type, which the processor only writes when asked).
//!
//! Place in the flow: [`super::Enrichment`] parses each distinct user agent once (its
//! cache); the patterns are compiled on the first parse of the run, never when no rule
//! or evidence reads a parsed field. The prefilter asks [`name_spellings`] which text a
//! record whose `user_agent.name` has a value must hold; that reads the patterns'
//! descriptions only, of the user-agent list, which is parsed apart from the others.
//!
//! Where it differs from Elasticsearch's Java code: Rust's regex engine with `\d`, `\w`
//! and `\s` made ASCII as Java has them (case-insensitive patterns still fold Unicode
//! letters; user agents are ASCII in practice), and a `$n` in a version replacement is
//! replaced by group `n`, as uap-core's file means it (the Java code writes it as it is).

use std::sync::OnceLock;

use regex::Regex;
use yaml_rust2::{Yaml, YamlLoader};

/// uap-core's `regexes.yaml`, as published.
const REGEXES: &str = include_str!("../../uap-core/regexes.yaml");

/// A user agent parsed into the fields the processor writes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserAgent {
    /// `user_agent.name` ("Other" when no pattern names it).
    pub name: String,
    /// `user_agent.version`.
    pub version: Option<String>,
    /// `user_agent.os.name`.
    pub os_name: Option<String>,
    /// `user_agent.os.version`.
    pub os_version: Option<String>,
    /// `user_agent.os.full`: the name and the version.
    pub os_full: Option<String>,
    /// `user_agent.device.name` ("Other" when no pattern names it).
    pub device_name: String,
}

/// One pattern of the file as written: its regex and replacements.
#[derive(Clone, Debug, Default)]
struct Spec {
    regex: String,
    case_insensitive: bool,
    name: Option<String>,
    versions: [Option<String>; 4],
}

/// A pattern ready to match.
#[derive(Debug)]
struct Pattern {
    regex: Regex,
    name: Option<String>,
    versions: [Option<String>; 4],
}

/// The compiled lists.
#[derive(Debug)]
struct Parsers {
    user_agent: Vec<Pattern>,
    os: Vec<Pattern>,
    device: Vec<Pattern>,
}

/// A name and up to four version parts, as one pattern gives them.
#[derive(Debug, Default)]
struct Versioned {
    name: String,
    parts: [Option<String>; 4],
}

/// The part of the file holding the top-level list `key` (up to the next top-level
/// key): each list is parsed on its own, so the prefilter, which reads the user-agent
/// list only, does not parse the others.
fn section(key: &str) -> &'static str {
    let start = REGEXES
        .match_indices(key)
        .find(|&(at, _)| at == 0 || REGEXES.as_bytes()[at - 1] == b'\n')
        .map_or(REGEXES.len(), |(at, _)| at);
    let rest = &REGEXES[start..];
    // The next line that starts with a letter begins the next top-level key.
    let end = rest
        .match_indices('\n')
        .map(|(at, _)| at + 1)
        .find(|&at| rest.as_bytes().get(at).is_some_and(u8::is_ascii_alphabetic))
        .unwrap_or(rest.len());
    &rest[..end]
}

/// The patterns of the top-level list `key`, as written.
fn list(key: &str, name_key: &str, version_keys: [&str; 4]) -> Vec<Spec> {
    // The embedded file is part of the binary and covered by tests.
    let docs = YamlLoader::load_from_str(section(key)).expect("uap-core's regexes.yaml parses");
    let text = |y: &Yaml| match y {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Integer(n) => Some(n.to_string()),
        Yaml::Real(r) => Some(r.clone()),
        _ => None,
    };
    docs.first().map_or_else(Vec::new, |doc| {
        doc[key]
            .as_vec()
            .map(|v| v.as_slice())
            .unwrap_or_default()
            .iter()
            .filter_map(|p| {
                Some(Spec {
                    regex: text(&p["regex"])?,
                    case_insensitive: p["regex_flag"].as_str() == Some("i"),
                    name: text(&p[name_key]),
                    versions: version_keys.map(|k| text(&p[k])),
                })
            })
            .collect()
    })
}

/// The user-agent patterns, as written.
fn agent_specs() -> &'static [Spec] {
    static SPECS: OnceLock<Vec<Spec>> = OnceLock::new();
    SPECS.get_or_init(|| {
        list(
            "user_agent_parsers",
            "family_replacement",
            [
                "v1_replacement",
                "v2_replacement",
                "v3_replacement",
                "v4_replacement",
            ],
        )
    })
}

/// Each user-agent pattern's `family_replacement` (`None`: the pattern names the agent
/// by its first group), in file order: all that planning a search for a
/// `user_agent.name` needs ([`name_spellings`]), read from the lines of the list
/// without parsing it as YAML (a pack's start-up paid a millisecond for that). Every
/// pattern of the list starts a line with `  - ` and every replacement is a line
/// `    family_replacement: '…'` (single-quoted, `''` for a quote); a test holds this
/// reading to the YAML parse's.
fn agent_names() -> &'static [Option<String>] {
    static NAMES: OnceLock<Vec<Option<String>>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let mut names: Vec<Option<String>> = Vec::new();
        for line in section("user_agent_parsers").lines() {
            if line.starts_with("  - ") {
                names.push(None);
            } else if let Some(value) = line.strip_prefix("    family_replacement: '")
                && let Some(value) = value.trim_end().strip_suffix('\'')
                && let Some(last) = names.last_mut()
            {
                *last = Some(value.replace("''", "'"));
            }
        }
        names
    })
}

/// The operating-system patterns, as written.
fn os_specs() -> &'static [Spec] {
    static SPECS: OnceLock<Vec<Spec>> = OnceLock::new();
    SPECS.get_or_init(|| {
        list(
            "os_parsers",
            "os_replacement",
            [
                "os_v1_replacement",
                "os_v2_replacement",
                "os_v3_replacement",
                "os_v4_replacement",
            ],
        )
    })
}

/// The device patterns, as written.
fn device_specs() -> &'static [Spec] {
    static SPECS: OnceLock<Vec<Spec>> = OnceLock::new();
    SPECS.get_or_init(|| list("device_parsers", "device_replacement", ["", "", "", ""]))
}

fn parsers() -> &'static Parsers {
    static PARSERS: OnceLock<Parsers> = OnceLock::new();
    PARSERS.get_or_init(|| {
        let compile = |list: &[Spec]| -> Vec<Pattern> {
            list.iter()
                .filter_map(|spec| {
                    let regex = regex::RegexBuilder::new(&ascii_classes(&spec.regex))
                        .case_insensitive(spec.case_insensitive)
                        .size_limit(64 << 20)
                        .build()
                        .ok()?;
                    Some(Pattern {
                        regex,
                        name: spec.name.clone(),
                        versions: spec.versions.clone(),
                    })
                })
                .collect()
        };
        Parsers {
            user_agent: compile(agent_specs()),
            os: compile(os_specs()),
            device: compile(device_specs()),
        }
    })
}

/// The number of patterns of the file and how many of them compiled (all, tested).
pub fn pattern_counts() -> (usize, usize) {
    let p = parsers();
    (
        agent_specs().len() + os_specs().len() + device_specs().len(),
        p.user_agent.len() + p.os.len() + p.device.len(),
    )
}

/// Java's `\d`, `\w`, `\s` (and their negations) are ASCII; Rust's are Unicode: spelled
/// out as ASCII classes (a class inside a class nests in Rust's syntax).
fn ascii_classes(re: &str) -> String {
    let mut out = String::with_capacity(re.len() + 16);
    let mut chars = re.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str("[0-9]"),
            Some('D') => out.push_str("[^0-9]"),
            Some('w') => out.push_str("[A-Za-z0-9_]"),
            Some('W') => out.push_str("[^A-Za-z0-9_]"),
            Some('s') => out.push_str(r"[\t\n\x0B\x0C\r ]"),
            Some('S') => out.push_str(r"[^\t\n\x0B\x0C\r ]"),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

impl Pattern {
    /// What the processor's `UserAgentSubpattern.match` gives: `None` when the regex
    /// does not match or gives no name (the next pattern is then tried).
    fn apply(&self, text: &str) -> Option<Versioned> {
        let caps = self.regex.captures(text)?;
        let group = |n: usize| caps.get(n).map(|m| m.as_str());
        let name = match &self.name {
            Some(r) if r.contains("$1") => match group(1) {
                Some(g) => r.replacen("$1", g, 1),
                None => r.clone(),
            },
            Some(r) => r.clone(),
            None => group(1)?.to_string(),
        };
        let parts = std::array::from_fn(|i| match &self.versions[i] {
            Some(r) => Some(substitute(r, &group)),
            None => group(i + 2).map(str::to_string),
        });
        Some(Versioned { name, parts })
    }
}

/// A version replacement with each `$n` replaced by group `n` (empty when it did not
/// take part).
fn substitute<'a>(replacement: &str, group: &dyn Fn(usize) -> Option<&'a str>) -> String {
    let mut out = String::new();
    let mut rest = replacement;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let digit = rest[at + 1..].chars().next().and_then(|c| c.to_digit(10));
        match digit {
            Some(n) => {
                out.push_str(group(n as usize).unwrap_or(""));
                rest = &rest[at + 2..];
            }
            None => {
                out.push('$');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn first(patterns: &[Pattern], text: &str) -> Option<Versioned> {
    patterns.iter().find_map(|p| p.apply(text))
}

/// Dotted version parts up to the first missing one (`None` without a major).
fn dotted(parts: &[Option<String>; 4]) -> Option<String> {
    let mut out = parts[0].clone()?;
    for part in parts[1..].iter().map_while(Option::as_ref) {
        out.push('.');
        out.push_str(part);
    }
    Some(out)
}

/// Parses a user agent as the processor does.
pub fn parse(text: &str) -> UserAgent {
    let p = parsers();
    let agent = first(&p.user_agent, text);
    let os = first(&p.os, text);
    let device = first(&p.device, text);
    let os_version = os.as_ref().and_then(|o| dotted(&o.parts));
    UserAgent {
        name: agent
            .as_ref()
            .map_or_else(|| "Other".to_string(), |a| a.name.clone()),
        version: agent.as_ref().and_then(|a| dotted(&a.parts)),
        os_full: os
            .as_ref()
            .zip(os_version.as_ref())
            .map(|(o, v)| format!("{} {v}", o.name)),
        os_name: os.map(|o| o.name),
        os_version,
        device_name: device.map_or_else(|| "Other".to_string(), |d| d.name),
    }
}

/// The texts one of which every user agent whose parsed `user_agent.name` is `value`
/// holds (`None`: no such set): the name itself (an ECS document's, and where a
/// pattern takes it from the agent's text), the captured part where a pattern's replacement wraps `$1`; none
/// where a pattern writes `value` whole, or for "Other".
pub fn name_spellings(value: &str) -> Option<Vec<String>> {
    if value == "Other" {
        return None;
    }
    // An ECS document holds the name itself.
    let mut out: Vec<String> = vec![value.to_string()];
    let mut add = |s: &str| {
        if !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    };
    for name in agent_names() {
        match name {
            None => add(value),
            Some(r) if r == value => return None,
            Some(r) => {
                let Some((before, after)) = r.split_once("$1") else {
                    continue;
                };
                if value.len() > before.len() + after.len()
                    && value.starts_with(before)
                    && value.ends_with(after)
                {
                    add(&value[before.len()..value.len() - after.len()]);
                } else if value.len() == before.len() + after.len()
                    && value.starts_with(before)
                    && value.ends_with(after)
                {
                    // An empty group: the pattern's own text, not the agent's.
                    return None;
                }
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEAMS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Teams/1.3.00.30866 Chrome/80.0.3987.165 Electron/8.5.1 Safari/537.36";

    #[test]
    fn every_pattern_of_the_file_compiles() {
        let (all, compiled) = pattern_counts();
        assert!(all > 1000, "{all}");
        assert_eq!(all, compiled);
    }

    #[test]
    fn the_agent_names_read_from_the_lines_are_the_yaml_parses() {
        let parsed: Vec<Option<String>> = agent_specs().iter().map(|s| s.name.clone()).collect();
        assert_eq!(agent_names(), parsed.as_slice());
        assert!(parsed.iter().flatten().count() > 100);
    }

    #[test]
    fn each_list_parsed_alone_is_the_list_of_the_whole_file() {
        let docs = YamlLoader::load_from_str(REGEXES).unwrap();
        let whole = |key: &str| docs[0][key].as_vec().unwrap().len();
        assert_eq!(agent_specs().len(), whole("user_agent_parsers"));
        assert_eq!(os_specs().len(), whole("os_parsers"));
        assert_eq!(device_specs().len(), whole("device_parsers"));
        assert!(section("os_parsers").starts_with("os_parsers:"));
        assert!(!section("user_agent_parsers").contains("\nos_parsers:"));
    }

    #[test]
    fn a_teams_electron_agent_parses_as_electron_on_windows() {
        let ua = parse(TEAMS);
        assert_eq!(ua.name, "Electron");
        assert_eq!(ua.version.as_deref(), Some("8.5.1"));
        assert_eq!(ua.os_name.as_deref(), Some("Windows"));
        assert_eq!(ua.os_version.as_deref(), Some("10"));
        assert_eq!(ua.os_full.as_deref(), Some("Windows 10"));
        assert_eq!(ua.device_name, "Other");
    }

    #[test]
    fn browsers_phones_and_unknown_agents() {
        let chrome = parse(
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
             Chrome/85.0.4183.121 Safari/537.36",
        );
        assert_eq!(chrome.name, "Chrome");
        assert_eq!(chrome.version.as_deref(), Some("85.0.4183.121"));
        assert_eq!(chrome.os_name.as_deref(), Some("Linux"));
        assert_eq!(chrome.os_version, None);
        assert_eq!(chrome.os_full, None);
        let iphone = parse(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 13_5_1 like Mac OS X) AppleWebKit/605.1.15 \
             (KHTML, like Gecko) Version/13.1.1 Mobile/15E148 Safari/604.1",
        );
        assert_eq!(iphone.name, "Mobile Safari");
        assert_eq!(iphone.version.as_deref(), Some("13.1.1"));
        assert_eq!(iphone.os_name.as_deref(), Some("iOS"));
        assert_eq!(iphone.os_version.as_deref(), Some("13.5.1"));
        assert_eq!(iphone.os_full.as_deref(), Some("iOS 13.5.1"));
        assert_eq!(iphone.device_name, "iPhone");
        let none = parse("nothing known");
        assert_eq!(none.name, "Other");
        assert_eq!(none.version, None);
        assert_eq!(none.os_name, None);
        assert_eq!(none.device_name, "Other");
    }

    /// Pieces of real agents, put together at random below.
    const PIECES: [&str; 24] = [
        "Mozilla/5.0",
        "(Windows NT 10.0; Win64; x64)",
        "(Macintosh; Intel Mac OS X 10_15_7)",
        "(iPhone; CPU iPhone OS 16_1 like Mac OS X)",
        "(Linux; Android 12; SM-G991B)",
        "AppleWebKit/537.36 (KHTML, like Gecko)",
        "Electron/8.5.1",
        "Chrome/80.0.3987.165",
        "Safari/537.36",
        "Teams/1.3.00.30866",
        "Slack_SSB/4.29.149",
        "Edg/124.0.2478.80",
        "Firefox/115.0",
        "Gecko/20100101",
        "Mobile/15E148",
        "Version/16.1",
        "OneDriveiOSApp/1.2",
        "Outlook-iOS/2.0",
        "python-requests/2.31.0",
        "BoxNotes/1.2.3",
        "MSOffice 12",
        "curl/8.1.2",
        "Opera Mini/7.1",
        "okhttp/4.9.2",
    ];

    proptest::proptest! {
        /// The prefilter's soundness for `user_agent.name`: whatever an agent parses
        /// as, one of that name's spellings is in the agent's text (or it has none).
        #[test]
        fn a_parsed_name_always_holds_one_of_its_spellings(
            picks in proptest::collection::vec(0usize..PIECES.len(), 1..6),
            glue in proptest::sample::select(vec![" ", "; ", "/", ""]),
        ) {
            let agent: Vec<&str> = picks.iter().map(|&i| PIECES[i]).collect();
            let agent = agent.join(glue);
            let name = parse(&agent).name;
            if let Some(spellings) = name_spellings(&name) {
                proptest::prop_assert!(
                    spellings.iter().any(|s| agent.contains(s.as_str())),
                    "{agent:?} parses as {name:?}, spellings {spellings:?}"
                );
            }
        }
    }

    #[test]
    fn java_classes_become_ascii() {
        assert_eq!(ascii_classes(r"(\d+)\.\w"), r"([0-9]+)\.[A-Za-z0-9_]");
        assert_eq!(ascii_classes(r"[\d.]\\d"), r"[[0-9].]\\d");
    }

    #[test]
    fn a_name_taken_from_the_text_is_its_own_literal() {
        let spellings = name_spellings("Electron").unwrap();
        assert!(spellings.iter().all(|s| TEAMS.contains(s.as_str())));
        // A name some pattern writes whole has no literal.
        assert_eq!(name_spellings("Slack Desktop Client"), None);
        assert_eq!(name_spellings("Other"), None);
    }
}
