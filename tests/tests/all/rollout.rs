//! Rolling a plugin out across replicas: two or three real service processes on one real
//! PostgreSQL, the desired state written through one of them.
//!
//! - a version uploaded to one replica serves on every replica within 1 s, with zero failed
//!   decisions under concurrent load on all of them; a replica that was down catches up at
//!   start; a refused version shows in `GET /admin/plugins/fleet` with its error;
//! - a shadow of a stricter policy (min length 20) on 500 decisions: exactly the expected
//!   stricter count, no looser one;
//! - a canary at 20 % over 1,000 accounts: 20 ± 4 %, each account on the version its bucket
//!   says, on every replica and every request; a candidate that traps on live traffic is aborted
//!   automatically and everyone is back on the serving version.

// Staging breach-check and CAPTCHA candidates; the decision log of every slot.
mod kinds;

use futures_util::StreamExt as _;
use harness::{
    components, password_policy_component,
    replicas::{Replica, admin, artifact_key_config, desired_body, serve_if_asked, start_fleet},
};
use reqwest::{Client, Method};
use serde_json::{Value, json};
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// How a replica re-runs this binary: only the test below, which then serves.
pub(crate) const ENTRY: &[&str] = &[
    "rollout::replica_process",
    "--exact",
    "--nocapture",
    "--test-threads",
    "1",
];

const SLOT: &str = "password-policy";

/// Not a test of its own: the replica processes are this binary running only this function
/// with [`harness::replicas::SERVE_ENV`] set. Run normally, it returns at once.
#[test]
fn replica_process() {
    serve_if_asked();
}

/// `POST /v1/password/check` as `email`: the verdict, the warnings and the finding codes.
pub(crate) async fn check(
    client: &Client,
    replica: &Replica,
    email: &str,
    password: &str,
) -> anyhow::Result<(String, Vec<String>, Vec<String>)> {
    let response = client
        .post(format!("{}/v1/password/check", replica.url()))
        .json(&json!({ "password": password, "email": email }))
        .timeout(Duration::from_secs(10))
        .send()
        .await?;
    anyhow::ensure!(
        response.status() == 200,
        "check answered {}",
        response.status()
    );
    let body: Value = response.json().await?;
    let strings = |key: &str| -> Vec<String> {
        body[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| item.as_str().or_else(|| item["code"].as_str()))
            .map(str::to_owned)
            .collect()
    };
    Ok((
        body["verdict"].as_str().unwrap_or_default().to_owned(),
        strings("warnings"),
        strings("findings"),
    ))
}

/// The version and sha-256 serving in the slot on `replica`.
pub(crate) async fn serving(
    client: &Client,
    replica: &Replica,
) -> anyhow::Result<(String, String)> {
    let body: Value = admin(client, Method::GET, replica, "/admin/plugins")
        .send()
        .await?
        .json()
        .await?;
    let slot = body["plugins"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|plugin| plugin["name"] == SLOT)
        .ok_or_else(|| anyhow::anyhow!("no {SLOT} slot"))?;
    Ok((
        slot["version"].as_str().unwrap_or_default().to_owned(),
        slot["sha256"].as_str().unwrap_or_default().to_owned(),
    ))
}

pub(crate) async fn put_desired(
    client: &Client,
    replica: &Replica,
    body: &Value,
) -> anyhow::Result<Value> {
    let response = admin(
        client,
        Method::PUT,
        replica,
        &format!("/admin/plugins/{SLOT}/desired"),
    )
    .json(body)
    .send()
    .await?;
    anyhow::ensure!(
        response.status() == 202,
        "desired answered {}: {}",
        response.status(),
        response.text().await?
    );
    Ok(response.json().await?)
}

pub(crate) async fn get_json(
    client: &Client,
    replica: &Replica,
    path: &str,
) -> anyhow::Result<Value> {
    Ok(admin(client, Method::GET, replica, path)
        .send()
        .await?
        .json()
        .await?)
}

/// Publishes `body` through `fleet[via]` and waits until every replica serves its digest;
/// returns the digest, how long the `PUT` took (the uploading replica compiles there when
/// artifacts are shared) and, per replica, the time from the end of the `PUT` to serving it.
pub(crate) async fn publish(
    client: &Client,
    fleet: &[Replica],
    via: usize,
    body: &Value,
) -> (String, Duration, Vec<Duration>) {
    let started = Instant::now();
    let answer = put_desired(client, &fleet[via], body).await.unwrap();
    let put = started.elapsed();
    let published = Instant::now();
    let digest = answer["serving_digest"].as_str().unwrap().to_owned();
    let mut took = Vec::new();
    for replica in fleet {
        while !serving(client, replica)
            .await
            .is_ok_and(|(_, sha)| format!("sha256:{sha}") == digest)
        {
            assert!(
                published.elapsed() < Duration::from_secs(10),
                "{} never served {digest}",
                replica.id
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        took.push(published.elapsed());
    }
    (digest, put, took)
}

/// A password of `length` letters that the bundled policy allows when long enough: pseudo-
/// random lower-case letters from `seed`, spaced so no rule but the length applies.
pub(crate) fn password_of(length: usize, seed: u64) -> String {
    let mut state = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    (0..length)
        .map(|index| {
            if index % 6 == 5 {
                return ' ';
            }
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            char::from(b'a' + ((state >> 33) % 26) as u8)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publish_reaches_every_replica_within_a_second_and_a_late_one_catches_up() {
    // Several processes each: alone on a small machine.
    let _exclusive = harness::exclusive().await;
    let dir = tempfile::tempdir().unwrap();
    // Compiled once, shared signed through the database: the others only deserialize.
    let key = artifact_key_config(dir.path(), "artifact.key", &"5e".repeat(32));
    let mut fleet = start_fleet(dir.path(), 3, ENTRY, &key).await.unwrap();
    let client = Client::new();
    let (before, _) = serving(&client, &fleet[0]).await.unwrap();
    assert_ne!(before, components::NEXT_VERSION);

    // Concurrent load on every replica for the whole publication.
    let stop = Arc::new(AtomicBool::new(false));
    let decisions = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for (index, replica) in fleet.iter().enumerate() {
        for worker in 0..2 {
            let (client, url, stop, decisions, failures) = (
                client.clone(),
                replica.url(),
                stop.clone(),
                decisions.clone(),
                failures.clone(),
            );
            load.push(tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let email = format!("load-{index}-{worker}-{n}@example.org");
                    let response = client
                        .post(format!("{url}/v1/password/check"))
                        .json(&json!({ "password": password_of(22, n), "email": email }))
                        .timeout(Duration::from_secs(10))
                        .send()
                        .await;
                    let failed = match response {
                        Ok(response) if response.status() == 200 => {
                            let body: Value = response.json().await.unwrap_or_default();
                            // A fail-policy decision or a skipped check is a failed decision.
                            body["verdict"] != "allow"
                                || body["warnings"].as_array().is_some_and(|w| !w.is_empty())
                        }
                        _ => true,
                    };
                    decisions.fetch_add(1, Ordering::Relaxed);
                    if failed {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    // Steady traffic, not a saturation test: the replicas must compile too.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Cold: a component no replica has compiled; the uploading one compiles it during the PUT,
    // the others load its signed artifact. Warm: a version each replica compiled before (its
    // artifact cache has it), the common case of a rollback or a re-publication.
    let next = std::path::Path::new(components::PASSWORD_POLICY_NEXT);
    let (next_digest, cold_put, cold) = publish(
        &client,
        &fleet,
        0,
        &desired_body(next, "serving", json!({})),
    )
    .await;
    let (digest, warm_put, warm) = publish(
        &client,
        &fleet,
        1,
        &desired_body(password_policy_component(), "serving", json!({})),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    eprintln!(
        "publish to 3 replicas after the PUT: cold {cold:?} (PUT {cold_put:?}), warm {warm:?} \
         (PUT {warm_put:?}); {} decisions under load",
        decisions.load(Ordering::Relaxed)
    );
    let slowest = |took: &[Duration]| took.iter().max().copied().unwrap_or_default();
    assert!(
        slowest(&warm) <= Duration::from_secs(1),
        "the last replica took {:?}",
        slowest(&warm)
    );
    assert!(
        slowest(&cold) <= Duration::from_secs(1),
        "the last replica took {:?} after the PUT (cold)",
        slowest(&cold)
    );
    assert!(
        decisions.load(Ordering::Relaxed) > 50,
        "the load did not run"
    );
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "decisions failed during the publication"
    );

    // The fleet agrees.
    let reported = harness::wait_until(Duration::from_secs(3), || {
        let client = client.clone();
        let replica = &fleet[1];
        let digest = digest.clone();
        async move {
            get_json(&client, replica, "/admin/plugins/fleet")
                .await
                .is_ok_and(|fleet| {
                    let replicas = fleet["replicas"].as_array().cloned().unwrap_or_default();
                    replicas.len() == 3
                        && fleet["lagging"].as_array().is_some_and(Vec::is_empty)
                        && replicas.iter().all(|replica| {
                            replica["slots"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .any(|slot| {
                                    slot["slot"] == SLOT
                                        && slot["serving_digest"] == digest.as_str()
                                })
                        })
                })
        }
    })
    .await;
    assert!(
        reported.is_some(),
        "the fleet never showed every replica on {digest}"
    );

    // A replica that was down catches up when it starts: serving the desired version as soon
    // as it is ready, though its own plugin directory holds the bundled one.
    fleet[2].stop();
    let back = put_desired(
        &client,
        &fleet[0],
        &json!({ "digest": next_digest, "stage": "serving" }),
    )
    .await
    .unwrap();
    let wanted = back["serving_digest"].as_str().unwrap().to_owned();
    fleet[2].start().await.unwrap();
    let (version, sha) = serving(&client, &fleet[2]).await.unwrap();
    assert_eq!(
        format!("sha256:{sha}"),
        wanted,
        "the late replica serves {version}"
    );

    // A refused version: every replica keeps serving, and the fleet shows the error.
    put_desired(
        &client,
        &fleet[1],
        &desired_body(
            std::path::Path::new(components::WRONG_WORLD),
            "serving",
            json!({}),
        ),
    )
    .await
    .unwrap();
    let failed = harness::wait_until(Duration::from_secs(5), || {
        let client = client.clone();
        let replica = &fleet[0];
        async move {
            get_json(&client, replica, "/admin/plugins/fleet")
                .await
                .is_ok_and(|fleet| {
                    fleet["failed"]
                        .as_array()
                        .is_some_and(|failed| failed.len() == 3)
                })
        }
    })
    .await;
    let view = get_json(&client, &fleet[0], "/admin/plugins/fleet")
        .await
        .unwrap();
    assert!(
        failed.is_some(),
        "the fleet never showed the refusal: {view:#}"
    );
    for replica in view["replicas"].as_array().unwrap() {
        let slot = replica["slots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|slot| slot["slot"] == SLOT)
            .unwrap();
        let error = slot["last_error"].as_str().unwrap_or_default();
        assert!(
            error.contains("world") || error.contains("export"),
            "{error}"
        );
        assert_eq!(
            slot["serving_digest"],
            wanted.as_str(),
            "a refused version replaced the serving one"
        );
        assert_eq!(slot["lagging"], true);
    }
    for replica in &fleet {
        let (verdict, warnings, _) =
            check(&client, replica, "after@example.org", &password_of(22, 7))
                .await
                .unwrap();
        assert_eq!((verdict.as_str(), warnings.len()), ("allow", 0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shadow_of_a_stricter_policy_counts_exactly_the_stricter_decisions() {
    // Several processes each: alone on a small machine.
    let _exclusive = harness::exclusive().await;
    let dir = tempfile::tempdir().unwrap();
    let fleet = start_fleet(dir.path(), 2, ENTRY, "").await.unwrap();
    let client = Client::new();
    put_desired(
        &client,
        &fleet[0],
        &desired_body(
            password_policy_component(),
            "shadow",
            json!({ "settings": { "min-length": "20" }, "sample-percent": 100, "max-concurrent": 64 }),
        ),
    )
    .await
    .unwrap();
    let staged = harness::wait_until(Duration::from_secs(3), || {
        let client = client.clone();
        let fleet = &fleet;
        async move {
            let mut all = true;
            for replica in fleet {
                all &= get_json(&client, replica, "/admin/plugins/fleet")
                    .await
                    .is_ok_and(|view| {
                        view["replicas"].as_array().is_some_and(|replicas| {
                            replicas.len() == 2
                                && replicas.iter().all(|replica| {
                                    replica["slots"]
                                        .as_array()
                                        .into_iter()
                                        .flatten()
                                        .any(|slot| slot["stage"] == "shadow")
                                })
                        })
                    });
            }
            all
        }
    })
    .await;
    assert!(staged.is_some(), "the shadow was not staged everywhere");

    // 500 decisions, lengths 15–24, half on each replica, 8 at a time.
    let mut expected_stricter = 0;
    let mut tasks = Vec::new();
    for n in 0..500u64 {
        let length = 15 + (n % 10) as usize;
        let (client, url) = (client.clone(), fleet[(n % 2) as usize].url());
        tasks.push(async move {
            let response: Value = client
                .post(format!("{url}/v1/password/check"))
                .json(&json!({ "password": password_of(length, n), "email": format!("shadow-{n}@example.org") }))
                .send()
                .await?
                .json()
                .await?;
            Ok::<_, anyhow::Error>((length, response))
        });
    }
    let mut stream = futures_util::stream::iter(tasks).buffer_unordered(8);
    let mut answers = 0;
    while let Some(answer) = stream.next().await {
        let (length, response) = answer.unwrap();
        answers += 1;
        assert_eq!(response["warnings"], Value::Null, "{response}");
        if response["verdict"] == "allow" && length < 20 {
            expected_stricter += 1;
        }
    }
    assert_eq!(answers, 500);
    assert!(
        expected_stricter > 100,
        "the serving policy denied too much: {expected_stricter}"
    );

    let mut report = Value::Null;
    let mut complete = false;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !complete && Instant::now() < deadline {
        report = get_json(
            &client,
            &fleet[0],
            &format!("/admin/plugins/{SLOT}/rollout"),
        )
        .await
        .unwrap_or_default();
        let diff = &report["diff"];
        let compared: u64 = ["unchanged", "stricter", "looser", "reclassified"]
            .iter()
            .map(|key| diff[key].as_u64().unwrap_or(0))
            .sum();
        complete = compared == 500 && report["replicas"].as_array().is_some_and(|r| r.len() == 2);
        if !complete {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(complete, "the diff never covered 500 decisions: {report:#}");
    let diff = &report["diff"];
    assert_eq!(diff["stricter"], expected_stricter, "{report:#}");
    assert_eq!(diff["looser"], 0, "{report:#}");
    assert_eq!(diff["shadow_skipped"], 0);
    assert_eq!(diff["candidate"]["errors"], 0);
    let samples = diff["samples"].as_array().unwrap();
    assert!(!samples.is_empty() && samples.len() <= 20);
    let text = report.to_string();
    assert!(
        !text.contains("@example.org"),
        "an email leaked into the report"
    );
    for sample in samples {
        assert_eq!(sample["change"], "stricter");
        assert!(
            sample["candidate"]["codes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|code| code == "too-short")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn canary_takes_a_stable_fifth_and_a_trapping_candidate_is_aborted() {
    // Several processes each: alone on a small machine.
    let _exclusive = harness::exclusive().await;
    let dir = tempfile::tempdir().unwrap();
    let fleet = start_fleet(dir.path(), 2, ENTRY, "").await.unwrap();
    let client = Client::new();
    // The candidate: the bundled policy at min length 20; a 17-letter password tells them apart.
    let salt = "canary-test-salt";
    put_desired(
        &client,
        &fleet[1],
        &desired_body(
            password_policy_component(),
            "canary",
            json!({ "percent": 20, "salt": salt, "settings": { "min-length": "20" } }),
        ),
    )
    .await
    .unwrap();
    let staged = harness::wait_until(Duration::from_secs(3), || {
        let client = client.clone();
        let replica = &fleet[0];
        async move {
            get_json(&client, replica, "/admin/plugins/fleet")
                .await
                .is_ok_and(|view| {
                    view["replicas"].as_array().is_some_and(|replicas| {
                        replicas.len() == 2
                            && replicas.iter().all(|replica| {
                                replica["slots"]
                                    .as_array()
                                    .into_iter()
                                    .flatten()
                                    .any(|slot| slot["stage"] == "canary")
                            })
                    })
                })
        }
    })
    .await;
    assert!(staged.is_some(), "the canary was not staged everywhere");
    let password = password_of(17, 3);
    let mut in_canary = 0;
    for n in 0..1_000 {
        let email = format!("Person.{n}@Example.org");
        let expected = policy_host::rollout::bucket::in_canary(SLOT, salt, &email, 20.0);
        // Twice, on both replicas (and once spelt differently): always the same version.
        for (replica, spelling) in [
            (&fleet[n % 2], email.clone()),
            (&fleet[(n + 1) % 2], email.to_lowercase()),
        ] {
            let (verdict, warnings, _) =
                check(&client, replica, &spelling, &password).await.unwrap();
            assert!(warnings.is_empty(), "{warnings:?}");
            assert_eq!(verdict == "deny", expected, "{email} on {}", replica.id);
        }
        in_canary += usize::from(expected);
    }
    assert!(
        (160..=240).contains(&in_canary),
        "{in_canary} of 1000 accounts in a 20 % canary"
    );

    // A candidate that traps on live traffic: aborted automatically, everyone back on serving.
    let answer = put_desired(
        &client,
        &fleet[0],
        &desired_body(
            std::path::Path::new(components::LIVE_TRAPPING_POLICY),
            "canary",
            json!({ "percent": 50, "abort": { "error-margin": 0.05, "min-decisions": 10 } }),
        ),
    )
    .await
    .unwrap();
    let trapping = answer["candidate_digest"].as_str().unwrap().to_owned();
    // The first canary is still staged until each replica applies this revision: wait for the
    // trapping candidate itself, not just any canary.
    let staged = harness::wait_until(Duration::from_secs(3), || {
        let client = client.clone();
        let replica = &fleet[0];
        let trapping = trapping.clone();
        async move {
            get_json(&client, replica, "/admin/plugins/fleet")
                .await
                .is_ok_and(|view| {
                    view["replicas"].as_array().is_some_and(|replicas| {
                        replicas.iter().all(|replica| {
                            replica["slots"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .any(|slot| {
                                    slot["stage"] == "canary"
                                        && slot["candidate_digest"] == trapping.as_str()
                                        && slot["last_error"].is_null()
                                })
                        })
                    })
                })
        }
    })
    .await;
    assert!(staged.is_some(), "the trapping canary was not staged");
    let long = password_of(22, 9);
    let mut failed = 0;
    for n in 0..200 {
        let (verdict, warnings, _) = check(
            &client,
            &fleet[n % 2],
            &format!("trap-{n}@example.org"),
            &long,
        )
        .await
        .unwrap();
        failed += usize::from(verdict != "allow" || !warnings.is_empty());
    }
    assert!(failed > 0, "the trapping candidate never answered");
    let aborted = harness::wait_until(Duration::from_secs(3), || {
        let client = client.clone();
        let replica = &fleet[1];
        async move {
            get_json(&client, replica, &format!("/admin/plugins/{SLOT}/rollout"))
                .await
                .is_ok_and(|report| {
                    report["stage"] == "serving"
                        && report["note"]
                            .as_str()
                            .is_some_and(|note| note.contains("aborted automatically"))
                })
        }
    })
    .await;
    assert!(aborted.is_some(), "the trapping canary was not aborted");
    tokio::time::sleep(Duration::from_millis(700)).await;
    for n in 0..100 {
        let (verdict, warnings, _) = check(
            &client,
            &fleet[n % 2],
            &format!("trap-{n}@example.org"),
            &long,
        )
        .await
        .unwrap();
        assert_eq!(
            (verdict.as_str(), warnings.len()),
            ("allow", 0),
            "account {n} after the abort"
        );
    }
}
