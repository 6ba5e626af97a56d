//! The real `user-service` binary, killed with SIGKILL between requests and restarted, loses
//! nothing it acknowledged.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// One HTTP/1.1 request; returns the status code.
fn request(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad response: {response:?}")))
}

fn start(config: &Path, port: u16) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_user-service"))
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the user-service binary");
    let started = Instant::now();
    while request(port, "GET", "/readyz", "").ok() != Some(200) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the service did not become ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("service.toml");
    // No breach check: this test must not reach for the public range API.
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\ndatabase-url = \"sqlite://{data}/users.db\"\n\n[flows]\nbreach-check = \"\"\n\n[plugins]\ndir = \"{data}/plugins\"\ncache-dir = \"{data}/cache\"\n",
            data = dir.path().display()
        ),
    )
    .unwrap();

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
