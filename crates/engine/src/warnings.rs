//! Warnings about what a run could not look at: a path that gave no input, a run that
//! read nothing at all, a rule whose fields need a GeoIP database not given.
//!
//! Place in the flow: after the first pass, `engine` asks here for warnings about what
//! gave no input: a directory holding no files, a run that read no bytes; the last
//! stage for the rules enrichment cannot serve. An empty report must never pass for a
//! clean one. Nothing here reads input or prints.

use std::path::{Path, PathBuf};

use crate::enrich::Enrichment;
use crate::error::Warning;
use crate::rule::Rule;
use ualhunt_input::Input;

/// Warnings for the paths the user gave that yielded no input (a directory holding no
/// files), and for a run that read no bytes at all when nothing else (an error, another
/// warning) already says why.
pub fn no_input(paths: &[PathBuf], inputs: &[Input], bytes: u64, explained: bool) -> Vec<Warning> {
    let mut warnings = empty_directories(paths, inputs);
    let explained = explained || !warnings.is_empty();
    warnings.extend(nothing_read(paths, inputs.len(), bytes, explained));
    warnings
}

/// A warning for each directory the user gave that holds no files to read.
pub fn empty_directories(paths: &[PathBuf], inputs: &[Input]) -> Vec<Warning> {
    paths
        .iter()
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.is_dir()))
        .filter(|dir| !inputs.iter().any(|i| lies_under(i, dir)))
        .map(|dir| Warning {
            path: dir.display().to_string(),
            message: "directory holds no files to read".to_string(),
        })
        .collect()
}

/// A warning for a run of `inputs` inputs that read no bytes at all, unless something
/// else already says why.
pub fn nothing_read(
    paths: &[PathBuf],
    inputs: usize,
    bytes: u64,
    explained: bool,
) -> Option<Warning> {
    (bytes == 0 && !explained).then(|| {
        let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        Warning {
            path: names.join(" "),
            message: format!("no input was read ({inputs} inputs, 0 bytes): nothing was hunted"),
        }
    })
}

/// A warning for each rule that reads a field only a GeoIP or ASN database fills when
/// none was given (`--geoip-db`): it runs, but those clauses never hold for a raw record.
pub fn missing_enrichment(rules: &[Rule], enrichment: &Enrichment) -> Vec<Warning> {
    rules
        .iter()
        .filter_map(|rule| {
            let missing = rule.needs_enrichment(enrichment);
            let (_, need) = missing.first()?;
            let fields: Vec<&str> = missing.iter().map(|(f, _)| f.as_str()).collect();
            Some(Warning {
                path: "--geoip-db".to_string(),
                message: format!(
                    "rule {:?} reads {}: {need}; it ran, but cannot match a raw record on them",
                    rule.meta.name,
                    fields.join(", ")
                ),
            })
        })
        .collect()
}

fn lies_under(input: &Input, dir: &Path) -> bool {
    match input {
        Input::File(path) => path.starts_with(dir),
        Input::ZipEntry { archive, .. } => archive.path.starts_with(dir),
        Input::Stdin => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_directory_and_an_empty_run_are_warned_about() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        let full = dir.path().join("full");
        std::fs::create_dir_all(empty.join("sub")).unwrap();
        std::fs::create_dir_all(&full).unwrap();
        let file = full.join("a.jsonl");
        std::fs::write(&file, b"{}\n").unwrap();
        let paths = vec![empty.clone(), full.clone()];
        let inputs = vec![Input::File(file)];
        let w = no_input(&paths, &inputs, 3, true);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].path, empty.display().to_string());
        assert!(no_input(&paths[1..], &inputs, 3, true).is_empty());
        let w = no_input(&paths[1..], &inputs, 0, false);
        assert!(w[0].message.contains("no input was read"), "{w:?}");
        assert!(no_input(&paths[1..], &inputs, 0, true).is_empty());
    }
}
