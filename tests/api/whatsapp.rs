//! The WhatsApp Cloud API as the WhatsApp provider, against the recording stub
//! (`whatsapp_stub.rs`): what goes out (text, media, templates), how Meta's errors are
//! understood, template requests at the API, signed webhooks and their verification.

use crate::helpers::{
    PATIENCE, eventually, expect_error_shape, history_in_order, history_statuses, number,
};
use crate::twilio_stub::provider_id;
use crate::whatsapp_stub::{
    ACCESS_TOKEN, API_VERSION, PHONE_NUMBER_ID, Scripted, VERIFY_TOKEN, failed, notification,
    post_webhook, post_webhook_raw, send_whatsapp, sign, spawn_with_whatsapp, status, unix_now,
    wamid,
};
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test]
async fn a_text_message_goes_out_as_json_with_the_bearer_token() {
    // Arrange
    let (app, stub) = spawn_with_whatsapp("").await;

    // Act
    let id = send_whatsapp(
        &app,
        "(415) 555-1234",
        json!({"message": "Your code is 4821"}),
    )
    .await;
    let view = app.wait_for_status(&id, "sent").await;

    // Assert
    let sends = stub.sends();
    assert_eq!(sends.len(), 1, "{sends:?}");
    let send = &sends[0];
    assert_eq!(send.method, "POST");
    assert_eq!(
        send.path,
        format!("/{API_VERSION}/{PHONE_NUMBER_ID}/messages")
    );
    assert_eq!(send.authorization, Some(format!("Bearer {ACCESS_TOKEN}")));
    assert_eq!(send.content_type.as_deref(), Some("application/json"));
    assert!(
        send.user_agent
            .as_deref()
            .is_some_and(|ua| ua.starts_with("Herald/")),
        "{:?}",
        send.user_agent
    );
    assert_eq!(
        send.json,
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "14155551234",
            "type": "text",
            "text": {"preview_url": false, "body": "Your code is 4821"},
            "biz_opaque_callback_data": id,
        })
    );
    assert_eq!(view["provider"], "whatsapp_cloud");
    assert_eq!(view["channel"], "whatsapp");
    assert_eq!(provider_id(&view), wamid(1));
}

#[tokio::test]
async fn media_messages_go_by_the_kind_their_extension_names_with_the_text_as_caption() {
    let (app, stub) = spawn_with_whatsapp("").await;
    // (attachment, the `type` and media object Meta must get)
    let cases = [
        (
            "https://cdn.example.com/p/photo.JPG?sig=abc",
            "image",
            json!({"link": "https://cdn.example.com/p/photo.JPG?sig=abc", "caption": "Look"}),
        ),
        (
            "https://cdn.example.com/clip.mp4",
            "video",
            json!({"link": "https://cdn.example.com/clip.mp4", "caption": "Look"}),
        ),
        (
            // WhatsApp audio takes no caption.
            "https://cdn.example.com/voice.ogg",
            "audio",
            json!({"link": "https://cdn.example.com/voice.ogg"}),
        ),
        (
            "https://cdn.example.com/d/invoice-42.pdf",
            "document",
            json!({"link": "https://cdn.example.com/d/invoice-42.pdf", "caption": "Look", "filename": "invoice-42.pdf"}),
        ),
        (
            "https://cdn.example.com/download",
            "document",
            json!({"link": "https://cdn.example.com/download", "caption": "Look", "filename": "download"}),
        ),
    ];
    let mut ids = Vec::new();
    for (i, (url, _, _)) in cases.iter().enumerate() {
        let to = number(&format!("12{i:02}"));
        let id = send_whatsapp(&app, &to, json!({"message": "Look", "attachment_url": url})).await;
        app.wait_for_status(&id, "sent").await;
        ids.push(id);
    }

    let sends = stub.sends();
    assert_eq!(sends.len(), cases.len());
    for ((url, kind, media), (send, id)) in cases.iter().zip(sends.iter().zip(&ids)) {
        assert_eq!(send.json["type"], *kind, "{url}: {}", send.json);
        assert_eq!(send.json[*kind], *media, "{url}: {}", send.json);
        assert_eq!(send.json["biz_opaque_callback_data"], *id, "{url}");
        assert!(send.json.get("text").is_none(), "{url}: {}", send.json);
    }
}

#[tokio::test]
async fn a_template_message_carries_its_name_language_and_body_variables() {
    let (app, stub) = spawn_with_whatsapp("").await;

    let with_vars = send_whatsapp(
        &app,
        &number("1234"),
        json!({
            "message": "Hi Ann, order #42 ships Monday",
            "whatsapp_template": {"name": "order_update", "language": "en_US", "variables": ["Ann", "#42", "Monday"]},
        }),
    )
    .await;
    let without_vars = send_whatsapp(
        &app,
        &number("1235"),
        json!({"whatsapp_template": {"name": "hello_world", "language": "en_US"}}),
    )
    .await;
    app.wait_for_status(&with_vars, "sent").await;
    app.wait_for_status(&without_vars, "sent").await;

    let sends = stub.sends();
    let for_id = |id: &str| {
        sends
            .iter()
            .find(|s| s.json["biz_opaque_callback_data"] == id)
            .unwrap()
            .json
            .clone()
    };
    assert_eq!(
        for_id(&with_vars),
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "14155551234",
            "type": "template",
            "template": {
                "name": "order_update",
                "language": {"policy": "deterministic", "code": "en_US"},
                "components": [{"type": "body", "parameters": [
                    {"type": "text", "text": "Ann"},
                    {"type": "text", "text": "#42"},
                    {"type": "text", "text": "Monday"},
                ]}],
            },
            "biz_opaque_callback_data": with_vars,
        })
    );
    let bare = for_id(&without_vars);
    assert_eq!(
        bare["template"],
        json!({"name": "hello_world", "language": {"policy": "deterministic", "code": "en_US"}})
    );
    assert!(bare.get("text").is_none(), "{bare}");
}

#[tokio::test]
async fn bad_template_requests_are_refused_in_the_one_error_shape() {
    let (app, stub) = spawn_with_whatsapp("").await;
    let template = json!({"name": "order_update", "language": "en_US", "variables": ["Ann"]});
    // (case, request fields beyond phone_number and message, code, field)
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "a template on SMS",
            json!({"whatsapp_template": template}),
            "invalid_field",
            "whatsapp_template",
        ),
        (
            "a template on an explicit SMS",
            json!({"channel": "sms", "whatsapp_template": template}),
            "invalid_field",
            "whatsapp_template",
        ),
        (
            "a template with an attachment",
            json!({"channel": "whatsapp", "whatsapp_template": template, "attachment_url": "https://cdn.example.com/a.png"}),
            "invalid_field",
            "whatsapp_template",
        ),
        (
            "a name Meta would not have approved",
            json!({"channel": "whatsapp", "whatsapp_template": {"name": "Order Update", "language": "en_US"}}),
            "invalid_field",
            "whatsapp_template.name",
        ),
        (
            "no language",
            json!({"channel": "whatsapp", "whatsapp_template": {"name": "order_update"}}),
            "missing_field",
            "whatsapp_template.language",
        ),
        (
            "a language that is not a locale code",
            json!({"channel": "whatsapp", "whatsapp_template": {"name": "order_update", "language": "English"}}),
            "invalid_field",
            "whatsapp_template.language",
        ),
        (
            "a variable with a line break",
            json!({"channel": "whatsapp", "whatsapp_template": {"name": "order_update", "language": "en", "variables": ["Ann", "two\nlines"]}}),
            "invalid_field",
            "whatsapp_template.variables[1]",
        ),
        (
            "variables that are not strings",
            json!({"channel": "whatsapp", "whatsapp_template": {"name": "order_update", "language": "en", "variables": [1, 2]}}),
            "invalid_field",
            "",
        ),
        (
            "a template that is not an object",
            json!({"channel": "whatsapp", "whatsapp_template": "order_update"}),
            "invalid_field",
            "whatsapp_template",
        ),
        (
            "a caption over WhatsApp's 1,024 characters",
            json!({"channel": "whatsapp", "attachment_url": "https://cdn.example.com/a.png", "message": "x".repeat(1025)}),
            "invalid_field",
            "message",
        ),
    ];
    for (case, fields, code, field) in cases {
        let mut body = json!({"phone_number": number("1234"), "message": "hello"});
        body.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        let response = app.send_message(&body).await;
        let answer = expect_error_shape(response, 400, code, case).await;
        if !field.is_empty() {
            assert_eq!(answer["field"], field, "{case}: {answer}");
        }
        if case == "a template on SMS" {
            let error = answer["error"].as_str().unwrap();
            assert!(error.contains("whatsapp"), "{case}: {error}");
        }
    }
    // In a bulk request the bad item is refused alone.
    let response = app
        .post_json(
            "/send-bulk/",
            &json!({"messages": [
                {"phone_number": number("1234"), "message": "a", "whatsapp_template": template},
                {"phone_number": number("1235"), "message": "b", "channel": "whatsapp", "whatsapp_template": template},
            ]}),
        )
        .await;
    assert_eq!(response.status(), 202);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["results"][0]["code"], "invalid_field", "{answer}");
    assert_eq!(answer["results"][1]["success"], true, "{answer}");
    let id = answer["results"][1]["message_id"].as_str().unwrap();
    app.wait_for_status(id, "sent").await;
    // Only the valid one reached Meta, as a template.
    let sends = stub.sends();
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].json["template"]["name"], "order_update");
}

#[tokio::test]
async fn permanent_whatsapp_errors_fail_at_once_with_metas_code() {
    let cases = [
        (400, 131_026, "131026", "an undeliverable message"),
        (400, 131_051, "131051", "an unsupported message type"),
        (
            400,
            132_000,
            "132000",
            "a wrong number of template parameters",
        ),
        (404, 132_001, "132001", "a template that does not exist"),
        (401, 190, "190", "an expired access token"),
        (
            400,
            131_030,
            "131030",
            "a recipient not on the allowed list",
        ),
    ];
    let (app, stub) = spawn_with_whatsapp("").await;
    for (i, (status, code, herald_code, case)) in cases.iter().enumerate() {
        stub.script(Scripted::error(*status, *code));
        let id = send_whatsapp(&app, &number(&format!("12{i:02}")), json!({})).await;

        let view = app.wait_for_status(&id, "failed").await;

        assert_eq!(view["error_code"], *herald_code, "{case}: {view}");
        let message = view["error_message"].as_str().unwrap();
        assert!(
            message.contains(&format!("scripted error {code}")),
            "{case}: {message}"
        );
        assert_eq!(
            stub.sends().len(),
            i + 1,
            "{case}: sent once, never retried"
        );
        if *code == 190 {
            assert!(
                message.contains("providers.whatsapp_cloud.access_token"),
                "{message}"
            );
        }
    }
    // Nothing was charged for messages Meta refused.
    assert_eq!(app.balance().await["balance"], 1000.0);
}

#[tokio::test]
async fn a_closed_customer_service_window_fails_naming_the_template_route() {
    let (app, stub) = spawn_with_whatsapp("").await;
    stub.script(Scripted::error(400, 131_047));

    let id = send_whatsapp(
        &app,
        &number("1234"),
        json!({"message": "Are you still there?"}),
    )
    .await;
    let view = app.wait_for_status(&id, "failed").await;

    assert_eq!(view["error_code"], "131047", "{view}");
    let message = view["error_message"].as_str().unwrap();
    for needle in [
        "24-hour customer service window has closed",
        "template",
        "POST /api/messaging/send-message/",
        "\"whatsapp_template\"",
        "\"channel\": \"whatsapp\"",
    ] {
        assert!(message.contains(needle), "{needle:?} in {message}");
    }
    assert_eq!(stub.sends().len(), 1, "never retried");
}

#[tokio::test]
async fn throttling_and_metas_own_failures_are_retried_honouring_retry_after() {
    // The backoff cap must allow the wait Meta asks for (Herald caps Retry-After by it).
    let (app, stub) = spawn_with_whatsapp("[workers]\nbackoff_max_ms = 5000\n").await;
    // Meta signals throttling as an HTTP 400 with 130429: the code decides, not the status.
    stub.script(Scripted {
        retry_after: Some("2"),
        ..Scripted::error(400, 130_429)
    });
    stub.script(Scripted::error(400, 131_056));
    stub.script(Scripted::error(500, 131_000));
    stub.script(Scripted {
        status: 503,
        retry_after: None,
        code: None,
        hang: None,
    });

    let id = send_whatsapp(&app, &number("1234"), json!({})).await;
    let view = app.wait_for_status(&id, "sent").await;

    let sends = stub.sends();
    assert_eq!(
        sends.len(),
        5,
        "130429, 131056, 131000, a bare 503, then accepted"
    );
    let waited = sends[1].at.duration_since(sends[0].at);
    assert!(waited >= Duration::from_secs(2), "retried after {waited:?}");
    assert_eq!(provider_id(&view), wamid(1));
    // Every attempt was the same message.
    assert!(sends.iter().all(|s| s.json == sends[0].json));
}

#[tokio::test]
async fn a_timeout_is_retried_and_repeated_ones_fail_saying_so() {
    let (app, stub) = spawn_with_whatsapp("timeout_ms = 300\n[workers]\nmax_attempts = 2\n").await;
    let hang = || Scripted {
        hang: Some(Duration::from_secs(2)),
        ..Scripted::error(500, 131_000)
    };
    // One timeout, then accepted.
    stub.script(hang());
    let retried = send_whatsapp(&app, &number("1234"), json!({})).await;
    app.wait_for_status(&retried, "sent").await;
    assert_eq!(stub.sends().len(), 2);

    // Two timeouts: the attempts run out.
    stub.script(hang());
    stub.script(hang());
    let given_up = send_whatsapp(&app, &number("1235"), json!({})).await;
    let view = app.wait_for_status(&given_up, "failed").await;
    assert_eq!(view["error_code"], "timeout", "{view}");
    let message = view["error_message"].as_str().unwrap();
    assert!(message.contains("gave up after 2 attempts"), "{message}");
    assert!(!message.contains(PHONE_NUMBER_ID), "{message}");
}

/// Sends one WhatsApp message through the stub and returns (message id, wamid).
async fn sent_message(app: &crate::helpers::TestApp, suffix: &str) -> (String, String) {
    let id = send_whatsapp(app, &number(suffix), json!({})).await;
    let view = app.wait_for_status(&id, "sent").await;
    (id, provider_id(&view))
}

#[tokio::test]
async fn signed_status_webhooks_move_a_message_from_sent_to_delivered_to_read() {
    // Arrange
    let (app, _stub) = spawn_with_whatsapp("").await;
    let (id, wamid) = sent_message(&app, "1234").await;
    let t = unix_now();

    // Act and assert: each is committed before the 200, so visible at once.
    let r = post_webhook(&app.address, &notification(vec![status(&wamid, "sent", t)])).await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.status(&id).await["status"], "sent");
    let r = post_webhook(
        &app.address,
        &notification(vec![status(&wamid, "delivered", t + 1)]),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(app.status(&id).await["status"], "delivered");
    let r = post_webhook(
        &app.address,
        &notification(vec![status(&wamid, "read", t + 2)]),
    )
    .await;
    assert_eq!(r.status(), 200);

    let view = app.status(&id).await;
    assert_eq!(view["status"], "read", "{view}");
    assert_eq!(
        history_statuses(&view),
        ["queued", "sending", "sent", "delivered", "read"]
    );
    assert!(history_in_order(&view), "{view}");
    assert!(
        view["delivered_at"].is_string() && view["read_at"].is_string(),
        "{view}"
    );
}

#[tokio::test]
async fn read_before_delivered_leaves_an_ordered_history() {
    let (app, _stub) = spawn_with_whatsapp("").await;
    let (apart, wamid1) = sent_message(&app, "1234").await;
    let (together, wamid2) = sent_message(&app, "1235").await;
    let t = unix_now();

    // Meta reports `read` without `delivered` when a message is read at once; a late
    // `delivered` may still follow. In two POSTs, read first: the late one is dropped.
    for s in ["read", "delivered"] {
        let r = post_webhook(&app.address, &notification(vec![status(&wamid1, s, t)])).await;
        assert_eq!(r.status(), 200, "{s}");
    }
    // In one POST, out of order: both apply, in lifecycle order.
    let r = post_webhook(
        &app.address,
        &notification(vec![
            status(&wamid2, "read", t + 2),
            status(&wamid2, "delivered", t + 1),
        ]),
    )
    .await;
    assert_eq!(r.status(), 200);

    let view = app.status(&apart).await;
    assert_eq!(view["status"], "read", "{view}");
    assert_eq!(
        history_statuses(&view),
        ["queued", "sending", "sent", "read"]
    );
    assert!(history_in_order(&view), "{view}");
    let view = app.status(&together).await;
    assert_eq!(view["status"], "read", "{view}");
    assert_eq!(
        history_statuses(&view),
        ["queued", "sending", "sent", "delivered", "read"]
    );
    assert!(history_in_order(&view), "{view}");
}

#[tokio::test]
async fn a_failed_status_carries_metas_code_and_a_closed_window_names_the_template_route() {
    let (app, _stub) = spawn_with_whatsapp("").await;
    let (undeliverable, wamid1) = sent_message(&app, "1234").await;
    let (window, wamid2) = sent_message(&app, "1235").await;
    let t = unix_now();

    // Both in one POST, in two entries: every entry and change is read.
    let mut both = notification(vec![failed(&wamid1, 131_026, t)]);
    let second = notification(vec![failed(&wamid2, 131_047, t)]);
    both["entry"]
        .as_array_mut()
        .unwrap()
        .push(second["entry"][0].clone());
    let r = post_webhook(&app.address, &both).await;
    assert_eq!(r.status(), 200);

    let view = app.status(&undeliverable).await;
    assert_eq!(view["status"], "failed", "{view}");
    assert_eq!(view["error_code"], "131026");
    assert!(
        view["error_message"]
            .as_str()
            .unwrap()
            .contains("message of 131026"),
        "{view}"
    );
    let view = app.status(&window).await;
    assert_eq!(view["status"], "failed", "{view}");
    assert_eq!(view["error_code"], "131047");
    let message = view["error_message"].as_str().unwrap();
    assert!(message.contains("24-hour"), "{message}");
    assert!(message.contains("whatsapp_template"), "{message}");
}

#[tokio::test]
async fn tampered_unsigned_and_wrongly_signed_webhooks_are_refused_and_change_nothing() {
    let (app, _stub) = spawn_with_whatsapp("").await;
    let (id, wamid) = sent_message(&app, "1234").await;
    let good =
        serde_json::to_vec(&notification(vec![status(&wamid, "delivered", unix_now())])).unwrap();
    let tampered =
        serde_json::to_vec(&notification(vec![status(&wamid, "read", unix_now())])).unwrap();
    let other_key = herald::providers::whatsapp::signature::sign("another-secret", &good);
    let bare_hex = sign(&good).trim_start_matches("sha256=").to_owned();
    let cases: Vec<(&str, &[u8], Option<String>)> = vec![
        ("no signature", &good, None),
        ("an empty signature", &good, Some(String::new())),
        (
            "the body changed after signing",
            &tampered,
            Some(sign(&good)),
        ),
        ("signed with another secret", &good, Some(other_key)),
        ("the hex without its sha256= prefix", &good, Some(bare_hex)),
        ("not hex at all", &good, Some("sha256=zzzz".into())),
        (
            "a Twilio-style signature",
            &good,
            Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ=".into()),
        ),
    ];
    for (case, body, signature) in cases {
        let response = post_webhook_raw(&app.address, body, signature).await;
        expect_error_shape(response, 403, "invalid_signature", case).await;
        assert_eq!(
            app.status(&id).await["status"],
            "sent",
            "{case}: nothing changed"
        );
    }

    // Correctly signed but not JSON: 400, and still nothing changes.
    let garbage = b"{\"entry\": [";
    let response = post_webhook_raw(&app.address, garbage, Some(sign(garbage))).await;
    expect_error_shape(response, 400, "invalid_field", "malformed JSON").await;
    let wrong_shape = br#"{"entry": "not a list"}"#;
    let response = post_webhook_raw(&app.address, wrong_shape, Some(sign(wrong_shape))).await;
    expect_error_shape(response, 400, "invalid_field", "JSON of another shape").await;
    assert_eq!(app.status(&id).await["status"], "sent");

    // The good one still works afterwards.
    let response = post_webhook_raw(&app.address, &good, Some(sign(&good))).await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.status(&id).await["status"], "delivered");
}

#[tokio::test]
async fn duplicate_late_and_unknown_webhook_content_is_harmless() {
    let (app, _stub) = spawn_with_whatsapp("").await;
    let (id, wamid) = sent_message(&app, "1234").await;
    let t = unix_now();

    // `delivered` three times, a late `sent`, a status Herald does not know, a status for a
    // message that is not ours, a change of another field, and fields Meta may add one day.
    let mut noisy = notification(vec![
        status(&wamid, "delivered", t),
        status(&wamid, "delivered", t),
        status(&wamid, "sent", t),
        status(&wamid, "deleted", t),
        status("wamid.NOT_OURS", "read", t),
    ]);
    noisy["entry"][0]["changes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"field": "account_update", "value": {"event": "VERIFIED_ACCOUNT"}}));
    noisy["entry"][0]["changes"][0]["value"]["a_field_meta_adds_one_day"] = json!({"x": [1]});
    noisy["unknown_top_level"] = json!(true);
    for _ in 0..2 {
        let r = post_webhook(&app.address, &noisy).await;
        assert_eq!(r.status(), 200);
    }
    let r = post_webhook(
        &app.address,
        &notification(vec![status(&wamid, "sent", t + 5)]),
    )
    .await;
    assert_eq!(r.status(), 200);

    let view = app.status(&id).await;
    assert_eq!(view["status"], "delivered", "{view}");
    assert_eq!(
        history_statuses(&view),
        ["queued", "sending", "sent", "delivered"]
    );
    assert!(history_in_order(&view), "{view}");
}

#[tokio::test]
async fn inbound_messages_are_stored_once_in_a_whatsapp_thread() {
    let (app, _stub) = spawn_with_whatsapp("").await;
    let body = json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
            "contacts": [{"profile": {"name": "Ann"}, "wa_id": "14155551234"}],
            "messages": [
                {"from": "14155551234", "id": "wamid.IN1", "timestamp": "1700000000", "type": "text", "text": {"body": "Is my order on its way?"}},
                {"from": "14155551234", "id": "wamid.IN2", "timestamp": "1700000001", "type": "image", "image": {"id": "1003383421387256", "mime_type": "image/jpeg", "caption": "look"}},
            ],
        }}]}],
    });

    // Meta delivers the same notification twice (it retries until it sees a 200).
    for _ in 0..2 {
        let r = post_webhook(&app.address, &body).await;
        assert_eq!(r.status(), 200);
    }

    let threads: serde_json::Value = app
        .client
        .get(app.url("/threads"))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let thread = &threads["threads"][0];
    assert_eq!(threads["threads"].as_array().unwrap().len(), 1, "{threads}");
    assert_eq!(thread["channel"], "whatsapp");
    assert_eq!(thread["phone_number"], "+14155551234");
    assert_eq!(thread["unread_count"], 2, "each message once: {thread}");
    assert_eq!(thread["last_message"], "look");
    // The photo is kept as its Graph API object, which answers its download link.
    let media: Vec<Option<String>> = app
        .fetch_all::<(Option<String>,)>(
            "SELECT media_urls FROM inbound_message ORDER BY provider_message_id",
        )
        .await
        .into_iter()
        .map(|(m,)| m)
        .collect();
    let photo: Vec<String> = serde_json::from_str(media[1].as_deref().unwrap()).unwrap();
    assert!(media[0].is_none(), "a text carries no media: {media:?}");
    assert_eq!(photo.len(), 1);
    let graph_object = format!("/{}/1003383421387256", crate::whatsapp_stub::API_VERSION);
    assert!(photo[0].ends_with(&graph_object), "{photo:?}");
    let metrics = crate::helpers::metrics_text(&app.client, &app.address).await;
    for line in [
        "herald_inbound_total{provider=\"whatsapp_cloud\",result=\"stored\"} 2",
        "herald_inbound_total{provider=\"whatsapp_cloud\",result=\"repeat\"} 2",
    ] {
        assert!(metrics.contains(line), "{line}\n{metrics}");
    }
}

#[tokio::test]
async fn the_verification_get_echoes_the_challenge_only_for_our_token() {
    let (app, _stub) = spawn_with_whatsapp("").await;
    let url = format!("{}/webhooks/whatsapp", app.address);
    let get = |query: Vec<(&'static str, String)>| {
        let request = app.client.get(&url).query(&query);
        async move { request.send().await.unwrap() }
    };

    let response = get(vec![
        ("hub.mode", "subscribe".into()),
        ("hub.verify_token", VERIFY_TOKEN.into()),
        ("hub.challenge", "1158201444".into()),
    ])
    .await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    assert_eq!(response.text().await.unwrap(), "1158201444");

    let cases: Vec<(&str, Vec<(&'static str, String)>)> = vec![
        (
            "a wrong token",
            vec![
                ("hub.mode", "subscribe".into()),
                ("hub.verify_token", format!("{VERIFY_TOKEN}x")),
                ("hub.challenge", "1".into()),
            ],
        ),
        (
            "a prefix of the token",
            vec![
                ("hub.mode", "subscribe".into()),
                ("hub.verify_token", VERIFY_TOKEN[..5].into()),
                ("hub.challenge", "1".into()),
            ],
        ),
        (
            "another mode",
            vec![
                ("hub.mode", "unsubscribe".into()),
                ("hub.verify_token", VERIFY_TOKEN.into()),
                ("hub.challenge", "1".into()),
            ],
        ),
        (
            "no token",
            vec![
                ("hub.mode", "subscribe".into()),
                ("hub.challenge", "1".into()),
            ],
        ),
        (
            "no challenge",
            vec![
                ("hub.mode", "subscribe".into()),
                ("hub.verify_token", VERIFY_TOKEN.into()),
            ],
        ),
        ("nothing", vec![]),
    ];
    for (case, query) in cases {
        let response = get(query).await;
        expect_error_shape(response, 403, "invalid_signature", case).await;
    }
}

#[tokio::test]
async fn without_an_app_secret_every_webhook_is_refused() {
    let (app, _stub) = spawn_with_whatsapp("").await;
    let plain = crate::helpers::spawn_app().await;
    let body = serde_json::to_vec(&notification(vec![])).unwrap();

    let response = post_webhook_raw(&plain.address, &body, Some(sign(&body))).await;
    expect_error_shape(response, 403, "invalid_signature", "no app secret").await;
    let response = plain
        .client
        .get(format!("{}/webhooks/whatsapp", plain.address))
        .query(&[
            ("hub.mode", "subscribe"),
            ("hub.verify_token", ""),
            ("hub.challenge", "1"),
        ])
        .send()
        .await
        .unwrap();
    expect_error_shape(response, 403, "invalid_signature", "no verify token").await;
    // The configured one takes the same body.
    assert_eq!(
        post_webhook_raw(&app.address, &body, Some(sign(&body)))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn the_phone_number_is_held_to_its_rate_whatever_sender_a_message_names() {
    // Arrange: 4 messages per second for the business number.
    let (app, stub) = spawn_with_whatsapp("sender_per_second = 4\n").await;
    let mut ids = Vec::new();
    for i in 0..6 {
        // Half name a sender of their own: WhatsApp sends from the configured number anyway,
        // so they share its limit.
        let fields = if i % 2 == 0 {
            json!({})
        } else {
            json!({"sender_id": "+15017120000"})
        };
        ids.push(send_whatsapp(&app, &number(&format!("13{i:02}")), fields).await);
    }

    // Act
    app.wait_all_handed_over(&ids).await;
    eventually("all 6 sends reached Meta", PATIENCE, || {
        let n = stub.sends().len();
        async move { (n == 6).then_some(()) }
    })
    .await;

    // Assert: one send every 250 ms (governor's cell, a little slack for timer granularity).
    let sends = stub.sends();
    for s in &sends {
        assert_eq!(s.path, format!("/{API_VERSION}/{PHONE_NUMBER_ID}/messages"));
    }
    let mut times: Vec<_> = sends.iter().map(|s| s.at).collect();
    times.sort();
    for pair in times.windows(2) {
        let gap = pair[1].duration_since(pair[0]);
        assert!(gap >= Duration::from_millis(230), "{gap:?}");
    }
}

#[tokio::test]
async fn sms_is_untouched_when_whatsapp_goes_through_the_cloud_api() {
    let (app, stub) = spawn_with_whatsapp("").await;

    let sms = app.send_ok(&number("1234"), "by SMS").await;
    // The mock's receipts may move it past `sent` before a poll sees it there.
    let view = app.wait_for(&sms, crate::helpers::handed_over).await;

    assert_eq!(view["provider"], "mock", "{view}");
    assert!(stub.sends().is_empty());
}

#[tokio::test]
async fn while_the_cloud_api_keeps_failing_whatsapp_fails_over_to_the_fallback() {
    // Arrange: the mock behind the Cloud API; three failures in a row open the circuit.
    let stub = crate::whatsapp_stub::WhatsappStub::start().await;
    let toml = crate::whatsapp_stub::whatsapp_toml(
        &stub.url,
        "[providers.failover]\nfailure_threshold = 3\nopen_seconds = 600\n",
    )
    .replace(
        "whatsapp = \"whatsapp_cloud\"\n",
        "whatsapp = \"whatsapp_cloud\"\nwhatsapp_fallback = \"mock\"\n",
    );
    let app = crate::helpers::spawn_app_with(&toml).await;
    // More failures than needed: a retry that reaches Meta before the circuit opens fails too.
    for _ in 0..10 {
        stub.script(Scripted::error(500, 131_000));
    }

    // Act: three messages fail at Meta (opening the circuit), one more comes after.
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(send_whatsapp(&app, &number(&format!("12{i:02}")), json!({})).await);
    }
    for id in &ids {
        let view = app.wait_for(id, crate::helpers::handed_over).await;
        assert_eq!(view["provider"], "mock", "{view}");
    }
    let failures = stub.sends().len();
    let late = send_whatsapp(&app, &number("1299"), json!({})).await;

    // Assert: the three went out through the mock once Meta had failed them; the late one
    // went straight to the mock, Meta never asked.
    assert!((3..10).contains(&failures), "{failures}");
    let view = app.wait_for(&late, crate::helpers::handed_over).await;
    assert_eq!(view["provider"], "mock", "{view}");
    assert_eq!(stub.sends().len(), failures);
}

#[tokio::test]
async fn free_form_whatsapp_goes_only_within_24_hours_of_the_customers_last_message() {
    let (app, stub) = spawn_with_whatsapp("").await;
    let ann = number("8801");
    let free =
        json!({"phone_number": ann, "message": "Your table is ready", "channel": "whatsapp"});

    // Never wrote: refused at once, naming the template route; nothing reaches Meta.
    let r = app.send_message(&free).await;
    let body = expect_error_shape(r, 422, "whatsapp_window_closed", "never wrote").await;
    assert_eq!(body["field"], "whatsapp_template");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("whatsapp_template"),
        "{body}"
    );
    // A template may go at any time.
    let template = json!({"phone_number": ann, "message": "Hi Ann", "channel": "whatsapp",
        "whatsapp_template": {"name": "table_ready", "language": "en"}});
    assert_eq!(app.send_message(&template).await.status(), 202);

    // Wrote 25 hours ago: still closed. In a bulk request only that item is refused.
    let old = chrono::Utc::now().timestamp() - 25 * 3600;
    let mut late = notification(vec![]);
    late["entry"][0]["changes"][0]["value"]["messages"] = json!([{
        "from": ann.trim_start_matches('+'), "id": "wamid.OLD1", "timestamp": old.to_string(),
        "type": "text", "text": {"body": "see you"},
    }]);
    assert_eq!(post_webhook(&app.address, &late).await.status(), 200);
    let r = app
        .post_json(
            "/send-bulk/",
            &json!({"messages": [free, {"phone_number": number("8802"), "message": "sms is fine"}]}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let answer: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        answer["results"][0]["code"], "whatsapp_window_closed",
        "{answer}"
    );
    assert_eq!(answer["results"][1]["success"], true, "{answer}");

    // Writes now: open.
    crate::whatsapp_stub::open_window(&app, &ann).await;
    let r = app.send_message(&free).await;
    assert_eq!(r.status(), 202);
    let id = r.json::<serde_json::Value>().await.unwrap()["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_for_status(&id, "sent").await;
    let texts = stub
        .sends()
        .iter()
        .filter(|s| s.json["type"] == "text")
        .count();
    assert_eq!(
        texts, 1,
        "only the message sent within the window reached Meta"
    );
}

#[tokio::test]
async fn the_mock_has_no_24_hour_window() {
    let app = crate::helpers::spawn_app().await;
    let r = app
        .send_message(
            &json!({"phone_number": number("8803"), "message": "hi", "channel": "whatsapp"}),
        )
        .await;
    assert_eq!(r.status(), 202);
}

#[tokio::test]
async fn button_replies_list_choices_and_reactions_are_stored_as_what_the_customer_said() {
    let (app, _stub) = spawn_with_whatsapp("").await;
    let message = |id: &str, from: &str, kind: &str, content: Value| {
        let mut m = json!({"from": from, "id": id, "timestamp": "1900000000", "type": kind});
        m[kind] = content;
        m
    };
    let mut body = notification(vec![]);
    body["entry"][0]["changes"][0]["value"]["messages"] = json!([
        message(
            "wamid.B1",
            "14155558801",
            "button",
            json!({"payload": "p-yes", "text": "Yes, confirm"})
        ),
        message(
            "wamid.B2",
            "14155558802",
            "interactive",
            json!({"type": "button_reply", "button_reply": {"id": "b-stop", "title": "STOP"}})
        ),
        message(
            "wamid.B3",
            "14155558803",
            "interactive",
            json!({"type": "list_reply", "list_reply": {"id": "r2", "title": "Tuesday 10:00", "description": "x"}})
        ),
        message(
            "wamid.B4",
            "14155558804",
            "reaction",
            json!({"message_id": "wamid.OUT", "emoji": "👍"})
        ),
    ]);

    let r = post_webhook(&app.address, &body).await;

    assert_eq!(r.status(), 200);
    let mut rows: Vec<(String, String)> = app
        .fetch_all("SELECT from_number, body FROM inbound_message ORDER BY from_number")
        .await;
    rows.sort();
    assert_eq!(
        rows,
        [
            ("+14155558801".to_owned(), "Yes, confirm".to_owned()),
            ("+14155558802".to_owned(), "STOP".to_owned()),
            ("+14155558803".to_owned(), "Tuesday 10:00".to_owned()),
            ("+14155558804".to_owned(), "👍".to_owned()),
        ]
    );
    // A STOP button is a STOP.
    let opt_outs: Value = app
        .client
        .get(app.url("/opt-outs"))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        opt_outs["opt_outs"][0]["phone_number"], "+14155558802",
        "{opt_outs}"
    );
    assert_eq!(opt_outs["opt_outs"].as_array().unwrap().len(), 1);
}
