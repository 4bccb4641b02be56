//! Resource bombs (issue 13): small inputs that inflate or nest without end. Each must
//! end with every line accounted for, in time proportional to the bytes read, with
//! memory bounded whatever the size: a stream holds at most a few blocks of 16 MiB
//! (`--chunk-size`, capped) plus one line of `--max-line-size`; a JSON document keeps
//! at most 512 levels of nesting and one record of `--max-line-size`.
//! Peak RSS of each run is measured (wait4) and checked against a bound that holds
//! for the sizes here; the full-size figures are in the README (Resource bounds).

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;

const LITERAL: &str = "Set-MailboxAuditBypassAssociation";
const HIT: &str = r#"{"CreationTime":"2024-03-05T10:11:12","Id":"B1","Operation":"Set-MailboxAuditBypassAssociation","Workload":"Exchange","ResultStatus":"Succeeded","UserId":"bomber@x","Parameters":[{"Name":"Identity","Value":"m"},{"Name":"AuditBypassEnabled","Value":"True"}]}"#;

/// What a run gave: exit code, stdout, stderr, peak RSS in bytes, wall time.
struct Run {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
    peak_rss: u64,
    took: Duration,
}

/// Runs `ualhunt hunt ARGS` and measures its peak RSS: the high-water mark of its own
/// memory (`VmHWM`, which `--stats` prints), else wait4's. wait4's `ru_maxrss` alone is
/// not enough: a child spawned by a test process that has grown (another test of this
/// file building a large archive at the same time) starts with that process's
/// high-water mark.
#[allow(clippy::zombie_processes)]
fn hunt(args: &[&str]) -> Run {
    let started = Instant::now();
    let mut child = Command::cargo_bin("ualhunt")
        .unwrap()
        .arg("hunt")
        .arg("-q")
        .arg("--no-context")
        // Blocks of 256 KiB (not 4 MiB): the bombs inflate to many times a block.
        .args(["--chunk-size", "256K"])
        .args((!args.contains(&"--stats")).then_some("--stats"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reading = std::thread::spawn(move || {
        let mut v = Vec::new();
        out.read_to_end(&mut v).unwrap();
        v
    });
    let mut stderr = String::new();
    err.read_to_string(&mut stderr).unwrap();
    let stdout = reading.join().unwrap();
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill in; the pid is our
    // own child, not yet waited for.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert!(pid > 0, "wait4 failed");
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    // `memory        peak heap 16.4 MiB, peak RSS 42.0 MiB (…)`
    let own = stderr
        .split("peak RSS ")
        .nth(1)
        .and_then(|rest| rest.split(" MiB").next())
        .and_then(|mib| mib.trim().parse::<f64>().ok())
        .map(|mib| (mib * MIB as f64) as u64);
    Run {
        code,
        stdout,
        stderr,
        peak_rss: own.unwrap_or(usage.ru_maxrss as u64 * 1024),
        took: started.elapsed(),
    }
}

fn json(run: &Run) -> serde_json::Value {
    serde_json::from_slice(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stderr))
}

const MIB: u64 = 1 << 20;

/// A gzip of `members` copies of one member inflating to `part`: a small file that
/// inflates to `members * part.len()` bytes.
fn gzip_bomb(part: &[u8], members: usize) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(part).unwrap();
    let member = e.finish().unwrap();
    member.repeat(members)
}

#[test]
fn a_gzip_of_newlines_inflates_in_bounded_memory_and_every_line_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("newlines.gz");
    let mut part = vec![b'\n'; MIB as usize];
    // One match at the very end, so the whole stream must be read.
    let tail = format!("{HIT}\n");
    std::fs::write(&path, gzip_bomb(&part, 15)).unwrap();
    part.truncate(MIB as usize - tail.len());
    part.extend(tail.as_bytes());
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(&gzip_bomb(&part, 1)).unwrap();
    drop(f);
    let on_disk = std::fs::metadata(&path).unwrap().len();
    assert!(on_disk < MIB / 2, "{on_disk}");
    let run = hunt(&["--format", "json", path.to_str().unwrap()]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let report = json(&run);
    let lines = report["scan"]["lines"].as_u64().unwrap();
    assert_eq!(lines, 16 * MIB - tail.len() as u64 + 1);
    assert_eq!(report["scan"]["matched"].as_u64(), Some(1));
    assert!(
        run.peak_rss < 64 * MIB,
        "peak RSS {} MiB",
        run.peak_rss / MIB
    );
    eprintln!(
        "16 MiB of newlines from {on_disk} bytes: {:?}, peak RSS {} MiB",
        run.took,
        run.peak_rss / MIB
    );
}

#[test]
fn a_gzip_of_one_endless_line_is_one_overlong_line_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("endless.gz");
    // 16 MiB without a newline, the rule literal near the end, then a good record.
    let mut bytes = gzip_bomb(&vec![b'x'; MIB as usize], 15);
    let mut last = vec![b'x'; MIB as usize];
    last[MIB as usize - 100..MIB as usize - 100 + LITERAL.len()]
        .copy_from_slice(LITERAL.as_bytes());
    last.push(b'\n');
    last.extend(HIT.as_bytes());
    bytes.extend(gzip_bomb(&last, 1));
    std::fs::write(&path, bytes).unwrap();
    let run = hunt(&[
        "--format",
        "json",
        "--max-line-size",
        "1M",
        path.to_str().unwrap(),
    ]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let report = json(&run);
    let scan = &report["scan"];
    assert_eq!(scan["lines"].as_u64(), Some(2));
    assert_eq!(
        scan["malformed"].as_u64(),
        Some(1),
        "the overlong line held the literal"
    );
    assert_eq!(scan["matched"].as_u64(), Some(1));
    let sample = &scan["malformed_samples"][0];
    assert_eq!(sample["line"].as_u64(), Some(1));
    assert!(
        sample["reason"]
            .as_str()
            .unwrap()
            .contains("longer than the limit"),
        "{sample}"
    );
    assert!(
        run.peak_rss < 64 * MIB,
        "peak RSS {} MiB",
        run.peak_rss / MIB
    );
}

#[test]
fn a_zstd_bomb_inflates_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bomb.zst");
    let mut e = zstd::stream::write::Encoder::new(Vec::new(), 19).unwrap();
    let block = vec![b'\n'; MIB as usize];
    for _ in 0..16 {
        e.write_all(&block).unwrap();
    }
    e.write_all(format!("{HIT}\n").as_bytes()).unwrap();
    let bytes = e.finish().unwrap();
    assert!(bytes.len() < 64 * 1024, "{}", bytes.len());
    std::fs::write(&path, bytes).unwrap();
    let run = hunt(&["--format", "json", path.to_str().unwrap()]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let report = json(&run);
    assert_eq!(report["scan"]["lines"].as_u64(), Some(16 * MIB + 1));
    // The debug build's zstd decoder holds more than the release one (23 MiB for 1 GiB).
    assert!(
        run.peak_rss < 128 * MIB,
        "peak RSS {} MiB",
        run.peak_rss / MIB
    );
}

#[test]
fn a_zip_of_100_000_entries_and_a_nested_zip_are_read_flat_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many.zip");
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let inner = {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        w.start_file("inner.jsonl", stored).unwrap();
        w.write_all(format!("{HIT}\n").as_bytes()).unwrap();
        w.finish().unwrap().into_inner()
    };
    // 100 000 in the full run (UALHUNT_FULL_BOMBS=1, about a minute in a debug build);
    // 20 000 by default: the cost per entry is the same.
    let entries = if std::env::var_os("UALHUNT_FULL_BOMBS").is_some() {
        100_000
    } else {
        20_000
    };
    let mut w = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    for i in 0..entries {
        w.start_file(format!("e/{i:06}.jsonl"), stored).unwrap();
        w.write_all(b"{}\n").unwrap();
    }
    // A zip inside the zip is an entry like any other: not opened again (no recursion).
    w.start_file("nested.zip", stored).unwrap();
    w.write_all(&inner).unwrap();
    w.finish().unwrap();
    let run = hunt(&["--format", "json", path.to_str().unwrap()]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let report = json(&run);
    assert_eq!(report["scan"]["files"].as_u64(), Some(entries + 1));
    assert_eq!(
        report["scan"]["lines"].as_u64().unwrap(),
        entries + inner_lines(&inner)
    );
    assert!(
        run.stderr.contains("nested.zip: not recognised"),
        "{}",
        run.stderr
    );
    assert!(
        run.peak_rss < 400 * MIB,
        "peak RSS {} MiB",
        run.peak_rss / MIB
    );
    eprintln!(
        "{entries} zip entries and one nested zip: {:?}, peak RSS {} MiB",
        run.took,
        run.peak_rss / MIB
    );
}

/// Issue 20, item 12: a zip archive costs a few bytes per entry, not a parsed directory
/// and a name each: discovery keeps where each entry's directory record is (8 B) and
/// its input (24 B), names are read again from the archive when a report needs them,
/// and results are merged as they complete. What each entry adds to the peak heap (the
/// tool's own `--stats`, not timed), from 20,000 to 200,000 entries (the batch of
/// results in flight is the same for both): 32 B now, 698 B before.
#[test]
fn a_zip_of_200_000_tiny_entries_costs_a_few_bytes_per_entry() {
    let dir = tempfile::tempdir().unwrap();
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let peak = |entries: u64| {
        let path = dir.path().join(format!("tiny-{entries}.zip"));
        let file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut w = zip::ZipWriter::new(file);
        for i in 0..entries {
            w.start_file(format!("part-{i:06}.json"), stored).unwrap();
            w.write_all(b"{}\n").unwrap();
        }
        w.finish().unwrap();
        let run = hunt(&["--format", "json", "--stats", path.to_str().unwrap()]);
        // No finding, but records without a time cannot vouch for the archive: exit 1.
        assert_eq!(run.code, Some(1), "{}", run.stderr);
        assert_eq!(json(&run)["scan"]["files"].as_u64(), Some(entries));
        peak_heap_mib(&run)
    };
    let (few, many) = (peak(20_000), peak(200_000));
    let per_entry = (many - few) * MIB as f64 / 180_000.0;
    assert!(
        per_entry < 100.0,
        "peak heap {few} MiB for 20,000 entries, {many} MiB for 200,000: {per_entry:.0} B per entry"
    );
    eprintln!(
        "peak heap {few} MiB for 20,000 entries, {many} MiB for 200,000: {per_entry:.0} B per entry"
    );
}

/// The results of a zip's entries are merged in batches: findings, malformed samples and
/// their `archive.zip!member` names on either side of a batch's end are reported alike
/// for any thread count.
#[test]
fn a_zip_over_several_batches_reports_alike_for_any_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("batches.zip");
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut w = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    for i in 0..9_000 {
        w.start_file(format!("part-{i:05}.json"), stored).unwrap();
        w.write_all(b"{}\n").unwrap();
        if [0, 4_095, 4_096, 8_999].contains(&i) {
            // Ids of their own: not dropped as duplicates of one another.
            let hit = HIT.replace("\"B1\"", &format!("\"B{i}\""));
            w.write_all(format!("{hit}\n").as_bytes()).unwrap();
        }
        if [4_095, 4_097].contains(&i) {
            w.write_all(format!("{{\"Operation\":\"{LITERAL}\", cut\n").as_bytes())
                .unwrap();
        }
    }
    w.finish().unwrap();
    let runs: Vec<Run> = ["1", "3"]
        .iter()
        .map(|t| hunt(&["--format", "json", "--threads", t, path.to_str().unwrap()]))
        .collect();
    assert_eq!(runs[0].stdout, runs[1].stdout);
    let report = json(&runs[0]);
    assert_eq!(
        (
            report["scan"]["matched"].as_u64(),
            report["scan"]["malformed"].as_u64()
        ),
        (Some(4), Some(2)),
        "{}",
        runs[0].stderr
    );
    let text = String::from_utf8_lossy(&runs[0].stdout);
    for member in [
        "part-00000.json",
        "part-04096.json",
        "part-08999.json",
        "part-04097.json",
    ] {
        assert!(text.contains(&format!("batches.zip!{member}")), "{member}");
    }
}

/// The peak heap `--stats` reports, in MiB.
fn peak_heap_mib(run: &Run) -> f64 {
    run.stderr
        .lines()
        .find_map(|l| {
            l.split("peak heap ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no peak heap in --stats: {}", run.stderr))
}

fn inner_lines(zip: &[u8]) -> u64 {
    let newlines = zip.iter().filter(|&&b| b == b'\n').count() as u64;
    newlines + u64::from(zip.last() != Some(&b'\n'))
}

#[test]
fn json_nested_100_000_deep_is_malformed_not_a_stack_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let deep = |open: &str, close: &str| {
        format!(
            "{{\"Operation\":\"{LITERAL}\",\"x\":{}1{}}}",
            open.repeat(100_000),
            close.repeat(100_000)
        )
    };
    // As a JSON line, and as a record of a JSON document (array), arrays and objects.
    let line = dir.path().join("deep.jsonl");
    std::fs::write(
        &line,
        format!("{}\n{}\n{HIT}\n", deep("[", "]"), deep("{\"a\":", "}")),
    )
    .unwrap();
    let doc = dir.path().join("deep.json");
    std::fs::write(
        &doc,
        format!(
            "[\n{},\n{},\n{HIT}\n]\n",
            deep("[", "]"),
            deep("{\"a\":", "}")
        ),
    )
    .unwrap();
    for path in [&line, &doc] {
        let run = hunt(&["--format", "json", path.to_str().unwrap()]);
        assert_eq!(run.code, Some(0), "{}: {}", path.display(), run.stderr);
        let scan = &json(&run)["scan"];
        assert_eq!(scan["records"].as_u64(), Some(3), "{}", path.display());
        assert_eq!(scan["malformed"].as_u64(), Some(2), "{}", path.display());
        assert_eq!(scan["matched"].as_u64(), Some(1), "{}", path.display());
    }
}

#[test]
#[allow(clippy::zombie_processes)] // waited for by wait4, for its rusage
fn a_200_mb_line_holding_the_literal_is_counted_malformed_with_a_small_heap() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    f.write_all(format!("{{\"Operation\":\"{LITERAL}\",\"pad\":\"").as_bytes())
        .unwrap();
    let block = vec![b'p'; MIB as usize];
    for _ in 0..200 {
        f.write_all(&block).unwrap();
    }
    f.write_all(format!("\"}}\n{HIT}\n").as_bytes()).unwrap();
    f.into_inner().unwrap().sync_all().unwrap();
    // Mapped (the heap stays small: the line is never copied) and streamed through
    // stdin (at most one --max-line-size line is held).
    let run = hunt(&["--format", "json", "--stats", path.to_str().unwrap()]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let scan = &json(&run)["scan"];
    assert_eq!(
        (scan["malformed"].as_u64(), scan["matched"].as_u64()),
        (Some(1), Some(1))
    );
    let heap = peak_heap_mib(&run);
    assert!(heap < 64.0, "peak heap {heap} MiB");
    eprintln!(
        "200 MB line, mapped: peak heap {heap} MiB, RSS {} MiB",
        run.peak_rss / MIB
    );
    let mut child = Command::cargo_bin("ualhunt")
        .unwrap()
        .args(["hunt", "-q", "--no-context", "--format", "json", "-"])
        .stdin(std::fs::File::open(&path).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    let mut status = 0;
    // SAFETY: as in `hunt`.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let scan = &serde_json::from_slice::<serde_json::Value>(&out).unwrap()["scan"];
    assert_eq!(
        (scan["malformed"].as_u64(), scan["matched"].as_u64()),
        (Some(1), Some(1))
    );
    let rss = usage.ru_maxrss as u64 * 1024;
    // --max-line-size (64 MiB) + the blocks in flight.
    assert!(rss < 200 * MIB, "peak RSS {} MiB", rss / MIB);
}
