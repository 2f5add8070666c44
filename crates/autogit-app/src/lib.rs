//! autogit's application layer: one controller per capability (platform, mirror, DNS, TLS,
//! runners, compute, backup, GitLab, guard), each holding its drivers and a [`Clock`], exposing async
//! operations and a `pass` the daemon runs on a schedule, returning typed errors and publishing
//! typed [`Event`]s on the [`Bus`]. The binary's commands, `autogit daemon` and (later) the API
//! server are thin shells over these controllers; none runs `autogit` as a child.
//!
//! Decisions stay in `autogit-core` (pure functions); I/O stays in `autogit-drivers`. A
//! controller is the workflow between them: observe through drivers, decide in core, act
//! through drivers, publish what happened.

pub mod access;
pub mod audit;
pub mod backup;
pub mod bus;
pub mod clock;
pub mod compute;
pub mod daemon;
pub mod diagnose;
pub mod dns;
pub mod event;
pub mod export;
pub mod extensions;
pub mod gitlab;
pub mod guard;
pub mod guard_model;
pub mod kube;
pub mod ldap;
pub mod logs;
pub mod metrics;
pub mod mirror;
pub mod offsite;
pub mod oidc;
pub mod plan;
pub mod platform;
pub mod registry;
pub mod runners;
pub mod schedule;
pub mod secrets;
pub mod service;
pub mod settings;
pub mod sinks;
pub mod supervisor;
pub mod tls;
pub mod upgrade;

pub use bus::Bus;
pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use event::{Envelope, Event, Severity};
pub use settings::Settings;
