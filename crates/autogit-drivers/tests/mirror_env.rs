//! What each git child of a mirror sync can see, read from `/proc/<pid>/cmdline` and
//! `/proc/<pid>/environ` while it runs (a `git` wrapper records its own before it execs the
//! real git), against real `git daemon`s on loopback: no token in any argv, no variable of
//! autogit's environment beyond the minimal set, and each token only in the calls that talk
//! to its remote. The test runs itself again as a child process with secrets in its
//! environment (`GITHUB_TOKEN`, …), as autogit would run under a CI or a shell that has them.

mod git_support;

use autogit_drivers::mirror::git::INHERITED;
use autogit_drivers::mirror::{Job, Options, sync_all};
use git_support::*;
use secrecy::SecretString;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

const SRC_TOKEN: &str = "tok-SOURCE-5150";
const DST_TOKEN: &str = "tok-TARGET-8086";
const CANARY: &str = "ghp_canaryCANARYcanary0123456789";

const INNER: &str = "AUTOGIT_TEST_MIRROR_ENV_INNER";

#[test]
fn git_children_see_no_secret_but_their_own_token() {
    if std::env::var_os(INNER).is_some() {
        return tokio::runtime::Runtime::new().unwrap().block_on(inner());
    }
    if !have_git_daemon() {
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "git_children_see_no_secret_but_their_own_token",
            "--exact",
            "--nocapture",
        ])
        .env(INNER, "1")
        .env("GITHUB_TOKEN", CANARY)
        .env("AWS_SECRET_ACCESS_KEY", CANARY)
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn inner() {
    assert_eq!(std::env::var("GITHUB_TOKEN").as_deref(), Ok(CANARY));
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let src = Daemon::start(&root.join("src"), "env-src");
    let dst = Daemon::start(&root.join("dst"), "env-dst");
    let bare = src.init("app.git");
    dst.init("mirrors/app.git");
    let w = Work::new(&root.join("work"), &bare);
    w.commit("a", "1");
    w.publish();

    let rec = root.join("proc");
    std::fs::create_dir_all(&rec).unwrap();
    let wrapper = root.join("git-proc");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nd={rec}/$$\nmkdir -p $d\ncat /proc/$$/cmdline > $d/cmdline\ncat /proc/$$/environ > $d/environ\nexec {real} \"$@\"\n",
            rec = rec.display(),
            real = real_git().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut opts = Options::new(root.join("cache"));
    opts.git = wrapper;
    opts.retries = 0;
    opts.timeout = Duration::from_secs(60);
    opts.allow_private = true;
    let job = Job {
        name: "app".into(),
        source: src.url("app.git"),
        target: dst.url("mirrors/app.git"),
        source_token: Some(SecretString::from(SRC_TOKEN)),
        target_token: Some(SecretString::from(DST_TOKEN)),
    };
    let r = sync_all(vec![job], &opts, None, |_| {}).await.remove(0);
    assert!(r.result.is_ok(), "{:?}", r.result);

    let allowed: Vec<&str> = INHERITED
        .iter()
        .copied()
        .chain([
            "GIT_CONFIG_NOSYSTEM",
            "GIT_CONFIG_GLOBAL",
            "GIT_TERMINAL_PROMPT",
            "GCM_INTERACTIVE",
            "LC_ALL",
            "GIT_ASKPASS",
            "AUTOGIT_GIT_PASSWORD",
        ])
        .collect();
    let mut seen = [0usize; 3]; // source calls, target calls, local calls
    for entry in std::fs::read_dir(&rec).unwrap() {
        let d = entry.unwrap().path();
        let argv: Vec<String> = std::fs::read_to_string(d.join("cmdline"))
            .unwrap()
            .split('\0')
            .map(str::to_owned)
            .collect();
        let env: Vec<(String, String)> = std::fs::read_to_string(d.join("environ"))
            .unwrap()
            .split('\0')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect();
        let line = argv.join(" ");
        for secret in [SRC_TOKEN, DST_TOKEN, CANARY] {
            assert!(!line.contains(secret), "secret in argv: {line}");
        }
        for (k, v) in &env {
            assert!(allowed.contains(&k.as_str()), "`{k}` reached git ({line})");
            assert!(!v.contains(CANARY), "{k} carries the canary");
        }
        let password = env
            .iter()
            .find(|(k, _)| k == "AUTOGIT_GIT_PASSWORD")
            .map(|(_, v)| v.as_str());
        let to_source = line.contains(&format!(":{}/", src.port));
        let to_target = line.contains(&format!(":{}/", dst.port));
        match (to_source, to_target) {
            (true, false) => {
                assert_eq!(password, Some(SRC_TOKEN), "{line}");
                seen[0] += 1;
            }
            (false, true) => {
                assert_eq!(password, Some(DST_TOKEN), "{line}");
                seen[1] += 1;
            }
            (false, false) => {
                assert_eq!(password, None, "a local call got a token: {line}");
                assert!(!env.iter().any(|(k, _)| k == "GIT_ASKPASS"), "{line}");
                seen[2] += 1;
            }
            (true, true) => panic!("one call to both remotes: {line}"),
        }
    }
    // The fetch of the source and the push to the target; init and the rest. (Over git://
    // both ls-remote are read in-process, `mirror/advert.rs`: no child to look at.)
    assert!(seen[0] >= 1 && seen[1] >= 1 && seen[2] >= 1, "{seen:?}");
}
