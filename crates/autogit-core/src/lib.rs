//! autogit's core: the model, the configuration schema and its validation, presets, the planner,
//! the state machine and the renderers.
//!
//! **Architecture invariant:** this crate does no I/O. It never touches the file system, the
//! network, processes, the clock or the environment; callers hand it text and facts and get
//! values back. `clippy.toml` in this crate's folder forbids the std APIs that would break this,
//! and `tests/no_io.rs` checks the dependency list.

pub mod access;
pub mod ansible;
pub mod backup;
pub mod chat;
pub mod civil;
pub mod cloudflare;
pub mod compute;
pub mod config;
pub mod container;
pub mod decode;
pub mod diag;
pub mod diagnose;
pub mod dns;
pub mod email;
pub mod emit;
pub mod engine_proxy;
pub mod extension;
pub mod grafana;
pub mod ingress;
pub mod inventory;
pub mod jobkind;
pub mod kube_target;
pub mod kubernetes;
pub mod kustomize;
pub mod ldap;
pub mod lease;
pub mod lifecycle;
pub mod load;
pub mod logs;
pub mod mig;
pub mod mirror;
pub mod monitoring;
pub mod netaddr;
pub mod notify;
pub mod oidc;
pub mod ondemand;
pub mod plan;
pub mod platform;
pub mod preset;
pub mod pulumi;
pub mod reconcile;
pub mod registry;
pub mod remote;
pub mod render;
pub mod routes;
pub mod runner;
pub mod schedule;
pub mod service;
pub mod source;
pub mod state;
pub mod terraform;
pub mod tls;
pub mod toolkit;
pub mod topology;
pub mod units;
pub mod upgrade;
pub mod validate;
pub mod yaml;
pub mod yaml_edit;
