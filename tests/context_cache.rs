//! The context cache (`--context-cache`, issue 19): the inflated blocks of gzip and zstd
//! files the first pass keeps for the context pass give the very report of a pass that
//! reads everything (`Config::context_full_read`) and of one that inflates again from
//! the seek points (cache off), whether the budget holds every file, part of one, or
//! nothing; for any thread count, chunk size and seek spacing; gzip in one member or
//! many, zstd in one frame or many. A damaged file is read as it was without the cache.

use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

use proptest::prelude::*;
use ualhunt_engine::{Config, Report};
use ualhunt_generate::{GenOptions, GenShape, KeyOrder, Plot, Storyline, generate_with};
use ualhunt_report::OutputFormat;

/// A storyline of four months with two bypass periods and their investigation.
fn story(seed: u64, size: u64) -> Vec<u8> {
    let opts = GenOptions {
        size,
        seed,
        shape: GenShape::Ual,
        rate: 0.0,
        key_order: KeyOrder::Generated,
    };
    let mut out = Vec::new();
    let plot = Storyline {
        days: 120,
        plot: Plot::Investigation,
    };
    generate_with(&opts, Some(plot), &mut out).unwrap();
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// `data` cut after a newline into parts of about `size` bytes.
fn parts(data: &[u8], size: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let from = size.min(rest.len() - 1);
        let cut = rest[from..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| from + i + 1);
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    out
}

/// `data` as gzip in one member, in members of 60 KB, and cut mid-line into two
/// members; as zstd in one frame and in frames of 60 KB.
fn compressed(data: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mid = data.len() / 2 + 7;
    vec![
        ("gz", gzip(data)),
        (
            "members.gz",
            parts(data, 60_000).into_iter().flat_map(gzip).collect(),
        ),
        ("cut.gz", [gzip(&data[..mid]), gzip(&data[mid..])].concat()),
        ("zst", zstd::encode_all(data, 3).unwrap()),
        (
            "frames.zst",
            parts(data, 60_000)
                .into_iter()
                .flat_map(|p| zstd::encode_all(p, 3).unwrap())
                .collect(),
        ),
    ]
}

/// The compressed files of one story (written once for every test of this file, in a
/// directory that lives as long as the test binary), and the story's length.
fn files() -> (&'static [PathBuf], u64) {
    static FILES: OnceLock<(tempfile::TempDir, Vec<PathBuf>, u64)> = OnceLock::new();
    let (_, paths, len) = FILES.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let data = story(19, 600_000);
        let paths = compressed(&data)
            .into_iter()
            .map(|(name, bytes)| {
                let path = dir.path().join(format!("story.jsonl.{name}"));
                std::fs::write(&path, bytes).unwrap();
                path
            })
            .collect();
        (dir, paths, data.len() as u64)
    });
    (paths, *len)
}

fn run(paths: &[PathBuf], tweak: &dyn Fn(&mut Config)) -> Report {
    let mut config = Config::new(paths.to_vec());
    tweak(&mut config);
    ualhunt_engine::run(&config).unwrap()
}

/// The report in every format that shows the investigation.
fn render(report: &Report) -> String {
    let mut out = Vec::new();
    for format in [
        OutputFormat::Json,
        OutputFormat::Table,
        OutputFormat::Timeline,
    ] {
        ualhunt_report::write(format, report, &mut out).unwrap();
    }
    String::from_utf8(out).unwrap()
}

/// The context pass's bytes scanned, read from the cache, and inflated only to reach a
/// stretch.
fn read(report: &Report) -> (u64, u64, u64) {
    let p = &report
        .stats
        .context
        .first()
        .expect("a context pass ran")
        .pass;
    (p.bytes, p.cached, p.lead_in)
}

/// `--context-cache auto`'s budget.
fn auto() -> Option<u64> {
    Some(ualhunt_engine::scan::cache::default_budget())
}

/// With `tweak` and the cache `budget`, the report of a full read and of the cache off;
/// returns the run with the cache.
fn same_reports(paths: &[PathBuf], budget: Option<u64>, tweak: &dyn Fn(&mut Config)) -> Report {
    let cached = run(paths, &|c| {
        tweak(c);
        c.context_cache = budget;
    });
    let off = run(paths, &|c| {
        tweak(c);
        c.context_cache = Some(0);
    });
    let full = run(paths, &|c| {
        tweak(c);
        c.context_full_read = true;
    });
    let text = render(&cached);
    assert_eq!(text, render(&off), "cache {budget:?} against the cache off");
    assert_eq!(text, render(&full), "cache {budget:?} against a full read");
    assert!(off.stats.cache.is_none() && full.stats.cache.is_none());
    assert_eq!(read(&off).1, 0, "nothing read from a cache that is off");
    cached
}

/// A change to the configuration of a run.
type Mode = Box<dyn Fn(&mut Config)>;

fn modes() -> Vec<Mode> {
    vec![
        Box::new(|_| {}),
        Box::new(|c| {
            c.threads = 1;
            c.chunk_size = 4096;
        }),
        Box::new(|c| {
            c.threads = 2;
            c.chunk_size = 3000;
            c.seek_spacing = 20_000;
        }),
        Box::new(|c| {
            c.threads = 2;
            c.chunk_size = 64 << 10;
            c.context_horizon = chrono::Duration::days(1);
        }),
    ]
}

#[test]
fn a_cache_that_holds_every_file_gives_the_report_of_a_full_read_and_inflates_nothing_again() {
    let (paths, len) = files();
    for mode in modes() {
        for path in paths {
            let r = same_reports(std::slice::from_ref(path), auto(), &*mode);
            let c = r.stats.cache.expect("the default budget");
            assert_eq!((c.files, c.kept, c.not_kept), (1, len, 0), "{path:?}");
            assert!(c.held >= c.kept && c.held <= c.budget);
            let (bytes, cached, lead_in) = read(&r);
            assert!(bytes > 0, "{path:?}");
            assert_eq!((cached, lead_in), (bytes, 0), "{path:?}: all from memory");
        }
        let r = same_reports(paths, auto(), &*mode);
        let c = r.stats.cache.unwrap();
        assert_eq!(
            (c.files, c.kept),
            (paths.len() as u64, len * paths.len() as u64)
        );
    }
}

#[test]
fn a_budget_smaller_than_the_file_keeps_a_prefix_and_inflates_the_rest_from_seek_points() {
    let (paths, len) = files();
    for mode in modes() {
        for path in paths {
            for budget in [len / 3, 10_000] {
                let r = same_reports(std::slice::from_ref(path), Some(budget), &*mode);
                let c = r.stats.cache.unwrap();
                assert!(c.held <= budget, "{path:?}: {c:?}");
                assert_eq!(c.kept + c.not_kept, len, "{path:?}: {c:?}");
                assert!(c.not_kept > 0, "{path:?}: {c:?}");
                let (bytes, cached, _) = read(&r);
                assert!(
                    cached <= c.kept && cached < bytes,
                    "{path:?}: {cached} of {bytes}"
                );
            }
        }
        // One budget over five files: those read first fill it.
        let r = same_reports(paths, Some(len * 2), &*mode);
        let c = r.stats.cache.unwrap();
        assert!(c.files >= 1 && c.kept < len * paths.len() as u64, "{c:?}");
    }
}

#[test]
fn a_damaged_file_is_read_as_without_the_cache() {
    let (paths, _) = files();
    let dir = tempfile::tempdir().unwrap();
    // Cut, and corrupt, in the middle of the compressed bytes.
    let gz = std::fs::read(&paths[0]).unwrap();
    let cut = dir.path().join("cut.jsonl.gz");
    std::fs::write(&cut, &gz[..gz.len() * 3 / 5]).unwrap();
    let mut bad = gz.clone();
    let at = gz.len() / 2;
    for b in &mut bad[at..at + 16] {
        *b ^= 0x5a;
    }
    let corrupt = dir.path().join("corrupt.jsonl.gz");
    std::fs::write(&corrupt, bad).unwrap();
    let zst = std::fs::read(&paths[3]).unwrap();
    let cut_zst = dir.path().join("cut.jsonl.zst");
    std::fs::write(&cut_zst, &zst[..zst.len() * 3 / 5]).unwrap();
    for path in [&cut, &corrupt, &cut_zst] {
        // Compared byte for byte with either gzip backend: what a decoder recovers
        // of a damaged stream does not depend on the sizes of the reads asked of it.
        for mode in modes() {
            let r = same_reports(std::slice::from_ref(path), auto(), &*mode);
            // Nothing kept of it: the context pass reads it again, as it did.
            let c = r.stats.cache.unwrap();
            assert_eq!((c.files, c.kept), (0, 0), "{path:?}");
            for c in &r.stats.context {
                assert_eq!(c.pass.cached, 0);
            }
            // What came before the damage was scanned, and the stop names the file
            // and the line.
            assert!(r.counts.lines > 0, "{path:?}");
            let [error] = &r.errors[..] else {
                panic!("{path:?}: {:?}", r.errors)
            };
            assert_eq!(error.path(), path.display().to_string());
            assert!(error.line().is_some_and(|l| l > 0), "{error}");
            assert!(error.to_string().contains(", line "), "{error}");
        }
    }
}

#[test]
fn no_cache_without_a_context_pass_and_none_left_after_the_run() {
    let (paths, _) = files();
    let r = run(&paths[..1], &|c| c.context = false);
    assert!(r.stats.cache.is_none() && r.stats.context.is_empty());
    // A plain file is mapped, never cached.
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("story.jsonl");
    std::fs::write(&plain, story(3, 200_000)).unwrap();
    let r = run(std::slice::from_ref(&plain), &|c| c.context_cache = auto());
    let c = r.stats.cache.unwrap();
    assert_eq!((c.files, c.kept, c.held), (0, 0, 0));
}

/// `--context-cache` on the command line, and what `--stats` says of it.
#[test]
fn the_flag_sets_the_budget_and_stats_say_what_was_kept_and_read() {
    let (paths, len) = files();
    let stats = |args: &[&str]| {
        let out = assert_cmd::Command::cargo_bin("ualhunt")
            .unwrap()
            .args(["hunt", "-q", "--stats", "--format", "json", "-o"])
            .arg(if cfg!(windows) { "NUL" } else { "/dev/null" })
            .args(args)
            .arg(&paths[0])
            .output()
            .unwrap();
        assert!(out.status.code().is_some_and(|c| c <= 1), "{out:?}");
        String::from_utf8(out.stderr).unwrap()
    };
    // Off by default.
    let default = stats(&[]);
    assert!(!default.contains("context cache"), "{default}");
    let on = stats(&["--context-cache", "auto"]);
    assert!(
        on.contains(&format!("kept {len} bytes of 1 compressed files")),
        "{on}"
    );
    assert!(
        on.contains("0 inflated again (0 scanned, 0 to reach them)"),
        "{on}"
    );
    let part = stats(&["--context-cache", "100K"]);
    assert!(part.contains("context cache budget 0.1 MiB"), "{part}");
    assert!(part.contains("; full: "), "{part}");
    let off = stats(&["--context-cache", "0"]);
    assert!(!off.contains("context cache"), "{off}");
    let bad = assert_cmd::Command::cargo_bin("ualhunt")
        .unwrap()
        .args(["hunt", "--context-cache", "lots"])
        .arg(&paths[0])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, .. ProptestConfig::default() })]

    /// Any budget (nothing, part of a file, all of it), chunk size, thread count and
    /// seek spacing: the report of a full read.
    #[test]
    fn any_budget_gives_the_report_of_a_full_read(
        file in 0usize..5,
        budget in prop_oneof![Just(0u64), 1u64..700_000, Just(1u64 << 30)],
        chunk in prop_oneof![Just(4usize << 20), 512usize..70_000],
        threads in 1usize..4,
        spacing in prop_oneof![Just(u64::MAX), 8_000u64..200_000],
    ) {
        let path = &files().0[file];
        let tweak = |c: &mut Config| {
            c.chunk_size = chunk;
            c.threads = threads;
            c.seek_spacing = spacing;
        };
        let cached = run(std::slice::from_ref(path), &|c| {
            tweak(c);
            c.context_cache = Some(budget);
        });
        let full = run(std::slice::from_ref(path), &|c| {
            tweak(c);
            c.context_full_read = true;
        });
        prop_assert!(render(&cached) == render(&full), "{path:?}, budget {budget}");
        if let Some(c) = cached.stats.cache {
            prop_assert!(c.held <= budget);
            prop_assert!(read(&cached).1 <= c.kept);
        }
    }
}
