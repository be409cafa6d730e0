use crate::helpers::{number, spawn_app};
use serde_json::{Value, json};

async fn send_with_key(
    app: &crate::helpers::TestApp,
    key: &str,
    body: &Value,
) -> reqwest::Response {
    app.client
        .post(app.url("/send-message/"))
        .bearer_auth(&app.api_key)
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn message_count(app: &crate::helpers::TestApp) -> i64 {
    let (n,): (i64,) = app.fetch_one("SELECT COUNT(*) FROM message").await;
    n
}

#[tokio::test]
async fn a_retried_request_replays_the_first_answer_and_charges_once() {
    let app = spawn_app().await;
    let body = json!({"phone_number": number("0123"), "message": "once"});
    let first = send_with_key(&app, "order-42", &body).await;
    assert_eq!(first.status(), 202);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();

    // The same body written differently is the same request.
    let reordered = json!({"message": "once", "phone_number": number("0123")});
    let again = send_with_key(&app, "order-42", &reordered).await;

    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again, first);
    assert_eq!(message_count(&app).await, 1);
    assert_eq!(app.balance().await["balance"], 1000.0 - 0.0075);
    app.stop().await;
}

#[tokio::test]
async fn the_same_key_with_another_body_is_a_409() {
    let app = spawn_app().await;
    let first = send_with_key(
        &app,
        "k1",
        &json!({"phone_number": number("0123"), "message": "a"}),
    )
    .await;
    assert_eq!(first.status(), 202);

    let other = send_with_key(
        &app,
        "k1",
        &json!({"phone_number": number("0123"), "message": "b"}),
    )
    .await;

    assert_eq!(other.status(), 409);
    let body: Value = other.json().await.unwrap();
    assert_eq!(body["code"], "idempotency_conflict");
    assert_eq!(message_count(&app).await, 1);
    let other_account = app.create_account("second", "1", 100).await;
    let elsewhere = app
        .client
        .post(app.url("/send-message/"))
        .bearer_auth(&other_account)
        .header("idempotency-key", "k1")
        .json(&json!({"phone_number": number("0123"), "message": "b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 202, "keys are scoped to the account");
    app.stop().await;
}

#[tokio::test]
async fn two_identical_requests_at_once_make_one_message() {
    let app = spawn_app().await;
    let body = json!({"phone_number": number("0123"), "message": "race"});
    let requests: Vec<_> = (0..8)
        .map(|_| send_with_key(&app, "race-1", &body))
        .collect();

    let responses = futures::future::join_all(requests).await;

    let mut ids = Vec::new();
    let mut replayed = 0;
    for r in responses {
        assert_eq!(r.status(), 202);
        replayed += usize::from(r.headers().get("idempotent-replayed").is_some());
        let body: Value = r.json().await.unwrap();
        ids.push(body["message_id"].as_str().unwrap().to_owned());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "every answer names the same message");
    assert_eq!(replayed, 7);
    assert_eq!(message_count(&app).await, 1);
    assert_eq!(app.balance().await["balance"], 1000.0 - 0.0075);
    app.stop().await;
}

#[tokio::test]
async fn a_bad_idempotency_key_is_refused() {
    let app = spawn_app().await;
    let body = json!({"phone_number": number("0123"), "message": "x"});
    let response = send_with_key(&app, &"k".repeat(256), &body).await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["code"], "invalid_field");
    assert_eq!(error["field"], "Idempotency-Key");
    app.stop().await;
}
