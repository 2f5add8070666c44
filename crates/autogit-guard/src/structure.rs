//! Stage 3: structural signs of injected instructions.
//!
//! Fake role markers at line starts, chat-template section headers, instructions hidden in
//! HTML or markdown comments, in link text, image alt text and HTML attributes, CSS that hides
//! text, unusual delimiter density or whitespace padding, and instruction-like text inside
//! data fields (JSON values). Comments and links are found with `memchr::memmem`-style
//! scanning over bounded windows, so the stage stays linear.

use aho_corasick::{AhoCorasick, AhoCorasickKind};
use memchr::memmem;
use regex::Regex;

use crate::{GuardError, Hit, Span, Stage};

/// Longest comment, link text or field value that is inspected.
const MAX_INSPECT: usize = 4096;
/// Most matches of one structural regex that are inspected per text.
const MAX_MATCHES: usize = 512;

#[derive(Debug)]
pub(crate) struct Structure {
    system_line: Regex,
    turn_line: Regex,
    generic_token: Regex,
    section_header: Regex,
    markdown_comment: Regex,
    attribute: Regex,
    json_field: Regex,
    instruction_like: Regex,
    hidden_css: AhoCorasick,
    comment_open: memmem::Finder<'static>,
    comment_close: memmem::Finder<'static>,
    link_mid: memmem::Finder<'static>,
    spaces: memmem::Finder<'static>,
    template_open: memmem::Finder<'static>,
    header_marks: memmem::Finder<'static>,
}

/// What the text before each colon says, for the regexes that need a colon: one `memchr`
/// loop over the colons instead of a search per literal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ColonGates {
    /// `system:`, `developer:`, `sys]:` (for `system_line`).
    system: bool,
    /// A role name before a colon (for `turn_line`).
    turn: bool,
    /// `]:` (for `markdown_comment`).
    markdown_comment: bool,
    /// A CSS property that can hide text (for `hidden_css`).
    css: bool,
}

impl ColonGates {
    fn all(self) -> bool {
        self.system && self.turn && self.markdown_comment && self.css
    }
}

const TURN_NAMES: &[&[u8]] = &[
    b"assistant",
    b"user",
    b"human",
    b"ai",
    b"bot",
    b"model",
    b"gpt",
    b"chatgpt",
    b"claude",
];
const SYSTEM_NAMES: &[&[u8]] = &[b"system", b"developer", b"sys"];
/// The last word of the CSS properties that can hide text (`font-size`, `background-color`
/// end in these).
const CSS_NAMES: &[&[u8]] = &[b"display", b"visibility", b"size", b"color", b"opacity"];

/// The gates for lower-cased `bytes`. A gate is never false where its regex can match.
fn colon_gates(bytes: &[u8]) -> ColonGates {
    let mut g = ColonGates::default();
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    // The name that ends at `end`: ASCII letters going back at most 16 bytes.
    let name_before = |end: usize| {
        let from = end.saturating_sub(16);
        let len = bytes[from..end]
            .iter()
            .rev()
            .take_while(|b| b.is_ascii_lowercase())
            .count();
        &bytes[end - len..end]
    };
    for colon in memchr::memchr_iter(b':', bytes) {
        let before = &bytes[..colon];
        g.markdown_comment |= before.last() == Some(&b']');
        // `name[ \t]*:`
        let end = before.len() - before.iter().rev().take_while(|b| blank(b)).count();
        let name = name_before(end);
        g.turn |= TURN_NAMES.contains(&name);
        // `hidden_css` has no word boundaries: "whitedisplay:none" matches.
        g.css |= CSS_NAMES.iter().any(|n| name.ends_with(n));
        // `name[ \t]*[\])>]?[ \t]*:`
        let mut end = end;
        if end > 0 && matches!(bytes[end - 1], b']' | b')' | b'>') {
            end -= 1;
            end -= bytes[..end].iter().rev().take_while(|b| blank(b)).count();
        }
        g.system |= SYSTEM_NAMES.contains(&name_before(end)) || SYSTEM_NAMES.contains(&name);
        if g.all() {
            break;
        }
    }
    g
}

fn hit(rule: &'static str, weight: f32, start: usize, end: usize) -> Hit {
    Hit {
        stage: Stage::Structure,
        rule,
        weight,
        span: Span::new(start, end),
    }
}

impl Structure {
    pub(crate) fn new() -> Result<Self, GuardError> {
        let re = |p: &str| Regex::new(p).map_err(|e| GuardError::Pattern(e.to_string()));
        Ok(Self {
            system_line: re(r"(?m-u)^[ \t>*#_\[(<-]*(?:system|developer|sys)[ \t]*[\])>]?[ \t]*:")?,
            turn_line: re(
                r"(?m-u)^[ \t>*#_]*(?:assistant|user|human|ai|bot|model|gpt|chatgpt|claude)[ \t]*:",
            )?,
            generic_token: re(r"(?-u)<\|[a-z_]{2,40}\|>")?,
            section_header: re(
                r"(?m-u)^#{2,}[ \t]*(?:instruction|system|response|input)s?[ \t]*:?[ \t]*$",
            )?,
            markdown_comment: re(r"(?m)^\[(?://|comment|_)\]:[ \t]*(?:#|<>)[ \t]*\(([^)\n]*)\)")?,
            attribute: re(r#"(?-u:\b)(?:alt|title|aria-label)[ \t]*=[ \t]*"([^"]*)""#)?,
            json_field: re(r#""[^"\n]+"[ \t]*:[ \t]*"((?:[^"\\\n]|\\.)*)""#)?,
            instruction_like: re(
                r"(?-u:\b)(?:ignore|disregard|forget|override|reveal|print|output|send|forward|email|execute|run|delete|respond|reply|say|tell|write|you\s+must|you\s+should|you\s+are\s+now|do\s+not|don't|stop|always|never|please)(?-u:\b)[^\n]{0,80}?(?-u:\b)(?:instructions?|assistant|ai|llm|model|system|prompt|previous|above|passwords?|secrets?|api\s+keys?|credentials?|tokens?|the\s+user|rules)(?-u:\b)",
            )?,
            hidden_css: AhoCorasick::builder()
                .kind(Some(AhoCorasickKind::DFA))
                .build([
                    "display:none",
                    "display: none",
                    "visibility:hidden",
                    "visibility: hidden",
                    "font-size:0",
                    "font-size: 0",
                    "font-size:1px",
                    "color:white",
                    "color: white",
                    "color:#fff",
                    "color: #fff",
                    "opacity:0;",
                    "opacity: 0;",
                ])
                .map_err(|e| GuardError::Pattern(e.to_string()))?,
            comment_open: memmem::Finder::new(b"<!--").into_owned(),
            comment_close: memmem::Finder::new(b"-->").into_owned(),
            link_mid: memmem::Finder::new(b"](").into_owned(),
            spaces: memmem::Finder::new(&[b' '; 32]).into_owned(),
            template_open: memmem::Finder::new(b"<|").into_owned(),
            header_marks: memmem::Finder::new(b"##").into_owned(),
        })
    }

    /// Does this fragment read like an instruction to the model?
    pub(crate) fn instruction_like(&self, s: &str) -> bool {
        self.instruction_like.is_match(s)
    }

    fn suspicious_inside(&self, lower: &str, span: Span, stage2: &[Hit]) -> bool {
        let end = span.end.min(span.start + MAX_INSPECT);
        let mut e = end;
        while !lower.is_char_boundary(e) {
            e -= 1;
        }
        self.instruction_like(&lower[span.start..e])
            || stage2
                .iter()
                .any(|h| h.weight >= 0.3 && h.span.start >= span.start && h.span.end <= span.end)
    }

    /// Scan lower-cased text; `stage2` are the pattern hits already found in it.
    pub(crate) fn scan(&self, lower: &str, stage2: &[Hit], out: &mut Vec<Hit>) {
        let bytes = lower.as_bytes();
        // Each structural regex runs only when what it needs is present (cheap SIMD searches
        // and one pass over the colons), which keeps ordinary text on the fast path.
        let gates = colon_gates(bytes);
        let has = |b: u8| memchr::memchr(b, bytes).is_some();
        let system_lines = if gates.system {
            self.system_line
                .find_iter(lower)
                .take(MAX_MATCHES)
                .collect()
        } else {
            Vec::new()
        };
        for m in system_lines {
            let line_end = memchr_from(bytes, b'\n', m.end()).unwrap_or(bytes.len());
            let rest = Span::new(m.end(), line_end);
            let rest_text = lower[m.end()..line_end].trim_start();
            let weight =
                if rest_text.starts_with("you ") || self.suspicious_inside(lower, rest, stage2) {
                    0.65
                } else {
                    0.3
                };
            out.push(hit("fake_role_marker", weight, m.start(), line_end));
        }
        let turn_lines = if gates.turn {
            self.turn_line.find_iter(lower).take(MAX_MATCHES).collect()
        } else {
            Vec::new()
        };
        for m in turn_lines {
            out.push(hit("fake_dialogue_turn", 0.25, m.start(), m.end()));
        }
        let tokens = if self.template_open.find(bytes).is_some() {
            self.generic_token
                .find_iter(lower)
                .take(MAX_MATCHES)
                .collect()
        } else {
            Vec::new()
        };
        for m in tokens {
            out.push(hit("chat_template_marker", 0.5, m.start(), m.end()));
        }
        let headers = if self.header_marks.find(bytes).is_some() {
            self.section_header
                .find_iter(lower)
                .take(MAX_MATCHES)
                .collect()
        } else {
            Vec::new()
        };
        for m in headers {
            out.push(hit("template_section_header", 0.4, m.start(), m.end()));
        }
        self.html_comments(lower, stage2, out);
        let md_comments = if gates.markdown_comment {
            self.markdown_comment
                .captures_iter(lower)
                .take(MAX_MATCHES)
                .collect()
        } else {
            Vec::new()
        };
        for c in md_comments {
            if let (Some(all), Some(body)) = (c.get(0), c.get(1))
                && self.suspicious_inside(lower, Span::new(body.start(), body.end()), stage2)
            {
                out.push(hit(
                    "hidden_comment_instruction",
                    0.65,
                    all.start(),
                    all.end(),
                ));
            }
        }
        self.links(lower, stage2, out);
        let attributes = if has(b'=') && has(b'"') {
            self.attribute
                .captures_iter(lower)
                .take(MAX_MATCHES)
                .collect()
        } else {
            Vec::new()
        };
        for c in attributes {
            if let (Some(all), Some(body)) = (c.get(0), c.get(1))
                && self.suspicious_inside(lower, Span::new(body.start(), body.end()), stage2)
            {
                out.push(hit("attribute_instruction", 0.5, all.start(), all.end()));
            }
        }
        if gates.css
            && let Some(m) = self.hidden_css.find(lower)
        {
            out.push(hit("hidden_css_text", 0.35, m.start(), m.end()));
        }
        self.density(bytes, out);
        let fields: Vec<_> = self
            .json_field
            .captures_iter(lower)
            .take(MAX_MATCHES)
            .collect();
        for c in &fields {
            if let (Some(all), Some(body)) = (c.get(0), c.get(1))
                && self.suspicious_inside(lower, Span::new(body.start(), body.end()), stage2)
            {
                out.push(hit(
                    "instruction_in_data_field",
                    0.55,
                    all.start(),
                    all.end(),
                ));
            }
        }
    }

    fn html_comments(&self, lower: &str, stage2: &[Hit], out: &mut Vec<Hit>) {
        let bytes = lower.as_bytes();
        let mut pos = 0;
        let mut seen = 0;
        while let Some(start) = find(&self.comment_open, bytes, pos) {
            seen += 1;
            let body_start = start + 4;
            let (body_end, end) = match find(&self.comment_close, bytes, body_start) {
                Some(e) => (e, e + 3),
                None => (bytes.len(), bytes.len()),
            };
            if seen <= MAX_MATCHES
                && self.suspicious_inside(lower, Span::new(body_start, body_end), stage2)
            {
                out.push(hit("hidden_comment_instruction", 0.65, start, end));
            }
            pos = end;
        }
    }

    /// Markdown links `[text](url "title")` and images `![alt](url)`.
    fn links(&self, lower: &str, stage2: &[Hit], out: &mut Vec<Hit>) {
        let bytes = lower.as_bytes();
        let mut pos = 0;
        let mut seen = 0;
        while let Some(mid) = find(&self.link_mid, bytes, pos) {
            pos = mid + 2;
            seen += 1;
            if seen > MAX_MATCHES {
                break;
            }
            let window_start = mid.saturating_sub(MAX_INSPECT);
            let Some(open) = bytes[window_start..mid]
                .iter()
                .rposition(|&b| b == b'[')
                .map(|p| window_start + p)
            else {
                continue;
            };
            if bytes[open + 1..mid].contains(&b']') {
                continue;
            }
            let window_end = (mid + 2 + MAX_INSPECT).min(bytes.len());
            let close = bytes[mid + 2..window_end]
                .iter()
                .position(|&b| b == b')')
                .map_or(window_end, |p| mid + 2 + p + 1);
            let image = open > 0 && bytes[open - 1] == b'!';
            let text_span = Span::new(open + 1, mid);
            let title_span = Span::new(mid + 2, close.saturating_sub(1).max(mid + 2));
            if self.suspicious_inside(lower, text_span, stage2)
                || self.suspicious_inside(lower, title_span, stage2)
            {
                let rule = if image {
                    "image_alt_instruction"
                } else {
                    "link_text_instruction"
                };
                out.push(hit(rule, 0.5, if image { open - 1 } else { open }, close));
            }
        }
    }

    fn density(&self, bytes: &[u8], out: &mut Vec<Hit>) {
        let mut lines = 0usize;
        let mut delimiter_lines = 0usize;
        let mut blank_run = 0usize;
        let mut padding: Option<(usize, usize)> = None;
        let mut blank_start = 0;
        let mut start = 0;
        // Line by line with memchr; only lines that start with a delimiter byte are examined.
        while start < bytes.len() {
            let end = memchr_from(bytes, b'\n', start).unwrap_or(bytes.len());
            let line = bytes[start..end].trim_ascii();
            if line.is_empty() {
                if blank_run == 0 {
                    blank_start = start;
                }
                blank_run += 1;
                if blank_run >= 25 && padding.is_none() {
                    padding = Some((blank_start, end));
                }
            } else {
                blank_run = 0;
                lines += 1;
                if DELIMITERS.contains(&line[0])
                    && line.len() >= 3
                    && line.iter().all(|c| DELIMITERS.contains(c))
                {
                    delimiter_lines += 1;
                }
            }
            start = end + 1;
        }
        if delimiter_lines >= 5 && delimiter_lines * 4 >= lines {
            out.push(hit("delimiter_density", 0.3, 0, bytes.len()));
        }
        if padding.is_none() {
            // Find 32-space blocks with a prebuilt searcher and measure the run at each.
            let mut from = 0;
            while let Some(p) = find(&self.spaces, bytes, from) {
                let end = bytes[p..]
                    .iter()
                    .position(|&b| b != b' ')
                    .map_or(bytes.len(), |e| p + e);
                if end - p >= 300 {
                    padding = Some((p, end));
                    break;
                }
                from = end;
            }
        }
        if let Some((s, e)) = padding {
            out.push(hit("whitespace_padding", 0.25, s, e));
        }
    }
}

const DELIMITERS: &[u8] = b"=-#*_~`<>|/\\+";

fn memchr_from(bytes: &[u8], needle: u8, from: usize) -> Option<usize> {
    memchr::memchr(needle, bytes.get(from..)?).map(|p| from + p)
}

fn find(finder: &memmem::Finder<'_>, bytes: &[u8], from: usize) -> Option<usize> {
    finder.find(bytes.get(from..)?).map(|p| from + p)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    static STRUCTURE: std::sync::LazyLock<super::Structure> =
        std::sync::LazyLock::new(|| super::Structure::new().unwrap());

    const PIECES: &[&str] = &[
        "system",
        "sys",
        "developer",
        "user",
        "chatgpt",
        "ai",
        "claude",
        "color",
        "font-size",
        "opacity",
        "display",
        "visibility",
        ":",
        ":",
        " ",
        "\t",
        "\n",
        "]",
        ")",
        ">",
        "[",
        "//",
        "#",
        "_",
        "-",
        "x",
        "(",
        "none",
        "0;",
        "white",
        "<",
        "!",
        "é",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]
        /// A gate is never closed where its regex matches.
        #[test]
        fn colon_gates_never_miss_a_regex_match(
            parts in proptest::collection::vec(proptest::sample::select(PIECES), 0..24),
        ) {
            let st = &*STRUCTURE;
            let text = parts.concat();
            let g = super::colon_gates(text.as_bytes());
            prop_assert!(g.system || !st.system_line.is_match(&text), "system {:?}", text);
            prop_assert!(g.turn || !st.turn_line.is_match(&text), "turn {:?}", text);
            prop_assert!(
                g.markdown_comment || !st.markdown_comment.is_match(&text),
                "markdown comment {:?}",
                text
            );
            prop_assert!(g.css || !st.hidden_css.is_match(&text), "css {:?}", text);
        }
    }

    #[test]
    fn colon_gates_open_on_their_literals() {
        let g = super::colon_gates(b"x\n[system]: a\nuser : b\n[//]: # (c)\nstyle=\"color:white\"");
        assert_eq!(
            g,
            super::ColonGates {
                system: true,
                turn: true,
                markdown_comment: true,
                css: true
            }
        );
        assert_eq!(
            super::colon_gates(b"plain text: with colons"),
            super::ColonGates::default()
        );
        assert!(super::colon_gates(b"-system: x").system);
        assert!(super::colon_gates(b"(sys) : x").system);
        assert!(super::colon_gates(b"a{background-color:white}").css);
        assert!(super::colon_gates(b"font-size:0").css);
        assert!(!super::colon_gates(b"> **assistant**\t:").turn);
        assert!(super::colon_gates(b"## assistant\t:").turn);
    }
}
