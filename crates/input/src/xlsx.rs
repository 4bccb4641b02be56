//! Excel workbooks: a Purview / `Search-UnifiedAuditLog` CSV export opened and saved in
//! Excel (`.xlsx`), recognised from its bytes (a zip archive holding `xl/workbook.xml`),
//! read as the CSV export it was.
//!
//! Place in the flow: discovery keeps a workbook as one input instead of listing its
//! zip entries; opening it gives the stream a CSV export would: the header and rows of
//! its first sheet that has an `AuditData` column (else its first sheet), one line per
//! sheet row, so that a record's line is its row number in Excel. Rows missing from the
//! sheet are blank lines; a line break inside a cell becomes a space (the JSON of an
//! `AuditData` cell holds none but between its tokens). Everything after that is the
//! CSV reader's, as for any export.
//!
//! Memory: the workbook's shared strings (Excel keeps every text cell there, so about
//! the size of the sheet's text) and a few chunks of CSV in flight; cells are read one by
//! one by a thread of their own, never as a whole sheet.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use calamine::{DataRef, Reader, Xlsx};

use crate::Progress;
use crate::zip::ZipSource;

/// Whether a zip archive is an Excel workbook: it holds `xl/workbook.xml` (a workbook
/// has a few dozen entries; an archive of thousands is not looked through).
pub(crate) fn is_workbook(archive: &ZipSource) -> bool {
    archive.len() <= 4096 && (0..archive.len()).any(|e| archive.name(e) == "xl/workbook.xml")
}

/// CSV bytes handed from the reading thread at a time (about).
const CHUNK: usize = 64 << 10;
/// Chunks in flight between the reading thread and the reader.
const IN_FLIGHT: usize = 4;

/// Opens the workbook at `path` as the CSV text of its audit sheet.
pub(crate) fn csv_reader(
    path: &Path,
    progress: Option<Arc<Progress>>,
) -> io::Result<Box<dyn Read + Send>> {
    // Opened here so that a workbook that cannot be read says so at once.
    let workbook: Xlsx<BufReader<File>> = calamine::open_workbook(path).map_err(invalid)?;
    let (tx, rx) = sync_channel(IN_FLIGHT);
    let path: PathBuf = path.to_path_buf();
    std::thread::Builder::new()
        .name("xlsx".to_string())
        .spawn(move || {
            // A panic inside the workbook reader must not pass for the sheet's end.
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| write_csv(workbook, &tx)))
                    .unwrap_or_else(|_| Err(invalid("the workbook reader failed")));
            if let Err(e) = result {
                let _ = tx.send(Err(e));
            }
            if let (Some(p), Ok(m)) = (progress, std::fs::metadata(&path)) {
                p.done.fetch_add(m.len(), Ordering::Relaxed);
            }
        })?;
    Ok(Box::new(Chunks {
        rx,
        chunk: Vec::new(),
        at: 0,
    }))
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("Excel workbook: {e}"))
}

/// Writes the audit sheet as CSV lines to `tx`, in chunks; stops early when the reader
/// is gone.
fn write_csv(
    mut workbook: Xlsx<BufReader<File>>,
    tx: &SyncSender<io::Result<Vec<u8>>>,
) -> io::Result<()> {
    let sheets = workbook.sheet_names();
    let mut chosen = sheets.first().cloned();
    for name in &sheets {
        if has_audit_column(&mut workbook, name)? {
            chosen = Some(name.clone());
            break;
        }
    }
    let Some(sheet) = chosen else {
        return Ok(());
    };
    let mut cells = workbook.worksheet_cells_reader(&sheet).map_err(invalid)?;
    let mut out: Vec<u8> = Vec::with_capacity(CHUNK + 4096);
    // The row being written and the next column of it.
    let (mut row, mut column) = (0u32, 0u32);
    let mut text = String::new();
    while let Some(cell) = cells.next_cell().map_err(invalid)? {
        let (r, c) = cell.get_position();
        if r < row || (r == row && c < column) {
            return Err(invalid(format!(
                "cells out of order at row {}, column {}",
                u64::from(r) + 1,
                u64::from(c) + 1
            )));
        }
        while row < r {
            out.push(b'\n');
            (row, column) = (row + 1, 0);
        }
        while column < c {
            out.push(b',');
            column += 1;
        }
        if column > 0 {
            out.push(b',');
        }
        text.clear();
        cell_text(cell.get_value(), &mut text);
        push_quoted(&mut out, &text);
        column = c + 1;
        if out.len() >= CHUNK {
            if tx.send(Ok(std::mem::take(&mut out))).is_err() {
                return Ok(());
            }
            out.reserve(CHUNK + 4096);
        }
    }
    if row > 0 || column > 0 {
        out.push(b'\n');
    }
    let _ = tx.send(Ok(out));
    Ok(())
}

/// Whether the first row of sheet `name` has an `AuditData` cell.
fn has_audit_column(workbook: &mut Xlsx<BufReader<File>>, name: &str) -> io::Result<bool> {
    let mut cells = workbook.worksheet_cells_reader(name).map_err(invalid)?;
    let mut text = String::new();
    while let Some(cell) = cells.next_cell().map_err(invalid)? {
        if cell.get_position().0 > 0 {
            break;
        }
        text.clear();
        cell_text(cell.get_value(), &mut text);
        if text.trim().eq_ignore_ascii_case("AuditData") {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A cell's text as a CSV export holds it.
fn cell_text(value: &DataRef<'_>, out: &mut String) {
    use std::fmt::Write;
    match value {
        DataRef::String(s) | DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => out.push_str(s),
        DataRef::SharedString(s) => out.push_str(s),
        DataRef::Int(i) => {
            let _ = write!(out, "{i}");
        }
        DataRef::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => {
            let _ = write!(out, "{}", *f as i64);
        }
        DataRef::Float(f) => {
            let _ = write!(out, "{f}");
        }
        DataRef::Bool(b) => out.push_str(if *b { "True" } else { "False" }),
        DataRef::DateTime(d) => {
            let _ = write!(out, "{}", d.as_f64());
        }
        DataRef::Error(e) => {
            let _ = write!(out, "#{e}");
        }
        DataRef::Empty => {}
    }
}

/// Appends `text` as one RFC 4180 quoted cell on one line.
fn push_quoted(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    for &b in text.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\"\""),
            b'\r' | b'\n' => out.push(b' '),
            b => out.push(b),
        }
    }
    out.push(b'"');
}

/// The reader's end of the thread's chunks.
struct Chunks {
    rx: Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => (self.chunk, self.at) = (chunk, 0),
                Ok(Err(e)) => return Err(e),
                // The thread is done.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_quoted_on_one_line() {
        let mut out = Vec::new();
        push_quoted(&mut out, "a \"b\"\r\nc");
        assert_eq!(out, b"\"a \"\"b\"\"  c\"");
        let mut s = String::new();
        cell_text(&DataRef::Float(3.0), &mut s);
        cell_text(&DataRef::Float(0.5), &mut s);
        cell_text(&DataRef::Bool(true), &mut s);
        assert_eq!(s, "30.5True");
    }
}
