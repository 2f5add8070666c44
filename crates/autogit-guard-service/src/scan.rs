//! `guard scan-repo`: walk a repository's text files (honouring `.gitignore`) and report
//! Trojan Source bidi controls, invisible characters and homoglyph identifiers.

use std::fmt::Write as _;
use std::path::Path;

use autogit_guard::{SourceFinding, SourceFindingKind, scan_source};
use serde::{Deserialize, Serialize};

use crate::ServiceError;

/// Files larger than this are skipped.
pub const MAX_FILE_BYTES: u64 = 10 << 20;

/// A finding in one file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFinding {
    /// Path relative to the scanned root, with `/` separators.
    pub path: String,
    /// The finding.
    #[serde(flatten)]
    pub finding: SourceFinding,
}

/// The result of a scan.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanReport {
    /// Text files scanned.
    pub files_scanned: usize,
    /// Files skipped (binary, not UTF-8, too large).
    pub files_skipped: usize,
    /// Findings, ordered by path, line, column.
    pub findings: Vec<FileFinding>,
}

impl ScanReport {
    /// Whether any finding should fail a CI job.
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.finding.kind.is_error())
    }
}

/// Scan every text file under `root` (a file may be given too).
pub fn scan_repo(root: &Path) -> Result<ScanReport, ServiceError> {
    let meta = std::fs::metadata(root).map_err(|e| ServiceError::io(root, e))?;
    let mut report = ScanReport::default();
    if meta.is_file() {
        let name = root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        scan_file(root, &name, &mut report)?;
        return Ok(report);
    }
    let walker = ignore::WalkBuilder::new(root)
        .hidden(false)
        .git_ignore(true)
        .git_exclude(true)
        .require_git(false)
        .filter_entry(|e| e.file_name() != ".git")
        .sort_by_file_path(|a, b| a.cmp(b))
        .build();
    for entry in walker {
        let entry =
            entry.map_err(|e| ServiceError::io(root, std::io::Error::other(e.to_string())))?;
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(root)
            .unwrap_or(entry.path())
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        scan_file(entry.path(), &rel, &mut report)?;
    }
    Ok(report)
}

fn scan_file(path: &Path, rel: &str, report: &mut ScanReport) -> Result<(), ServiceError> {
    let len = std::fs::metadata(path)
        .map_err(|e| ServiceError::io(path, e))?
        .len();
    if len > MAX_FILE_BYTES {
        report.files_skipped += 1;
        return Ok(());
    }
    let bytes = std::fs::read(path).map_err(|e| ServiceError::io(path, e))?;
    if bytes[..bytes.len().min(8192)].contains(&0) {
        report.files_skipped += 1;
        return Ok(());
    }
    let Ok(text) = String::from_utf8(bytes) else {
        report.files_skipped += 1;
        return Ok(());
    };
    report.files_scanned += 1;
    report
        .findings
        .extend(scan_source(&text).into_iter().map(|finding| FileFinding {
            path: rel.to_owned(),
            finding,
        }));
    Ok(())
}

/// `path:line:column: level[rule]: message` lines.
pub fn to_text(report: &ScanReport) -> String {
    let mut out = String::new();
    for f in &report.findings {
        let level = if f.finding.kind.is_error() {
            "error"
        } else {
            "warning"
        };
        let _ = writeln!(
            out,
            "{}:{}:{}: {level}[{}]: {}",
            f.path,
            f.finding.line,
            f.finding.column,
            f.finding.kind.rule_id(),
            f.finding.message
        );
    }
    let _ = writeln!(
        out,
        "{} finding(s) in {} file(s) scanned ({} skipped)",
        report.findings.len(),
        report.files_scanned,
        report.files_skipped
    );
    out
}

fn rule_description(kind: SourceFindingKind) -> &'static str {
    match kind {
        SourceFindingKind::BidiControl => {
            "Bidirectional control character (Trojan Source, CVE-2021-42574)"
        }
        SourceFindingKind::InvisibleChar => "Invisible or format character",
        SourceFindingKind::HomoglyphIdentifier => {
            "Identifier with look-alike letters from another script (CVE-2021-42694)"
        }
        SourceFindingKind::MixedScriptIdentifier => "Identifier mixing scripts",
    }
}

/// SARIF 2.1.0 for code-scanning uploads. Columns are in Unicode code points.
pub fn to_sarif(report: &ScanReport) -> serde_json::Value {
    let kinds = [
        SourceFindingKind::BidiControl,
        SourceFindingKind::InvisibleChar,
        SourceFindingKind::HomoglyphIdentifier,
        SourceFindingKind::MixedScriptIdentifier,
    ];
    let rules: Vec<_> = kinds
        .iter()
        .map(|k| {
            serde_json::json!({
                "id": k.rule_id(),
                "shortDescription": { "text": rule_description(*k) },
                "defaultConfiguration": { "level": if k.is_error() { "error" } else { "warning" } },
            })
        })
        .collect();
    let results: Vec<_> = report
        .findings
        .iter()
        .map(|f| {
            serde_json::json!({
                "ruleId": f.finding.kind.rule_id(),
                "ruleIndex": kinds.iter().position(|k| *k == f.finding.kind).unwrap_or(0),
                "level": if f.finding.kind.is_error() { "error" } else { "warning" },
                "message": { "text": f.finding.message },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": { "uri": f.path },
                        "region": { "startLine": f.finding.line, "startColumn": f.finding.column },
                    }
                }],
            })
        })
        .collect();
    serde_json::json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "autogit-guard",
                "informationUri": "https://example.invalid/autogit",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    })
}
