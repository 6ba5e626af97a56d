//! What every handler and flow can reach: the configuration, the plugin host, the store, the
//! throttles, the internal clients and the outbox's waker. Built by [`crate::app::start`].

use crate::{
    config::ServiceConfig, outbound::InternalClient, security_policy::SecurityPolicyService,
    store::Store, throttle::LoginThrottle,
};
use metrics_exporter_prometheus::PrometheusHandle;
use policy_host::PolicyHost;
use std::sync::Arc;
use tokio::{sync::Notify, task::JoinHandle};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The configuration the service started with.
    pub config: Arc<ServiceConfig>,
    /// The plugin host that makes the policy decisions.
    pub host: Arc<PolicyHost>,
    /// The checks of a new password, run by `host`'s plugins (the benchmark's native mode
    /// swaps in [`crate::password_checks::PasswordChecks::native`]).
    pub checks: crate::password_checks::PasswordChecks,
    /// The database.
    pub store: Store,
    /// Login throttles, counted in the database (shared by every replica).
    pub throttle: LoginThrottle,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Calls to internal services (Notification, Configuration) by logical name.
    pub internal: Arc<InternalClient>,
    /// Security policies from the Configuration Service.
    pub security: Arc<SecurityPolicyService>,
    /// Wakes the outbox relay after a commit.
    pub outbox_waker: Arc<Notify>,
    /// This replica's follower of the desired plugin state (`[rollout]`).
    pub rollout: Arc<crate::rollout::sync::RolloutSync>,
    /// The relay and refresh tasks, stopped when the last clone of the state goes.
    pub(crate) _background: Arc<BackgroundTasks>,
}

/// Background tasks owned by one service instance.
pub(crate) struct BackgroundTasks(pub(crate) Vec<JoinHandle<()>>);

impl Drop for BackgroundTasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}
