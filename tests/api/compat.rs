//! Seed 000 (Odoo SMS API) clients: JSON-RPC envelopes in, `result` out.
use crate::helpers::{number, spawn_app};
use serde_json::{Value, json};

#[tokio::test]
async fn sms_send_and_status_work_with_the_json_rpc_envelope() {
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/sms/send",
            &json!({"jsonrpc": "2.0", "id": 7, "params": {"phone_number": number("0003"), "message": "Hello from Odoo!"}}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["jsonrpc"], "2.0");
    assert_eq!(body["id"], 7);
    let result = &body["result"];
    assert_eq!(result["success"], true);
    assert_eq!(result["message_id"], result["sms_id"]);
    let id = result["message_id"].as_str().unwrap().to_owned();
    app.wait_for_status(&id, "delivered").await;

    let status = app
        .post_json(
            &format!("/sms/status/{id}"),
            &json!({"jsonrpc": "2.0", "id": "s1", "params": {}}),
        )
        .await;
    assert_eq!(status.status(), 200);
    let status: Value = status.json().await.unwrap();
    assert_eq!(status["id"], "s1");
    assert_eq!(status["result"]["status"], "delivered");
    assert_eq!(status["result"]["phone_number"], number("0003"));
    let sent_date = status["result"]["sent_date"].as_str().unwrap();
    assert_eq!(sent_date.len(), "2025-12-03 10:30:00".len(), "{sent_date}");
    app.stop().await;
}

#[tokio::test]
async fn sms_endpoints_also_answer_plain_bodies_and_errors_in_the_callers_style() {
    let app = spawn_app().await;
    let plain = app
        .post_json(
            "/sms/send",
            &json!({"phone_number": number("0123"), "message": "plain"}),
        )
        .await;
    assert_eq!(plain.status(), 200);
    let plain: Value = plain.json().await.unwrap();
    assert!(plain["message_id"].is_string() && plain.get("result").is_none());

    let enveloped_error = app
        .post_json(
            "/sms/send",
            &json!({"jsonrpc": "2.0", "id": 9, "params": {"phone_number": "+1234567890", "message": "x"}}),
        )
        .await;
    assert_eq!(enveloped_error.status(), 400);
    let e: Value = enveloped_error.json().await.unwrap();
    assert_eq!(e["id"], 9);
    assert_eq!(e["error"]["code"], 400);
    assert_eq!(e["error"]["data"]["code"], "invalid_phone_number");
    assert_eq!(e["error"]["data"]["field"], "phone_number");

    let status_without_body = app
        .client
        .post(app.url(&format!(
            "/sms/status/{}",
            plain["message_id"].as_str().unwrap()
        )))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(status_without_body.status(), 200);
    let s: Value = status_without_body.json().await.unwrap();
    assert_eq!(s["phone_number"], number("0123"));
    app.stop().await;
}
