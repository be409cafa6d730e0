//! Twilio over loopback HTTP (issue 8). A Twilio-shaped stub runs in this process on its own
//! thread and answers sends as Twilio does (form-encoded POST, Basic auth, a JSON Message
//! resource with a fresh `SM…` sid), recording each send with the time it arrived.
//!
//! - **twilio-dispatch**: a backlog drained by `herald worker` through the stub, no sender
//!   limit, each run beside a run through the in-process zero-latency mock, then the same
//!   messages' signed `delivered` status callbacks posted to `herald serve --no-workers` over
//!   `--connections`, counting the receipts applied.
//! - **sender-limits**: three senders limited to 1, 10 and 80 messages/s (a per-sender rate
//!   each), all backlogged, for `--pace-duration` seconds; each sender's rate as the stub
//!   timed it.

use crate::Args;
use crate::http::Client;
use crate::inbound::{Prepared, post_all};
use crate::process::Sandbox;
use crate::report::Table;
use crate::scenarios::{self, DISPATCH_COLUMNS};
use anyhow::{Context, ensure};
use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::response::IntoResponse;
use herald::providers::twilio::{STATUS_PATH, signature};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const AUTH_TOKEN: &str = "bench-auth-token";
/// What Herald tells Twilio to call back; signatures are over it, whatever address the
/// callbacks really reach.
const PUBLIC_URL: &str = "https://herald.example.com";
const DEFAULT_FROM: &str = "+15017122661";

/// One send as the stub received it.
struct Received {
    sid: String,
    from: String,
    /// `To` and `Body`: the same message sent twice has the same key.
    key: String,
    at: Instant,
}

#[derive(Default)]
struct StubState {
    seq: AtomicU64,
    sends: Mutex<Vec<Received>>,
}

impl StubState {
    fn sends(&self) -> std::sync::MutexGuard<'_, Vec<Received>> {
        self.sends.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The Twilio stub, on a thread and runtime of its own (its CPU is not the generator's).
struct Stub {
    addr: SocketAddr,
    state: Arc<StubState>,
}

impl Stub {
    fn start() -> anyhow::Result<Stub> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(StubState::default());
        let shared = Arc::clone(&state);
        let path = format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json");
        std::thread::Builder::new()
            .name("twilio-stub".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async move {
                    let app = axum::Router::new().route(
                        &path,
                        axum::routing::post(move |body: Bytes| {
                            let state = Arc::clone(&shared);
                            async move { accept(&state, &body) }
                        }),
                    );
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    axum::serve(listener, app).await
                })
            })?;
        Ok(Stub { addr, state })
    }

    fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Forgets what it received (between runs).
    fn clear(&self) {
        self.state.sends().clear();
    }
}

/// Twilio's answer to an accepted send: `201` and the Message resource.
fn accept(state: &StubState, body: &[u8]) -> axum::response::Response {
    let at = Instant::now();
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    };
    let sid = format!("SM{:032x}", state.seq.fetch_add(1, Ordering::Relaxed) + 1);
    let answer = serde_json::json!({
        "sid": sid, "account_sid": ACCOUNT_SID, "status": "queued",
        "to": field("To"), "from": field("From"), "body": field("Body"),
        "num_segments": "1", "direction": "outbound-api", "api_version": "2010-04-01",
        "error_code": null, "error_message": null,
    });
    state.sends().push(Received {
        sid,
        from: field("From").to_owned(),
        key: format!("{}\n{}", field("To"), field("Body")),
        at,
    });
    (StatusCode::CREATED, axum::Json(answer)).into_response()
}

/// Settings that send SMS through the stub.
fn twilio_toml(stub: &Stub, sender_per_second: u32, sender_rates: &[(&str, u32)]) -> String {
    let rates: String = sender_rates
        .iter()
        .map(|(sender, rate)| format!("\"{sender}\" = {rate}\n"))
        .collect();
    format!(
        "[server]\npublic_url = \"{PUBLIC_URL}\"\n\
         [providers]\nsms = \"twilio\"\n\
         [providers.twilio]\nbase_url = \"{}\"\naccount_sid = \"{ACCOUNT_SID}\"\n\
         auth_token = \"{AUTH_TOKEN}\"\nfrom = \"{DEFAULT_FROM}\"\n\
         sender_per_second = {sender_per_second}\n\
         [providers.twilio.sender_rates]\n{rates}",
        stub.base_url()
    )
}

// ---------------------------------------------------------------------------------------
// twilio-dispatch

pub(crate) async fn twilio_dispatch(args: &Args) -> anyhow::Result<()> {
    let stub = Stub::start()?;
    let mut mock = Table::new(
        format!(
            "dispatch through the in-process mock (zero latency): {} queued messages drained by `herald worker`",
            args.backlog
        ),
        &DISPATCH_COLUMNS,
    );
    let mut columns = DISPATCH_COLUMNS.to_vec();
    columns.extend(["stub sends", "twice", "gen CPU%"]);
    let mut twilio = Table::new(
        format!(
            "dispatch through the Twilio stub over loopback HTTP (no sender limit): {} queued \
             messages drained by `herald worker`",
            args.backlog
        ),
        &columns,
    );
    let mut callbacks = Table::new(
        format!(
            "signed status callbacks (delivered) for those messages, {} connections, to \
             `herald serve --no-workers`",
            args.connections
        ),
        &[
            "callbacks",
            "receipts/s",
            "p50 ms",
            "p99 ms",
            "errors",
            "srv CPU%",
            "delivered",
            "lost",
        ],
    );
    for _ in 0..args.runs {
        // Alternating, so both see the same neighbours on this shared machine.
        mock.push(scenarios::dispatch_run(args, &Sandbox::new(args)?).await?);

        stub.clear();
        let sandbox = Sandbox::new(args)?.with_config(&twilio_toml(&stub, 0, &[]))?;
        let cpu = process_cpu_seconds();
        let mut row = scenarios::dispatch_run(args, &sandbox).await?;
        let seconds = row.get(4).copied().unwrap_or(f64::NAN);
        let gen_cpu = 100.0 * (process_cpu_seconds() - cpu) / seconds;
        let (sends, twice, sids) = {
            let sends = stub.state.sends();
            let mut keys = HashSet::new();
            let twice = sends
                .iter()
                .filter(|r| !keys.insert(r.key.as_str()))
                .count();
            let sids: Vec<String> = sends.iter().map(|r| r.sid.clone()).collect();
            (sends.len(), twice, sids)
        };
        row.extend([sends as f64, twice as f64, gen_cpu]);
        twilio.push(row);
        callbacks.push(callback_run(args, &sandbox, sids).await?);
    }
    println!("\n-- summary of twilio-dispatch");
    mock.reprint();
    mock.finish(&[]);
    twilio.reprint();
    twilio.finish(&[
        (
            "≥ 8,000 messages/s through the stub",
            twilio.median("msg/s") >= 8_000.0,
        ),
        (
            "each message received once",
            twilio.max("twice") == 0.0 && twilio.max("unsent") == 0.0,
        ),
    ]);
    println!(
        "   Twilio stub ÷ in-process mock, medians: {:.2} (msg/s); gen CPU% is this process \
         (the stub's thread and the sampler) over the drain",
        twilio.median("msg/s") / mock.median("msg/s")
    );
    callbacks.reprint();
    callbacks.finish(&[
        (
            "≥ 10,000 receipts/s applied",
            callbacks.median("receipts/s") >= 10_000.0,
        ),
        (
            "none lost",
            callbacks.max("lost") == 0.0 && callbacks.max("errors") == 0.0,
        ),
    ]);
    Ok(())
}

/// Posts a signed `delivered` callback for each sid (bodies and signatures made first, so
/// the generator only sends), and counts what the database shows afterwards.
async fn callback_run(
    args: &Args,
    sandbox: &Sandbox,
    sids: Vec<String>,
) -> anyhow::Result<Vec<f64>> {
    let url = format!("{PUBLIC_URL}{STATUS_PATH}");
    let callbacks: Arc<Vec<Prepared>> = Arc::new(
        sids.iter()
            .map(|sid| {
                let params: Vec<(String, String)> = [
                    ("AccountSid", ACCOUNT_SID),
                    ("ApiVersion", "2010-04-01"),
                    ("MessageSid", sid.as_str()),
                    ("MessageStatus", "delivered"),
                    ("SmsSid", sid.as_str()),
                    ("SmsStatus", "delivered"),
                ]
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
                let body = serde_urlencoded::to_string(&params)?;
                let signed = signature::sign(AUTH_TOKEN, &url, &params);
                Ok((Bytes::from(body), Some(HeaderValue::from_str(&signed)?)))
            })
            .collect::<anyhow::Result<_>>()?,
    );
    let posted = post_all(args, sandbox, false, STATUS_PATH, &callbacks).await?;
    // Each callback is committed before its 200, so the count is final now.
    let delivered = sandbox.db().await?.delivered().await?;
    let total = callbacks.len() as f64;
    Ok(vec![
        total,
        posted.answered / posted.seconds,
        posted.p50_ms,
        posted.p99_ms,
        posted.errors,
        posted.server_cpu,
        delivered as f64,
        total - delivered as f64,
    ])
}

// ---------------------------------------------------------------------------------------
// sender-limits

/// Three senders and their limits, messages per second.
const SENDERS: [(&str, u32); 3] = [
    (DEFAULT_FROM, 1),
    ("+18005550110", 10),
    ("+18005550180", 80),
];

pub(crate) async fn sender_limits(args: &Args) -> anyhow::Result<()> {
    let stub = Stub::start()?;
    let window = Duration::from_secs(args.pace_duration);
    let mut columns = Vec::new();
    for (_, rate) in SENDERS {
        columns.push(Box::leak(format!("{rate}/s sent/s").into_boxed_str()) as &'static str);
        columns.push(Box::leak(format!("{rate}/s error %").into_boxed_str()) as &'static str);
    }
    let mut table = Table::new(
        format!(
            "sender limits: senders at 1, 10 and 80 messages/s (their own rates), backlogged, \
             {} s, herald serve (workers on) through the Twilio stub; rates as the stub timed them",
            window.as_secs()
        ),
        &columns,
    );
    for _ in 0..args.runs {
        stub.clear();
        let default_rate = SENDERS[0].1;
        let sandbox =
            Sandbox::new(args)?.with_config(&twilio_toml(&stub, default_rate, &SENDERS[1..]))?;
        let server = sandbox.serve(true).await?;
        // More than each sender can send in the window, so none ever runs dry.
        let mut client = Client::connect(sandbox.target()).await?;
        for (sender, rate) in SENDERS {
            let wanted = (rate as usize) * (window.as_secs() as usize + 10);
            for chunk in (0..wanted).collect::<Vec<_>>().chunks(100) {
                let messages: Vec<serde_json::Value> = chunk
                    .iter()
                    .map(|i| {
                        serde_json::json!({
                            "phone_number": format!("+1415555{:04}", 5 + i % 9995),
                            "message": format!("sender limit test {sender} {i}"),
                            "sender_id": sender,
                        })
                    })
                    .collect();
                let body = serde_json::json!({ "messages": messages }).to_string();
                let (status, answer) = client
                    .post(
                        Uri::from_static("/api/messaging/send-bulk/"),
                        Bytes::from(body),
                    )
                    .await?;
                ensure!(
                    status == StatusCode::ACCEPTED,
                    "queueing failed: {status} {answer:?}"
                );
            }
        }
        // The stub times the sends; this only has to outlast the window.
        tokio::time::sleep(window + Duration::from_secs(2)).await;
        server.kill()?;
        let sends = stub.state.sends();
        let mut row = Vec::new();
        for (sender, rate) in SENDERS {
            let mut times: Vec<Instant> = sends
                .iter()
                .filter(|r| r.from == sender)
                .map(|r| r.at)
                .collect();
            times.sort_unstable();
            // From this sender's first send, the sends within the window: (n − 1) intervals.
            let first = *times.first().context("a sender sent nothing")?;
            let within: Vec<&Instant> = times
                .iter()
                .filter(|t| t.duration_since(first) <= window)
                .collect();
            let span = within
                .last()
                .map_or(0.0, |t| t.duration_since(first).as_secs_f64());
            let measured = (within.len().saturating_sub(1)) as f64 / span;
            row.push(measured);
            row.push(100.0 * (measured / f64::from(rate) - 1.0));
        }
        drop(sends);
        table.push(row);
    }
    let within = |column: &str| table.median(column).abs() <= 2.0;
    table.finish(&[(
        "each sender within ±2 % of its limit",
        within("1/s error %") && within("10/s error %") && within("80/s error %"),
    )]);
    Ok(())
}

/// CPU seconds this process (generator and stub) has used so far.
fn process_cpu_seconds() -> f64 {
    crate::process::cpu_seconds("/proc/self/stat")
}
