//! Campaigns on PostgreSQL with several worker processes: every process runs the fan-out,
//! so the steps of one campaign race each other across processes. Each recipient must still
//! become exactly one message, handed over once, and paid for once.

use crate::crash::Herald;
use crate::helpers::{API_KEY, HandoverCounts, eventually};
use crate::postgres::{TestDatabase, migrate, process_env};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

const RECIPIENTS: usize = 3_000;

/// The campaign as the API shows it, once it is in `status`.
async fn campaign_in(client: &reqwest::Client, base: &str, id: &str, status: &str) -> Value {
    eventually(
        &format!("the campaign to be {status}"),
        Duration::from_secs(180),
        || async {
            let view: Value = client
                .get(format!("{base}/api/messaging/campaigns/{id}"))
                .bearer_auth(API_KEY)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (view["status"] == status).then_some(view)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_worker_processes_fan_out_one_campaign_each_recipient_once() {
    // Arrange: an API process takes the campaign; three worker processes expand it in small
    // steps, so that their steps interleave.
    let db = TestDatabase::named("herald_campaigns").await;
    let dir = crate::helpers::test_dir();
    migrate(dir.path(), &db);
    let journal = |run: &str| dir.path().join(format!("{run}.log")).display().to_string();
    let api_journal = journal("api");
    let mut api = Herald::start_command(
        dir.path(),
        "api",
        &["serve", "--no-workers"],
        &process_env(&db, &api_journal),
    );
    let client = reqwest::Client::new();
    api.wait_healthy(&client).await;
    let numbers = crate::campaigns::campaign_numbers(RECIPIENTS as u32);
    let created: Value = client
        .post(format!("{}/api/messaging/campaigns", api.base))
        .bearer_auth(API_KEY)
        .json(&json!({"name": "Everyone", "template": "Hi {{phone_number}}", "phone_numbers": numbers}))
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("JSON");
    let id = created["campaign_id"]
        .as_str()
        .expect("a campaign id")
        .to_owned();

    // Act
    let journals: Vec<String> = (0..3).map(|i| journal(&format!("worker-{i}"))).collect();
    let workers: Vec<Herald> = journals
        .iter()
        .enumerate()
        .map(|(i, journal)| {
            Herald::start_command(
                dir.path(),
                &format!("worker-{i}"),
                &["worker"],
                &[
                    process_env(&db, journal),
                    vec![
                        ("HERALD__CAMPAIGNS__FANOUT_BATCH", "25"),
                        ("HERALD__QUEUE__POLL_INTERVAL_MS", "20"),
                    ],
                ]
                .concat(),
            )
        })
        .collect();
    let campaign = campaign_in(&client, &api.base, &id, "completed").await;

    // Assert: one message per recipient, each handed over once over all three journals.
    let pool = db.pool().await;
    let (messages, numbers_messaged): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(DISTINCT phone_number) FROM message WHERE campaign_id = $1",
    )
    .bind(&id)
    .fetch_one(&pool)
    .await
    .expect("counted");
    let warnings = Herald::warnings(&workers);
    assert_eq!(
        (messages, numbers_messaged),
        (RECIPIENTS as i64, RECIPIENTS as i64),
        "each recipient became one message; the workers warned: {warnings:#?}"
    );
    assert_eq!(
        campaign["counters"]["handed_over"], RECIPIENTS,
        "{campaign}"
    );
    let mut accepted: HashMap<String, usize> = HashMap::new();
    for journal in &journals {
        for (message, n) in HandoverCounts::from_journal(Path::new(journal)).accepted {
            *accepted.entry(message).or_default() += n;
        }
    }
    assert_eq!(accepted.len(), RECIPIENTS, "every message was handed over");
    assert!(
        accepted.values().all(|n| *n == 1),
        "none was handed over twice"
    );
    // Money: each reserved once and settled once, nothing left reserved.
    let (settled, reserved): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COALESCE(SUM(cost), 0)::bigint FROM message WHERE billing = 'settled'), \
         (SELECT COALESCE(SUM(reserved), 0)::bigint FROM account)",
    )
    .fetch_one(&pool)
    .await
    .expect("the money");
    assert_eq!(
        settled,
        RECIPIENTS as i64 * 75,
        "every message settled at 0.0075"
    );
    assert_eq!(reserved, 0, "nothing stays reserved");
    drop(workers);
    pool.close().await;
    db.drop_now().await;
}

/// A fan-out step plans on the account's figures read without its lock and takes the lock
/// only at its end. Here another transaction holds the lock and spends most of the money
/// while the step waits: the step must plan again on what is left, expand only what that
/// pays for, and pause for the balance, never reserving past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_step_outrun_by_a_spend_plans_again_and_never_reserves_past_the_balance() {
    // Arrange: money for exactly 100 messages (0.0075 each) and a campaign of 100, due in a
    // moment, run by one `herald serve`.
    let db = TestDatabase::named("herald_campaigns").await;
    let dir = crate::helpers::test_dir();
    migrate(dir.path(), &db);
    let journal = dir.path().join("serve.log").display().to_string();
    let mut herald =
        Herald::start_command(dir.path(), "serve", &["serve"], &process_env(&db, &journal));
    let client = reqwest::Client::new();
    herald.wait_healthy(&client).await;
    let pool = db.pool().await;
    sqlx::query("UPDATE account SET balance = reserved + 100 * 75")
        .execute(&pool)
        .await
        .expect("the balance is set");
    let start = (chrono::Utc::now() + chrono::Duration::seconds(2))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let created: Value = client
        .post(format!("{}/api/messaging/campaigns", herald.base))
        .bearer_auth(API_KEY)
        .json(&json!({
            "name": "Edge", "template": "Hi", "scheduled_at": start,
            "phone_numbers": crate::campaigns::campaign_numbers(100),
        }))
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("JSON");
    assert_eq!(created["status"], "scheduled", "{created}");
    let id = created["campaign_id"]
        .as_str()
        .expect("a campaign id")
        .to_owned();

    // Act: hold the account row before the campaign starts; once the step waits for it,
    // spend 60 messages' worth and let go.
    let mut spender = pool.begin().await.expect("a transaction");
    sqlx::query("SELECT balance FROM account FOR UPDATE")
        .fetch_all(&mut *spender)
        .await
        .expect("the account row is held");
    eventually(
        "the fan-out step to wait for the account row",
        Duration::from_secs(30),
        || async {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(&pool)
            .await
            .ok()?;
            (waiting > 0).then_some(())
        },
    )
    .await;
    sqlx::query("UPDATE account SET balance = balance - 60 * 75")
        .execute(&mut *spender)
        .await
        .expect("spent");
    spender.commit().await.expect("committed");

    // Assert: 40 messages, the campaign paused for the balance, nothing reserved past it.
    let campaign = campaign_in(&client, &herald.base, &id, "paused").await;
    assert_eq!(
        campaign["pause_reason"], "insufficient_balance",
        "{campaign}"
    );
    let (messages, available): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM message WHERE campaign_id = $1), \
         (SELECT balance - reserved FROM account)",
    )
    .bind(&id)
    .fetch_one(&pool)
    .await
    .expect("counted");
    assert_eq!(messages, 40, "what the money left after the spend pays for");
    assert_eq!(available, 0, "nothing reserved past the balance");
    drop(herald);
    pool.close().await;
    db.drop_now().await;
}
