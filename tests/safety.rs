//! Forensic safety: an output never replaces an input or another output, every output
//! is complete or not there (a failure, a refusal, Ctrl-C, SIGTERM or kill -9 leaves the
//! previous file as it was), standard input is read once, and a damaged, edited or
//! stale partial never merges.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use assert_cmd::cargo::cargo_bin;
use ualhunt_generate::{GenOptions, GenShape, Plot, Storyline, generate_with};

/// An audit archive of about `size` bytes with planted bypass events (findings).
fn archive(seed: u64, size: u64) -> Vec<u8> {
    let opts = GenOptions {
        size,
        seed,
        shape: GenShape::Ual,
        rate: 0.002,
        key_order: Default::default(),
    };
    let mut out = Vec::new();
    let story = Storyline {
        days: 30,
        plot: Plot::Investigation,
    };
    generate_with(&opts, Some(story), &mut out).unwrap();
    out
}

/// `ualhunt ARGS` run in `dir`.
fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(cargo_bin("ualhunt"))
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The names in `dir` (temporaries start with a dot).
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn temporaries(dir: &Path) -> Vec<String> {
    names(dir)
        .into_iter()
        .filter(|n| n.starts_with('.'))
        .collect()
}

/// A folder holding the input `e.jsonl`, a symlink `l` and a hard link `h` to it.
fn evidence() -> (tempfile::TempDir, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let data = archive(1, 20_000);
    std::fs::write(dir.path().join("e.jsonl"), &data).unwrap();
    std::os::unix::fs::symlink("e.jsonl", dir.path().join("l")).unwrap();
    std::fs::hard_link(dir.path().join("e.jsonl"), dir.path().join("h")).unwrap();
    (dir, data)
}

// `-o e.jsonl e.jsonl` replaced the only copy of the archive with an empty report.
#[test]
fn an_output_naming_an_input_is_refused_and_the_input_kept() {
    let (dir, data) = evidence();
    let d = dir.path();
    let absolute = d.join("e.jsonl").display().to_string();
    let before = names(d);
    let spellings: Vec<Vec<String>> = vec![
        vec!["-o".into(), "e.jsonl".into()],
        vec!["-o".into(), "./e.jsonl".into()],
        vec!["-o".into(), absolute.clone()],
        vec!["-o".into(), "l".into()],
        vec!["-o".into(), "h".into()],
        vec!["--export".into(), "csv=e.jsonl".into()],
        vec!["--export".into(), format!("json={absolute}")],
        vec![
            "--shard".into(),
            "0/1".into(),
            "--partial".into(),
            "e.jsonl".into(),
        ],
    ];
    for spelling in &spellings {
        let mut args = vec!["hunt", "-q", "--format", "json"];
        args.extend(spelling.iter().map(String::as_str));
        args.push("e.jsonl");
        let out = run(d, &args);
        let e = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{spelling:?}: {e}");
        assert!(e.contains("input e.jsonl"), "{spelling:?}: {e}");
        assert!(e.contains(spelling.last().unwrap()), "{spelling:?}: {e}");
        assert!(out.stdout.is_empty(), "{spelling:?}: no report");
        assert_eq!(
            std::fs::read(d.join("e.jsonl")).unwrap(),
            data,
            "{spelling:?}"
        );
        assert_eq!(names(d), before, "{spelling:?}: nothing created");
    }
    // A file found inside an input folder, a zip archive read entry by entry, standard
    // input redirected from the file: each is an input too.
    std::fs::create_dir(d.join("dir")).unwrap();
    std::fs::write(d.join("dir").join("in.jsonl"), &data).unwrap();
    let out = run(d, &["hunt", "-q", "-o", "dir/in.jsonl", "dir"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(std::fs::read(d.join("dir").join("in.jsonl")).unwrap(), data);
    let mut zip = zip::ZipWriter::new(std::fs::File::create(d.join("a.zip")).unwrap());
    zip.start_file("e.jsonl", zip::write::SimpleFileOptions::default())
        .unwrap();
    zip.write_all(&data).unwrap();
    zip.finish().unwrap();
    let zipped = std::fs::read(d.join("a.zip")).unwrap();
    let out = run(d, &["hunt", "-q", "--export", "csv=a.zip", "a.zip"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(std::fs::read(d.join("a.zip")).unwrap(), zipped);
    let out = Command::new(cargo_bin("ualhunt"))
        .current_dir(d)
        .args(["hunt", "-q", "-o", "e.jsonl", "-"])
        .stdin(std::fs::File::open(d.join("e.jsonl")).unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("standard input"), "{}", stderr(&out));
    assert_eq!(std::fs::read(d.join("e.jsonl")).unwrap(), data);
    // `>> e.jsonl`: the report would be appended to the evidence.
    let out = Command::new(cargo_bin("ualhunt"))
        .current_dir(d)
        .args(["hunt", "-q", "e.jsonl"])
        .stdout(
            std::fs::OpenOptions::new()
                .append(true)
                .open(d.join("e.jsonl"))
                .unwrap(),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("standard output is the input e.jsonl"));
    assert_eq!(std::fs::read(d.join("e.jsonl")).unwrap(), data);
}

// `-o a.csv --export csv=./a.csv` wrote two reports over each other and exited 0.
#[test]
fn two_outputs_to_one_file_are_refused() {
    let (dir, _) = evidence();
    let d = dir.path();
    let absolute = d.join("a.csv").display().to_string();
    for exists in [false, true] {
        if exists {
            std::fs::write(d.join("a.csv"), b"previous\n").unwrap();
            std::fs::hard_link(d.join("a.csv"), d.join("hard.csv")).unwrap();
        }
        // A link to a file not there yet is followed too.
        let _ = std::fs::remove_file(d.join("soft.csv"));
        std::os::unix::fs::symlink("a.csv", d.join("soft.csv")).unwrap();
        let mut seconds = vec![
            "csv=./a.csv".to_string(),
            format!("csv={absolute}"),
            "json=soft.csv".to_string(),
            "table=sub/../a.csv".to_string(),
        ];
        std::fs::create_dir_all(d.join("sub")).unwrap();
        if exists {
            seconds.push("csv=hard.csv".to_string());
        }
        for second in &seconds {
            let out = run(
                d,
                &[
                    "hunt", "-q", "--format", "csv", "-o", "a.csv", "--export", second, "e.jsonl",
                ],
            );
            let e = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{second}: {e}");
            assert!(e.contains("-o a.csv") && e.contains(second.as_str()), "{e}");
            if exists {
                assert_eq!(std::fs::read(d.join("a.csv")).unwrap(), b"previous\n");
            } else {
                assert!(!d.join("a.csv").exists(), "{second}: nothing written");
            }
            assert!(temporaries(d).is_empty());
        }
    }
}

// An output inside an input directory was read as an input of its own run (empty).
#[test]
fn an_output_being_written_inside_an_input_directory_is_not_read() {
    let (dir, _) = evidence();
    let d = dir.path();
    std::fs::remove_file(d.join("l")).unwrap();
    std::fs::remove_file(d.join("h")).unwrap();
    let out = run(
        d,
        &[
            "hunt",
            "-q",
            "--format",
            "json",
            "-o",
            "r.json",
            "--export",
            "csv=r.csv",
            ".",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("r.json")).unwrap()).unwrap();
    assert_eq!(report["scan"]["files"], 1, "{}", report["scan"]);
    // A partial too.
    std::fs::create_dir(d.join("s")).unwrap();
    std::fs::copy(d.join("e.jsonl"), d.join("s").join("e.jsonl")).unwrap();
    shard(d, 0, 1, "s/p", &["s"]);
    let out = run(d, &["merge", "--format", "json", "s/p"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["scan"]["files"], 1, "{}", report["scan"]);
}

// `hunt - -` split standard input between two readers.
#[test]
fn standard_input_named_twice_is_refused() {
    let (dir, _) = evidence();
    let out = Command::new(cargo_bin("ualhunt"))
        .current_dir(dir.path())
        .args(["hunt", "-q", "-", "e.jsonl", "-"])
        .stdin(std::fs::File::open(dir.path().join("e.jsonl")).unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("standard input (-) is named 2 times"));
    assert!(out.stdout.is_empty());
}

// `--since` after `--until` reported nothing; a mistyped path printed the whole
// "no account has mailbox audit bypass ON" verdict before exit 2.
#[test]
fn an_empty_window_or_nothing_found_gives_no_verdict() {
    let (dir, _) = evidence();
    let d = dir.path();
    for args in [
        &[
            "hunt",
            "--since",
            "2024-03-06",
            "--until",
            "2024-03-05",
            "e.jsonl",
        ][..],
        &[
            "hunt",
            "--since",
            "2024-03-05T10:00:00Z",
            "--until",
            "2024-03-05T10:00:00Z",
            "e.jsonl",
        ],
    ] {
        let out = run(d, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&out).contains("not before --until"),
            "{}",
            stderr(&out)
        );
        assert!(out.stdout.is_empty());
    }
    std::fs::write(d.join("r.json"), b"previous report\n").unwrap();
    for args in [
        &["hunt", "missing.jsonl"][..],
        &[
            "hunt",
            "--format",
            "json",
            "-o",
            "r.json",
            "missing.jsonl",
            "gone/",
        ],
    ] {
        let out = run(d, args);
        let e = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{e}");
        assert!(
            e.contains("missing.jsonl") && e.contains("no verdict"),
            "{e}"
        );
        assert!(
            out.stdout.is_empty(),
            "no verdict for a run that read nothing"
        );
        assert_eq!(
            std::fs::read(d.join("r.json")).unwrap(),
            b"previous report\n"
        );
        assert!(temporaries(d).is_empty());
    }
    // With something read the run goes on and says what it could not read.
    let out = run(d, &["hunt", "--format", "json", "e.jsonl", "missing.jsonl"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!out.stdout.is_empty());
}

/// Runs `ualhunt ARGS` in `dir` with a file-size limit of `limit` bytes (writing past
/// it fails with EFBIG, as a full disk fails with ENOSPC).
fn run_limited(dir: &Path, args: &[&str], limit: u64) -> Output {
    let mut cmd = Command::new(cargo_bin("ualhunt"));
    cmd.current_dir(dir).args(args).stdin(Stdio::null());
    // SAFETY: only async-signal-safe calls (setrlimit, signal) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let rl = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &rl) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // EFBIG instead of the signal that would end the process.
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    cmd.output().unwrap()
}

// A full disk left a truncated JSON report and an empty, unmentioned export.
#[test]
fn a_write_failure_leaves_the_previous_reports_intact() {
    let (dir, _) = evidence();
    let d = dir.path();
    let full = run(d, &["hunt", "-q", "--format", "json", "e.jsonl"]);
    assert_eq!(full.status.code(), Some(0), "{}", stderr(&full));
    let limit = (full.stdout.len() / 2) as u64;
    std::fs::write(d.join("r.json"), b"previous report\n").unwrap();
    std::fs::write(d.join("r.csv"), b"previous export\n").unwrap();
    // The main output fails; then only an export fails.
    for (args, failed) in [
        (
            &[
                "hunt",
                "-q",
                "--format",
                "json",
                "-o",
                "r.json",
                "--export",
                "csv=r.csv",
                "e.jsonl",
            ][..],
            "-o r.json",
        ),
        (
            &[
                "hunt",
                "-q",
                "--format",
                "csv",
                "-o",
                "r.csv",
                "--export",
                "json=r.json",
                "e.jsonl",
            ],
            "--export json=r.json",
        ),
    ] {
        let out = run_limited(d, args, limit);
        let e = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{e}");
        assert!(e.contains(&format!("cannot write {failed}")), "{e}");
        assert!(e.contains("no output file was replaced"), "{e}");
        assert_eq!(
            std::fs::read(d.join("r.json")).unwrap(),
            b"previous report\n"
        );
        assert_eq!(
            std::fs::read(d.join("r.csv")).unwrap(),
            b"previous export\n"
        );
        assert!(temporaries(d).is_empty(), "{:?}", temporaries(d));
    }
    // A partial too.
    std::fs::write(d.join("p"), b"previous partial\n").unwrap();
    let out = run_limited(
        d,
        &["hunt", "-q", "--shard", "0/1", "--partial", "p", "e.jsonl"],
        64,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--partial p"), "{}", stderr(&out));
    assert_eq!(std::fs::read(d.join("p")).unwrap(), b"previous partial\n");
    assert!(temporaries(d).is_empty());
    // Without the limit all is written.
    let out = run(
        d,
        &[
            "hunt",
            "-q",
            "--format",
            "json",
            "-o",
            "r.json",
            "--export",
            "csv=r.csv",
            "e.jsonl",
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(std::fs::read(d.join("r.json")).unwrap(), full.stdout);
}

// A refused `merge -o keep.json` (a shard missing) emptied keep.json.
#[test]
fn a_refused_merge_leaves_its_output_intact() {
    let (dir, _) = evidence();
    let d = dir.path();
    std::fs::write(d.join("f.jsonl"), archive(2, 20_000)).unwrap();
    let out = run(
        d,
        &[
            "hunt",
            "-q",
            "--no-context",
            "--shard",
            "0/2",
            "--partial",
            "p0",
            "e.jsonl",
            "f.jsonl",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    std::fs::write(d.join("keep.json"), b"keep me\n").unwrap();
    let out = run(d, &["merge", "-o", "keep.json", "p0"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(std::fs::read(d.join("keep.json")).unwrap(), b"keep me\n");
    // And a merge never writes over its own partials.
    for args in [
        &["merge", "-o", "p0", "p0"][..],
        &["merge", "--context-plan", "./p0", "p0"],
        &["merge", "--export", "csv=p0", "."],
    ] {
        let before = std::fs::read(d.join("p0")).unwrap();
        let out = run(d, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&out).contains("would write over the input"),
            "{}",
            stderr(&out)
        );
        assert_eq!(std::fs::read(d.join("p0")).unwrap(), before);
    }
    assert!(temporaries(d).is_empty());
}

/// A hunt reading the FIFO `slow` (fed by the test), writing `-o r.json`: returns the
/// child and the FIFO's writing end once the child reads it.
fn hunt_on_a_fifo(d: &Path) -> (std::process::Child, std::fs::File) {
    let fifo = d.join("slow");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string; mkfifo only creates the node.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let child = Command::new(cargo_bin("ualhunt"))
        .current_dir(d)
        .args(["hunt", "-q", "--format", "json", "-o", "r.json", "slow"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Opening the writing end waits for the child to open the reading end: the run has
    // started and its outputs are being written.
    let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    let line = archive(3, 2_000);
    let first = line.split_inclusive(|&b| b == b'\n').next().unwrap();
    let _ = writer.write_all(first);
    std::thread::sleep(Duration::from_millis(300));
    (child, writer)
}

// Ctrl-C mid-run left the previous good report at 0 bytes.
#[test]
fn an_interrupted_run_leaves_the_previous_report_and_no_temporary() {
    for (signal, code, name) in [
        (libc::SIGINT, 130, "SIGINT"),
        (libc::SIGTERM, 143, "SIGTERM"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("r.json"), b"previous report\n").unwrap();
        let (child, writer) = hunt_on_a_fifo(d);
        assert_eq!(temporaries(d).len(), 1, "the report is being written");
        // SAFETY: the child's pid; kill only sends the signal.
        assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
        let out = child.wait_with_output().unwrap();
        drop(writer);
        assert_eq!(out.status.code(), Some(code), "{name}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("interrupted ({name})")),
            "{}",
            stderr(&out)
        );
        assert_eq!(
            std::fs::read(d.join("r.json")).unwrap(),
            b"previous report\n"
        );
        assert!(temporaries(d).is_empty(), "{:?}", temporaries(d));
    }
}

// kill -9 mid-run left the previous good report at 0 bytes.
#[test]
fn a_killed_run_leaves_the_previous_report() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("r.json"), b"previous report\n").unwrap();
    let (mut child, writer) = hunt_on_a_fifo(d);
    child.kill().unwrap();
    child.wait().unwrap();
    drop(writer);
    assert_eq!(
        std::fs::read(d.join("r.json")).unwrap(),
        b"previous report\n"
    );
}

/// Runs one shard of `N` over `inputs` in `d`, writing `partial`.
fn shard(d: &Path, k: u32, n: u32, partial: &str, inputs: &[&str]) {
    let spec = format!("{k}/{n}");
    let mut args = vec![
        "hunt",
        "-q",
        "--no-context",
        "--shard",
        &spec,
        "--partial",
        partial,
    ];
    args.extend(inputs);
    let out = run(d, &args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

// An input rewritten with the same size between two shards' runs merged silently.
#[test]
fn an_input_rewritten_between_shards_is_refused_at_merge() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = archive(4, 20_000);
    std::fs::write(d.join("a.jsonl"), &a).unwrap();
    std::fs::write(d.join("b.jsonl"), archive(5, 20_000)).unwrap();
    shard(d, 0, 2, "p0", &["a.jsonl", "b.jsonl"]);
    // Same size, other content (a record id changed), in place.
    let mut rewritten = a.clone();
    let at = rewritten.iter().position(|b| b.is_ascii_digit()).unwrap();
    rewritten[at] = if rewritten[at] == b'1' { b'2' } else { b'1' };
    std::thread::sleep(Duration::from_millis(20));
    std::fs::OpenOptions::new()
        .write(true)
        .open(d.join("a.jsonl"))
        .unwrap()
        .write_all(&rewritten)
        .unwrap();
    shard(d, 1, 2, "p1", &["a.jsonl", "b.jsonl"]);
    let out = run(d, &["merge", "p0", "p1"]);
    let e = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{e}");
    assert!(e.contains("p1") && e.contains("modification times"), "{e}");
    assert!(out.stdout.is_empty());
}

fn merged(paths: &[PathBuf]) -> Result<Vec<u8>, String> {
    let files = ualhunt_engine::shard::merge::load(paths).map_err(|e| e.to_string())?;
    let today = chrono::Utc::now().date_naive();
    let report = ualhunt_engine::shard::merge::merge(files, today).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    ualhunt_report::write(ualhunt_report::OutputFormat::Json, &report, &mut out).unwrap();
    Ok(out)
}

// Of 300 single-bit flips in partials, 46 merged with exit 0 into another report.
#[test]
fn no_bit_flip_of_a_partial_merges_into_another_report() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("e.jsonl"), archive(6, 3_000)).unwrap();
    shard(d, 0, 1, "p", &["e.jsonl"]);
    let good = std::fs::read(d.join("p")).unwrap();
    let reference = merged(&[d.join("p")]).unwrap();
    let flipped = d.join("flipped");
    let (mut refused, mut same) = (0, 0);
    for bit in 0..good.len() * 8 {
        let mut bytes = good.clone();
        bytes[bit / 8] ^= 1 << (bit % 8);
        std::fs::write(&flipped, &bytes).unwrap();
        match merged(std::slice::from_ref(&flipped)) {
            Err(e) => {
                assert!(e.contains("flipped"), "bit {bit}: {e}");
                refused += 1;
            }
            Ok(report) => {
                assert_eq!(report, reference, "bit {bit} merged into another report");
                same += 1;
            }
        }
    }
    assert!(refused > same, "{refused} refused, {same} harmless");
    // The binary says which file and exits 2.
    let mut bytes = good.clone();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 4;
    std::fs::write(&flipped, &bytes).unwrap();
    let out = run(d, &["merge", "flipped"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("flipped"), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
}

// `-o /dev/null` (what benchmarks write) renamed a temporary over /dev/null and left a
// regular file there; a device or a pipe is written in place, never replaced.
#[test]
fn an_output_to_a_device_or_a_pipe_is_written_in_place() {
    use std::os::unix::fs::FileTypeExt;
    let (dir, _) = evidence();
    let d = dir.path();
    let out = run(
        d,
        &[
            "hunt",
            "--format",
            "json",
            "-o",
            "/dev/null",
            "--export",
            "csv=/dev/stdout",
            "e.jsonl",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let null = std::fs::metadata("/dev/null").unwrap();
    assert!(null.file_type().is_char_device(), "/dev/null was replaced");
    let left: Vec<String> = names(Path::new("/dev"))
        .into_iter()
        .filter(|n| n.starts_with(".null."))
        .collect();
    assert!(left.is_empty(), "temporaries left in /dev: {left:?}");

    // A FIFO: the report goes through it, and it is still a FIFO afterwards.
    let fifo = d.join("pipe");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string; mkfifo only creates the node.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    let out = run(d, &["hunt", "--format", "json", "-o", "pipe", "e.jsonl"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&reader.join().unwrap()).unwrap();
    assert_eq!(report["version"], 3);
    let meta = std::fs::symlink_metadata(&fifo).unwrap();
    assert!(meta.file_type().is_fifo(), "the FIFO was replaced");
    assert!(temporaries(d).is_empty(), "{:?}", names(d));

    // A link to a report: the report is replaced, the link stays a link.
    std::fs::create_dir(d.join("reports")).unwrap();
    std::fs::write(d.join("reports/r.json"), "old").unwrap();
    std::os::unix::fs::symlink("reports/r.json", d.join("latest")).unwrap();
    let out = run(d, &["hunt", "--format", "json", "-o", "latest", "e.jsonl"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let link = std::fs::symlink_metadata(d.join("latest")).unwrap();
    assert!(link.file_type().is_symlink(), "the link was replaced");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("reports/r.json")).unwrap()).unwrap();
    assert_eq!(report["version"], 3);
    assert!(temporaries(&d.join("reports")).is_empty());
}
