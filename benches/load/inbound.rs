//! Inbound (issue 9): messages from handsets stored by `herald serve` (default config,
//! workers on), over `--connections` keep-alive connections.
//!
//! - through the generic webhook `POST /sms/receive` (JSON, the API key), and
//! - through Twilio's signed incoming-message webhook `/webhooks/twilio/inbound`
//!   (form-encoded, `X-Twilio-Signature`), each a distinct `MessageSid`.
//!
//! `--backlog` messages per run, from 10,000 different numbers (so threads are made and
//! updated), bodies and signatures made before the clock starts. Each answer is given only
//! once the message is on disk, so the stored count read afterwards is final: "lost" is
//! answered-200-but-missing.

use crate::Args;
use crate::http::Client;
use crate::process::Sandbox;
use crate::report::Table;
use anyhow::Context;
use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode, Uri};
use herald::providers::twilio::{INBOUND_PATH, signature};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const AUTH_TOKEN: &str = "bench-auth-token";
const PUBLIC_URL: &str = "https://herald.example.com";
const OUR_NUMBER: &str = "+15017122661";

const COLUMNS: [&str; 8] = [
    "messages", "stored/s", "p50 ms", "p99 ms", "errors", "srv CPU%", "stored", "lost",
];

fn sender(i: usize) -> String {
    format!("+1415555{:04}", i % 10_000)
}

/// One request of a run: its body, and its Twilio signature (None: the generic webhook).
pub(crate) type Prepared = (Bytes, Option<HeaderValue>);

pub(crate) async fn inbound(args: &Args) -> anyhow::Result<()> {
    let count = args.backlog;
    let generic: Arc<Vec<Prepared>> = Arc::new(
        (0..count)
            .map(|i| {
                let body = serde_json::json!({
                    "phone_number": sender(i),
                    "message": format!("Reply {i}: yes, Tuesday works"),
                    "external_id": format!("gw-{i}"),
                });
                (Bytes::from(body.to_string()), None)
            })
            .collect(),
    );
    let url = format!("{PUBLIC_URL}{INBOUND_PATH}");
    let twilio: Arc<Vec<Prepared>> = Arc::new(
        (0..count)
            .map(|i| {
                let from = sender(i);
                let sid = format!("SM{i:032x}");
                let params: Vec<(String, String)> = [
                    ("AccountSid", ACCOUNT_SID),
                    ("MessageSid", sid.as_str()),
                    ("SmsSid", sid.as_str()),
                    ("From", from.as_str()),
                    ("To", OUR_NUMBER),
                    ("Body", "Yes, Tuesday works"),
                    ("NumMedia", "0"),
                    ("ApiVersion", "2010-04-01"),
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
    let config = format!(
        "[server]\npublic_url = \"{PUBLIC_URL}\"\n\
         [providers.twilio]\naccount_sid = \"{ACCOUNT_SID}\"\nauth_token = \"{AUTH_TOKEN}\"\n"
    );
    let mut generic_table = Table::new(
        format!(
            "inbound through POST /sms/receive, {} connections, `herald serve` (workers on, default config)",
            args.connections
        ),
        &COLUMNS,
    );
    let mut twilio_table = Table::new(
        format!(
            "inbound through signed Twilio webhooks, {} connections, `herald serve` (workers on)",
            args.connections
        ),
        &COLUMNS,
    );
    for _ in 0..args.runs {
        generic_table.push(
            run(
                args,
                &Sandbox::new(args)?,
                "/api/messaging/sms/receive",
                &generic,
            )
            .await?,
        );
        let sandbox = Sandbox::new(args)?.with_config(&config)?;
        twilio_table.push(run(args, &sandbox, INBOUND_PATH, &twilio).await?);
    }
    println!("\n-- summary of inbound");
    for table in [&mut generic_table, &mut twilio_table] {
        table.reprint();
        let (rate, lost) = (table.median("stored/s"), table.max("lost"));
        let errors = table.max("errors");
        table.finish(&[
            ("≥ 10,000 inbound/s stored", rate >= 10_000.0),
            ("none lost", lost == 0.0 && errors == 0.0),
        ]);
    }
    Ok(())
}

/// Posts every prepared request over `--connections` and counts what was stored.
async fn run(
    args: &Args,
    sandbox: &Sandbox,
    path: &'static str,
    requests: &Arc<Vec<Prepared>>,
) -> anyhow::Result<Vec<f64>> {
    let posted = post_all(args, sandbox, true, path, requests).await?;
    let stored = sandbox
        .db()
        .await?
        .inbound()
        .await
        .context("counting stored inbound messages")?;
    Ok(vec![
        requests.len() as f64,
        posted.answered / posted.seconds,
        posted.p50_ms,
        posted.p99_ms,
        posted.errors,
        posted.server_cpu,
        stored as f64,
        posted.answered - stored as f64,
    ])
}

/// What posting a list of requests came to.
pub(crate) struct Posted {
    /// Requests answered `200`.
    pub(crate) answered: f64,
    pub(crate) seconds: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) errors: f64,
    /// The server's CPU over the run, in % of one core.
    pub(crate) server_cpu: f64,
}

/// Starts `herald serve` (with or without workers), posts every prepared request to `path`
/// over `--connections` keep-alive connections (closed loop), and stops the server: every
/// answer was given after its commit, so the database can be read afterwards.
pub(crate) async fn post_all(
    args: &Args,
    sandbox: &Sandbox,
    workers: bool,
    path: &'static str,
    requests: &Arc<Vec<Prepared>>,
) -> anyhow::Result<Posted> {
    let server = sandbox.serve(workers).await?;
    let cpu = server.cpu_seconds();
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..args.connections {
        let (target, requests, next, errors) = (
            sandbox.target(),
            Arc::clone(requests),
            Arc::clone(&next),
            Arc::clone(&errors),
        );
        tasks.spawn(async move {
            let mut client = Client::connect(target).await?;
            let mut latencies: Vec<Duration> = Vec::new();
            while let Some((body, signed)) = requests.get(next.fetch_add(1, Ordering::Relaxed)) {
                let sent = Instant::now();
                let uri = Uri::from_static(path);
                let answer = match signed {
                    Some(s) => client.post_twilio_form(uri, body.clone(), s.clone()).await,
                    None => client.post(uri, body.clone()).await,
                };
                match answer {
                    Ok((StatusCode::OK, _)) => latencies.push(sent.elapsed()),
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            anyhow::Ok(latencies)
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done??);
    }
    let seconds = started.elapsed().as_secs_f64();
    let server_cpu = 100.0 * (server.cpu_seconds() - cpu) / seconds;
    server.stop().await?;
    latencies.sort_unstable();
    let quantile = |q: f64| {
        let last = latencies.len().saturating_sub(1);
        latencies
            .get(((last as f64) * q).round() as usize)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    Ok(Posted {
        answered: latencies.len() as f64,
        seconds,
        p50_ms: quantile(0.5),
        p99_ms: quantile(0.99),
        errors: errors.load(Ordering::Relaxed) as f64,
        server_cpu,
    })
}
