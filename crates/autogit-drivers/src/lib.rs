//! Drivers: everything that touches the outside world. Each driver sits behind a small API so
//! the binary and the server stay thin and the core stays pure.

pub mod acme;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod bundle;
pub mod dns;
pub mod embed;
pub mod engine;
pub mod engine_proxy;
pub mod extension;
pub mod fsx;
pub mod gitlab;
pub mod health;
pub mod host;
pub mod kube;
pub mod logstore;
pub mod loki;
pub mod mdns;
pub mod meili;
pub mod mirror;
pub mod notify;
pub mod remote;
pub mod runtime;
pub mod secrets;
pub mod smtp;
pub mod state;
pub mod storage;
pub mod systemd;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls_source;
