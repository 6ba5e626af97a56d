//! Processes of their own, from the one test binary: a test that must own its process (it
//! installs a global `tracing` subscriber) reruns itself alone in a child; a service that a
//! test kills with SIGKILL runs in a child started through an entry test; and the raw HTTP/1.1
//! calls that poll such a child until it is ready.

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// Set in a child started by [`own_process`] to the test it must run.
const OWN_PROCESS: &str = "HARNESS_OWN_PROCESS";

/// The libtest name of a test: `module_path` without the crate (`all::otlp` → `otlp`), then
/// `::test`.
fn test_name(module_path: &str, test: &str) -> String {
    match module_path.split_once("::") {
        Some((_, module)) => format!("{module}::{test}"),
        None => test.to_owned(),
    }
}

/// Runs the test `test` of `module_path` (pass `module_path!()`) in a process of its own.
/// In that child, returns `true`: run the body. In the parent, runs the child (this binary,
/// `--exact` that test), asserts it passed and returns `false`: the body ran there, not here.
pub fn own_process(module_path: &str, test: &str) -> bool {
    let name = test_name(module_path, test);
    if std::env::var(OWN_PROCESS).is_ok_and(|running| running == name) {
        return true;
    }
    let output = Command::new(std::env::current_exe().expect("the test binary's path"))
        .args(["--exact", &name, "--nocapture", "--test-threads=1"])
        .env(OWN_PROCESS, &name)
        .stdin(Stdio::null())
        .output()
        .expect("the test binary runs again");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{name} failed in its own process:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    false
}

/// Starts this test binary running only the entry test `entry` (a test that does nothing
/// unless its environment says so), with `env` set and its output discarded.
pub fn spawn_entry(entry: &str, env: &[(&str, &std::ffi::OsStr)]) -> Child {
    let mut command = Command::new(std::env::current_exe().expect("the test binary's path"));
    command
        .args(["--exact", entry, "--nocapture"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    command.spawn().expect("the entry test starts")
}

/// One HTTP/1.1 request to 127.0.0.1 with `Connection: close`; the status code.
pub fn status(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
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

/// Polls `GET /readyz` on `port` every `every` until it answers 200; the time that took.
/// Panics after a minute.
pub fn wait_ready(port: u16, every: Duration) -> Duration {
    let started = Instant::now();
    while status(port, "GET", "/readyz", "").ok() != Some(200) {
        assert!(
            started.elapsed() < Duration::from_mins(1),
            "the service did not become ready"
        );
        std::thread::sleep(every);
    }
    started.elapsed()
}
