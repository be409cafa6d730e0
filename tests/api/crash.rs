//! Crash safety (SPEC §4): the real `herald serve` binary killed with SIGKILL in the middle of
//! a delivery run, then started again on the same database. Nothing accepted is lost, every
//! message still reaches its final status (receipts in flight survive, durably on both sides),
//! the provider (the mock network, whose journal survives the kill) never accepts a message
//! twice, and the balance is charged for exactly what was handed over; and a campaign's
//! fan-out killed halfway neither loses nor repeats a recipient.

use crate::campaigns::{campaign_numbers, csv_for};
use crate::helpers::{
    API_KEY, HandoverCounts, bulk_items, eventually, history_in_order, history_statuses,
    numbers_from, read_handover_log, send_bulk_to, test_dir,
};
use futures::StreamExt;
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Per priority lane; all four lanes are in flight at the kill.
const PER_LANE: u32 = 1_500;
const LANES: [&str; 4] = ["urgent", "high", "normal", "low"];
/// Hand-overs to wait for before the kill.
const KILL_AFTER: usize = 400;
/// After the restart, every message reaches its final status within this.
const SETTLE: Duration = Duration::from_secs(30);
/// Generous: the machine may be busy with other builds.
const STARTUP: Duration = Duration::from_secs(30);
const DRAIN: Duration = Duration::from_secs(45);

/// A running `herald serve`; killed (and reaped) when dropped, whatever the test did.
pub(crate) struct Herald {
    child: Child,
    pub(crate) base: String,
    stderr: PathBuf,
}

impl Herald {
    /// Starts `herald serve` on a free port with its database and hand-over log in `dir`.
    fn start(dir: &Path, run: &str) -> Herald {
        Self::start_with(dir, run, &[])
    }

    /// As [`Herald::start`], with extra `HERALD__…` settings.
    pub(crate) fn start_with(dir: &Path, run: &str, env: &[(&str, &str)]) -> Herald {
        Self::start_command(dir, run, &["serve"], env)
    }

    /// `herald <args>` (`serve`, `serve --no-workers`, `worker`) as [`Herald::start_with`]
    /// sets it up. A `worker` serves no HTTP: its `base` answers nothing.
    pub(crate) fn start_command(
        dir: &Path,
        run: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Herald {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            listener.local_addr().expect("an address").port()
        };
        let stderr = dir.join(format!("herald-{run}.stderr"));
        let child = Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(args)
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
            // The journal must stay whole for the test's life (no rotation).
            .env(
                "HERALD__PROVIDERS__MOCK__IDEMPOTENCY_WINDOW_SECONDS",
                "3600",
            )
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

    pub(crate) fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The first few warnings and errors each of `processes` logged, for a failure message.
    pub(crate) fn warnings(processes: &[Herald]) -> Vec<String> {
        processes
            .iter()
            .flat_map(|p| {
                p.logs()
                    .lines()
                    .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                    .take(5)
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Waits until `/healthz` answers; fails with the process's logs if it exits first.
    pub(crate) async fn wait_healthy(&mut self, client: &reqwest::Client) {
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
    pub(crate) fn kill_9(&mut self) {
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

pub(crate) async fn open_db(dir: &Path) -> SqlitePool {
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
async fn kill_9_during_delivery_loses_nothing_settles_everything_and_hands_none_over_twice() {
    // Arrange: herald running with the mock's default receipt delays (delivered 200 ms after
    // the hand-over, read 1 s later), so receipts are in flight when it dies; 6,000 messages
    // accepted, 1,500 on each priority.
    let started = Instant::now();
    let dir = test_dir();
    let log = dir.path().join("handover.log");
    let client = reqwest::Client::new();
    let mut herald = Herald::start(dir.path(), "1");
    herald.wait_healthy(&client).await;
    let balance_before = balance(&client, &herald.base).await;
    let mut requests = Vec::new();
    for (lane, priority) in LANES.iter().enumerate() {
        let first = 1000 + PER_LANE * u32::try_from(lane).expect("four lanes");
        for chunk in numbers_from(first, PER_LANE).chunks(100) {
            let items = bulk_items(chunk, priority, "crash test");
            let (client, base) = (client.clone(), herald.base.clone());
            requests.push(async move { send_bulk_to(&client, &base, API_KEY, &items).await });
        }
    }
    let accepted: Vec<String> = futures::future::join_all(requests).await.concat();
    let total = PER_LANE as usize * LANES.len();
    assert_eq!(accepted.len(), total);

    // Act: kill -9 once part of them were handed over, then start again on the same files.
    eventually("the first hand-overs", DRAIN, || {
        let log = log.clone();
        async move { (read_handover_log(&log).len() >= KILL_AFTER).then_some(()) }
    })
    .await;
    herald.kill_9();
    {
        let db = open_db(dir.path()).await;
        let unfinished: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT priority, COUNT(*) FROM message WHERE status <> 'read' GROUP BY priority",
        )
        .fetch_all(&db)
        .await
        .expect("counts by lane");
        let in_flight: i64 = unfinished.iter().map(|(_, n)| n).sum();
        eprintln!(
            "killed after {:?}: {} handed over; not yet final by lane: {unfinished:?}",
            started.elapsed(),
            read_handover_log(&log).len()
        );
        assert!(
            in_flight >= 5_000 && unfinished.len() == 4,
            "the kill must catch at least 5,000 messages in flight on all four lanes: {unfinished:?}"
        );
        db.close().await;
    }
    let mut herald = Herald::start(dir.path(), "2");
    herald.wait_healthy(&client).await;
    let restarted = Instant::now();
    let db = open_db(dir.path()).await;
    eventually("every message read (its final status)", SETTLE, || {
        let db = db.clone();
        async move {
            let left = count(&db, "SELECT COUNT(*) FROM message WHERE status <> 'read'").await;
            (left == 0).then_some(())
        }
    })
    .await;
    db.close().await;
    eprintln!("all final {:?} after the restart", restarted.elapsed());

    // Assert: what the provider saw, what a user sees for each message, and the money.
    let counts = HandoverCounts::from_journal(&log);
    eprintln!(
        "hand-overs: {} accepted, {} replays absorbed by the provider (sends after the kill \
         of messages it already had)",
        counts.accepted.values().sum::<usize>(),
        counts.total_replays()
    );
    // The mock answers in-doubt lookups from its journal: nothing is re-sent unasked.
    let series = |result: &str| {
        format!("herald_in_doubt_lookups_total{{provider=\"mock\",result=\"{result}\"}}")
    };
    eprintln!(
        "in doubt after the restart: {} found in the mock's journal, {} not found",
        crate::helpers::metric(&client, &herald.base, &series("found")).await,
        crate::helpers::metric(&client, &herald.base, &series("not_found")).await,
    );
    let resent = "herald_resent_in_doubt_total{provider=\"mock\"}";
    assert_eq!(
        crate::helpers::metric(&client, &herald.base, resent).await,
        0.0
    );
    let twice = counts.accepted_twice();
    assert!(
        twice.is_empty(),
        "{} messages accepted by the provider more than once: {:?}",
        twice.len(),
        &twice[..twice.len().min(10)]
    );
    let accepted_set: HashSet<&str> = accepted.iter().map(String::as_str).collect();
    let never: Vec<&str> = accepted
        .iter()
        .map(String::as_str)
        .filter(|id| !counts.accepted.contains_key(*id))
        .collect();
    assert!(
        never.is_empty(),
        "{} messages never handed over: {:?}",
        never.len(),
        &never[..never.len().min(10)]
    );
    assert!(
        counts
            .accepted
            .keys()
            .all(|id| accepted_set.contains(id.as_str())),
        "hand-overs of messages nobody sent"
    );
    let provider_ids: HashMap<String, String> = read_handover_log(&log)
        .into_iter()
        .map(|(id, reference, _)| (id, reference))
        .collect();

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
    let mut wrong = Vec::new();
    for (id, view) in &views {
        let history = history_statuses(view);
        let in_order = history_in_order(view);
        if view["status"] != "read"
            || history != ["queued", "sending", "sent", "delivered", "read"]
            || !in_order
            || view["provider_message_id"].as_str() != provider_ids.get(id).map(String::as_str)
        {
            wrong.push(format!("{id}: {view}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} messages are not read with a whole, ordered history and the provider's id: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    let cost_each = 0.0075;
    let expected = balance_before - cost_each * counts.accepted.len() as f64;
    let after = balance(&client, &herald.base).await;
    assert!(
        (after - expected).abs() < 1e-9,
        "balance {after}, expected {balance_before} - {} x {cost_each} = {expected}",
        counts.accepted.len()
    );
    eprintln!("done after {:?}", started.elapsed());
}

async fn balance(client: &reqwest::Client, base: &str) -> f64 {
    let body: Value = client
        .get(format!("{base}/api/messaging/account/balance/"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .expect("the request is sent")
        .json()
        .await
        .expect("JSON");
    body["balance"].as_f64().expect("a balance")
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
    let counts = HandoverCounts::from_journal(&log);
    eprintln!(
        "{} replays absorbed by the provider",
        counts.total_replays()
    );
    let times_handed = counts.accepted;
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
