//! Path discovery: the paths the user gave, expanded into inputs. A directory is walked
//! recursively in sorted order, `-` is stdin, and a `.zip` archive (recognised by its
//! magic bytes, not its name) is listed into one input per file entry. Nothing is
//! decompressed or read here beyond a file's first bytes and an archive's directory; a
//! path or entry that cannot be read is reported as a [`DiscoverError`] and the others
//! are still expanded.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use crate::open::{Input, read_head};
use crate::zip::{DirEntry, Shadowed, SharedFile, ZipSource, central_directory};

const ZIP_MAGIC: &[u8] = b"PK\x03\x04";

/// Adds a file to the inputs: itself, or, for a `.zip` archive (by magic bytes), each
/// file entry in it, in name order.
fn add_file(path: PathBuf, inputs: &mut Vec<Input>, errors: &mut Vec<DiscoverError>) {
    let mut head = [0u8; 4];
    let is_zip = File::open(&path)
        .and_then(|f| read_head(&f, &mut head))
        .is_ok_and(|n| head[..n] == *ZIP_MAGIC);
    if !is_zip {
        inputs.push(Input::File(path));
        return;
    }
    let listed = SharedFile::open(&path)
        .map_err(::zip::result::ZipError::Io)
        .and_then(|f| {
            let archive = ::zip::ZipArchive::new(f)?;
            let mut entries: Vec<(String, usize)> = archive
                .file_names()
                .enumerate()
                .filter(|(_, n)| !n.ends_with('/'))
                .map(|(i, n)| (n.to_string(), i))
                .collect();
            entries.sort();
            Ok((archive, entries))
        });
    match listed {
        Ok((archive, entries)) => {
            let source = Arc::new(ZipSource {
                path: path.clone(),
                archive,
            });
            let listed = match central_directory(&source) {
                // Two entries of one name: the crate hands out the last; read the
                // others from the directory, each named `name#k` (k-th in the directory).
                Some(all) if all.len() > entries.len() => with_duplicates(&source, all),
                _ => entries
                    .into_iter()
                    .map(|(name, index)| (name, index, None))
                    .collect(),
            };
            inputs.extend(
                listed
                    .into_iter()
                    .map(|(name, index, shadowed)| Input::ZipEntry {
                        archive: source.clone(),
                        index,
                        name,
                        shadowed,
                    }),
            );
        }
        Err(e) => errors.push(DiscoverError {
            path: path.display().to_string(),
            message: format!("cannot read zip archive: {e}"),
        }),
    }
}

/// The entries of an archive where some names repeat, in name order then directory
/// order: `(name, crate index, None)` for the entry the zip crate hands out (the last of
/// its name), `(name#k, _, Some(where))` for the others.
fn with_duplicates(
    source: &ZipSource,
    all: Vec<DirEntry>,
) -> Vec<(String, usize, Option<Shadowed>)> {
    let mut seen: std::collections::HashMap<&str, (usize, usize)> = Default::default();
    for e in &all {
        seen.entry(&e.name).or_default().1 += 1;
    }
    let mut out = Vec::with_capacity(all.len());
    for e in &all {
        let (k, total) = {
            let slot = seen
                .get_mut(e.name.as_str())
                .expect("every name was counted");
            slot.0 += 1;
            *slot
        };
        let index = source.archive.index_for_name(&e.name).unwrap_or(usize::MAX);
        let last = k == total;
        let name = if total > 1 {
            format!("{}#{k}", e.name)
        } else {
            e.name.clone()
        };
        out.push((name, index, (!last).then_some(e.shadowed)));
    }
    // Name order, `a#2` before `a#10`: by name, then by place in the directory.
    out.sort_by(|a, b| {
        let key = |n: &str| {
            n.rsplit_once('#')
                .map(|(n, k)| (n.to_string(), k.parse::<usize>().unwrap_or(0)))
        };
        match (key(&a.0), key(&b.0)) {
            (Some(x), Some(y)) if x.0 == y.0 => x.1.cmp(&y.1),
            _ => a.0.cmp(&b.0),
        }
    });
    out
}

/// A path that could not be expanded into inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoverError {
    /// The path.
    pub path: String,
    /// Why.
    pub message: String,
}

/// Expands paths into inputs: a file is itself, a directory is every file below it in
/// sorted order (symbolic links are not followed inside directories), `-` is stdin.
pub fn discover(paths: &[PathBuf]) -> (Vec<Input>, Vec<DiscoverError>) {
    let mut inputs = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            inputs.push(Input::Stdin);
            continue;
        }
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {
                let walk = walkdir::WalkDir::new(path).sort_by_file_name();
                for entry in walk {
                    match entry {
                        Ok(e) if e.file_type().is_file() => {
                            add_file(e.into_path(), &mut inputs, &mut errors);
                        }
                        Ok(_) => {}
                        Err(e) => errors.push(DiscoverError {
                            path: e.path().map_or_else(
                                || path.display().to_string(),
                                |p| p.display().to_string(),
                            ),
                            message: e.to_string(),
                        }),
                    }
                }
            }
            Ok(meta) if meta.is_file() => add_file(path.clone(), &mut inputs, &mut errors),
            Ok(_) => inputs.push(Input::File(path.clone())),
            Err(e) => errors.push(DiscoverError {
                path: path.display().to_string(),
                message: e.to_string(),
            }),
        }
    }
    (inputs, errors)
}
