//! The service in a process of its own (what the `user-service` binary runs), killed with
//! SIGKILL between requests and restarted, loses nothing it acknowledged.

use harness::process;
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    path::Path,
    process::Child,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

/// Set in the child process: the configuration file of the service it runs.
const CHILD_CONFIG: &str = "DURABILITY_TEST_CHILD_CONFIG";

/// The service of these tests, run in a child process of this test binary so that it can be
/// SIGKILLed: what the `user-service` binary runs ([`user_service::run`]) on the configuration
/// file; a no-op in a normal test run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_child_entry() {
    let Some(config) = std::env::var_os(CHILD_CONFIG) else {
        return;
    };
    let config = user_service::ServiceConfig::load(Some(Path::new(&config))).unwrap();
    user_service::run(config, std::future::pending())
        .await
        .unwrap();
}

fn start(config: &Path, port: u16) -> Child {
    let child = process::spawn_entry(
        "durability::service_child_entry",
        &[(CHILD_CONFIG, config.as_os_str())],
    );
    process::wait_ready(port, Duration::from_millis(100));
    child
}

fn request(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<u16> {
    process::status(port, method, path, body)
}

/// Writes a configuration in `dir` for a service on a free port, with its data in `dir`, no
/// breach check (no test may reach the public range API), and `extra` appended.
fn write_config(dir: &Path, extra: &str) -> (u16, std::path::PathBuf) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.join("service.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndatabase-url = \"sqlite://{data}/users.db\"\n\n[flows]\nbreach-check = \"\"\n\n[plugins]\ndir = \"{data}/plugins\"\ncache-dir = \"{data}/cache\"\n\n{extra}",
            data = dir.display()
        ),
    )
    .unwrap();
    (port, config)
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let (port, config) = write_config(
        dir.path(),
        &format!(
            "[[events.sinks]]\nkind = \"file\"\npath = \"{}/events.jsonl\"\n",
            dir.path().display()
        ),
    );

    let mut service = start(&config, port);
    let account = r#"{"email":"durable@example.org","password":"correct horse battery staple"}"#;
    assert_eq!(request(port, "POST", "/v1/users", account).unwrap(), 201);
    let change = r#"{"email":"durable@example.org","current_password":"correct horse battery staple","new_password":"a passphrase that outlives crashes"}"#;
    assert_eq!(
        request(port, "POST", "/v1/password/change", change).unwrap(),
        204
    );
    service.kill().unwrap(); // SIGKILL: no shutdown, no flush
    service.wait().unwrap();

    let mut service = start(&config, port);
    let old = r#"{"email":"durable@example.org","password":"correct horse battery staple"}"#;
    let new = r#"{"email":"durable@example.org","password":"a passphrase that outlives crashes"}"#;
    assert_eq!(
        request(port, "POST", "/v1/sessions", old).unwrap(),
        401,
        "the old password is gone"
    );
    assert_eq!(
        request(port, "POST", "/v1/sessions", new).unwrap(),
        200,
        "the acknowledged change survived"
    );
    assert_eq!(
        request(port, "POST", "/v1/users", account).unwrap(),
        409,
        "the account survived"
    );
    service.kill().unwrap();
    service.wait().unwrap();
}

/// An event consumer on 127.0.0.1 that records each delivery's `Idempotency-Key` and either
/// answers 202 or, while `hang` is set, keeps the request waiting (a delivery in flight).
struct Consumer {
    port: u16,
    hang: Arc<AtomicBool>,
    /// (event id, answered) per delivery, in arrival order.
    deliveries: Arc<Mutex<Vec<(String, bool)>>>,
}

impl Consumer {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hang = Arc::new(AtomicBool::new(true));
        let deliveries = Arc::new(Mutex::new(Vec::new()));
        let (hanging, recorded) = (hang.clone(), deliveries.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (hanging, recorded) = (hanging.clone(), recorded.clone());
                std::thread::spawn(move || serve_delivery(stream, &hanging, &recorded));
            }
        });
        Self {
            port,
            hang,
            deliveries,
        }
    }

    fn deliveries(&self) -> Vec<(String, bool)> {
        self.deliveries.lock().unwrap().clone()
    }
}

fn serve_delivery(stream: TcpStream, hang: &AtomicBool, deliveries: &Mutex<Vec<(String, bool)>>) {
    let mut reader = BufReader::new(stream);
    let (mut key, mut length) = (String::new(), 0usize);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            match name.to_ascii_lowercase().as_str() {
                "idempotency-key" => key = value.trim().to_owned(),
                "content-length" => length = value.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    if hang.load(Ordering::SeqCst) {
        deliveries.lock().unwrap().push((key, false));
        // Hold the request until the service is killed (or a minute passes).
        std::thread::sleep(Duration::from_mins(1));
        return;
    }
    deliveries.lock().unwrap().push((key, true));
    let _ = reader
        .into_inner()
        .write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
}

#[test]
fn events_committed_before_a_sigkill_are_delivered_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let consumer = Consumer::start();
    let (port, config) = write_config(
        dir.path(),
        &format!(
            "[services.event-consumer]\nurl = \"http://127.0.0.1:{}\"\n\n[events]\npoll-interval-ms = 50\ndelivery-timeout-ms = 1500\n\n[[events.sinks]]\nkind = \"http\"\nservice = \"event-consumer\"\n",
            consumer.port
        ),
    );

    let mut service = start(&config, port);
    let account = r#"{"email":"crash@example.org","password":"correct horse battery staple"}"#;
    assert_eq!(request(port, "POST", "/v1/users", account).unwrap(), 201);
    let reset = r#"{"email":"crash@example.org"}"#;
    assert_eq!(
        request(port, "POST", "/v1/password/reset-requests", reset).unwrap(),
        202
    );
    // The registration event is on the wire, unanswered; the verification and reset events
    // wait behind it.
    let started = Instant::now();
    while consumer.deliveries().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no delivery started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    service.kill().unwrap(); // SIGKILL between commit and delivery
    service.wait().unwrap();
    let in_flight = consumer.deliveries()[0].0.clone();

    consumer.hang.store(false, Ordering::SeqCst);
    let mut service = start(&config, port);
    let answered = || -> Vec<String> {
        let mut ids = Vec::new();
        for (id, answered) in consumer.deliveries() {
            if answered && !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids
    };
    let started = Instant::now();
    while answered().len() < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "events not delivered after the restart: {:?}",
            consumer.deliveries()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let ids = answered();
    assert_eq!(
        ids.len(),
        3,
        "three distinct events: {:?}",
        consumer.deliveries()
    );
    assert_eq!(
        ids[0], in_flight,
        "the interrupted event first, then the next ones"
    );
    service.kill().unwrap();
    service.wait().unwrap();
}
