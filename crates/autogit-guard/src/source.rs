//! Source-text scanning for `guard scan-repo`: Trojan Source bidi controls, invisible
//! characters and homoglyph identifiers, with 1-based line and column (in code points).

use serde::{Deserialize, Serialize};
use unicode_normalization::char::is_combining_mark;
use unicode_script::{Script, UnicodeScript};
use unicode_security::MixedScript;

use crate::unicode::ascii_prototype;

/// What a [`SourceFinding`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceFindingKind {
    /// Bidi embedding, override or isolate control (CVE-2021-42574, "Trojan Source").
    BidiControl,
    /// Zero-width, tag, variation-selector or other invisible format character.
    InvisibleChar,
    /// Identifier mixing scripts with letters that look like Latin ones (CVE-2021-42694).
    HomoglyphIdentifier,
    /// Identifier mixing scripts without a known look-alike.
    MixedScriptIdentifier,
}

impl SourceFindingKind {
    /// Stable rule id, used in SARIF output.
    pub fn rule_id(self) -> &'static str {
        match self {
            Self::BidiControl => "bidi-control",
            Self::InvisibleChar => "invisible-char",
            Self::HomoglyphIdentifier => "homoglyph-identifier",
            Self::MixedScriptIdentifier => "mixed-script-identifier",
        }
    }

    /// Whether CI should fail on it (the mixed-script case is a warning).
    pub fn is_error(self) -> bool {
        !matches!(self, Self::MixedScriptIdentifier)
    }
}

/// One finding in a source file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFinding {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in Unicode code points.
    pub column: usize,
    /// Byte offset of the character or identifier.
    pub byte_offset: usize,
    /// What was found.
    pub kind: SourceFindingKind,
    /// Human-readable description.
    pub message: String,
}

fn describe(c: char) -> &'static str {
    match c {
        '\u{202A}' => "LEFT-TO-RIGHT EMBEDDING",
        '\u{202B}' => "RIGHT-TO-LEFT EMBEDDING",
        '\u{202C}' => "POP DIRECTIONAL FORMATTING",
        '\u{202D}' => "LEFT-TO-RIGHT OVERRIDE",
        '\u{202E}' => "RIGHT-TO-LEFT OVERRIDE",
        '\u{2066}' => "LEFT-TO-RIGHT ISOLATE",
        '\u{2067}' => "RIGHT-TO-LEFT ISOLATE",
        '\u{2068}' => "FIRST STRONG ISOLATE",
        '\u{2069}' => "POP DIRECTIONAL ISOLATE",
        '\u{200B}' => "ZERO WIDTH SPACE",
        '\u{200C}' => "ZERO WIDTH NON-JOINER",
        '\u{200D}' => "ZERO WIDTH JOINER",
        '\u{2060}' => "WORD JOINER",
        '\u{FEFF}' => "ZERO WIDTH NO-BREAK SPACE",
        '\u{00AD}' => "SOFT HYPHEN",
        _ => "invisible character",
    }
}

/// Scan one text file. Linear in its length.
pub fn scan_source(text: &str) -> Vec<SourceFinding> {
    let mut out = Vec::new();
    let mut line = 1;
    let mut col = 0;
    let mut prev: Option<char> = None;
    // (byte start, line, column, follows a backslash)
    let mut ident: Option<(usize, usize, usize, bool)> = None;
    let mut iter = text.char_indices().peekable();
    while let Some((at, c)) = iter.next() {
        col += 1;
        let next = iter.peek().map(|&(_, n)| n);
        let ident_char =
            c.is_alphanumeric() || c == '_' || (ident.is_some() && is_combining_mark(c));
        match (ident_char, ident) {
            // Right after a backslash it is an escape sequence (`\u200c…`), not an identifier.
            (true, None) => ident = Some((at, line, col, prev == Some('\\'))),
            (false, Some((start, l, cl, escaped))) => {
                if !escaped {
                    check_identifier(&text[start..at], start, l, cl, &mut out);
                }
                ident = None;
            }
            _ => {}
        }
        if matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}') {
            out.push(SourceFinding {
                line,
                column: col,
                byte_offset: at,
                kind: SourceFindingKind::BidiControl,
                message: format!("bidirectional control U+{:04X} {}", c as u32, describe(c)),
            });
        } else if (!c.is_ascii() || c.is_ascii_control())
            && let Some(rule) = crate::unicode::classify_for_source(c, prev, next, at)
        {
            out.push(SourceFinding {
                line,
                column: col,
                byte_offset: at,
                kind: SourceFindingKind::InvisibleChar,
                message: format!("{rule}: U+{:04X} {}", c as u32, describe(c)),
            });
        }
        if c == '\n' {
            line += 1;
            col = 0;
        }
        prev = Some(c);
    }
    if let Some((start, l, cl, false)) = ident {
        check_identifier(&text[start..], start, l, cl, &mut out);
    }
    out
}

fn check_identifier(
    id: &str,
    start: usize,
    line: usize,
    column: usize,
    out: &mut Vec<SourceFinding>,
) {
    if id.is_ascii() || !id.bytes().any(|b| b.is_ascii_alphabetic()) || id.is_single_script() {
        return;
    }
    let lookalikes: Vec<String> = id
        .chars()
        .filter(|c| !c.is_ascii() && c.is_alphabetic() && c.script() != Script::Latin)
        .filter_map(|c| ascii_prototype(c).map(|p| format!("U+{:04X} looks like '{p}'", c as u32)))
        .collect();
    let (kind, message) = if lookalikes.is_empty() {
        (
            SourceFindingKind::MixedScriptIdentifier,
            format!("identifier `{id}` mixes scripts"),
        )
    } else {
        (
            SourceFindingKind::HomoglyphIdentifier,
            format!(
                "identifier `{id}` contains look-alike letters: {}",
                lookalikes.join(", ")
            ),
        )
    };
    out.push(SourceFinding {
        line,
        column,
        byte_offset: start,
        kind,
        message,
    });
}
