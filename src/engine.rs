//! The driver: inputs in, a [`Report`] out.
//!
//! Place in the flow: ties `source` → `chunk` → `scan` → `findings` together on a rayon
//! pool. Files are scanned in parallel and each mapped file's chunks are too; a gzip or
//! stdin stream is inflated on its own thread into blocks that the scanning side takes
//! through a bounded channel, so inflating overlaps scanning and memory stays bounded.
//! Results are merged in input order, so the report does not depend on scheduling.
//! Nothing here prints.

use std::io::{self, Read};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rayon::prelude::*;

use crate::config::Config;
use crate::document;
use crate::findings::{ActorFindings, Counts, Partial, drop_duplicates, group};
use crate::rule::RuleMeta;
use crate::scan::{Matcher, Scratch, scan_chunk};
use crate::source::{self, Block, BlockReader, Compression, Input, Layout, Opened};

/// An input that could not be read in full.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ScanError {
    /// The input's path (`-` for stdin).
    pub path: String,
    /// What went wrong and how far reading got.
    pub message: String,
}

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

/// Measurements of a run, for `--stats`; never part of the findings.
#[derive(Debug)]
pub struct RunStats {
    /// Wall time of the whole scan.
    pub wall: Duration,
    /// Worker threads used.
    pub threads: usize,
    /// Target chunk size.
    pub chunk_size: usize,
    /// What the prefilter searches for.
    pub prefilter: String,
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

/// Everything a hunt found and counted.
#[derive(Debug)]
pub struct Report {
    /// The rules that ran.
    pub rules: Vec<RuleMeta>,
    /// Input paths, in input order (events refer to them by index).
    pub inputs: Vec<String>,
    /// Inputs read.
    pub files: u64,
    /// Bytes scanned (decompressed).
    pub bytes: u64,
    /// Line accounting.
    pub counts: Counts,
    /// Matched events dropped because an earlier one had the same rule and record id.
    pub duplicates: u64,
    /// Inputs that could not be read in full.
    pub errors: Vec<ScanError>,
    /// Inputs read with a doubt (not recognised as any known layout).
    pub warnings: Vec<ScanError>,
    /// The first malformed lines.
    pub malformed: Vec<MalformedLine>,
    /// Findings grouped by actor.
    pub actors: Vec<ActorFindings>,
    /// Measurements.
    pub stats: RunStats,
}

impl Report {
    /// Number of matched events.
    pub fn events(&self) -> usize {
        self.actors.iter().map(|a| a.evidence.len()).sum()
    }
}

/// What scanning one input gave.
struct FileResult {
    partial: Partial,
    bytes: u64,
    kind: String,
    error: Option<String>,
    warning: Option<String>,
    latencies: Vec<Duration>,
    scan_time: Duration,
    parse_time: Duration,
    read_time: Duration,
    compressed_bytes: u64,
}

impl FileResult {
    fn new(kind: String) -> FileResult {
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

    fn record(&mut self, partial: Partial, took: Duration, parse: Duration) {
        self.partial.append(partial);
        self.latencies.push(took);
        self.scan_time += took;
        self.parse_time += parse;
    }
}

/// Runs a hunt.
pub fn run(config: &Config) -> Result<Report, rayon::ThreadPoolBuildError> {
    let started = Instant::now();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(config.threads)
        .build()?;
    let matcher = Matcher::new(config.rules.clone(), config.prefilter, config.max_line)
        .with_timing(config.timing)
        .with_block(config.scan_block)
        .with_window(config.since, config.until);
    let (inputs, discover_errors) = source::discover(&config.paths);
    if let Some(p) = &config.progress {
        let total: u64 = inputs
            .iter()
            .filter_map(|i| match i {
                Input::File(path) => std::fs::metadata(path).ok().map(|m| m.len()),
                Input::Stdin | Input::ZipEntry { .. } => None,
            })
            .sum();
        p.total.store(total, std::sync::atomic::Ordering::Relaxed);
    }
    let results: Vec<FileResult> = pool.install(|| {
        inputs
            .par_iter()
            .enumerate()
            .map(|(i, input)| scan_input(i, input, &matcher, config))
            .collect()
    });

    let mut errors: Vec<ScanError> = discover_errors
        .into_iter()
        .map(|e| ScanError {
            path: e.path,
            message: e.message,
        })
        .collect();
    let mut warnings = Vec::new();
    let mut all = Partial::default();
    let mut bytes = 0;
    let mut formats: std::collections::BTreeMap<String, u64> = Default::default();
    // 1 µs to 1 hour, 3 significant figures: always valid bounds.
    let mut latency = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
    let (mut scan_time, mut parse_time, mut read_time) = Default::default();
    let mut compressed_bytes = 0;
    all.events
        .reserve(results.iter().map(|r| r.partial.events.len()).sum());
    for (input, r) in inputs.iter().zip(results) {
        if let Some(message) = r.error {
            errors.push(ScanError {
                path: input.display(),
                message,
            });
        }
        if let Some(message) = r.warning {
            warnings.push(ScanError {
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
    // Exports (issue 8): an empty directory, or a run that read nothing, says so.
    let explained = !errors.is_empty() || !warnings.is_empty();
    warnings.extend(crate::coverage::no_input_warnings(
        &config.paths,
        &inputs,
        bytes,
        explained,
    ));
    let names: Vec<String> = inputs.iter().map(Input::display).collect();
    let malformed = all
        .samples
        .iter()
        .map(|s| MalformedLine {
            path: names[s.file].clone(),
            line: s.line + 1,
            reason: s.reason.clone(),
            excerpt: s.excerpt.clone(),
        })
        .collect();
    let duplicates = if config.keep_duplicates {
        0
    } else {
        drop_duplicates(&mut all.events)
    };
    let actors = pool.install(|| group(all.events));
    if let Some(p) = &config.progress {
        p.finished.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let stats = RunStats {
        wall: started.elapsed(),
        threads: pool.current_num_threads(),
        chunk_size: config.chunk_size,
        prefilter: matcher.prefilter().describe(),
        formats: formats.into_iter().collect(),
        chunk_latency_us: latency,
        scan_time,
        parse_time,
        read_time,
        compressed_bytes,
    };
    Ok(Report {
        rules: config.rules.iter().map(|r| r.meta.clone()).collect(),
        files: names.len() as u64,
        inputs: names,
        bytes,
        counts: all.counts,
        duplicates,
        errors,
        warnings,
        malformed,
        actors,
        stats,
    })
}

fn scan_input(file: usize, input: &Input, m: &Matcher, config: &Config) -> FileResult {
    let opened = match source::open(input, &config.progress) {
        Ok(o) => o,
        Err(e) => {
            let mut r = FileResult::new("unreadable".to_string());
            r.error = Some(format!("cannot open: {e}"));
            return r;
        }
    };
    match opened {
        Opened::Mapped(mapped) => scan_mapped(file, mapped.bytes(), m, config),
        Opened::Stream {
            reader,
            compression,
        } => {
            let kind = match (input, compression) {
                (Input::Stdin, Compression::None) => "stdin".to_string(),
                (Input::Stdin, c) => format!("stdin {}", c.name()),
                (Input::ZipEntry { .. }, c) => format!("zip {}", c.name()),
                (_, c) => c.name().to_string(),
            };
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
                        scan_document(layout, reader, file, m, &mut scratch);
                    r.bytes = bytes;
                    r.record(
                        partial,
                        t.elapsed(),
                        std::mem::take(&mut scratch.parse_time),
                    );
                    r.error = error.map(|e| stream_error(&e, &kind, bytes, r.partial.counts.lines));
                    r
                }
                _ => {
                    let reader = Box::new(io::Cursor::new(first).chain(reader));
                    let mut r = scan_stream(file, reader, &kind, m, config);
                    r.warning = doubt;
                    r
                }
            };
            if let Input::File(path) = input {
                r.compressed_bytes = std::fs::metadata(path).map_or(0, |md| md.len());
            }
            r
        }
    }
}

/// A mapped file: line-aligned chunks scanned in parallel, merged in order.
fn scan_mapped(file: usize, data: &[u8], m: &Matcher, config: &Config) -> FileResult {
    let layout = Layout::sniff(&data[..data.len().min(SNIFF)]);
    if layout != Layout::JsonLines {
        let mut result = FileResult::new(layout.name().to_string());
        result.bytes = data.len() as u64;
        // Exports (issue 8): a document without any rule literal is still cut into its
        // records (counted, none parsed), so `records` is the same whatever the container.
        let t = Instant::now();
        let mut scratch = Scratch::default();
        let ((partial, error), _) = scan_document(layout, data, file, m, &mut scratch);
        result.record(
            partial,
            t.elapsed(),
            std::mem::take(&mut scratch.parse_time),
        );
        result.error = error.map(|e| format!("{}: {e}", layout.name()));
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
    let parts: Vec<(Partial, Duration, Duration)> = chunks
        .par_iter()
        .map_init(Scratch::default, |scratch, range| {
            let t = Instant::now();
            let p = scan_chunk(&data[range.clone()], file, m, scratch);
            bump(&config.progress, range.len());
            (p, t.elapsed(), std::mem::take(&mut scratch.parse_time))
        })
        .collect();
    // One allocation for all events (the worst case has hundreds of thousands).
    result
        .partial
        .events
        .reserve(parts.iter().map(|p| p.0.events.len()).sum());
    for (p, took, parse) in parts {
        result.record(p, took, parse);
    }
    result
}

/// How many leading bytes decide the layout of an input.
const SNIFF: usize = 4096;

/// Reads a CSV export or a JSON document sequentially (records may span lines).
fn scan_document(
    layout: Layout,
    input: impl io::Read,
    file: usize,
    m: &Matcher,
    scratch: &mut Scratch,
) -> (document::Outcome, u64) {
    match layout {
        Layout::PurviewCsv => document::scan_csv(input, file, m, scratch),
        _ => document::scan_json_document(input, file, m, scratch),
    }
}

/// Describes an error that stopped a stream, with how far reading got.
fn stream_error(error: &io::Error, kind: &str, consumed: u64, lines: u64) -> String {
    let what = match error.kind() {
        io::ErrorKind::UnexpectedEof => "stream ends early (truncated?)",
        _ => "read error",
    };
    let data = if kind.contains("gzip") || kind.contains("zstd") {
        "decompressed"
    } else {
        "input"
    };
    format!("{what}: {error}; stopped after {consumed} bytes of {data} data, line {lines}")
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
fn scan_stream(
    file: usize,
    reader: Box<dyn io::Read + Send>,
    kind: &str,
    m: &Matcher,
    config: &Config,
) -> FileResult {
    let mut result = FileResult::new(kind.to_string());
    let (tx, rx) = mpsc::sync_channel::<Msg>(2);
    let (recycle_tx, recycle_rx) = mpsc::channel::<Vec<u8>>();
    let mut read_time = Duration::ZERO;
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
                    let p = scan_chunk(&data, file, m, &mut scratch);
                    result.record(p, t.elapsed(), std::mem::take(&mut scratch.parse_time));
                    let _ = recycle_tx.send(data.into_buffer());
                }
                Msg::Block(Block::Overlong {
                    bytes,
                    newline,
                    candidate,
                }) => {
                    result.bytes += bytes + u64::from(newline);
                    let mut p = Partial::default();
                    p.counts.lines = 1;
                    p.counts.records = 1;
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
                    result.error = Some(stream_error(&error, kind, consumed, lines));
                }
            }
        }
        // The reading thread cannot panic on input; if it did, say so rather than hide it.
        read_time = reading.join().unwrap_or_default();
    });
    result.read_time = read_time;
    result
}
