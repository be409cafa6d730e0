//! A recording Twilio: a small HTTP server on loopback that speaks Twilio's Messages API
//! (form-encoded sends, Basic auth, JSON answers, Twilio's error body) and keeps every
//! request it gets, plus what a test needs to play Twilio's side of a status callback.
//!
//! Like Twilio it keeps the messages it created, and lists them (`GET …/Messages.json` with
//! the `To`, `From`, `DateSent`, `DateSent<` and `DateSent>` filters, newest first, in pages
//! of `PageSize` with Twilio's `next_page_uri`). A message is created when the request
//! arrives, before the (optionally delayed) answer: a client that dies while waiting leaves
//! a message Twilio has and the client never heard of, which is what an in-doubt send is.
//! It can serve a `herald serve` child process as well as an in-process app, and post signed
//! `delivered` callbacks to wherever Herald currently listens.

use crate::helpers::{TestApp, spawn_app_with};
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use herald::providers::twilio::{STATUS_PATH, signature};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// The query string's fields, decoded.
    pub(crate) query: Vec<(String, String)>,
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

    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A `GET …/Messages.json`: a search of the message list.
    pub(crate) fn is_list(&self) -> bool {
        self.method == "GET" && self.path.ends_with("/Messages.json")
    }
}

/// A message the stub's Twilio has, as its list shows it.
#[derive(Debug, Clone)]
pub(crate) struct StubMessage {
    pub(crate) sid: String,
    pub(crate) to: String,
    pub(crate) from: Option<String>,
    pub(crate) messaging_service_sid: Option<String>,
    pub(crate) body: String,
    /// Unix seconds (Twilio's dates have whole seconds).
    pub(crate) date_created: i64,
    /// None while Twilio still holds it (`queued`, `accepted`).
    pub(crate) date_sent: Option<i64>,
    pub(crate) status: String,
}

impl StubMessage {
    /// A message sent from [`FROM`] to `to` with `body`, created `age` ago, delivered.
    pub(crate) fn delivered(sid: &str, to: &str, body: &str, age: Duration) -> StubMessage {
        let created = chrono::Utc::now().timestamp() - i64::try_from(age.as_secs()).unwrap();
        StubMessage {
            sid: sid.to_owned(),
            to: to.to_owned(),
            from: Some(FROM.to_owned()),
            messaging_service_sid: None,
            body: body.to_owned(),
            date_created: created,
            date_sent: Some(created),
            status: "delivered".to_owned(),
        }
    }

    fn resource(&self) -> Value {
        let date = |secs: i64| {
            chrono::DateTime::from_timestamp(secs, 0)
                .unwrap()
                .to_rfc2822()
        };
        json!({
            "sid": self.sid, "account_sid": ACCOUNT_SID, "status": self.status,
            "to": self.to, "from": self.from, "messaging_service_sid": self.messaging_service_sid,
            "body": self.body, "direction": "outbound-api", "api_version": "2010-04-01",
            "date_created": date(self.date_created), "date_sent": self.date_sent.map(date),
            "error_code": null, "error_message": null,
        })
    }
}

/// The UTC day of unix second `secs`, as `DateSent` filters name days.
fn day(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string()
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
    /// Every message created, oldest first, and by recipient (indexes into `messages`).
    messages: Mutex<Vec<StubMessage>>,
    by_to: Mutex<HashMap<String, Vec<usize>>>,
    /// Answers to the next message-list searches instead of a page.
    list_script: Mutex<VecDeque<Scripted>>,
    /// How long each accepted send waits before its answer (created at once, answered then).
    answer_delay: Mutex<Duration>,
    /// Created messages are delivered at once (their lookups and lists say so).
    deliver: AtomicBool,
    /// Where `delivered` callbacks go once a send is answered (None: nowhere).
    callbacks: Mutex<Option<String>>,
    client: reqwest::Client,
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

    /// How many sends arrived (cheaper than `sends().len()` for polling).
    pub(crate) fn send_count(&self) -> usize {
        self.state
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.method == "POST")
            .count()
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

    /// Adds a message as if Twilio had created it (to be found, or not, by a search).
    pub(crate) fn add_message(&self, message: StubMessage) {
        store(&self.state, message);
    }

    /// The messages Twilio has, oldest first.
    pub(crate) fn messages(&self) -> Vec<StubMessage> {
        self.state.messages.lock().unwrap().clone()
    }

    /// The next message-list search answers `answer` instead of a page.
    pub(crate) fn script_list(&self, answer: Scripted) {
        self.state.list_script.lock().unwrap().push_back(answer);
    }

    /// Each send is answered `delay` after it arrived (the message exists from the start).
    pub(crate) fn delay_answers(&self, delay: Duration) {
        *self.state.answer_delay.lock().unwrap() = delay;
    }

    /// Messages are delivered as soon as they are created.
    pub(crate) fn deliver_at_once(&self) {
        self.state.deliver.store(true, Ordering::Relaxed);
    }

    /// After answering a send, post its signed `delivered` callback to the Herald at `base`
    /// (the one listening now: a restarted Herald listens elsewhere). Callbacks to a Herald
    /// that is down are lost, as Twilio's are.
    pub(crate) fn callbacks_to(&self, base: &str) {
        *self.state.callbacks.lock().unwrap() = Some(base.to_owned());
    }

    pub(crate) fn searches(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(Recorded::is_list)
            .collect()
    }
}

fn store(state: &State, message: StubMessage) {
    let mut messages = state.messages.lock().unwrap();
    state
        .by_to
        .lock()
        .unwrap()
        .entry(message.to.clone())
        .or_default()
        .push(messages.len());
    messages.push(message);
}

/// One page of the message list, filtered as Twilio filters it.
fn list_page(state: &State, path: &str, query: &[(String, String)]) -> Value {
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let page_size: usize = param("PageSize").and_then(|p| p.parse().ok()).unwrap_or(50);
    let page: usize = param("Page").and_then(|p| p.parse().ok()).unwrap_or(0);
    let messages = state.messages.lock().unwrap();
    let candidates: Vec<usize> = match param("To") {
        Some(to) => state
            .by_to
            .lock()
            .unwrap()
            .get(to)
            .cloned()
            .unwrap_or_default(),
        None => (0..messages.len()).collect(),
    };
    let sent_day = |m: &StubMessage| m.date_sent.map(day);
    let mut listed: Vec<&StubMessage> = candidates
        .iter()
        .filter_map(|i| messages.get(*i))
        .filter(|m| param("From").is_none_or(|f| m.from.as_deref() == Some(f)))
        .filter(|m| param("DateSent").is_none_or(|d| sent_day(m).as_deref() == Some(d)))
        .filter(|m| param("DateSent>").is_none_or(|d| sent_day(m).is_some_and(|s| s.as_str() >= d)))
        .filter(|m| param("DateSent<").is_none_or(|d| sent_day(m).is_some_and(|s| s.as_str() <= d)))
        .collect();
    // Newest first; among equal times, the last created first.
    listed.reverse();
    listed.sort_by_key(|m| std::cmp::Reverse(m.date_created));
    let start = page * page_size;
    let items: Vec<Value> = listed
        .iter()
        .skip(start)
        .take(page_size)
        .map(|m| m.resource())
        .collect();
    let next = (start + page_size < listed.len()).then(|| {
        let mut kept: Vec<(String, String)> = query
            .iter()
            .filter(|(k, _)| k != "Page" && k != "PageSize" && k != "PageToken")
            .cloned()
            .collect();
        kept.push(("PageSize".into(), page_size.to_string()));
        kept.push(("Page".into(), (page + 1).to_string()));
        kept.push(("PageToken".into(), format!("PASM{}", page + 1)));
        format!("{path}?{}", serde_urlencoded::to_string(&kept).unwrap())
    });
    json!({
        "messages": items,
        "page": page,
        "page_size": page_size,
        "first_page_uri": path,
        "previous_page_uri": null,
        "next_page_uri": next,
        "uri": path,
    })
}

fn scripted(s: &Scripted) -> Response {
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
    response
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
    let query: Vec<(String, String)> =
        serde_urlencoded::from_str(uri.query().unwrap_or_default()).unwrap_or_default();
    state.requests.lock().unwrap().push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        authorization: header("authorization"),
        content_type: header("content-type"),
        form: serde_urlencoded::from_bytes(&body).unwrap_or_default(),
        at: Instant::now(),
    });
    // Any account's Messages resource: accounts that bring their own Twilio account send to
    // theirs. The requests record whose path (and Basic auth) each used.
    let account = path
        .strip_prefix("/2010-04-01/Accounts/")
        .and_then(|rest| rest.split('/').next())
        .filter(|sid| sid.starts_with("AC"))
        .unwrap_or(ACCOUNT_SID)
        .to_owned();
    let prefix = format!("/2010-04-01/Accounts/{account}/Messages");
    if method == Method::POST && path == format!("{prefix}.json") {
        let outage = *state.outage.lock().unwrap();
        let script = match outage {
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
        if let Some(s) = script {
            return scripted(&s);
        }
        let sid = format!("SM{:032x}", state.seq.fetch_add(1, Ordering::Relaxed) + 1);
        let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
        let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        // Created now, whatever becomes of the answer.
        let now = chrono::Utc::now().timestamp();
        let delivered = state.deliver.load(Ordering::Relaxed);
        store(
            state,
            StubMessage {
                sid: sid.clone(),
                to: get("To").unwrap_or_default(),
                from: get("From"),
                messaging_service_sid: get("MessagingServiceSid"),
                body: get("Body").unwrap_or_default(),
                date_created: now,
                date_sent: Some(now),
                status: if delivered { "delivered" } else { "sent" }.to_owned(),
            },
        );
        let delay = *state.answer_delay.lock().unwrap();
        let callbacks = state.callbacks.lock().unwrap().clone();
        if let Some(herald) = callbacks {
            // Its own task: Twilio calls back whether or not the sender still listens.
            let (client, sid) = (state.client.clone(), sid.clone());
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let params = callback(&sid, "delivered");
                let _ = client
                    .post(format!("{herald}{STATUS_PATH}"))
                    .header("X-Twilio-Signature", sign(&params))
                    .form(&params)
                    .send()
                    .await;
            });
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
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
        return (
            StatusCode::CREATED,
            axum::Json(json!({
                "sid": sid, "account_sid": account, "status": "queued",
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
        let created = || {
            let messages = state.messages.lock().unwrap();
            messages
                .iter()
                .find(|m| m.sid == sid)
                .map(|m| (m.status.clone(), None))
        };
        let (status, code) = known
            .or_else(created)
            .unwrap_or_else(|| ("sent".to_owned(), None));
        return axum::Json(json!({
            "sid": sid, "account_sid": account, "status": status,
            "error_code": code, "error_message": code.map(|c| format!("error {c}")),
        }))
        .into_response();
    }
    if method == Method::GET && path == format!("{prefix}.json") {
        let script = state.list_script.lock().unwrap().pop_front();
        if let Some(s) = script {
            return scripted(&s);
        }
        return axum::Json(list_page(state, &path, &query)).into_response();
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
    sign_with(AUTH_TOKEN, params)
}

/// The signature of a status callback with `params`, as the Twilio account whose auth
/// token is `auth_token` signs it.
pub(crate) fn sign_with(auth_token: &str, params: &[(&str, &str)]) -> String {
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    signature::sign(auth_token, &format!("{PUBLIC_URL}{STATUS_PATH}"), &owned)
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
