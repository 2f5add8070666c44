//! The one error type of this crate.

/// Errors raised while building a [`crate::Guard`].
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// A threshold or weight is outside `[0, 1]` or the thresholds are not ordered.
    #[error("invalid guard configuration: {0}")]
    InvalidConfig(String),
    /// A built-in pattern failed to compile (a bug in autogit-guard).
    #[error("internal pattern error: {0}")]
    Pattern(String),
    /// The bundled classifier weights could not be parsed.
    #[error("invalid classifier weights: {0}")]
    Model(String),
}
