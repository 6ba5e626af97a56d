//! A throwaway NATS server with JetStream on 127.0.0.1 for the broker tests: Debian's
//! `nats-server` (2.9.x; `.ci/run` installs the package when missing) on a free port with its
//! store in a temporary directory. It can be stopped and started again on the same port and
//! store, to play a broker that is down.
//!
//! Also: reading a stream back message by message, as a consumer would see it.

use async_nats::jetstream;
use serde_json::Value;
use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A running (or stopped) NATS server; killed when dropped.
pub struct TestNats {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl Drop for TestNats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One message read back from a stream.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    /// The subject it was published to.
    pub subject: String,
    /// Its `Nats-Msg-Id` header.
    pub msg_id: Option<String>,
    /// The body, parsed as JSON.
    pub body: Value,
}

fn binary() -> anyhow::Result<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "nats-server not found: install the Debian package nats-server (`.ci/run` does)"
            )
        })
}

impl TestNats {
    /// Starts a server with JetStream on a free 127.0.0.1 port and waits until JetStream
    /// answers.
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("harness-nats-").tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut nats = Self {
            dir,
            port,
            child: None,
        };
        nats.resume().await?;
        Ok(nats)
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGTERM, so it flushes its store; SIGKILL after 5 s). The store stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let terminated = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .is_ok_and(|status| status.success());
            let started = Instant::now();
            while terminated && started.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and store, and waits until JetStream answers.
    pub async fn resume(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let log_path = self.dir.path().join("nats.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let child = Command::new(binary()?)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.dir.path().join("store"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        let started = Instant::now();
        let mut last_error = String::new();
        while started.elapsed() < Duration::from_secs(20) {
            match tokio::time::timeout(Duration::from_secs(1), async_nats::connect(self.url()))
                .await
            {
                // A raw request: the client's typed account answer wants newer servers' fields.
                Ok(Ok(client)) => match client.request("$JS.API.INFO", "".into()).await {
                    Ok(answer)
                        if !String::from_utf8_lossy(&answer.payload).contains("\"error\"") =>
                    {
                        return Ok(());
                    }
                    Ok(answer) => {
                        last_error =
                            format!("JetStream: {}", String::from_utf8_lossy(&answer.payload));
                    }
                    Err(error) => last_error = format!("JetStream: {error}"),
                },
                Ok(Err(error)) => last_error = format!("connect: {error}"),
                Err(_) => last_error = "connect: timed out".to_owned(),
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                self.child = None;
                anyhow::bail!("nats-server exited with {status}: {log}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!(
            "nats-server did not answer on {} within 20 s (last: {last_error})",
            self.url()
        )
    }

    /// A JetStream context on this server.
    pub async fn jetstream(&self) -> anyhow::Result<jetstream::Context> {
        Ok(jetstream::new(async_nats::connect(self.url()).await?))
    }

    /// Every message in `stream`, in stream order.
    pub async fn messages(&self, stream: &str) -> anyhow::Result<Vec<StoredMessage>> {
        let jetstream = self.jetstream().await?;
        let mut stream = jetstream.get_stream(stream).await?;
        let state = stream.info().await?.state.clone();
        let mut messages = Vec::new();
        if state.messages == 0 {
            return Ok(messages);
        }
        for sequence in state.first_sequence..=state.last_sequence {
            let message = stream.get_raw_message(sequence).await?;
            messages.push(StoredMessage {
                subject: message.subject.to_string(),
                msg_id: message.headers.get("Nats-Msg-Id").map(ToString::to_string),
                body: serde_json::from_slice(&message.payload)?,
            });
        }
        Ok(messages)
    }

    /// Waits until `stream` holds at least `count` messages (or `timeout` passes), then returns
    /// them all.
    pub async fn wait_for(
        &self,
        stream: &str,
        count: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<StoredMessage>> {
        let started = Instant::now();
        loop {
            let messages = self.messages(stream).await.unwrap_or_default();
            if messages.len() >= count || started.elapsed() > timeout {
                return Ok(messages);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
