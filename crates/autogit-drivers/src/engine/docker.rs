//! The Docker implementation of [`ContainerEngine`], over the engine's unix socket with bollard.
//! It also speaks to Podman's Docker-compatible socket.
//!
//! Finding the socket: an explicit path wins; else `DOCKER_HOST` (`unix://` only, and then
//! nothing else is tried, like the docker CLI); else the rootless Docker socket
//! `$XDG_RUNTIME_DIR/docker.sock`, the system socket `/var/run/docker.sock`, and Podman's sockets
//! (`$XDG_RUNTIME_DIR/podman/podman.sock`, `/run/podman/podman.sock`), in that order. The API
//! version is negotiated (Debian's engine speaks 1.41), and engines older than
//! [`MIN_API`] are refused.
//!
//! Environment values of containers may hold secrets: nothing here logs or formats them, and
//! errors never quote a create request.

use super::{
    ContainerEngine, EngineError, EngineEvent, EngineInfo, Health, Observed, PullProgress, RunState,
};
use autogit_core::container::{ContainerSpec, MountSpec, labels};
use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, EndpointSettings,
    EventMessage, ExecConfig, HealthConfig, HealthStatusEnum, HostConfig, Mount, MountType,
    NetworkCreateRequest, NetworkingConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
    VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, EventsOptions, InspectContainerOptions,
    InspectNetworkOptions, ListContainersOptions, LogsOptions, RemoveContainerOptions,
    RemoveVolumeOptions, RestartContainerOptions, StartContainerOptions, StopContainerOptions,
};
use futures_util::StreamExt;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The oldest Docker API autogit works with (Docker 19.03).
pub const MIN_API: (u32, u32) = (1, 40);

/// Seconds a single request may take to get its response headers (streams may last longer).
const REQUEST_TIMEOUT_SECS: u64 = 120;

/// How long `remove` and `create` wait for a removal the engine already has in progress
/// (one started by an autogit that was killed, or by someone else) before giving up.
const REMOVAL_WAIT: Duration = Duration::from_secs(60);

/// The engine is already removing this container (409 "removal of container … is already
/// in progress").
fn removal_in_progress(e: &BollardError) -> bool {
    status_of(e).is_some_and(|(code, message)| code == 409 && message.contains("in progress"))
}

/// A connection to a Docker or Podman engine.
#[derive(Clone)]
pub struct Docker {
    client: bollard::Docker,
    socket: PathBuf,
}

impl std::fmt::Debug for Docker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Docker")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

fn env_get<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
    env.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// Where to look for the engine's socket, in order (see the module documentation). `Err` when
/// `DOCKER_HOST` names something other than a unix socket.
pub fn socket_candidates(
    socket: Option<&Path>,
    env: &[(String, String)],
) -> Result<Vec<PathBuf>, EngineError> {
    if let Some(s) = socket {
        let text = s.to_string_lossy();
        return Ok(vec![PathBuf::from(
            text.strip_prefix("unix://").unwrap_or(&text),
        )]);
    }
    if let Some(host) = env_get(env, "DOCKER_HOST") {
        return match host.strip_prefix("unix://") {
            Some(path) => Ok(vec![PathBuf::from(path)]),
            None => Err(EngineError::NoEngine {
                tried: format!(
                    "DOCKER_HOST={host} is not a unix:// socket, the only kind autogit supports"
                ),
            }),
        };
    }
    let mut out = Vec::new();
    let xdg = env_get(env, "XDG_RUNTIME_DIR").map(PathBuf::from);
    if let Some(x) = &xdg {
        out.push(x.join("docker.sock"));
    }
    out.push(PathBuf::from("/var/run/docker.sock"));
    if let Some(x) = &xdg {
        out.push(x.join("podman").join("podman.sock"));
    }
    out.push(PathBuf::from("/run/podman/podman.sock"));
    Ok(out)
}

/// The io error at the root of a bollard error, if any (connection failures).
fn io_cause(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        cur = err.source();
    }
    None
}

fn status_of(e: &BollardError) -> Option<(u16, &str)> {
    match e {
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => Some((*status_code, message.as_str())),
        _ => None,
    }
}

/// What a 404 is about: usually the object asked for, but starting a container whose network
/// is gone is a 404 about the network, which the engine's message names.
fn missing_object(what: String, message: &str) -> String {
    let message = message.trim();
    if message.starts_with("network ") && !what.starts_with("network ") {
        message.trim_end_matches(" not found").to_owned()
    } else {
        what
    }
}

/// Splits an image reference into repository and tag (`None` for digests or no tag).
fn split_image(image: &str) -> (&str, Option<&str>) {
    if image.contains('@') {
        return (image, None);
    }
    let last_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_slash..].rfind(':') {
        Some(i) => (&image[..last_slash + i], Some(&image[last_slash + i + 1..])),
        None => (image, None),
    }
}

fn restart_policy(name: &str) -> RestartPolicyNameEnum {
    match name {
        "always" => RestartPolicyNameEnum::ALWAYS,
        "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
        "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
        _ => RestartPolicyNameEnum::NO,
    }
}

fn secs_to_nanos(secs: u64) -> i64 {
    i64::try_from(secs)
        .unwrap_or(i64::MAX / 1_000_000_000)
        .saturating_mul(1_000_000_000)
}

/// The engine's create request for a spec: config, host config and networking config.
pub fn create_body(spec: &ContainerSpec) -> ContainerCreateBody {
    let mut exposed = Vec::new();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in &spec.ports {
        let key = format!("{}/{}", p.container_port, if p.udp { "udp" } else { "tcp" });
        if !exposed.contains(&key) {
            exposed.push(key.clone());
        }
        bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: p.host_ip.clone(),
                host_port: Some(p.host_port.to_string()),
            });
    }
    let mounts = spec
        .mounts
        .iter()
        .map(|m| match m {
            MountSpec::Volume { name, target } => Mount {
                target: Some(target.clone()),
                source: Some(name.clone()),
                typ: Some(MountType::VOLUME),
                read_only: Some(false),
                ..Default::default()
            },
            MountSpec::Bind {
                source,
                target,
                read_only,
            } => Mount {
                target: Some(target.clone()),
                source: Some(source.clone()),
                typ: Some(MountType::BIND),
                read_only: Some(*read_only),
                ..Default::default()
            },
        })
        .collect::<Vec<_>>();
    let host_config = HostConfig {
        nano_cpus: (spec.nano_cpus > 0).then_some(spec.nano_cpus),
        memory: (spec.memory_bytes > 0).then_some(spec.memory_bytes),
        shm_size: spec.shm_size_bytes,
        restart_policy: Some(RestartPolicy {
            name: Some(restart_policy(&spec.restart_policy)),
            maximum_retry_count: None,
        }),
        port_bindings: (!bindings.is_empty()).then_some(bindings),
        mounts: (!mounts.is_empty()).then_some(mounts),
        network_mode: (!spec.network.is_empty()).then(|| spec.network.clone()),
        ..Default::default()
    };
    let healthcheck = spec.healthcheck.as_ref().map(|h| HealthConfig {
        test: Some(h.test.clone()),
        interval: Some(secs_to_nanos(h.interval_secs)),
        timeout: Some(secs_to_nanos(h.timeout_secs)),
        retries: Some(i64::from(h.retries)),
        start_period: Some(secs_to_nanos(h.start_period_secs)),
        ..Default::default()
    });
    let networking_config = (!spec.network.is_empty()).then(|| NetworkingConfig {
        endpoints_config: Some(HashMap::from([(
            spec.network.clone(),
            EndpointSettings {
                aliases: (!spec.aliases.is_empty()).then(|| spec.aliases.clone()),
                ..Default::default()
            },
        )])),
    });
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: (!spec.command.is_empty()).then(|| spec.command.clone()),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(
            spec.labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        hostname: spec.hostname.clone(),
        healthcheck,
        host_config: Some(host_config),
        networking_config,
        ..Default::default()
    }
}

/// The Docker engine's default `/dev/shm` size: a container created without one reads as
/// having this.
const DEFAULT_SHM: i64 = 64 << 20;

fn nanos_to_secs(n: Option<i64>) -> u64 {
    n.map_or(0, |n| u64::try_from(n / 1_000_000_000).unwrap_or(0))
}

/// The spec a container was created with, from the engine's inspection of it and of its
/// image (`create_body` read backwards). What the image sets (environment entries, command,
/// labels, health check) and what the engine fills in by itself (the host name from the id,
/// the id among the aliases, the default `/dev/shm`) are left out, so a container created
/// from a spec reads back as that spec.
pub fn spec_from_inspect(
    c: &ContainerInspectResponse,
    image: Option<&bollard::models::ImageConfig>,
) -> ContainerSpec {
    let id = c.id.clone().unwrap_or_default();
    let short: String = id.chars().take(12).collect();
    let config = c.config.clone().unwrap_or_default();
    let host = c.host_config.clone().unwrap_or_default();
    let image_env: Vec<String> = image.and_then(|i| i.env.clone()).unwrap_or_default();
    let env: BTreeMap<String, String> = config
        .env
        .unwrap_or_default()
        .into_iter()
        .filter(|e| !image_env.contains(e))
        .filter_map(|e| e.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    let command = config
        .cmd
        .filter(|cmd| image.and_then(|i| i.cmd.as_ref()) != Some(cmd))
        .unwrap_or_default();
    let image_labels = image.and_then(|i| i.labels.clone()).unwrap_or_default();
    let labels: BTreeMap<String, String> = config
        .labels
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, v)| image_labels.get(k) != Some(v))
        .collect();
    let mut ports: Vec<autogit_core::container::PortBinding> = host
        .port_bindings
        .unwrap_or_default()
        .into_iter()
        .flat_map(|(key, bindings)| {
            let (port, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
            let container_port: u16 = port.parse().unwrap_or(0);
            let udp = proto == "udp";
            bindings.unwrap_or_default().into_iter().map(move |b| {
                autogit_core::container::PortBinding {
                    host_ip: b.host_ip.filter(|ip| !ip.is_empty()),
                    host_port: b.host_port.and_then(|p| p.parse().ok()).unwrap_or(0),
                    container_port,
                    udp,
                }
            })
        })
        .collect();
    ports.sort_by(|a, b| {
        (a.container_port, a.host_port, &a.host_ip).cmp(&(
            b.container_port,
            b.host_port,
            &b.host_ip,
        ))
    });
    // autogit creates with `Mounts`; compose (and `docker run -v`) with `Binds`
    // (`source:target[:options]`, a source without a leading `/` being a volume).
    let mut mounts: Vec<MountSpec> = host
        .mounts
        .unwrap_or_default()
        .into_iter()
        .map(|m| match m.typ {
            Some(MountType::VOLUME) => MountSpec::Volume {
                name: m.source.unwrap_or_default(),
                target: m.target.unwrap_or_default(),
            },
            _ => MountSpec::Bind {
                source: m.source.unwrap_or_default(),
                target: m.target.unwrap_or_default(),
                read_only: m.read_only.unwrap_or(false),
            },
        })
        .collect();
    mounts.extend(host.binds.unwrap_or_default().iter().filter_map(|b| {
        let mut parts = b.splitn(3, ':');
        let (source, target) = (parts.next()?, parts.next()?);
        let read_only = parts
            .next()
            .is_some_and(|o| o.split(',').any(|o| o == "ro"));
        Some(if source.starts_with('/') {
            MountSpec::Bind {
                source: source.to_owned(),
                target: target.to_owned(),
                read_only,
            }
        } else {
            MountSpec::Volume {
                name: source.to_owned(),
                target: target.to_owned(),
            }
        })
    }));
    let network = host.network_mode.clone().unwrap_or_default();
    let hostname = config.hostname.filter(|h| *h != short && !h.is_empty());
    // A started container's aliases gain its short id and, when they lack it, its host name
    // (appended): a host name after the first alias is the engine's.
    let aliases = c
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .and_then(|n| n.get(&network))
        .and_then(|e| e.aliases.clone())
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .filter(|(i, a)| *a != short && *a != id && (*i == 0 || Some(a) != hostname.as_ref()))
        .map(|(_, a)| a)
        .collect();
    let image_health = image.and_then(|i| i.healthcheck.as_ref());
    let healthcheck = config
        .healthcheck
        .filter(|h| Some(h) != image_health)
        .filter(|h| {
            h.test
                .as_ref()
                .is_some_and(|t| t.first().is_some_and(|f| f != "NONE"))
        })
        .map(|h| autogit_core::container::EngineHealthcheck {
            test: h.test.unwrap_or_default(),
            interval_secs: nanos_to_secs(h.interval),
            timeout_secs: nanos_to_secs(h.timeout),
            retries: u32::try_from(h.retries.unwrap_or(0)).unwrap_or(0),
            start_period_secs: nanos_to_secs(h.start_period),
        });
    let name = c
        .name
        .clone()
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_owned();
    // autogit's label, else compose's, else the name less `<project>-`.
    let service = labels
        .get(labels::SERVICE)
        .or_else(|| labels.get(labels::COMPOSE_SERVICE))
        .cloned()
        .or_else(|| {
            let project = labels.get(labels::MANAGED)?;
            name.strip_prefix(&format!("{project}-")).map(str::to_owned)
        })
        .unwrap_or_else(|| name.clone());
    ContainerSpec {
        name,
        service,
        image: config.image.unwrap_or_default(),
        command,
        env,
        secret_keys: Vec::new(),
        ports,
        mounts,
        nano_cpus: host.nano_cpus.unwrap_or(0),
        memory_bytes: host.memory.unwrap_or(0),
        shm_size_bytes: host.shm_size.filter(|s| *s != DEFAULT_SHM && *s != 0),
        network,
        aliases,
        hostname,
        healthcheck,
        labels,
        restart_policy: host
            .restart_policy
            .and_then(|r| r.name)
            .map_or_else(|| "no".to_owned(), |n| n.to_string()),
    }
}

/// Layers of a pull: seen and done, from the engine's progress messages.
#[derive(Debug, Default)]
struct Layers {
    seen: BTreeSet<String>,
    done: BTreeSet<String>,
}

impl Layers {
    /// Counts one progress message; returns (layers done, layers seen). The message about the
    /// tag itself ("Pulling from ...", id = the tag) is not a layer.
    fn update(&mut self, id: Option<&str>, status: &str, tag: Option<&str>) -> (u64, u64) {
        if let Some(id) = id.filter(|id| !id.is_empty() && Some(*id) != tag) {
            self.seen.insert(id.to_owned());
            if matches!(status, "Pull complete" | "Already exists") {
                self.done.insert(id.to_owned());
            }
        }
        (self.done.len() as u64, self.seen.len() as u64)
    }
}

/// Replaces the spec's environment values (secret ones always, others from 4 characters on,
/// so that short values do not garble the message) with `***`.
fn scrub(mut msg: String, spec: &ContainerSpec) -> String {
    let mut values: Vec<&str> = spec
        .env
        .iter()
        .filter(|(k, v)| !v.is_empty() && (v.len() >= 4 || spec.secret_keys.contains(k)))
        .map(|(_, v)| v.as_str())
        .collect();
    // Longest first, so a value containing another is hidden whole.
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    for v in values {
        msg = msg.replace(v, "***");
    }
    msg
}

/// Maps an engine event to the action autogit cares about, if it is one. Docker says
/// `health_status: healthy`; Podman may say `health_status` with the status in an attribute.
fn event_action(action: &str, attrs: &HashMap<String, String>) -> Option<String> {
    match action {
        "die" | "oom" | "kill" | "stop" | "start" | "destroy" => Some(action.to_owned()),
        "remove" => Some("destroy".to_owned()),
        a if a.starts_with("health_status") => {
            let status = match a.split_once(':') {
                Some((_, s)) => s.trim(),
                None => attrs.get("health_status").map_or("", |s| s.trim()),
            };
            matches!(status, "healthy" | "unhealthy").then(|| format!("health_status: {status}"))
        }
        _ => None,
    }
}

fn observed_from(
    id: String,
    summary_labels: Option<HashMap<String, String>>,
    name: String,
    inspect: &ContainerInspectResponse,
) -> Observed {
    let labels: BTreeMap<String, String> = summary_labels
        .or_else(|| inspect.config.as_ref().and_then(|c| c.labels.clone()))
        .unwrap_or_default()
        .into_iter()
        .collect();
    let state = inspect.state.as_ref();
    let run = match state.and_then(|s| s.status) {
        Some(ContainerStateStatusEnum::CREATED) => RunState::Created,
        Some(ContainerStateStatusEnum::RUNNING) => RunState::Running,
        Some(ContainerStateStatusEnum::PAUSED) => RunState::Paused,
        Some(ContainerStateStatusEnum::RESTARTING) => RunState::Restarting,
        Some(ContainerStateStatusEnum::EXITED) => RunState::Exited,
        Some(ContainerStateStatusEnum::DEAD) => RunState::Dead,
        _ => RunState::Other,
    };
    // Docker keeps the last health status of a stopped container; it means nothing then.
    let health = match (
        run,
        state.and_then(|s| s.health.as_ref()).and_then(|h| h.status),
    ) {
        (RunState::Running | RunState::Paused, Some(HealthStatusEnum::STARTING)) => {
            Health::Starting
        }
        (RunState::Running | RunState::Paused, Some(HealthStatusEnum::HEALTHY)) => Health::Healthy,
        (RunState::Running | RunState::Paused, Some(HealthStatusEnum::UNHEALTHY)) => {
            Health::Unhealthy
        }
        _ => Health::None,
    };
    let exited = matches!(run, RunState::Exited | RunState::Dead);
    Observed {
        id,
        name,
        service: labels
            .get(labels::SERVICE)
            .or_else(|| labels.get(labels::COMPOSE_SERVICE))
            .cloned()
            .unwrap_or_default(),
        spec_hash: labels.get(labels::SPEC_HASH).cloned(),
        state: run,
        health,
        exit_code: if exited {
            state.and_then(|s| s.exit_code)
        } else {
            None
        },
        oom_killed: state.and_then(|s| s.oom_killed).unwrap_or(false),
        started_at: state
            .and_then(|s| s.started_at.clone())
            .filter(|t| !t.is_empty() && !t.starts_with("0001-")),
        labels,
    }
}

impl Docker {
    /// A container's log as text (stdout and stderr, as the options say).
    async fn log_text(&self, id: &str, options: LogsOptions) -> Result<String, EngineError> {
        let mut stream = self.client.logs(id, Some(options));
        let mut text = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.err(e, || format!("container {id}")))?;
            text.extend_from_slice(chunk.as_ref());
        }
        Ok(String::from_utf8_lossy(&text).into_owned())
    }

    /// Finds the engine's socket (see the module documentation), connects, negotiates the API
    /// version and refuses engines older than [`MIN_API`]. `env` is the environment to read
    /// `DOCKER_HOST` and `XDG_RUNTIME_DIR` from (the caller's, not necessarily the process's).
    pub async fn connect(
        socket: Option<&Path>,
        env: &[(String, String)],
    ) -> Result<Docker, EngineError> {
        let candidates = socket_candidates(socket, env)?;
        let mut tried = Vec::new();
        let mut denied: Option<PathBuf> = None;
        for path in candidates {
            match tokio::net::UnixStream::connect(&path).await {
                Ok(s) => drop(s),
                Err(e) => {
                    let why = match e.kind() {
                        std::io::ErrorKind::NotFound => "missing".to_owned(),
                        std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
                        std::io::ErrorKind::PermissionDenied => {
                            denied.get_or_insert_with(|| path.clone());
                            "permission denied".to_owned()
                        }
                        _ => e.to_string(),
                    };
                    tried.push(format!("{}: {why}", path.display()));
                    continue;
                }
            }
            return Self::open(&path).await;
        }
        if let Some(socket) = denied {
            return Err(EngineError::PermissionDenied {
                socket: socket.display().to_string(),
            });
        }
        Err(EngineError::NoEngine {
            tried: tried.join(", "),
        })
    }

    async fn open(path: &Path) -> Result<Docker, EngineError> {
        let text = path.to_string_lossy();
        let client = bollard::Docker::connect_with_socket(
            &text,
            REQUEST_TIMEOUT_SECS,
            bollard::API_DEFAULT_VERSION,
        )
        .map_err(|e| EngineError::NoEngine {
            tried: format!("{text}: {e}"),
        })?;
        let pending = Docker {
            client: client.clone(),
            socket: path.to_owned(),
        };
        let client = client.negotiate_version().await.map_err(|e| {
            // Something answers, but not with the engine's API.
            if let Some((code, message)) = status_of(&e) {
                return EngineError::NoEngine {
                    tried: format!(
                        "{text}: answers HTTP {code} to /version, not a Docker API ({})",
                        message.trim()
                    ),
                };
            }
            match e {
                BollardError::APIVersionParseError {} | BollardError::JsonDataError { .. } => {
                    EngineError::NoEngine {
                        tried: format!("{text}: no Docker API version in the answer to /version"),
                    }
                }
                e => pending.err(e, || format!("engine at {text}")),
            }
        })?;
        let docker = Docker {
            client,
            socket: path.to_owned(),
        };
        let v = docker.client.client_version();
        let found = (
            u32::try_from(v.major_version).unwrap_or(0),
            u32::try_from(v.minor_version).unwrap_or(0),
        );
        if found < MIN_API {
            return Err(EngineError::TooOld {
                found: format!("{}.{}", found.0, found.1),
                needed: format!("{}.{}", MIN_API.0, MIN_API.1),
            });
        }
        Ok(docker)
    }

    /// The socket this connection uses.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The bollard client, for what the trait does not cover (tests, image import).
    pub fn client(&self) -> &bollard::Docker {
        &self.client
    }

    /// Maps a bollard error: 404 is `NotFound { what }`, a dead socket `NoEngine`, EACCES
    /// `PermissionDenied`, everything else `Engine` with the engine's message.
    fn err(&self, e: BollardError, what: impl FnOnce() -> String) -> EngineError {
        let socket = self.socket.display().to_string();
        if let Some((code, message)) = status_of(&e) {
            return match code {
                404 => EngineError::NotFound {
                    what: missing_object(what(), message),
                },
                _ => EngineError::Engine(format!("{}: {}", what(), message.trim())),
            };
        }
        match &e {
            BollardError::SocketNotFoundError(_) => {
                return EngineError::NoEngine {
                    tried: format!("{socket}: missing"),
                };
            }
            BollardError::RequestTimeoutError => {
                return EngineError::Engine(format!(
                    "{}: the engine did not answer within {REQUEST_TIMEOUT_SECS} s",
                    what()
                ));
            }
            _ => {}
        }
        match io_cause(&e) {
            Some(std::io::ErrorKind::PermissionDenied) => EngineError::PermissionDenied { socket },
            Some(
                kind @ (std::io::ErrorKind::NotFound
                | std::io::ErrorKind::ConnectionRefused
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::BrokenPipe),
            ) => EngineError::NoEngine {
                tried: format!("{socket}: {kind}"),
            },
            _ => EngineError::Engine(format!("{}: {e}", what())),
        }
    }

    async fn inspect_raw(&self, id: &str) -> Result<ContainerInspectResponse, EngineError> {
        self.client
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| self.err(e, || format!("container {id}")))
    }

    /// Waits until the container `id` (an id or a name) no longer exists, for at most
    /// [`REMOVAL_WAIT`].
    async fn wait_removed(&self, id: &str) -> Result<(), EngineError> {
        let deadline = tokio::time::Instant::now() + REMOVAL_WAIT;
        loop {
            match self
                .client
                .inspect_container(id, None::<InspectContainerOptions>)
                .await
            {
                Err(e) if status_of(&e).is_some_and(|(c, _)| c == 404) => return Ok(()),
                Err(e) => return Err(self.err(e, || format!("container {id}"))),
                Ok(_) if tokio::time::Instant::now() >= deadline => {
                    return Err(EngineError::Engine(format!(
                        "container {id} is still being removed after {} s; the engine may be stuck (see `docker ps -a` and the engine's log)",
                        REMOVAL_WAIT.as_secs()
                    )));
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Creates from the spec; on a name conflict says which container holds the name. A
    /// holder that the engine is removing is waited for, then the create is tried again.
    async fn create_inner(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        match self.create_once(spec).await {
            Err(EngineError::Engine(_))
                if self
                    .inspect_raw(&spec.name)
                    .await
                    .ok()
                    .and_then(|i| i.state)
                    .and_then(|s| s.status)
                    .is_some_and(|s| s == ContainerStateStatusEnum::REMOVING) =>
            {
                self.wait_removed(&spec.name).await?;
                self.create_once(spec).await
            }
            other => other,
        }
    }

    async fn create_once(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        let options = CreateContainerOptions {
            name: Some(spec.name.clone()),
            ..Default::default()
        };
        match self
            .client
            .create_container(Some(options), create_body(spec))
            .await
        {
            Ok(r) => Ok(r.id),
            Err(e) => match status_of(&e) {
                Some((409, _)) => {
                    let holder = self
                        .inspect_raw(&spec.name)
                        .await
                        .ok()
                        .and_then(|i| i.id)
                        .map(|id| format!(" (id {})", id.chars().take(12).collect::<String>()))
                        .unwrap_or_default();
                    Err(EngineError::Engine(format!(
                        "a container named {} already exists{holder}; remove it or let autogit adopt it",
                        spec.name
                    )))
                }
                Some((404, _)) => Err(EngineError::NotFound {
                    what: format!("image {} (for container {})", spec.image, spec.name),
                }),
                // The engine's message may quote an environment entry: hide the values.
                _ => Err(
                    match self.err(e, || format!("create container {}", spec.name)) {
                        EngineError::Engine(msg) => EngineError::Engine(scrub(msg, spec)),
                        other => other,
                    },
                ),
            },
        }
    }
}

// Every call is a client span `engine.<call>` (under the controller's span, so a trace shows
// what an API request or a repair asked of the engine), except `events` and `logs_after`:
// a stream that lasts as long as the daemon, and the log follower's poll every second per
// container, would drown the traces.
impl ContainerEngine for Docker {
    #[tracing::instrument(name = "engine.info", skip_all, fields(otel.kind = "client"))]
    async fn info(&self) -> Result<EngineInfo, EngineError> {
        let version = self
            .client
            .version()
            .await
            .map_err(|e| self.err(e, || "engine version".to_owned()))?;
        let info = self
            .client
            .info()
            .await
            .map_err(|e| self.err(e, || "engine info".to_owned()))?;
        let podman = version
            .components
            .iter()
            .flatten()
            .any(|c| c.name.to_ascii_lowercase().contains("podman"))
            || version
                .platform
                .as_ref()
                .is_some_and(|p| p.name.to_ascii_lowercase().contains("podman"));
        let rootless = info
            .security_options
            .iter()
            .flatten()
            .any(|o| o.split(',').any(|part| part == "name=rootless"));
        let negotiated = self.client.client_version();
        Ok(EngineInfo {
            kind: if podman { "podman" } else { "docker" }.to_owned(),
            version: version.version.unwrap_or_default(),
            api_version: version
                .api_version
                .unwrap_or_else(|| format!("{negotiated}")),
            rootless,
            socket: self.socket.clone(),
            storage_driver: info.driver.clone().unwrap_or_default(),
            root_dir: info.docker_root_dir.clone().map(PathBuf::from),
            system_time: info
                .system_time
                .as_deref()
                .and_then(autogit_core::units::rfc3339_to_unix),
        })
    }

    #[tracing::instrument(name = "engine.ensure_network", skip_all, fields(otel.kind = "client", network = %name))]
    async fn ensure_network(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<bool, EngineError> {
        match self
            .client
            .inspect_network(name, None::<InspectNetworkOptions>)
            .await
        {
            Ok(_) => return Ok(false),
            Err(e) if status_of(&e).is_some_and(|(c, _)| c == 404) => {}
            Err(e) => return Err(self.err(e, || format!("network {name}"))),
        }
        let request = NetworkCreateRequest {
            name: name.to_owned(),
            driver: Some("bridge".to_owned()),
            labels: Some(labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
            ..Default::default()
        };
        match self.client.create_network(request).await {
            Ok(_) => Ok(true),
            // Created concurrently by someone else: it exists, which is what was asked.
            Err(e) if status_of(&e).is_some_and(|(c, _)| c == 409) => Ok(false),
            Err(e) => Err(self.err(e, || format!("create network {name}"))),
        }
    }

    #[tracing::instrument(name = "engine.ensure_volume", skip_all, fields(otel.kind = "client", volume = %name))]
    async fn ensure_volume(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<bool, EngineError> {
        match self.client.inspect_volume(name).await {
            Ok(_) => return Ok(false),
            Err(e) if status_of(&e).is_some_and(|(c, _)| c == 404) => {}
            Err(e) => return Err(self.err(e, || format!("volume {name}"))),
        }
        let request = VolumeCreateRequest {
            name: Some(name.to_owned()),
            driver: Some("local".to_owned()),
            labels: Some(labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
            ..Default::default()
        };
        self.client
            .create_volume(request)
            .await
            .map_err(|e| self.err(e, || format!("create volume {name}")))?;
        Ok(true)
    }

    #[tracing::instrument(name = "engine.image_present", skip_all, fields(otel.kind = "client", image = %image))]
    async fn image_present(&self, image: &str) -> Result<bool, EngineError> {
        match self.client.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if status_of(&e).is_some_and(|(c, _)| c == 404) => Ok(false),
            Err(e) => Err(self.err(e, || format!("image {image}"))),
        }
    }

    #[tracing::instrument(name = "engine.pull", skip_all, fields(otel.kind = "client", image = %image))]
    async fn pull(
        &self,
        image: &str,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<(), EngineError> {
        let (repo, tag) = split_image(image);
        let options = CreateImageOptions {
            from_image: Some(repo.to_owned()),
            tag: tag.map(str::to_owned),
            ..Default::default()
        };
        let pull_err = |e: BollardError| -> EngineError {
            if let Some((_, message)) = status_of(&e) {
                return EngineError::Pull {
                    image: image.to_owned(),
                    reason: message.trim().to_owned(),
                };
            }
            match self.err(e, || format!("pull {image}")) {
                e @ (EngineError::NoEngine { .. } | EngineError::PermissionDenied { .. }) => e,
                other => EngineError::Pull {
                    image: image.to_owned(),
                    reason: other.to_string(),
                },
            }
        };
        let mut stream = self.client.create_image(Some(options), None, None);
        let mut layers = Layers::default();
        while let Some(item) = stream.next().await {
            let info = match item {
                Ok(info) => info,
                Err(BollardError::DockerStreamError { error }) => {
                    return Err(EngineError::Pull {
                        image: image.to_owned(),
                        reason: error,
                    });
                }
                Err(e) => return Err(pull_err(e)),
            };
            let status = info.status.unwrap_or_default();
            let (current, total) = layers.update(info.id.as_deref(), &status, tag);
            progress(PullProgress {
                image: image.to_owned(),
                status,
                current,
                total,
            });
        }
        Ok(())
    }

    #[tracing::instrument(name = "engine.inspect", skip_all, fields(otel.kind = "client", container = %id))]
    async fn inspect(&self, id: &str) -> Result<ContainerSpec, EngineError> {
        let c = self.inspect_raw(id).await?;
        let image = match c.config.as_ref().and_then(|c| c.image.as_deref()) {
            Some(image) => match self.client.inspect_image(image).await {
                Ok(i) => i.config,
                // Removed since: nothing of the container's is mistaken for the image's.
                Err(e) if status_of(&e).is_some_and(|(c, _)| c == 404) => None,
                Err(e) => return Err(self.err(e, || format!("image {image}"))),
            },
            None => None,
        };
        Ok(spec_from_inspect(&c, image.as_ref()))
    }

    #[tracing::instrument(name = "engine.list", skip_all, fields(otel.kind = "client", project = %project))]
    async fn list(&self, project: &str) -> Result<Vec<Observed>, EngineError> {
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([(
                "label".to_owned(),
                vec![format!("{}={project}", labels::MANAGED)],
            )])),
            ..Default::default()
        };
        let summaries = self
            .client
            .list_containers(Some(options))
            .await
            .map_err(|e| self.err(e, || format!("containers of {project}")))?;
        let mut out = Vec::with_capacity(summaries.len());
        for s in summaries {
            let Some(id) = s.id else { continue };
            let inspect = match self.inspect_raw(&id).await {
                Ok(i) => i,
                // Removed between the list and the inspect.
                Err(EngineError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            let name = s
                .names
                .as_ref()
                .and_then(|n| n.first())
                .cloned()
                .or_else(|| inspect.name.clone())
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_owned();
            out.push(observed_from(id, s.labels, name, &inspect));
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    #[tracing::instrument(name = "engine.create", skip_all, fields(otel.kind = "client", container = %spec.name))]
    async fn create(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        self.create_inner(spec).await
    }

    #[tracing::instrument(name = "engine.start", skip_all, fields(otel.kind = "client", container = %id))]
    async fn start(&self, id: &str) -> Result<(), EngineError> {
        // A host port that a container just removed was publishing is released by the engine's
        // proxy a moment after the removal returns (a recreate on the same port meets it):
        // "address already in use" is retried for up to 5 s before it is an error. A port
        // another program holds fails the same way, only later.
        let mut tries = 0;
        loop {
            match self
                .client
                .start_container(id, None::<StartContainerOptions>)
                .await
            {
                Ok(()) => return Ok(()),
                // Already running.
                Err(e) if status_of(&e).is_some_and(|(c, _)| c == 304) => return Ok(()),
                Err(e) if tries < 10 && e.to_string().contains("address already in use") => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(self.err(e, || format!("container {id}"))),
            }
        }
    }

    #[tracing::instrument(name = "engine.stop", skip_all, fields(otel.kind = "client", container = %id))]
    async fn stop(&self, id: &str, timeout_secs: u32) -> Result<(), EngineError> {
        let options = StopContainerOptions {
            t: Some(i32::try_from(timeout_secs).unwrap_or(i32::MAX)),
            ..Default::default()
        };
        match self.client.stop_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            // Already stopped.
            Err(e) if status_of(&e).is_some_and(|(c, _)| c == 304) => Ok(()),
            Err(e) => Err(self.err(e, || format!("container {id}"))),
        }
    }

    #[tracing::instrument(name = "engine.restart", skip_all, fields(otel.kind = "client", container = %id))]
    async fn restart(&self, id: &str, timeout_secs: u32) -> Result<(), EngineError> {
        let options = RestartContainerOptions {
            t: Some(i32::try_from(timeout_secs).unwrap_or(i32::MAX)),
            ..Default::default()
        };
        self.client
            .restart_container(id, Some(options))
            .await
            .map_err(|e| self.err(e, || format!("container {id}")))
    }

    #[tracing::instrument(name = "engine.remove", skip_all, fields(otel.kind = "client", container = %id))]
    async fn remove(&self, id: &str) -> Result<(), EngineError> {
        let options = RemoveContainerOptions {
            force: true,
            v: false,
            link: false,
        };
        match self.client.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            // Someone else's removal (an autogit killed mid-recreate): wait for it to finish.
            Err(e) if removal_in_progress(&e) => self.wait_removed(id).await,
            Err(e) => Err(self.err(e, || format!("container {id}"))),
        }
    }

    #[tracing::instrument(name = "engine.remove_network", skip_all, fields(otel.kind = "client", network = %name))]
    async fn remove_network(&self, name: &str) -> Result<(), EngineError> {
        self.client
            .remove_network(name)
            .await
            .map_err(|e| self.err(e, || format!("network {name}")))
    }

    #[tracing::instrument(name = "engine.remove_volume", skip_all, fields(otel.kind = "client", volume = %name))]
    async fn remove_volume(&self, name: &str) -> Result<(), EngineError> {
        self.client
            .remove_volume(name, None::<RemoveVolumeOptions>)
            .await
            .map_err(|e| self.err(e, || format!("volume {name}")))
    }

    #[tracing::instrument(name = "engine.logs", skip_all, fields(otel.kind = "client", container = %id))]
    async fn logs(
        &self,
        id: &str,
        since: Option<i64>,
        tail: Option<usize>,
    ) -> Result<Vec<String>, EngineError> {
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            since: since
                .map(|s| i32::try_from(s.max(0)).unwrap_or(i32::MAX))
                .unwrap_or(0),
            tail: tail.map_or_else(|| "all".to_owned(), |n| n.to_string()),
            ..Default::default()
        };
        Ok(self
            .log_text(id, options)
            .await?
            .lines()
            .map(str::to_owned)
            .collect())
    }

    async fn logs_after(
        &self,
        id: &str,
        after_ns: Option<i64>,
        tail: Option<usize>,
    ) -> Result<Vec<(i64, String)>, EngineError> {
        // The engine's `since` is in whole seconds: ask from the second of the cursor and
        // drop what is not after it.
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            timestamps: true,
            since: after_ns
                .map(|ns| i32::try_from((ns / 1_000_000_000).max(0)).unwrap_or(i32::MAX))
                .unwrap_or(0),
            tail: match (after_ns, tail) {
                (None, Some(n)) => n.to_string(),
                _ => "all".to_owned(),
            },
            ..Default::default()
        };
        Ok(self
            .log_text(id, options)
            .await?
            .lines()
            .filter_map(|l| {
                let (ts, rest) = l.split_once(' ').unwrap_or((l, ""));
                let at = autogit_core::units::rfc3339_to_unix_nanos(ts)?;
                (after_ns.is_none_or(|a| at > a)).then(|| (at, rest.to_owned()))
            })
            .collect())
    }

    #[tracing::instrument(name = "engine.exec", skip_all, fields(otel.kind = "client", container = %id))]
    async fn exec(&self, id: &str, argv: &[String]) -> Result<(i64, String), EngineError> {
        self.exec_io(id, argv, None).await
    }

    #[tracing::instrument(name = "engine.exec_with_stdin", skip_all, fields(otel.kind = "client", container = %id))]
    async fn exec_with_stdin(
        &self,
        id: &str,
        argv: &[String],
        stdin: &[u8],
    ) -> Result<(i64, String), EngineError> {
        self.exec_io(id, argv, Some(stdin)).await
    }

    #[tracing::instrument(name = "engine.copy_out", skip_all, fields(otel.kind = "client", container = %id, path = %path))]
    async fn copy_out(&self, id: &str, path: &str, dest: &Path) -> Result<u64, EngineError> {
        use tokio::io::AsyncWriteExt;
        let options = bollard::query_parameters::DownloadFromContainerOptionsBuilder::default()
            .path(path)
            .build();
        let mut stream = self.client.download_from_container(id, Some(options));
        let io = |e: std::io::Error| EngineError::Engine(format!("{}: {e}", dest.display()));
        // Created here, not on tokio's blocking pool: a copy cancelled (its future dropped)
        // while a pooled create was in flight would create the file after the caller's
        // cleanup had run.
        let mut file = tokio::fs::File::from_std(std::fs::File::create(dest).map_err(io)?);
        let mut written = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.err(e, || format!("{path} in container {id}")))?;
            file.write_all(&chunk).await.map_err(io)?;
            written += chunk.len() as u64;
        }
        file.sync_all().await.map_err(io)?;
        Ok(written)
    }

    #[tracing::instrument(name = "engine.copy_in", skip_all, fields(otel.kind = "client", container = %id, dir = %dir))]
    async fn copy_in(&self, id: &str, dir: &str, tar: &Path) -> Result<(), EngineError> {
        use tokio::io::AsyncReadExt;
        let io = |e: std::io::Error| EngineError::Engine(format!("{}: {e}", tar.display()));
        let file = tokio::fs::File::open(tar).await.map_err(io)?;
        // Read in 1 MiB chunks so a multi-gigabyte backup is streamed, not loaded.
        let chunks = futures_util::stream::unfold(file, |mut f| async move {
            let mut buf = vec![0u8; 1 << 20];
            match f.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(bytes::Bytes::from(buf)), f))
                }
                Err(e) => Some((Err(e), f)),
            }
        });
        let options = bollard::query_parameters::UploadToContainerOptionsBuilder::default()
            .path(dir)
            .build();
        self.client
            .upload_to_container(id, Some(options), bollard::body_try_stream(chunks))
            .await
            .map_err(|e| self.err(e, || format!("{dir} in container {id}")))
    }

    async fn events(
        &self,
        project: &str,
        tx: tokio::sync::mpsc::Sender<EngineEvent>,
    ) -> Result<(), EngineError> {
        let options = EventsOptions {
            filters: Some(HashMap::from([
                (
                    "label".to_owned(),
                    vec![format!("{}={project}", labels::MANAGED)],
                ),
                ("type".to_owned(), vec!["container".to_owned()]),
            ])),
            ..Default::default()
        };
        let mut stream = self.client.events(Some(options));
        loop {
            let item = tokio::select! {
                () = tx.closed() => return Ok(()),
                item = stream.next() => item,
            };
            let Some(item) = item else {
                return Err(EngineError::Engine(format!(
                    "the event stream of {} ended",
                    self.socket.display()
                )));
            };
            let msg: EventMessage = match item {
                Ok(m) => m,
                // One event this client cannot decode must not end the stream.
                Err(BollardError::JsonDataError { .. }) => continue,
                Err(e) => return Err(self.err(e, || "events".to_owned())),
            };
            let actor = msg.actor.unwrap_or_default();
            let attrs = actor.attributes.unwrap_or_default();
            let Some(action) = msg.action.as_deref().and_then(|a| event_action(a, &attrs)) else {
                continue;
            };
            let event = EngineEvent {
                service: attrs
                    .get(labels::SERVICE)
                    .or_else(|| attrs.get(labels::COMPOSE_SERVICE))
                    .cloned()
                    .unwrap_or_default(),
                container_id: actor.id.unwrap_or_default(),
                action,
                time: msg.time.unwrap_or_default(),
            };
            if tx.send(event).await.is_err() {
                return Ok(());
            }
        }
    }
}

impl Docker {
    /// One exec: output collected, `stdin` (if any) written and closed first.
    async fn exec_io(
        &self,
        id: &str,
        argv: &[String],
        stdin: Option<&[u8]>,
    ) -> Result<(i64, String), EngineError> {
        use tokio::io::AsyncWriteExt;
        let config = ExecConfig {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            attach_stdin: Some(stdin.is_some()),
            cmd: Some(argv.to_vec()),
            ..Default::default()
        };
        let exec = self
            .client
            .create_exec(id, config)
            .await
            .map_err(|e| self.err(e, || format!("container {id}")))?;
        let started = self
            .client
            .start_exec(&exec.id, None)
            .await
            .map_err(|e| self.err(e, || format!("exec in container {id}")))?;
        let mut text = Vec::new();
        if let bollard::exec::StartExecResults::Attached {
            mut output,
            mut input,
        } = started
        {
            if let Some(data) = stdin {
                input
                    .write_all(data)
                    .await
                    .map_err(|e| EngineError::Engine(format!("exec in container {id}: {e}")))?;
                input
                    .flush()
                    .await
                    .map_err(|e| EngineError::Engine(format!("exec in container {id}: {e}")))?;
                let _ = input.shutdown().await;
            }
            while let Some(chunk) = output.next().await {
                let chunk = chunk.map_err(|e| self.err(e, || format!("exec in container {id}")))?;
                text.extend_from_slice(chunk.as_ref());
            }
        }
        // The exit code is set once the process is gone; the stream ends a moment before.
        let mut code = None;
        for _ in 0..50 {
            let inspect = self
                .client
                .inspect_exec(&exec.id)
                .await
                .map_err(|e| self.err(e, || format!("exec in container {id}")))?;
            if inspect.running != Some(true) {
                code = inspect.exit_code;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let code = code.ok_or_else(|| {
            EngineError::Engine(format!("exec in container {id}: no exit code reported"))
        })?;
        Ok((code, String::from_utf8_lossy(&text).into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use autogit_core::container::{EngineHealthcheck, PortBinding as Port};

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn socket_order() {
        let explicit = socket_candidates(Some(Path::new("unix:///x.sock")), &[]).unwrap();
        assert_eq!(explicit, vec![PathBuf::from("/x.sock")]);
        let host = socket_candidates(None, &env(&[("DOCKER_HOST", "unix:///d.sock")])).unwrap();
        assert_eq!(host, vec![PathBuf::from("/d.sock")]);
        assert!(matches!(
            socket_candidates(None, &env(&[("DOCKER_HOST", "tcp://h:2375")])),
            Err(EngineError::NoEngine { .. })
        ));
        let all = socket_candidates(None, &env(&[("XDG_RUNTIME_DIR", "/run/user/7")])).unwrap();
        assert_eq!(
            all,
            vec![
                PathBuf::from("/run/user/7/docker.sock"),
                PathBuf::from("/var/run/docker.sock"),
                PathBuf::from("/run/user/7/podman/podman.sock"),
                PathBuf::from("/run/podman/podman.sock"),
            ]
        );
        let none = socket_candidates(None, &[]).unwrap();
        assert_eq!(none[0], PathBuf::from("/var/run/docker.sock"));
    }

    #[test]
    fn image_references() {
        assert_eq!(split_image("busybox"), ("busybox", None));
        assert_eq!(split_image("busybox:1.36"), ("busybox", Some("1.36")));
        assert_eq!(
            split_image("localhost:5000/a/b:2"),
            ("localhost:5000/a/b", Some("2"))
        );
        assert_eq!(
            split_image("localhost:5000/a/b"),
            ("localhost:5000/a/b", None)
        );
        assert_eq!(split_image("a/b@sha256:00"), ("a/b@sha256:00", None));
    }

    #[test]
    fn scrub_hides_env_values() {
        let mut spec = ContainerSpec {
            name: "p-a".into(),
            service: "a".into(),
            image: "i".into(),
            command: vec![],
            env: BTreeMap::from([
                ("TOKEN".into(), "abc".into()),
                ("LONG".into(), "hunter22".into()),
                ("N".into(), "1".into()),
            ]),
            secret_keys: vec!["TOKEN".into()],
            ports: vec![],
            mounts: vec![],
            nano_cpus: 0,
            memory_bytes: 0,
            shm_size_bytes: None,
            network: String::new(),
            aliases: vec![],
            hostname: None,
            healthcheck: None,
            labels: BTreeMap::new(),
            restart_policy: "no".into(),
        };
        let msg = scrub("bad env TOKEN=abc LONG=hunter22 N=1".into(), &spec);
        assert_eq!(msg, "bad env TOKEN=*** LONG=*** N=1");
        spec.env.clear();
        assert_eq!(scrub("x".into(), &spec), "x");
    }

    #[tokio::test]
    async fn dead_socket_is_no_engine() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let client = bollard::Docker::connect_with_socket(
            &path.to_string_lossy(),
            5,
            bollard::API_DEFAULT_VERSION,
        )
        .unwrap();
        let docker = Docker {
            client,
            socket: path.clone(),
        };
        // What an engine that went away mid-apply looks like.
        let err = docker.info().await.unwrap_err();
        match err {
            EngineError::NoEngine { tried } => {
                assert!(tried.contains(&path.display().to_string()), "{tried}");
            }
            other => panic!("expected NoEngine, got {other:?}"),
        }
        let err = docker.list("p").await.unwrap_err();
        assert!(matches!(err, EngineError::NoEngine { .. }), "{err:?}");
    }

    #[test]
    fn pull_progress_counts_layers() {
        let mut l = Layers::default();
        let tag = Some("1.36");
        assert_eq!(
            l.update(Some("1.36"), "Pulling from library/busybox", tag),
            (0, 0)
        );
        assert_eq!(l.update(Some("aaa"), "Pulling fs layer", tag), (0, 1));
        assert_eq!(l.update(Some("bbb"), "Already exists", tag), (1, 2));
        assert_eq!(l.update(Some("aaa"), "Downloading", tag), (1, 2));
        assert_eq!(l.update(Some("aaa"), "Pull complete", tag), (2, 2));
        assert_eq!(l.update(None, "Digest: sha256:00", tag), (2, 2));
        assert_eq!(l.update(Some("aaa"), "Pull complete", tag), (2, 2));
    }

    #[test]
    fn not_found_names_the_missing_network() {
        assert_eq!(
            missing_object("container abc".into(), "network p_net not found"),
            "network p_net"
        );
        assert_eq!(
            missing_object("container abc".into(), "No such container: abc"),
            "container abc"
        );
        assert_eq!(
            missing_object("network p_net".into(), "network p_net not found"),
            "network p_net"
        );
    }

    #[test]
    fn events_of_interest() {
        let none = HashMap::new();
        assert_eq!(event_action("die", &none).as_deref(), Some("die"));
        assert_eq!(
            event_action("health_status: unhealthy", &none).as_deref(),
            Some("health_status: unhealthy")
        );
        assert_eq!(event_action("health_status: starting", &none), None);
        assert_eq!(event_action("exec_create: sh", &none), None);
        // Podman's shape.
        let podman = HashMap::from([("health_status".to_owned(), "healthy".to_owned())]);
        assert_eq!(
            event_action("health_status", &podman).as_deref(),
            Some("health_status: healthy")
        );
        assert_eq!(event_action("health_status", &none), None);
        assert_eq!(event_action("remove", &none).as_deref(), Some("destroy"));
    }

    #[test]
    fn inspect_reads_compose_binds() {
        let c = ContainerInspectResponse {
            id: Some("0123456789abcdef".into()),
            name: Some("/p-web".into()),
            config: Some(bollard::models::ContainerConfig {
                image: Some("img:1".into()),
                hostname: Some("0123456789ab".into()),
                env: Some(vec!["PATH=/bin".into(), "A=1".into()]),
                ..Default::default()
            }),
            host_config: Some(HostConfig {
                binds: Some(vec!["p_data:/data:rw".into(), "/srv/conf:/conf:ro".into()]),
                shm_size: Some(64 << 20),
                ..Default::default()
            }),
            ..Default::default()
        };
        let image = bollard::models::ImageConfig {
            env: Some(vec!["PATH=/bin".into()]),
            ..Default::default()
        };
        let s = spec_from_inspect(&c, Some(&image));
        assert_eq!(s.name, "p-web");
        assert_eq!(s.service, "p-web", "no label and no project: the name");
        let mut labelled = c.clone();
        if let Some(cfg) = labelled.config.as_mut() {
            cfg.labels = Some(HashMap::from([(
                labels::MANAGED.to_owned(),
                "p".to_owned(),
            )]));
        }
        assert_eq!(spec_from_inspect(&labelled, Some(&image)).service, "web");
        assert_eq!(s.env, BTreeMap::from([("A".to_owned(), "1".to_owned())]));
        assert_eq!(
            s.hostname, None,
            "the engine's id-derived host name is not the spec's"
        );
        assert_eq!(s.shm_size_bytes, None, "the engine's default /dev/shm");
        assert_eq!(
            s.mounts,
            [
                MountSpec::Volume {
                    name: "p_data".into(),
                    target: "/data".into()
                },
                MountSpec::Bind {
                    source: "/srv/conf".into(),
                    target: "/conf".into(),
                    read_only: true
                }
            ]
        );
    }

    #[test]
    fn create_body_maps_the_spec() {
        let spec = ContainerSpec {
            name: "p-web".into(),
            service: "web".into(),
            image: "img:1".into(),
            command: vec!["httpd".into()],
            env: BTreeMap::from([("A".into(), "1".into())]),
            secret_keys: vec![],
            ports: vec![
                Port {
                    host_ip: Some("127.0.0.1".into()),
                    host_port: 18080,
                    container_port: 8080,
                    udp: false,
                },
                Port {
                    host_ip: None,
                    host_port: 18081,
                    container_port: 8080,
                    udp: false,
                },
            ],
            mounts: vec![MountSpec::Volume {
                name: "p_data".into(),
                target: "/data".into(),
            }],
            nano_cpus: 500_000_000,
            memory_bytes: 64 << 20,
            shm_size_bytes: Some(1 << 20),
            network: "p_net".into(),
            aliases: vec!["web".into()],
            hostname: Some("web".into()),
            healthcheck: Some(EngineHealthcheck {
                test: vec!["CMD".into(), "true".into()],
                interval_secs: 2,
                timeout_secs: 3,
                retries: 4,
                start_period_secs: 5,
            }),
            labels: BTreeMap::from([(labels::MANAGED.into(), "p".into())]),
            restart_policy: "no".into(),
        };
        let b = create_body(&spec);
        assert_eq!(b.env, Some(vec!["A=1".to_owned()]));
        assert_eq!(b.exposed_ports, Some(vec!["8080/tcp".to_owned()]));
        let hc = b.host_config.unwrap();
        assert_eq!(
            hc.port_bindings.unwrap()["8080/tcp"]
                .as_ref()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(hc.nano_cpus, Some(500_000_000));
        assert_eq!(
            hc.restart_policy.unwrap().name,
            Some(RestartPolicyNameEnum::NO)
        );
        let h = b.healthcheck.unwrap();
        assert_eq!(h.interval, Some(2_000_000_000));
        assert_eq!(h.start_period, Some(5_000_000_000));
        let net = b.networking_config.unwrap().endpoints_config.unwrap();
        assert_eq!(net["p_net"].aliases, Some(vec!["web".to_owned()]));
    }
}
