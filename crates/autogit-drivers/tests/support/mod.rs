//! Helpers for the tests against a real engine: connecting (or skipping), the local test image
//! (there is no registry here), container specs, and a guard that removes everything a test
//! created, by its project label, even when the test fails.
#![allow(dead_code)]

use autogit_core::container::{ContainerSpec, EngineHealthcheck, MountSpec, labels};
use autogit_drivers::engine::docker::Docker;
use autogit_drivers::engine::{ContainerEngine, EngineError};
use bollard::query_parameters::{
    CreateImageOptions, ListContainersOptions, ListNetworksOptions, ListVolumesOptions,
    RemoveContainerOptions, RemoveVolumeOptions,
};
use futures_util::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

/// The test image: Debian's static busybox, imported as a root file system. Its own tag, so
/// it never collides with other test images built on the same engine.
pub const IMAGE: &str = "autogit-test/busybox-engine:1";
const BUSYBOX: &str = "/bin/busybox";
const APPLETS: &[&str] = &[
    "sh", "httpd", "wget", "sleep", "nc", "cat", "echo", "ls", "mkdir", "rm", "kill", "true",
    "false", "env", "hostname", "id",
];

/// The process environment as `connect` takes it.
pub fn process_env() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| k == "DOCKER_HOST" || k == "XDG_RUNTIME_DIR")
        .collect()
}

/// Whether missing tools must fail the tests (set by scripts/test.sh) instead of skipping them.
pub fn required() -> bool {
    std::env::var_os("AUTOGIT_REQUIRE_TOOLS").is_some()
}

/// Connects to the engine, or returns `None` (after saying so) when none is reachable and
/// `AUTOGIT_REQUIRE_TOOLS` is unset; with it set, a missing engine fails the test.
pub async fn engine() -> Option<Docker> {
    match Docker::connect(None, &process_env()).await {
        Ok(d) => Some(d),
        Err(e) => {
            assert!(
                !required(),
                "a container engine is required (AUTOGIT_REQUIRE_TOOLS=1): {e}"
            );
            eprintln!("skipping: no container engine: {e}");
            None
        }
    }
}

/// A unique project name for one test of this process.
pub fn project(test: &str) -> String {
    format!("agt-{test}-{}", std::process::id())
}

/// The labels autogit puts on everything of a project.
pub fn project_labels(project: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::MANAGED.to_owned(), project.to_owned()),
        (labels::COMPOSE_PROJECT.to_owned(), project.to_owned()),
    ])
}

fn rootfs_tar() -> std::io::Result<Vec<u8>> {
    let busybox = std::fs::read(BUSYBOX)?;
    let mut b = tar::Builder::new(Vec::new());
    let dir = |b: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(mode);
        h.set_size(0);
        h.set_mtime(0);
        b.append_data(&mut h, path, std::io::empty())
    };
    let file = |b: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        b.append_data(&mut h, path, data)
    };
    for (d, mode) in [
        ("bin", 0o755),
        ("www", 0o755),
        ("data", 0o755),
        ("etc", 0o755),
        ("tmp", 0o1777),
    ] {
        dir(&mut b, d, mode)?;
    }
    file(&mut b, "bin/busybox", 0o755, &busybox)?;
    for applet in APPLETS {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        h.set_mtime(0);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox")?;
    }
    file(&mut b, "www/health", 0o644, b"ok\n")?;
    file(&mut b, "www/index.html", 0o644, b"autogit test\n")?;
    file(&mut b, "etc/passwd", 0o644, b"root:x:0:0:root:/:/bin/sh\n")?;
    file(&mut b, "etc/group", 0o644, b"root:x:0:\n")?;
    b.into_inner()
}

static IMAGE_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Imports [`IMAGE`] unless it is present. `false` (after saying so) when busybox-static is
/// not installed and tools are not required.
pub async fn ensure_image(docker: &Docker) -> bool {
    let _guard = IMAGE_LOCK.lock().await;
    if docker.image_present(IMAGE).await.expect("inspect image") {
        return true;
    }
    if !Path::new(BUSYBOX).is_file() {
        assert!(
            !required(),
            "busybox-static is required (AUTOGIT_REQUIRE_TOOLS=1) for the test image"
        );
        eprintln!("skipping: {BUSYBOX} missing (apt-get install busybox-static)");
        return false;
    }
    let tar = rootfs_tar().expect("build the root file system");
    let (repo, tag) = IMAGE.split_once(':').expect("image has a tag");
    let options = CreateImageOptions {
        from_src: Some("-".to_owned()),
        repo: Some(repo.to_owned()),
        tag: Some(tag.to_owned()),
        changes: vec![r#"CMD ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"]"#.to_owned()],
        ..Default::default()
    };
    let mut stream =
        docker
            .client()
            .create_image(Some(options), Some(bollard::body_full(tar.into())), None);
    while let Some(item) = stream.next().await {
        item.expect("import the test image");
    }
    assert!(
        docker.image_present(IMAGE).await.expect("inspect image"),
        "{IMAGE} missing after import"
    );
    true
}

/// Connects and makes sure the test image exists; `None` means skip.
pub async fn ready() -> Option<Docker> {
    let docker = engine().await?;
    ensure_image(&docker).await.then_some(docker)
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    autogit_drivers::testing::bind::free_port()
}

/// A spec for the test image: httpd on 8080 with the `/health` healthcheck (1 s interval),
/// on the project's network, labelled like autogit's own.
pub fn spec(project: &str, service: &str) -> ContainerSpec {
    let mut labels = project_labels(project);
    labels.insert(labels::COMPOSE_SERVICE.to_owned(), service.to_owned());
    labels.insert(labels::SERVICE.to_owned(), service.to_owned());
    let mut spec = ContainerSpec {
        name: format!("{project}-{service}"),
        service: service.to_owned(),
        image: IMAGE.to_owned(),
        command: vec![],
        env: BTreeMap::new(),
        secret_keys: vec![],
        ports: vec![],
        mounts: vec![],
        nano_cpus: 500_000_000,
        memory_bytes: 64 << 20,
        shm_size_bytes: None,
        network: network(project),
        aliases: vec![service.to_owned()],
        hostname: None,
        healthcheck: Some(EngineHealthcheck {
            test: [
                "CMD",
                "wget",
                "-q",
                "-O",
                "/dev/null",
                "http://127.0.0.1:8080/health",
            ]
            .map(str::to_owned)
            .to_vec(),
            interval_secs: 1,
            timeout_secs: 2,
            retries: 3,
            start_period_secs: 0,
        }),
        labels,
        restart_policy: "no".to_owned(),
    };
    rehash(&mut spec);
    spec
}

/// Sets the spec-hash label after the spec was changed, as autogit's planner does.
pub fn rehash(spec: &mut ContainerSpec) {
    let hash = spec.hash();
    spec.labels.insert(labels::SPEC_HASH.to_owned(), hash);
}

/// The project's network name.
pub fn network(project: &str) -> String {
    format!("{project}_net")
}

/// A volume mount of the project.
pub fn volume_mount(project: &str, volume: &str, target: &str) -> MountSpec {
    MountSpec::Volume {
        name: format!("{project}_{volume}"),
        target: target.to_owned(),
    }
}

/// Creates the network and the volumes the spec needs, then creates and starts it.
pub async fn run(docker: &Docker, spec: &ContainerSpec) -> String {
    let project = spec
        .labels
        .get(labels::MANAGED)
        .cloned()
        .expect("project label");
    docker
        .ensure_network(&spec.network, &project_labels(&project))
        .await
        .expect("network");
    for m in &spec.mounts {
        if let MountSpec::Volume { name, .. } = m {
            docker
                .ensure_volume(name, &project_labels(&project))
                .await
                .expect("volume");
        }
    }
    let id = docker.create(spec).await.expect("create");
    docker.start(&id).await.expect("start");
    id
}

/// Polls `check` every 200 ms until it is true or `secs` pass.
pub async fn wait_until(secs: u64, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Removes every container, network and volume labelled with the project.
pub async fn cleanup(docker: &Docker, project: &str) {
    let filter = || {
        Some(HashMap::from([(
            "label".to_owned(),
            vec![format!("{}={project}", labels::MANAGED)],
        )]))
    };
    let c = docker.client();
    if let Ok(list) = c
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: filter(),
            ..Default::default()
        }))
        .await
    {
        for s in list {
            if let Some(id) = s.id {
                let _ = c
                    .remove_container(
                        &id,
                        Some(RemoveContainerOptions {
                            force: true,
                            v: true,
                            link: false,
                        }),
                    )
                    .await;
            }
        }
    }
    if let Ok(list) = c
        .list_networks(Some(ListNetworksOptions { filters: filter() }))
        .await
    {
        for n in list {
            if let Some(id) = n.id {
                let _ = c.remove_network(&id).await;
            }
        }
    }
    if let Ok(list) = c
        .list_volumes(Some(ListVolumesOptions { filters: filter() }))
        .await
    {
        for v in list.volumes.into_iter().flatten() {
            let _ = c
                .remove_volume(&v.name, Some(RemoveVolumeOptions { force: true }))
                .await;
        }
    }
}

/// Cleans the project up when created (leftovers of an earlier run) and when dropped, even
/// when the test panics. The drop runs on its own thread and runtime, so it may block.
#[derive(Debug)]
pub struct Cleanup {
    pub project: String,
}

impl Cleanup {
    /// Removes leftovers of the project now and again when dropped.
    pub async fn new(docker: &Docker, project: &str) -> Cleanup {
        cleanup(docker, project).await;
        Cleanup {
            project: project.to_owned(),
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let project = self.project.clone();
        let done = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(d) = Docker::connect(None, &process_env()).await {
                    cleanup(&d, &project).await;
                }
            });
        })
        .join();
        if done.is_err() {
            eprintln!("cleanup of {} panicked", self.project);
        }
    }
}

/// Asserts the error is `NotFound`.
pub fn assert_not_found<T: std::fmt::Debug>(r: Result<T, EngineError>) {
    assert!(
        matches!(r, Err(EngineError::NotFound { .. })),
        "expected NotFound, got {r:?}"
    );
}

/// A tmpfs of `size` (`mount -o size=…`, e.g. `4m`) on a fresh temporary directory,
/// unmounted when dropped: a small file system to fill. `None` (after saying so) when it
/// cannot be mounted (mounting needs root) and tools are not required.
#[derive(Debug)]
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { dir }),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                    Err(e) => e.to_string(),
                };
                assert!(
                    !required(),
                    "a tmpfs is required (AUTOGIT_REQUIRE_TOOLS=1; run as root): {why}"
                );
                eprintln!("skipping: cannot mount a tmpfs (needs root): {why}");
                None
            }
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Bytes in use on it.
    pub fn used(&self) -> u64 {
        let out = std::process::Command::new("df")
            .args(["--output=used", "-B1"])
            .arg(self.path())
            .output()
            .expect("df");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .expect("df output")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// The plan `autogit install` makes of `config` (autogit.yml) and `env` (.env) text, which
/// must have no error.
pub fn plan_of(config: &str, env: &str) -> autogit_core::plan::Plan {
    use autogit_core::load::{LoadInput, load};
    let loaded = load(&LoadInput {
        file: Some(("autogit.yml", config)),
        ..Default::default()
    });
    let mut sources = loaded.sources;
    let mut diags: autogit_core::diag::Diagnostics = loaded.diagnostics;
    let (platform, _) =
        autogit_core::platform::load_platform(Some((".env", env)), &[], &mut sources, &mut diags);
    assert_eq!(diags.errors(), 0, "{diags:?}");
    autogit_core::plan::plan(
        &loaded.config,
        &platform,
        &autogit_core::plan::PlanInput::default(),
    )
    .0
}

/// Says what a test skips for; under `AUTOGIT_REQUIRE_TOOLS` it fails instead.
pub fn skip(what: &str) {
    assert!(
        std::env::var_os("AUTOGIT_REQUIRE_TOOLS").is_none(),
        "{what} is required (AUTOGIT_REQUIRE_TOOLS=1)"
    );
    eprintln!("skipping: {what}");
}
