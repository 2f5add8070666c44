//! Layering: built-in defaults < preset < file < environment (`AUTOGIT_…`) < command-line flags.
//!
//! The file, each `AUTOGIT_SECTION__KEY` variable and each flag become spanned YAML nodes; they
//! are merged into one tree which is decoded once, so every diagnostic names the layer that set
//! the offending value. The preset fills what the merged tree leaves unset (see `Config`).

use crate::config::Config;
use crate::decode::decode;
use crate::diag::{Diagnostic, Diagnostics, suggest};
use crate::source::{Loc, Origin, Sources};
use crate::yaml::{self, Limits, Node, Scalar, Value};

/// The commented configuration `autogit init` writes and autogit uses when no file exists.
pub const EMBEDDED_DEFAULT: &str = include_str!("default.yml");
/// Name shown for the embedded default in diagnostics.
pub const EMBEDDED_NAME: &str = "<embedded default autogit.yml>";

/// `AUTOGIT_*` variables that are program settings, not configuration overrides.
pub const RESERVED_ENV: &[&str] = &[
    "AUTOGIT_CONFIG",
    "AUTOGIT_ENV_FILE",
    "AUTOGIT_DATA_DIR",
    "AUTOGIT_OUTPUT",
    "AUTOGIT_LOG",
    "AUTOGIT_NO_COLOR",
    "AUTOGIT_GITLAB_URL",
    "AUTOGIT_SSH_CONFIG",
    // The environment forms of `install --no-bootstrap` and `--no-service`.
    "AUTOGIT_NO_BOOTSTRAP",
    "AUTOGIT_NO_SERVICE",
    // Where `install` writes the systemd unit.
    "AUTOGIT_SYSTEMD_UNIT_DIR",
    // The secret store's master key file (`drivers::secrets::KeyLocation`).
    "AUTOGIT_KEY_FILE",
    // The host paths the `api` container's autogit plans with (`core::plan::HostPath`).
    "AUTOGIT_HOST_BINARY",
    "AUTOGIT_HOST_ENGINE_SOCKET",
    // `--api URL` and the key or token it sends (the CLI driving a remote `autogit serve`).
    "AUTOGIT_API",
    "AUTOGIT_API_KEY",
    // The public resolver `diagnose` asks besides the configured one (`none`: off).
    "AUTOGIT_PUBLIC_RESOLVER",
];

/// A configuration override from the command line: `--preset team` is
/// `("--preset team", ["gitlab","resources","preset"], "team")`.
#[derive(Clone, Debug)]
pub struct FlagOverride {
    pub flag: String,
    pub path: Vec<String>,
    pub value: String,
}

impl FlagOverride {
    /// Parses `--set a.b.c=value`.
    pub fn from_set(arg: &str) -> Result<Self, String> {
        let (path, value) = arg.split_once('=').ok_or_else(|| {
            format!("`--set {arg}`: expected KEY.PATH=VALUE, e.g. gitlab.hostname=git.example.com")
        })?;
        let parts: Vec<String> = path.split('.').map(str::to_owned).collect();
        if parts.iter().any(String::is_empty) {
            return Err(format!("`--set {arg}`: empty segment in key path `{path}`"));
        }
        Ok(Self {
            flag: format!("--set {arg}"),
            path: parts,
            value: value.to_owned(),
        })
    }
}

#[derive(Debug, Default)]
pub struct LoadInput<'a> {
    /// The configuration file as (display name, text); `None` uses [`EMBEDDED_DEFAULT`].
    pub file: Option<(&'a str, &'a str)>,
    /// The process environment (only `AUTOGIT_` variables are looked at).
    pub env: &'a [(String, String)],
    pub flags: &'a [FlagOverride],
    pub limits: Limits,
}

#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub sources: Sources,
    pub diagnostics: Diagnostics,
}

/// A value given as text (env var or flag) becomes a node; `[a, b]` and `{k: v}` are parsed as
/// YAML flow collections so lists can be overridden too.
fn text_node(
    sources: &mut Sources,
    origin: Origin,
    shown: String,
    value_col: usize,
    value: &str,
    limits: Limits,
) -> Result<Node, Vec<Diagnostic>> {
    let id = sources.add(origin, shown);
    let loc = Loc::new(id, 1, value_col, value.chars().count().max(1));
    let trimmed = value.trim_start();
    if trimmed.starts_with('[') || trimmed.starts_with('{') {
        // An override is one line: every diagnostic points at it.
        let mut node = yaml::parse(value, id, limits)
            .map_err(|ds| ds.into_iter().map(|d| d.at(Some(loc))).collect::<Vec<_>>())?
            .unwrap_or(Node {
                value: Value::Null,
                loc,
            });
        relocate(&mut node, loc);
        return Ok(node);
    }
    Ok(Node {
        value: Value::Scalar(Scalar {
            text: value.to_owned(),
            quoted: false,
        }),
        loc,
    })
}

/// Points every node of a parsed override at the override's own location (its one line).
fn relocate(node: &mut Node, loc: Loc) {
    node.loc = loc;
    match &mut node.value {
        Value::Seq(items) => items.iter_mut().for_each(|n| relocate(n, loc)),
        Value::Map(entries) => entries.iter_mut().for_each(|e| {
            e.key_loc = loc;
            relocate(&mut e.value, loc);
        }),
        _ => {}
    }
}

pub fn load(input: &LoadInput<'_>) -> Loaded {
    let mut sources = Sources::new();
    let mut diags = Diagnostics::default();
    let (name, text, origin) = match input.file {
        Some((name, text)) => (name, text, Origin::File(name.to_owned())),
        None => (
            EMBEDDED_NAME,
            EMBEDDED_DEFAULT,
            Origin::BuiltIn("autogit.yml".to_owned()),
        ),
    };
    let _ = name;
    let file_id = sources.add(origin, text);
    let mut root = match yaml::parse(text, file_id, input.limits) {
        Ok(n) => n,
        Err(ds) => {
            ds.into_iter().for_each(|d| diags.push(d));
            return Loaded {
                config: Config::default(),
                sources,
                diagnostics: diags,
            };
        }
    };

    // Environment overrides.
    let mut env: Vec<&(String, String)> = input
        .env
        .iter()
        .filter(|(k, _)| k.starts_with("AUTOGIT_"))
        .collect();
    env.sort();
    for (key, value) in env {
        if RESERVED_ENV.contains(&key.as_str()) {
            continue;
        }
        let rest = &key["AUTOGIT_".len()..];
        let shown = format!("{key}={value}");
        if !rest.contains("__") && rest != "VERSION" {
            let id = sources.add(Origin::Env(key.clone()), shown);
            let mut d = Diagnostic::warning("env-override", format!("`{key}` is neither an autogit setting nor a configuration override"))
                .at(Some(Loc::new(id, 1, 1, key.len())))
                .help("configuration overrides separate levels with `__`, e.g. AUTOGIT_GITLAB__HOSTNAME=git.example.com");
            if let Some(s) = suggest(key, RESERVED_ENV.iter().copied()) {
                d = d.label(format!("did you mean `{s}`?"));
            }
            diags.push(d);
            continue;
        }
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if path.iter().any(String::is_empty) {
            continue;
        }
        match text_node(
            &mut sources,
            Origin::Env(key.clone()),
            shown,
            key.len() + 2,
            value,
            input.limits,
        ) {
            Ok(node) => set(&mut root, &path, node),
            Err(ds) => ds.into_iter().for_each(|d| diags.push(d)),
        }
    }

    // Command-line overrides, last wins.
    for f in input.flags {
        let col = f.flag.len() - f.value.len() + 1;
        match text_node(
            &mut sources,
            Origin::Flag(f.flag.clone()),
            f.flag.clone(),
            col,
            &f.value,
            input.limits,
        ) {
            Ok(node) => set(&mut root, &f.path, node),
            Err(ds) => ds.into_iter().for_each(|d| diags.push(d)),
        }
    }

    let (config, decoded) = decode(root.as_ref());
    diags.extend(decoded);
    diags.sort();
    Loaded {
        config,
        sources,
        diagnostics: diags,
    }
}

fn set(root: &mut Option<Node>, path: &[String], node: Node) {
    let base = root.get_or_insert_with(|| Node {
        value: Value::Map(Vec::new()),
        loc: node.loc,
    });
    yaml::set_path(base, path, node);
}
