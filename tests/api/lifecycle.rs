use crate::helpers::{number, spawn_app};
use serde_json::json;

#[tokio::test]
async fn a_message_moves_from_queued_to_read_with_its_whole_history() {
    // Arrange
    let app = spawn_app().await;

    // Act: the seed 004 Python example, with a valid number.
    let response = app
        .send_message(&json!({
            "phone_number": number("0123"),
            "message": "Hello World!",
            "priority": "normal",
        }))
        .await;

    // Assert
    assert_eq!(response.status(), 202);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["success"], true);
    assert_eq!(body["status"], "queued");
    assert_eq!(body["priority"], "normal");
    assert_eq!(body["segments"], 1);
    assert_eq!(body["cost"], 0.0075);
    let id = body["message_id"].as_str().unwrap();
    assert!(id.starts_with("msg_"));

    let view = app.wait_for_status(id, "read").await;
    let statuses: Vec<&str> = view["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["queued", "sending", "sent", "delivered", "read"]);
    let times: Vec<&str> = view["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["at"].as_str().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "times never go back: {times:?}"
    );
    assert_eq!(view["phone_number"], number("0123"));
    assert_eq!(view["provider"], "mock");
    assert!(
        view["sent_at"].is_string()
            && view["delivered_at"].is_string()
            && view["read_at"].is_string()
    );

    let balance = app.balance().await;
    assert_eq!(balance["balance"], 1000.0 - 0.0075);
    assert_eq!(balance["messages_sent_today"], 1);
    app.stop().await;
}
