//! Several real User Service processes on one real PostgreSQL: the replicas of the rollout
//! tests and benches. A replica is the calling test binary itself, re-run with
//! [`SERVE_ENV`] naming a configuration: the binary's test [`serve_if_asked`] then serves it
//! (what the `user-service` binary's `main` does) until it is killed, so the figures are the
//! service's own code in processes of their own.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The environment variable naming the configuration a re-run test binary serves.
pub const SERVE_ENV: &str = "HARNESS_REPLICA_CONFIG";

/// The admin token every replica is configured with.
pub const ADMIN_TOKEN: &str = "replica-admin-token";

/// When [`SERVE_ENV`] is set, serves that configuration and never returns; else returns at once.
/// Call it first thing in a test (or bench main) named by [`Replica::start`]'s `entry`.
pub fn serve_if_asked() {
    let Ok(path) = std::env::var(SERVE_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result: anyhow::Result<()> = runtime.block_on(async {
        let config = user_service::ServiceConfig::load(Some(Path::new(&path)))?;
        let listen = config.listen;
        let state = user_service::start(config).await?;
        let listener = tokio::net::TcpListener::bind(listen).await?;
        user_service::serve(state, listener, std::future::pending()).await
    });
    eprintln!("the replica stopped: {result:?}");
    std::process::exit(1)
}

/// One replica process.
pub struct Replica {
    /// Its fleet id (`replica-id`), also the name of its directory.
    pub id: String,
    /// The local port it listens on (127.0.0.1).
    pub port: u16,
    /// Its configuration file.
    pub config: PathBuf,
    /// How to re-run this binary so that it serves: the arguments after the executable.
    entry: Vec<String>,
    child: Option<Child>,
}

impl Replica {
    /// A replica named `id` of the service on `database_url`, with its plugin directory and
    /// artifact cache under `dir`, no breach check (no test reaches the public range API) and
    /// `extra` TOML appended. Not started.
    pub fn new(dir: &Path, id: &str, database_url: &str, entry: &[&str], extra: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let data = dir.join(id);
        std::fs::create_dir_all(&data).expect("replica directory");
        let config = data.join("service.toml");
        std::fs::write(
            &config,
            format!(
                r#"listen = "127.0.0.1:{port}"
database-url = "{database_url}"
admin-token = "{ADMIN_TOKEN}"

[flows]
breach-check = ""

[plugins]
dir = "{data}/plugins"
cache-dir = "{data}/cache"

[security-policies]
cache-file = "{data}/security-policies.json"

[rollout]
replica-id = "{id}"
poll-interval-ms = 500
heartbeat-interval-ms = 200
{extra}
"#,
                data = data.display()
            ),
        )
        .expect("write the replica configuration");
        Self {
            id: id.to_owned(),
            port,
            config,
            entry: entry.iter().map(|arg| (*arg).to_owned()).collect(),
            child: None,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the process and waits until `/readyz` answers 200; returns how long it took.
    pub async fn start(&mut self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let child = Command::new(std::env::current_exe()?)
            .args(&self.entry)
            .env(SERVE_ENV, &self.config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let client = reqwest::Client::new();
        loop {
            let ready = client
                .get(format!("{}/readyz", self.url()))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|response| response.status() == 200);
            if ready {
                return Ok(started.elapsed());
            }
            if let Some(child) = &mut self.child
                && let Some(status) = child.try_wait()?
            {
                anyhow::bail!("replica {} exited at start: {status}", self.id);
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_mins(1),
                "replica {} did not become ready",
                self.id
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `n` replicas (`r0`, `r1`, …) on one fresh PostgreSQL database, started one after the other.
pub async fn start_fleet(
    dir: &Path,
    n: usize,
    entry: &[&str],
    extra: &str,
) -> anyhow::Result<Vec<Replica>> {
    let database_url = crate::postgres::fresh_database().await?;
    let mut replicas = Vec::new();
    for index in 0..n {
        let mut replica = Replica::new(dir, &format!("r{index}"), &database_url, entry, extra);
        replica.start().await?;
        replicas.push(replica);
    }
    Ok(replicas)
}

/// An admin request builder for `path` on `replica`.
pub fn admin(
    client: &reqwest::Client,
    method: reqwest::Method,
    replica: &Replica,
    path: &str,
) -> reqwest::RequestBuilder {
    client
        .request(method, format!("{}{path}", replica.url()))
        .bearer_auth(ADMIN_TOKEN)
}

/// The body of `PUT /admin/plugins/{name}/desired` uploading `component` at `stage`, with
/// `fields` merged in (percent, settings, salt…).
pub fn desired_body(component: &Path, stage: &str, fields: serde_json::Value) -> serde_json::Value {
    use base64::Engine as _;
    let bytes = std::fs::read(component).expect("read the component");
    let mut body = serde_json::json!({
        "component": base64::engine::general_purpose::STANDARD.encode(bytes),
        "stage": stage,
    });
    if let (Some(body), Some(fields)) = (body.as_object_mut(), fields.as_object()) {
        body.extend(fields.clone());
    }
    body
}

/// Writes `key` as the artifact key file `name` under `dir` and returns the `[rollout]` line
/// that configures it (append it to a replica's `extra`).
pub fn artifact_key_config(dir: &Path, name: &str, key: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{key}\n")).expect("write the artifact key");
    format!("artifact-key = {{ file = \"{}\" }}\n", path.display())
}

/// The component at `path` with a custom section naming `label` appended: the same behaviour,
/// but bytes (and so a digest) no replica has compiled yet — a cold publication.
pub fn distinct_component(path: &Path, label: &str) -> Vec<u8> {
    fn leb128(mut value: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut bytes = std::fs::read(path).expect("read the component");
    let mut payload = Vec::new();
    leb128(label.len(), &mut payload);
    payload.extend_from_slice(label.as_bytes());
    payload.extend_from_slice(b"distinct bytes");
    bytes.push(0); // a custom section
    leb128(payload.len(), &mut bytes);
    bytes.extend(payload);
    bytes
}

/// The body of `PUT /admin/plugins/{name}/desired` serving the component `bytes`.
pub fn serve_bytes_body(bytes: &[u8]) -> serde_json::Value {
    use base64::Engine as _;
    serde_json::json!({
        "component": base64::engine::general_purpose::STANDARD.encode(bytes),
        "stage": "serving",
    })
}
