//! Webhooks to customers (issue 9): `--rate` single sends/s offered to `herald serve`
//! (workers on, the mock's default delays) for `--pace-duration` seconds, once with no
//! webhook and once with the account's webhook pointed at a receiver in this process (its own
//! thread and runtime, answering 200 at once). Every status change of every message is one
//! event: queued, sending, sent, delivered, read.
//!
//! Reported: events delivered per second, the delay from each status change (the event's
//! `at`) to the receiver having it, events the log holds that never arrived, and how much the
//! dispatch rate (sent/s) drops with webhooks on.

use crate::Args;
use crate::process::Sandbox;
use crate::report::Table;
use crate::scenarios::pace_run_with;
use axum::body::Bytes;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const COLUMNS: [&str; 11] = [
    "webhook",
    "accepted/s",
    "sent/s",
    "events/s",
    "p50 ms",
    "p99 ms",
    "max ms",
    "events",
    "missing",
    "srv CPU%",
    "gen CPU%",
];

/// What the receiver saw: per event, its sequence number, the delay from its `at`, and when
/// it arrived (ms since the epoch); and the delays apart per status reached.
#[derive(Default)]
pub(crate) struct Seen {
    pub(crate) events: Vec<(i64, f64, i64)>,
    by_status: std::collections::BTreeMap<String, Vec<f64>>,
    /// The client address of every post: one per connection Herald opened.
    connections: HashSet<SocketAddr>,
}

impl Seen {
    /// p50/p99 of the delay per status: a status whose `at` is set before the writer records
    /// it (sent, and the receipts) includes the writer's lag; `queued` is stamped as written.
    fn by_status_line(&mut self) -> String {
        let mut parts = Vec::new();
        for (status, delays) in &mut self.by_status {
            delays.sort_by(f64::total_cmp);
            parts.push(format!(
                "{status} {:.0}/{:.0}",
                quantile(delays, 0.5),
                quantile(delays, 0.99)
            ));
        }
        format!(
            "   delay by status reached, p50/p99 ms: {}; {} connections for {} posts",
            parts.join(", "),
            self.connections.len(),
            self.events.len()
        )
    }
}

/// The receiver's thread, by name (`post_floor` reads its CPU).
pub(crate) const RECEIVER_THREAD: &str = "receiver";

/// Starts the receiver on its own thread; answers its address.
pub(crate) fn start_receiver(seen: Arc<Mutex<Seen>>) -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    std::thread::Builder::new()
        .name(RECEIVER_THREAD.into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the receiver");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("the listener");
                let app = axum::Router::new().fallback(
                    move |axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<
                        SocketAddr,
                    >,
                          body: Bytes| {
                        let seen = Arc::clone(&seen);
                        async move {
                            let now = chrono::Utc::now().timestamp_millis();
                            if let Ok(event) = serde_json::from_slice::<serde_json::Value>(&body) {
                                let seq = event["event_id"]
                                    .as_str()
                                    .and_then(|id| id.strip_prefix("evt_"))
                                    .and_then(|n| n.parse().ok())
                                    .unwrap_or(-1);
                                let at = event["at"]
                                    .as_str()
                                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                                    .map_or(now, |t| t.timestamp_millis());
                                let status = event["status"].as_str().unwrap_or("?").to_owned();
                                let delay = (now - at) as f64;
                                let mut seen = seen.lock().unwrap();
                                seen.events.push((seq, delay, now));
                                seen.by_status.entry(status).or_default().push(delay);
                                seen.connections.insert(peer);
                            }
                            axum::http::StatusCode::OK
                        }
                    },
                );
                let _ = axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .await;
            });
        })?;
    Ok(addr)
}

pub(crate) fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

pub(crate) async fn webhooks(args: &Args) -> anyhow::Result<()> {
    let title = format!(
        "webhooks: {} single sends/s offered for {} s, herald serve (workers on, default \
         config but for private webhook targets), without and with the account's webhook",
        args.rate, args.pace_duration
    );
    let mut table = Table::new(title, &COLUMNS);
    let duration = Duration::from_secs(args.pace_duration);
    let config = "[webhooks]\nallow_private_targets = true\n";
    let mut drops = Vec::new();
    let mut ons: Vec<Vec<f64>> = Vec::new();
    for _ in 0..args.runs {
        let off = pace_run_with(
            args,
            &Sandbox::new(args)?.with_config(config)?,
            args.rate,
            duration,
            None,
        )
        .await?;
        table.push(vec![
            0.0,
            off.accepted,
            off.sent,
            f64::NAN,
            f64::NAN,
            f64::NAN,
            f64::NAN,
            f64::NAN,
            f64::NAN,
            off.server_cpu,
            off.generator_cpu,
        ]);

        let seen = Arc::new(Mutex::new(Seen::default()));
        let addr = start_receiver(Arc::clone(&seen))?;
        let sandbox = Sandbox::new(args)?.with_config(config)?;
        let url = format!("http://{addr}/hooks");
        let on = pace_run_with(args, &sandbox, args.rate, duration, Some(&url)).await?;
        let logged = sandbox.db().await?.events().await?;
        let mut seen = std::mem::take(&mut *seen.lock().unwrap());
        println!("{}", seen.by_status_line());
        let distinct: HashSet<i64> = seen.events.iter().map(|e| e.0).collect();
        let mut delays: Vec<f64> = seen.events.iter().map(|e| e.1).collect();
        delays.sort_by(f64::total_cmp);
        let first = seen.events.iter().map(|e| e.2).min().unwrap_or(0);
        let last = seen.events.iter().map(|e| e.2).max().unwrap_or(0);
        let span = ((last - first) as f64 / 1000.0).max(0.001);
        let row = vec![
            1.0,
            on.accepted,
            on.sent,
            seen.events.len() as f64 / span,
            quantile(&delays, 0.50),
            quantile(&delays, 0.99),
            delays.last().copied().unwrap_or(f64::NAN),
            seen.events.len() as f64,
            logged.saturating_sub(distinct.len() as u64) as f64,
            on.server_cpu,
            on.generator_cpu,
        ];
        ons.push(row.clone());
        table.push(row);
        drops.push(1.0 - on.sent / off.sent);
    }
    drops.sort_by(f64::total_cmp);
    let drop = quantile(&drops, 0.5);
    let mut p99s: Vec<f64> = ons.iter().map(|r| r[5]).collect();
    p99s.sort_by(f64::total_cmp);
    let missing = ons.iter().map(|r| r[8]).fold(0.0, f64::max);
    println!(
        "   dispatch drop with webhooks on (1 − sent/s on ÷ off, per pair): median {:.1} %",
        100.0 * drop
    );
    table.finish(&[
        (
            "p99 status change → receiver ≤ 1 s",
            quantile(&p99s, 0.5) <= 1000.0,
        ),
        ("dispatch drops ≤ 20 % with webhooks on", drop <= 0.20),
        ("no event missing", missing == 0.0),
    ]);
    println!(
        "   (webhook 0: none, 1: on; events/s: events received ÷ time from the first to the \
         last; ms: from the status change (`at`) to the receiver; missing: events in the log \
         that never arrived)"
    );
    Ok(())
}
