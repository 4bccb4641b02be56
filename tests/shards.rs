//! Sharded runs: the merge of N shards' partials must be byte for byte the report of one
//! run over the same inputs, in every format, whatever N and wherever the shard
//! boundaries fall (inside a plain file, between files, across a bypass period, across
//! duplicated records); and a merge of partials that are not one run's must fail, naming
//! the culprit.

use std::io::Write;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use proptest::prelude::*;
use ualhunt_engine::Config;
use ualhunt_engine::shard::merge::{self, Loaded, MergeError};
use ualhunt_engine::shard::partial::{self, CONTEXT_FORMAT, ContextPlanFile, PARTIAL_FORMAT};
use ualhunt_engine::shard::{self, Shard};
use ualhunt_generate::{GenOptions, GenShape, Storyline, generate_with};
use ualhunt_report::OutputFormat;

const FORMATS: [OutputFormat; 4] = [
    OutputFormat::Json,
    OutputFormat::Csv,
    OutputFormat::Ndjson,
    OutputFormat::Table,
];

fn generated(seed: u64, size: u64, story: bool) -> Vec<u8> {
    let opts = GenOptions {
        size,
        seed,
        shape: GenShape::Ual,
        rate: 0.002,
        key_order: Default::default(),
    };
    let mut out = Vec::new();
    generate_with(
        &opts,
        story.then_some(Storyline {
            days: 30,
            plot: ualhunt_generate::Plot::Investigation,
        }),
        &mut out,
    )
    .unwrap();
    out
}

/// An archive: the storyline (bypass periods, attempts, tampering) in a plain file, a
/// gzip file, an overlapping export (its lines repeat part of the storyline: duplicates
/// across shards), small plain files, an empty file and a malformed line.
fn archive(dir: &Path, seed: u64, story_size: u64, small: usize) -> PathBuf {
    let root = dir.join("archive");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    let story = generated(seed, story_size, true);
    std::fs::write(root.join("a-story.jsonl"), &story).unwrap();
    let lines: Vec<&[u8]> = story.split_inclusive(|&b| b == b'\n').collect();
    let from = (seed as usize * 7) % lines.len().max(1);
    let overlap: Vec<u8> = lines[from..]
        .iter()
        .take(400)
        .flat_map(|l| l.to_vec())
        .collect();
    std::fs::write(root.join("b-overlap.jsonl"), &overlap).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&generated(seed + 1, 60_000, false)).unwrap();
    std::fs::write(root.join("c.jsonl.gz"), gz.finish().unwrap()).unwrap();
    for i in 0..small {
        let mut data = generated(seed + 2 + i as u64, 5_000 + 3_000 * i as u64, false);
        if i == 0 {
            data.extend_from_slice(
                b"{\"Operation\":\"Set-MailboxAuditBypassAssociation\" broken\n",
            );
        }
        std::fs::write(root.join("sub").join(format!("s{i}.jsonl")), data).unwrap();
    }
    std::fs::write(root.join("sub").join("empty.jsonl"), b"").unwrap();
    root
}

fn render(report: &ualhunt_engine::Report) -> Vec<Vec<u8>> {
    FORMATS
        .iter()
        .map(|f| {
            let mut out = Vec::new();
            ualhunt_report::write(*f, report, &mut out).unwrap();
            out
        })
        .collect()
}

/// Runs both stages of a sharded run on `count` shards, the partials going through their
/// files, and merges them.
fn sharded(config: &Config, count: u32, dir: &Path) -> ualhunt_engine::Report {
    let parts = dir.join(format!("parts-{count}"));
    std::fs::create_dir_all(&parts).unwrap();
    let today = chrono::Utc::now().date_naive();
    let load = |paths: Vec<PathBuf>| merge::load(&paths).unwrap();
    let mut first = Vec::new();
    for k in 0..count {
        let p = shard::run(config, Shard::new(k, count).unwrap(), None).unwrap();
        let path = parts.join(format!("p1-{k}"));
        partial::write_atomic(&path, &p).unwrap();
        first.push(path);
    }
    let plan = merge::context_plan(load(first.clone()), today).unwrap();
    let plan_path = parts.join("context-plan");
    partial::write_atomic(&plan_path, &plan).unwrap();
    let plan: ContextPlanFile = partial::read(&plan_path, CONTEXT_FORMAT).unwrap();
    let mut all = first;
    for k in 0..count {
        let p = shard::run(config, Shard::new(k, count).unwrap(), Some(("plan", &plan))).unwrap();
        let path = parts.join(format!("p2-{k}"));
        partial::write_atomic(&path, &p).unwrap();
        all.push(path);
    }
    merge::merge(load(all), today).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, .. ProptestConfig::default() })]

    #[test]
    fn the_merge_of_any_number_of_shards_is_the_single_run(
        seed in 0u64..1000,
        story_size in 150_000u64..500_000,
        small in 0usize..5,
        counts in proptest::collection::vec(1u32..9, 2),
        chunk in prop_oneof![Just(4usize << 20), 1024usize..65536],
        since in proptest::option::of(0i64..25),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let root = archive(dir.path(), seed, story_size, small);
        let mut config = Config::new(vec![root]);
        config.chunk_size = chunk;
        config.since = since.map(|d| chrono::DateTime::from_timestamp(1_704_067_200 + d * 86_400, 0).unwrap());
        let single = render(&ualhunt_engine::run(&config).unwrap());
        prop_assert!(String::from_utf8_lossy(&single[0]).contains("\"periods\""));
        for count in counts {
            let merged = render(&sharded(&config, count, dir.path()));
            for (f, (a, b)) in FORMATS.iter().zip(single.iter().zip(&merged)) {
                prop_assert!(a == b, "{count} shards, {f:?} differs:\n{}\n---\n{}",
                    String::from_utf8_lossy(a), String::from_utf8_lossy(b));
            }
        }
    }
}

fn bin() -> Command {
    Command::cargo_bin("ualhunt").unwrap()
}

/// First-stage partials of `count` shards over `root`, with extra hunt flags.
fn stage1(root: &Path, parts: &Path, count: u32, tag: &str, flags: &[&str]) -> Vec<PathBuf> {
    std::fs::create_dir_all(parts).unwrap();
    (0..count)
        .map(|k| {
            let path = parts.join(format!("{tag}-{k}"));
            bin()
                .args([
                    "hunt",
                    "-q",
                    "--shard",
                    &format!("{k}/{count}"),
                    "--partial",
                ])
                .arg(&path)
                .args(flags)
                .arg(root)
                .assert()
                .success();
            path
        })
        .collect()
}

fn merge_err(paths: &[PathBuf]) -> String {
    let out = bin().arg("merge").args(paths).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

#[test]
fn the_binary_merges_to_the_single_run_and_writes_every_output() {
    let dir = tempfile::tempdir().unwrap();
    let root = testdata();
    let single = bin()
        .args(["hunt", "-q", "--format", "json"])
        .arg(&root)
        .output()
        .unwrap();
    let mut parts = stage1(&root, &dir.path().join("p"), 3, "p1", &[]);
    let plan = dir.path().join("plan");
    bin()
        .args(["merge", "--context-plan"])
        .arg(&plan)
        .args(&parts)
        .assert()
        .success();
    for k in 0..3 {
        let path = dir.path().join("p").join(format!("p2-{k}"));
        bin()
            .args(["hunt", "-q", "--shard", &format!("{k}/3"), "--context-from"])
            .arg(&plan)
            .arg("--partial")
            .arg(&path)
            .arg(&root)
            .assert()
            .success();
        parts.push(path);
    }
    let csv = dir.path().join("merged.csv");
    let merged = bin()
        .args(["merge", "--format", "json", "--export"])
        .arg(format!("csv={}", csv.display()))
        .arg(dir.path().join("p"))
        .output()
        .unwrap();
    assert_eq!(merged.status.code(), single.status.code());
    assert_eq!(merged.stdout, single.stdout);
    let single_csv = bin()
        .args(["hunt", "-q", "--format", "csv"])
        .arg(&root)
        .output()
        .unwrap();
    assert_eq!(std::fs::read(&csv).unwrap(), single_csv.stdout);
}

#[test]
fn missing_duplicated_and_foreign_partials_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let root = testdata();
    let parts = dir.path().join("p");
    let p = stage1(&root, &parts, 3, "p1", &["--no-context"]);

    let e = merge_err(&p[..2]);
    assert!(e.contains("missing shard 2/3"), "{e}");

    let e = merge_err(&[p[0].clone(), p[1].clone(), p[2].clone(), p[1].clone()]);
    assert!(e.contains("shard 1/3") && e.contains("given twice"), "{e}");

    let other = stage1(
        &root,
        &parts,
        3,
        "since",
        &["--no-context", "--since", "2024-01-01"],
    );
    let e = merge_err(&[p[0].clone(), p[1].clone(), other[2].clone()]);
    assert!(
        e.contains("since-2") && e.contains("another run") && e.contains("options"),
        "{e}"
    );

    let four = stage1(&root, &parts, 4, "four", &["--no-context"]);
    let e = merge_err(&[p[0].clone(), p[1].clone(), four[2].clone()]);
    assert!(e.contains("four-2") && e.contains("shard count"), "{e}");

    let not = dir.path().join("notes.txt");
    std::fs::write(&not, "hello").unwrap();
    let e = merge_err(&[p[0].clone(), not]);
    assert!(
        e.contains("notes.txt") && e.contains("not a ualhunt-partial"),
        "{e}"
    );

    let newer = dir.path().join("newer");
    let text =
        String::from_utf8(zstd::decode_all(&std::fs::read(&p[0]).unwrap()[..]).unwrap()).unwrap();
    let version = partial::VERSION;
    let later = text.replacen(
        &format!("\"version\":{version}"),
        &format!("\"version\":{}", version + 1),
        1,
    );
    assert_ne!(later, text);
    std::fs::write(&newer, later).unwrap();
    let e = merge_err(&[newer, p[1].clone(), p[2].clone()]);
    assert!(e.contains(&format!("version {}", version + 1)), "{e}");

    // Without --no-context these findings need the second stage.
    let full = stage1(&root, &parts, 2, "full", &[]);
    let e = merge_err(&full);
    assert!(e.contains("context pass"), "{e}");
}

#[test]
fn a_stale_context_plan_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = testdata();
    let parts = dir.path().join("p");
    let p = stage1(&root, &parts, 2, "p1", &[]);
    let plan = dir.path().join("plan");
    bin()
        .args(["merge", "--context-plan"])
        .arg(&plan)
        .args(&p)
        .assert()
        .success();
    // A context plan of another run (another window) is refused by the shard at once.
    let out = bin()
        .args([
            "hunt",
            "-q",
            "--shard",
            "0/2",
            "--since",
            "2024-01-01",
            "--context-from",
        ])
        .arg(&plan)
        .arg("--partial")
        .arg(parts.join("x"))
        .arg(&root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("another run"));
    // A second stage run with an edited watch list does not merge.
    let mut edited: ContextPlanFile = partial::read(&plan, CONTEXT_FORMAT).unwrap();
    if let Some((_, Some(w))) = edited.rules.first_mut() {
        w.accounts.pop();
    }
    let stale = dir.path().join("stale");
    partial::write_atomic(&stale, &edited).unwrap();
    let mut all = p.clone();
    for k in 0..2 {
        let path = parts.join(format!("p2-{k}"));
        bin()
            .args(["hunt", "-q", "--shard", &format!("{k}/2"), "--context-from"])
            .arg(&stale)
            .arg("--partial")
            .arg(&path)
            .arg(&root)
            .assert()
            .success();
        all.push(path);
    }
    let e = merge_err(&all);
    assert!(e.contains("stale"), "{e}");
}

#[test]
fn merge_errors_in_the_library_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let parts = stage1(
        &testdata(),
        &dir.path().join("p"),
        2,
        "p1",
        &["--no-context"],
    );
    let files: Vec<Loaded> = merge::load(&parts).unwrap();
    assert_eq!(files[0].file.format, PARTIAL_FORMAT);
    let today = chrono::Utc::now().date_naive();
    let mut files = files;
    files[1].file.shard = 0;
    match merge::merge(files, today) {
        Err(MergeError::Plan(m)) => assert!(m.contains("given twice") && m.contains("p1-1"), "{m}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a duplicated shard merged"),
    }
}

#[test]
fn shard_auto_reads_the_scheduler_and_stdin_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args([
            "hunt",
            "--shard",
            "auto",
            "--shard-count",
            "3",
            "--list-shard",
        ])
        .arg(testdata())
        .env("JOB_COMPLETION_INDEX", "2")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("# shard 2/3"));
    let out = bin()
        .args(["hunt", "--shard", "auto", "--list-shard"])
        .arg(testdata())
        .env("SLURM_ARRAY_TASK_ID", "5")
        .env("SLURM_ARRAY_TASK_MIN", "1")
        .env("SLURM_ARRAY_TASK_STEP", "2")
        .env("SLURM_ARRAY_TASK_COUNT", "4")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("# shard 2/4"),
        "{out:?}"
    );
    bin()
        .args(["hunt", "--shard", "0/2", "--partial"])
        .arg(dir.path().join("x"))
        .arg("-")
        .write_stdin("{}\n")
        .assert()
        .code(2);
    bin()
        .args(["hunt", "--shard", "0/2"])
        .arg(testdata())
        .assert()
        .code(2);
}

/// A year for the context stage: two closed bypass periods in 365 days (the context
/// pass needs a small share of it), as a plain file that shards cut into
/// pieces and a gzip file read whole with its seek points.
fn long_span(dir: &Path, seed: u64) -> PathBuf {
    let root = dir.join("long");
    std::fs::create_dir_all(&root).unwrap();
    let opts = GenOptions {
        size: 600_000,
        seed,
        shape: GenShape::Ual,
        rate: 0.0,
        key_order: Default::default(),
    };
    let story = |seed| {
        let mut out = Vec::new();
        let line = Storyline {
            days: 365,
            plot: ualhunt_generate::Plot::TwoPeriods,
        };
        generate_with(
            &GenOptions {
                seed,
                ..opts.clone()
            },
            Some(line),
            &mut out,
        )
        .unwrap();
        out
    };
    std::fs::write(root.join("a.jsonl"), story(seed)).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&story(seed + 1)).unwrap();
    std::fs::write(root.join("b.jsonl.gz"), gz.finish().unwrap()).unwrap();
    root
}

/// The context pass's bytes read (scanned and inflated only to reach them) and the
/// first pass's bytes.
fn context_read(report: &ualhunt_engine::Report) -> (u64, u64) {
    let read = report
        .stats
        .context
        .iter()
        .map(|c| c.pass.bytes + c.pass.lead_in)
        .sum();
    (read, report.stats.scan.bytes)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, .. ProptestConfig::default() })]

    /// The context stage of a sharded run reads only what the first stage's index points
    /// to (pieces of a plain file the stretches inside them, a gzip file from its seek
    /// points), and the merge is still the single run's report.
    #[test]
    fn the_sharded_context_stage_reads_only_where_the_index_points(
        seed in 0u64..1000,
        count in 2u32..6,
        chunk in prop_oneof![Just(4usize << 20), 2048usize..65536],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let root = long_span(dir.path(), seed);
        let mut config = Config::new(vec![root]);
        config.chunk_size = chunk;
        // Index spans of a few records, seek points every 16 KiB of text.
        config.scan_block = 8 << 10;
        config.seek_spacing = 16 << 10;
        let single = ualhunt_engine::run(&config).unwrap();
        let merged = sharded(&config, count, dir.path());
        for (f, (a, b)) in FORMATS.iter().zip(render(&single).iter().zip(&render(&merged))) {
            prop_assert!(a == b, "{count} shards, {f:?} differs:\n{}\n---\n{}",
                String::from_utf8_lossy(a), String::from_utf8_lossy(b));
        }
        let (read, total) = context_read(&merged);
        let (single_read, single_total) = context_read(&single);
        prop_assert_eq!(total, single_total);
        prop_assert!(single_read < total / 2, "single run read {single_read} of {total}");
        prop_assert!(read < total / 2, "{count} shards: the context stage read {read} of {total}");
        // And a full read, as the stage did before, gives the same report.
        let mut full = config.clone();
        full.context_full_read = true;
        let all = sharded(&full, count, &dir.path().join("full"));
        prop_assert_eq!(context_read(&all).0, total);
        prop_assert!(render(&all) == render(&merged));
    }
}
