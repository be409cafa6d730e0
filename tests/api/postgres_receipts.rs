//! Receipts on PostgreSQL when two processes move the same message at the same moment (a
//! provider's `delivered` and `read` can reach two processes behind one load balancer).

use crate::helpers::eventually;
use crate::postgres::TestDatabase;
use crate::schema_parity::POSTGRES;
use sqlx::{Connection, PgConnection};
use std::time::Duration;

const APPLY: &str = include_str!("../../src/store/postgres/queries/apply_status_update.sql");

/// Applies the mock's receipt `status` for reference `R1` as the store does; answers how many
/// messages it moved.
async fn apply(conn: &mut PgConnection, status: &str, allowed: &[&str], at: i64) -> usize {
    let receipts = serde_json::json!([{"ref": "R1", "at": at, "code": null, "message": null}]);
    sqlx::query(APPLY)
        .bind("mock")
        .bind(status)
        .bind(receipts.to_string())
        .bind(serde_json::json!(allowed).to_string())
        .fetch_all(conn)
        .await
        .expect("the receipt applies")
        .len()
}

/// A `delivered` and a `read` for one message, applied in two connections at once: the
/// `read` waits for the row the `delivered` holds, then moves the message on, and its event
/// names `delivered` as the previous status, as the history has it. Before, the `read` moved
/// nothing (PostgreSQL re-checked the changed row against the status it had before) and was
/// dropped as stale; and its event, had it moved, would have named `sent` (a statement reads
/// the history as it was when the statement began).
#[tokio::test]
async fn a_receipt_that_waited_for_another_names_the_status_that_one_left() {
    let db = TestDatabase::named("herald_receipt_race").await;
    let mut first = PgConnection::connect(&db.url).await.expect("connects");
    POSTGRES.run(&mut first).await.expect("the migrations run");
    for sql in [
        "INSERT INTO account (account_id, name, currency, balance, reserved, daily_limit, \
         created_at, updated_at, webhook_secret) \
         VALUES ('acc_1', 'a', 'USD', 0, 0, 10, 0, 0, 'secret')",
        "INSERT INTO message (message_id, account_id, channel, phone_number, body, priority, \
         status, segments, cost, billing, provider, provider_message_id, due_at, expires_at, \
         created_at, updated_at) VALUES ('msg_1', 'acc_1', 'sms', '+14155550123', 'hi', 1, \
         'sent', 1, 0, 'settled', 'mock', 'R1', 0, 9999999999999, 100, 200)",
        "INSERT INTO message_status_event (message_id, status, at) \
         VALUES ('msg_1', 'queued', 100), ('msg_1', 'sending', 150), ('msg_1', 'sent', 200)",
    ] {
        sqlx::query(sql).execute(&mut first).await.expect("set up");
    }
    let mut second = PgConnection::connect(&db.url).await.expect("connects");
    let second_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut second)
        .await
        .expect("a backend pid");

    let mut delivered = first.begin().await.expect("a transaction");
    assert_eq!(apply(&mut delivered, "delivered", &["sent"], 300).await, 1);
    let read = tokio::spawn(async move {
        let moved = apply(&mut second, "read", &["sent", "delivered"], 400).await;
        (moved, second)
    });
    let watcher = db.pool().await;
    eventually(
        "the read to wait for the row",
        Duration::from_secs(10),
        || async {
            let waiting: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity \
                 WHERE pid = $1 AND wait_event_type = 'Lock')",
            )
            .bind(second_pid)
            .fetch_one(&watcher)
            .await
            .expect("pg_stat_activity answers");
            waiting.then_some(())
        },
    )
    .await;
    delivered.commit().await.expect("commits");
    let (moved, _second) = read.await.expect("the read finishes");
    assert_eq!(moved, 1, "the read moves the message on from delivered");

    let events: Vec<(String, Option<String>, i64)> = sqlx::query_as(
        "SELECT status, previous_status, at FROM event WHERE message_id = 'msg_1' \
         ORDER BY event_seq",
    )
    .fetch_all(&watcher)
    .await
    .expect("the events");
    let event =
        |status: &str, previous: &str, at| (status.to_owned(), Some(previous.to_owned()), at);
    assert_eq!(
        events,
        [
            event("delivered", "sent", 300),
            event("read", "delivered", 400)
        ]
    );
    let status: String =
        sqlx::query_scalar("SELECT status FROM message WHERE message_id = 'msg_1'")
            .fetch_one(&watcher)
            .await
            .expect("the message");
    assert_eq!(status, "read");
    watcher.close().await;
    db.drop_now().await;
}
