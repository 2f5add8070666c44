//! Property: any valid configuration, written back as YAML, parses to the same configuration.

use autogit_core::config::*;
use autogit_core::emit::to_yaml;
use autogit_core::load::{LoadInput, load};
use autogit_core::preset::Preset;
use autogit_core::units::{Bytes, Dur};
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9]{0,8}(-[a-z0-9]{1,6})?"
}
fn env_name() -> impl Strategy<Value = String> {
    "[A-Z][A-Z0-9_]{2,20}"
}
fn dur() -> impl Strategy<Value = Dur> {
    (1u64..200_000).prop_map(Dur::secs)
}
fn bytes() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        (4u64..4096).prop_map(Bytes::mib),
        (1u64..512).prop_map(Bytes::gib)
    ]
}
fn cron() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0 */6 * * *".to_owned()),
        Just("30 2 * * 0".to_owned()),
        (0u8..60, 0u8..24).prop_map(|(m, h)| format!("{m} {h} * * *")),
    ]
}
fn logs() -> impl Strategy<Value = Logs> {
    (
        dur(),
        1_000u64..1_000_000_000,
        prop::collection::vec(
            prop::sample::select(vec![
                "cust-[0-9]{6}".to_owned(),
                "(?i)acme corp".to_owned(),
                r"\bEMP\d+\b".to_owned(),
                "it's \"quoted\"".to_owned(),
            ]),
            0..3,
        ),
        any::<bool>(),
        prop::option::of(prop::sample::select(vec![
            "/opt/models/all-MiniLM-L6-v2".to_owned(),
            "/var/lib/autogit/model dir".to_owned(),
        ])),
    )
        .prop_map(|(retention, max_lines, scrub, enabled, model_dir)| Logs {
            retention,
            max_lines,
            scrub,
            semantic: Semantic { enabled, model_dir },
        })
}
fn preset() -> impl Strategy<Value = Preset> {
    prop::sample::select(Preset::ALL.to_vec())
}
fn runner(gpu: bool) -> impl Strategy<Value = Runner> {
    (
        name(),
        prop_oneof![
            Just("auto".to_owned()),
            Just("local".to_owned()),
            Just("10.0.0.7".to_owned()),
            "[a-z]{1,8}\\.lan"
        ],
        prop::option::of("[a-z]{1,8}"),
        prop::sample::select(vec![Executor::Docker, Executor::Podman]),
        1u32..64,
        prop::collection::vec("[a-z]{1,6}", 0..3),
        prop::sample::subsequence(
            vec![Capability::Inference, Capability::Render, Capability::Train],
            1..=3,
        ),
        (
            any::<bool>(),
            0u32..4,
            1u32..8,
            prop::sample::select(vec![
                GpuSharing::TimeSliced,
                GpuSharing::Exclusive,
                GpuSharing::Mig,
            ]),
            any::<bool>(),
        ),
    )
        .prop_map(
            move |(
                name,
                host,
                user,
                executor,
                concurrent,
                tags,
                caps,
                (wsl2, min, more, sharing, protected),
            )| Runner {
                name,
                host,
                user,
                executor,
                concurrent,
                tags,
                gpu: gpu.then_some(GpuVendor::Nvidia),
                capabilities: if gpu { caps } else { Vec::new() },
                wsl2: gpu && wsl2,
                min,
                max: min.max(1) + more - 1,
                sharing: if gpu { sharing } else { GpuSharing::TimeSliced },
                protected,
            },
        )
}

type Accounts = (Vec<GitLabUser>, Vec<GitLabGroup>, Vec<ServiceAccount>, Dur);

fn gitlab_accounts() -> impl Strategy<Value = Accounts> {
    (
        prop::collection::btree_set("[a-z][a-z0-9]{1,8}", 0..3),
        prop::sample::select(vec![
            UserRole::Admin,
            UserRole::Maintainer,
            UserRole::Developer,
        ]),
        prop::collection::btree_set("[a-z][a-z0-9-]{0,8}[a-z0-9]", 0..3),
        prop::sample::select(vec![
            Visibility::Private,
            Visibility::Internal,
            Visibility::Public,
        ]),
        prop::sample::select(vec![
            AccessLevel::Reporter,
            AccessLevel::Developer,
            AccessLevel::Maintainer,
        ]),
        prop::sample::subsequence(TOKEN_SCOPES.to_vec(), 1..4),
        prop::option::of(Just(())),
        1u64..366,
    )
        .prop_map(
            |(users, role, groups, vis, access, scopes, defaults, days)| {
                let users: Vec<GitLabUser> = users
                    .into_iter()
                    .map(|u| GitLabUser {
                        email: format!("{u}@example.com"),
                        name: format!("User {u}"),
                        username: u,
                        role,
                    })
                    .collect();
                let members: Vec<GroupMember> = users
                    .iter()
                    .map(|u| GroupMember {
                        username: u.username.clone(),
                        access,
                    })
                    .collect();
                let groups = groups
                    .into_iter()
                    .map(|p| GitLabGroup {
                        name: format!("Group {p}"),
                        path: p,
                        visibility: vis,
                        members: members.clone(),
                    })
                    .collect();
                let accounts = match defaults {
                    Some(()) => ServiceAccount::defaults(),
                    None => vec![ServiceAccount {
                        name: "deploy".into(),
                        scopes: scopes.into_iter().map(str::to_owned).collect(),
                    }],
                };
                (users, groups, accounts, Dur::secs(days * 86_400))
            },
        )
}

fn config() -> impl Strategy<Value = Config> {
    (
        (
            "[a-z]{1,10}\\.(lan|example\\.com)",
            prop::sample::select(vec!["http", "https"]),
            1024u16..60000,
            preset(),
            prop::option::of((1u32..64).prop_map(|c| f64::from(c) / 2.0)),
            prop::option::of(bytes()),
        ),
        (
            any::<bool>(),
            cron(),
            prop::option::of(1u32..32),
            name(),
            prop::option::of(env_name()),
            prop::collection::vec("https://[a-z]{1,8}\\.example/[a-z]{1,8}\\.git", 0..3),
            any::<bool>(),
            prop::option::of("git://[a-z]{1,8}\\.example/\\{path\\}\\.git"),
        ),
        (
            prop::collection::vec(runner(false), 0..3),
            prop::collection::vec(runner(true), 0..3),
            dur(),
            (
                prop::sample::select(vec![EngineAccess::Proxy, EngineAccess::Socket]),
                "/run/[a-z]{1,8}/[a-z-]{1,12}\\.sock",
                prop::sample::select(vec![
                    JobNetwork::Runner,
                    JobNetwork::Bridge,
                    JobNetwork::Host,
                ]),
                any::<bool>(),
                any::<bool>(),
            ),
        ),
        (
            dur(),
            dur(),
            1u32..100,
            any::<bool>(),
            prop::option::of(env_name()),
        ),
        (
            1u32..100,
            cron(),
            prop::sample::select(vec![
                IngressKind::Traefik,
                IngressKind::Nginx,
                IngressKind::None,
            ]),
            prop::collection::vec("age1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{58}", 0..3),
        ),
        gitlab_accounts(),
        logs(),
    )
        .prop_map(|(g, m, r, h, b, acc, lg)| {
            let mut c = Config::default();
            c.gitlab.hostname = g.0.clone();
            c.gitlab.external_url = format!("{}://{}:{}", g.1, g.0, g.2);
            c.gitlab.external_url_explicit =
                c.gitlab.external_url != autogit_core::ingress::INIT_EXTERNAL_URL;
            c.gitlab.ports.http = g.2;
            c.gitlab.resources = Resources {
                preset: g.3,
                cpu: g.4,
                memory: g.5,
            };
            c.mirroring.enabled = m.0;
            c.mirroring.schedule = m.1;
            c.mirroring.parallelism = m.2;
            c.mirroring.namespace = m.3;
            c.mirroring.allow_private = m.6;
            c.mirroring.target_url_template = m.7;
            c.mirroring.sources.github = vec![GitHubSource {
                username: Some("someone".into()),
                organization: None,
                token_env: m.4,
                api_url: None,
                allow_insecure_http: false,
                filters: Filters::default(),
            }];
            c.mirroring.sources.git =
                m.5.into_iter()
                    .map(|url| GitSource {
                        url,
                        name: None,
                        token_env: None,
                    })
                    .collect();
            // Runner names must be unique across both lists.
            let mut seen = std::collections::HashSet::new();
            c.runners.cpu =
                r.0.into_iter()
                    .filter(|x| seen.insert(x.name.clone()))
                    .collect();
            c.runners.gpu =
                r.1.into_iter()
                    .filter(|x| seen.insert(x.name.clone()))
                    .collect();
            // One sharing mode per host (validate refuses two).
            let one = c.runners.gpu.first().map(|g| g.sharing).unwrap_or_default();
            for g in &mut c.runners.gpu {
                g.sharing = one;
            }
            c.runners.cooldown = r.2;
            c.runners.isolation = Isolation {
                engine: r.3.0,
                proxy_socket: r.3.1,
                network: r.3.2,
                privileged: r.3.3,
                job_engine_socket: r.3.4,
            };
            c.health.check_interval = h.0;
            c.health.reconcile_interval = h.1;
            c.health.restart_budget.max = h.2;
            c.health.self_heal = h.3;
            c.health.notify = Notifiers::default();
            for n in [
                Notify::Log,
                Notify::Webhook {
                    url: "https://hooks.example.com/x".into(),
                    secret_env: h.4.clone(),
                },
                Notify::Slack {
                    url_env: "SLACK_WEBHOOK_URL".into(),
                },
                Notify::Discord {
                    url_env: "DISCORD_WEBHOOK_URL".into(),
                },
                Notify::Ntfy {
                    url: "https://ntfy.example.com".into(),
                    topic: "autogit-alerts".into(),
                    token_env: h.4,
                },
                Notify::Extension {
                    name: "pager".into(),
                },
            ] {
                c.health.notify.push(n);
            }
            c.health.notify.push(Notify::Email {
                host: "smtp.example.com".into(),
                port: 587,
                tls: SmtpTls::Starttls,
                from: "autogit@example.com".into(),
                to: vec!["ops@example.com".into()],
                username_env: Some("SMTP_USER".into()),
                password_env: Some("SMTP_PASSWORD".into()),
                ca_file: None,
            });
            c.health.notify.push_with(
                Notify::Webhook {
                    url: "https://hooks.example.com/filtered".into(),
                    secret_env: None,
                },
                autogit_core::notify::Rule {
                    events: vec!["mirror_failed".into()],
                    min_severity: Some(autogit_core::notify::Level::Warning),
                    rate_limit: Some(autogit_core::notify::RateLimit { max: 3, per: h.0 }),
                },
            );
            c.backup.retention = b.0;
            c.backup.schedule = b.1;
            c.platform.ingress = b.2;
            c.backup.encrypt_to = b.3;
            c.backup.targets = vec![
                BackupTarget::S3(S3Target {
                    name: "s3".into(),
                    endpoint: "https://s3.example.com".into(),
                    bucket: "autogit".into(),
                    region: "eu-west-1".into(),
                    prefix: "gitlab/".into(),
                    access_key_env: "S3_KEY_ID".into(),
                    secret_key_env: "S3_SECRET".into(),
                    retention: TargetRetention {
                        keep: Some(b.0),
                        max_age: None,
                    },
                }),
                BackupTarget::Sftp(SftpTarget {
                    name: "nas".into(),
                    host: "backup@nas.lan".into(),
                    port: Some(2222),
                    path: "/srv/backups".into(),
                    identity: None,
                    retention: TargetRetention {
                        keep: None,
                        max_age: Some(Dur::secs(30 * 86_400)),
                    },
                }),
                BackupTarget::Extension(ExtensionTarget {
                    name: "b2-store".into(),
                    retention: TargetRetention::default(),
                }),
            ];
            c.logs = lg;
            (
                c.gitlab.users,
                c.gitlab.groups,
                c.gitlab.service_accounts,
                c.gitlab.token_lifetime,
            ) = acc;
            c
        })
        // The generated ports must not collide with the fixed https/ssh defaults.
        .prop_filter("distinct ports", |c| {
            c.gitlab.ports.http != c.gitlab.ports.https && c.gitlab.ports.http != c.gitlab.ports.ssh
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn valid_configs_round_trip(c in config()) {
        let yaml = to_yaml(&serde_json::to_value(&c).unwrap());
        let loaded = load(&LoadInput { file: Some(("roundtrip.yml", &yaml)), ..Default::default() });
        let errors: Vec<_> = loaded.diagnostics.0.iter().filter(|d| d.is_error()).collect();
        prop_assert!(errors.is_empty(), "{yaml}\n{errors:#?}");
        prop_assert_eq!(&loaded.config, &c, "{}", yaml);
    }
}
