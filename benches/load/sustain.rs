//! What one `herald serve` sustains the way a user runs it (workers on, default config, the
//! mock's default delays): **pace-max** searches the highest rate of single sends it keeps
//! pace with, then confirms it with full-length runs and sets it beside the bare axum
//! handler; **soak** holds a moderate rate for a long time and watches memory and the queue.

use crate::Args;
use crate::http::{self, Expect};
use crate::process::{self, Sandbox};
use crate::report::Table;
use crate::scenarios::{
    self, PACE_COLUMNS, PACE_LEGEND, PaceRun, SEND_MESSAGE, SINGLE_POOL, Sample,
};
use anyhow::{Context, ensure};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

const MODE: &str = "herald serve (API and workers in one process), default config: mock accepts \
                    in 5 ms, delivered 200 ms later, read 1 s after that; only the API's per-key \
                    limit, the balance and the daily limit lifted";

// ---------------------------------------------------------------------------------------
// pace-max

pub(crate) async fn pace_max(args: &Args) -> anyhow::Result<()> {
    println!("\n== pace-max: {MODE}");
    println!(
        "   kept pace = accepted and sent within 5 % of the offered rate, < 1 s of traffic behind \
         at the end, not growing by ≥ 1 % of the rate per second, p99 ≤ 50 ms, no errors"
    );
    println!(
        "   search: {} s runs from {}/s, ×1.25 while kept, then bisect to {}/s; confirm: {} × {} s; \
         {} connections, {} generator threads",
        search_seconds(args),
        args.rate_from,
        args.resolution,
        args.runs,
        args.pace_duration,
        args.connections,
        args.gen_threads
    );
    let search = Duration::from_secs(search_seconds(args));
    let (mut lo, mut hi) = (0u64, None::<u64>);
    let mut rate = args.rate_from;
    // Step up while kept.
    while rate <= args.rate_to {
        let kept = search_step(args, rate, search).await?;
        if kept {
            lo = rate;
            rate = round(rate.saturating_mul(5) / 4, args.resolution).max(rate + args.resolution);
        } else {
            hi = Some(rate);
            break;
        }
    }
    // Bisect between the best kept and the first missed rate.
    if let Some(mut h) = hi {
        while h.saturating_sub(lo) > args.resolution {
            let mid = round(lo + (h - lo) / 2, args.resolution);
            if mid <= lo || mid >= h {
                break;
            }
            if search_step(args, mid, search).await? {
                lo = mid;
            } else {
                h = mid;
            }
        }
    }
    if lo == 0 {
        println!(
            "   RESULT pace-max: no rate from {}/s down was kept in the search",
            args.rate_from
        );
        return Ok(());
    }

    // Confirm with full-length runs; step down if most runs miss.
    let mut confirmed = None;
    for _ in 0..=args.confirm_retries {
        let title = format!(
            "pace-max confirm: {lo} single sends/s for {} s, {} connections, {} generator threads, {MODE}",
            args.pace_duration, args.connections, args.gen_threads
        );
        let mut columns = PACE_COLUMNS.to_vec();
        columns.push("kept");
        let mut table = Table::new(title, &columns).verdicts(&["kept"]);
        let mut kept = 0;
        for _ in 0..args.runs {
            let run = pace_once(args, lo, Duration::from_secs(args.pace_duration)).await?;
            let ok = run.kept(lo);
            kept += usize::from(ok);
            let mut row = run.row;
            row.push(f64::from(u8::from(ok)));
            table.push(row);
        }
        let majority = kept * 2 > args.runs;
        table.finish(&[("kept pace (majority of runs)", majority)]);
        println!("   {PACE_LEGEND}");
        if majority {
            confirmed = Some(lo);
            break;
        }
        lo = lo.saturating_sub(args.resolution);
        if lo == 0 {
            break;
        }
    }

    // The bare axum handler under the closed loop, same connections and generator threads.
    let (server, target) = process::start_baseline().await?;
    let bodies = http::single_bodies(SINGLE_POOL, "normal");
    let load = http::closed_loop(
        &target,
        SEND_MESSAGE,
        bodies,
        args.connections,
        Duration::from_secs(args.warmup),
        Duration::from_secs(args.duration),
        Expect::Single,
        args.gen_threads,
    );
    let mut base = scenarios::measure(&server, load).await?;
    server.kill()?;
    let base_rate = base.tally.requests_per_second();
    println!(
        "   baseline (bare axum handler, closed loop {} s, {} connections, {} generator threads): \
         {base_rate:.0} req/s, p99 {:.2} ms, server CPU {:.1} %, generator CPU {:.1} %",
        args.duration,
        args.connections,
        args.gen_threads,
        base.tally.latency_ms(0.99),
        base.server_cpu,
        base.generator_cpu
    );
    match confirmed {
        Some(rate) => println!(
            "   RESULT pace-max: {rate}/s kept for {} s (ratio to the baseline {:.3}); goal ≥ 10,000/s: {}",
            args.pace_duration,
            rate as f64 / base_rate,
            if rate >= 10_000 { "MET" } else { "MISSED" }
        ),
        None => println!("   RESULT pace-max: no rate confirmed (see the tables above)"),
    }
    Ok(())
}

fn search_seconds(args: &Args) -> u64 {
    if args.search_duration == 0 {
        args.pace_duration
    } else {
        args.search_duration
    }
}

/// `rate` rounded to a multiple of `step` (at least one step).
fn round(rate: u64, step: u64) -> u64 {
    let step = step.max(1);
    (rate / step).max(1) * step
}

async fn pace_once(args: &Args, rate: u64, duration: Duration) -> anyhow::Result<PaceRun> {
    let sandbox = Sandbox::user_config(args)?;
    scenarios::pace_run(args, sandbox, rate, duration).await
}

async fn search_step(args: &Args, rate: u64, duration: Duration) -> anyhow::Result<bool> {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let run = pace_once(args, rate, duration).await?;
    let kept = run.kept(rate);
    println!(
        "   try {rate:>6}/s for {} s: {} (accepted {:.0}/s, sent {:.0}/s, behind at end {:.0}, slope {:.1}/s, \
         p99 {:.1} ms, errors {}, srv CPU {:.0} %, gen CPU {:.0} %; load before {})",
        duration.as_secs(),
        if kept { "kept" } else { "MISSED" },
        run.accepted,
        run.sent,
        run.behind_end,
        run.slope,
        run.p99_ms,
        run.errors,
        run.server_cpu,
        run.generator_cpu,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    Ok(kept)
}

// ---------------------------------------------------------------------------------------
// soak

pub(crate) async fn soak(args: &Args) -> anyhow::Result<()> {
    let rate = args.soak_rate;
    let duration = Duration::from_secs(args.soak_minutes.saturating_mul(60));
    ensure!(
        duration >= Duration::from_secs(120),
        "a soak lasts at least 2 minutes"
    );
    println!(
        "\n== soak: {rate} single sends/s for {} min, {} connections, {} generator threads, {MODE}",
        args.soak_minutes, args.connections, args.gen_threads
    );
    let sandbox = Sandbox::user_config(args)?;
    let server = sandbox.serve(true).await?;
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
    println!(
        "{:>7}  {:>10}  {:>9}  {:>9}  {:>10}  {:>9}  {:>8}  {:>8}  {:>8}  {:>8}",
        "minute",
        "accepted",
        "queue",
        "queue max",
        "behind",
        "RSS MB",
        "anon MB",
        "file MB",
        "srv CPU%",
        "load 1m"
    );
    let mut rss = Vec::new();
    let mut minute_max = 0u64;
    let mut last_cpu = (server.cpu_seconds(), Instant::now());
    let watch = |s: &Sample| {
        minute_max = minute_max.max(s.queued);
        let second = s.at.round() as u64;
        if second.is_multiple_of(60) {
            let now = (server.cpu_seconds(), Instant::now());
            let cpu = 100.0 * (now.0 - last_cpu.0) / (now.1 - last_cpu.1).as_secs_f64();
            last_cpu = now;
            let mb = server.rss_mb();
            let (anon, file) = server.rss_split_mb();
            rss.push(mb);
            let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
            println!(
                "{:>7}  {:>10}  {:>9}  {:>9}  {:>10.0}  {:>9.1}  {:>8.1}  {:>8.1}  {:>8.1}  {:>8}",
                second / 60,
                s.accepted,
                s.queued,
                minute_max,
                s.behind(),
                mb,
                anon,
                file,
                cpu,
                load.split_whitespace().next().unwrap_or("?")
            );
            minute_max = 0;
        }
    };
    let sampler = scenarios::sample_queue(&mut db, &server, &accepted, rate, duration, watch);
    let (load, samples) = tokio::join!(scenarios::measure(&server, load), sampler);
    let (mut measured, samples) = (load?, samples?);
    let rss_end = server.rss_mb();
    let peak = server.peak_rss_mb();
    server.stop().await?;

    let rss_first = rss
        .first()
        .copied()
        .context("no RSS sample after a minute")?;
    let after_first: Vec<&Sample> = samples.iter().filter(|s| s.at >= 60.0).collect();
    let queue_slope = {
        // Least squares of the queue depth over time, after the first minute.
        let n = after_first.len() as f64;
        let mean_t = after_first.iter().map(|s| s.at).sum::<f64>() / n;
        let mean_q = after_first.iter().map(|s| s.queued as f64).sum::<f64>() / n;
        let cov: f64 = after_first
            .iter()
            .map(|s| (s.at - mean_t) * (s.queued as f64 - mean_q))
            .sum();
        let var: f64 = after_first.iter().map(|s| (s.at - mean_t).powi(2)).sum();
        cov / var
    };
    let queue_max = after_first.iter().map(|s| s.queued).max().unwrap_or(0);
    let last = samples.last().context("no samples")?;
    let first = after_first.first().context("no samples after a minute")?;
    let sent_rate = (last.sent() - first.sent()) as f64 / (last.at - first.at);
    let growth = rss_end / rss_first - 1.0;
    println!(
        "   RSS after 1 min {rss_first:.1} MB, at the end {rss_end:.1} MB ({:+.1} %), peak {peak:.1} MB",
        100.0 * growth
    );
    println!(
        "   queue after 1 min: max {queue_max}, slope {queue_slope:+.3} msg/s per s; sent {sent_rate:.0}/s; \
         API p50 {:.2} ms, p99 {:.2} ms, errors {}; server CPU {:.1} %, generator CPU {:.1} %",
        measured.tally.latency_ms(0.50),
        measured.tally.latency_ms(0.99),
        measured.tally.errors,
        measured.server_cpu,
        measured.generator_cpu
    );
    let rate_f = rate as f64;
    let goals = [
        (
            "RSS at the end within 10 % of RSS after 1 min",
            growth.abs() <= 0.10,
        ),
        (
            "queue flat (max < 1 s of traffic, |slope| < 0.1 % of the rate per s)",
            (queue_max as f64) < rate_f && queue_slope.abs() < 0.001 * rate_f,
        ),
        (
            "sent at the offered rate (within 5 %)",
            (sent_rate / rate_f - 1.0).abs() <= 0.05,
        ),
    ];
    for (goal, met) in goals {
        println!("   goal {goal}: {}", if met { "MET" } else { "MISSED" });
    }
    Ok(())
}
