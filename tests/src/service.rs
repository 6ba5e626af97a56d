//! The real User Service (its real router on a real listener on 127.0.0.1), with the bundled
//! plugins and local upstreams, for end-to-end tests.

use crate::{PluginDir, components};
use policy_host::egress::config::{DestinationConfig, SecretSource};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::{net::SocketAddr, path::Path};
use user_service::{AppState, ServiceConfig, outbox::sinks::SinkConfig};

/// The admin token the test service is configured with.
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// A running service; stops when dropped.
pub struct TestService {
    /// Where it listens.
    pub address: SocketAddr,
    /// The service's state (store, host, configuration).
    pub state: AppState,
    /// Its plugin directory.
    pub plugins: PluginDir,
    /// The service's data directory (database, event file, last known good policies).
    pub data: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestService {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

impl TestService {
    /// A configuration for a service in fresh temporary directories: SQLite, the bundled
    /// plugins, breach check against `hibp_url`, CAPTCHA (Turnstile at `turnstile_url`, with its
    /// always-pass test secret) when given.
    pub fn config(
        data: &Path,
        plugins: &Path,
        hibp_url: &str,
        turnstile_url: Option<&str>,
    ) -> ServiceConfig {
        let mut config = ServiceConfig {
            database_url: format!("sqlite://{}/users.db", data.display()),
            admin_token: Some(ADMIN_TOKEN.to_owned()),
            ..ServiceConfig::default()
        };
        config.plugins.dir = plugins.to_path_buf();
        config.plugins.cache_dir = None;
        // Everything the service writes stays in the test's directory; the relay is quick.
        config.events.sinks = vec![SinkConfig::File {
            name: None,
            path: data.join("events.jsonl"),
        }];
        config.events.poll_interval_ms = 50;
        config.events.retry_base_ms = 20;
        config.events.retry_cap_ms = 200;
        config.security_policies.cache_file = data.join("security-policies.json");
        config.outbound.defaults.first_byte_timeout = std::time::Duration::from_secs(1);
        config.outbound.defaults.breaker.open_for = std::time::Duration::from_millis(300);
        config.plugins.slots.insert(
            "breach-check".to_owned(),
            crate::breach_slot(hibp_url, crate::quick_policy(), &[]),
        );
        if let Some(url) = turnstile_url {
            let mut captcha = crate::slot(
                policy_host::PluginKind::Captcha,
                &[("provider", "turnstile"), ("base-url", url)],
            );
            captcha.egress = vec![DestinationConfig {
                url: format!("{url}/turnstile/v0/siteverify"),
                allow_private: true,
                secrets: vec!["captcha-secret".to_owned()],
                cache_ttl: None,
                idempotency_header: Some("idempotency-key".to_owned()),
                policy: Some(crate::quick_policy()),
            }];
            config.plugins.slots.insert("captcha".to_owned(), captcha);
            config.plugins.egress.secrets.insert(
                "captcha-secret".to_owned(),
                SecretSource::Value(crate::captcha_vendors::TURNSTILE_PASS_SECRET.to_owned()),
            );
            config.flows.captcha = Some("captcha".to_owned());
        }
        config
    }

    /// Starts a service; `tweak` adjusts the configuration first.
    pub async fn start(
        hibp_url: &str,
        turnstile_url: Option<&str>,
        tweak: impl FnOnce(&mut ServiceConfig),
    ) -> anyhow::Result<Self> {
        Self::start_in_mode(hibp_url, turnstile_url, tweak, false).await
    }

    /// Like [`TestService::start`], but the password checks run the plugins' rules compiled
    /// natively (`PasswordChecks::native`): the baseline of the service benchmark.
    pub async fn start_with_native_checks(
        hibp_url: &str,
        turnstile_url: Option<&str>,
        tweak: impl FnOnce(&mut ServiceConfig),
    ) -> anyhow::Result<Self> {
        Self::start_in_mode(hibp_url, turnstile_url, tweak, true).await
    }

    async fn start_in_mode(
        hibp_url: &str,
        turnstile_url: Option<&str>,
        tweak: impl FnOnce(&mut ServiceConfig),
        native: bool,
    ) -> anyhow::Result<Self> {
        let data = tempfile::tempdir()?;
        let plugins = PluginDir::new()?;
        let mut config = Self::config(data.path(), plugins.path(), hibp_url, turnstile_url);
        tweak(&mut config);
        let mut state = user_service::start(config).await?;
        if native {
            state.checks =
                user_service::password_checks::PasswordChecks::native(state.host.clone());
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(user_service::serve(state.clone(), listener, async {
            let _ = stopped.await;
        }));
        Ok(Self {
            address,
            state,
            plugins,
            data,
            shutdown: Some(shutdown),
        })
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// `POST path` with a JSON body; the status and the JSON answer (see [`crate::http::post`]).
    pub async fn post(&self, client: &Client, path: &str, body: Value) -> (StatusCode, Value) {
        crate::http::post(client, self.url(path), body).await
    }

    /// Logs in (`POST /v1/sessions`) with `email` and `password`.
    pub async fn login(&self, client: &Client, email: &str, password: &str) -> (StatusCode, Value) {
        let body = json!({ "email": email, "password": password });
        self.post(client, "/v1/sessions", body).await
    }

    /// Completes a password reset (`POST /v1/password/resets`) with `token` and `new_password`.
    pub async fn complete_reset(
        &self,
        client: &Client,
        token: &str,
        new_password: &str,
    ) -> (StatusCode, Value) {
        let body = json!({ "token": token, "new_password": new_password });
        self.post(client, "/v1/password/resets", body).await
    }

    /// Waits until the relay has delivered every event (the outbox has none pending), then
    /// returns the events the default file sink received, in delivery order.
    pub async fn delivered_events(&self) -> Vec<serde_json::Value> {
        let drained = crate::wait_until(std::time::Duration::from_secs(10), || async {
            matches!(self.state.store.outbox_counts().await, Ok((0, _, _)))
        })
        .await;
        assert!(
            drained.is_some(),
            "the outbox relay did not drain the outbox"
        );
        std::fs::read_to_string(self.data.path().join("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("one JSON event per line"))
            .collect()
    }

    /// Publishes the "next" password-policy version into the plugin directory.
    pub fn publish_next_password_policy(&self) -> anyhow::Result<()> {
        self.plugins.publish(
            "password-policy",
            Path::new(components::PASSWORD_POLICY_NEXT),
        )?;
        Ok(())
    }
}
