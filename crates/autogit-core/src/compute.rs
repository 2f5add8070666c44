//! The compute scheduler: where GPU jobs run. Pure: the caller passes hosts (from
//! `runner health` inventories and the runner configuration), quotas, jobs and the time, and
//! gets placements back.
//!
//! - **Placement** needs the capability (if the job names one), `gpus` distinct GPUs on one
//!   reachable host, each with `vram` available, and the user's quota (GPUs and VRAM held at
//!   once). Best fit: the host and GPUs that leave the least VRAM over, so large GPUs stay
//!   free for large jobs ([`Fit::FirstFit`] is the baseline `xtask bench scheduler` compares).
//! - **Queue:** highest effective priority first: `priority` plus one per `aging` interval
//!   waited, then submission order. Jobs that do not fit are passed over (backfill), except a
//!   job that has waited four aging intervals and would fit the reachable hosts when empty: it
//!   holds the jobs behind it until capacity frees for it, so no job starves.
//! - **Hosts going away:** [`Scheduler::host_down`] puts that host's jobs back in the queue
//!   (keeping their submission time), to be placed elsewhere.
//!
//! **Invariant:** VRAM reserved on a GPU never exceeds its total, and what a user holds never
//! exceeds the quota (property-tested, with every job eventually running).

use crate::config::{Capability, GpuSharing, Quota};
use crate::topology::{Topology, best_set};
use crate::units::{Bytes, Dur};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A compute job as the user submitted it (stored as JSON in the state database).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    pub image: String,
    #[serde(default)]
    pub command: Vec<String>,
    pub gpus: u32,
    /// VRAM needed on each GPU.
    pub vram: Bytes,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capability: Option<Capability>,
    #[serde(default)]
    pub priority: i32,
    /// What happens when its lease expires while its host is away; `None`: the default for
    /// its kind ([`crate::lease::OnLost::default_for`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_lost: Option<crate::lease::OnLost>,
    /// An inference job's service (port and health endpoint): it is kept running, health
    /// checked and repaired (`core::jobkind`). Only for `inference` jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<crate::jobkind::ServiceSpec>,
    /// Seconds it may run before it is stopped and failed; `None`: its kind's default, 0: no
    /// limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    /// Its part of a job spread over several hosts (`compute run --hosts N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gang: Option<Gang>,
}

impl JobSpec {
    /// Its policy for a lost lease (its own, else its kind's default).
    pub fn on_lost(&self) -> crate::lease::OnLost {
        self.on_lost
            .unwrap_or_else(|| crate::lease::OnLost::default_for(self.capability))
    }

    /// Its kind's defaults (`core::jobkind`).
    pub fn defaults(&self) -> crate::jobkind::KindDefaults {
        crate::jobkind::defaults(self.capability)
    }

    /// Seconds it may run (its own limit, else its kind's); `None`: no limit.
    pub fn time_limit(&self) -> Option<u64> {
        match self.timeout {
            Some(0) => None,
            Some(t) => Some(t),
            None => self.defaults().timeout,
        }
    }

    /// Whether it is a long-lived service (an `inference` job with a port), repaired by the
    /// lifecycle policy rather than ended by its exit.
    pub fn service(&self) -> Option<&crate::jobkind::ServiceSpec> {
        self.service
            .as_ref()
            .filter(|_| self.defaults().restart == crate::jobkind::Restart::Service)
    }

    /// Refuses a service on a job that is not `inference`, and a bad service.
    pub fn check(&self) -> Result<(), String> {
        if let Some(s) = &self.service {
            if self.capability != Some(Capability::Inference) {
                return Err(
                    "--port makes the job a service: only inference jobs are services (--capability inference)"
                        .into(),
                );
            }
            s.check()?;
        }
        Ok(())
    }
}

/// A job the scheduler knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub id: String,
    pub user: String,
    pub gpus: u32,
    pub vram: Bytes,
    pub capability: Option<Capability>,
    pub priority: i32,
    /// Unix seconds.
    pub submitted_at: u64,
    /// One part of a job spread over several hosts: placed with every other part of its
    /// gang in the same pass, each on a host of its own, or not at all.
    pub gang: Option<Gang>,
}

impl Request {
    /// How many hosts it needs at once: its gang's size, else 1.
    pub fn hosts(&self) -> u32 {
        self.gang.as_ref().map_or(1, |g| g.size.max(1))
    }
}

/// A job spread over `size` hosts (`compute run --hosts N`): its parts are jobs of their own
/// (one per host, each with its own GPUs and lease) that share the gang's `id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gang {
    pub id: String,
    /// This part's place in the gang, 0 to `size - 1`.
    pub rank: u32,
    pub size: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuSlot {
    pub index: u32,
    pub total: Bytes,
    /// What the host reported free (foreign processes included).
    pub free: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostSlots {
    pub name: String,
    pub capabilities: Vec<Capability>,
    pub gpus: Vec<GpuSlot>,
    pub reachable: bool,
    /// The links between its GPUs (`nvidia-smi topo -m`), if known: a multi-GPU job gets the
    /// best-connected set (NVLink first).
    pub topology: Option<Topology>,
    /// How jobs share its GPUs (`runners.gpu[].sharing`).
    pub sharing: GpuSharing,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Placement {
    pub job: String,
    pub host: String,
    pub gpus: Vec<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fit {
    BestFit,
    FirstFit,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("the queue is full ({limit} jobs; compute.queue_limit)")]
    QueueFull { limit: u32 },
    #[error("no configured host can ever run it: {0}")]
    NeverFits(String),
    #[error("it needs more than {user}'s quota ({0})", user = .1)]
    OverQuota(String, String),
    #[error("job {0} is already known")]
    Duplicate(String),
}

#[derive(Clone, Debug)]
struct GpuState {
    index: u32,
    total: u64,
    free: u64,
    reserved: u64,
    /// autogit's jobs on it now.
    jobs: u32,
}

impl GpuState {
    fn available(&self) -> u64 {
        (self.total - self.reserved).min(self.free)
    }
}

#[derive(Clone, Debug)]
struct HostState {
    name: String,
    caps: Vec<Capability>,
    reachable: bool,
    gpus: Vec<GpuState>,
    topology: Option<Topology>,
    sharing: GpuSharing,
}

impl HostState {
    /// Whether GPU position `i` can take one more job needing `vram`: enough VRAM, and on an
    /// exclusive (or MIG-partitioned) host no job of autogit's on it already.
    fn takes(&self, i: usize, vram: u64) -> bool {
        let g = &self.gpus[i];
        g.available() >= vram && (self.sharing == GpuSharing::TimeSliced || g.jobs == 0)
    }
}

/// The scheduler's view: hosts, what runs where, the queue, who holds what.
#[derive(Clone, Debug)]
pub struct Scheduler {
    hosts: Vec<HostState>,
    quotas: BTreeMap<String, (u32, u64)>,
    usage: BTreeMap<String, (u32, u64)>,
    queue: Vec<Request>,
    running: BTreeMap<String, (Request, Placement)>,
    aging: u64,
    queue_limit: u32,
    fit: Fit,
}

/// Aging intervals after which an unplaceable job stops others from passing it.
const STARVATION_STEPS: u64 = 4;

impl Scheduler {
    pub fn new(
        mut hosts: Vec<HostSlots>,
        quotas: &[Quota],
        aging: Dur,
        queue_limit: u32,
        fit: Fit,
    ) -> Self {
        hosts.sort_by(|a, b| a.name.cmp(&b.name));
        Self {
            hosts: hosts
                .into_iter()
                .map(|h| HostState {
                    name: h.name,
                    caps: h.capabilities,
                    reachable: h.reachable,
                    topology: h.topology,
                    sharing: h.sharing,
                    gpus: h
                        .gpus
                        .into_iter()
                        .map(|g| GpuState {
                            index: g.index,
                            total: g.total.0,
                            free: g.free.0.min(g.total.0),
                            reserved: 0,
                            jobs: 0,
                        })
                        .collect(),
                })
                .collect(),
            quotas: quotas
                .iter()
                .map(|q| (q.user.clone(), (q.gpus, q.vram.0)))
                .collect(),
            usage: BTreeMap::new(),
            queue: Vec::new(),
            running: BTreeMap::new(),
            aging: aging.as_secs(),
            queue_limit,
            fit,
        }
    }

    pub fn queued(&self) -> &[Request] {
        &self.queue
    }

    pub fn running(&self) -> impl Iterator<Item = &Placement> {
        self.running.values().map(|(_, p)| p)
    }

    /// `priority` plus one per aging interval waited.
    pub fn effective_priority(&self, r: &Request, now: u64) -> i64 {
        let steps = now
            .saturating_sub(r.submitted_at)
            .checked_div(self.aging)
            .unwrap_or(0);
        i64::from(r.priority) + steps.min(i64::MAX as u64 / 2) as i64
    }

    /// Queues a job; refuses what could never run (no host has the capability and enough
    /// GPUs of enough VRAM, or it is larger than the user's quota) and a full queue.
    pub fn submit(&mut self, r: Request) -> Result<(), Rejected> {
        if self.queue.iter().any(|q| q.id == r.id) || self.running.contains_key(&r.id) {
            return Err(Rejected::Duplicate(r.id));
        }
        if self.queue.len() >= self.queue_limit as usize {
            return Err(Rejected::QueueFull {
                limit: self.queue_limit,
            });
        }
        if let Some(&(gpus, vram)) = self.quotas.get(&r.user) {
            // A gang's parts count together: it runs whole or not at all.
            let need = u64::from(r.gpus * r.hosts()).saturating_mul(r.vram.0);
            if r.gpus * r.hosts() > gpus || need > vram {
                return Err(Rejected::OverQuota(
                    format!("{gpus} GPUs, {} VRAM", Bytes(vram)),
                    r.user.clone(),
                ));
            }
        }
        let hosts_needed = r.hosts() as usize;
        if self.hosts.iter().filter(|h| fits_empty(h, &r)).count() < hosts_needed {
            let what = match r.capability {
                Some(c) => format!("{c:?}").to_ascii_lowercase() + " with ",
                None => String::new(),
            };
            let spread = if hosts_needed > 1 {
                format!(" on each of {hosts_needed} hosts")
            } else {
                String::new()
            };
            return Err(Rejected::NeverFits(format!(
                "{what}{} GPU(s) of {} each{spread}",
                r.gpus, r.vram
            )));
        }
        self.queue.push(r);
        Ok(())
    }

    /// Records a job that already runs (from the state database): its VRAM and quota count
    /// as taken. The hosts' `free` figures already show its memory, so only the reservation
    /// is added (the scheduler takes the smaller of the two; never over-commits).
    pub fn adopt(&mut self, r: Request, p: Placement) {
        if let Some(h) = self.hosts.iter_mut().find(|h| h.name == p.host) {
            for g in h.gpus.iter_mut().filter(|g| p.gpus.contains(&g.index)) {
                g.reserved = (g.reserved + r.vram.0).min(g.total);
                g.jobs += 1;
            }
        }
        let u = self.usage.entry(r.user.clone()).or_default();
        u.0 += r.gpus;
        u.1 += u64::from(r.gpus) * r.vram.0;
        self.running.insert(r.id.clone(), (r, p));
    }

    /// Places what can run now, in queue order; returns the new placements.
    pub fn schedule(&mut self, now: u64) -> Vec<Placement> {
        let mut order: Vec<Request> = std::mem::take(&mut self.queue);
        order.sort_by(|a, b| {
            self.effective_priority(b, now)
                .cmp(&self.effective_priority(a, now))
                .then(a.submitted_at.cmp(&b.submitted_at))
                .then(a.id.cmp(&b.id))
        });
        let mut placed = Vec::new();
        let mut blocked = false;
        let mut order = std::collections::VecDeque::from(order);
        while let Some(r) = order.pop_front() {
            // A gang goes as one, when its first part comes up: every queued part of it.
            let parts: Vec<Request> = match &r.gang {
                Some(g) => {
                    let (mut mine, rest): (Vec<Request>, Vec<Request>) = std::mem::take(&mut order)
                        .into_iter()
                        .partition(|o| o.gang.as_ref().is_some_and(|og| og.id == g.id));
                    order = rest.into();
                    mine.insert(0, r);
                    mine.sort_by_key(|p| p.gang.as_ref().map_or(0, |g| g.rank));
                    mine
                }
                None => vec![r],
            };
            // A gang with a part still running waits: the compute controller brings its parts
            // back together. (Parts that ended are not waited for.)
            let complete = parts[0].gang.as_ref().is_none_or(|g| {
                !self
                    .running
                    .values()
                    .any(|(o, _)| o.gang.as_ref().is_some_and(|og| og.id == g.id))
            });
            if blocked || !complete {
                self.queue.extend(parts);
                continue;
            }
            match self.place_all(&parts) {
                Some(ps) => {
                    for (r, p) in parts.into_iter().zip(ps) {
                        placed.push(p.clone());
                        self.running.insert(r.id.clone(), (r, p));
                    }
                }
                None => {
                    let r = &parts[0];
                    let starving = self.aging > 0
                        && now.saturating_sub(r.submitted_at) >= self.aging * STARVATION_STEPS;
                    let fit_empty = self
                        .hosts
                        .iter()
                        .filter(|h| h.reachable && fits_empty(h, r))
                        .count();
                    if starving && fit_empty >= parts.len() {
                        blocked = true;
                    }
                    self.queue.extend(parts);
                }
            }
        }
        placed
    }

    /// Places every one of `parts` (one job, or a gang's parts) each on a host of its own
    /// when there are several, within quota, or none of them: what was reserved for the first
    /// parts is released when a later one does not fit (no partial starts).
    fn place_all(&mut self, parts: &[Request]) -> Option<Vec<Placement>> {
        // (host index, placement) of the parts placed so far.
        let mut done: Vec<(usize, Placement)> = Vec::new();
        for r in parts {
            let avoid: Vec<usize> = done.iter().map(|(hi, _)| *hi).collect();
            let found = if self.within_quota(r) {
                self.find(r, &avoid)
            } else {
                None
            };
            match found {
                Some((hi, gpus)) => {
                    let p = self.apply(r, hi, gpus);
                    done.push((hi, p));
                }
                None => {
                    for (r, (_, p)) in parts.iter().zip(&done) {
                        self.release(r, p);
                    }
                    return None;
                }
            }
        }
        Some(done.into_iter().map(|(_, p)| p).collect())
    }

    /// A job ended: its VRAM and quota are free again. False if it was not running.
    pub fn finish(&mut self, job: &str) -> bool {
        let Some((r, p)) = self.running.remove(job) else {
            return false;
        };
        self.release(&r, &p);
        true
    }

    /// The host is unreachable: nothing more goes there, and its running jobs go back to the
    /// queue (their ids are returned) to be placed elsewhere, each with the other parts of its
    /// gang.
    pub fn host_down(&mut self, host: &str) -> Vec<String> {
        if let Some(h) = self.hosts.iter_mut().find(|h| h.name == host) {
            h.reachable = false;
        }
        // With every running part of the gangs it had a part of: a gang runs whole or not.
        let gangs: Vec<String> = self
            .running
            .values()
            .filter(|(_, p)| p.host == host)
            .filter_map(|(r, _)| r.gang.as_ref().map(|g| g.id.clone()))
            .collect();
        let ids: Vec<String> = self
            .running
            .iter()
            .filter(|(_, (r, p))| {
                p.host == host || r.gang.as_ref().is_some_and(|g| gangs.contains(&g.id))
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in &ids {
            if let Some((r, p)) = self.running.remove(id) {
                self.release(&r, &p);
                self.queue.push(r);
            }
        }
        ids
    }

    pub fn host_up(&mut self, host: &str) {
        if let Some(h) = self.hosts.iter_mut().find(|h| h.name == host) {
            h.reachable = true;
        }
    }

    fn within_quota(&self, r: &Request) -> bool {
        let Some(&(gpus, vram)) = self.quotas.get(&r.user) else {
            return true;
        };
        let (ug, uv) = self.usage.get(&r.user).copied().unwrap_or_default();
        ug + r.gpus <= gpus && uv + u64::from(r.gpus) * r.vram.0 <= vram
    }

    /// (host index, GPU positions on that host) for `r`, by the configured fit, on none of
    /// the hosts `avoid` (a gang's other parts).
    fn find(&self, r: &Request, avoid: &[usize]) -> Option<(usize, Vec<usize>)> {
        // (score: the set's slowest link, VRAM left over, GPU sizes, host position), host,
        // GPU positions.
        type Choice = ((u64, u64, u64, usize), usize, Vec<usize>);
        let mut best: Option<Choice> = None;
        for (hi, h) in self.hosts.iter().enumerate() {
            if !h.reachable || !has_cap(h, r) || avoid.contains(&hi) {
                continue;
            }
            if r.gpus == 0 {
                // CPU-only: prefer hosts without GPUs, keeping GPU hosts for GPU work.
                let score = (h.gpus.len() as u64, 0, 0, hi);
                if best.as_ref().is_none_or(|b| score < b.0) {
                    best = Some((score, hi, Vec::new()));
                }
                if self.fit == Fit::FirstFit {
                    break;
                }
                continue;
            }
            let mut cands: Vec<usize> = (0..h.gpus.len())
                .filter(|&i| h.takes(i, r.vram.0))
                .collect();
            if cands.len() < r.gpus as usize {
                continue;
            }
            if self.fit == Fit::FirstFit {
                cands.truncate(r.gpus as usize);
                return Some((hi, cands));
            }
            let leftover = |i: usize| h.gpus[i].available() - r.vram.0;
            let chosen: Vec<usize> = match &h.topology {
                // Several GPUs with their links known: the best-connected set, then best fit.
                Some(t) if r.gpus > 1 => {
                    let by_index: Vec<u32> = cands.iter().map(|&i| h.gpus[i].index).collect();
                    let pos = |index: u32| {
                        cands
                            .iter()
                            .copied()
                            .find(|&i| h.gpus[i].index == index)
                            .unwrap_or(0)
                    };
                    let Some(set) =
                        best_set(&by_index, r.gpus as usize, t, |index| leftover(pos(index)))
                    else {
                        continue;
                    };
                    set.into_iter().map(pos).collect()
                }
                _ => {
                    cands.sort_by_key(|&i| {
                        (h.gpus[i].available(), h.gpus[i].total, h.gpus[i].index)
                    });
                    cands.truncate(r.gpus as usize);
                    cands
                }
            };
            // Hosts compare by the set's links first (unknown counts as the slowest), then
            // by the VRAM left over and the GPUs' sizes.
            let link = match &h.topology {
                Some(t) if r.gpus > 1 => {
                    t.score(&chosen.iter().map(|&i| h.gpus[i].index).collect::<Vec<_>>())
                        .0
                }
                _ if r.gpus > 1 => crate::topology::Link::Sys.rank(),
                _ => 0,
            };
            let left: u64 = chosen.iter().map(|&i| leftover(i)).sum();
            let size: u64 = chosen.iter().map(|&i| h.gpus[i].total).sum();
            let score = (u64::from(link), left, size, hi);
            if best.as_ref().is_none_or(|b| score < b.0) {
                best = Some((score, hi, chosen));
            }
        }
        best.map(|(_, hi, g)| (hi, g))
    }

    fn apply(&mut self, r: &Request, hi: usize, gpus: Vec<usize>) -> Placement {
        let h = &mut self.hosts[hi];
        let mut indexes = Vec::new();
        for i in gpus {
            let g = &mut h.gpus[i];
            g.reserved += r.vram.0;
            g.free -= r.vram.0;
            g.jobs += 1;
            indexes.push(g.index);
        }
        let u = self.usage.entry(r.user.clone()).or_default();
        u.0 += r.gpus;
        u.1 += u64::from(r.gpus) * r.vram.0;
        Placement {
            job: r.id.clone(),
            host: h.name.clone(),
            gpus: indexes,
        }
    }

    fn release(&mut self, r: &Request, p: &Placement) {
        if let Some(h) = self.hosts.iter_mut().find(|h| h.name == p.host) {
            for g in h.gpus.iter_mut().filter(|g| p.gpus.contains(&g.index)) {
                g.reserved = g.reserved.saturating_sub(r.vram.0);
                g.free = (g.free + r.vram.0).min(g.total);
                g.jobs = g.jobs.saturating_sub(1);
            }
        }
        if let Some(u) = self.usage.get_mut(&r.user) {
            u.0 = u.0.saturating_sub(r.gpus);
            u.1 = u.1.saturating_sub(u64::from(r.gpus) * r.vram.0);
        }
    }

    /// For tests and benchmarks: (reserved, total) per GPU of every host, and each user's use.
    /// Also: each GPU's reservation and job count are exactly those of the running jobs
    /// placed on it (a reservation is all of a job's GPUs or none: no partial starts), every
    /// placement has the job's number of distinct GPUs on one host, an exclusive or MIG
    /// host runs at most one job per GPU, and a gang's running parts are on distinct hosts.
    pub fn check_invariants(&self) -> Result<(), String> {
        for h in &self.hosts {
            for g in &h.gpus {
                if g.reserved > g.total {
                    return Err(format!(
                        "{} GPU {}: {} reserved of {}",
                        h.name, g.index, g.reserved, g.total
                    ));
                }
                let holders: Vec<&Request> = self
                    .running
                    .values()
                    .filter(|(_, p)| p.host == h.name && p.gpus.contains(&g.index))
                    .map(|(r, _)| r)
                    .collect();
                let vram: u64 = holders.iter().map(|r| r.vram.0).sum();
                if holders.len() as u32 != g.jobs || vram.min(g.total) != g.reserved {
                    return Err(format!(
                        "{} GPU {}: {} job(s) / {} bytes reserved, but {} running job(s) hold {} bytes",
                        h.name,
                        g.index,
                        g.jobs,
                        g.reserved,
                        holders.len(),
                        vram
                    ));
                }
                if h.sharing != GpuSharing::TimeSliced && g.jobs > 1 {
                    return Err(format!(
                        "{} GPU {}: {} jobs on a {:?} GPU",
                        h.name, g.index, g.jobs, h.sharing
                    ));
                }
            }
        }
        let mut gang_hosts: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (r, p) in self.running.values() {
            if let Some(g) = &r.gang {
                let hosts = gang_hosts.entry(g.id.as_str()).or_default();
                if hosts.contains(&p.host.as_str()) {
                    return Err(format!("gang {}: two parts on {}", g.id, p.host));
                }
                hosts.push(&p.host);
            }
            let mut distinct = p.gpus.clone();
            distinct.sort_unstable();
            distinct.dedup();
            if distinct.len() != r.gpus as usize || p.gpus.len() != r.gpus as usize {
                return Err(format!(
                    "{} wants {} GPU(s), holds {:?} on {}",
                    r.id, r.gpus, p.gpus, p.host
                ));
            }
        }
        for (user, &(gpus, vram)) in &self.quotas {
            let (ug, uv) = self.usage.get(user).copied().unwrap_or_default();
            if ug > gpus || uv > vram {
                return Err(format!(
                    "{user} holds {ug} GPUs / {uv} bytes over the quota"
                ));
            }
        }
        Ok(())
    }

    /// Reserved VRAM over total VRAM of reachable hosts (0..=1).
    pub fn vram_utilisation(&self) -> f64 {
        let (mut used, mut total) = (0u64, 0u64);
        for h in self.hosts.iter().filter(|h| h.reachable) {
            for g in &h.gpus {
                used += g.reserved;
                total += g.total;
            }
        }
        if total == 0 {
            0.0
        } else {
            used as f64 / total as f64
        }
    }
}

/// `platform.project`'s default: job containers are `autogit-job-N` under it.
pub const DEFAULT_PROJECT: &str = "autogit";

/// The container name of a job: the platform's project (`platform.project`, the prefix of
/// its containers), then the job (`autogit-job-7`), so platforms sharing an engine do not
/// take each other's jobs.
pub fn container_name(project: &str, job: &str) -> String {
    format!("{project}-{job}")
}

/// Where MIG devices' slot numbers start: a MIG device is the scheduler's slot
/// `MIG_SLOT_BASE + gpu * 100 + device`; a whole GPU's slot is its index.
pub const MIG_SLOT_BASE: u32 = 1_000_000;

pub fn mig_slot(gpu: u32, device: u32) -> u32 {
    MIG_SLOT_BASE + gpu * 100 + device
}

/// The scheduler's GPU slots of a host. On a `mig` host each GPU with MIG devices is replaced
/// by its devices (one job each: `mig` sharing holds one job per slot; their memory as
/// [`crate::mig`] reads it); GPUs without MIG devices stay whole. An unreachable host keeps its
/// last known slots, all free (`free` then is the total).
pub fn gpu_slots(
    inv: &crate::inventory::Inventory,
    sharing: GpuSharing,
    reachable: bool,
) -> Vec<GpuSlot> {
    let mut slots = Vec::new();
    for g in &inv.gpus {
        let mig: Vec<&crate::mig::MigDevice> =
            inv.mig.iter().filter(|m| m.gpu == g.index).collect();
        if sharing == GpuSharing::Mig && !mig.is_empty() {
            slots.extend(mig.into_iter().map(|m| GpuSlot {
                index: mig_slot(m.gpu, m.device),
                total: m.memory,
                free: m.memory,
            }));
        } else {
            slots.push(GpuSlot {
                index: g.index,
                total: g.memory_total,
                free: if reachable {
                    g.memory_free
                } else {
                    g.memory_total
                },
            });
        }
    }
    slots
}

/// What a job is given: a whole GPU by index, or a MIG device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Device {
    Gpu(u32),
    Mig { gpu: u32, device: u32, uuid: String },
}

/// The devices of placed slots, from the host's inventory; `None` when a MIG slot is no
/// longer in it (its instances were reconfigured).
pub fn devices(inv: &crate::inventory::Inventory, slots: &[u32]) -> Option<Vec<Device>> {
    slots
        .iter()
        .map(|&s| {
            if s < MIG_SLOT_BASE {
                return Some(Device::Gpu(s));
            }
            inv.mig
                .iter()
                .find(|m| mig_slot(m.gpu, m.device) == s)
                .map(|m| Device::Mig {
                    gpu: m.gpu,
                    device: m.device,
                    uuid: m.uuid.clone(),
                })
        })
        .collect()
}

/// The engine command that starts a placed job, detached: Docker selects GPUs with
/// `--gpus device=0,1`, Podman with CDI (`--device nvidia.com/gpu=N`); under WSL2 the GPU
/// is `/dev/dxg` with the driver libraries from `/usr/lib/wsl`. The image and the command
/// come after every option (an image cannot be read as an option: `--` is not supported by
/// `run`, so images starting with `-` are refused by [`check_image`]).
pub fn run_argv(
    engine: crate::inventory::EngineKind,
    wsl2: bool,
    job: &str,
    spec: &JobSpec,
    gpus: &[u32],
) -> Vec<String> {
    let devices: Vec<Device> = gpus.iter().map(|&g| Device::Gpu(g)).collect();
    run_argv_on(engine, wsl2, DEFAULT_PROJECT, job, spec, &devices, &[])
}

/// [`run_argv`] with MIG devices: Docker names them by UUID (`--gpus "device=MIG-…"`, the
/// NVIDIA runtime's `NVIDIA_VISIBLE_DEVICES=MIG-…`), Podman by CDI's `GPU:DEVICE` index names
/// (`nvidia-ctk cdi generate`'s default). A part of a job spread over hosts (`spec.gang`)
/// learns its gang, its rank, their number and every part's host (`hosts`, in rank order;
/// the first is `MASTER_ADDR`, as PyTorch's `env://` rendezvous reads it) from its
/// environment, and uses its host's network, where the other parts reach it (collective
/// libraries such as NCCL open ports of their choosing).
pub fn run_argv_on(
    engine: crate::inventory::EngineKind,
    wsl2: bool,
    project: &str,
    job: &str,
    spec: &JobSpec,
    gpus: &[Device],
    hosts: &[String],
) -> Vec<String> {
    use crate::inventory::EngineKind;
    let program = match engine {
        EngineKind::Docker => "docker",
        EngineKind::Podman => "podman",
    };
    let mut v: Vec<String> = [program, "run", "-d", "--name"].map(str::to_owned).into();
    v.push(container_name(project, job));
    v.extend(["--label".to_owned(), format!("io.autogit.job={job}")]);
    if !gpus.is_empty() {
        let list: Vec<String> = gpus
            .iter()
            .map(|d| match (d, engine) {
                (Device::Gpu(i), _) => i.to_string(),
                (Device::Mig { uuid, .. }, EngineKind::Docker) => uuid.clone(),
                (Device::Mig { gpu, device, .. }, EngineKind::Podman) => format!("{gpu}:{device}"),
            })
            .collect();
        match engine {
            EngineKind::Docker => {
                v.extend([
                    "--gpus".to_owned(),
                    format!("\"device={}\"", list.join(",")),
                ]);
            }
            EngineKind::Podman => {
                for g in &list {
                    v.extend(["--device".to_owned(), format!("nvidia.com/gpu={g}")]);
                }
            }
        }
        if wsl2 {
            v.extend(["--device".to_owned(), "/dev/dxg".to_owned()]);
            v.extend(["-v".to_owned(), "/usr/lib/wsl:/usr/lib/wsl:ro".to_owned()]);
        }
    }
    if let Some(kind) = spec.capability {
        v.extend([
            "--label".to_owned(),
            format!("io.autogit.kind={}", kind.as_str()),
        ]);
    }
    if let Some(s) = spec.service() {
        v.extend(crate::jobkind::service_run_args(s));
    }
    if let Some(g) = spec.gang.as_ref().filter(|g| g.size > 1) {
        v.extend(["--network".to_owned(), "host".to_owned()]);
        let env = [
            ("AUTOGIT_GANG", g.id.clone()),
            ("AUTOGIT_RANK", g.rank.to_string()),
            ("AUTOGIT_WORLD_SIZE", g.size.to_string()),
            ("AUTOGIT_HOSTS", hosts.join(",")),
            ("MASTER_ADDR", hosts.first().cloned().unwrap_or_default()),
        ];
        for (k, val) in env {
            v.extend(["-e".to_owned(), format!("{k}={val}")]);
        }
    }
    if spec.defaults().checkpoint {
        v.extend(crate::jobkind::checkpoint_run_args(&container_name(
            project, job,
        )));
    }
    v.push(spec.image.clone());
    v.extend(spec.command.iter().cloned());
    v
}

/// An image reference the engine will not read as an option or anything but a name.
pub fn check_image(image: &str) -> Result<(), String> {
    let ok = !image.is_empty()
        && image.len() <= 512
        && !image.starts_with('-')
        && image
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/:@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{image}` is not an image reference (registry/name:tag or name@sha256:…)"
        ))
    }
}

fn has_cap(h: &HostState, r: &Request) -> bool {
    r.capability.is_none_or(|c| h.caps.contains(&c))
}

/// Whether `r` fits `h` with nothing else running.
fn fits_empty(h: &HostState, r: &Request) -> bool {
    has_cap(h, r) && h.gpus.iter().filter(|g| g.total >= r.vram.0).count() >= r.gpus as usize
}

/// Where a compute job is in its life. Stored by name (`as_str`) in the state database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for a host with room (also while its host is unreachable).
    Queued,
    /// Started on a host.
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 5] = [
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|j| j.as_str() == s)
    }

    /// No transition leaves a final state.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// What happened to a job, as the compute controller observed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobEvent {
    /// The scheduler rejected it for good (over quota, no host could ever run it).
    Rejected,
    /// Its container was started on the placed host.
    Started,
    /// The host answered but refused to start it (bad image, engine error).
    StartRefused,
    /// The host did not answer while starting it: it is placed again on the next pass.
    StartUnreachable,
    /// Its container exited with this code.
    Exited(i64),
    /// Its container is gone from its host.
    Vanished,
    /// Its host is unreachable: its fate is unknown, it keeps its state (no duplicate start).
    HostUnreachable,
    /// Its lease expired past the fencing grace and its policy is `reschedule`
    /// (`core::lease`): the old copy is stopped, so it goes back to the queue.
    LeaseExpired,
    /// It ran past its time limit (`--timeout`, or its kind's): it was stopped.
    TimedOut,
    /// A person cancelled it, or another part of its gang failed or was cancelled.
    Cancel,
    /// Stopped and put back in the queue with the other parts of its gang, one of which went
    /// back to the queue (they start together).
    Requeued,
}

/// What keeps a job spread over hosts whole, for one of its parts in `state`, given the
/// states of every part of its gang (itself included): cancelled once another part failed or
/// was cancelled; stopped and queued again while running when another part is queued (so
/// the parts start together again). `None`: nothing to do.
pub fn gang_action(state: JobState, parts: &[JobState]) -> Option<(JobEvent, &'static str)> {
    use JobState as S;
    if state.is_final() {
        return None;
    }
    if parts.iter().any(|p| matches!(p, S::Failed | S::Cancelled)) {
        return Some((
            JobEvent::Cancel,
            "cancelled: another part of its job failed or was cancelled",
        ));
    }
    (state == S::Running && parts.contains(&S::Queued)).then_some((
        JobEvent::Requeued,
        "stopped and queued again: another part of its job is back in the queue, and the parts start together",
    ))
}

/// The job's next state, or `None` when the event does not apply in this state (the job keeps
/// its state). Total over every pair; the table test in this module lists them all.
pub fn job_transition(state: JobState, event: JobEvent) -> Option<JobState> {
    use JobEvent as E;
    use JobState as S;
    match (state, event) {
        (S::Queued, E::Rejected | E::StartRefused) => Some(S::Failed),
        (S::Queued, E::Started) => Some(S::Running),
        (S::Queued | S::Running, E::Cancel) => Some(S::Cancelled),
        (S::Running, E::Exited(0)) => Some(S::Succeeded),
        (S::Running, E::Exited(_) | E::Vanished | E::TimedOut) => Some(S::Failed),
        (S::Running, E::LeaseExpired | E::Requeued) => Some(S::Queued),
        // Queued stays queued when its host is away (docs/runners.md promises it); a running
        // job's fate is unknown while its host is unreachable, so it keeps its state.
        (_, E::StartUnreachable | E::HostUnreachable) => None,
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, caps: &[Capability], gib: &[u64]) -> HostSlots {
        HostSlots {
            topology: None,
            sharing: GpuSharing::TimeSliced,
            name: name.into(),
            capabilities: caps.to_vec(),
            gpus: gib
                .iter()
                .enumerate()
                .map(|(i, g)| GpuSlot {
                    index: i as u32,
                    total: Bytes::gib(*g),
                    free: Bytes::gib(*g),
                })
                .collect(),
            reachable: true,
        }
    }

    fn job(id: &str, user: &str, gpus: u32, gib: u64, prio: i32, at: u64) -> Request {
        Request {
            id: id.into(),
            user: user.into(),
            gpus,
            vram: Bytes::gib(gib),
            capability: None,
            priority: prio,
            submitted_at: at,
            gang: None,
        }
    }

    fn part(gang: &str, rank: u32, size: u32, gib: u64) -> Request {
        let mut r = job(&format!("{gang}.{rank}"), "u", 1, gib, 0, 0);
        r.gang = Some(Gang {
            id: gang.into(),
            rank,
            size,
        });
        r
    }

    #[test]
    fn a_gang_is_placed_whole_on_distinct_hosts_or_not_at_all() {
        let three = || {
            vec![
                host("a", &[], &[24]),
                host("b", &[], &[24]),
                host("c", &[], &[24]),
            ]
        };
        let mut s = sched(three(), Fit::BestFit);
        for r in 0..3 {
            s.submit(part("g", r, 3, 20)).unwrap();
        }
        assert_eq!(show(&s.schedule(0)), ["g.0@a[0]", "g.1@b[0]", "g.2@c[0]"]);
        s.check_invariants().unwrap();
        // A host going away takes the whole gang back to the queue.
        let mut back = s.host_down("b");
        back.sort();
        assert_eq!(back, ["g.0", "g.1", "g.2"]);
        assert_eq!(s.queued().len(), 3);
        assert!(s.schedule(0).is_empty(), "two hosts left for three parts");
        assert_eq!(s.vram_utilisation(), 0.0, "nothing half-reserved");
        s.host_up("b");
        assert_eq!(s.schedule(0).len(), 3);

        // One host taken: a gang of two that fits on the other two hosts only.
        let mut s = sched(three(), Fit::BestFit);
        s.submit(job("big", "u", 1, 20, 5, 0)).unwrap();
        s.submit(part("h", 0, 2, 20)).unwrap();
        s.submit(part("h", 1, 2, 20)).unwrap();
        s.submit(part("k", 0, 2, 20)).unwrap();
        s.submit(part("k", 1, 2, 20)).unwrap();
        assert_eq!(
            show(&s.schedule(0)),
            ["big@a[0]", "h.0@b[0]", "h.1@c[0]"],
            "gang k waits whole: nothing of it reserved"
        );
        s.check_invariants().unwrap();
        assert_eq!(s.queued().len(), 2);
        assert!(s.finish("big"));
        assert!(s.schedule(0).is_empty(), "one free host for two parts");
        s.check_invariants().unwrap();
        assert!(s.finish("h.0"));
        assert_eq!(show(&s.schedule(0)), ["k.0@a[0]", "k.1@b[0]"]);

        // More parts than hosts: refused at once.
        let mut s = sched(three(), Fit::FirstFit);
        let e = s.submit(part("m", 0, 4, 20)).unwrap_err().to_string();
        assert!(e.contains("on each of 4 hosts"), "{e}");
        // A gang counts whole against a quota (capped: 1 GPU).
        let mut r = part("q", 0, 2, 8);
        r.user = "capped".into();
        assert!(matches!(s.submit(r), Err(Rejected::OverQuota(..))));
    }

    fn sched(hosts: Vec<HostSlots>, fit: Fit) -> Scheduler {
        let quotas = [Quota {
            user: "capped".into(),
            gpus: 1,
            vram: Bytes::gib(16),
        }];
        Scheduler::new(hosts, &quotas, Dur::secs(60), 100, fit)
    }

    fn show(p: &[Placement]) -> Vec<String> {
        p.iter()
            .map(|p| format!("{}@{}{:?}", p.job, p.host, p.gpus))
            .collect()
    }

    #[test]
    fn engine_commands() {
        use crate::inventory::EngineKind;
        let spec = JobSpec {
            image: "pytorch/pytorch:2.5.1".into(),
            command: vec!["python".into(), "-c".into(), "print('hi')".into()],
            gpus: 2,
            vram: Bytes::gib(8),
            capability: None,
            priority: 0,
            on_lost: None,
            service: None,
            timeout: None,
            gang: None,
        };
        let cases: &[(EngineKind, bool, &[u32], &str)] = &[
            (
                EngineKind::Docker,
                false,
                &[0, 2],
                "docker run -d --name autogit-job-1 --label io.autogit.job=job-1 --gpus \"device=0,2\" pytorch/pytorch:2.5.1 python -c print('hi')",
            ),
            (
                EngineKind::Podman,
                true,
                &[1],
                "podman run -d --name autogit-job-1 --label io.autogit.job=job-1 --device nvidia.com/gpu=1 --device /dev/dxg -v /usr/lib/wsl:/usr/lib/wsl:ro pytorch/pytorch:2.5.1 python -c print('hi')",
            ),
            (
                EngineKind::Docker,
                true,
                &[],
                "docker run -d --name autogit-job-1 --label io.autogit.job=job-1 pytorch/pytorch:2.5.1 python -c print('hi')",
            ),
        ];
        for (engine, wsl, gpus, want) in cases {
            assert_eq!(
                run_argv(*engine, *wsl, "job-1", &spec, gpus).join(" "),
                *want
            );
        }
        // Kinds: a service publishes its port with a health check; render and train get a
        // checkpoint volume.
        let inference = JobSpec {
            capability: Some(Capability::Inference),
            service: Some(crate::jobkind::ServiceSpec::new(8000, Some("/v1/models")).unwrap()),
            command: vec![],
            ..spec.clone()
        };
        assert_eq!(
            run_argv(EngineKind::Docker, false, "job-2", &inference, &[1]).join(" "),
            format!(
                "docker run -d --name autogit-job-2 --label io.autogit.job=job-2 --gpus \"device=1\" --label io.autogit.kind=inference {} pytorch/pytorch:2.5.1",
                crate::jobkind::service_run_args(inference.service.as_ref().unwrap()).join(" ")
            )
        );
        assert!(inference.check().is_ok());
        let render = JobSpec {
            capability: Some(Capability::Render),
            command: vec![],
            ..spec.clone()
        };
        assert_eq!(
            run_argv(EngineKind::Docker, false, "job-3", &render, &[]).join(" "),
            "docker run -d --name autogit-job-3 --label io.autogit.job=job-3 --label io.autogit.kind=render -v autogit-job-3-checkpoint:/autogit/checkpoint -e AUTOGIT_CHECKPOINT_DIR=/autogit/checkpoint pytorch/pytorch:2.5.1"
        );
        assert_eq!(render.time_limit(), Some(86_400));
        assert_eq!(
            JobSpec {
                timeout: Some(0),
                ..render.clone()
            }
            .time_limit(),
            None
        );
        assert_eq!(spec.time_limit(), None);
        // A port on a job that is not inference is refused (it would not be kept alive).
        let bad = JobSpec {
            service: inference.service.clone(),
            ..render
        };
        assert!(bad.check().unwrap_err().contains("--capability inference"));
        assert!(check_image("ghcr.io/a/b:1@sha256:abc").is_ok());
        for bad in ["", "-v", "a b", "a;b", "$(id)"] {
            assert!(check_image(bad).is_err(), "{bad}");
        }
    }

    /// Two NVLink pairs (0-1, 2-3), PCIe across.
    fn paired() -> Topology {
        use crate::topology::Link;
        let mut t = Topology::default();
        for (a, b) in [(0, 1), (2, 3)] {
            t.links.insert((a, b), Link::NvLink(4));
        }
        for (a, b) in [(0, 2), (0, 3), (1, 2), (1, 3)] {
            t.links.insert((a, b), Link::Phb);
        }
        t
    }

    #[test]
    fn multi_gpu_jobs_get_nvlinked_gpus_before_best_fit() {
        let mut h = host("ws", &[], &[24, 48, 24, 24]);
        h.topology = Some(paired());
        // Best fit alone would pick GPUs 0 and 2 (4 GiB left on each): not linked.
        let mut s = sched(vec![h.clone()], Fit::BestFit);
        s.submit(job("pair", "u", 2, 20, 0, 0)).unwrap();
        assert_eq!(show(&s.schedule(0)), ["pair@ws[2, 3]"]);
        // Without the matrix: best fit.
        h.topology = None;
        let mut s = sched(vec![h], Fit::BestFit);
        s.submit(job("pair", "u", 2, 20, 0, 0)).unwrap();
        assert_eq!(show(&s.schedule(0)), ["pair@ws[0, 2]"]);
        // Across hosts: the one whose set is NVLinked, though the other fits tighter.
        let mut linked = host("big", &[], &[80, 80]);
        linked.topology = Some(paired());
        let mut s = sched(vec![host("tight", &[], &[24, 24]), linked], Fit::BestFit);
        s.submit(job("pair", "u", 2, 20, 0, 0)).unwrap();
        assert_eq!(show(&s.schedule(0)), ["pair@big[0, 1]"]);
    }

    #[test]
    fn exclusive_gpus_take_one_job_each_and_time_sliced_share() {
        for (sharing, want) in [
            (GpuSharing::TimeSliced, vec!["a@h[0]", "b@h[0]"]),
            (GpuSharing::Exclusive, vec!["a@h[0]"]),
            (GpuSharing::Mig, vec!["a@h[0]"]),
        ] {
            let mut h = host("h", &[], &[24]);
            h.sharing = sharing;
            let mut s = sched(vec![h], Fit::BestFit);
            s.submit(job("a", "u", 1, 4, 0, 0)).unwrap();
            s.submit(job("b", "u", 1, 4, 0, 1)).unwrap();
            assert_eq!(show(&s.schedule(0)), want, "{sharing:?}");
            s.check_invariants().unwrap();
            if sharing != GpuSharing::TimeSliced {
                // The GPU frees when the job ends; then the other starts.
                assert!(s.finish("a"));
                assert_eq!(show(&s.schedule(10)), ["b@h[0]"]);
            }
        }
    }

    /// A MIG host (`sharing: mig`): each MIG device is a slot of one job, placed by best fit
    /// on its memory, and given by UUID (Docker) or CDI index name (Podman); a GPU without MIG
    /// devices stays whole.
    #[test]
    fn mig_devices_are_slots_of_one_job_each() {
        use crate::inventory::{EngineKind, Gpu, Inventory};
        let gpu = |index: u32| Gpu {
            index,
            name: "NVIDIA A100-SXM4-40GB".into(),
            memory_total: Bytes::gib(40),
            memory_free: Bytes::gib(40),
            utilization: Some(0),
            driver: "550.54.14".into(),
        };
        let (mig, problems) = crate::mig::parse_list(
            "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-5d5ba0d6)
               MIG 3g.20gb     Device  0: (UUID: MIG-aaaa)
               MIG 1g.5gb      Device  1: (UUID: MIG-bbbb)
               MIG 1g.5gb      Device  2: (UUID: MIG-cccc)
             GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-0b2d7c4e)
",
        );
        assert!(problems.is_empty(), "{problems:?}");
        let inv = Inventory {
            gpus: vec![gpu(0), gpu(1)],
            mig,
            ..Inventory::default()
        };
        let slots = gpu_slots(&inv, GpuSharing::Mig, true);
        let show_slots: Vec<(u32, u64)> = slots.iter().map(|g| (g.index, g.total.0)).collect();
        assert_eq!(
            show_slots,
            [
                (mig_slot(0, 0), 20_000_000_000),
                (mig_slot(0, 1), 5_000_000_000),
                (mig_slot(0, 2), 5_000_000_000),
                (1, Bytes::gib(40).0),
            ]
        );
        // Not a MIG host: the GPUs are whole.
        assert_eq!(
            gpu_slots(&inv, GpuSharing::Exclusive, true)
                .iter()
                .map(|g| g.index)
                .collect::<Vec<_>>(),
            [0, 1]
        );
        let mut h = host("a100", &[], &[]);
        h.sharing = GpuSharing::Mig;
        h.gpus = slots;
        let mut s = sched(vec![h], Fit::BestFit);
        for (id, gib) in [
            ("small", 4),
            ("small2", 4),
            ("small3", 4),
            ("mid", 12),
            ("big", 30),
        ] {
            s.submit(job(id, "u", 1, gib, 0, 0)).unwrap();
        }
        let placed = s.schedule(0);
        // Best fit, in queue order: the whole GPU for `big`, the 20 GB device for `mid`, the 5 GB
        // devices for the small jobs; nothing is left for the third.
        assert_eq!(
            show(&placed),
            [
                "big@a100[1]".to_owned(),
                format!("mid@a100[{}]", mig_slot(0, 0)),
                format!("small@a100[{}]", mig_slot(0, 1)),
                format!("small2@a100[{}]", mig_slot(0, 2)),
            ]
        );
        s.check_invariants().unwrap();
        let spec = JobSpec {
            image: "vllm/vllm-openai:v0.6.4".into(),
            command: vec![],
            gpus: 1,
            vram: Bytes::gib(4),
            capability: None,
            priority: 0,
            on_lost: None,
            service: None,
            timeout: None,
            gang: None,
        };
        let devs = devices(&inv, &placed[2].gpus).unwrap();
        assert_eq!(
            run_argv_on(
                EngineKind::Docker,
                false,
                "autogit",
                "job-1",
                &spec,
                &devs,
                &[]
            )
            .join(" "),
            "docker run -d --name autogit-job-1 --label io.autogit.job=job-1 --gpus \"device=MIG-bbbb\" vllm/vllm-openai:v0.6.4"
        );
        assert_eq!(
            run_argv_on(
                EngineKind::Podman,
                false,
                "lab2",
                "job-1",
                &spec,
                &devs,
                &[]
            )
            .join(" "),
            "podman run -d --name lab2-job-1 --label io.autogit.job=job-1 --device nvidia.com/gpu=0:1 vllm/vllm-openai:v0.6.4"
        );
        // A device gone from the inventory (instances reconfigured): no command.
        assert_eq!(devices(&inv, &[mig_slot(0, 7)]), None);
    }

    #[test]
    fn best_fit_keeps_large_gpus_free_first_fit_does_not() {
        let hosts = || vec![host("a", &[], &[80]), host("b", &[], &[24, 16])];
        let mut best = sched(hosts(), Fit::BestFit);
        let mut first = sched(hosts(), Fit::FirstFit);
        for s in [&mut best, &mut first] {
            s.submit(job("small", "u", 1, 10, 0, 0)).unwrap();
        }
        assert_eq!(show(&best.schedule(0)), ["small@b[1]"]);
        assert_eq!(show(&first.schedule(0)), ["small@a[0]"]);
        // Then a 75 GiB job only fits where best fit left room.
        for s in [&mut best, &mut first] {
            s.submit(job("big", "u", 1, 75, 0, 1)).unwrap();
        }
        assert_eq!(show(&best.schedule(1)), ["big@a[0]"]);
        assert!(first.schedule(1).is_empty());
    }

    #[test]
    fn capability_gpu_count_and_never_fits() {
        let mut s = sched(
            vec![
                host("r", &[Capability::Render], &[24, 24]),
                host("t", &[Capability::Train], &[16]),
            ],
            Fit::BestFit,
        );
        let mut j = job("t1", "u", 2, 8, 0, 0);
        j.capability = Some(Capability::Train);
        assert!(matches!(s.submit(j), Err(Rejected::NeverFits(_))));
        let mut j = job("r1", "u", 2, 8, 0, 0);
        j.capability = Some(Capability::Render);
        s.submit(j).unwrap();
        assert_eq!(show(&s.schedule(0)), ["r1@r[0, 1]"]);
        assert!(matches!(
            s.submit(job("huge", "u", 1, 100, 0, 0)),
            Err(Rejected::NeverFits(_))
        ));
        assert!(matches!(
            s.submit(job("q", "capped", 2, 1, 0, 0)),
            Err(Rejected::OverQuota(..))
        ));
        assert!(matches!(
            s.submit(job("r1", "u", 1, 1, 0, 0)),
            Err(Rejected::Duplicate(_))
        ));
    }

    #[test]
    fn quota_holds_a_user_but_not_the_others() {
        let mut s = sched(vec![host("a", &[], &[24, 24, 24])], Fit::BestFit);
        s.submit(job("c1", "capped", 1, 16, 0, 0)).unwrap();
        s.submit(job("c2", "capped", 1, 16, 0, 1)).unwrap();
        s.submit(job("o1", "other", 1, 16, 0, 2)).unwrap();
        assert_eq!(show(&s.schedule(2)), ["c1@a[0]", "o1@a[1]"]);
        assert!(s.finish("c1"));
        assert_eq!(show(&s.schedule(3)), ["c2@a[0]"]);
    }

    #[test]
    fn priority_then_aging() {
        let mut s = sched(vec![host("a", &[], &[24])], Fit::BestFit);
        s.submit(job("blocker", "u", 1, 24, 0, 0)).unwrap();
        s.schedule(0);
        s.submit(job("old", "u", 1, 24, 0, 0)).unwrap();
        s.submit(job("urgent", "u", 1, 24, 2, 100)).unwrap();
        // At t=100 "old" has aged one step (1 < 2): urgent first.
        assert_eq!(s.effective_priority(&s.queued()[0], 100), 1);
        s.finish("blocker");
        assert_eq!(show(&s.schedule(100)), ["urgent@a[0]"]);
        // Had it waited three intervals, old would have gone first.
        let mut s = sched(vec![host("a", &[], &[24])], Fit::BestFit);
        s.submit(job("old", "u", 1, 24, 0, 0)).unwrap();
        s.submit(job("urgent", "u", 1, 24, 2, 170)).unwrap();
        assert_eq!(show(&s.schedule(180)), ["old@a[0]"]);
    }

    #[test]
    fn a_starving_job_stops_backfill() {
        let mut s = sched(vec![host("a", &[], &[24, 24])], Fit::BestFit);
        s.submit(job("one", "u", 1, 20, 0, 0)).unwrap();
        s.schedule(0);
        s.submit(job("wide", "u", 2, 20, 0, 0)).unwrap();
        s.submit(job("small", "u", 1, 4, 0, 10)).unwrap();
        // Early: small passes wide (backfill).
        assert_eq!(show(&s.schedule(10)), ["small@a[0]"]);
        s.finish("small");
        s.submit(job("small2", "u", 1, 5, 0, 300)).unwrap();
        // wide has waited 5 intervals: it holds small2 back.
        assert!(s.schedule(300).is_empty());
        s.finish("one");
        assert_eq!(show(&s.schedule(301)), ["wide@a[0, 1]"]);
    }

    #[test]
    fn unreachable_host_work_is_placed_elsewhere() {
        let mut s = sched(
            vec![host("a", &[], &[24]), host("b", &[], &[24])],
            Fit::BestFit,
        );
        s.submit(job("j1", "u", 1, 20, 0, 0)).unwrap();
        s.submit(job("j2", "u", 1, 20, 0, 0)).unwrap();
        assert_eq!(show(&s.schedule(0)), ["j1@a[0]", "j2@b[0]"]);
        assert_eq!(s.host_down("a"), ["j1"]);
        assert!(s.schedule(1).is_empty());
        s.finish("j2");
        assert_eq!(show(&s.schedule(2)), ["j1@b[0]"]);
        s.host_up("a");
        s.submit(job("j3", "u", 1, 20, 0, 3)).unwrap();
        assert_eq!(show(&s.schedule(3)), ["j3@a[0]"]);
    }

    #[test]
    fn adopted_jobs_count_and_foreign_use_is_respected() {
        let mut h = host("a", &[], &[24]);
        h.gpus[0].free = Bytes::gib(10); // something else uses 14 GiB
        let mut s = sched(vec![h], Fit::BestFit);
        s.submit(job("big", "u", 1, 12, 0, 0)).unwrap();
        assert!(s.schedule(0).is_empty());
        s.submit(job("fits", "u", 1, 8, 0, 0)).unwrap();
        assert_eq!(show(&s.schedule(0)), ["fits@a[0]"]);
        let mut s = sched(vec![host("a", &[], &[24])], Fit::BestFit);
        s.adopt(
            job("old", "capped", 1, 16, 0, 0),
            Placement {
                job: "old".into(),
                host: "a".into(),
                gpus: vec![0],
            },
        );
        s.submit(job("c", "capped", 1, 4, 0, 0)).unwrap();
        s.submit(job("o", "other", 1, 10, 0, 0)).unwrap();
        assert!(s.schedule(0).is_empty(), "quota held and 8 GiB left");
        s.check_invariants().unwrap();
    }

    #[test]
    fn job_transitions_table() {
        use JobEvent as E;
        let events = [
            E::Rejected,
            E::Started,
            E::StartRefused,
            E::StartUnreachable,
            E::Exited(0),
            E::Exited(3),
            E::Vanished,
            E::HostUnreachable,
            E::LeaseExpired,
            E::TimedOut,
            E::Cancel,
            E::Requeued,
        ];
        let mut table = String::new();
        for s in JobState::ALL {
            let row: Vec<String> = events
                .iter()
                .map(|e| job_transition(s, *e).map_or("-".to_owned(), |n| n.to_string()))
                .collect();
            table.push_str(&format!("{s:<9} {}\n", row.join(" ")));
            assert_eq!(JobState::parse(s.as_str()), Some(s));
            if s.is_final() {
                assert!(row.iter().all(|c| c == "-"), "{s} must be final: {row:?}");
            }
        }
        // Columns: rejected started refused start-unreachable exit0 exit3 vanished
        // host-unreachable lease-expired timed-out cancel requeued.
        assert_eq!(
            table,
            "queued    failed running failed - - - - - - - cancelled -\n\
             running   - - - - succeeded failed failed - queued failed cancelled queued\n\
             succeeded - - - - - - - - - - - -\n\
             failed    - - - - - - - - - - - -\n\
             cancelled - - - - - - - - - - - -\n"
        );
    }

    #[test]
    fn a_part_of_a_gang_knows_its_gang_and_uses_its_hosts_network() {
        use crate::inventory::EngineKind;
        let spec = JobSpec {
            image: "trainer:1".into(),
            command: vec!["torchrun".into()],
            gpus: 1,
            vram: Bytes::gib(8),
            capability: Some(Capability::Train),
            priority: 0,
            on_lost: None,
            service: None,
            timeout: None,
            gang: Some(Gang {
                id: "job-4".into(),
                rank: 1,
                size: 2,
            }),
        };
        let hosts = ["10.0.0.2".to_owned(), "10.0.0.3".to_owned()];
        let argv = run_argv_on(
            EngineKind::Docker,
            false,
            "autogit",
            "job-5",
            &spec,
            &[Device::Gpu(0)],
            &hosts,
        )
        .join(" ");
        assert!(
            argv.contains(
                "--network host -e AUTOGIT_GANG=job-4 -e AUTOGIT_RANK=1 -e AUTOGIT_WORLD_SIZE=2 -e AUTOGIT_HOSTS=10.0.0.2,10.0.0.3 -e MASTER_ADDR=10.0.0.2 "
            ) && argv.ends_with(" trainer:1 torchrun"),
            "{argv}"
        );
        let alone = JobSpec { gang: None, ..spec };
        let argv = run_argv_on(
            EngineKind::Docker,
            false,
            "autogit",
            "job-5",
            &alone,
            &[],
            &[],
        );
        assert!(
            !argv.iter().any(|a| a == "--network"
                || a.starts_with("AUTOGIT_RANK")
                || a.starts_with("MASTER_ADDR")),
            "{argv:?}"
        );
    }

    #[test]
    fn gangs_stay_whole() {
        use JobState::*;
        let act = |s, parts: &[JobState]| gang_action(s, parts).map(|(e, _)| e);
        assert_eq!(act(Running, &[Running, Running]), None);
        assert_eq!(
            act(Running, &[Running, Succeeded]),
            None,
            "a part may end first"
        );
        assert_eq!(act(Running, &[Running, Failed]), Some(JobEvent::Cancel));
        assert_eq!(act(Queued, &[Queued, Cancelled]), Some(JobEvent::Cancel));
        assert_eq!(act(Running, &[Running, Queued]), Some(JobEvent::Requeued));
        assert_eq!(
            act(Queued, &[Queued, Running]),
            None,
            "the running part comes back"
        );
        assert_eq!(act(Failed, &[Failed, Running]), None);
        assert_eq!(act(Succeeded, &[Succeeded, Queued]), None);
    }
}
