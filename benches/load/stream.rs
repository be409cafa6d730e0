//! The live event stream (issue 9): `--clients` connections to `GET /api/messaging/events` on
//! `herald serve` (workers on, the mock's default delays) while `--rate` single sends/s are
//! offered for `--pace-duration` seconds. Every client gets every event (five per message).
//!
//! The clients run on their own thread and runtime, so reading the streams does not slow
//! the load generator. Reported: frames received per second over all clients, and the delay
//! from each status change (the event's `at`) to a client having it.

use crate::Args;
use crate::process::{API_KEY, Sandbox};
use crate::report::Table;
use crate::scenarios::pace_run_with;
use futures::StreamExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const COLUMNS: [&str; 9] = [
    "clients", "sent/s", "frames/s", "p50 ms", "p99 ms", "max ms", "frames", "srv CPU%", "gen CPU%",
];

#[derive(Default)]
struct Seen {
    delays: Vec<f64>,
    first: i64,
    last: i64,
}

/// One client: connects (retrying until the server is up), then reads frames until the
/// stream ends.
async fn client(url: String, connected: Arc<AtomicUsize>, seen: Arc<Mutex<Seen>>) {
    let http = reqwest::Client::new();
    let response = loop {
        match http.get(&url).bearer_auth(API_KEY).send().await {
            Ok(r) if r.status().is_success() => break r,
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    connected.fetch_add(1, Ordering::SeqCst);
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let mut delays = Vec::new();
    while let Some(Ok(chunk)) = stream.next().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        let now = chrono::Utc::now().timestamp_millis();
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data:")) else {
                continue;
            };
            let at = serde_json::from_str::<serde_json::Value>(data.trim())
                .ok()
                .and_then(|v| v["at"].as_str().map(str::to_owned))
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
                .map_or(now, |t| t.timestamp_millis());
            delays.push((now, (now - at) as f64));
        }
        if delays.len() >= 1024 {
            flush(&seen, &mut delays);
        }
    }
    flush(&seen, &mut delays);
}

fn flush(seen: &Mutex<Seen>, delays: &mut Vec<(i64, f64)>) {
    let mut s = seen.lock().unwrap();
    for (at, d) in delays.drain(..) {
        s.first = if s.first == 0 { at } else { s.first.min(at) };
        s.last = s.last.max(at);
        s.delays.push(d);
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

pub(crate) async fn stream(args: &Args) -> anyhow::Result<()> {
    let title = format!(
        "event stream: {} clients on GET /api/messaging/events while {} single sends/s are \
         offered for {} s, herald serve (workers on, default config)",
        args.clients, args.rate, args.pace_duration
    );
    let mut table = Table::new(title, &COLUMNS);
    let duration = Duration::from_secs(args.pace_duration);
    for _ in 0..args.runs {
        let sandbox = Sandbox::new(args)?;
        let url = format!("http://{}/api/messaging/events", sandbox.addr);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let connected = Arc::new(AtomicUsize::new(0));
        let clients = args.clients;
        let readers = {
            let (seen, connected) = (Arc::clone(&seen), Arc::clone(&connected));
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for the clients");
                runtime.block_on(async move {
                    let mut all = tokio::task::JoinSet::new();
                    for _ in 0..clients {
                        all.spawn(client(
                            url.clone(),
                            Arc::clone(&connected),
                            Arc::clone(&seen),
                        ));
                    }
                    while all.join_next().await.is_some() {}
                });
            })
        };
        let run = pace_run_with(args, &sandbox, args.rate, duration, None).await?;
        // The server stopped: every stream has ended.
        readers
            .join()
            .map_err(|_| anyhow::anyhow!("a stream reader panicked"))?;
        let mut seen = std::mem::take(&mut *seen.lock().unwrap());
        seen.delays.sort_by(f64::total_cmp);
        let span = ((seen.last - seen.first) as f64 / 1000.0).max(0.001);
        table.push(vec![
            connected.load(Ordering::SeqCst) as f64,
            run.sent,
            seen.delays.len() as f64 / span,
            quantile(&seen.delays, 0.50),
            quantile(&seen.delays, 0.99),
            seen.delays.last().copied().unwrap_or(f64::NAN),
            seen.delays.len() as f64,
            run.server_cpu,
            run.generator_cpu,
        ]);
    }
    table.finish(&[
        (
            "p99 status change → client ≤ 200 ms",
            table.median("p99 ms") <= 200.0,
        ),
        (
            "every client connected",
            table.median("clients") >= args.clients as f64,
        ),
    ]);
    println!(
        "   (frames/s: over all clients, first frame to last; ms: from the status change \
         (`at`) to the client)"
    );
    Ok(())
}
