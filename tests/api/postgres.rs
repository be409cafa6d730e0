//! PostgreSQL as the store and queue of many processes (issue 10): `herald serve
//! --no-workers` API processes and `herald worker` processes, each its own OS process, on one
//! database of the test's own (PostgreSQL at `HERALD_TEST_POSTGRES`, which `.ci/run` starts
//! when it is down).

use crate::crash::Herald;
use crate::helpers::{API_KEY, HandoverCounts, bulk_items, eventually, numbers_from, send_bulk_to};
use serde_json::{Value, json};
use sqlx::postgres::PgPool;
use sqlx::{Connection, PgConnection};
use std::path::Path;
use std::time::Duration;

const LANES: [&str; 4] = ["urgent", "high", "normal", "low"];

fn postgres_url() -> String {
    std::env::var("HERALD_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/postgres".to_owned())
}

/// A database of the test's own, dropped (with whatever is still connected) at the end.
pub(crate) struct TestDatabase {
    name: String,
    pub(crate) url: String,
}

impl TestDatabase {
    async fn create() -> TestDatabase {
        Self::named("herald_multi").await
    }

    /// A new database called `<prefix>_<ulid>`.
    pub(crate) async fn named(prefix: &str) -> TestDatabase {
        let mut admin = PgConnection::connect(&postgres_url())
            .await
            .expect("PostgreSQL answers at HERALD_TEST_POSTGRES (.ci/run starts it)");
        let name = format!("{prefix}_{}", ulid::Ulid::new().to_string().to_lowercase());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("a test database");
        let mut url = url::Url::parse(&postgres_url()).expect("a URL");
        url.set_path(&name);
        TestDatabase {
            name,
            url: url.to_string(),
        }
    }

    pub(crate) async fn pool(&self) -> PgPool {
        PgPool::connect(&self.url)
            .await
            .expect("the test database opens")
    }

    /// Drops the database now (it is dropped at the end of the test's scope anyway).
    pub(crate) async fn drop_now(self) {
        drop(self);
    }
}

impl Drop for TestDatabase {
    /// Also when the test fails: a panicking test leaves no database behind. On a thread
    /// with a runtime of its own, since this may run inside the test's runtime.
    fn drop(&mut self) {
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let dropping = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                if let Ok(mut admin) = PgConnection::connect(&postgres_url()).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(statement))
                        .execute(&mut admin)
                        .await;
                }
            });
        });
        let _ = dropping.join();
    }
}

/// Settings every process of a test shares: the database, and each process's own mock
/// journal (`journal`), kept whole for the test's life.
pub(crate) fn process_env<'a>(db: &'a TestDatabase, journal: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("HERALD__DATABASE__URL", db.url.as_str()),
        ("HERALD__DATABASE__MAX_CONNECTIONS", "8"),
        ("HERALD__PROVIDERS__MOCK__HANDOVER_LOG", journal),
    ]
}

/// Cancels the scheduled message `id` in a transaction left open: Herald's own history
/// statement writes an event whose number is taken now and committed only when the caller
/// commits the transaction. Answers the transaction and that event's number.
pub(crate) async fn cancel_in_open_transaction(
    pool: &PgPool,
    id: &str,
) -> (sqlx::Transaction<'static, sqlx::Postgres>, i64) {
    let mut open = pool.begin().await.expect("a transaction");
    let now = chrono::Utc::now().timestamp_millis();
    let account: String = sqlx::query_scalar(
        "UPDATE message SET status = 'canceled', billing = 'released', updated_at = $2 \
         WHERE message_id = $1 RETURNING account_id",
    )
    .bind(id)
    .bind(now)
    .fetch_one(&mut *open)
    .await
    .expect("canceled");
    sqlx::query(include_str!(
        "../../src/store/postgres/queries/insert_status_events.sql"
    ))
    .bind(json!([[id, account, now]]).to_string())
    .bind("canceled")
    .execute(&mut *open)
    .await
    .expect("in its history");
    let held: i64 = sqlx::query_scalar(
        "SELECT event_seq FROM event WHERE message_id = $1 AND status = 'canceled'",
    )
    .bind(id)
    .fetch_one(&mut *open)
    .await
    .expect("the event the open transaction wrote");
    (open, held)
}

/// `herald migrate` once, as the README says to before starting the processes.
pub(crate) fn migrate(dir: &Path, db: &TestDatabase) {
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("migrate")
        .current_dir(dir)
        .env("HERALD__DATABASE__URL", &db.url)
        .status()
        .expect("herald migrate runs");
    assert!(status.success(), "herald migrate succeeds on PostgreSQL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_worker_processes_deliver_twenty_thousand_messages_once_each_urgent_first() {
    // Arrange: the API process alone queues 5,000 messages on each priority; then three
    // worker processes drain the backlog together.
    let db = TestDatabase::create().await;
    let dir = crate::helpers::test_dir();
    migrate(dir.path(), &db);
    let api_journal = dir.path().join("api.log").display().to_string();
    let mut api = Herald::start_command(
        dir.path(),
        "api",
        &["serve", "--no-workers"],
        &process_env(&db, &api_journal),
    );
    let client = reqwest::Client::new();
    api.wait_healthy(&client).await;
    let numbers = numbers_from(1000, 5_000);
    let mut ids = Vec::new();
    for lane in LANES {
        for chunk in bulk_items(&numbers, lane, lane).chunks(100) {
            ids.extend(send_bulk_to(&client, &api.base, API_KEY, chunk).await);
        }
    }
    assert_eq!(ids.len(), 20_000);

    // Act
    let journals: Vec<String> = (0..3)
        .map(|i| {
            dir.path()
                .join(format!("worker-{i}.log"))
                .display()
                .to_string()
        })
        .collect();
    let _workers: Vec<Herald> = journals
        .iter()
        .enumerate()
        .map(|(i, journal)| {
            Herald::start_command(
                dir.path(),
                &format!("worker-{i}"),
                &["worker"],
                &[
                    process_env(&db, journal),
                    vec![("HERALD__QUEUE__POLL_INTERVAL_MS", "20")],
                ]
                .concat(),
            )
        })
        .collect();
    let pool = db.pool().await;
    eventually("every message read", Duration::from_secs(180), || async {
        let read: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM message WHERE status = 'read'")
            .fetch_one(&pool)
            .await
            .ok()?;
        (read == 20_000).then_some(())
    })
    .await;

    // Assert: each message handed over once, counted over all three journals.
    let mut accepted: std::collections::HashMap<String, usize> = Default::default();
    let mut busy = 0;
    for journal in &journals {
        let counts = HandoverCounts::from_journal(Path::new(journal));
        busy += usize::from(!counts.accepted.is_empty());
        for (id, n) in counts.accepted {
            *accepted.entry(id).or_default() += n;
        }
    }
    assert_eq!(busy, 3, "all three worker processes delivered");
    let twice: Vec<_> = accepted.iter().filter(|(_, n)| **n > 1).collect();
    let warnings = Herald::warnings(&_workers);
    assert!(
        twice.is_empty(),
        "{} handed over more than once, e.g. {:?}; the workers warned: {warnings:#?}",
        twice.len(),
        &twice[..twice.len().min(3)]
    );
    assert!(
        ids.iter().all(|id| accepted.get(id) == Some(&1)),
        "every accepted message was handed over exactly once ({} of 20,000 were)",
        accepted.len()
    );
    // Urgent first: the last urgent message went out before half of the low ones had.
    let sent_at = |lane: i64| {
        let pool = pool.clone();
        async move {
            let mut at: Vec<i64> = sqlx::query_scalar(
                "SELECT e.at FROM message_status_event AS e JOIN message AS m USING (message_id) \
                 WHERE e.status = 'sent' AND m.priority = $1 ORDER BY e.at",
            )
            .bind(lane)
            .fetch_all(&pool)
            .await
            .expect("sent times");
            at.sort_unstable();
            at
        }
    };
    let urgent = sent_at(3).await;
    let low = sent_at(0).await;
    assert_eq!((urgent.len(), low.len()), (5_000, 5_000));
    assert!(
        urgent.last() < low.get(low.len() / 2),
        "the urgent lane drained before the low lane was half done (last urgent {:?}, median low {:?})",
        urgent.last(),
        low.get(low.len() / 2)
    );
    // Money: charged for exactly what was handed over.
    let balance: Value = client
        .get(format!("{}/api/messaging/account/balance/", api.base))
        .bearer_auth(API_KEY)
        .send()
        .await
        .expect("balance")
        .json()
        .await
        .expect("JSON");
    let settled: i64 = sqlx::query_scalar(
        "SELECT COALESCE(SUM(cost), 0)::bigint FROM message WHERE billing = 'settled'",
    )
    .fetch_one(&pool)
    .await
    .expect("the settled sum");
    assert_eq!(settled, 20_000 * 75, "every message settled at 0.0075");
    assert_eq!(balance["balance"], json!(1000.0 - 20_000.0 * 0.0075));
    pool.close().await;
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_api_processes_share_idempotency_and_never_spend_past_the_balance() {
    // Arrange: two API processes on one database; the account can pay for 100 messages.
    let db = TestDatabase::create().await;
    let dir = crate::helpers::test_dir();
    migrate(dir.path(), &db);
    let client = reqwest::Client::new();
    let mut apis = Vec::new();
    for i in 0..2 {
        let journal = dir
            .path()
            .join(format!("api-{i}.log"))
            .display()
            .to_string();
        let mut api = Herald::start_command(
            dir.path(),
            &format!("api-{i}"),
            &["serve", "--no-workers"],
            &[
                process_env(&db, &journal),
                vec![("HERALD__ACCOUNTS__BOOTSTRAP_BALANCE", "0.75")],
            ]
            .concat(),
        );
        api.wait_healthy(&client).await;
        apis.push(api);
    }
    let bases: Vec<String> = apis.iter().map(|a| a.base.clone()).collect();

    // Act 1: the same idempotent request 20 times at once, alternating between processes.
    let body = json!({"phone_number": "+14155551000", "message": "once"});
    let answers = futures::future::join_all((0..20).map(|i| {
        let request = client
            .post(format!("{}/api/messaging/send-message/", bases[i % 2]))
            .bearer_auth(API_KEY)
            .header("Idempotency-Key", "pg-concurrent-1")
            .json(&body)
            .send();
        async move {
            let response = request.await.expect("answered");
            let replayed = response.headers().contains_key("idempotent-replayed");
            (
                response.status().as_u16(),
                replayed,
                response.text().await.expect("a body"),
            )
        }
    }))
    .await;

    // Assert 1: one message, one original answer, every other a replay of it.
    let pool = db.pool().await;
    let created: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM message")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(created, 1, "the key created one message: {answers:?}");
    assert!(
        answers
            .iter()
            .all(|(status, _, text)| *status == 202 && *text == answers[0].2)
    );
    assert_eq!(
        answers.iter().filter(|(_, replayed, _)| !replayed).count(),
        1,
        "exactly one answer was not a replay: {answers:?}"
    );

    // Act 2: 300 sends at once over both processes, for a balance that pays for 99 more.
    let answers = futures::future::join_all((0..300).map(|i| {
        let request = client
            .post(format!("{}/api/messaging/send-message/", bases[i % 2]))
            .bearer_auth(API_KEY)
            .json(&json!({"phone_number": "+14155551001", "message": format!("spend {i}")}))
            .send();
        async move { request.await.expect("answered").status().as_u16() }
    }))
    .await;

    // Assert 2: exactly what the balance pays for was accepted, the rest refused with 402,
    // and the balance is zero, never below.
    let accepted = answers.iter().filter(|s| **s == 202).count();
    let refused = answers.iter().filter(|s| **s == 402).count();
    assert_eq!((accepted, refused), (99, 201), "answers: {answers:?}");
    let (balance, reserved): (i64, i64) = sqlx::query_as("SELECT balance, reserved FROM account")
        .fetch_one(&pool)
        .await
        .expect("the account");
    assert_eq!(balance - reserved, 0, "available is exactly zero");
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM message")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(
        stored, 100,
        "one idempotent message and 99 paid ones are stored"
    );
    pool.close().await;
    drop(apis);
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_run_has_its_claims_taken_over_and_nothing_is_sent_twice() {
    // Arrange: Twilio (the recording stub, one network for every process) answers each send
    // 400 ms after it created the message, delivers at once and calls the API back. The API
    // process queues 3,000 messages with distinct texts; three workers with a 3 s lease
    // deliver them.
    let stub = crate::twilio_stub::TwilioStub::start().await;
    stub.delay_answers(Duration::from_millis(400));
    stub.deliver_at_once();
    let db = TestDatabase::create().await;
    let dir = crate::helpers::test_dir();
    migrate(dir.path(), &db);
    let twilio = crate::twilio_crash::twilio_env(&stub.url);
    let journal = |name: &str| dir.path().join(name).display().to_string();
    let env = |journal: &str| -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = twilio
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        env.extend(
            process_env(&db, journal)
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        env.push(("HERALD__WORKERS__HEARTBEAT_SECONDS".into(), "1".into()));
        env.push(("HERALD__WORKERS__LEASE_SECONDS".into(), "3".into()));
        env.push(("HERALD__QUEUE__POLL_INTERVAL_MS".into(), "20".into()));
        env
    };
    let start = |run: &str, args: &[&str]| {
        let env = env(&journal(&format!("{run}.log")));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Herald::start_command(dir.path(), run, args, &env)
    };
    let mut api = start("api", &["serve", "--no-workers"]);
    let client = reqwest::Client::new();
    api.wait_healthy(&client).await;
    stub.callbacks_to(&api.base);
    let numbers = numbers_from(3000, 300);
    let items: Vec<Value> = (0..10)
        .flat_map(|round| {
            numbers.iter().map(
                move |n| json!({"phone_number": n, "message": format!("pg takeover #{round} to {n}")}),
            )
        })
        .collect();
    for chunk in items.chunks(100) {
        send_bulk_to(&client, &api.base, API_KEY, chunk).await;
    }
    let mut workers: Vec<Herald> = (0..3)
        .map(|i| start(&format!("worker-{i}"), &["worker"]))
        .collect();

    // Act: kill -9 one worker while hundreds of sends are at Twilio.
    eventually(
        "the first sends at Twilio",
        Duration::from_secs(60),
        || async { (stub.send_count() >= 700).then_some(()) },
    )
    .await;
    workers[0].kill_9();
    let pool = db.pool().await;
    // What each worker process held at the kill, by instance id.
    let held: Vec<(String, i64)> = sqlx::query_as(
        "SELECT claimed_by, COUNT(*) FROM message WHERE status = 'sending' \
         AND claimed_by IS NOT NULL GROUP BY claimed_by",
    )
    .fetch_all(&pool)
    .await
    .expect("claims");
    eventually(
        "every message delivered",
        Duration::from_secs(90),
        || async {
            let left: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM message WHERE status <> 'delivered'")
                    .fetch_one(&pool)
                    .await
                    .ok()?;
            (left == 0).then_some(())
        },
    )
    .await;

    // Assert: the dead worker held claims, others took them over, and Twilio got each text
    // once; each message carries the sid Twilio gave its text.
    // The survivors still beat; the killed one is the instance that stopped.
    let live: Vec<String> = sqlx::query_scalar(
        "SELECT instance_id FROM worker_instance \
         WHERE heartbeat_at >= (extract(epoch FROM now()) * 1000)::bigint - 2500",
    )
    .fetch_all(&pool)
    .await
    .expect("live workers");
    assert_eq!(live.len(), 2, "two workers still beat: {live:?}");
    let held_by_dead: i64 = held
        .iter()
        .filter(|(id, _)| !live.contains(id))
        .map(|(_, n)| n)
        .sum();
    assert!(
        held_by_dead > 0,
        "the killed worker held no claims ({held:?}): nothing to take over"
    );
    let taken_over: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM message WHERE claim_seq > 1")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert!(
        taken_over > 0,
        "no message was claimed again after the kill"
    );
    let mut posted: std::collections::HashMap<String, usize> = Default::default();
    for send in stub.sends() {
        *posted
            .entry(send.field("Body").unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    let twice: Vec<_> = posted.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent to Twilio more than once: {twice:?}");
    assert_eq!(posted.len(), 3_000, "every message was handed to Twilio");
    let sids: std::collections::HashMap<String, String> = stub
        .messages()
        .into_iter()
        .map(|m| (m.body, m.sid))
        .collect();
    let recorded: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT body, provider_message_id FROM message")
            .fetch_all(&pool)
            .await
            .expect("rows");
    let wrong = recorded
        .iter()
        .filter(|(body, sid)| sid.as_ref() != sids.get(body))
        .count();
    assert_eq!(
        wrong, 0,
        "messages whose sid is not the one Twilio gave their text"
    );
    eprintln!("killed worker held {held_by_dead} claims; {taken_over} messages claimed again");
    pool.close().await;
    drop(workers);
    drop(api);
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_from_two_worker_processes_reach_a_recovering_receiver_once_each_in_order() {
    // Arrange: an API process and two workers (each with a webhook dispatcher) on one
    // database; the account's webhook points at a receiver that verifies signatures and
    // fails at first; one message also names a status_callback.
    let db = TestDatabase::create().await;
    let dir = crate::helpers::test_dir();
    migrate(dir.path(), &db);
    let webhooks = [
        ("HERALD__WEBHOOKS__ALLOW_PRIVATE_TARGETS", "true"),
        ("HERALD__WEBHOOKS__BACKOFF_INITIAL_MS", "50"),
        ("HERALD__WEBHOOKS__BACKOFF_MAX_MS", "400"),
        ("HERALD__WEBHOOKS__POLL_INTERVAL_MS", "10"),
    ];
    let journals: Vec<String> = ["api", "worker-0", "worker-1"]
        .iter()
        .map(|run| dir.path().join(format!("{run}.log")).display().to_string())
        .collect();
    let env = |i: usize| [process_env(&db, &journals[i]), webhooks.to_vec()].concat();
    let mut api = Herald::start_command(dir.path(), "api", &["serve", "--no-workers"], &env(0));
    let client = reqwest::Client::new();
    api.wait_healthy(&client).await;
    let receiver = crate::webhook_receiver::Receiver::start().await;
    let hooked: Value = client
        .put(format!("{}/api/messaging/webhook", api.base))
        .bearer_auth(API_KEY)
        .json(&json!({"url": format!("{}/hooks/herald", receiver.base)}))
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("JSON");
    receiver.set_secret(hooked["secret"].as_str().expect("the secret is shown once"));
    receiver.set_failing(true);
    let _workers: Vec<Herald> = (1..3)
        .map(|i| Herald::start_command(dir.path(), &format!("worker-{i}"), &["worker"], &env(i)))
        .collect();

    // Act: ten messages, one with a status_callback, delivered while the receiver fails.
    let mut items = bulk_items(&numbers_from(7100, 10), "normal", "pg hook");
    items[0]["status_callback"] = json!(format!("{}/callback", receiver.base));
    let ids = send_bulk_to(&client, &api.base, API_KEY, &items).await;
    let pool = db.pool().await;
    eventually("every message read", Duration::from_secs(60), || async {
        let read: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM message WHERE status = 'read'")
            .fetch_one(&pool)
            .await
            .ok()?;
        (read == 10).then_some(())
    })
    .await;
    let mut histories = std::collections::BTreeMap::new();
    for id in &ids {
        let view: Value = client
            .get(format!("{}/api/messaging/message/{id}/status/", api.base))
            .bearer_auth(API_KEY)
            .send()
            .await
            .expect("answered")
            .json()
            .await
            .expect("JSON");
        histories.insert(id.clone(), crate::helpers::history_statuses(&view));
    }
    // Five statuses per message to the webhook, plus the callback's five.
    let expected: usize =
        histories.values().map(Vec::len).sum::<usize>() + histories[&ids[0]].len();
    eventually(
        "every event refused once",
        Duration::from_secs(60),
        || async { (receiver.seen(|s| s.failed.len()) >= expected).then_some(()) },
    )
    .await;
    receiver.set_failing(false);

    // Assert: after recovery every event arrives once, signed, each message's in order.
    eventually("every event delivered", Duration::from_secs(60), || async {
        let distinct: std::collections::HashSet<(String, String)> = receiver.seen(|s| {
            s.accepted
                .iter()
                .map(|(path, e)| {
                    (
                        path.clone(),
                        e["event_id"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        });
        (distinct.len() == expected).then_some(())
    })
    .await;
    let accepted = receiver.seen(|s| s.accepted.clone());
    assert_eq!(
        receiver.seen(|s| s.forged),
        0,
        "every post was signed with the account's secret"
    );
    assert_eq!(accepted.len(), expected, "no event arrived twice");
    let hooks: Vec<(String, Value)> = accepted
        .iter()
        .filter(|(path, _)| path == "/hooks/herald")
        .cloned()
        .collect();
    let grouped = crate::events::by_message(&hooks);
    for (id, history) in &histories {
        assert_eq!(
            &crate::events::statuses(&grouped[id]),
            history,
            "{id}'s events in order"
        );
    }
    let callbacks = accepted
        .iter()
        .filter(|(path, _)| path == "/callback")
        .count();
    assert_eq!(
        callbacks,
        histories[&ids[0]].len(),
        "the status_callback got its message's changes"
    );
    pool.close().await;
    db.drop_now().await;
}
