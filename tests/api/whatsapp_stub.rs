//! A recording WhatsApp Cloud API: a small HTTP server on loopback that speaks the Cloud
//! API's messages endpoint (JSON sends, bearer token, Meta's answer and Graph API error body)
//! and keeps every request it gets, plus what a test needs to play Meta's side of a webhook.

use crate::helpers::{TestApp, spawn_app_with};
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use herald::providers::whatsapp::{WEBHOOK_PATH, signature};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(crate) const PHONE_NUMBER_ID: &str = "106540352242922";
pub(crate) const ACCESS_TOKEN: &str = "test-access-token-77c1";
pub(crate) const APP_SECRET: &str = "test-app-secret-9d2e";
pub(crate) const VERIFY_TOKEN: &str = "test-verify-token-41b0";
pub(crate) const API_VERSION: &str = "v23.0";

/// One request the stub received.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) authorization: Option<String>,
    pub(crate) content_type: Option<String>,
    pub(crate) user_agent: Option<String>,
    pub(crate) json: Value,
    pub(crate) at: Instant,
}

/// An answer the stub gives to the next send instead of accepting it.
pub(crate) struct Scripted {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<&'static str>,
    /// Meta's `error.code`; `None` answers without a Graph error body.
    pub(crate) code: Option<i64>,
    /// Waits this long before answering (to outlast Herald's timeout).
    pub(crate) hang: Option<Duration>,
}

impl Scripted {
    pub(crate) fn error(status: u16, code: i64) -> Scripted {
        Scripted {
            status,
            retry_after: None,
            code: Some(code),
            hang: None,
        }
    }
}

#[derive(Default)]
struct State {
    requests: Mutex<Vec<Recorded>>,
    script: Mutex<VecDeque<Scripted>>,
    seq: AtomicU64,
}

#[derive(Clone)]
pub(crate) struct WhatsappStub {
    pub(crate) url: String,
    state: Arc<State>,
}

impl WhatsappStub {
    pub(crate) async fn start() -> WhatsappStub {
        let state = Arc::new(State::default());
        let shared = Arc::clone(&state);
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = Arc::clone(&shared);
                async move { answer(&state, method, uri, headers, body).await }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("the stub binds");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        WhatsappStub { url, state }
    }

    pub(crate) fn sends(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    pub(crate) fn script(&self, answer: Scripted) {
        self.state.script.lock().unwrap().push_back(answer);
    }
}

/// The wamid the stub gives its `n`th accepted send (from 1).
pub(crate) fn wamid(n: u64) -> String {
    format!("wamid.HBgLMTQxNTU1NTEyMzQVAgARGBI{n:08}")
}

async fn answer(
    state: &State,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let path = uri.path().to_owned();
    state.requests.lock().unwrap().push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        authorization: header("authorization"),
        content_type: header("content-type"),
        user_agent: header("user-agent"),
        json: serde_json::from_slice(&body).unwrap_or(Value::Null),
        at: Instant::now(),
    });
    // Any phone number's messages edge: accounts that bring their own number send to its.
    let number_path = path
        .strip_prefix(&format!("/{API_VERSION}/"))
        .and_then(|rest| rest.strip_suffix("/messages"))
        .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()));
    if method != Method::POST || !number_path {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": {"message": "Unknown path", "type": "GraphMethodException", "code": 100}})),
        )
            .into_response();
    }
    let scripted = state.script.lock().unwrap().pop_front();
    if let Some(s) = scripted {
        if let Some(hang) = s.hang {
            tokio::time::sleep(hang).await;
        }
        let body = match s.code {
            Some(code) => json!({"error": {
                "message": format!("scripted error {code}"),
                "type": "OAuthException",
                "code": code,
                "error_data": {"messaging_product": "whatsapp", "details": format!("details of {code}")},
                "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam",
            }}),
            None => json!({}),
        };
        let mut response =
            (StatusCode::from_u16(s.status).unwrap(), axum::Json(body)).into_response();
        if let Some(wait) = s.retry_after {
            response
                .headers_mut()
                .insert("retry-after", wait.parse().unwrap());
        }
        return response;
    }
    let n = state.seq.fetch_add(1, Ordering::Relaxed) + 1;
    let sent: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let to = sent["to"].as_str().unwrap_or_default().to_owned();
    axum::Json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{"input": to, "wa_id": to}],
        "messages": [{"id": wamid(n)}],
    }))
    .into_response()
}

/// Settings that send WhatsApp through the Cloud API at `base_url` (unlimited sender
/// unless `extra` says otherwise). `extra` may begin with `key = value` lines for
/// `[providers.whatsapp_cloud]`, which replace these defaults, and go on with other tables.
pub(crate) fn whatsapp_toml(base_url: &str, extra: &str) -> String {
    let split = extra.find('[').unwrap_or(extra.len());
    let (overrides, rest) = extra.split_at(split);
    let overridden = |key: &str| {
        overrides
            .lines()
            .any(|l| l.split('=').next().is_some_and(|k| k.trim() == key))
    };
    let defaults = [
        ("base_url", format!("{base_url:?}")),
        ("api_version", format!("{API_VERSION:?}")),
        ("phone_number_id", format!("{PHONE_NUMBER_ID:?}")),
        ("access_token", format!("{ACCESS_TOKEN:?}")),
        ("app_secret", format!("{APP_SECRET:?}")),
        ("verify_token", format!("{VERIFY_TOKEN:?}")),
        ("sender_per_second", "0".to_owned()),
        ("timeout_ms", "5000".to_owned()),
    ];
    let mut table = String::new();
    for (key, value) in defaults {
        if !overridden(key) {
            table.push_str(&format!("{key} = {value}\n"));
        }
    }
    format!(
        "[providers]\nwhatsapp = \"whatsapp_cloud\"\n[providers.whatsapp_cloud]\n{table}{overrides}\n{rest}"
    )
}

/// A stub and a Herald sending WhatsApp through it.
pub(crate) async fn spawn_with_whatsapp(extra: &str) -> (TestApp, WhatsappStub) {
    let stub = WhatsappStub::start().await;
    let app = spawn_app_with(&whatsapp_toml(&stub.url, extra)).await;
    (app, stub)
}

/// The customer at `to` writes to us, as Meta would deliver it: a free-form message to them
/// may go for the next 24 hours.
pub(crate) async fn open_window(app: &TestApp, to: &str) {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    // Meta names the sender by its digits with the country code (US numbers in the tests).
    let mut digits: String = to.chars().filter(char::is_ascii_digit).collect();
    if digits.len() == 10 {
        digits.insert(0, '1');
    }
    let message = json!({
        "from": digits, "id": format!("wamid.OPEN{n}"),
        "timestamp": chrono::Utc::now().timestamp().to_string(), "type": "text",
        "text": {"body": "Hi"},
    });
    let mut body = notification(vec![]);
    body["entry"][0]["changes"][0]["value"]["messages"] = json!([message]);
    let response = post_webhook(&app.address, &body).await;
    assert_eq!(response.status(), 200, "the customer's message is taken");
}

/// Sends a WhatsApp message with `fields` added to the number and text; returns its id. A
/// free-form one is sent after the customer wrote (Meta's 24-hour window).
pub(crate) async fn send_whatsapp(app: &TestApp, to: &str, fields: Value) -> String {
    if fields.get("whatsapp_template").is_none() {
        open_window(app, to).await;
    }
    let mut body =
        json!({"phone_number": to, "message": "Hello from Herald", "channel": "whatsapp"});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), fields.as_object()) {
        body.extend(extra.clone());
    }
    let response = app.send_message(&body).await;
    assert_eq!(response.status(), 202, "{body}");
    let answer: Value = response.json().await.unwrap();
    answer["message_id"].as_str().unwrap().to_owned()
}

/// POSTs a webhook notification to the Herald at `base` as Meta would: the exact bytes,
/// signed with the app secret (unless `signature` says otherwise: `Some(value)` sends that
/// header instead, `None` sends none).
pub(crate) async fn post_webhook_raw(
    base: &str,
    body: &[u8],
    signature: Option<String>,
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(format!("{base}{WEBHOOK_PATH}"))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(s) = signature {
        request = request.header("X-Hub-Signature-256", s);
    }
    request.send().await.expect("the webhook is sent")
}

/// POSTs `notification`, correctly signed.
pub(crate) async fn post_webhook(base: &str, notification: &Value) -> reqwest::Response {
    let body = serde_json::to_vec(notification).unwrap();
    post_webhook_raw(base, &body, Some(sign(&body))).await
}

pub(crate) fn sign(body: &[u8]) -> String {
    signature::sign(APP_SECRET, body)
}

/// A notification as Meta sends one, carrying `statuses` (and fields Herald does not read).
pub(crate) fn notification(statuses: Vec<Value>) -> Value {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "102290129340398",
            "changes": [{
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
                    "statuses": statuses,
                },
            }],
        }],
    })
}

/// One status of the message Meta named `wamid`, at Unix second `at`.
pub(crate) fn status(wamid: &str, status: &str, at: i64) -> Value {
    json!({
        "id": wamid,
        "status": status,
        "timestamp": at.to_string(),
        "recipient_id": "14155551234",
        "conversation": {"id": "6ceb9d929c8ee6d7a4a2e37cd1a8e2a6", "origin": {"type": "utility"}},
        "pricing": {"billable": true, "pricing_model": "PMP", "category": "utility"},
        "biz_opaque_callback_data": "msg_ignored",
    })
}

/// A `failed` status with Meta's error `code`.
pub(crate) fn failed(wamid: &str, code: i64, at: i64) -> Value {
    let mut s = status(wamid, "failed", at);
    s["errors"] = json!([{
        "code": code,
        "title": format!("title of {code}"),
        "message": format!("message of {code}"),
        "error_data": {"details": format!("details of {code}")},
        "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
    }]);
    s
}

/// Now, in Unix seconds (Meta's timestamps).
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
