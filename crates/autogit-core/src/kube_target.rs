//! Kubernetes as a deploy target, as decisions: what `install --target kubernetes` applies and
//! in which order, where each object lives in the API, how a workload's status reads as a
//! rollout judgement and as the reconcile loop's [`Seen`], and the patch a repair sends.
//!
//! The objects are the Kubernetes export's ([`crate::kubernetes::objects`]): the cluster runs
//! exactly what `autogit export kubernetes` writes. Each workload (the `Deployment` or
//! `StatefulSet` named after its service) carries the hash of its service's objects in the
//! annotation [`SPEC_HASH`], so the same [`crate::reconcile::decide`] that keeps containers
//! healthy on an engine decides here too: a missing workload is created, a changed hash is
//! applied again, an unavailable one is repaired by a rollout restart under the same
//! [`crate::lifecycle::RepairPolicy`] (backoff, budget, the human-intervention flag).
//!
//! Server-side apply: every object is sent whole with the field manager [`FIELD_MANAGER`],
//! without `force` (a field another manager owns is a conflict the user sees, unless they ask
//! for `--force-conflicts`). The restart patch is the one forced apply: it carries only the
//! pod template's [`RESTARTED_AT`] annotation under its own manager [`RESTART_MANAGER`] (so
//! applying it does not drop the fields `autogit` owns), and takes that annotation over from
//! whoever set it last (`kubectl rollout restart`), as the API documents for controllers that
//! own a field (<https://kubernetes.io/docs/reference/using-api/server-side-apply/#using-server-side-apply-in-a-controller>).

use crate::container::fnv1a;
use crate::kubernetes::Manifest;
use crate::reconcile::{Desired, Health, Seen};
use crate::state::PlatformState;
use serde_json::{Value, json};

/// The field manager of everything `install` and `reconcile` apply.
pub const FIELD_MANAGER: &str = "autogit";
/// The field manager of the restart annotation (a repair's rollout restart).
pub const RESTART_MANAGER: &str = "autogit-restart";
/// The workload annotation holding the hash of its service's objects.
pub const SPEC_HASH: &str = "autogit.io/spec-hash";
/// The pod template annotation a rollout restart sets (the one `kubectl rollout restart` sets).
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
/// The content type of a server-side apply patch (JSON is YAML).
pub const APPLY_PATCH: &str = "application/apply-patch+yaml";

/// Where a kind lives in the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resource {
    /// `""` for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
    /// Applied in this order (lower first): namespaces, then what pods mount, then
    /// workloads, then what routes to them and the custom resources.
    pub rank: u8,
}

/// Every kind the export emits.
pub const RESOURCES: [Resource; 12] = [
    res("", "v1", "Namespace", "namespaces", false, 0),
    res("", "v1", "ConfigMap", "configmaps", true, 1),
    res(
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        true,
        1,
    ),
    res("", "v1", "Service", "services", true, 2),
    res("apps", "v1", "StatefulSet", "statefulsets", true, 3),
    res("apps", "v1", "Deployment", "deployments", true, 3),
    res("networking.k8s.io", "v1", "Ingress", "ingresses", true, 4),
    res(
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        true,
        4,
    ),
    res(
        "traefik.io",
        "v1alpha1",
        "Middleware",
        "middlewares",
        true,
        5,
    ),
    res(
        "traefik.io",
        "v1alpha1",
        "IngressRoute",
        "ingressroutes",
        true,
        6,
    ),
    res(
        "cert-manager.io",
        "v1",
        "ClusterIssuer",
        "clusterissuers",
        false,
        5,
    ),
    res(
        "cert-manager.io",
        "v1",
        "Certificate",
        "certificates",
        true,
        6,
    ),
];

const fn res(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    rank: u8,
) -> Resource {
    Resource {
        group,
        version,
        kind,
        plural,
        namespaced,
        rank,
    }
}

impl Resource {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The collection's path: `/api/v1/namespaces/NS/services`, `/apis/apps/v1/...`.
    pub fn collection_path(&self, namespace: Option<&str>) -> String {
        let root = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        match namespace {
            Some(ns) if self.namespaced => format!("{root}/namespaces/{ns}/{}", self.plural),
            _ => format!("{root}/{}", self.plural),
        }
    }

    /// One object's path.
    pub fn object_path(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}/{name}", self.collection_path(namespace))
    }
}

/// The resource of `apiVersion` + `kind`, if the export emits it.
pub fn resource(api_version: &str, kind: &str) -> Option<Resource> {
    RESOURCES
        .iter()
        .find(|r| r.kind == kind && r.api_version() == api_version)
        .copied()
}

/// A workload kind's resource (`Deployment`, `StatefulSet`).
pub fn workload_resource(kind: WorkloadKind) -> Resource {
    match kind {
        WorkloadKind::Deployment => RESOURCES[5],
        WorkloadKind::StatefulSet => RESOURCES[4],
    }
}

/// One server-side apply: the object, where it is sent, and the service it belongs to.
#[derive(Clone, Debug, PartialEq)]
pub struct Apply {
    pub resource: Resource,
    pub name: String,
    pub namespace: Option<String>,
    /// The service whose file (`<service>.yaml`) holds it; `None` for shared objects.
    pub service: Option<String>,
    pub object: Value,
}

impl Apply {
    pub fn path(&self) -> String {
        self.resource
            .object_path(self.namespace.as_deref(), &self.name)
    }

    /// `Deployment/gitlab` (with the namespace when it has one: `autogit/Deployment/gitlab`).
    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}/{}/{}", self.resource.kind, self.name),
            None => format!("{}/{}", self.resource.kind, self.name),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
}

/// A service's workload: what readiness waits for and reconcile observes.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    pub service: String,
    pub kind: WorkloadKind,
    pub name: String,
    pub namespace: String,
    /// `spec.replicas` as applied (0: an on-demand runner, not kept running).
    pub replicas: u64,
    pub spec_hash: String,
    /// Seconds it may take to become ready after a (re)start (the health check's start
    /// period plus its retries, as on the engine).
    pub start_period_secs: u64,
}

impl Workload {
    pub fn path(&self) -> String {
        workload_resource(self.kind).object_path(Some(&self.namespace), &self.name)
    }
}

/// What `install` applies, in order, and the workloads it then waits for.
#[derive(Clone, Debug, PartialEq)]
pub struct ApplyPlan {
    pub applies: Vec<Apply>,
    pub workloads: Vec<Workload>,
}

impl ApplyPlan {
    /// The objects of one service (its file), in apply order.
    pub fn of_service<'a>(&'a self, service: &'a str) -> impl Iterator<Item = &'a Apply> + 'a {
        self.applies
            .iter()
            .filter(move |a| a.service.as_deref() == Some(service))
    }

    /// What the reconcile loop wants: the workloads kept running (not the on-demand ones).
    pub fn desired(&self) -> Vec<Desired> {
        self.workloads
            .iter()
            .filter(|w| w.replicas > 0)
            .map(|w| Desired {
                service: w.service.clone(),
                spec_hash: w.spec_hash.clone(),
                start_period_secs: w.start_period_secs,
            })
            .collect()
    }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

fn u64_at(v: &Value, path: &[&str]) -> Option<u64> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_u64()
}

/// The apply plan of the export's manifests: every object with its API path, in rank order
/// (stable within a rank: the export's order), each workload stamped with its service's
/// hash. An object of a kind the export does not emit is an error naming it.
pub fn apply_plan(st: &PlatformState, manifests: &[Manifest]) -> Result<ApplyPlan, String> {
    let mut applies = Vec::new();
    let mut workloads = Vec::new();
    for m in manifests {
        let service = m
            .file
            .strip_suffix(".yaml")
            .filter(|s| st.service(s).is_some())
            .map(str::to_owned);
        // The hash covers every object of the service's file: a changed ConfigMap or
        // Service is a changed spec too.
        let hash = format!(
            "{:016x}",
            fnv1a(
                serde_json::to_string(&m.objects)
                    .unwrap_or_default()
                    .as_bytes()
            )
        );
        for o in &m.objects {
            let api = str_at(o, &["apiVersion"]).unwrap_or_default();
            let kind = str_at(o, &["kind"]).unwrap_or_default();
            let name = str_at(o, &["metadata", "name"]).unwrap_or_default();
            let Some(resource) = resource(api, kind) else {
                return Err(format!(
                    "{}: {api} {kind} `{name}` is not a kind autogit can apply",
                    m.file
                ));
            };
            let namespace = resource
                .namespaced
                .then(|| str_at(o, &["metadata", "namespace"]).unwrap_or(&st.project))
                .map(str::to_owned);
            let mut object = o.clone();
            let workload_kind = match kind {
                "Deployment" => Some(WorkloadKind::Deployment),
                "StatefulSet" => Some(WorkloadKind::StatefulSet),
                _ => None,
            };
            if let (Some(wk), Some(svc)) = (workload_kind, &service)
                && name == svc
            {
                object["metadata"]["annotations"][SPEC_HASH] = json!(hash);
                let start_period_secs = st
                    .service(svc)
                    .and_then(|s| s.health.as_ref())
                    .map_or(30, |h| {
                        h.start_period.as_secs() + h.interval.as_secs() * u64::from(h.retries)
                    });
                workloads.push(Workload {
                    service: svc.clone(),
                    kind: wk,
                    name: name.to_owned(),
                    namespace: namespace.clone().unwrap_or_else(|| st.project.clone()),
                    replicas: u64_at(o, &["spec", "replicas"]).unwrap_or(1),
                    spec_hash: hash.clone(),
                    start_period_secs,
                });
            }
            applies.push(Apply {
                resource,
                name: name.to_owned(),
                namespace,
                service: service.clone(),
                object,
            });
        }
    }
    applies.sort_by_key(|a| a.resource.rank);
    Ok(ApplyPlan { applies, workloads })
}

/// A rollout's judgement, as `kubectl rollout status` makes it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", content = "reason", rename_all = "snake_case")]
pub enum Rollout {
    /// Every replica runs the current template and is available.
    Complete,
    /// Still rolling out: the reason says what it waits for.
    Progressing(String),
    /// It will not finish by itself (a Deployment past its progress deadline).
    Failed(String),
}

fn condition<'a>(obj: &'a Value, kind: &str) -> Option<&'a Value> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
}

/// The rollout of a Deployment or StatefulSet from its status, following kubectl's
/// `rollout status` (`polymorphichelpers/rollout_status.go`): the controller must have seen
/// the current generation, then every replica must be updated and available (ready for a
/// StatefulSet, and on the update revision when it rolls by `RollingUpdate`).
pub fn rollout(kind: WorkloadKind, obj: &Value) -> Rollout {
    let generation = u64_at(obj, &["metadata", "generation"]).unwrap_or(0);
    let observed = u64_at(obj, &["status", "observedGeneration"]).unwrap_or(0);
    if observed < generation {
        return Rollout::Progressing("waiting for the controller to see the new spec".into());
    }
    let want = u64_at(obj, &["spec", "replicas"]).unwrap_or(1);
    let updated = u64_at(obj, &["status", "updatedReplicas"]).unwrap_or(0);
    let replicas = u64_at(obj, &["status", "replicas"]).unwrap_or(0);
    match kind {
        WorkloadKind::Deployment => {
            if let Some(c) = condition(obj, "Progressing")
                && c.get("reason").and_then(Value::as_str) == Some("ProgressDeadlineExceeded")
            {
                let msg = c.get("message").and_then(Value::as_str).unwrap_or("");
                return Rollout::Failed(format!("progress deadline exceeded: {msg}"));
            }
            let available = u64_at(obj, &["status", "availableReplicas"]).unwrap_or(0);
            if updated < want {
                Rollout::Progressing(format!("{updated} of {want} updated replicas"))
            } else if replicas > updated {
                Rollout::Progressing(format!(
                    "{} old replicas are pending termination",
                    replicas - updated
                ))
            } else if available < updated {
                Rollout::Progressing(format!(
                    "{available} of {updated} updated replicas available"
                ))
            } else {
                Rollout::Complete
            }
        }
        WorkloadKind::StatefulSet => {
            let ready = u64_at(obj, &["status", "readyReplicas"]).unwrap_or(0);
            let rolling = str_at(obj, &["spec", "updateStrategy", "type"])
                .is_none_or(|t| t == "RollingUpdate");
            if ready < want {
                return Rollout::Progressing(format!("{ready} of {want} replicas ready"));
            }
            let current = str_at(obj, &["status", "currentRevision"]);
            let update = str_at(obj, &["status", "updateRevision"]);
            if rolling && (updated < want || current != update) {
                return Rollout::Progressing(format!("{updated} of {want} replicas updated"));
            }
            Rollout::Complete
        }
    }
}

/// The workload as the reconcile loop sees it. `None` when it does not exist.
///
/// Running: it has pods (`status.replicas > 0`); a workload scaled to 0 under autogit is
/// "stopped" (started again by applying it). Health: a complete rollout is healthy when every
/// replica is available; a rollout that failed, or a complete one whose pods became
/// unavailable (a crash loop, a failing liveness or readiness probe), is unhealthy; a rollout
/// in progress is starting. The spec hash is the annotation's.
pub fn seen(w: &Workload, obj: Option<&Value>) -> Option<Seen> {
    let obj = obj?;
    let replicas = u64_at(obj, &["status", "replicas"]).unwrap_or(0);
    let want = u64_at(obj, &["spec", "replicas"]).unwrap_or(1);
    let ready_count = match w.kind {
        WorkloadKind::Deployment => u64_at(obj, &["status", "availableReplicas"]),
        WorkloadKind::StatefulSet => u64_at(obj, &["status", "readyReplicas"]),
    }
    .unwrap_or(0);
    let health = match rollout(w.kind, obj) {
        Rollout::Complete => Health::Healthy,
        Rollout::Failed(_) => Health::Unhealthy,
        Rollout::Progressing(_) => {
            let generation = u64_at(obj, &["metadata", "generation"]).unwrap_or(0);
            let observed = u64_at(obj, &["status", "observedGeneration"]).unwrap_or(0);
            let updated = u64_at(obj, &["status", "updatedReplicas"]).unwrap_or(0);
            let unavailable = condition(obj, "Available")
                .is_some_and(|c| c.get("status").and_then(Value::as_str) == Some("False"));
            // Everything is on the current template, yet not every replica is available:
            // pods that were up have failed since.
            if observed >= generation && updated >= want && ready_count < want && unavailable {
                Health::Unhealthy
            } else {
                Health::Starting
            }
        }
    };
    Some(Seen {
        service: w.service.clone(),
        container_id: w.path(),
        spec_hash: obj
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(SPEC_HASH))
            .and_then(Value::as_str)
            .map(str::to_owned),
        running: replicas > 0 || want == 0,
        never_started: false,
        health,
        oom_killed: false,
    })
}

/// The rollout restart of a workload: a server-side apply under [`RESTART_MANAGER`] of the
/// pod template's [`RESTARTED_AT`] annotation alone (`at` in RFC 3339). Changing the template
/// makes the controller replace every pod, the way `kubectl rollout restart` does.
pub fn restart_patch(w: &Workload, at: &str) -> Value {
    let r = workload_resource(w.kind);
    json!({
        "apiVersion": r.api_version(),
        "kind": r.kind,
        "metadata": {"name": w.name, "namespace": w.namespace},
        "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: at}}}},
    })
}

/// The label selector of every workload autogit manages for the project (orphans included).
pub fn managed_selector(project: &str) -> String {
    format!("app.kubernetes.io/managed-by=autogit,app.kubernetes.io/instance={project}")
}

/// The service a listed workload belongs to (its `app.kubernetes.io/name` label).
pub fn service_of(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/labels")?
        .get("app.kubernetes.io/name")?
        .as_str()
}

/// One line from an API error body (a `Status`): its message, and for a conflict each
/// field with the manager that holds it.
pub fn status_message(body: &Value) -> String {
    let message = body
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("no message")
        .to_owned();
    let causes: Vec<String> = body
        .pointer("/details/causes")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| {
                    let field = c.get("field").and_then(Value::as_str)?;
                    let msg = c.get("message").and_then(Value::as_str).unwrap_or("");
                    // The API's own message already lists the fields (kube 1.22+).
                    (!message.contains(field)).then(|| format!("{field} ({msg})"))
                })
                .collect()
        })
        .unwrap_or_default();
    if causes.is_empty() {
        message
    } else {
        format!("{message}: {}", causes.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(gen_: u64, status: Value) -> Value {
        json!({"metadata": {"generation": gen_}, "spec": {"replicas": 2}, "status": status})
    }

    #[test]
    fn deployment_rollout_table() {
        use Rollout::*;
        let cases: Vec<(Value, Rollout)> = vec![
            (
                dep(2, json!({"observedGeneration": 1})),
                Progressing("waiting for the controller to see the new spec".into()),
            ),
            (
                dep(
                    1,
                    json!({"observedGeneration": 1, "updatedReplicas": 1, "replicas": 2}),
                ),
                Progressing("1 of 2 updated replicas".into()),
            ),
            (
                dep(
                    1,
                    json!({"observedGeneration": 1, "updatedReplicas": 2, "replicas": 3}),
                ),
                Progressing("1 old replicas are pending termination".into()),
            ),
            (
                dep(
                    1,
                    json!({"observedGeneration": 1, "updatedReplicas": 2, "replicas": 2, "availableReplicas": 1}),
                ),
                Progressing("1 of 2 updated replicas available".into()),
            ),
            (
                dep(
                    1,
                    json!({"observedGeneration": 1, "updatedReplicas": 2, "replicas": 2, "availableReplicas": 2}),
                ),
                Complete,
            ),
            (
                dep(
                    1,
                    json!({"observedGeneration": 1, "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet x has timed out progressing."}]}),
                ),
                Failed(
                    "progress deadline exceeded: ReplicaSet x has timed out progressing.".into(),
                ),
            ),
        ];
        for (obj, want) in cases {
            assert_eq!(rollout(WorkloadKind::Deployment, &obj), want, "{obj}");
        }
    }

    #[test]
    fn statefulset_waits_for_the_update_revision() {
        let mut o = json!({"metadata": {"generation": 3}, "spec": {"replicas": 1},
            "status": {"observedGeneration": 3, "readyReplicas": 1, "updatedReplicas": 1,
                "currentRevision": "gitlab-a", "updateRevision": "gitlab-b"}});
        assert!(matches!(
            rollout(WorkloadKind::StatefulSet, &o),
            Rollout::Progressing(_)
        ));
        o["status"]["currentRevision"] = json!("gitlab-b");
        assert_eq!(rollout(WorkloadKind::StatefulSet, &o), Rollout::Complete);
        o["status"]["readyReplicas"] = json!(0);
        assert_eq!(
            rollout(WorkloadKind::StatefulSet, &o),
            Rollout::Progressing("0 of 1 replicas ready".into())
        );
    }

    fn workload() -> Workload {
        Workload {
            service: "grafana".into(),
            kind: WorkloadKind::Deployment,
            name: "grafana".into(),
            namespace: "autogit".into(),
            replicas: 1,
            spec_hash: "h".into(),
            start_period_secs: 30,
        }
    }

    #[test]
    fn seen_from_status() {
        let w = workload();
        assert_eq!(seen(&w, None), None);
        let healthy = json!({"metadata": {"generation": 1, "annotations": {SPEC_HASH: "h"}},
            "spec": {"replicas": 1},
            "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1,
                "conditions": [{"type": "Available", "status": "True"}]}});
        let s = seen(&w, Some(&healthy)).unwrap();
        assert_eq!(s.health, Health::Healthy);
        assert!(s.running);
        assert_eq!(s.spec_hash.as_deref(), Some("h"));
        assert_eq!(
            s.container_id,
            "/apis/apps/v1/namespaces/autogit/deployments/grafana"
        );
        // Its pod failed after the rollout: unavailable, unhealthy.
        let mut failed = healthy.clone();
        failed["status"]["availableReplicas"] = json!(0);
        failed["status"]["conditions"] = json!([{"type": "Available", "status": "False"}]);
        assert_eq!(seen(&w, Some(&failed)).unwrap().health, Health::Unhealthy);
        // A new generation not rolled out yet: starting.
        let mut rolling = failed.clone();
        rolling["metadata"]["generation"] = json!(2);
        assert_eq!(seen(&w, Some(&rolling)).unwrap().health, Health::Starting);
        // Scaled to 0 under autogit: stopped.
        let mut scaled = healthy.clone();
        scaled["status"]["replicas"] = json!(0);
        assert!(!seen(&w, Some(&scaled)).unwrap().running);
    }

    #[test]
    fn restart_patch_touches_only_the_annotation() {
        let p = restart_patch(&workload(), "2026-12-07T05:00:00Z");
        assert_eq!(
            p,
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "grafana", "namespace": "autogit"},
                "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: "2026-12-07T05:00:00Z"}}}}})
        );
    }

    #[test]
    fn paths() {
        let r = resource("v1", "Namespace").unwrap();
        assert_eq!(
            r.object_path(Some("x"), "autogit"),
            "/api/v1/namespaces/autogit"
        );
        let r = resource("cert-manager.io/v1", "ClusterIssuer").unwrap();
        assert_eq!(
            r.object_path(Some("x"), "le"),
            "/apis/cert-manager.io/v1/clusterissuers/le"
        );
        let r = resource("networking.k8s.io/v1", "Ingress").unwrap();
        assert_eq!(
            r.collection_path(Some("autogit")),
            "/apis/networking.k8s.io/v1/namespaces/autogit/ingresses"
        );
        assert_eq!(resource("apps/v1", "DaemonSet"), None);
        assert_eq!(
            status_message(
                &json!({"message": "Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas",
                "details": {"causes": [{"field": ".spec.replicas", "message": "conflict with \"kubectl\""}]}})
            ),
            "Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas"
        );
        assert_eq!(
            status_message(&json!({"message": "Apply failed with 1 conflict",
                "details": {"causes": [{"field": ".spec.replicas", "message": "conflict with \"kubectl\""}]}})),
            "Apply failed with 1 conflict: .spec.replicas (conflict with \"kubectl\")"
        );
    }
}
