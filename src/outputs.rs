//! The files a run writes (reports, exports, partials, context plans), made safe for
//! the evidence it reads.
//!
//! No output may be an input or another output: both are compared by device and inode
//! once links are followed, and by normalised absolute path for files not there yet,
//! before anything is opened for writing ([`check`]). Every output is written to a
//! temporary file beside its target and renamed over it only when complete
//! ([`Pending`]); a failure drops the temporaries and leaves the targets as they were,
//! and Ctrl-C or SIGTERM removes them too ([`on_signals`]). Nothing here reads an input's
//! content.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, IsTerminal, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use tempfile::NamedTempFile;

/// The temporaries not yet renamed over their targets, for the signal handler; held
/// while outputs are renamed so that a signal never sees half of them renamed.
static TEMPORARIES: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// On SIGINT or SIGTERM: clears the progress line, removes the temporaries, says so and
/// exits with 128 + the signal (130 for Ctrl-C, 143 for SIGTERM).
pub fn on_signals() -> anyhow::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("cannot install the Ctrl-C handler")?;
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            // Held until the exit: no output is renamed after this.
            let temporaries = TEMPORARIES.lock().unwrap_or_else(|e| e.into_inner());
            for t in temporaries.iter() {
                let _ = fs::remove_file(t);
            }
            let mut err = io::stderr().lock();
            if err.is_terminal() {
                // The progress bar's line.
                let _ = write!(err, "\r\x1b[2K");
            }
            let name = if signal == SIGINT {
                "SIGINT"
            } else {
                "SIGTERM"
            };
            let _ = writeln!(
                err,
                "ualhunt: interrupted ({name}): stopped; no unfinished output replaced a file"
            );
            std::process::exit(128 + signal);
        }
    });
    Ok(())
}

/// An output named on the command line: its flag (for messages) and path.
pub struct Named {
    /// How it was named, e.g. `-o report.json`.
    pub flag: String,
    /// Where it goes.
    pub path: PathBuf,
}

impl Named {
    /// An output named by `flag` (e.g. `-o`) with `path`.
    pub fn new(flag: &str, path: &Path) -> Named {
        Named {
            flag: format!("{flag} {}", path.display()),
            path: path.to_path_buf(),
        }
    }
}

/// Device and inode of a file.
type Id = (u64, u64);

/// Device and inode of an existing file, links followed.
fn identity(path: &Path) -> Option<Id> {
    fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// The normalised absolute path of `path`, links followed as far as they exist and its
/// folder canonicalised (so `a.csv`, `./a.csv` and `$PWD/a.csv` are one path).
fn resolved(path: &Path) -> PathBuf {
    let mut p = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    for _ in 0..40 {
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => match fs::read_link(&p) {
                Ok(target) => {
                    let base = p.parent().map(Path::to_path_buf).unwrap_or_default();
                    p = std::path::absolute(base.join(target)).unwrap_or(p);
                }
                Err(_) => break,
            },
            _ => break,
        }
    }
    match (p.parent(), p.file_name()) {
        (Some(dir), Some(name)) => fs::canonicalize(dir).map_or(p.clone(), |d| d.join(name)),
        _ => p,
    }
}

/// What the run reads: every file of the inputs (inside directories too; a zip archive
/// as itself), by identity and by path, with how to name it.
#[derive(Default)]
pub struct Inputs {
    ids: HashMap<Id, String>,
    paths: HashMap<PathBuf, String>,
}

impl Inputs {
    /// The inputs of `paths` (files, directories walked as discovery walks them, `-`)
    /// and the other files a run reads (`extra`: rules, allowlist, context plan).
    pub fn of(paths: &[PathBuf], extra: &[&Path]) -> Inputs {
        let mut inputs = Inputs::default();
        for path in paths
            .iter()
            .map(PathBuf::as_path)
            .chain(extra.iter().copied())
        {
            if path.as_os_str() == "-" {
                inputs.add_stdin();
            } else if path.is_dir() {
                // Discovery does not follow links inside directories either.
                for entry in walkdir::WalkDir::new(path).into_iter().flatten() {
                    if entry.file_type().is_file() {
                        inputs.add(entry.path(), entry.path().display().to_string());
                    }
                }
            } else {
                inputs.add(path, path.display().to_string());
            }
        }
        inputs
    }

    fn add(&mut self, path: &Path, name: String) {
        if let Some(id) = identity(path) {
            self.ids.entry(id).or_insert_with(|| name.clone());
        }
        self.paths.entry(resolved(path)).or_insert(name);
    }

    /// Standard input redirected from a file (`< e.jsonl`) is that file.
    fn add_stdin(&mut self) {
        use std::os::fd::AsFd;
        let meta = io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map(File::from)
            .and_then(|f| f.metadata());
        if let Ok(m) = meta
            && m.is_file()
        {
            self.ids
                .entry((m.dev(), m.ino()))
                .or_insert_with(|| "standard input (-)".to_string());
        }
    }

    /// The input `path` is, if any.
    fn find(&self, path: &Path) -> Option<&str> {
        identity(path)
            .and_then(|id| self.ids.get(&id))
            .or_else(|| self.paths.get(&resolved(path)))
            .map(String::as_str)
    }
}

/// Refuses an output that is an input or another output (named both ways), before
/// anything is opened for writing.
pub fn check(outputs: &[Named], inputs: &Inputs) -> anyhow::Result<()> {
    let mut seen: Vec<(Option<Id>, PathBuf, &Named)> = Vec::new();
    for out in outputs {
        if let Some(input) = inputs.find(&out.path) {
            anyhow::bail!(
                "{} would write over the input {input}: refusing (an output must never replace evidence); nothing was written",
                out.flag
            );
        }
        if is_special(&out.path) {
            // Two outputs to `/dev/null` (or one pipe) replace nothing.
            continue;
        }
        let id = identity(&out.path);
        let path = resolved(&out.path);
        if let Some((_, _, first)) = seen
            .iter()
            .find(|(i, p, _)| (id.is_some() && *i == id) || *p == path)
        {
            anyhow::bail!(
                "{} and {} are the same file: each output needs its own file; nothing was written",
                first.flag,
                out.flag
            );
        }
        seen.push((id, path, out));
    }
    Ok(())
}

/// Refuses a report to standard output when that is an input (`>> e.jsonl`): it would
/// be appended to the evidence.
pub fn check_stdout(inputs: &Inputs) -> anyhow::Result<()> {
    use std::os::fd::AsFd;
    let meta = io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map(File::from)
        .and_then(|f| f.metadata());
    if let Ok(m) = meta
        && m.is_file()
        && let Some(input) = inputs.ids.get(&(m.dev(), m.ino()))
    {
        anyhow::bail!(
            "standard output is the input {input}: refusing to write the report into evidence; nothing was written"
        );
    }
    Ok(())
}

/// An output being written: a temporary file beside its target, renamed over it by
/// [`commit`] once complete, removed if dropped before (a stale entry left in the
/// signal handler's list names a file that no longer exists). A target that exists and
/// is no regular file (`/dev/null`, a FIFO, a terminal) is written in place: renaming a
/// file over it would replace the device itself.
pub struct Pending {
    flag: String,
    target: PathBuf,
    temporary: PathBuf,
    writer: Writer,
}

/// Where a [`Pending`] output goes until it is complete.
enum Writer {
    /// A temporary beside the target.
    Temporary(BufWriter<NamedTempFile>),
    /// The target itself, a device or a pipe.
    InPlace(BufWriter<File>),
}

/// Whether `path` exists and is no regular file (a device, a FIFO, a socket): an output
/// there is written in place, never replaced.
fn is_special(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir())
}

impl Pending {
    /// Creates the temporary for `out` (its folder too if `make_dir`: a scheduler's task
    /// may be the first to write into the run's folder).
    pub fn create(out: &Named, make_dir: bool) -> anyhow::Result<Pending> {
        if is_special(&out.path) {
            let file = fs::OpenOptions::new()
                .write(true)
                .open(&out.path)
                .with_context(|| format!("cannot open {}", out.path.display()))?;
            return Ok(Pending {
                flag: out.flag.clone(),
                target: out.path.clone(),
                temporary: out.path.clone(),
                writer: Writer::InPlace(BufWriter::new(file)),
            });
        }
        // A link is followed: its file is replaced, not the link (`-o /dev/stdout` when
        // standard output is a file, `-o latest.json` pointing into a reports folder).
        let target = match fs::symlink_metadata(&out.path) {
            Ok(m) if m.file_type().is_symlink() => {
                fs::canonicalize(&out.path).unwrap_or_else(|_| out.path.clone())
            }
            _ => out.path.clone(),
        };
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if make_dir {
            fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create the folder {}", dir.display()))?;
        }
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let prefix = format!(".{name}.");
        // Registered before it exists, so that a signal in between still removes it.
        let mut temporaries = TEMPORARIES.lock().unwrap_or_else(|e| e.into_inner());
        let file = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(".tmp")
            .permissions(fs::Permissions::from_mode(0o666))
            .tempfile_in(&dir)
            .with_context(|| format!("cannot create {}", out.path.display()))?;
        let temporary = file.path().to_path_buf();
        temporaries.push(temporary.clone());
        Ok(Pending {
            flag: out.flag.clone(),
            target,
            temporary,
            writer: Writer::Temporary(BufWriter::new(file)),
        })
    }

    /// Where the output is written until it is complete.
    pub fn writer(&mut self) -> &mut dyn Write {
        match &mut self.writer {
            Writer::Temporary(w) => w,
            Writer::InPlace(w) => w,
        }
    }

    /// The temporary file (never to be read as an input; a device written in place is
    /// its own).
    pub fn temporary(&self) -> &Path {
        &self.temporary
    }

    /// How the output was named.
    pub fn flag(&self) -> &str {
        &self.flag
    }
}

/// Flushes and syncs every output, then renames each over its target; if any cannot be
/// completed, none is renamed (every target stays as it was) and the error names it.
pub fn commit(outputs: Vec<Pending>) -> anyhow::Result<()> {
    let mut ready = Vec::with_capacity(outputs.len());
    for out in outputs {
        let Pending {
            flag,
            target,
            temporary,
            writer,
        } = out;
        let writer = match writer {
            Writer::Temporary(writer) => writer,
            Writer::InPlace(mut writer) => {
                writer
                    .flush()
                    .with_context(|| format!("cannot write {flag}"))?;
                continue;
            }
        };
        let file = writer
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|file| file.as_file().sync_all().map(|()| file));
        match file {
            Ok(file) => ready.push((flag, target, temporary, file)),
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("cannot write {flag}; no output file was replaced")));
            }
        }
    }
    // Held while renaming: a signal sees all of them renamed or none.
    let mut temporaries = TEMPORARIES.lock().unwrap_or_else(|e| e.into_inner());
    for (flag, target, temporary, file) in ready {
        temporaries.retain(|t| *t != temporary);
        file.persist(&target)
            .map_err(|e| e.error)
            .with_context(|| format!("cannot write {flag}"))?;
    }
    Ok(())
}
