//! The library's errors: every one names the input, and, where reading had begun, how
//! far it got (decompressed byte offset and line).
//!
//! Place in the flow: `engine` collects an [`InputError`] per input that could not be
//! read in full and goes on with the others; [`Error`] is what stops a whole run before
//! it starts. Outputs show them; `anyhow` is only in the binary.

use std::io;

/// An input that could not be read in full. The run goes on without the rest of it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// A path could not be expanded into inputs (missing, unreadable directory, a zip
    /// whose directory cannot be read).
    #[error("{message}")]
    Discover {
        /// The path.
        path: String,
        /// Why.
        message: String,
    },
    /// The input could not be opened.
    #[error("cannot open: {message}")]
    Open {
        /// The input.
        path: String,
        /// Why.
        message: String,
    },
    /// Reading stopped part way: a truncated or corrupt compressed stream, a read
    /// error, a CSV export without an `AuditData` column.
    #[error("{what}: {message}; stopped after {offset} bytes of {data} data, line {line}")]
    Stopped {
        /// The input.
        path: String,
        /// What kind of stop (`stream ends early (truncated?)`, `read error`, …).
        what: String,
        /// The underlying error.
        message: String,
        /// Bytes read (decompressed) before the stop.
        offset: u64,
        /// Lines read before the stop.
        line: u64,
        /// `decompressed` or `input`.
        data: &'static str,
    },
}

impl InputError {
    /// The input it is about.
    pub fn path(&self) -> &str {
        match self {
            InputError::Discover { path, .. }
            | InputError::Open { path, .. }
            | InputError::Stopped { path, .. } => path,
        }
    }

    /// How far reading got, in decompressed bytes, when it had begun.
    pub fn offset(&self) -> Option<u64> {
        match self {
            InputError::Stopped { offset, .. } => Some(*offset),
            _ => None,
        }
    }

    /// How many lines were read, when reading had begun.
    pub fn line(&self) -> Option<u64> {
        match self {
            InputError::Stopped { line, .. } => Some(*line),
            _ => None,
        }
    }

    /// A short name of the kind of error, for outputs.
    pub fn kind(&self) -> &'static str {
        match self {
            InputError::Discover { .. } => "discover",
            InputError::Open { .. } => "open",
            InputError::Stopped { .. } => "stopped",
        }
    }

    /// A stop, described from the `io::Error` that caused it.
    pub fn stopped(
        path: String,
        error: &io::Error,
        compressed: bool,
        offset: u64,
        line: u64,
    ) -> InputError {
        // A mapped compressed file cut under the scan: said as for a plain one.
        if let Some(change) = error
            .get_ref()
            .and_then(|e| e.downcast_ref::<ualhunt_input::Change>())
        {
            return InputError::Stopped {
                path,
                what: change.describe(),
                message: format!(
                    "read up to compressed byte {}; bytes past the cut were not used",
                    change.valid
                ),
                offset,
                line,
                data: if compressed { "decompressed" } else { "input" },
            };
        }
        let what = match error.kind() {
            io::ErrorKind::UnexpectedEof => "stream ends early (truncated?)",
            io::ErrorKind::InvalidData if !compressed => "invalid input",
            _ => "read error",
        };
        InputError::Stopped {
            path,
            what: what.to_string(),
            message: error.to_string(),
            offset,
            line,
            data: if compressed { "decompressed" } else { "input" },
        }
    }
}

/// What stops a whole run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The worker threads could not be started.
    #[error("cannot start worker threads: {0}")]
    Threads(#[from] rayon::ThreadPoolBuildError),
}

/// An input read with a doubt (not recognised as any known layout, or empty).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    /// The input.
    pub path: String,
    /// What is doubtful.
    pub message: String,
}

/// A pass after the first that read inputs again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Later {
    /// The second look at the rules searched for by their trigger.
    Triggers,
    /// A context pass.
    Context,
}

impl Later {
    fn name(self) -> &'static str {
        match self {
            Later::Triggers => "trigger look",
            Later::Context => "context pass",
        }
    }

    /// `e`, said to come from this pass.
    pub fn error(self, mut e: InputError) -> InputError {
        let said = match &mut e {
            InputError::Stopped { what, .. } => what,
            InputError::Open { message, .. } | InputError::Discover { message, .. } => message,
        };
        *said = format!("{}: {said}", self.name());
        e
    }

    /// `w`, said to come from this pass.
    pub fn warning(self, w: Warning) -> Warning {
        Warning {
            message: format!("{}: {}", self.name(), w.message),
            path: w.path,
        }
    }
}

/// Adds what a later pass met to the run's errors and warnings, so nothing it could
/// not read goes unsaid (an input changed or removed between the passes): the first
/// pass's account of an input stands, so an error (a warning) of the later pass is
/// added only for an input with no error (no warning) yet, named after the pass.
pub fn add_later(
    errors: &mut Vec<InputError>,
    warnings: &mut Vec<Warning>,
    pass: Later,
    later_errors: Vec<InputError>,
    later_warnings: Vec<Warning>,
) {
    for e in later_errors {
        if !errors.iter().any(|seen| seen.path() == e.path()) {
            errors.push(pass.error(e));
        }
    }
    for w in later_warnings {
        if !warnings.iter().any(|seen| seen.path == w.path) {
            warnings.push(pass.warning(w));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stopped(path: &str, line: u64) -> InputError {
        InputError::Stopped {
            path: path.to_string(),
            what: "stream ends early (truncated?)".to_string(),
            message: "unexpected end of file".to_string(),
            offset: 10 * line,
            line,
            data: "decompressed",
        }
    }

    fn warning(path: &str, message: &str) -> Warning {
        Warning {
            path: path.to_string(),
            message: message.to_string(),
        }
    }

    #[test]
    fn a_later_pass_adds_only_what_the_first_did_not_say() {
        let mut errors = vec![stopped("a.gz", 3)];
        let mut warnings = vec![warning("a.gz", "2 damaged members skipped")];
        add_later(
            &mut errors,
            &mut warnings,
            Later::Context,
            vec![
                // The same damage met again, further or not: the first pass said it.
                stopped("a.gz", 2),
                // New: changed between the passes.
                stopped("b.gz", 7),
                InputError::Open {
                    path: "c.jsonl".to_string(),
                    message: "No such file or directory".to_string(),
                },
            ],
            vec![
                warning("a.gz", "1 damaged member skipped"),
                warning("b.gz", "not recognised"),
            ],
        );
        let said: Vec<String> = errors
            .iter()
            .map(|e| format!("{}: {e}", e.path()))
            .collect();
        assert_eq!(
            said,
            [
                "a.gz: stream ends early (truncated?): unexpected end of file; stopped after 30 bytes of decompressed data, line 3",
                "b.gz: context pass: stream ends early (truncated?): unexpected end of file; stopped after 70 bytes of decompressed data, line 7",
                "c.jsonl: cannot open: context pass: No such file or directory",
            ]
        );
        assert_eq!(
            warnings,
            [
                warning("a.gz", "2 damaged members skipped"),
                warning("b.gz", "context pass: not recognised"),
            ]
        );
        // A second pass of the same kind meeting the same new error says it once.
        add_later(
            &mut errors,
            &mut warnings,
            Later::Triggers,
            vec![stopped("b.gz", 7)],
            Vec::new(),
        );
        assert_eq!(errors.len(), 3);
    }
}
