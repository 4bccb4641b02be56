//! Property tests on generated archives: the report must not depend on the chunk size,
//! the thread count or the container (plain or gzip), and the prefiltered fast path must
//! find exactly what parsing every line finds.

use std::io::Write;
use std::path::{Path, PathBuf};

mod common;

use common::as_csv;
use proptest::prelude::*;
use ualhunt_engine::Config;
use ualhunt_generate::{GenOptions, GenShape, GenSummary, generate};
use ualhunt_report::OutputFormat;

/// A generated archive with noise mixed in: blank and whitespace lines, CRLF endings,
/// malformed lines with and without the literal, decoys holding the literal in another
/// field, and no final newline.
fn archive(seed: u64, shape: GenShape, rate: f64, size: u64) -> (Vec<u8>, GenSummary) {
    let mut clean = Vec::new();
    let opts = GenOptions {
        size,
        seed,
        shape,
        rate,
        key_order: Default::default(),
    };
    let summary = generate(&opts, &mut clean).unwrap();
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x5eed);
    let mut out = Vec::with_capacity(clean.len() * 2);
    for line in clean.split_inclusive(|&b| b == b'\n') {
        match rng.u8(0..40) {
            0 => out.extend_from_slice(b"\n"),
            1 => out.extend_from_slice(b"  \t\r\n"),
            2 => out.extend_from_slice(b"{\"Operation\":\"Set-MailboxAuditBypassAssociation\",\"Work\n"),
            3 => out.extend_from_slice(b"garbage without the action\n"),
            4 => out.extend_from_slice(
                br#"{"Operation":"Set-Mailbox","Workload":"Exchange","UserId":"decoy","ObjectId":"Set-MailboxAuditBypassAssociation"}"#,
            ),
            _ => {}
        }
        if matches!(out.last(), Some(b'}')) {
            out.push(b'\n');
        }
        if rng.u8(0..10) == 0 && line.ends_with(b"\n") {
            out.extend_from_slice(&line[..line.len() - 1]);
            out.extend_from_slice(b"\r\n");
        } else {
            out.extend_from_slice(line);
        }
    }
    if out.last() == Some(&b'\n') && rng.bool() {
        out.pop();
    }
    (out, summary)
}

/// A generated archive with long runs of blank lines between its records (`\n` runs,
/// `\r\n` runs, whitespace lines), the case the scan counts in bulk.
fn blank_runs(seed: u64, size: u64) -> (Vec<u8>, GenSummary) {
    let (data, summary) = archive(seed, GenShape::Ual, 0.03, size);
    let mut rng = fastrand::Rng::with_seed(seed ^ 0xb1a2);
    let mut out = Vec::with_capacity(data.len() * 4);
    for line in data.split_inclusive(|&b| b == b'\n') {
        out.extend_from_slice(line);
        if line.ends_with(b"\n") {
            let n = rng.usize(0..3000);
            match rng.u8(0..4) {
                0 => out.resize(out.len() + n, b'\n'),
                1 => (0..n).for_each(|_| out.extend_from_slice(b"\r\n")),
                2 => (0..n % 50).for_each(|_| out.extend_from_slice(b" \t \r\n\n")),
                _ => {}
            }
        }
    }
    (out, summary)
}

fn write_file(dir: &Path, name: &str, data: &[u8], gzip: bool) -> PathBuf {
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    if gzip {
        // Two members, to exercise multi-member streams.
        let mid = data.len() / 2;
        for part in [&data[..mid], &data[mid..]] {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(part).unwrap();
            f.write_all(&enc.finish().unwrap()).unwrap();
        }
    } else {
        f.write_all(data).unwrap();
    }
    path
}

fn json_report(paths: Vec<PathBuf>, tweak: impl FnOnce(&mut Config)) -> serde_json::Value {
    let mut config = Config::new(paths);
    tweak(&mut config);
    let report = ualhunt_engine::run(&config).unwrap();
    let mut out = Vec::new();
    ualhunt_report::write(OutputFormat::Json, &report, &mut out).unwrap();
    serde_json::from_slice(&out).unwrap()
}

fn json_bytes(paths: Vec<PathBuf>, tweak: impl FnOnce(&mut Config)) -> Vec<u8> {
    serde_json::to_vec(&json_report(paths, tweak)).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn output_is_identical_for_any_chunk_size_and_thread_count(
        seed in any::<u64>(),
        chunk in prop_oneof![1usize..256, 256usize..8192, 8192usize..200_000],
        threads in 1usize..5,
        block in prop_oneof![1usize..64, 64usize..4096, Just(1 << 18)],
        gzip in any::<bool>(),
        ecs in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let shape = if ecs { GenShape::Ecs } else { GenShape::Ual };
        let (data, _) = archive(seed, shape, 0.02, 60_000);
        let path = write_file(dir.path(), "a.jsonl", &data, gzip);
        let reference = json_bytes(vec![path.clone()], |_| {});
        let other = json_bytes(vec![path], |c| {
            c.chunk_size = chunk;
            c.threads = threads;
            c.scan_block = block;
        });
        prop_assert_eq!(String::from_utf8(reference).unwrap(), String::from_utf8(other).unwrap());
    }

    #[test]
    fn blank_runs_report_as_parsing_every_line_does(
        seed in any::<u64>(),
        chunk in prop_oneof![64usize..4096, 4096usize..200_000],
        block in prop_oneof![1usize..512, 512usize..70_000],
        threads in 1usize..4,
        gzip in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (data, summary) = blank_runs(seed, 30_000);
        let path = write_file(dir.path(), "a.jsonl", &data, gzip);
        let fast = json_report(vec![path.clone()], |c| {
            c.chunk_size = chunk;
            c.scan_block = block;
            c.threads = threads;
        });
        let slow = json_report(vec![path], |c| {
            c.threads = 1;
            c.prefilter = false;
        });
        prop_assert_eq!(&fast["actors"], &slow["actors"]);
        for key in ["lines", "blank", "records", "matched", "events"] {
            prop_assert_eq!(&fast["scan"][key], &slow["scan"][key], "{}", key);
        }
        prop_assert_eq!(fast["scan"]["events"].as_u64().unwrap(), summary.expected_matches);
        // Both paths count runs in bulk: the plainest count is the reference.
        let mut lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
        if lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        let blank = lines.iter().filter(|l| l.iter().all(|b| b" \t\r\x0c".contains(b))).count();
        prop_assert_eq!(fast["scan"]["lines"].as_u64(), Some(lines.len() as u64));
        prop_assert_eq!(fast["scan"]["blank"].as_u64(), Some(blank as u64));
    }

    #[test]
    fn prefilter_finds_what_parsing_every_line_finds(
        seed in any::<u64>(),
        chunk in 64usize..20_000,
        block in 1usize..5000,
        ecs in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let shape = if ecs { GenShape::Ecs } else { GenShape::Ual };
        let (data, summary) = archive(seed, shape, 0.03, 60_000);
        let path = write_file(dir.path(), "a.jsonl", &data, false);
        let fast = json_report(vec![path.clone()], |c| {
            c.chunk_size = chunk;
            c.scan_block = block;
        });
        let slow = json_report(vec![path], |c| {
            c.chunk_size = chunk;
            c.prefilter = false;
        });
        prop_assert_eq!(&fast["actors"], &slow["actors"]);
        for key in ["lines", "blank", "matched", "events"] {
            prop_assert_eq!(&fast["scan"][key], &slow["scan"][key], "{}", key);
        }
        // The planted successful events are all found (decoys and noise add none).
        prop_assert_eq!(fast["scan"]["events"].as_u64().unwrap(), summary.expected_matches);
        prop_assert!(fast["scan"]["candidates"].as_u64() <= slow["scan"]["candidates"].as_u64());
    }

    #[test]
    fn the_container_does_not_change_the_findings(seed in any::<u64>()) {
        let dir = tempfile::tempdir().unwrap();
        let (data, _) = archive(seed, GenShape::Ual, 0.02, 40_000);
        let plain = write_file(dir.path(), "plain.jsonl", &data, false);
        let gz = write_file(dir.path(), "packed.jsonl.gz", &data, true);
        let a = json_report(vec![plain], |_| {});
        let b = json_report(vec![gz], |_| {});
        let strip_paths = |v: &serde_json::Value| {
            let mut v = v.clone();
            for actor in v["actors"].as_array_mut().unwrap() {
                for e in actor["evidence"].as_array_mut().unwrap() {
                    e["path"] = serde_json::Value::Null;
                }
            }
            v
        };
        prop_assert_eq!(strip_paths(&a)["actors"].clone(), strip_paths(&b)["actors"].clone());
        prop_assert_eq!(&a["scan"]["lines"], &b["scan"]["lines"]);
        prop_assert_eq!(&a["scan"]["malformed"], &b["scan"]["malformed"]);
    }
}

/// The findings without where they were found (path, line and offset differ by
/// container).
fn placeless(report: &serde_json::Value) -> serde_json::Value {
    let mut actors = report["actors"].clone();
    for actor in actors.as_array_mut().unwrap() {
        for e in actor["evidence"].as_array_mut().unwrap() {
            e["path"] = serde_json::Value::Null;
            e["line"] = serde_json::Value::Null;
            e["offset"] = serde_json::Value::Null;
        }
    }
    actors
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn the_same_records_give_the_same_findings_in_any_container(seed in any::<u64>(), threads in 1usize..4) {
        let dir = tempfile::tempdir().unwrap();
        let mut jsonl = Vec::new();
        generate(&GenOptions { size: 40_000, seed, shape: GenShape::Ual, rate: 0.05, key_order: Default::default() }, &mut jsonl).unwrap();
        let records: Vec<serde_json::Value> = jsonl
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        let array = serde_json::to_vec_pretty(&records).unwrap();
        let csv = as_csv(&records);
        let files = [
            write_file(dir.path(), "a.jsonl", &jsonl, false),
            write_file(dir.path(), "b.json", &array, false),
            write_file(dir.path(), "c.csv", &csv, false),
            write_file(dir.path(), "d.csv.gz", &csv, true),
            {
                let path = dir.path().join("e.json.zst");
                std::fs::write(&path, zstd::encode_all(&array[..], 3).unwrap()).unwrap();
                path
            },
        ];
        let reference = json_report(vec![files[0].clone()], |c| c.threads = threads);
        for f in &files[1..] {
            let other = json_report(vec![f.clone()], |c| c.threads = threads);
            prop_assert_eq!(placeless(&reference), placeless(&other), "{}", f.display());
            // A document without any literal is not parsed, but its records are counted.
            prop_assert_eq!(&reference["scan"]["records"], &other["scan"]["records"]);
        }
    }
}

#[test]
fn several_files_merge_in_input_order_whatever_the_threads() {
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<PathBuf> = (0..5)
        .map(|i| {
            let (data, _) = archive(i, GenShape::Ual, 0.05, 20_000);
            write_file(dir.path(), &format!("f{i}.jsonl"), &data, i % 2 == 0)
        })
        .collect();
    let one = json_bytes(paths.clone(), |c| c.threads = 1);
    for threads in [2, 3, 8] {
        let many = json_bytes(paths.clone(), |c| {
            c.threads = threads;
            c.chunk_size = 777;
        });
        assert_eq!(one, many, "threads={threads}");
    }
}
