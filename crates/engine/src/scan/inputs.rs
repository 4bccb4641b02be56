//! One pass over the inputs: each input opened, read by its layout and compression,
//! and every record handed to the scan, in parallel; the results merged in input order.
//!
//! Place in the flow: the searcher of a pass. A mapped file (or, in a sharded run, a
//! [`Piece`] of one) is cut into line-aligned chunks scanned on the rayon pool; a gzip,
//! zstd, zip-entry or stdin stream is inflated on its own thread into blocks that this
//! side scans as they arrive through a bounded channel, so inflating overlaps scanning
//! and memory stays bounded; a CSV export or a JSON document is read record by record
//! ([`document`](super::document)). Results are merged in input order, so a report does
//! not depend on scheduling. The context pass reads of a JSON-lines input only the
//! stretches the block index gives (`crate::index`): of a mapped file, those bytes; of
//! a gzip or zstd file, each stretch inflated from the nearest seek point before it.

use std::io::{self, Read};
use std::ops::Range;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use ualhunt_input::{
    self as source, Block, BlockReader, Compression, Input, Layout, Opened, SNIFF,
};

use crate::config::Config;
use crate::error::{InputError, Warning};
use crate::findings::{Counts, Partial, Shift};
use crate::index::{Seekable, Within};

use super::cache::{Cache, Keeper};
use super::document::{scan_csv, scan_json_document};
use super::{Pass, Scratch, Sink, scan_chunk};

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
    /// Decompressed bytes inflated only to reach a stretch from a seek point before it
    /// (read, not scanned; not in `bytes`).
    pub lead_in: u64,
    /// Decompressed bytes of compressed files read from the context cache instead of
    /// inflated again (scanned: part of `bytes`).
    pub cached: u64,
}

/// Most mapped files a run keeps from one pass for the next ([`Maps`]).
pub const KEPT_MAPS: usize = 64;
/// Most mapped bytes a run keeps from one pass for the next ([`Maps`]): address space
/// and the file's cached pages, which the kernel may still drop (they are read again
/// from the file if touched), never heap. The resident size counts the kept pages, so
/// a run over several plain files peaks at up to this much more than one file's.
pub const KEPT_BYTES: u64 = 4 << 30;

/// The mappings of plain files a run keeps from one pass for the next, so the context
/// pass reads the pages the first pass mapped and faulted in instead of mapping and
/// faulting the file a second time (and unmapping it twice). A pass given them
/// ([`Pass::keeping`]) takes an input's mapping when one is kept and keeps each whole
/// input it mapped and read without error, up to [`KEPT_MAPS`] mappings and
/// [`KEPT_BYTES`] bytes. Dropping them unmaps. Beside them, the inflated blocks of
/// compressed files the first pass keeps for the context pass ([`Cache`]; none unless
/// made [`Maps::with_cache`]).
#[derive(Default)]
pub struct Maps {
    kept: std::sync::Mutex<Kept>,
    /// Inflated blocks of compressed files.
    pub cache: Cache,
}

#[derive(Default)]
struct Kept {
    maps: rustc_hash::FxHashMap<usize, source::Mapped>,
    bytes: u64,
}

impl Maps {
    /// No mapping kept yet, and a context cache of `budget` bytes open for the first
    /// pass (`0`: none).
    pub fn with_cache(budget: u64) -> Maps {
        Maps {
            kept: Default::default(),
            cache: Cache::new(budget),
        }
    }

    /// Input `file`'s kept mapping, taken out (`None`: none is kept).
    fn take(&self, file: usize) -> Option<source::Mapped> {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let map = kept.maps.remove(&file)?;
        kept.bytes -= map.bytes().len() as u64;
        Some(map)
    }

    /// Keeps input `file`'s mapping when there is room; a file read into memory (its
    /// mapping refused) is never kept.
    fn keep(&self, file: usize, map: source::Mapped) {
        if !matches!(map, source::Mapped::Map(_)) {
            return;
        }
        let len = map.bytes().len() as u64;
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.maps.len() < KEPT_MAPS && kept.bytes + len <= KEPT_BYTES {
            kept.bytes += len;
            kept.maps.insert(file, map);
        }
    }

    /// Unmaps every kept mapping.
    pub fn clear(&self) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        *kept = Kept::default();
    }

    /// Unmaps every kept mapping, each first given back in [`RELEASE_PIECE`] pieces on
    /// the current rayon pool ([`source::Mapped::release`]): the page table entries of
    /// the pages a pass faulted in are cleared on every thread, not on one at the drop.
    pub fn release(&self) {
        let maps: Vec<source::Mapped> = {
            let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::take(&mut *kept).maps.into_values().collect()
        };
        release_pieces(&maps);
    }

    /// How many mappings are kept.
    pub fn len(&self) -> usize {
        self.kept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .maps
            .len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The piece of a mapping [`Maps::release`] gives back at a time (a work item of the
/// pool; each is one system call).
pub const RELEASE_PIECE: usize = 8 << 20;

/// The pieces of `maps` given back in parallel ([`Maps::release`]).
fn release_pieces(maps: &[source::Mapped]) {
    let pieces: Vec<(usize, Range<usize>)> = maps
        .iter()
        .enumerate()
        .flat_map(|(k, m)| {
            let len = m.len_held();
            (0..len)
                .step_by(RELEASE_PIECE)
                .map(move |at| (k, at..(at + RELEASE_PIECE).min(len)))
        })
        .collect();
    pieces
        .par_iter()
        .for_each(|(k, range)| maps[*k].release(range.clone()));
}

/// What one pass reads of one input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unit {
    /// The input's index in input order.
    pub input: u32,
    /// `None`: the whole input. Otherwise a piece of a plain JSON-lines file: nominal
    /// byte offsets `start..end` (`end` `None`: to the end of the file), each moved to
    /// the next line start when read.
    pub piece: Option<Piece>,
}

/// A nominal byte range of a plain file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Piece {
    /// First byte (nominal).
    pub start: u64,
    /// End (nominal, exclusive); `None`: to the end of the file as it is when read.
    pub end: Option<u64>,
}

impl Piece {
    /// The piece as a range of a file of `len` bytes (unaligned).
    pub fn range(&self, len: u64) -> Range<u64> {
        self.start.min(len)..self.end.unwrap_or(len).min(len)
    }
}

/// What one pass over all inputs gave, merged in input order.
pub struct Scanned<S> {
    /// Counts, samples, coverage and the sink's state.
    pub partial: Partial<S>,
    /// Inputs that could not be read in full, in input order.
    pub errors: Vec<InputError>,
    /// Inputs read with a doubt, in input order.
    pub warnings: Vec<Warning>,
    /// Measurements.
    pub stats: PassStats,
}

/// What one scanned input gave.
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
    lead_in: u64,
    /// Decompressed bytes read from the context cache (`Cache`), not inflated again.
    cached: u64,
    /// A piece read only where the index points: positions are the input's own.
    absolute: bool,
    /// Decompressed bytes the block reader dropped before the first block (a byte order
    /// mark).
    dropped: u64,
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
            lead_in: 0,
            cached: 0,
            absolute: false,
            dropped: 0,
        }
    }

    fn record(&mut self, partial: Partial<S>, took: Duration, parse: Duration) {
        self.partial.append(partial);
        self.latencies.push(took);
        self.scan_time += took;
        self.parse_time += parse;
    }
}

/// One pass over every input, merged in input order.
pub(crate) fn scan_all<S: Sink>(
    inputs: &[Input],
    pass: Pass<'_, S>,
    config: &Config,
) -> Scanned<S> {
    scan_all_within(inputs, &[], pass, config)
}

/// [`scan_all`], reading of each plain JSON-lines file only the stretches `within`
/// gives for it (`within[i]`: `None`, or no entry, reads input `i` whole; so do inputs
/// that are not plain JSON-lines files, whose stretches are ignored). Positions stay
/// those of the whole input.
pub(crate) fn scan_all_within<S: Sink>(
    inputs: &[Input],
    within: &[Option<crate::index::Within>],
    pass: Pass<'_, S>,
    config: &Config,
) -> Scanned<S> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut all = Partial::<S>::default();
    // Each result is merged as its batch completes, in input order: one partial per
    // input is never held for all inputs at once (an archive may hold a million).
    // Each input whole: no list of units (an archive may hold a million).
    let whole = |i: usize| Unit {
        input: i as u32,
        piece: None,
    };
    let mut stats = scan_units_each(inputs, inputs.len(), whole, within, pass, config, |r| {
        errors.extend(r.error);
        warnings.extend(r.warning);
        all.absorb_file(r.partial);
    });
    stats.counts = all.counts;
    Scanned {
        stats,
        partial: all,
        errors,
        warnings,
    }
}

/// What reading one unit (an input, or a piece of one) gave.
pub struct UnitResult<S> {
    /// Its partial result; a piece's positions are relative to the piece's start,
    /// unless `absolute`.
    pub partial: Partial<S>,
    /// A piece read only where the index points: its positions are the input's own.
    pub absolute: bool,
    /// Bytes scanned (decompressed).
    pub bytes: u64,
    /// Why it could not be read in full.
    pub error: Option<InputError>,
    /// A doubt about it.
    pub warning: Option<Warning>,
}

/// One pass over some units of the inputs (in parallel), their results in unit order;
/// the returned statistics count no lines (the caller merges). `within` as in
/// `scan_all_within`; a piece of a file reads the stretches inside it, its positions
/// then the file's own ([`UnitResult::absolute`]).
pub fn scan_units<S: Sink>(
    inputs: &[Input],
    units: &[Unit],
    within: &[Option<crate::index::Within>],
    pass: Pass<'_, S>,
    config: &Config,
) -> (Vec<UnitResult<S>>, PassStats) {
    let mut out = Vec::with_capacity(units.len());
    let unit = |k: usize| units[k].clone();
    let stats = scan_units_each(inputs, units.len(), unit, within, pass, config, |r| {
        out.push(r)
    });
    (out, stats)
}

/// Units scanned at once (in parallel) before their results are merged: bounds the
/// results held at a time, whatever the number of inputs.
const BATCH: usize = 4096;

/// One pass over `count` units of the inputs (`unit(k)`, the k-th), in parallel
/// batches of [`BATCH`], each unit's result handed to `each` in unit order as its batch
/// completes; the returned statistics count no lines (the caller merges).
fn scan_units_each<S: Sink>(
    inputs: &[Input],
    count: usize,
    unit: impl Fn(usize) -> Unit + Sync,
    within: &[Option<crate::index::Within>],
    pass: Pass<'_, S>,
    config: &Config,
    mut each: impl FnMut(UnitResult<S>),
) -> PassStats {
    let started = Instant::now();
    let mut bytes = 0;
    let mut formats: std::collections::BTreeMap<String, u64> = Default::default();
    // 1 µs to 1 hour, 3 significant figures: always valid bounds.
    let mut latency = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
    let (mut scan_time, mut parse_time, mut read_time) = Default::default();
    let mut compressed_bytes = 0;
    let mut lead_in = 0;
    let mut cached = 0;
    for start in (0..count).step_by(BATCH) {
        let batch: Vec<Unit> = (start..count.min(start + BATCH)).map(&unit).collect();
        let results: Vec<FileResult<S>> = batch
            .par_iter()
            .map(|u| {
                let i = u.input as usize;
                let only = within.get(i).and_then(Option::as_ref);
                scan_input(i, &inputs[i], u.piece, only, pass, config)
            })
            .collect();
        for (unit, r) in batch.iter().zip(results) {
            let warning = r.warning.map(|message| Warning {
                path: inputs[unit.input as usize].display(),
                message,
            });
            // A piece after a file's first is not an input of its own in the statistics.
            if unit.piece.is_none_or(|p| p.start == 0) {
                *formats.entry(r.kind.clone()).or_default() += 1;
            }
            bytes += r.bytes;
            for t in &r.latencies {
                latency.saturating_record(t.as_micros().min(u128::from(u64::MAX)) as u64);
            }
            scan_time += r.scan_time;
            parse_time += r.parse_time;
            read_time += r.read_time;
            compressed_bytes += r.compressed_bytes;
            lead_in += r.lead_in;
            cached += r.cached;
            each(UnitResult {
                absolute: r.absolute,
                partial: r.partial,
                bytes: r.bytes,
                error: r.error,
                warning,
            });
        }
    }
    PassStats {
        wall: started.elapsed(),
        prefilter: pass.matcher.describe_prefilter(),
        bytes,
        counts: Counts::default(),
        formats: formats.into_iter().collect(),
        chunk_latency_us: latency,
        scan_time,
        parse_time,
        read_time,
        compressed_bytes,
        lead_in,
        cached,
    }
}

/// A piece of an input that is not (or no longer) a plain JSON-lines file: the shard
/// plan was made from other bytes.
fn not_splittable<S: Sink>(input: &Input) -> FileResult<S> {
    let mut r = FileResult::new("unreadable".to_string());
    r.error = Some(InputError::Open {
        path: input.display(),
        message: "changed since the shard plan was made (no longer a plain JSON-lines file)"
            .to_string(),
    });
    r
}

/// An input that is one of ualhunt's own reports (`kind`), left beside the evidence by an
/// earlier run: not read as audit records, and said once (by its first piece).
fn own_report<S: Sink>(kind: &str, first_piece: bool) -> FileResult<S> {
    let mut r = FileResult::new(format!("ualhunt {kind} report (skipped)"));
    if first_piece {
        r.warning = Some(format!(
            "a report written by ualhunt ({kind}), not an audit archive: skipped"
        ));
    }
    r
}

fn scan_input<S: Sink>(
    file: usize,
    input: &Input,
    piece: Option<Piece>,
    only: Option<&crate::index::Within>,
    pass: Pass<'_, S>,
    config: &Config,
) -> FileResult<S> {
    if piece.is_none()
        && let (Some(only), Input::File(path)) = (only, input)
        && let Some(seek) = &only.seek
        && Seekable::identity(path) == Some((seek.disk_len, seek.modified))
        && let Some(r) = scan_seeking(file, input, path, only, seek, pass, config)
    {
        return r;
    }
    // The file as it is before it is read: its seek points are for these bytes.
    let identity = match input {
        Input::File(path) if pass.matcher.counts_coverage() => Seekable::identity(path),
        _ => None,
    };
    // A whole input's mapping kept by an earlier pass is read again as it is.
    let maps = pass.maps.filter(|_| piece.is_none());
    let opened = match maps.and_then(|m| m.take(file)) {
        Some(mapped) => Opened::Mapped(mapped),
        None => match source::open_noting(input, &config.progress, config.seek_spacing) {
            Ok(o) => o,
            Err(e) => {
                let mut r = FileResult::new("unreadable".to_string());
                r.error = Some(InputError::Open {
                    path: input.display(),
                    message: e.to_string(),
                });
                return r;
            }
        },
    };
    match opened {
        Opened::Mapped(mapped) => {
            let r = scan_mapped(file, input, &mapped, piece, only, pass, config);
            if let Some(maps) = maps
                && r.error.is_none()
            {
                maps.keep(file, mapped);
            }
            r
        }
        Opened::Stream { .. } if piece.is_some() => not_splittable(input),
        Opened::Stream {
            reader,
            compression,
            notes,
            seeks,
        } => {
            let kind = match (input, compression) {
                (Input::Stdin, Compression::None) => "stdin".to_string(),
                (Input::Stdin, c) => format!("stdin {}", c.name()),
                (Input::ZipEntry { .. }, c) => format!("zip {}", c.name()),
                (_, c) => c.name().to_string(),
            };
            let compressed = compression != Compression::None;
            // A compressed file whose seek points are noted keeps its inflated blocks
            // for the context pass while the cache is open (`Cache`).
            let mut keeper = match (maps, &seeks, identity) {
                (Some(m), Some(_), Some(_)) if compressed => m.cache.keeper(file),
                _ => None,
            };
            // Sniff from the head however the stream delivers it, then read on from
            // those same bytes.
            let mut reader = reader;
            let mut first = Vec::with_capacity(SNIFF);
            if let Err(e) = ualhunt_input::read_sniff_head(&mut reader, &mut first) {
                // Scan what came before the error, then meet the error again there.
                reader = Box::new(ualhunt_input::document::FailWith(Some(e)));
            }
            let head = ualhunt_input::sniff_head(&first);
            if let Some(report) = Layout::own_report(head) {
                return own_report(report, true);
            }
            let layout = if first.is_empty() {
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
                    let ((partial, error), extent) =
                        scan_document(layout, reader, file, pass, &mut scratch);
                    let bytes = extent.bytes;
                    r.bytes = bytes;
                    r.warning = damage(extent.warnings);
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
                    let mut r = scan_stream(
                        file,
                        input,
                        reader,
                        &kind,
                        compressed,
                        pass,
                        config,
                        keeper.as_mut(),
                    );
                    r.warning = doubt;
                    r
                }
            };
            if let Input::File(path) = input {
                r.compressed_bytes = std::fs::metadata(path).map_or(0, |md| md.len());
            }
            // A file read whole without error keeps its seek points for the context
            // pass (only its JSON lines have index spans to reach with them).
            if let (Some((codec, seeks)), Some((disk_len, modified))) = (seeks, identity)
                && r.error.is_none()
                && !r.partial.index.is_empty()
            {
                r.partial.seeks.push(Seekable {
                    input: file as u32,
                    codec,
                    disk_len,
                    modified,
                    points: seeks.points(),
                    lead: r.dropped,
                });
                // Read by stretches in the context pass: from these blocks first.
                if let Some(keeper) = keeper.take() {
                    keeper.commit();
                }
            } else {
                // Any other stream is read whole by the context pass: its block index
                // would be held for nothing, one entry or more per input (an archive
                // may hold a million).
                r.partial.index = Vec::new();
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

/// A mapped file (or, in a sharded run, a piece of one): line-aligned chunks scanned in
/// parallel, merged in order. A file cut or changed under the scan keeps only the
/// results of the bytes read as they were (see [`source::GuardedMap`]) and is reported
/// as stopped there.
fn scan_mapped<S: Sink>(
    file: usize,
    input: &Input,
    mapped: &source::Mapped,
    piece: Option<Piece>,
    only: Option<&crate::index::Within>,
    pass: Pass<'_, S>,
    config: &Config,
) -> FileResult<S> {
    let data = mapped.bytes();
    let head = ualhunt_input::sniff_head(data);
    if let Some(report) = Layout::own_report(head) {
        return own_report(report, piece.is_none_or(|p| p.start == 0));
    }
    let layout = Layout::sniff(head);
    if layout != Layout::JsonLines && piece.is_some() {
        return not_splittable(input);
    }
    let hook = TruncateHook::from_env(input);
    let mut result = FileResult::new(layout.name().to_string());
    if layout != Layout::JsonLines {
        // Records may span lines: read sequentially. Every record is cut out and
        // counted (and tallied for the coverage); only those holding a literal are parsed.
        let t = Instant::now();
        let mut scratch = Scratch::default();
        let ((partial, error), extent) = scan_document(layout, data, file, pass, &mut scratch);
        result.warning = damage(extent.warnings);
        hook.fire(1);
        result.bytes = data.len() as u64;
        result.record(partial, t.elapsed(), scratch.parse_time);
        result.error = error.map(|e| {
            let lines = result.partial.counts.lines;
            InputError::stopped(input.display(), &e, false, data.len() as u64, lines)
        });
        bump(&config.progress, data.len());
        if let Some(valid) = valid_bytes(mapped) {
            result.bytes = valid as u64;
        }
        changed(&mut result, input, mapped);
        return result;
    }
    if Layout::doubt(head).is_some() {
        result.kind = "unrecognised (read as jsonl)".to_string();
    }
    // Sharded runs: only the first piece of a file warns about it.
    if piece.is_none_or(|p| p.start == 0) {
        result.warning = Layout::doubt(head);
    }
    if let Some(only) = only
        && only.len == data.len() as u64
        && valid_bytes(mapped).is_none()
    {
        // A piece of a sharded run reads the stretches inside it (its boundaries are
        // the index's span boundaries), at the file's own positions.
        let (only, absolute) = match piece {
            None => (Some(only.joined()), false),
            Some(p) => {
                let r = p.range(data.len() as u64);
                let start = ualhunt_input::chunk::align(data, r.start);
                let end = ualhunt_input::chunk::align(data, r.end).max(start);
                (only.inside(start as u64..end as u64), true)
            }
        };
        if let Some(only) = only {
            let mut result = scan_stretches(file, data, &only.stretches, result, pass, config);
            result.absolute = absolute;
            changed(&mut result, input, mapped);
            return result;
        }
    }
    // A piece is read from the line start at or after its nominal start up to the line
    // start at or after its nominal end.
    let (offset, data) = match piece {
        None => (0, data),
        Some(p) => {
            let r = p.range(data.len() as u64);
            let start = ualhunt_input::chunk::align(data, r.start);
            let end = ualhunt_input::chunk::align(data, r.end).max(start);
            (start, &data[start..end])
        }
    };
    result.bytes = data.len() as u64;
    let chunks = ualhunt_input::chunk::split(data, config.chunk_size);
    let done = std::sync::atomic::AtomicUsize::new(0);
    let mut parts: Vec<(Partial<S>, Duration, Duration)> = chunks
        .par_iter()
        .map_init(Scratch::default, |scratch, range| {
            let t = Instant::now();
            let p = scan_chunk(&data[range.clone()], file, pass, scratch);
            bump(&config.progress, range.len());
            hook.fire(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1);
            (p, t.elapsed(), std::mem::take(&mut scratch.parse_time))
        })
        .collect();
    // Cut under the scan: what was read past the cut is zeros (no newline, no literal)
    // and cannot be read again (the file's pages are gone). Chunks that start past it
    // are dropped; the one it falls in is kept, its last line running into the zeros
    // counts as one line, as the unfinished last line of a cut gzip stream does.
    if let Some(valid) = valid_bytes(mapped) {
        let valid = valid.saturating_sub(offset).min(data.len());
        let keep = chunks.iter().take_while(|r| r.start < valid).count();
        parts.truncate(keep);
        result.bytes = valid as u64;
    }
    for (p, took, parse) in parts {
        result.record(p, took, parse);
    }
    changed(&mut result, input, mapped);
    result
}

/// Reads only `only` of a mapped JSON-lines file (the context pass, `crate::index`):
/// each stretch cut into chunks scanned in parallel, each chunk's positions shifted to
/// where it is in the file.
fn scan_stretches<S: Sink>(
    file: usize,
    data: &[u8],
    only: &[crate::index::Stretch],
    mut result: FileResult<S>,
    pass: Pass<'_, S>,
    config: &Config,
) -> FileResult<S> {
    let clamp = |b: u64| usize::try_from(b).unwrap_or(usize::MAX).min(data.len());
    let chunks: Vec<(usize, Range<usize>)> = only
        .iter()
        .enumerate()
        .flat_map(|(k, s)| {
            let (start, end) = (clamp(s.bytes.start), clamp(s.bytes.end));
            ualhunt_input::chunk::split(&data[start..end], config.chunk_size)
                .into_iter()
                .map(move |r| (k, start + r.start..start + r.end))
        })
        .collect();
    let parts: Vec<(usize, Partial<S>, Duration, Duration)> = chunks
        .par_iter()
        .map_init(Scratch::default, |scratch, (k, range)| {
            let t = Instant::now();
            let p = scan_chunk(&data[range.clone()], file, pass, scratch);
            bump(&config.progress, range.len());
            (*k, p, t.elapsed(), std::mem::take(&mut scratch.parse_time))
        })
        .collect();
    // Chunks of one stretch append one after the other; each stretch starts where the
    // index puts it.
    let mut stretch: Option<(usize, Partial<S>)> = None;
    let mut whole = Partial::<S>::default();
    let close = |whole: &mut Partial<S>, done: Option<(usize, Partial<S>)>| {
        if let Some((k, p)) = done {
            let s = &only[k];
            let shift = crate::findings::Shift {
                lines: s.line,
                bytes: s.bytes.start,
            };
            whole.append_at(p, shift);
        }
    };
    for (k, p, took, parse) in parts {
        result.latencies.push(took);
        result.scan_time += took;
        result.parse_time += parse;
        result.bytes += p.bytes;
        match &mut stretch {
            Some((at, sp)) if *at == k => sp.append(p),
            _ => close(&mut whole, stretch.replace((k, p))),
        }
    }
    close(&mut whole, stretch.take());
    result.partial = whole;
    result
}

/// Reads only the stretches `only` gives of a compressed JSON-lines file, each inflated
/// from the nearest of its seek points before it (or from where the last stretch's
/// reading got to, when no point is nearer), the bytes before the stretch dropped;
/// each stretch's positions are shifted to where it is in the file. `None` when a
/// stretch cannot be read as the first pass read it (the caller then reads the file
/// whole, which reports what is wrong as any read does).
fn scan_seeking<S: Sink>(
    file: usize,
    input: &Input,
    path: &std::path::Path,
    only: &Within,
    seek: &Seekable,
    pass: Pass<'_, S>,
    config: &Config,
) -> Option<FileResult<S>> {
    let kind = format!("jsonl+{} (from seek points)", seek.codec.name());
    let mut result = FileResult::new(kind.clone());
    let mut whole = Partial::<S>::default();
    // The blocks the first pass kept of this file: what they hold is read from memory.
    let kept = pass.maps.and_then(|m| m.cache.get(file));
    // The reader in use, and the decompressed offset it has reached.
    let mut reading: Option<(Shared, u64)> = None;
    for s in &only.joined().stretches {
        // Kept bytes up to `start`, the rest inflated from a seek point.
        let mut part = Partial::<S>::default();
        let start = match &kept {
            Some(kept) if kept.end() > s.bytes.start => {
                let cut = kept.end().min(s.bytes.end);
                part = scan_kept(file, kept, s.bytes.start..cut, &mut result, pass, config);
                cut
            }
            _ => s.bytes.start,
        };
        if start == s.bytes.end {
            whole.append_at(
                part,
                Shift {
                    lines: s.line,
                    bytes: s.bytes.start,
                },
            );
            continue;
        }
        let len = s.bytes.end - start;
        // The decoder's offsets count the bytes before the first block (a byte order
        // mark), the blocks' do not: the stretch starts that much further in.
        let start = start + seek.lead;
        let point = seek.before(start);
        let from = point.map_or(0, |p| p.out);
        let reuse = reading
            .as_ref()
            .is_some_and(|(_, at)| *at <= start && *at >= from);
        if !reuse {
            let start_point = ualhunt_input::seek::Point {
                out: 0,
                input: 0,
                bits: 0,
                window: Vec::new(),
            };
            let reader =
                ualhunt_input::seek::resume(path, seek.codec, point.unwrap_or(&start_point))
                    .ok()?;
            reading = Some((
                Shared(std::sync::Arc::new(std::sync::Mutex::new(reader))),
                from,
            ));
        }
        // Set just above.
        let (shared, at) = reading.as_mut().expect("a reader");
        let skip = start - *at;
        let stretch = ualhunt_input::seek::Stretch::new(shared.clone(), skip, len);
        let r = scan_stream(
            file,
            input,
            Box::new(stretch),
            &kind,
            true,
            pass,
            config,
            None,
        );
        if r.error.is_some() || r.bytes != len {
            return None;
        }
        *at = start + len;
        result.lead_in += skip;
        result.bytes += r.bytes;
        result.latencies.extend(r.latencies);
        result.scan_time += r.scan_time;
        result.parse_time += r.parse_time;
        result.read_time += r.read_time;
        part.append(r.partial);
        whole.append_at(
            part,
            Shift {
                lines: s.line,
                bytes: s.bytes.start,
            },
        );
    }
    result.partial = whole;
    result.compressed_bytes = seek.disk_len;
    Some(result)
}

/// Scans the bytes `range` of a compressed file that its first pass kept (line-aligned:
/// a stretch, or its part before the kept bytes end), the kept blocks' slices in
/// parallel, merged in order; counts them into `result` as read from the cache.
fn scan_kept<S: Sink>(
    file: usize,
    kept: &super::cache::Kept,
    range: Range<u64>,
    result: &mut FileResult<S>,
    pass: Pass<'_, S>,
    config: &Config,
) -> Partial<S> {
    let slices = kept.slices(range);
    let parts: Vec<(Partial<S>, Duration, Duration)> = slices
        .par_iter()
        .map_init(Scratch::default, |scratch, data| {
            let t = Instant::now();
            let p = scan_chunk(data, file, pass, scratch);
            bump(&config.progress, data.len());
            (p, t.elapsed(), std::mem::take(&mut scratch.parse_time))
        })
        .collect();
    let mut whole = Partial::<S>::default();
    for (p, took, parse) in parts {
        result.latencies.push(took);
        result.scan_time += took;
        result.parse_time += parse;
        result.bytes += p.bytes;
        result.cached += p.bytes;
        whole.append(p);
    }
    whole
}

/// One reader shared by the stretches read from it one after the other.
#[derive(Clone)]
struct Shared(std::sync::Arc<std::sync::Mutex<Box<dyn io::Read + Send>>>);

impl io::Read for Shared {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Never contended: one stretch reads at a time; a poisoned lock means a
        // reading thread panicked, which `scan_stream` reports.
        self.0.lock().unwrap_or_else(|e| e.into_inner()).read(buf)
    }
}

/// How many bytes of `mapped.bytes()` were read from the file as it was, when it was
/// cut under the scan.
fn valid_bytes(mapped: &source::Mapped) -> Option<usize> {
    let change = mapped.change().filter(|c| c.truncated)?;
    Some((change.valid as usize).saturating_sub(mapped.skipped()))
}

/// Reports a file that changed under the scan as stopped, with how far the scan got.
/// Findings come only from records read whole from the file: the zeros past a cut hold
/// no newline and no rule literal, so a record the cut runs through does not parse (it
/// counts malformed if it held a literal) and nothing past it is a record.
fn changed<S: Sink>(result: &mut FileResult<S>, input: &Input, mapped: &source::Mapped) {
    if let Some(change) = mapped.change() {
        // An error met while reading what was left says less than the cut itself.
        result.error = Some(InputError::Stopped {
            path: input.display(),
            what: change.describe(),
            message: if change.truncated {
                "bytes past the cut were not used".to_string()
            } else {
                "read as it was when opened; what changed after may be missed".to_string()
            },
            offset: result.bytes,
            line: result.partial.counts.lines,
            data: "input",
        });
    }
}

/// A test hook (hidden, for tests/changing.rs): with `UALHUNT_TEST_TRUNCATE_AFTER_CHUNKS=N`
/// the scan itself cuts a file to nothing once N of its chunks (of a stream, its
/// blocks) are scanned, a
/// real truncation at a known point of the scan, so a test need not race a timer.
struct TruncateHook<'a> {
    after: Option<usize>,
    path: Option<&'a std::path::Path>,
}

impl<'a> TruncateHook<'a> {
    fn from_env(input: &'a Input) -> TruncateHook<'a> {
        let after = std::env::var("UALHUNT_TEST_TRUNCATE_AFTER_CHUNKS")
            .ok()
            .and_then(|v| v.parse().ok());
        let path = match input {
            Input::File(p) => Some(p.as_path()),
            _ => None,
        };
        TruncateHook { after, path }
    }

    fn fire(&self, chunks_done: usize) {
        if self.after == Some(chunks_done)
            && let Some(path) = self.path
        {
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .and_then(|f| f.set_len(0));
        }
    }
}

/// The damage a document reader read past, as one warning.
fn damage(warnings: Vec<String>) -> Option<String> {
    (!warnings.is_empty()).then(|| warnings.join("; "))
}

/// Reads a CSV export or a JSON document sequentially (records may span lines).
fn scan_document<S: Sink>(
    layout: Layout,
    input: impl io::Read,
    file: usize,
    pass: Pass<'_, S>,
    scratch: &mut Scratch,
) -> (super::document::Outcome<S>, super::document::Extent) {
    match layout {
        Layout::PurviewCsv => scan_csv(input, file, pass, scratch),
        _ => scan_json_document(input, file, pass, scratch),
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
/// blocks arrive. At most a few blocks are in flight (bounded channel, recycled buffers),
/// plus those `keeper` takes for the context pass (instead of recycling them) while its
/// budget has room.
#[allow(clippy::too_many_arguments)]
fn scan_stream<S: Sink>(
    file: usize,
    input: &Input,
    reader: Box<dyn io::Read + Send>,
    kind: &str,
    compressed: bool,
    pass: Pass<'_, S>,
    config: &Config,
    mut keeper: Option<&mut Keeper<'_>>,
) -> FileResult<S> {
    let mut result = FileResult::new(kind.to_string());
    let (tx, rx) = mpsc::sync_channel::<Msg>(2);
    let (recycle_tx, recycle_rx) = mpsc::channel::<Vec<u8>>();
    let mut read_time = Duration::ZERO;
    let m = pass.matcher;
    let hook = TruncateHook::from_env(input);
    let mut blocks_done = 0;
    let keeping = keeper.is_some();
    std::thread::scope(|s| {
        let reading = s.spawn(move || {
            let block = config.chunk_size.min(MAX_STREAM_BLOCK);
            // A kept block's buffer is not recycled: a fresh one is allocated at its
            // full size once, rather than grown (and moved) from 8 KiB.
            let fresh = || {
                if keeping {
                    Vec::with_capacity(block)
                } else {
                    Vec::new()
                }
            };
            let mut blocks = BlockReader::new(reader, block, config.max_line);
            if !m.prefilter().is_everything() {
                blocks = blocks.with_literals(Box::new(m.prefilter().clone()));
            }
            let mut busy = Duration::ZERO;
            loop {
                let buf = recycle_rx.try_recv().unwrap_or_else(|_| fresh());
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
            (busy, blocks.dropped)
        });
        let mut scratch = Scratch::default();
        for msg in rx {
            match msg {
                Msg::Block(Block::Lines(data)) => {
                    result.bytes += data.len() as u64;
                    let t = Instant::now();
                    let p = scan_chunk(&data, file, pass, &mut scratch);
                    result.record(p, t.elapsed(), std::mem::take(&mut scratch.parse_time));
                    let unkept = match keeper.as_deref_mut() {
                        Some(k) => k.offer(data),
                        None => Some(data),
                    };
                    if let Some(data) = unkept {
                        let _ = recycle_tx.send(data.into_buffer());
                    }
                    blocks_done += 1;
                    hook.fire(blocks_done);
                }
                Msg::Block(Block::Overlong {
                    bytes,
                    newline,
                    candidate,
                }) => {
                    result.bytes += bytes + u64::from(newline);
                    if let Some(k) = keeper.as_deref_mut() {
                        k.skip(bytes + u64::from(newline));
                    }
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
        (read_time, result.dropped) = reading.join().unwrap_or_default();
    });
    result.read_time = read_time;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::findings::Harvest;
    use crate::rule::Rule;
    use crate::scan::{Maps, Matcher};

    fn fixtures() -> Vec<std::path::PathBuf> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/investigation");
        let mut out: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
            .collect();
        out.sort();
        out
    }

    fn first_byte(maps: &Maps, file: usize) -> Option<usize> {
        let kept = maps.kept.lock().unwrap();
        kept.maps.get(&file).map(|m| m.bytes().as_ptr() as usize)
    }

    #[test]
    fn a_kept_mapping_is_read_again_as_a_fresh_one_is() {
        let paths = fixtures();
        assert!(paths.len() >= 10);
        let inputs: Vec<Input> = paths.iter().cloned().map(Input::File).collect();
        let m = Matcher::new(Rule::builtin(), true, 1 << 20);
        for (threads, chunk) in [(1, 1 << 20), (3, 700)] {
            let mut config = Config::new(paths.clone());
            config.chunk_size = chunk;
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let pass = Pass::<Harvest>::new(&m, &());
            let fresh = pool.install(|| scan_all(&inputs, pass, &config));
            let maps = Maps::default();
            let first = pool.install(|| scan_all(&inputs, pass.keeping(&maps), &config));
            assert_eq!(maps.len(), inputs.len(), "every mapped input kept");
            let at: Vec<_> = (0..inputs.len()).map(|i| first_byte(&maps, i)).collect();
            let again = pool.install(|| scan_all(&inputs, pass.keeping(&maps), &config));
            let at_again: Vec<_> = (0..inputs.len()).map(|i| first_byte(&maps, i)).collect();
            assert_eq!(at, at_again, "the second pass read the kept mappings");
            for scanned in [&first, &again] {
                assert_eq!(scanned.partial, fresh.partial);
                assert_eq!(scanned.stats.bytes, fresh.stats.bytes);
                assert!(scanned.errors.is_empty());
            }
            maps.clear();
            assert!(maps.is_empty());
        }
    }

    #[test]
    fn released_mappings_are_unmapped_and_the_files_read_as_before() {
        let paths = fixtures();
        let inputs: Vec<Input> = paths.iter().cloned().map(Input::File).collect();
        let m = Matcher::new(Rule::builtin(), true, 1 << 20);
        for threads in [1, 3] {
            let mut config = Config::new(paths.clone());
            config.chunk_size = 900;
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let pass = Pass::<Harvest>::new(&m, &());
            let fresh = pool.install(|| scan_all(&inputs, pass, &config));
            let maps = Maps::default();
            let first = pool.install(|| scan_all(&inputs, pass.keeping(&maps), &config));
            assert_eq!(maps.len(), inputs.len());
            pool.install(|| maps.release());
            assert!(maps.is_empty(), "release unmaps every kept mapping");
            let again = pool.install(|| scan_all(&inputs, pass.keeping(&maps), &config));
            for scanned in [&first, &again] {
                assert_eq!(scanned.partial, fresh.partial);
                assert!(scanned.errors.is_empty());
            }
            // A mapping given back piece by piece and read again: the file's bytes.
            let big = tempfile::NamedTempFile::new().unwrap();
            let text: Vec<u8> = std::fs::read(&paths[0])
                .unwrap()
                .repeat(RELEASE_PIECE / std::fs::metadata(&paths[0]).unwrap().len() as usize + 2);
            std::fs::write(big.path(), &text).unwrap();
            let Ok(source::Opened::Mapped(mapped)) = source::open_noting(
                &Input::File(big.path().to_path_buf()),
                &config.progress,
                config.seek_spacing,
            ) else {
                panic!("a plain file is mapped");
            };
            assert!(mapped.bytes().len() > RELEASE_PIECE);
            pool.install(|| release_pieces(std::slice::from_ref(&mapped)));
            assert!(mapped.bytes() == &text[..]);
        }
    }

    #[test]
    fn kept_mappings_stay_within_their_count() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<_> = (0..KEPT_MAPS + 3)
            .map(|i| {
                let p = dir.path().join(format!("{i}.jsonl"));
                std::fs::write(&p, format!("{{\"Id\":\"{i}\"}}\n")).unwrap();
                p
            })
            .collect();
        let inputs: Vec<Input> = paths.iter().cloned().map(Input::File).collect();
        let config = Config::new(paths.clone());
        let m = Matcher::new(Rule::builtin(), true, 1 << 20);
        let maps = Maps::default();
        let scanned = scan_all(
            &inputs,
            Pass::<Harvest>::new(&m, &()).keeping(&maps),
            &config,
        );
        assert_eq!(scanned.partial.counts.records, inputs.len() as u64);
        assert_eq!(maps.len(), KEPT_MAPS);
    }
}
