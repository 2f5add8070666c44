//! Where a value came from: a file, an environment variable, a command-line flag, or a default.
//!
//! Every node of the merged configuration carries a [`Loc`] pointing into a [`Sources`] table so
//! that a diagnostic can always name the file, line and column (or the variable or flag) that
//! produced the offending value.

use std::fmt;

/// Index of a source in [`Sources`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SourceId(pub u32);

/// What kind of input a source is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A file on disk (path as the user gave it).
    File(String),
    /// An environment variable (`AUTOGIT_GITLAB__HOSTNAME`), or an entry of the `.env` file.
    Env(String),
    /// A command-line flag (`--preset team`, `--set gitlab.hostname=x`).
    Flag(String),
    /// Built into autogit (defaults, the embedded default config).
    BuiltIn(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(p) => write!(f, "{p}"),
            Origin::Env(v) => write!(f, "environment variable {v}"),
            Origin::Flag(flag) => write!(f, "command-line flag {flag}"),
            Origin::BuiltIn(what) => write!(f, "built-in {what}"),
        }
    }
}

/// One input text with its origin.
#[derive(Clone, Debug)]
pub struct Source {
    pub origin: Origin,
    pub text: String,
}

/// The table of all sources that went into a configuration.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    items: Vec<Source>,
}

impl Sources {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, origin: Origin, text: impl Into<String>) -> SourceId {
        let id = SourceId(u32::try_from(self.items.len()).unwrap_or(u32::MAX));
        self.items.push(Source {
            origin,
            text: text.into(),
        });
        id
    }

    pub fn get(&self, id: SourceId) -> Option<&Source> {
        self.items.get(id.0 as usize)
    }
}

/// A location: source, 1-based line, 1-based column (in characters), length in characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Loc {
    pub source: SourceId,
    pub line: u32,
    pub col: u32,
    pub len: u32,
}

impl Loc {
    pub fn new(source: SourceId, line: usize, col: usize, len: usize) -> Self {
        let c = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        Self {
            source,
            line: c(line),
            col: c(col),
            len: c(len),
        }
    }

    /// A location that covers a whole single-line source (an env var or a flag).
    pub fn whole(source: SourceId, text: &str) -> Self {
        Self::new(source, 1, 1, text.chars().count().max(1))
    }
}

/// Text of 1-based `line` in `text`, without its line terminator.
pub fn line_text(text: &str, line: u32) -> Option<&str> {
    text.split('\n')
        .nth(line.checked_sub(1)? as usize)
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
}

/// Validates UTF-8 and reports the line and column of the first invalid byte.
pub fn decode_utf8(bytes: &[u8]) -> Result<&str, (usize, usize, usize)> {
    std::str::from_utf8(bytes).map_err(|e| {
        let good = &bytes[..e.valid_up_to()];
        // The valid prefix is valid UTF-8 by definition.
        let prefix = std::str::from_utf8(good).unwrap_or("");
        let line = prefix.matches('\n').count() + 1;
        let col = prefix.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (e.valid_up_to(), line, col)
    })
}
