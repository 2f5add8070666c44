//! Stage 1: Unicode normalization and hidden-character detection.
//!
//! One left-to-right pass. ASCII runs without control characters are copied verbatim (the
//! fast path); every other "word" (a run between ASCII separators) is filtered for invisible
//! and format characters, normalized with NFKC over the Stream-Safe Text Format (so a run of
//! a million combining marks never reaches the canonical-ordering sort), and checked for
//! mixed-script confusables. Work per word is bounded by [`MAX_CHUNK`] bytes, so the whole
//! pass is linear in the input length.

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfkc_quick};
use unicode_script::{Script, UnicodeScript};
use unicode_security::MixedScript;

use crate::map::OffsetMap;
use crate::{FindingSink, Span, Stage};

/// A chunk longer than this is split at the next character (bounds per-chunk work).
const MAX_CHUNK: usize = 256;
/// At most this many bytes of tag-character payload are decoded per run.
const MAX_HIDDEN_BYTES: usize = 64 * 1024;
/// At most this many hidden payloads are kept for stage 2.
const MAX_HIDDEN_RUNS: usize = 64;

/// Result of stage 1.
#[derive(Debug, Default)]
pub(crate) struct Normalized {
    pub(crate) text: String,
    pub(crate) map: OffsetMap,
    /// Text smuggled in Unicode tag characters, decoded to ASCII, with its original span.
    pub(crate) hidden: Vec<(Span, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Action {
    Keep,
    /// Remove silently (a leading byte-order mark).
    Drop,
    Remove(&'static str, f32),
}

/// Is the text predominantly Latin? Decides whether an all-Cyrillic word made only of Latin
/// look-alikes ("рау") is a disguise or just Russian. Computed once, on first need.
struct LatinContext<'a> {
    bytes: &'a [u8],
    value: Option<bool>,
}

impl<'a> LatinContext<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, value: None }
    }

    fn get(&mut self) -> bool {
        let bytes = self.bytes;
        *self.value.get_or_insert_with(|| {
            // Two simple counts vectorize; a combined fold does not.
            let ascii_letters = bytes.iter().filter(|b| b.is_ascii_alphabetic()).count();
            let non_ascii_chars = bytes.iter().filter(|&&b| b >= 0xC0).count();
            ascii_letters > 4 * non_ascii_chars
        })
    }
}

/// Position of the next byte the fast path cannot copy (8 bytes at a time).
fn next_interesting(bytes: &[u8], from: usize) -> usize {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const ONES: u64 = 0x0101_0101_0101_0101;
    let mut i = from;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let mut arr = [0u8; 8];
        arr.copy_from_slice(chunk);
        let w = u64::from_le_bytes(arr);
        // Bytes >= 0x80, bytes < 0x20, and 0x7F (SWAR "has byte less than / equal to").
        let below_space = w.wrapping_sub(ONES * 0x20) & !w;
        let x = w ^ (ONES * 0x7f);
        let del = x.wrapping_sub(ONES) & !x;
        if (w | below_space | del) & HIGH != 0
            && let Some(p) = chunk.iter().position(|&b| interesting(b))
        {
            return i + p;
        }
        i += 8;
    }
    bytes[i.min(bytes.len())..]
        .iter()
        .position(|&b| interesting(b))
        .map_or(bytes.len(), |p| i + p)
}

/// Is this byte the start of something the fast path cannot copy verbatim?
#[inline]
fn interesting(b: u8) -> bool {
    b >= 0x80 || (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) || b == 0x7f
}

#[derive(Debug, Default)]
struct State {
    combining_run: usize,
    combining_run_start: usize,
    combining_over_limit: bool,
    /// (start, end, decoded ASCII) of the current run of smuggling tag characters.
    tag_run: Option<(usize, usize, String)>,
    /// Inside an emoji tag sequence (subdivision flag such as England), which is legitimate.
    flag_tag: bool,
    /// Scratch buffers reused across chunks.
    kept: String,
    word: String,
}

impl State {
    fn end_combining(&mut self, at: usize, sink: &mut FindingSink) {
        if self.combining_run > 0 {
            if self.combining_over_limit {
                sink.push(
                    Stage::Unicode,
                    "excessive_combining_marks",
                    0.3,
                    Span::new(self.combining_run_start, at),
                );
            }
            self.combining_run = 0;
            self.combining_over_limit = false;
        }
    }

    fn end_tags(&mut self, sink: &mut FindingSink, out: &mut Normalized) {
        if let Some((start, end, text)) = self.tag_run.take() {
            let span = Span::new(start, end);
            sink.push(Stage::Unicode, "tag_characters", 0.6, span);
            if out.hidden.len() < MAX_HIDDEN_RUNS && !text.is_empty() {
                out.hidden.push((span, text));
            }
        }
    }
}

/// Run stage 1 over `input`. Findings carry spans in `input`.
pub(crate) fn normalize(input: &str, combining_limit: usize, sink: &mut FindingSink) -> Normalized {
    let bytes = input.as_bytes();
    let len = bytes.len();
    let mut out = Normalized {
        text: String::with_capacity(len),
        ..Normalized::default()
    };
    let mut latin_context = LatinContext::new(bytes);

    let mut st = State::default();
    let mut i = 0;
    while i < len {
        let j = next_interesting(bytes, i);
        // Copy verbatim up to the start of the word that holds the interesting byte.
        let word_start = if j == len {
            len
        } else {
            bytes[i..j]
                .iter()
                .rposition(|b| !b.is_ascii_alphanumeric())
                .map_or(i, |p| i + p + 1)
        };
        if word_start > i {
            st.end_combining(i, sink);
            st.end_tags(sink, &mut out);
            st.flag_tag = false;
            let norm = out.text.len();
            out.text.push_str(&input[i..word_start]);
            out.map.push_identity(norm, i, word_start - i);
        }
        if word_start >= len {
            break;
        }
        let mut end = word_start;
        for (off, c) in input[word_start..].char_indices() {
            let at = word_start + off;
            if at > word_start
                && ((c.is_ascii() && !c.is_ascii_alphanumeric() && !interesting(c as u8))
                    || at - word_start >= MAX_CHUNK)
            {
                break;
            }
            end = at + c.len_utf8();
        }
        let chunk = Chunk {
            input,
            start: word_start,
            end,
            combining_limit,
        };
        chunk.process(&mut st, &mut latin_context, sink, &mut out);
        i = end;
    }
    st.end_combining(len, sink);
    st.end_tags(sink, &mut out);
    out
}

struct Chunk<'a> {
    input: &'a str,
    start: usize,
    end: usize,
    combining_limit: usize,
}

impl Chunk<'_> {
    fn process(
        &self,
        st: &mut State,
        latin: &mut LatinContext<'_>,
        sink: &mut FindingSink,
        out: &mut Normalized,
    ) {
        let input = self.input;
        let chunk = &input[self.start..self.end];
        // Fast path: letters from common blocks that are never removed, never combine and are
        // NFKC-stable. Only the confusable check remains.
        if chunk
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || is_stable_letter(c))
        {
            st.end_combining(self.start, sink);
            st.end_tags(sink, out);
            st.flag_tag = false;
            let span = Span::new(self.start, self.end);
            let norm = out.text.len();
            match fold_confusables(chunk, latin, sink, span) {
                Some(folded) => {
                    out.text.push_str(&folded);
                    out.map
                        .push_rewritten(norm, folded.len(), self.start, chunk.len());
                }
                None => {
                    out.text.push_str(chunk);
                    out.map.push_identity(norm, self.start, chunk.len());
                }
            }
            return;
        }
        let mut kept = std::mem::take(&mut st.kept);
        kept.clear();
        let mut removed_any = false;
        let mut styled = false;
        let mut prev = input[..self.start].chars().next_back();
        let mut iter = chunk.char_indices().peekable();
        while let Some((off, c)) = iter.next() {
            let at = self.start + off;
            let next = iter
                .peek()
                .map(|&(_, n)| n)
                .or_else(|| input[self.end..].chars().next());
            if is_combining_mark(c) {
                if st.combining_run == 0 {
                    st.combining_run_start = at;
                }
                st.combining_run += 1;
                if st.combining_run > self.combining_limit {
                    st.combining_over_limit = true;
                    removed_any = true;
                    prev = Some(c);
                    continue;
                }
            } else {
                st.end_combining(at, sink);
            }
            if ('\u{E0000}'..='\u{E007F}').contains(&c) {
                if st.flag_tag || prev == Some('\u{1F3F4}') {
                    st.flag_tag = c != '\u{E007F}';
                    kept.push(c);
                } else {
                    removed_any = true;
                    let ascii = (c as u32 - 0xE0000) as u8;
                    let run = st.tag_run.get_or_insert_with(|| (at, at, String::new()));
                    run.1 = at + c.len_utf8();
                    if (0x20..0x7f).contains(&ascii) && run.2.len() < MAX_HIDDEN_BYTES {
                        run.2.push(char::from(ascii));
                    }
                }
                prev = Some(c);
                continue;
            }
            st.flag_tag = false;
            st.end_tags(sink, out);
            match classify(c, prev, next, at) {
                Action::Keep => {
                    styled |= is_styled(c);
                    kept.push(c);
                }
                Action::Drop => removed_any = true,
                Action::Remove(rule, weight) => {
                    removed_any = true;
                    sink.push(
                        Stage::Unicode,
                        rule,
                        weight,
                        Span::new(at, at + c.len_utf8()),
                    );
                }
            }
            prev = Some(c);
        }
        let span = Span::new(self.start, self.end);
        let mut word = std::mem::take(&mut st.word);
        word.clear();
        if is_nfkc_quick(kept.chars()) == IsNormalized::Yes {
            word.push_str(&kept);
        } else {
            word.extend(kept.chars().stream_safe().nfkc());
        }
        if styled && word.bytes().any(|b| b.is_ascii_alphanumeric()) {
            sink.push(Stage::Unicode, "styled_compatibility_chars", 0.15, span);
        }
        let folded = fold_confusables(&word, latin, sink, span);
        let result: &str = folded.as_deref().unwrap_or(&word);
        let norm = out.text.len();
        out.text.push_str(result);
        if !removed_any && result == chunk {
            out.map.push_identity(norm, self.start, chunk.len());
        } else {
            out.map
                .push_rewritten(norm, result.len(), self.start, chunk.len());
        }
        st.kept = kept;
        st.word = word;
    }
}

/// Letters (and CJK full stops/commas) of common blocks that are not invisible, not
/// combining marks, and unchanged by NFKC: Latin-1 letters, basic Greek and Cyrillic,
/// Hiragana, Katakana, CJK unified ideographs, Hangul syllables.
fn is_stable_letter(c: char) -> bool {
    matches!(c as u32,
        0xC0..=0xD6 | 0xD8..=0xF6 | 0xF8..=0xFF | 0x391..=0x3A1 | 0x3A3..=0x3C9 | 0x400..=0x45F
        | 0x3001..=0x3002 | 0x3041..=0x3096 | 0x30A1..=0x30FE | 0x4E00..=0x9FFF | 0xAC00..=0xD7A3)
}

/// Mathematical alphanumerics, fullwidth and enclosed letters: text dressed up to evade filters.
fn is_styled(c: char) -> bool {
    matches!(c as u32,
        0xFF01..=0xFF5E | 0x1D400..=0x1D7FF | 0x2460..=0x24FF | 0x1F130..=0x1F189)
}

fn classify(c: char, prev: Option<char>, next: Option<char>, at: usize) -> Action {
    match c {
        '\u{200B}' => Action::Remove("zero_width_space", 0.15),
        '\u{200C}' | '\u{200D}' => {
            let joins_script = prev.is_some_and(joining_script) && next.is_some_and(joining_script);
            let joins_emoji =
                c == '\u{200D}' && prev.is_some_and(is_emoji) && next.is_some_and(is_emoji);
            if joins_script || joins_emoji {
                Action::Keep
            } else if c == '\u{200C}' {
                Action::Remove("zero_width_non_joiner", 0.15)
            } else {
                Action::Remove("zero_width_joiner", 0.15)
            }
        }
        '\u{FEFF}' if at == 0 => Action::Drop,
        '\u{2060}' | '\u{FEFF}' => Action::Remove("word_joiner", 0.15),
        '\u{00AD}' => Action::Remove("soft_hyphen", 0.1),
        '\u{202D}' | '\u{202E}' => Action::Remove("bidi_override", 0.55),
        '\u{202A}'..='\u{202C}' | '\u{2066}'..='\u{2069}' => {
            Action::Remove("bidi_embedding_or_isolate", 0.45)
        }
        '\u{200E}' | '\u{200F}' | '\u{061C}' => {
            if prev.is_some_and(is_rtl) || next.is_some_and(is_rtl) {
                Action::Keep
            } else {
                Action::Remove("bidi_mark", 0.15)
            }
        }
        '\u{FE0E}' | '\u{FE0F}' => {
            if prev
                .is_some_and(|p| is_emoji(p) || matches!(p, '0'..='9' | '#' | '*') || is_symbol(p))
            {
                Action::Keep
            } else {
                Action::Remove("variation_selector", 0.2)
            }
        }
        '\u{FE00}'..='\u{FE0D}' => {
            if prev.is_some_and(|p| p.script() == Script::Han || is_symbol(p)) {
                Action::Keep
            } else {
                Action::Remove("variation_selector", 0.2)
            }
        }
        '\u{E0100}'..='\u{E01EF}' => {
            if prev.is_some_and(|p| p.script() == Script::Han) {
                Action::Keep
            } else {
                Action::Remove("variation_selector", 0.2)
            }
        }
        '\u{E000}'..='\u{F8FF}' | '\u{F0000}'..='\u{FFFFD}' | '\u{100000}'..='\u{10FFFD}' => {
            Action::Remove("private_use", 0.1)
        }
        '\u{180E}'
        | '\u{034F}'
        | '\u{115F}'
        | '\u{1160}'
        | '\u{3164}'
        | '\u{FFA0}'
        | '\u{17B4}'
        | '\u{17B5}'
        | '\u{2061}'..='\u{2064}'
        | '\u{206A}'..='\u{206F}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}' => Action::Remove("invisible_format_char", 0.15),
        '\u{0}'..='\u{8}' | '\u{B}' | '\u{C}' | '\u{E}'..='\u{1F}' | '\u{7F}'..='\u{9F}' => {
            Action::Remove("control_char", 0.1)
        }
        _ => Action::Keep,
    }
}

fn joining_script(c: char) -> bool {
    matches!(
        c.script(),
        Script::Arabic
            | Script::Syriac
            | Script::Nko
            | Script::Mongolian
            | Script::Devanagari
            | Script::Bengali
            | Script::Gurmukhi
            | Script::Gujarati
            | Script::Oriya
            | Script::Tamil
            | Script::Telugu
            | Script::Kannada
            | Script::Malayalam
            | Script::Sinhala
            | Script::Khmer
            | Script::Myanmar
            | Script::Tibetan
            | Script::Thaana
            | Script::Phags_Pa
    )
}

fn is_rtl(c: char) -> bool {
    matches!(
        c.script(),
        Script::Arabic | Script::Hebrew | Script::Syriac | Script::Thaana | Script::Nko
    )
}

pub(crate) fn is_emoji(c: char) -> bool {
    matches!(c as u32,
        0x1F000..=0x1FAFF | 0x2600..=0x27BF | 0x2300..=0x23FF | 0x2B00..=0x2BFF | 0xFE0F
        | 0x20E3 | 0x3030 | 0x303D | 0x3297 | 0x3299 | 0xA9 | 0xAE | 0x203C | 0x2049 | 0x2122
        | 0x2139 | 0x2194..=0x21AA | 0x24C2 | 0x25AA..=0x25FE)
}

fn is_symbol(c: char) -> bool {
    matches!(c as u32, 0x2000..=0x2BFF | 0x3000..=0x303F)
}

/// `c.is_alphabetic()` without the table lookup for the common blocks of [`is_stable_letter`].
fn is_letter(c: char) -> bool {
    if is_stable_letter(c) {
        !matches!(c, '\u{3001}' | '\u{3002}' | '\u{30FB}')
    } else {
        c.is_alphabetic()
    }
}

/// `c.script()` with table-free answers for the most common blocks.
fn quick_script(c: char) -> Script {
    match c as u32 {
        0xC0..=0xD6 | 0xD8..=0xF6 | 0xF8..=0x24F => Script::Latin,
        0x391..=0x3A1 | 0x3A3..=0x3C9 => Script::Greek,
        0x400..=0x482 | 0x48A..=0x4FF => Script::Cyrillic,
        0x3041..=0x3096 => Script::Hiragana,
        0x30A1..=0x30FA | 0x30FD..=0x30FF => Script::Katakana,
        0x4E00..=0x9FFF => Script::Han,
        0xAC00..=0xD7A3 => Script::Hangul,
        _ => c.script(),
    }
}

/// The ASCII prototype of a confusable character (UTS #39 skeleton), if it has one.
pub(crate) fn ascii_prototype(c: char) -> Option<String> {
    let mut buf = [0u8; 4];
    let s: &str = c.encode_utf8(&mut buf);
    let proto: String = unicode_security::skeleton(s).collect();
    (!proto.is_empty() && proto.len() <= 2 && proto.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then_some(proto)
}

/// Replace look-alike letters in a mixed-script word (or a whole-script look-alike word in
/// Latin text) with their ASCII prototypes, reporting what was found.
fn fold_confusables(
    word: &str,
    latin: &mut LatinContext<'_>,
    sink: &mut FindingSink,
    span: Span,
) -> Option<String> {
    if word.is_ascii() {
        return None;
    }
    let has_ascii_letter = word.bytes().any(|b| b.is_ascii_alphabetic());
    let mut foreign_letters = 0usize;
    let mut all_foreign_latin = true;
    let mut all_lookalike_scripts = true;
    for c in word.chars() {
        if c.is_ascii() || !is_letter(c) {
            continue;
        }
        foreign_letters += 1;
        let script = quick_script(c);
        all_foreign_latin &= script == Script::Latin;
        all_lookalike_scripts &= matches!(
            script,
            Script::Cyrillic | Script::Greek | Script::Armenian | Script::Cherokee | Script::Latin
        );
        // Without ASCII letters only a whole-script look-alike word matters; one letter of
        // another script (CJK, Arabic…) settles it.
        if !has_ascii_letter && !all_lookalike_scripts {
            return None;
        }
    }
    if foreign_letters == 0 {
        return None;
    }
    if has_ascii_letter {
        // Latin letters with diacritics ("Zoë") are the common case: no script-set work.
        if all_foreign_latin || word.is_single_script() {
            return None;
        }
        let mut folded = String::with_capacity(word.len());
        let mut any = false;
        for c in word.chars() {
            match (!c.is_ascii() && c.is_alphabetic() && c.script() != Script::Latin)
                .then(|| ascii_prototype(c))
                .flatten()
            {
                Some(p) => {
                    folded.push_str(&p);
                    any = true;
                }
                None => folded.push(c),
            }
        }
        if any {
            sink.push(Stage::Unicode, "mixed_script_confusable", 0.4, span);
            Some(folded)
        } else {
            sink.push(Stage::Unicode, "mixed_script", 0.15, span);
            None
        }
    } else if foreign_letters >= 2 && all_lookalike_scripts && !all_foreign_latin {
        // Cheapest test first: every letter must have an ASCII look-alike (most Cyrillic
        // and Greek words fail at their first letter); then the context and script set.
        let mut folded = String::with_capacity(word.len());
        for c in word.chars() {
            if is_letter(c) {
                if quick_script(c) == Script::Latin {
                    return None;
                }
                folded.push_str(&ascii_prototype(c)?);
            } else {
                folded.push(c);
            }
        }
        if !latin.get() || !word.is_single_script() {
            return None;
        }
        sink.push(Stage::Unicode, "whole_script_confusable", 0.3, span);
        Some(folded)
    } else {
        None
    }
}

/// Classification used by source scanning: the rule for an invisible character worth
/// reporting in a source file, or `None`. Bidi controls are reported by the caller; private
/// use characters (icon fonts) and form feeds are common in source and not reported. Only the
/// first character of a run of tag characters is reported.
pub(crate) fn classify_for_source(
    c: char,
    prev: Option<char>,
    next: Option<char>,
    at: usize,
) -> Option<&'static str> {
    if ('\u{E0000}'..='\u{E007F}').contains(&c) {
        let continues =
            prev.is_some_and(|p| p == '\u{1F3F4}' || ('\u{E0000}'..='\u{E007F}').contains(&p));
        return (!continues).then_some("tag_characters");
    }
    if c == '\u{C}' {
        return None;
    }
    match classify(c, prev, next, at) {
        Action::Remove("private_use", _) | Action::Keep | Action::Drop => None,
        Action::Remove(rule, _) => Some(rule),
    }
}

#[cfg(test)]
mod tests {
    use unicode_normalization::UnicodeNormalization;
    use unicode_normalization::char::is_combining_mark;

    use super::{
        Action, classify, interesting, is_letter, is_stable_letter, next_interesting, quick_script,
    };
    use unicode_script::UnicodeScript;

    #[test]
    fn stable_letters_really_are_stable() {
        for c in (0u32..0x1_0000)
            .filter_map(char::from_u32)
            .filter(|&c| is_stable_letter(c))
        {
            let s = c.to_string();
            assert_eq!(
                s.nfkc().collect::<String>(),
                s,
                "U+{:04X} changes under NFKC",
                c as u32
            );
            assert!(!is_combining_mark(c), "U+{:04X}", c as u32);
            assert_eq!(
                classify(c, None, None, 1),
                Action::Keep,
                "U+{:04X}",
                c as u32
            );
        }
    }

    #[test]
    fn quick_lookups_agree_with_the_tables() {
        for c in (0u32..0x1_0000).filter_map(char::from_u32) {
            assert_eq!(is_letter(c), c.is_alphabetic(), "U+{:04X}", c as u32);
            assert_eq!(quick_script(c), c.script(), "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn swar_scan_agrees_with_the_byte_loop() {
        for special in 0u8..=255 {
            for pos in [0usize, 3, 7, 8, 9, 15, 16, 20] {
                let mut bytes = vec![b'a'; 21];
                bytes[pos] = special;
                for from in [0usize, 1, 5, 9] {
                    let naive = bytes[from..]
                        .iter()
                        .position(|&b| interesting(b))
                        .map_or(bytes.len(), |p| from + p);
                    assert_eq!(
                        next_interesting(&bytes, from),
                        naive,
                        "byte {special:#x} at {pos} from {from}"
                    );
                }
            }
        }
    }
}
