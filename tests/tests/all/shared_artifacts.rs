//! Compiled artifacts shared through the database, attacked: real service processes on a real
//! PostgreSQL, rows forged straight into `plugin_artifacts`.
//!
//! - an authentic artifact of another component replayed under a new component's digest (code
//!   substitution) is refused: the replicas compile the real bytes and serve the real version;
//! - an artifact whose bytes were tampered with (its tag kept) is refused by a replica that
//!   catches up at start;
//! - a replica with another key ignores the deployment's artifacts and still converges;
//! - a replica without a key works as before; one with the right key loads the artifact
//!   (`outcome="verified"`, nothing refused): the control that shows the counters can move.
//!
//! What a replica did shows in `plugin_shared_artifacts_total{outcome}` on its `/metrics`.

use crate::rollout::{ENTRY, check, password_of, put_desired, serving};
use base64::Engine as _;
use harness::{
    components, password_policy_component,
    replicas::{Replica, artifact_key_config, distinct_component, serve_bytes_body},
};
use reqwest::Client;
use sqlx::Connection as _;
use std::time::Duration;

const KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
const OTHER_KEY: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// `plugin_shared_artifacts_total{outcome="…"}` on `replica` (0 when never counted).
async fn shared(client: &Client, replica: &Replica, outcome: &str) -> u64 {
    let text = client
        .get(format!("{}/metrics", replica.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("plugin_shared_artifacts_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |value| value.trim().parse().unwrap())
}

/// Waits until `replica` serves component `sha256`; its version then.
async fn await_serving(client: &Client, replica: &Replica, sha256: &str) -> String {
    let served = harness::wait_until(Duration::from_secs(15), || async {
        serving(client, replica)
            .await
            .is_ok_and(|(_, serving)| serving == sha256)
    })
    .await;
    let (version, serving) = serving(client, replica).await.unwrap();
    assert!(
        served.is_some(),
        "{} never served {sha256}; serves {version} {serving}",
        replica.id
    );
    version
}

/// The stored artifact row of `sha256`: (engine, artifact base64, tag hex).
async fn artifact_row(
    db: &mut sqlx::PgConnection,
    sha256: &str,
) -> Option<(String, String, String)> {
    sqlx::query_as("SELECT engine, artifact_base64, tag FROM plugin_artifacts WHERE sha256 = $1")
        .bind(sha256)
        .fetch_optional(db)
        .await
        .unwrap()
}

async fn write_row(db: &mut sqlx::PgConnection, sha256: &str, row: &(String, String, String)) {
    sqlx::query(
        "INSERT INTO plugin_artifacts (sha256, engine, artifact_base64, tag, created_at)
         VALUES ($1, $2, $3, $4, 0)
         ON CONFLICT (sha256, engine) DO UPDATE SET artifact_base64 = $3, tag = $4",
    )
    .bind(sha256)
    .bind(&row.0)
    .bind(&row.1)
    .bind(&row.2)
    .execute(db)
    .await
    .unwrap();
}

/// A replica's decisions are the bundled policy's: a long password allowed without warnings.
async fn decides_correctly(client: &Client, replica: &Replica) {
    let (verdict, warnings, _) = check(client, replica, "shared@example.org", &password_of(22, 3))
        .await
        .unwrap();
    assert_eq!(
        (verdict.as_str(), warnings.len()),
        ("allow", 0),
        "{}",
        replica.id
    );
    let (verdict, _, findings) = check(client, replica, "shared@example.org", "short")
        .await
        .unwrap();
    assert_ne!(verdict, "allow", "{}: {findings:?}", replica.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_foreign_and_tampered_artifacts_are_never_loaded() {
    let _exclusive = harness::exclusive().await;
    let dir = tempfile::tempdir().unwrap();
    let url = harness::postgres::fresh_database().await.unwrap();
    let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
    let key = artifact_key_config(dir.path(), "artifact.key", KEY);
    let other_key = artifact_key_config(dir.path(), "other.key", OTHER_KEY);
    let replica = |id: &str, extra: &str| Replica::new(dir.path(), id, &url, ENTRY, extra);
    let client = Client::new();

    // r0 and r1 share the key, r2 has none.
    let mut r0 = replica("r0", &key);
    let mut r1 = replica("r1", &key);
    let mut r2 = replica("r2", "");
    for started in [&mut r0, &mut r1, &mut r2] {
        started.start().await.unwrap();
    }
    let (bundled_version, _) = serving(&client, &r0).await.unwrap();
    assert_ne!(bundled_version, components::NEXT_VERSION);

    // An honest publication through r0: r1 loads r0's compilation, r2 compiles (no key).
    let next = std::fs::read(components::PASSWORD_POLICY_NEXT).unwrap();
    let next_sha = sha256_hex(&next);
    put_desired(&client, &r0, &serve_bytes_body(&next))
        .await
        .unwrap();
    for follower in [&r0, &r1, &r2] {
        assert_eq!(
            await_serving(&client, follower, &next_sha).await,
            components::NEXT_VERSION
        );
    }
    assert_eq!(shared(&client, &r0, "published").await, 1);
    assert!(shared(&client, &r1, "verified").await >= 1);
    assert_eq!(shared(&client, &r1, "refused").await, 0);
    assert_eq!(
        shared(&client, &r2, "verified").await,
        0,
        "no key, no trust"
    );
    let next_row = artifact_row(&mut db, &next_sha)
        .await
        .expect("the uploading replica stored its artifact");

    // Code substitution: the next version's authentic artifact and tag, under the digest of a
    // component nobody compiled, published through the replica without a key (which writes no
    // artifact, so the forged row is what the others find).
    let replayed = distinct_component(password_policy_component(), "replayed");
    let replayed_sha = sha256_hex(&replayed);
    write_row(&mut db, &replayed_sha, &next_row).await;
    let refused_before = [
        shared(&client, &r0, "refused").await,
        shared(&client, &r1, "refused").await,
    ];
    put_desired(&client, &r2, &serve_bytes_body(&replayed))
        .await
        .unwrap();
    for (index, follower) in [&r0, &r1].into_iter().enumerate() {
        let version = await_serving(&client, follower, &replayed_sha).await;
        assert_eq!(
            version, bundled_version,
            "{} ran the substituted artifact",
            follower.id
        );
        assert!(
            shared(&client, follower, "refused").await > refused_before[index],
            "{} did not count the refusal",
            follower.id
        );
        decides_correctly(&client, follower).await;
    }
    assert_eq!(
        await_serving(&client, &r2, &replayed_sha).await,
        bundled_version
    );
    decides_correctly(&client, &r2).await;

    // An honest publication of another new component through r0, then r1 leaves.
    let tampered = distinct_component(password_policy_component(), "tampered");
    let tampered_sha = sha256_hex(&tampered);
    put_desired(&client, &r0, &serve_bytes_body(&tampered))
        .await
        .unwrap();
    await_serving(&client, &r0, &tampered_sha).await;
    r1.stop();
    let honest = artifact_row(&mut db, &tampered_sha).await.unwrap();

    // A replica with the right key catching up at start loads it: the control.
    let mut r3 = replica("r3", &key);
    r3.start().await.unwrap();
    assert_eq!(
        await_serving(&client, &r3, &tampered_sha).await,
        bundled_version
    );
    assert!(shared(&client, &r3, "verified").await >= 1);
    assert_eq!(shared(&client, &r3, "refused").await, 0);
    r3.stop();

    // A replica with another key: refuses the deployment's artifact, compiles, converges.
    let mut r4 = replica("r4", &other_key);
    r4.start().await.unwrap();
    assert_eq!(
        await_serving(&client, &r4, &tampered_sha).await,
        bundled_version
    );
    assert!(shared(&client, &r4, "refused").await >= 1);
    assert_eq!(shared(&client, &r4, "verified").await, 0);
    decides_correctly(&client, &r4).await;
    r4.stop();

    // Tampered bytes, authentic tag: refused by a replica with the right key.
    let mut bytes = base64::engine::general_purpose::STANDARD
        .decode(&honest.1)
        .unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    let forged = (
        honest.0.clone(),
        base64::engine::general_purpose::STANDARD.encode(&bytes),
        honest.2.clone(),
    );
    write_row(&mut db, &tampered_sha, &forged).await;
    let mut r5 = replica("r5", &key);
    r5.start().await.unwrap();
    assert_eq!(
        await_serving(&client, &r5, &tampered_sha).await,
        bundled_version
    );
    assert!(shared(&client, &r5, "refused").await >= 1);
    assert_eq!(shared(&client, &r5, "verified").await, 0);
    decides_correctly(&client, &r5).await;

    // A truncated tag, too.
    let truncated = (
        honest.0.clone(),
        honest.1.clone(),
        honest.2[..32].to_owned(),
    );
    write_row(&mut db, &tampered_sha, &truncated).await;
    r5.stop();
    let mut r6 = replica("r6", &key);
    r6.start().await.unwrap();
    await_serving(&client, &r6, &tampered_sha).await;
    assert!(shared(&client, &r6, "refused").await >= 1);
    assert_eq!(shared(&client, &r6, "verified").await, 0);
}
