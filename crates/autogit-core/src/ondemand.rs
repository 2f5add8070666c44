//! On-demand runners, as decisions: whether a runner has work (a pending or running job whose
//! tags it carries), and whether to start it, keep it or stop it after its cooldown. The
//! commands that start and stop a runner's container are built here too; the binary runs
//! them on the runner's host.

use crate::config::{EngineAccess, Executor, Isolation, JobNetwork, Runner, RunnerMode};

/// What to do with one runner now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Start,
    Stop,
    Keep,
}

/// A decision, with the time the runner became idle (carried to the next decision).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    pub idle_since: Option<i64>,
}

/// Whether a job with `job_tags` can run on a runner with `runner_tags`: GitLab hands a job
/// only to a runner that has every tag of the job; an untagged job only to runners that take
/// untagged jobs (autogit registers untagged runners with `run_untagged`).
pub fn job_matches(job_tags: &[String], runner_tags: &[String]) -> bool {
    if job_tags.is_empty() {
        return runner_tags.is_empty();
    }
    job_tags.iter().all(|t| runner_tags.contains(t))
}

/// Whether `runner` can take a job with `job_tags`, with the tags GitLab knows it by: its
/// `tags`, then its `capabilities` (`Runner::gitlab_tags`, what registration sends). A job
/// tagged only `inference` is work for a runner whose `capabilities` say `inference`.
pub fn runner_takes(runner: &Runner, job_tags: &[String]) -> bool {
    job_matches(job_tags, &runner.gitlab_tags())
}

/// The decision for one runner. `demand`: a pending or running job it could take.
/// `mode: always` keeps it running; `on-demand` starts it on demand and stops it once it has
/// been idle for `cooldown` seconds.
pub fn decide(
    mode: RunnerMode,
    running: bool,
    demand: bool,
    idle_since: Option<i64>,
    now: i64,
    cooldown: i64,
) -> Decision {
    let d = |action, idle_since| Decision { action, idle_since };
    match (mode, running, demand) {
        (RunnerMode::Always, false, _) | (RunnerMode::OnDemand, false, true) => {
            d(Action::Start, None)
        }
        (RunnerMode::Always, true, _) | (RunnerMode::OnDemand, true, true) => d(Action::Keep, None),
        (RunnerMode::OnDemand, true, false) => {
            let since = idle_since.unwrap_or(now);
            if now - since >= cooldown {
                d(Action::Stop, None)
            } else {
                d(Action::Keep, Some(since))
            }
        }
        (RunnerMode::OnDemand, false, false) => d(Action::Keep, None),
    }
}

/// What the scaler knows about one runner now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScaleInput {
    pub mode: RunnerMode,
    /// Runner containers running now.
    pub running: u32,
    /// Jobs it could take that wait (`pending`) and that run (`running`).
    pub pending: u32,
    pub active: u32,
    /// Jobs one container takes at once (`concurrent`).
    pub concurrent: u32,
    pub min: u32,
    pub max: u32,
    /// Since when fewer containers would have done (carried from the last pass).
    pub surplus_since: Option<i64>,
    pub now: i64,
    pub cooldown: i64,
}

/// How many containers to run, with the time the surplus began (carried to the next pass).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScalePlan {
    pub target: u32,
    pub surplus_since: Option<i64>,
}

/// The runner containers a runner needs: enough for its jobs (`ceil((pending + active) /
/// concurrent)`), at least `min` (one with `mode: always`), at most `max`. More are started
/// at once (one pass reaches the target); fewer only once the surplus has lasted `cooldown`
/// seconds, except above `max`, which is cut at once.
pub fn plan_scale(i: ScaleInput) -> ScalePlan {
    let floor = match i.mode {
        RunnerMode::Always => i.min.max(1),
        RunnerMode::OnDemand => i.min,
    }
    .min(i.max);
    let jobs = i.pending.saturating_add(i.active);
    let needed = jobs.div_ceil(i.concurrent.max(1)).clamp(floor, i.max);
    if needed >= i.running {
        return ScalePlan {
            target: needed,
            surplus_since: None,
        };
    }
    if i.running > i.max && needed == i.max {
        return ScalePlan {
            target: i.max,
            surplus_since: None,
        };
    }
    let since = i.surplus_since.unwrap_or(i.now);
    if i.now - since >= i.cooldown {
        ScalePlan {
            target: needed,
            surplus_since: None,
        }
    } else {
        ScalePlan {
            target: i.running.min(i.max),
            surplus_since: Some(since),
        }
    }
}

/// The name of replica `index` (0-based) of a runner's container: the first is
/// `autogit-runner-NAME` (what registration, repair and one-container hosts know), the next
/// `autogit-runner-NAME-2`, `-3`, ….
pub fn replica_name(runner: &str, index: u32) -> String {
    match index {
        0 => container_name(runner),
        n => format!("{}-{}", container_name(runner), n + 1),
    }
}

/// Lists a runner's containers with their state (`NAME STATE` lines), running or not.
pub fn replicas_argv(runner: &Runner) -> Vec<String> {
    vec![
        engine_of(runner).to_owned(),
        "ps".to_owned(),
        "-a".to_owned(),
        "--filter".to_owned(),
        format!("label=io.autogit.runner={}", container_name(&runner.name)),
        "--format".to_owned(),
        "{{.Names}} {{.State}}".to_owned(),
    ]
}

/// A runner's containers as [`replicas_argv`] lists them: (replica index, running), sorted.
/// Names that are not this runner's replicas are ignored.
pub fn parse_replicas(runner: &str, out: &str) -> Vec<(u32, bool)> {
    let base = container_name(runner);
    let mut v: Vec<(u32, bool)> = out
        .lines()
        .filter_map(|l| {
            let (name, state) = l.trim().split_once(' ')?;
            let index = if name == base {
                0
            } else {
                let n: u32 = name.strip_prefix(&base)?.strip_prefix('-')?.parse().ok()?;
                (n >= 2).then_some(n - 1)?
            };
            Some((index, state.trim() == "running"))
        })
        .collect();
    v.sort_unstable();
    v.dedup_by_key(|(i, _)| *i);
    v
}

/// Asks replica `index` to stop once its jobs are done: gitlab-runner finishes its running
/// jobs and exits on SIGQUIT (its graceful shutdown); the exited container is removed by a
/// later pass.
pub fn quit_argv(runner: &Runner, index: u32) -> Vec<String> {
    vec![
        engine_of(runner).to_owned(),
        "kill".to_owned(),
        "--signal".to_owned(),
        "QUIT".to_owned(),
        replica_name(&runner.name, index),
    ]
}

/// Removes replica `index` (an exited one, or every one when no job is left).
pub fn remove_argv(runner: &Runner, index: u32) -> Vec<String> {
    vec![
        engine_of(runner).to_owned(),
        "rm".to_owned(),
        "-f".to_owned(),
        replica_name(&runner.name, index),
    ]
}

/// The name of a runner's container on its host (the same as its configuration volume).
pub fn container_name(runner: &str) -> String {
    crate::runner::runner_volume(runner)
}

/// The engine command on the runner's host.
pub fn engine_of(runner: &Runner) -> &'static str {
    match runner.executor {
        Executor::Podman => "podman",
        _ => "docker",
    }
}

/// Starts the runner's container (removing a stopped one of the same name first): the runner
/// image with its configuration volume and engine access, so jobs run as sibling containers.
///
/// Engine access (`runners.isolation.engine`): `proxy` mounts the host's engine proxy
/// (`autogit runner engine-proxy`, at `proxy_socket`) as `/var/run/docker.sock`, and refuses
/// to start (exit 3, saying what to run) when no proxy listens there; `socket` mounts the
/// engine's own socket (Podman's found on the host, `$XDG_RUNTIME_DIR/podman/podman.sock`
/// else `/run/podman/podman.sock`, also at its own path: the `host` the registered
/// `config.toml` names, `core::runner::config_toml_on`). With `network: runner` the runner's
/// own bridge network (`autogit-runner-NAME`, the job containers' `network_mode`) is created
/// when missing and the runner's container joins it.
pub fn start_argv(runner: &Runner, image: &str, isolation: &Isolation) -> Vec<String> {
    start_replica_argv(runner, 0, image, isolation)
}

/// [`start_argv`] for replica `index` ([`replica_name`]): every replica mounts the runner's
/// one configuration volume and carries the label `io.autogit.runner=autogit-runner-NAME`.
pub fn start_replica_argv(
    runner: &Runner,
    index: u32,
    image: &str,
    isolation: &Isolation,
) -> Vec<String> {
    let engine = engine_of(runner);
    let volume = container_name(&runner.name);
    let name = replica_name(&runner.name, index);
    let script = "engine=$1; name=$2; image=$3; access=$4; proxy=$5; net=$6; volume=$7; \
        set --; \
        if [ \"$access\" = proxy ]; then \
          [ -S \"$proxy\" ] || { echo \"no engine proxy listens at $proxy on this host: run 'autogit runner engine-proxy --listen $proxy' there (docs/runners.md, Isolation), or set runners.isolation.engine: socket\" >&2; exit 3; }; \
          sock=$proxy; \
        elif [ \"$engine\" = podman ]; then sock=\"${XDG_RUNTIME_DIR:-/run}/podman/podman.sock\"; [ -S \"$sock\" ] || sock=/run/podman/podman.sock; set -- -v \"$sock:$sock\"; \
        else sock=/var/run/docker.sock; fi; \
        if [ -n \"$net\" ]; then \
          \"$engine\" network inspect \"$net\" >/dev/null 2>&1 || \"$engine\" network create --label io.autogit.runner=\"$volume\" \"$net\" >/dev/null || exit 1; \
          set -- \"$@\" --network \"$net\"; \
        fi; \
        \"$engine\" rm -f \"$name\" >/dev/null 2>&1; \
        exec \"$engine\" run -d --name \"$name\" --label io.autogit.runner=\"$volume\" \
        -v \"$volume:/etc/gitlab-runner\" -v \"$sock:/var/run/docker.sock\" \"$@\" \"$image\"";
    let access = match isolation.engine {
        EngineAccess::Proxy => "proxy",
        EngineAccess::Socket => "socket",
    };
    let net = match isolation.network {
        JobNetwork::Runner => crate::runner::job_network(runner, JobNetwork::Runner),
        JobNetwork::Bridge | JobNetwork::Host => String::new(),
    };
    [
        "sh",
        "-c",
        script,
        "sh",
        engine,
        &name,
        image,
        access,
        &isolation.proxy_socket,
        &net,
        &volume,
    ]
    .map(str::to_owned)
    .to_vec()
}

/// The exit status of [`start_argv`] when the host has no engine proxy.
pub const NO_PROXY_EXIT: i32 = 3;

/// Stops and removes the runner's container (its configuration volume stays).
pub fn stop_argv(runner: &Runner) -> Vec<String> {
    vec![
        engine_of(runner).to_owned(),
        "rm".to_owned(),
        "-f".to_owned(),
        container_name(&runner.name),
    ]
}

/// Lists the runner's container if it runs (non-empty output: running).
pub fn running_argv(runner: &Runner) -> Vec<String> {
    vec![
        engine_of(runner).to_owned(),
        "ps".to_owned(),
        "-q".to_owned(),
        "--filter".to_owned(),
        format!("name=^{}$", container_name(&runner.name)),
    ]
}

/// A runner's container as its host's engine reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerState {
    Running,
    /// It exists and does not run (exited, dead, created): it died, since autogit stops a
    /// runner by removing its container.
    Stopped,
    /// No such container: stopped on purpose (on-demand) or never started.
    Absent,
}

/// Asks the engine for the state of the runner's container (`running`, `exited`, …; a
/// failure with "no such" in its message means there is none).
pub fn inspect_argv(runner: &Runner) -> Vec<String> {
    vec![
        engine_of(runner).to_owned(),
        "inspect".to_owned(),
        "--format".to_owned(),
        "{{.State.Status}}".to_owned(),
        container_name(&runner.name),
    ]
}

/// Reads [`inspect_argv`]'s answer. `None`: the engine failed in a way that says nothing
/// about the container (the caller reports the error).
pub fn parse_inspect(success: bool, stdout: &str, stderr: &str) -> Option<ContainerState> {
    if !success {
        let e = stderr.to_ascii_lowercase();
        return (e.contains("no such") || e.contains("not found"))
            .then_some(ContainerState::Absent);
    }
    match stdout.trim() {
        "running" | "restarting" | "paused" => Some(ContainerState::Running),
        "" => None,
        _ => Some(ContainerState::Stopped),
    }
}

/// Restarts the runner's container as it was (`docker start`).
pub fn restart_argv(runner: &Runner) -> Vec<String> {
    vec![
        engine_of(runner).to_owned(),
        "start".to_owned(),
        container_name(&runner.name),
    ]
}

/// What the runner repair loop does about one runner's container, with the same policy as
/// the platform's services (`lifecycle::decide_repair`: restart budget, backoff with jitter,
/// escalation restart → recreate, hands off when flagged or `self_heal: false`). A running
/// container is healthy; an absent one is the autoscaler's business, not a repair.
#[derive(Clone, Debug, PartialEq)]
pub enum RunnerRepair {
    Healthy,
    Nothing,
    Decided(crate::lifecycle::RepairDecision),
}

pub fn decide_runner_repair(
    observed: ContainerState,
    policy: &crate::lifecycle::RepairPolicy,
    history: &crate::lifecycle::History,
    now: u64,
    jitter: f64,
) -> RunnerRepair {
    match observed {
        ContainerState::Running => RunnerRepair::Healthy,
        ContainerState::Absent => RunnerRepair::Nothing,
        ContainerState::Stopped => RunnerRepair::Decided(crate::lifecycle::decide_repair(
            policy, history, now, jitter,
        )),
    }
}

/// The service name a runner's repairs are recorded under in the state store.
pub fn repair_service(runner: &str) -> String {
    format!("runner-{runner}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn matching() {
        assert!(job_matches(&tags(&["gpu"]), &tags(&["gpu", "cuda"])));
        assert!(!job_matches(&tags(&["gpu", "windows"]), &tags(&["gpu"])));
        assert!(job_matches(&[], &[]));
        assert!(!job_matches(&[], &tags(&["gpu"])));
        assert!(!job_matches(&tags(&["gpu"]), &[]));
    }

    #[test]
    fn decisions() {
        use Action::*;
        use RunnerMode::*;
        let cases = [
            // mode, running, demand, idle_since, now => action, idle_since
            (OnDemand, false, true, None, 100, Start, None),
            (OnDemand, false, false, None, 100, Keep, None),
            (OnDemand, true, true, Some(50), 100, Keep, None),
            (OnDemand, true, false, None, 100, Keep, Some(100)),
            (OnDemand, true, false, Some(100), 399, Keep, Some(100)),
            (OnDemand, true, false, Some(100), 400, Stop, None),
            (Always, false, false, None, 100, Start, None),
            (Always, true, false, Some(1), 10_000, Keep, None),
        ];
        for (mode, running, demand, idle, now, action, idle_after) in cases {
            assert_eq!(
                decide(mode, running, demand, idle, now, 300),
                Decision {
                    action,
                    idle_since: idle_after
                },
                "{mode:?} running={running} demand={demand} idle={idle:?} now={now}"
            );
        }
    }

    #[test]
    fn capabilities_are_tags_for_matching() {
        use crate::config::Capability;
        let mut r = runner("gpu-box");
        r.tags = tags(&["cuda"]);
        r.capabilities = vec![Capability::Inference];
        assert!(runner_takes(&r, &tags(&["inference"])));
        assert!(runner_takes(&r, &tags(&["cuda", "inference"])));
        assert!(!runner_takes(&r, &tags(&["render"])));
        assert!(
            !runner_takes(&r, &[]),
            "a tagged runner takes no untagged job"
        );
        r.tags.clear();
        assert!(
            !runner_takes(&r, &[]),
            "a runner with only capabilities is registered with tags, so not run_untagged"
        );
    }

    fn runner(name: &str) -> Runner {
        Runner {
            name: name.into(),
            host: "desktop".into(),
            user: None,
            executor: Executor::Podman,
            concurrent: 1,
            tags: vec![],
            gpu: None,
            capabilities: vec![],
            wsl2: true,
            min: 0,
            max: 1,
            sharing: Default::default(),
            protected: false,
        }
    }

    #[test]
    fn commands_keep_names_out_of_the_script() {
        let r = runner("wsl-gpu");
        let a = start_argv(
            &r,
            "gitlab/gitlab-runner:alpine-v18.5.0",
            &Isolation::default(),
        );
        assert_eq!(a[0], "sh");
        assert_eq!(
            &a[4..],
            [
                "podman",
                "autogit-runner-wsl-gpu",
                "gitlab/gitlab-runner:alpine-v18.5.0",
                "proxy",
                "/run/autogit/engine-proxy.sock",
                "autogit-runner-wsl-gpu",
                "autogit-runner-wsl-gpu"
            ]
        );
        let socket = Isolation {
            engine: EngineAccess::Socket,
            network: JobNetwork::Bridge,
            ..Isolation::default()
        };
        let b = start_argv(&r, "i", &socket);
        assert_eq!(
            &b[7..],
            [
                "socket",
                "/run/autogit/engine-proxy.sock",
                "",
                "autogit-runner-wsl-gpu"
            ]
        );
        let third = start_replica_argv(&r, 2, "i", &socket);
        assert_eq!(third[5], "autogit-runner-wsl-gpu-3");
        assert_eq!(
            third[10], "autogit-runner-wsl-gpu",
            "one configuration volume"
        );
        assert_eq!(
            parse_replicas(
                "wsl-gpu",
                "autogit-runner-wsl-gpu-3 exited\nautogit-runner-wsl-gpu running\nautogit-runner-wsl-gpu-x running\nautogit-runner-wsl-gpu-1 running\n"
            ),
            [(0, true), (2, false)]
        );
        assert_eq!(
            quit_argv(&r, 1)[1..],
            ["kill", "--signal", "QUIT", "autogit-runner-wsl-gpu-2"]
        );
        assert!(
            !a[2].contains("wsl-gpu"),
            "names are arguments, not script text"
        );
        assert_eq!(
            stop_argv(&r),
            ["podman", "rm", "-f", "autogit-runner-wsl-gpu"]
        );
        assert_eq!(running_argv(&r)[4], "name=^autogit-runner-wsl-gpu$");
    }

    #[test]
    fn inspect_answers() {
        use ContainerState::*;
        let cases = [
            (true, "running\n", "", Some(Running)),
            (true, "restarting", "", Some(Running)),
            (true, "exited", "", Some(Stopped)),
            (true, "dead", "", Some(Stopped)),
            (true, "created", "", Some(Stopped)),
            (
                false,
                "",
                "Error: No such object: autogit-runner-x",
                Some(Absent),
            ),
            (false, "", "Error: no such container", Some(Absent)),
            (false, "", "Cannot connect to the Docker daemon", None),
            (true, "", "", None),
        ];
        for (ok, out, err, want) in cases {
            assert_eq!(parse_inspect(ok, out, err), want, "{ok} {out:?} {err:?}");
        }
    }

    #[test]
    fn runner_repairs_follow_the_service_policy() {
        use crate::lifecycle::{History, RepairAction, RepairDecision, RepairPolicy};
        let policy = RepairPolicy {
            self_heal: true,
            budget_max: 2,
            budget_window_secs: 600,
            backoff_initial_secs: 10,
            backoff_max_secs: 60,
        };
        let h = |repairs: &[u64], attempt, flagged| History {
            repairs: repairs.to_vec(),
            attempt,
            flagged,
            flag_reason: None,
        };
        use ContainerState::*;
        let cases = [
            (Running, h(&[], 0, false), 100, RunnerRepair::Healthy),
            (Absent, h(&[], 0, false), 100, RunnerRepair::Nothing),
            (
                Stopped,
                h(&[], 0, false),
                100,
                RunnerRepair::Decided(RepairDecision::Repair(RepairAction::Restart)),
            ),
            (
                Stopped,
                h(&[100], 1, false),
                102,
                RunnerRepair::Decided(RepairDecision::WaitUntil(110)),
            ),
            (
                Stopped,
                h(&[100], 1, false),
                110,
                RunnerRepair::Decided(RepairDecision::Repair(RepairAction::Recreate)),
            ),
            (
                Stopped,
                h(&[100, 110], 2, false),
                200,
                RunnerRepair::Decided(RepairDecision::GiveUp {
                    reason: "restart budget exhausted: 2 repairs in the last 600s (limit 2)".into(),
                }),
            ),
            (
                Stopped,
                h(&[], 0, true),
                100,
                RunnerRepair::Decided(RepairDecision::HandsOff {
                    reason: "human intervention flag is set".into(),
                }),
            ),
        ];
        for (observed, history, now, want) in cases {
            assert_eq!(
                decide_runner_repair(observed, &policy, &history, now, 0.99999),
                want,
                "{observed:?} {history:?} at {now}"
            );
        }
        assert_eq!(repair_service("g1"), "runner-g1");
    }
}
