//! Text from an archive made inert for its medium: a terminal, a spreadsheet cell, a
//! JSON file someone `cat`s, an HTML page or SVG chart. Every output escapes through
//! here, and what counts as hidden is decided once, in [`is_hidden`], for every medium.

use std::fmt;
use std::io;
use std::io::Write;

/// Whether a character is shown as a visible `\u{..}` escape rather than as itself, in
/// every medium: what would act rather than show (control characters C0, DEL and C1;
/// bidirectional marks, embeddings, overrides and isolates; the line and paragraph
/// separators) and what shows as nothing or as a plain space, so that two names that
/// differ only by it would look identical: zero-width spaces and joiners, the word
/// joiner and invisible operators, the byte order mark, the soft hyphen, the combining
/// grapheme joiner, the Mongolian vowel separator and free variation selectors, the
/// Hangul and Khmer fillers, variation selectors, tag characters, interlinear
/// annotation marks, the braille blank and every space other than U+0020.
pub fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00a0}'
                | '\u{00ad}'
                | '\u{034f}'
                | '\u{061c}'
                | '\u{115f}'
                | '\u{1160}'
                | '\u{1680}'
                | '\u{17b4}'
                | '\u{17b5}'
                | '\u{180b}'..='\u{180f}'
                | '\u{2000}'..='\u{200f}'
                | '\u{2028}'..='\u{202f}'
                | '\u{205f}'..='\u{206f}'
                | '\u{2800}'
                | '\u{3000}'
                | '\u{3164}'
                | '\u{fe00}'..='\u{fe0f}'
                | '\u{feff}'
                | '\u{ffa0}'
                | '\u{fff9}'..='\u{fffb}'
                | '\u{1d173}'..='\u{1d17a}'
                | '\u{e0000}'..='\u{e007f}'
                | '\u{e0100}'..='\u{e01ef}'
        )
}

/// Makes archive text safe to print on a terminal: hidden characters ([`is_hidden`])
/// become visible `\u{..}` escapes, so a crafted actor name cannot move the cursor,
/// recolour the screen, start a line, reorder what is shown or pass for another.
pub fn terminal_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_hidden(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Makes a cell safe for a spreadsheet and for a terminal that shows the file: hidden
/// characters ([`is_hidden`]) become visible `\u{..}` escapes (as on a terminal), and a value a spreadsheet would read as a formula (leading `=`, `+`,
/// `-`, `@`, tab or carriage return) gets a leading `'`.
pub fn spreadsheet_safe(text: &str) -> std::borrow::Cow<'_, str> {
    let formula = matches!(
        text.as_bytes().first(),
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')
    );
    let visible: std::borrow::Cow<'_, str> = if text.chars().any(is_hidden) {
        terminal_safe(text).into()
    } else {
        text.into()
    };
    if formula {
        format!("'{visible}").into()
    } else {
        visible
    }
}

/// Writes `value` as compact JSON, as `serde_json::to_writer` does, except that hidden
/// characters ([`is_hidden`]) that JSON lets through raw are written as `\uXXXX`
/// escapes (a surrogate pair beyond the BMP): the parsed value is the same, but `cat`ing
/// the file cannot recolour the terminal, reorder a line or show two names as one.
pub fn json_to_writer<W: Write, T: serde::Serialize + ?Sized>(out: W, value: &T) -> io::Result<()> {
    let mut ser = serde_json::Serializer::with_formatter(out, Inert);
    value.serialize(&mut ser).map_err(io::Error::other)
}

/// Appends `text` as a JSON string, the bytes [`json_to_writer`] writes for it: printable
/// ASCII other than `"` and `\` (most evidence) is copied between the quotes as it is,
/// anything else goes through the serializer. For writers of many small objects whose
/// keys are known: serde's serializer examines every byte of every key and value.
pub fn json_str(out: &mut Vec<u8>, text: &str) -> io::Result<()> {
    let bytes = text.as_bytes();
    let plain = bytes.iter().fold(true, |ok, &b| {
        ok & (b.wrapping_sub(0x20) < 0x5f) & (b != b'"') & (b != b'\\')
    });
    if !plain {
        return json_to_writer(out, text);
    }
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    out.extend_from_slice(bytes);
    out.push(b'"');
    Ok(())
}

/// serde_json's compact formatter with hidden controls escaped (see [`json_to_writer`]).
struct Inert;

impl serde_json::ser::Formatter for Inert {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        // Most fragments are printable ASCII, of which nothing is hidden: written as they
        // are without decoding a character (a report of thousands of events spent a
        // twentieth of its run in `is_hidden`). The test runs over every byte without
        // stopping early, so it compiles to vector compares (it was a tenth of the
        // time spent on string contents, beside serde_json's own pass).
        if printable_ascii(fragment.as_bytes()) {
            return writer.write_all(fragment.as_bytes());
        }
        let mut from = 0;
        for (i, c) in fragment.char_indices() {
            if is_hidden(c) {
                writer.write_all(&fragment.as_bytes()[from..i])?;
                for unit in c.encode_utf16(&mut [0; 2]) {
                    write!(writer, "\\u{unit:04x}")?;
                }
                from = i + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[from..])
    }
}

/// Whether every byte is printable ASCII (`0x20..0x7f`): one pass without an early exit.
fn printable_ascii(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .fold(true, |ok, &b| ok & (b.wrapping_sub(0x20) < 0x5f))
}

/// How escaped text is written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Plain: attributes, SVG, titles.
    Plain,
    /// HTML text: hidden characters highlighted.
    Marked,
    /// HTML text in a narrow cell: highlighted, and a line may break after `@ / \ _ |`.
    Cell,
}

/// At most this many characters of one string are shown (a record can hold a
/// command line of megabytes); the rest is counted.
pub const TEXT_MAX: usize = 1000;

fn escape(f: &mut impl fmt::Write, text: &str, mode: Mode) -> fmt::Result {
    if let Some((cut, _)) = text.char_indices().nth(TEXT_MAX) {
        escape(f, &text[..cut], mode)?;
        let more = text[cut..].chars().count();
        return match mode {
            Mode::Plain => write!(f, "… (+{more} characters)"),
            Mode::Marked | Mode::Cell => write!(
                f,
                r#"<span class="more">… (+{more} characters — see the JSON)</span>"#
            ),
        };
    }
    let mut start = 0;
    for (i, c) in text.char_indices() {
        let entity = match c {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            '"' => "&quot;",
            '\'' => "&#39;",
            '@' | '/' | '\\' | '_' | '|' if mode == Mode::Cell => {
                f.write_str(&text[start..=i])?;
                f.write_str("<wbr>")?;
                start = i + 1;
                continue;
            }
            c if is_hidden(c) => "",
            _ => continue,
        };
        f.write_str(&text[start..i])?;
        start = i + c.len_utf8();
        if !entity.is_empty() {
            f.write_str(entity)?;
        } else if mode != Mode::Plain {
            let n = c as u32;
            write!(
                f,
                r#"<span class="ctl" title="U+{n:04X}">\u{{{n:x}}}</span>"#
            )?;
        } else {
            write!(f, "\\u{{{:x}}}", c as u32)?;
        }
    }
    f.write_str(&text[start..])
}

/// Text escaped for HTML text, attribute values and SVG: `& < > " '` as entities,
/// hidden characters ([`is_hidden`]) as a plain `\u{..}`.
pub struct Esc<'a>(pub &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        escape(f, self.0, Mode::Plain)
    }
}

/// Text escaped as [`Esc`] does, each hidden character's `\u{..}` highlighted so a
/// reader sees it is not part of the name. For HTML text only (it writes markup).
pub struct Txt<'a>(pub &'a str);

impl fmt::Display for Txt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        escape(f, self.0, Mode::Marked)
    }
}

/// Text escaped as [`Txt`] does, with line-break opportunities after `@ / \ _ |` so
/// addresses and paths wrap at their separators in a narrow cell, not mid-word.
pub struct Brk<'a>(pub &'a str);

impl fmt::Display for Brk<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        escape(f, self.0, Mode::Cell)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_printable_ascii_test_is_the_range_test_for_every_byte() {
        for b in 0..=255u8 {
            assert_eq!(printable_ascii(&[b]), (0x20..0x7f).contains(&b), "{b:#x}");
            assert_eq!(printable_ascii(&[b'a', b, b'z']), (0x20..0x7f).contains(&b));
        }
        assert!(printable_ascii(b""));
        assert!(!printable_ascii("caf\u{e9}".as_bytes()));
    }

    /// `json_str` writes what `json_to_writer` writes for a string: every byte alone
    /// and between plain ones, then random strings of the characters that need care.
    #[test]
    fn json_str_is_the_serializers_string() {
        let reference = |s: &str| {
            let mut out = Vec::new();
            json_to_writer(&mut out, s).unwrap();
            out
        };
        let quick = |s: &str| {
            let mut out = b"x".to_vec();
            json_str(&mut out, s).unwrap();
            out.split_off(1)
        };
        for c in (0..=0x3000u32).filter_map(char::from_u32) {
            for s in [c.to_string(), format!("ab{c}cd"), format!("{c}{c}")] {
                assert_eq!(quick(&s), reference(&s), "{s:?}");
            }
        }
        let pool = [
            'a', 'Z', ' ', '"', '\\', '/', '\u{7f}', '\u{1b}', 'é', '\u{202e}', '\n',
        ];
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..2000 {
            let s: String = (0..rng.usize(0..12))
                .map(|_| pool[rng.usize(..pool.len())])
                .collect();
            assert_eq!(quick(&s), reference(&s), "{s:?}");
        }
    }

    #[test]
    fn terminal_escapes() {
        assert_eq!(terminal_safe("a\x1b[31mb"), "a\\u{1b}[31mb");
        assert_eq!(terminal_safe("x\u{202e}y\u{9b}"), "x\\u{202e}y\\u{9b}");
        assert_eq!(
            terminal_safe(r"NT AUTHORITY\SYSTEM é"),
            r"NT AUTHORITY\SYSTEM é"
        );
    }

    #[test]
    fn json_escapes_what_acts_on_a_terminal_and_parses_back_the_same() {
        let text = "a\u{1b}[31m\u{9b}2J\u{202e}x\u{2028}y\u{7f}é\n\"";
        let mut out = Vec::new();
        json_to_writer(&mut out, &serde_json::json!({ "actor": text })).unwrap();
        let written = String::from_utf8(out).unwrap();
        assert_eq!(
            written,
            r#"{"actor":"a\u001b[31m\u009b2J\u202ex\u2028y\u007fé\n\""}"#
        );
        let back: serde_json::Value = serde_json::from_str(&written).unwrap();
        assert_eq!(back["actor"], text);
        // All-ASCII fragments take a shortcut that must still see DEL.
        let mut out = Vec::new();
        json_to_writer(&mut out, "plain ascii\u{7f}").unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), r#""plain ascii\u007f""#);
    }

    #[test]
    fn invisible_characters_are_shown_alike_in_every_medium() {
        // Regression: zero-width, filler and tag characters printed raw on a terminal
        // and in CSV, so names that differ only by one looked identical.
        let name = "a\u{200b}d\u{ad}m\u{3164}i\u{e0041}n\u{a0}x";
        let shown = r"a\u{200b}d\u{ad}m\u{3164}i\u{e0041}n\u{a0}x";
        assert_eq!(terminal_safe(name), shown);
        assert_eq!(spreadsheet_safe(name), shown);
        assert_eq!(Esc(name).to_string(), shown);
        let mut out = Vec::new();
        json_to_writer(&mut out, name).unwrap();
        let written = String::from_utf8(out).unwrap();
        assert_eq!(written, r#""a\u200bd\u00adm\u3164i\udb40\udc41n\u00a0x""#);
        assert_eq!(serde_json::from_str::<String>(&written).unwrap(), name);
        assert_eq!(terminal_safe("renée 名前 ü"), "renée 名前 ü");
    }

    #[test]
    fn spreadsheet_escapes() {
        assert_eq!(spreadsheet_safe("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(spreadsheet_safe("+1"), "'+1");
        assert_eq!(spreadsheet_safe("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(spreadsheet_safe("alice@contoso.com"), "alice@contoso.com");
        assert_eq!(spreadsheet_safe("\tx\u{1b}[2J"), "'\\u{9}x\\u{1b}[2J");
        assert_eq!(
            spreadsheet_safe("a\u{202e}b\r\nc"),
            "a\\u{202e}b\\u{d}\\u{a}c"
        );
    }
}
