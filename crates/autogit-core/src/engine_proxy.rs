//! The runner's engine access, as decisions: which Docker Engine API calls the socket proxy
//! (`autogit runner engine-proxy`, `drivers::engine_proxy`) passes from a gitlab-runner
//! container to the host's engine, and which it refuses.
//!
//! gitlab-runner's Docker executor needs the engine to pull images, create, start, attach to,
//! wait for and remove its job containers, and to keep cache volumes. It needs nothing else,
//! and with the raw socket it could do anything (a privileged container, a bind mount of `/`,
//! `exec` into GitLab's container): the socket is root on the host. The proxy allows:
//!
//! | calls | condition |
//! | --- | --- |
//! | `GET`/`HEAD /_ping`, `GET /version`, `GET /info` | always |
//! | `GET /images/json`, `GET /images/{name}/json`, `POST /images/create` (pull; not `fromSrc`), `POST /images/load`, `POST /images/{name}/tag` | always |
//! | `POST /containers/create` | the body passes [`check_container_create`] |
//! | `GET /containers/json` | always (a listing) |
//! | `POST /containers/{id}/{start,attach,wait,kill,stop,resize,restart}`, `GET /containers/{id}/{json,logs}`, `GET`/`HEAD`/`PUT /containers/{id}/archive`, `DELETE /containers/{id}` | the container carries [`MANAGED_LABEL`] |
//! | `POST /volumes/create` | a local volume named `runner-…` with [`MANAGED_LABEL`] |
//! | `GET /volumes`, `GET /volumes/{name}`, `DELETE /volumes/{name}` | the last two: the volume carries [`MANAGED_LABEL`] |
//!
//! Bodies are read as the engine reads them: Go's `encoding/json` matches field names
//! case-insensitively, so `{"HostConfig": {"privileged": true}}` is a privileged container to
//! the engine; the checks look fields up the same way, and a body with two spellings of one
//! field is refused.
//!
//! Everything else is refused with 403: `exec`, `build`, networks, swarm, plugins, secrets,
//! `commit`, `update`, `prune`, events, and any call on a container, volume or network
//! gitlab-runner did not create (the platform's, another runner's).

/// The label gitlab-runner puts on every container and volume it creates
/// (`com.gitlab.gitlab-runner.managed=true`).
pub const MANAGED_LABEL: &str = "com.gitlab.gitlab-runner.managed";

/// Where a runner host's proxy listens by default (mounted into the runner's container as
/// `/var/run/docker.sock`).
pub const DEFAULT_PROXY_SOCKET: &str = "/run/autogit/engine-proxy.sock";

/// What the proxy lets a runner's containers have.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Networks a container may join (`HostConfig.NetworkMode`): the runner's own network.
    pub networks: Vec<String>,
    /// Host paths that may be bind-mounted, read-only only (`/usr/lib/wsl` on WSL2 hosts).
    pub host_paths: Vec<String>,
    /// Device paths that may be passed (`/dev/dxg` on WSL2 hosts). GPU requests
    /// (`DeviceRequests`, `--gpus`) are always allowed.
    pub devices: Vec<String>,
}

/// The policy of a runner host's proxy from the names of the runners on it (`--runner`):
/// each one's network `autogit-runner-NAME`; on WSL2 `/dev/dxg` and a read-only
/// `/usr/lib/wsl`. A name that is not a runner name (lowercase letters, digits, `-`) is an
/// error.
pub fn host_policy(runner_names: &[String], wsl2: bool) -> Result<Policy, String> {
    let mut p = Policy::default();
    for n in runner_names {
        let ok = !n.is_empty()
            && n.len() <= 63
            && n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !n.starts_with('-');
        if !ok {
            return Err(format!(
                "`{n}` is not a runner name (lowercase letters, digits and `-`, as in autogit.yml)"
            ));
        }
        p.networks.push(crate::runner::runner_volume(n));
    }
    if wsl2 {
        p.host_paths.push("/usr/lib/wsl".to_owned());
        p.devices.push("/dev/dxg".to_owned());
    }
    p.networks.sort();
    p.networks.dedup();
    Ok(p)
}

/// What an engine object is, for calls that act on one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Object {
    Container(String),
    Volume(String),
}

/// The proxy's answer for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Forward it.
    Allow,
    /// Forward it if the object carries [`MANAGED_LABEL`] (the proxy asks the engine first);
    /// `upgrade`: the connection is hijacked afterwards (`attach`).
    IfManaged { object: Object, upgrade: bool },
    /// Forward it once its JSON body passes the check for this kind of call.
    CheckBody(BodyCheck),
    /// Refuse it (403 with this reason).
    Deny(String),
}

/// Which check a body goes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyCheck {
    ContainerCreate,
    VolumeCreate,
}

/// The API path without its version prefix (`/v1.44/containers/json` → `/containers/json`)
/// and without the query.
pub fn unversioned(target: &str) -> &str {
    let path = target.split(['?', '#']).next().unwrap_or("");
    if let Some(rest) = path.strip_prefix("/v")
        && let Some(slash) = rest.find('/')
        && rest[..slash]
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.')
        && slash > 0
    {
        return &rest[slash..];
    }
    path
}

/// Decides a request from its method and target (path and query).
pub fn check(method: &str, target: &str) -> Verdict {
    let path = unversioned(target);
    if path.contains('%') || path.split('/').any(|s| s == ".." || s == ".") || path.contains("//") {
        return Verdict::Deny(format!(
            "`{path}`: encoded characters and dot segments are refused by the engine proxy"
        ));
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let deny = |what: &str| {
        Verdict::Deny(format!(
            "{what} is not something a runner's Docker executor needs; the engine proxy refuses it"
        ))
    };
    match (method, parts.as_slice()) {
        ("GET" | "HEAD", ["_ping"]) | ("GET", ["version" | "info"]) => Verdict::Allow,
        // `fromSrc` would make the engine fetch a URL from the host's network (the
        // platform's loopback services included) and hand it back as an image: pulls only.
        ("POST", ["images", "create"]) if query_has(target, "fromSrc") => {
            deny("importing an image from a URL or the request body (`fromSrc`)")
        }
        ("GET", ["images", "json"]) | ("POST", ["images", "create" | "load"]) => Verdict::Allow,
        // Image names have slashes: `/images/registry/ns/name:tag/json`.
        ("GET", ["images", name @ .., "json"]) if !name.is_empty() => Verdict::Allow,
        ("POST", ["images", name @ .., "tag"]) if !name.is_empty() => Verdict::Allow,
        ("POST", ["containers", "create"]) => Verdict::CheckBody(BodyCheck::ContainerCreate),
        ("GET", ["containers", "json"]) => Verdict::Allow,
        ("POST", ["containers", id, "attach"]) => managed_container(id, true),
        (
            "POST",
            [
                "containers",
                id,
                "start" | "wait" | "kill" | "stop" | "resize" | "restart",
            ],
        )
        | ("GET", ["containers", id, "json" | "logs"])
        | ("GET" | "HEAD" | "PUT", ["containers", id, "archive"])
        | ("DELETE", ["containers", id]) => managed_container(id, false),
        ("POST", ["containers", _, "exec"]) | ("POST", ["exec", ..]) => deny("`exec`"),
        ("POST", ["volumes", "create"]) => Verdict::CheckBody(BodyCheck::VolumeCreate),
        ("GET", ["volumes"]) => Verdict::Allow,
        ("GET" | "DELETE", ["volumes", name]) if !name.is_empty() => Verdict::IfManaged {
            object: Object::Volume((*name).to_owned()),
            upgrade: false,
        },
        _ => deny(&format!("`{method} {path}`")),
    }
}

/// Whether the query of `target` names `key` (`?a=1&key=…`), read as the engine's Go
/// `url.ParseQuery` reads it: keys percent-decoded (`from%53rc` is `fromSrc`), `+` a space.
/// A key that does not decode counts as naming it (refused rather than guessed).
fn query_has(target: &str, key: &str) -> bool {
    target
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .any(|kv| {
            let raw = kv.split('=').next().unwrap_or("");
            percent_decode(raw).is_none_or(|k| k == key)
        })
}

/// `%XX` and `+` decoded; `None` for a malformed escape or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The prefix of gitlab-runner's volume names (`runner-<token>-project-<id>-concurrent-<n>-…`):
/// the only named volumes a job may mount, so no job mounts a platform volume.
pub const RUNNER_VOLUME_PREFIX: &str = "runner-";

fn managed_container(id: &str, upgrade: bool) -> Verdict {
    if id.is_empty() {
        return Verdict::Deny("no container named".into());
    }
    Verdict::IfManaged {
        object: Object::Container(id.to_owned()),
        upgrade,
    }
}

/// Whether an object's labels (the `Labels` of `GET /containers/{id}/json`'s `Config`, or of
/// `GET /volumes/{name}`) say gitlab-runner made it.
pub fn is_managed(labels: Option<&serde_json::Map<String, serde_json::Value>>) -> bool {
    labels
        .and_then(|l| l.get(MANAGED_LABEL))
        .and_then(|v| v.as_str())
        == Some("true")
}

/// Checks a `POST /containers/create` body: the container carries [`MANAGED_LABEL`], is not
/// privileged, adds no capabilities, shares no namespace with the host or another container,
/// joins only the policy's networks, bind-mounts only the policy's host paths (read-only),
/// passes only the policy's devices, and relaxes no security option.
pub fn check_container_create(policy: &Policy, body: &[u8]) -> Result<(), String> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| format!("the container's definition is not JSON: {e}"))?;
    unambiguous(&v)?;
    let labels = field(&v, "Labels").and_then(|l| l.as_object());
    if !is_managed(labels) {
        return Err(format!(
            "a runner creates only containers labelled `{MANAGED_LABEL}=true`"
        ));
    }
    let empty = serde_json::Map::new();
    let hc = field(&v, "HostConfig")
        .and_then(|h| h.as_object())
        .unwrap_or(&empty);
    let hc_get = |k: &str| hc.iter().find(|(key, _)| fold_eq(key, k)).map(|(_, x)| x);
    let truthy = |k: &str| hc_get(k).and_then(|x| x.as_bool()).unwrap_or(false);
    let nonempty = |k: &str| match hc_get(k) {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Array(a)) => !a.is_empty(),
        Some(serde_json::Value::Object(o)) => !o.is_empty(),
        Some(serde_json::Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    };
    if truthy("PublishAllPorts") {
        return Err(
            "`HostConfig.PublishAllPorts` opens ports on the host; the engine proxy refuses it"
                .into(),
        );
    }
    if truthy("Privileged") {
        return Err("`Privileged` is root on the host; the engine proxy refuses it".into());
    }
    for k in [
        "CapAdd",
        "SecurityOpt",
        "Sysctls",
        "PortBindings",
        "VolumeDriver",
        "CgroupParent",
        "MaskedPaths",
        "ReadonlyPaths",
    ] {
        if nonempty(k) {
            return Err(format!(
                "`HostConfig.{k}` widens what a job may do on the host; the engine proxy refuses it"
            ));
        }
    }
    for k in [
        "PidMode",
        "IpcMode",
        "UTSMode",
        "UsernsMode",
        "CgroupnsMode",
        "Cgroup",
    ] {
        let mode = hc_get(k).and_then(|x| x.as_str()).unwrap_or("");
        if mode == "host" || mode.starts_with("container:") {
            return Err(format!(
                "`HostConfig.{k}: {mode}` shares a namespace outside the job; the engine proxy refuses it"
            ));
        }
    }
    let net = hc_get("NetworkMode").and_then(|x| x.as_str()).unwrap_or("");
    if !policy.networks.iter().any(|n| n == net) {
        return Err(format!(
            "`HostConfig.NetworkMode: {}` is not the runner's network ({}); the engine proxy refuses it",
            if net.is_empty() { "default" } else { net },
            policy.networks.join(", ")
        ));
    }
    if let Some(eps) = field(&v, "NetworkingConfig")
        .and_then(|n| field(n, "EndpointsConfig"))
        .and_then(|e| e.as_object())
        && let Some(other) = eps.keys().find(|k| !policy.networks.contains(k))
    {
        return Err(format!(
            "network `{other}` is not the runner's network; the engine proxy refuses it"
        ));
    }
    let str_list = |k: &str| -> Vec<String> {
        hc_get(k)
            .and_then(|x| x.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    for bind in str_list("Binds") {
        check_bind(policy, &bind)?;
    }
    for m in hc_get("Mounts")
        .and_then(|x| x.as_array())
        .into_iter()
        .flatten()
    {
        let kind = field(m, "Type")
            .and_then(|x| x.as_str())
            .unwrap_or("volume");
        let source = field(m, "Source").and_then(|x| x.as_str()).unwrap_or("");
        let ro = field(m, "ReadOnly")
            .and_then(|x| x.as_bool())
            .unwrap_or(false);
        if field(m, "VolumeOptions")
            .and_then(|o| field(o, "DriverConfig"))
            .is_some_and(|d| !d.is_null())
        {
            return Err(
                "a mount with a volume driver configuration (a bind of a host path) is refused by the engine proxy"
                    .into(),
            );
        }
        match kind {
            "volume" if source.is_empty() || source.starts_with(RUNNER_VOLUME_PREFIX) => {}
            "tmpfs" => {}
            "bind" if ro && policy.host_paths.iter().any(|p| p == source) => {}
            _ => {
                return Err(format!(
                    "a `{kind}` mount of `{source}` reaches beyond the job; the engine proxy allows gitlab-runner's volumes (`{RUNNER_VOLUME_PREFIX}…`) and {}",
                    allowed_paths(policy)
                ));
            }
        }
    }
    if let Some(vf) = hc_get("VolumesFrom").and_then(|x| x.as_array())
        && !vf.is_empty()
    {
        // gitlab-runner shares its cache volumes by name, not with VolumesFrom of foreign
        // containers; refusing it keeps a job from borrowing another container's mounts.
        return Err("`HostConfig.VolumesFrom` is refused by the engine proxy".into());
    }
    for d in hc_get("Devices")
        .and_then(|x| x.as_array())
        .into_iter()
        .flatten()
    {
        let path = field(d, "PathOnHost")
            .and_then(|x| x.as_str())
            .unwrap_or("");
        if !policy.devices.iter().any(|p| p == path) {
            return Err(format!(
                "device `{path}` is not one the runner passes; the engine proxy refuses it"
            ));
        }
    }
    if nonempty("DeviceCgroupRules") {
        return Err("`HostConfig.DeviceCgroupRules` is refused by the engine proxy".into());
    }
    Ok(())
}

fn allowed_paths(policy: &Policy) -> String {
    if policy.host_paths.is_empty() {
        "no host path".to_owned()
    } else {
        format!("read-only binds of {}", policy.host_paths.join(", "))
    }
}

/// A `Binds` entry: `volume:/path[:opts]` (a named volume: allowed), or `/host:/path[:opts]`
/// (allowed when the host path is in the policy and `ro`).
fn check_bind(policy: &Policy, bind: &str) -> Result<(), String> {
    let mut it = bind.splitn(3, ':');
    let source = it.next().unwrap_or("");
    let _target = it.next();
    let opts = it.next().unwrap_or("");
    if !source.starts_with('/') && !source.starts_with('.') && !source.contains('/') {
        // A named volume: gitlab-runner's own (cache, builds), never the platform's.
        if source.starts_with(RUNNER_VOLUME_PREFIX) {
            return Ok(());
        }
        return Err(format!(
            "volume `{source}` is not one of gitlab-runner's (`{RUNNER_VOLUME_PREFIX}…`); the engine proxy refuses it"
        ));
    }
    let ro = opts.split(',').any(|o| o == "ro");
    if ro && policy.host_paths.iter().any(|p| p == source) {
        return Ok(());
    }
    Err(format!(
        "bind mount `{bind}` reaches the host's files; the engine proxy allows gitlab-runner's volumes (`{RUNNER_VOLUME_PREFIX}…`) and {}",
        allowed_paths(policy)
    ))
}

/// Checks a `POST /volumes/create` body: a `local` volume with [`MANAGED_LABEL`] and no
/// driver options (a `local` volume with `o=bind` would mount a host path).
pub fn check_volume_create(body: &[u8]) -> Result<(), String> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| format!("the volume's definition is not JSON: {e}"))?;
    unambiguous(&v)?;
    if !is_managed(field(&v, "Labels").and_then(|l| l.as_object())) {
        return Err(format!(
            "a runner creates only volumes labelled `{MANAGED_LABEL}=true`"
        ));
    }
    let name = field(&v, "Name").and_then(|n| n.as_str()).unwrap_or("");
    if !name.is_empty() && !name.starts_with(RUNNER_VOLUME_PREFIX) {
        return Err(format!(
            "volume `{name}` is not named as gitlab-runner names its volumes (`{RUNNER_VOLUME_PREFIX}…`); the engine proxy refuses it"
        ));
    }
    let driver = field(&v, "Driver")
        .and_then(|d| d.as_str())
        .unwrap_or("local");
    let opts = field(&v, "DriverOpts").and_then(|o| o.as_object());
    if driver != "local" && !driver.is_empty() || opts.is_some_and(|o| !o.is_empty()) {
        return Err(
            "volume drivers and driver options (a bind of a host path) are refused by the engine proxy"
                .into(),
        );
    }
    Ok(())
}

/// A field of a Docker API body as the engine reads it. The engine decodes bodies with Go's
/// `encoding/json`, which matches struct field names case-insensitively (with Unicode simple
/// folding: `privileged`, `PRIVILEGED` and `HoſtConfig` are `Privileged` and `HostConfig` to
/// it), so a check that looked the exact spelling up would miss `{"hostconfig":
/// {"privileged": true}}`. [`unambiguous`] has refused two keys that fold alike, so at most
/// one key matches.
fn field<'a>(v: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    v.as_object()?
        .iter()
        .find(|(k, _)| fold_eq(k, name))
        .map(|(_, x)| x)
}

/// Go's `EqualFold` for field names: lower case, with the two characters whose simple case
/// folding reaches ASCII (`ſ` to `s`, the Kelvin sign to `k`).
fn fold(s: &str) -> String {
    s.chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            '\u{17F}' => 's',
            '\u{212A}' => 'k',
            c => c,
        })
        .collect()
}

fn fold_eq(a: &str, b: &str) -> bool {
    fold(a) == fold(b)
}

/// Refuses a body with two keys in one object that differ only in case: the engine would
/// take one of them (the last it reads) for the field, and which one the proxy checked must
/// not be a guess.
fn unambiguous(v: &serde_json::Value) -> Result<(), String> {
    match v {
        serde_json::Value::Object(o) => {
            let mut seen: Vec<(String, &str)> = Vec::with_capacity(o.len());
            for (k, x) in o {
                let f = fold(k);
                if let Some((_, prev)) = seen.iter().find(|(g, _)| *g == f) {
                    return Err(format!(
                        "keys `{prev}` and `{k}` differ only in case, and the engine reads them as one; the engine proxy refuses the request"
                    ));
                }
                seen.push((f, k));
                unambiguous(x)?;
            }
            Ok(())
        }
        serde_json::Value::Array(a) => a.iter().try_for_each(unambiguous),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        use Verdict::*;
        let c = |id: &str| IfManaged {
            object: Object::Container(id.into()),
            upgrade: false,
        };
        let cases: Vec<(&str, &str, Verdict)> = vec![
            ("GET", "/_ping", Allow),
            ("HEAD", "/v1.44/_ping", Allow),
            ("GET", "/v1.44/version", Allow),
            ("GET", "/info", Allow),
            ("POST", "/v1.44/images/create?fromImage=alpine&tag=3", Allow),
            ("GET", "/images/registry.gitlab.com/a/b:1/json", Allow),
            ("POST", "/images/load?quiet=1", Allow),
            (
                "POST",
                "/v1.44/containers/create?name=runner-x",
                CheckBody(BodyCheck::ContainerCreate),
            ),
            ("POST", "/containers/abc/start", c("abc")),
            ("GET", "/containers/abc/json", c("abc")),
            ("DELETE", "/containers/abc?v=1&force=1", c("abc")),
            ("PUT", "/containers/abc/archive?path=/", c("abc")),
            (
                "POST",
                "/containers/abc/attach?stream=1",
                IfManaged {
                    object: Object::Container("abc".into()),
                    upgrade: true,
                },
            ),
            (
                "GET",
                "/volumes/runner-cache",
                IfManaged {
                    object: Object::Volume("runner-cache".into()),
                    upgrade: false,
                },
            ),
            (
                "POST",
                "/volumes/create",
                CheckBody(BodyCheck::VolumeCreate),
            ),
        ];
        for (m, t, want) in cases {
            assert_eq!(check(m, t), want, "{m} {t}");
        }
        for (m, t) in [
            ("POST", "/v1.44/containers/abc/exec"),
            ("POST", "/exec/123/start"),
            ("POST", "/build"),
            ("POST", "/networks/create"),
            ("POST", "/containers/abc/update"),
            ("POST", "/commit?container=abc"),
            ("POST", "/containers/prune"),
            ("GET", "/events"),
            ("POST", "/swarm/init"),
            ("GET", "/secrets"),
            ("POST", "/plugins/pull"),
            ("GET", "/v1.44/../../containers/json"),
            ("DELETE", "/images/alpine"),
            (
                "POST",
                "/v1.44/images/create?fromSrc=http://127.0.0.1:8787/&repo=x",
            ),
            ("POST", "/containers/a%2F..%2Fb/start"),
            ("POST", "/containers//start"),
        ] {
            assert!(matches!(check(m, t), Deny(_)), "{m} {t}: {:?}", check(m, t));
        }
        assert_eq!(
            unversioned("/v1.44/containers/json?all=1"),
            "/containers/json"
        );
        assert_eq!(unversioned("/volumes"), "/volumes");
    }

    fn policy() -> Policy {
        Policy {
            networks: vec!["autogit-runner-g1".into()],
            host_paths: vec!["/usr/lib/wsl".into()],
            devices: vec!["/dev/dxg".into()],
        }
    }

    fn create(host_config: serde_json::Value) -> Vec<u8> {
        serde_json::json!({
            "Image": "debian:bookworm-slim",
            "Labels": {MANAGED_LABEL: "true", "com.gitlab.gitlab-runner.job.id": "7"},
            "HostConfig": host_config,
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn container_definitions() {
        let net = "autogit-runner-g1";
        let ok = [
            serde_json::json!({"NetworkMode": net}),
            serde_json::json!({"NetworkMode": net, "Binds": ["runner-abc-project-1-concurrent-0-cache-3c3f:/cache"],
                "DeviceRequests": [{"Driver": "nvidia", "Count": -1, "Capabilities": [["gpu"]]}]}),
            serde_json::json!({"NetworkMode": net, "Binds": ["/usr/lib/wsl:/usr/lib/wsl:ro"],
                "Devices": [{"PathOnHost": "/dev/dxg", "PathInContainer": "/dev/dxg", "CgroupPermissions": "rwm"}]}),
            serde_json::json!({"NetworkMode": net, "Mounts": [{"Type": "volume", "Source": "runner-c", "Target": "/cache"}],
                "CapAdd": [], "SecurityOpt": null}),
        ];
        for hc in ok {
            assert_eq!(
                check_container_create(&policy(), &create(hc.clone())),
                Ok(()),
                "{hc}"
            );
        }
        let refused = [
            (
                serde_json::json!({"NetworkMode": net, "Privileged": true}),
                "Privileged",
            ),
            (
                serde_json::json!({"NetworkMode": "host"}),
                "NetworkMode: host",
            ),
            (serde_json::json!({}), "NetworkMode: default"),
            (
                serde_json::json!({"NetworkMode": "autogit"}),
                "NetworkMode: autogit",
            ),
            (
                serde_json::json!({"NetworkMode": "container:autogit-gitlab"}),
                "NetworkMode",
            ),
            (
                serde_json::json!({"NetworkMode": net, "PidMode": "host"}),
                "PidMode",
            ),
            (
                serde_json::json!({"NetworkMode": net, "IpcMode": "container:x"}),
                "IpcMode",
            ),
            (
                serde_json::json!({"NetworkMode": net, "UsernsMode": "host"}),
                "UsernsMode",
            ),
            (
                serde_json::json!({"NetworkMode": net, "CapAdd": ["SYS_ADMIN"]}),
                "CapAdd",
            ),
            (
                serde_json::json!({"NetworkMode": net, "SecurityOpt": ["apparmor=unconfined"]}),
                "SecurityOpt",
            ),
            (
                serde_json::json!({"NetworkMode": net, "Binds": ["/var/run/docker.sock:/var/run/docker.sock"]}),
                "docker.sock",
            ),
            (
                serde_json::json!({"NetworkMode": net, "Binds": ["/:/host"]}),
                "`/:/host`",
            ),
            (
                serde_json::json!({"NetworkMode": net, "Binds": ["/usr/lib/wsl:/usr/lib/wsl"]}),
                "wsl",
            ),
            (
                serde_json::json!({"NetworkMode": net, "Mounts": [{"Type": "bind", "Source": "/etc", "Target": "/x"}]}),
                "`bind` mount of `/etc`",
            ),
            (
                serde_json::json!({"NetworkMode": net, "Devices": [{"PathOnHost": "/dev/sda"}]}),
                "/dev/sda",
            ),
            (
                serde_json::json!({"NetworkMode": net, "VolumesFrom": ["autogit-gitlab"]}),
                "VolumesFrom",
            ),
            (
                serde_json::json!({"NetworkMode": net, "DeviceCgroupRules": ["a *:* rwm"]}),
                "DeviceCgroupRules",
            ),
        ];
        for (hc, says) in refused {
            let e = check_container_create(&policy(), &create(hc.clone())).unwrap_err();
            assert!(e.contains(says), "{hc}: {e}");
        }
        let unlabelled = serde_json::json!({"Image": "x", "HostConfig": {"NetworkMode": net}});
        assert!(
            check_container_create(&policy(), unlabelled.to_string().as_bytes())
                .unwrap_err()
                .contains(MANAGED_LABEL)
        );
        let endpoints = serde_json::json!({"Labels": {MANAGED_LABEL: "true"}, "HostConfig": {"NetworkMode": net},
            "NetworkingConfig": {"EndpointsConfig": {"autogit": {}}}});
        assert!(check_container_create(&policy(), endpoints.to_string().as_bytes()).is_err());
        assert!(check_container_create(&policy(), b"not json").is_err());
    }

    /// `fromSrc` is found however the query spells it (the engine decodes query keys).
    #[test]
    fn an_encoded_from_src_is_still_an_import() {
        for target in [
            "/v1.44/images/create?fromSrc=http://127.0.0.1:8080/x",
            "/images/create?tag=1&from%53rc=http://127.0.0.1:8080/x",
            "/images/create?from%53%72c=-",
            "/images/create?%ZZ=1",
        ] {
            assert!(
                matches!(check("POST", target), Verdict::Deny(_)),
                "{target}"
            );
        }
        assert_eq!(
            check("POST", "/images/create?fromImage=debian&tag=bookworm"),
            Verdict::Allow
        );
    }

    /// The engine reads field names case-insensitively (Go's `encoding/json`): spellings the
    /// proxy once missed are checked as the engine reads them, and two spellings of one field
    /// are refused. Map keys (labels, network names) stay exact, as the engine has them.
    #[test]
    fn fields_are_read_as_the_engine_reads_them() {
        let net = "autogit-runner-g1";
        let raw = |text: String| check_container_create(&policy(), text.as_bytes());
        let l = format!("\"Labels\": {{\"{MANAGED_LABEL}\": \"true\"}}");
        for (body, says) in [
            (
                format!(
                    "{{{l}, \"hostconfig\": {{\"NetworkMode\": \"{net}\", \"privileged\": true}}}}"
                ),
                "Privileged",
            ),
            (
                format!("{{{l}, \"HostConfig\": {{\"networkmode\": \"host\"}}}}"),
                "NetworkMode: host",
            ),
            (
                format!(
                    "{{{l}, \"HostConfig\": {{\"NetworkMode\": \"{net}\", \"BINDS\": [\"/:/host\"]}}}}"
                ),
                "`/:/host`",
            ),
            // `ſ` folds to `s` for Go: `Hoſtconfig` is `HostConfig`.
            (
                format!(
                    "{{{l}, \"Ho\u{17f}tconfig\": {{\"NetworkMode\": \"{net}\", \"Privileged\": true}}}}"
                ),
                "Privileged",
            ),
            (
                format!(
                    "{{{l}, \"HostConfig\": {{\"NetworkMode\": \"{net}\", \"Privileged\": false, \"privileged\": true}}}}"
                ),
                "differ only in case",
            ),
            (
                format!(
                    "{{{l}, \"HostConfig\": {{\"NetworkMode\": \"{net}\", \"mounts\": [{{\"type\": \"bind\", \"source\": \"/etc\"}}]}}}}"
                ),
                "`bind` mount of `/etc`",
            ),
            (
                format!(
                    "{{{l}, \"HostConfig\": {{\"NetworkMode\": \"{net}\"}}, \"networkingconfig\": {{\"endpointsconfig\": {{\"autogit\": {{}}}}}}}}"
                ),
                "network `autogit`",
            ),
            (
                format!("{{\"labels\": {{}}, \"HostConfig\": {{\"NetworkMode\": \"{net}\"}}}}"),
                MANAGED_LABEL,
            ),
        ] {
            let e = raw(body.clone()).unwrap_err();
            assert!(e.contains(says), "{body}: {e}");
        }
        // Lower-case spellings of allowed definitions still pass.
        assert_eq!(
            raw(format!(
                "{{\"labels\": {{\"{MANAGED_LABEL}\": \"true\"}}, \"hostConfig\": {{\"networkMode\": \"{net}\"}}}}"
            )),
            Ok(())
        );
        let e = check_volume_create(
            format!("{{\"Name\": \"runner-c\", \"Labels\": {{\"{MANAGED_LABEL}\": \"true\"}}, \"driveropts\": {{\"o\": \"bind\", \"device\": \"/\"}}}}").as_bytes(),
        )
        .unwrap_err();
        assert!(e.contains("driver options"), "{e}");
    }

    #[test]
    fn host_policies() {
        let p = host_policy(&["g1".into(), "c-2".into(), "g1".into()], true).unwrap();
        assert_eq!(p.networks, ["autogit-runner-c-2", "autogit-runner-g1"]);
        assert_eq!(p.devices, ["/dev/dxg"]);
        assert!(host_policy(&["G1".into()], false).is_err());
        assert!(host_policy(&["-x".into()], false).is_err());
        assert!(host_policy(&["a/b".into()], false).is_err());
    }

    #[test]
    fn volume_definitions() {
        let l = serde_json::json!({MANAGED_LABEL: "true"});
        assert_eq!(
            check_volume_create(
                serde_json::json!({"Name": "runner-c", "Labels": l})
                    .to_string()
                    .as_bytes()
            ),
            Ok(())
        );
        for bad in [
            serde_json::json!({"Name": "runner-c"}),
            serde_json::json!({"Name": "autogit_gitlab-data", "Labels": l}),
            serde_json::json!({"Name": "runner-c", "Labels": l, "DriverOpts": {"type": "none", "o": "bind", "device": "/"}}),
            serde_json::json!({"Name": "runner-c", "Labels": l, "Driver": "sshfs"}),
        ] {
            assert!(
                check_volume_create(bad.to_string().as_bytes()).is_err(),
                "{bad}"
            );
        }
    }
}
