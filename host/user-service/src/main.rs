//! `user-service [CONFIG.toml]`: runs the service. Without a file (and without
//! `USER_SERVICE_CONFIG`), it runs on its embedded defaults: SQLite in `data/`, the bundled
//! plugins in `data/plugins` (hot reload on), listening on 127.0.0.1:8080.
//!
//! `user-service plugin …` signs, verifies and pushes plugin components (see [`plugin_cli`]).

mod plugin_cli;

use std::path::PathBuf;
use tracing_subscriber::{EnvFilter, layer::SubscriberExt as _, util::SubscriberInitExt as _};
use user_service::{ServiceConfig, config::LogFormat};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("plugin") {
        return plugin_cli::run(std::env::args().skip(2).collect()).await;
    }
    let path = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("USER_SERVICE_CONFIG").ok())
        .map(PathBuf::from);
    let config = ServiceConfig::load(path.as_deref())?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (otlp, provider) = match user_service::telemetry::otlp_layer(&config.telemetry)? {
        Some((layer, provider)) => (Some(layer), Some(provider)),
        None => (None, None),
    };
    let registry = tracing_subscriber::registry().with(otlp).with(filter);
    match config.log_format {
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().json())
            .init(),
        LogFormat::Text => registry.with(tracing_subscriber::fmt::layer()).init(),
    }
    let served = user_service::run(config, async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    })
    .await;
    if let Some(provider) = provider {
        // Sends the spans still batched.
        let _ = provider.shutdown();
    }
    served
}
