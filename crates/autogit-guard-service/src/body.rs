//! Reading a request body exactly as an upstream would, or refusing it (fail closed).
//!
//! The guard only protects what it reads the same way as the inference API behind it. Lenient
//! upstreams (Ollama's Go `encoding/json`, most Python stacks) accept bodies a strict reader
//! refuses, and read keys the guard would not look at: `Messages` is `messages` to Go, the last
//! of two `prompt` keys wins in one parser and the first in another. So a body is inspected only
//! when it is strict JSON (RFC 8259: UTF-8 without a BOM, no lone surrogate, no trailing comma,
//! every number a finite double) with no duplicate key and no key that is a case variant of
//! another or of a field the guard reads, and the fields the guard reads have the shapes it
//! understands. Anything else is [`Unreadable`], and the server blocks it. Pure: no I/O.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why a body cannot be inspected (the reason the server gives when it blocks it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreadable(pub String);

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The keys the guard reads (at any depth): a case variant of one of them is refused, because
/// a case-insensitive upstream would read it as that field.
const INSPECTED: &[&str] = &[
    "prompt",
    "messages",
    "input",
    "system",
    "role",
    "content",
    "text",
    "input_text",
];

/// Go's `encoding/json` key folding: ASCII case-insensitive, and non-ASCII letters through
/// upper then lower case (`ſ` is `s`, the Kelvin sign `K` is `k`).
pub fn fold_key(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii() {
                return c.to_ascii_lowercase();
            }
            fn single(mut it: impl Iterator<Item = char>, orig: char) -> char {
                match (it.next(), it.next()) {
                    (Some(x), None) => x,
                    _ => orig,
                }
            }
            let up = single(c.to_uppercase(), c);
            single(up.to_lowercase(), up)
        })
        .collect()
}

struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
        Ok(Strict(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
        Ok(Strict(Value::Number(v.into())))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
        Ok(Strict(Value::Number(v.into())))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Strict, E> {
        Number::from_f64(v)
            .map(|n| Strict(Value::Number(n)))
            .ok_or_else(|| E::custom("a number that is not a finite double"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Strict, E> {
        Ok(Strict(Value::String(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Strict, E> {
        Ok(Strict(Value::String(v)))
    }
    fn visit_unit<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Strict(Value::Array(out)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        let mut out = Map::new();
        let mut folded: HashMap<String, String> = HashMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let f = fold_key(&key);
            if let Some(prev) = folded.get(&f) {
                return Err(de::Error::custom(if *prev == key {
                    format!("duplicate key `{key}` (upstreams disagree on which one counts)")
                } else {
                    format!(
                        "keys `{prev}` and `{key}` differ only in case (case-insensitive upstreams such as Ollama read them as one)"
                    )
                }));
            }
            if let Some(field) = INSPECTED.iter().find(|n| **n != key && fold_key(n) == f) {
                return Err(de::Error::custom(format!(
                    "key `{key}` is a case variant of `{field}` (case-insensitive upstreams such as Ollama read it as `{field}`)"
                )));
            }
            let Strict(v) = map.next_value()?;
            folded.insert(f, key.clone());
            out.insert(key, v);
        }
        Ok(Strict(Value::Object(out)))
    }
}

/// Parses `body` as strict JSON (see the module documentation).
pub fn parse_strict(body: &[u8]) -> Result<Value, Unreadable> {
    if body.starts_with(b"\xEF\xBB\xBF") {
        return Err(Unreadable(
            "the body starts with a byte order mark, which JSON (RFC 8259) does not allow".into(),
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = Strict::deserialize(&mut de)
        .and_then(|Strict(v)| de.end().map(|()| v))
        .map_err(|e| Unreadable(format!("the body is not strict JSON: {e}")))?;
    Ok(value)
}

fn is_text_part(v: &Value) -> bool {
    matches!(v, Value::String(_) | Value::Object(_))
}

fn check_part_object(o: &Map<String, Value>, path: &str) -> Result<(), Unreadable> {
    for key in ["text", "content", "input_text"] {
        match o.get(key) {
            None | Some(Value::Null | Value::String(_)) => {}
            Some(Value::Array(parts)) if key == "content" => {
                check_parts(parts, &format!("{path}.{key}"))?;
            }
            Some(_) => {
                return Err(Unreadable(format!(
                    "{path}.{key} is neither a string nor a list of parts"
                )));
            }
        }
    }
    Ok(())
}

fn check_parts(parts: &[Value], path: &str) -> Result<(), Unreadable> {
    for (i, p) in parts.iter().enumerate() {
        match p {
            Value::String(_) => {}
            Value::Object(o) => check_part_object(o, &format!("{path}[{i}]"))?,
            Value::Number(_) | Value::Array(_) => {
                return Err(Unreadable(format!(
                    "{path}[{i}] is not text: token-id prompts cannot be inspected"
                )));
            }
            _ => {
                return Err(Unreadable(format!(
                    "{path}[{i}] is neither a string nor an object"
                )));
            }
        }
    }
    Ok(())
}

fn check_content(v: &Value, path: &str) -> Result<(), Unreadable> {
    match v {
        Value::Null | Value::String(_) => Ok(()),
        Value::Array(parts) => check_parts(parts, path),
        _ => Err(Unreadable(format!(
            "{path} is neither a string nor a list of parts"
        ))),
    }
}

fn check_messages(msgs: &[Value], name: &str) -> Result<(), Unreadable> {
    for (i, m) in msgs.iter().enumerate() {
        let path = format!("{name}[{i}]");
        match m {
            Value::String(_) => {}
            Value::Object(o) => {
                if let Some(r) = o.get("role")
                    && !r.is_string()
                {
                    return Err(Unreadable(format!("{path}.role is not a string")));
                }
                if let Some(c) = o.get("content") {
                    check_content(c, &format!("{path}.content"))?;
                }
                check_part_object(o, &path)?;
            }
            _ => {
                return Err(Unreadable(format!(
                    "{path} is neither a string nor a message object"
                )));
            }
        }
    }
    Ok(())
}

/// Checks that the fields the guard reads have shapes it understands: an object at the top;
/// `prompt` a string or a list of text parts; `messages` a list of messages; `input` a string
/// or a list of messages; `system` a string; every `content` a string or a list of text parts.
pub fn check_shape(body: &Value) -> Result<(), Unreadable> {
    let Value::Object(obj) = body else {
        return Err(Unreadable(
            "the body is JSON but not an object, which no inference API takes".into(),
        ));
    };
    match obj.get("prompt") {
        None | Some(Value::Null | Value::String(_)) => {}
        Some(Value::Array(parts)) => check_parts(parts, "prompt")?,
        Some(_) => {
            return Err(Unreadable(
                "prompt is neither a string nor a list of strings".into(),
            ));
        }
    }
    match obj.get("messages") {
        None | Some(Value::Null) => {}
        Some(Value::Array(msgs)) => check_messages(msgs, "messages")?,
        Some(_) => return Err(Unreadable("messages is not a list".into())),
    }
    match obj.get("input") {
        None | Some(Value::Null | Value::String(_)) => {}
        Some(Value::Array(items)) if items.iter().all(is_text_part) => {
            check_messages(items, "input")?;
        }
        Some(_) => {
            return Err(Unreadable(
                "input is neither a string nor a list of messages (token-id input cannot be inspected)"
                    .into(),
            ));
        }
    }
    match obj.get("system") {
        None | Some(Value::Null | Value::String(_)) => {}
        Some(Value::Array(parts)) => check_parts(parts, "system")?,
        Some(_) => return Err(Unreadable("system is not a string".into())),
    }
    Ok(())
}

/// What to inspect in a request body.
#[derive(Debug, PartialEq)]
pub enum Body {
    /// No body: nothing to inspect.
    Empty,
    /// A strict-JSON object of a shape the guard understands.
    Json(Value),
    /// A `text/*` body that is not JSON: inspected as one text.
    Text(String),
}

/// Reads a request body for inspection, or says why it cannot be inspected. A `text/*` body
/// that is valid UTF-8 and does not look like JSON (does not start with `{` or `[`) is one
/// text; every other non-empty body must be strict JSON of the expected shape.
pub fn read(body: &[u8], content_type: Option<&str>) -> Result<Body, Unreadable> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Body::Empty);
    }
    let is_text =
        content_type.is_some_and(|c| c.trim_start().to_ascii_lowercase().starts_with("text/"));
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if is_text && !matches!(first, Some(b'{' | b'[')) && !body.starts_with(b"\xEF\xBB\xBF") {
        return match std::str::from_utf8(body) {
            Ok(s) => Ok(Body::Text(s.to_owned())),
            Err(e) => Err(Unreadable(format!("the text body is not valid UTF-8: {e}"))),
        };
    }
    let value = parse_strict(body)?;
    check_shape(&value)?;
    Ok(Body::Json(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_keys_as_go_does() {
        assert_eq!(fold_key("Messages"), "messages");
        assert_eq!(fold_key("me\u{17F}\u{17F}ages"), "messages");
        assert_eq!(fold_key("\u{212A}ey"), "key");
        assert_eq!(fold_key("straße"), "straße");
    }

    #[test]
    fn refuses_what_upstreams_read_differently() {
        let refused: &[(&[u8], &str)] = &[
            (b"{\"prompt\": \"hi\xff\"}", "not strict JSON"),
            (b"\xff{\"prompt\": \"hi\"}", "not strict JSON"),
            (br#"{"prompt": "\ud800"}"#, "not strict JSON"),
            (b"\xEF\xBB\xBF{\"prompt\": \"hi\"}", "byte order mark"),
            (br#"{"prompt": "hi",}"#, "not strict JSON"),
            (
                br#"{"messages": [{"role": "user", "content": "x"},]}"#,
                "not strict JSON",
            ),
            (br#"{"prompt": "hi", "n": 1e999}"#, "not strict JSON"),
            (
                br#"{"prompt": "a", "prompt": "b"}"#,
                "duplicate key `prompt`",
            ),
            (br#"{"model": "a", "Model": "b"}"#, "differ only in case"),
            (
                br#"{"Messages": [{"role": "user", "content": "x"}]}"#,
                "case variant of `messages`",
            ),
            (br#"{"PROMPT": "x"}"#, "case variant of `prompt`"),
            (
                "{\"meſſages\": []}".as_bytes(),
                "case variant of `messages`",
            ),
            (
                br#"{"messages": [{"role": "user", "Content": "x"}]}"#,
                "case variant of `content`",
            ),
            (br#"{"prompt": "x"} {"prompt": "y"}"#, "not strict JSON"),
            (br#"{"prompt": "x"}garbage"#, "not strict JSON"),
            (br#"["prompt"]"#, "not an object"),
            (br#""prompt""#, "not an object"),
            (br#"{"prompt": 7}"#, "prompt is neither"),
            (br#"{"prompt": [1, 2, 3]}"#, "token-id"),
            (br#"{"prompt": [[1, 2]]}"#, "token-id"),
            (
                br#"{"messages": {"content": "x"}}"#,
                "messages is not a list",
            ),
            (
                br#"{"messages": [{"role": "user", "content": {"text": "x"}}]}"#,
                "messages[0].content is neither",
            ),
            (
                br#"{"messages": [{"role": 1, "content": "x"}]}"#,
                "role is not a string",
            ),
            (
                br#"{"messages": [{"content": [{"type": "text", "text": 5}]}]}"#,
                "messages[0].content[0].text",
            ),
            (br#"{"input": [1, 2]}"#, "token-id input"),
            (br#"{"system": {"a": 1}}"#, "system is not a string"),
            (b"{\"prompt\": \"x\"", "not strict JSON"),
        ];
        for (body, why) in refused {
            let got = read(body, Some("application/json"));
            match got {
                Err(Unreadable(m)) => {
                    assert!(m.contains(why), "{}: {m}", String::from_utf8_lossy(body))
                }
                Ok(b) => panic!("{} was read: {b:?}", String::from_utf8_lossy(body)),
            }
            // The content type changes nothing for JSON-looking bodies.
            assert!(read(body, Some("text/plain")).is_err() || !body.starts_with(b"{"));
        }
    }

    #[test]
    fn reads_what_it_understands() {
        let ok: &[&[u8]] = &[
            br#"{"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": true}"#,
            br#"{"prompt": ["a", "b"], "temperature": 0.5, "n": 1e300}"#,
            br#"{"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}, {"type": "image_url", "image_url": {"url": "u"}}]}]}"#,
            br#"{"input": [{"role": "user", "content": [{"type": "input_text", "text": "x"}]}]}"#,
            br#"{"model": "llama3", "system": "s", "prompt": "p", "options": {"num_ctx": 4096}}"#,
            br#"{"prompt": "caf\u00e9 \ud83d\ude00"}"#,
            br#"  {"prompt": null}  "#,
        ];
        for body in ok {
            assert!(
                matches!(read(body, Some("application/json")), Ok(Body::Json(_))),
                "{}: {:?}",
                String::from_utf8_lossy(body),
                read(body, None)
            );
        }
        assert_eq!(read(b"", None), Ok(Body::Empty));
        assert_eq!(read(b"  \n", Some("application/json")), Ok(Body::Empty));
        assert_eq!(
            read(b"hello there", Some("text/plain; charset=utf-8")),
            Ok(Body::Text("hello there".into()))
        );
        assert!(read(b"hello \xff", Some("text/plain")).is_err());
        assert!(read(b"hello there", None).is_err(), "not text, not JSON");
    }
}
