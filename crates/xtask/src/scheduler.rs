//! `bench scheduler`: the core scheduler on simulated hosts, best fit against the first-fit
//! baseline in the same run, on the same hosts and jobs (deterministic pseudo-random).
//!
//! Hosts have 1–8 GPUs of 8–80 GiB. Jobs arrive 80 per tick, need 1–4 GPUs (mostly 1) and
//! 2–70 GiB each (mostly small), and run 1–20 ticks. Each tick: arrivals are submitted, one
//! scheduling pass runs, finished jobs free their GPUs. Reported per policy: wall time spent
//! in `schedule`, ticks until every job finished (makespan), mean reserved/total VRAM while
//! jobs were waiting, mean wait in ticks, and the invariants checked every tick.

use autogit_core::compute::{Fit, GpuSlot, HostSlots, Request, Scheduler};
use autogit_core::config::Quota;
use autogit_core::units::{Bytes, Dur};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// xorshift64*: reproducible without a dependency (also `bench logs`' corpus).
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(crate) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[(self.next() % items.len() as u64) as usize]
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Job {
    req: Request,
    duration: u64,
    arrives: u64,
}

fn world(jobs: usize, hosts: usize) -> (Vec<HostSlots>, Vec<Job>) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let sizes = [8u64, 12, 16, 24, 24, 48, 80];
    let hosts: Vec<HostSlots> = (0..hosts)
        .map(|i| {
            let n = 1 + rng.next() % 8;
            let size = rng.pick(&sizes);
            HostSlots {
                topology: None,
                sharing: autogit_core::config::GpuSharing::TimeSliced,
                name: format!("h{i:03}"),
                capabilities: Vec::new(),
                gpus: (0..n as u32)
                    .map(|index| GpuSlot {
                        index,
                        total: Bytes::gib(size),
                        free: Bytes::gib(size),
                    })
                    .collect(),
                reachable: true,
            }
        })
        .collect();
    let jobs = (0..jobs)
        .map(|i| Job {
            req: Request {
                id: format!("j{i}"),
                user: format!("u{}", rng.next() % 20),
                gpus: rng.pick(&[1, 1, 1, 1, 1, 2, 2, 4]),
                vram: Bytes::gib(rng.pick(&[2, 4, 6, 8, 10, 12, 16, 20, 24, 40, 70])),
                capability: None,
                priority: rng.pick(&[0, 0, 0, 1, 2]),
                submitted_at: 0,
                gang: None,
            },
            duration: 1 + rng.next() % 20,
            arrives: (i / 80) as u64,
        })
        .collect();
    (hosts, jobs)
}

struct Outcome {
    sched_time: Duration,
    passes: u64,
    makespan: u64,
    utilisation: f64,
    mean_wait: f64,
    rejected: usize,
}

fn simulate(fit: Fit, jobs: usize, hosts: usize) -> Outcome {
    let (hosts, jobs) = world(jobs, hosts);
    let quotas: Vec<Quota> = Vec::new();
    let tick = 60u64;
    let mut s = Scheduler::new(hosts, &quotas, Dur::secs(600), u32::MAX, fit);
    let by_id: BTreeMap<String, &Job> = jobs.iter().map(|j| (j.req.id.clone(), j)).collect();
    let mut ends: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let (mut next, mut done, mut rejected) = (0usize, 0usize, 0usize);
    let (mut sched_time, mut passes) = (Duration::ZERO, 0u64);
    let (mut util_sum, mut util_n, mut wait_sum) = (0.0, 0u64, 0u64);
    let mut t = 0u64;
    while done + rejected < jobs.len() {
        while next < jobs.len() && jobs[next].arrives <= t {
            let mut r = jobs[next].req.clone();
            r.submitted_at = t * tick;
            if s.submit(r).is_err() {
                rejected += 1;
            }
            next += 1;
        }
        if let Some(ids) = ends.remove(&t) {
            for id in ids {
                s.finish(&id);
                done += 1;
            }
        }
        let start = Instant::now();
        let placed = s.schedule(t * tick);
        sched_time += start.elapsed();
        passes += 1;
        for p in placed {
            let j = by_id[&p.job];
            wait_sum += t - j.arrives;
            ends.entry(t + j.duration).or_default().push(p.job);
        }
        s.check_invariants().expect("invariants");
        if !s.queued().is_empty() {
            util_sum += s.vram_utilisation();
            util_n += 1;
        }
        t += 1;
        assert!(t < 1_000_000, "the simulation does not drain");
    }
    let ran = jobs.len() - rejected;
    Outcome {
        sched_time,
        passes,
        makespan: t,
        utilisation: if util_n == 0 {
            0.0
        } else {
            util_sum / util_n as f64
        },
        mean_wait: wait_sum as f64 / ran.max(1) as f64,
        rejected,
    }
}

pub fn bench(jobs: usize, hosts: usize) {
    println!("scheduler: {jobs} jobs on {hosts} simulated hosts (same jobs for both policies)");
    println!(
        "{:<10} {:>12} {:>8} {:>14} {:>10} {:>18} {:>10} {:>9}",
        "policy",
        "sched time",
        "passes",
        "per pass",
        "makespan",
        "VRAM use (busy)",
        "mean wait",
        "rejected"
    );
    let mut results = Vec::new();
    for (name, fit) in [("best-fit", Fit::BestFit), ("first-fit", Fit::FirstFit)] {
        let o = simulate(fit, jobs, hosts);
        println!(
            "{:<10} {:>10.1}ms {:>8} {:>12.1}µs {:>7} tk {:>17.1}% {:>7.1} tk {:>9}",
            name,
            o.sched_time.as_secs_f64() * 1e3,
            o.passes,
            o.sched_time.as_secs_f64() * 1e6 / o.passes.max(1) as f64,
            o.makespan,
            o.utilisation * 100.0,
            o.mean_wait,
            o.rejected
        );
        results.push(o);
    }
    let (b, f) = (&results[0], &results[1]);
    println!(
        "best fit vs first fit: makespan {:.3}x, VRAM use {:+.1} points, mean wait {:.3}x",
        b.makespan as f64 / f.makespan as f64,
        (b.utilisation - f.utilisation) * 100.0,
        b.mean_wait / f.mean_wait.max(f64::MIN_POSITIVE)
    );
}
