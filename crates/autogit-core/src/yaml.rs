//! A small spanned YAML tree built from `saphyr-parser` events.
//!
//! The tree keeps a location for every key and value so that diagnostics point at the right
//! line and column. It is built iteratively (no recursion), with hard limits that make hostile
//! input (alias bombs, deep nesting, huge files) fail fast with bounded memory:
//! [`Limits`]. Duplicate keys are errors, every one of them reported (up to
//! [`MAX_DUPLICATES_SHOWN`], then a count). YAML merge keys (`<<`) are supported.

use crate::diag::Diagnostic;
use crate::source::{Loc, SourceId};
use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use std::collections::HashMap;

/// Bounds on what the parser accepts.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest accepted input, in bytes.
    pub max_bytes: usize,
    /// Deepest accepted nesting of mappings and sequences.
    pub max_depth: usize,
    /// Most nodes in the tree, counting every alias expansion.
    pub max_nodes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 1024 * 1024,
            max_depth: 64,
            max_nodes: 100_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub loc: Loc,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Scalar(Scalar),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Scalar {
    pub text: String,
    /// Quoted or block scalars are always strings; plain ones may be numbers or booleans.
    pub quoted: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_loc: Loc,
    pub value: Node,
}

impl Node {
    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Scalar(_) => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// Short human text of the value, for "found: ...".
    pub fn describe(&self) -> String {
        match &self.value {
            Value::Null => "null".to_owned(),
            Value::Scalar(s) => {
                let t: String = s.text.chars().take(60).collect();
                if s.text.chars().count() > 60 {
                    format!("`{t}…`")
                } else {
                    format!("`{t}`")
                }
            }
            Value::Seq(items) => format!("a list of {} item(s)", items.len()),
            Value::Map(e) => format!("a mapping with {} key(s)", e.len()),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|e| e.key == key).map(|e| &e.value),
            _ => None,
        }
    }

    fn count(&self) -> usize {
        match &self.value {
            Value::Null | Value::Scalar(_) => 1,
            Value::Seq(items) => 1 + items.iter().map(Node::count).sum::<usize>(),
            Value::Map(entries) => 1 + entries.iter().map(|e| 1 + e.value.count()).sum::<usize>(),
        }
    }
}

fn loc_of(source: SourceId, span: &Span) -> Loc {
    let len = span.end.index().saturating_sub(span.start.index());
    Loc::new(source, span.start.line(), span.start.col() + 1, len.max(1))
}

/// Maps the parser's character indices to byte offsets, moving forward through the text
/// (events come in document order, so the whole parse stays linear).
struct CharCursor<'a> {
    text: &'a str,
    chars: usize,
    bytes: usize,
}

impl<'a> CharCursor<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            chars: 0,
            bytes: 0,
        }
    }

    /// The text from character index `at` on.
    fn rest_from(&mut self, at: usize) -> &'a str {
        if at < self.chars {
            (self.chars, self.bytes) = (0, 0);
        }
        for c in self.text[self.bytes..].chars().take(at - self.chars) {
            self.bytes += c.len_utf8();
            self.chars += 1;
        }
        &self.text[self.bytes..]
    }
}

/// Length in characters of the quoted scalar at the start of `rest`, both quotes included.
///
/// The parser's span of a quoted scalar runs on over the blanks and the `# comment` after the
/// closing quote; the diagnostic caret must underline the value only. `None` when `rest` does
/// not start with a complete quoted scalar of that style.
fn quoted_len(rest: &str, style: ScalarStyle) -> Option<u32> {
    let quote = match style {
        ScalarStyle::DoubleQuoted => '"',
        ScalarStyle::SingleQuoted => '\'',
        _ => return None,
    };
    let mut chars = rest.chars();
    if chars.next()? != quote {
        return None;
    }
    let mut len = 1u32;
    while let Some(c) = chars.next() {
        len += 1;
        match c {
            // `\"` (double-quoted) escapes the next character, whatever it is.
            '\\' if quote == '"' => {
                chars.next()?;
                len += 1;
            }
            // `''` is a single quote inside a single-quoted scalar.
            '\'' if quote == '\'' && chars.clone().next() == Some('\'') => {
                chars.next();
                len += 1;
            }
            c if c == quote => return Some(len),
            _ => {}
        }
    }
    None
}

enum Frame {
    Seq {
        items: Vec<Node>,
        loc: Loc,
        anchor: usize,
    },
    Map {
        entries: Vec<Entry>,
        merged: Vec<Entry>,
        key: Option<(String, Loc)>,
        seen: HashMap<String, Loc>,
        loc: Loc,
        anchor: usize,
    },
}

/// Duplicate keys reported one by one; any more are counted in one last diagnostic, so a
/// hostile file of many duplicates cannot produce unbounded output.
pub const MAX_DUPLICATES_SHOWN: usize = 20;

/// Parses one YAML document. An empty document yields `Ok(None)`. On error: every duplicate
/// key found (the document is read to its end to find them all), or the first other error
/// (syntax, limits) after the duplicates found before it.
pub fn parse(
    text: &str,
    source: SourceId,
    limits: Limits,
) -> Result<Option<Node>, Vec<Diagnostic>> {
    let mut duplicates: Vec<Diagnostic> = Vec::new();
    let mut more_duplicates = 0usize;
    match parse_inner(text, source, limits, &mut duplicates, &mut more_duplicates) {
        Ok(root) if duplicates.is_empty() => Ok(root),
        result => {
            if more_duplicates > 0 {
                duplicates.push(
                    Diagnostic::error(
                        "duplicate-key",
                        format!(
                            "{more_duplicates} more duplicate keys (only the first {MAX_DUPLICATES_SHOWN} are shown)"
                        ),
                    )
                    .help("a key may appear once in a mapping; remove the repeated ones"),
                );
            }
            duplicates.extend(result.err());
            Err(duplicates)
        }
    }
}

fn parse_inner(
    text: &str,
    source: SourceId,
    limits: Limits,
    duplicates: &mut Vec<Diagnostic>,
    more_duplicates: &mut usize,
) -> Result<Option<Node>, Diagnostic> {
    if text.len() > limits.max_bytes {
        return Err(Diagnostic::error(
            "too-large",
            format!(
                "input is {} bytes, more than the {} bytes a configuration may have",
                text.len(),
                limits.max_bytes
            ),
        )
        .help("autogit configuration files are small; check that the right file was given"));
    }
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, (Node, usize)> = HashMap::new();
    let mut cursor = CharCursor::new(text);
    let mut nodes = 0usize;
    let mut root: Option<Node> = None;
    let mut documents = 0usize;

    for item in Parser::new_from_str(text) {
        let (event, span) = item.map_err(|e| {
            let m = e.marker();
            let loc = Some(Loc::new(source, m.line(), m.col() + 1, 1));
            if e.info().contains("recursion limit") {
                // The parser's own guard against deep flow nesting.
                return Diagnostic::error("too-deep", "nesting is too deep")
                    .at(loc)
                    .help("autogit.yml is at most a few levels deep; check the brackets");
            }
            Diagnostic::error("yaml-syntax", format!("invalid YAML: {}", e.info())).at(loc)
        })?;
        let loc = loc_of(source, &span);
        let complete: Option<(Node, usize)> = match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing | Event::DocumentEnd => None,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(Diagnostic::error(
                        "multiple-documents",
                        "expected one YAML document, found a second one",
                    )
                    .at(Some(loc))
                    .help("remove the `---` separator and merge the documents"));
                }
                None
            }
            Event::Alias(id) => {
                let Some((node, count)) = anchors.get(&id) else {
                    return Err(
                        Diagnostic::error("yaml-syntax", "alias to an unknown anchor")
                            .at(Some(loc)),
                    );
                };
                nodes += count;
                if nodes > limits.max_nodes {
                    return Err(too_many_nodes(loc, limits));
                }
                Some((
                    Node {
                        value: node.value.clone(),
                        loc,
                    },
                    0,
                ))
            }
            Event::Scalar(text, style, anchor, tag) => {
                if let Some(tag) = tag
                    && !(tag.handle == "!!" || tag.handle == "tag:yaml.org,2002:")
                {
                    return Err(Diagnostic::error(
                        "yaml-tag",
                        format!("unsupported YAML tag `{}{}`", tag.handle, tag.suffix),
                    )
                    .at(Some(loc))
                    .help("autogit.yml uses plain YAML values; remove the tag"));
                }
                nodes += 1;
                if nodes > limits.max_nodes {
                    return Err(too_many_nodes(loc, limits));
                }
                let quoted = !matches!(style, ScalarStyle::Plain);
                let mut loc = loc;
                if let Some(len) = quoted_len(cursor.rest_from(span.start.index()), style) {
                    loc.len = loc.len.min(len);
                }
                let value = if !quoted && matches!(&*text, "" | "~" | "null" | "Null" | "NULL") {
                    Value::Null
                } else {
                    Value::Scalar(Scalar {
                        text: text.into_owned(),
                        quoted,
                    })
                };
                Some((Node { value, loc }, anchor))
            }
            Event::SequenceStart(anchor, _) => {
                push(&mut stack, limits, loc)?;
                stack.push(Frame::Seq {
                    items: Vec::new(),
                    loc,
                    anchor,
                });
                None
            }
            Event::MappingStart(anchor, _) => {
                push(&mut stack, limits, loc)?;
                stack.push(Frame::Map {
                    entries: Vec::new(),
                    merged: Vec::new(),
                    key: None,
                    seen: HashMap::new(),
                    loc,
                    anchor,
                });
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq { items, loc, anchor }) => {
                    nodes += 1;
                    Some((
                        Node {
                            value: Value::Seq(items),
                            loc,
                        },
                        anchor,
                    ))
                }
                _ => {
                    return Err(
                        Diagnostic::error("yaml-syntax", "unbalanced sequence").at(Some(loc))
                    );
                }
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map {
                    mut entries,
                    merged,
                    loc,
                    anchor,
                    seen,
                    ..
                }) => {
                    for m in merged {
                        if !seen.contains_key(&m.key) {
                            entries.push(m);
                        }
                    }
                    nodes += 1;
                    Some((
                        Node {
                            value: Value::Map(entries),
                            loc,
                        },
                        anchor,
                    ))
                }
                _ => {
                    return Err(
                        Diagnostic::error("yaml-syntax", "unbalanced mapping").at(Some(loc))
                    );
                }
            },
        };
        let Some((node, anchor)) = complete else {
            continue;
        };
        if anchor > 0 {
            let count = node.count();
            anchors.insert(anchor, (node.clone(), count));
        }
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                merged,
                key,
                seen,
                ..
            }) => match key.take() {
                None => match node.value {
                    Value::Scalar(s) => *key = Some((s.text, node.loc)),
                    Value::Null => *key = Some((String::new(), node.loc)),
                    _ => {
                        return Err(Diagnostic::error(
                            "yaml-complex-key",
                            "mapping keys must be plain strings",
                        )
                        .at(Some(node.loc)));
                    }
                },
                Some((k, key_loc)) if k == "<<" => merge_into(merged, node, key_loc)?,
                Some((k, key_loc)) => {
                    if let Some(first) = seen.get(&k) {
                        // Keep reading: the user should see every duplicate at once. The
                        // first definition stays; the tree is not used when this fails.
                        if duplicates.len() < MAX_DUPLICATES_SHOWN {
                            duplicates.push(
                                Diagnostic::error("duplicate-key", format!("duplicate key `{k}`"))
                                    .at(Some(key_loc))
                                    .label("defined again here")
                                    .related(*first, "first defined")
                                    .help("a key may appear once in a mapping; remove one of them"),
                            );
                        } else {
                            *more_duplicates += 1;
                        }
                        continue;
                    }
                    seen.insert(k.clone(), key_loc);
                    entries.push(Entry {
                        key: k,
                        key_loc,
                        value: node,
                    });
                }
            },
        }
    }
    Ok(root)
}

fn push(stack: &mut [Frame], limits: Limits, loc: Loc) -> Result<(), Diagnostic> {
    if stack.len() >= limits.max_depth {
        return Err(Diagnostic::error(
            "too-deep",
            format!("nesting is deeper than {} levels", limits.max_depth),
        )
        .at(Some(loc))
        .help("autogit.yml is at most a few levels deep; check the indentation"));
    }
    Ok(())
}

fn too_many_nodes(loc: Loc, limits: Limits) -> Diagnostic {
    Diagnostic::error(
        "too-many-nodes",
        format!(
            "document expands to more than {} values (alias expansion counted)",
            limits.max_nodes
        ),
    )
    .at(Some(loc))
    .help("this looks like an alias bomb; use fewer anchors/aliases")
}

fn merge_into(merged: &mut Vec<Entry>, node: Node, key_loc: Loc) -> Result<(), Diagnostic> {
    match node.value {
        Value::Map(es) => {
            merged.extend(es);
            Ok(())
        }
        Value::Seq(items) => {
            for item in items {
                merge_into(merged, item, key_loc)?;
            }
            Ok(())
        }
        _ => Err(Diagnostic::error(
            "yaml-merge",
            "`<<` must merge a mapping or a list of mappings",
        )
        .at(Some(key_loc))),
    }
}

/// Places `value` at `path` inside `root` (creating mappings on the way), replacing what was
/// there. Used to overlay environment variables and flags onto the file.
pub fn set_path(root: &mut Node, path: &[String], value: Node) {
    let Some((first, rest)) = path.split_first() else {
        *root = value;
        return;
    };
    if !matches!(root.value, Value::Map(_)) {
        root.value = Value::Map(Vec::new());
    }
    let Value::Map(entries) = &mut root.value else {
        return;
    };
    let pos = match entries.iter().position(|e| &e.key == first) {
        Some(p) => p,
        None => {
            entries.push(Entry {
                key: first.clone(),
                key_loc: value.loc,
                value: Node {
                    value: Value::Map(Vec::new()),
                    loc: value.loc,
                },
            });
            entries.len() - 1
        }
    };
    if rest.is_empty() {
        entries[pos].value = value;
    } else {
        set_path(&mut entries[pos].value, rest, value);
    }
}

/// Deep-merges `overlay` into `base`: mappings merge key by key, anything else replaces.
pub fn merge(base: &mut Node, overlay: Node) {
    match (&mut base.value, overlay.value) {
        (Value::Map(b), Value::Map(o)) => {
            for entry in o {
                match b.iter_mut().find(|e| e.key == entry.key) {
                    Some(existing) => merge(&mut existing.value, entry.value),
                    None => b.push(entry),
                }
            }
        }
        (_, value) => {
            base.value = value;
            base.loc = overlay.loc;
        }
    }
}

/// Converts a tree to JSON values, reading plain scalars as YAML 1.2 core types.
pub fn node_to_json(node: &Node) -> serde_json::Value {
    use serde_json::Value as J;
    match &node.value {
        Value::Null => J::Null,
        Value::Scalar(s) if s.quoted => J::String(s.text.clone()),
        Value::Scalar(s) => match s.text.as_str() {
            "true" | "True" | "TRUE" => J::Bool(true),
            "false" | "False" | "FALSE" => J::Bool(false),
            t => t
                .parse::<i64>()
                .map(J::from)
                .ok()
                .or_else(|| {
                    t.parse::<f64>()
                        .ok()
                        .and_then(|f| serde_json::Number::from_f64(f).map(J::Number))
                })
                .unwrap_or_else(|| J::String(t.to_owned())),
        },
        Value::Seq(items) => J::Array(items.iter().map(node_to_json).collect()),
        Value::Map(entries) => J::Object(
            entries
                .iter()
                .map(|e| (e.key.clone(), node_to_json(&e.value)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Option<Node>, Diagnostic> {
        parse(text, SourceId(0), Limits::default()).map_err(|mut e| e.remove(0))
    }

    #[test]
    fn locations_are_one_based() {
        let n = p("a:\n  bb: 1\n").unwrap().unwrap();
        let Value::Map(es) = &n.get("a").unwrap().value else {
            panic!("map")
        };
        assert_eq!(
            (es[0].key_loc.line, es[0].key_loc.col, es[0].key_loc.len),
            (2, 3, 2)
        );
        assert_eq!((es[0].value.loc.line, es[0].value.loc.col), (2, 7));
    }

    #[test]
    fn a_quoted_value_ends_at_its_closing_quote_not_at_the_comment() {
        let n = p("a: \"x\\\"y\"  # c \"q\"\nb: 'it''s' # c\nc: {d: \"é\" , e: 1}\nf: plain # c\n")
            .unwrap()
            .unwrap();
        let len = |n: &Node| (n.loc.col, n.loc.len);
        assert_eq!(len(n.get("a").unwrap()), (4, 6));
        assert_eq!(len(n.get("b").unwrap()), (4, 7));
        assert_eq!(len(n.get("c").unwrap().get("d").unwrap()), (8, 3));
        assert_eq!(len(n.get("f").unwrap()), (4, 5));
    }

    #[test]
    fn merge_keys_and_override() {
        let n = p("base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  y: 3\n")
            .unwrap()
            .unwrap();
        let c = n.get("c").unwrap();
        let get = |k| match &c.get(k).unwrap().value {
            Value::Scalar(s) => s.text.clone(),
            _ => panic!(),
        };
        assert_eq!((get("x"), get("y")), ("1".into(), "3".into()));
    }

    #[test]
    fn duplicate_keys_are_rejected_with_both_locations() {
        let e = p("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.code, "duplicate-key");
        assert_eq!(e.loc.unwrap().line, 3);
        assert_eq!(e.related.unwrap().0.line, 1);
    }

    #[test]
    fn every_duplicate_key_is_reported_at_every_level() {
        let e = parse(
            "a: 1\nb: 2\na: 3\nc:\n  x: 1\n  x: 2\nb: 4\nd: [1, {y: 1, y: 2}]\n",
            SourceId(0),
            Limits::default(),
        )
        .unwrap_err();
        let found: Vec<(&str, u32, u32)> = e
            .iter()
            .map(|d| {
                (
                    d.message.as_str(),
                    d.loc.unwrap().line,
                    d.related.as_ref().unwrap().0.line,
                )
            })
            .collect();
        assert_eq!(
            found,
            [
                ("duplicate key `a`", 3, 1),
                ("duplicate key `x`", 6, 5),
                ("duplicate key `b`", 7, 2),
                ("duplicate key `y`", 8, 8),
            ]
        );
    }

    #[test]
    fn many_duplicates_are_bounded() {
        let text: String = (0..1000).map(|i| format!("k: {i}\n")).collect();
        let e = parse(&text, SourceId(0), Limits::default()).unwrap_err();
        assert_eq!(e.len(), MAX_DUPLICATES_SHOWN + 1);
        assert!(e[MAX_DUPLICATES_SHOWN].message.starts_with("979 more"));
    }

    #[test]
    fn a_syntax_error_after_duplicates_reports_both() {
        let e = parse("a: 1\na: 2\nb: [\n", SourceId(0), Limits::default()).unwrap_err();
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].code, e[1].code), ("duplicate-key", "yaml-syntax"));
    }

    #[test]
    fn empty_document_is_none() {
        assert_eq!(p("").unwrap(), None);
        assert_eq!(p("# only a comment\n").unwrap(), None);
    }

    #[test]
    fn null_forms() {
        let n = p("a:\nb: ~\nc: null\nd: 'null'\n").unwrap().unwrap();
        assert_eq!(n.get("a").unwrap().value, Value::Null);
        assert_eq!(n.get("b").unwrap().value, Value::Null);
        assert_eq!(n.get("c").unwrap().value, Value::Null);
        assert!(matches!(n.get("d").unwrap().value, Value::Scalar(_)));
    }
}
