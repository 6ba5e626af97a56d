//! Typed errors: why a decision or a plugin load failed, naming the plugin and version.

use crate::kind::PluginKind;
use std::time::Duration;
use thiserror::Error;

/// Why a plugin could not make a decision. Every variant names the plugin; the caller's fail
/// policy decides what the user gets.
#[allow(
    missing_docs,
    reason = "each variant's fields are named in its #[error] message"
)]
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PluginError {
    /// No slot of that name, or nothing ever loaded into it.
    #[error("no plugin is loaded as `{name}`")]
    NotLoaded { name: String },
    /// The slot holds a plugin of another kind.
    #[error("plugin `{name}` is a {actual} plugin, not a {expected} plugin")]
    WrongKind {
        name: String,
        expected: PluginKind,
        actual: PluginKind,
    },
    /// The input was refused before any plugin ran.
    #[error("input of {size} bytes exceeds the limit of {limit} bytes")]
    InputTooLarge { size: usize, limit: usize },
    /// The decision ran past its deadline and was stopped.
    #[error("plugin `{name}` {version} exceeded its deadline of {deadline:?}")]
    DeadlineExceeded {
        name: String,
        version: String,
        deadline: Duration,
    },
    /// The plugin tried to grow its memory past the cap.
    #[error("plugin `{name}` {version} exceeded its memory cap of {limit_bytes} bytes")]
    MemoryLimit {
        name: String,
        version: String,
        limit_bytes: usize,
    },
    /// The plugin trapped (a panic, an `unreachable`, a bad memory access...).
    #[error("plugin `{name}` {version} trapped: {message}")]
    Trap {
        name: String,
        version: String,
        message: String,
    },
    /// The plugin returned something the host refuses (too many findings, huge strings...).
    #[error("plugin `{name}` {version} returned an invalid answer: {message}")]
    InvalidOutput {
        name: String,
        version: String,
        message: String,
    },
    /// The plugin ran but its upstream failed (e.g. a breach check's `unknown`).
    #[error("plugin `{name}` could not reach its upstream: {reason}")]
    Upstream { name: String, reason: String },
    /// The slot's share of instances stayed busy for the whole queue wait: too many decisions
    /// of this slot at once. Other slots are unaffected.
    #[error(
        "plugin `{name}` is at its limit of {limit} concurrent decisions; none freed up within {waited:?}"
    )]
    Overloaded {
        name: String,
        limit: u32,
        waited: Duration,
    },
    /// The instance could not be created (the engine's pool is exhausted, or linking failed).
    #[error("plugin `{name}` {version} could not be instantiated: {message}")]
    Instantiation {
        name: String,
        version: String,
        message: String,
    },
}

impl PluginError {
    /// A stable, short code for metrics and problem responses.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotLoaded { .. } => "plugin-not-loaded",
            Self::WrongKind { .. } => "plugin-wrong-kind",
            Self::InputTooLarge { .. } => "input-too-large",
            Self::DeadlineExceeded { .. } => "plugin-deadline-exceeded",
            Self::MemoryLimit { .. } => "plugin-memory-limit",
            Self::Trap { .. } => "plugin-trap",
            Self::InvalidOutput { .. } => "plugin-invalid-output",
            Self::Instantiation { .. } => "plugin-instantiation-failed",
            Self::Upstream { .. } => "upstream-unavailable",
            Self::Overloaded { .. } => "plugin-overloaded",
        }
    }

    /// True when no plugin was loaded in the slot: the check did not run at all.
    pub fn is_not_loaded(&self) -> bool {
        matches!(self, Self::NotLoaded { .. })
    }
}

/// Serialised as its stable [`PluginError::code`] only: the message can carry text a plugin
/// wrote, which is for logs and operators, never for callers of the public API.
impl serde::Serialize for PluginError {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code())
    }
}

/// Why a candidate plugin was rejected. The version already serving (if any) keeps serving.
#[allow(
    missing_docs,
    reason = "each variant's fields are named in its #[error] message"
)]
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("cannot read plugin file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("plugin `{name}` is not configured and its name is not a plugin kind")]
    UnknownSlot { name: String },
    #[error("plugin `{name}`: sha-256 {actual} does not match the pinned {pinned}")]
    PinMismatch {
        name: String,
        pinned: String,
        actual: String,
    },
    #[error("plugin `{name}` is not a valid WebAssembly component: {message}")]
    NotAComponent { name: String, message: String },
    #[error(
        "plugin `{name}` exports no `user-service:policy` interface; expected the {expected} world"
    )]
    NoPolicyExport { name: String, expected: PluginKind },
    #[error("plugin `{name}` implements the {actual} world, but this slot expects {expected}")]
    WrongWorld {
        name: String,
        expected: PluginKind,
        actual: PluginKind,
    },
    #[error(
        "plugin `{name}` was built against WIT {found}, which this host (WIT {host}) cannot serve"
    )]
    IncompatibleContract {
        name: String,
        found: String,
        host: &'static str,
    },
    #[error("plugin `{name}` needs imports this host does not give a {kind} plugin: {message}")]
    UnsatisfiedImports {
        name: String,
        kind: PluginKind,
        message: String,
    },
    #[error("plugin `{name}` failed its smoke decision: {source}")]
    SmokeFailed { name: String, source: PluginError },
    #[error("plugin `{name}`: {message}")]
    Internal { name: String, message: String },
    /// The candidate could not be fetched from its source, or its signatures were refused;
    /// nothing was compiled.
    #[error("plugin `{name}`: {source}")]
    Distribution {
        name: String,
        source: Box<crate::source::SourceError>,
    },
}
