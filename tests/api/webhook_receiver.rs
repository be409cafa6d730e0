//! A customer's webhook receiver on loopback, as a customer would write one: it checks
//! `X-Herald-Signature` against the account's secret and that `X-Herald-Event-Id` matches
//! the body, and answers 500 while told to fail. Everything it saw is kept for assertions.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub(crate) struct Seen {
    /// Events answered 2xx, with the path they came to, in arrival order.
    pub(crate) accepted: Vec<(String, Value)>,
    /// The deliveries (path and event id) answered 500 because the receiver was failing:
    /// distinct, so a retried event does not stand in for one not yet tried.
    pub(crate) failed: HashSet<(String, String)>,
    /// Posts whose signature or event id did not check out (answered 401).
    pub(crate) forged: usize,
}

#[derive(Clone)]
struct Shared {
    seen: Arc<Mutex<Seen>>,
    secret: Arc<Mutex<String>>,
    failing: Arc<AtomicBool>,
    /// Milliseconds to wait before answering: a slow endpoint.
    delay_ms: Arc<AtomicU64>,
}

pub(crate) struct Receiver {
    pub(crate) base: String,
    shared: Shared,
}

impl Receiver {
    pub(crate) async fn start() -> Receiver {
        let shared = Shared {
            seen: Arc::default(),
            secret: Arc::default(),
            failing: Arc::default(),
            delay_ms: Arc::default(),
        };
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port for the receiver");
        let base = format!("http://{}", listener.local_addr().expect("an address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { base, shared }
    }

    pub(crate) fn set_secret(&self, secret: &str) {
        *self.shared.secret.lock().unwrap() = secret.to_owned();
    }

    pub(crate) fn set_failing(&self, failing: bool) {
        self.shared.failing.store(failing, Ordering::SeqCst);
    }

    pub(crate) fn set_delay(&self, delay: std::time::Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap();
        self.shared.delay_ms.store(ms, Ordering::SeqCst);
    }

    pub(crate) fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.shared.seen.lock().unwrap())
    }
}

/// `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`, computed here independently of Herald.
pub(crate) fn expected_signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn receive(
    State(shared): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let delay = shared.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    let secret = shared.secret.lock().unwrap().clone();
    let timestamp = header("x-herald-timestamp");
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let genuine = header("x-herald-signature") == expected_signature(&secret, &timestamp, &body)
        && parsed
            .as_ref()
            .is_some_and(|b| b["event_id"] == header("x-herald-event-id").as_str());
    let mut seen = shared.seen.lock().unwrap();
    if !genuine {
        seen.forged += 1;
        return StatusCode::UNAUTHORIZED;
    }
    if shared.failing.load(Ordering::SeqCst) {
        let event_id = header("x-herald-event-id");
        seen.failed.insert((uri.path().to_owned(), event_id));
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    if let Some(event) = parsed {
        seen.accepted.push((uri.path().to_owned(), event));
    }
    StatusCode::OK
}
