//! Route 53's answers as a small element tree, read with `quick-xml`: elements (local names),
//! text with the predefined entities, character references and CDATA; attributes, comments,
//! processing instructions, the XML declaration and any DOCTYPE are skipped (no entity
//! definitions are ever expanded). Bounded: depth 64, and the input is what one HTTP answer holds.

use quick_xml::Reader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::Event;
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
    let mut reader = Reader::from_str(input);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let element = |name: quick_xml::name::LocalName<'_>| Element {
        name: name.into_inner().to_owned(),
        ..Element::default()
    };
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("invalid XML at byte {}: {e}", reader.error_position()))?;
        match event {
            Event::Start(e) => {
                if stack.len() >= MAX_DEPTH {
                    return Err("nested too deeply".into());
                }
                stack.push(element(e.local_name()));
            }
            Event::Empty(e) => attach(&mut stack, &mut root, element(e.local_name())),
            Event::End(_) => {
                // quick-xml has checked that the name matches the open element.
                let done = stack.pop().ok_or("closing tag without an opening one")?;
                attach(&mut stack, &mut root, done);
            }
            Event::Text(t) => push_text(&mut stack, &t.xml10_content()),
            Event::CData(c) => push_text(&mut stack, &c.xml10_content()),
            Event::GeneralRef(r) => {
                let name = r.xml10_content();
                let c = match r.resolve_char_ref().map_err(|e| format!("&{name};: {e}"))? {
                    Some(c) => c.to_string(),
                    None => resolve_predefined_entity(&name)
                        .ok_or_else(|| format!("unknown entity &{name};"))?
                        .to_owned(),
                };
                push_text(&mut stack, &c);
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err("unclosed element".into());
    }
    root.ok_or_else(|| "no element".into())
}

fn attach(stack: &mut [Element], root: &mut Option<Element>, e: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(e),
        None => *root = Some(e),
    }
}

fn push_text(stack: &mut [Element], text: &str) {
    if let Some(top) = stack.last_mut() {
        top.text.push_str(text);
    }
}

/// Text escaped for element content.
pub fn escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
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
        assert_eq!(escape("it's"), "it&apos;s");
    }

    #[test]
    fn hostile_or_broken_answers_are_refused() {
        // Entities defined in a DOCTYPE are never expanded (no billion laughs).
        let bomb = r#"<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><r>&b;</r>"#;
        assert_eq!(parse(bomb).unwrap_err(), "unknown entity &b;");
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert_eq!(parse(&deep).unwrap_err(), "nested too deeply");
        assert!(parse("<a></b>").is_err());
        assert!(parse("</a>").is_err());
        assert!(parse("").is_err());
        let root = parse("<a>&#x41;&#66;<![CDATA[<c>]]></a>").unwrap();
        assert_eq!(root.text, "AB<c>");
        assert!(parse("<a>&#0;</a>").is_err());
    }
}
