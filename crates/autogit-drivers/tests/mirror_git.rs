//! The git mirror driver against real git over loopback: sources and targets are bare
//! repositories served by `git daemon` (receive-pack enabled). Skips without `git daemon`
//! unless `AUTOGIT_REQUIRE_TOOLS=1`.
//!
//! LFS needs smart HTTP and the LFS API: see `mirror_lfs.rs`.

mod git_support;

use autogit_drivers::mirror::{Job, MirrorError, Options, Outcome, Report, cache_path, sync_all};
use autogit_drivers::state::Store;
use git_support::*;
use secrecy::SecretString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

struct Fx {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    src: Daemon,
    dst: Daemon,
    git_log: PathBuf,
    opts: Options,
}

impl Fx {
    fn new(label: &str) -> Option<Fx> {
        if !have_git_daemon() {
            return None;
        }
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_owned();
        let src = Daemon::start(&root.join("src"), &format!("{label}-src"));
        let dst = Daemon::start(&root.join("dst"), &format!("{label}-dst"));
        let (git, git_log) = recording_git(&root);
        let mut opts = Options::new(root.join("data/mirrors"));
        opts.git = git;
        opts.retries = 0;
        opts.backoff = Duration::from_millis(10);
        opts.timeout = Duration::from_secs(60);
        // The daemons are on loopback.
        opts.allow_private = true;
        Some(Fx {
            _tmp: tmp,
            root,
            src,
            dst,
            git_log,
            opts,
        })
    }

    /// A source repository `name` with a work tree, and its (empty) target.
    fn repo(&self, name: &str) -> Work {
        let bare = self.src.init(&format!("{name}.git"));
        self.dst.init(&format!("mirrors/{name}.git"));
        Work::new(&self.root.join("work").join(name), &bare)
    }

    fn job(&self, name: &str) -> Job {
        Job {
            name: name.to_owned(),
            source: self.src.url(&format!("{name}.git")),
            target: self.dst.url(&format!("mirrors/{name}.git")),
            source_token: None,
            target_token: None,
        }
    }

    async fn sync(&self, jobs: Vec<Job>) -> Vec<Report> {
        sync_all(jobs, &self.opts, None, |_| {}).await
    }

    async fn sync_one(&self, name: &str) -> Result<Outcome, MirrorError> {
        self.sync(vec![self.job(name)]).await.remove(0).result
    }

    fn assert_mirrored(&self, name: &str) {
        let s = refs(&self.src.url(&format!("{name}.git")));
        let t = refs(&self.dst.url(&format!("mirrors/{name}.git")));
        assert!(!s.is_empty());
        assert_eq!(s, t, "target differs from source");
    }

    fn git_calls(&self) -> Vec<String> {
        std::fs::read_to_string(&self.git_log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn calls_with(&self, verb: &str) -> usize {
        self.git_calls()
            .iter()
            .filter(|l| l.split(' ').any(|w| w == verb))
            .count()
    }
}

fn synced(r: &Result<Outcome, MirrorError>) -> (usize, usize) {
    match r {
        Ok(Outcome::Synced {
            changed, deleted, ..
        }) => (*changed, *deleted),
        other => panic!("expected a sync, got {other:?}"),
    }
}

#[tokio::test]
async fn new_repository_is_mirrored_and_a_second_sync_does_nothing() {
    let Some(mut fx) = Fx::new("new") else { return };
    let w = fx.repo("app");
    w.commit("a", "1");
    w.run(&["branch", "dev"]);
    w.run(&["tag", "-a", "v1", "-m", "v1"]);
    w.run(&["tag", "light"]);
    w.publish();
    let r = fx.sync_one("app").await;
    assert_eq!(synced(&r), (4, 0));
    fx.assert_mirrored("app");
    assert!(cache_path(&fx.opts.cache_dir, "app").join("HEAD").exists());

    // Nothing changed: both advertisements read in-process (`mirror/advert.rs`), so no git
    // process at all; no fetch, no push, the cache untouched.
    let before = fx.git_calls().len();
    let cache_objects = cache_path(&fx.opts.cache_dir, "app").join("objects");
    let mtime = std::fs::metadata(&cache_objects)
        .unwrap()
        .modified()
        .unwrap();
    let r = fx.sync_one("app").await;
    assert!(matches!(r, Ok(Outcome::UpToDate)), "{r:?}");
    let calls = fx.git_calls()[before..].to_vec();
    assert!(calls.is_empty(), "{calls:#?}");
    assert_eq!(
        std::fs::metadata(&cache_objects)
            .unwrap()
            .modified()
            .unwrap(),
        mtime
    );

    // The same through `git ls-remote` (what ssh remotes use): two calls, nothing else.
    fx.opts.native_refs = false;
    let before = fx.git_calls().len();
    let r = fx.sync_one("app").await;
    assert!(matches!(r, Ok(Outcome::UpToDate)), "{r:?}");
    let calls = fx.git_calls()[before..].to_vec();
    assert_eq!(calls.len(), 2, "{calls:#?}");
    assert!(calls.iter().all(|c| c.contains("ls-remote")), "{calls:#?}");
}

/// A first sync reads no advertisement: with the fast path off (any listing would be a `git
/// ls-remote` child), it runs one fetch and one push, as `clone --mirror` + `push --mirror`
/// would (the LFS scan reads the fetched loose objects in-process); the counts come from the push's report. A later
/// sync compares both sides again, and an empty source does not make every sync a first one.
#[tokio::test]
async fn a_first_sync_reads_no_advertisement() {
    let Some(mut fx) = Fx::new("first") else {
        return;
    };
    fx.opts.native_refs = false;
    let w = fx.repo("app");
    w.commit("a", "1");
    w.run(&["branch", "dev"]);
    w.run(&["tag", "-a", "v1", "-m", "v1"]);
    w.publish();
    assert_eq!(synced(&fx.sync_one("app").await), (3, 0));
    fx.assert_mirrored("app");
    let verbs: Vec<String> = fx
        .git_calls()
        .iter()
        .filter_map(|l| {
            ["ls-remote", "fetch", "cat-file", "push"]
                .into_iter()
                .find(|v| l.split(' ').any(|w| w == *v))
                .map(str::to_owned)
        })
        .collect();
    // (The few objects came unpacked, loose: the LFS scan read them in-process.)
    assert_eq!(verbs, ["fetch", "push"], "{:#?}", fx.git_calls());

    // Nothing changed: both sides listed, nothing else.
    let before = fx.git_calls().len();
    assert!(matches!(fx.sync_one("app").await, Ok(Outcome::UpToDate)));
    let calls = fx.git_calls()[before..].to_vec();
    assert_eq!(calls.len(), 2, "{calls:#?}");
    assert!(calls.iter().all(|c| c.contains("ls-remote")), "{calls:#?}");

    // A cache lost while the target kept everything: fetched again, nothing to push.
    std::fs::remove_dir_all(cache_path(&fx.opts.cache_dir, "app")).unwrap();
    assert!(matches!(fx.sync_one("app").await, Ok(Outcome::UpToDate)));
    fx.assert_mirrored("app");

    // An empty source: its first sync leaves the cache without refs, the next one lists.
    fx.src.init("empty.git");
    fx.dst.init("mirrors/empty.git");
    assert!(matches!(fx.sync_one("empty").await, Ok(Outcome::UpToDate)));
    let before = fx.git_calls().len();
    assert!(matches!(fx.sync_one("empty").await, Ok(Outcome::UpToDate)));
    let calls = fx.git_calls()[before..].to_vec();
    assert!(calls.iter().all(|c| c.contains("ls-remote")), "{calls:#?}");
}

/// Every path under `dir` whose mode gives group or others any access.
fn not_private(dir: &std::path::Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(p) = todo.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            out.push(format!("{:o} {}", mode, p.display()));
        }
        if meta.is_dir() {
            todo.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    out
}

#[tokio::test]
#[allow(unsafe_code)]
async fn mirror_caches_are_private_under_umask_022() {
    let Some(fx) = Fx::new("umask") else { return };
    // SAFETY: umask only sets the process's file creation mask; 022 is the usual one and
    // what the other tests in this binary expect anyway. git inherits it.
    unsafe {
        libc::umask(0o022);
    }
    let w = fx.repo("private");
    w.commit("a", "1");
    w.run(&["tag", "-a", "v1", "-m", "v1"]);
    w.publish();
    assert_eq!(synced(&fx.sync_one("private").await), (2, 0));
    w.commit("b", "2");
    w.publish();
    assert_eq!(synced(&fx.sync_one("private").await), (1, 0));
    // The data dir (created here), the caches' directory, the lock and the whole cache.
    let data = fx.root.join("data");
    let wide = not_private(&data);
    assert!(wide.is_empty(), "readable by others:\n{}", wide.join("\n"));
}

#[tokio::test]
async fn new_commits_deleted_branches_moved_tags_and_force_pushes() {
    let Some(fx) = Fx::new("changes") else { return };
    let w = fx.repo("lib");
    w.commit("a", "1");
    w.run(&["branch", "feature"]);
    w.run(&["tag", "v1"]);
    w.publish();
    synced(&fx.sync_one("lib").await);
    fx.assert_mirrored("lib");

    // New commits.
    w.commit("b", "2");
    w.publish();
    assert_eq!(synced(&fx.sync_one("lib").await), (1, 0));
    fx.assert_mirrored("lib");

    // A deleted branch is pruned from the target.
    w.run(&["branch", "-D", "feature"]);
    w.publish();
    assert_eq!(synced(&fx.sync_one("lib").await), (0, 1));
    fx.assert_mirrored("lib");
    assert!(!refs(&fx.dst.url("mirrors/lib.git")).contains_key("refs/heads/feature"));

    // A moved tag follows.
    w.run(&["tag", "-f", "v1", "HEAD"]);
    w.publish();
    assert_eq!(synced(&fx.sync_one("lib").await), (1, 0));
    fx.assert_mirrored("lib");

    // A force-push (history rewritten) is mirrored.
    w.run(&["reset", "--hard", "--quiet", "HEAD~1"]);
    let rewritten = w.commit("c", "rewritten");
    w.publish();
    assert_eq!(synced(&fx.sync_one("lib").await), (1, 0));
    fx.assert_mirrored("lib");
    assert_eq!(
        refs(&fx.dst.url("mirrors/lib.git"))["refs/heads/main"],
        rewritten
    );
    // Only heads and tags were ever pushed, never --mirror.
    assert!(fx.git_calls().iter().all(|c| !c.contains("--mirror")));
}

#[tokio::test]
async fn source_dying_mid_fetch_leaves_the_target_untouched() {
    let Some(fx) = Fx::new("cut") else { return };
    let w = fx.repo("big");
    w.commit("a", "1");
    w.publish();
    synced(&fx.sync_one("big").await);
    let before = refs(&fx.dst.url("mirrors/big.git"));

    // 2 MB of incompressible data; the source's upload-pack is cut after at most 20 kB of its answer.
    let mut noise = vec![0u8; 2 << 20];
    getrandom_fill(&mut noise);
    std::fs::write(w.dir.join("blob.bin"), &noise).unwrap();
    w.run(&["add", "-A"]);
    w.run(&["commit", "--quiet", "-m", "big"]);
    w.run(&["branch", "other"]);
    w.publish();
    fx.src.flag("cut", true);
    let pushes = fx.calls_with("push");
    let r = fx.sync_one("big").await;
    let e = r.expect_err("the fetch must fail");
    assert!(e.to_string().contains("git fetch failed"), "{e}");
    assert_eq!(refs(&fx.dst.url("mirrors/big.git")), before);
    assert_eq!(fx.calls_with("push"), pushes, "nothing was pushed");

    // The source is back: the next sync completes.
    fx.src.flag("cut", false);
    assert_eq!(synced(&fx.sync_one("big").await), (2, 0));
    fx.assert_mirrored("big");
}

fn getrandom_fill(buf: &mut [u8]) {
    // xorshift: incompressible enough for zlib, no extra dependency.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in buf {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
}

#[tokio::test]
async fn a_stalled_source_times_out_and_a_flaky_one_is_retried() {
    let Some(mut fx) = Fx::new("slow") else {
        return;
    };
    let w = fx.repo("s");
    w.commit("a", "1");
    w.publish();
    fx.opts.timeout = Duration::from_secs(2);
    fx.src.flag("stall", true);
    let t = Instant::now();
    let r = fx.sync_one("s").await;
    assert!(matches!(r, Err(MirrorError::Timeout { .. })), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    fx.src.flag("stall", false);

    fx.opts.retries = 2;
    fx.src.flag("fail-once", true);
    let rep = fx.sync(vec![fx.job("s")]).await.remove(0);
    assert_eq!(rep.attempts, 2, "{:?}", rep.result);
    synced(&rep.result);
    fx.assert_mirrored("s");
}

#[tokio::test]
async fn five_thousand_refs() {
    let Some(fx) = Fx::new("many") else { return };
    let w = fx.repo("many");
    let head = w.commit("a", "1");
    w.publish();
    let input: String = (0..5000)
        .map(|i| format!("create refs/heads/b{i:04} {head}\n"))
        .collect();
    let bare = fx.src.base.join("many.git");
    let mut child = std::process::Command::new("git")
        .current_dir(&bare)
        .args(["update-ref", "--stdin"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());

    let t = Instant::now();
    assert_eq!(synced(&fx.sync_one("many").await), (5001, 0));
    let first = t.elapsed();
    fx.assert_mirrored("many");
    let t = Instant::now();
    assert!(matches!(fx.sync_one("many").await, Ok(Outcome::UpToDate)));
    eprintln!(
        "5001 refs: first sync {first:?}, no-change sync {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn credentials_reach_git_only_through_askpass() {
    let Some(fx) = Fx::new("creds") else { return };
    let w = fx.repo("c");
    w.commit("a", "1");
    w.publish();
    let token = "tok-S3CRET-4242";
    let mut job = fx.job("c");
    job.source_token = Some(SecretString::from(token));
    job.target_token = Some(SecretString::from(token));
    synced(&fx.sync(vec![job.clone()]).await.remove(0).result);
    fx.assert_mirrored("c");

    // A failing sync: the error names the step and the remote, not the token.
    let mut bad = job.clone();
    bad.source = fx.src.url("missing.git");
    let rep = fx.sync(vec![bad]).await.remove(0);
    let err = rep.result.expect_err("missing repository").to_string();
    assert!(err.contains("git ls-remote failed"), "{err}");

    let argv = std::fs::read_to_string(&fx.git_log).unwrap();
    assert!(!argv.is_empty());
    assert!(!argv.contains(token), "token in a command line:\n{argv}");
    assert!(!err.contains(token), "{err}");
    let config =
        std::fs::read_to_string(cache_path(&fx.opts.cache_dir, "c").join("config")).unwrap();
    assert!(
        !config.contains(token) && !config.contains("git://"),
        "{config}"
    );
    // What git would get if it asked: the token, through the askpass script.
    let asked = std::fs::read_to_string(fx.git_log.with_extension("log.askpass")).unwrap();
    assert!(asked.lines().all(|l| l == token), "{asked}");
    // Hardening on every call.
    for line in argv.lines() {
        assert!(line.starts_with("-c protocol.allow=never"), "{line}");
    }
}

#[tokio::test]
async fn parallel_syncs_are_recorded_in_sqlite() {
    let Some(mut fx) = Fx::new("par") else { return };
    let names: Vec<String> = (0..6).map(|i| format!("r{i}")).collect();
    for n in &names {
        let w = fx.repo(n);
        w.commit("a", n);
        w.publish();
    }
    fx.opts.parallel = 3;
    let store = Store::open(&fx.root.join("data/state.db")).unwrap();
    let mut jobs: Vec<Job> = names.iter().map(|n| fx.job(n)).collect();
    let mut broken = fx.job("nope");
    broken.source = fx.src.url("nope.git");
    jobs.push(broken);
    let mut started = 0;
    let reports = sync_all(jobs, &fx.opts, Some(&store), |e| {
        if let autogit_drivers::mirror::Event::Started { .. } = e {
            started += 1;
        }
    })
    .await;
    assert_eq!(started, 7);
    assert_eq!(reports.len(), 7);
    for (r, n) in reports.iter().zip(&names) {
        assert_eq!(&r.name, n);
        synced(&r.result);
        fx.assert_mirrored(n);
    }
    assert!(reports[6].result.is_err());
    let st = store.mirror_status().unwrap();
    assert_eq!(st.len(), 7);
    let nope = st.iter().find(|s| s.mirror == "nope").unwrap();
    assert_eq!(nope.last_result, "failed");
    assert!(nope.last_error.as_deref().unwrap().contains("ls-remote"));
    assert!(
        st.iter()
            .filter(|s| s.mirror != "nope")
            .all(|s| s.last_result == "synced" && s.last_success.is_some())
    );
}

#[tokio::test]
async fn option_and_transport_injection_is_refused_before_git_runs() {
    let Some(fx) = Fx::new("inject") else { return };
    for bad in [
        "--upload-pack=touch /tmp/x",
        "ext::sh -c id",
        "-oProxyCommand=x",
    ] {
        let mut job = fx.job("x");
        job.source = bad.into();
        let r = fx.sync(vec![job]).await.remove(0);
        let e = r.result.expect_err(bad).to_string();
        assert!(e.contains("refusing URL"), "{e}");
    }
    assert!(fx.git_calls().is_empty(), "{:?}", fx.git_calls());
}

/// Every spelling of a loopback source: refused (before git runs, not retried) without
/// `allow_private`, mirrored with it, and git is always given the checked address.
#[tokio::test]
async fn private_sources_in_every_spelling_are_refused_or_pinned() {
    let Some(mut fx) = Fx::new("ssrf") else {
        return;
    };
    let w = fx.repo("app");
    w.commit("a", "1");
    w.publish();
    let port = fx.src.port;
    let url = |h: &str| format!("git://{h}:{port}/app.git");
    let spellings = [
        "127.0.0.1",
        "0x7f000001",
        "127.1",
        "0177.0.0.1",
        "2130706433",
        "0",
        "[::ffff:127.0.0.1]",
    ];
    fx.opts.allow_private = false;
    fx.opts.retries = 2;
    let mut refused: Vec<String> = spellings.iter().map(|h| url(h)).collect();
    refused.push(url("localhost"));
    // A host name that resolves (through the system resolver, as git would) only to
    // non-public addresses: this machine's name, which /etc/hosts maps to loopback or to a
    // private address on most systems. Checked after resolution, not from the literal.
    let me = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let me = me.trim();
    let resolved: Vec<std::net::IpAddr> = std::net::ToSocketAddrs::to_socket_addrs(&(me, port))
        .map(|a| a.map(|a| a.ip()).collect())
        .unwrap_or_default();
    let by_name = !resolved.is_empty()
        && autogit_core::netaddr::host_class(me).is_none()
        && autogit_core::validate::check_hostname(me).is_ok()
        && resolved
            .iter()
            .all(|a| autogit_core::netaddr::classify(*a).is_some());
    if by_name {
        refused.push(url(me));
    } else {
        eprintln!(
            "note: host name `{me}` does not resolve to private addresses only ({resolved:?}); that case is not checked here"
        );
    }
    for source in &refused {
        let mut job = fx.job("app");
        job.source = source.clone();
        let r = fx.sync(vec![job]).await.remove(0);
        let e = r.result.expect_err(source).to_string();
        assert!(e.contains("mirroring.allow_private"), "{source}: {e}");
        assert_eq!(r.attempts, 1, "{source}: a refusal is not retried");
    }
    if by_name {
        let mut job = fx.job("app");
        job.source = url(me);
        let e = fx.sync(vec![job]).await.remove(0).result.unwrap_err();
        assert!(e.to_string().contains("resolves to"), "{e}");
    }
    assert!(fx.git_calls().is_empty(), "{:?}", fx.git_calls());

    fx.opts.allow_private = true;
    for h in spellings {
        let mut job = fx.job("app");
        job.source = url(h);
        let r = fx.sync(vec![job]).await.remove(0);
        assert!(r.result.is_ok(), "{h}: {:?}", r.result);
    }
    fx.assert_mirrored("app");
    if by_name {
        // An https source by name: curl is told the checked address and not to follow
        // redirects (the daemon speaks no TLS, so the sync itself fails).
        let mut job = fx.job("app");
        job.source = format!("https://{me}:{port}/app.git");
        assert!(fx.sync(vec![job]).await.remove(0).result.is_err());
        let resolve = format!("-c http.curloptResolve={me}:{port}:{}", resolved[0]);
        let https: Vec<String> = fx
            .git_calls()
            .into_iter()
            .filter(|l| l.contains("https://"))
            .collect();
        assert!(!https.is_empty());
        for line in &https {
            assert!(
                line.contains(&resolve) && line.contains("-c http.followRedirects=false"),
                "{line}"
            );
        }
    }
    // git never saw a spelling: only the address that was checked.
    for line in fx.git_calls() {
        if line.contains(&format!(":{port}/")) && !line.contains("https://") {
            assert!(
                line.contains(&format!("git://127.0.0.1:{port}/"))
                    || line.contains(&format!("git://0.0.0.0:{port}/"))
                    || line.contains(&format!("git://[::ffff:127.0.0.1]:{port}/")),
                "{line}"
            );
        }
    }
}

#[tokio::test]
async fn never_two_syncs_of_one_mirror_at_once() {
    let Some(fx) = Fx::new("busy") else { return };
    let w = fx.repo("app");
    w.commit("a", "1");
    w.publish();
    // Another process holds the mirror's lock (as a running `autogit mirror sync` would).
    std::fs::create_dir_all(&fx.opts.cache_dir).unwrap();
    let held = std::fs::File::create(fx.opts.cache_dir.join("app.lock")).unwrap();
    held.lock().unwrap();
    let before = fx.git_calls().len();
    let r = fx.sync_one("app").await;
    assert!(
        matches!(r, Err(MirrorError::Busy(ref n)) if n == "app"),
        "{r:?}"
    );
    assert_eq!(
        fx.git_calls().len(),
        before,
        "git must not run while another sync holds the lock"
    );
    held.unlock().unwrap();
    drop(held);
    let r = fx.sync_one("app").await;
    assert_eq!(synced(&r), (1, 0));
}

/// A target that holds one source's mirror (by the runs recorded in the state store) is never
/// force-pushed with another source's history: the sync is refused before anything is fetched
/// or pushed, and the target keeps its refs.
#[tokio::test]
async fn a_target_holding_another_sources_mirror_is_refused() {
    let Some(fx) = Fx::new("held") else { return };
    let store = Store::open(&fx.root.join("data/state.db")).unwrap();
    let a = fx.repo("a");
    a.commit("a", "from a");
    a.publish();
    let b = fx.repo("b");
    b.commit("b", "from b");
    b.publish();
    let r = sync_all(vec![fx.job("a")], &fx.opts, Some(&store), |_| {}).await;
    assert!(r[0].result.is_ok(), "{:?}", r[0].result);
    fx.assert_mirrored("a");
    let before = refs(&fx.dst.url("mirrors/a.git"));

    // b's source, pushed to a's target (a failed listing let another repository take its name).
    let wrong = Job {
        name: "b".into(),
        target: fx.dst.url("mirrors/a.git"),
        ..fx.job("b")
    };
    let pushes = fx.calls_with("push");
    let r = sync_all(vec![wrong], &fx.opts, Some(&store), |_| {}).await;
    let e = r[0].result.as_ref().unwrap_err();
    assert!(matches!(e, MirrorError::TargetHeld { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("holds the mirror of") && msg.contains("/a.git") && msg.contains("/b.git"),
        "{msg}"
    );
    assert_eq!(r[0].attempts, 1, "not retried");
    assert_eq!(fx.calls_with("push"), pushes, "nothing was pushed");
    assert_eq!(
        refs(&fx.dst.url("mirrors/a.git")),
        before,
        "a's mirror is intact"
    );

    // Its own target, and a's own syncs, go on.
    let r = sync_all(
        vec![fx.job("b"), fx.job("a")],
        &fx.opts,
        Some(&store),
        |_| {},
    )
    .await;
    assert!(r.iter().all(|r| r.result.is_ok()), "{r:?}");
    fx.assert_mirrored("b");
    fx.assert_mirrored("a");
}
