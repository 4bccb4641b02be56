//! gzip inputs end to end, in both builds: header fields of any length, zero padding
//! after the last member, and the parallel path (forced on or off with
//! `UALHUNT_GZIP_PARALLEL`) giving byte for byte the reports of the sequential path, for
//! sound, multi-member, cut, corrupt and padded streams large enough to be split.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use assert_cmd::Command;
use serde_json::Value as Json;
use ualhunt_generate::{GenOptions, GenShape, generate};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `ualhunt hunt --format json` with the parallel path `mode` (always, never, auto).
fn hunt(path: &Path, mode: &str, threads: &str) -> Output {
    Command::cargo_bin("ualhunt")
        .unwrap()
        .current_dir(root())
        .env("UALHUNT_GZIP_PARALLEL", mode)
        .args(["hunt", "--format", "json", "--threads", threads])
        .arg(path)
        .output()
        .unwrap()
}

fn json_of(out: &Output) -> Json {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn sample() -> Vec<u8> {
    std::fs::read(root().join("testdata/raw_ual_bypass_events.jsonl")).unwrap()
}

/// A gzip member of `data` whose header has an extra field and a comment of the given
/// lengths (and a name).
fn member_with_fields(data: &[u8], extra: u16, comment: usize) -> Vec<u8> {
    let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    raw.write_all(data).unwrap();
    let mut header = vec![0x1f, 0x8b, 8, 0b0001_1100, 0, 0, 0, 0, 0, 3];
    header.extend(extra.to_le_bytes());
    header.extend(std::iter::repeat_n(b'e', usize::from(extra)));
    header.extend(b"export.jsonl\0");
    header.extend(std::iter::repeat_n(b'c', comment));
    header.push(0);
    let mut crc = flate2::Crc::new();
    crc.update(data);
    [
        header,
        raw.finish().unwrap(),
        crc.sum().to_le_bytes().to_vec(),
        (data.len() as u32).to_le_bytes().to_vec(),
    ]
    .concat()
}

/// What does not depend on the path or the build: findings and counts.
fn findings(report: &Json) -> (Json, Json, Json, Json) {
    let mut actors = report["actors"].clone();
    for actor in actors.as_array_mut().unwrap() {
        for e in actor["evidence"].as_array_mut().unwrap() {
            e["path"] = Json::Null;
        }
    }
    let scan = &report["scan"];
    (
        actors,
        scan["lines"].clone(),
        scan["matched"].clone(),
        scan["malformed"].clone(),
    )
}

#[test]
fn a_gzip_header_with_a_large_comment_and_extra_field_is_read() {
    // Regression (issue 13): the default build refused a header field over 64 KiB.
    let data = sample();
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.jsonl");
    std::fs::write(&plain, &data).unwrap();
    let want = json_of(&hunt(&plain, "never", "2"));
    let gz = dir.path().join("commented.jsonl.gz");
    std::fs::write(&gz, member_with_fields(&data, u16::MAX, 3 << 20)).unwrap();
    for mode in ["never", "always"] {
        let out = hunt(&gz, mode, "2");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(findings(&json_of(&out)), findings(&want), "{mode}");
    }
}

#[test]
fn zero_padding_after_the_last_member_is_a_warning_not_an_error() {
    // Regression (issue 13): `gzip -d` says "decompression OK, trailing zero bytes
    // ignored"; ualhunt reported an unreadable input (exit 2).
    let data = sample();
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.jsonl");
    std::fs::write(&plain, &data).unwrap();
    let want = json_of(&hunt(&plain, "never", "2"));
    let padded = dir.path().join("taped.jsonl.gz");
    std::fs::write(&padded, [gzip(&data), vec![0; 10_240]].concat()).unwrap();
    for mode in ["never", "always"] {
        let out = hunt(&padded, mode, "2");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{mode}: {stderr}");
        let report = json_of(&out);
        assert_eq!(findings(&report), findings(&want), "{mode}");
        assert_eq!(report["scan"]["errors"], Json::Array(vec![]), "{mode}");
        let warnings = report["scan"]["warnings"].to_string();
        assert!(
            warnings.contains("trailing zero bytes ignored") && warnings.contains("10240 bytes"),
            "{mode}: {warnings}"
        );
        assert!(stderr.contains("trailing zero bytes ignored"), "{stderr}");
    }
    // Anything else after the last member is still an error, after its data.
    let garbage = dir.path().join("garbage.jsonl.gz");
    std::fs::write(&garbage, [gzip(&data), b"\0\0junk".to_vec()].concat()).unwrap();
    let out = hunt(&garbage, "never", "2");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(json_of(&out)["scan"]["matched"], want["scan"]["matched"]);
}

/// A generated archive of about 12 MB, each record given a field of random letters so
/// that it gzips to about 4 MB: large enough for the parallel decoder to split it (its
/// chunks start 1 MiB of compressed bytes apart), small enough for a debug build.
fn big_gzip() -> &'static (Vec<u8>, Vec<u8>) {
    static BIG: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    BIG.get_or_init(|| {
        let mut records = Vec::new();
        let opts = GenOptions {
            size: 12 << 20,
            seed: 11,
            shape: GenShape::Ual,
            rate: 0.001,
            key_order: Default::default(),
        };
        generate(&opts, &mut records).unwrap();
        let mut rng = fastrand::Rng::with_seed(11);
        let mut data = Vec::with_capacity(records.len() * 3 / 2);
        for line in records.split_inclusive(|&b| b == b'\n') {
            match line.strip_prefix(b"{") {
                Some(rest) => {
                    data.extend_from_slice(b"{\"Noise\":\"");
                    data.extend((0..300).map(|_| rng.alphanumeric() as u8));
                    data.extend_from_slice(b"\",");
                    data.extend_from_slice(rest);
                }
                None => data.extend_from_slice(line),
            }
        }
        let gz = gzip(&data);
        (data, gz)
    })
}

/// Runs the parallel path (forced, 2 workers) and the sequential one on `gz`
/// and checks they say exactly the same: output, stderr and exit status.
fn same_reports(name: &str, gz: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join(name);
    std::fs::write(&path, gz).unwrap();
    let sequential = hunt(&path, "never", "2");
    let parallel = hunt(&path, "always", "2");
    assert_eq!(
        parallel.status.code(),
        sequential.status.code(),
        "{name}: {}",
        String::from_utf8_lossy(&parallel.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&parallel.stdout),
        String::from_utf8_lossy(&sequential.stdout),
        "{name}"
    );
    assert_eq!(
        String::from_utf8_lossy(&parallel.stderr),
        String::from_utf8_lossy(&sequential.stderr),
        "{name}"
    );
}

#[test]
fn the_parallel_path_reports_what_the_sequential_path_reports() {
    let (data, gz) = big_gzip();
    assert!(gz.len() > 3 << 20, "big enough to split: {}", gz.len());
    same_reports("sound.jsonl.gz", gz);
    // Several members, one boundary mid-line.
    let cut = data.len() / 3 + 17;
    same_reports(
        "members.jsonl.gz",
        &[gzip(&data[..cut]), gzip(&data[cut..])].concat(),
    );
}

#[test]
fn the_parallel_path_reports_damage_as_the_sequential_path_does() {
    let (_, gz) = big_gzip();
    // Cut mid-stream: the lines before the cut are scanned, the cut is reported.
    same_reports("cut.jsonl.gz", &gz[..gz.len() * 3 / 5]);
    // Corrupt bytes in the third compressed megabyte.
    let mut corrupt = gz.clone();
    let at = gz.len() * 7 / 10;
    for b in &mut corrupt[at..at + 16] {
        *b ^= 0x5a;
    }
    same_reports("corrupt.jsonl.gz", &corrupt);
    // A wrong CRC in the trailer: every byte comes out, then the mismatch.
    let mut crc = gz.clone();
    let n = crc.len();
    crc[n - 8] ^= 1;
    same_reports("crc.jsonl.gz", &crc);
    // Zero padding (a note) and garbage (an error) after the member.
    same_reports("padded.jsonl.gz", &[gz.clone(), vec![0; 3]].concat());
    same_reports(
        "garbage.jsonl.gz",
        &[gz.clone(), b"trailing".to_vec()].concat(),
    );
}
