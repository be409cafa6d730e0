use crate::helpers::{number, spawn_app};
use serde_json::{Value, json};

/// (balance, reserved) in ten-thousandths, straight from the account row.
async fn ledger(app: &crate::helpers::TestApp, name: &str) -> (i64, i64) {
    app.fetch_one(&format!(
        "SELECT balance, reserved FROM account WHERE name = '{name}'"
    ))
    .await
}

#[tokio::test]
async fn cost_is_reserved_on_accept_settled_on_send_and_refunded_on_failure() {
    // Arrange: a 200-character GSM text is 2 segments (153 per part) = 0.015.
    let app = spawn_app().await;
    let key = app.create_account("acme", "1.0000", 1_000).await;
    let long_text = "x".repeat(200);

    // Act: one message that will be sent, one that fails permanently.
    let sent = app
        .post_json_as(
            "/send-message/",
            &json!({"phone_number": number("0002"), "message": long_text}),
            &key,
        )
        .await;
    let sent: Value = sent.json().await.unwrap();
    assert_eq!(sent["segments"], 2);
    assert_eq!(sent["cost"], 0.015);
    let failed = app
        .post_json_as(
            "/send-message/",
            &json!({"phone_number": number("0000"), "message": "hi"}),
            &key,
        )
        .await;
    let failed: Value = failed.json().await.unwrap();

    // Assert: both reserved at once...
    let available = app.balance_as(&key).await["balance"].as_f64().unwrap();
    assert!(
        available <= 1.0 - 0.015 + 1e-9,
        "reserved on accept: {available}"
    );

    // ...then the sent one settled and the failed one refunded.
    app.wait_for_as(sent["message_id"].as_str().unwrap(), &key, |s| s == "sent")
        .await;
    app.wait_for_as(failed["message_id"].as_str().unwrap(), &key, |s| {
        s == "failed"
    })
    .await;
    assert_eq!(app.balance_as(&key).await["balance"], 0.985);
    assert_eq!(
        ledger(&app, "acme").await,
        (9_850, 0),
        "charged 0.015, nothing left reserved"
    );
    let charges: (i64, i64) = app
        .fetch_one(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT), \
             CAST(COALESCE(SUM(messages), 0) AS BIGINT) FROM balance_entry e \
             JOIN account a USING (account_id) WHERE a.name = 'acme' AND kind = 'charge'",
        )
        .await;
    assert_eq!(charges, (-150, 1), "the ledger explains the balance");
    app.stop().await;
}

#[tokio::test]
async fn send_message_returns_402_when_balance_is_insufficient() {
    let app = spawn_app().await;
    let key = app.create_account("poor", "0.0100", 1_000).await;
    let ok = app
        .post_json_as(
            "/send-message/",
            &json!({"phone_number": number("0002"), "message": "one"}),
            &key,
        )
        .await;
    assert_eq!(ok.status(), 202);

    let refused = app
        .post_json_as(
            "/send-message/",
            &json!({"phone_number": number("0002"), "message": "two"}),
            &key,
        )
        .await;

    assert_eq!(refused.status(), 402);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "insufficient_balance");
    assert_eq!(body["success"], false);
    assert_eq!(app.balance_as(&key).await["balance"], 0.0025);
    let count: (i64,) = app
        .fetch_one(
            "SELECT COUNT(*) FROM message m JOIN account a USING (account_id) \
             WHERE a.name = 'poor'",
        )
        .await;
    assert_eq!(count.0, 1, "the refused message was not stored");
    app.stop().await;
}

#[tokio::test]
async fn the_daily_limit_answers_429_with_retry_after() {
    let app = spawn_app().await;
    let key = app.create_account("limited", "10", 2).await;
    for text in ["a", "b"] {
        let r = app
            .post_json_as(
                "/send-message/",
                &json!({"phone_number": number("0002"), "message": text}),
                &key,
            )
            .await;
        assert_eq!(r.status(), 202);
    }

    let third = app
        .post_json_as(
            "/send-message/",
            &json!({"phone_number": number("0002"), "message": "c"}),
            &key,
        )
        .await;

    assert_eq!(third.status(), 429);
    let wait: u64 = third.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=86_400).contains(&wait), "{wait}");
    let body: Value = third.json().await.unwrap();
    assert_eq!(body["code"], "daily_limit_exceeded");
    let balance = app.balance_as(&key).await;
    assert_eq!(balance["messages_limit_daily"], 2);
    assert_eq!(balance["messages_remaining"], 0);
    app.stop().await;
}

#[tokio::test]
async fn bulk_items_beyond_the_balance_are_refused_one_by_one() {
    let app = spawn_app().await;
    let key = app.create_account("bulk", "0.0150", 1_000).await;
    let messages: Vec<Value> = (0..3)
        .map(|i| json!({"phone_number": number(&format!("10{i:02}")), "message": "hi"}))
        .collect();

    let response = app
        .post_json_as("/send-bulk/", &json!({"messages": messages}), &key)
        .await;

    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["accepted"], 2);
    assert_eq!(body["rejected"], 1);
    assert_eq!(body["results"][2]["code"], "insufficient_balance");
    app.stop().await;
}
