//! The driver: inputs in, a [`Report`] out.
//!
//! Place in the flow: ties `source` → `chunk` → `scan` → `findings` → `analysis`
//! together on a rayon pool. Files are scanned in parallel and each mapped file's chunks
//! are too; a gzip or stdin stream is inflated on its own thread into blocks that the
//! scanning side takes through a bounded channel, so inflating overlaps scanning and
//! memory stays bounded. Results are merged in input order, so the report does not
//! depend on scheduling.
//!
//! A run has up to two passes over the same inputs, both generic over their
//! [`Sink`]: the first selects the rules' matches and context selections
//! ([`Harvest`]); when a rule with the bypass investigation found something, a second,
//! prefiltered on the names of the bypassed accounts and the actors, gathers what they
//! did ([`Activity`]). Then the analyses run and the time window is applied. Nothing
//! here prints.

use std::io::{self, Read};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rayon::prelude::*;

use crate::allow::Allowlist;
use crate::analysis::actors::{self, ActorFindings};
use crate::analysis::bypass::{self, Investigation, Reader};
use crate::analysis::context::{Activity, Watch};
use crate::analysis::coverage::{self as verdict, CoverageReport};
use crate::analysis::{Change, Evidence, Window};
use crate::config::Config;
use crate::document;
use crate::error::{Error, InputError, Warning};
use crate::findings::{Counts, Finding, Harvest, Partial, Why, drop_duplicates};
use crate::rule::{ANALYSIS_BYPASS, RuleMeta};
use crate::scan::{Matcher, Pass, Scratch, Sink, scan_chunk};
use crate::source::{self, Block, BlockReader, Compression, Input, Layout, Opened};

pub use crate::error::Warning as ScanWarning;

/// A malformed line, located.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MalformedLine {
    /// The input's path.
    pub path: String,
    /// 1-based line number in the (decompressed) input.
    pub line: u64,
    /// Why it was rejected.
    pub reason: String,
    /// Its first bytes.
    pub excerpt: String,
}

/// Measurements of one pass, for `--stats`; never part of the findings.
#[derive(Debug)]
pub struct PassStats {
    /// Wall time of the pass.
    pub wall: Duration,
    /// What the prefilter searches for.
    pub prefilter: String,
    /// Bytes scanned (decompressed).
    pub bytes: u64,
    /// Line accounting of the pass.
    pub counts: Counts,
    /// Inputs read, per recognised kind (`plain`, `gzip`, `stdin`…).
    pub formats: Vec<(String, u64)>,
    /// Time to scan one chunk or block, in microseconds.
    pub chunk_latency_us: Histogram<u64>,
    /// Summed time workers spent scanning chunks (prefilter, line count, parse).
    pub scan_time: Duration,
    /// Summed time spent parsing and evaluating candidates (with timing on).
    pub parse_time: Duration,
    /// Summed time spent inflating/reading streams.
    pub read_time: Duration,
    /// Compressed (on-disk) bytes of the inputs that were streamed from files.
    pub compressed_bytes: u64,
}

/// Measurements of a run.
#[derive(Debug)]
pub struct RunStats {
    /// Wall time of the whole run.
    pub wall: Duration,
    /// Worker threads used.
    pub threads: usize,
    /// Target chunk size.
    pub chunk_size: usize,
    /// The first pass.
    pub scan: PassStats,
    /// The context pass, when it ran; with the records it attributed to a watched name.
    pub context: Option<(PassStats, u64)>,
}

/// Everything a hunt found and counted.
#[derive(Debug)]
pub struct Report {
    /// The rules that ran.
    pub rules: Vec<RuleMeta>,
    /// Input names in input order (`archive.zip!member` for a zip member); findings
    /// refer to them by index.
    pub inputs: Vec<String>,
    /// The zip member of each input, if it is one.
    pub members: Vec<Option<String>>,
    /// Inputs read.
    pub files: u64,
    /// Bytes scanned (decompressed).
    pub bytes: u64,
    /// Line accounting.
    pub counts: Counts,
    /// Rule matches dropped because an earlier one had the same rule and record id.
    pub duplicates: u64,
    /// Rule matches outside `--since`/`--until` (after duplicates were dropped).
    pub outside_window: u64,
    /// The window.
    pub window: Window,
    /// Inputs that could not be read in full.
    pub errors: Vec<InputError>,
    /// Inputs read with a doubt (not recognised as any known layout).
    pub warnings: Vec<Warning>,
    /// The first malformed lines.
    pub malformed: Vec<MalformedLine>,
    /// Rule matches inside the window, grouped by actor.
    pub actors: Vec<ActorFindings>,
    /// The bypass investigations (one per rule that asks for it).
    pub investigations: Vec<Investigation>,
    /// What the archive covers.
    pub coverage: CoverageReport,
    /// The allowlist used.
    pub allowlist: Allowlist,
    /// Whether the context pass ran (it runs only when there are findings).
    pub context_ran: bool,
    /// Measurements.
    pub stats: RunStats,
}

impl Report {
    /// Number of matched events reported.
    pub fn events(&self) -> usize {
        self.actors.iter().map(|a| a.evidence.len()).sum()
    }

    /// Number of reported events that no allowlist entry covers: these, not the
    /// allowed ones, make a finding for the exit status.
    pub fn unallowed_events(&self) -> usize {
        self.actors
            .iter()
            .flat_map(|a| &a.evidence)
            .filter(|e| e.allowed.is_none())
            .count()
    }

    /// Failed attempts reported (inside the window).
    pub fn attempts(&self) -> usize {
        self.investigations.iter().map(|i| i.attempts.len()).sum()
    }
}

/// What one pass over all inputs gave.
struct Scanned<S> {
    partial: Partial<S>,
    errors: Vec<InputError>,
    warnings: Vec<Warning>,
    stats: PassStats,
}

/// What scanning one input gave.
struct FileResult<S> {
    partial: Partial<S>,
    bytes: u64,
    kind: String,
    error: Option<InputError>,
    warning: Option<String>,
    latencies: Vec<Duration>,
    scan_time: Duration,
    parse_time: Duration,
    read_time: Duration,
    compressed_bytes: u64,
}

impl<S: Sink> FileResult<S> {
    fn new(kind: String) -> FileResult<S> {
        FileResult {
            partial: Partial::default(),
            bytes: 0,
            kind,
            error: None,
            warning: None,
            latencies: Vec::new(),
            scan_time: Duration::ZERO,
            parse_time: Duration::ZERO,
            read_time: Duration::ZERO,
            compressed_bytes: 0,
        }
    }

    fn record(&mut self, partial: Partial<S>, took: Duration, parse: Duration) {
        self.partial.append(partial);
        self.latencies.push(took);
        self.scan_time += took;
        self.parse_time += parse;
    }
}

/// Runs a hunt.
pub fn run(config: &Config) -> Result<Report, Error> {
    let started = Instant::now();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(config.threads)
        .build()?;
    let (inputs, discover_errors) = source::discover(&config.paths);
    let disk_total: u64 = inputs
        .iter()
        .filter_map(|i| match i {
            Input::File(path) => std::fs::metadata(path).ok().map(|m| m.len()),
            Input::Stdin | Input::ZipEntry { .. } => None,
        })
        .sum();
    if let Some(p) = &config.progress {
        p.total
            .store(disk_total, std::sync::atomic::Ordering::Relaxed);
    }
    let names: Vec<String> = inputs.iter().map(Input::display).collect();
    let members: Vec<Option<String>> = inputs
        .iter()
        .map(|i| match i {
            Input::ZipEntry { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect();

    // Pass 1: the rules and their context selections.
    let matcher = Matcher::new(config.rules.clone(), config.prefilter, config.max_line)
        .with_timing(config.timing)
        .with_block(config.scan_block);
    let first: Scanned<Harvest> =
        pool.install(|| scan_all(&inputs, Pass::new(&matcher, &()), config));
    let Scanned {
        partial,
        errors: scan_errors,
        mut warnings,
        stats: scan_stats,
    } = first;
    // Exports (issue 8): an empty directory, or a run that read nothing, says so.
    let explained = !discover_errors.is_empty() || !scan_errors.is_empty() || !warnings.is_empty();
    warnings.extend(crate::warnings::no_input(
        &config.paths,
        &inputs,
        scan_stats.bytes,
        explained,
    ));
    let mut findings = partial.sink.findings;
    let duplicates = if config.keep_duplicates {
        0
    } else {
        drop_duplicates(&mut findings)
    };
    let window = Window {
        since: config.since,
        until: config.until,
    };

    // Pass 2 and the investigation, for each rule that asks for it.
    let mut investigations = Vec::new();
    let mut context_stats = None;
    for (r, rule) in config.rules.iter().enumerate() {
        if !rule.has_analysis(ANALYSIS_BYPASS) {
            continue;
        }
        let r = r as u16;
        let found = findings
            .iter()
            .any(|f| f.rule == r && f.why == Why::Rule && window.contains(f.timestamp));
        let mut context: Option<(Watch, Activity)> = None;
        if found && config.context {
            let accounts = bypass::accounts(&findings, r, Reader::new(rule));
            let watch = bypass::watch(&accounts, config.context_window);
            if !watch.is_empty() {
                if let Some(p) = &config.progress {
                    p.total
                        .fetch_add(disk_total, std::sync::atomic::Ordering::Relaxed);
                }
                let m =
                    Matcher::for_literals(config.rules.clone(), watch.literals(), config.max_line)
                        .with_timing(config.timing)
                        .with_block(config.scan_block);
                let second: Scanned<Activity> =
                    pool.install(|| scan_all(&inputs, Pass::new(&m, &watch), config));
                let attributed = second.partial.sink.records;
                context_stats = Some((second.stats, attributed));
                context = Some((watch, second.partial.sink));
            }
        }
        investigations.push(bypass::investigate(
            &findings,
            r,
            &config.rules,
            window,
            &config.allowlist,
            context.as_ref().map(|(w, a)| (w, a)),
            config.context_window,
        ));
    }

    // The rule matches inside the window, with what the analyses made of them.
    let readers: Vec<Option<Reader>> = config
        .rules
        .iter()
        .map(|r| r.has_analysis(ANALYSIS_BYPASS).then(|| Reader::new(r)))
        .collect();
    let mut outside_window = 0;
    let evidence: Vec<Evidence> = findings
        .into_iter()
        .filter(|f| f.why == Why::Rule)
        .filter(|f| {
            let inside = window.contains(f.timestamp);
            outside_window += u64::from(!inside);
            inside
        })
        .map(|finding| annotate(finding, &readers, &config.allowlist))
        .collect();
    let actors = pool.install(|| actors::group(evidence, &config.rules));

    if let Some(p) = &config.progress {
        p.finished.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let malformed = partial
        .samples
        .iter()
        .map(|s| MalformedLine {
            path: names[s.file].clone(),
            line: s.line + 1,
            reason: s.reason.clone(),
            excerpt: s.excerpt.clone(),
        })
        .collect();
    let mut errors: Vec<InputError> = discover_errors
        .into_iter()
        .map(|e| InputError::Discover {
            path: e.path,
            message: e.message,
        })
        .collect();
    errors.extend(scan_errors);
    Ok(Report {
        rules: config.rules.iter().map(|r| r.meta.clone()).collect(),
        files: names.len() as u64,
        inputs: names,
        members,
        bytes: scan_stats.bytes,
        counts: partial.counts,
        duplicates,
        outside_window,
        window,
        errors,
        warnings,
        malformed,
        actors,
        investigations,
        coverage: verdict::report(&partial.coverage),
        allowlist: config.allowlist.clone(),
        context_ran: context_stats.is_some(),
        stats: RunStats {
            wall: started.elapsed(),
            threads: pool.current_num_threads(),
            chunk_size: config.chunk_size,
            scan: scan_stats,
            context: context_stats,
        },
    })
}

/// A rule match with its change (bypass rules) and allowlist entry (actor, else target).
fn annotate(finding: Finding, readers: &[Option<Reader>], allow: &Allowlist) -> Evidence {
    let reader = readers[usize::from(finding.rule)];
    let change: Option<Change> = reader.map(|r| r.change(&finding));
    let allowed = finding
        .actor
        .as_deref()
        .and_then(|a| allow.find(a))
        .or_else(|| {
            reader
                .and_then(|r| r.target(&finding))
                .and_then(|t| allow.find(t))
        });
    Evidence {
        finding,
        change,
        allowed,
    }
}

/// One pass over every input, merged in input order.
fn scan_all<S: Sink>(inputs: &[Input], pass: Pass<'_, S>, config: &Config) -> Scanned<S> {
    let started = Instant::now();
    let results: Vec<FileResult<S>> = inputs
        .par_iter()
        .enumerate()
        .map(|(i, input)| scan_input(i, input, pass, config))
        .collect();
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut all = Partial::<S>::default();
    let mut bytes = 0;
    let mut formats: std::collections::BTreeMap<String, u64> = Default::default();
    // 1 µs to 1 hour, 3 significant figures: always valid bounds.
    let mut latency = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
    let (mut scan_time, mut parse_time, mut read_time) = Default::default();
    let mut compressed_bytes = 0;
    for (input, r) in inputs.iter().zip(results) {
        errors.extend(r.error);
        if let Some(message) = r.warning {
            warnings.push(Warning {
                path: input.display(),
                message,
            });
        }
        *formats.entry(r.kind.clone()).or_default() += 1;
        bytes += r.bytes;
        for t in &r.latencies {
            latency.saturating_record(t.as_micros().min(u128::from(u64::MAX)) as u64);
        }
        scan_time += r.scan_time;
        parse_time += r.parse_time;
        read_time += r.read_time;
        compressed_bytes += r.compressed_bytes;
        all.absorb_file(r.partial);
    }
    Scanned {
        stats: PassStats {
            wall: started.elapsed(),
            prefilter: pass.matcher.prefilter().describe(),
            bytes,
            counts: all.counts,
            formats: formats.into_iter().collect(),
            chunk_latency_us: latency,
            scan_time,
            parse_time,
            read_time,
            compressed_bytes,
        },
        partial: all,
        errors,
        warnings,
    }
}

fn scan_input<S: Sink>(
    file: usize,
    input: &Input,
    pass: Pass<'_, S>,
    config: &Config,
) -> FileResult<S> {
    let opened = match source::open(input, &config.progress) {
        Ok(o) => o,
        Err(e) => {
            let mut r = FileResult::new("unreadable".to_string());
            r.error = Some(InputError::Open {
                path: input.display(),
                message: e.to_string(),
            });
            return r;
        }
    };
    match opened {
        Opened::Mapped(mapped) => scan_mapped(file, input, mapped.bytes(), pass, config),
        Opened::Stream {
            reader,
            compression,
            notes,
        } => {
            let kind = match (input, compression) {
                (Input::Stdin, Compression::None) => "stdin".to_string(),
                (Input::Stdin, c) => format!("stdin {}", c.name()),
                (Input::ZipEntry { .. }, c) => format!("zip {}", c.name()),
                (_, c) => c.name().to_string(),
            };
            let compressed = compression != Compression::None;
            // Sniff from the first SNIFF bytes however the stream delivers them (a pipe
            // may hand over one byte at a time), then read on from those same bytes.
            let mut reader = reader;
            let mut first = Vec::with_capacity(SNIFF);
            if let Err(e) = (&mut reader).take(SNIFF as u64).read_to_end(&mut first) {
                // Scan what came before the error, then meet the error again there.
                reader = Box::new(document::FailWith(Some(e)));
            }
            let head = &first[..];
            let layout = if head.is_empty() {
                None
            } else {
                Some(Layout::sniff(head))
            };
            let doubt = Layout::doubt(head).filter(|_| layout == Some(Layout::JsonLines));
            let name = match (layout, &doubt) {
                (None, _) => "empty",
                (Some(_), Some(_)) => "unrecognised (read as jsonl)",
                (Some(l), None) => l.name(),
            };
            let kind = format!("{name}+{kind}");
            let mut r = match layout {
                Some(layout @ (Layout::PurviewCsv | Layout::JsonDocument)) => {
                    let reader = io::Cursor::new(first).chain(reader);
                    let mut r = FileResult::new(kind.clone());
                    let t = Instant::now();
                    let mut scratch = Scratch::default();
                    let ((partial, error), bytes) =
                        scan_document(layout, reader, file, pass, &mut scratch);
                    r.bytes = bytes;
                    r.record(
                        partial,
                        t.elapsed(),
                        std::mem::take(&mut scratch.parse_time),
                    );
                    r.error = error.map(|e| {
                        let lines = r.partial.counts.lines;
                        InputError::stopped(input.display(), &e, compressed, bytes, lines)
                    });
                    r
                }
                _ => {
                    let reader = Box::new(io::Cursor::new(first).chain(reader));
                    let mut r = scan_stream(file, input, reader, &kind, compressed, pass, config);
                    r.warning = doubt;
                    r
                }
            };
            if let Input::File(path) = input {
                r.compressed_bytes = std::fs::metadata(path).map_or(0, |md| md.len());
            }
            // Issue 13: zero padding after the last gzip member is a warning.
            if let Some(note) = notes.take() {
                r.warning = Some(match r.warning.take() {
                    Some(doubt) => format!("{doubt}; {note}"),
                    None => note,
                });
            }
            r
        }
    }
}

/// A mapped file: line-aligned chunks scanned in parallel, merged in order.
fn scan_mapped<S: Sink>(
    file: usize,
    input: &Input,
    data: &[u8],
    pass: Pass<'_, S>,
    config: &Config,
) -> FileResult<S> {
    let layout = Layout::sniff(&data[..data.len().min(SNIFF)]);
    if layout != Layout::JsonLines {
        // Records may span lines: read sequentially. Every record is cut out and
        // counted (and tallied for the coverage); only those holding a literal are parsed.
        let mut result = FileResult::new(layout.name().to_string());
        result.bytes = data.len() as u64;
        let t = Instant::now();
        let mut scratch = Scratch::default();
        let ((partial, error), _) = scan_document(layout, data, file, pass, &mut scratch);
        result.record(
            partial,
            t.elapsed(),
            std::mem::take(&mut scratch.parse_time),
        );
        result.error = error.map(|e| {
            let lines = result.partial.counts.lines;
            InputError::stopped(input.display(), &e, false, data.len() as u64, lines)
        });
        bump(&config.progress, data.len());
        return result;
    }
    let mut result = FileResult::new(layout.name().to_string());
    result.bytes = data.len() as u64;
    result.warning = Layout::doubt(&data[..data.len().min(SNIFF)]);
    if result.warning.is_some() {
        result.kind = "unrecognised (read as jsonl)".to_string();
    }
    let chunks = crate::chunk::split(data, config.chunk_size);
    let parts: Vec<(Partial<S>, Duration, Duration)> = chunks
        .par_iter()
        .map_init(Scratch::default, |scratch, range| {
            let t = Instant::now();
            let p = scan_chunk(&data[range.clone()], file, pass, scratch);
            bump(&config.progress, range.len());
            (p, t.elapsed(), std::mem::take(&mut scratch.parse_time))
        })
        .collect();
    for (p, took, parse) in parts {
        result.record(p, took, parse);
    }
    result
}

/// How many leading bytes decide the layout of an input.
const SNIFF: usize = 4096;

/// Reads a CSV export or a JSON document sequentially (records may span lines).
fn scan_document<S: Sink>(
    layout: Layout,
    input: impl io::Read,
    file: usize,
    pass: Pass<'_, S>,
    scratch: &mut Scratch,
) -> (document::Outcome<S>, u64) {
    match layout {
        Layout::PurviewCsv => document::scan_csv(input, file, pass, scratch),
        _ => document::scan_json_document(input, file, pass, scratch),
    }
}

fn bump(progress: &Option<std::sync::Arc<source::Progress>>, bytes: usize) {
    if let Some(p) = progress {
        p.done
            .fetch_add(bytes as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Largest block a stream is cut into, whatever the chunk size: a few blocks are in
/// flight per stream, so this bounds the memory of decompression.
const MAX_STREAM_BLOCK: usize = 16 << 20;

/// What the reading thread sends: blocks, then at most one error.
enum Msg {
    Block(Block),
    Failed { error: io::Error, consumed: u64 },
}

/// A stream: inflated and cut into blocks on a reading thread, scanned here as the
/// blocks arrive. At most a few blocks are in flight (bounded channel, recycled buffers).
fn scan_stream<S: Sink>(
    file: usize,
    input: &Input,
    reader: Box<dyn io::Read + Send>,
    kind: &str,
    compressed: bool,
    pass: Pass<'_, S>,
    config: &Config,
) -> FileResult<S> {
    let mut result = FileResult::new(kind.to_string());
    let (tx, rx) = mpsc::sync_channel::<Msg>(2);
    let (recycle_tx, recycle_rx) = mpsc::channel::<Vec<u8>>();
    let mut read_time = Duration::ZERO;
    let m = pass.matcher;
    std::thread::scope(|s| {
        let reading = s.spawn(move || {
            let block = config.chunk_size.min(MAX_STREAM_BLOCK);
            let mut blocks = BlockReader::new(reader, block, config.max_line)
                .with_prefilter(m.prefilter().clone());
            let mut busy = Duration::ZERO;
            loop {
                let buf = recycle_rx.try_recv().unwrap_or_default();
                let t = Instant::now();
                let next = blocks.next_block(buf);
                busy += t.elapsed();
                let msg = match next {
                    Ok(Some(block)) => Msg::Block(block),
                    Ok(None) => break,
                    Err(error) => {
                        let tail = blocks.take_tail();
                        if !tail.is_empty()
                            && tx.send(Msg::Block(Block::Lines(tail.into()))).is_err()
                        {
                            break;
                        }
                        Msg::Failed {
                            error,
                            consumed: blocks.consumed,
                        }
                    }
                };
                let last = matches!(msg, Msg::Failed { .. });
                if tx.send(msg).is_err() || last {
                    break;
                }
            }
            busy
        });
        let mut scratch = Scratch::default();
        for msg in rx {
            match msg {
                Msg::Block(Block::Lines(data)) => {
                    result.bytes += data.len() as u64;
                    let t = Instant::now();
                    let p = scan_chunk(&data, file, pass, &mut scratch);
                    result.record(p, t.elapsed(), std::mem::take(&mut scratch.parse_time));
                    let _ = recycle_tx.send(data.into_buffer());
                }
                Msg::Block(Block::Overlong {
                    bytes,
                    newline,
                    candidate,
                }) => {
                    result.bytes += bytes + u64::from(newline);
                    let mut p = Partial::<S> {
                        bytes: bytes + u64::from(newline),
                        ..Partial::default()
                    };
                    p.counts.lines = 1;
                    p.counts.records = 1;
                    if m.counts_coverage() {
                        p.coverage.undated = 1;
                    }
                    if candidate {
                        let limit = config.max_line;
                        let reason =
                            format!("line of {bytes} bytes is longer than the limit of {limit}");
                        p.malformed(file, 0, reason, b"");
                    }
                    result.partial.append(p);
                }
                Msg::Failed { error, consumed } => {
                    let lines = result.partial.counts.lines;
                    result.error = Some(InputError::stopped(
                        input.display(),
                        &error,
                        compressed,
                        consumed,
                        lines,
                    ));
                }
            }
        }
        // The reading thread cannot panic on input; if it did, say so rather than hide it.
        read_time = reading.join().unwrap_or_default();
    });
    result.read_time = read_time;
    result
}
