//! Command-line flags (clap types only) and their translation into a validated
//! [`ualhunt_engine::Config`].

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use chrono::NaiveDate;
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};
use ualhunt_engine::config::Config;
use ualhunt_engine::enrich::{Enrichment, GeoIp};
use ualhunt_report::OutputFormat;

/// Hunt Elastic's "O365 Mailbox Audit Logging Bypass" rule over Microsoft 365 audit
/// archives (JSON lines, raw or ECS, plain or gzip), offline and fast.
#[derive(Parser, Debug)]
#[command(name = "ualhunt", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once at start-up: the size of the hunt's flags costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Scan archives and report findings grouped by actor.
    Hunt(HuntArgs),
    /// List the rules a hunt would run (built in, or loaded with --rules): metadata,
    /// query, prefilter literals, and the rules that cannot run offline, with why.
    Rules(RulesArgs),
    /// Write a synthetic audit archive with planted bypass events (for benchmarks).
    Generate(GenerateArgs),
    /// Merge the partial results of a sharded run (`hunt --shard K/N --partial FILE`)
    /// into the report one run would have written, or make its context plan.
    Merge(MergeArgs),
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// Partial files of every shard (both stages' when the run has a context stage), or
    /// directories holding them.
    #[arg(required = true, value_name = "PARTIAL")]
    pub partials: Vec<PathBuf>,

    /// Instead of a report, write the context plan that the second stage's shards read
    /// (`hunt --shard K/N --context-from FILE`), from the first stage's partials.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["output", "exports"])]
    pub context_plan: Option<PathBuf>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,

    /// Write the findings to FILE instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Also write the findings in FORMAT to FILE (repeatable).
    #[arg(long = "export", value_name = "FORMAT=FILE", value_parser = parse_export)]
    pub exports: Vec<Export>,

    /// Print the merged line accounting and the shards' statistics to stderr.
    #[arg(long)]
    pub stats: bool,

    /// Treat malformed lines like unreadable input: exit status 2.
    #[arg(long)]
    pub strict: bool,

    /// Lay the table out on one line per actor whatever the terminal width.
    #[arg(long)]
    pub wide: bool,

    /// Count building-block rules' findings (Elastic's `building_block_type`: signals
    /// for other rules, not alerts) toward the verdict and the exit status; without
    /// it they are reported, marked, and counted apart.
    #[arg(long)]
    pub building_blocks: bool,
}

/// Where and how a report is written (`hunt` and `merge` alike).
pub struct Outputs<'a> {
    pub format: Format,
    pub output: Option<&'a PathBuf>,
    pub exports: &'a [Export],
    pub stats: bool,
    pub strict: bool,
    pub wide: bool,
}

impl MergeArgs {
    pub fn outputs(&self) -> Outputs<'_> {
        Outputs {
            format: self.format,
            output: self.output.as_ref(),
            exports: &self.exports,
            stats: self.stats,
            strict: self.strict,
            wide: self.wide,
        }
    }
}

#[derive(Args, Debug)]
pub struct RulesArgs {
    /// Rule files as Elastic publishes them, or Sigma rules (a file, or a directory
    /// walked recursively for *.toml, *.yml and *.yaml); repeatable. Default: the
    /// built-in rule.
    #[arg(long = "rules", value_name = "PATH")]
    pub rules: Vec<PathBuf>,

    /// A MaxMind DB file (GeoIP2/GeoLite2 City or Country, and ASN; told apart by their
    /// metadata) to fill `source.geo.*` and `source.as.*` of raw records from
    /// `source.ip`, as Elastic's ingest pipeline does; repeatable. Without one, rules
    /// that read those fields run but cannot match on them (said in the report).
    #[arg(long = "geoip-db", value_name = "PATH")]
    pub geoip_db: Vec<PathBuf>,
    /// The Sigma field mapping that Sigma rules (*.yml, *.yaml) are read through: which
    /// log sources run, which records they see, which record field each Sigma field
    /// reads. Default: the built-in one (`ualhunt rules --sigma-mapping` shows none;
    /// see the README's "Sigma rules").
    #[arg(long = "sigma-mapping", value_name = "FILE", requires = "rules")]
    pub sigma_mapping: Option<PathBuf>,

    /// Instead of the listing, print the investigation guide and setup (Markdown, as
    /// the rule file has them) of one rule: named by its id, its name, or a part of its
    /// name that no other rule's holds (any case).
    #[arg(long, value_name = "NAME-OR-ID")]
    pub guide: Option<String>,
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Approximate uncompressed size, e.g. 100M, 1G.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "100M")]
    pub size: usize,

    /// Seed: the same seed and options give the same bytes.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Record shape.
    #[arg(long, value_enum, default_value_t = Shape::Ual)]
    pub shape: Shape,

    /// Fraction of lines that are planted Set-MailboxAuditBypassAssociation events
    /// (1 = every line, the parser's worst case).
    #[arg(long, default_value_t = 0.00001, value_parser = parse_rate)]
    pub rate: f64,

    /// The order of each record's keys (of `o365.audit` in ECS documents): the same
    /// records and planted events in another layout.
    #[arg(long, value_enum, default_value_t = KeyOrderArg::Generated)]
    pub key_order: KeyOrderArg,

    /// Compress the output with gzip.
    #[arg(long)]
    pub gzip: bool,

    /// Plant the investigation storyline (bypass periods, an open one, one that
    /// predates the data, failed attempts, a tool account, audit tampering, a gap day)
    /// over an archive spanning DAYS days (at least 25); printed to stderr.
    #[arg(long, value_name = "DAYS", num_args = 0..=1, default_missing_value = "30",
          value_parser = clap::value_parser!(u32).range(25..))]
    pub scenarios: Option<u32>,

    /// With --scenarios: which storyline (`investigation`: every case in the first 21
    /// days; `two-periods`: two closed bypass periods of a few days, at 30 % and 70 %
    /// of the span, as in the year-long benchmark).
    #[arg(
        long,
        value_enum,
        default_value = "investigation",
        requires = "scenarios"
    )]
    pub plot: PlotArg,

    /// Write to FILE instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `ualhunt generate --plot`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PlotArg {
    /// Every case of the investigation.
    Investigation,
    /// Two closed bypass periods of a few days.
    TwoPeriods,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Shape {
    /// Raw Unified Audit Log records.
    Ual,
    /// ECS documents (Elastic o365 integration).
    Ecs,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum KeyOrderArg {
    /// `CreationTime`, `Id`, `Operation` first.
    Generated,
    /// `Id` and `RecordType` first, `CreationTime` third, `Parameters` last.
    Purview,
    /// Each record's keys in a random (seeded) order.
    Shuffled,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("rate {s:?} must be a number from 0 to 1")),
    }
}

#[derive(Args, Debug)]
pub struct HuntArgs {
    /// Files, directories (walked recursively, in sorted order) or `-` for stdin.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,

    /// Write the findings to FILE instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Also write the findings in FORMAT to FILE (repeatable): the scan runs once and
    /// every format is written from the same report, e.g. `--export csv=findings.csv
    /// --export timeline=timeline.jsonl`.
    #[arg(long = "export", value_name = "FORMAT=FILE", value_parser = parse_export)]
    pub exports: Vec<Export>,

    /// Worker threads (default: one per core).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Target chunk size, e.g. 64K, 16M, 1G (a longer line still makes one chunk).
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "4M")]
    pub chunk_size: usize,

    /// Lines longer than SIZE are counted as malformed instead of parsed.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "64M")]
    pub max_line_size: usize,

    /// Parse every line instead of only the lines holding a rule literal (slow
    /// reference path; finds the same events).
    #[arg(long)]
    pub no_prefilter: bool,

    /// Print line accounting, throughput, latency and memory to stderr.
    #[arg(long)]
    pub stats: bool,

    /// Treat malformed lines like unreadable input: exit status 2.
    #[arg(long)]
    pub strict: bool,

    /// Report only events at or after TIME (RFC 3339, or a date: that day's start, UTC).
    #[arg(long, value_name = "TIME", value_parser = |s: &str| parse_bound(s, Bound::Since))]
    pub since: Option<DateTime<Utc>>,

    /// Report only events before TIME (RFC 3339, or a date: that whole day included).
    #[arg(long, value_name = "TIME", value_parser = |s: &str| parse_bound(s, Bound::Until))]
    pub until: Option<DateTime<Utc>>,

    /// No progress bar (it is shown only when stderr is a terminal anyway).
    #[arg(short, long)]
    pub quiet: bool,

    /// Report every matched event even when several have the same record id (by
    /// default a record repeated across overlapping exports is reported once).
    #[arg(long)]
    pub keep_duplicates: bool,

    /// Count building-block rules' findings (Elastic's `building_block_type`: signals
    /// for other rules, not alerts) toward the verdict and the exit status; without
    /// it they are reported, marked, and counted apart.
    #[arg(long)]
    pub building_blocks: bool,

    /// Allowlist of known tool accounts (TOML `[[allow]]` tables: account, reason,
    /// owner, expires): their findings are marked, not hidden, and do not count for
    /// the exit status.
    #[arg(long, value_name = "FILE")]
    pub allow: Option<PathBuf>,

    /// Skip the context pass (the bypassed accounts' blind spot and the actors'
    /// activity around each change), which reads the inputs a second time.
    #[arg(long)]
    pub no_context: bool,

    /// How far on either side of each change an actor's activity is shown, e.g. 24h,
    /// 90m, 2d.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration)]
    pub context_window: chrono::Duration,

    /// How far before and after each bypass period the account's mailbox-audit
    /// records are counted (the blind spot's before/after and per-day series), e.g.
    /// 7d, 30d; the context pass reads only the parts of plain files that hold these
    /// times.
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = parse_duration)]
    pub context_horizon: chrono::Duration,

    /// Read every input whole in the context pass instead of what the block index
    /// points to (the reference the index-driven pass is tested against).
    #[arg(long, hide = true)]
    pub context_full_read: bool,

    /// Keep up to SIZE of the inflated text of gzip and zstd files from the first pass
    /// for the context pass, which then reads it from memory instead of inflating the
    /// files again (e.g. 512M; auto: the smaller of 1 GiB and a quarter of physical
    /// memory). Worth it when the bypass windows cover most of the archive; off by
    /// default (keeping blocks the context pass skips costs time and memory). Freed as
    /// soon as the context pass is done.
    #[arg(long, value_name = "SIZE", value_parser = parse_cache_size)]
    pub context_cache: Option<u64>,

    /// Lay the table out on one line per actor whatever the terminal width.
    #[arg(long)]
    pub wide: bool,

    /// Run as shard K of N (K from 0) of a sharded run and write a partial result
    /// (`--partial`); `auto` reads K and N from the scheduler (JOB_COMPLETION_INDEX,
    /// SLURM_ARRAY_TASK_ID, AWS_BATCH_JOB_ARRAY_INDEX).
    #[arg(long, value_name = "K/N|auto")]
    pub shard: Option<String>,

    /// The shard count for `--shard auto` where the scheduler does not export it
    /// (Kubernetes: the Job's completions).
    #[arg(long, value_name = "N")]
    pub shard_count: Option<u32>,

    /// Print what this shard would read (inputs and byte ranges), without reading it.
    #[arg(long, requires = "shard")]
    pub list_shard: bool,

    /// Write this shard's partial result to FILE, atomically, for `ualhunt merge`.
    #[arg(long, value_name = "FILE", requires = "shard", conflicts_with_all = ["output", "exports"])]
    pub partial: Option<PathBuf>,

    /// Second stage of a sharded run: the context pass, watching the names of this
    /// context plan (`ualhunt merge --context-plan FILE`).
    #[arg(long, value_name = "FILE", requires = "partial")]
    pub context_from: Option<PathBuf>,

    /// Run these rule files (Elastic's published layout, ualhunt's, or Sigma YAML): a
    /// file, or a directory walked recursively for *.toml, *.yml and *.yaml;
    /// repeatable. Default: the built-in rule. Rules that cannot run offline are listed
    /// in --stats and `ualhunt rules`.
    #[arg(long = "rules", value_name = "PATH")]
    pub rules: Vec<PathBuf>,

    /// A MaxMind DB file (GeoIP2/GeoLite2 City or Country, and ASN; told apart by their
    /// metadata) to fill `source.geo.*` and `source.as.*` of raw records from
    /// `source.ip`, as Elastic's ingest pipeline does; repeatable. Without one, rules
    /// that read those fields run but cannot match on them (said in the report).
    #[arg(long = "geoip-db", value_name = "PATH")]
    pub geoip_db: Vec<PathBuf>,
    /// The Sigma field mapping that Sigma rules (*.yml, *.yaml) are read through: which
    /// log sources run, which records they see, which record field each Sigma field
    /// reads. Default: the built-in one (`ualhunt rules --sigma-mapping` shows none;
    /// see the README's "Sigma rules").
    #[arg(long = "sigma-mapping", value_name = "FILE", requires = "rules")]
    pub sigma_mapping: Option<PathBuf>,
}

fn parse_duration(s: &str) -> Result<chrono::Duration, String> {
    let t = s.trim();
    let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (examples: 24h, 90m, 2d)"))?;
    let secs = match unit.trim() {
        "s" => n,
        "m" => n * 60,
        "h" | "" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("invalid duration unit in {s:?} (s, m, h or d)")),
    };
    Ok(chrono::Duration::seconds(secs))
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    /// One row per actor, then a summary line.
    Table,
    /// One JSON document (schema version 2).
    Json,
    /// One row per matched event.
    Csv,
    /// One matched event per line.
    Ndjson,
    /// JSON lines for timeline tools (Timesketch): every event in time order.
    Timeline,
    /// ECS documents as Elasticsearch `_bulk` NDJSON (alerts for Elastic Security).
    Ecs,
    /// One self-contained HTML page: verdict, timelines, evidence (no script, no network).
    Html,
}

/// One `--export FORMAT=FILE`.
#[derive(Clone, Debug)]
pub struct Export {
    /// The format.
    pub format: Format,
    /// Where to write it.
    pub path: PathBuf,
}

/// Parses `FORMAT=FILE`. FORMAT is any `--format` value: the names come from [`Format`],
/// so a new output format is exportable as soon as it is a variant there.
fn parse_export(text: &str) -> Result<Export, String> {
    let formats = || {
        Format::value_variants()
            .iter()
            .filter_map(|f| f.to_possible_value())
            .map(|v| v.get_name().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some((name, file)) = text.split_once('=') else {
        return Err(format!(
            "expected FORMAT=FILE, e.g. csv=findings.csv (formats: {})",
            formats()
        ));
    };
    let format = Format::from_str(name.trim(), true)
        .map_err(|_| format!("unknown format {name:?} (formats: {})", formats()))?;
    if file.is_empty() {
        return Err(format!("no FILE after \"{name}=\""));
    }
    if file == "-" {
        return Err(
            "FILE must be a file: standard output is for --format (without -o)".to_string(),
        );
    }
    Ok(Export {
        format,
        path: PathBuf::from(file),
    })
}

impl From<Format> for OutputFormat {
    fn from(f: Format) -> OutputFormat {
        match f {
            Format::Table => OutputFormat::Table,
            Format::Json => OutputFormat::Json,
            Format::Csv => OutputFormat::Csv,
            Format::Ndjson => OutputFormat::Ndjson,
            Format::Timeline => OutputFormat::Timeline,
            Format::Ecs => OutputFormat::Ecs,
            Format::Html => OutputFormat::Html,
        }
    }
}

impl HuntArgs {
    pub fn outputs(&self) -> Outputs<'_> {
        Outputs {
            format: self.format,
            output: self.output.as_ref(),
            exports: &self.exports,
            stats: self.stats,
            strict: self.strict,
            wide: self.wide,
        }
    }
}

impl Outputs<'_> {
    /// The files named: `-o` first, then each `--export`.
    pub fn named(&self) -> Vec<crate::outputs::Named> {
        self.output
            .iter()
            .map(|p| crate::outputs::Named::new("-o", p))
            .chain(self.exports.iter().map(|e| {
                let name = e
                    .format
                    .to_possible_value()
                    .map(|v| v.get_name().to_string())
                    .unwrap_or_default();
                crate::outputs::Named {
                    flag: format!("--export {name}={}", e.path.display()),
                    path: e.path.clone(),
                }
            }))
            .collect()
    }

    /// Checks that no file is named twice among `-o` and the `--export`s: two writers
    /// would clobber each other.
    pub fn check_destinations(&self) -> Result<(), String> {
        let mut seen: Vec<(&PathBuf, String)> = Vec::new();
        let named = self
            .output
            .iter()
            .map(|p| (*p, format!("-o {}", p.display())))
            .chain(self.exports.iter().map(|e| {
                let name = e
                    .format
                    .to_possible_value()
                    .map(|v| v.get_name().to_string());
                let flag = format!("--export {}={}", name.unwrap_or_default(), e.path.display());
                (&e.path, flag)
            }));
        for (path, flag) in named {
            if let Some((_, first)) = seen.iter().find(|(p, _)| *p == path) {
                return Err(format!(
                    "{} is named twice ({first}, {flag}): each output needs its own file",
                    path.display()
                ));
            }
            seen.push((path, flag));
        }
        Ok(())
    }
}

impl HuntArgs {
    /// Refuses what cannot make a sound run before anything is read or written: `-`
    /// given twice (two readers would split standard input between them), a time window
    /// that is empty.
    pub fn check_paths(&self) -> anyhow::Result<()> {
        let stdin = self.paths.iter().filter(|p| p.as_os_str() == "-").count();
        if stdin > 1 {
            anyhow::bail!(
                "standard input (-) is named {stdin} times: it can be read only once; nothing was read"
            );
        }
        if let (Some(since), Some(until)) = (self.since, self.until)
            && since >= until
        {
            anyhow::bail!(
                "--since {} is not before --until {}: the time window is empty",
                since.to_rfc3339(),
                until.to_rfc3339()
            );
        }
        Ok(())
    }

    /// The library configuration these flags describe.
    pub fn to_config(&self) -> anyhow::Result<Config> {
        let mut config = Config::new(self.paths.clone());
        if !self.rules.is_empty() {
            let set = load_rules(&self.rules, self.sigma_mapping.as_deref()).context("--rules")?;
            if set.rules.is_empty() {
                anyhow::bail!(
                    "no rule that runs offline in {} ({} loaded, none a rule that runs)",
                    self.rules
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    set.not_run.len()
                );
            }
            config.rules = set.rules;
            config.not_run = set.not_run;
        }
        config.threads = self.threads.unwrap_or(0);
        config.chunk_size = self.chunk_size;
        config.max_line = self.max_line_size;
        config.prefilter = !self.no_prefilter;
        config.timing = self.stats;
        config.since = self.since;
        config.until = self.until;
        config.keep_duplicates = self.keep_duplicates;
        config.building_blocks = self.building_blocks;
        config.context = !self.no_context;
        config.context_window = self.context_window;
        config.context_horizon = self.context_horizon;
        config.context_full_read = self.context_full_read;
        config.context_cache = self.context_cache;
        if let Some(path) = &self.allow {
            let today = chrono::Utc::now().date_naive();
            config.allowlist =
                ualhunt_engine::allow::Allowlist::load(path, today).context("--allow")?;
        }
        config.enrichment = enrichment(&self.geoip_db)?;
        Ok(config)
    }
}

/// The pipeline's enrichment with the GeoIP databases of `--geoip-db`.
pub fn enrichment(paths: &[PathBuf]) -> anyhow::Result<Arc<Enrichment>> {
    let geoip = GeoIp::open(paths).context("--geoip-db")?;
    Ok(Arc::new(Enrichment::new(geoip)))
}

/// Parses a size such as `4096`, `64K`, `16M`, `1G` (binary multiples; a trailing `B`,
/// `iB` and any case are accepted).
/// The rule files of `--rules`, Sigma rules read through `--sigma-mapping` if given.
pub fn load_rules(
    rules: &[PathBuf],
    sigma_mapping: Option<&std::path::Path>,
) -> anyhow::Result<ualhunt_engine::rule::load::RuleSet> {
    let mapping = match sigma_mapping {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("--sigma-mapping {}: {e}", path.display()))?,
        ),
        None => None,
    };
    Ok(ualhunt_engine::rule::load::load_with(
        rules,
        mapping.as_deref(),
    )?)
}

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

/// A `--context-cache` size: a size as [`parse_size`] reads it, or `0` (off).
pub fn parse_cache_size(text: &str) -> Result<u64, String> {
    if text.trim().eq_ignore_ascii_case("auto") {
        return Ok(ualhunt_engine::scan::cache::default_budget());
    }
    if text
        .trim()
        .trim_end_matches(|c: char| c.is_ascii_alphabetic())
        == "0"
    {
        return Ok(0);
    }
    parse_size(text).map(|n| n as u64)
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
    ualhunt_engine::record::parse_timestamp(t)
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
        assert_eq!(parse_cache_size("0"), Ok(0));
        assert_eq!(parse_cache_size("0M"), Ok(0));
        assert_eq!(parse_cache_size("512M"), Ok(512 << 20));
        assert_eq!(
            parse_cache_size("auto"),
            Ok(ualhunt_engine::scan::cache::default_budget())
        );
        assert!(parse_cache_size("auto") > Ok(0));
        assert!(parse_cache_size("00x").is_err());
        assert!(parse_cache_size("").is_err());
    }
}
