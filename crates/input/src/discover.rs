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
use crate::zip::ZipSource;

const ZIP_MAGIC: &[u8] = b"PK\x03\x04";

/// Adds a file to the inputs: itself, or, for a `.zip` archive (by magic bytes), each
/// file entry in it, in name order (entries of one name in directory order).
fn add_file(path: PathBuf, inputs: &mut Vec<Input>, errors: &mut Vec<DiscoverError>) {
    let mut head = [0u8; 4];
    let is_zip = File::open(&path)
        .and_then(|f| read_head(&f, &mut head))
        .is_ok_and(|n| head[..n] == *ZIP_MAGIC);
    if !is_zip {
        inputs.push(Input::File(path));
        return;
    }
    match ZipSource::read(path.clone()) {
        // An Excel workbook is one input, read as the CSV export it was.
        Ok(source) if crate::xlsx::is_workbook(&source) => inputs.push(Input::File(path)),
        Ok(source) => {
            let archive = Arc::new(source);
            inputs.reserve(archive.len() as usize);
            inputs.extend((0..archive.len()).map(|entry| Input::ZipEntry {
                archive: archive.clone(),
                entry,
            }));
        }
        Err(e) => errors.push(DiscoverError {
            path: path.display().to_string(),
            message: format!("cannot read zip archive: {e}"),
        }),
    }
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
