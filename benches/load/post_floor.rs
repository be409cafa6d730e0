//! What one webhook post costs with no Herald at all (issue 9): the floor under the
//! `webhooks` scenario's 5,000 msg/s case, which makes 25,000 posts a second.
//!
//! A client built as Herald's dispatcher builds its own (reqwest, the same pool and timeout
//! settings, on a runtime of two workers as `herald serve` has) posts signed, event-shaped
//! JSON to the `webhooks` scenario's receiver (its own thread, parsing each body). Nothing is
//! read from or written to a database. Each thread's CPU is read from `/proc/self/task`, so
//! the client's and the receiver's cost per post are apart.
//!
//! Two phases: closed loop with `--connections` × 4 posts in flight for `--pace-duration`
//! seconds (the most this machine posts), then `--rate` posts/s offered open loop for as
//! long. Whatever Herald does per event comes on top of these figures.

use crate::Args;
use crate::report::Table;
use crate::webhooks::{Seen, quantile, start_receiver};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const COLUMNS: [&str; 8] = [
    "offered/s",
    "posts/s",
    "p50 ms",
    "p99 ms",
    "client CPU%",
    "client µs/post",
    "receiver CPU%",
    "receiver µs/post",
];

/// The names the client's and the receiver's threads carry, so their CPU can be read apart.
const CLIENT_THREAD: &str = "floor-client";
const RECEIVER_THREAD: &str = crate::webhooks::RECEIVER_THREAD;

/// CPU seconds of every thread of this process whose name starts with `prefix`.
fn threads_cpu(prefix: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.trim_end().starts_with(prefix))
        })
        .map(|task| crate::process::cpu_seconds(&task.path().join("stat").to_string_lossy()))
        .sum()
}

/// One post the way the dispatcher makes it: the event's JSON, signed, with its headers.
async fn post(client: &reqwest::Client, url: &str, seq: u64) -> bool {
    let now = chrono::Utc::now();
    let body = serde_json::to_vec(&serde_json::json!({
        "event": "message.status",
        "event_id": format!("evt_{seq}"),
        "message_id": format!("msg_{seq:026}"),
        "status": "delivered",
        "previous_status": "sent",
        "error_code": null,
        "at": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "phone_number": "+14155550123",
        "campaign_id": null,
        "channel": "sms",
    }))
    .unwrap_or_default();
    let timestamp = now.timestamp();
    let signature = herald::events::signature("whsec_floor", timestamp, &body);
    let sent = client
        .post(url)
        .header("content-type", "application/json")
        .header("x-herald-timestamp", timestamp.to_string())
        .header("x-herald-signature", signature)
        .header("x-herald-event-id", format!("evt_{seq}"))
        .body(body)
        .send()
        .await;
    match sent {
        // Read the answer, as the dispatcher does, so the connection goes back to the pool.
        Ok(response) => {
            let delivered = response.status().is_success();
            response.bytes().await.is_ok() && delivered
        }
        Err(_) => false,
    }
}

/// Posts for `duration`: closed loop with `in_flight` posts outstanding when `rate` is 0,
/// else `rate` posts a second (never more than `in_flight` outstanding). Answers the posts
/// that got a 2xx.
async fn post_for(
    url: String,
    rate: u64,
    in_flight: usize,
    duration: Duration,
) -> anyhow::Result<u64> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(in_flight)
        .build()?;
    let url = Arc::new(url);
    let ok = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + duration;
    if rate == 0 {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..in_flight {
            let (client, url, ok, next) = (
                client.clone(),
                Arc::clone(&url),
                Arc::clone(&ok),
                Arc::clone(&next),
            );
            tasks.spawn(async move {
                while Instant::now() < end {
                    if post(&client, &url, next.fetch_add(1, Ordering::Relaxed)).await {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        tasks.join_all().await;
    } else {
        let slots = Arc::new(tokio::sync::Semaphore::new(in_flight));
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let start = Instant::now();
        let mut started = 0u64;
        let mut tasks = tokio::task::JoinSet::new();
        while Instant::now() < end {
            tick.tick().await;
            let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
            while started < due {
                let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                    break;
                };
                started += 1;
                let (client, url, ok) = (client.clone(), Arc::clone(&url), Arc::clone(&ok));
                tasks.spawn(async move {
                    if post(&client, &url, started).await {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    drop(slot);
                });
            }
            while tasks.try_join_next().is_some() {}
        }
        tasks.join_all().await;
    }
    Ok(ok.load(Ordering::Relaxed))
}

/// One phase on a client runtime of its own, which is shut down (its threads joined) before
/// this returns, so the next phase's thread CPU counts only its own threads. Answers the posts
/// that got a 2xx, the wall time, and the client's and the receiver's CPU seconds.
fn phase_on_own_runtime(
    url: String,
    rate: u64,
    in_flight: usize,
    duration: Duration,
) -> anyhow::Result<(u64, f64, f64, f64)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(CLIENT_THREAD)
        .enable_all()
        .build()?;
    let (client_before, receiver_before) =
        (threads_cpu(CLIENT_THREAD), threads_cpu(RECEIVER_THREAD));
    let started = Instant::now();
    let posted = runtime.block_on(post_for(url, rate, in_flight, duration))?;
    let wall = started.elapsed().as_secs_f64();
    let client = threads_cpu(CLIENT_THREAD) - client_before;
    let receiver = threads_cpu(RECEIVER_THREAD) - receiver_before;
    // Dropped here, outside any runtime: waits for the client's threads to end.
    drop(runtime);
    Ok((posted, wall, client, receiver))
}

pub(crate) async fn post_floor(args: &Args) -> anyhow::Result<()> {
    let in_flight = args.connections.saturating_mul(4).max(1);
    let title = format!(
        "post floor: signed event posts from a reqwest client (two runtime workers, {in_flight} \
         in flight) to the webhooks receiver, no Herald, {} s per phase",
        args.pace_duration
    );
    let duration = Duration::from_secs(args.pace_duration);
    // Printed after all runs, one table per phase.
    let mut phases: [Vec<Vec<f64>>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..args.runs {
        for (phase, rate) in [0, args.rate].into_iter().enumerate() {
            let seen = Arc::new(Mutex::new(Seen::default()));
            let addr = start_receiver(Arc::clone(&seen))?;
            let url = format!("http://{addr}/hooks");
            let (posted, wall, client, receiver) = tokio::task::spawn_blocking(move || {
                phase_on_own_runtime(url, rate, in_flight, duration)
            })
            .await??;
            let mut delays: Vec<f64> = std::mem::take(&mut *seen.lock().unwrap())
                .events
                .iter()
                .map(|e| e.1)
                .collect();
            delays.sort_by(f64::total_cmp);
            let per_post = |cpu: f64| 1e6 * cpu / (posted.max(1) as f64);
            phases[phase].push(vec![
                rate as f64,
                posted as f64 / wall,
                quantile(&delays, 0.5),
                quantile(&delays, 0.99),
                100.0 * client / wall,
                per_post(client),
                100.0 * receiver / wall,
                per_post(receiver),
            ]);
        }
    }
    for (phase, rows) in phases.into_iter().enumerate() {
        let what = if phase == 0 {
            "closed loop"
        } else {
            "open loop"
        };
        let mut table = Table::new(format!("{title}: {what}"), &COLUMNS);
        for row in rows {
            table.push(row);
        }
        table.finish(&[]);
    }
    println!(
        "   (offered/s 0: closed loop; ms: from the body's `at` to the receiver having it; \
         CPU% of one core over the phase; µs/post: that CPU over the posts that got a 2xx)"
    );
    Ok(())
}
