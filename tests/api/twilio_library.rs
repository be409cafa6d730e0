//! The official `twilio` Python library (PyPI) sends, fetches and lists messages through
//! Herald's Twilio-compatible API, changing only its base URL and credentials
//! (`tests/twilio_library/check.py`). The library is installed into `target/twilio-venv`
//! the first time (pinned), as the contract step installs schemathesis.

use crate::helpers::{API_KEY, spawn_app, spawn_app_with};
use std::path::PathBuf;
use std::process::Command;

/// Settings for Twilio-format status callbacks to an endpoint on loopback.
const SIGNING: &str = "[credentials]\nkey = \"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\"\n\
    [webhooks]\nallow_private_targets = true\n";

/// The library version the check was written against.
const TWILIO: &str = "9.13.0";

fn python() -> PathBuf {
    crate::helpers::python_with("twilio-venv", "twilio", TWILIO)
}

/// The bootstrap account and its Twilio-compatible `Messages.json` URL.
async fn twilio_messages(app: &crate::helpers::TestApp) -> (herald::domain::AccountId, String) {
    let account = app
        .store
        .find_account(herald::app::BOOTSTRAP_ACCOUNT)
        .await
        .expect("the bootstrap account");
    let url = format!(
        "{}/2010-04-01/Accounts/{account}/Messages.json",
        app.address
    );
    (account, url)
}

#[tokio::test]
async fn the_official_twilio_library_sends_fetches_and_lists_through_herald() {
    // Arrange: a credentials.key (it seals the key that signs status callbacks), and the
    // application's callback endpoint on loopback allowed.
    let app = spawn_app_with(SIGNING).await;
    let (account, _) = twilio_messages(&app).await;
    let other_key = app.create_account("other", "10", 1000).await;
    let other = app
        .store
        .find_account("other")
        .await
        .expect("the other account");
    let python = tokio::task::spawn_blocking(python).await.unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/twilio_library/check.py");

    // Act and assert: the script asserts each step; its last line counts them.
    let mut command = Command::new(python);
    command
        .arg(script)
        .env("HERALD_URL", &app.address)
        .env("HERALD_ACCOUNT", account.as_str())
        .env("HERALD_KEY", API_KEY)
        .env("HERALD_OTHER_ACCOUNT", other.as_str())
        .env("HERALD_OTHER_KEY", other_key);
    crate::helpers::run_check_script(command, "twilio library: 6 checks passed").await;
    app.stop().await;
}

#[tokio::test]
async fn bad_paging_and_credentials_get_twilio_shaped_answers_never_a_500() {
    let app = spawn_app().await;
    let (account, url) = twilio_messages(&app).await;
    let get = async |query: &str, password: &str| {
        let response = app
            .client
            .get(format!("{url}?{query}"))
            .basic_auth(account.as_str(), Some(password))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json::<serde_json::Value>().await.unwrap())
    };

    // A page number at the top of the range, on a full page, still pages (no overflow
    // computing `end` or the next page's number).
    app.send_ok(&crate::helpers::number("7100"), "one").await;
    let (status, page) = get("Page=18446744073709551615&PageSize=1", API_KEY).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(1), "{page}");
    assert!(page["next_page_uri"].is_string(), "{page}");
    for (query, code) in [
        ("PageSize=0", 20001),
        ("PageSize=1001", 20001),
        ("PageToken=nonsense", 20001),
        ("DateSent=yesterday", 20001),
        ("To=12", 21211),
    ] {
        let (status, body) = get(query, API_KEY).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["code"], code, "{query}: {body}");
        assert_eq!(body["status"], 400, "{query}: {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (status, body) = get("", "wrong").await;
    assert_eq!(
        (status, body["code"].clone()),
        (401, serde_json::json!(20003))
    );
    app.stop().await;
}

#[tokio::test]
async fn validity_period_shortens_how_long_a_message_may_wait() {
    // Arrange
    let app = spawn_app().await;
    let (account, url) = twilio_messages(&app).await;
    let send = async |validity: &str| {
        let response = app
            .client
            .post(&url)
            .basic_auth(account.as_str(), Some(API_KEY))
            .form(&[
                ("To", crate::helpers::number("7200").as_str()),
                ("From", "HERALD"),
                ("Body", "short-lived"),
                ("ValidityPeriod", validity),
            ])
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json::<serde_json::Value>().await.unwrap())
    };

    // Act
    let (status, created) = send("5").await;
    let (refused, body) = send("0").await;

    // Assert: stored to expire 5 s after it became due (the default is hours).
    assert_eq!(status, 201, "{created}");
    let pool = app.pool().await;
    let (due, expires): (i64, i64) =
        sqlx::query_as("SELECT due_at, expires_at FROM message WHERE message_id = ?")
            .bind(created["sid"].as_str().unwrap())
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(expires - due, 5_000);
    assert_eq!(
        (refused, body["code"].clone()),
        (400, serde_json::json!(20001))
    );
    app.stop().await;
}

#[tokio::test]
async fn a_status_callback_is_refused_where_it_cannot_be_signed_or_sent() {
    // Arrange: one Herald without credentials.key, one with it but private targets refused.
    let unsealed = spawn_app().await;
    let sealed = spawn_app_with(
        "[credentials]\nkey = \"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\"\n\
         [webhooks]\nallow_private_targets = false\n",
    )
    .await;
    let send = async |app: &crate::helpers::TestApp, callback: &str| {
        let (account, url) = twilio_messages(app).await;
        let response = app
            .client
            .post(&url)
            .basic_auth(account.as_str(), Some(API_KEY))
            .form(&[
                ("To", crate::helpers::number("7300").as_str()),
                ("From", "HERALD"),
                ("Body", "callback"),
                ("StatusCallback", callback),
            ])
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json::<serde_json::Value>().await.unwrap())
    };

    // Act
    let (no_key, no_key_body) = send(&unsealed, "https://example.com/cb").await;
    let (private, private_body) = send(&sealed, "http://127.0.0.1:9/cb").await;
    let (fine, fine_body) = send(&sealed, "https://example.com/cb").await;

    // Assert: refused, not ignored, and nothing stored for either.
    assert_eq!(
        (no_key, no_key_body["code"].clone()),
        (400, serde_json::json!(21609))
    );
    assert!(
        no_key_body["message"]
            .as_str()
            .is_some_and(|m| m.contains("credentials.key")),
        "{no_key_body}"
    );
    assert_eq!(
        (private, private_body["code"].clone()),
        (400, serde_json::json!(21609)),
        "{private_body}"
    );
    assert_eq!(fine, 201, "{fine_body}");
    let pool = sealed.pool().await;
    let stored: Vec<(Option<String>, Option<String>)> =
        sqlx::query_as("SELECT status_callback, twilio_callback_signer FROM message")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(stored.len(), 1, "only the accepted one");
    let (callback, signer) = &stored[0];
    assert_eq!(callback.as_deref(), Some("https://example.com/cb"));
    let signer = signer.as_deref().expect("a sealed signer");
    assert!(
        !signer.contains(API_KEY),
        "the key is never stored in the clear"
    );
    assert_eq!(
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM message")
            .fetch_one(&unsealed.pool().await)
            .await
            .unwrap(),
        0
    );
    unsealed.stop().await;
    sealed.stop().await;
}
