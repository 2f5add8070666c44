//! GitLab: the REST v4 client and the idempotent bootstrap (users, groups, service accounts
//! with their tokens, runner authentication tokens). See `docs/gitlab.md`.

pub mod bootstrap;
pub mod client;

pub use client::{GitLabClient, GitLabError};
