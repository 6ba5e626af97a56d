//! A throwaway PostgreSQL server on 127.0.0.1 for the storage tests: `TEST_DATABASE_URL` when
//! set (CI may provide one), else one this process starts from the machine's PostgreSQL
//! binaries (`initdb`, `pg_ctl`; `.ci/run` installs them when missing) in a temporary directory.
//! Each caller gets a fresh database on it.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

/// The server's base URL (without a database), or why there is none.
fn server() -> &'static Result<String, String> {
    static SERVER: OnceLock<Result<String, String>> = OnceLock::new();
    SERVER.get_or_init(|| match std::env::var("TEST_DATABASE_URL") {
        Ok(url) => Ok(url
            .trim_end_matches('/')
            .rsplit_once('/')
            .map_or(url.clone(), |(base, _)| base.to_owned())),
        Err(_) => start_server(),
    })
}

/// A URL to a new, empty database.
pub async fn fresh_database() -> anyhow::Result<String> {
    use sqlx::Connection;
    let base = server()
        .as_ref()
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    let name = format!("test_{:016x}", fastrand_u64());
    let mut admin = sqlx::PgConnection::connect(&format!("{base}/postgres")).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    Ok(format!("{base}/{name}"))
}

fn fastrand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

fn binary(name: &str) -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join(name));
    let from_debian = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin").join(name));
    from_path
        .chain(from_debian)
        .find(|candidate| candidate.is_file())
}

/// PostgreSQL refuses to run as root: when we are root, run its tools as `postgres`.
fn as_server_user(program: &Path) -> Command {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0");
    if is_root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn start_server() -> Result<String, String> {
    let (Some(initdb), Some(pg_ctl)) = (binary("initdb"), binary("pg_ctl")) else {
        return Err("PostgreSQL binaries (initdb, pg_ctl) not found: install postgresql (`.ci/run` does) or set TEST_DATABASE_URL".to_owned());
    };
    // Kept for the life of the process (the server lives as long as the tests).
    let dir = tempfile::Builder::new()
        .prefix("harness-pg-")
        .tempdir()
        .map_err(|error| error.to_string())?
        .keep();
    let data = dir.join("data");
    let _ = Command::new("chown")
        .args(["-R", "postgres"])
        .arg(&dir)
        .status();
    let run = |mut command: Command, what: &str| -> Result<(), String> {
        let output = command
            .output()
            .map_err(|error| format!("{what}: {error}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{what} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    };
    let mut init = as_server_user(&initdb);
    init.args(["-A", "trust", "-U", "postgres", "-D"])
        .arg(&data);
    run(init, "initdb")?;
    let port = {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").map_err(|error| error.to_string())?;
        listener
            .local_addr()
            .map_err(|error| error.to_string())?
            .port()
    };
    let mut start = as_server_user(&pg_ctl);
    start
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(dir.join("server.log"))
        .arg("-o")
        .arg(format!(
            "-h 127.0.0.1 -p {port} -k {} -c fsync=off",
            dir.display()
        ))
        .args(["-w", "start"]);
    run(start, "pg_ctl start")?;
    // Stop the server when the test process exits: a small watchdog outlives us by a second.
    let runuser = if as_server_user(&pg_ctl).get_program() == "runuser" {
        "runuser -u postgres -- "
    } else {
        ""
    };
    let watchdog = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {runuser}{pg_ctl} -D {data} -m immediate stop >/dev/null 2>&1; rm -rf {dir}",
        pid = std::process::id(),
        pg_ctl = pg_ctl.display(),
        data = data.display(),
        dir = dir.display(),
    );
    Command::new("sh")
        .args(["-c", &watchdog])
        .spawn()
        .map_err(|error| format!("watchdog: {error}"))?;
    Ok(format!("postgres://postgres@127.0.0.1:{port}"))
}
