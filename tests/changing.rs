//! Inputs that change or never end under the scan (issue 13): a file truncated while it
//! is memory-mapped, `/dev/zero`, a FIFO with no writer, symbolic-link loops. None may
//! kill the process or hang it; each is reported with its path (exit status 2) and the
//! other inputs are still scanned.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;

const HIT: &str = r#"{"CreationTime":"2024-03-05T10:11:12","Id":"ID{n}","Operation":"Set-MailboxAuditBypassAssociation","Workload":"Exchange","ResultStatus":"Succeeded","UserId":"actor{n}@x","Parameters":[{"Name":"Identity","Value":"m{n}"},{"Name":"AuditBypassEnabled","Value":"True"}]}"#;
const NOISE: &str = r#"{"CreationTime":"2024-03-05T10:11:12","Id":"N","Operation":"MailItemsAccessed","Workload":"Exchange","UserId":"someone@x","Padding":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#;

/// Writes `lines` lines, a rule match every `every` lines (the first at line 1);
/// returns the 1-based lines of the matches.
fn archive(path: &Path, lines: usize, every: usize) -> Vec<u64> {
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    let mut text = String::new();
    let mut hits = Vec::new();
    for i in 0..lines {
        if i % every == 0 {
            text.push_str(&HIT.replace("{n}", &format!("{name}-{i}")));
            hits.push(i as u64 + 1);
        } else {
            text.push_str(NOISE);
        }
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
    hits
}

fn hunt(args: &[&str]) -> Command {
    let mut cmd = Command::cargo_bin("ualhunt").unwrap();
    cmd.arg("hunt").arg("-q").arg("--no-context").args(args);
    cmd
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn evidence_lines(report: &serde_json::Value, path: &str) -> Vec<u64> {
    let mut lines: Vec<u64> = report["actors"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|a| a["evidence"].as_array().unwrap())
        .filter(|e| e["path"].as_str().unwrap().ends_with(path))
        .map(|e| e["line"].as_u64().unwrap())
        .collect();
    lines.sort();
    lines
}

#[test]
fn a_file_truncated_while_mapped_is_reported_where_it_stopped_and_the_rest_is_scanned() {
    // Regression: truncating a file under the scan ended the process with SIGBUS
    // (exit 135), every finding lost.
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.jsonl");
    let hits = archive(&big, 40_000, 1_000);
    let other = dir.path().join("other.jsonl");
    archive(&other, 10, 5);
    let size = std::fs::metadata(&big).unwrap().len();
    // One thread scans the 64 KiB chunks in order; after the fourth, the scan itself
    // truncates the file (a real ftruncate of the mapped file, at a known point).
    let out = hunt(&[
        "--threads",
        "1",
        "--chunk-size",
        "64K",
        "--format",
        "json",
        big.to_str().unwrap(),
        other.to_str().unwrap(),
    ])
    .env("UALHUNT_TEST_TRUNCATE_AFTER_CHUNKS", "4")
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("big.jsonl: file truncated while being read"),
        "{stderr}"
    );
    let report = json(&out);
    let errors = report["scan"]["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let (offset, line) = (
        errors[0]["offset"].as_u64().unwrap(),
        errors[0]["line"].as_u64().unwrap(),
    );
    // It got through the four chunks, not through the file.
    assert!(
        offset >= 4 * 65_536 && offset < size / 2,
        "{offset} of {size}"
    );
    // The matches of the lines read are reported, none from past the cut.
    let found = evidence_lines(&report, "big.jsonl");
    let expected: Vec<u64> = hits.iter().copied().filter(|&l| l < line).collect();
    assert!(!found.is_empty());
    assert_eq!(found, expected, "cut at line {line}");
    // The other input is scanned whole.
    assert_eq!(evidence_lines(&report, "other.jsonl"), vec![1, 6]);
    // Every line read is accounted for: all lines up to the cut, the cut one included.
    let scan = &report["scan"];
    assert_eq!(scan["lines"].as_u64().unwrap(), line + 10);
    // Regression (found by hand): the bytes of a mapped file went uncounted.
    let other_size = std::fs::metadata(&other).unwrap().len();
    assert_eq!(scan["bytes"].as_u64().unwrap(), offset + other_size);
}

#[test]
fn character_devices_fifos_without_writers_and_link_loops_end_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.jsonl");
    archive(&good, 3, 2);
    let fifo = dir.path().join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status();
    let loops = dir.path().join("loops");
    std::fs::create_dir(&loops).unwrap();
    std::os::unix::fs::symlink("b", loops.join("a")).unwrap();
    std::os::unix::fs::symlink("a", loops.join("b")).unwrap();
    std::os::unix::fs::symlink(".", loops.join("self")).unwrap();
    let mut args = vec![
        "--format".to_string(),
        "json".to_string(),
        "/dev/zero".to_string(),
    ];
    if made.is_ok_and(|s| s.success()) {
        args.push(fifo.display().to_string());
    }
    for p in [loops.join("a"), loops.join("self"), loops.clone(), good] {
        args.push(p.display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = Instant::now();
    let mut child = hunt(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Never hang: give it a minute (it needs well under a second).
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("ualhunt hung on /dev/zero, a FIFO or a link loop");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("/dev/zero: cannot open: a character device"),
        "{stderr}"
    );
    if args.iter().any(|a| a.ends_with("fifo")) {
        assert!(
            stderr.contains("a FIFO that no process is writing to"),
            "{stderr}"
        );
    }
    assert!(stderr.contains("symbolic links"), "{stderr}");
    // The good input is still scanned.
    assert_eq!(evidence_lines(&json(&out), "good.jsonl"), vec![1, 3]);
}

#[test]
fn a_fifo_with_a_writer_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    if !Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success())
    {
        eprintln!("note: no mkfifo; skipped");
        return;
    }
    // The writer opens first (it waits for a reader), then writes a match.
    let path = fifo.clone();
    let writer = std::thread::spawn(move || {
        std::fs::write(&path, format!("{}\n", HIT.replace("{n}", "1"))).unwrap();
    });
    // Let the writer reach its open before the scan looks for one.
    std::thread::sleep(Duration::from_millis(500));
    let out = hunt(&["--format", "json", fifo.to_str().unwrap()])
        .output()
        .unwrap();
    writer.join().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(evidence_lines(&json(&out), "fifo"), vec![1]);
}

#[test]
fn a_compressed_file_cut_while_read_is_reported_where_it_stopped_with_nothing_made_up() {
    // Regression: a gzip file cut under the sequential path was inflated through the
    // zero pages that the guard puts past the cut: made-up text, a wrong line count, the
    // real findings of that range lost.
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let plain_path = dir.path().join("plain.jsonl");
    // Noise that does not compress to nothing, so the file spans several windows.
    let mut text = String::new();
    for i in 0..150_000u64 {
        if i % 1_000 == 0 {
            text.push_str(&HIT.replace("{n}", &i.to_string()));
        } else {
            text.push_str(&format!(
                r#"{{"Id":"N{i}","Operation":"MailItemsAccessed","UserId":"u{}@x","ClientIP":"10.{}.{}.{}"}}"#,
                i.wrapping_mul(2_654_435_761) % 1_000_003,
                i % 251,
                i * 31 % 253,
                i * 17 % 247
            ));
        }
        text.push('\n');
    }
    std::fs::write(&plain_path, &text).unwrap();
    let plain = text.into_bytes();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&plain).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(&plain[..], 1).unwrap();
    for (name, bytes) in [("cut.jsonl.gz", gz), ("cut.jsonl.zst", zst)] {
        // More than the 1 MiB the stream copies out of the map at a time.
        assert!(bytes.len() > 3 << 19, "{name}: {}", bytes.len());
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let out = hunt(&[
            "--threads",
            "1",
            "--chunk-size",
            "64K",
            "--format",
            "json",
            path.to_str().unwrap(),
        ])
        .env("UALHUNT_GZIP_PARALLEL", "never")
        .env("UALHUNT_TEST_TRUNCATE_AFTER_CHUNKS", "4")
        .output()
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("{name}: file truncated while being read")),
            "{name}: {stderr}"
        );
        let report = json(&out);
        let errors = report["scan"]["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 1, "{name}: {errors:?}");
        let offset = errors[0]["offset"].as_u64().unwrap() as usize;
        let line = errors[0]["line"].as_u64().unwrap();
        // It stopped inside the file, having read only the file's own text: every
        // line it counted is a line of the file, up to where it says it stopped.
        assert!(
            offset > 4 * 65_536 && offset < plain.len(),
            "{name}: {offset}"
        );
        let read = &plain[..offset];
        let whole = read.iter().filter(|&&b| b == b'\n').count() as u64;
        let tail = u64::from(!read.ends_with(b"\n"));
        assert_eq!(line, whole + tail, "{name}");
        assert_eq!(report["scan"]["lines"].as_u64(), Some(line), "{name}");
        let expected: Vec<u64> = (0..whole)
            .filter(|i| i % 1_000 == 0)
            .map(|i| i + 1)
            .collect();
        assert!(!expected.is_empty());
        assert_eq!(evidence_lines(&report, name), expected, "{name}");
    }
}
