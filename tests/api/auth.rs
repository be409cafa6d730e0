use crate::helpers::{number, spawn_app};
use serde_json::{Value, json};

#[tokio::test]
async fn requests_without_a_valid_key_get_401_in_the_one_error_shape() {
    let app = spawn_app().await;
    let body = json!({"phone_number": number("0123"), "message": "hi"});
    let cases: [(&str, Option<&str>); 4] = [
        ("no header", None),
        ("unknown key", Some("Bearer not-a-key")),
        ("another scheme", Some("Basic dXNlcjpwYXNz")),
        ("empty bearer", Some("Bearer ")),
    ];
    for (case, header) in cases {
        let mut request = app.client.post(app.url("/send-message/")).json(&body);
        if let Some(h) = header {
            request = request.header("authorization", h);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{case}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "unauthorized", "{case}");
        assert_eq!(body["success"], false, "{case}");
    }
    // Auth comes first: even a malformed body gets the plain 401.
    let response = app
        .client
        .post(app.url("/send-message/"))
        .header("content-type", "text/plain")
        .body("junk")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    app.stop().await;
}

#[tokio::test]
async fn another_accounts_message_is_404_like_one_that_does_not_exist() {
    let app = spawn_app().await;
    let other_key = app.create_account("other", "10", 1_000).await;
    let id = app.send_ok(&number("0123"), "mine").await;

    let theirs = app.status_as(&id, &other_key).await;
    let missing = app
        .status_as("msg_01ARZ3NDEKTSV4RRFFQ69G5FAV", &app.api_key)
        .await;
    let malformed = app
        .status_as("'; DROP TABLE message; --", &app.api_key)
        .await;

    for (case, response) in [
        ("another account", theirs),
        ("unknown", missing),
        ("malformed", malformed),
    ] {
        assert_eq!(response.status(), 404, "{case}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "not_found", "{case}");
    }
    let odoo = app
        .post_json_as(&format!("/sms/status/{id}"), &json!({}), &other_key)
        .await;
    assert_eq!(odoo.status(), 404);
    app.stop().await;
}
