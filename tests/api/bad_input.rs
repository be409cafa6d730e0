use crate::helpers::{expect_error_shape, number, spawn_app, spawn_app_with};
use serde_json::{Value, json};

#[tokio::test]
async fn malformed_send_message_bodies_get_a_clear_4xx_and_store_nothing() {
    let app = spawn_app().await;
    let ok = number("0123");
    // (case, body, status, code, field)
    let cases: Vec<(&str, Value, u16, &str, Option<&str>)> = vec![
        (
            "missing phone",
            json!({"message": "hi"}),
            400,
            "missing_field",
            Some("phone_number"),
        ),
        (
            "missing message",
            json!({"phone_number": ok}),
            400,
            "missing_field",
            Some("message"),
        ),
        (
            "phone not a string",
            json!({"phone_number": 14155550123u64, "message": "hi"}),
            400,
            "invalid_field",
            Some("phone_number"),
        ),
        (
            "placeholder number",
            json!({"phone_number": "+1234567890", "message": "hi"}),
            400,
            "invalid_phone_number",
            Some("phone_number"),
        ),
        (
            "letters",
            json!({"phone_number": "call me", "message": "hi"}),
            400,
            "invalid_phone_number",
            Some("phone_number"),
        ),
        (
            "parser crasher",
            json!({"phone_number": "2015550123;phone-context=+1;tel:", "message": "hi"}),
            400,
            "invalid_phone_number",
            Some("phone_number"),
        ),
        (
            "unknown priority",
            json!({"phone_number": ok, "message": "hi", "priority": "asap"}),
            400,
            "invalid_field",
            Some("priority"),
        ),
        (
            "unknown channel",
            json!({"phone_number": ok, "message": "hi", "channel": "fax"}),
            400,
            "invalid_field",
            Some("channel"),
        ),
        (
            "control char",
            json!({"phone_number": ok, "message": "a\u{0007}b"}),
            400,
            "invalid_field",
            Some("message"),
        ),
        (
            "C1 control char",
            json!({"phone_number": ok, "message": "a\u{0085}b"}),
            400,
            "invalid_field",
            Some("message"),
        ),
        (
            "empty message",
            json!({"phone_number": ok, "message": ""}),
            400,
            "invalid_field",
            Some("message"),
        ),
        (
            "too long for SMS",
            json!({"phone_number": ok, "message": "x".repeat(1_601)}),
            400,
            "invalid_field",
            Some("message"),
        ),
        (
            "bad schedule",
            json!({"phone_number": ok, "message": "hi", "scheduled_at": "tomorrow"}),
            400,
            "invalid_field",
            Some("scheduled_at"),
        ),
        (
            "metadata not an object",
            json!({"phone_number": ok, "message": "hi", "metadata": [1]}),
            400,
            "invalid_field",
            Some("metadata"),
        ),
        (
            "callback not a URL",
            json!({"phone_number": ok, "message": "hi", "status_callback": "ftp://x"}),
            400,
            "invalid_field",
            Some("status_callback"),
        ),
    ];
    for (case, body, status, code, field) in cases {
        let response = app.send_message(&body).await;
        let body = expect_error_shape(response, status, code, case).await;
        assert_eq!(body["field"].as_str(), field, "{case}: {body}");
    }

    let raw = [
        ("not JSON", "application/json", "{nope", 400, "invalid_json"),
        (
            "JSON array",
            "application/json",
            "[1,2]",
            400,
            "invalid_json",
        ),
        ("empty body", "application/json", "", 400, "invalid_json"),
        (
            "form body",
            "application/x-www-form-urlencoded",
            "phone_number=1",
            415,
            "unsupported_media_type",
        ),
    ];
    for (case, content_type, body, status, code) in raw {
        let response = app
            .client
            .post(app.url("/send-message/"))
            .bearer_auth(&app.api_key)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        expect_error_shape(response, status, code, case).await;
    }

    let stored: (i64,) = app.fetch_one("SELECT COUNT(*) FROM message").await;
    assert_eq!(stored.0, 0, "no refused request left a message behind");
    assert_eq!(app.balance().await["balance"], 1000.0);
    app.stop().await;
}

#[tokio::test]
async fn oversized_bodies_and_batches_get_413() {
    let app = spawn_app_with("[server]\nmax_body_bytes = 4096\n").await;
    let big = app
        .send_message(&json!({"phone_number": number("0123"), "message": "x".repeat(10_000)}))
        .await;
    expect_error_shape(big, 413, "payload_too_large", "body over the limit").await;

    let items: Vec<Value> = (0..101)
        .map(|_| json!({"phone_number": "1", "message": "m"}))
        .collect();
    let app2 = spawn_app().await;
    let batch = app2
        .post_json("/send-bulk/", &json!({"messages": items}))
        .await;
    expect_error_shape(batch, 413, "batch_too_large", "101 items").await;
    app.stop().await;
    app2.stop().await;
}

#[tokio::test]
async fn one_bad_bulk_item_never_rejects_the_batch_and_duplicates_are_sent_once() {
    let app = spawn_app().await;
    let body = json!({
        "campaign_id": "spring",
        "messages": [
            {"phone_number": number("0123"), "message": "Hello User 1!", "priority": "normal"},
            {"phone_number": "+0987654321", "message": "Hello User 2!", "priority": "high"},
            {"phone_number": "(415) 555-0123", "message": "Hello User 1!"},
            "not an object",
            {"phone_number": number("0124"), "message": "Hello!", "priority": "sometimes"},
            {"phone_number": number("0125"), "message": "Hi there!"},
        ]
    });

    let response = app.post_json("/send-bulk/", &body).await;

    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["success"], true);
    assert_eq!(body["accepted"], 2);
    assert_eq!(body["rejected"], 4);
    let results = body["results"].as_array().unwrap();
    let codes: Vec<&str> = results
        .iter()
        .map(|r| r["code"].as_str().unwrap_or("ok"))
        .collect();
    assert_eq!(
        codes,
        [
            "ok",
            "invalid_phone_number",
            "duplicate_recipient",
            "invalid_field",
            "invalid_field",
            "ok"
        ]
    );
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["index"], i);
    }
    assert_eq!(
        results[2]["message_id"], results[0]["message_id"],
        "points at the earlier send"
    );
    let first = results[0]["message_id"].as_str().unwrap();
    let campaign: (Option<String>,) = app
        .fetch_one(&format!(
            "SELECT campaign_id FROM message WHERE message_id = '{first}'"
        ))
        .await;
    assert_eq!(campaign.0.as_deref(), Some("spring"));
    app.stop().await;
}

#[tokio::test]
async fn validate_phone_reports_what_it_knows_and_never_fails_on_odd_input() {
    let app = spawn_app().await;
    let valid = app
        .post_json(
            "/validate-phone/",
            &json!({"phone_number": "(415) 555-0123"}),
        )
        .await;
    assert_eq!(valid.status(), 200);
    let valid: Value = valid.json().await.unwrap();
    assert_eq!(valid["is_valid"], true);
    assert_eq!(valid["formatted_number"], "+14155550123");
    assert_eq!(valid["country_code"], 1);
    assert_eq!(valid["region"], "US");
    assert!(valid["checked_at"].as_f64().unwrap() > 1.7e9);

    let uk = app
        .post_json(
            "/validate-phone/",
            &json!({"phone_number": "020 7946 0958", "country": "GB"}),
        )
        .await;
    let uk: Value = uk.json().await.unwrap();
    assert_eq!(uk["formatted_number"], "+442079460958");
    assert_eq!(uk["number_type"], "fixed_line");
    assert_eq!(uk["can_receive_messages"], false);

    for odd in [
        "+1234567890",
        "",
        "2015550123;phone-context=+1;tel:",
        "💥💥💥",
        &"9".repeat(5_000),
    ] {
        let r = app
            .post_json("/validate-phone/", &json!({"phone_number": odd}))
            .await;
        assert_eq!(r.status(), 200, "{odd}");
        let r: Value = r.json().await.unwrap();
        assert_eq!(r["is_valid"], false, "{odd}");
        assert!(
            r["formatted_number"].is_null() && r["region"].is_null() && r["country_code"].is_null()
        );
        assert_eq!(r["number_type"], "unknown");
    }

    let bad_country = app
        .post_json(
            "/validate-phone/",
            &json!({"phone_number": "555", "country": "XX"}),
        )
        .await;
    expect_error_shape(bad_country, 400, "invalid_field", "unknown country").await;
    let missing = app.post_json("/validate-phone/", &json!({})).await;
    expect_error_shape(missing, 400, "missing_field", "no phone").await;
    app.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_error_shape() {
    let app = spawn_app().await;
    let missing = app
        .client
        .get(format!("{}/nope", app.address))
        .send()
        .await
        .unwrap();
    expect_error_shape(missing, 404, "not_found", "unknown route").await;
    let wrong_method = app
        .client
        .get(app.url("/send-message/"))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 405);
    app.stop().await;
}
