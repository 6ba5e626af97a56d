//! The breach-check plugin: asks a Pwned Passwords compatible range API whether a password has
//! been breached, using k-anonymity: only the first 5 hex characters of the password's SHA-1
//! leave the plugin; the comparison with the returned suffixes happens inside it.
//!
//! The pure parts ([`hash`], [`range`], [`settings`]) compile natively for tests and benchmarks;
//! `component.rs` binds them to the `breach-check` world on wasm.

pub mod hash;
pub mod range;
pub mod settings;

#[cfg(target_arch = "wasm32")]
mod component;

/// The name this plugin reports to the host.
pub const PLUGIN_NAME: &str = "breach-check";
/// The version this plugin reports to the host.
pub const PLUGIN_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the corpus says, before the threshold is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Seen this many times (0 when absent from a well-formed range).
    Count(u64),
    /// The answer could not be used; why.
    Unknown(String),
}

/// Turns a range response into a lookup of `suffix`. The body is searched as raw bytes: no
/// copy, no UTF-8 pass over its ~30 KB (a line that is not UTF-8 is junk either way).
pub fn lookup_in_response(status: u16, body: &[u8], suffix: &str) -> Lookup {
    if status != 200 {
        return Lookup::Unknown(format!("range API answered HTTP {status}"));
    }
    match range::find_count(body, suffix) {
        range::RangeLookup::Found(count) => Lookup::Count(count),
        range::RangeLookup::Absent => Lookup::Count(0),
        range::RangeLookup::Unparseable => {
            Lookup::Unknown("range API answered with no valid SUFFIX:COUNT lines".to_owned())
        }
    }
}
