//! The validated configuration the library runs on.
//!
//! Place in the flow: the binary's command line builds a [`Config`]; the stages run on it. Only
//! enums and checked values live here, never raw flag strings.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::allow::Allowlist;
use crate::enrich::Enrichment;
use crate::rule::Rule;
use crate::rule::load::NotRun;

/// Default window around each bypass change in which an actor's activity is shown.
pub const DEFAULT_CONTEXT_WINDOW: chrono::Duration = chrono::Duration::hours(24);

/// Default `--context-horizon`: a week on either side of a bypass period.
pub const DEFAULT_CONTEXT_HORIZON: chrono::Duration = chrono::Duration::days(7);

/// Default target size of a chunk (and of a decompressed block).
pub const DEFAULT_CHUNK_SIZE: usize = 4 << 20;

/// Default size of the blocks a chunk is scanned in: the prefilter searches a block,
/// then the newline pass reads the same block while it is in the L2 cache.
pub const DEFAULT_SCAN_BLOCK: usize = 256 * 1024;

/// Default longest line that is parsed; longer lines are counted as malformed.
pub const DEFAULT_MAX_LINE: usize = 64 << 20;

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
    /// Whether, with the prefilter, a rule with a trigger and no literal of its own is
    /// searched for by its trigger and read again around it
    /// (`stages::around_triggers`; false: evaluated on every record, for tests).
    pub triggers: bool,
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
    /// How far before and after each bypass period the context pass counts the
    /// account's mailbox-audit records (the blind spot's "before" and "after").
    pub context_horizon: chrono::Duration,
    /// Whether the context pass reads every input whole instead of the stretches the
    /// block index points it to (the reference the index is tested against).
    pub context_full_read: bool,
    /// Bytes of inflated blocks the first pass may keep for the context pass
    /// (`--context-cache`; `None` or `Some(0)`: none, the default; `--context-cache
    /// auto` is `scan::cache::default_budget`).
    pub context_cache: Option<u64>,
    /// Output bytes between the seek points the first pass notes in a gzip or zstd
    /// file (`ualhunt_input::seek::SPACING`; tests make it small to have many).
    pub seek_spacing: u64,
    /// Report every matched event, even when another one has the same record id.
    pub keep_duplicates: bool,
    /// Where to count progress, if someone shows it.
    pub progress: Option<std::sync::Arc<ualhunt_input::Progress>>,
    /// Files never read as inputs: the run's own outputs being written (their
    /// temporaries may lie inside an input directory).
    pub skip: Vec<PathBuf>,
    /// The pipeline's enrichment: the GeoIP databases given (`--geoip-db`); the
    /// user-agent fields need none.
    pub enrichment: Arc<Enrichment>,
    /// Whether building-block rules' findings count toward the verdict and the exit
    /// status (`--building-blocks`); they are reported and marked either way.
    pub building_blocks: bool,
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
            triggers: true,
            timing: false,
            scan_block: DEFAULT_SCAN_BLOCK,
            since: None,
            until: None,
            allowlist: Allowlist::default(),
            context: true,
            context_window: DEFAULT_CONTEXT_WINDOW,
            context_horizon: DEFAULT_CONTEXT_HORIZON,
            context_full_read: false,
            context_cache: None,
            seek_spacing: ualhunt_input::seek::SPACING,
            keep_duplicates: false,
            progress: None,
            skip: Vec::new(),
            enrichment: Arc::default(),
            building_blocks: false,
        }
    }
}
