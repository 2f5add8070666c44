//! `bench mirror [--repos N]`: autogit's git mirroring against plain git loops, over loopback.
//!
//! N generated repositories (default 200; three commits, two branches and a tag each) are served
//! by `git daemon` (receive-pack enabled), and mirrored into empty bare repositories served by
//! other daemons. Both sides run at the same parallelism (`--parallel`, default autogit's) and
//! do the same work, in interleaved rounds ([`bench_mirror`]). A third loop runs autogit's own
//! two git commands of a first sync, so that the cost of its options and of its own work
//! around them show apart.
//!
//! Prints the medians and the ratios autogit / baseline (below 1: autogit is faster).

use autogit_drivers::mirror::{Job, Options, Outcome, sync_all};
use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Daemon(Child, u16);

impl Daemon {
    fn start(base: &Path) -> Daemon {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let exec = git(Path::new("/"), &["--exec-path"]);
        let child = Command::new(Path::new(exec.trim()).join("git-daemon"))
            .args([
                "--export-all",
                "--enable=receive-pack",
                "--reuseaddr",
                &format!("--base-path={}", base.display()),
                "--listen=127.0.0.1",
                &format!("--port={port}"),
                "--max-connections=0",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "git daemon did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Daemon(child, port)
    }

    fn url(&self, path: &str) -> String {
        format!("git://127.0.0.1:{}/{path}", self.1)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A bare repository with three commits on main, a branch and an annotated tag, in one
/// `git fast-import`.
fn generate(path: &Path, i: usize) {
    std::fs::create_dir_all(path).unwrap();
    git(
        path,
        &["init", "--bare", "--quiet", "--initial-branch=main"],
    );
    let mut stream = String::new();
    for c in 1..=3 {
        let body = format!("repo {i} commit {c}\n{}\n", "x".repeat(200 * c));
        stream.push_str(&format!(
            "commit refs/heads/main\nmark :{c}\ncommitter b <b@example.org> {} +0000\ndata 9\ncommit {c}\n{}M 644 inline file{c}.txt\ndata {}\n{body}\n",
            1_700_000_000 + c,
            if c > 1 { format!("from :{}\n", c - 1) } else { String::new() },
            body.len()
        ));
    }
    stream.push_str("reset refs/heads/dev\nfrom :2\n\ntag v1\nfrom :3\ntagger b <b@example.org> 1700000010 +0000\ndata 3\nv1\n");
    let mut child = Command::new("git")
        .current_dir(path)
        .args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stream.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
}

fn empty(path: &Path) {
    std::fs::create_dir_all(path).unwrap();
    git(path, &["init", "--bare", "--quiet"]);
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

/// Runs `work(i)` for every `i < n` on `parallel` threads (an index shared by the workers),
/// as `xargs -P` would.
fn parallel_loop(n: usize, parallel: usize, work: impl Fn(usize) + Sync) -> Duration {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..parallel.max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if i >= n {
                        break;
                    }
                    work(i);
                }
            });
        }
    });
    t.elapsed()
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

/// Like for like: autogit and a plain git loop at the same parallelism, both contacting both
/// sides, interleaved A B A B so drift (other load, page cache) hits both alike.
///
/// - first sync: autogit (`sync_all`, a fresh cache, empty targets) against `git clone
///   --mirror` + `git push --mirror` per repository;
/// - no-change sync: autogit again against `git fetch --prune` + `git push --mirror` in the
///   clones (the loop has no way to know nothing changed without asking both sides).
pub fn bench_mirror(n: usize, rounds: usize, parallel: Option<usize>) {
    let root = std::env::temp_dir().join(format!("autogit-bench-mirror-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let defaults = Options::new(root.join("unused"));
    let parallel = parallel.unwrap_or(defaults.parallel);
    let t = Instant::now();
    for i in 0..n {
        generate(&root.join(format!("src/r{i}.git")), i);
        for r in 0..rounds {
            for side in ["dst-autogit", "dst-loop", "dst-same"] {
                empty(&root.join(format!("{side}-{r}/r{i}.git")));
            }
            // The third side's caches exist beforehand, as autogit creates its own in-process.
            empty(&root.join(format!("same-{r}/r{i}.git")));
        }
    }
    eprintln!(
        "generated {n} repositories in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let src = Daemon::start(&root.join("src"));
    let dst: Vec<(Daemon, Daemon, Daemon)> = (0..rounds)
        .map(|r| {
            (
                Daemon::start(&root.join(format!("dst-autogit-{r}"))),
                Daemon::start(&root.join(format!("dst-loop-{r}"))),
                Daemon::start(&root.join(format!("dst-same-{r}"))),
            )
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    let autogit = |dst: &Daemon, cache: &str| -> Duration {
        let jobs: Vec<Job> = (0..n)
            .map(|i| Job {
                name: format!("r{i}"),
                source: src.url(&format!("r{i}.git")),
                target: dst.url(&format!("r{i}.git")),
                source_token: None,
                target_token: None,
            })
            .collect();
        let mut opts = Options::new(root.join(cache));
        opts.parallel = parallel;
        opts.retries = 0;
        opts.allow_private = true; // git daemon on loopback
        let t = Instant::now();
        let reports = rt.block_on(sync_all(jobs, &opts, None, |_| {}));
        let d = t.elapsed();
        let failed: Vec<_> = reports.iter().filter(|r| r.result.is_err()).collect();
        assert!(failed.is_empty(), "{failed:?}");
        let up = reports
            .iter()
            .filter(|r| matches!(r.result, Ok(Outcome::UpToDate)))
            .count();
        eprintln!(
            "  autogit:  {:.2}s ({up}/{n} already up to date)",
            d.as_secs_f64()
        );
        d
    };
    let clone_push = |dst: &Daemon, clones: &Path| -> Duration {
        std::fs::create_dir_all(clones).unwrap();
        let d = parallel_loop(n, parallel, |i| {
            let c = clones.join(format!("r{i}.git"));
            git(
                clones,
                &[
                    "clone",
                    "--mirror",
                    "--quiet",
                    &src.url(&format!("r{i}.git")),
                    c.to_str().unwrap(),
                ],
            );
            git(
                &c,
                &[
                    "push",
                    "--mirror",
                    "--quiet",
                    &dst.url(&format!("r{i}.git")),
                ],
            );
        });
        eprintln!("  git loop: {:.2}s", d.as_secs_f64());
        d
    };
    // autogit's own two git commands of a first sync (an atomic, pruning fetch of branches
    // and tags without maintenance, then an atomic, pruning push with its porcelain report),
    // run by the same loop: what the options cost, apart from autogit's own work.
    let same_work = |dst: &Daemon, caches: &Path| -> Duration {
        let d = parallel_loop(n, parallel, |i| {
            let c = caches.join(format!("r{i}.git"));
            git(
                &c,
                &[
                    "-c",
                    "maintenance.auto=false",
                    "fetch",
                    "--atomic",
                    "--prune",
                    "--no-tags",
                    "--update-head-ok",
                    "--no-write-fetch-head",
                    "--quiet",
                    "--",
                    &src.url(&format!("r{i}.git")),
                    "+refs/heads/*:refs/heads/*",
                    "+refs/tags/*:refs/tags/*",
                ],
            );
            git(
                &c,
                &[
                    "push",
                    "--atomic",
                    "--prune",
                    "--porcelain",
                    "--",
                    &dst.url(&format!("r{i}.git")),
                    "+refs/heads/*:refs/heads/*",
                    "+refs/tags/*:refs/tags/*",
                ],
            );
        });
        eprintln!("  same git commands loop: {:.2}s", d.as_secs_f64());
        d
    };
    let fetch_push = |dst: &Daemon, clones: &Path| -> Duration {
        let d = parallel_loop(n, parallel, |i| {
            let c = clones.join(format!("r{i}.git"));
            git(&c, &["fetch", "--prune", "--quiet", "origin"]);
            git(
                &c,
                &[
                    "push",
                    "--mirror",
                    "--quiet",
                    &dst.url(&format!("r{i}.git")),
                ],
            );
        });
        eprintln!("  git loop: {:.2}s", d.as_secs_f64());
        d
    };

    let (mut first_a, mut first_b, mut none_a, mut none_b) = (vec![], vec![], vec![], vec![]);
    let mut first_c = vec![];
    for (r, (dst_a, dst_b, dst_c)) in dst.iter().enumerate() {
        let clones = root.join(format!("clones-{r}"));
        eprintln!("round {r}: first sync");
        first_a.push(autogit(dst_a, &format!("cache-{r}")));
        first_b.push(clone_push(dst_b, &clones));
        first_c.push(same_work(dst_c, &root.join(format!("same-{r}"))));
        eprintln!("round {r}: no-change sync");
        none_a.push(autogit(dst_a, &format!("cache-{r}")));
        none_b.push(fetch_push(dst_b, &clones));
    }
    let (fa, fb, na, nb) = (
        median(&first_a),
        median(&first_b),
        median(&none_a),
        median(&none_b),
    );
    println!(
        "repositories: {n}, parallel: {parallel} (both sides), CPUs: {cpus}, rounds: {rounds} (A B A B)"
    );
    println!(
        "first sync:     autogit {:.2}s; clone --mirror + push --mirror loop {:.2}s; ratio {:.2}",
        fa.as_secs_f64(),
        fb.as_secs_f64(),
        ratio(fa, fb)
    );
    let fc = median(&first_c);
    println!(
        "first sync:     the loop running autogit's two git commands {:.2}s; autogit/that {:.2}, that/clone+push {:.2}",
        fc.as_secs_f64(),
        ratio(fa, fc),
        ratio(fc, fb)
    );
    println!(
        "no-change sync: autogit {:.2}s; fetch --prune + push --mirror loop {:.2}s; ratio {:.2}",
        na.as_secs_f64(),
        nb.as_secs_f64(),
        ratio(na, nb)
    );
    drop((src, dst));
    let _ = std::fs::remove_dir_all(&root);
}
