//! Labelled datasets and detection metrics for `guard eval`.
//!
//! Datasets are CSV (a header with `text` and `label` columns, RFC 4180 quoting) or JSONL
//! (`{"text": ..., "label": ...}` per line). Labels may be booleans, 0/1, or words such as
//! `injection`/`benign`.

use std::path::Path;

use autogit_guard::Guard;
use serde::{Deserialize, Serialize};

use crate::ServiceError;

/// One labelled text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    /// The text.
    pub text: String,
    /// True for an injection.
    pub label: bool,
}

fn parse_label(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "injection" | "malicious" | "jailbreak" | "attack" | "positive"
        | "unsafe" => Some(true),
        "0" | "false" | "benign" | "safe" | "clean" | "negative" | "legitimate" => Some(false),
        _ => None,
    }
}

fn label_from_json(v: &serde_json::Value) -> Option<bool> {
    match v {
        serde_json::Value::Bool(b) => Some(*b),
        serde_json::Value::Number(n) => n.as_f64().map(|x| x >= 0.5),
        serde_json::Value::String(s) => parse_label(s),
        _ => None,
    }
}

/// Load a dataset; the format follows the extension (`.csv`, else JSONL).
pub fn load_dataset(path: &Path) -> Result<Vec<Example>, ServiceError> {
    let text = std::fs::read_to_string(path).map_err(|e| ServiceError::io(path, e))?;
    let is_csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    if is_csv {
        parse_csv(path, &text)
    } else {
        parse_jsonl(path, &text)
    }
}

fn dataset_error(path: &Path, line: usize, message: impl Into<String>) -> ServiceError {
    ServiceError::Dataset {
        path: path.to_owned(),
        line,
        message: message.into(),
    }
}

/// Parse JSONL text.
pub fn parse_jsonl(path: &Path, text: &str) -> Result<Vec<Example>, ServiceError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| dataset_error(path, i + 1, e.to_string()))?;
        let t = v
            .get("text")
            .or_else(|| v.get("prompt"))
            .and_then(|t| t.as_str())
            .ok_or_else(|| dataset_error(path, i + 1, "missing string field \"text\""))?;
        let label = v
            .get("label")
            .and_then(label_from_json)
            .ok_or_else(|| dataset_error(path, i + 1, "missing or unrecognised \"label\""))?;
        out.push(Example {
            text: t.to_owned(),
            label,
        });
    }
    Ok(out)
}

/// Split CSV text into records (RFC 4180: quoted fields, doubled quotes, newlines in quotes).
/// Returns each record with the 1-based line it starts on.
fn csv_records(text: &str) -> Vec<(usize, Vec<String>)> {
    let mut records = Vec::new();
    let mut field = String::new();
    let mut record = Vec::new();
    let mut in_quotes = false;
    let mut line = 1;
    let mut start_line = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\n' {
            line += 1;
        }
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' => in_quotes = true,
            ',' => record.push(std::mem::take(&mut field)),
            '\r' => {}
            '\n' => {
                record.push(std::mem::take(&mut field));
                if !(record.len() == 1 && record[0].is_empty()) {
                    records.push((start_line, std::mem::take(&mut record)));
                }
                record.clear();
                start_line = line;
            }
            _ => field.push(c),
        }
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push((start_line, record));
    }
    records
}

/// Parse CSV text with a header naming `text` and `label` columns.
pub fn parse_csv(path: &Path, text: &str) -> Result<Vec<Example>, ServiceError> {
    let mut records = csv_records(text).into_iter();
    let (_, header) = records
        .next()
        .ok_or_else(|| dataset_error(path, 1, "empty file"))?;
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
    };
    let text_col = col("text")
        .or_else(|| col("prompt"))
        .ok_or_else(|| dataset_error(path, 1, "no \"text\" column"))?;
    let label_col = col("label").ok_or_else(|| dataset_error(path, 1, "no \"label\" column"))?;
    let mut out = Vec::new();
    for (line, rec) in records {
        let t = rec
            .get(text_col)
            .ok_or_else(|| dataset_error(path, line, "missing text field"))?;
        let l = rec
            .get(label_col)
            .ok_or_else(|| dataset_error(path, line, "missing label field"))?;
        let label = parse_label(l)
            .ok_or_else(|| dataset_error(path, line, format!("unrecognised label {l:?}")))?;
        out.push(Example {
            text: t.clone(),
            label,
        });
    }
    Ok(out)
}

/// Detection figures at one threshold plus threshold-free ones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Examples.
    pub n: usize,
    /// Injections in the set.
    pub positives: usize,
    /// Benign texts in the set.
    pub negatives: usize,
    /// Risk at or above which a text counts as detected.
    pub threshold: f64,
    /// Detected injections.
    pub true_positives: usize,
    /// Benign texts flagged.
    pub false_positives: usize,
    /// Benign texts passed.
    pub true_negatives: usize,
    /// Injections missed.
    pub false_negatives: usize,
    /// Recall.
    pub tpr: f64,
    /// False-positive rate.
    pub fpr: f64,
    /// Precision.
    pub precision: f64,
    /// F1 score.
    pub f1: f64,
    /// Area under the ROC curve (Mann-Whitney, ties counted half).
    pub roc_auc: f64,
    /// Best TPR with FPR at most 1 %.
    pub tpr_at_1pct_fpr: f64,
    /// Best TPR with FPR at most 5 %.
    pub tpr_at_5pct_fpr: f64,
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Compute metrics from `(score, label)` pairs.
pub fn metrics(scored: &[(f64, bool)], threshold: f64) -> Metrics {
    let positives = scored.iter().filter(|s| s.1).count();
    let negatives = scored.len() - positives;
    let tp = scored.iter().filter(|s| s.1 && s.0 >= threshold).count();
    let fp = scored.iter().filter(|s| !s.1 && s.0 >= threshold).count();
    let precision = ratio(tp, tp + fp);
    let tpr = ratio(tp, positives);
    let f1 = if precision + tpr == 0.0 {
        0.0
    } else {
        2.0 * precision * tpr / (precision + tpr)
    };

    // ROC AUC via average ranks.
    let mut sorted: Vec<(f64, bool)> = scored.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j < sorted.len() && sorted[j].0 == sorted[i].0 {
            j += 1;
        }
        let avg_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum_pos += avg_rank * sorted[i..j].iter().filter(|s| s.1).count() as f64;
        i = j;
    }
    let roc_auc = if positives == 0 || negatives == 0 {
        0.0
    } else {
        let p = positives as f64;
        (rank_sum_pos - p * (p + 1.0) / 2.0) / (p * negatives as f64)
    };

    // TPR at a maximum FPR: sweep thresholds from the top.
    let tpr_at = |max_fpr: f64| {
        let mut best = 0.0f64;
        let mut desc = sorted.clone();
        desc.reverse();
        let (mut tp, mut fp) = (0usize, 0usize);
        let mut k = 0;
        while k < desc.len() {
            let score = desc[k].0;
            while k < desc.len() && desc[k].0 == score {
                if desc[k].1 {
                    tp += 1
                } else {
                    fp += 1
                }
                k += 1;
            }
            if ratio(fp, negatives) <= max_fpr {
                best = best.max(ratio(tp, positives));
            }
        }
        best
    };
    Metrics {
        n: scored.len(),
        positives,
        negatives,
        threshold,
        true_positives: tp,
        false_positives: fp,
        true_negatives: negatives - fp,
        false_negatives: positives - tp,
        tpr,
        fpr: ratio(fp, negatives),
        precision,
        f1,
        roc_auc,
        tpr_at_1pct_fpr: tpr_at(0.01),
        tpr_at_5pct_fpr: tpr_at(0.05),
    }
}

/// A misclassified example, for the report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Miss {
    /// Index in the dataset (0-based).
    pub index: usize,
    /// The label.
    pub label: bool,
    /// The risk score.
    pub risk_score: f64,
    /// Start of the text.
    pub text: String,
}

/// Score every example with `guard`; returns metrics at `threshold` and the misclassified ones.
pub fn evaluate(guard: &Guard, examples: &[Example], threshold: f64) -> (Metrics, Vec<Miss>) {
    let mut scored = Vec::with_capacity(examples.len());
    let mut misses = Vec::new();
    for (index, e) in examples.iter().enumerate() {
        let risk = guard.analyze(&e.text).risk_score;
        scored.push((risk, e.label));
        if (risk >= threshold) != e.label {
            misses.push(Miss {
                index,
                label: e.label,
                risk_score: risk,
                text: e.text.chars().take(120).collect(),
            });
        }
    }
    (metrics(&scored, threshold), misses)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{metrics, parse_csv, parse_jsonl};

    #[test]
    fn metrics_on_a_known_ranking() {
        // Scores: positives 0.9, 0.8, 0.4; negatives 0.7, 0.2, 0.1.
        let s = [
            (0.9, true),
            (0.8, true),
            (0.4, true),
            (0.7, false),
            (0.2, false),
            (0.1, false),
        ];
        let m = metrics(&s, 0.5);
        assert_eq!(
            (
                m.true_positives,
                m.false_positives,
                m.true_negatives,
                m.false_negatives
            ),
            (2, 1, 2, 1)
        );
        assert!((m.tpr - 2.0 / 3.0).abs() < 1e-9);
        assert!((m.fpr - 1.0 / 3.0).abs() < 1e-9);
        assert!((m.precision - 2.0 / 3.0).abs() < 1e-9);
        assert!((m.f1 - 2.0 / 3.0).abs() < 1e-9);
        // 8 of 9 positive/negative pairs are ordered correctly.
        assert!((m.roc_auc - 8.0 / 9.0).abs() < 1e-9);
        // With no false positive allowed, the best cut is above 0.7: TPR 2/3.
        assert!((m.tpr_at_1pct_fpr - 2.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn ties_count_half_in_auc() {
        let m = metrics(&[(0.5, true), (0.5, false)], 0.5);
        assert!((m.roc_auc - 0.5).abs() < 1e-9);
    }

    #[test]
    fn parses_csv_with_quotes_and_newlines() {
        let csv = "id,text,label\n1,\"hello, \"\"world\"\"\nsecond line\",benign\n2,ignore it,1\n";
        let ex = parse_csv(Path::new("x.csv"), csv).expect("csv");
        assert_eq!(ex.len(), 2);
        assert_eq!(ex[0].text, "hello, \"world\"\nsecond line");
        assert!(!ex[0].label && ex[1].label);
        assert!(parse_csv(Path::new("x.csv"), "text,label\nabc,maybe\n").is_err());
    }

    #[test]
    fn parses_jsonl_label_forms() {
        let j = "{\"text\":\"a\",\"label\":1}\n\n{\"text\":\"b\",\"label\":\"benign\"}\n{\"text\":\"c\",\"label\":true}\n";
        let ex = parse_jsonl(Path::new("x.jsonl"), j).expect("jsonl");
        assert_eq!(
            ex.iter().map(|e| e.label).collect::<Vec<_>>(),
            [true, false, true]
        );
        let err = parse_jsonl(Path::new("x.jsonl"), "{\"text\":\"a\"}\n").expect_err("no label");
        assert!(err.to_string().contains("line 1"), "{err}");
    }
}
