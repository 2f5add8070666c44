//! The kubeconfig: which API server a context names and how to authenticate to it.
//!
//! Read as kubectl reads it (<https://kubernetes.io/docs/concepts/configuration/organize-cluster-access-kubeconfig/>):
//! `KUBECONFIG` (a `:`-separated list; the first file that sets a name wins, and the first
//! `current-context` set) or `~/.kube/config`; relative file paths are relative to the file
//! that names them. What autogit can use: `server`, `certificate-authority(-data)`,
//! `insecure-skip-tls-verify`, `token`/`tokenFile`, `client-certificate(-data)` +
//! `client-key(-data)`. An `exec` or `auth-provider` user is refused with a message saying
//! so (autogit runs no credential plugin).

use autogit_core::source::Sources;
use autogit_core::yaml::{self, Limits};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// How to reach one context's API server.
#[derive(Clone)]
pub struct Endpoint {
    pub context: String,
    /// `https://host:6443` (no trailing slash).
    pub server: String,
    /// The namespace the context names (autogit uses the project's own regardless).
    pub namespace: Option<String>,
    /// PEM of the CA that signs the server's certificate; `None`: the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    pub insecure: bool,
    pub token: Option<SecretString>,
    /// PEM of the client certificate followed by its key.
    pub identity_pem: Option<SecretString>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("context", &self.context)
            .field("server", &self.server)
            .field("namespace", &self.namespace)
            .field("insecure", &self.insecure)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .field(
                "identity",
                &self.identity_pem.as_ref().map(|_| "[redacted]"),
            )
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("no kubeconfig: {0}")]
    Missing(String),
    #[error("{file}: {reason}")]
    Invalid { file: String, reason: String },
    #[error("context `{context}` is not in {files}; contexts there: {known}")]
    NoContext {
        context: String,
        files: String,
        known: String,
    },
    #[error("{what}")]
    Unsupported { what: String },
}

#[derive(Deserialize, Default)]
struct File {
    #[serde(rename = "current-context", default)]
    current_context: Option<String>,
    #[serde(default)]
    clusters: Vec<Named<Cluster>>,
    #[serde(default)]
    contexts: Vec<Named<Context>>,
    #[serde(default)]
    users: Vec<Named<User>>,
}

#[derive(Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "cluster", alias = "context", alias = "user")]
    item: Option<T>,
}

#[derive(Deserialize, Clone, Default)]
struct Cluster {
    server: Option<String>,
    #[serde(rename = "certificate-authority")]
    ca_file: Option<String>,
    #[serde(rename = "certificate-authority-data")]
    ca_data: Option<String>,
    #[serde(rename = "insecure-skip-tls-verify", default)]
    insecure: bool,
}

#[derive(Deserialize, Clone, Default)]
struct Context {
    cluster: String,
    #[serde(default)]
    user: String,
    namespace: Option<String>,
}

#[derive(Deserialize, Clone, Default)]
struct User {
    token: Option<String>,
    #[serde(rename = "tokenFile")]
    token_file: Option<String>,
    #[serde(rename = "client-certificate")]
    cert_file: Option<String>,
    #[serde(rename = "client-certificate-data")]
    cert_data: Option<String>,
    #[serde(rename = "client-key")]
    key_file: Option<String>,
    #[serde(rename = "client-key-data")]
    key_data: Option<String>,
    exec: Option<Value>,
    #[serde(rename = "auth-provider")]
    auth_provider: Option<Value>,
    username: Option<String>,
}

/// The kubeconfig files kubectl would read: `KUBECONFIG`'s list, else `~/.kube/config`.
pub fn files(kubeconfig: Option<&str>, home: Option<&Path>) -> Vec<PathBuf> {
    match kubeconfig.filter(|k| !k.is_empty()) {
        Some(list) => list
            .split(':')
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect(),
        None => home
            .map(|h| vec![h.join(".kube").join("config")])
            .unwrap_or_default(),
    }
}

struct Loaded {
    path: PathBuf,
    file: File,
}

fn load(path: &Path) -> Result<Option<Loaded>, KubeconfigError> {
    if !path.exists() {
        return Ok(None);
    }
    let bytes = match crate::fsx::read_bounded(path, 1 << 20) {
        Ok(b) => b,
        Err(e) => {
            return Err(KubeconfigError::Invalid {
                file: path.display().to_string(),
                reason: e.to_string(),
            });
        }
    };
    let invalid = |reason: String| KubeconfigError::Invalid {
        file: path.display().to_string(),
        reason,
    };
    let text = String::from_utf8(bytes).map_err(|_| invalid("not UTF-8".into()))?;
    let mut sources = Sources::new();
    let id = sources.add(
        autogit_core::source::Origin::File(path.display().to_string()),
        text.clone(),
    );
    let node = yaml::parse(&text, id, Limits::default()).map_err(|d| {
        invalid(
            d.first()
                .map(|d| {
                    let line = d.loc.as_ref().map_or(0, |l| l.line);
                    format!("line {line}: {}", d.message)
                })
                .unwrap_or_else(|| "not YAML".into()),
        )
    })?;
    let json = node.as_ref().map_or(Value::Null, yaml::node_to_json);
    let file: File = if json.is_null() {
        File::default()
    } else {
        serde_json::from_value(json).map_err(|e| invalid(format!("not a kubeconfig: {e}")))?
    };
    Ok(Some(Loaded {
        path: path.to_path_buf(),
        file,
    }))
}

fn decode_b64(what: &str, file: &Path, data: &str) -> Result<Vec<u8>, KubeconfigError> {
    let clean: String = data.chars().filter(|c| !c.is_whitespace()).collect();
    data_encoding::BASE64
        .decode(clean.as_bytes())
        .map_err(|e| KubeconfigError::Invalid {
            file: file.display().to_string(),
            reason: format!("{what}: not base64 ({e})"),
        })
}

fn read_rel(what: &str, base: &Path, p: &str) -> Result<Vec<u8>, KubeconfigError> {
    let path = Path::new(p);
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.parent().unwrap_or(Path::new(".")).join(path)
    };
    crate::fsx::read_bounded(&path, 1 << 20).map_err(|e| KubeconfigError::Invalid {
        file: base.display().to_string(),
        reason: format!("{what} {}: {e}", path.display()),
    })
}

/// The endpoint of `context` (the current context when `None`) in `paths`.
pub fn endpoint(paths: &[PathBuf], context: Option<&str>) -> Result<Endpoint, KubeconfigError> {
    let mut loaded = Vec::new();
    for p in paths {
        if let Some(l) = load(p)? {
            loaded.push(l);
        }
    }
    let shown = paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    if loaded.is_empty() {
        return Err(KubeconfigError::Missing(format!(
            "none of {} exists; set KUBECONFIG or pass the context's file",
            if shown.is_empty() {
                "(no KUBECONFIG and no home directory)".to_owned()
            } else {
                shown
            }
        )));
    }
    let name = match context {
        Some(c) => c.to_owned(),
        None => loaded
            .iter()
            .find_map(|l| l.file.current_context.clone().filter(|c| !c.is_empty()))
            .ok_or_else(|| {
                KubeconfigError::Missing(format!(
                    "{shown} sets no current-context; pass --context NAME"
                ))
            })?,
    };
    // The first file that names it wins (kubectl's merge rule).
    let find_ctx = loaded.iter().find_map(|l| {
        l.file
            .contexts
            .iter()
            .find(|c| c.name == name)
            .map(|c| (l, c.item.clone().unwrap_or_default()))
    });
    let Some((ctx_file, ctx)) = find_ctx else {
        let mut known: Vec<String> = Vec::new();
        for c in loaded.iter().flat_map(|l| l.file.contexts.iter()) {
            if !known.contains(&c.name) {
                known.push(c.name.clone());
            }
        }
        return Err(KubeconfigError::NoContext {
            context: name,
            files: shown,
            known: if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            },
        });
    };
    let (cluster_file, cluster) = loaded
        .iter()
        .find_map(|l| {
            l.file
                .clusters
                .iter()
                .find(|c| c.name == ctx.cluster)
                .map(|c| (l, c.item.clone().unwrap_or_default()))
        })
        .ok_or_else(|| KubeconfigError::Invalid {
            file: ctx_file.path.display().to_string(),
            reason: format!(
                "context `{name}` names cluster `{}`, which no kubeconfig defines",
                ctx.cluster
            ),
        })?;
    let server = cluster
        .server
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| KubeconfigError::Invalid {
            file: cluster_file.path.display().to_string(),
            reason: format!("cluster `{}` has no server", ctx.cluster),
        })?;
    let ca_pem = match (&cluster.ca_data, &cluster.ca_file) {
        (Some(d), _) => Some(decode_b64(
            "certificate-authority-data",
            &cluster_file.path,
            d,
        )?),
        (None, Some(f)) => Some(read_rel("certificate-authority", &cluster_file.path, f)?),
        (None, None) => None,
    };
    let user = if ctx.user.is_empty() {
        None
    } else {
        loaded.iter().find_map(|l| {
            l.file
                .users
                .iter()
                .find(|u| u.name == ctx.user)
                .map(|u| (l, u.item.clone().unwrap_or_default()))
        })
    };
    let mut token = None;
    let mut identity_pem = None;
    if let Some((ufile, u)) = user {
        if u.exec.is_some() || u.auth_provider.is_some() {
            return Err(KubeconfigError::Unsupported {
                what: format!(
                    "user `{}` of context `{name}` authenticates through a credential plugin (exec/auth-provider), which autogit does not run; give it a service account token (`kubectl create token`) or a client certificate",
                    ctx.user
                ),
            });
        }
        if u.username.is_some() && u.token.is_none() && u.cert_data.is_none() {
            return Err(KubeconfigError::Unsupported {
                what: format!(
                    "user `{}` of context `{name}` uses basic authentication, which Kubernetes removed in 1.19; use a token or a client certificate",
                    ctx.user
                ),
            });
        }
        token = match (&u.token, &u.token_file) {
            (Some(t), _) => Some(t.trim().to_owned()),
            (None, Some(f)) => Some(
                String::from_utf8_lossy(&read_rel("tokenFile", &ufile.path, f)?)
                    .trim()
                    .to_owned(),
            ),
            _ => None,
        }
        .map(SecretString::from);
        let cert = match (&u.cert_data, &u.cert_file) {
            (Some(d), _) => Some(decode_b64("client-certificate-data", &ufile.path, d)?),
            (None, Some(f)) => Some(read_rel("client-certificate", &ufile.path, f)?),
            _ => None,
        };
        let key = match (&u.key_data, &u.key_file) {
            (Some(d), _) => Some(decode_b64("client-key-data", &ufile.path, d)?),
            (None, Some(f)) => Some(read_rel("client-key", &ufile.path, f)?),
            _ => None,
        };
        match (cert, key) {
            (Some(c), Some(k)) => {
                let mut pem = String::from_utf8_lossy(&c).into_owned();
                if !pem.ends_with('\n') {
                    pem.push('\n');
                }
                pem.push_str(&String::from_utf8_lossy(&k));
                identity_pem = Some(SecretString::from(pem));
            }
            (None, None) => {}
            _ => {
                return Err(KubeconfigError::Invalid {
                    file: ufile.path.display().to_string(),
                    reason: format!(
                        "user `{}` has a client certificate without its key, or a key without its certificate",
                        ctx.user
                    ),
                });
            }
        }
    }
    Ok(Endpoint {
        context: name,
        server: server.trim_end_matches('/').to_owned(),
        namespace: ctx.namespace.clone(),
        ca_pem,
        insecure: cluster.insecure,
        token,
        identity_pem,
    })
}
