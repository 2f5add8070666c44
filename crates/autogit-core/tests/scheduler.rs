//! Properties of `core::compute::Scheduler`: VRAM and quotas are never over-committed, a
//! multi-GPU job's GPUs are reserved all at once or not at all (no partial starts), a job
//! spread over hosts (a gang) starts whole on distinct hosts or not at all, an
//! exclusive host runs one job per GPU, and every accepted job runs once capacity frees (jobs
//! finish in an arbitrary order, hosts go down and come back), whatever the hosts' topology
//! and sharing mode.

use autogit_core::compute::{Fit, Gang, GpuSlot, HostSlots, Request, Scheduler};
use autogit_core::config::{Capability, GpuSharing, Quota};
use autogit_core::topology::{Link, Topology};
use autogit_core::units::{Bytes, Dur};
use proptest::prelude::*;

fn hosts() -> impl Strategy<Value = Vec<HostSlots>> {
    let gpu = prop::sample::select(vec![8u64, 16, 24, 48, 80]);
    let caps = prop::sample::subsequence(
        vec![Capability::Inference, Capability::Render, Capability::Train],
        0..=3,
    );
    let sharing = prop::sample::select(vec![
        GpuSharing::TimeSliced,
        GpuSharing::Exclusive,
        GpuSharing::Mig,
    ]);
    // Links for up to 4 GPUs (6 pairs), or none known.
    let links = prop::option::of(prop::collection::vec(
        prop::sample::select(vec![
            Link::NvLink(4),
            Link::NvLink(12),
            Link::Pix,
            Link::Phb,
            Link::Sys,
        ]),
        6,
    ));
    prop::collection::vec(
        (prop::collection::vec(gpu, 0..4), caps, sharing, links),
        1..6,
    )
    .prop_map(|hs| {
        hs.into_iter()
            .enumerate()
            .map(|(i, (gpus, caps, sharing, links))| HostSlots {
                topology: links.map(|l| {
                    let pairs = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)];
                    Topology {
                        links: pairs.into_iter().zip(l).collect(),
                    }
                }),
                sharing,
                name: format!("h{i}"),
                capabilities: caps,
                gpus: gpus
                    .into_iter()
                    .enumerate()
                    .map(|(gi, g)| GpuSlot {
                        index: gi as u32,
                        total: Bytes::gib(g),
                        free: Bytes::gib(g),
                    })
                    .collect(),
                reachable: true,
            })
            .collect()
    })
}

fn jobs() -> impl Strategy<Value = Vec<Request>> {
    let cap = prop::option::of(prop::sample::select(vec![
        Capability::Inference,
        Capability::Render,
        Capability::Train,
    ]));
    prop::collection::vec(
        (0u32..3, 1u64..40, -2i32..3, 0u64..600, 0usize..3, cap),
        1..40,
    )
    .prop_map(|js| {
        js.into_iter()
            .enumerate()
            .map(|(i, (gpus, gib, prio, at, user, capability))| Request {
                id: format!("j{i}"),
                user: ["ann", "bob", "cy"][user].to_owned(),
                gpus,
                vram: Bytes::gib(gib),
                capability,
                priority: prio,
                submitted_at: at,
                gang: None,
            })
            .collect::<Vec<_>>()
    })
    .prop_map(|mut js| {
        // Every fifth job and the next are one job spread over two hosts: the same request
        // twice, as `compute run --hosts 2` makes it.
        for i in (0..js.len().saturating_sub(1)).step_by(5) {
            let gang = |rank| {
                Some(Gang {
                    id: format!("g{i}"),
                    rank,
                    size: 2,
                })
            };
            let first = Request {
                gang: gang(0),
                ..js[i].clone()
            };
            js[i + 1] = Request {
                id: js[i + 1].id.clone(),
                gang: gang(1),
                ..first.clone()
            };
            js[i] = first;
        }
        js
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
    #[test]
    fn never_over_commits_and_every_job_runs(
        hosts in hosts(),
        jobs in jobs(),
        picks in prop::collection::vec(any::<prop::sample::Index>(), 200),
        best in any::<bool>(),
        outage in any::<bool>(),
    ) {
        let quotas = [
            Quota { user: "ann".into(), gpus: 2, vram: Bytes::gib(64) },
            Quota { user: "bob".into(), gpus: 1, vram: Bytes::gib(48) },
        ];
        let fit = if best { Fit::BestFit } else { Fit::FirstFit };
        let mut s = Scheduler::new(hosts.clone(), &quotas, Dur::secs(60), 1000, fit);
        let mut accepted = Vec::new();
        let wants: std::collections::BTreeMap<String, u32> =
            jobs.iter().map(|j| (j.id.clone(), j.gpus)).collect();
        let gang_of: std::collections::BTreeMap<String, String> = jobs
            .iter()
            .filter_map(|j| Some((j.id.clone(), j.gang.as_ref()?.id.clone())))
            .collect();
        for j in jobs {
            let id = j.id.clone();
            if s.submit(j).is_ok() {
                accepted.push(id);
            }
        }
        let mut started = std::collections::BTreeSet::new();
        let mut ended = std::collections::BTreeSet::new();
        let mut running: Vec<String> = Vec::new();
        let mut now = 600;
        let mut steps = 0;
        loop {
            // A host goes away for a while, once.
            if outage && steps == 3 {
                for id in s.host_down("h0") {
                    running.retain(|r| *r != id);
                }
            }
            if outage && steps == 6 {
                s.host_up("h0");
            }
            let placed = s.schedule(now);
            // A gang starts whole in one pass (every part that has not ended), or not at all.
            for p in &placed {
                if let Some(g) = gang_of.get(&p.job) {
                    let parts = placed
                        .iter()
                        .filter(|q| gang_of.get(&q.job) == Some(g))
                        .count();
                    let left = gang_of
                        .iter()
                        .filter(|(id, og)| *og == g && accepted.contains(*id) && !ended.contains(*id))
                        .count();
                    prop_assert_eq!(parts, left, "gang {} started in part: {:?}", g, placed);
                }
            }
            for p in placed {
                let wanted = wants[&p.job];
                prop_assert_eq!(p.gpus.len() as u32, wanted, "{:?}", p);
                started.insert(p.job.clone());
                running.push(p.job);
            }
            s.check_invariants().map_err(TestCaseError::fail)?;
            if s.queued().is_empty() && running.is_empty() {
                break;
            }
            prop_assert!(
                !running.is_empty() || (outage && (3..6).contains(&steps)),
                "stuck: nothing runs, queue {:?}", s.queued()
            );
            if !running.is_empty() {
                let i = picks[steps % picks.len()].index(running.len());
                let id = running.remove(i);
                prop_assert!(s.finish(&id));
                ended.insert(id);
            }
            now += 30;
            steps += 1;
            prop_assert!(steps < 500, "did not drain");
        }
        for id in &accepted {
            prop_assert!(started.contains(id), "{id} never ran");
        }
    }
}
