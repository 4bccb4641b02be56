//! The files a sharded run writes: a shard's partial result and the context plan.
//!
//! Both are JSON documents compressed with zstd (`zstdcat FILE | jq .` reads them),
//! opening with their `format` and `version`, and written atomically: to a temporary
//! file beside the destination, synced, then renamed over it, so a scheduler that kills
//! a task never leaves half a partial for the merge to trip on. The zstd frame carries
//! its checksum and the JSON the SHA-256 of its content, which reading verifies: a
//! damaged or hand-edited file is refused, never merged.

use std::fs::File;
use std::io::{self, BufWriter, Read};
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::allow::Entry;
use crate::analysis::context::{Activity, Spans, Watch};
use crate::error::{InputError, Warning};
use crate::findings::{Harvest, Partial};
use crate::rule::RuleMeta;
use crate::scan::PassStats;

use super::plan::Digest;
use crate::scan::{Piece, Unit};

/// The `format` of a partial.
pub const PARTIAL_FORMAT: &str = "ualhunt-partial";
/// The `format` of a context plan.
pub const CONTEXT_FORMAT: &str = "ualhunt-context-plan";
/// The version of both formats; a reader refuses any other.
pub const VERSION: u32 = 3;

/// Which stage of a sharded run wrote a partial.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// The first pass: the rules' matches.
    Scan,
    /// The context pass, watching the names of a context plan.
    Context,
}

/// What every partial of one run must agree on: the program, the rules, the options
/// that change what is found or reported, the paths, the inputs found and the shard
/// count.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlanKey {
    /// The ualhunt version that wrote it.
    pub ualhunt: String,
    /// How many shards.
    pub shards: u32,
    /// The paths given, as given.
    pub paths: Vec<String>,
    /// Inputs found.
    pub inputs: u64,
    /// Their bytes on disk.
    pub input_bytes: u64,
    /// Digest of the inputs' names, sizes, modification times and inodes and of the
    /// discovery errors.
    pub inputs_digest: String,
    /// The rules.
    pub rules: Vec<RuleMeta>,
    /// Rules that were loaded but cannot run offline (reported).
    #[serde(default)]
    pub not_run: Vec<crate::rule::load::NotRun>,
    /// The options.
    pub options: Options,
}

impl PlanKey {
    /// A stable digest of the whole key.
    pub fn digest(&self) -> String {
        let mut d = Digest::default();
        // Serializing plain data to JSON cannot fail.
        d.text(&serde_json::to_string(self).unwrap_or_default());
        d.hex()
    }

    /// What differs from `other`, in words (`None`: nothing).
    pub fn difference(&self, other: &PlanKey) -> Option<String> {
        let parts: [(&str, String, String); 6] = [
            (
                "ualhunt version",
                self.ualhunt.clone(),
                other.ualhunt.clone(),
            ),
            (
                "shard count",
                self.shards.to_string(),
                other.shards.to_string(),
            ),
            ("paths", json(&self.paths), json(&other.paths)),
            (
                "inputs (names, sizes, modification times, inodes, discovery errors)",
                format!("{} inputs, digest {}", self.inputs, self.inputs_digest),
                format!("{} inputs, digest {}", other.inputs, other.inputs_digest),
            ),
            (
                "rules",
                json(&(&self.rules, &self.not_run)),
                json(&(&other.rules, &other.not_run)),
            ),
            ("options", json(&self.options), json(&other.options)),
        ];
        parts
            .into_iter()
            .find(|(_, a, b)| a != b)
            .map(|(what, a, b)| {
                if what == "rules" {
                    format!("{what} differ")
                } else {
                    format!("{what}: {b} here, {a} in the first")
                }
            })
    }
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// The options of a run that change what it finds or reports (threads, chunk and block
/// sizes do not).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Options {
    /// The byte prefilter (false: `--no-prefilter`).
    pub prefilter: bool,
    /// `--max-line-size`.
    pub max_line: u64,
    /// `--since`.
    pub since: Option<DateTime<Utc>>,
    /// `--until`.
    pub until: Option<DateTime<Utc>>,
    /// `--keep-duplicates`.
    pub keep_duplicates: bool,
    /// The context pass (false: `--no-context`).
    pub context: bool,
    /// `--context-window`, in seconds.
    pub context_window: i64,
    /// `--context-horizon`, in seconds.
    #[serde(default = "default_horizon")]
    pub context_horizon: i64,
    /// `--allow` entries (expiry is judged on the day of the merge).
    pub allow: Vec<Entry>,
    /// The GeoIP databases (`--geoip-db`): stages run with other data do not merge.
    #[serde(default)]
    pub geoip: Vec<crate::enrich::DatabaseInfo>,
}

fn default_horizon() -> i64 {
    crate::config::DEFAULT_CONTEXT_HORIZON.num_seconds()
}

/// An [`InputError`] as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ErrorRecord {
    /// [`InputError::Discover`].
    Discover {
        /// The path.
        path: String,
        /// Why.
        message: String,
    },
    /// [`InputError::Open`].
    Open {
        /// The input.
        path: String,
        /// Why.
        message: String,
    },
    /// [`InputError::Stopped`].
    Stopped {
        /// The input.
        path: String,
        /// What kind of stop.
        what: String,
        /// The underlying error.
        message: String,
        /// Bytes read before the stop.
        offset: u64,
        /// Lines read before the stop.
        line: u64,
        /// Whether the data was decompressed.
        decompressed: bool,
    },
}

impl From<&InputError> for ErrorRecord {
    fn from(e: &InputError) -> ErrorRecord {
        match e.clone() {
            InputError::Discover { path, message } => ErrorRecord::Discover { path, message },
            InputError::Open { path, message } => ErrorRecord::Open { path, message },
            InputError::Stopped {
                path,
                what,
                message,
                offset,
                line,
                data,
            } => ErrorRecord::Stopped {
                path,
                what,
                message,
                offset,
                line,
                decompressed: data == "decompressed",
            },
        }
    }
}

impl From<ErrorRecord> for InputError {
    fn from(e: ErrorRecord) -> InputError {
        match e {
            ErrorRecord::Discover { path, message } => InputError::Discover { path, message },
            ErrorRecord::Open { path, message } => InputError::Open { path, message },
            ErrorRecord::Stopped {
                path,
                what,
                message,
                offset,
                line,
                decompressed,
            } => InputError::Stopped {
                path,
                what,
                message,
                offset,
                line,
                data: if decompressed {
                    "decompressed"
                } else {
                    "input"
                },
            },
        }
    }
}

/// A [`Warning`] as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarningRecord {
    /// The input.
    pub path: String,
    /// What is doubtful.
    pub message: String,
}

impl From<&Warning> for WarningRecord {
    fn from(w: &Warning) -> WarningRecord {
        WarningRecord {
            path: w.path.clone(),
            message: w.message.clone(),
        }
    }
}

impl From<WarningRecord> for Warning {
    fn from(w: WarningRecord) -> Warning {
        Warning {
            path: w.path,
            message: w.message,
        }
    }
}

/// What a shard read of some consecutive inputs: whole inputs `first..first +
/// names.len()`, or one piece of input `first`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(bound(serialize = "S: Serialize", deserialize = "S: DeserializeOwned"))]
pub struct Segment<S> {
    /// The first input's index.
    pub first: u32,
    /// The inputs' names.
    pub names: Vec<String>,
    /// Their zip members.
    pub members: Vec<Option<String>>,
    /// `Some`: a piece of the input (its positions relative to the piece's start,
    /// unless `absolute`).
    pub piece: Option<Piece>,
    /// A piece read by the context stage only where the first pass's index points
    /// (`index::Within::inside`): its positions are the input's own, not shifted when
    /// merged.
    #[serde(default)]
    pub absolute: bool,
    /// Bytes scanned (decompressed).
    pub bytes: u64,
    /// The merged partial result.
    pub partial: Partial<S>,
    /// Inputs that could not be read in full.
    pub errors: Vec<ErrorRecord>,
    /// Inputs read with a doubt.
    pub warnings: Vec<WarningRecord>,
}

/// The first stage's result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScanPart {
    /// The run's discovery errors (the same in every shard).
    pub discover_errors: Vec<ErrorRecord>,
    /// The run's empty-directory warnings (the same in every shard).
    pub empty_directories: Vec<WarningRecord>,
    /// What this shard read, in input order.
    pub segments: Vec<Segment<Harvest>>,
}

/// The context pass of one rule.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContextPart {
    /// The rule's index.
    pub rule: u16,
    /// Digest of the watch it ran with.
    pub watch: String,
    /// What this shard read, in input order.
    pub segments: Vec<Segment<Activity>>,
}

/// A shard's result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PartialFile {
    /// [`PARTIAL_FORMAT`].
    pub format: String,
    /// [`VERSION`].
    pub version: u32,
    /// Which stage.
    pub stage: Stage,
    /// The plan it belongs to.
    pub plan: PlanKey,
    /// Digest of `plan`.
    pub plan_digest: String,
    /// This shard's index.
    pub shard: u32,
    /// What it read.
    pub units: Vec<Unit>,
    /// The first stage's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan: Option<ScanPart>,
    /// The context stage's result: one per rule whose context pass the plan asks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Vec<ContextPart>>,
    /// Measurements (never part of the findings).
    pub stats: ShardStats,
}

/// Measurements of a shard.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ShardStats {
    /// Wall time of the shard, in seconds.
    pub wall: f64,
    /// Worker threads.
    pub threads: usize,
    /// Target chunk size.
    pub chunk_size: usize,
    /// Each pass.
    pub passes: Vec<PassRecord>,
}

/// [`PassStats`] as stored.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PassRecord {
    /// Wall time, seconds.
    pub wall: f64,
    /// What the prefilter searched for.
    pub prefilter: String,
    /// Bytes scanned.
    pub bytes: u64,
    /// Inputs per kind.
    pub formats: Vec<(String, u64)>,
    /// Chunk latencies, microseconds: (value, count).
    pub latency_us: Vec<(u64, u64)>,
    /// Summed scan time, seconds.
    pub scan_time: f64,
    /// Summed parse time, seconds.
    pub parse_time: f64,
    /// Summed read time, seconds.
    pub read_time: f64,
    /// Compressed bytes of streamed files.
    pub compressed_bytes: u64,
    /// Records attributed to a watched name (context pass).
    pub attributed: u64,
    /// Decompressed bytes inflated only to reach a stretch (context pass).
    #[serde(default)]
    pub lead_in: u64,
    /// Decompressed bytes read from the context cache (none in a shard's passes).
    #[serde(default)]
    pub cached: u64,
}

impl PassRecord {
    /// Stores a pass's statistics.
    pub fn new(s: &PassStats, attributed: u64) -> PassRecord {
        PassRecord {
            wall: s.wall.as_secs_f64(),
            prefilter: s.prefilter.clone(),
            bytes: s.bytes,
            formats: s.formats.clone(),
            latency_us: s
                .chunk_latency_us
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
            scan_time: s.scan_time.as_secs_f64(),
            parse_time: s.parse_time.as_secs_f64(),
            read_time: s.read_time.as_secs_f64(),
            compressed_bytes: s.compressed_bytes,
            attributed,
            lead_in: s.lead_in,
            cached: s.cached,
        }
    }
}

/// Several shards' pass statistics as one (wall time: the longest shard's).
pub fn merge_stats(records: &[&PassRecord]) -> PassStats {
    // 1 µs to 1 hour, 3 significant figures: always valid bounds.
    let mut latency = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
    let mut formats: std::collections::BTreeMap<String, u64> = Default::default();
    let secs = |s: f64| Duration::try_from_secs_f64(s).unwrap_or_default();
    let mut out = PassStats {
        wall: Duration::ZERO,
        prefilter: records
            .first()
            .map(|r| r.prefilter.clone())
            .unwrap_or_default(),
        bytes: 0,
        counts: Default::default(),
        formats: Vec::new(),
        chunk_latency_us: Histogram::new(1).expect("valid"),
        scan_time: Duration::ZERO,
        parse_time: Duration::ZERO,
        read_time: Duration::ZERO,
        compressed_bytes: 0,
        lead_in: 0,
        cached: 0,
    };
    for r in records {
        out.wall = out.wall.max(secs(r.wall));
        out.bytes += r.bytes;
        for (k, n) in &r.formats {
            *formats.entry(k.clone()).or_default() += n;
        }
        for &(v, n) in &r.latency_us {
            let _ = latency.record_n(v.clamp(1, 3_600_000_000), n);
        }
        out.scan_time += secs(r.scan_time);
        out.parse_time += secs(r.parse_time);
        out.read_time += secs(r.read_time);
        out.compressed_bytes += r.compressed_bytes;
        out.lead_in += r.lead_in;
        out.cached += r.cached;
    }
    out.formats = formats.into_iter().collect();
    out.chunk_latency_us = latency;
    out
}

/// Whom the context pass watches, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchSpec {
    /// [`Watch::accounts`].
    pub accounts: Vec<(String, Spans)>,
    /// [`Watch::actors`].
    pub actors: Vec<(String, Vec<(i64, i64)>)>,
    /// [`Watch::actor_changes`].
    pub actor_changes: Vec<u64>,
    /// [`Watch::actor_names`].
    pub actor_names: Vec<String>,
    /// [`Watch::spellings`].
    pub spellings: Vec<String>,
    /// [`Watch::horizon`].
    #[serde(default = "default_horizon")]
    pub horizon: i64,
}

impl WatchSpec {
    /// Stores a watch.
    pub fn new(w: &Watch) -> WatchSpec {
        WatchSpec {
            accounts: w.accounts.clone(),
            actors: w.actors.clone(),
            actor_changes: w.actor_changes.clone(),
            actor_names: w.actor_names.clone(),
            spellings: w.spellings.clone(),
            horizon: w.horizon,
        }
    }

    /// The watch again.
    pub fn watch(&self) -> Watch {
        let mut w = Watch::new(self.accounts.clone(), self.actors.clone());
        w.actor_changes = self.actor_changes.clone();
        w.actor_names = self.actor_names.clone();
        w.spellings = self.spellings.clone();
        w.horizon = self.horizon;
        w
    }

    /// A stable digest.
    pub fn digest(&self) -> String {
        let mut d = Digest::default();
        d.text(&serde_json::to_string(self).unwrap_or_default());
        d.hex()
    }
}

/// The context plan: what the second stage's shards watch for, made from every first
/// stage partial.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContextPlanFile {
    /// [`CONTEXT_FORMAT`].
    pub format: String,
    /// [`VERSION`].
    pub version: u32,
    /// The plan it belongs to.
    pub plan: PlanKey,
    /// Digest of `plan`.
    pub plan_digest: String,
    /// Each rule with the bypass investigation, in rule order, and whom its context pass
    /// watches (`None`: no pass).
    pub rules: Vec<(u16, Option<WatchSpec>)>,
    /// For each rule whose context pass runs, what it reads of each input, from the
    /// first stage's block index and seek points (`index::spans_each`: one stretch per
    /// needed span, so that each shard takes those inside its pieces); an input without
    /// an entry is read whole.
    #[serde(default)]
    pub reads: Vec<(u16, Vec<Option<crate::index::Within>>)>,
}

impl ContextPlanFile {
    /// Whether any context pass is to run.
    pub fn needed(&self) -> bool {
        self.rules.iter().any(|(_, w)| w.is_some())
    }
}

/// Writes `value` as zstd-compressed JSON to `path`, atomically (its folder created if
/// need be).
pub fn write_atomic<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "partial".to_string());
    // A scheduler's task may be the first to write into the run's folder.
    std::fs::create_dir_all(&dir)?;
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let file = write_to(BufWriter::new(File::create(&tmp)?), value)?;
        let file = file.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The envelope of every file here: the `format` and `version` of the content, the
/// SHA-256 of the content's bytes as written, and the content itself. zstd's frame
/// checksum catches damage to the compressed bytes; the digest catches any change to
/// the content, hand edits included.
#[derive(Serialize)]
struct Envelope<'a> {
    format: &'a str,
    version: u32,
    sha256: String,
    content: &'a serde_json::value::RawValue,
}

/// The head of a file: what it is and the digest of its content.
#[derive(Deserialize)]
struct Head<'a> {
    format: String,
    version: u32,
    #[serde(default)]
    sha256: Option<String>,
    #[serde(borrow, default)]
    content: Option<&'a serde_json::value::RawValue>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    let mut hex = String::with_capacity(64);
    for b in sha2::Sha256::digest(bytes) {
        use std::fmt::Write as _;
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// Writes `value` (which serializes with its `format`) as zstd-compressed JSON to `w`,
/// with zstd's frame checksum and the content's SHA-256, and gives `w` back.
pub fn write_to<T: Serialize, W: io::Write>(w: W, value: &T) -> io::Result<W> {
    #[derive(Deserialize)]
    struct Format {
        format: String,
    }
    let content = serde_json::to_string(value)?;
    let format: Format = serde_json::from_str(&content)?;
    let content = serde_json::value::RawValue::from_string(content)?;
    let envelope = Envelope {
        format: &format.format,
        version: VERSION,
        sha256: sha256_hex(content.get().as_bytes()),
        content: &content,
    };
    let mut z = zstd::stream::write::Encoder::new(w, 3)?;
    z.include_checksum(true)?;
    serde_json::to_writer(&mut z, &envelope)?;
    z.finish()
}

/// Reads a file written by [`write_to`] (or the same JSON uncompressed), checking its
/// format, version and content digest.
pub fn read<T: DeserializeOwned>(path: &Path, format: &str) -> Result<T, String> {
    let mut raw = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut raw))
        .map_err(|e| format!("cannot read: {e}"))?;
    let text = if raw.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        zstd::decode_all(&raw[..]).map_err(|e| format!("damaged (cannot decompress: {e})"))?
    } else {
        raw
    };
    let head: Head<'_> = serde_json::from_slice(&text)
        .map_err(|_| format!("not a {format} file (no format and version)"))?;
    if head.format != format {
        return Err(format!("is a {} file, not a {format} file", head.format));
    }
    if head.version != VERSION {
        return Err(format!(
            "{format} version {} (this ualhunt reads version {VERSION}; write it again with this ualhunt)",
            head.version
        ));
    }
    let (Some(sha256), Some(content)) = (head.sha256, head.content) else {
        return Err(format!("damaged {format} file: no content digest"));
    };
    if sha256_hex(content.get().as_bytes()) != sha256 {
        return Err(format!(
            "damaged {format} file: its content does not match its SHA-256 (changed since it was written)"
        ));
    }
    serde_json::from_str(content.get()).map_err(|e| format!("damaged {format} file: {e}"))
}

/// The first stage's partial result of some units, grouped into segments (consecutive
/// whole inputs merged into one).
pub(crate) fn segments<S: crate::findings::Merge>(
    units: &[Unit],
    results: Vec<crate::scan::UnitResult<S>>,
    inputs: &[ualhunt_input::Input],
) -> Vec<Segment<S>> {
    let mut out: Vec<Segment<S>> = Vec::new();
    for (u, r) in units.iter().zip(results) {
        let i = u.input as usize;
        let joins = u.piece.is_none()
            && out
                .last()
                .is_some_and(|s| s.piece.is_none() && s.first as usize + s.names.len() == i);
        if !joins {
            out.push(Segment {
                first: u.input,
                names: Vec::new(),
                members: Vec::new(),
                piece: u.piece,
                absolute: false,
                bytes: 0,
                partial: Partial::default(),
                errors: Vec::new(),
                warnings: Vec::new(),
            });
        }
        // Just pushed or joined.
        let s = out.last_mut().expect("a segment");
        s.names.push(inputs[i].display());
        s.members.push(inputs[i].member());
        s.bytes += r.bytes;
        s.absolute |= r.absolute;
        s.partial.absorb_file(r.partial);
        s.errors.extend(r.error.as_ref().map(ErrorRecord::from));
        s.warnings
            .extend(r.warning.as_ref().map(WarningRecord::from));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_round_trip() {
        let e = InputError::Stopped {
            path: "a.gz".into(),
            what: "stream ends early (truncated?)".into(),
            message: "eof".into(),
            offset: 10,
            line: 2,
            data: "decompressed",
        };
        let back: InputError = ErrorRecord::from(&e).into();
        assert_eq!(back, e);
        let o = InputError::Open {
            path: "x".into(),
            message: "denied".into(),
        };
        assert_eq!(InputError::from(ErrorRecord::from(&o)), o);
    }

    #[test]
    fn files_are_written_atomically_and_checked_on_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.part");
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct T {
            format: String,
            version: u32,
            x: u32,
        }
        let t = T {
            format: PARTIAL_FORMAT.into(),
            version: VERSION,
            x: 7,
        };
        write_atomic(&path, &t).unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp left"
        );
        assert_eq!(read::<T>(&path, PARTIAL_FORMAT).unwrap(), t);
        assert!(
            read::<T>(&path, CONTEXT_FORMAT)
                .unwrap_err()
                .contains("not a")
        );
        std::fs::write(&path, br#"{"format":"ualhunt-partial","version":99,"x":1}"#).unwrap();
        assert!(
            read::<T>(&path, PARTIAL_FORMAT)
                .unwrap_err()
                .contains("version 99")
        );
        std::fs::write(&path, b"hello").unwrap();
        assert!(read::<T>(&path, PARTIAL_FORMAT).is_err());
    }

    // A hand edit of a value, even recompressed, was merged as if a shard wrote it.
    #[test]
    fn an_edited_content_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.part");
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct T {
            format: String,
            version: u32,
            x: u32,
        }
        let t = T {
            format: PARTIAL_FORMAT.into(),
            version: VERSION,
            x: 7,
        };
        write_atomic(&path, &t).unwrap();
        let text = zstd::decode_all(&std::fs::read(&path).unwrap()[..]).unwrap();
        let edited = String::from_utf8(text)
            .unwrap()
            .replace("\"x\":7", "\"x\":8");
        std::fs::write(&path, zstd::encode_all(edited.as_bytes(), 3).unwrap()).unwrap();
        let e = read::<T>(&path, PARTIAL_FORMAT).unwrap_err();
        assert!(e.contains("SHA-256"), "{e}");
    }
}
