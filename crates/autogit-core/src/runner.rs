//! gitlab-runner's `config.toml`, rendered from the runner entries of `autogit.yml`.
//!
//! Tokens are secrets: the renderer takes them as input and the caller writes the file with
//! mode 0600 into the runner's configuration volume. Tags, `run_untagged` and the description
//! belong to the runner as GitLab knows it (GitLab 17+ runner-creation flow:
//! `POST /user/runners`), not to this file.

use crate::config::{EngineAccess, Executor, JobNetwork, Runner, Runners};
use std::fmt::Write as _;

/// What a rendered runner needs besides its configuration entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunnerAuth {
    /// GitLab's URL as the runner reaches it.
    pub url: String,
    /// The `glrt-` authentication token.
    pub token: String,
}

/// Default job image when a `.gitlab-ci.yml` names none.
pub const DEFAULT_JOB_IMAGE: &str = "debian:bookworm-slim";

/// A TOML basic string: quotes, backslashes and control characters escaped, so no value from
/// the configuration or from GitLab can break out of its string.
pub fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn list(items: &[String]) -> String {
    format!(
        "[{}]",
        items
            .iter()
            .map(|i| toml_str(i))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Renders `config.toml` for the runners of one host. `check_interval` is in seconds.
/// Podman runners get Podman's socket guessed from the runner's user; [`config_toml_on`]
/// takes the socket found on the host instead.
pub fn config_toml(
    runners: &Runners,
    on_host: &[(&Runner, RunnerAuth)],
    check_interval: u32,
) -> String {
    config_toml_on(runners, on_host, check_interval, None)
}

/// [`config_toml`] with the Podman socket found on the host (what [`podman_socket_argv`]
/// printed there): the path the runner's container sees it at, since the on-demand start
/// mounts it at the same path (`core::ondemand::start_argv`).
pub fn config_toml_on(
    runners: &Runners,
    on_host: &[(&Runner, RunnerAuth)],
    check_interval: u32,
    podman_socket: Option<&str>,
) -> String {
    let concurrent: u32 = on_host
        .iter()
        .map(|(r, _)| r.concurrent)
        .sum::<u32>()
        .max(1);
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# Rendered by autogit; edit autogit.yml instead. Holds tokens: keep mode 0600."
    );
    let _ = writeln!(o, "concurrent = {concurrent}");
    let _ = writeln!(o, "check_interval = {check_interval}");
    let _ = writeln!(
        o,
        "shutdown_timeout = {}",
        runners.cooldown.as_secs().min(3600)
    );
    let _ = writeln!(o, "log_level = \"info\"");
    for (r, auth) in on_host {
        let _ = writeln!(o);
        let _ = writeln!(o, "[[runners]]");
        let _ = writeln!(o, "  name = {}", toml_str(&r.name));
        let _ = writeln!(o, "  url = {}", toml_str(&auth.url));
        let _ = writeln!(o, "  token = {}", toml_str(&auth.token));
        let _ = writeln!(o, "  limit = {}", r.concurrent);
        match r.executor {
            Executor::Shell => {
                let _ = writeln!(o, "  executor = \"shell\"");
                continue;
            }
            Executor::Docker | Executor::Podman => {
                let _ = writeln!(o, "  executor = \"docker\"");
            }
        }
        let mut volumes = vec!["/cache".to_owned()];
        let mut env = Vec::new();
        if r.wsl2 {
            // WSL2 exposes the GPU as /dev/dxg with the driver libraries under /usr/lib/wsl.
            volumes.push("/usr/lib/wsl:/usr/lib/wsl:ro".to_owned());
            env.push("LD_LIBRARY_PATH=/usr/lib/wsl/lib".to_owned());
        }
        if !env.is_empty() {
            let _ = writeln!(o, "  environment = {}", list(&env));
        }
        let iso = &runners.isolation;
        if iso.job_engine_socket {
            // Opted in (a `validate` warning): the socket the runner's container has.
            volumes.push("/var/run/docker.sock:/var/run/docker.sock".to_owned());
        }
        let _ = writeln!(o, "  [runners.docker]");
        // Behind the engine proxy the runner's container sees the proxy at the default
        // socket path, whatever the host's engine is.
        if r.executor == Executor::Podman && iso.engine == EngineAccess::Socket {
            // Podman's Docker-compatible socket (rootless: the user's runtime directory).
            let uid = if r.user.as_deref() == Some("root") {
                None
            } else {
                Some(1000)
            };
            let sock = match (podman_socket, uid) {
                (Some(p), _) => format!("unix://{p}"),
                (None, Some(u)) => format!("unix:///run/user/{u}/podman/podman.sock"),
                (None, None) => "unix:///run/podman/podman.sock".to_owned(),
            };
            let _ = writeln!(o, "    host = {}", toml_str(&sock));
        }
        let _ = writeln!(o, "    image = {}", toml_str(DEFAULT_JOB_IMAGE));
        let _ = writeln!(o, "    privileged = {}", iso.privileged);
        let _ = writeln!(
            o,
            "    network_mode = {}",
            toml_str(&job_network(r, iso.network))
        );
        let _ = writeln!(o, "    disable_cache = false");
        let _ = writeln!(o, "    volumes = {}", list(&volumes));
        if r.gpu.is_some() {
            let _ = writeln!(o, "    gpus = \"all\"");
        }
        if r.wsl2 {
            let _ = writeln!(o, "    devices = {}", list(&["/dev/dxg".to_owned()]));
        }
        let _ = writeln!(o, "  [runners.cache]");
        let _ = writeln!(o, "    MaxUploadedArchiveSize = 0");
    }
    o
}

/// The network a runner's job containers join (`[runners.docker] network_mode`): the
/// runner's own bridge network by default (`runners.isolation.network`).
pub fn job_network(runner: &Runner, network: JobNetwork) -> String {
    match network {
        JobNetwork::Runner => runner_volume(&runner.name),
        JobNetwork::Bridge => "bridge".to_owned(),
        JobNetwork::Host => "host".to_owned(),
    }
}

/// What the engine proxy of a runner's host lets that runner's jobs have
/// (`core::engine_proxy::Policy`): its job network, and for WSL2 runners `/dev/dxg` and a
/// read-only `/usr/lib/wsl`.
pub fn proxy_policy(runners: &[&Runner], network: JobNetwork) -> crate::engine_proxy::Policy {
    let mut p = crate::engine_proxy::Policy::default();
    for r in runners {
        p.networks.push(job_network(r, network));
        if r.wsl2 {
            p.host_paths.push("/usr/lib/wsl".to_owned());
            p.devices.push("/dev/dxg".to_owned());
        }
    }
    for v in [&mut p.networks, &mut p.host_paths, &mut p.devices] {
        v.sort();
        v.dedup();
    }
    p
}

/// The name of a runner's container and configuration volume on its host.
pub fn runner_volume(name: &str) -> String {
    format!("autogit-runner-{name}")
}

/// Where gitlab-runner reads its configuration, in its container (the runner's volume).
pub const CONFIG_DIR: &str = "/etc/gitlab-runner";

/// The script that finds Podman's socket on a host (as the SSH user): the user's runtime
/// directory for rootless Podman, else the system socket. Prints the path.
pub const PODMAN_SOCKET_SCRIPT: &str = "sock=\"${XDG_RUNTIME_DIR:-/run}/podman/podman.sock\"; \
    [ -S \"$sock\" ] || sock=/run/podman/podman.sock; printf '%s\\n' \"$sock\"";

/// Prints the path of Podman's socket on the host ([`PODMAN_SOCKET_SCRIPT`]).
pub fn podman_socket_argv() -> Vec<String> {
    ["sh", "-c", PODMAN_SOCKET_SCRIPT]
        .map(str::to_owned)
        .to_vec()
}

/// Writes the rendered `config.toml` (read from standard input: it holds the token) into the
/// runner's configuration volume, mode 0600, through a temporary file renamed into place, in
/// a one-shot container of the runner image. Names and paths are arguments of the script,
/// never part of its text.
pub fn write_config_argv(engine: &str, runner: &str, image: &str) -> Vec<String> {
    let script = "umask 077; d=$1; cat > \"$d/.config.toml.autogit\" && mv -f \"$d/.config.toml.autogit\" \"$d/config.toml\"";
    vec![
        engine.to_owned(),
        "run".to_owned(),
        "--rm".to_owned(),
        "-i".to_owned(),
        "--entrypoint".to_owned(),
        "sh".to_owned(),
        "-v".to_owned(),
        format!("{}:{CONFIG_DIR}", runner_volume(runner)),
        image.to_owned(),
        "-c".to_owned(),
        script.to_owned(),
        "sh".to_owned(),
        CONFIG_DIR.to_owned(),
    ]
}

/// `gitlab-runner register --non-interactive` in a one-shot container of the runner image,
/// writing `config.toml` into the runner's volume. The `glrt-` token is read from standard
/// input into `CI_SERVER_TOKEN` (gitlab-runner's variable for `--token`) and handed to the
/// container by name, so it never appears in an argument list (`ps` on either machine).
/// `engine` is `docker` or `podman`; GPU runners get `--docker-gpus all`, WSL2 ones
/// `/dev/dxg` and `/usr/lib/wsl`.
pub fn register_argv(engine: &str, runner: &Runner, image: &str, url: &str) -> Vec<String> {
    let mut v: Vec<String> = [
        "sh",
        "-c",
        "IFS= read -r CI_SERVER_TOKEN || exit 97; export CI_SERVER_TOKEN; exec \"$@\"",
        "sh",
        engine,
        "run",
        "--rm",
        "-i",
        "-e",
        "CI_SERVER_TOKEN",
        "-v",
    ]
    .map(str::to_owned)
    .into();
    v.push(format!(
        "{}:/etc/gitlab-runner",
        runner_volume(&runner.name)
    ));
    v.push(image.to_owned());
    v.extend(
        [
            "register",
            "--non-interactive",
            "--url",
            url,
            "--name",
            &runner.name,
        ]
        .map(str::to_owned),
    );
    match runner.executor {
        Executor::Shell => v.extend(["--executor".to_owned(), "shell".to_owned()]),
        Executor::Docker | Executor::Podman => {
            v.extend(
                ["--executor", "docker", "--docker-image", DEFAULT_JOB_IMAGE].map(str::to_owned),
            );
            if runner.gpu.is_some() {
                v.extend(["--docker-gpus".to_owned(), "all".to_owned()]);
            }
            if runner.wsl2 {
                v.extend(
                    [
                        "--docker-devices",
                        "/dev/dxg",
                        "--docker-volumes",
                        "/usr/lib/wsl:/usr/lib/wsl:ro",
                    ]
                    .map(str::to_owned),
                );
            }
        }
    }
    v
}

/// What autogit asks GitLab to do for its runners.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GitLabOp {
    /// `POST /user/runners` with `runner_type=instance_type` (`runner register`).
    CreateInstanceRunner,
    /// `POST /user/runners` for a group or a project runner (`gitlab runner-token --group/--project`).
    CreateScopedRunner,
    /// `DELETE /runners/:id` of an instance runner (`runner unregister`).
    DeleteInstanceRunner,
    /// `DELETE /runners/:id` of a group or project runner.
    DeleteScopedRunner,
    /// Every project's pending and running jobs (the on-demand autoscaler's demand).
    ListAllActiveJobs,
}

/// Which token an operation uses: the least-privileged one GitLab accepts for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenChoice {
    /// The token of this service account (`gitlab.service_accounts`).
    Account(&'static str),
    /// The admin token, and why nothing less will do.
    Admin(&'static str),
}

/// The token for `op`. The `ci` service account (scopes `create_runner`, `manage_runner`) is
/// not an administrator, and GitLab reserves instance runners and instance-wide reads to
/// administrators; everything else about runners goes through `ci`.
pub fn token_for(op: GitLabOp) -> TokenChoice {
    match op {
        GitLabOp::CreateInstanceRunner => {
            TokenChoice::Admin("only an administrator can create an instance runner")
        }
        GitLabOp::DeleteInstanceRunner => {
            TokenChoice::Admin("only an administrator can delete an instance runner")
        }
        GitLabOp::ListAllActiveJobs => TokenChoice::Admin(
            "only an administrator sees the jobs of every project (GitLab has no instance-wide job list for runners' tokens)",
        ),
        GitLabOp::CreateScopedRunner | GitLabOp::DeleteScopedRunner => TokenChoice::Account("ci"),
    }
}

/// A host discovery found and can use (it answers SSH with a trusted key and reported its
/// inventory), as `host: auto` resolution sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// How autogit reaches it (the address discovery used).
    pub host: String,
    /// The names it announced (`autogit agent`: instance and host name), if any.
    pub names: Vec<String>,
    pub gpus: usize,
    pub wsl2: bool,
}

/// Which discovered host a `host: auto` runner runs on: the one whose announced name is the
/// runner's name (`autogit agent --name NAME`); else the only one that has what the runner
/// needs (NVIDIA GPUs for `gpu: nvidia`, WSL2 for `wsl2: true`). None or several is an error
/// that says what to do.
pub fn resolve_auto(runner: &Runner, candidates: &[Candidate]) -> Result<String, String> {
    let named: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| {
            c.names.iter().any(|n| {
                n.trim_end_matches('.')
                    .trim_end_matches(".local")
                    .eq_ignore_ascii_case(&runner.name)
            })
        })
        .collect();
    if let [one] = named.as_slice() {
        return Ok(one.host.clone());
    }
    let fits: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| (runner.gpu.is_none() || c.gpus > 0) && (!runner.wsl2 || c.wsl2))
        .collect();
    let needs = match (runner.gpu.is_some(), runner.wsl2) {
        (true, true) => "NVIDIA GPUs under WSL2",
        (true, false) => "NVIDIA GPUs",
        (false, true) => "WSL2",
        (false, false) => "nothing in particular",
    };
    match fits.as_slice() {
        [one] => Ok(one.host.clone()),
        [] => Err(format!(
            "no discovered host that is trusted has what runner `{}` needs ({needs}); run `autogit agent` on it, trust it, or set its host",
            runner.name
        )),
        many => Err(format!(
            "{} discovered hosts fit runner `{}` ({}): set its host, or run `autogit agent --name {}` on the one to use",
            many.len(),
            runner.name,
            many.iter()
                .map(|c| c.host.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            runner.name
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_reads_the_token_from_stdin_only() {
        let r = Runner {
            name: "gpu-1".into(),
            host: "10.0.0.2".into(),
            user: None,
            executor: Executor::Podman,
            concurrent: 1,
            tags: Vec::new(),
            gpu: Some(crate::config::GpuVendor::Nvidia),
            capabilities: Vec::new(),
            wsl2: true,
            min: 0,
            max: 1,
            sharing: Default::default(),
            protected: false,
        };
        let argv = register_argv(
            "podman",
            &r,
            "gitlab/gitlab-runner:alpine-v18.5.0",
            "https://git.example.test",
        );
        let joined = argv.join(" ");
        assert!(
            joined.starts_with("sh -c IFS= read -r CI_SERVER_TOKEN"),
            "{joined}"
        );
        assert!(joined.contains("podman run --rm -i -e CI_SERVER_TOKEN -v autogit-runner-gpu-1:/etc/gitlab-runner gitlab/gitlab-runner:alpine-v18.5.0 register --non-interactive --url https://git.example.test --name gpu-1 --executor docker"), "{joined}");
        assert!(joined.contains("--docker-gpus all --docker-devices /dev/dxg --docker-volumes /usr/lib/wsl:/usr/lib/wsl:ro"), "{joined}");
        assert!(!joined.contains("--token"));
    }

    #[test]
    fn podman_runners_name_the_socket_found_on_the_host() {
        let r = Runner {
            name: "p1".into(),
            host: "h".into(),
            user: Some("ci".into()),
            executor: Executor::Podman,
            concurrent: 1,
            tags: Vec::new(),
            gpu: None,
            capabilities: Vec::new(),
            wsl2: true,
            min: 0,
            max: 1,
            sharing: Default::default(),
            protected: false,
        };
        let auth = RunnerAuth {
            url: "https://git.example.test".into(),
            token: "glrt-x".into(),
        };
        let mut runners = crate::config::Config::default().runners;
        let on = [(&r, auth)];
        let proxied = config_toml_on(&runners, &on, 3, Some("/run/user/1001/podman/podman.sock"));
        assert!(!proxied.contains("host ="), "behind the proxy: {proxied}");
        assert!(
            proxied.contains("network_mode = \"autogit-runner-p1\""),
            "{proxied}"
        );
        runners.isolation.engine = EngineAccess::Socket;
        let found = config_toml_on(&runners, &on, 3, Some("/run/user/1001/podman/podman.sock"));
        assert!(
            found.contains("host = \"unix:///run/user/1001/podman/podman.sock\""),
            "{found}"
        );
        assert!(found.contains("devices = [\"/dev/dxg\"]"), "{found}");
        assert!(found.contains("/usr/lib/wsl:/usr/lib/wsl:ro"), "{found}");
        let guessed = config_toml(&runners, &on, 3);
        assert!(guessed.contains("unix:///run/user/1000/podman/podman.sock"));
    }

    #[test]
    fn the_config_is_written_from_stdin_with_names_as_arguments() {
        let a = write_config_argv("podman", "p1", "gitlab/gitlab-runner:alpine-v18.5.0");
        assert_eq!(
            a[..9],
            [
                "podman",
                "run",
                "--rm",
                "-i",
                "--entrypoint",
                "sh",
                "-v",
                "autogit-runner-p1:/etc/gitlab-runner",
                "gitlab/gitlab-runner:alpine-v18.5.0"
            ]
        );
        assert_eq!(a[a.len() - 1], CONFIG_DIR);
        assert!(!a[10].contains("p1") && a[10].contains("umask 077"));
    }

    #[test]
    fn auto_hosts_resolve_by_name_then_by_need() {
        let runner = |name: &str, gpu: bool, wsl2: bool| Runner {
            name: name.into(),
            host: "auto".into(),
            user: None,
            executor: Executor::Docker,
            concurrent: 1,
            tags: Vec::new(),
            gpu: gpu.then_some(crate::config::GpuVendor::Nvidia),
            capabilities: Vec::new(),
            wsl2,
            min: 0,
            max: 1,
            sharing: Default::default(),
            protected: false,
        };
        let c = |host: &str, names: &[&str], gpus: usize, wsl2: bool| Candidate {
            host: host.into(),
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            gpus,
            wsl2,
        };
        let lan = [
            c("10.0.0.2", &["desktop-3090ti", "desktop.local."], 1, false),
            c("10.0.0.3", &["laptop"], 1, true),
            c("10.0.0.4", &[], 0, false),
        ];
        let cases: [(Runner, &[Candidate], Result<&str, &str>); 7] = [
            (runner("desktop-3090ti", true, false), &lan, Ok("10.0.0.2")),
            (runner("DESKTOP", false, false), &lan, Ok("10.0.0.2")),
            (runner("wsl-gpu", true, true), &lan, Ok("10.0.0.3")),
            (
                runner("gpu", true, false),
                &lan,
                Err("2 discovered hosts fit"),
            ),
            (runner("cpu", false, false), &lan[2..], Ok("10.0.0.4")),
            (runner("gpu", true, false), &lan[2..], Err("(NVIDIA GPUs)")),
            (runner("any", false, false), &[], Err("no discovered host")),
        ];
        for (r, cands, want) in cases {
            let got = resolve_auto(&r, cands);
            match (want, &got) {
                (Ok(h), Ok(g)) => assert_eq!(g, h, "{}", r.name),
                (Err(m), Err(e)) => assert!(e.contains(m), "{}: {e}", r.name),
                _ => panic!("{}: {got:?}, wanted {want:?}", r.name),
            }
        }
    }

    #[test]
    fn each_operation_uses_the_least_privileged_token() {
        use GitLabOp::*;
        let cases = [
            (CreateInstanceRunner, None),
            (DeleteInstanceRunner, None),
            (ListAllActiveJobs, None),
            (CreateScopedRunner, Some("ci")),
            (DeleteScopedRunner, Some("ci")),
        ];
        for (op, account) in cases {
            match (token_for(op), account) {
                (TokenChoice::Account(a), Some(want)) => assert_eq!(a, want, "{op:?}"),
                (TokenChoice::Admin(why), None) => assert!(why.contains("administrator"), "{op:?}"),
                (got, _) => panic!("{op:?}: {got:?}"),
            }
        }
    }
}
