//! A customer's webhook receiver on loopback, as a customer would write one: it checks
//! `X-Herald-Signature` against the account's secret and that `X-Herald-Event-Id` matches
//! the body, and answers 500 while told to fail. Everything it saw is kept for assertions,
//! with the connections the posts came over.

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::collections::HashSet;
use std::net::SocketAddr;
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
    /// The client address of every post: one per connection Herald opened.
    pub(crate) connections: HashSet<SocketAddr>,
}

#[derive(Clone)]
struct Shared {
    seen: Arc<Mutex<Seen>>,
    secret: Arc<Mutex<String>>,
    failing: Arc<AtomicBool>,
    /// Milliseconds to wait before answering: a slow endpoint.
    delay_ms: Arc<AtomicU64>,
    /// The body a 2xx answer carries (none by default), sent a moment after the status
    /// line, as an endpoint that flushes its headers first does.
    reply: Arc<Mutex<Bytes>>,
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
            reply: Arc::default(),
        };
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port for the receiver");
        let base = format!("http://{}", listener.local_addr().expect("an address"));
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
        });
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

    /// Answers every accepted event with `body`, as many real endpoints do.
    pub(crate) fn set_reply(&self, body: &'static [u8]) {
        *self.shared.reply.lock().unwrap() = Bytes::from_static(body);
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
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Body) {
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
    seen.connections.insert(peer);
    if !genuine {
        seen.forged += 1;
        return (StatusCode::UNAUTHORIZED, Body::empty());
    }
    if shared.failing.load(Ordering::SeqCst) {
        let event_id = header("x-herald-event-id");
        seen.failed.insert((uri.path().to_owned(), event_id));
        return (StatusCode::INTERNAL_SERVER_ERROR, Body::empty());
    }
    if let Some(event) = parsed {
        seen.accepted.push((uri.path().to_owned(), event));
    }
    let reply = shared.reply.lock().unwrap().clone();
    if reply.is_empty() {
        return (StatusCode::OK, Body::empty());
    }
    // After the head has gone out on its own: Herald cannot have the body with it.
    let later = futures::stream::once(async move {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        Ok::<_, std::convert::Infallible>(reply)
    });
    (StatusCode::OK, Body::from_stream(later))
}
