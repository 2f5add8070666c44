//! The judgements of `autogit diagnose`, data-driven: each case is gathered facts in, a check
//! out, and the whole table is one snapshot (`cargo insta review` after a deliberate change).

use autogit_core::diagnose::*;

const NOW: i64 = 1_800_000_000; // 2027-01-15T08:00:00Z
const DAY: i64 = 86_400;

fn engine() -> EngineFacts {
    EngineFacts {
        kind: "docker".into(),
        version: "28.2.2".into(),
        api_version: "1.50".into(),
        rootless: false,
        socket: "/var/run/docker.sock".into(),
        storage_driver: "overlay2".into(),
    }
}

fn port(running: bool, answers: bool, bind_error: Option<&str>) -> PortFacts {
    PortFacts {
        service: "gitlab".into(),
        name: "http".into(),
        port: 8080,
        container_running: running,
        answers,
        bind_error: bind_error.map(str::to_owned),
        setting: "gitlab.ports.http".into(),
    }
}

fn service(state: Option<(&str, &str)>, flagged: bool) -> ServiceFacts {
    ServiceFacts {
        service: "gitlab".into(),
        recorded: Some("HEALTHY".into()),
        flagged,
        container: state.map(|(s, h)| ContainerFacts {
            state: s.into(),
            health: h.into(),
            exit_code: (s == "exited").then_some(137),
            oom_killed: false,
        }),
        engine_down: false,
    }
}

fn cert(names: &[&str], not_before: i64, not_after: i64) -> CertFacts {
    CertFacts {
        names: names.iter().map(|s| (*s).to_owned()).collect(),
        not_before,
        not_after,
    }
}

fn dns(answer: Result<&[&str], &str>, managed: bool) -> DnsFacts {
    DnsFacts {
        name: "gitlab.example.com".into(),
        want: vec!["203.0.113.7".into()],
        resolver: "192.0.2.53:53 (RFC2136_SERVER)".into(),
        answer: answer
            .map(|a| a.iter().map(|s| (*s).to_owned()).collect())
            .map_err(str::to_owned),
        managed,
    }
}

fn host(reachable: bool, engine: Option<&str>, gpus: usize, wants_gpu: bool) -> RunnerHostFacts {
    RunnerHostFacts {
        host: "gpu1.lan".into(),
        runners: vec!["gpu".into()],
        reachable,
        error: (!reachable)
            .then(|| "ssh: connect to host gpu1.lan port 22: Connection refused".into()),
        engine: engine.map(str::to_owned),
        gpus,
        wants_gpu,
        problems: Vec::new(),
    }
}

fn mirror(success: Option<i64>, error_at: Option<i64>, failures: u32) -> MirrorFacts {
    MirrorFacts {
        name: "linux".into(),
        problem: None,
        last_success: success,
        last_error_at: error_at,
        last_error: error_at.map(|_| "fatal: could not read from remote repository".into()),
        failures,
    }
}

fn sec(dnskey: bool, rrsig: bool, ds: Option<bool>) -> DnssecFacts {
    DnssecFacts {
        zone: "example.com".into(),
        resolver: "192.0.2.53:53".into(),
        exists: true,
        dnskey,
        rrsig,
        ds,
    }
}

/// GitLab's answer: not asked, an error, or the runner (online, status, paused) if it knows it.
type GitLabSide<'a> = Option<Result<Option<(bool, &'a str, bool)>, &'a str>>;

fn reg(state: Option<&str>, gitlab: GitLabSide<'_>, on_demand: bool) -> RunnerRegistrationFacts {
    RunnerRegistrationFacts {
        name: "gpu".into(),
        state: state.map(str::to_owned),
        runner_id: state.map(|_| 42),
        gitlab: gitlab.map(|g| {
            g.map(|o| {
                o.map(|(online, status, paused)| RunnerInGitLab {
                    online,
                    status: Some(status.to_owned()),
                    paused,
                })
            })
            .map_err(str::to_owned)
        }),
        on_demand,
    }
}

fn link(subject: &str, issuer: &str) -> ChainLink {
    ChainLink {
        subject: subject.into(),
        issuer: issuer.into(),
        not_after: NOW + 60 * DAY,
    }
}

fn cases() -> Vec<(&'static str, Check)> {
    let wanted = vec!["*.example.com".to_owned(), "example.com".to_owned()];
    let both = ["*.example.com", "example.com"];
    let mut vfs = engine();
    vfs.storage_driver = "vfs".into();
    let mut rootless = engine();
    rootless.rootless = true;
    let disk = |free: u64, total: u64, fi: u64, ti: u64| DiskFacts {
        path: "/var/lib/autogit".into(),
        free_bytes: free,
        total_bytes: total,
        free_inodes: fi,
        total_inodes: ti,
    };
    const G: u64 = 1 << 30;
    let mut oom = service(Some(("exited", "none")), false);
    if let Some(c) = &mut oom.container {
        c.oom_killed = true;
    }
    let mut down = service(None, false);
    down.engine_down = true;
    let token = |active, revoked, exp: Option<&str>| TokenFacts {
        active,
        revoked,
        expires_at: exp.map(str::to_owned),
    };
    let mut problems = host(true, Some("docker 27.3.1"), 1, true);
    problems.problems = vec!["nvidia-smi: line 2 unreadable".into()];
    let mut bad_mirror = mirror(None, None, 0);
    bad_mirror.problem = Some("source URL has credentials".into());
    vec![
        ("config ok", judge_config(0, 0, None)),
        (
            "config warnings",
            judge_config(0, 2, Some(".env can be read by other users")),
        ),
        (
            "config errors",
            judge_config(1, 0, Some("unknown key `gitlb`")),
        ),
        ("engine ok", judge_engine(Ok(&engine()))),
        ("engine rootless", judge_engine(Ok(&rootless))),
        ("engine vfs", judge_engine(Ok(&vfs))),
        (
            "engine down",
            judge_engine(Err(
                "no container engine at /var/run/docker.sock: connection refused",
            )),
        ),
        (
            "disk ok",
            judge_disk(
                "engine.disk",
                "the data dir",
                Ok(&disk(200 * G, 400 * G, 9, 10)),
            ),
        ),
        (
            "disk low",
            judge_disk(
                "engine.disk",
                "the data dir",
                Ok(&disk(30 * G, 400 * G, 9, 10)),
            ),
        ),
        (
            "disk full",
            judge_disk(
                "engine.disk",
                "the data dir",
                Ok(&disk(G / 2, 400 * G, 9, 10)),
            ),
        ),
        (
            "inodes out",
            judge_disk(
                "engine.disk",
                "the data dir",
                Ok(&disk(200 * G, 400 * G, 1, 100)),
            ),
        ),
        ("port ours", judge_port(&port(true, true, None))),
        ("port ours silent", judge_port(&port(true, false, None))),
        (
            "port taken",
            judge_port(&port(false, false, Some("Address in use (os error 98)"))),
        ),
        (
            "port answered by other",
            judge_port(&port(false, true, None)),
        ),
        ("port free", judge_port(&port(false, false, None))),
        (
            "service healthy",
            judge_service(&service(Some(("running", "healthy")), false)),
        ),
        (
            "service starting",
            judge_service(&service(Some(("running", "starting")), false)),
        ),
        (
            "service unhealthy",
            judge_service(&service(Some(("running", "unhealthy")), false)),
        ),
        (
            "service stopped",
            judge_service(&service(Some(("exited", "none")), false)),
        ),
        (
            "service stopped flagged",
            judge_service(&service(Some(("exited", "none")), true)),
        ),
        ("service oom", judge_service(&oom)),
        ("service missing", judge_service(&service(None, false))),
        ("service engine down", judge_service(&down)),
        (
            "flag",
            judge_flag("gitlab", "restart budget exhausted (3 in 10m)"),
        ),
        (
            "tls not configured",
            judge_certificate(Err("BASE_DOMAIN is not set"), Ok(None), &wanted, NOW),
        ),
        (
            "tls none",
            judge_certificate(Ok(()), Ok(None), &wanted, NOW),
        ),
        (
            "tls unreadable",
            judge_certificate(Ok(()), Err("tls/example.com.crt: not PEM"), &wanted, NOW),
        ),
        (
            "tls fresh",
            judge_certificate(
                Ok(()),
                Ok(Some(&cert(&both, NOW - 10 * DAY, NOW + 80 * DAY))),
                &wanted,
                NOW,
            ),
        ),
        (
            "tls due",
            judge_certificate(
                Ok(()),
                Ok(Some(&cert(&both, NOW - 70 * DAY, NOW + 20 * DAY))),
                &wanted,
                NOW,
            ),
        ),
        (
            "tls expired",
            judge_certificate(
                Ok(()),
                Ok(Some(&cert(&both, NOW - 100 * DAY, NOW - 3 * DAY))),
                &wanted,
                NOW,
            ),
        ),
        (
            "tls future",
            judge_certificate(
                Ok(()),
                Ok(Some(&cert(&both, NOW + DAY, NOW + 90 * DAY))),
                &wanted,
                NOW,
            ),
        ),
        (
            "tls missing name",
            judge_certificate(
                Ok(()),
                Ok(Some(&cert(&["example.com"], NOW - DAY, NOW + 89 * DAY))),
                &wanted,
                NOW,
            ),
        ),
        (
            "chain ok",
            judge_chain(
                Ok(Some(&[
                    link("CN=*.example.com", "CN=R11"),
                    link("CN=R11", "CN=ISRG Root X1"),
                ])),
                NOW,
            ),
        ),
        (
            "chain leaf only",
            judge_chain(Ok(Some(&[link("CN=*.example.com", "CN=R11")])), NOW),
        ),
        (
            "chain self-signed",
            judge_chain(Ok(Some(&[link("CN=example.com", "CN=example.com")])), NOW),
        ),
        (
            "chain mixed",
            judge_chain(
                Ok(Some(&[
                    link("CN=*.example.com", "CN=R11"),
                    link("CN=R10", "CN=ISRG Root X1"),
                ])),
                NOW,
            ),
        ),
        (
            "chain intermediate expired",
            judge_chain(
                Ok(Some(&[
                    link("CN=*.example.com", "CN=R11"),
                    ChainLink {
                        not_after: NOW - DAY,
                        ..link("CN=R11", "CN=ISRG Root X1")
                    },
                ])),
                NOW,
            ),
        ),
        ("chain none", judge_chain(Ok(None), NOW)),
        ("dns ok", judge_dns(&dns(Ok(&["203.0.113.7"]), true))),
        (
            "dns elsewhere managed",
            judge_dns(&dns(Ok(&["198.51.100.9"]), true)),
        ),
        (
            "dns elsewhere manual",
            judge_dns(&dns(Ok(&["198.51.100.9"]), false)),
        ),
        (
            "dns extra address",
            judge_dns(&dns(Ok(&["203.0.113.7", "198.51.100.9"]), true)),
        ),
        ("dns missing", judge_dns(&dns(Ok(&[]), true))),
        (
            "public dns ok",
            judge_public_dns(&DnsFacts {
                resolver: "1.1.1.1:53 (public)".into(),
                ..dns(Ok(&["203.0.113.7"]), true)
            }),
        ),
        (
            "public dns stale",
            judge_public_dns(&DnsFacts {
                resolver: "1.1.1.1:53 (public)".into(),
                ..dns(Ok(&["198.51.100.9"]), true)
            }),
        ),
        (
            "public dns unreachable",
            judge_public_dns(&DnsFacts {
                resolver: "1.1.1.1:53 (public)".into(),
                ..dns(Err("no answer within 3s"), true)
            }),
        ),
        (
            "dns resolver down",
            judge_dns(&dns(Err("no answer within 3s"), true)),
        ),
        (
            "dnssec unsigned",
            judge_dnssec(Ok(&sec(false, false, None))),
        ),
        ("dnssec half", judge_dnssec(Ok(&sec(true, false, None)))),
        (
            "dnssec no ds",
            judge_dnssec(Ok(&sec(true, true, Some(false)))),
        ),
        (
            "dnssec signed with ds",
            judge_dnssec(Ok(&sec(true, true, Some(true)))),
        ),
        (
            "dnssec signed authoritative",
            judge_dnssec(Ok(&sec(true, true, None))),
        ),
        (
            "dnssec no zone",
            judge_dnssec(Ok(&DnssecFacts {
                exists: false,
                ..sec(false, false, None)
            })),
        ),
        (
            "dnssec unknown",
            judge_dnssec(Err("resolver 192.0.2.53:53: no answer within 3s")),
        ),
        (
            "gitlab health ok",
            judge_gitlab_endpoint("health", Ok((200, "GitLab OK"))),
        ),
        (
            "gitlab readiness failing",
            judge_gitlab_endpoint(
                "readiness",
                Ok((
                    503,
                    r#"{"status":"failed","db_check":[{"status":"failed","message":"unexpected Db check result: 0"}],"redis_check":[{"status":"ok"}]}"#,
                )),
            ),
        ),
        (
            "gitlab liveness refused",
            judge_gitlab_endpoint(
                "liveness",
                Err("GET http://127.0.0.1:8080/-/liveness: Connection refused"),
            ),
        ),
        ("migrations none", judge_migrations(Ok((0, 0)))),
        ("migrations pending", judge_migrations(Ok((4, 0)))),
        ("migrations failed", judge_migrations(Ok((4, 1)))),
        ("token none", judge_admin_token(Ok(None), NOW)),
        (
            "token valid",
            judge_admin_token(Ok(Some(&token(true, false, Some("2027-06-01")))), NOW),
        ),
        (
            "token soon",
            judge_admin_token(Ok(Some(&token(true, false, Some("2027-01-20")))), NOW),
        ),
        (
            "token expired",
            judge_admin_token(Ok(Some(&token(true, false, Some("2027-01-15")))), NOW),
        ),
        (
            "token revoked",
            judge_admin_token(Ok(Some(&token(true, true, None))), NOW),
        ),
        (
            "token refused",
            judge_admin_token(Err("GitLab answered 401 Unauthorized"), NOW),
        ),
        (
            "runner ok",
            judge_runner_host(&host(true, Some("docker 27.3.1"), 2, true)),
        ),
        (
            "runner down",
            judge_runner_host(&host(false, None, 0, false)),
        ),
        (
            "runner no engine",
            judge_runner_host(&host(true, None, 0, false)),
        ),
        (
            "runner no gpu",
            judge_runner_host(&host(true, Some("podman 5.4.2"), 0, true)),
        ),
        ("runner problems", judge_runner_host(&problems)),
        (
            "runner unregistered",
            judge_runner_registration(&reg(None, None, false)),
        ),
        (
            "runner half registered",
            judge_runner_registration(&reg(Some("token_created"), None, false)),
        ),
        (
            "runner registered, no token",
            judge_runner_registration(&reg(Some("registered"), None, false)),
        ),
        (
            "runner online",
            judge_runner_registration(&reg(
                Some("registered"),
                Some(Ok(Some((true, "online", false)))),
                false,
            )),
        ),
        (
            "runner offline",
            judge_runner_registration(&reg(
                Some("registered"),
                Some(Ok(Some((false, "offline", false)))),
                false,
            )),
        ),
        (
            "runner offline on demand",
            judge_runner_registration(&reg(
                Some("registered"),
                Some(Ok(Some((false, "offline", false)))),
                true,
            )),
        ),
        (
            "runner paused",
            judge_runner_registration(&reg(
                Some("registered"),
                Some(Ok(Some((true, "online", true)))),
                false,
            )),
        ),
        (
            "runner gone from gitlab",
            judge_runner_registration(&reg(Some("registered"), Some(Ok(None)), false)),
        ),
        (
            "runner gitlab down",
            judge_runner_registration(&reg(
                Some("registered"),
                Some(Err("connection refused")),
                false,
            )),
        ),
        ("backup none", judge_backup(None, "", NOW)),
        (
            "backup none scheduled",
            judge_backup(None, "0 3 * * *", NOW),
        ),
        (
            "backup fresh daily",
            judge_backup(Some(NOW - DAY), "0 3 * * *", NOW),
        ),
        (
            "backup stale daily",
            judge_backup(Some(NOW - 3 * DAY), "0 3 * * *", NOW),
        ),
        (
            "backup very stale daily",
            judge_backup(Some(NOW - 5 * DAY), "0 3 * * *", NOW),
        ),
        (
            "backup unscheduled",
            judge_backup(Some(NOW - 8 * DAY), "", NOW),
        ),
        (
            "restore test never",
            judge_restore_test(None, Some(NOW), NOW),
        ),
        (
            "restore test passed, newer archive",
            judge_restore_test(Some(&restore_test(NOW - 2 * DAY, true)), Some(NOW), NOW),
        ),
        (
            "restore test passed long ago",
            judge_restore_test(Some(&restore_test(NOW - 40 * DAY, true)), Some(NOW), NOW),
        ),
        (
            "restore test failed",
            judge_restore_test(Some(&restore_test(NOW - DAY, false)), Some(NOW), NOW),
        ),
        (
            "mirror ok",
            judge_mirror(&mirror(Some(NOW - 600), None, 0), NOW),
        ),
        ("mirror never", judge_mirror(&mirror(None, None, 0), NOW)),
        (
            "mirror failing once",
            judge_mirror(&mirror(Some(NOW - 3600), Some(NOW - 60), 1), NOW),
        ),
        (
            "mirror failing",
            judge_mirror(&mirror(Some(NOW - 3 * DAY), Some(NOW - 60), 5), NOW),
        ),
        (
            "mirror stale",
            judge_mirror(&mirror(Some(NOW - 2 * DAY), None, 0), NOW),
        ),
        ("mirror misconfigured", judge_mirror(&bad_mirror, NOW)),
        ("clock ok", judge_clock("engine", Ok(1))),
        ("clock drift", judge_clock("engine", Ok(-12))),
        ("clock skewed", judge_clock("gpu1.lan", Ok(3600))),
        (
            "clock unknown",
            judge_clock("gpu1.lan", Err("date: not found")),
        ),
    ]
}

fn restore_test(at: i64, ok: bool) -> autogit_core::backup::RestoreTest {
    autogit_core::backup::RestoreTest {
        archive: "autogit-backup-20261201T030000Z-18.5.4.tar".into(),
        started_at: at,
        seconds: 412.0,
        ok,
        error: (!ok).then(|| "GitLab did not answer its health check within 900 s".into()),
    }
}

#[test]
fn judgements() {
    let mut out = String::new();
    for (name, c) in cases() {
        out.push_str(&format!(
            "## {name}\n{} {} — {}\n  evidence: {}\n",
            c.status.as_str(),
            c.id,
            c.title,
            c.evidence
        ));
        if let Some(f) = &c.fix {
            out.push_str(&format!("  fix: {f}\n"));
        }
        if let Some(s) = c.safe_fix {
            out.push_str(&format!("  --fix: {}\n", s.as_str()));
        }
    }
    insta::assert_snapshot!(out);
}

#[test]
fn site_internal_addresses_are_not_asked_of_public_resolvers() {
    let v = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert!(site_internal(&v(&["192.168.1.10"])));
    assert!(site_internal(&v(&["10.0.0.5", "fd00::5"])));
    assert!(!site_internal(&v(&["192.168.1.10", "198.51.100.9"])));
    assert!(!site_internal(&v(&["203.0.113.7"])));
    assert!(!site_internal(&v(&[])));
}

#[test]
fn every_check_id_is_in_a_known_group_and_the_worst_status_wins() {
    let checks: Vec<Check> = cases().into_iter().map(|(_, c)| c).collect();
    for c in &checks {
        assert!(GROUPS.contains(&c.group()), "{}", c.id);
        assert!(
            c.status <= Status::Skip || c.fix.is_some() || c.id == "gitlab.migrations",
            "a warning or failure says what to do: {c:?}"
        );
    }
    assert_eq!(worst(&checks), Status::Fail);
    assert_eq!(worst(&checks[..1]), Status::Ok);
    assert_eq!(worst(&checks[..2]), Status::Warn);
    assert_eq!(worst(&[]), Status::Ok);
    assert_eq!(
        safe_fixes(&checks),
        [SafeFix::Reconcile, SafeFix::RenewCertificate]
    );
    // A flagged service asks for a person, not for `--fix`.
    let flagged = judge_service(&service(Some(("exited", "none")), true));
    assert_eq!(flagged.safe_fix, None);
    let mut sorted = checks.clone();
    sort(&mut sorted);
    assert_eq!(sorted[0].group(), "config");
    assert_eq!(sorted.last().unwrap().group(), "clock");
}

#[test]
fn proxied_names_must_be_http_services_and_resolve_to_cloudflare() {
    let facts = |http_service: bool, answer: Result<&[&str], &str>| ProxiedFacts {
        subdomain: "registry".into(),
        name: "registry.example.com".into(),
        http_service,
        resolver: "system resolver".into(),
        answer: answer
            .map(|a| a.iter().map(|s| (*s).to_owned()).collect())
            .map_err(str::to_owned),
    };
    let ok = judge_proxied(&facts(true, Ok(&["104.16.132.229", "172.67.1.2"])));
    assert_eq!(
        (ok.id.as_str(), ok.status),
        ("dns.proxied.registry", Status::Ok)
    );
    assert!(ok.evidence.contains("Cloudflare's edge"), "{}", ok.evidence);

    // Still pointing at the ingress: the record is not proxied yet.
    let direct = judge_proxied(&facts(true, Ok(&["203.0.113.7"])));
    assert_eq!(direct.status, Status::Warn);
    assert!(direct.fix.unwrap().contains("autogit dns sync"));

    // Not an HTTP service (or GitLab, whose name carries SSH): a failure that says to remove it.
    let ssh = judge_proxied(&facts(false, Ok(&[])));
    assert_eq!(ssh.status, Status::Fail);
    assert!(ssh.fix.unwrap().contains("CLOUDFLARE_PROXIED"));

    assert_eq!(
        judge_proxied(&facts(true, Err("timed out"))).status,
        Status::Warn
    );
    // The setting names services, no secret: a support bundle keeps it readable.
    assert!(plain_env_key("CLOUDFLARE_PROXIED"));

    // A direct name that someone proxied at Cloudflare by hand: the failure says so.
    let hand = judge_dns(&DnsFacts {
        name: "gitlab.example.com".into(),
        want: vec!["203.0.113.7".into()],
        resolver: "system resolver".into(),
        answer: Ok(vec!["104.21.3.4".into()]),
        managed: true,
    });
    assert_eq!(hand.status, Status::Fail);
    assert!(
        hand.evidence.contains("not GitLab SSH"),
        "{}",
        hand.evidence
    );
}

/// A user-supplied certificate (TLS_SOURCE=file) is not "due" at two thirds of its lifetime:
/// only within 14 days of its expiry, and the fix is new files, not a renewal.
#[test]
fn a_supplied_certificate_is_judged_by_its_expiry() {
    let wanted = vec!["*.example.com".to_owned(), "example.com".to_owned()];
    let both = ["*.example.com", "example.com"];
    let year = cert(&both, NOW - 300 * DAY, NOW + 65 * DAY);
    let c = judge_supplied_certificate(Ok(Some(&year)), &wanted, NOW);
    assert_eq!(c.status, Status::Ok, "{c:?}");
    assert!(c.evidence.contains("expires in"), "{c:?}");
    // The same certificate with the ACME rule: due.
    assert_eq!(
        judge_certificate(Ok(()), Ok(Some(&year)), &wanted, NOW).status,
        Status::Warn
    );
    let soon = cert(&both, NOW - 300 * DAY, NOW + 10 * DAY);
    let c = judge_supplied_certificate(Ok(Some(&soon)), &wanted, NOW);
    assert_eq!(c.status, Status::Warn, "{c:?}");
    assert!(c.evidence.contains("user-supplied"), "{c:?}");
    assert!(c.fix.as_deref().unwrap().contains("TLS_CERT_FILE"), "{c:?}");
    assert_eq!(c.safe_fix, None);
    let expired = cert(&both, NOW - 300 * DAY, NOW - DAY);
    let c = judge_supplied_certificate(Ok(Some(&expired)), &wanted, NOW);
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert_eq!(c.safe_fix, None);
}
