//! Shared by the app's tests: settings from YAML and `.env` text, a bus on a hand-driven clock.

#![allow(dead_code)]

use autogit_app::{Bus, Envelope, Event, ManualClock, Settings};
use autogit_core::load::{LoadInput, load};
use autogit_core::platform::load_platform;
use autogit_core::source::Sources;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::broadcast;

pub fn settings(config: &str, env: &str, data: &Path) -> Arc<Settings> {
    let loaded = load(&LoadInput {
        file: Some(("autogit.yml", config)),
        ..Default::default()
    });
    assert!(!loaded.diagnostics.has_errors(), "{:?}", loaded.diagnostics);
    let mut sources = Sources::new();
    let mut diags = Default::default();
    let (platform, entries) = load_platform(Some((".env", env)), &[], &mut sources, &mut diags);
    let mut s = Settings::new(loaded.config, platform, data.to_owned());
    s.values = entries.into_iter().map(|(k, e)| (k, e.value)).collect();
    Arc::new(s)
}

pub fn bus_at(unix: u64) -> (Bus, ManualClock) {
    let clock = ManualClock::at(unix);
    (Bus::new(Arc::new(clock.clone())), clock)
}

/// Every event received so far.
pub fn drain(rx: &mut broadcast::Receiver<Arc<Envelope>>) -> Vec<Event> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        out.push(e.event.clone());
    }
    out
}

/// Whether a container engine answers (`docker version`).
pub fn docker_available() -> bool {
    std::process::Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Says why a test skips and returns true; under `AUTOGIT_REQUIRE_TOOLS` it fails instead.
pub fn skip(why: &str) -> bool {
    assert!(
        std::env::var_os("AUTOGIT_REQUIRE_TOOLS").is_none(),
        "AUTOGIT_REQUIRE_TOOLS is set but {why}"
    );
    eprintln!("skipping: {why}");
    true
}

/// The stand-in job image on the real engine, or `None` (said, or a failure under
/// `AUTOGIT_REQUIRE_TOOLS`) when no engine answers or the image cannot be built.
pub fn job_image_or_skip() -> Option<String> {
    if !docker_available() && skip("no container engine answers `docker version`") {
        return None;
    }
    match autogit_drivers::testing::job_stand_in_image() {
        Ok(i) => Some(i),
        Err(e) => {
            skip(&format!("the stand-in job image cannot be built: {e}"));
            None
        }
    }
}

/// A compute controller over `settings` on the system clock, and its bus.
pub fn compute(settings: Arc<Settings>) -> (autogit_app::compute::ComputeController, Bus) {
    let (bus, _) = bus_at(0);
    let c = autogit_app::compute::ComputeController::new(
        settings,
        bus.clone(),
        autogit_app::clock::system(),
    );
    (c, bus)
}

/// [`compute`] reaching the hosts of `lab` over SSH, every host's key trusted.
pub async fn lab_compute(
    lab: &autogit_drivers::testing::netns::SshLab,
    settings: Arc<Settings>,
    data: &Path,
) -> (autogit_app::compute::ComputeController, Bus) {
    let cfg = lab.ssh_config(data);
    for h in &lab.hosts {
        autogit_drivers::remote::ssh::trust(&cfg, &h.addr, false)
            .await
            .unwrap();
    }
    let (c, bus) = compute(settings);
    (c.with_ssh_config(cfg), bus)
}

/// The upstream URL of the first route in Traefik's `compute.yml` at `path`, if any.
pub fn route_upstream(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("- url: ")
                .map(|u| u.trim_matches('"').to_owned())
        })
}

/// A CPU job for `ann` running `script` with `sh -c` in `image` (1G, no kind).
pub fn shell_job(image: &str, script: &str) -> autogit_app::compute::Submit {
    autogit_app::compute::Submit {
        gpus: 0,
        vram: Some("1G".into()),
        user: "ann".into(),
        job: vec![image.into(), "sh".into(), "-c".into(), script.into()],
        ..Default::default()
    }
}

/// An inference service for `ann`: `script` with `sh -c` in `image`, serving port 8080,
/// routed as `llm`, health-checked every second.
pub fn routed_service(image: &str, script: &str) -> autogit_app::compute::Submit {
    autogit_app::compute::Submit {
        vram: None,
        capability: Some("inference".into()),
        port: Some(8080),
        route: Some("llm".into()),
        health_interval: Some("1s".into()),
        ..shell_job(image, script)
    }
}
