//! `autogit diagnose`: what a check is (id, title, status, evidence, the exact fix) and the
//! pure judgements of the facts the application layer gathers (engine, disk, ports,
//! services, flags, certificate, DNS answers, GitLab's health endpoints, background
//! migrations, the admin token, runner hosts, backups, mirrors, clocks); and the redaction of
//! what goes into a support bundle. Nothing here gathers anything: callers pass facts in.
//!
//! Check ids are stable (documented in docs/diagnose.md): `<group>` or `<group>.<subject>`,
//! where the group says which gatherer produces it (`--only` selects by id or group).

use serde::{Deserialize, Serialize};

/// How a check came out. Ordered from best to worst: the command's exit status is that of
/// the worst check (`Ok` and `Skip` both exit 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Not applicable to this configuration (TLS without BASE_DOMAIN, no runner hosts).
    Skip,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Skip => "skip",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// A fix `autogit diagnose --fix` may apply on its own: each goes through the controller
/// that owns it and can only bring the platform closer to its configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SafeFix {
    /// One reconcile pass of the platform controller: creates or starts what the state
    /// machine says should run. It respects the restart budget and never touches a flagged
    /// service, exactly as the daemon would.
    Reconcile,
    /// `tls renew`: a failed renewal leaves the current certificate serving.
    RenewCertificate,
}

impl SafeFix {
    pub fn as_str(self) -> &'static str {
        match self {
            SafeFix::Reconcile => "reconcile",
            SafeFix::RenewCertificate => "renew_certificate",
        }
    }
}

/// One check's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// Stable id: `engine`, `port.gitlab.31080`, `dns.gitlab.example.com`, ...
    pub id: String,
    pub title: String,
    pub status: Status,
    /// What was found (never a secret).
    pub evidence: String,
    /// The exact fix, as a command or an edit, when there is something to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// What `--fix` would do about it, when that is safe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub safe_fix: Option<SafeFix>,
}

impl Check {
    pub fn new(
        id: impl Into<String>,
        title: impl Into<String>,
        status: Status,
        evidence: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            title: title.into(),
            status,
            evidence: evidence.into(),
            fix: None,
            safe_fix: None,
        }
    }
    pub fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
    pub fn safe(mut self, f: SafeFix) -> Self {
        self.safe_fix = Some(f);
        self
    }
    /// The group (`dns` of `dns.gitlab.example.com`).
    pub fn group(&self) -> &str {
        group_of(&self.id)
    }
    /// A probe that did not answer in time.
    pub fn timed_out(id: &str, title: &str, secs: u64) -> Self {
        Check::new(
            id,
            title,
            Status::Fail,
            format!("no answer within {secs}s; the check was abandoned so the others could finish"),
        )
        .fix(format!(
            "run `autogit diagnose --only {id} --timeout {}s` to give it longer; a probe that never answers is itself the problem (a hung engine, a filtered port)",
            secs * 4
        ))
    }
}

/// The groups, in the order checks are shown.
pub const GROUPS: [&str; 12] = [
    "config", "engine", "port", "service", "flag", "tls", "dns", "gitlab", "runner", "backup",
    "mirror", "clock",
];

pub fn group_of(id: &str) -> &str {
    id.split_once('.').map_or(id, |(g, _)| g)
}

/// Whether a check id is selected by `--only` (each entry an id or a group); no entry
/// selects everything.
pub fn selected(only: &[String], id: &str) -> bool {
    only.is_empty()
        || only.iter().any(|o| {
            id == o
                || id
                    .strip_prefix(o.as_str())
                    .is_some_and(|r| r.starts_with('.'))
        })
}

/// Whether a group must be gathered for `--only`.
pub fn group_selected(only: &[String], group: &str) -> bool {
    only.is_empty() || only.iter().any(|o| group_of(o) == group)
}

/// An `--only` entry that names no group.
pub fn unknown_only(only: &[String]) -> Option<&str> {
    only.iter()
        .map(String::as_str)
        .find(|o| !GROUPS.contains(&group_of(o)))
}

/// The worst status; `Ok` for none.
pub fn worst(checks: &[Check]) -> Status {
    checks.iter().map(|c| c.status).max().unwrap_or(Status::Ok)
}

/// The safe fixes the checks ask for, each once, in a fixed order.
pub fn safe_fixes(checks: &[Check]) -> Vec<SafeFix> {
    let mut v: Vec<SafeFix> = checks
        .iter()
        .filter(|c| c.status >= Status::Warn)
        .filter_map(|c| c.safe_fix)
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Sorts by group order, then id.
pub fn sort(checks: &mut [Check]) {
    checks.sort_by(|a, b| {
        let ga = GROUPS.iter().position(|g| *g == a.group()).unwrap_or(99);
        let gb = GROUPS.iter().position(|g| *g == b.group()).unwrap_or(99);
        ga.cmp(&gb).then_with(|| a.id.cmp(&b.id))
    });
}

fn days(secs: i64) -> String {
    let d = secs / 86_400;
    if d.abs() >= 2 {
        format!("{d} days")
    } else {
        format!("{} hours", secs / 3600)
    }
}

fn date(unix: i64) -> String {
    crate::civil::rfc3339_utc(unix.max(0) as u64)
}

// ---- configuration ---------------------------------------------------------------------------

/// The configuration's diagnostics: how many errors and warnings, and the first message.
pub fn judge_config(errors: usize, warnings: usize, first: Option<&str>) -> Check {
    const T: &str = "configuration";
    let first = first.map(|f| format!(": {f}")).unwrap_or_default();
    if errors > 0 {
        return Check::new(
            "config",
            T,
            Status::Fail,
            format!("{errors} error(s), {warnings} warning(s){first}"),
        )
        .fix("`autogit validate` shows each with its location and how to fix it");
    }
    if warnings > 0 {
        return Check::new(
            "config",
            T,
            Status::Warn,
            format!("{warnings} warning(s){first}"),
        )
        .fix("`autogit validate` shows each with its location");
    }
    Check::new("config", T, Status::Ok, "valid")
}

// ---- engine and disk -------------------------------------------------------------------------

/// What the engine said about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EngineFacts {
    pub kind: String,
    pub version: String,
    pub api_version: String,
    pub rootless: bool,
    pub socket: String,
    /// `overlay2`, `btrfs`, `vfs`, ...; empty when not reported.
    pub storage_driver: String,
}

pub fn judge_engine(r: Result<&EngineFacts, &str>) -> Check {
    const T: &str = "container engine";
    let e = match r {
        Ok(e) => e,
        Err(err) => {
            return Check::new("engine", T, Status::Fail, err).fix(
                "start the engine (`sudo systemctl start docker`; rootless: `systemctl --user start docker`; Podman: `systemctl --user start podman.socket`), or point `platform.socket` in autogit.yml at its socket",
            );
        }
    };
    let evidence = format!(
        "{} {} (API {}){} at {}, storage driver {}",
        e.kind,
        e.version,
        e.api_version,
        if e.rootless { ", rootless" } else { "" },
        e.socket,
        if e.storage_driver.is_empty() {
            "unknown"
        } else {
            &e.storage_driver
        }
    );
    if e.storage_driver == "vfs" {
        return Check::new("engine", T, Status::Warn, evidence).fix(
            "the vfs storage driver copies every layer in full (slow, many GB for GitLab): configure overlay2 (or fuse-overlayfs for rootless) in the engine's daemon.json and restart it",
        );
    }
    Check::new("engine", T, Status::Ok, evidence)
}

/// Free space of the file system holding a directory autogit writes to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DiskFacts {
    pub path: String,
    pub free_bytes: u64,
    pub total_bytes: u64,
    pub free_inodes: u64,
    pub total_inodes: u64,
}

/// Fails under 5% or 1 GiB free (space or inodes), warns under 15% or 5 GiB.
pub fn judge_disk(id: &str, what: &str, r: Result<&DiskFacts, &str>) -> Check {
    let title = format!("free space for {what}");
    let d = match r {
        Ok(d) => d,
        Err(e) => {
            return Check::new(id, title, Status::Warn, e)
                .fix("check that the directory exists and autogit can read it");
        }
    };
    const GIB: u64 = 1 << 30;
    let pct = |free: u64, total: u64| free.saturating_mul(100).checked_div(total).unwrap_or(100);
    let space = pct(d.free_bytes, d.total_bytes);
    let inodes = pct(d.free_inodes, d.total_inodes);
    let evidence = format!(
        "{}: {:.1} GiB free of {:.1} GiB ({space}%), {inodes}% of inodes free",
        d.path,
        d.free_bytes as f64 / GIB as f64,
        d.total_bytes as f64 / GIB as f64
    );
    let fix = format!(
        "free space on the file system of {} (`docker system prune` removes unused images and build cache; `autogit backup` keeps `backup.retention` archives) or move it to a larger disk",
        d.path
    );
    let status = if space < 5 || d.free_bytes < GIB || (d.total_inodes > 0 && inodes < 5) {
        Status::Fail
    } else if space < 15 || d.free_bytes < 5 * GIB || (d.total_inodes > 0 && inodes < 15) {
        Status::Warn
    } else {
        return Check::new(id, title, Status::Ok, evidence);
    };
    Check::new(id, title, status, evidence).fix(fix)
}

// ---- ports -----------------------------------------------------------------------------------

/// A published host port of the plan, probed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PortFacts {
    pub service: String,
    /// The port's name in the plan (`http`, `ssh`).
    pub name: String,
    pub port: u16,
    /// The service's container is running.
    pub container_running: bool,
    /// A TCP connection to the port on loopback succeeded.
    pub answers: bool,
    /// When the container does not run: binding the port ourselves failed with this error
    /// (`Address in use`); `None` when it could be bound, or was not tried.
    pub bind_error: Option<String>,
    /// The configuration key that sets the port.
    pub setting: String,
}

pub fn judge_port(p: &PortFacts) -> Check {
    let id = format!("port.{}.{}", p.service, p.port);
    let title = format!("{} {} port {}", p.service, p.name, p.port);
    match (p.container_running, p.answers, &p.bind_error) {
        (true, true, _) => Check::new(
            id,
            title,
            Status::Ok,
            "published by the service's running container",
        ),
        (true, false, _) => Check::new(
            id,
            title,
            Status::Warn,
            "the container runs but nothing answers on the port",
        )
        .fix(format!(
            "`autogit logs {} --tail 100` (the service may still be starting); `docker port <container>` shows what is published",
            p.service
        )),
        (false, _, Some(err)) => Check::new(
            id,
            title,
            Status::Fail,
            format!(
                "the port is taken by another process ({err}): the service cannot start while it is"
            ),
        )
        .fix(format!(
            "find the process: `sudo ss -ltnp 'sport = :{}'`; stop it, or give the service another port ({} in autogit.yml, then `autogit install`)",
            p.port, p.setting
        )),
        (false, true, None) => Check::new(
            id,
            title,
            Status::Fail,
            "something else answers on the port while the service is not running",
        )
        .fix(format!(
            "find the process: `sudo ss -ltnp 'sport = :{}'`; stop it, or change {}",
            p.port, p.setting
        )),
        (false, false, None) => Check::new(
            id,
            title,
            Status::Ok,
            "free (the service is not running; see its service check)",
        ),
    }
}

// ---- services and flags ----------------------------------------------------------------------

/// A planned local service: the state machine's record and the engine's view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServiceFacts {
    pub service: String,
    /// The recorded state (`HEALTHY`, `FAILED`, ...), if any.
    pub recorded: Option<String>,
    pub flagged: bool,
    /// The container as the engine reports it; `None` when there is none.
    pub container: Option<ContainerFacts>,
    /// The engine could not be asked (its own check says why).
    pub engine_down: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ContainerFacts {
    /// `running`, `exited`, `created`, `paused`, `restarting`, `dead`.
    pub state: String,
    /// `healthy`, `unhealthy`, `starting`, `none`.
    pub health: String,
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
}

pub fn judge_service(s: &ServiceFacts) -> Check {
    let id = format!("service.{}", s.service);
    let title = format!("service {}", s.service);
    let recorded = s.recorded.as_deref().unwrap_or("never recorded");
    let not_flagged = |c: Check| {
        if s.flagged {
            c.fix(format!(
                "the service is flagged for a person (see flag.{0}): fix the cause, then `autogit reconcile --clear {0}`",
                s.service
            ))
        } else {
            c.safe(SafeFix::Reconcile)
        }
    };
    if s.engine_down {
        return Check::new(
            id,
            title,
            Status::Skip,
            format!("the engine did not answer (see `engine`); recorded state {recorded}"),
        );
    }
    let Some(c) = &s.container else {
        return not_flagged(
            Check::new(
                id,
                title,
                Status::Fail,
                format!("no container (recorded state {recorded})"),
            )
            .fix("`autogit install` (or `autogit reconcile`) creates it"),
        );
    };
    match (c.state.as_str(), c.health.as_str()) {
        ("running", "healthy" | "none") => Check::new(
            id,
            title,
            Status::Ok,
            format!("running, health {}, recorded {recorded}", c.health),
        ),
        ("running", "starting") => Check::new(
            id,
            title,
            Status::Warn,
            format!("running, health check still starting (recorded {recorded})"),
        )
        .fix(format!(
            "wait for its start period; `autogit logs {} -f` shows progress",
            s.service
        )),
        ("running", _) => not_flagged(
            Check::new(
                id,
                title,
                Status::Fail,
                format!("running but unhealthy (recorded {recorded})"),
            )
            .fix(format!(
                "`autogit logs {} --tail 100` for the cause; `autogit reconcile` repairs it now (the daemon would, within its restart budget)",
                s.service
            )),
        ),
        (state, _) => {
            let mut evidence = format!("container {state}");
            if let Some(code) = c.exit_code {
                evidence.push_str(&format!(", exit code {code}"));
            }
            if c.oom_killed {
                evidence.push_str(", killed for lack of memory (OOM)");
            }
            evidence.push_str(&format!("; recorded {recorded}"));
            let fix = if c.oom_killed {
                format!(
                    "raise its memory (`resources` in autogit.yml), then `autogit install`; `autogit logs {}` shows the rest",
                    s.service
                )
            } else {
                format!(
                    "`autogit reconcile` starts it; is `autogit daemon` running (`systemctl status autogit`)? `autogit logs {}` shows why it stopped",
                    s.service
                )
            };
            not_flagged(Check::new(id, title, Status::Fail, evidence).fix(fix))
        }
    }
}

/// A human-intervention flag raised in the state store.
pub fn judge_flag(service: &str, reason: &str) -> Check {
    Check::new(
        format!("flag.{service}"),
        format!("{service} needs a person"),
        Status::Fail,
        format!("flag raised: {reason}; autogit does not repair {service} until it is cleared"),
    )
    .fix(format!(
        "find the cause (`autogit logs {service} --tail 200`, `autogit status`), fix it, then `autogit reconcile --clear {service}`"
    ))
}

// ---- certificate -----------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CertFacts {
    pub names: Vec<String>,
    pub not_before: i64,
    pub not_after: i64,
}

/// `wanted`: the names the certificate must cover. `Ok(None)`: no certificate on disk.
pub fn judge_certificate(
    configured: Result<(), &str>,
    cert: Result<Option<&CertFacts>, &str>,
    wanted: &[String],
    now: i64,
) -> Check {
    const ID: &str = "tls.certificate";
    const T: &str = "TLS certificate";
    if let Err(why) = configured {
        return Check::new(ID, T, Status::Skip, why);
    }
    let c = match cert {
        Err(e) => {
            return Check::new(ID, T, Status::Fail, e)
                .fix("`autogit tls renew --force` issues a new one")
                .safe(SafeFix::RenewCertificate);
        }
        Ok(None) => {
            return Check::new(ID, T, Status::Fail, "no certificate has been issued yet")
                .fix("`autogit tls renew` (the DNS provider and ACME_EMAIL must be set)")
                .safe(SafeFix::RenewCertificate);
        }
        Ok(Some(c)) => c,
    };
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|n| !c.names.contains(n))
        .map(String::as_str)
        .collect();
    let names = c.names.join(", ");
    if now >= c.not_after {
        return Check::new(
            ID,
            T,
            Status::Fail,
            format!(
                "{names}: expired {} ago ({})",
                days(now - c.not_after),
                date(c.not_after)
            ),
        )
        .fix("`autogit tls renew`; if it fails, `autogit diagnose --only dns` and the ACME error it prints say why")
        .safe(SafeFix::RenewCertificate);
    }
    if now < c.not_before {
        return Check::new(
            ID,
            T,
            Status::Fail,
            format!(
                "{names}: not valid before {}; this host's clock is behind",
                date(c.not_before)
            ),
        )
        .fix("enable time synchronisation: `sudo timedatectl set-ntp true`");
    }
    if !missing.is_empty() {
        return Check::new(
            ID,
            T,
            Status::Fail,
            format!("covers {names} but not {}", missing.join(", ")),
        )
        .fix("`autogit tls renew --force` issues one for every name")
        .safe(SafeFix::RenewCertificate);
    }
    let left = c.not_after - now;
    if crate::tls::renewal_due(c.not_before, c.not_after, now, true) || left < 14 * 86_400 {
        return Check::new(
            ID,
            T,
            Status::Warn,
            format!(
                "{names}: expires in {} ({}); renewal is due",
                days(left),
                date(c.not_after)
            ),
        )
        .fix(
            "`autogit tls renew` (the daemon renews at two thirds of the lifetime: is it running?)",
        )
        .safe(SafeFix::RenewCertificate);
    }
    Check::new(
        ID,
        T,
        Status::Ok,
        format!("{names}: expires in {} ({})", days(left), date(c.not_after)),
    )
}

/// [`judge_certificate`] for a user-supplied certificate (`TLS_SOURCE=file`): autogit cannot
/// renew it, so it is fine until [`crate::tls::FILE_EXPIRY_WARNING_DAYS`] before its expiry
/// (not at two thirds of its lifetime), and every fix is replacing the files.
pub fn judge_supplied_certificate(
    cert: Result<Option<&CertFacts>, &str>,
    wanted: &[String],
    now: i64,
) -> Check {
    let mut check = judge_certificate(Ok(()), cert, wanted, now);
    if check.status == Status::Ok {
        return check;
    }
    if check.status == Status::Warn
        && let Ok(Some(c)) = cert
        && c.not_after - now >= crate::tls::FILE_EXPIRY_WARNING_DAYS * 86_400
    {
        return Check::new(
            &check.id,
            &check.title,
            Status::Ok,
            format!(
                "{}: expires in {} ({})",
                c.names.join(", "),
                days(c.not_after - now),
                date(c.not_after)
            ),
        );
    }
    if let Some(e) = check.evidence.strip_suffix("; renewal is due") {
        check.evidence = format!("{e}; it is user-supplied (TLS_SOURCE=file)");
    }
    check.fix = Some(
        "replace TLS_CERT_FILE and TLS_KEY_FILE with a valid pair covering the wanted names, then `autogit tls renew` (the daemon installs it within the hour)"
            .to_owned(),
    );
    check.safe_fix = None;
    check
}

/// One certificate of the served chain file, in file order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChainLink {
    pub subject: String,
    pub issuer: String,
    pub not_after: i64,
}

/// The chain the ingress serves (`fullchain.pem`): each certificate issued by the next, none
/// expired, the intermediates present. `Ok(None)`: no certificate (`tls.certificate` says so).
pub fn judge_chain(chain: Result<Option<&[ChainLink]>, &str>, now: i64) -> Check {
    const ID: &str = "tls.chain";
    const T: &str = "certificate chain";
    const REISSUE: &str = "`autogit tls renew --force` writes the whole chain the CA sends";
    let chain = match chain {
        Err(e) => return Check::new(ID, T, Status::Fail, e).fix(REISSUE),
        Ok(None) | Ok(Some([])) => {
            return Check::new(ID, T, Status::Skip, "no certificate yet");
        }
        Ok(Some(c)) => c,
    };
    for (i, pair) in chain.windows(2).enumerate() {
        if pair[0].issuer != pair[1].subject {
            return Check::new(
                ID,
                T,
                Status::Fail,
                format!(
                    "certificate {} ({}) was issued by {}, but the next in the file is {}: the chain is out of order or mixed",
                    i + 1,
                    pair[0].subject,
                    pair[0].issuer,
                    pair[1].subject
                ),
            )
            .fix(REISSUE);
        }
    }
    if let Some(c) = chain.iter().skip(1).find(|c| c.not_after <= now) {
        return Check::new(
            ID,
            T,
            Status::Fail,
            format!(
                "the intermediate {} expired on {}",
                c.subject,
                date(c.not_after)
            ),
        )
        .fix(REISSUE);
    }
    let leaf = &chain[0];
    if chain.len() == 1 {
        if leaf.issuer == leaf.subject {
            return Check::new(
                ID,
                T,
                Status::Warn,
                format!(
                    "self-signed ({}): clients trust it only when told to",
                    leaf.subject
                ),
            )
            .fix(
                "issue one from an ACME CA: `autogit tls renew --force` (ACME_DIRECTORY in .env)",
            );
        }
        return Check::new(
            ID,
            T,
            Status::Fail,
            format!(
                "only the leaf, issued by {}: clients without that intermediate (most) cannot verify it",
                leaf.issuer
            ),
        )
        .fix(REISSUE);
    }
    Check::new(
        ID,
        T,
        Status::Ok,
        format!(
            "{} certificate(s), each issued by the next; top: {}",
            chain.len(),
            chain[chain.len() - 1].issuer
        ),
    )
}

// ---- DNS -------------------------------------------------------------------------------------

/// One name the platform needs, as a resolver answered it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DnsFacts {
    pub name: String,
    /// The values it should have (the ingress address).
    pub want: Vec<String>,
    /// Which resolver answered (`127.0.0.1:5353 (RFC2136_SERVER)`, `system resolver`).
    pub resolver: String,
    pub answer: Result<Vec<String>, String>,
    /// autogit manages the zone (`dns sync` would correct it).
    pub managed: bool,
}

pub fn judge_dns(f: &DnsFacts) -> Check {
    let id = format!("dns.{}", f.name);
    let title = format!("{} resolves to the ingress", f.name);
    let want = f.want.join(", ");
    let set_fix = if f.managed {
        "`autogit dns sync` (it changes only records autogit owns; `autogit dns plan` shows a conflict with a record it does not)".to_owned()
    } else {
        format!(
            "at your DNS provider, point {} at {want} (DNS_PROVIDER=manual: autogit changes no records)",
            f.name
        )
    };
    let answer = match &f.answer {
        Err(e) => {
            return Check::new(id, title, Status::Fail, format!("{}: {e}", f.resolver)).fix(
                format!(
                    "check that the resolver answers: `dig @<server> {}`",
                    f.name
                ),
            );
        }
        Ok(a) => a,
    };
    if answer.is_empty() {
        return Check::new(
            id,
            title,
            Status::Fail,
            format!("{}: no address for {}", f.resolver, f.name),
        )
        .fix(set_fix);
    }
    let mut got: Vec<&str> = answer.iter().map(String::as_str).collect();
    got.sort_unstable();
    got.dedup();
    let mut wanted: Vec<&str> = f.want.iter().map(String::as_str).collect();
    wanted.sort_unstable();
    wanted.dedup();
    if got == wanted {
        return Check::new(
            id,
            title,
            Status::Ok,
            format!("{}: {}", f.resolver, got.join(", ")),
        );
    }
    let status = if got.iter().any(|g| wanted.contains(g)) {
        Status::Warn
    } else {
        Status::Fail
    };
    // Proxied at Cloudflare although autogit wants it direct (set by hand in the dashboard).
    let edge = if all_cloudflare(&got) {
        ": Cloudflare's edge, so the record is proxied, and only HTTP(S) passes through (not GitLab SSH); turn the proxy off for it, or name an HTTP service in CLOUDFLARE_PROXIED"
    } else {
        ""
    };
    Check::new(
        id,
        title,
        status,
        format!(
            "{}: {} points to {}, not the ingress ({want}){edge}",
            f.resolver,
            f.name,
            got.join(", ")
        ),
    )
    .fix(set_fix)
}

/// Whether every address is one of Cloudflare's edge ([`crate::cloudflare`]).
fn all_cloudflare(addresses: &[&str]) -> bool {
    !addresses.is_empty()
        && addresses.iter().all(|a| {
            a.parse()
                .is_ok_and(|ip: std::net::IpAddr| crate::cloudflare::contains(ip))
        })
}

/// A subdomain CLOUDFLARE_PROXIED names, and its name as a resolver answered it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProxiedFacts {
    /// The label in CLOUDFLARE_PROXIED (`registry`).
    pub subdomain: String,
    /// `registry.example.com`.
    pub name: String,
    /// A service the ingress routes over HTTP(S) has this subdomain (and SSH does not share it).
    pub http_service: bool,
    pub resolver: String,
    pub answer: Result<Vec<String>, String>,
}

/// A proxied name must be an HTTP service's (Cloudflare's proxy passes HTTP(S) only) and must
/// resolve to Cloudflare's edge (the record is proxied) rather than to the ingress.
pub fn judge_proxied(f: &ProxiedFacts) -> Check {
    let id = format!("dns.proxied.{}", f.subdomain);
    let title = format!("{} behind Cloudflare's proxy", f.name);
    if !f.http_service {
        return Check::new(
            id,
            title,
            Status::Fail,
            format!(
                "CLOUDFLARE_PROXIED names `{}`, which is not a service the ingress routes over HTTP(S): Cloudflare's proxy passes HTTP(S) only, so nothing is proxied for it",
                f.subdomain
            ),
        )
        .fix(format!(
            "remove `{}` from CLOUDFLARE_PROXIED in .env (or enable the service it should name)",
            f.subdomain
        ));
    }
    let answer = match &f.answer {
        Err(e) => {
            return Check::new(id, title, Status::Warn, format!("{}: {e}", f.resolver))
                .fix(format!("check that the resolver answers: `dig {}`", f.name));
        }
        Ok(a) => a,
    };
    let mut got: Vec<&str> = answer.iter().map(String::as_str).collect();
    got.sort_unstable();
    got.dedup();
    if all_cloudflare(&got) {
        return Check::new(
            id,
            title,
            Status::Ok,
            format!(
                "{}: {} (Cloudflare's edge, {} as of {})",
                f.resolver,
                got.join(", "),
                crate::cloudflare::RANGES_SOURCE,
                crate::cloudflare::RANGES_DATE
            ),
        );
    }
    let evidence = if got.is_empty() {
        format!("{}: no address for {}", f.resolver, f.name)
    } else {
        format!(
            "{}: {} points to {}, not Cloudflare's edge: the record is not proxied (clients reach the ingress directly, and its rate limit sees their own addresses)",
            f.resolver,
            f.name,
            got.join(", ")
        )
    };
    Check::new(id, title, Status::Warn, evidence).fix(
        "`autogit dns sync` writes the record proxied (`autogit dns plan` shows the change); resolvers may keep the old answer for its TTL",
    )
}

/// Whether the ingress addresses are only reachable inside a site (private, loopback, CGNAT,
/// link-local, unique-local): then no public resolver is expected to give them.
pub fn site_internal(addresses: &[String]) -> bool {
    use crate::netaddr::AddrClass as C;
    !addresses.is_empty()
        && addresses.iter().all(|a| {
            a.parse::<std::net::IpAddr>()
                .ok()
                .and_then(crate::netaddr::classify)
                .is_some_and(|c| {
                    matches!(
                        c,
                        C::Private | C::Loopback | C::Cgnat | C::LinkLocal | C::UniqueLocal
                    )
                })
        })
}

/// The same name through a public resolver (what clients elsewhere see). An unreachable
/// public resolver is a skip (an offline or filtered site); a different answer is at worst a
/// warning: public caches keep the old answer for the record's TTL, and split-horizon DNS is
/// legitimate.
pub fn judge_public_dns(f: &DnsFacts) -> Check {
    let id = format!("dns.public.{}", f.name);
    let title = format!("{} from a public resolver", f.name);
    if let Err(e) = &f.answer {
        return Check::new(id, title, Status::Skip, format!("{}: {e}", f.resolver));
    }
    let mut c = judge_dns(f);
    c.id = id;
    c.title = title;
    if c.status == Status::Fail {
        c.status = Status::Warn;
    }
    if c.status != Status::Ok {
        c.fix = Some(format!(
            "{}; when the configured resolver is already right, public resolvers may keep an old answer for the record's TTL, or the world sees another zone (delegation at the registrar, split-horizon DNS)",
            c.fix.unwrap_or_default()
        ));
    }
    c
}

/// What a resolver said about the zone's DNSSEC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DnssecFacts {
    pub zone: String,
    pub resolver: String,
    /// The resolver knows the zone (no NXDOMAIN for its SOA).
    pub exists: bool,
    pub dnskey: bool,
    /// The apex's SOA came with an RRSIG.
    pub rrsig: bool,
    /// A DS at the parent; `None` when the resolver asked is the zone's own authoritative
    /// server, which cannot speak for the parent.
    pub ds: Option<bool>,
}

/// Whether the zone is signed (the spec's answer to DNS hijacking): unsigned, or signed
/// without a DS at the parent (validators then treat it as unsigned), is a warning.
pub fn judge_dnssec(r: Result<&DnssecFacts, &str>) -> Check {
    const ID: &str = "dns.dnssec";
    let f = match r {
        Ok(f) => f,
        Err(e) => {
            return Check::new(ID, "DNSSEC", Status::Warn, format!("could not be asked: {e}"))
                .fix("check that the resolver answers DNSSEC queries: `dig +dnssec SOA <zone> @<server>`");
        }
    };
    let title = format!("DNSSEC of {}", f.zone);
    if !f.exists {
        return Check::new(
            ID,
            title,
            Status::Warn,
            format!("{}: no such zone (NXDOMAIN for its SOA)", f.resolver),
        )
        .fix("check BASE_DOMAIN (or DNS_ZONE) in .env, and that the zone is delegated to your DNS provider");
    }
    let sign = "sign the zone (BIND: `dnssec-policy default; inline-signing yes;` in its zone statement, see docs/diagnose.md; Cloudflare: DNS > Settings > DNSSEC), then publish its DS record at the registrar";
    match (f.dnskey, f.rrsig, f.ds) {
        (false, false, _) => Check::new(
            ID,
            title,
            Status::Warn,
            format!(
                "{}: not signed (no DNSKEY, no RRSIG on the SOA): answers for the platform's names can be forged",
                f.resolver
            ),
        )
        .fix(sign),
        (true, false, _) | (false, true, _) => Check::new(
            ID,
            title,
            Status::Warn,
            format!(
                "{}: half signed (DNSKEY {}, RRSIG on the SOA {})",
                f.resolver,
                if f.dnskey { "present" } else { "missing" },
                if f.rrsig { "present" } else { "missing" }
            ),
        )
        .fix("let the signer finish (BIND signs a zone within seconds of loading it) or check its log; then `autogit diagnose --only dns.dnssec`"),
        (true, true, Some(false)) => Check::new(
            ID,
            title,
            Status::Warn,
            format!(
                "{}: signed, but the parent has no DS for it: validating resolvers treat it as unsigned",
                f.resolver
            ),
        )
        .fix("publish the DS record at your registrar (`dnssec-dsfromkey` on the key-signing key, or the DS your DNS provider shows)"),
        (true, true, Some(true)) => Check::new(
            ID,
            title,
            Status::Ok,
            format!("{}: signed (DNSKEY, RRSIG) and a DS at the parent", f.resolver),
        ),
        (true, true, None) => Check::new(
            ID,
            title,
            Status::Ok,
            format!(
                "{}: signed (DNSKEY, RRSIG); the DS at the parent is not visible from the zone's own server",
                f.resolver
            ),
        ),
    }
}

// ---- GitLab ----------------------------------------------------------------------------------

/// GitLab's `/-/health`, `/-/readiness` or `/-/liveness`: status code and body, or the
/// transport error.
pub fn judge_gitlab_endpoint(endpoint: &str, r: Result<(u16, &str), &str>) -> Check {
    let id = format!("gitlab.{endpoint}");
    let title = format!("GitLab /-/{endpoint}");
    match r {
        Err(e) => Check::new(id, title, Status::Fail, e)
            .fix("GitLab does not answer: see `service.gitlab`; `autogit logs gitlab --tail 100`"),
        Ok((200, _)) => Check::new(id, title, Status::Ok, "200"),
        Ok((code, body)) => {
            // Readiness lists each failing check: `{"db_check":[{"status":"failed"}]}`.
            let failing: Vec<String> = serde_json::from_str::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.as_object().cloned())
                .map(|m| {
                    m.iter()
                        .filter(|(_, v)| {
                            v.as_array().is_some_and(|a| {
                                a.iter().any(|x| x["status"].as_str() != Some("ok"))
                            })
                        })
                        .map(|(k, _)| k.clone())
                        .collect()
                })
                .unwrap_or_default();
            let evidence = if failing.is_empty() {
                format!("status {code}")
            } else {
                format!("status {code}; failing: {}", failing.join(", "))
            };
            Check::new(id, title, Status::Fail, evidence).fix(
                "GitLab is up but not ready: after a start or upgrade wait a few minutes; otherwise `autogit logs gitlab --tail 200` and `docker exec <gitlab> gitlab-ctl status` show the failing component",
            )
        }
    }
}

/// What `GET https://registry.<BASE_DOMAIN>/v2/` through the ingress answered: the status,
/// the `Docker-Distribution-Api-Version` header and the `WWW-Authenticate` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryAnswer {
    pub status: u16,
    pub api_version: Option<String>,
    pub authenticate: Option<String>,
}

/// GitLab's container registry ([`crate::registry`]) as a client meets it: a registry answers
/// `/v2/` with `registry/2.0` and, being GitLab's, asks for a token (401 with a Bearer realm
/// on GitLab's `/jwt/auth`). `url` is the registry's URL, for the evidence.
pub fn judge_registry(url: &str, r: Result<&RegistryAnswer, &str>) -> Check {
    let (id, title) = ("gitlab.registry", "container registry");
    let not_there = "the registry is not serving: `docker exec <gitlab container> gitlab-ctl status registry` (Omnibus runs it beside GitLab); `autogit plan` shows gitlab.rb's registry lines; after a change `autogit install` applies them";
    let a = match r {
        Err(e) => return Check::new(id, title, Status::Fail, format!("{url}/v2/: {e}")).fix(
            "the ingress does not answer for the registry's name: see `ingress.*` and `dns.*`; the ingress routes `registry.<BASE_DOMAIN>` to GitLab's port 5050",
        ),
        Ok(a) => a,
    };
    let registry = a.api_version.as_deref() == Some("registry/2.0");
    let bearer = a
        .authenticate
        .as_deref()
        .filter(|h| h.trim_start().to_ascii_lowercase().starts_with("bearer"));
    match (a.status, registry, bearer) {
        (401, true, Some(h)) => {
            let realm = h
                .split(',')
                .find_map(|p| p.split_once("realm=").map(|(_, v)| v.trim_matches('"')))
                .unwrap_or("?");
            Check::new(
                id,
                title,
                Status::Ok,
                format!("{url}/v2/: registry/2.0, tokens from {realm}"),
            )
        }
        (200, true, _) => Check::new(
            id,
            title,
            Status::Warn,
            format!("{url}/v2/: registry/2.0 answers without asking for a token"),
        )
        .fix("GitLab's registry always asks for a token: something else answers for the registry's name, or its authentication is off; check gitlab.rb's registry lines (`autogit plan`)"),
        (code, true, _) => Check::new(
            id,
            title,
            Status::Fail,
            format!("{url}/v2/: registry/2.0 but status {code}"),
        )
        .fix(not_there),
        (code, false, _) => Check::new(
            id,
            title,
            Status::Fail,
            format!("{url}/v2/: status {code}, not a registry (no `Docker-Distribution-Api-Version: registry/2.0`)"),
        )
        .fix(not_there),
    }
}

/// GitLab's background migrations (`core::upgrade::parse_migrations`): pending, failed.
pub fn judge_migrations(r: Result<(u64, u64), &str>) -> Check {
    const ID: &str = "gitlab.migrations";
    const T: &str = "GitLab background migrations";
    match r {
        Err(e) => Check::new(ID, T, Status::Warn, format!("could not be read: {e}")),
        Ok((_, failed)) if failed > 0 => Check::new(
            ID,
            T,
            Status::Fail,
            format!("{failed} failed"),
        )
        .fix("Admin > Monitoring > Background migrations: retry the failed ones; do not upgrade until none is left"),
        Ok((0, 0)) => Check::new(ID, T, Status::Ok, "none pending"),
        Ok((pending, _)) => Check::new(
            ID,
            T,
            Status::Warn,
            format!("{pending} still running"),
        )
        .fix("let them finish before `autogit upgrade` (it waits for them at each step)"),
    }
}

/// The stored admin token as GitLab describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TokenFacts {
    pub active: bool,
    pub revoked: bool,
    /// `YYYY-MM-DD`, as GitLab writes it.
    pub expires_at: Option<String>,
}

fn parse_day(s: &str) -> Option<i64> {
    let mut it = s.splitn(3, '-');
    let y = it.next()?.parse().ok()?;
    let m = it.next()?.parse().ok()?;
    let d = it.next()?.get(..2)?.parse().ok()?;
    crate::civil::days_from_civil(y, m, d).map(|days| days * 86_400)
}

/// `Ok(None)`: no admin token stored (the bootstrap has not run). `Err`: GitLab refused it or
/// could not be asked.
pub fn judge_admin_token(r: Result<Option<&TokenFacts>, &str>, now: i64) -> Check {
    const ID: &str = "gitlab.token";
    const T: &str = "GitLab admin token";
    const MINT: &str =
        "`autogit gitlab rotate-tokens` (or `autogit install`, whose bootstrap mints a new one)";
    let t = match r {
        Ok(None) => {
            return Check::new(
                ID,
                T,
                Status::Skip,
                "no admin token stored (GitLab bootstrap has not run)",
            )
            .fix("`autogit install` bootstraps GitLab and stores one");
        }
        Err(e) => return Check::new(ID, T, Status::Fail, e).fix(MINT),
        Ok(Some(t)) => t,
    };
    if t.revoked || !t.active {
        return Check::new(
            ID,
            T,
            Status::Fail,
            if t.revoked { "revoked" } else { "inactive" },
        )
        .fix(MINT);
    }
    match t.expires_at.as_deref().map(|d| (d, parse_day(d))) {
        None => Check::new(ID, T, Status::Ok, "valid, no expiry"),
        Some((d, None)) => Check::new(ID, T, Status::Warn, format!("expiry `{d}` unreadable")),
        Some((d, Some(at))) if at <= now => {
            Check::new(ID, T, Status::Fail, format!("expired on {d}")).fix(MINT)
        }
        Some((d, Some(at))) if at - now < 14 * 86_400 => Check::new(
            ID,
            T,
            Status::Warn,
            format!("expires on {d} (in {})", days(at - now)),
        )
        .fix(MINT),
        Some((d, Some(_))) => Check::new(ID, T, Status::Ok, format!("valid until {d}")),
    }
}

// ---- runner hosts ----------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RunnerHostFacts {
    pub host: String,
    pub runners: Vec<String>,
    pub reachable: bool,
    pub error: Option<String>,
    /// `docker 27.3.1`, if the host has an engine.
    pub engine: Option<String>,
    pub gpus: usize,
    /// A runner on this host is a GPU runner.
    pub wants_gpu: bool,
    /// What the inventory probe could not read.
    pub problems: Vec<String>,
}

pub fn judge_runner_host(h: &RunnerHostFacts) -> Check {
    let id = format!("runner.{}", h.host);
    let title = format!("runner host {} ({})", h.host, h.runners.join(", "));
    if !h.reachable {
        let err = h.error.as_deref().unwrap_or("no answer");
        return Check::new(id, title, Status::Fail, format!("not reachable over SSH: {err}"))
            .fix(format!(
                "check that {0} is up and sshd runs (`ssh {0} true`); a changed host key: `autogit runner trust {0}`; then `autogit runner health`",
                h.host
            ));
    }
    let Some(engine) = &h.engine else {
        return Check::new(
            id,
            title,
            Status::Fail,
            "reachable, but no container engine answers",
        )
        .fix(format!(
            "install and start Docker or Podman on {} (the runner user must reach its socket)",
            h.host
        ));
    };
    if h.wants_gpu && h.gpus == 0 {
        return Check::new(
            id,
            title,
            Status::Fail,
            format!("{engine}; a GPU runner, but nvidia-smi shows no GPU"),
        )
        .fix(format!(
            "install the NVIDIA driver and nvidia-container-toolkit on {} (`nvidia-smi` must list the GPUs), then `autogit runner health`",
            h.host
        ));
    }
    let gpus = if h.gpus > 0 {
        format!(", {} GPU(s)", h.gpus)
    } else {
        String::new()
    };
    if !h.problems.is_empty() {
        return Check::new(
            id,
            title,
            Status::Warn,
            format!("{engine}{gpus}; {}", h.problems.join("; ")),
        )
        .fix(format!(
            "`autogit runner health {}` shows the probe's full answer",
            h.host
        ));
    }
    Check::new(id, title, Status::Ok, format!("{engine}{gpus}"))
}

/// A configured runner's registration as autogit recorded it, and as GitLab reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RunnerRegistrationFacts {
    pub name: String,
    /// autogit's record: `registered`, `token_created`, `discovered`; `None` when never
    /// registered.
    pub state: Option<String>,
    pub runner_id: Option<i64>,
    /// GitLab's view of that runner: `Ok(None)` when GitLab does not know the id; `Err` when
    /// GitLab could not be asked; absent (`None`) when there is no admin token to ask with.
    pub gitlab: Option<Result<Option<RunnerInGitLab>, String>>,
    /// `runners.mode: on-demand`: a stopped runner is offline by design.
    pub on_demand: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RunnerInGitLab {
    pub online: bool,
    /// `online`, `offline`, `stale`, `never_contacted`.
    pub status: Option<String>,
    pub paused: bool,
}

pub fn judge_runner_registration(r: &RunnerRegistrationFacts) -> Check {
    let id = format!("runner.{}.registration", r.name);
    let title = format!("runner {} in GitLab", r.name);
    let register = format!("`autogit runner register {}`", r.name);
    match r.state.as_deref() {
        None => {
            return Check::new(id, title, Status::Warn, "not registered: it takes no jobs")
                .fix(register);
        }
        Some("registered") => {}
        Some("discovered") => {
            return Check::new(
                id,
                title,
                Status::Warn,
                "its host was discovered; not registered yet",
            )
            .fix(register);
        }
        Some(other) => {
            return Check::new(
                id,
                title,
                Status::Fail,
                format!("registration stopped half way ({other}): GitLab has a token, the host has no runner"),
            )
            .fix(format!("{register} again: it resumes"));
        }
    }
    let rid = r.runner_id.unwrap_or_default();
    match &r.gitlab {
        None => Check::new(
            id,
            title,
            Status::Ok,
            format!("registered as GitLab runner {rid} (GitLab not asked: no admin token)"),
        ),
        Some(Err(e)) => Check::new(
            id,
            title,
            Status::Warn,
            format!("registered as GitLab runner {rid}; GitLab could not be asked: {e}"),
        )
        .fix("see the `gitlab.*` checks"),
        Some(Ok(None)) => Check::new(
            id,
            title,
            Status::Fail,
            format!(
                "registered as GitLab runner {rid}, which GitLab no longer has (deleted in GitLab?)"
            ),
        )
        .fix(format!("{register} again")),
        Some(Ok(Some(g))) if g.paused => Check::new(
            id,
            title,
            Status::Warn,
            format!("GitLab runner {rid} is paused: it takes no jobs"),
        )
        .fix("resume it in GitLab (Admin > CI/CD > Runners)"),
        Some(Ok(Some(g))) if g.online => {
            Check::new(id, title, Status::Ok, format!("GitLab runner {rid} online"))
        }
        Some(Ok(Some(g))) => {
            let status = g.status.as_deref().unwrap_or("offline");
            if r.on_demand {
                Check::new(
                    id,
                    title,
                    Status::Ok,
                    format!("GitLab runner {rid} {status}: on demand, started when jobs wait"),
                )
            } else {
                Check::new(
                    id,
                    title,
                    Status::Fail,
                    format!("GitLab runner {rid} is {status}: its gitlab-runner is not talking to GitLab"),
                )
                .fix(format!(
                    "`autogit runner health` for its host, then the runner container's log on that host (`docker logs` of `{}`'s container); {register} again if its token was revoked",
                    r.name
                ))
            }
        }
    }
}

// ---- backups and mirrors ---------------------------------------------------------------------

/// `newest`: unix time of the newest archive in the backup directory. `schedule`: the
/// cron expression (empty: none). Warns past twice the schedule's interval (7 days without a
/// schedule), fails past four times.
pub fn judge_backup(newest: Option<i64>, schedule: &str, now: i64) -> Check {
    const ID: &str = "backup.freshness";
    const T: &str = "latest backup";
    let interval = if schedule.trim().is_empty() {
        None
    } else {
        crate::schedule::next(schedule, now)
            .ok()
            .flatten()
            .and_then(|a| Some(crate::schedule::next(schedule, a).ok()??.saturating_sub(a)))
    };
    let allowed = interval.map_or(7 * 86_400, |i| 2 * i.max(3600));
    let sched = if schedule.trim().is_empty() {
        "no backup.schedule".to_owned()
    } else {
        format!("schedule `{schedule}`")
    };
    let Some(at) = newest else {
        let c = Check::new(ID, T, Status::Warn, format!("no archive yet ({sched})"));
        return if interval.is_some() {
            c.fix("`autogit backup` now; scheduled backups run in `autogit daemon`: is it running (`systemctl status autogit`)?")
        } else {
            c.fix("`autogit backup` now; set `backup.schedule` in autogit.yml so the daemon takes them")
        };
    };
    let age = now - at;
    let evidence = format!("{} ago ({}; {sched})", days(age), date(at));
    if age <= allowed {
        return Check::new(ID, T, Status::Ok, evidence);
    }
    Check::new(
        ID,
        T,
        if age > 2 * allowed {
            Status::Fail
        } else {
            Status::Warn
        },
        evidence,
    )
    .fix("`autogit backup`; scheduled backups run in `autogit daemon`: is it running (`systemctl status autogit`)? its log says why a backup failed")
}

/// Restore tests are due monthly: past this age the last one is a warning.
pub const RESTORE_TEST_MAX_AGE: i64 = 31 * 86_400;

/// The last restore test (`autogit restore --test`), if any, against the newest archive's time:
/// a failed test fails (the backups may not restore); none at all, or one older than
/// [`RESTORE_TEST_MAX_AGE`], warns (a backup never restored is a hope, not a backup); a passed
/// recent one is ok, noting when newer archives have not been tested.
pub fn judge_restore_test(
    last: Option<&crate::backup::RestoreTest>,
    newest_backup: Option<i64>,
    now: i64,
) -> Check {
    const ID: &str = "backup.restore_test";
    const T: &str = "last restore test";
    const RUN: &str = "`autogit restore --test latest` restores the newest archive into a scratch GitLab (no network, removed afterwards; it needs GitLab's memory once more while it runs)";
    let Some(t) = last else {
        return Check::new(
            ID,
            T,
            Status::Warn,
            if newest_backup.is_some() {
                "no archive was ever test-restored"
            } else {
                "no archive, so none test-restored"
            },
        )
        .fix(RUN);
    };
    let age = now - t.started_at;
    let evidence = format!(
        "{} {} ago ({}, {:.0} s)",
        t.archive,
        days(age),
        date(t.started_at),
        t.seconds
    );
    if !t.ok {
        return Check::new(
            ID,
            T,
            Status::Fail,
            format!(
                "{evidence}: failed: {}",
                t.error.as_deref().unwrap_or("no reason recorded")
            ),
        )
        .fix("see why above and `autogit logs gitlab`; take a new backup (`autogit backup`) and test it (`autogit restore --test latest`)");
    }
    if age > RESTORE_TEST_MAX_AGE {
        return Check::new(
            ID,
            T,
            Status::Warn,
            format!("{evidence}: older than a month"),
        )
        .fix(RUN);
    }
    let newer = newest_backup.is_some_and(|n| n > t.started_at);
    Check::new(
        ID,
        T,
        Status::Ok,
        if newer {
            format!("{evidence}: restored; newer archives are not tested yet")
        } else {
            format!("{evidence}: restored")
        },
    )
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MirrorFacts {
    pub name: String,
    /// A configuration problem `mirror list` reports.
    pub problem: Option<String>,
    pub last_success: Option<i64>,
    pub last_error_at: Option<i64>,
    pub last_error: Option<String>,
    /// Failed runs in a row.
    pub failures: u32,
}

/// Warns after one failed run or a day without success, fails after three in a row.
pub fn judge_mirror(m: &MirrorFacts, now: i64) -> Check {
    let id = format!("mirror.{}", m.name);
    let title = format!("mirror {}", m.name);
    let sync = format!(
        "`autogit mirror sync {}` shows the error as it happens",
        m.name
    );
    if let Some(p) = &m.problem {
        return Check::new(id, title, Status::Fail, p.clone()).fix(format!(
            "correct mirror `{}` in autogit.yml (`autogit validate`)",
            m.name
        ));
    }
    let failing = match (m.last_error_at, m.last_success) {
        (Some(e), Some(s)) => e > s,
        (Some(_), None) => true,
        _ => false,
    };
    if failing {
        let err = m.last_error.as_deref().unwrap_or("failed");
        return Check::new(
            id,
            title,
            if m.failures >= 3 {
                Status::Fail
            } else {
                Status::Warn
            },
            format!("{} failed run(s) in a row; last: {err}", m.failures.max(1)),
        )
        .fix(sync);
    }
    match m.last_success {
        None => Check::new(id, title, Status::Warn, "never synced").fix(sync),
        Some(s) if now - s > 86_400 => Check::new(
            id,
            title,
            Status::Warn,
            format!("last synced {} ago", days(now - s)),
        )
        .fix(format!(
            "{sync}; scheduled syncs run in `autogit daemon`: is it running?"
        )),
        Some(s) => Check::new(
            id,
            title,
            Status::Ok,
            format!(
                "last synced {} ago",
                crate::units::Dur::secs((now - s).max(0) as u64)
            ),
        ),
    }
}

// ---- clocks ----------------------------------------------------------------------------------

/// `skew`: the other clock minus this host's, in seconds. Warns past 2 s, fails past 30 s
/// (the API's JWT leeway; ACME and TOTP break too).
pub fn judge_clock(subject: &str, skew: Result<i64, &str>) -> Check {
    let id = format!("clock.{subject}");
    let title = format!("clock of {subject} against this host");
    let s = match skew {
        Ok(s) => s,
        Err(e) => {
            return Check::new(id, title, Status::Warn, format!("could not be read: {e}"))
                .fix(format!("check that `date +%s` runs on {subject}"));
        }
    };
    let evidence = if s == 0 {
        "in step (within 1 s)".to_owned()
    } else {
        format!("{} by {}s", if s > 0 { "ahead" } else { "behind" }, s.abs())
    };
    let fix = format!(
        "enable time synchronisation on both machines (`sudo timedatectl set-ntp true`; `chronyc tracking` shows the offset) ({subject})"
    );
    match s.abs() {
        0..=2 => Check::new(id, title, Status::Ok, evidence),
        3..=30 => Check::new(id, title, Status::Warn, evidence).fix(fix),
        _ => Check::new(id, title, Status::Fail, evidence).fix(fix),
    }
}

// ---- redaction for the bundle ----------------------------------------------------------------

/// `.env` keys whose value is no secret and helps a bug report; every other key's value is
/// replaced (the file also holds the secrets `token_env` fields name).
pub const PLAIN_ENV_KEYS: &[&str] = &[
    "BASE_DOMAIN",
    "ACME_DIRECTORY",
    "ACME_CHALLENGE",
    "SERVICES_ENABLED",
    "PORT_ALLOCATION",
    "PORT_POOL",
    "INGRESS_IP",
    "INGRESS_HTTP_PORT",
    "INGRESS_HTTPS_PORT",
    "DNS_PROVIDER",
    "DNS_MODE",
    "DNS_TTL",
    "DNS_ZONE",
    "RFC2136_SERVER",
    "RFC2136_TSIG_ALGORITHM",
    "CLOUDFLARE_API_URL",
    "CLOUDFLARE_PROXIED",
    "AWS_REGION",
    "AWS_ROUTE53_ENDPOINT",
    "DNSMASQ_CONFIG_PATH",
];

pub const REDACTED: &str = "<redacted>";

/// Whether a `.env` key's value may be shown. `PORT_<SERVICE>` is a port number.
pub fn plain_env_key(key: &str) -> bool {
    PLAIN_ENV_KEYS.contains(&key)
        || key
            .strip_prefix("PORT_")
            .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// A `.env` text with every value but those of [`plain_env_key`]s replaced; comment lines
/// are scrubbed as log lines are. Unparseable lines are dropped.
pub fn redact_dotenv(text: &str, secrets: &[&str]) -> String {
    let mut out = String::new();
    for raw in text.lines() {
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            out.push_str(&redact_text(raw, secrets));
            out.push('\n');
            continue;
        }
        let body = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = body.split_once('=') else {
            out.push_str("# (a line that is not KEY=VALUE, left out)\n");
            continue;
        };
        let k = k.trim();
        if plain_env_key(k) {
            out.push_str(&redact_text(&format!("{k}={}", v.trim()), secrets));
        } else {
            out.push_str(&format!("{k}={REDACTED}"));
        }
        out.push('\n');
    }
    out
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Every spelling of a secret to look for: itself, its base64 (standard and URL-safe, with
/// and without padding) and its hex.
pub fn secret_spellings(secret: &str) -> Vec<String> {
    let std = base64(secret.as_bytes());
    let url = std.replace('+', "-").replace('/', "_");
    let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
    let mut v = vec![
        secret.to_owned(),
        std.trim_end_matches('=').to_owned(),
        url.trim_end_matches('=').to_owned(),
        hex,
    ];
    v.sort();
    v.dedup();
    // Longest first, so that a spelling containing another is replaced whole.
    v.sort_by_key(|s| std::cmp::Reverse(s.len()));
    v
}

/// Text for the bundle: each line scrubbed as the log store scrubs (`logs::enrich`: tokens by
/// prefix, JWTs, keys, credentials in URLs, secret fields), then every spelling of every
/// known secret (of at least 6 characters) replaced.
pub fn redact_text(text: &str, secrets: &[&str]) -> String {
    let mut spellings: Vec<String> = secrets
        .iter()
        .filter(|s| s.len() >= 6)
        .flat_map(|s| secret_spellings(s))
        .collect();
    spellings.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let mut l = crate::logs::enrich(line, &[]).message;
        for s in &spellings {
            if l.contains(s.as_str()) {
                l = l.replace(s.as_str(), REDACTED);
            }
        }
        out.push_str(&l);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_4648_vectors() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), enc);
        }
    }

    #[test]
    fn only_selects_ids_and_groups() {
        let only = vec!["dns".to_owned(), "service.gitlab".to_owned()];
        assert!(selected(&only, "dns.gitlab.example.com"));
        assert!(selected(&only, "service.gitlab"));
        assert!(!selected(&only, "service.gitlabx"));
        assert!(!selected(&only, "dnsx"));
        assert!(group_selected(&only, "service"));
        assert!(!group_selected(&only, "tls"));
        assert_eq!(unknown_only(&["nope.x".to_owned()]), Some("nope.x"));
        assert_eq!(unknown_only(&only), None);
    }

    #[test]
    fn redaction_removes_every_spelling_and_keeps_plain_keys() {
        let secret = "s3cr3t-Value+/x";
        let env = format!(
            "BASE_DOMAIN=example.com\nMY_TOKEN={secret}\nexport RFC2136_TSIG_SECRET=abc\n# old: {secret}\nPORT_GITLAB=8080\nDNS_ZONE={secret}\n"
        );
        let out = redact_dotenv(&env, &[secret]);
        assert!(out.contains("BASE_DOMAIN=example.com"), "{out}");
        assert!(out.contains("MY_TOKEN=<redacted>"), "{out}");
        assert!(out.contains("RFC2136_TSIG_SECRET=<redacted>"), "{out}");
        assert!(out.contains("PORT_GITLAB=8080"), "{out}");
        for s in secret_spellings(secret) {
            assert!(!out.contains(&s), "{s} in {out}");
        }
        let b = base64(secret.as_bytes());
        let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
        let text = format!(
            "Authorization: Basic {b}\nurl https://u:{secret}@h/x\nhex {hex}\nplain {secret}."
        );
        let out = redact_text(&text, &[secret]);
        for s in secret_spellings(secret) {
            assert!(!out.contains(&s), "{s} in {out}");
        }
    }
    #[test]
    fn registry_answers() {
        let url = "https://registry.example.test";
        let a = |status, v: Option<&str>, auth: Option<&str>| RegistryAnswer {
            status,
            api_version: v.map(str::to_owned),
            authenticate: auth.map(str::to_owned),
        };
        let gitlab = a(
            401,
            Some("registry/2.0"),
            Some(
                r#"Bearer realm="https://gitlab.example.test/jwt/auth",service="container_registry""#,
            ),
        );
        let c = judge_registry(url, Ok(&gitlab));
        assert_eq!(c.status, Status::Ok, "{c:?}");
        assert!(
            c.evidence.contains("https://gitlab.example.test/jwt/auth"),
            "{c:?}"
        );
        let open = a(200, Some("registry/2.0"), None);
        assert_eq!(judge_registry(url, Ok(&open)).status, Status::Warn);
        for bad in [
            a(502, None, None),
            a(404, None, None),
            a(503, Some("registry/2.0"), None),
            a(401, Some("registry/2.0"), Some("Basic realm=x")),
        ] {
            let c = judge_registry(url, Ok(&bad));
            assert_eq!(c.status, Status::Fail, "{bad:?}: {c:?}");
            assert!(
                c.fix
                    .as_deref()
                    .unwrap_or("")
                    .contains("gitlab-ctl status registry"),
                "{c:?}"
            );
        }
        let c = judge_registry(url, Err("connection refused"));
        assert_eq!(c.status, Status::Fail);
        assert!(c.fix.as_deref().unwrap_or("").contains("5050"), "{c:?}");
    }
}
