//! autogit-guard: the prompt-injection filter used in front of autogit's AI services.
//!
//! **Architecture invariant:** this crate is pure analysis. It performs no file, network,
//! process or environment access (enforced by `clippy.toml`); storage, HTTP and file walking
//! live in `autogit-guard-service`.
//!
//! [`Guard::analyze`] runs four stages over a text:
//!
//! 1. **Unicode** – NFKC normalization, removal of invisible and format characters, mixed-script
//!    and whole-script confusable detection (with folding of look-alikes to ASCII).
//! 2. **Patterns** – instruction override, role hijack, system-prompt exfiltration, template
//!    tokens and jailbreak personas, via Aho-Corasick and a regex set; base64, hex and URL
//!    encoded payloads are decoded (with size limits) and scanned again; rot13 is matched
//!    directly.
//! 3. **Structure** – fake role markers, instructions hidden in comments, links, alt text or
//!    data fields, hidden CSS, delimiter density.
//! 4. **Model** (optional) – a hashed n-gram logistic-regression classifier ([`Classifier`]:
//!    byte n-grams, words and word pairs), with a checksummed weight file and calibration
//!    points chosen on held-out data.
//!
//! Every stage is linear in the input length; per-rule finding counts, decoded bytes and
//! per-chunk work are bounded, so memory stays proportional to the input.

mod classifier;
mod decode;
mod error;
mod map;
mod patterns;
mod source;
mod structure;
mod unicode;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use classifier::{Classifier, Labelled, RefitOptions};
pub use error::GuardError;
pub use source::{SourceFinding, SourceFindingKind, scan_source};

/// A byte range `[start, end)` in the analysed (original) text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// A span; `end` is clamped to be at least `start`.
    pub fn new(start: usize, end: usize) -> Self {
        Self {
            start,
            end: end.max(start),
        }
    }
}

/// The stage that produced a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Stage 1: Unicode normalization and hidden characters.
    Unicode,
    /// Stage 2: known injection patterns (including decoded payloads).
    Pattern,
    /// Stage 3: structural analysis.
    Structure,
    /// Stage 4: the offline classifier.
    Model,
}

impl Stage {
    /// The stage number, 1 to 4.
    pub fn number(self) -> u8 {
        match self {
            Self::Unicode => 1,
            Self::Pattern => 2,
            Self::Structure => 3,
            Self::Model => 4,
        }
    }
}

/// One detected pattern.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Which stage found it.
    pub stage: Stage,
    /// Rule id (snake case), for example `instruction_override` or `zero_width_space`.
    pub rule: String,
    /// Byte span in the original text.
    pub span: Span,
    /// How strongly this rule indicates an injection, in `[0, 1]`.
    pub weight: f32,
    /// Extra information (for decoded payloads: what the payload contained).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A suspicious fragment of the original text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fragment {
    /// Byte span in the original text.
    pub span: Span,
    /// The fragment (truncated to 4 KiB).
    pub text: String,
    /// Rules that matched inside it.
    pub rules: Vec<String>,
}

/// The verdict for a text, from its risk score and the configured thresholds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Below the suspicious threshold.
    Clean,
    /// At or above the suspicious threshold: quarantine for review, let through.
    Suspicious,
    /// At or above the block threshold.
    Blocked,
}

/// The result of [`Guard::analyze`] (the platform spec's `FilterResult`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    /// Sanitized text: normalized, invisible characters removed, look-alikes folded, and
    /// (when `redact` is on) high-confidence injected fragments replaced by `[quarantined]`.
    pub clean_text: String,
    /// Suspicious fragments of the original text.
    pub quarantined: Vec<Fragment>,
    /// Risk in `[0, 1]`.
    pub risk_score: f64,
    /// Verdict from the thresholds.
    pub verdict: Verdict,
    /// What was found, in order of position.
    pub detected_patterns: Vec<Finding>,
    /// Classifier probability, when stage 4 ran.
    pub model_score: Option<f64>,
    /// Findings beyond the per-rule cap (counted, not listed).
    pub suppressed_findings: usize,
}

/// Thresholds and limits. All fields have defaults (see [`GuardConfig::default`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GuardConfig {
    /// Risk at or above which a text is suspicious (default 0.35).
    pub suspicious_threshold: f64,
    /// Risk at or above which a text is blocked (default 0.7).
    pub block_threshold: f64,
    /// Run stage 4 (default true).
    pub enable_model: bool,
    /// How much the classifier may contribute to the risk (default 1.0). The classifier's
    /// risk maps its calibration points (held-out false-positive rates of 2% and 0.5%) to
    /// 0.35 and 0.7, so with the default thresholds it can make a text suspicious or blocked
    /// on its own; lower values damp it.
    pub model_weight: f64,
    /// Total bytes of encoded payload decoded per analysis (default 1 MiB).
    pub max_decode_bytes: usize,
    /// Nesting depth of decoding (default 2: base64 inside base64).
    pub max_decode_depth: u8,
    /// Combining marks kept after one base character (default 8); the rest are dropped.
    pub combining_mark_limit: usize,
    /// Findings listed per rule (default 32); more are counted in `suppressed_findings`.
    pub max_findings_per_rule: usize,
    /// Replace injected fragments in `clean_text` with `[quarantined]` (default true).
    pub redact: bool,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            suspicious_threshold: 0.35,
            block_threshold: 0.7,
            enable_model: true,
            model_weight: 1.0,
            max_decode_bytes: 1 << 20,
            max_decode_depth: 2,
            combining_mark_limit: 8,
            max_findings_per_rule: 32,
            redact: true,
        }
    }
}

impl GuardConfig {
    /// Check ranges and ordering of the thresholds.
    pub fn validate(&self) -> Result<(), GuardError> {
        let unit = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(GuardError::InvalidConfig(format!(
                    "{name} must be in [0, 1], got {v}"
                )))
            }
        };
        unit("suspicious_threshold", self.suspicious_threshold)?;
        unit("block_threshold", self.block_threshold)?;
        unit("model_weight", self.model_weight)?;
        if self.suspicious_threshold > self.block_threshold {
            return Err(GuardError::InvalidConfig(format!(
                "suspicious_threshold ({}) must not exceed block_threshold ({})",
                self.suspicious_threshold, self.block_threshold
            )));
        }
        if self.max_findings_per_rule == 0 {
            return Err(GuardError::InvalidConfig(
                "max_findings_per_rule must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// The verdict for a risk score.
    pub fn verdict(&self, risk: f64) -> Verdict {
        if risk >= self.block_threshold {
            Verdict::Blocked
        } else if risk >= self.suspicious_threshold {
            Verdict::Suspicious
        } else {
            Verdict::Clean
        }
    }
}

/// A raw hit of stages 2 and 3, in coordinates of the text it was found in.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Hit {
    pub(crate) stage: Stage,
    pub(crate) rule: &'static str,
    pub(crate) weight: f32,
    pub(crate) span: Span,
}

/// Collects findings with a per-rule cap; keeps the highest weight of every rule for scoring.
#[derive(Debug)]
pub(crate) struct FindingSink {
    findings: Vec<Finding>,
    per_rule: BTreeMap<&'static str, usize>,
    rule_weight: BTreeMap<&'static str, f32>,
    cap: usize,
    suppressed: usize,
}

impl FindingSink {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            findings: Vec::new(),
            per_rule: BTreeMap::new(),
            rule_weight: BTreeMap::new(),
            cap,
            suppressed: 0,
        }
    }

    pub(crate) fn push(&mut self, stage: Stage, rule: &'static str, weight: f32, span: Span) {
        self.push_detail(stage, rule, weight, span, None);
    }

    fn push_detail(
        &mut self,
        stage: Stage,
        rule: &'static str,
        weight: f32,
        span: Span,
        detail: Option<String>,
    ) {
        let w = self.rule_weight.entry(rule).or_insert(0.0);
        *w = w.max(weight);
        // Extend an adjacent finding of the same rule (runs of invisible characters).
        if let Some(last) = self.findings.last_mut()
            && last.rule == rule
            && last.span.end == span.start
            && detail.is_none()
        {
            last.span.end = span.end;
            last.weight = last.weight.max(weight);
            return;
        }
        let n = self.per_rule.entry(rule).or_insert(0);
        if *n >= self.cap {
            self.suppressed += 1;
            return;
        }
        *n += 1;
        self.findings.push(Finding {
            stage,
            rule: rule.to_owned(),
            span,
            weight,
            detail,
        });
    }

    fn rule_risk(&self) -> f64 {
        1.0 - self
            .rule_weight
            .values()
            .map(|&w| 1.0 - f64::from(w.clamp(0.0, 1.0)))
            .product::<f64>()
    }
}

/// Lower-case without changing any character's UTF-8 length (so offsets stay valid), and
/// turn tabs and carriage returns into spaces.
fn lowercase(s: &str) -> String {
    // Copy spans of the input and lower-case their ASCII in place (vectorized); only
    // characters that change otherwise (a tab, an upper-case non-ASCII letter) end a span.
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut copied = 0;
    let flush = |out: &mut String, upto: usize, copied: &mut usize| {
        let from = out.len();
        out.push_str(&s[*copied..upto]);
        out[from..].make_ascii_lowercase();
        *copied = upto;
    };
    let mut i = 0;
    loop {
        i = next_non_plain(bytes, i);
        if i >= bytes.len() {
            break;
        }
        if bytes[i] < 0x80 {
            // A tab or a carriage return.
            flush(&mut out, i, &mut copied);
            out.push(' ');
            i += 1;
            copied = i;
            continue;
        }
        let Some(c) = s[i..].chars().next() else {
            break;
        };
        let n = c.len_utf8();
        if let Some(l) = lower_same_length(c, bytes[i]) {
            flush(&mut out, i, &mut copied);
            out.push(l);
            copied = i + n;
        }
        i += n;
    }
    flush(&mut out, bytes.len(), &mut copied);
    out
}

/// The lower-case form of a non-ASCII character whose UTF-8 starts with `lead`, when it
/// differs and has the same UTF-8 length. Latin-1 and basic Cyrillic are computed directly;
/// blocks without case are skipped without a table lookup.
#[inline]
fn lower_same_length(c: char, lead: u8) -> Option<char> {
    let cp = u32::from(c);
    match lead {
        // U+00C0..U+00FF: À..Þ (not ×) are upper case, the rest are not.
        0xC3 => ((0xC0..=0xDE).contains(&cp) && cp != 0xD7).then(|| char::from_u32(cp + 0x20))?,
        // U+0400..U+043F: Ѐ..Џ and А..Я are upper case; а..п are not.
        0xD0 => match cp {
            0x400..=0x40F => char::from_u32(cp + 0x50),
            0x410..=0x42F => char::from_u32(cp + 0x20),
            _ => None,
        },
        _ if uncased_block(lead) => None,
        _ if c.is_uppercase() || is_titlecase(c) => {
            let mut l = c.to_lowercase();
            match (l.next(), l.next()) {
                (Some(x), None) if x != c && x.len_utf8() == c.len_utf8() => Some(x),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Does the lead byte start a character in U+3000..U+9FFF or U+B000..U+DFFF (kana, CJK,
/// Hangul), blocks without any cased letter? (U+A000..U+AFFF has some.)
fn uncased_block(lead: u8) -> bool {
    matches!(lead, 0xE3..=0xE9 | 0xEB..=0xED)
}

/// The title-case letters (Unicode category Lt), which are neither upper nor lower case.
fn is_titlecase(c: char) -> bool {
    matches!(c, 'ǅ' | 'ǈ' | 'ǋ' | 'ǲ' | '\u{1F88}'..='\u{1F8F}' | '\u{1F98}'..='\u{1F9F}' | '\u{1FA8}'..='\u{1FAF}' | 'ᾼ' | 'ῌ' | 'ῼ')
}

/// Position of the next byte that [`lowercase`] cannot copy as ASCII: a byte >= 0x80, a tab
/// or a carriage return (eight bytes at a time).
fn next_non_plain(bytes: &[u8], from: usize) -> usize {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const ONES: u64 = 0x0101_0101_0101_0101;
    let plain = |b: u8| b < 0x80 && b != b'\t' && b != b'\r';
    let mut i = from;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let mut arr = [0u8; 8];
        arr.copy_from_slice(chunk);
        let w = u64::from_le_bytes(arr);
        // "Has a zero byte" for w ^ '\t' and w ^ '\r'; may flag a plain byte, never miss one.
        let tab = w ^ (ONES * 0x09);
        let cr = w ^ (ONES * 0x0d);
        let zero = |x: u64| x.wrapping_sub(ONES) & !x;
        if (w | zero(tab) | zero(cr)) & HIGH != 0
            && let Some(p) = chunk.iter().position(|&b| !plain(b))
        {
            return i + p;
        }
        i += 8;
    }
    bytes[i.min(bytes.len())..]
        .iter()
        .position(|&b| !plain(b))
        .map_or(bytes.len(), |p| i + p)
}

/// The filter. Build once (compiles the patterns), then call [`Guard::analyze`] from any
/// number of threads.
#[derive(Debug)]
pub struct Guard {
    config: GuardConfig,
    patterns: patterns::Patterns,
    structure: structure::Structure,
    decoder: decode::Decoder,
    model: Option<Classifier>,
}

/// Normalize (stage 1, default limits) and lower-case: the text stage 4 sees.
pub(crate) fn prepare(text: &str) -> String {
    let mut sink = FindingSink::new(1);
    let cfg = GuardConfig::default();
    lowercase(&unicode::normalize(text, cfg.combining_mark_limit, &mut sink).text)
}

impl Guard {
    /// Build a guard with the bundled classifier weights (when `enable_model`).
    pub fn new(config: GuardConfig) -> Result<Self, GuardError> {
        let model = if config.enable_model {
            Some(Classifier::bundled()?)
        } else {
            None
        };
        Self::with_classifier(config, model)
    }

    /// Build a guard with the given stage-4 model (a locally refitted one, say); `None`, or
    /// `enable_model` off, runs stages 1 to 3 only.
    pub fn with_classifier(
        config: GuardConfig,
        model: Option<Classifier>,
    ) -> Result<Self, GuardError> {
        config.validate()?;
        let model = model.filter(|_| config.enable_model);
        Ok(Self {
            config,
            patterns: patterns::Patterns::new()?,
            structure: structure::Structure::new()?,
            decoder: decode::Decoder::new()?,
            model,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &GuardConfig {
        &self.config
    }

    /// Stage 1 only: the normalized text and its findings (for benchmarks and tools).
    pub fn normalize(&self, text: &str) -> (String, Vec<Finding>) {
        let mut sink = FindingSink::new(self.config.max_findings_per_rule);
        let n = unicode::normalize(text, self.config.combining_mark_limit, &mut sink);
        (n.text, sink.findings)
    }

    /// Stage 2 only over already-normalized text; returns the number of hits (benchmarks).
    pub fn pattern_hits(&self, normalized: &str) -> usize {
        let lower = lowercase(normalized);
        let mut hits = Vec::new();
        self.patterns
            .scan(&lower, self.config.max_findings_per_rule, &mut hits);
        hits.len()
    }

    /// Stage 3 only over already-normalized text; returns the number of hits (benchmarks).
    pub fn structure_hits(&self, normalized: &str) -> usize {
        let lower = lowercase(normalized);
        let mut hits = Vec::new();
        self.structure.scan(&lower, &[], &mut hits);
        hits.len()
    }

    /// Stage 4 only: the classifier probability, if the model is enabled.
    pub fn model_score(&self, normalized: &str) -> Option<f64> {
        self.model
            .as_ref()
            .map(|m| m.score_lower(&lowercase(normalized)))
    }

    /// The stage-4 model in use, if any.
    pub fn classifier(&self) -> Option<&Classifier> {
        self.model.as_ref()
    }

    /// Stages 2 and 3 (and decoding) over one normalized text; hits in its coordinates.
    fn text_hits(
        &self,
        normalized: &str,
        depth: u8,
        budget: &mut usize,
    ) -> (String, Vec<Hit>, Vec<(Hit, String)>) {
        let lower = lowercase(normalized);
        let mut hits = Vec::new();
        self.patterns
            .scan(&lower, self.config.max_findings_per_rule, &mut hits);
        let mut decoded = Vec::new();
        if depth < self.config.max_decode_depth {
            for (enc, span, payload) in self.decoder.candidates(normalized, budget) {
                if let Some((weight, rules)) = self.inner(&payload, depth + 1, budget) {
                    let hit = Hit {
                        stage: Stage::Pattern,
                        rule: enc.rule(),
                        weight: (weight + 0.05).min(0.95),
                        span,
                    };
                    hits.push(hit.clone());
                    decoded.push((hit, format!("decoded payload contains: {rules}")));
                }
            }
        }
        let mut structural = Vec::new();
        self.structure.scan(&lower, &hits, &mut structural);
        hits.extend(structural);
        (lower, hits, decoded)
    }

    /// Analyse a decoded or hidden payload: the highest weight found and the rules.
    fn inner(&self, payload: &str, depth: u8, budget: &mut usize) -> Option<(f32, String)> {
        let mut sink = FindingSink::new(1);
        let n = unicode::normalize(payload, self.config.combining_mark_limit, &mut sink);
        let (_, hits, _) = self.text_hits(&n.text, depth, budget);
        let strong: Vec<&Hit> = hits.iter().filter(|h| h.weight >= 0.3).collect();
        let max = strong.iter().map(|h| h.weight).fold(0.0f32, f32::max);
        if strong.is_empty() {
            return None;
        }
        let mut rules: Vec<&str> = strong.iter().map(|h| h.rule).collect();
        rules.sort_unstable();
        rules.dedup();
        Some((max, rules.join(", ")))
    }

    /// Run all stages over `text`.
    pub fn analyze(&self, text: &str) -> Analysis {
        let cfg = &self.config;
        let mut sink = FindingSink::new(cfg.max_findings_per_rule);
        let mut budget = cfg.max_decode_bytes;
        let norm = unicode::normalize(text, cfg.combining_mark_limit, &mut sink);
        let (lower, hits, decoded) = self.text_hits(&norm.text, 0, &mut budget);
        let to_orig = |s: Span| Span::new(norm.map.start(s.start), norm.map.end(s.end));
        for h in &hits {
            let detail = decoded
                .iter()
                .find(|(d, _)| d == h)
                .map(|(_, detail)| detail.clone());
            sink.push_detail(h.stage, h.rule, h.weight, to_orig(h.span), detail);
        }
        for (span, payload) in &norm.hidden {
            if let Some((weight, rules)) = self.inner(payload, 1, &mut budget) {
                sink.push_detail(
                    Stage::Pattern,
                    "tag_smuggled_injection",
                    (weight + 0.05).min(0.95),
                    *span,
                    Some(format!("hidden text {payload:?} contains: {rules}")),
                );
            }
        }
        let mut risk = sink.rule_risk();
        let model_score = self.model.as_ref().map(|m| m.score_lower(&lower));
        if let (Some(m), Some(p)) = (&self.model, model_score) {
            let model_risk = cfg.model_weight * m.risk(p);
            if p >= m.calibration().0 {
                sink.push_detail(
                    Stage::Model,
                    "classifier",
                    model_risk as f32,
                    Span::new(0, text.len()),
                    Some(format!("n-gram classifier probability {p:.3}")),
                );
            }
            risk = 1.0 - (1.0 - risk) * (1.0 - model_risk);
        }
        let risk_score = risk.clamp(0.0, 1.0);

        let clean_text = if cfg.redact {
            redact(&norm.text, &hits)
        } else {
            norm.text
        };
        let mut findings = sink.findings;
        findings.sort_by(|a, b| {
            a.span
                .start
                .cmp(&b.span.start)
                .then(a.rule.cmp(&b.rule))
                .then(a.span.end.cmp(&b.span.end))
        });
        // The same rule can match the same bytes through a literal and a regex.
        findings.dedup_by(|a, b| a.rule == b.rule && a.span == b.span);
        let quarantined = fragments(text, &findings);
        Analysis {
            clean_text,
            quarantined,
            risk_score,
            verdict: cfg.verdict(risk_score),
            detected_patterns: findings,
            model_score,
            suppressed_findings: sink.suppressed,
        }
    }
}

/// Replace high-confidence hits (weight >= 0.5) with `[quarantined]`.
fn redact(text: &str, hits: &[Hit]) -> String {
    let mut spans: Vec<Span> = hits
        .iter()
        .filter(|h| h.weight >= 0.5)
        .map(|h| h.span)
        .collect();
    if spans.is_empty() {
        return text.to_owned();
    }
    spans.sort();
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    for s in spans {
        if s.end <= pos
            || s.start > text.len()
            || !text.is_char_boundary(s.start)
            || !text.is_char_boundary(s.end.min(text.len()))
        {
            continue;
        }
        let start = s.start.max(pos);
        out.push_str(&text[pos..start]);
        out.push_str("[quarantined]");
        pos = s.end.min(text.len());
    }
    out.push_str(&text[pos..]);
    out
}

const MAX_FRAGMENT: usize = 4096;
const MAX_FRAGMENTS: usize = 64;

/// Merge the spans of notable findings into fragments of the original text.
fn fragments(text: &str, findings: &[Finding]) -> Vec<Fragment> {
    let mut out: Vec<Fragment> = Vec::new();
    let notable = findings.iter().filter(|f| {
        f.weight >= 0.3
            && f.stage != Stage::Model
            && f.rule != "delimiter_density"
            && f.span.end > f.span.start
    });
    for f in notable {
        match out.last_mut() {
            Some(last) if f.span.start <= last.span.end => {
                last.span.end = last.span.end.max(f.span.end);
                if !last.rules.contains(&f.rule) {
                    last.rules.push(f.rule.clone());
                }
            }
            _ => {
                if out.len() >= MAX_FRAGMENTS {
                    break;
                }
                out.push(Fragment {
                    span: f.span,
                    text: String::new(),
                    rules: vec![f.rule.clone()],
                });
            }
        }
    }
    for frag in &mut out {
        let mut end = frag
            .span
            .end
            .min(text.len())
            .min(frag.span.start + MAX_FRAGMENT);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let start = frag.span.start.min(end);
        frag.text = text.get(start..end).unwrap_or_default().to_owned();
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    #[test]
    fn titlecase_table_is_category_lt() {
        let lt: Vec<char> = (0..=0x10FFFFu32)
            .filter_map(char::from_u32)
            .filter(|&c| {
                !c.is_uppercase() && !c.is_lowercase() && c.to_lowercase().ne(std::iter::once(c))
            })
            .collect();
        for c in &lt {
            assert!(super::is_titlecase(*c), "{c:?} U+{:04X}", u32::from(*c));
        }
    }

    #[test]
    fn lower_same_length_agrees_with_std_for_every_char() {
        for c in (0x80..=0x10FFFFu32).filter_map(char::from_u32) {
            let mut buf = [0u8; 4];
            let lead = c.encode_utf8(&mut buf).as_bytes()[0];
            let mut l = c.to_lowercase();
            let want = match (l.next(), l.next()) {
                (Some(x), None) if x != c && x.len_utf8() == c.len_utf8() => Some(x),
                _ => None,
            };
            assert_eq!(
                super::lower_same_length(c, lead),
                want,
                "U+{:04X}",
                u32::from(c)
            );
        }
    }

    #[test]
    fn uncased_blocks_have_no_case() {
        for c in (0x3000..=0x9FFFu32)
            .chain(0xB000..=0xDFFF)
            .filter_map(char::from_u32)
        {
            let mut buf = [0u8; 4];
            assert!(super::uncased_block(c.encode_utf8(&mut buf).as_bytes()[0]));
            assert!(
                c.to_lowercase().eq(std::iter::once(c)),
                "U+{:04X}",
                u32::from(c)
            );
        }
        for lead in [0xE2, 0xEA, 0xEE, 0xF0] {
            assert!(!super::uncased_block(lead));
        }
    }

    /// One character at a time: the definition `lowercase` must agree with.
    fn reference(s: &str) -> String {
        s.chars()
            .map(|c| match c {
                '\t' | '\r' => ' ',
                c => {
                    let mut l = c.to_lowercase();
                    match (l.next(), l.next()) {
                        (Some(x), None) if x.len_utf8() == c.len_utf8() => x,
                        _ => c,
                    }
                }
            })
            .collect()
    }

    proptest! {
        #[test]
        fn lowercase_agrees_with_the_char_loop(s in "(?s)[a-zA-Z \t\r\nÄÖÞ×ßİẞДЖЀЏяѐΣ😀ǅῼ日]{0,40}") {
            let lower = super::lowercase(&s);
            prop_assert_eq!(lower.len(), s.len());
            prop_assert_eq!(lower, reference(&s));
        }
    }
}
