//! One sender limit kept by several `herald worker` processes together through Redis
//! (issue 10's limit accuracy): each process drains its own backlog through the mock, whose
//! one sender is limited to `--limit` messages a second; the rate is timed by the mocks'
//! journals, and Redis's own command counts give the round trips per message.

use crate::Args;
use crate::http::{self, Expect};
use crate::process::{Sandbox, Server};
use crate::report::Table;
use anyhow::{Context, ensure};
use std::time::Duration;

const SEND_BULK: &str = "/api/messaging/send-bulk/";
const BATCH: usize = 100;

pub(crate) async fn shared_limit(args: &Args) -> anyhow::Result<()> {
    let window = Duration::from_secs(args.pace_duration);
    let limit = args.limit;
    let mut table = Table::new(
        format!(
            "shared limit: one mock sender limited to {limit}/s, {} `herald worker` processes \
             (each its own SQLite queue) sharing it through Redis, {} s, timed by the mocks' \
             journals",
            args.processes,
            window.as_secs()
        ),
        &["sent/s", "error %", "busiest s", "redis calls/msg"],
    );
    let mut redis = redis::Client::open(args.redis_url.as_str())?
        .get_multiplexed_async_connection()
        .await
        .context("Redis does not answer at --redis-url")?;
    for _ in 0..args.runs {
        table.push(run(args, &mut redis, window).await?);
    }
    let error = table.median("error %");
    table.finish(&[("within ±2 % of the limit", error.abs() <= 2.0)]);
    println!(
        "   (sent/s: (n − 1) ÷ the time from the first send to the last within the window; \
         redis calls/msg: EVAL/EVALSHA calls from INFO commandstats ÷ messages sent)"
    );
    Ok(())
}

async fn run(
    args: &Args,
    redis: &mut redis::aio::MultiplexedConnection,
    window: Duration,
) -> anyhow::Result<Vec<f64>> {
    // Enough for every process to outlast the window at the whole limit.
    let backlog = (args.limit as usize) * (window.as_secs() as usize + 10);
    let toml = format!("[redis]\nurl = \"{}\"\n", args.redis_url);
    let mut sandboxes = Vec::new();
    for _ in 0..args.processes {
        let sandbox = Sandbox::new(args)?.with_config(&toml)?.with_env(
            "HERALD__PROVIDERS__MOCK__SENDER_PER_SECOND",
            args.limit.to_string(),
        );
        let server = sandbox.serve(false).await?;
        let bodies = http::bulk_bodies(backlog.div_ceil(BATCH), BATCH, "normal");
        let tally = http::send_all(&sandbox.target(), SEND_BULK, bodies, 4, Expect::Bulk).await?;
        ensure!(tally.errors == 0, "queueing failed");
        server.stop().await?;
        sandboxes.push(sandbox);
    }
    let calls_before = script_calls(redis).await?;
    let workers: Vec<Server> = sandboxes
        .iter()
        .map(Sandbox::worker)
        .collect::<anyhow::Result<_>>()?;
    // The journals time the sends; this only has to outlast the window.
    tokio::time::sleep(window + Duration::from_secs(3)).await;
    for worker in workers {
        worker.kill()?;
    }
    let calls = script_calls(redis).await? - calls_before;
    let mut times = Vec::new();
    for sandbox in &sandboxes {
        times.extend(journal_times(&sandbox.journal_path())?);
    }
    let (rate, busiest) = timed_rate(&mut times, window)?;
    Ok(vec![
        rate,
        100.0 * (rate / f64::from(args.limit) - 1.0),
        busiest as f64,
        calls as f64 / times.len().max(1) as f64,
    ])
}

/// The rate the acceptance times `times` (ms, any order) show: (n − 1) ÷ the time from the
/// first to the last within `window` of the first; and the most in any 1-s window.
pub(crate) fn timed_rate(times: &mut [i64], window: Duration) -> anyhow::Result<(f64, usize)> {
    times.sort_unstable();
    let first = *times.first().context("nothing was sent")?;
    let window_ms = i64::try_from(window.as_millis())?;
    let within: Vec<i64> = times
        .iter()
        .copied()
        .filter(|t| *t - first <= window_ms)
        .collect();
    let span = (within.last().copied().unwrap_or(first) - first) as f64 / 1000.0;
    let rate = within.len().saturating_sub(1) as f64 / span;
    let busiest = within
        .iter()
        .map(|start| {
            within
                .iter()
                .filter(|t| **t >= *start && **t < start + 1000)
                .count()
        })
        .max()
        .unwrap_or(0);
    Ok((rate, busiest))
}

/// Lua script calls Redis has served so far (`EVAL` and `EVALSHA`).
pub(crate) async fn script_calls(
    redis: &mut redis::aio::MultiplexedConnection,
) -> anyhow::Result<f64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(redis)
        .await?;
    Ok(info
        .lines()
        .filter(|l| l.starts_with("cmdstat_eval:") || l.starts_with("cmdstat_evalsha:"))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<f64>()
                .ok()
        })
        .sum())
}

/// Acceptance times (ms) from a mock journal and the one it rotated out (`<file>.1`):
/// lines `A <id> <reference> <at_ms> …`.
pub(crate) fn journal_times(path: &std::path::Path) -> anyhow::Result<Vec<i64>> {
    let previous = std::path::PathBuf::from(format!("{}.1", path.display()));
    let mut times = Vec::new();
    for file in [previous.as_path(), path] {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).context("could not read a mock journal"),
        };
        times.extend(text.lines().filter_map(|line| {
            let mut fields = line.split(' ');
            (fields.next()? == "A").then_some(())?;
            fields.nth(2)?.parse::<i64>().ok()
        }));
    }
    Ok(times)
}
