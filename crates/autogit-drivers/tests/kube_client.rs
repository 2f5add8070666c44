//! The Kubernetes client (`autogit_drivers::kube`) against the fake API server of
//! `tests/kube_support`: no cluster can run on the machines that test autogit, so the fake
//! answers as the API documents (server-side apply with field ownership and conflicts, list
//! with its resourceVersion, watch), and the client under test is the production one.

mod kube_support;

use autogit_drivers::kube::config::{self, KubeconfigError};
use autogit_drivers::kube::{KubeClient, KubeError, WatchEvent};
use kube_support::Fake;
use serde_json::{Value, json};
use std::path::PathBuf;

const DEPLOY: &str = "/apis/apps/v1/namespaces/autogit/deployments/grafana";
const DEPLOYS: &str = "/apis/apps/v1/namespaces/autogit/deployments";

fn kubeconfig(fake: &Fake) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("config");
    std::fs::write(&p, fake.kubeconfig()).expect("write");
    (dir, p)
}

fn client(fake: &Fake, context: Option<&str>) -> (tempfile::TempDir, KubeClient) {
    let (dir, p) = kubeconfig(fake);
    let ep = config::endpoint(&[p], context).expect("endpoint");
    (dir, KubeClient::new(ep).expect("client"))
}

fn deployment(replicas: u64, annotation: Option<&str>) -> Value {
    let mut d = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "grafana", "namespace": "autogit",
            "labels": {"app.kubernetes.io/name": "grafana", "app.kubernetes.io/managed-by": "autogit"}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app.kubernetes.io/name": "grafana"}},
            "template": {"metadata": {"labels": {"app.kubernetes.io/name": "grafana"}},
                "spec": {"containers": [{"name": "grafana", "image": "grafana/grafana:11.1.0"}]}}}
    });
    if let Some(a) = annotation {
        d["metadata"]["annotations"] = json!({"example.com/note": a});
    }
    d
}

#[tokio::test]
async fn apply_creates_then_merges_and_tracks_ownership() {
    let fake = Fake::start().await;
    let (_d, c) = client(&fake, None);
    assert_eq!(c.endpoint().context, "fake");
    let created = c
        .apply(DEPLOY, &deployment(1, Some("x")), "autogit", false)
        .await
        .expect("apply");
    assert_eq!(created.pointer("/metadata/generation"), Some(&json!(1)));
    let managers = created["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields");
    assert_eq!(managers.len(), 1);
    assert_eq!(managers[0]["manager"], "autogit");
    assert_eq!(managers[0]["operation"], "Apply");
    assert!(managers[0]["fieldsV1"]["f:spec"]["f:replicas"].is_object());
    let rv = created.pointer("/metadata/resourceVersion").cloned();

    // The same apply again changes nothing: same resourceVersion and generation.
    let again = c
        .apply(DEPLOY, &deployment(1, Some("x")), "autogit", false)
        .await
        .expect("apply");
    assert_eq!(again.pointer("/metadata/resourceVersion").cloned(), rv);
    assert_eq!(again.pointer("/metadata/generation"), Some(&json!(1)));

    // A field the manager no longer applies is removed; a spec change is a new generation.
    let changed = c
        .apply(DEPLOY, &deployment(2, None), "autogit", false)
        .await
        .expect("apply");
    assert_eq!(
        changed.pointer("/metadata/annotations/example.com~1note"),
        None
    );
    assert_eq!(changed.pointer("/metadata/generation"), Some(&json!(2)));

    // Get and list with a label selector.
    let got = c.get(DEPLOY).await.expect("get").expect("exists");
    assert_eq!(got["spec"]["replicas"], 2);
    assert_eq!(
        c.get(&format!("{DEPLOYS}/nothing")).await.expect("get"),
        None
    );
    let (items, list_rv) = c
        .list(DEPLOYS, Some("app.kubernetes.io/managed-by=autogit"))
        .await
        .expect("list");
    assert_eq!(items.len(), 1);
    assert!(!list_rv.is_empty());
    let (none, _) = c
        .list(DEPLOYS, Some("app.kubernetes.io/managed-by=someone-else"))
        .await
        .expect("list");
    assert!(none.is_empty());

    // Every apply was a PATCH with the apply content type and a field manager (the fake
    // refuses anything else: 415 / 400).
    let applies = fake.state().applies.clone();
    assert_eq!(applies.len(), 3);
    assert!(
        applies
            .iter()
            .all(|(p, m, f)| p == DEPLOY && m == "autogit" && !f)
    );
}

#[tokio::test]
async fn a_field_another_manager_owns_is_a_conflict_unless_forced() {
    let fake = Fake::start().await;
    let (_d, c) = client(&fake, None);
    c.apply(DEPLOY, &deployment(1, None), "autogit", false)
        .await
        .expect("apply");
    // Someone scales it by hand (an update, owned by kubectl).
    fake.update_by("kubectl", DEPLOY, &json!({"spec": {"replicas": 3}}));
    let err = c
        .apply(DEPLOY, &deployment(1, None), "autogit", false)
        .await
        .expect_err("conflict");
    let KubeError::Conflict { message, .. } = &err else {
        panic!("not a conflict: {err:?}");
    };
    assert!(message.contains(".spec.replicas"), "{message}");
    assert!(message.contains("kubectl"), "{message}");
    assert!(err.to_string().contains("--force-conflicts"), "{err}");
    assert_eq!(fake.get(DEPLOY).unwrap()["spec"]["replicas"], 3);

    // Applying the value kubectl set is no conflict (co-ownership).
    c.apply(DEPLOY, &deployment(3, None), "autogit", false)
        .await
        .expect("same value");

    // Forced: the value and the field move to autogit.
    fake.update_by("kubectl", DEPLOY, &json!({"spec": {"replicas": 5}}));
    let forced = c
        .apply(DEPLOY, &deployment(1, None), "autogit", true)
        .await
        .expect("forced");
    assert_eq!(forced["spec"]["replicas"], 1);
    let kubectl = forced["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["manager"] == "kubectl");
    assert!(
        kubectl.is_none_or(|m| m["fieldsV1"]["f:spec"]["f:replicas"].is_null()),
        "{forced}"
    );
}

#[tokio::test]
async fn another_managers_partial_apply_keeps_autogits_fields() {
    let fake = Fake::start().await;
    let (_d, c) = client(&fake, None);
    c.apply(DEPLOY, &deployment(1, None), "autogit", false)
        .await
        .expect("apply");
    let restart = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "grafana", "namespace": "autogit"},
        "spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2026-12-07T05:00:00Z"}}}}});
    let after = c
        .apply(DEPLOY, &restart, "autogit-restart", true)
        .await
        .expect("restart");
    assert_eq!(after["spec"]["replicas"], 1);
    assert_eq!(
        after["spec"]["template"]["spec"]["containers"][0]["image"],
        "grafana/grafana:11.1.0"
    );
    assert_eq!(after["metadata"]["generation"], 2);
}

#[tokio::test]
async fn watch_streams_changes_after_the_listed_version() {
    let fake = Fake::start().await;
    let (_d, c) = client(&fake, None);
    c.apply(DEPLOY, &deployment(1, None), "autogit", false)
        .await
        .expect("apply");
    let (_, rv) = c.list(DEPLOYS, None).await.expect("list");
    let mut w = c
        .watch(DEPLOYS, Some("grafana"), None, &rv, 5)
        .await
        .expect("watch");
    let f = fake.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        f.roll_out(DEPLOY);
    });
    let ev = w.next().await.expect("event").expect("not ended");
    let WatchEvent::Modified(o) = ev else {
        panic!("{ev:?}");
    };
    assert_eq!(o["status"]["availableReplicas"], 1);

    // From a version the server no longer has: an ERROR event with 410.
    fake.state().compacted_before = 1000;
    let mut w = c
        .watch(
            DEPLOYS,
            None,
            Some("app.kubernetes.io/managed-by=autogit"),
            "1",
            5,
        )
        .await
        .expect("watch");
    match w.next().await.expect("event") {
        Some(WatchEvent::Error { code, message }) => {
            assert_eq!(code, 410);
            assert!(message.contains("too old"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn wrong_credentials_name_the_context() {
    let fake = Fake::start().await;
    let (_d, c) = client(&fake, Some("other"));
    let err = c.get(DEPLOY).await.expect_err("401");
    let msg = err.to_string();
    assert!(
        matches!(err, KubeError::Unauthorized { code: 401, .. }),
        "{msg}"
    );
    assert!(msg.contains("context `other`"), "{msg}");
    assert!(!msg.contains("not-the-token"), "{msg}");
}

#[tokio::test]
async fn unreachable_server_says_where() {
    let ep = {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config");
        std::fs::write(
            &p,
            "clusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:9/\ncontexts:\n- name: x\n  context:\n    cluster: c\n",
        )
        .unwrap();
        config::endpoint(&[p], Some("x")).unwrap()
    };
    assert_eq!(ep.server, "http://127.0.0.1:9");
    let c = KubeClient::new(ep).unwrap();
    let err = c.get(DEPLOY).await.expect_err("unreachable");
    assert!(matches!(err, KubeError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("127.0.0.1:9"), "{err}");
}

#[test]
fn kubeconfig_selection_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    std::fs::write(
        &a,
        "current-context: one\nclusters:\n- name: c1\n  cluster:\n    server: https://one.example:6443\n    insecure-skip-tls-verify: true\ncontexts:\n- name: one\n  context:\n    cluster: c1\n    user: u1\n    namespace: team\nusers:\n- name: u1\n  user:\n    tokenFile: tok\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("tok"), "secret-token-value\n").unwrap();
    std::fs::write(
        &b,
        "current-context: two\nclusters:\n- name: c2\n  cluster:\n    server: https://two.example\ncontexts:\n- name: two\n  context:\n    cluster: c2\n    user: plugin\n- name: one\n  context:\n    cluster: c2\nusers:\n- name: plugin\n  user:\n    exec:\n      command: aws\n",
    )
    .unwrap();
    let files = config::files(Some(&format!("{}:{}", a.display(), b.display())), None);
    // The first file's current context and its definition of `one` win.
    let ep = config::endpoint(&files, None).unwrap();
    assert_eq!(ep.context, "one");
    assert_eq!(ep.server, "https://one.example:6443");
    assert_eq!(ep.namespace.as_deref(), Some("team"));
    assert!(ep.insecure);
    assert!(ep.token.is_some());
    // The token is never in Debug output.
    assert!(!format!("{ep:?}").contains("secret-token-value"));
    // A credential plugin is refused with what to do instead.
    match config::endpoint(&files, Some("two")) {
        Err(KubeconfigError::Unsupported { what }) => {
            assert!(what.contains("exec"), "{what}");
            assert!(what.contains("kubectl create token"), "{what}");
        }
        other => panic!("{other:?}"),
    }
    // An unknown context lists the known ones.
    match config::endpoint(&files, Some("three")) {
        Err(e @ KubeconfigError::NoContext { .. }) => {
            let m = e.to_string();
            assert!(m.contains("contexts there: one, two"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    // Nothing there.
    let none = config::files(None, Some(dir.path()));
    assert_eq!(none, vec![dir.path().join(".kube/config")]);
    assert!(matches!(
        config::endpoint(&none, None),
        Err(KubeconfigError::Missing(_))
    ));
    // Not YAML: the file and the line.
    std::fs::write(&a, "clusters: [\n").unwrap();
    let e = config::endpoint(std::slice::from_ref(&a), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains(&a.display().to_string()), "{e}");
}

/// A CA, the API server's certificate for 127.0.0.1 and a client certificate, both issued by
/// it (PEM).
struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
}

fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "fake cluster CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca, ca_key).unwrap();
    let leaf = |names: Vec<String>, cn: &str| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(names).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let cert = p.signed_by(&key, &ca).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    Pki {
        server: leaf(vec!["127.0.0.1".into()], "kube-apiserver"),
        client: leaf(vec![], "autogit"),
        ca: ca.pem(),
    }
}

/// The fake API over TLS, requiring a client certificate issued by the CA (the API server's
/// `--client-ca-file`); the certificate authenticates.
async fn tls_fake(pki: &Pki) -> Fake {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca.as_bytes()).unwrap())
        .unwrap();
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider.clone())
            .build()
            .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(pki.server.0.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(pki.server.1.as_bytes()).unwrap(),
        )
        .unwrap();
    let mut fake = Fake::start().await;
    fake.state().client_cert_auth = true;
    let app = fake.router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    fake.url = format!("https://{}", listener.local_addr().unwrap());
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                // A client refused in the handshake (no certificate, another CA) ends here.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    fake
}

fn b64(s: &str) -> String {
    data_encoding::BASE64.encode(s.as_bytes())
}

#[tokio::test]
async fn tls_with_the_clusters_ca_and_a_client_certificate() {
    let pki = pki();
    let fake = tls_fake(&pki).await;
    let dir = tempfile::tempdir().unwrap();
    // The CA inline, the client certificate and key as files next to the kubeconfig
    // (relative paths, as kubectl resolves them).
    std::fs::write(dir.path().join("client.crt"), &pki.client.0).unwrap();
    std::fs::write(dir.path().join("client.key"), &pki.client.1).unwrap();
    let kc = dir.path().join("config");
    std::fs::write(
        &kc,
        format!(
            "current-context: tls\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority-data: {}\n- name: system-roots\n  cluster:\n    server: {}\ncontexts:\n- name: tls\n  context:\n    cluster: c\n    user: cert\n- name: no-ca\n  context:\n    cluster: system-roots\n    user: cert\n- name: no-cert\n  context:\n    cluster: c\nusers:\n- name: cert\n  user:\n    client-certificate: client.crt\n    client-key: client.key\n",
            fake.url,
            b64(&pki.ca),
            fake.url
        ),
    )
    .unwrap();
    let client = |ctx: &str| {
        KubeClient::new(config::endpoint(std::slice::from_ref(&kc), Some(ctx)).unwrap()).unwrap()
    };
    // Trusted both ways: the apply goes through.
    let c = client("tls");
    assert!(c.endpoint().identity_pem.is_some() && c.endpoint().token.is_none());
    c.apply(DEPLOY, &deployment(1, None), "autogit", false)
        .await
        .expect("apply over TLS");
    assert!(fake.get(DEPLOY).is_some());
    // The system's roots do not know the cluster's CA.
    let err = client("no-ca")
        .get(DEPLOY)
        .await
        .expect_err("untrusted server");
    assert!(matches!(err, KubeError::Unreachable { .. }), "{err}");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    // Without a client certificate the server ends the handshake.
    let err = client("no-cert")
        .get(DEPLOY)
        .await
        .expect_err("no client certificate");
    assert!(matches!(err, KubeError::Unreachable { .. }), "{err}");
    // A CA that is not PEM: refused when the client is made, naming the context.
    let bad = dir.path().join("bad");
    std::fs::write(
        &bad,
        format!(
            "clusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority-data: {}\ncontexts:\n- name: bad\n  context:\n    cluster: c\n",
            fake.url,
            b64("not a certificate")
        ),
    )
    .unwrap();
    let err = KubeClient::new(config::endpoint(&[bad], Some("bad")).unwrap()).unwrap_err();
    assert!(err.to_string().contains("context `bad`"), "{err}");
}
