//! Time: scheduled sends and the validity period.
use crate::helpers::{number, spawn_app, spawn_app_with};
use serde_json::{Value, json};

#[tokio::test]
async fn a_scheduled_message_waits_for_its_time() {
    let app = spawn_app().await;
    let at = chrono::Utc::now() + chrono::Duration::milliseconds(1_500);
    let response = app
        .send_message(&json!({
            "phone_number": number("0002"),
            "message": "later",
            "scheduled_at": at.to_rfc3339(),
        }))
        .await;
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    let id = body["message_id"].as_str().unwrap();
    let estimated =
        chrono::DateTime::parse_from_rfc3339(body["estimated_delivery"].as_str().unwrap()).unwrap();
    assert!(
        estimated >= at,
        "estimated delivery {estimated} is after the schedule {at}"
    );

    let view = app.wait_for_status(id, "sent").await;

    let sent_at = chrono::DateTime::parse_from_rfc3339(view["sent_at"].as_str().unwrap()).unwrap();
    assert!(sent_at >= at, "sent at {sent_at}, scheduled for {at}");
    app.stop().await;
}

#[tokio::test]
async fn a_message_not_sent_within_its_validity_period_expires_and_is_refunded() {
    // A flaky number whose retry would fall after the 1-second validity.
    let app = spawn_app_with(
        "[messaging]\nvalidity_period_seconds = 1\n[workers]\nbackoff_initial_ms = 5000\nbackoff_max_ms = 5000\n",
    )
    .await;
    let id = app.send_ok(&number("0001"), "too late").await;

    let view = app.wait_for(&id, |s| s != "queued" && s != "sending").await;

    assert_eq!(view["status"], "expired", "{view}");
    assert_eq!(view["error_code"], "expired");
    assert_eq!(
        app.balance().await["balance"],
        1000.0,
        "the reservation was released"
    );
    app.stop().await;
}
