//! Accounts that bring their own Twilio account or WhatsApp number
//! (`/api/messaging/providers/{provider}`): their messages go out with their credentials,
//! their webhooks are checked with their secrets, the secrets are never shown and are sealed
//! at rest, and a Herald that cannot open them sends nothing rather than sending through the
//! deployment's provider.

use crate::helpers::{
    PATIENCE, TestApp, eventually, expect_error_shape, number, spawn_app_with, spawn_in, test_dir,
};
use crate::twilio_stub::{
    ACCOUNT_SID, AUTH_TOKEN, FROM, PUBLIC_URL, TwilioStub, provider_id, sign_with, twilio_toml,
};
use crate::whatsapp_stub::{
    self, APP_SECRET, WhatsappStub, notification, post_webhook_raw, send_whatsapp,
    spawn_with_whatsapp, status,
};
use base64::Engine;
use herald::providers::twilio::STATUS_PATH;
use herald::providers::whatsapp::signature;
use serde_json::{Value, json};

const OWN_SID: &str = "AC99999999999999999999999999999999";
const OWN_TOKEN: &str = "own-auth-token-1c9e";
const OWN_FROM: &str = "+15005550006";
const OWN_NUMBER_ID: &str = "555000111";
const OWN_ACCESS_TOKEN: &str = "own-wa-access-token-3b7d";
const OWN_APP_SECRET: &str = "own-app-secret-8e21";
const OWN_VERIFY_TOKEN: &str = "own-verify-token-60aa";

/// Config that sets `credentials.key` to 32 bytes of `byte`.
fn key_toml(byte: u8) -> String {
    let key = base64::engine::general_purpose::STANDARD.encode([byte; 32]);
    format!("[credentials]\nkey = \"{key}\"\n")
}

fn own_twilio() -> Value {
    json!({
        "account_sid": OWN_SID,
        "auth_token": OWN_TOKEN,
        "senders": [{"from": OWN_FROM, "per_second": 10}],
    })
}

async fn put(app: &TestApp, key: &str, provider: &str, body: &Value) -> reqwest::Response {
    app.client
        .put(app.url(&format!("/providers/{provider}")))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn get(app: &TestApp, key: &str, path: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

/// A Twilio status callback for `sid`, naming the Twilio account `account_sid`, signed
/// with `auth_token`.
async fn twilio_callback(
    app: &TestApp,
    account_sid: &str,
    auth_token: &str,
    sid: &str,
    status: &str,
) -> reqwest::Response {
    let params = [
        ("AccountSid", account_sid),
        ("MessageSid", sid),
        ("MessageStatus", status),
    ];
    app.client
        .post(format!("{}{STATUS_PATH}", app.address))
        .header("X-Twilio-Signature", sign_with(auth_token, &params))
        .form(&params)
        .send()
        .await
        .unwrap()
}

fn basic(sid: &str, token: &str) -> String {
    let pair = base64::engine::general_purpose::STANDARD.encode(format!("{sid}:{token}"));
    format!("Basic {pair}")
}

/// The stub's send to `to` (exactly one).
fn send_to(stub: &TwilioStub, to: &str) -> crate::twilio_stub::Recorded {
    let sends: Vec<_> = stub
        .sends()
        .into_iter()
        .filter(|s| s.field("To") == Some(to))
        .collect();
    assert_eq!(sends.len(), 1, "{sends:?}");
    sends.into_iter().next().unwrap()
}

#[tokio::test]
async fn an_account_sends_through_its_own_twilio_account_and_never_sees_its_token_again() {
    // Arrange: the deployment sends SMS through its own Twilio account; `other` brings none.
    let (app, stub) = {
        let stub = TwilioStub::start().await;
        let app = spawn_app_with(&twilio_toml(&stub.url, &key_toml(7))).await;
        (app, stub)
    };
    let other = app.create_account("other", "100.00", 1000).await;

    // Act: set credentials.
    let response = put(&app, &app.api_key, "twilio", &own_twilio()).await;

    // Assert: answered without the token, and only to this account.
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(!text.contains(OWN_TOKEN), "{text}");
    let view: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(view["provider"], "twilio");
    assert_eq!(view["channel"], "sms");
    assert_eq!(view["account_sid"], OWN_SID);
    assert_eq!(
        view["senders"],
        json!([{"from": OWN_FROM, "per_second": 10}])
    );
    assert_eq!(view["secrets_set"], json!(["auth_token"]));
    let fetched: Value = get(&app, &app.api_key, "/providers/twilio")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(fetched, view);
    let listed: Value = get(&app, &app.api_key, "/providers")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["providers"], json!([view]));
    assert_eq!(get(&app, &other, "/providers/twilio").await.status(), 404);
    let theirs: Value = get(&app, &other, "/providers").await.json().await.unwrap();
    assert_eq!(theirs["providers"], json!([]));

    // Sealed at rest: neither column holds the token.
    let (public, sealed): (String, Vec<u8>) = app
        .fetch_one("SELECT public, sealed FROM provider_credential")
        .await;
    assert!(!public.contains(OWN_TOKEN));
    assert!(
        !sealed
            .windows(OWN_TOKEN.len())
            .any(|w| w == OWN_TOKEN.as_bytes())
    );

    // Sends: this account's through its Twilio account, from its sender; the other's
    // through the deployment's.
    let mine = app.send_ok(&number("2001"), "mine").await;
    let response = app
        .post_json_as(
            "/send-message/",
            &json!({"phone_number": number("2002"), "message": "theirs"}),
            &other,
        )
        .await;
    assert_eq!(response.status(), 202);
    let theirs_id = response.json::<Value>().await.unwrap()["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sid = provider_id(&app.wait_for_status(&mine, "sent").await);
    app.wait_for_as(&theirs_id, &other, |s| s == "sent").await;
    let own_send = send_to(&stub, &number("2001"));
    assert_eq!(
        own_send.path,
        format!("/2010-04-01/Accounts/{OWN_SID}/Messages.json")
    );
    assert_eq!(own_send.authorization, Some(basic(OWN_SID, OWN_TOKEN)));
    assert_eq!(own_send.field("From"), Some(OWN_FROM));
    assert_eq!(
        own_send.field("StatusCallback"),
        Some(format!("{PUBLIC_URL}{STATUS_PATH}").as_str())
    );
    let their_send = send_to(&stub, &number("2002"));
    assert_eq!(
        their_send.path,
        format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json")
    );
    assert_eq!(
        their_send.authorization,
        Some(basic(ACCOUNT_SID, AUTH_TOKEN))
    );
    assert_eq!(their_send.field("From"), Some(FROM));

    // Its callbacks are checked with its token: the deployment's token does not sign them.
    let forged = twilio_callback(&app, OWN_SID, AUTH_TOKEN, &sid, "delivered").await;
    expect_error_shape(
        forged,
        403,
        "invalid_signature",
        "signed with another token",
    )
    .await;
    assert_eq!(app.status(&mine).await["status"], "sent");
    let signed = twilio_callback(&app, OWN_SID, OWN_TOKEN, &sid, "delivered").await;
    assert_eq!(signed.status(), 200);
    assert_eq!(app.status(&mine).await["status"], "delivered");

    // Removed: its next message goes through the deployment's account again.
    let removed = app
        .client
        .delete(app.url("/providers/twilio"))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 200);
    assert_eq!(
        get(&app, &app.api_key, "/providers/twilio").await.status(),
        404
    );
    let after = app.send_ok(&number("2003"), "after").await;
    app.wait_for_status(&after, "sent").await;
    assert_eq!(
        send_to(&stub, &number("2003")).authorization,
        Some(basic(ACCOUNT_SID, AUTH_TOKEN))
    );
}

#[tokio::test]
async fn credentials_are_refused_with_the_error_shape_and_nothing_is_kept() {
    // No credentials.key: nothing can be sealed, so nothing is taken.
    let stub = TwilioStub::start().await;
    let keyless = spawn_app_with(&twilio_toml(&stub.url, "")).await;
    let r = put(&keyless, &keyless.api_key, "twilio", &own_twilio()).await;
    let body = expect_error_shape(r, 422, "unsupported", "no credentials.key").await;
    assert!(
        body["error"].as_str().unwrap().contains("credentials.key"),
        "{body}"
    );

    // No public_url: Twilio could not call back.
    let no_url = spawn_app_with(&key_toml(7)).await;
    let r = put(&no_url, &no_url.api_key, "twilio", &own_twilio()).await;
    let body = expect_error_shape(r, 422, "unsupported", "no public_url").await;
    assert!(
        body["error"].as_str().unwrap().contains("public_url"),
        "{body}"
    );

    let app = spawn_app_with(&twilio_toml(&stub.url, &key_toml(7))).await;
    let with = |field: &str, value: Value| {
        let mut body = own_twilio();
        body[field] = value;
        body
    };
    let cases = [
        (
            "twilio",
            with("account_sid", json!("AC123")),
            400,
            "invalid_field",
            Some("account_sid"),
        ),
        (
            "twilio",
            with("auth_token", json!("has space")),
            400,
            "invalid_field",
            Some("auth_token"),
        ),
        (
            "twilio",
            with("auth_token", json!("")),
            400,
            "invalid_field",
            Some("auth_token"),
        ),
        (
            "twilio",
            with("senders", json!([])),
            400,
            "invalid_field",
            Some("senders"),
        ),
        (
            "twilio",
            with("senders", json!([{"from": "+0123"}])),
            400,
            "invalid_field",
            Some("senders[0].from"),
        ),
        (
            "twilio",
            with("senders", json!([{"from": OWN_FROM}, {"from": OWN_FROM}])),
            400,
            "invalid_field",
            Some("senders[1].from"),
        ),
        (
            "twilio",
            with("senders", json!([{"from": OWN_FROM, "per_second": 0}])),
            400,
            "invalid_field",
            Some("senders[0].per_second"),
        ),
        (
            "twilio",
            json!({"phone_number_id": "1"}),
            400,
            "missing_field",
            Some("account_sid"),
        ),
        (
            "whatsapp_cloud",
            json!({"phone_number_id": "12ab", "access_token": "t", "app_secret": "s"}),
            400,
            "invalid_field",
            Some("phone_number_id"),
        ),
        ("nexmo", own_twilio(), 404, "not_found", None),
    ];
    for (provider, body, status, code, field) in cases {
        let case = format!("{provider} {body}");
        let r = put(&app, &app.api_key, provider, &body).await;
        let answer = expect_error_shape(r, status, code, &case).await;
        if let Some(field) = field {
            assert_eq!(answer["field"], field, "{case}: {answer}");
        }
    }
    let r = app
        .client
        .put(app.url("/providers/twilio"))
        .bearer_auth(&app.api_key)
        .body("account_sid=AC")
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    expect_error_shape(r, 415, "unsupported_media_type", "a form body").await;
    let r = app
        .client
        .put(app.url("/providers/twilio"))
        .json(&own_twilio())
        .send()
        .await
        .unwrap();
    expect_error_shape(r, 401, "unauthorized", "no key").await;
    let listed: Value = get(&app, &app.api_key, "/providers")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["providers"], json!([]), "nothing was kept");

    // One Twilio account belongs to one Herald account: its callbacks must find one owner.
    assert_eq!(
        put(&app, &app.api_key, "twilio", &own_twilio())
            .await
            .status(),
        200
    );
    let other = app.create_account("other", "100.00", 1000).await;
    let r = put(&app, &other, "twilio", &own_twilio()).await;
    expect_error_shape(r, 409, "invalid_state", "another account's Twilio account").await;
    let theirs: Value = get(&app, &other, "/providers").await.json().await.unwrap();
    assert_eq!(theirs["providers"], json!([]));
    // The owner may replace its own (a new token): still one row, updated.
    let mut rotated = own_twilio();
    rotated["auth_token"] = json!("rotated-token-22");
    assert_eq!(
        put(&app, &app.api_key, "twilio", &rotated).await.status(),
        200
    );
    let (rows,): (i64,) = app
        .fetch_one("SELECT count(*) FROM provider_credential")
        .await;
    assert_eq!(rows, 1);
}

#[tokio::test]
async fn a_herald_that_cannot_open_an_accounts_credentials_sends_nothing_until_it_can() {
    // Arrange: credentials sealed under key 7.
    let stub = TwilioStub::start().await;
    let first = spawn_in(test_dir(), &twilio_toml(&stub.url, &key_toml(7)), true).await;
    assert_eq!(
        put(&first, &first.api_key, "twilio", &own_twilio())
            .await
            .status(),
        200
    );
    let dir = first.stop().await;

    // Act: restarted with another key, the account sends.
    let patient = "[workers]\nmax_attempts = 1000\n";
    let wrong = spawn_in(
        dir,
        &twilio_toml(&stub.url, &format!("{}{patient}", key_toml(8))),
        true,
    )
    .await;
    let id = wrong.send_ok(&number("3001"), "held").await;

    // Assert: it waits, saying why, and goes to no Twilio account at all (not the
    // deployment's in place of the account's).
    let view = eventually("the message says why it waits", PATIENCE, || async {
        let view = wrong.status(&id).await;
        (view["error_code"] == "provider_credentials_unavailable").then_some(view)
    })
    .await;
    // Still `sending` (a status never moves back), handed to no provider.
    assert_eq!(view["status"], "sending", "{view}");
    assert_eq!(view["provider"], Value::Null, "{view}");
    assert!(
        view["error_message"]
            .as_str()
            .unwrap()
            .contains("credentials.key"),
        "{view}"
    );
    assert_eq!(stub.send_count(), 0);

    // The right key back: it goes out through the account's own Twilio account.
    let dir = wrong.stop().await;
    let right = spawn_in(
        dir,
        &twilio_toml(&stub.url, &format!("{}{patient}", key_toml(7))),
        true,
    )
    .await;
    right.wait_for_status(&id, "sent").await;
    assert_eq!(
        send_to(&stub, &number("3001")).authorization,
        Some(basic(OWN_SID, OWN_TOKEN))
    );
}

#[tokio::test]
async fn reconciliation_asks_the_accounts_own_twilio_account() {
    // The deployment does not use Twilio at all: only the account does.
    let stub = TwilioStub::start().await;
    let app = spawn_app_with(&format!(
        "[server]\npublic_url = \"{PUBLIC_URL}\"\n\
         [providers.twilio]\nbase_url = \"{}\"\nlookup_after_seconds = 1\n\
         [workers]\nreconcile_every_seconds = 1\n{}",
        stub.url,
        key_toml(7)
    ))
    .await;
    assert_eq!(
        put(&app, &app.api_key, "twilio", &own_twilio())
            .await
            .status(),
        200
    );
    let id = app.send_ok(&number("4001"), "looked up").await;
    let sid = provider_id(&app.wait_for_status(&id, "sent").await);
    stub.answer_lookup(&sid, "delivered", None);

    // No callback ever comes; the lookup finds the receipt.
    app.wait_for_status(&id, "delivered").await;

    let path = format!("/2010-04-01/Accounts/{OWN_SID}/Messages/{sid}.json");
    let lookups: Vec<_> = stub
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    assert!(
        lookups
            .iter()
            .any(|r| r.path == path && r.authorization == Some(basic(OWN_SID, OWN_TOKEN))),
        "{lookups:?}"
    );
}

#[tokio::test]
async fn an_account_sends_whatsapp_from_its_own_number_and_its_webhooks_use_its_secret() {
    // Arrange
    let (app, stub): (TestApp, WhatsappStub) = spawn_with_whatsapp(&key_toml(7)).await;
    let body = json!({
        "phone_number_id": OWN_NUMBER_ID,
        "access_token": OWN_ACCESS_TOKEN,
        "app_secret": OWN_APP_SECRET,
        "verify_token": OWN_VERIFY_TOKEN,
        "per_second": 20,
    });

    // Act
    let response = put(&app, &app.api_key, "whatsapp_cloud", &body).await;

    // Assert: no secret in the answer.
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    for secret in [OWN_ACCESS_TOKEN, OWN_APP_SECRET, OWN_VERIFY_TOKEN] {
        assert!(!text.contains(secret), "{text}");
    }
    let view: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(view["channel"], "whatsapp");
    assert_eq!(view["phone_number_id"], OWN_NUMBER_ID);
    assert_eq!(view["per_second"], 20);
    assert_eq!(
        view["secrets_set"],
        json!(["access_token", "app_secret", "verify_token"])
    );

    // Sent from its number with its token.
    let id = send_whatsapp(&app, &number("5001"), json!({})).await;
    let sent = app.wait_for_status(&id, "sent").await;
    let sends = stub.sends();
    assert_eq!(sends.len(), 1, "{sends:?}");
    assert_eq!(
        sends[0].path,
        format!("/{}/{OWN_NUMBER_ID}/messages", whatsapp_stub::API_VERSION)
    );
    assert_eq!(
        sends[0].authorization,
        Some(format!("Bearer {OWN_ACCESS_TOKEN}"))
    );

    // Its number's notifications are checked with its app secret.
    let wamid = provider_id(&sent);
    let mut delivered = notification(vec![status(&wamid, "delivered", 1_900_000_000)]);
    delivered["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] =
        json!(OWN_NUMBER_ID);
    let raw = serde_json::to_vec(&delivered).unwrap();
    let forged =
        post_webhook_raw(&app.address, &raw, Some(signature::sign(APP_SECRET, &raw))).await;
    expect_error_shape(forged, 403, "invalid_signature", "the deployment's secret").await;
    assert_eq!(app.status(&id).await["status"], "sent");
    let signed = post_webhook_raw(
        &app.address,
        &raw,
        Some(signature::sign(OWN_APP_SECRET, &raw)),
    )
    .await;
    assert_eq!(signed.status(), 200);
    assert_eq!(app.status(&id).await["status"], "delivered");

    // Its app's verification GET is answered for its verify token only.
    let verify = |token: &'static str| {
        let request = app
            .client
            .get(format!("{}/webhooks/whatsapp", app.address))
            .query(&[
                ("hub.mode", "subscribe"),
                ("hub.verify_token", token),
                ("hub.challenge", "1158201444"),
            ]);
        async move { request.send().await.unwrap() }
    };
    let answered = verify(OWN_VERIFY_TOKEN).await;
    assert_eq!(answered.status(), 200);
    assert_eq!(answered.text().await.unwrap(), "1158201444");
    let refused = verify("not-a-token").await;
    expect_error_shape(refused, 403, "invalid_signature", "an unknown verify token").await;
}

#[tokio::test]
async fn an_accounts_own_sender_goes_at_the_rate_it_set() {
    // The deployment's senders are unlimited here; the account says its long code takes 2/s.
    let stub = TwilioStub::start().await;
    let app = spawn_app_with(&twilio_toml(&stub.url, &key_toml(7))).await;
    let mut body = own_twilio();
    body["senders"] = json!([{"from": OWN_FROM, "per_second": 2}]);
    assert_eq!(put(&app, &app.api_key, "twilio", &body).await.status(), 200);

    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(app.send_ok(&number(&format!("60{i:02}")), "paced").await);
    }
    for id in &ids {
        app.wait_for_status(id, "sent").await;
    }

    // Five sends at 2/s: the stub saw them spread over at least two seconds.
    let times: Vec<_> = stub.sends().iter().map(|s| s.at).collect();
    assert_eq!(times.len(), 5);
    let first = times.iter().min().unwrap();
    let last = times.iter().max().unwrap();
    let spread = last.duration_since(*first);
    assert!(
        spread >= std::time::Duration::from_millis(1900),
        "{spread:?}"
    );
}
