//! `autogit guard …`: the prompt-injection filter's command line (issue 9).
//!
//! The analysis lives in `autogit-guard` (pure) and everything with I/O in
//! `autogit-guard-service`; this module parses arguments, reads input, prints, and maps
//! verdicts to exit codes:
//!
//! | code | meaning |
//! |------|---------|
//! | 0    | clean (check), no findings (scan-repo), success (other commands) |
//! | 1    | error (unreadable file, bad dataset, database or server failure) |
//! | 10   | suspicious (check) or findings that fail CI (scan-repo) |
//! | 11   | blocked (check) |

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use autogit_guard::{Analysis, Guard, GuardConfig, Verdict};
use autogit_guard_service::ServiceError;
use autogit_guard_service::eval;
use autogit_guard_service::limits::AuthToken;
use autogit_guard_service::scan;
use autogit_guard_service::server::{self, ServeOptions, ServerState};
use autogit_guard_service::store::{AnalysisStatus, QuarantineStore, Quota};

/// Exit code: clean / success.
pub const EXIT_CLEAN: u8 = 0;
/// Exit code: an error.
pub const EXIT_ERROR: u8 = 1;
/// Exit code: suspicious text, or scan-repo findings.
pub const EXIT_SUSPICIOUS: u8 = 10;
/// Exit code: blocked text.
pub const EXIT_BLOCKED: u8 = 11;

/// What the binary passes to [`run`].
#[derive(Debug, Clone)]
pub struct GuardContext {
    /// Global `--json`: machine-readable output everywhere.
    pub json: bool,
    /// autogit's data directory; the quarantine lives in `<data_dir>/guard/quarantine.sqlite`.
    pub data_dir: PathBuf,
}

impl GuardContext {
    fn store_path(&self) -> PathBuf {
        self.data_dir.join("guard").join("quarantine.sqlite")
    }
}

/// Output format of `guard check`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CheckOutput {
    /// Human-readable summary.
    #[default]
    Text,
    /// The full analysis as JSON.
    Json,
}

/// Output format of `guard scan-repo`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScanFormat {
    /// `path:line:column: level[rule]: message`.
    #[default]
    Text,
    /// The report as JSON.
    Json,
    /// SARIF 2.1.0 (for code-scanning uploads).
    Sarif,
}

/// Thresholds shared by `check`, `eval` and `serve`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ThresholdArgs {
    /// Risk at or above which a text is suspicious [default: 0.35].
    #[arg(long, value_name = "RISK")]
    pub suspicious_threshold: Option<f64>,
    /// Risk at or above which a text is blocked [default: 0.7].
    #[arg(long, value_name = "RISK")]
    pub block_threshold: Option<f64>,
    /// Skip stage 4 (the n-gram classifier); rules only.
    #[arg(long)]
    pub no_model: bool,
}

impl ThresholdArgs {
    fn config(&self) -> GuardConfig {
        let d = GuardConfig::default();
        GuardConfig {
            suspicious_threshold: self.suspicious_threshold.unwrap_or(d.suspicious_threshold),
            block_threshold: self.block_threshold.unwrap_or(d.block_threshold),
            enable_model: !self.no_model,
            ..d
        }
    }
}

/// Review states accepted by `quarantine list --status`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusArg {
    /// Awaiting review.
    Pending,
    /// Released as a false positive.
    Released,
}

/// `autogit guard quarantine …`
#[derive(clap::Subcommand, Debug)]
pub enum QuarantineAction {
    /// List quarantined texts, newest first.
    List {
        /// Only records in this state.
        #[arg(long)]
        status: Option<StatusArg>,
        /// At most this many records.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show one record in full (JSON, the platform spec's shape).
    Show {
        /// Record id, `q-YYYYMMDD-NNN`.
        id: String,
    },
    /// Mark a record as a false positive.
    Release {
        /// Record id.
        id: String,
    },
    /// Delete a record.
    Delete {
        /// Record id.
        id: String,
    },
}

/// `autogit guard …`: prompt-injection filter.
#[derive(clap::Subcommand, Debug)]
pub enum GuardCommand {
    /// Analyse a text for prompt injection; exit 0 clean, 10 suspicious, 11 blocked.
    Check {
        /// File to read; `-` or nothing reads standard input.
        file: Option<PathBuf>,
        /// Output format (the global `--output json` also selects JSON).
        #[arg(id = "check_format", long = "format", value_enum, default_value_t)]
        output: CheckOutput,
        /// Do not store suspicious or blocked texts in the quarantine.
        #[arg(long)]
        no_quarantine: bool,
        /// Source label stored with a quarantine record.
        #[arg(long, default_value = "cli")]
        source: String,
        #[command(flatten)]
        thresholds: ThresholdArgs,
    },
    /// Review quarantined texts.
    Quarantine {
        #[command(subcommand)]
        action: QuarantineAction,
    },
    /// Scan a repository for Trojan Source bidi controls, invisible characters and homoglyph
    /// identifiers; exit 10 when something should fail CI.
    ScanRepo {
        /// Repository (or file) to scan; `.gitignore` is honoured.
        path: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: ScanFormat,
    },
    /// Measure detection on a labelled dataset (CSV or JSONL with `text` and `label`).
    Eval {
        /// Dataset file (`.csv`, otherwise JSONL).
        file: PathBuf,
        /// Risk at or above which a text counts as detected [default: the suspicious threshold].
        #[arg(long)]
        threshold: Option<f64>,
        /// Also list the misclassified examples.
        #[arg(long)]
        show_misses: bool,
        #[command(flatten)]
        thresholds: ThresholdArgs,
    },
    /// Serve the filter over HTTP: Traefik forward-auth at /guard/forward-auth, and a reverse
    /// proxy to --upstream for everything else.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8787")]
        listen: SocketAddr,
        /// Inference API to proxy to, e.g. http://127.0.0.1:11434.
        #[arg(long)]
        upstream: Option<String>,
        /// Also inspect system/developer messages.
        #[arg(long)]
        scan_system: bool,
        /// Do not store suspicious or blocked prompts.
        #[arg(long)]
        no_quarantine: bool,
        #[command(flatten)]
        limits: ServeLimitArgs,
        #[command(flatten)]
        thresholds: ThresholdArgs,
    },
}

/// Authentication and resource limits of `guard serve`.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeLimitArgs {
    /// Largest request body accepted, in bytes (larger: 413).
    #[arg(long, default_value_t = 8 << 20)]
    max_body_bytes: usize,
    /// File holding the shared secret every route but /healthz requires (mode 0600); clients
    /// send it as `Proxy-Authorization: Bearer TOKEN` or `X-Autogit-Guard-Token: TOKEN`.
    #[arg(long, value_name = "FILE", conflicts_with = "auth_token_env")]
    auth_token_file: Option<PathBuf>,
    /// Name of the environment variable holding that secret.
    #[arg(long, value_name = "NAME")]
    auth_token_env: Option<String>,
    /// Listen beyond loopback without a token (only when something in front authenticates).
    #[arg(long)]
    insecure_no_auth: bool,
    /// Seconds for a request's headers to arrive before the connection is closed.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    header_timeout: u64,
    /// Seconds for a request's body to arrive (then 408).
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    body_timeout: u64,
    /// Open connections at most (more get 503).
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// Request body bytes held in memory at once, over all requests (more get 503 with
    /// Retry-After); never less than --max-body-bytes.
    #[arg(long, default_value_t = 64 << 20, value_name = "BYTES")]
    max_inflight_body_bytes: usize,
    /// Quarantine quota: most records (then released records are evicted oldest first, and
    /// new ones refused when none is left to evict).
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    quarantine_max_items: u64,
    /// Quarantine quota: most bytes.
    #[arg(long, default_value_t = 256 << 20, value_name = "BYTES")]
    quarantine_max_bytes: u64,
    /// Requests per second per client address (0: unlimited); more get 429 with Retry-After.
    #[arg(long, default_value_t = 10.0, value_name = "N")]
    rate_limit: f64,
    /// Requests a client may send at once before --rate-limit applies.
    #[arg(long, default_value_t = 40.0, value_name = "N")]
    rate_burst: f64,
}

fn fail(what: &str, err: &dyn std::fmt::Display, hint: &str) -> ExitCode {
    eprintln!("autogit: guard {what}: {err}; {hint}");
    ExitCode::from(EXIT_ERROR)
}

fn print_json(value: &impl serde::Serialize) -> Result<(), ServiceError> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Run a guard command.
pub fn run(cmd: GuardCommand, ctx: &GuardContext) -> ExitCode {
    match cmd {
        GuardCommand::Check {
            file,
            output,
            no_quarantine,
            source,
            thresholds,
        } => check(
            ctx,
            file.as_deref(),
            output,
            no_quarantine,
            &source,
            &thresholds,
        ),
        GuardCommand::Quarantine { action } => quarantine(ctx, action),
        GuardCommand::ScanRepo { path, format } => scan_repo(ctx, &path, format),
        GuardCommand::Eval {
            file,
            threshold,
            show_misses,
            thresholds,
        } => evaluate(ctx, &file, threshold, show_misses, &thresholds),
        GuardCommand::Serve {
            listen,
            upstream,
            scan_system,
            no_quarantine,
            limits,
            thresholds,
        } => serve(
            ctx,
            listen,
            upstream,
            scan_system,
            no_quarantine,
            &limits,
            &thresholds,
        ),
    }
}

fn read_input(file: Option<&Path>) -> Result<(String, String), ServiceError> {
    match file {
        None => read_stdin(),
        Some(p) if p == Path::new("-") => read_stdin(),
        Some(p) => {
            let bytes = std::fs::read(p).map_err(|e| ServiceError::Io {
                path: p.to_owned(),
                source: e,
            })?;
            Ok((
                String::from_utf8_lossy(&bytes).into_owned(),
                p.display().to_string(),
            ))
        }
    }
}

fn read_stdin() -> Result<(String, String), ServiceError> {
    let mut buf = Vec::new();
    std::io::stdin()
        .read_to_end(&mut buf)
        .map_err(|e| ServiceError::Io {
            path: PathBuf::from("<stdin>"),
            source: e,
        })?;
    Ok((
        String::from_utf8_lossy(&buf).into_owned(),
        "stdin".to_owned(),
    ))
}

fn verdict_code(v: Verdict) -> ExitCode {
    ExitCode::from(match v {
        Verdict::Clean => EXIT_CLEAN,
        Verdict::Suspicious => EXIT_SUSPICIOUS,
        Verdict::Blocked => EXIT_BLOCKED,
    })
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Clean => "clean",
        Verdict::Suspicious => "suspicious",
        Verdict::Blocked => "blocked",
    }
}

fn check(
    ctx: &GuardContext,
    file: Option<&Path>,
    output: CheckOutput,
    no_quarantine: bool,
    source: &str,
    thresholds: &ThresholdArgs,
) -> ExitCode {
    let guard = match Guard::new(thresholds.config()) {
        Ok(g) => g,
        Err(e) => {
            return fail(
                "check",
                &e,
                "thresholds must lie in [0, 1] with suspicious <= block",
            );
        }
    };
    let (text, origin) = match read_input(file) {
        Ok(x) => x,
        Err(e) => return fail("check", &e, "pass a readable file, or - for standard input"),
    };
    let analysis = guard.analyze(&text);
    let mut quarantine_id = None;
    if !no_quarantine && analysis.verdict != Verdict::Clean {
        let label = if source == "cli" {
            format!("cli:{origin}")
        } else {
            source.to_owned()
        };
        match QuarantineStore::open(&ctx.store_path())
            .and_then(|mut s| s.insert(&label, &text, &analysis))
        {
            Ok(r) => quarantine_id = Some(r.id),
            Err(e) => eprintln!(
                "autogit: guard check: could not quarantine: {e}; use --no-quarantine to skip storing"
            ),
        }
    }
    if ctx.json || output == CheckOutput::Json {
        let mut value = match serde_json::to_value(&analysis) {
            Ok(v) => v,
            Err(e) => return fail("check", &e, "this is a bug, please report it"),
        };
        value["quarantine_id"] = serde_json::json!(quarantine_id);
        if let Err(e) = print_json(&value) {
            return fail("check", &e, "this is a bug, please report it");
        }
    } else {
        print_analysis(&analysis, &text, quarantine_id.as_deref());
    }
    verdict_code(analysis.verdict)
}

fn print_analysis(a: &Analysis, text: &str, quarantine_id: Option<&str>) {
    println!(
        "verdict: {} (risk {:.2})",
        verdict_word(a.verdict),
        a.risk_score
    );
    for f in &a.detected_patterns {
        let frag: String = text
            .get(f.span.start..f.span.end)
            .unwrap_or_default()
            .chars()
            .take(60)
            .flat_map(char::escape_debug)
            .collect();
        println!(
            "  stage {} {:<34} bytes {}..{}  \"{}\"",
            f.stage.number(),
            f.rule,
            f.span.start,
            f.span.end,
            frag
        );
    }
    if a.suppressed_findings > 0 {
        println!("  ({} more findings not listed)", a.suppressed_findings);
    }
    if let Some(p) = a.model_score {
        println!("  classifier probability {p:.3}");
    }
    if let Some(id) = quarantine_id {
        println!("quarantined as {id} (review with: autogit guard quarantine show {id})");
    }
}

fn quarantine(ctx: &GuardContext, action: QuarantineAction) -> ExitCode {
    let path = ctx.store_path();
    let mut store = match QuarantineStore::open(&path) {
        Ok(s) => s,
        Err(e) => {
            return fail(
                "quarantine",
                &e,
                "check that the data directory is writable",
            );
        }
    };
    let result = match action {
        QuarantineAction::List { status, limit } => {
            let status = status.map(|s| match s {
                StatusArg::Pending => AnalysisStatus::Pending,
                StatusArg::Released => AnalysisStatus::Released,
            });
            store.list(status, limit).and_then(|records| {
                if ctx.json {
                    return print_json(&records);
                }
                if records.is_empty() {
                    println!("no quarantined texts");
                }
                for r in &records {
                    let preview: String = r
                        .original_text
                        .chars()
                        .take(50)
                        .flat_map(char::escape_debug)
                        .collect();
                    println!(
                        "{}  {}  {:<8}  risk {:.2}  {:<10}  {}  \"{}\"",
                        r.id,
                        r.timestamp,
                        serde_json::to_value(r.analysis_status)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default(),
                        r.risk_score,
                        verdict_word(r.verdict),
                        r.source,
                        preview
                    );
                }
                Ok(())
            })
        }
        QuarantineAction::Show { id } => store.get(&id).and_then(|r| print_json(&r)),
        QuarantineAction::Release { id } => store
            .set_status(&id, AnalysisStatus::Released)
            .and_then(|r| {
                if ctx.json {
                    print_json(&r)
                } else {
                    println!("released {}", r.id);
                    Ok(())
                }
            }),
        QuarantineAction::Delete { id } => store.delete(&id).and_then(|()| {
            if ctx.json {
                print_json(&serde_json::json!({ "deleted": id }))
            } else {
                println!("deleted {id}");
                Ok(())
            }
        }),
    };
    match result {
        Ok(()) => ExitCode::from(EXIT_CLEAN),
        Err(e @ ServiceError::NotFound(_)) => fail(
            "quarantine",
            &e,
            "list the ids with: autogit guard quarantine list",
        ),
        Err(e) => fail(
            "quarantine",
            &e,
            &format!("the database is {}", path.display()),
        ),
    }
}

fn scan_repo(ctx: &GuardContext, path: &Path, format: ScanFormat) -> ExitCode {
    let report = match scan::scan_repo(path) {
        Ok(r) => r,
        Err(e) => return fail("scan-repo", &e, "pass a readable directory or file"),
    };
    let format = if ctx.json && format == ScanFormat::Text {
        ScanFormat::Json
    } else {
        format
    };
    let printed = match format {
        ScanFormat::Text => {
            print!("{}", scan::to_text(&report));
            Ok(())
        }
        ScanFormat::Json => print_json(&report),
        ScanFormat::Sarif => print_json(&scan::to_sarif(&report)),
    };
    if let Err(e) = printed {
        return fail("scan-repo", &e, "this is a bug, please report it");
    }
    ExitCode::from(if report.has_errors() {
        EXIT_SUSPICIOUS
    } else {
        EXIT_CLEAN
    })
}

fn evaluate(
    ctx: &GuardContext,
    file: &Path,
    threshold: Option<f64>,
    show_misses: bool,
    thresholds: &ThresholdArgs,
) -> ExitCode {
    let config = thresholds.config();
    let threshold = threshold.unwrap_or(config.suspicious_threshold);
    let guard = match Guard::new(config) {
        Ok(g) => g,
        Err(e) => {
            return fail(
                "eval",
                &e,
                "thresholds must lie in [0, 1] with suspicious <= block",
            );
        }
    };
    let examples = match eval::load_dataset(file) {
        Ok(x) if !x.is_empty() => x,
        Ok(_) => {
            return fail(
                "eval",
                &"the dataset is empty",
                "add rows with text and label",
            );
        }
        Err(e) => {
            return fail(
                "eval",
                &e,
                "expected CSV (text,label header) or JSONL ({\"text\":…,\"label\":…})",
            );
        }
    };
    let (m, misses) = eval::evaluate(&guard, &examples, threshold);
    if ctx.json {
        let mut v = serde_json::json!({ "metrics": m });
        if show_misses {
            v["misses"] = serde_json::json!(misses);
        }
        return match print_json(&v) {
            Ok(()) => ExitCode::from(EXIT_CLEAN),
            Err(e) => fail("eval", &e, "this is a bug, please report it"),
        };
    }
    println!(
        "dataset      {} ({} injections, {} benign)",
        file.display(),
        m.positives,
        m.negatives
    );
    println!("threshold    {:.2}", m.threshold);
    println!(
        "TP {}  FP {}  TN {}  FN {}",
        m.true_positives, m.false_positives, m.true_negatives, m.false_negatives
    );
    println!("TPR          {:.3}", m.tpr);
    println!("FPR          {:.3}", m.fpr);
    println!("precision    {:.3}", m.precision);
    println!("F1           {:.3}", m.f1);
    println!("ROC AUC      {:.3}", m.roc_auc);
    println!("TPR@1%FPR    {:.3}", m.tpr_at_1pct_fpr);
    println!("TPR@5%FPR    {:.3}", m.tpr_at_5pct_fpr);
    if show_misses {
        for miss in &misses {
            let kind = if miss.label { "missed" } else { "false alarm" };
            println!(
                "  #{:<4} {kind:<11} risk {:.2}  {:?}",
                miss.index, miss.risk_score, miss.text
            );
        }
    }
    ExitCode::from(EXIT_CLEAN)
}

fn serve(
    ctx: &GuardContext,
    listen: SocketAddr,
    upstream: Option<String>,
    scan_system: bool,
    no_quarantine: bool,
    limits: &ServeLimitArgs,
    thresholds: &ThresholdArgs,
) -> ExitCode {
    let auth_token = match (&limits.auth_token_file, &limits.auth_token_env) {
        (Some(path), _) => AuthToken::from_file(path).map(Some),
        (None, Some(name)) => AuthToken::from_env(name).map(Some),
        (None, None) => Ok(None),
    };
    let auth_token = match auth_token {
        Ok(t) => t,
        Err(e) => return fail("serve", &e, "fix the token or its file"),
    };
    let guard = match Guard::new(thresholds.config()) {
        Ok(g) => g,
        Err(e) => {
            return fail(
                "serve",
                &e,
                "thresholds must lie in [0, 1] with suspicious <= block",
            );
        }
    };
    let store = if no_quarantine {
        None
    } else {
        match QuarantineStore::open(&ctx.store_path()) {
            Ok(s) => Some(s),
            Err(e) => {
                return fail(
                    "serve",
                    &e,
                    "check the data directory, or pass --no-quarantine",
                );
            }
        }
    };
    let options = ServeOptions {
        upstream,
        max_body_bytes: limits.max_body_bytes,
        scan_system,
        auth_token,
        insecure_no_auth: limits.insecure_no_auth,
        header_timeout: Duration::from_secs(limits.header_timeout.max(1)),
        body_timeout: Duration::from_secs(limits.body_timeout.max(1)),
        max_connections: limits.max_connections.max(1),
        max_inflight_body_bytes: limits.max_inflight_body_bytes,
        quarantine_quota: Some(Quota {
            max_items: limits.quarantine_max_items,
            max_bytes: limits.quarantine_max_bytes,
        }),
        rate_per_sec: limits.rate_limit,
        rate_burst: limits.rate_burst,
    };
    let state = match ServerState::new(guard, store, options) {
        Ok(s) => s,
        Err(e) => return fail("serve", &e, "this is a bug, please report it"),
    };
    match server::run_blocking(listen, state) {
        Ok(()) => ExitCode::from(EXIT_CLEAN),
        Err(e @ ServiceError::Auth(_)) => fail("serve", &e, "see docs/guard.md"),
        Err(e) => fail("serve", &e, "choose a free address with --listen"),
    }
}
