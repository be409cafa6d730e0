//! The load generator: raw hyper HTTP/1.1 keep-alive connections (no pool, no redirects, no
//! per-request allocation beyond hyper's own), driven closed-loop (each connection sends its
//! next request as soon as the last is answered), for a fixed count, or open-loop at a fixed
//! rate. Latencies are kept per request, in microseconds.

use anyhow::Context;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Where requests go, with the headers every request carries (built once).
#[derive(Clone)]
pub(crate) struct Target {
    addr: SocketAddr,
    host: HeaderValue,
    auth: HeaderValue,
    /// What request bodies are: JSON, or a form for the Twilio-compatible API.
    content_type: HeaderValue,
}

impl Target {
    pub(crate) fn new(addr: SocketAddr, api_key: &str) -> Target {
        Target {
            addr,
            host: HeaderValue::from_str(&addr.to_string()).expect("an address is a valid header"),
            auth: HeaderValue::from_str(&format!("Bearer {api_key}")).expect("the key is ASCII"),
            content_type: HeaderValue::from_static("application/json"),
        }
    }

    /// The same server as a Twilio client calls it: Basic auth (account id and key), forms.
    pub(crate) fn twilio(&self, account_id: &str, api_key: &str) -> Target {
        use base64::Engine;
        let pair =
            base64::engine::general_purpose::STANDARD.encode(format!("{account_id}:{api_key}"));
        Target {
            auth: HeaderValue::from_str(&format!("Basic {pair}")).expect("base64 is ASCII"),
            content_type: HeaderValue::from_static("application/x-www-form-urlencoded"),
            ..self.clone()
        }
    }
}

/// One keep-alive connection.
pub(crate) struct Client {
    sender: http1::SendRequest<Full<Bytes>>,
    target: Target,
}

impl Client {
    pub(crate) async fn connect(target: Target) -> anyhow::Result<Client> {
        let stream = TcpStream::connect(target.addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        // Drives the socket; ends when `sender` is dropped or the server closes.
        tokio::spawn(connection);
        Ok(Client { sender, target })
    }

    pub(crate) async fn post(
        &mut self,
        path: Uri,
        body: Bytes,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        self.send(Method::POST, path, body).await
    }

    pub(crate) async fn put(
        &mut self,
        path: Uri,
        body: Bytes,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        self.send(Method::PUT, path, body).await
    }

    pub(crate) async fn get(&mut self, path: &str) -> anyhow::Result<(StatusCode, Bytes)> {
        self.send(Method::GET, Uri::try_from(path)?, Bytes::new())
            .await
    }

    /// A form-encoded POST signed as Twilio signs its webhooks.
    pub(crate) async fn post_twilio_form(
        &mut self,
        path: Uri,
        body: Bytes,
        signature: HeaderValue,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let form = HeaderValue::from_static("application/x-www-form-urlencoded");
        self.send_as(Method::POST, path, body, form, Some(signature))
            .await
    }

    async fn send(
        &mut self,
        method: Method,
        path: Uri,
        body: Bytes,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let content_type = self.target.content_type.clone();
        self.send_as(method, path, body, content_type, None).await
    }

    async fn send_as(
        &mut self,
        method: Method,
        path: Uri,
        body: Bytes,
        content_type: HeaderValue,
        twilio_signature: Option<HeaderValue>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(headers) = request.headers_mut() {
            headers.insert(HOST, self.target.host.clone());
            headers.insert(AUTHORIZATION, self.target.auth.clone());
            if !body.is_empty() {
                headers.insert(CONTENT_TYPE, content_type);
            }
            if let Some(signature) = twilio_signature {
                headers.insert("x-twilio-signature", signature);
            }
        }
        self.sender.ready().await?;
        let response = self
            .sender
            .send_request(request.body(Full::new(body))?)
            .await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

/// One JSON PUT on a fresh connection; fails unless it is answered 2xx.
pub(crate) async fn put_json(
    target: &Target,
    path: &'static str,
    body: &serde_json::Value,
) -> anyhow::Result<Bytes> {
    let mut client = Client::connect(target.clone()).await?;
    let (status, answer) = client
        .put(Uri::from_static(path), Bytes::from(body.to_string()))
        .await?;
    anyhow::ensure!(status.is_success(), "PUT {path}: {status}");
    Ok(answer)
}

/// How to read an answer: how many messages it accepted (`None`: the request failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// `POST /send-message/`: one message per 202.
    Single,
    /// `POST /send-bulk/`: the answer's `accepted` count.
    Bulk,
    /// The Twilio-compatible `Messages.json`: one message per 201.
    TwilioCreated,
}

impl Expect {
    fn accepted(self, status: StatusCode, body: &[u8]) -> Option<u64> {
        if self == Expect::TwilioCreated {
            return (status == StatusCode::CREATED).then_some(1);
        }
        if status != StatusCode::ACCEPTED {
            return None;
        }
        match self {
            Expect::Single | Expect::TwilioCreated => Some(1),
            // The count sits near the start of the answer; a substring search is far cheaper
            // than parsing 100 results, and the generator must stay light.
            Expect::Bulk => {
                let text = std::str::from_utf8(body.get(..body.len().min(96))?).ok()?;
                let (_, rest) = text.split_once("\"accepted\":")?;
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            }
        }
    }
}

/// What a load produced, measured over its window.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Requests answered as expected inside the window.
    pub(crate) requests: u64,
    /// Messages those requests got accepted.
    pub(crate) messages: u64,
    /// Unexpected answers or broken connections inside the window.
    pub(crate) errors: u64,
    /// Messages accepted over the whole load, warm-up included (for durability checks).
    pub(crate) accepted_total: u64,
    /// One entry per request inside the window, microseconds.
    pub(crate) latencies_us: Vec<u32>,
    /// Seconds the window lasted.
    pub(crate) window: f64,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        self.messages += other.messages;
        self.errors += other.errors;
        self.accepted_total += other.accepted_total;
        self.latencies_us.extend(other.latencies_us);
    }

    pub(crate) fn requests_per_second(&self) -> f64 {
        self.requests as f64 / self.window
    }

    pub(crate) fn messages_per_second(&self) -> f64 {
        self.messages as f64 / self.window
    }

    /// The `q` quantile (0..=1) of request latency, in milliseconds.
    pub(crate) fn latency_ms(&mut self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        self.latencies_us.sort_unstable();
        let last = self.latencies_us.len() - 1;
        let at = ((last as f64) * q).round() as usize;
        f64::from(self.latencies_us[at.min(last)]) / 1000.0
    }

    /// Records one request's outcome (`None`: it failed); only `counted` ones (those that
    /// ended inside the window) enter the window's figures.
    fn record(&mut self, outcome: Option<u64>, latency: Duration, counted: bool) {
        if let Some(n) = outcome {
            self.accepted_total += n;
        }
        if !counted {
            return;
        }
        match outcome {
            Some(n) => {
                self.requests += 1;
                self.messages += n;
                self.latencies_us
                    .push(u32::try_from(latency.as_micros()).unwrap_or(u32::MAX));
            }
            None => self.errors += 1,
        }
    }
}

/// One request on `client`, reconnecting when the connection broke. `None`: it failed.
async fn attempt(
    client: &mut Option<Client>,
    target: &Target,
    path: &Uri,
    body: Bytes,
    expect: Expect,
) -> Option<u64> {
    if client.is_none() {
        *client = Client::connect(target.clone()).await.ok();
    }
    let c = client.as_mut()?;
    match c.post(path.clone(), body).await {
        Ok((status, answer)) => expect.accepted(status, &answer),
        Err(_) => {
            // The connection is unusable; the next attempt opens another.
            *client = None;
            None
        }
    }
}

/// Closed loop: `connections` connections send back to back for `warmup + duration`;
/// requests answered during the last `duration` are counted.
///
/// With `threads` > 1 the connections are spread over that many generator threads (each its
/// own single-threaded runtime), for loads one thread cannot drive alone.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn closed_loop(
    target: &Target,
    path: &'static str,
    bodies: Arc<Vec<Bytes>>,
    connections: usize,
    warmup: Duration,
    duration: Duration,
    expect: Expect,
    threads: usize,
) -> anyhow::Result<Tally> {
    if threads > 1 {
        let target = target.clone();
        let mut total = spread(threads, connections, 0, move |conns, _| {
            let (target, bodies) = (target.clone(), Arc::clone(&bodies));
            async move { closed_one(&target, path, bodies, conns, warmup, duration, expect).await }
        })
        .await?;
        total.window = duration.as_secs_f64();
        return Ok(total);
    }
    closed_one(target, path, bodies, connections, warmup, duration, expect).await
}

/// The closed loop on the calling thread.
async fn closed_one(
    target: &Target,
    path: &'static str,
    bodies: Arc<Vec<Bytes>>,
    connections: usize,
    warmup: Duration,
    duration: Duration,
    expect: Expect,
) -> anyhow::Result<Tally> {
    let path = Uri::from_static(path);
    let start = Instant::now();
    let (measure_from, end) = (start + warmup, start + warmup + duration);
    let mut tasks = JoinSet::new();
    for id in 0..connections {
        let (target, path, bodies) = (target.clone(), path.clone(), Arc::clone(&bodies));
        tasks.spawn(async move {
            let mut client = Some(Client::connect(target.clone()).await?);
            let mut tally = Tally::default();
            let mut next = id;
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let body = bodies[next % bodies.len()].clone();
                next += connections;
                let outcome = attempt(&mut client, &target, &path, body, expect).await;
                let done = Instant::now();
                tally.record(outcome, done - sent, done >= measure_from && done < end);
            }
            anyhow::Ok(tally)
        });
    }
    let mut total = join(tasks).await?;
    total.window = duration.as_secs_f64();
    Ok(total)
}

/// Sends every body once, over `connections` connections; for filling queues.
pub(crate) async fn send_all(
    target: &Target,
    path: &'static str,
    bodies: Arc<Vec<Bytes>>,
    connections: usize,
    expect: Expect,
) -> anyhow::Result<Tally> {
    let path = Uri::from_static(path);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..connections {
        let (target, path, bodies, next) = (
            target.clone(),
            path.clone(),
            Arc::clone(&bodies),
            Arc::clone(&next),
        );
        tasks.spawn(async move {
            let mut client = Some(Client::connect(target.clone()).await?);
            let mut tally = Tally::default();
            while let Some(body) = bodies.get(next.fetch_add(1, Ordering::Relaxed)) {
                let sent = Instant::now();
                let outcome = attempt(&mut client, &target, &path, body.clone(), expect).await;
                tally.record(outcome, sent.elapsed(), true);
            }
            anyhow::Ok(tally)
        });
    }
    let mut total = join(tasks).await?;
    total.window = start.elapsed().as_secs_f64();
    Ok(total)
}

/// Open loop: request `k` is due at `k / rate` seconds, whatever happened to the others;
/// connection `i` sends requests `i`, `i + connections`, …. Latency runs from the due time,
/// so a server that falls behind shows it (no coordinated omission). `accepted` counts
/// accepted messages as they come, for samplers running alongside.
/// With `threads` > 1, connections and rate are shared out between that many generator
/// threads, each with its own schedule (together: the rate asked for).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn open_loop(
    target: &Target,
    path: &'static str,
    bodies: Arc<Vec<Bytes>>,
    connections: usize,
    rate: u64,
    duration: Duration,
    accepted: Arc<AtomicU64>,
    threads: usize,
) -> anyhow::Result<Tally> {
    if threads > 1 {
        let target = target.clone();
        let mut total = spread(threads, connections, rate, move |conns, share| {
            let (target, bodies, accepted) =
                (target.clone(), Arc::clone(&bodies), Arc::clone(&accepted));
            async move { open_one(&target, path, bodies, conns, share, duration, accepted).await }
        })
        .await?;
        total.window = duration.as_secs_f64();
        return Ok(total);
    }
    open_one(target, path, bodies, connections, rate, duration, accepted).await
}

/// The open loop on the calling thread.
async fn open_one(
    target: &Target,
    path: &'static str,
    bodies: Arc<Vec<Bytes>>,
    connections: usize,
    rate: u64,
    duration: Duration,
    accepted: Arc<AtomicU64>,
) -> anyhow::Result<Tally> {
    let schedule = Schedule {
        rate,
        total: u64::try_from(duration.as_millis())? * rate / 1000,
        stop: CancellationToken::new(),
    };
    let mut tally = offer(target, path, bodies, connections, schedule, accepted).await?;
    tally.window = duration.as_secs_f64();
    Ok(tally)
}

/// The same open loop, offered until `stop` is cancelled (for a load that must last as
/// long as something else does); the window is the time it ran.
pub(crate) async fn open_loop_until(
    target: &Target,
    path: &'static str,
    bodies: Arc<Vec<Bytes>>,
    connections: usize,
    rate: u64,
    stop: CancellationToken,
) -> anyhow::Result<Tally> {
    let started = Instant::now();
    let schedule = Schedule {
        rate,
        total: u64::MAX,
        stop,
    };
    let accepted = Arc::new(AtomicU64::new(0));
    let mut tally = offer(target, path, bodies, connections, schedule, accepted).await?;
    tally.window = started.elapsed().as_secs_f64();
    Ok(tally)
}

/// When an open loop's requests are due: `rate` a second, `total` of them at most, none
/// once `stop` is cancelled (requests already sent are still answered and counted).
struct Schedule {
    rate: u64,
    total: u64,
    stop: CancellationToken,
}

async fn offer(
    target: &Target,
    path: &'static str,
    bodies: Arc<Vec<Bytes>>,
    connections: usize,
    schedule: Schedule,
    accepted: Arc<AtomicU64>,
) -> anyhow::Result<Tally> {
    let path = Uri::from_static(path);
    let start = tokio::time::Instant::now();
    let Schedule { rate, total, stop } = schedule;
    let mut tasks = JoinSet::new();
    for id in 0..connections {
        let (target, path, bodies, accepted, stop) = (
            target.clone(),
            path.clone(),
            Arc::clone(&bodies),
            Arc::clone(&accepted),
            stop.clone(),
        );
        tasks.spawn(async move {
            let mut client = Some(Client::connect(target.clone()).await?);
            let mut tally = Tally::default();
            let mut k = id as u64;
            while k < total {
                let due = start + Duration::from_secs_f64(k as f64 / rate as f64);
                tokio::select! {
                    biased;
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep_until(due) => {}
                }
                let body = bodies[usize::try_from(k)? % bodies.len()].clone();
                let outcome = attempt(&mut client, &target, &path, body, Expect::Single).await;
                if let Some(n) = outcome {
                    accepted.fetch_add(n, Ordering::Relaxed);
                }
                tally.record(outcome, due.elapsed(), true);
                k += connections as u64;
            }
            anyhow::Ok(tally)
        });
    }
    join(tasks).await
}

/// Runs `load(connections, rate)` on `threads` OS threads, each with its own single-threaded
/// runtime and its share of the connections and the rate, and merges their tallies. The
/// calling runtime stays free (its samplers keep running) while it waits.
async fn spread<F, Fut>(
    threads: usize,
    connections: usize,
    rate: u64,
    load: F,
) -> anyhow::Result<Tally>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<Tally>> + 'static,
{
    let threads = threads.clamp(1, connections.max(1));
    let load = Arc::new(load);
    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        let conns = connections / threads + usize::from(t < connections % threads);
        let n = threads as u64;
        let share = rate / n + u64::from((t as u64) < rate % n);
        let load = Arc::clone(&load);
        handles.push(std::thread::Builder::new().name(format!("gen-{t}")).spawn(
            move || -> anyhow::Result<Tally> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(load(conns, share))
            },
        )?);
    }
    let results = tokio::task::spawn_blocking(move || {
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a generator thread panicked"))
            })
            .collect::<Vec<_>>()
    })
    .await?;
    let mut total = Tally::default();
    for result in results {
        total.merge(result??);
    }
    Ok(total)
}

async fn join(mut tasks: JoinSet<anyhow::Result<Tally>>) -> anyhow::Result<Tally> {
    let mut total = Tally::default();
    while let Some(joined) = tasks.join_next().await {
        total.merge(joined.context("a load task panicked")??);
    }
    Ok(total)
}

/// A number the mock delivers normally: `+1415555` and four digits, never 0000–0004 (the
/// mock's failure and no-receipt rules).
fn phone_number(i: usize) -> String {
    format!("+1415555{:04}", 5 + i % 9995)
}

/// Single-send bodies, each to another number (a pool reused round-robin).
pub(crate) fn single_bodies(count: usize, priority: &str) -> Arc<Vec<Bytes>> {
    let bodies = (0..count)
        .map(|i| {
            let body = serde_json::json!({
                "phone_number": phone_number(i),
                "message": format!("Herald load test {i}: your code is 482913"),
                "priority": priority,
            });
            Bytes::from(body.to_string())
        })
        .collect();
    Arc::new(bodies)
}

/// `count` Twilio-compatible send forms, the same numbers and texts as `single_bodies`.
pub(crate) fn twilio_forms(count: usize) -> Arc<Vec<Bytes>> {
    let bodies = (0..count)
        .map(|i| {
            let form = [
                ("To", phone_number(i)),
                ("From", "HERALD".to_owned()),
                ("Body", format!("Herald load test {i}: your code is 482913")),
            ];
            Bytes::from(serde_urlencoded::to_string(form).unwrap_or_default())
        })
        .collect();
    Arc::new(bodies)
}

/// `count` bulk bodies of `per_batch` items, numbers distinct within a batch (a repeated
/// number and text would be refused as `duplicate_recipient`).
pub(crate) fn bulk_bodies(count: usize, per_batch: usize, priority: &str) -> Arc<Vec<Bytes>> {
    let bodies = (0..count)
        .map(|batch| {
            let messages: Vec<serde_json::Value> = (0..per_batch)
                .map(|i| {
                    serde_json::json!({
                        "phone_number": phone_number(batch * per_batch + i),
                        "message": format!("Herald load test {batch}/{i}: your code is 482913"),
                        "priority": priority,
                    })
                })
                .collect();
            Bytes::from(serde_json::json!({ "messages": messages }).to_string())
        })
        .collect();
    Arc::new(bodies)
}

/// One urgent message, for the priority probes.
pub(crate) fn urgent_body(probe: usize) -> Bytes {
    let body = serde_json::json!({
        "phone_number": phone_number(9000 + probe),
        "message": format!("Herald urgent probe {probe}"),
        "priority": "urgent",
    });
    Bytes::from(body.to_string())
}
