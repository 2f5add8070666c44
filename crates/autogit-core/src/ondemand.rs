//! On-demand runners, as decisions: whether a runner has work (a pending or running job whose
//! tags it carries), and whether to start it, keep it or stop it after its cooldown. The
//! commands that start and stop a runner's container are built here too; the binary runs
//! them on the runner's host.

use crate::config::{Executor, Runner, RunnerMode};

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
/// image with its configuration volume and the engine's socket, so jobs run as sibling
/// containers. Podman's socket is found on the host (`$XDG_RUNTIME_DIR/podman/podman.sock`,
/// else `/run/podman/podman.sock`) and also mounted at its own path, which is the `host` the
/// registered `config.toml` names (`core::runner::config_toml_on`).
pub fn start_argv(runner: &Runner, image: &str) -> Vec<String> {
    let engine = engine_of(runner);
    let name = container_name(&runner.name);
    let script = "engine=$1; name=$2; image=$3; \
        set --; \
        if [ \"$engine\" = podman ]; then sock=\"${XDG_RUNTIME_DIR:-/run}/podman/podman.sock\"; [ -S \"$sock\" ] || sock=/run/podman/podman.sock; set -- -v \"$sock:$sock\"; else sock=/var/run/docker.sock; fi; \
        \"$engine\" rm -f \"$name\" >/dev/null 2>&1; \
        exec \"$engine\" run -d --name \"$name\" --label io.autogit.runner=\"$name\" \
        -v \"$name:/etc/gitlab-runner\" -v \"$sock:/var/run/docker.sock\" \"$@\" \"$image\"";
    ["sh", "-c", script, "sh", engine, &name, image]
        .map(str::to_owned)
        .to_vec()
}

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
    fn commands_keep_names_out_of_the_script() {
        let r = Runner {
            name: "wsl-gpu".into(),
            host: "desktop".into(),
            user: None,
            executor: Executor::Podman,
            concurrent: 1,
            tags: vec![],
            gpu: None,
            capabilities: vec![],
            wsl2: true,
        };
        let a = start_argv(&r, "gitlab/gitlab-runner:alpine-v18.5.0");
        assert_eq!(a[0], "sh");
        assert_eq!(
            &a[4..],
            [
                "podman",
                "autogit-runner-wsl-gpu",
                "gitlab/gitlab-runner:alpine-v18.5.0"
            ]
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
}
