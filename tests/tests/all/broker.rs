//! Events on a real broker: the outbox relay publishing to NATS JetStream (Debian's
//! `nats-server` 2.9, started by the harness on 127.0.0.1), as CloudEvents, in per-user order,
//! each event stored once even when the service dies between publish and acknowledgement, and
//! nothing lost while the broker is down.

use harness::{
    hibp::HibpServer,
    http::post,
    nats::{StoredMessage, TestNats},
    service::TestService,
    wait_until,
};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::{
    collections::BTreeMap,
    io::{Read, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};
use user_service::{
    ServiceConfig,
    outbox::{nats::NatsSinkConfig, sinks::SinkConfig},
    store::Store,
};

const PASSWORD: &str = "correct horse battery staple";
const NEW_PASSWORD: &str = "tremendous violet harbour lantern";
const RESET_PASSWORD: &str = "an entirely fresh passphrase";
const STREAM: &str = "USER_SERVICE_EVENTS";
const PREFIX: &str = "user-service.events";

fn nats_sink(config: &mut ServiceConfig, url: &str, create_stream: bool) {
    config.events.sinks = vec![SinkConfig::Nats(NatsSinkConfig {
        name: None,
        url: url.to_owned(),
        subject_prefix: PREFIX.to_owned(),
        stream: STREAM.to_owned(),
        create_stream,
        duplicate_window_s: None,
    })];
}

async fn register(client: &Client, base: &str, email: &str) -> Value {
    let (status, body) = post(
        client,
        format!("{base}/v1/users"),
        json!({ "email": email, "password": PASSWORD, "display_name": "Ana Silva" }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

/// A JSON string's text ("" for anything else).
fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

/// Checks `message` is a structured CloudEvent on `<prefix>.<type>` with `Nats-Msg-Id` = id.
fn assert_cloud_event(message: &StoredMessage) {
    let event = &message.body;
    assert_eq!(event["specversion"], "1.0", "{event}");
    assert_eq!(event["source"], "/user-service");
    assert_eq!(event["datacontenttype"], "application/json");
    let event_type = event["type"].as_str().expect("a type");
    assert_eq!(message.subject, format!("{PREFIX}.{event_type}"));
    assert_eq!(message.msg_id.as_deref(), event["id"].as_str());
    assert_eq!(
        event["subject"], event["data"]["userId"],
        "subject = user id"
    );
    let time = event["time"].as_str().expect("a time");
    assert!(time.len() == 20 && time.ends_with('Z'), "{time}");
}

#[tokio::test]
async fn four_flows_reach_jetstream_once_each_in_per_user_order_as_cloudevents() {
    let nats = TestNats::start().await.expect("nats-server");
    let hibp = HibpServer::start(&[]).await;
    let service = TestService::start(&hibp.server.url(), None, |config| {
        nats_sink(config, &nats.url(), true);
    })
    .await
    .unwrap();
    let base = service.url("");
    let client = Client::new();
    let users = ["ana@example.org", "bo@example.org"];
    let mut ids = BTreeMap::new();
    for email in users {
        ids.insert(text(&register(&client, &base, email).await["id"]), email);
    }
    for email in users {
        let (status, _) = post(
            &client,
            format!("{base}/v1/password/change"),
            json!({ "email": email, "current_password": PASSWORD, "new_password": NEW_PASSWORD }),
        )
        .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = post(
            &client,
            format!("{base}/v1/password/reset-requests"),
            json!({ "email": email }),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let messages = nats
        .wait_for(STREAM, 8, Duration::from_secs(10))
        .await
        .unwrap();
    let tokens: Vec<String> = messages
        .iter()
        .filter(|message| message.body["type"] == "PasswordResetRequestedEventV1")
        .map(|message| {
            message.body["data"]["resetToken"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(tokens.len(), 2, "{messages:?}");
    for token in tokens {
        let (status, _) = post(
            &client,
            format!("{base}/v1/password/resets"),
            json!({ "token": token, "new_password": RESET_PASSWORD }),
        )
        .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    let messages = nats
        .wait_for(STREAM, 10, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(messages.len(), 10, "{messages:?}");
    let mut seen = std::collections::BTreeSet::new();
    for message in &messages {
        assert_cloud_event(message);
        assert!(seen.insert(text(&message.body["id"])), "each id once");
    }
    for user in ids.keys() {
        let types: Vec<&str> = messages
            .iter()
            .filter(|message| message.body["subject"] == user.as_str())
            .map(|message| message.body["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            [
                "UserRegisteredEventV1",
                "EmailVerificationRequestedEventV1",
                "PasswordChangedEventV1",
                "PasswordResetRequestedEventV1",
                "PasswordChangedEventV1"
            ],
            "one user's events in the order they happened"
        );
    }
    // The stream the service created dedupes over at least the relay's retry horizon.
    let mut stream = nats
        .jetstream()
        .await
        .unwrap()
        .get_stream(STREAM)
        .await
        .unwrap();
    let config = stream.info().await.unwrap().config.clone();
    assert!(config.duplicate_window >= service.state.config.events.retry_horizon());
    assert_eq!(config.subjects, [format!("{PREFIX}.>")]);
    assert_eq!(
        config.storage,
        async_nats::jetstream::stream::StorageType::File
    );
}

#[tokio::test]
async fn a_missing_stream_stops_the_start_and_says_what_is_missing() {
    let nats = TestNats::start().await.expect("nats-server");
    let hibp = HibpServer::start(&[]).await;
    let error = TestService::start(&hibp.server.url(), None, |config| {
        nats_sink(config, &nats.url(), false);
    })
    .await
    .err()
    .expect("the start fails");
    let error = format!("{error:#}");
    assert!(
        error.contains(STREAM) && error.contains(&format!("{PREFIX}.>")),
        "{error}"
    );
}

#[tokio::test]
async fn nats_down_for_ten_seconds_keeps_requests_fast_and_loses_nothing() {
    let mut nats = TestNats::start().await.expect("nats-server");
    let hibp = HibpServer::start(&[]).await;
    let service = TestService::start(&hibp.server.url(), None, |config| {
        nats_sink(config, &nats.url(), true);
        config.events.max_attempts = 1000;
        config.events.delivery_timeout_ms = 1000;
    })
    .await
    .unwrap();
    let base = service.url("");
    let client = Client::new();
    // A registration emits two events: UserRegisteredEventV1, EmailVerificationRequestedEventV1.
    register(&client, &base, "before@example.org").await;
    assert_eq!(
        nats.wait_for(STREAM, 2, Duration::from_secs(10))
            .await
            .unwrap()
            .len(),
        2
    );

    nats.stop();
    let down_since = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut registered = 1;
    while down_since.elapsed() < Duration::from_secs(10) {
        let started = Instant::now();
        register(&client, &base, &format!("down-{registered}@example.org")).await;
        slowest = slowest.max(started.elapsed());
        registered += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        slowest < Duration::from_secs(2),
        "a registration took {slowest:?} while NATS was down"
    );
    nats.resume().await.unwrap();

    let messages = nats
        .wait_for(STREAM, 2 * registered, Duration::from_secs(30))
        .await
        .unwrap();
    let distinct: std::collections::BTreeSet<_> = messages
        .iter()
        .map(|message| text(&message.body["id"]))
        .collect();
    assert_eq!(distinct.len(), 2 * registered, "every event arrived");
    assert_eq!(messages.len(), 2 * registered, "each once");
}

// --- SIGKILL between publish and acknowledgement -------------------------------------------

/// Set in the child process: the data directory of the service it runs.
const CHILD_DATA: &str = "BROKER_TEST_CHILD_DATA";
/// Set in the child process: the NATS URL its sink publishes to.
const CHILD_NATS: &str = "BROKER_TEST_CHILD_NATS";

/// The service of [`sigkill_between_publish_and_ack_stores_each_event_once`], run in a child
/// process of this test binary so that it can be SIGKILLed; a no-op in a normal test run.
#[tokio::test]
async fn child_process_service_entry() {
    let (Some(data), Some(url)) = (std::env::var_os(CHILD_DATA), std::env::var_os(CHILD_NATS))
    else {
        return;
    };
    let data = PathBuf::from(data);
    let plugins = harness::PluginDir::new().unwrap();
    let mut config = TestService::config(&data, plugins.path(), "http://127.0.0.1:9", None);
    config.flows.breach_check = None;
    nats_sink(&mut config, &url.to_string_lossy(), true);
    // A short lease: a claim left behind by a killed relay runs out within seconds.
    config.events.batch_size = 4;
    config.events.parallelism = 4;
    config.events.delivery_timeout_ms = 1000;
    config.events.max_attempts = 1000;
    let state = user_service::start(config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    std::fs::write(data.join("address.tmp"), address.to_string()).unwrap();
    std::fs::rename(data.join("address.tmp"), data.join("address")).unwrap();
    user_service::serve(state, listener, std::future::pending::<()>())
        .await
        .unwrap();
}

/// Runs the child service on `data` publishing to `nats_url`; returns it and its base URL.
async fn start_child(data: &Path, nats_url: &str) -> (Child, String) {
    let _ = std::fs::remove_file(data.join("address"));
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "broker::child_process_service_entry",
            "--nocapture",
        ])
        .env(CHILD_DATA, data)
        .env(CHILD_NATS, nats_url)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the child service");
    let address = wait_until(Duration::from_mins(1), || async {
        data.join("address").exists()
    })
    .await;
    assert!(address.is_some(), "the child service did not start");
    let address = std::fs::read_to_string(data.join("address")).unwrap();
    (child, format!("http://{address}"))
}

/// A TCP proxy to NATS that can hold back everything the server sends (its acknowledgements)
/// while still passing what the client sends (its publishes).
struct AckHolder {
    port: u16,
    hold: Arc<AtomicBool>,
}

impl AckHolder {
    fn start(upstream: u16) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hold = Arc::new(AtomicBool::new(false));
        let holding = hold.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (mut client_read, mut server_write) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || pipe(&mut client_read, &mut server_write, None));
                let (mut server_read, mut client_write) = (server, client);
                let holding = holding.clone();
                std::thread::spawn(move || {
                    pipe(&mut server_read, &mut client_write, Some(holding));
                });
            }
        });
        Self { port, hold }
    }
}

/// Copies `from` into `to`, dropping what arrives while `hold` is set.
fn pipe(
    from: &mut std::net::TcpStream,
    to: &mut std::net::TcpStream,
    hold: Option<Arc<AtomicBool>>,
) {
    let mut buffer = [0u8; 16 * 1024];
    while let Ok(read) = from.read(&mut buffer) {
        if read == 0 {
            break;
        }
        if hold
            .as_ref()
            .is_some_and(|hold| hold.load(Ordering::SeqCst))
        {
            continue;
        }
        if to.write_all(&buffer[..read]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

#[tokio::test]
async fn sigkill_between_publish_and_ack_stores_each_event_once() {
    let nats = TestNats::start().await.expect("nats-server");
    let port: u16 = nats.url().rsplit(':').next().unwrap().parse().unwrap();
    let proxy = AckHolder::start(port);
    let data = tempfile::tempdir().unwrap();
    let client = Client::new();

    let (mut child, base) =
        start_child(data.path(), &format!("nats://127.0.0.1:{}", proxy.port)).await;
    // A registration emits two events: UserRegisteredEventV1, EmailVerificationRequestedEventV1.
    register(&client, &base, "first@example.org").await;
    assert_eq!(
        nats.wait_for(STREAM, 2, Duration::from_secs(10))
            .await
            .unwrap()
            .len(),
        2
    );

    // The next event reaches the stream, its acknowledgement does not reach the service (so
    // the user's second event waits behind it, in order).
    proxy.hold.store(true, Ordering::SeqCst);
    let held = register(&client, &base, "held@example.org").await;
    let stored = nats
        .wait_for(STREAM, 3, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(stored.len(), 3, "the publish reached JetStream");
    assert_eq!(stored[2].body["subject"], held["id"]);
    child.kill().unwrap(); // SIGKILL: the event is still pending in the outbox
    child.wait().unwrap();
    let store = Store::connect(&format!("sqlite://{}/users.db", data.path().display()))
        .await
        .unwrap();
    let (pending, _, _) = store.outbox_counts().await.unwrap();
    assert_eq!(
        pending, 2,
        "the unacknowledged event (and the one behind it) are still to be delivered"
    );

    // Restarted (straight to NATS): the event is sent again after its lease, and JetStream
    // drops the re-send as a duplicate.
    let (mut child, base) = start_child(data.path(), &nats.url()).await;
    let drained = wait_until(Duration::from_secs(30), || async {
        matches!(store.outbox_counts().await, Ok((0, _, _)))
    })
    .await;
    assert!(drained.is_some(), "the restarted relay delivered the event");
    register(&client, &base, "after@example.org").await;
    let stored = nats
        .wait_for(STREAM, 6, Duration::from_secs(10))
        .await
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let ids: Vec<String> = stored
        .iter()
        .map(|message| text(&message.body["id"]))
        .collect();
    let distinct: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(stored.len(), 6, "each id once: {ids:?}");
    assert_eq!(distinct.len(), 6);
}
