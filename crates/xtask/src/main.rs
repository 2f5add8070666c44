//! `cargo run -p xtask --release -- bench heal [--runs N]`
//! `cargo run -p xtask --release -- bench mirror [--repos N] [--parallel N] [--runs N]` (see `bench_mirror.rs`)
//! `cargo run -p xtask --release -- bench scheduler [--jobs N] [--hosts N]` (see `scheduler.rs`)
//! `cargo run -p xtask --release -- bench api [--secs N] [--connections N] [--autogit PATH]`
//! (see `bench_api.rs`)
//! `cargo run -p xtask --release -- bench logs [--lines N] [--batch N] [--fts5-only]` (see `bench_logs.rs`)
//! `cargo run -p xtask --release -- bench logs-store [--lines N] [--batch N] [--variants a,b]`
//! (see `bench_logs_store.rs`)
//! `cargo run -p xtask --release --features semantic -- bench semantic [--lines N] [--model DIR]`
//! (see `bench_semantic.rs`)
//! `cargo run -p xtask --release -- bench ingress [--secs N] [--connections N] [--rounds N]
//! [--autogit PATH] [--traefik PATH]` (see `bench_ingress.rs`)
//!
//! Measures, on the real Docker engine, in one run:
//! 1. SIGKILL of a container's process → its health endpoint answers again: `autogit daemon` (restart
//!    policy "no") against Docker's own `restart: always` on a container with the same spec
//!    (limits, ports, network, volumes, health check), killed in turn.
//! 2. A container turning unhealthy → healthy again: `autogit daemon` against an
//!    autoheal-style loop that polls `docker inspect` every 5 s and restarts unhealthy
//!    containers (what willfarrell/autoheal does by default).
//!
//! Prints each sample, the medians, and the ratio autogit / baseline (below 1: autogit is
//! faster). Timing is measured here, never asserted in tests.

mod bench_api;
mod bench_ingress;
mod bench_logs;
mod bench_logs_store;
mod bench_logs_tantivy;
mod bench_mirror;
mod bench_semantic;
mod heal_phases;
mod scheduler;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The value after `flag` in `args`, if there is one.
fn flag<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |name: &str, default: usize| {
        flag(&args, name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let path = |name: &str| flag(&args, name).map(PathBuf::from);
    match args
        .first()
        .map(String::as_str)
        .zip(args.get(1).map(String::as_str))
    {
        Some(("bench", "heal")) => bench_heal(num("--runs", 3)),
        // Interleaved rounds: --runs (default 2 here).
        Some(("bench", "mirror")) => bench_mirror::bench_mirror(
            num("--repos", 200),
            num("--runs", 2).max(1),
            flag(&args, "--parallel").and_then(|v| v.parse().ok()),
        ),
        Some(("bench", "scheduler")) => {
            scheduler::bench(num("--jobs", 10_000), num("--hosts", 100));
        }
        Some(("bench", "api")) => bench_api::bench_api(
            num("--secs", 10) as u64,
            num("--connections", 32),
            path("--autogit"),
        ),
        Some(("bench", "ingress")) => bench_ingress::bench_ingress(
            num("--secs", 5) as u64,
            num("--connections", 16),
            num("--rounds", 3),
            path("--autogit"),
            path("--traefik"),
        ),
        Some(("bench", "logs")) => bench_logs::bench_logs(
            num("--lines", 1_000_000) as u64,
            num("--batch", 50_000),
            args.iter().any(|a| a == "--fts5-only"),
        ),
        Some(("bench", "logs-store")) => bench_logs_store::bench_logs_store(
            num("--lines", 1_000_000) as u64,
            num("--batch", 50_000),
            flag(&args, "--variants"),
        ),
        Some(("bench", "semantic")) => {
            bench_semantic::bench_semantic(num("--lines", 200_000) as u64, path("--model"))
        }
        _ => {
            eprintln!(
                "usage: cargo run -p xtask --release -- bench heal [--runs N] | bench mirror [--repos N] [--parallel N] [--runs N] | bench scheduler [--jobs N] [--hosts N] | bench api [--secs N] [--connections N] [--autogit PATH] | bench logs [--lines N] [--batch N] [--fts5-only] | bench logs-store [--lines N] [--batch N] [--variants a,b] | bench semantic [--lines N] [--model DIR] (--features semantic) | bench ingress [--secs N] [--connections N] [--rounds N] [--autogit PATH] [--traefik PATH]"
            );
            std::process::exit(2);
        }
    }
}

fn sh(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn quiet(cmd: &str, args: &[&str]) {
    let _ = Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Waits until `GET http://127.0.0.1:{port}/-/health` answers `GitLab OK`.
fn wait_healthy(port: u16, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect_timeout(
            &([127, 0, 0, 1], port).into(),
            Duration::from_millis(200),
        ) {
            use std::io::{Read, Write};
            let _ = s.set_read_timeout(Some(Duration::from_millis(300)));
            let _ = s.write_all(b"GET /-/health HTTP/1.0\r\nHost: x\r\n\r\n");
            let mut buf = String::new();
            let _ = s.read_to_string(&mut buf);
            if buf.starts_with("HTTP/1.") && buf.contains(" 200 ") && buf.contains("GitLab OK") {
                return start.elapsed();
            }
        }
        assert!(start.elapsed() < limit, "not healthy within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGKILL of the container's main process from the host, as a crash or the OOM killer would
/// do it. (`docker kill` is a manual stop for the engine, and `restart: always` then does
/// not restart the container.)
fn crash(container: &str) {
    let pid = sh("docker", &["inspect", "-f", "{{.State.Pid}}", container]);
    sh("kill", &["-KILL", &pid]);
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

struct Autogit {
    dir: PathBuf,
    bin: PathBuf,
    daemon: Option<Child>,
}

impl Autogit {
    fn start(name: &str, version: &str, port: u16) -> Autogit {
        let bin = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("autogit")))
            .filter(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("target/release/autogit"));
        assert!(
            bin.exists(),
            "build autogit first: cargo build --release -p autogit"
        );
        let dir = std::env::temp_dir().join(format!("autogit-bench-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("autogit.yml"),
            format!("gitlab:\n  image: autogit-test/gitlab-ce\n  version: \"{version}\"\n  ports: {{http: {port}, https: {}, ssh: {}}}\n  resources: {{preset: minimal, cpu: 0.5, memory: 64M}}\n  start_period: 5s\nrunners: {{}}\nhealth:\n  check_interval: 1s\n  timeout: 1s\n  failure_threshold: 1\n  reconcile_interval: 30s\n  restart_budget: {{max: 100, window: 1h}}\n  backoff: {{initial: 1s, max: 1s}}\nplatform:\n  project: bench-{name}\n", port + 1, port + 2),
        )
        .unwrap();
        let mut a = Autogit {
            dir,
            bin,
            daemon: None,
        };
        // No GitLab API to bootstrap (a stand-in image), and never a systemd unit (as root,
        // `install` would write /etc/systemd/system/autogit.service).
        let st = a
            .cmd(&[
                "install",
                "--wait",
                "60s",
                "--no-bootstrap",
                "--no-service",
                "-q",
            ])
            .status()
            .unwrap();
        assert!(st.success(), "autogit install");
        a.daemon = Some(
            a.cmd(&["daemon", "-q"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        std::thread::sleep(Duration::from_millis(500));
        a
    }
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.current_dir(&self.dir)
            .args(args)
            .arg("--data-dir")
            .arg(self.dir.join("data"));
        c
    }
}

impl Drop for Autogit {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            quiet("kill", &["-TERM", &d.id().to_string()]);
            let _ = d.wait();
        }
        let _ = self
            .cmd(&["down", "--volumes", "--yes", "-q"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A container set up as autogit sets up its GitLab (the bench's config): CPU and memory
/// limits, three published ports, a network of its own and three named volumes, the same
/// health check; only the restart policy differs. Like for like with autogit's container.
fn run_plain(name: &str, image: &str, port: u16, restart: &str) {
    quiet("docker", &["rm", "-f", name]);
    quiet("docker", &["network", "rm", name]);
    sh("docker", &["network", "create", name]);
    let ports = [
        format!("127.0.0.1:{port}:80"),
        format!("127.0.0.1:{}:443", port + 1),
        format!("127.0.0.1:{}:22", port + 2),
    ];
    let volumes = [
        format!("{name}-config:/etc/gitlab"),
        format!("{name}-logs:/var/log/gitlab"),
        format!("{name}-data:/var/opt/gitlab"),
    ];
    let mut args = vec![
        "run",
        "-d",
        "--name",
        name,
        "--restart",
        restart,
        "--network",
        name,
        "--cpus",
        "0.5",
        "--memory",
        "64m",
    ];
    for p in &ports {
        args.extend(["-p", p.as_str()]);
    }
    for v in &volumes {
        args.extend(["-v", v.as_str()]);
    }
    args.extend([
        "--health-cmd",
        "/opt/gitlab/bin/gitlab-healthcheck",
        "--health-interval",
        "1s",
        "--health-retries",
        "1",
        "--health-timeout",
        "1s",
        "--health-start-period",
        "5s",
        image,
    ]);
    sh("docker", &args);
    wait_healthy(port, Duration::from_secs(30));
}

fn remove_plain(name: &str) {
    quiet("docker", &["rm", "-f", "-v", name]);
    quiet("docker", &["network", "rm", name]);
    for v in ["config", "logs", "data"] {
        quiet("docker", &["volume", "rm", &format!("{name}-{v}")]);
    }
}

/// When the engine reported `container` unhealthy: `docker events` read in a thread, each
/// `health_status: unhealthy` of the container stamped on arrival.
struct HealthEvents {
    child: Child,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Instant>>>,
}

impl HealthEvents {
    fn watch(container: &str) -> HealthEvents {
        use std::io::BufRead as _;
        let mut child = Command::new("docker")
            .args([
                "events",
                "--filter",
                &format!("container={container}"),
                "--filter",
                "event=health_status",
                "--format",
                "{{.Status}}",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker events");
        let out = child.stdout.take().unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let s2 = seen.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if line.contains("unhealthy") {
                    s2.lock().unwrap().push(Instant::now());
                }
            }
        });
        // `docker events` subscribes asynchronously: give it a moment.
        std::thread::sleep(Duration::from_millis(300));
        HealthEvents { child, seen }
    }

    /// The first unhealthy report after `t`.
    fn detected_after(&self, t: Instant) -> Option<Duration> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .find(|at| **at >= t)
            .map(|at| at.duration_since(t))
    }
}

impl Drop for HealthEvents {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bench_heal(runs: usize) {
    let image =
        autogit_drivers::testing::fake_gitlab_image("0.2.0", &[]).unwrap_or_else(|e| panic!("{e}"));
    // For the unhealthy case the server must die while the container lives, so that a restart
    // fixes it: httpd in the background, a shell as PID 1.
    let bg = autogit_drivers::testing::fake_gitlab_image(
        "0.2.1",
        &[
            "/bin/sh",
            "-c",
            "httpd -p 80 -h /www; while true; do sleep 1; done",
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // Docker's restart policy backs off when a container ran less than 10 s; space the kills.
    let spacing = Duration::from_secs(11);

    // Both run at once and are killed in turn (A B A B), so drift hits both alike.
    println!("== SIGKILL -> health endpoint answers again ({runs} runs, interleaved)");
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let (mut ours_phases, mut theirs_phases) = (Vec::new(), Vec::new());
    {
        let a = Autogit::start("kill", "0.2.0", 33080);
        run_plain("bench-docker-always", &image, 33180, "always");
        let engine = heal_phases::EngineLog::watch();
        // Timed twice: `Instant` for the total, the wall clock to place the engine's events.
        let timed = |name: &str, port: u16, phases: &mut Vec<heal_phases::Phases>| {
            let id = sh("docker", &["inspect", "-f", "{{.Id}}", name]);
            let (t, wall) = (Instant::now(), std::time::SystemTime::now());
            crash(name);
            let _ = wait_healthy(port, Duration::from_secs(60));
            let total = t.elapsed();
            let healthy = wall + total;
            // The last events may still be on their way to the reader.
            std::thread::sleep(Duration::from_millis(200));
            match engine.phases(&id, wall, healthy) {
                Some(p) => phases.push(p),
                None => println!("  ({name}: an engine event was not seen; no breakdown)"),
            }
            total
        };
        for i in 0..runs {
            std::thread::sleep(spacing);
            ours.push(timed("bench-kill-gitlab", 33080, &mut ours_phases));
            theirs.push(timed("bench-docker-always", 33180, &mut theirs_phases));
            println!(
                "  run {i}: autogit daemon {:?}, restart: always {:?}",
                ours[i], theirs[i]
            );
        }
        drop(engine);
        drop(a);
        remove_plain("bench-docker-always");
    }
    heal_phases::print(&ours_phases, &theirs_phases);
    let (m1, m2) = (median(&mut ours), median(&mut theirs));
    println!(
        "  median: autogit {m1:?}, docker restart=always on the same container spec {m2:?}, ratio autogit/docker = {:.2}",
        m1.as_secs_f64() / m2.as_secs_f64()
    );
    // The floor for any healer: `docker start` of the stopped container until its health
    // endpoint answers, with nothing to notice or decide.
    let mut floor = Vec::new();
    run_plain("bench-start-floor", &image, 33480, "no");
    for i in 0..runs {
        quiet("docker", &["stop", "-t", "0", "bench-start-floor"]);
        let t = Instant::now();
        sh("docker", &["start", "bench-start-floor"]);
        let _ = wait_healthy(33480, Duration::from_secs(60));
        floor.push(t.elapsed());
        println!("  run {i}: docker start -> health answers {:?}", floor[i]);
    }
    remove_plain("bench-start-floor");
    let m3 = median(&mut floor);
    println!(
        "  median: docker start alone {m3:?}: autogit spends {:?} noticing and deciding, restart: always {:?}",
        m1.saturating_sub(m3),
        m2.saturating_sub(m3)
    );

    println!("== unhealthy -> healthy again ({runs} runs, interleaved)");
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let (mut ours_detect, mut theirs_detect) = (Vec::new(), Vec::new());
    {
        let a = Autogit::start("sick", "0.2.1", 33280);
        run_plain("bench-autoheal", &bg, 33380, "no");
        let ev_a = HealthEvents::watch("bench-sick-gitlab");
        let ev_b = HealthEvents::watch("bench-autoheal");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = stop.clone();
        // The autoheal loop: every 5 s, restart containers whose health is `unhealthy`.
        let grace = autogit_core::plan::Role::Gitlab
            .stop_grace_secs()
            .to_string();
        let healer = std::thread::spawn(move || {
            while !s2.load(std::sync::atomic::Ordering::SeqCst) {
                let out = Command::new("docker")
                    .args([
                        "inspect",
                        "-f",
                        "{{.State.Health.Status}}",
                        "bench-autoheal",
                    ])
                    .output();
                if out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "unhealthy") {
                    // The same grace autogit gives GitLab, so both wait alike for a
                    // server that ignores SIGTERM (the stand-in's shell does).
                    quiet("docker", &["restart", "-t", &grace, "bench-autoheal"]);
                }
                std::thread::sleep(Duration::from_secs(5));
            }
        });
        for i in 0..runs {
            std::thread::sleep(Duration::from_secs(2));
            let t = Instant::now();
            sh("docker", &["exec", "bench-sick-gitlab", "killall", "httpd"]);
            let _ = wait_healthy(33280, Duration::from_secs(120));
            ours.push(t.elapsed());
            ours_detect.push(ev_a.detected_after(t).unwrap_or_default());
            std::thread::sleep(Duration::from_secs(2));
            let t = Instant::now();
            sh("docker", &["exec", "bench-autoheal", "killall", "httpd"]);
            let _ = wait_healthy(33380, Duration::from_secs(120));
            theirs.push(t.elapsed());
            theirs_detect.push(ev_b.detected_after(t).unwrap_or_default());
            println!(
                "  run {i}: autogit daemon {:?} (engine saw it unhealthy after {:?}), autoheal 5s loop {:?} (after {:?})",
                ours[i], ours_detect[i], theirs[i], theirs_detect[i]
            );
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = healer.join();
        drop(a);
        remove_plain("bench-autoheal");
    }
    let (m1, m2) = (median(&mut ours), median(&mut theirs));
    let (d1, d2) = (median(&mut ours_detect), median(&mut theirs_detect));
    println!(
        "  median: autogit {m1:?} (detection {d1:?}, repair {:?}), autoheal-style 5s loop {m2:?} (detection {d2:?}, repair {:?}), ratio autogit/autoheal = {:.2}",
        m1.saturating_sub(d1),
        m2.saturating_sub(d2),
        m1.as_secs_f64() / m2.as_secs_f64()
    );
    let _ = Path::new(".");
}
