//! A recording Twilio: a small HTTP server on loopback that speaks Twilio's Messages API
//! (form-encoded sends, Basic auth, JSON answers, Twilio's error body) and keeps every
//! request it gets, plus what a test needs to play Twilio's side of a status callback.

use crate::helpers::{TestApp, spawn_app_with};
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use herald::providers::twilio::{STATUS_PATH, signature};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub(crate) const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub(crate) const AUTH_TOKEN: &str = "test-auth-token-5f3a";
pub(crate) const FROM: &str = "+15017122661";
/// What Twilio is told to call; deliberately not the test server's address, as behind a
/// proxy: signatures are over the public URL.
pub(crate) const PUBLIC_URL: &str = "https://herald.example.com";

/// One request the stub received.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) authorization: Option<String>,
    pub(crate) content_type: Option<String>,
    pub(crate) form: Vec<(String, String)>,
    pub(crate) at: Instant,
}

impl Recorded {
    pub(crate) fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An answer the stub gives to the next send instead of accepting it.
pub(crate) struct Scripted {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<&'static str>,
    pub(crate) code: i64,
}

/// Every send answered with Twilio's error for HTTP `status`, after `delay`, until the
/// outage is ended: a Twilio that is down (or slower than Herald's timeout).
#[derive(Clone, Copy)]
pub(crate) struct Outage {
    pub(crate) status: u16,
    pub(crate) delay: std::time::Duration,
}

#[derive(Default)]
struct State {
    requests: Mutex<Vec<Recorded>>,
    script: Mutex<VecDeque<Scripted>>,
    outage: Mutex<Option<Outage>>,
    /// sid → (status, error code) answered by `GET …/Messages/{sid}.json`.
    lookups: Mutex<HashMap<String, (String, Option<i64>)>>,
    /// When set, each accepted send first gets its `delivered` callback posted to this
    /// Herald (and committed) before Twilio's answer: the receipt overtakes our `sent`.
    overtake: Mutex<Option<String>>,
    seq: AtomicU64,
}

#[derive(Clone)]
pub(crate) struct TwilioStub {
    pub(crate) url: String,
    state: Arc<State>,
}

impl TwilioStub {
    pub(crate) async fn start() -> TwilioStub {
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
        TwilioStub { url, state }
    }

    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    pub(crate) fn sends(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "POST")
            .collect()
    }

    pub(crate) fn script(&self, answer: Scripted) {
        self.state.script.lock().unwrap().push_back(answer);
    }

    pub(crate) fn set_outage(&self, outage: Option<Outage>) {
        *self.state.outage.lock().unwrap() = outage;
    }

    pub(crate) fn answer_lookup(&self, sid: &str, status: &str, error_code: Option<i64>) {
        self.state
            .lookups
            .lock()
            .unwrap()
            .insert(sid.to_owned(), (status.to_owned(), error_code));
    }

    pub(crate) fn overtake_with_receipts_to(&self, herald: &str) {
        *self.state.overtake.lock().unwrap() = Some(herald.to_owned());
    }
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
        form: serde_urlencoded::from_bytes(&body).unwrap_or_default(),
        at: Instant::now(),
    });
    let prefix = format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages");
    if method == Method::POST && path == format!("{prefix}.json") {
        let outage = *state.outage.lock().unwrap();
        let scripted = match outage {
            Some(o) => {
                tokio::time::sleep(o.delay).await;
                Some(Scripted {
                    status: o.status,
                    retry_after: None,
                    code: 20000 + i64::from(o.status),
                })
            }
            None => state.script.lock().unwrap().pop_front(),
        };
        if let Some(s) = scripted {
            let mut response = (
                StatusCode::from_u16(s.status).unwrap(),
                axum::Json(json!({
                    "code": s.code,
                    "message": format!("scripted error {}", s.code),
                    "more_info": format!("https://www.twilio.com/docs/errors/{}", s.code),
                    "status": s.status,
                })),
            )
                .into_response();
            if let Some(wait) = s.retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", wait.parse().unwrap());
            }
            return response;
        }
        let sid = format!("SM{:032x}", state.seq.fetch_add(1, Ordering::Relaxed) + 1);
        let overtake = state.overtake.lock().unwrap().clone();
        if let Some(herald) = overtake {
            let response = post_callback(
                &herald,
                &[("MessageSid", &sid), ("MessageStatus", "delivered")],
                true,
            )
            .await;
            assert_eq!(response.status(), 200, "the overtaking receipt is taken");
        }
        let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
        let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        return (
            StatusCode::CREATED,
            axum::Json(json!({
                "sid": sid, "account_sid": ACCOUNT_SID, "status": "queued",
                "to": get("To"), "from": get("From"), "body": get("Body"),
                "error_code": null, "error_message": null, "api_version": "2010-04-01",
            })),
        )
            .into_response();
    }
    if method == Method::GET
        && let Some(sid) = path
            .strip_prefix(&format!("{prefix}/"))
            .and_then(|rest| rest.strip_suffix(".json"))
    {
        let known = state.lookups.lock().unwrap().get(sid).cloned();
        let (status, code) = known.unwrap_or_else(|| ("sent".to_owned(), None));
        return axum::Json(json!({
            "sid": sid, "account_sid": ACCOUNT_SID, "status": status,
            "error_code": code, "error_message": code.map(|c| format!("error {c}")),
        }))
        .into_response();
    }
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"code": 20404, "message": "not found", "status": 404})),
    )
        .into_response()
}

/// Settings that send SMS through Twilio at `base_url` (unlimited senders, no lookups
/// unless asked). `extra` may begin with `key = value` lines for `[providers.twilio]`, which
/// replace these defaults, and go on with other tables.
pub(crate) fn twilio_toml(base_url: &str, extra: &str) -> String {
    let split = extra.find('[').unwrap_or(extra.len());
    let (overrides, rest) = extra.split_at(split);
    let overridden = |key: &str| {
        overrides
            .lines()
            .any(|l| l.split('=').next().is_some_and(|k| k.trim() == key))
    };
    let defaults = [
        ("base_url", format!("{base_url:?}")),
        ("account_sid", format!("{ACCOUNT_SID:?}")),
        ("auth_token", format!("{AUTH_TOKEN:?}")),
        ("from", format!("{FROM:?}")),
        ("sender_per_second", "0".to_owned()),
        ("timeout_ms", "5000".to_owned()),
        ("lookup_after_seconds", "3600".to_owned()),
    ];
    let mut twilio = String::new();
    for (key, value) in defaults {
        if !overridden(key) {
            twilio.push_str(&format!("{key} = {value}\n"));
        }
    }
    format!(
        "[server]\npublic_url = \"{PUBLIC_URL}\"\n[providers]\nsms = \"twilio\"\n\
         [providers.twilio]\n{twilio}{overrides}\n{rest}"
    )
}

/// A stub and a Herald sending SMS through it.
pub(crate) async fn spawn_with_twilio(extra: &str) -> (TestApp, TwilioStub) {
    let stub = TwilioStub::start().await;
    let app = spawn_app_with(&twilio_toml(&stub.url, extra)).await;
    (app, stub)
}

/// POSTs a status callback with `params` to the Herald at `base` as Twilio would: signed
/// over the public URL (unless `signed` is false).
pub(crate) async fn post_callback(
    base: &str,
    params: &[(&str, &str)],
    signed: bool,
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(format!("{base}{STATUS_PATH}"))
        .form(params);
    if signed {
        request = request.header("X-Twilio-Signature", sign(params));
    }
    request.send().await.expect("the callback is sent")
}

/// Twilio's signature of a status callback with `params`.
pub(crate) fn sign(params: &[(&str, &str)]) -> String {
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    signature::sign(AUTH_TOKEN, &format!("{PUBLIC_URL}{STATUS_PATH}"), &owned)
}

/// A full status callback as Twilio sends one (fields Herald does not read included).
pub(crate) fn callback<'a>(sid: &'a str, status: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("AccountSid", ACCOUNT_SID),
        ("ApiVersion", "2010-04-01"),
        ("From", FROM),
        ("MessageSid", sid),
        ("MessageStatus", status),
        ("SmsSid", sid),
        ("SmsStatus", status),
        ("To", "+14155551234"),
    ]
}

pub(crate) fn provider_id(view: &Value) -> String {
    view["provider_message_id"]
        .as_str()
        .expect("a provider message id")
        .to_owned()
}
