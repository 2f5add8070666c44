//! A small XML reader for the Route 53 API's answers: elements, text and the five entities plus
//! character references; attributes, comments, processing instructions and the XML declaration
//! are skipped. Bounded: depth 64, and the input is what one HTTP answer holds.

/// One element: its local name (prefix dropped), its text (concatenated) and its children.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    /// The first child named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child named `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The text of the element at `path` (child names), trimmed.
    pub fn text_at(&self, path: &[&str]) -> Option<String> {
        let mut e = self;
        for p in path {
            e = e.child(p)?;
        }
        Some(e.text.trim().to_owned())
    }
}

const MAX_DEPTH: usize = 64;

/// The document's root element.
pub fn parse(input: &str) -> Result<Element, String> {
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut rest = input;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('<') {
            if let Some(r) = after.strip_prefix("!--") {
                let end = r.find("-->").ok_or("unterminated comment")?;
                rest = &r[end + 3..];
                continue;
            }
            if after.starts_with('?') || after.starts_with('!') {
                let end = after.find('>').ok_or("unterminated declaration")?;
                rest = &after[end + 1..];
                continue;
            }
            let end = after.find('>').ok_or("unterminated tag")?;
            let tag = &after[..end];
            rest = &after[end + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                let done = stack.pop().ok_or("closing tag without an opening one")?;
                if done.name != local(name.trim()) {
                    return Err(format!("</{}> closes <{}>", name.trim(), done.name));
                }
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => root = Some(done),
                }
                continue;
            }
            let self_closing = tag.ends_with('/');
            let tag = tag.trim_end_matches('/');
            let name = local(tag.split_whitespace().next().ok_or("empty tag")?);
            let e = Element {
                name: name.to_owned(),
                ..Element::default()
            };
            if self_closing {
                match stack.last_mut() {
                    Some(parent) => parent.children.push(e),
                    None => root = Some(e),
                }
            } else {
                if stack.len() >= MAX_DEPTH {
                    return Err("nested too deeply".into());
                }
                stack.push(e);
            }
        } else {
            let end = rest.find('<').unwrap_or(rest.len());
            let text = unescape(&rest[..end])?;
            if let Some(top) = stack.last_mut() {
                top.text.push_str(&text);
            }
            rest = &rest[end..];
        }
    }
    if !stack.is_empty() {
        return Err("unclosed element".into());
    }
    root.ok_or_else(|| "no element".into())
}

fn local(name: &str) -> &str {
    name.rsplit(':').next().unwrap_or(name)
}

fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let end = after.find(';').ok_or("unterminated entity")?;
        let ent = &after[..end];
        let c = match ent {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let n = if let Some(h) = ent.strip_prefix("#x").or_else(|| ent.strip_prefix("#X")) {
                    u32::from_str_radix(h, 16).ok()
                } else if let Some(d) = ent.strip_prefix('#') {
                    d.parse().ok()
                } else {
                    None
                };
                n.and_then(char::from_u32)
                    .ok_or_else(|| format!("unknown entity &{ent};"))?
            }
        };
        out.push(c);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Text escaped for element content.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_route53_shapes() {
        let doc = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListResourceRecordSetsResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/">
  <!-- comment -->
  <ResourceRecordSets><ResourceRecordSet><Name>\052.example.com.</Name><Type>TXT</Type>
  <TTL>300</TTL><ResourceRecords><ResourceRecord><Value>&quot;a&amp;b&quot;</Value></ResourceRecord>
  </ResourceRecords></ResourceRecordSet></ResourceRecordSets>
  <IsTruncated>false</IsTruncated><Empty/></ListResourceRecordSetsResponse>"#;
        let root = parse(doc).unwrap();
        assert_eq!(root.name, "ListResourceRecordSetsResponse");
        let set = root
            .child("ResourceRecordSets")
            .and_then(|s| s.child("ResourceRecordSet"))
            .unwrap();
        assert_eq!(set.text_at(&["Name"]).unwrap(), "\\052.example.com.");
        assert_eq!(
            set.text_at(&["ResourceRecords", "ResourceRecord", "Value"])
                .unwrap(),
            "\"a&b\""
        );
        assert_eq!(root.text_at(&["IsTruncated"]).unwrap(), "false");
        assert!(root.child("Empty").is_some());
        assert!(parse("<a><b></a>").is_err());
        assert!(parse("<a>").is_err());
        assert_eq!(escape("<\"&\">"), "&lt;&quot;&amp;&quot;&gt;");
    }
}
