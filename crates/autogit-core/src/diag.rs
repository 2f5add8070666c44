//! Diagnostics: every problem found in the configuration, with a location, the field path,
//! what was found and what would be valid. Rendered like rustc/miette, or as JSON.

use crate::source::{Loc, Origin, Sources, line_text};
use serde::Serialize;
use std::fmt::Write as _;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// One finding. `code` is a stable kebab-case identifier documented in docs/config.md.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub code: &'static str,
    pub message: String,
    /// Dotted field path (`gitlab.ports.http`, `runners.gpu[1].host`); empty for the document.
    pub path: String,
    pub loc: Option<Loc>,
    /// The label under the caret.
    pub label: Option<String>,
    pub found: Option<String>,
    pub expected: Option<String>,
    pub help: Option<String>,
    /// A second location (the first definition of a duplicate, the other side of a collision).
    pub related: Option<(Loc, String)>,
    /// Shown in the snippet instead of the value at `loc`, for a value that holds a secret (a
    /// URL with a password): the rendered diagnostic never repeats it.
    pub replacement: Option<String>,
}

impl Diagnostic {
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            code,
            message: message.into(),
            path: String::new(),
            loc: None,
            label: None,
            found: None,
            expected: None,
            help: None,
            related: None,
            replacement: None,
        }
    }

    pub fn warning(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(code, message)
        }
    }

    pub fn at(mut self, loc: Option<Loc>) -> Self {
        self.loc = loc;
        self
    }
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }
    pub fn found(mut self, found: impl Into<String>) -> Self {
        self.found = Some(found.into());
        self
    }
    pub fn expected(mut self, expected: impl Into<String>) -> Self {
        self.expected = Some(expected.into());
        self
    }
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
    pub fn related(mut self, loc: Loc, what: impl Into<String>) -> Self {
        self.related = Some((loc, what.into()));
        self
    }

    /// Shows `shown` in the snippet in place of the value (which holds a secret).
    pub fn replacement(mut self, shown: impl Into<String>) -> Self {
        self.replacement = Some(shown.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// A list of diagnostics; the configuration is usable only if it holds no error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }
    pub fn errors(&self) -> usize {
        self.0.iter().filter(|d| d.is_error()).count()
    }
    pub fn warnings(&self) -> usize {
        self.0.len() - self.errors()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }
    /// Stable order: by source, line, column, then message.
    pub fn sort(&mut self) {
        self.0.sort_by(|a, b| {
            let key = |d: &Diagnostic| d.loc.map(|l| (l.source, l.line, l.col));
            key(a).cmp(&key(b)).then_with(|| a.message.cmp(&b.message))
        });
    }
}

/// The JSON shape of one diagnostic (`--output json`).
#[derive(Debug, Serialize)]
pub struct DiagnosticJson<'a> {
    pub severity: Severity,
    pub code: &'a str,
    pub message: &'a str,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub column: Option<u32>,
    pub path: &'a str,
    pub found: Option<&'a str>,
    pub expected: Option<&'a str>,
    pub help: Option<&'a str>,
}

impl Diagnostic {
    pub fn to_json<'a>(&'a self, sources: &Sources) -> DiagnosticJson<'a> {
        let origin = self
            .loc
            .and_then(|l| sources.get(l.source))
            .map(|s| s.origin.to_string());
        DiagnosticJson {
            severity: self.severity,
            code: self.code,
            message: &self.message,
            file: origin,
            line: self.loc.map(|l| l.line),
            column: self.loc.map(|l| l.col),
            path: &self.path,
            found: self.found.as_deref(),
            expected: self.expected.as_deref(),
            help: self.help.as_deref(),
        }
    }
}

fn location_line(sources: &Sources, loc: Loc) -> String {
    match sources.get(loc.source) {
        Some(s) => match &s.origin {
            Origin::File(p) => format!("{p}:{}:{}", loc.line, loc.col),
            other => other.to_string(),
        },
        None => "<unknown>".to_owned(),
    }
}

/// Renders in the style of rustc: header, location, snippet with carets, notes.
pub fn render(d: &Diagnostic, sources: &Sources) -> String {
    let mut out = String::new();
    let sev = match d.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let _ = writeln!(out, "{sev}[{}]: {}", d.code, d.message);
    if let Some(loc) = d.loc {
        snippet(
            &mut out,
            sources,
            loc,
            d.label.as_deref(),
            d.replacement.as_deref(),
        );
    }
    if let Some((loc, what)) = &d.related {
        let _ = writeln!(out, "   = note: {what} at {}", location_line(sources, *loc));
    }
    if !d.path.is_empty() {
        let _ = writeln!(out, "   = field: {}", d.path);
    }
    if let Some(found) = &d.found {
        let _ = writeln!(out, "   = found: {found}");
    }
    if let Some(expected) = &d.expected {
        let _ = writeln!(out, "   = expected: {expected}");
    }
    if let Some(help) = &d.help {
        let _ = writeln!(out, "   = help: {help}");
    }
    out
}

fn snippet(
    out: &mut String,
    sources: &Sources,
    loc: Loc,
    label: Option<&str>,
    replacement: Option<&str>,
) {
    let _ = writeln!(out, "  --> {}", location_line(sources, loc));
    let Some(src) = sources.get(loc.source) else {
        return;
    };
    let (text, line, col) = match &src.origin {
        Origin::File(_) | Origin::BuiltIn(_) => match line_text(&src.text, loc.line) {
            Some(t) => (t.to_owned(), loc.line, loc.col),
            None => return,
        },
        // An env var or a flag: show `NAME=value` / the flag as a one-line snippet.
        Origin::Env(_) | Origin::Flag(_) => (src.text.clone(), 1, loc.col),
    };
    let mut chars: Vec<char> = text.chars().collect();
    let mut loc = loc;
    if let Some(r) = replacement {
        let at = (loc.col as usize).saturating_sub(1).min(chars.len());
        let end = (at + loc.len as usize).min(chars.len());
        chars.splice(at..end, r.chars());
        loc.len = r.chars().count() as u32;
    }
    // Long lines (minified or hostile input) are cut around the column.
    let start = (col as usize).saturating_sub(1).saturating_sub(40);
    let shown: String = chars.iter().skip(start).take(120).collect();
    let caret_col = (col as usize).saturating_sub(1) - start;
    let gutter = line.to_string().len().max(2);
    let pad = " ".repeat(gutter);
    let _ = writeln!(out, "{pad} |");
    let _ = writeln!(out, "{line:>gutter$} | {}", shown.trim_end());
    let width = (loc.len as usize).clamp(1, 120usize.saturating_sub(caret_col).max(1));
    let _ = write!(
        out,
        "{pad} | {}{}",
        " ".repeat(caret_col),
        "^".repeat(width)
    );
    match label {
        Some(l) => {
            let _ = writeln!(out, " {l}");
        }
        None => out.push('\n'),
    }
}

/// Renders every diagnostic followed by a one-line summary.
pub fn render_all(diags: &Diagnostics, sources: &Sources) -> String {
    let mut out = String::new();
    for d in &diags.0 {
        out.push_str(&render(d, sources));
        out.push('\n');
    }
    let (e, w) = (diags.errors(), diags.warnings());
    if e > 0 || w > 0 {
        let plural = |n: usize, s: &str| format!("{n} {s}{}", if n == 1 { "" } else { "s" });
        let _ = writeln!(out, "{}, {}", plural(e, "error"), plural(w, "warning"));
    }
    out
}

/// "did you mean" for a misspelt key or value: the closest candidate within a small distance.
pub fn suggest<'a>(found: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let found_l = found.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| {
            (
                strsim::damerau_levenshtein(&found_l, &c.to_ascii_lowercase()),
                c,
            )
        })
        .filter(|(d, c)| *d <= (c.len().max(found.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}
