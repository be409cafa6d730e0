//! Twilio as the SMS provider, against the recording stub (`twilio_stub.rs`): what goes out,
//! how its answers and errors are understood, signed status callbacks, and reconciliation.

use crate::helpers::{
    PATIENCE, eventually, expect_error_shape, history_in_order, history_statuses, number,
};
use crate::twilio_stub::{
    ACCOUNT_SID, AUTH_TOKEN, FROM, PUBLIC_URL, Scripted, callback, post_callback, provider_id,
    sign, spawn_with_twilio,
};
use base64::Engine;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn a_send_goes_out_form_encoded_with_basic_auth_and_every_field() {
    // Arrange
    let (app, stub) = spawn_with_twilio("").await;

    // Act
    let response = app
        .send_message(&json!({
            "phone_number": "(415) 555-1234",
            "message": "Your code is 4821",
            "attachment_url": "https://cdn.example.com/a.png",
        }))
        .await;
    assert_eq!(response.status(), 202);
    let accepted = response.json::<serde_json::Value>().await.unwrap();
    let id = accepted["message_id"].as_str().unwrap().to_owned();
    let view = app.wait_for_status(&id, "sent").await;
    // The mock's timing is known; Twilio's is not promised, so none is made up.
    assert_eq!(accepted["estimated_delivery"], serde_json::Value::Null);

    // Assert
    let sends = stub.sends();
    assert_eq!(sends.len(), 1, "{sends:?}");
    let send = &sends[0];
    assert_eq!(
        send.path,
        format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json")
    );
    assert_eq!(
        send.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT_SID}:{AUTH_TOKEN}"));
    assert_eq!(send.authorization, Some(format!("Basic {basic}")));
    assert_eq!(send.field("To"), Some("+14155551234"));
    assert_eq!(send.field("From"), Some(FROM));
    assert_eq!(send.field("MessagingServiceSid"), None);
    assert_eq!(send.field("Body"), Some("Your code is 4821"));
    assert_eq!(
        send.field("MediaUrl"),
        Some("https://cdn.example.com/a.png")
    );
    assert_eq!(
        send.field("StatusCallback"),
        Some(format!("{PUBLIC_URL}/webhooks/twilio/status").as_str())
    );
    // The default validity is 4 hours: what is left of it, in seconds.
    let validity: i64 = send.field("ValidityPeriod").unwrap().parse().unwrap();
    assert!((14_000..=14_400).contains(&validity), "{validity}");
    assert_eq!(view["provider"], "twilio");
    assert_eq!(provider_id(&view), "SM00000000000000000000000000000001");
}

#[tokio::test]
async fn a_messaging_service_is_named_when_no_sender_number_is_configured() {
    let service = "MG0123456789abcdef0123456789abcdef";
    let (app, stub) = spawn_with_twilio(&format!(
        "from = \"\"\nmessaging_service_sid = \"{service}\"\n"
    ))
    .await;

    let id = app.send_ok(&number("1234"), "hello").await;
    app.wait_for_status(&id, "sent").await;

    let send = &stub.sends()[0];
    assert_eq!(send.field("MessagingServiceSid"), Some(service));
    assert_eq!(send.field("From"), None);
}

#[tokio::test]
async fn permanent_twilio_errors_fail_at_once_with_the_twilio_code() {
    let cases = [
        (21211, "21211", "an invalid To"),
        (21614, "21614", "a number that is not mobile"),
        (21610, "recipient_opted_out", "a recipient who replied STOP"),
        (30007, "30007", "a message the carrier filtered"),
    ];
    let (app, stub) = spawn_with_twilio("").await;
    for (i, (code, herald_code, case)) in cases.iter().enumerate() {
        stub.script(Scripted {
            status: 400,
            retry_after: None,
            code: *code,
        });
        let id = app.send_ok(&number(&format!("12{i:02}")), case).await;

        let view = app.wait_for_status(&id, "failed").await;

        assert_eq!(view["error_code"], *herald_code, "{case}: {view}");
        assert_eq!(
            stub.sends().len(),
            i + 1,
            "{case}: sent once, never retried"
        );
    }
    // Nothing was charged for messages Twilio refused.
    assert_eq!(app.balance().await["balance"], 1000.0);
}

#[tokio::test]
async fn a_429_with_retry_after_is_retried_but_not_before_retry_after() {
    // The backoff cap must allow the wait Twilio asks for (Herald caps Retry-After by it).
    let (app, stub) = spawn_with_twilio("[workers]\nbackoff_max_ms = 5000\n").await;
    stub.script(Scripted {
        status: 429,
        retry_after: Some("2"),
        code: 20429,
    });
    stub.script(Scripted {
        status: 503,
        retry_after: None,
        code: 20503,
    });

    let id = app.send_ok(&number("1234"), "hello").await;
    let view = app.wait_for_status(&id, "sent").await;

    let sends = stub.sends();
    assert_eq!(sends.len(), 3, "a 429, a 503, then accepted");
    let waited = sends[1].at.duration_since(sends[0].at);
    assert!(waited >= Duration::from_secs(2), "retried after {waited:?}");
    assert_eq!(provider_id(&view), "SM00000000000000000000000000000001");
}

#[tokio::test]
async fn a_twilio_that_cannot_be_reached_is_a_transient_failure() {
    // A port nobody listens on: connection refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let app = crate::helpers::spawn_app_with(&crate::twilio_stub::twilio_toml(
        &base,
        "[workers]\nmax_attempts = 2\n",
    ))
    .await;

    let id = app.send_ok(&number("1234"), "hello").await;
    let view = app.wait_for_status(&id, "failed").await;

    assert_eq!(view["error_code"], "connection_failed", "{view}");
    let message = view["error_message"].as_str().unwrap();
    assert!(message.contains("gave up after 2 attempts"), "{message}");
    assert!(
        !message.contains(ACCOUNT_SID),
        "no account in messages clients see: {message}"
    );
}

#[tokio::test]
async fn signed_status_callbacks_move_messages_on_with_twilios_code() {
    // Arrange
    let (app, _stub) = spawn_with_twilio("").await;
    let delivered = app.send_ok(&number("1234"), "one").await;
    let undelivered = app.send_ok(&number("1235"), "two").await;
    let failed = app.send_ok(&number("1236"), "three").await;
    let mut sids = Vec::new();
    for id in [&delivered, &undelivered, &failed] {
        sids.push(provider_id(&app.wait_for_status(id, "sent").await));
    }

    // Act
    let mut bodies = Vec::new();
    let mut params = callback(&sids[0], "delivered");
    params.push(("RawDlrDoneDate", "2612042301"));
    params.push(("SomeFieldTwilioAddsOneDay", "x"));
    let r = post_callback(&app.address, &params, true).await;
    assert_eq!(r.status(), 200);
    bodies.push(r.text().await.unwrap());
    let mut params = callback(&sids[1], "undelivered");
    params.extend([
        ("ErrorCode", "30003"),
        ("ErrorMessage", "Unreachable destination handset"),
    ]);
    let r = post_callback(&app.address, &params, true).await;
    assert_eq!(r.status(), 200);
    let mut params = callback(&sids[2], "failed");
    params.push(("ErrorCode", "30008"));
    let r = post_callback(&app.address, &params, true).await;
    assert_eq!(r.status(), 200);

    // Assert: committed before the 200, so visible at once.
    assert_eq!(bodies, [""], "Twilio wants an empty 200");
    let view = app.status(&delivered).await;
    assert_eq!(view["status"], "delivered", "{view}");
    assert_eq!(
        history_statuses(&view),
        ["queued", "sending", "sent", "delivered"]
    );
    let view = app.status(&undelivered).await;
    assert_eq!(view["status"], "undelivered", "{view}");
    assert_eq!(view["error_code"], "30003");
    assert_eq!(view["error_message"], "Unreachable destination handset");
    let view = app.status(&failed).await;
    assert_eq!(view["status"], "failed", "{view}");
    assert_eq!(view["error_code"], "30008");
}

#[tokio::test]
async fn tampered_unsigned_and_wrongly_signed_callbacks_are_refused_and_change_nothing() {
    let (app, _stub) = spawn_with_twilio("").await;
    let id = app.send_ok(&number("1234"), "one").await;
    let sid = provider_id(&app.wait_for_status(&id, "sent").await);
    let url = format!("{}/webhooks/twilio/status", app.address);
    let client = reqwest::Client::new();

    let good = callback(&sid, "delivered");
    let tampered = callback(&sid, "failed");
    let wrong_key = {
        let owned: Vec<(String, String)> = good
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        herald::providers::twilio::signature::sign(
            "another-token",
            &format!("{PUBLIC_URL}/webhooks/twilio/status"),
            &owned,
        )
    };
    let other_url = {
        let owned: Vec<(String, String)> = good
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        herald::providers::twilio::signature::sign(
            AUTH_TOKEN,
            &format!("{PUBLIC_URL}/webhooks/twilio/inbound"),
            &owned,
        )
    };
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Option<String>);
    let cases: Vec<Case<'_>> = vec![
        ("no signature", &good, None),
        ("an empty signature", &good, Some(String::new())),
        (
            "the body changed after signing",
            &tampered,
            Some(sign(&good)),
        ),
        ("signed with another token", &good, Some(wrong_key)),
        ("signed for another URL", &good, Some(other_url)),
        ("not base64 at all", &good, Some("%%%".into())),
    ];
    for (case, params, signature) in cases {
        let mut request = client.post(&url).form(params);
        if let Some(s) = signature {
            request = request.header("X-Twilio-Signature", s);
        }
        let response = request.send().await.unwrap();
        expect_error_shape(response, 403, "invalid_signature", case).await;
        let view = app.status(&id).await;
        assert_eq!(view["status"], "sent", "{case}: nothing changed");
    }

    // A signed callback without the fields a status callback has is a 400, still harmless.
    let params = [("AccountSid", ACCOUNT_SID)];
    let response = post_callback(&app.address, &params, true).await;
    expect_error_shape(response, 400, "invalid_field", "no MessageSid").await;

    // The body is limited.
    let big = "x".repeat(100 * 1024);
    let response = post_callback(&app.address, &[("MessageSid", &sid), ("Pad", &big)], true).await;
    expect_error_shape(response, 413, "payload_too_large", "a huge body").await;
    assert_eq!(app.status(&id).await["status"], "sent");
}

#[tokio::test]
async fn a_signature_made_with_the_default_port_is_accepted() {
    let (app, _stub) = spawn_with_twilio("").await;
    let id = app.send_ok(&number("1234"), "one").await;
    let sid = provider_id(&app.wait_for_status(&id, "sent").await);
    let params = callback(&sid, "delivered");
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    let with_port = herald::providers::twilio::signature::sign(
        AUTH_TOKEN,
        "https://herald.example.com:443/webhooks/twilio/status",
        &owned,
    );

    let response = reqwest::Client::new()
        .post(format!("{}/webhooks/twilio/status", app.address))
        .header("X-Twilio-Signature", with_port)
        .form(&params)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(app.status(&id).await["status"], "delivered");
}

#[tokio::test]
async fn replayed_and_out_of_order_callbacks_are_harmless() {
    let (app, _stub) = spawn_with_twilio("").await;
    let id = app.send_ok(&number("1234"), "one").await;
    let sid = provider_id(&app.wait_for_status(&id, "sent").await);

    // Twilio sends `sent` (nothing new), then `delivered` three times, then a late `sent`.
    for status in [
        "sent",
        "delivered",
        "delivered",
        "delivered",
        "sent",
        "queued",
    ] {
        let r = post_callback(&app.address, &callback(&sid, status), true).await;
        assert_eq!(r.status(), 200, "{status}");
    }
    let view = app.status(&id).await;
    assert_eq!(view["status"], "delivered", "{view}");
    assert_eq!(
        history_statuses(&view),
        ["queued", "sending", "sent", "delivered"]
    );
    assert!(history_in_order(&view), "{view}");
}

#[tokio::test]
async fn read_before_delivered_leaves_an_ordered_history() {
    let (app, _stub) = spawn_with_twilio("").await;
    let id = app.send_ok(&number("1234"), "one").await;
    let sid = provider_id(&app.wait_for_status(&id, "sent").await);

    for status in ["read", "delivered"] {
        let r = post_callback(&app.address, &callback(&sid, status), true).await;
        assert_eq!(r.status(), 200, "{status}");
    }

    let view = app.status(&id).await;
    assert_eq!(view["status"], "read", "{view}");
    // `delivered` came too late to be placed before `read`: dropped, never after it.
    assert_eq!(
        history_statuses(&view),
        ["queued", "sending", "sent", "read"]
    );
    assert!(history_in_order(&view), "{view}");
}

#[tokio::test]
async fn a_receipt_that_overtakes_our_record_of_the_send_is_applied_once_it_is_recorded() {
    // Arrange: the stub posts (and Herald commits) `delivered` before it answers the send.
    let (app, stub) = spawn_with_twilio("").await;
    stub.overtake_with_receipts_to(&app.address);

    // Act
    let id = app.send_ok(&number("1234"), "one").await;

    // Assert
    let view = app.wait_for_status(&id, "delivered").await;
    assert_eq!(
        history_statuses(&view),
        ["queued", "sending", "sent", "delivered"]
    );
    assert!(history_in_order(&view), "{view}");
    let (held,): (i64,) = app.fetch_one("SELECT COUNT(*) FROM pending_receipt").await;
    assert_eq!(held, 0, "the held receipt was applied and removed");
}

#[tokio::test]
async fn reconciliation_finds_a_receipt_that_never_came() {
    // Arrange: look up after 1 s, every second.
    let (app, stub) =
        spawn_with_twilio("lookup_after_seconds = 1\n[workers]\nreconcile_every_seconds = 1\n")
            .await;
    let delivered = app.send_ok(&number("1234"), "one").await;
    let undelivered = app.send_ok(&number("1235"), "two").await;
    let silent = app.send_ok(&number("1236"), "three").await;
    let sid = provider_id(&app.wait_for_status(&delivered, "sent").await);
    let sid2 = provider_id(&app.wait_for_status(&undelivered, "sent").await);
    let sid3 = provider_id(&app.wait_for_status(&silent, "sent").await);
    stub.answer_lookup(&sid, "delivered", None);
    stub.answer_lookup(&sid2, "undelivered", Some(30005));

    // Act: no callback ever comes.
    let view = app.wait_for_status(&delivered, "delivered").await;
    let view2 = app.wait_for_status(&undelivered, "undelivered").await;

    // Assert
    assert_eq!(
        history_statuses(&view),
        ["queued", "sending", "sent", "delivered"]
    );
    assert_eq!(view2["error_code"], "30005");
    let lookups = stub
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect::<Vec<_>>();
    let path = format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json");
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT_SID}:{AUTH_TOKEN}"));
    assert!(
        lookups
            .iter()
            .any(|r| r.path == path && r.authorization == Some(format!("Basic {basic}"))),
        "{lookups:?}"
    );
    // Twilio still says `sent` for the third: it stays `sent`, and was asked about.
    eventually("the silent message was looked up", PATIENCE, || {
        let asked = stub.requests().iter().any(|r| r.path.contains(&sid3));
        async move { asked.then_some(()) }
    })
    .await;
    assert_eq!(app.status(&silent).await["status"], "sent");
}

#[tokio::test]
async fn each_twilio_sender_is_held_to_its_rate() {
    // Arrange: 4 messages per second per sender, two senders.
    let (app, stub) = spawn_with_twilio("sender_per_second = 4\n").await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            app.send_ok(&number(&format!("13{i:02}")), "default sender")
                .await,
        );
        let response = app
            .send_message(&json!({
                "phone_number": number(&format!("14{i:02}")),
                "message": "own sender",
                "sender_id": "+15017120000",
            }))
            .await;
        assert_eq!(response.status(), 202);
    }

    // Act
    app.wait_all_handed_over(&ids).await;
    eventually("all 8 sends reached Twilio", PATIENCE, || {
        let n = stub.sends().len();
        async move { (n == 8).then_some(()) }
    })
    .await;

    // Assert: per sender, one send every 250 ms (governor's cell, a little slack for
    // timer granularity); the two senders do not wait for each other.
    let sends = stub.sends();
    for sender in [FROM, "+15017120000"] {
        let times: Vec<_> = sends
            .iter()
            .filter(|s| s.field("From") == Some(sender))
            .map(|s| s.at)
            .collect();
        assert_eq!(times.len(), 4, "{sender}");
        for pair in times.windows(2) {
            let gap = pair[1].duration_since(pair[0]);
            assert!(gap >= Duration::from_millis(230), "{sender}: {gap:?}");
        }
    }
    let first = |sender: &str| {
        sends
            .iter()
            .find(|s| s.field("From") == Some(sender))
            .map(|s| s.at)
            .unwrap()
    };
    let apart = if first(FROM) > first("+15017120000") {
        first(FROM).duration_since(first("+15017120000"))
    } else {
        first("+15017120000").duration_since(first(FROM))
    };
    assert!(
        apart < Duration::from_millis(200),
        "senders are independent: {apart:?}"
    );
}

#[tokio::test]
async fn a_recipient_twilio_reports_unsubscribed_is_opted_out_of_the_account() {
    let (app, stub) = spawn_with_twilio("").await;
    stub.script(Scripted {
        status: 400,
        retry_after: None,
        code: 21610,
    });
    let to = number("1234");

    let id = app.send_ok(&to, "one").await;
    app.wait_for_status(&id, "failed").await;

    // The next send is refused at the API, as after an inbound STOP, and never reaches Twilio.
    let response = app
        .send_message(&json!({"phone_number": to, "message": "two"}))
        .await;
    expect_error_shape(response, 400, "recipient_opted_out", "after 21610").await;
    assert_eq!(stub.sends().len(), 1);
}

#[tokio::test]
async fn a_429_pauses_that_sender_only() {
    // Arrange: Twilio throttles the first send for 2 s.
    let (app, stub) = spawn_with_twilio("[workers]\nbackoff_max_ms = 5000\n").await;
    stub.script(Scripted {
        status: 429,
        retry_after: Some("2"),
        code: 20429,
    });
    let throttled = app
        .send_ok(&number("1234"), "first from the throttled sender")
        .await;
    let refused_at = eventually("the throttled send", PATIENCE, async || {
        stub.sends().first().map(|r| r.at)
    })
    .await;

    // Act: one more message from that sender, and one from another.
    let same_sender = app
        .send_ok(&number("1235"), "second from the throttled sender")
        .await;
    let other = app
        .send_message(&json!({
            "phone_number": number("1236"),
            "message": "from another sender",
            "sender_id": "+15017122662",
        }))
        .await;
    assert_eq!(other.status(), 202);
    let other = other.json::<serde_json::Value>().await.unwrap()["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for id in [&throttled, &same_sender, &other] {
        app.wait_for_status(id, "sent").await;
    }

    // Assert: the other sender went at once; the throttled sender sent nothing for 2 s.
    let sends = stub.sends();
    let at = |body: &str| {
        sends
            .iter()
            .filter(|r| r.field("Body") == Some(body))
            .map(|r| r.at)
            .max()
            .unwrap()
    };
    let paused_until = refused_at + Duration::from_secs(2);
    assert!(at("first from the throttled sender") >= paused_until);
    assert!(at("second from the throttled sender") >= paused_until);
    assert!(
        at("from another sender") < paused_until,
        "the other sender was held up: {:?} after the 429",
        at("from another sender").duration_since(refused_at)
    );
    assert_eq!(
        sends
            .iter()
            .find(|r| r.field("Body") == Some("from another sender"))
            .and_then(|r| r.field("From")),
        Some("+15017122662")
    );
}
