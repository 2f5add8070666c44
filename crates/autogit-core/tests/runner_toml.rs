//! gitlab-runner's config.toml: snapshots for CPU, GPU and WSL2 runners, and a parse-back
//! check with a real TOML parser, hostile names included.

use autogit_core::load::{LoadInput, load};
use autogit_core::runner::{RunnerAuth, config_toml};

const CONFIG: &str = r#"
runners:
  cooldown: 5m
  cpu:
    - name: homelab-cpu
      host: local
      concurrent: 4
  gpu:
    - name: desktop-3090ti
      host: desktop1.lan
      capabilities: [inference, render]
    - name: wsl-5080
      host: desktop2.lan
      executor: podman
      wsl2: true
      capabilities: [train]
"#;

fn rendered(config: &str, token: &str) -> (String, autogit_core::config::Config) {
    let loaded = load(&LoadInput {
        file: Some(("autogit.yml", config)),
        ..Default::default()
    });
    assert!(!loaded.diagnostics.has_errors(), "{:?}", loaded.diagnostics);
    let c = loaded.config;
    let auth = |n: usize| RunnerAuth {
        url: "https://gitlab.example.com".into(),
        token: format!("{token}{n}"),
    };
    let runners: Vec<_> = c
        .all_runners()
        .enumerate()
        .map(|(i, r)| (r, auth(i)))
        .collect();
    (config_toml(&c.runners, &runners, 3), c.clone())
}

#[test]
fn cpu_gpu_and_wsl2_runners() {
    let (toml_text, _) = rendered(CONFIG, "glrt-test-");
    insta::assert_snapshot!(toml_text);
    let v: toml::Value = toml::from_str(&toml_text).expect("valid TOML");
    assert_eq!(v["concurrent"].as_integer(), Some(4 + 4 + 4));
    let runners = v["runners"].as_array().unwrap();
    assert_eq!(runners.len(), 3);
    assert_eq!(
        runners[0]["docker"].get("gpus"),
        None,
        "CPU runner has no GPU"
    );
    assert_eq!(runners[1]["docker"]["gpus"].as_str(), Some("all"));
    let wsl = &runners[2];
    assert_eq!(
        wsl["docker"]["devices"].as_array().unwrap()[0].as_str(),
        Some("/dev/dxg")
    );
    assert!(
        wsl["docker"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x.as_str() == Some("/usr/lib/wsl:/usr/lib/wsl:ro"))
    );
    // Isolation by default: behind the engine proxy (no `host`: the proxy is the runner
    // container's /var/run/docker.sock), no engine socket for jobs, not privileged, each
    // runner's jobs on its own network.
    assert_eq!(wsl["docker"].get("host"), None);
    for r in runners {
        let d = &r["docker"];
        assert_eq!(d["privileged"].as_bool(), Some(false));
        assert_eq!(
            d["network_mode"].as_str().map(str::to_owned),
            Some(format!("autogit-runner-{}", r["name"].as_str().unwrap()))
        );
        assert!(
            d["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|v| !v.as_str().unwrap().contains(".sock")),
            "{d}"
        );
    }
}

/// A token (from GitLab) or URL with quotes, backslashes, newlines and TOML syntax cannot add
/// keys or tables: the parsed values equal the inputs exactly.
#[test]
fn hostile_values_stay_inside_their_strings() {
    let loaded = load(&LoadInput {
        file: Some((
            "autogit.yml",
            "runners:\n  cpu:\n    - name: a\n      host: local\n",
        )),
        ..Default::default()
    });
    let c = loaded.config;
    let evil_token = "x\"\nprivileged = true\n[[runners]]\nname = \"pwned\\\u{7}";
    let evil_url = "https://h/\"]\n[session_server]\nlisten_address = \"0.0.0.0:1\"";
    let r = c.runners.cpu.first().unwrap();
    let text = config_toml(
        &c.runners,
        &[(
            r,
            RunnerAuth {
                url: evil_url.into(),
                token: evil_token.into(),
            },
        )],
        3,
    );
    let v: toml::Value = toml::from_str(&text).expect("still valid TOML");
    let runners = v["runners"].as_array().unwrap();
    assert_eq!(runners.len(), 1, "no injected runner");
    assert_eq!(runners[0]["token"].as_str(), Some(evil_token));
    assert_eq!(runners[0]["url"].as_str(), Some(evil_url));
    assert_eq!(runners[0]["docker"]["privileged"].as_bool(), Some(false));
    assert!(v.get("session_server").is_none());
}
