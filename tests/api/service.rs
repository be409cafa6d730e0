//! Health, readiness, metrics and the OpenAPI description.
use crate::helpers::{number, spawn_app};

#[tokio::test]
async fn health_and_readiness_answer_without_a_key() {
    let app = spawn_app().await;
    for path in ["/healthz", "/readyz"] {
        let r = app
            .client
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn openapi_describes_every_endpoint() {
    let app = spawn_app().await;
    let doc: serde_json::Value = app
        .client
        .get(format!("{}/openapi.json", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/api/messaging/send-message/",
        "/api/messaging/send-bulk/",
        "/api/messaging/validate-phone/",
        "/api/messaging/message/{message_id}/status/",
        "/api/messaging/account/balance/",
        "/api/messaging/sms/send",
        "/api/messaging/sms/status/{message_id}",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} is missing from /openapi.json"
        );
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    app.stop().await;
}

#[tokio::test]
async fn metrics_count_accepted_and_sent_messages_and_show_the_queue() {
    let app = spawn_app().await;
    let id = app.send_ok(&number("0002"), "counted").await;
    app.wait_for_status(&id, "sent").await;

    let text = crate::helpers::metrics_text(&app.client, &app.address).await;

    assert!(
        text.contains("herald_messages_accepted_total{channel=\"sms\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("herald_messages_delivery_finished_total{channel=\"sms\",status=\"sent\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("herald_queue_depth{priority=\"low\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("herald_http_request_duration_seconds_bucket"),
        "{text}"
    );
    app.stop().await;
}
