//! The validated configuration the library runs on.
//!
//! Place in the flow: `cli` (clap types) builds a [`Config`]; `engine` runs on it. Only
//! enums and checked values live here, never raw flag strings.

use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, Utc};

use crate::allow::Allowlist;
use crate::rule::Rule;
use crate::rule::load::NotRun;

/// Default window around each bypass change in which an actor's activity is shown.
pub const DEFAULT_CONTEXT_WINDOW: chrono::Duration = chrono::Duration::hours(24);

/// Default target size of a chunk (and of a decompressed block).
pub const DEFAULT_CHUNK_SIZE: usize = 4 << 20;

/// Default longest line that is parsed; longer lines are counted as malformed.
pub const DEFAULT_MAX_LINE: usize = 64 << 20;

/// How findings are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// One row per actor, then a scan summary.
    #[default]
    Table,
    /// One JSON document (schema version 2).
    Json,
    /// One row per matched event.
    Csv,
    /// One matched event per line.
    Ndjson,
    /// JSON lines for timeline tools: matches, failed attempts, bypass periods, audit
    /// tampering, in time order.
    Timeline,
    /// Elastic Common Schema documents as `_bulk` NDJSON: alerts for Elastic Security.
    Ecs,
    /// One self-contained HTML page (inline CSS and SVG, no script).
    Html,
}

/// Everything a hunt needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Files, directories or `-`.
    pub paths: Vec<PathBuf>,
    /// The rules to run.
    pub rules: Vec<Rule>,
    /// Rules loaded that cannot run offline (listed in `--stats`, JSON and `rules`).
    pub not_run: Vec<NotRun>,
    /// Worker threads; 0 means one per core.
    pub threads: usize,
    /// Target chunk size in bytes.
    pub chunk_size: usize,
    /// Whether the byte prefilter runs (false: parse every line, the reference path).
    pub prefilter: bool,
    /// Longest line parsed, in bytes.
    pub max_line: usize,
    /// Whether to measure per-stage times for `--stats`.
    pub timing: bool,
    /// Bytes the prefilter searches at a time inside a chunk before the newline pass
    /// over the same bytes (sized for the L2 cache; tests vary it).
    pub scan_block: usize,
    /// Only events at or after this time are reported (applied after the analyses).
    pub since: Option<DateTime<Utc>>,
    /// Only events before this time are reported (applied after the analyses).
    pub until: Option<DateTime<Utc>>,
    /// Accounts known to be tools: their findings are marked, not hidden.
    pub allowlist: Allowlist,
    /// Whether the context pass runs when there are findings (`--no-context`: no).
    pub context: bool,
    /// The window on either side of each change in which an actor's activity is shown.
    pub context_window: chrono::Duration,
    /// Report every matched event, even when another one has the same record id.
    pub keep_duplicates: bool,
    /// Where to count progress, if someone shows it.
    pub progress: Option<std::sync::Arc<crate::source::Progress>>,
}

impl Config {
    /// A configuration with the built-in rules and default settings.
    pub fn new(paths: Vec<PathBuf>) -> Config {
        Config {
            paths,
            rules: Rule::builtin(),
            not_run: Vec::new(),
            threads: 0,
            chunk_size: DEFAULT_CHUNK_SIZE,
            prefilter: true,
            max_line: DEFAULT_MAX_LINE,
            timing: false,
            scan_block: crate::scan::DEFAULT_BLOCK,
            since: None,
            until: None,
            allowlist: Allowlist::default(),
            context: true,
            context_window: DEFAULT_CONTEXT_WINDOW,
            keep_duplicates: false,
            progress: None,
        }
    }
}

/// Parses a size such as `4096`, `64K`, `16M`, `1G` (binary multiples; a trailing `B`,
/// `iB` and any case are accepted).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let lower = t.to_ascii_lowercase();
    let body = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let (digits, shift) = match body.chars().last() {
        Some('k') => (&body[..body.len() - 1], 10),
        Some('m') => (&body[..body.len() - 1], 20),
        Some('g') => (&body[..body.len() - 1], 30),
        Some('t') => (&body[..body.len() - 1], 40),
        _ => (body, 0),
    };
    let n: usize = digits
        .trim()
        .parse()
        .map_err(|_| format!("invalid size {text:?} (examples: 65536, 64K, 16M, 1G)"))?;
    let size = n
        .checked_mul(1usize << shift)
        .ok_or_else(|| format!("size {text:?} is too large"))?;
    if size == 0 {
        return Err(format!("size {text:?} must be greater than zero"));
    }
    Ok(size)
}

/// Which end of a time window a bound is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// `--since`: a date means that day's first instant.
    Since,
    /// `--until`: a date means the whole day is included (up to the next day's start).
    Until,
}

/// Parses a time bound: RFC 3339 (`2024-03-05T10:00:00Z`, an offset, or no offset for
/// UTC) or a date (`2024-03-05`, UTC). The window is `since <= t < until`.
pub fn parse_bound(text: &str, bound: Bound) -> Result<DateTime<Utc>, String> {
    let t = text.trim();
    if let Ok(day) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        let day = match bound {
            Bound::Since => day,
            Bound::Until => day
                .succ_opt()
                .ok_or_else(|| format!("date {t:?} is out of range"))?,
        };
        return Ok(day.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    crate::record::parse_timestamp(t)
        .ok_or_else(|| format!("invalid time {t:?} (examples: 2024-03-05, 2024-03-05T10:00:00Z)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        let s = parse_bound("2024-03-05", Bound::Since).unwrap();
        assert_eq!(s.to_rfc3339(), "2024-03-05T00:00:00+00:00");
        let u = parse_bound("2024-03-05", Bound::Until).unwrap();
        assert_eq!(u.to_rfc3339(), "2024-03-06T00:00:00+00:00");
        let t = parse_bound("2024-03-05T10:00:00+02:00", Bound::Until).unwrap();
        assert_eq!(t.to_rfc3339(), "2024-03-05T08:00:00+00:00");
        assert!(parse_bound("last tuesday", Bound::Since).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("16M"), Ok(16 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1gib"), Ok(1 << 30));
        assert_eq!(parse_size("2kb"), Ok(2048));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("0").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999999999999T").is_err());
    }
}
