//! Crash safety (SPEC §4): the real `herald serve` binary killed with SIGKILL in the middle of
//! a delivery run, then started again on the same database. Nothing accepted is lost, and the
//! provider (the mock, whose hand-over log survives the kill) never gets a message twice;
//! and a campaign's fan-out killed halfway neither loses nor repeats a recipient.

use crate::campaigns::{campaign_numbers, csv_for};
use crate::helpers::{
    API_KEY, bulk_items, eventually, numbers_from, read_handover_log, send_bulk_to, test_dir,
};
use futures::StreamExt;
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MESSAGES: u32 = 3_000;
/// Hand-overs to wait for before the kill.
const KILL_AFTER: usize = 500;
/// Generous: the machine may be busy with other builds.
const STARTUP: Duration = Duration::from_secs(30);
const DRAIN: Duration = Duration::from_secs(45);

/// A running `herald serve`; killed (and reaped) when dropped, whatever the test did.
struct Herald {
    child: Child,
    base: String,
    stderr: PathBuf,
}

impl Herald {
    /// Starts `herald serve` on a free port with its database and hand-over log in `dir`.
    fn start(dir: &Path, run: &str) -> Herald {
        Self::start_with(dir, run, &[])
    }

    /// As [`Herald::start`], with extra `HERALD__…` settings.
    fn start_with(dir: &Path, run: &str, env: &[(&str, &str)]) -> Herald {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            listener.local_addr().expect("an address").port()
        };
        let stderr = dir.join(format!("herald-{run}.stderr"));
        let child = Command::new(env!("CARGO_BIN_EXE_herald"))
            .arg("serve")
            .current_dir(dir)
            .env("HERALD__SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "HERALD__DATABASE__URL",
                format!("sqlite://{}", dir.join("herald.db").display()),
            )
            .env("HERALD__AUTH__BOOTSTRAP_API_KEY", API_KEY)
            .env("HERALD__LIMITS__API_REQUESTS_PER_SECOND", "100000")
            .env("HERALD__LIMITS__API_BURST", "100000")
            .env("HERALD__QUEUE__POLL_INTERVAL_MS", "20")
            .env("HERALD__WORKERS__HEARTBEAT_SECONDS", "1")
            .env("HERALD__PROVIDERS__MOCK__ACCEPT_DELAY_MS", "15")
            .env("HERALD__PROVIDERS__MOCK__DELIVER_AFTER_MS", "20")
            .env("HERALD__PROVIDERS__MOCK__READ_AFTER_MS", "20")
            .env(
                "HERALD__PROVIDERS__MOCK__HANDOVER_LOG",
                dir.join("handover.log"),
            )
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("a log file"))
            .spawn()
            .expect("herald starts");
        Herald {
            child,
            base: format!("http://127.0.0.1:{port}"),
            stderr,
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits until `/healthz` answers; fails with the process's logs if it exits first.
    async fn wait_healthy(&mut self, client: &reqwest::Client) {
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Some(status) = self.child.try_wait().expect("the child can be polled") {
                panic!(
                    "herald exited ({status}) before it was healthy:\n{}",
                    self.logs()
                );
            }
            let health = client
                .get(format!("{}/healthz", self.base))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if health.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "herald never got healthy:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `kill -9`, then reaps the process.
    fn kill_9(&mut self) {
        self.child.kill().expect("SIGKILL is delivered");
        let status = self.child.wait().expect("the child is reaped");
        assert!(
            !status.success(),
            "herald was killed, not stopped cleanly: {status}"
        );
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn open_db(dir: &Path) -> SqlitePool {
    let options = SqliteConnectOptions::new()
        .filename(dir.join("herald.db"))
        .read_only(true);
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .expect("the database opens read-only")
}

async fn count(db: &SqlitePool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(db)
        .await
        .expect("a count")
}

#[tokio::test]
async fn kill_9_during_delivery_loses_no_message_and_hands_none_over_twice() {
    // Arrange: herald running, 3,000 messages accepted.
    let started = Instant::now();
    let dir = test_dir();
    let log = dir.path().join("handover.log");
    let client = reqwest::Client::new();
    let mut herald = Herald::start(dir.path(), "1");
    herald.wait_healthy(&client).await;
    let numbers = numbers_from(1000, MESSAGES);
    let requests = numbers.chunks(100).map(|chunk| {
        let items = bulk_items(chunk, "normal", "crash test");
        let (client, base) = (client.clone(), herald.base.clone());
        async move { send_bulk_to(&client, &base, API_KEY, &items).await }
    });
    let accepted: Vec<String> = futures::future::join_all(requests).await.concat();
    assert_eq!(accepted.len(), MESSAGES as usize);

    // Act: kill -9 once part of them were handed over, then start again on the same files.
    let handed_before = eventually("the first hand-overs", DRAIN, || {
        let log = log.clone();
        async move {
            let lines = read_handover_log(&log).len();
            (lines >= KILL_AFTER).then_some(lines)
        }
    })
    .await;
    herald.kill_9();
    let at_kill = read_handover_log(&log);
    eprintln!(
        "killed after {:?}: {} of {MESSAGES} handed over ({handed_before} when the kill was decided)",
        started.elapsed(),
        at_kill.len()
    );
    assert!(
        at_kill.len() < MESSAGES as usize,
        "every message was handed over before the kill: the test did not crash mid-run"
    );
    {
        let db = open_db(dir.path()).await;
        let in_flight = count(&db, "SELECT COUNT(*) FROM message WHERE status = 'sending'").await;
        let waiting = count(&db, "SELECT COUNT(*) FROM message WHERE status = 'queued'").await;
        let handed: HashSet<&str> = at_kill.iter().map(|(id, _, _)| id.as_str()).collect();
        let claimed: Vec<String> =
            sqlx::query_scalar("SELECT message_id FROM message WHERE status = 'sending'")
                .fetch_all(&db)
                .await
                .expect("claimed ids");
        let unrecorded = claimed
            .iter()
            .filter(|id| handed.contains(id.as_str()))
            .count();
        eprintln!(
            "at the kill: {in_flight} in flight (claimed, outcome not recorded), of which \
             {unrecorded} already handed over; {waiting} still queued"
        );
        db.close().await;
    }
    let mut herald = Herald::start(dir.path(), "2");
    herald.wait_healthy(&client).await;
    let db = open_db(dir.path()).await;
    eventually("no message left queued or sending", DRAIN, || {
        let db = db.clone();
        async move {
            let left = count(
                &db,
                "SELECT COUNT(*) FROM message WHERE status IN ('queued', 'sending')",
            )
            .await;
            (left == 0).then_some(())
        }
    })
    .await;
    db.close().await;
    eprintln!("drained after {:?}", started.elapsed());

    // Assert: what a user sees for each message, and what the provider saw.
    let views: Vec<(String, Value)> = futures::stream::iter(accepted.iter().cloned())
        .map(|id| {
            let (client, base) = (client.clone(), herald.base.clone());
            async move {
                let response = client
                    .get(format!("{base}/api/messaging/message/{id}/status/"))
                    .bearer_auth(API_KEY)
                    .send()
                    .await
                    .expect("the request is sent");
                assert_eq!(response.status(), 200, "status of {id}");
                (id, response.json::<Value>().await.expect("JSON"))
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let handovers = read_handover_log(&log);
    let mut times_handed: HashMap<&str, usize> = HashMap::new();
    let mut provider_ids: HashMap<&str, &str> = HashMap::new();
    for (id, reference, _) in &handovers {
        *times_handed.entry(id).or_default() += 1;
        provider_ids.insert(id, reference);
    }
    let accepted_set: HashSet<&str> = accepted.iter().map(String::as_str).collect();

    let unsent: Vec<String> = views
        .iter()
        .filter(|(_, v)| !matches!(v["status"].as_str(), Some("sent" | "delivered" | "read")))
        .map(|(id, v)| format!("{id}: {}", v["status"]))
        .collect();
    assert!(
        unsent.is_empty(),
        "{} messages did not end sent: {:?}",
        unsent.len(),
        &unsent[..unsent.len().min(10)]
    );
    let twice: Vec<(&str, usize)> = times_handed
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, n)| (*id, *n))
        .collect();
    assert!(
        twice.is_empty(),
        "{} messages handed over more than once: {:?}",
        twice.len(),
        &twice[..twice.len().min(10)]
    );
    let never: Vec<&str> = accepted
        .iter()
        .map(String::as_str)
        .filter(|id| !times_handed.contains_key(id))
        .collect();
    assert!(
        never.is_empty(),
        "{} messages never handed over: {:?}",
        never.len(),
        &never[..never.len().min(10)]
    );
    let strangers: Vec<&str> = times_handed
        .keys()
        .copied()
        .filter(|id| !accepted_set.contains(id))
        .collect();
    assert!(
        strangers.is_empty(),
        "hand-overs of messages nobody sent: {strangers:?}"
    );
    let mismatched: Vec<String> = views
        .iter()
        .filter(|(id, v)| {
            v["provider_message_id"].as_str() != provider_ids.get(id.as_str()).copied()
        })
        .map(|(id, v)| {
            format!(
                "{id}: stored {} vs handed over as {:?}",
                v["provider_message_id"],
                provider_ids.get(id.as_str())
            )
        })
        .collect();
    assert!(
        mismatched.is_empty(),
        "{} messages carry another provider id than the provider gave: {:?}",
        mismatched.len(),
        &mismatched[..mismatched.len().min(10)]
    );
    eprintln!("done after {:?}", started.elapsed());
}

#[tokio::test]
async fn kill_9_during_a_campaign_fan_out_messages_every_recipient_exactly_once() {
    const RECIPIENTS: u32 = 50_000;
    let started = Instant::now();
    let dir = test_dir();
    let log = dir.path().join("handover.log");
    let client = reqwest::Client::new();
    // Small fan-out batches, so the kill lands between many checkpoints.
    let env = [("HERALD__CAMPAIGNS__FANOUT_BATCH", "250")];
    let mut herald = Herald::start_with(dir.path(), "1", &env);
    herald.wait_healthy(&client).await;
    let response = client
        .post(format!("{}/api/messaging/campaigns/upload", herald.base))
        .bearer_auth(API_KEY)
        .header("content-type", "text/csv")
        .query(&[("name", "Crash"), ("template", "Hi {{name}}")])
        .body(csv_for(&campaign_numbers(RECIPIENTS)))
        .send()
        .await
        .expect("the upload is sent");
    assert_eq!(response.status(), 202);
    let created: Value = response.json().await.expect("JSON");
    let id = created["campaign_id"].as_str().expect("an id").to_owned();
    assert_eq!(created["recipients_accepted"], i64::from(RECIPIENTS));

    let db = open_db(dir.path()).await;
    let expanded_at_kill = eventually("the fan-out to be under way", DRAIN, || {
        let db = db.clone();
        let id = id.clone();
        async move {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM message WHERE campaign_id = ?")
                .bind(&id)
                .fetch_one(&db)
                .await
                .expect("a count");
            (n >= 10_000).then_some(n)
        }
    })
    .await;
    herald.kill_9();
    let expanded: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM message WHERE campaign_id = ?")
        .bind(&id)
        .fetch_one(&db)
        .await
        .expect("a count");
    db.close().await;
    eprintln!(
        "killed after {:?} with {expanded} of {RECIPIENTS} recipients expanded ({expanded_at_kill} when decided)",
        started.elapsed()
    );
    assert!(
        expanded < i64::from(RECIPIENTS),
        "the fan-out had finished before the kill: the test did not crash mid-fan-out"
    );

    let mut herald = Herald::start_with(dir.path(), "2", &env);
    herald.wait_healthy(&client).await;
    let db = open_db(dir.path()).await;
    eventually("the campaign to complete", DRAIN * 4, || {
        let db = db.clone();
        let id = id.clone();
        async move {
            let status: String =
                sqlx::query_scalar("SELECT status FROM campaign WHERE campaign_id = ?")
                    .bind(&id)
                    .fetch_one(&db)
                    .await
                    .expect("the campaign");
            (status == "completed").then_some(())
        }
    })
    .await;
    let messages: Vec<(String, String)> =
        sqlx::query_as("SELECT message_id, phone_number FROM message WHERE campaign_id = ?")
            .bind(&id)
            .fetch_all(&db)
            .await
            .expect("the messages");
    db.close().await;
    eprintln!("completed after {:?}", started.elapsed());
    drop(herald);

    let phones: HashSet<&str> = messages.iter().map(|(_, p)| p.as_str()).collect();
    assert_eq!(
        messages.len(),
        RECIPIENTS as usize,
        "one message per recipient"
    );
    assert_eq!(phones.len(), RECIPIENTS as usize, "no recipient twice");
    let mut times_handed: HashMap<String, usize> = HashMap::new();
    for (message_id, _, _) in read_handover_log(&log) {
        *times_handed.entry(message_id).or_default() += 1;
    }
    let ids: HashSet<&str> = messages.iter().map(|(m, _)| m.as_str()).collect();
    assert!(
        times_handed.keys().all(|m| ids.contains(m.as_str())),
        "the provider got messages that are not the campaign's"
    );
    assert_eq!(
        times_handed.len(),
        RECIPIENTS as usize,
        "every recipient messaged"
    );
    assert!(
        times_handed.values().all(|n| *n == 1),
        "some message was handed over twice"
    );
}
