//! Limits shared through Redis (SPEC §4: "with several worker processes the limits hold for
//! all of them together"), judged on the times the provider saw the messages arrive. Each
//! test runs its own `redis-server` on a free loopback port, so it can stop and restart it.

use crate::helpers::{
    HandoverCounts, TestApp, bulk_items, eventually, metric, numbers_from, read_handover_log,
    spawn_in, test_dir, toml_path,
};
use herald::ratelimit::ApiLimits;
use herald::ratelimit::shared::SharedLimits;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A redis-server of this test's own, keeping nothing on disk.
struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut server = Self { port, child: None };
        server.start_again().await;
        server
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts it (again, on the same port) and waits until it answers.
    async fn start_again(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts (Debian's redis-server package)");
        self.child = Some(child);
        let address = format!("127.0.0.1:{}", self.port);
        eventually("redis-server to listen", Duration::from_secs(10), || {
            let address = address.clone();
            async move { tokio::net::TcpStream::connect(address).await.ok() }
        })
        .await;
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// Herald with its mock's one sender limited to `per_second`, limits shared through `redis`.
async fn spawn_limited(redis: &RedisServer, per_second: u32, extra: &str) -> TestApp {
    let dir = test_dir();
    let log = dir.path().join("mock-network.log");
    let config = format!(
        "[providers.mock]\nhandover_log = {}\nsender_per_second = {per_second}\n\
         [redis]\nurl = \"{}\"\n{extra}",
        toml_path(&log),
        redis.url()
    );
    spawn_in(dir, &config, true).await
}

/// Hand-overs whose logged time falls in `[from, to)`.
fn count_between(times: &[i64], from: i64, to: i64) -> usize {
    times.iter().filter(|t| **t >= from && **t < to).count()
}

/// Most hand-overs in any window of one second (less `slack` ms of timing noise).
fn busiest_second(times: &[i64], slack: i64) -> usize {
    times
        .iter()
        .map(|start| count_between(times, *start, start + 1000 - slack))
        .max()
        .unwrap_or(0)
}

#[tokio::test]
async fn two_processes_keep_one_sender_limit_together() {
    // Arrange: two Herald processes (each its own database, workers and limiter), the same
    // mock sender limited to 20 messages a second, one Redis.
    const PER_SECOND: u32 = 20;
    const EACH: u32 = 50;
    let redis = RedisServer::start().await;
    let first = spawn_limited(&redis, PER_SECOND, "").await;
    let second = spawn_limited(&redis, PER_SECOND, "").await;

    // Act: both get 50 messages at once.
    let (items_a, items_b) = (
        bulk_items(&numbers_from(1000, EACH), "normal", "one"),
        bulk_items(&numbers_from(2000, EACH), "normal", "two"),
    );
    let (a, b) = tokio::join!(first.send_bulk_ok(&items_a), second.send_bulk_ok(&items_b));
    tokio::join!(
        first.wait_all_handed_over(&a),
        second.wait_all_handed_over(&b)
    );
    let (log_a, log_b) = (first.handover_log(), second.handover_log());
    let (_a, _b) = (first.stop().await, second.stop().await);

    // Assert: together, never more than 20 in a second, and so at least 99 / 20 s for all
    // 100 (each alone would have taken its own 20/s: 2.5 s for everything).
    for (log, n) in [(&log_a, EACH), (&log_b, EACH)] {
        let counts = HandoverCounts::from_journal(log);
        assert_eq!(
            counts.accepted.len(),
            n as usize,
            "each message handed over"
        );
        assert!(counts.accepted_twice().is_empty(), "none twice");
    }
    let mut times: Vec<i64> = [log_a, log_b]
        .iter()
        .flat_map(|log| read_handover_log(log))
        .map(|(_, _, ms)| ms)
        .collect();
    times.sort_unstable();
    let busiest = busiest_second(&times, 20);
    let span = times.last().copied().unwrap_or(0) - times.first().copied().unwrap_or(0);
    eprintln!("busiest second {busiest}, span {span} ms");
    assert!(
        busiest <= PER_SECOND as usize + 1,
        "{busiest} hand-overs in one second between two processes (limit {PER_SECOND})"
    );
    let least = i64::from(2 * EACH - 1) * 1000 / i64::from(PER_SECOND) - 100;
    assert!(
        span >= least,
        "100 hand-overs in {span} ms; at 20/s they need {least} ms"
    );
}

#[tokio::test]
async fn with_redis_stopped_sends_go_on_at_the_local_share_and_full_rate_returns() {
    // Arrange: 40 a second through Redis; a quarter of that, 10 a second, while Redis is
    // away.
    const COUNT: u32 = 260;
    let mut redis = RedisServer::start().await;
    let app = spawn_limited(&redis, 40, "local_share = 0.25\n").await;
    let base = app.address.clone();
    let ready = async |app: &TestApp| -> serde_json::Value {
        let response = app
            .client
            .get(format!("{}/readyz", app.address))
            .send()
            .await
            .expect("readyz answers");
        assert_eq!(
            response.status(),
            200,
            "a Redis outage does not make Herald unready"
        );
        response.json().await.expect("readyz JSON")
    };
    let ids = app
        .send_bulk_ok(&bulk_items(&numbers_from(1000, 100), "normal", "a"))
        .await;
    let mut ids2 = app
        .send_bulk_ok(&bulk_items(&numbers_from(1100, 100), "normal", "b"))
        .await;
    ids2.extend(
        app.send_bulk_ok(&bulk_items(&numbers_from(1200, COUNT - 200), "normal", "c"))
            .await,
    );
    let log = app.handover_log();
    let handed_over = |n: usize| {
        let log = log.clone();
        async move { (read_handover_log(&log).len() >= n).then_some(()) }
    };
    eventually("40 hand-overs", Duration::from_secs(10), || handed_over(40)).await;
    assert_eq!(ready(&app).await["redis"], "up");

    // Act: Redis goes away for three seconds, then comes back (empty, as after a restart).
    redis.stop();
    let stopped_at = now_ms();
    let down = eventually(
        "readyz to say Redis is away",
        Duration::from_secs(5),
        || async {
            let body = ready(&app).await;
            (body["redis"] == "unreachable").then_some(body)
        },
    )
    .await;
    assert!(
        down["limits"].as_str().is_some_and(|l| l.contains("0.25")),
        "{down}"
    );
    assert_eq!(
        metric(&app.client, &base, "herald_redis_up{use=\"limits\"}").await,
        0.0
    );
    tokio::time::sleep(Duration::from_secs(3)).await; // the outage being measured
    redis.start_again().await;
    let restarted_at = now_ms();
    eventually(
        "readyz to say Redis is back",
        Duration::from_secs(10),
        || async { (ready(&app).await["redis"] == "up").then_some(()) },
    )
    .await;
    app.wait_all_handed_over(&ids).await;
    app.wait_all_handed_over(&ids2).await;
    assert_eq!(
        metric(&app.client, &base, "herald_redis_up{use=\"limits\"}").await,
        1.0
    );
    let _dir = app.stop().await;

    // Assert: every message handed over once; slower during the outage, full rate after.
    let counts = HandoverCounts::from_journal(&log);
    assert_eq!(counts.accepted.len(), COUNT as usize, "nothing lost");
    assert!(counts.accepted_twice().is_empty(), "nothing sent twice");
    let times: Vec<i64> = read_handover_log(&log)
        .into_iter()
        .map(|(_, _, t)| t)
        .collect();
    let last = times.iter().copied().max().unwrap_or(0);
    // From a second into the outage (the first failed call may take the timeout) to its end.
    let during = count_between(&times, stopped_at + 1000, restarted_at);
    let outage_s = (restarted_at - stopped_at - 1000) as f64 / 1000.0;
    let during_rate = during as f64 / outage_s;
    // From a second after Redis came back (it is asked again after at most a second).
    let after_from = restarted_at + 1200;
    let after = count_between(&times, after_from, last);
    let after_rate = after as f64 / ((last - after_from) as f64 / 1000.0);
    eprintln!("during the outage {during_rate:.1}/s, after {after_rate:.1}/s ({after} sends)");
    assert!(during > 0, "sends go on while Redis is away");
    assert!(
        during_rate <= 10.0 * 1.25 + 1.0,
        "{during_rate:.1}/s while Redis was away; the local share is 10/s"
    );
    assert!(
        after_rate >= 40.0 * 0.8,
        "{after_rate:.1}/s once Redis was back; the shared limit is 40/s"
    );
}

#[tokio::test]
async fn two_processes_share_an_api_keys_requests() {
    // Arrange: two processes' API limits (10 a second, burst 10) on one Redis.
    let redis = RedisServer::start().await;
    let settings = |url: String| {
        let mut s = herald::config::Settings::load_with(None, &[]).expect("defaults");
        s.redis.url = url.into();
        s
    };
    let limits = |s: herald::config::Settings| {
        let shared = SharedLimits::from_settings(&s.redis, herald::metrics::Metrics::default())
            .expect("a Redis URL");
        assert!(shared.is_some());
        ApiLimits::new(10, 10, shared)
    };
    let one = limits(settings(redis.url()));
    let two = limits(settings(redis.url()));

    // Act: the same key, alternately through each.
    let mut allowed = 0;
    let mut refused_wait = None;
    for i in 0..30 {
        let limiter = if i % 2 == 0 { &one } else { &two };
        match limiter.check("key_1").await {
            Ok(()) => allowed += 1,
            Err(wait) => refused_wait = Some(wait),
        }
    }

    // Assert: the burst of 10 once between them (a few more if the loop spans a refill),
    // not 10 each.
    assert!((10..=12).contains(&allowed), "{allowed} requests allowed");
    assert!(
        refused_wait.is_some_and(|w| w > Duration::ZERO && w <= Duration::from_millis(100)),
        "a refusal says when to come back: {refused_wait:?}"
    );
    assert!(
        one.check("key_2").await.is_ok(),
        "keys are limited separately"
    );
}
