//! The one trait every format implements.

use std::io::{self, Write};

use ualhunt_engine::Report;

/// Something that writes a report in one format.
pub trait Exporter {
    /// Writes the whole report.
    fn write(&self, report: &Report, out: &mut dyn Write) -> io::Result<()>;
}

/// How a report is laid out where the format leaves a choice.
#[derive(Clone, Copy, Debug, Default)]
pub struct Layout {
    /// Columns the table may use (`None`: unlimited).
    pub width: Option<usize>,
}
