//! The database refusing writes (issue 7): a full disk and a lock held by another process,
//! provoked for real on the app's SQLite file. Requests answer 503 with `Retry-After` and
//! keep nothing, `/readyz` says why, and everything resumes by itself once writes succeed.

use crate::helpers::{PATIENCE, TestApp, eventually, number, spawn_app_with};
use serde_json::{Value, json};
use sqlx::{Connection, SqliteConnection};
use std::time::Duration;

/// The database's size limit in the full-disk test (pages of 4 KiB: 8 MB).
const MAX_PAGES: i64 = 2_000;

/// Refused writes in the busy test wait this long for the lock.
const BUSY_TIMEOUT_MS: u64 = 200;

/// Sends one message; `key` as its Idempotency-Key.
async fn send_keyed(app: &TestApp, body: &Value, key: &str) -> reqwest::Response {
    app.client
        .post(app.url("/send-message/"))
        .bearer_auth(&app.api_key)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn readyz(app: &TestApp) -> (u16, Value) {
    let r = app
        .client
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Asserts the 503 a refused write answers with, and returns its Retry-After.
async fn assert_unavailable(response: reqwest::Response) -> u64 {
    assert_eq!(response.status(), 503);
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .expect("a Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1, "{retry_after}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["code"], "service_unavailable", "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("retry"), "says what to do: {error}");
    retry_after
}

async fn scalar(conn: &mut SqliteConnection, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(conn).await.unwrap()
}

#[tokio::test]
async fn a_full_disk_answers_503_keeps_nothing_and_recovers_by_itself() {
    // Arrange: a database limited to MAX_PAGES, filled with ballast (written on a connection
    // of our own, which has no limit) until only the slack in its pages is left.
    let app = spawn_app_with(&format!("[database]\nmax_page_count = {MAX_PAGES}\n")).await;
    let url = format!("sqlite://{}", app.dir.path().join("herald.db").display());
    let mut db = SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("CREATE TABLE ballast (b BLOB NOT NULL)")
        .execute(&mut db)
        .await
        .unwrap();
    let used = scalar(&mut db, "PRAGMA page_count").await;
    assert!(
        used < MAX_PAGES / 4,
        "the empty database takes {used} pages"
    );
    // About one page per 4,000-byte row; stopping short of the limit leaves the freed pages
    // inside it (SQLite does not hand the writer pages past its limit, even free ones).
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) \
         INSERT INTO ballast SELECT randomblob(4000) FROM n",
    )
    .bind(MAX_PAGES - used - 20)
    .execute(&mut db)
    .await
    .unwrap();

    // Act: send until the database is full.
    let mut accepted = Vec::new();
    let mut reserved = 0.0;
    let mut refused = None;
    for i in 0..5_000 {
        let body = json!({
            "phone_number": number(&format!("{:04}", 1_000 + i % 8_000)),
            "message": format!("filling the disk, message {i} {}", "x".repeat(200)),
        });
        let key = format!("fill-{i}");
        let response = send_keyed(&app, &body, &key).await;
        if response.status() == 202 {
            let sent: Value = response.json().await.unwrap();
            accepted.push(sent["message_id"].as_str().unwrap().to_owned());
            reserved += sent["cost"].as_f64().unwrap();
            continue;
        }
        assert_eq!(
            assert_unavailable(response).await,
            5,
            "a full disk takes a while"
        );
        refused = Some((body, key));
        break;
    }
    let (refused_body, refused_key) = refused.expect("the database filled up");
    assert!(
        !accepted.is_empty(),
        "some messages fit before the disk was full"
    );

    // Assert: the refused request left nothing behind.
    let messages = scalar(&mut db, "SELECT COUNT(*) FROM message").await;
    assert_eq!(
        messages,
        accepted.len() as i64,
        "one row per 202, none for the 503"
    );
    let kept: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM idempotency_key WHERE idempotency_key = ?")
            .bind(&refused_key)
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!(kept, 0, "the refused request's key is not kept");
    let available = app.balance().await["balance"].as_f64().unwrap();
    let expected = 1_000.0 - reserved;
    assert!(
        (available - expected).abs() < 1e-6,
        "only the accepted messages are reserved: {available} against {expected}"
    );
    let (status, ready) = readyz(&app).await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["ready"], false);
    assert_eq!(
        ready["reason"], "the database refuses writes: disk full",
        "{ready}"
    );

    // Act: the operator makes room.
    sqlx::query("DELETE FROM ballast")
        .execute(&mut db)
        .await
        .unwrap();

    // Assert: ready again by itself, the refused request now succeeds as new, and every
    // message accepted before the fault is delivered (the workers resumed).
    let ready = eventually("/readyz to answer 200 again", PATIENCE, || async {
        let (status, body) = readyz(&app).await;
        (status == 200).then_some(body)
    })
    .await;
    assert_eq!(ready, json!({"ready": true}));
    let retried = send_keyed(&app, &refused_body, &refused_key).await;
    assert_eq!(retried.status(), 202);
    assert!(
        retried.headers().get("idempotent-replayed").is_none(),
        "a new request, not a replay"
    );
    let retried: Value = retried.json().await.unwrap();
    accepted.push(retried["message_id"].as_str().unwrap().to_owned());
    app.wait_all_handed_over(&accepted).await;
    app.stop().await;
}

#[tokio::test]
async fn a_lock_held_elsewhere_answers_503_and_deliveries_wait_it_out() {
    // Arrange: a provider slow enough that a delivery is in flight when the lock is taken.
    let app = spawn_app_with(&format!(
        "[database]\nbusy_timeout_ms = {BUSY_TIMEOUT_MS}\n[providers.mock]\naccept_delay_ms = 1000\n"
    ))
    .await;
    let in_flight = app
        .send_ok(&number("2001"), "handed over while the lock is held")
        .await;
    app.wait_for_status(&in_flight, "sending").await;

    // Act: another process takes the write lock and keeps it.
    let url = format!("sqlite://{}", app.dir.path().join("herald.db").display());
    let mut other = SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let response = app
        .send_message(&json!({"phone_number": number("2002"), "message": "while locked"}))
        .await;

    // Assert: refused with a short Retry-After, and readyz names the reason.
    assert_eq!(assert_unavailable(response).await, 1);
    let (status, ready) = readyz(&app).await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(
        ready["reason"], "the database refuses writes: busy (another process holds the write lock)",
        "{ready}"
    );
    // The length of the outage being rehearsed, not a wait for something to happen: longer
    // than the few seconds a delivery once spent trying to record its outcome before giving
    // up (and leaving the message claimed until the next start).
    tokio::time::sleep(Duration::from_secs(8)).await;
    let (status, _) = readyz(&app).await;
    assert_eq!(status, 503, "still refusing while the lock is held");

    // Act: the other process lets go.
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();

    // Assert: the delivery in flight is recorded, new sends are accepted and delivered.
    app.wait_for(&in_flight, crate::helpers::handed_over).await;
    let after = app.send_ok(&number("2003"), "after the lock").await;
    app.wait_for(&after, crate::helpers::handed_over).await;
    eventually("/readyz to answer 200 again", PATIENCE, || async {
        (readyz(&app).await.0 == 200).then_some(())
    })
    .await;
    app.stop().await;
}
