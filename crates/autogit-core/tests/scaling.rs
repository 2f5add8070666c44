//! The runner scaler (`core::ondemand::plan_scale`) as properties, over arbitrary queues,
//! limits and histories: never above `max` nor below `min`, up to what the queue needs within
//! one pass, down only after the cooldown, and zero containers when idle by default.

use autogit_core::config::RunnerMode;
use autogit_core::ondemand::{ScaleInput, ScalePlan, plan_scale};
use proptest::prelude::*;

fn input() -> impl Strategy<Value = ScaleInput> {
    (
        prop::sample::select(vec![RunnerMode::OnDemand, RunnerMode::Always]),
        0u32..80,
        0u32..200,
        0u32..200,
        1u32..16,
        (0u32..10, 1u32..64),
        prop::option::of(0i64..2000),
        0i64..1000,
    )
        .prop_map(
            |(mode, running, pending, active, concurrent, (min, more), since, cooldown)| {
                let max = min.max(1) + more - 1;
                ScaleInput {
                    mode,
                    running,
                    pending,
                    active,
                    concurrent,
                    min,
                    max,
                    surplus_since: since,
                    now: 2000,
                    cooldown,
                }
            },
        )
}

fn needed(i: &ScaleInput) -> u32 {
    let floor = if i.mode == RunnerMode::Always {
        i.min.max(1)
    } else {
        i.min
    };
    (i.pending + i.active)
        .div_ceil(i.concurrent)
        .clamp(floor.min(i.max), i.max)
}

proptest! {
    #[test]
    fn never_above_max_nor_below_min(i in input()) {
        let p = plan_scale(i);
        prop_assert!(p.target <= i.max, "{i:?} -> {p:?}");
        prop_assert!(p.target >= i.min.min(i.max), "{i:?} -> {p:?}");
    }

    #[test]
    fn scales_up_within_one_pass(i in input()) {
        let p = plan_scale(i);
        // However many run now, one pass reaches what the queue needs (up to max).
        prop_assert!(p.target >= needed(&i), "{i:?} -> {p:?}");
        if needed(&i) >= i.running {
            prop_assert_eq!(p, ScalePlan { target: needed(&i), surplus_since: None });
        }
    }

    #[test]
    fn scales_down_only_after_the_cooldown(i in input()) {
        let p = plan_scale(i);
        if p.target < i.running && i.running <= i.max {
            let since = i.surplus_since.unwrap_or(i.now);
            prop_assert!(i.now - since >= i.cooldown, "{i:?} -> {p:?}");
            prop_assert_eq!(p.surplus_since, None);
        }
        if p.target == i.running.min(i.max) && needed(&i) < i.running.min(i.max) {
            // Waiting: the surplus keeps its start, so the cooldown is counted once.
            prop_assert_eq!(p.surplus_since, Some(i.surplus_since.unwrap_or(i.now)));
        }
    }

    /// A queue that empties, pass after pass with the plan carried over, ends at `min`
    /// containers (zero by default) once the cooldown has passed, never earlier.
    #[test]
    fn an_idle_runner_ends_at_min_after_the_cooldown(
        running in 1u32..20, min in 0u32..3, cooldown in 1i64..600, step in 1i64..120,
    ) {
        let max = 20u32.max(min);
        let mut state = (running, None);
        let mut t = 0i64;
        let mut stopped_at = None;
        for _ in 0..(cooldown / step + 3) {
            let p = plan_scale(ScaleInput {
                mode: RunnerMode::OnDemand, running: state.0, pending: 0, active: 0,
                concurrent: 1, min, max, surplus_since: state.1, now: t, cooldown,
            });
            if p.target < state.0 && stopped_at.is_none() {
                stopped_at = Some(t);
            }
            state = (p.target, p.surplus_since);
            t += step;
        }
        prop_assert_eq!(state.0, min);
        if running > min {
            prop_assert!(stopped_at.unwrap() >= cooldown);
        }
    }
}

#[test]
fn table() {
    let base = ScaleInput {
        mode: RunnerMode::OnDemand,
        running: 0,
        pending: 0,
        active: 0,
        concurrent: 1,
        min: 0,
        max: 3,
        surplus_since: None,
        now: 1000,
        cooldown: 300,
    };
    let cases = [
        // zero idle: nothing waits, nothing runs
        (base, 0, None),
        // 2 waiting jobs, one job per container: 2 at once
        (ScaleInput { pending: 2, ..base }, 2, None),
        // 5 waiting: 3 (max)
        (ScaleInput { pending: 5, ..base }, 3, None),
        // concurrency 4: 5 jobs need 2
        (
            ScaleInput {
                pending: 3,
                active: 2,
                concurrent: 4,
                ..base
            },
            2,
            None,
        ),
        // 3 run, 1 job left: keep 3 until the cooldown, counted from now
        (
            ScaleInput {
                running: 3,
                active: 1,
                ..base
            },
            3,
            Some(1000),
        ),
        (
            ScaleInput {
                running: 3,
                active: 1,
                surplus_since: Some(700),
                ..base
            },
            1,
            None,
        ),
        // max lowered to 1 while 3 run: cut at once
        (
            ScaleInput {
                running: 3,
                pending: 9,
                max: 1,
                ..base
            },
            1,
            None,
        ),
        // min 1: one stays without work; always: one even with min 0
        (ScaleInput { min: 1, ..base }, 1, None),
        (
            ScaleInput {
                mode: RunnerMode::Always,
                ..base
            },
            1,
            None,
        ),
    ];
    for (i, target, since) in cases {
        assert_eq!(
            plan_scale(i),
            ScalePlan {
                target,
                surplus_since: since
            },
            "{i:?}"
        );
    }
}
