use crate::helpers::{number, spawn_app};
use serde_json::Value;

fn history(view: &Value) -> Vec<String> {
    view["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn every_mock_rule_ends_where_the_spec_says() {
    // Arrange
    let app = spawn_app().await;
    // (suffix, final status, error_code, history)
    let cases: [(&str, &str, Option<&str>, &[&str]); 6] = [
        (
            "0000",
            "failed",
            Some("unreachable"),
            &["queued", "sending", "failed"],
        ),
        (
            "0001",
            "read",
            None,
            &["queued", "sending", "sent", "delivered", "read"],
        ),
        ("0002", "sent", None, &["queued", "sending", "sent"]),
        (
            "0003",
            "delivered",
            None,
            &["queued", "sending", "sent", "delivered"],
        ),
        (
            "0004",
            "undelivered",
            Some("undelivered"),
            &["queued", "sending", "sent", "undelivered"],
        ),
        (
            "0005",
            "read",
            None,
            &["queued", "sending", "sent", "delivered", "read"],
        ),
    ];

    // Act
    let mut ids = Vec::new();
    for (suffix, ..) in &cases {
        ids.push(app.send_ok(&number(suffix), "rule check").await);
    }

    // Assert
    for ((suffix, status, code, expected), id) in cases.iter().zip(&ids) {
        let view = app.wait_for_status(id, status).await;
        assert_eq!(view["error_code"].as_str(), *code, "{suffix}: {view}");
        assert_eq!(history(&view), *expected, "{suffix}: {view}");
    }
    // 0002 and 0003 must *stay* where they are: give the mock time to send any receipt it
    // (wrongly) had planned, by waiting for a normal number sent after them to be read.
    let later = app.send_ok(&number("0006"), "later").await;
    app.wait_for_status(&later, "read").await;
    assert_eq!(app.status(&ids[2]).await["status"], "sent");
    assert_eq!(app.status(&ids[3]).await["status"], "delivered");
    app.stop().await;
}

#[tokio::test]
async fn a_flaky_number_is_retried_and_sent_on_the_third_attempt() {
    let app = spawn_app().await;
    let id = app.send_ok(&number("0001"), "third time lucky").await;
    let view = app.wait_for_status(&id, "read").await;
    // The last transient error stays visible for diagnosis until a later one replaces it;
    // a success clears it.
    assert!(view["error_code"].is_null(), "{view}");
    let rows: (i64,) = app
        .fetch_one(&format!(
            "SELECT attempts FROM message WHERE message_id = '{id}'"
        ))
        .await;
    assert_eq!(rows.0, 3, "two transient failures, then the send");
    app.stop().await;
}

#[tokio::test]
async fn whatsapp_messages_follow_the_same_rules() {
    let app = spawn_app().await;
    let response = app
        .send_message(&serde_json::json!({
            "phone_number": number("0005"), "message": "hola", "channel": "whatsapp"
        }))
        .await;
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["cost"], 0.005, "WhatsApp is priced per message");
    let view = app
        .wait_for_status(body["message_id"].as_str().unwrap(), "read")
        .await;
    assert_eq!(view["channel"], "whatsapp");
    app.stop().await;
}
