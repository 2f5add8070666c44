//! `bench mirror [--repos N]`: autogit's git mirroring against plain git loops, over loopback.
//!
//! N generated repositories (default 200; three commits, two branches and a tag each) are served
//! by `git daemon` (receive-pack enabled), and mirrored into empty bare repositories served by a
//! second daemon. Measured, once each:
//! 1. first sync: `autogit_drivers::mirror::sync_all` (parallel = CPUs, and parallel = 1)
//!    against a sequential loop of `git clone --mirror` + `git push --mirror`;
//! 2. no-change sync: the same call again (every mirror up to date) against a sequential loop
//!    of `git fetch --prune` in the clones of 1.
//!
//! Prints the times and the ratios autogit / baseline (below 1: autogit is faster).

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

pub fn bench_mirror(n: usize) {
    let root = std::env::temp_dir().join(format!("autogit-bench-mirror-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let t = Instant::now();
    for i in 0..n {
        generate(&root.join(format!("src/r{i}.git")), i);
        for side in ["dst-a", "dst-b", "dst-loop"] {
            empty(&root.join(format!("{side}/r{i}.git")));
        }
    }
    eprintln!(
        "generated {n} repositories in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let src = Daemon::start(&root.join("src"));
    let dst_a = Daemon::start(&root.join("dst-a"));
    let dst_b = Daemon::start(&root.join("dst-b"));
    let dst_loop = Daemon::start(&root.join("dst-loop"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());

    let run = |dst: &Daemon, cache: &str, parallel: usize| -> Duration {
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
            "  autogit parallel={parallel}: {:.2}s ({up}/{n} already up to date)",
            d.as_secs_f64()
        );
        d
    };

    println!("== first sync of {n} repositories");
    let first_par = run(&dst_a, "cache-a", cpus);
    let first_seq = run(&dst_b, "cache-b", 1);
    let clones = root.join("clones");
    std::fs::create_dir_all(&clones).unwrap();
    let t = Instant::now();
    for i in 0..n {
        let c = clones.join(format!("r{i}.git"));
        git(
            &clones,
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
                &dst_loop.url(&format!("r{i}.git")),
            ],
        );
    }
    let first_loop = t.elapsed();
    eprintln!(
        "  git clone --mirror + push --mirror loop: {:.2}s",
        first_loop.as_secs_f64()
    );

    println!("== no-change sync of {n} repositories");
    let none_par = run(&dst_a, "cache-a", cpus);
    let none_seq = run(&dst_b, "cache-b", 1);
    let t = Instant::now();
    for i in 0..n {
        git(
            &clones.join(format!("r{i}.git")),
            &["fetch", "--prune", "--quiet", "origin"],
        );
    }
    let none_loop = t.elapsed();
    eprintln!("  git fetch --prune loop: {:.2}s", none_loop.as_secs_f64());

    println!("repositories: {n}, CPUs: {cpus}");
    println!(
        "first sync:     autogit {:.2}s (parallel {cpus}), {:.2}s (parallel 1); clone --mirror + push loop {:.2}s; ratio {:.2} / {:.2}",
        first_par.as_secs_f64(),
        first_seq.as_secs_f64(),
        first_loop.as_secs_f64(),
        ratio(first_par, first_loop),
        ratio(first_seq, first_loop)
    );
    println!(
        "no-change sync: autogit {:.2}s (parallel {cpus}), {:.2}s (parallel 1); fetch loop {:.2}s; ratio {:.2} / {:.2}",
        none_par.as_secs_f64(),
        none_seq.as_secs_f64(),
        none_loop.as_secs_f64(),
        ratio(none_par, none_loop),
        ratio(none_seq, none_loop)
    );
    drop((src, dst_a, dst_b, dst_loop));
    let _ = std::fs::remove_dir_all(&root);
}
