//! Who is calling and what it may reach: a [`CallerPolicy`], the same for a plugin (its
//! `egress` destinations) and for the service's own clients (an internal service, the token
//! endpoint).

use crate::{
    allowlist::{Destination, DestinationError},
    config::{CallPolicy, DestinationConfig},
};
use std::{fmt, sync::Arc};

/// Who makes a call: named in logs (field `plugin` or `service`), metric labels (likewise) and
/// the keys of per-destination state (breakers are per caller and destination).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Caller {
    /// A plugin, by its catalog slot (e.g. `breach-check`).
    Plugin(Arc<str>),
    /// The service's own client for a logical service (e.g. `notification-service`,
    /// `service-auth` for the token endpoint).
    Service(Arc<str>),
}

impl Caller {
    /// The plugin in slot `name`.
    pub fn plugin(name: &str) -> Self {
        Self::Plugin(name.into())
    }

    /// The service's own client called `name`.
    pub fn service(name: &str) -> Self {
        Self::Service(name.into())
    }

    /// The bare name (slot or service).
    pub fn name(&self) -> &str {
        match self {
            Self::Plugin(name) | Self::Service(name) => name,
        }
    }

    /// The metric label (and log field) that carries the name: `plugin` or `service`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Plugin(_) => "plugin",
            Self::Service(_) => "service",
        }
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} `{}`", self.label(), self.name())
    }
}

/// One allowed destination of a caller, with its call policy resolved.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Scheme, host, port and path prefix the request must match.
    pub destination: Destination,
    /// The destination as configured (secrets bound, cache TTL, private addresses...).
    pub config: DestinationConfig,
    /// Timeouts, retries, breaker and limits, the gateway's defaults filled in.
    pub policy: CallPolicy,
}

/// What one caller may reach, and with which secrets: the allowlist the gateway enforces.
#[derive(Debug, Clone)]
pub struct CallerPolicy {
    /// Who calls.
    pub caller: Caller,
    /// Its destinations, first match wins.
    pub rules: Vec<Rule>,
}

impl CallerPolicy {
    /// Parses a caller's destinations, filling in the gateway's defaults.
    pub fn new(
        caller: Caller,
        destinations: &[DestinationConfig],
        defaults: &CallPolicy,
    ) -> Result<Self, DestinationError> {
        let rules = destinations
            .iter()
            .map(|config| {
                Ok(Rule {
                    destination: Destination::parse(&config.url)?,
                    policy: config.policy.clone().unwrap_or_else(|| defaults.clone()),
                    config: config.clone(),
                })
            })
            .collect::<Result<_, DestinationError>>()?;
        Ok(Self { caller, rules })
    }

    /// The first rule whose destination matches `uri`.
    pub fn rule_for(&self, uri: &http::Uri) -> Option<&Rule> {
        self.rules.iter().find(|rule| rule.destination.matches(uri))
    }

    /// [`CallerPolicy::rule_for`] for a URL the gateway has already checked (see
    /// [`crate::allowlist::Destination::matches_checked`]).
    pub fn rule_for_checked(&self, origin: &crate::canonical::Origin, path: &str) -> Option<&Rule> {
        self.rules
            .iter()
            .find(|rule| rule.destination.matches_checked(origin, path))
    }
}
