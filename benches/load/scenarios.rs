//! The five delivery scenarios of the issue (the campaign ones are in `campaigns.rs`). Each
//! run starts from a fresh database; each scenario prints a table of its runs, the medians,
//! and whether the goals are met.

use crate::Args;
use crate::http::{self, Client, Expect, Tally};
use crate::process::{self, Db, Sandbox, Server};
use crate::report::{Table, median};
use anyhow::{Context, bail, ensure};
use hyper::StatusCode;
use hyper::body::Bytes;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub(crate) const SEND_MESSAGE: &str = "/api/messaging/send-message/";
const SEND_BULK: &str = "/api/messaging/send-bulk/";
/// The batch size (and Herald's default `max_messages_per_batch`).
const BATCH: usize = 100;
/// Distinct single-send bodies cycled through (numbers repeat after 9,995 anyway).
pub(crate) const SINGLE_POOL: usize = 10_000;
/// How often drains and backlogs are sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);
/// Longest wait for a backlog to drain before the run is declared stuck.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(600);

// ---------------------------------------------------------------------------------------
// ingest and bulk: closed loop against Herald, then the same against the baseline

pub(crate) async fn ingest(args: &Args) -> anyhow::Result<()> {
    let title = format!(
        "ingest: POST /send-message/, {} connections, closed loop {} s after {} s warm-up, {}",
        args.connections,
        args.duration,
        args.warmup,
        mode(args)
    );
    let columns = [
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "lost",
        "srv CPU%",
        "gen CPU%",
        "base req/s",
        "base p99",
        "base gen%",
        "ratio",
    ];
    let mut table = Table::new(title, &columns);
    let bodies = http::single_bodies(SINGLE_POOL, "normal");
    for _ in 0..args.runs {
        let (mut herald, lost, mut base) = compare(
            args,
            SEND_MESSAGE,
            &bodies,
            args.connections,
            Expect::Single,
        )
        .await?;
        table.push(vec![
            herald.tally.requests_per_second(),
            herald.tally.latency_ms(0.50),
            herald.tally.latency_ms(0.99),
            herald.tally.errors as f64,
            lost as f64,
            herald.server_cpu,
            herald.generator_cpu,
            base.as_ref()
                .map_or(f64::NAN, |b| b.tally.requests_per_second()),
            base.as_mut().map_or(f64::NAN, |b| b.tally.latency_ms(0.99)),
            base.as_ref().map_or(f64::NAN, |b| b.generator_cpu),
            base.as_ref().map_or(f64::NAN, |b| {
                herald.tally.requests_per_second() / b.tally.requests_per_second()
            }),
        ]);
    }
    let mut goals = vec![
        ("≥ 10,000 req/s", table.median("req/s") >= 10_000.0),
        ("p99 ≤ 20 ms", table.median("p99 ms") <= 20.0),
        (
            "every 202 durable (lost = 0 after SIGKILL)",
            table.max("lost") == 0.0,
        ),
    ];
    if !args.no_baseline {
        goals.push(("≥ 0.20 of the baseline", table.median("ratio") >= 0.20));
    }
    table.finish(&goals);
    Ok(())
}

pub(crate) async fn bulk(args: &Args) -> anyhow::Result<()> {
    let title = format!(
        "bulk: POST /send-bulk/ × {BATCH} messages, {} connections, closed loop {} s after {} s warm-up, {}",
        args.bulk_connections,
        args.duration,
        args.warmup,
        mode(args)
    );
    let columns = [
        "msg/s",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "lost",
        "srv CPU%",
        "gen CPU%",
        "base msg/s",
        "base gen%",
        "ratio",
    ];
    let mut table = Table::new(title, &columns);
    // Enough distinct batches that consecutive requests on a connection differ.
    let bodies = http::bulk_bodies(256, BATCH, "normal");
    for _ in 0..args.runs {
        let (mut herald, lost, base) = compare(
            args,
            SEND_BULK,
            &bodies,
            args.bulk_connections,
            Expect::Bulk,
        )
        .await?;
        table.push(vec![
            herald.tally.messages_per_second(),
            herald.tally.requests_per_second(),
            herald.tally.latency_ms(0.50),
            herald.tally.latency_ms(0.99),
            herald.tally.errors as f64,
            lost as f64,
            herald.server_cpu,
            herald.generator_cpu,
            base.as_ref()
                .map_or(f64::NAN, |b| b.tally.messages_per_second()),
            base.as_ref().map_or(f64::NAN, |b| b.generator_cpu),
            base.as_ref().map_or(f64::NAN, |b| {
                herald.tally.messages_per_second() / b.tally.messages_per_second()
            }),
        ]);
    }
    table.finish(&[
        ("≥ 50,000 messages/s", table.median("msg/s") >= 50_000.0),
        (
            "every 202 durable (lost = 0 after SIGKILL)",
            table.max("lost") == 0.0,
        ),
    ]);
    Ok(())
}

pub(crate) fn mode(args: &Args) -> &'static str {
    if args.workers {
        "herald serve (workers delivering)"
    } else {
        "herald serve --no-workers"
    }
}

/// A load's tally, the CPU the server and the generator used meanwhile (% of one core), and
/// what the server wrote to storage meanwhile (MB/s).
pub(crate) struct Measured {
    pub(crate) tally: Tally,
    pub(crate) server_cpu: f64,
    pub(crate) generator_cpu: f64,
    pub(crate) server_written_mb_s: f64,
}

pub(crate) async fn measure(
    server: &Server,
    load: impl Future<Output = anyhow::Result<Tally>>,
) -> anyhow::Result<Measured> {
    let (server_before, written_before, own_before, started) = (
        server.cpu_seconds(),
        server.written_bytes(),
        process::own_cpu_seconds(),
        Instant::now(),
    );
    let tally = load.await?;
    let wall = started.elapsed().as_secs_f64();
    Ok(Measured {
        tally,
        server_cpu: 100.0 * (server.cpu_seconds() - server_before) / wall,
        generator_cpu: 100.0 * (process::own_cpu_seconds() - own_before) / wall,
        server_written_mb_s: (server.written_bytes() - written_before) / wall / 1e6,
    })
}

/// One closed-loop run against Herald, then (unless `--no-baseline`) the same load against
/// the baseline. Herald is then killed with SIGKILL and its database counted: every message
/// it answered 202 for must be there (`lost` counts those that are not).
/// Puts `count` numbers on the account's opt-out list, none of them a recipient of the load
/// (those are +1415555…).
async fn opt_out(target: &http::Target, count: usize) -> anyhow::Result<()> {
    if count == 0 {
        return Ok(());
    }
    let mut client = Client::connect(target.clone()).await?;
    for i in 0..count {
        let body = serde_json::json!({ "phone_number": format!("+1202555{:04}", i % 10_000) });
        let (status, answer) = client
            .post(
                hyper::Uri::from_static("/api/messaging/opt-outs"),
                Bytes::from(body.to_string()),
            )
            .await?;
        ensure!(
            status.is_success(),
            "opting a number out answered {status}: {answer:?}"
        );
    }
    Ok(())
}

async fn compare(
    args: &Args,
    path: &'static str,
    bodies: &Arc<Vec<Bytes>>,
    connections: usize,
    expect: Expect,
) -> anyhow::Result<(Measured, u64, Option<Measured>)> {
    let (warmup, duration) = (
        Duration::from_secs(args.warmup),
        Duration::from_secs(args.duration),
    );
    let sandbox = Sandbox::new(args)?;
    let server = sandbox.serve(args.workers).await?;
    let target = sandbox.target();
    opt_out(&target, args.opt_outs).await?;
    let load = http::closed_loop(
        &target,
        path,
        Arc::clone(bodies),
        connections,
        warmup,
        duration,
        expect,
        args.gen_threads,
    );
    let herald = measure(&server, load).await?;
    server.kill()?;
    let stored = sandbox.db().await?.messages().await?;
    let lost = herald.tally.accepted_total.saturating_sub(stored);

    let base = if args.no_baseline {
        None
    } else {
        let (server, target) = process::start_baseline().await?;
        let load = http::closed_loop(
            &target,
            path,
            Arc::clone(bodies),
            connections,
            warmup,
            duration,
            expect,
            args.gen_threads,
        );
        let measured = measure(&server, load).await?;
        server.kill()?;
        Some(measured)
    };
    Ok((herald, lost, base))
}

// ---------------------------------------------------------------------------------------
// dispatch: a queued backlog drained by `herald worker`

pub(crate) const DISPATCH_COLUMNS: [&str; 8] = [
    "queued", "msg/s", "steady/s", "first s", "total s", "left", "wrk CPU%", "unsent",
];

pub(crate) async fn dispatch(args: &Args) -> anyhow::Result<()> {
    let title = format!(
        "dispatch: {} queued messages drained by `herald worker` through the zero-latency mock",
        args.backlog
    );
    let mut table = Table::new(title, &DISPATCH_COLUMNS);
    for _ in 0..args.runs {
        table.push(dispatch_run(args, &Sandbox::new(args)?).await?);
    }
    table.finish(&[
        (
            "≥ 10,000 messages/s queued → sent",
            table.median("msg/s") >= 10_000.0,
        ),
        (
            "all sent",
            table.max("unsent") == 0.0 && table.max("left") == 0.0,
        ),
    ]);
    println!(
        "   (msg/s: messages sent ÷ time from starting the worker to an empty queue, or to the \
         {}-s timeout with `left` still queued; steady/s: from 90 % to 10 % left)",
        DRAIN_TIMEOUT.as_secs()
    );
    Ok(())
}

/// Queues `args.backlog` messages in `sandbox`, then times one `herald worker` draining them.
/// The row is in `DISPATCH_COLUMNS` order.
pub(crate) async fn dispatch_run(args: &Args, sandbox: &Sandbox) -> anyhow::Result<Vec<f64>> {
    let server = sandbox.serve(false).await?;
    fill(sandbox, args, "normal").await?;
    server.stop().await?;

    let mut db = sandbox.db().await?;
    let queued = db.backlog().await?;
    let started = Instant::now();
    let worker = sandbox.worker()?;
    let drain = Drain::watch(&mut db, queued, started).await?;
    let worker_cpu = 100.0 * worker.cpu_seconds() / drain.end;
    // Nothing left to drain gracefully (or the timeout hit): the figures are taken.
    worker.kill()?;
    let unsent = db.unsent().await?;
    Ok(vec![
        queued as f64,
        (queued - drain.left) as f64 / drain.end,
        0.8 * queued as f64 / (drain.ten - drain.ninety),
        drain.first,
        drain.end,
        drain.left as f64,
        worker_cpu,
        unsent as f64,
    ])
}

/// Queues `args.backlog` messages (rounded up to whole batches) through `/send-bulk/`.
pub(crate) async fn fill(sandbox: &Sandbox, args: &Args, priority: &str) -> anyhow::Result<()> {
    let batches = args.backlog.div_ceil(BATCH);
    let bodies = http::bulk_bodies(batches, BATCH, priority);
    let tally = http::send_all(
        &sandbox.target(),
        SEND_BULK,
        bodies,
        args.bulk_connections,
        Expect::Bulk,
    )
    .await?;
    let wanted = (batches * BATCH) as u64;
    ensure!(
        tally.accepted_total == wanted,
        "filling the queue accepted {} of {wanted} messages ({} failed requests)",
        tally.accepted_total,
        tally.errors
    );
    Ok(())
}

/// When a draining backlog passed its marks, in seconds from `started` (NaN: never).
struct Drain {
    /// The first message left the queue.
    first: f64,
    /// 90 % and 10 % of the backlog were left.
    ninety: f64,
    ten: f64,
    /// The queue was empty, or the timeout hit.
    end: f64,
    /// Messages still queued at `end` (0 unless the timeout hit).
    left: u64,
}

impl Drain {
    async fn watch(db: &mut Db, initial: u64, started: Instant) -> anyhow::Result<Drain> {
        let mut marks: [Option<f64>; 3] = [None; 3];
        let thresholds = [initial.saturating_sub(1), initial * 9 / 10, initial / 10];
        loop {
            let left = db.backlog().await?;
            let now = started.elapsed().as_secs_f64();
            for (mark, threshold) in marks.iter_mut().zip(thresholds) {
                if mark.is_none() && left <= threshold {
                    *mark = Some(now);
                }
            }
            if left == 0 || started.elapsed() > DRAIN_TIMEOUT {
                let [first, ninety, ten] = marks.map(|m| m.unwrap_or(f64::NAN));
                return Ok(Drain {
                    first,
                    ninety,
                    ten,
                    end: now,
                    left,
                });
            }
            tokio::time::sleep(SAMPLE_EVERY).await;
        }
    }
}

// ---------------------------------------------------------------------------------------
// priority: urgent probes behind a draining backlog of low messages

pub(crate) async fn priority(args: &Args) -> anyhow::Result<()> {
    let title = format!(
        "priority: {} urgent probes per run behind {} low messages draining (herald serve)",
        args.probes, args.backlog
    );
    let columns = [
        "backlog@1st",
        "backlog@last",
        "p50 ms",
        "max ms",
        "seen p50",
        "seen max",
    ];
    let mut table = Table::new(title, &columns);
    for _ in 0..args.runs {
        table.push(priority_run(args).await?);
    }
    table.finish(&[(
        "urgent reaches sent ≤ 200 ms (worst probe of all runs)",
        table.max("max ms") <= 200.0,
    )]);
    println!(
        "   (ms: `sent` − `queued` in the message's history; seen: 202 → first status poll showing it sent, polled every 2 ms)"
    );
    Ok(())
}

async fn priority_run(args: &Args) -> anyhow::Result<Vec<f64>> {
    let sandbox = Sandbox::new(args)?;
    let server = sandbox.serve(false).await?;
    fill(&sandbox, args, "low").await?;
    server.stop().await?;

    let server = sandbox.serve(true).await?;
    let mut db = sandbox.db().await?;
    let queued = db.backlog().await?;
    // Probe only once the workers are busy with the backlog.
    let started = Instant::now();
    while db.backlog().await? == queued {
        ensure!(
            started.elapsed() < Duration::from_secs(30),
            "the workers did not start draining"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut client = Client::connect(sandbox.target()).await?;
    let (mut history, mut seen, mut backlogs) = (Vec::new(), Vec::new(), Vec::new());
    for probe in 0..args.probes {
        backlogs.push(db.backlog().await? as f64);
        let (history_ms, seen_ms) = probe_urgent(&mut client, probe).await?;
        history.push(history_ms);
        seen.push(seen_ms);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The rest of the backlog is of no interest; a graceful drain would only take time.
    server.kill()?;
    let max = |v: &[f64]| v.iter().copied().fold(f64::NAN, f64::max);
    Ok(vec![
        backlogs.first().copied().unwrap_or(f64::NAN),
        backlogs.last().copied().unwrap_or(f64::NAN),
        median(&mut history.clone()),
        max(&history),
        median(&mut seen.clone()),
        max(&seen),
    ])
}

/// Sends one urgent message and polls its status until it left the queue. Returns its
/// queued → sent time from the history, and the time from the 202 to seeing it sent, in ms.
async fn probe_urgent(client: &mut Client, probe: usize) -> anyhow::Result<(f64, f64)> {
    let (status, body) = client
        .post(
            hyper::Uri::from_static(SEND_MESSAGE),
            http::urgent_body(probe),
        )
        .await?;
    let accepted = Instant::now();
    ensure!(
        status == StatusCode::ACCEPTED,
        "the urgent send was answered {status}"
    );
    let answer: serde_json::Value = serde_json::from_slice(&body)?;
    let id = answer["message_id"]
        .as_str()
        .context("no message_id in the answer")?;
    let path = format!("/api/messaging/message/{id}/status/");
    loop {
        let (status, body) = client.get(&path).await?;
        ensure!(
            status == StatusCode::OK,
            "the status poll was answered {status}"
        );
        let view: serde_json::Value = serde_json::from_slice(&body)?;
        let current = view["status"].as_str().unwrap_or_default();
        if current != "queued" && current != "sending" {
            let seen_ms = accepted.elapsed().as_secs_f64() * 1000.0;
            let at = |wanted: &str| {
                view["history"]
                    .as_array()
                    .and_then(|h| h.iter().find(|e| e["status"] == wanted))
                    .and_then(|e| e["at"].as_str())
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            };
            let (Some(queued), Some(sent)) = (at("queued"), at("sent")) else {
                bail!("the urgent probe ended `{current}` without being sent: {view}");
            };
            let history_ms = (sent - queued).num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0;
            return Ok((history_ms, seen_ms));
        }
        ensure!(
            accepted.elapsed() < Duration::from_secs(60),
            "the urgent probe was not sent within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

// ---------------------------------------------------------------------------------------
// pace: a steady open-loop rate of single sends while the workers deliver

pub(crate) async fn pace(args: &Args) -> anyhow::Result<()> {
    let title = format!(
        "pace: {} single sends/s offered for {} s over {} connections ({} generator threads, open \
         loop), herald serve (workers on, {})",
        args.rate,
        args.pace_duration,
        args.connections,
        args.gen_threads,
        if args.mock_defaults {
            "default config: mock accepts in 5 ms"
        } else {
            "mock accepts at once"
        }
    );
    let mut table = Table::new(title, &PACE_COLUMNS);
    for _ in 0..args.runs {
        let sandbox = Sandbox::new(args)?;
        let run = pace_run(
            args,
            sandbox,
            args.rate,
            Duration::from_secs(args.pace_duration),
        )
        .await?;
        table.push(run.row);
    }
    let rate = args.rate as f64;
    table.finish(&[
        (
            "API accepts the offered rate (within 10 %)",
            (table.median("accepted/s") / rate - 1.0).abs() <= 0.10,
        ),
        (
            "sent at the offered rate (within 10 %)",
            (table.median("sent÷rate") - 1.0).abs() <= 0.10,
        ),
        (
            "no growing backlog (behind < 1 s of traffic at the end, slope < 1 % of the rate)",
            table.median("behind end") < rate && table.median("slope/s") < 0.01 * rate,
        ),
        (
            "no message accepted twice by the provider (counted from the mock's journal)",
            table.max("twice") == 0.0,
        ),
    ]);
    println!("   {PACE_LEGEND}");
    Ok(())
}

pub(crate) const PACE_COLUMNS: [&str; 18] = [
    "accepted/s",
    "sent/s",
    "sent÷rate",
    "queue max",
    "behind end",
    "slope/s",
    "p50 ms",
    "p99 ms",
    "errors",
    "srv CPU%",
    "gen CPU%",
    "srv MB/s written",
    "late s",
    "drain s",
    "twice",
    "replays",
    "RSS 1m MB",
    "RSS end MB",
];

pub(crate) const PACE_LEGEND: &str = "(accepted/s, sent/s: from 5 s to the end of the offered window; behind: offered so far − sent, \
     i.e. waiting in the API or the queue; slope: its growth over the second half, least squares; \
     CPU%: of one core, the generator's over all its threads; \
     written: what the server had the kernel write to storage (WAL, database, checkpoints); \
     late: how long after the window the last request was answered)";

/// One pace run's row (in `PACE_COLUMNS` order) and what it says about keeping pace.
pub(crate) struct PaceRun {
    pub(crate) row: Vec<f64>,
    pub(crate) accepted: f64,
    pub(crate) sent: f64,
    pub(crate) behind_end: f64,
    pub(crate) slope: f64,
    pub(crate) p99_ms: f64,
    pub(crate) errors: u64,
    pub(crate) server_cpu: f64,
    pub(crate) generator_cpu: f64,
}

impl PaceRun {
    /// Kept pace with `rate` by the headline's rules: accepted and sent within 5 % of the
    /// offered rate, less than a second of traffic behind at the end and not growing by
    /// more than 1 % of the rate a second, p99 of the API ≤ 50 ms, no errors.
    pub(crate) fn kept(&self, rate: u64) -> bool {
        let rate = rate as f64;
        (self.accepted / rate - 1.0).abs() <= 0.05
            && (self.sent / rate - 1.0).abs() <= 0.05
            && self.behind_end < rate
            && self.slope < 0.01 * rate
            && self.p99_ms <= 50.0
            && self.errors == 0
    }
}

/// One second's view during the pace run, `at` seconds after the load started.
pub(crate) struct Sample {
    pub(crate) at: f64,
    /// Messages answered 202 so far.
    pub(crate) accepted: u64,
    /// Messages in the queue (queued or sending).
    pub(crate) queued: u64,
    /// Messages the schedule had offered so far.
    pub(crate) offered: u64,
    /// The server's resident memory, MB.
    pub(crate) rss_mb: f64,
}

impl Sample {
    /// Messages that have left the queue (sent, or finished otherwise).
    pub(crate) fn sent(&self) -> u64 {
        self.accepted.saturating_sub(self.queued)
    }

    /// Offered but not yet sent: waiting for an answer from the API, or in the queue.
    pub(crate) fn behind(&self) -> f64 {
        self.offered as f64 - self.sent() as f64
    }
}

/// Offers `rate` single sends a second for `duration` to `herald serve` (workers on) in
/// `sandbox`, sampling the queue once a second, then waits for the queue to drain.
pub(crate) async fn pace_run(
    args: &Args,
    sandbox: Sandbox,
    rate: u64,
    duration: Duration,
) -> anyhow::Result<PaceRun> {
    pace_run_with(args, &sandbox, rate, duration, None).await
}

/// As [`pace_run`], with the account's webhook pointed at `webhook` (if given) before the
/// load; the run then also waits for every webhook delivery to be done.
pub(crate) async fn pace_run_with(
    args: &Args,
    sandbox: &Sandbox,
    rate: u64,
    duration: Duration,
    webhook: Option<&str>,
) -> anyhow::Result<PaceRun> {
    let server = sandbox.serve(true).await?;
    if let Some(url) = webhook {
        http::put_json(
            &sandbox.target(),
            "/api/messaging/webhook",
            &serde_json::json!({ "url": url }),
        )
        .await
        .context("could not set the webhook")?;
    }
    // On stderr, for profiling the server from outside while it runs.
    eprintln!("   (herald serve pid {}, {rate}/s)", server.pid());
    let mut db = sandbox.db().await?;
    let accepted = Arc::new(AtomicU64::new(0));
    let bodies = http::single_bodies(SINGLE_POOL, "normal");
    let target = sandbox.target();
    let load = http::open_loop(
        &target,
        SEND_MESSAGE,
        bodies,
        args.connections,
        rate,
        duration,
        Arc::clone(&accepted),
        args.gen_threads,
    );
    let started = Instant::now();
    let sampler = sample_queue(&mut db, &server, &accepted, rate, duration, |_| {});
    let (load, samples) = tokio::join!(measure(&server, load), sampler);
    let (mut measured, samples) = (load?, samples?);
    let late = (started.elapsed() - duration).as_secs_f64();

    let drained = Instant::now();
    while db.backlog().await? > 0 {
        ensure!(
            drained.elapsed() < DRAIN_TIMEOUT,
            "the backlog did not drain after the load"
        );
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
    if webhook.is_some() {
        // Every message at its end (its last receipt is an event too), then every delivery.
        while db.unfinished().await? > 0 || db.pending_deliveries().await? > 0 {
            ensure!(
                drained.elapsed() < DRAIN_TIMEOUT,
                "the webhook deliveries did not finish after the load"
            );
            tokio::time::sleep(SAMPLE_EVERY).await;
        }
    }
    let drain = drained.elapsed().as_secs_f64();
    server.stop().await?;
    let handovers = HandoverCount::from_journal(&sandbox.journal_path())?;
    let from = samples
        .iter()
        .find(|s| s.at >= 5.0_f64.min(duration.as_secs_f64() / 4.0))
        .context("too few samples")?;
    let last = samples.last().context("no samples")?;
    let window = last.at - from.at;
    let accepted = (last.accepted - from.accepted) as f64 / window;
    let sent = (last.sent() - from.sent()) as f64 / window;
    let second_half: Vec<&Sample> = samples.iter().filter(|s| s.at >= last.at / 2.0).collect();
    let slope = slope(&second_half);
    let p99_ms = measured.tally.latency_ms(0.99);
    let row = vec![
        accepted,
        sent,
        sent / rate as f64,
        samples.iter().map(|s| s.queued).max().unwrap_or(0) as f64,
        last.behind(),
        slope,
        measured.tally.latency_ms(0.50),
        p99_ms,
        measured.tally.errors as f64,
        measured.server_cpu,
        measured.generator_cpu,
        measured.server_written_mb_s,
        late,
        drain,
        handovers.accepted_twice as f64,
        handovers.replays as f64,
        samples
            .iter()
            .find(|s| s.at >= 60.0)
            .map_or(f64::NAN, |s| s.rss_mb),
        last.rss_mb,
    ];
    Ok(PaceRun {
        row,
        accepted,
        sent,
        behind_end: last.behind(),
        slope,
        p99_ms,
        errors: measured.tally.errors,
        server_cpu: measured.server_cpu,
        generator_cpu: measured.generator_cpu,
    })
}

/// Hand-overs counted per message id from the mock's journal: a second acceptance of an id
/// is a message sent twice; a replay is one the provider absorbed (reported, not a failure).
struct HandoverCount {
    accepted_twice: u64,
    replays: u64,
}

impl HandoverCount {
    fn from_journal(path: &std::path::Path) -> anyhow::Result<HandoverCount> {
        let previous = std::path::PathBuf::from(format!("{}.1", path.display()));
        let mut accepted = std::collections::HashSet::new();
        let mut count = HandoverCount {
            accepted_twice: 0,
            replays: 0,
        };
        for file in [previous.as_path(), path] {
            let text = match std::fs::read_to_string(file) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).context("could not read the mock's journal"),
            };
            for line in text.lines() {
                let mut fields = line.split(' ');
                match (fields.next(), fields.next()) {
                    (Some("A"), Some(id)) if !accepted.insert(id.to_owned()) => {
                        count.accepted_twice += 1;
                    }
                    (Some("R"), Some(_)) => count.replays += 1,
                    _ => {}
                }
            }
        }
        Ok(count)
    }
}

/// Samples accepted messages and queue depth once a second for `duration`, showing each
/// sample to `watch` as it is taken.
pub(crate) async fn sample_queue(
    db: &mut Db,
    server: &Server,
    accepted: &AtomicU64,
    rate: u64,
    duration: Duration,
    mut watch: impl FnMut(&Sample),
) -> anyhow::Result<Vec<Sample>> {
    let started = tokio::time::Instant::now();
    let mut samples = Vec::new();
    for second in 1..=duration.as_secs() {
        tokio::time::sleep_until(started + Duration::from_secs(second)).await;
        // Accepted first: a message accepted between the two reads is then in the queue
        // but not yet in `accepted`, so messages sent are under-, never over-estimated.
        let accepted = accepted.load(Ordering::Relaxed);
        let queued = db.backlog().await?;
        samples.push(Sample {
            at: started.elapsed().as_secs_f64(),
            accepted,
            queued,
            offered: rate * second,
            rss_mb: server.rss_mb(),
        });
        if let Some(sample) = samples.last() {
            watch(sample);
        }
    }
    Ok(samples)
}

/// Least-squares slope of `behind` over time, messages per second.
pub(crate) fn slope(samples: &[&Sample]) -> f64 {
    let n = samples.len() as f64;
    if n < 2.0 {
        return f64::NAN;
    }
    let mean_t = samples.iter().map(|s| s.at).sum::<f64>() / n;
    let mean_b = samples.iter().map(|s| s.behind()).sum::<f64>() / n;
    let covariance: f64 = samples
        .iter()
        .map(|s| (s.at - mean_t) * (s.behind() - mean_b))
        .sum();
    let variance: f64 = samples.iter().map(|s| (s.at - mean_t).powi(2)).sum();
    covariance / variance
}
