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
