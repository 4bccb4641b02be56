//! Rule text for the HTML report: a description's paragraphs and line breaks, and a
//! rule's investigation guide (Elastic's `note` and `setup`, Markdown) as markup.
//!
//! A rule file is text someone handed the responder, like an archive: nothing in it may
//! become markup of its own. The Markdown is parsed into events and each event is
//! written here, so raw HTML in it is shown as text, every text goes through [`Txt`]
//! (entities; control, bidi and zero-width characters made visible), and only an
//! `http:` or `https:` link becomes a link (`rel="noreferrer noopener"`); an image is
//! its alternative text, never loaded. Headings are demoted under the page's own.

use std::fmt::Write as _;

use pulldown_cmark::{Event, HeadingLevel, Parser, Tag};

use crate::escape::{Esc, Txt};

/// At most this many characters of one guide are rendered; the rest is counted.
pub const GUIDE_MAX: usize = 64 * 1024;

/// Writes to a `String`, which cannot fail.
macro_rules! w {
    ($dst:expr, $($arg:tt)*) => {{
        // Writing into a String never fails.
        let _ = write!($dst, $($arg)*);
    }};
}

/// Plain text with its blank lines as paragraphs and its other line breaks as `<br>`
/// (a rule's description: Elastic wraps it at 120 columns, so a single break inside a
/// paragraph is a space).
pub fn prose(s: &mut String, text: &str) {
    let text = text.replace("\r\n", "\n");
    for para in text.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
        s.push_str("<p>");
        // Elastic's wrapped lines join with a space; a line of a list keeps its break.
        for (i, line) in para.lines().enumerate() {
            if i > 0 {
                let item = line.trim_start().starts_with(['-', '*', '•']);
                s.push_str(if item { "<br>" } else { " " });
            }
            w!(s, "{}", Txt(line.trim()));
        }
        s.push_str("</p>");
    }
}

/// Whether a link's destination may be followed: `http:` or `https:` only.
fn followable(url: &str) -> bool {
    let lower = url.trim_start().to_ascii_lowercase();
    (lower.starts_with("https://") || lower.starts_with("http://"))
        && !url
            .chars()
            .any(|c| c.is_whitespace() || crate::escape::is_hidden(c))
}

/// Text of a code block: each line escaped, the lines kept.
pub fn block_text(s: &mut String, text: &str) {
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            s.push('\n');
        }
        w!(s, "{}", Txt(&line.replace('\t', "    ")));
    }
}

/// Markdown as markup (see the module's comment).
pub fn guide(s: &mut String, markdown: &str) {
    let (text, cut) = match markdown.char_indices().nth(GUIDE_MAX) {
        Some((at, _)) => (&markdown[..at], markdown[at..].chars().count()),
        None => (markdown, 0),
    };
    // What closes each open element, innermost last.
    let mut open: Vec<String> = Vec::new();
    let mut in_code = false;
    for event in Parser::new(text) {
        match event {
            Event::Start(tag) => {
                let (start, end): (String, String) = match tag {
                    Tag::Paragraph => ("<p>".into(), "</p>".into()),
                    Tag::Heading { level, .. } => {
                        let n = match level {
                            HeadingLevel::H1 => 3,
                            HeadingLevel::H2 => 4,
                            HeadingLevel::H3 => 5,
                            _ => 6,
                        };
                        (format!("<h{n}>"), format!("</h{n}>"))
                    }
                    Tag::BlockQuote(_) => ("<blockquote>".into(), "</blockquote>".into()),
                    Tag::CodeBlock(_) => {
                        in_code = true;
                        ("<pre><code>".into(), "</code></pre>".into())
                    }
                    Tag::HtmlBlock => ("<pre class=\"raw\">".into(), "</pre>".into()),
                    Tag::List(Some(first)) => (format!("<ol start=\"{first}\">"), "</ol>".into()),
                    Tag::List(None) => ("<ul>".into(), "</ul>".into()),
                    Tag::Item => ("<li>".into(), "</li>".into()),
                    Tag::Emphasis => ("<em>".into(), "</em>".into()),
                    Tag::Strong => ("<strong>".into(), "</strong>".into()),
                    Tag::Strikethrough => ("<s>".into(), "</s>".into()),
                    Tag::Link { dest_url, .. } if followable(&dest_url) => (
                        format!(r#"<a href="{}" rel="noreferrer noopener">"#, Esc(&dest_url)),
                        "</a>".into(),
                    ),
                    // Any other scheme (javascript:, data:, a relative path): its text,
                    // and where it pointed as text.
                    Tag::Link { dest_url, .. } => (
                        "<span>".into(),
                        format!(r#"</span> <span class="muted">({})</span>"#, Txt(&dest_url)),
                    ),
                    Tag::Image { dest_url, .. } => (
                        "<span class=\"muted\">[image: ".into(),
                        format!("] ({})</span>", Txt(&dest_url)),
                    ),
                    _ => ("<span>".into(), "</span>".into()),
                };
                s.push_str(&start);
                open.push(end);
            }
            Event::End(_) => {
                if let Some(end) = open.pop() {
                    if end == "</code></pre>" {
                        in_code = false;
                    }
                    s.push_str(&end);
                }
            }
            Event::Text(t) if in_code => block_text(s, &t),
            Event::Text(t) => w!(s, "{}", Txt(&t)),
            Event::Code(t) => w!(s, "<code>{}</code>", Txt(&t)),
            // Raw HTML is shown, not obeyed.
            Event::Html(t) => block_text(s, t.trim_end_matches('\n')),
            Event::InlineHtml(t) => w!(s, r#"<code class="raw">{}</code>"#, Txt(&t)),
            Event::InlineMath(t) | Event::DisplayMath(t) => w!(s, "{}", Txt(&t)),
            Event::FootnoteReference(t) => w!(s, "[^{}]", Txt(&t)),
            Event::SoftBreak => s.push('\n'),
            Event::HardBreak => s.push_str("<br>"),
            Event::Rule => s.push_str("<hr>"),
            Event::TaskListMarker(done) => s.push_str(if done { "[x] " } else { "[ ] " }),
        }
    }
    // The parser closes what it opens; should it not, the page stays well formed.
    while let Some(end) = open.pop() {
        s.push_str(&end);
    }
    if cut > 0 {
        w!(
            s,
            r#"<p class="more">… (+{cut} characters — see the rule file)</p>"#
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(md: &str) -> String {
        let mut s = String::new();
        guide(&mut s, md);
        s
    }

    #[test]
    fn guide_markdown_becomes_markup() {
        let out = render(
            "## Triage and analysis\n\n### Possible investigation steps\n\n- Review `event.action`.\n- Check **the actor**.\n\n1. one\n2. two\n\n> note\n\n```\nGet-X -Identity 'a'\n\tSet-Y\n```\n\nSee [the docs](https://learn.microsoft.com/x?a=1&b=2).",
        );
        for part in [
            "<h4>Triage and analysis</h4>",
            "<h5>Possible investigation steps</h5>",
            "<ul><li>Review <code>event.action</code>.</li>",
            "<strong>the actor</strong>",
            r#"<ol start="1">"#,
            "<blockquote>",
            "<pre><code>Get-X -Identity &#39;a&#39;\n    Set-Y\n</code></pre>",
            r#"<a href="https://learn.microsoft.com/x?a=1&amp;b=2" rel="noreferrer noopener">the docs</a>"#,
        ] {
            assert!(out.contains(part), "{part:?} not in {out}");
        }
    }

    /// A hostile guide: markup, script links, images, bidi and terminal escapes.
    #[test]
    fn hostile_guide_stays_text() {
        let out = render(concat!(
            "<script>alert(1)</script>\n\n",
            "Text <img src=x onerror=alert(2)> and <b>bold</b>.\n\n",
            "[click](javascript:alert(3)) [data](data:text/html,<script>alert(4)</script>) ",
            "[rel](/etc/passwd) [spaced](https://x.example/a\u{202e}b)\n\n",
            "![pic](https://tracker.example/p.png)\n\n",
            "adm\u{202e}moc \u{1b}[31mred\u{7} \u{2066}iso\n\n",
            "<a href=\"https://x.example\" onclick=\"alert(5)\">raw link</a>\n",
        ));
        for bad in [
            "<script",
            "<img",
            "<b>",
            "href=\"javascript",
            "href=\"data",
            "href=\"/etc",
            "onclick=\"",
            "<a href=\"https://x.example\"",
            "\u{202e}",
            "\u{1b}",
            "\u{2066}",
            "\u{7}",
        ] {
            assert!(!out.contains(bad), "{bad:?} in {out}");
        }
        for shown in [
            "&lt;script&gt;alert(1)&lt;/script&gt;",
            "&lt;img src=x onerror=alert(2)&gt;",
            "javascript:alert(3)",
            "[image: pic]",
            r"\u{202e}",
            r"\u{1b}",
        ] {
            assert!(out.contains(shown), "{shown:?} not in {out}");
        }
        // The only link left is none: every destination above was refused.
        assert!(!out.contains("<a "), "{out}");
    }

    #[test]
    fn a_huge_guide_is_cut_and_counted() {
        let out = render(&"word ".repeat(GUIDE_MAX));
        assert!(out.len() < 2 * GUIDE_MAX, "{}", out.len());
        assert!(out.contains(&format!("(+{} characters", 4 * GUIDE_MAX)));
    }

    #[test]
    fn descriptions_keep_their_paragraphs() {
        let mut s = String::new();
        prose(
            &mut s,
            "Detects a thing. It is\nwrapped at 120 columns.\n\nSecond <b>para</b>:\n- one\n- two\n",
        );
        assert_eq!(
            s,
            "<p>Detects a thing. It is wrapped at 120 columns.</p><p>Second &lt;b&gt;para&lt;/b&gt;:<br>- one<br>- two</p>"
        );
        assert!(!s.contains(r"\u{a}"));
    }
}
