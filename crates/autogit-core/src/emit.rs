//! A small, deterministic YAML emitter for rendered files (compose, Traefik, Prometheus).
//!
//! Input is a `serde_json::Value`; map order is kept as given (serde_json's `preserve_order` is
//! not needed: renderers build maps in the order they want). Strings that could be read as
//! another type are double-quoted; multi-line strings become literal blocks.

use serde_json::Value;
use std::fmt::Write as _;

pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(_) | Value::Array(_) => block(&mut out, v, 0),
        other => {
            out.push_str(&scalar(other, 0));
            out.push('\n');
        }
    }
    out
}

fn block(out: &mut String, v: &Value, indent: usize) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(map) => {
            for (k, val) in map {
                let key = string(k, indent);
                match val {
                    Value::Object(m) if !m.is_empty() => {
                        let _ = writeln!(out, "{pad}{key}:");
                        block(out, val, indent + 2);
                    }
                    Value::Array(a) if !a.is_empty() => {
                        let _ = writeln!(out, "{pad}{key}:");
                        block(out, val, indent + 2);
                    }
                    _ => {
                        let _ = writeln!(out, "{pad}{key}: {}", scalar(val, indent + 2));
                    }
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::Object(m) if !m.is_empty() => {
                        // First key on the dash line, the rest indented under it.
                        let mut inner = String::new();
                        block(&mut inner, item, indent + 2);
                        let trimmed = inner.trim_start_matches(' ');
                        let _ = write!(out, "{pad}- {trimmed}");
                    }
                    Value::Array(a) if !a.is_empty() => {
                        let _ = writeln!(out, "{pad}-");
                        block(out, item, indent + 2);
                    }
                    _ => {
                        let _ = writeln!(out, "{pad}- {}", scalar(item, indent + 2));
                    }
                }
            }
        }
        _ => {
            let _ = writeln!(out, "{pad}{}", scalar(v, indent));
        }
    }
}

fn scalar(v: &Value, indent: usize) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s, indent),
        Value::Array(_) => "[]".to_owned(),
        Value::Object(_) => "{}".to_owned(),
    }
}

fn plain_ok(s: &str) -> bool {
    if s.is_empty() {
        return false;
    }
    let lower = s.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "~" | "y" | "n"
    ) {
        return false;
    }
    if s.parse::<f64>().is_ok() || s.starts_with(|c: char| c.is_ascii_digit()) {
        return false;
    }
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c))
        && !s.starts_with(['-', '.', '/'])
}

fn string(s: &str, indent: usize) -> String {
    if plain_ok(s) {
        return s.to_owned();
    }
    let literal_ok = s.contains('\n')
        && !s.contains('\r')
        && !s.starts_with([' ', '\t', '\n'])
        && s.ends_with('\n')
        && !s.ends_with("\n\n")
        && s.lines()
            .all(|l| !l.ends_with([' ', '\t']) && !l.contains('\t'));
    if literal_ok {
        let pad = " ".repeat(indent);
        let mut out = String::from("|");
        for line in s.lines() {
            out.push('\n');
            if !line.is_empty() {
                out.push_str(&pad);
                out.push_str(line);
            }
        }
        return out;
    }
    // JSON string syntax is valid YAML double-quoted syntax.
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceId;
    use crate::yaml::{Limits, parse};
    use serde_json::json;

    #[test]
    fn emitted_yaml_parses_back() {
        let v = json!({"a": {"b": [1, "two", {"c": "x: y", "d": ["3"]}], "e": "true"}, "f": "line1\nline2\n", "g": "", "h": [], "i": "-x"});
        let text = to_yaml(&v);
        let node = parse(&text, SourceId(0), Limits::default())
            .unwrap()
            .unwrap();
        let back = crate::yaml::node_to_json(&node);
        assert_eq!(back, v, "{text}");
    }
}
