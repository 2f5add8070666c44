//! An in-memory container engine: the same trait, no daemon. Used by the runtime's tests to
//! drive exact scenarios (a container dies, turns unhealthy, crash-loops) deterministically;
//! the Docker implementation is tested against a real dockerd.

use super::{
    ContainerEngine, EngineError, EngineEvent, EngineInfo, Health, Observed, PullProgress, RunState,
};
use autogit_core::container::{ContainerSpec, labels};
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Debug, Clone)]
pub struct Container {
    pub id: String,
    pub spec: ContainerSpec,
    pub state: RunState,
    pub health: Health,
    /// How many times it was started (created + restarts).
    pub starts: u32,
}

#[derive(Debug, Default)]
pub struct Inner {
    pub containers: BTreeMap<String, Container>,
    pub networks: Vec<String>,
    pub volumes: Vec<String>,
    pub images: Vec<String>,
    pub pulls: Vec<String>,
    pub next_id: u64,
    /// Services whose containers die right after every start (crash loop).
    pub crash_on_start: Vec<String>,
    /// Services whose containers report unhealthy after every start.
    pub unhealthy_on_start: Vec<String>,
    /// When set, every call fails as if the engine were down.
    pub down: bool,
    /// Log lines per container id, with their timestamps (unix nanoseconds).
    pub logs: BTreeMap<String, Vec<(i64, String)>>,
    pub calls: Vec<String>,
}

#[derive(Debug, Default)]
pub struct MemoryEngine {
    pub inner: Mutex<Inner>,
}

impl MemoryEngine {
    pub fn new(images: &[&str]) -> Self {
        let e = Self::default();
        e.lock().images = images.iter().map(|s| (*s).to_owned()).collect();
        e
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn check(&self, call: String) -> Result<std::sync::MutexGuard<'_, Inner>, EngineError> {
        let mut g = self.lock();
        if g.down {
            return Err(EngineError::NoEngine {
                tried: "memory engine is down".into(),
            });
        }
        g.calls.push(call);
        Ok(g)
    }

    /// Simulates `docker kill`: the container stops.
    pub fn kill(&self, service: &str) {
        for c in self
            .lock()
            .containers
            .values_mut()
            .filter(|c| c.spec.service == service)
        {
            c.state = RunState::Exited;
        }
    }

    pub fn set_health(&self, service: &str, health: Health) {
        for c in self
            .lock()
            .containers
            .values_mut()
            .filter(|c| c.spec.service == service)
        {
            c.health = health;
        }
    }

    pub fn by_service(&self, service: &str) -> Vec<Container> {
        self.lock()
            .containers
            .values()
            .filter(|c| c.spec.service == service)
            .cloned()
            .collect()
    }

    fn started(g: &mut Inner, id: &str) {
        let crash = g
            .containers
            .get(id)
            .is_some_and(|c| g.crash_on_start.contains(&c.spec.service));
        let sick = g
            .containers
            .get(id)
            .is_some_and(|c| g.unhealthy_on_start.contains(&c.spec.service));
        if let Some(c) = g.containers.get_mut(id) {
            c.starts += 1;
            c.state = if crash {
                RunState::Exited
            } else {
                RunState::Running
            };
            c.health = match (c.spec.healthcheck.is_some(), sick) {
                (false, _) => Health::None,
                (true, true) => Health::Unhealthy,
                (true, false) => Health::Healthy,
            };
        }
    }
}

impl ContainerEngine for MemoryEngine {
    async fn info(&self) -> Result<EngineInfo, EngineError> {
        drop(self.check("info".into())?);
        Ok(EngineInfo {
            kind: "memory".into(),
            version: "0".into(),
            api_version: "1.41".into(),
            rootless: false,
            socket: "/dev/null".into(),
            storage_driver: "memory".into(),
            root_dir: None,
            system_time: None,
        })
    }
    async fn ensure_network(
        &self,
        name: &str,
        _l: &BTreeMap<String, String>,
    ) -> Result<bool, EngineError> {
        let mut g = self.check(format!("ensure_network {name}"))?;
        let new = !g.networks.iter().any(|n| n == name);
        if new {
            g.networks.push(name.to_owned());
        }
        Ok(new)
    }
    async fn ensure_volume(
        &self,
        name: &str,
        _l: &BTreeMap<String, String>,
    ) -> Result<bool, EngineError> {
        let mut g = self.check(format!("ensure_volume {name}"))?;
        let new = !g.volumes.iter().any(|n| n == name);
        if new {
            g.volumes.push(name.to_owned());
        }
        Ok(new)
    }
    async fn image_present(&self, image: &str) -> Result<bool, EngineError> {
        Ok(self
            .check(format!("image_present {image}"))?
            .images
            .iter()
            .any(|i| i == image))
    }
    async fn pull(
        &self,
        image: &str,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<(), EngineError> {
        let mut g = self.check(format!("pull {image}"))?;
        g.pulls.push(image.to_owned());
        g.images.push(image.to_owned());
        drop(g);
        progress(PullProgress {
            image: image.to_owned(),
            status: "Pull complete".into(),
            current: 1,
            total: 1,
        });
        Ok(())
    }
    async fn list(&self, project: &str) -> Result<Vec<Observed>, EngineError> {
        let g = self.check("list".into())?;
        Ok(g.containers
            .values()
            .filter(|c| c.spec.labels.get(labels::MANAGED).map(String::as_str) == Some(project))
            .map(|c| Observed {
                id: c.id.clone(),
                name: c.spec.name.clone(),
                service: c.spec.service.clone(),
                spec_hash: c.spec.labels.get(labels::SPEC_HASH).cloned(),
                state: c.state,
                health: if c.state == RunState::Running {
                    c.health
                } else {
                    Health::None
                },
                exit_code: (c.state == RunState::Exited).then_some(137),
                oom_killed: false,
                started_at: None,
                labels: c.spec.labels.clone(),
            })
            .collect())
    }
    async fn inspect(&self, id: &str) -> Result<ContainerSpec, EngineError> {
        let g = self.check(format!("inspect {id}"))?;
        g.containers
            .get(id)
            .map(|c| c.spec.clone())
            .ok_or_else(|| EngineError::NotFound {
                what: format!("container {id}"),
            })
    }
    async fn create(&self, spec: &ContainerSpec) -> Result<String, EngineError> {
        let mut g = self.check(format!("create {}", spec.service))?;
        if g.containers.values().any(|c| c.spec.name == spec.name) {
            return Err(EngineError::Engine(format!(
                "Conflict. The container name \"/{}\" is already in use",
                spec.name
            )));
        }
        if !g.images.contains(&spec.image) {
            return Err(EngineError::NotFound {
                what: format!("image {}", spec.image),
            });
        }
        g.next_id += 1;
        let id = format!("c{}", g.next_id);
        g.containers.insert(
            id.clone(),
            Container {
                id: id.clone(),
                spec: spec.clone(),
                state: RunState::Created,
                health: Health::None,
                starts: 0,
            },
        );
        Ok(id)
    }
    async fn start(&self, id: &str) -> Result<(), EngineError> {
        let mut g = self.check(format!("start {id}"))?;
        if !g.containers.contains_key(id) {
            return Err(EngineError::NotFound {
                what: format!("container {id}"),
            });
        }
        Self::started(&mut g, id);
        Ok(())
    }
    async fn stop(&self, id: &str, _t: u32) -> Result<(), EngineError> {
        let mut g = self.check(format!("stop {id}"))?;
        if let Some(c) = g.containers.get_mut(id) {
            c.state = RunState::Exited;
        }
        Ok(())
    }
    async fn restart(&self, id: &str, t: u32) -> Result<(), EngineError> {
        let mut g = self.check(format!("restart {id} (stop grace {t}s)"))?;
        Self::started(&mut g, id);
        Ok(())
    }
    async fn remove(&self, id: &str) -> Result<(), EngineError> {
        let mut g = self.check(format!("remove {id}"))?;
        g.containers
            .remove(id)
            .map(|_| ())
            .ok_or(EngineError::NotFound {
                what: format!("container {id}"),
            })
    }
    async fn remove_network(&self, name: &str) -> Result<(), EngineError> {
        self.check(format!("remove_network {name}"))?
            .networks
            .retain(|n| n != name);
        Ok(())
    }
    async fn remove_volume(&self, name: &str) -> Result<(), EngineError> {
        self.check(format!("remove_volume {name}"))?
            .volumes
            .retain(|n| n != name);
        Ok(())
    }
    async fn logs(
        &self,
        id: &str,
        _s: Option<i64>,
        _t: Option<usize>,
    ) -> Result<Vec<String>, EngineError> {
        drop(self.check(format!("logs {id}"))?);
        Ok(vec![format!("log line of {id}")])
    }
    async fn logs_after(
        &self,
        id: &str,
        after_ns: Option<i64>,
        tail: Option<usize>,
    ) -> Result<Vec<(i64, String)>, EngineError> {
        let inner = self.check(format!("logs {id}"))?;
        let all = inner.logs.get(id).cloned().unwrap_or_default();
        let mut v: Vec<(i64, String)> = all
            .into_iter()
            .filter(|(at, _)| after_ns.is_none_or(|a| *at > a))
            .collect();
        if let (None, Some(n)) = (after_ns, tail) {
            v = v.split_off(v.len().saturating_sub(n));
        }
        Ok(v)
    }
    async fn exec(&self, id: &str, argv: &[String]) -> Result<(i64, String), EngineError> {
        drop(self.check(format!("exec {id} {}", argv.join(" ")))?);
        Ok((0, String::new()))
    }
    async fn exec_with_stdin(
        &self,
        id: &str,
        argv: &[String],
        stdin: &[u8],
    ) -> Result<(i64, String), EngineError> {
        // The input is not recorded: it is where secrets go.
        drop(self.check(format!(
            "exec {id} {} <{} bytes>",
            argv.join(" "),
            stdin.len()
        ))?);
        Ok((0, String::new()))
    }
    async fn copy_out(
        &self,
        id: &str,
        path: &str,
        dest: &std::path::Path,
    ) -> Result<u64, EngineError> {
        drop(self.check(format!("copy_out {id} {path}"))?);
        // An empty archive: two zero blocks.
        let empty = [0u8; 1024];
        std::fs::write(dest, empty).map_err(|e| EngineError::Engine(e.to_string()))?;
        Ok(empty.len() as u64)
    }
    async fn copy_in(
        &self,
        id: &str,
        dir: &str,
        _tar: &std::path::Path,
    ) -> Result<(), EngineError> {
        drop(self.check(format!("copy_in {id} {dir}"))?);
        Ok(())
    }
    async fn events(
        &self,
        _project: &str,
        tx: tokio::sync::mpsc::Sender<EngineEvent>,
    ) -> Result<(), EngineError> {
        // No spontaneous events; hold the channel open until the receiver goes away.
        tx.closed().await;
        Ok(())
    }
}
