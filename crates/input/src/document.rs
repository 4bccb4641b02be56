//! Record-oriented layouts: Purview CSV exports and JSON documents, cut into records.
//!
//! Place in the flow: the engine reads an input here instead of cutting it into line
//! chunks when [`Layout`](crate::Layout) recognised it as a CSV export or a JSON
//! document (a top-level array, pretty-printed objects, concatenated objects, an
//! Elasticsearch `_search` response, Elastic's pipeline-test `{"events": [...]}`).
//! Records may span lines, so these are read sequentially, one input at a time, from
//! any byte stream, with memory bounded by the longest record. Each record is handed
//! out as an [`Item`] with the line where it starts and that line's byte offset; what
//! is done with it (counting, tallying, parsing) is the caller's. Text between the
//! records of a JSON document is searched for the caller's [`Literals`]: a line holding
//! one there is handed out as a record that could not be kept.

use std::io::{self, Read};

use memchr::memchr_iter;

use crate::Literals;

/// Where a record starts: its 0-based line and the byte offset of that line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pos {
    /// 0-based line where the record starts.
    pub line: u64,
    /// Byte offset of that line in the (decoded) input.
    pub offset: u64,
}

/// One record of a document, as the readers hand it out.
pub enum Item<'a> {
    /// A record's bytes.
    Record(Record<'a>),
    /// A record that is not kept, and why (longer than the limit, nested too deep, a
    /// document that ends inside it, a rule literal outside every record).
    Unkept(&'static str),
    /// A blank CSV row.
    Blank,
    /// A record longer than the limit that holds none of the caller's literals: not
    /// kept, and no loss (no rule could have matched it).
    Skipped,
}

/// A record's bytes: a JSON object, or a CSV row whose `AuditData` cell holds one.
pub struct Record<'a> {
    bytes: &'a [u8],
    /// For a CSV row, which cell is `AuditData` (`None`: the header had none).
    cell: Option<Option<usize>>,
}

impl<'a> Record<'a> {
    /// The record's bytes as they are in the input (a CSV row without its line end).
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The record's JSON: the bytes themselves, or a CSV row's `AuditData` cell
    /// unquoted into `buf`; why not, when a row has no such cell.
    pub fn json<'b>(&self, buf: &'b mut Vec<u8>) -> Result<&'b [u8], &'static str>
    where
        'a: 'b,
    {
        match self.cell {
            None => Ok(self.bytes),
            Some(column) => match column.and_then(|c| CsvCells::of(self.bytes).nth(c)) {
                Some(raw) => {
                    unquote(raw, buf);
                    Ok(buf)
                }
                None => Err("CSV row has no AuditData cell"),
            },
        }
    }
}

/// What reading a document gave besides its records.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Bytes read.
    pub bytes: u64,
    /// Lines read (a last line without newline counts).
    pub lines: u64,
    /// The error that stopped the reading early, if one did.
    pub error: Option<io::Error>,
    /// Damage read past (a stray closing bracket, a document that ends before its
    /// array is closed), where it is: the records around it were read.
    pub warnings: Vec<(Pos, &'static str)>,
    /// Warnings beyond the first [`MAX_WARNINGS`], counted only.
    pub more_warnings: u64,
}

/// Warnings kept per document (the rest are counted): a document of stray brackets
/// must not grow memory.
pub const MAX_WARNINGS: usize = 16;

/// Receives each record the readers cut and where it starts.
pub type OnItem<'a> = dyn FnMut(Item<'_>, Pos) + 'a;

/// Reads a Purview / `Search-UnifiedAuditLog` CSV export (RFC 4180): the record of a row
/// is the JSON in its `AuditData` cell. Quoted cells may span lines; a row's line is the
/// line where it starts. Rows are cut by quote parity (a `""` inside a quoted cell
/// toggles twice), so the caller splits and unquotes a row's cells only when it asks
/// for its JSON ([`Record::json`]). Rows longer than `max` are not kept; one that holds
/// one of `literals` (every one, when `None`) is [`Item::Unkept`], the others
/// [`Item::Skipped`].
pub fn read_csv(
    input: impl Read,
    max: usize,
    literals: Option<&dyn Literals>,
    on: &mut OnItem<'_>,
) -> Outcome {
    let mut rows = CsvRows::default();
    let mut column: Option<usize> = None;
    let mut header_seen = false;
    let mut cell = Vec::new();
    let (bytes, mut error) = read_pieces(input, |data, at_end| {
        rows.feed(data, at_end, max, literals, &mut |row, pos| {
            let row = match row {
                Ok(row) => row,
                Err(LONG_UNSEEN) => return on(Item::Skipped, pos),
                Err(why) => return on(Item::Unkept(why), pos),
            };
            let row = row.strip_suffix(b"\r").unwrap_or(row);
            if !header_seen {
                header_seen = true;
                let row = row.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(row);
                column = (0..).zip(CsvCells::of(row)).find_map(|(i, h)| {
                    unquote(h, &mut cell);
                    cell.trim_ascii()
                        .eq_ignore_ascii_case(b"AuditData")
                        .then_some(i)
                });
                return;
            }
            if row.trim_ascii().is_empty() {
                return on(Item::Blank, pos);
            }
            let record = Record {
                bytes: row,
                cell: Some(column),
            };
            on(Item::Record(record), pos);
        });
    });
    if error.is_none() && header_seen && column.is_none() {
        error = Some(io::Error::new(
            io::ErrorKind::InvalidData,
            "CSV header has no AuditData column",
        ));
    }
    Outcome {
        bytes,
        lines: rows.newlines + u64::from(rows.last.is_some_and(|b| b != b'\n')),
        error,
        warnings: Vec::new(),
        more_warnings: 0,
    }
}

/// Reads a JSON document as a stream of record objects; a record's line is the line
/// where its object starts. Records longer than `max` are not kept; `strays`, when
/// given, is searched for in the text between records.
pub fn read_json(
    input: impl Read,
    max: usize,
    strays: Option<&dyn Literals>,
    on: &mut OnItem<'_>,
) -> Outcome {
    // Which objects are records is decided from the head, however the input delivers
    // it: at least 64 KiB, and for a document that starts with `{`, until its structure
    // tells whether it is a `_search` response (the first top-level object ends, or its
    // "hits" array opens), at most the longest record.
    let mut input = input;
    let mut head = Vec::with_capacity(1 << 16);
    let mut early = (&mut input).take(1 << 16).read_to_end(&mut head).err();
    while early.is_none() && head.len() < max && undecided(strip_bom_slice(&head)) {
        match (&mut input).take(1 << 16).read_to_end(&mut head) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => early = Some(e),
        }
    }
    let start = strip_bom_slice(&head);
    let mut s = Splitter {
        path: record_path(start),
        strays,
        ..Splitter::default()
    };
    let rest: Box<dyn Read + '_> = match early {
        Some(e) => Box::new(FailWith(Some(e))),
        None => Box::new(input),
    };
    let mut first = true;
    let mut emit = |record: Result<&[u8], &'static str>, pos| match record {
        Ok(bytes) => on(Item::Record(Record { bytes, cell: None }), pos),
        Err(LONG_UNSEEN) => on(Item::Skipped, pos),
        Err(why) => on(Item::Unkept(why), pos),
    };
    let (bytes, error) = read_pieces(io::Cursor::new(head).chain(rest), |mut data, _| {
        if first {
            first = false;
            let stripped = strip_bom_slice(data);
            s.consumed += (data.len() - stripped.len()) as u64;
            data = stripped;
        }
        s.feed(data, max, &mut emit);
    });
    if let Some(pos) = s.record {
        // The document ends (or broke off) inside a record: count it, do not lose it.
        emit(Err("JSON document ends inside this record"), pos);
    } else if !s.stack.is_empty() && !s.path.is_empty() {
        // Cut between two records: nothing is lost that was there, but the end is not.
        let end = Pos {
            line: s.newlines - u64::from(s.last == Some(b'\n')),
            offset: s.consumed,
        };
        s.warn(end, CUT_BETWEEN);
    }
    Outcome {
        bytes,
        lines: s.newlines + u64::from(s.last.is_some_and(|b| b != b'\n')),
        error,
        warnings: s.warnings,
        more_warnings: s.more_warnings,
    }
}

/// The bytes of a record that began in an earlier read, kept until the record ends;
/// past `max` bytes the record is only followed, not kept (bounded memory), and searched
/// for the caller's literals: only a record too long to keep that held one is a loss.
#[derive(Default)]
struct Pending {
    carry: Vec<u8>,
    /// Why the record will not be parsed (too long, too deep), if so.
    spoiled: Option<&'static str>,
    /// A record too long to keep: whether a literal was seen in it.
    held: bool,
    /// Its last bytes so far (a literal across reads).
    edge: Vec<u8>,
}

impl Pending {
    /// Keeps `part`, the record's bytes up to the end of this read.
    fn keep(&mut self, part: &[u8], max: usize, lits: Option<&dyn Literals>) {
        if self.spoiled.is_none() {
            if self.carry.len() + part.len() <= max {
                self.carry.extend_from_slice(part);
                return;
            }
            self.spoil(TOO_LONG, lits);
        }
        self.watch(part, lits);
    }

    /// Marks the record as not to be parsed, dropping what was kept of it (once searched
    /// for a literal).
    fn spoil(&mut self, why: &'static str, lits: Option<&dyn Literals>) {
        if self.spoiled.is_none() {
            self.spoiled = Some(why);
            let kept = std::mem::take(&mut self.carry);
            self.watch(&kept, lits);
        }
        self.carry = Vec::new();
    }

    /// Searches the next bytes of a record not kept for a literal (`None`: every record
    /// is a candidate).
    fn watch(&mut self, part: &[u8], lits: Option<&dyn Literals>) {
        if self.held {
            return;
        }
        let Some(lits) = lits else {
            self.held = true;
            return;
        };
        let overlap = lits.overlap();
        let mut joined = std::mem::take(&mut self.edge);
        joined.extend_from_slice(&part[..part.len().min(overlap)]);
        if lits.find(&joined).is_some() || lits.find(part).is_some() {
            self.held = true;
            return;
        }
        let from = if part.len() >= overlap {
            joined.clear();
            joined.extend_from_slice(&part[part.len() - overlap..]);
            0
        } else {
            joined.len().saturating_sub(overlap)
        };
        joined.drain(..from);
        self.edge = joined;
    }

    /// Ends the record with `tail`, its bytes in this read: `emit` gets it whole (or
    /// why it is not kept) with its first line. Then ready for the next record.
    fn finish(
        &mut self,
        tail: &[u8],
        max: usize,
        line: Pos,
        lits: Option<&dyn Literals>,
        emit: &mut Emit<'_>,
    ) {
        if self.spoiled.is_none() && self.carry.len() + tail.len() > max {
            self.spoil(TOO_LONG, lits);
        }
        if let Some(why) = self.spoiled.take() {
            self.watch(tail, lits);
            let lost = why != TOO_LONG || std::mem::take(&mut self.held);
            emit(Err(if lost { why } else { LONG_UNSEEN }), line);
            self.held = false;
            self.edge.clear();
        } else if self.carry.is_empty() {
            emit(Ok(tail), line);
        } else {
            self.carry.extend_from_slice(tail);
            emit(Ok(&self.carry), line);
        }
        self.carry.clear();
    }

    fn is_empty(&self) -> bool {
        self.carry.is_empty() && self.spoiled.is_none()
    }
}

const TOO_LONG: &str = "record longer than --max-line-size";
/// A record longer than the limit without a rule literal: skipped, not a loss.
const LONG_UNSEEN: &str = "record longer than --max-line-size, without a rule literal";
const STRAY: &str = "rule literal outside any record of the JSON document";
const TOO_DEEP: &str = "record nested deeper than 512 levels";
const STRAY_CLOSER: &str = "stray closing bracket outside the records ignored";
const EARLY_CLOSE: &str =
    "stray closing bracket closed the array of records early; the records after it were read";
const CUT_BETWEEN: &str =
    "JSON document ends before its array of records is closed (cut between two records?)";

/// Receives each record (or why it is not kept) and where it starts.
type Emit<'a> = dyn FnMut(Result<&[u8], &'static str>, Pos) + 'a;

/// Cuts CSV bytes into rows at newlines outside quotes, across reads.
#[derive(Default)]
struct CsvRows {
    in_quotes: bool,
    newlines: u64,
    last: Option<u8>,
    /// The unfinished row from earlier reads, and where it starts.
    pending: Pending,
    row: Pos,
    /// Bytes fed before the current read.
    consumed: u64,
}

impl CsvRows {
    /// `emit` gets each row without its newline and its 0-based first line (`None` for
    /// a row longer than `max`, which is not kept).
    fn feed(
        &mut self,
        data: &[u8],
        at_end: bool,
        max: usize,
        lits: Option<&dyn Literals>,
        emit: &mut Emit<'_>,
    ) {
        let mut start = 0;
        for i in memchr::memchr2_iter(b'"', b'\n', data) {
            if data[i] == b'"' {
                let before = if i > 0 { Some(data[i - 1]) } else { self.last };
                // Right after a byte order mark is the start of the input too.
                let after_bom = self.consumed + i as u64 == 3 && before == Some(0xBF);
                if self.in_quotes || opens_quotes(before) || after_bom {
                    self.in_quotes = !self.in_quotes;
                }
                continue;
            }
            self.newlines += 1;
            if self.in_quotes {
                continue;
            }
            self.pending
                .finish(&data[start..i], max, self.row, lits, emit);
            start = i + 1;
            self.row = Pos {
                line: self.newlines,
                offset: self.consumed + start as u64,
            };
        }
        if at_end {
            if !self.pending.is_empty() || start < data.len() {
                self.pending
                    .finish(&data[start..], max, self.row, lits, emit);
            }
        } else {
            self.pending.keep(&data[start..], max, lits);
        }
        self.last = data.last().copied().or(self.last);
        self.consumed += data.len() as u64;
    }
}

/// Whether a `"` after `before` (`None`: the start of the input) opens a quoted cell:
/// only at the start of a cell (RFC 4180), or right after a closing quote (a doubled
/// `""` inside a quoted cell). A `"` inside an unquoted cell (`bob"s`, invalid but
/// written by hand-made exports) is a character of the cell: it must not make the
/// following rows run together.
fn opens_quotes(before: Option<u8>) -> bool {
    matches!(before, None | Some(b',' | b'\n' | b'"'))
}

/// The raw cells of one CSV row (still quoted); `None` once the last cell was given.
struct CsvCells<'a>(Option<&'a [u8]>);

impl<'a> CsvCells<'a> {
    fn of(row: &'a [u8]) -> CsvCells<'a> {
        CsvCells(Some(row))
    }
}

impl<'a> Iterator for CsvCells<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.0?;
        let mut quoted = false;
        for (i, &b) in rest.iter().enumerate() {
            match b {
                b'"' if quoted
                    || opens_quotes(i.checked_sub(1).map(|k| rest[k]).or(Some(b','))) =>
                {
                    quoted = !quoted
                }
                b',' if !quoted => {
                    self.0 = Some(&rest[i + 1..]);
                    return Some(&rest[..i]);
                }
                _ => {}
            }
        }
        self.0 = None;
        Some(rest)
    }
}

/// Removes a cell's surrounding quotes and undoubles `""`.
fn unquote(raw: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let raw = raw.trim_ascii();
    match raw.strip_prefix(b"\"").and_then(|r| r.strip_suffix(b"\"")) {
        Some(inner) => {
            let mut quote = false;
            for &b in inner {
                if b == b'"' && quote {
                    quote = false;
                    continue;
                }
                quote = b == b'"';
                out.push(b);
            }
        }
        None => out.extend_from_slice(raw),
    }
}

fn strip_bom_slice(data: &[u8]) -> &[u8] {
    data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data)
}

/// A reader that fails once with an error met earlier, then ends: put after the
/// bytes read before the error, the error is met again where it happened.
pub struct FailWith(pub Option<io::Error>);

impl Read for FailWith {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        self.0.take().map_or(Ok(0), Err)
    }
}

/// Reads `input` in 1 MiB pieces, giving each to `f`, then an empty last piece with
/// `at_end` set (also after an error); returns the bytes read and the error, if any.
fn read_pieces(mut input: impl Read, mut f: impl FnMut(&[u8], bool)) -> (u64, Option<io::Error>) {
    let mut block = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        match input.read(&mut block) {
            Ok(0) => {
                f(&[], true);
                return (bytes, None);
            }
            Ok(n) => {
                bytes += n as u64;
                f(&block[..n], false);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                f(&[], true);
                return (bytes, Some(e));
            }
        }
    }
}

/// Whether `head`, which starts with `[`, opens a JSON array: what follows the bracket
/// (after whitespace) starts a JSON value or closes the array. `[metadata]` (TOML, INI)
/// or `[garbage` do not.
pub fn opens_json_array(head: &[u8]) -> bool {
    let rest = head.strip_prefix(b"[").unwrap_or(head);
    match rest.iter().find(|b| !b.is_ascii_whitespace()) {
        None => true,
        Some(b) => matches!(
            b,
            b'{' | b'[' | b']' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n'
        ),
    }
}

/// Whether `head`, which starts with `{`, is Elastic's pipeline-test wrapper: its first
/// key is `"events"` and holds an array (`{"events": [{record}, …]}`).
pub fn is_events_wrapper(head: &[u8]) -> bool {
    let skip = |b: &[u8]| -> usize { b.iter().take_while(|c| c.is_ascii_whitespace()).count() };
    let Some(rest) = head.strip_prefix(b"{") else {
        return false;
    };
    let Some(rest) = rest[skip(rest)..].strip_prefix(b"\"events\"") else {
        return false;
    };
    let Some(rest) = rest[skip(rest)..].strip_prefix(b":") else {
        return false;
    };
    rest[skip(rest)..].starts_with(b"[")
}

/// Whether `head`, which starts with `{`, is a page of a Microsoft Graph collection, as
/// the audit log query API returns its records: `{"@odata.context": …, "value": [
/// {record}, … ], "@odata.nextLink": …}` (the first key `@odata.context`, or `value`
/// holding an array).
pub fn is_graph_page(head: &[u8]) -> bool {
    let skip = |b: &[u8]| -> usize { b.iter().take_while(|c| c.is_ascii_whitespace()).count() };
    let Some(rest) = head.strip_prefix(b"{") else {
        return false;
    };
    let rest = &rest[skip(rest)..];
    if rest.starts_with(b"\"@odata.context\"") {
        return true;
    }
    let Some(rest) = rest.strip_prefix(b"\"value\"") else {
        return false;
    };
    let Some(rest) = rest[skip(rest)..].strip_prefix(b":") else {
        return false;
    };
    rest[skip(rest)..].starts_with(b"[")
}

/// Which objects of a JSON document are records, by the containers around them.
fn record_path(head: &[u8]) -> &'static [u8] {
    let at = head
        .iter()
        .position(|b| !b.is_ascii_whitespace() && *b != 0xEF && *b != 0xBB && *b != 0xBF);
    let first = at.map(|i| head[i]);
    match first {
        // [ {record}, {record} ]
        Some(b'[') => b"[",
        // Elastic's pipeline tests: {"events": [ {record}, … ]}; a Microsoft Graph page:
        // {"@odata.context": …, "value": [ {record}, … ], …}.
        Some(b'{')
            if at.is_some_and(|i| is_events_wrapper(&head[i..]) || is_graph_page(&head[i..])) =>
        {
            b"{["
        }
        // An Elasticsearch `_search` response: { "hits": { "hits": [ {hit}, … ] } }.
        Some(b'{') if at.is_some_and(|i| search_hits(&head[i..]) == Some(true)) => b"{{[",
        // {record} {record} … (one pretty-printed record, or several concatenated)
        _ => b"",
    }
}

/// Whether a document that starts with `{` is an Elasticsearch `_search` response, from
/// its structure: its top-level object has a `"hits"` object that holds a `"hits"`
/// array. `Some` once the structure shows (or the first top-level object ends without
/// it), `None` while `head` ends before either: the caller reads on.
fn search_hits(head: &[u8]) -> Option<bool> {
    // For each open container: whether it is the value of a "hits" key.
    let mut via_hits: Vec<bool> = Vec::new();
    // The last token was the string "hits" / the key "hits" and its colon.
    let (mut key, mut colon) = (false, false);
    let mut i = 0;
    while i < head.len() {
        match head[i] {
            b'"' => {
                let mut j = i + 1;
                loop {
                    j += memchr::memchr2(b'"', b'\\', head.get(j..)?)?;
                    if head[j] == b'\\' {
                        j += 2;
                        continue;
                    }
                    break;
                }
                key = &head[i + 1..j] == b"hits";
                colon = false;
                i = j + 1;
                continue;
            }
            b':' => (colon, key) = (key, false),
            open @ (b'{' | b'[') => {
                if open == b'[' && colon && via_hits.len() == 2 && via_hits[1] {
                    return Some(true);
                }
                via_hits.push(colon && open == b'{');
                (key, colon) = (false, false);
            }
            b'}' | b']' => {
                via_hits.pop();
                if via_hits.is_empty() {
                    return Some(false);
                }
                (key, colon) = (false, false);
            }
            b if b.is_ascii_whitespace() => {}
            _ => (key, colon) = (false, false),
        }
        i += 1;
    }
    None
}

/// Whether the head of a JSON document does not yet show which objects are records.
fn undecided(head: &[u8]) -> bool {
    let at = head.iter().position(|b| !b.is_ascii_whitespace());
    at.is_some_and(|i| {
        head[i] == b'{'
            && !is_events_wrapper(&head[i..])
            && !is_graph_page(&head[i..])
            && search_hits(&head[i..]).is_none()
    })
}

/// Deepest nesting kept track of; a record nested deeper is counted malformed.
const MAX_DEPTH: usize = 512;

/// Finds the record objects of a JSON document in a byte stream: a small state machine
/// over strings, escapes and brackets that keeps the containers open around the
/// current position.
#[derive(Default)]
struct Splitter<'l> {
    path: &'static [u8],
    /// The rules' literals, searched for in the text between records: each line where
    /// one is found there is emitted as a record that cannot be kept (`STRAY`).
    strays: Option<&'l dyn Literals>,
    /// The last bytes of the text between records so far (a literal may straddle reads).
    gap_tail: Vec<u8>,
    /// The last line a stray literal was reported on (one report per line).
    stray_line: Option<u64>,
    stack: Vec<u8>,
    in_string: bool,
    escaped: bool,
    newlines: u64,
    last: Option<u8>,
    /// The record being read: where it starts; its bytes from earlier blocks are in
    /// `pending`.
    record: Option<Pos>,
    /// Bytes fed before the current read.
    consumed: u64,
    pending: Pending,
    /// Levels open beyond `MAX_DEPTH` (counted, not stacked: memory stays bounded).
    too_deep: usize,
    /// The last byte outside strings that is not white space.
    last_sig: u8,
    /// Whether a record was met: after one, a `{` just above the records' level after
    /// a `,` or `]` is a record of an array closed early by a stray `]`.
    seen_record: bool,
    /// Where the array of records was last closed.
    closed_at: Option<Pos>,
    warnings: Vec<(Pos, &'static str)>,
    more_warnings: u64,
}

impl Splitter<'_> {
    /// Feeds the next bytes; `emit` gets each complete record and the 0-based line it
    /// starts on (`None` for a record longer than `max`, which is not kept).
    fn feed(&mut self, data: &[u8], max: usize, emit: &mut Emit<'_>) {
        let mut start = 0; // where the current record begins in `data`
        // Newlines are counted lazily, up to `counted`, when a record starts and at the
        // end of the read; strings are crossed with memchr, not byte by byte.
        let mut counted = 0;
        // Where the text between records begins in `data`, while outside a record.
        let mut gap = self.record.is_none().then_some(0);
        let mut i = 0;
        while i < data.len() {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                    i += 1;
                    continue;
                }
                match memchr::memchr2(b'"', b'\\', &data[i..]) {
                    None => break,
                    Some(k) => {
                        i += k;
                        if data[i] == b'\\' {
                            self.escaped = true;
                        } else {
                            self.in_string = false;
                        }
                        i += 1;
                        continue;
                    }
                }
            }
            let b = data[i];
            let before = self.last_sig;
            if !b.is_ascii_whitespace() {
                self.last_sig = b;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => {
                    if b == b'{' && self.record.is_none() && self.reopens(before) {
                        // `[{..}, ] , {..}`: the array was closed by a stray `]`; its
                        // records go on.
                        if let Some(at) = self.closed_at.take() {
                            self.warn(at, EARLY_CLOSE);
                        }
                        self.stack.push(b'[');
                    }
                    if b == b'{' && self.record.is_none() && self.stack == self.path {
                        self.seen_record = true;
                        if let Some(from) = gap.take() {
                            self.find_strays(data, from, i, &mut counted, emit);
                            self.gap_tail.clear();
                        }
                        self.newlines += memchr_iter(b'\n', &data[counted..i]).count() as u64;
                        counted = i;
                        self.record = Some(Pos {
                            line: self.newlines,
                            offset: self.consumed + i as u64,
                        });
                        start = i;
                    }
                    if self.stack.len() >= MAX_DEPTH {
                        // Followed by a count only; a record around it is not kept.
                        self.too_deep += 1;
                        if self.record.is_some() {
                            self.pending.spoil(TOO_DEEP, self.strays);
                        }
                    } else {
                        self.stack.push(b);
                    }
                }
                b'}' | b']' => {
                    if self.too_deep > 0 {
                        self.too_deep -= 1;
                        i += 1;
                        continue;
                    }
                    if self.record.is_none() {
                        let here = Pos {
                            line: self.newlines
                                + memchr_iter(b'\n', &data[counted..i]).count() as u64,
                            offset: self.consumed + i as u64,
                        };
                        let open = if b == b'}' { b'{' } else { b'[' };
                        if self.stack.last() != Some(&open) {
                            self.warn(here, STRAY_CLOSER);
                            i += 1;
                            continue;
                        }
                        if self.stack == self.path {
                            self.closed_at = Some(here);
                        }
                    }
                    self.stack.pop();
                    if self.stack.len() == self.path.len()
                        && let Some(line) = self.record.take()
                    {
                        self.pending
                            .finish(&data[start..=i], max, line, self.strays, emit);
                        gap = Some(i + 1);
                    }
                }
                _ => {}
            }
            i += 1;
        }
        if let Some(from) = gap {
            self.find_strays(data, from, data.len(), &mut counted, emit);
        }
        self.newlines += memchr_iter(b'\n', &data[counted..]).count() as u64;
        if self.record.is_some() {
            self.pending.keep(&data[start..], max, self.strays);
        }
        self.last = data.last().copied().or(self.last);
        self.consumed += data.len() as u64;
    }

    /// Searches `data[from..to]`, text between records, for the rules' literals and
    /// emits each line that holds one as a record that is not kept (so it is counted
    /// malformed). `self.gap_tail` holds the end of the same text from earlier reads.
    fn find_strays(
        &mut self,
        data: &[u8],
        from: usize,
        to: usize,
        counted: &mut usize,
        emit: &mut Emit<'_>,
    ) {
        let Some(literals) = self.strays.take() else {
            return;
        };
        let piece = &data[from..to];
        let overlap = literals.overlap();
        // Lines up to `from`: `counted` only moves forward.
        self.newlines += memchr_iter(b'\n', &data[*counted..from]).count() as u64;
        *counted = from;
        // A literal that began in an earlier read and ends in this one.
        if !self.gap_tail.is_empty() {
            let mut joined = std::mem::take(&mut self.gap_tail);
            let tail_len = joined.len();
            joined.extend_from_slice(&piece[..piece.len().min(overlap)]);
            let mut at = 0;
            while let Some(hit) = literals.find(&joined[at..]).map(|h| at + h) {
                if hit >= tail_len {
                    break;
                }
                let after = memchr_iter(b'\n', &joined[hit..tail_len]).count() as u64;
                let pos = Pos {
                    line: self.newlines - after,
                    offset: self.consumed - (tail_len - hit) as u64,
                };
                self.stray(pos, emit);
                at = hit + 1;
            }
            joined.truncate(tail_len);
            self.gap_tail = joined;
        }
        let mut at = 0;
        while let Some(hit) = literals.find(&piece[at..]).map(|h| at + h) {
            self.newlines += memchr_iter(b'\n', &data[*counted..from + hit]).count() as u64;
            *counted = from + hit;
            let pos = Pos {
                line: self.newlines,
                offset: self.consumed + (from + hit) as u64,
            };
            self.stray(pos, emit);
            at = hit + 1;
        }
        // Keep the end of the text for a literal that straddles this read's end.
        let keep = overlap.min(self.gap_tail.len() + piece.len());
        let from_piece = keep.min(piece.len());
        let from_tail = keep - from_piece;
        self.gap_tail.drain(..self.gap_tail.len() - from_tail);
        self.gap_tail
            .extend_from_slice(&piece[piece.len() - from_piece..]);
        self.strays = Some(literals);
    }

    /// Whether a `{` here opens a record of an array of records that a stray `]`
    /// closed: one level above the records, the array's level, after a `,` or `]`
    /// (where valid JSON has no `{`), once records were met.
    fn reopens(&self, before: u8) -> bool {
        self.seen_record
            && self.stack.len() + 1 == self.path.len()
            && self.path.starts_with(&self.stack)
            && self.path.last() == Some(&b'[')
            && matches!(before, b',' | b']')
    }

    /// Notes damage read past, at `pos`.
    fn warn(&mut self, pos: Pos, what: &'static str) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push((pos, what));
        } else {
            self.more_warnings += 1;
        }
    }

    /// Emits a stray literal at `pos`, once per line.
    fn stray(&mut self, pos: Pos, emit: &mut Emit<'_>) {
        if self.stray_line != Some(pos.line) {
            self.stray_line = Some(pos.line);
            emit(Err(STRAY), pos);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule's literal, found by `memmem`.
    struct Bypass;

    impl Literals for Bypass {
        fn find(&self, haystack: &[u8]) -> Option<usize> {
            memchr::memmem::find(haystack, b"Set-MailboxAuditBypassAssociation")
        }

        fn overlap(&self) -> usize {
            "Set-MailboxAuditBypassAssociation".len() - 1
        }
    }

    const REC: &str = r#"{"Operation":"Set-MailboxAuditBypassAssociation","Workload":"Exchange"}"#;

    #[test]
    fn search_responses_are_told_by_their_structure() {
        // "hits" elsewhere (a record's own key, a string value) is no _search response.
        assert_eq!(
            search_hits(br#"{"a":{"hits":[1]}} {"hits":{"hits":[]}}"#),
            Some(false)
        );
        assert_eq!(
            search_hits(br#"{"x":"hits","hits":{"y":"\"hits\"","hits":["#),
            Some(true)
        );
        assert_eq!(search_hits(br#"{"hits":{"total":"#), None);
    }

    #[test]
    fn a_literal_outside_every_record_is_stray_in_any_reads() {
        let lit = "Set-MailboxAuditBypassAssociation";
        let text = format!("[\n\"{lit}\", \"{lit}\",\n{REC}\n] {lit}\n");
        // The splitter itself, fed in pieces of every size (a literal across reads).
        for piece in 1..=text.len() {
            let mut s = Splitter {
                path: b"[",
                strays: Some(&Bypass),
                ..Splitter::default()
            };
            let mut got = Vec::new();
            for part in text.as_bytes().chunks(piece) {
                s.feed(part, 1 << 20, &mut |r, pos| {
                    got.push((r.is_ok(), pos.line + 1))
                });
            }
            assert_eq!(
                got,
                vec![(false, 2), (true, 3), (false, 4)],
                "pieces of {piece}"
            );
        }
    }

    /// The records (1-based lines) and warnings of a document read in `piece`-byte reads.
    fn split(text: &str, piece: usize) -> (Vec<u64>, Vec<(u64, &'static str)>) {
        let mut records = Vec::new();
        let out = read_json(
            crate::testutil::Trickle(text.as_bytes(), piece),
            1 << 20,
            None,
            &mut |item, pos| {
                if let Item::Record(_) = item {
                    records.push(pos.line + 1);
                }
            },
        );
        let warnings = out.warnings.iter().map(|(p, w)| (p.line + 1, *w)).collect();
        (records, warnings)
    }

    #[test]
    fn stray_closing_brackets_are_read_past_and_said_in_any_reads() {
        // A `]` that closes the array early (line 3), a `}` after a record (4), the
        // array's own end (5), one `]` too many (6), a record after the end (7), and
        // no end after it.
        let doc = format!("[\n{REC},\n] ,\n{REC}}}\n]\n]\n{REC}");
        let events = format!("{{\"events\":[{REC}],\n{REC}]\n}}");
        for piece in [1, 2, 7, 1 << 16] {
            assert_eq!(
                split(&doc, piece),
                (
                    vec![2, 4, 7],
                    vec![
                        (3, EARLY_CLOSE),
                        (4, STRAY_CLOSER),
                        (6, STRAY_CLOSER),
                        (5, EARLY_CLOSE),
                        (7, CUT_BETWEEN)
                    ]
                ),
                "pieces of {piece}"
            );
            assert_eq!(
                split(&events, piece),
                (vec![1, 2], vec![(1, EARLY_CLOSE)]),
                "pieces of {piece}"
            );
        }
    }

    #[test]
    fn whole_documents_give_no_warning_and_a_cut_one_says_where() {
        let whole = [
            format!("[\n{REC},\n{REC}\n]\n"),
            format!("{{\"events\":[{REC}], \"meta\": {{\"a\": [1]}}}}"),
            format!("{REC}\n{REC}"),
        ];
        for doc in &whole {
            let (records, warnings) = split(doc, 3);
            assert!(!records.is_empty());
            assert_eq!(warnings, [], "{doc}");
        }
        let cut = format!("[\n{REC},\n{REC},\n");
        assert_eq!(split(&cut, 5), (vec![2, 3], vec![(3, CUT_BETWEEN)]));
    }

    #[test]
    fn wrappers_and_arrays_are_recognised_from_their_head() {
        assert!(is_events_wrapper(b"{ \"events\" :[]}"));
        assert!(!is_events_wrapper(b"{\"event\": {}}"));
        assert!(opens_json_array(b"[\r\n  {"));
        assert!(!opens_json_array(b"[metadata]"));
    }

    #[test]
    fn csv_cells_and_unquoting() {
        let cells: Vec<&[u8]> = CsvCells::of(b"1,x\"y,\"a,b\"").collect();
        assert_eq!(cells, vec![&b"1"[..], b"x\"y", b"\"a,b\""]);

        let cells: Vec<&[u8]> = CsvCells::of(b"a,\"b,\"\"c\"\"\",,d").collect();
        assert_eq!(cells, vec![&b"a"[..], b"\"b,\"\"c\"\"\"", b"", b"d"]);
        assert_eq!(CsvCells::of(b"a,").count(), 2);
        let mut out = Vec::new();
        unquote(b"\"{\"\"k\"\":1}\"", &mut out);
        assert_eq!(out, b"{\"k\":1}");
    }
}
