//! PostgreSQL as the store and queue of many processes (issue 10): single sends through one
//! `herald serve --no-workers` beside the same load on SQLite; a backlog drained by 1, 2 and
//! 3 `herald worker` processes sharing one queue, with what each message costs PostgreSQL;
//! and one sender's limit kept through Redis by three workers on the shared queue.
//!
//! Every run has a database of its own (`herald_bench_<ulid>`, created on `--postgres-url`'s
//! server, migrated with `herald migrate` and dropped at the end whatever happened). Costs
//! are read from the server's cumulative counters around the measured window:
//! `pg_stat_database` (transactions, rows written, deadlocks) for the run's database,
//! `pg_stat_wal` and `pg_current_wal_lsn()` (WAL, cluster-wide), and `/proc` for the CPU of
//! PostgreSQL's processes serving the run (its backends for the run's database and the
//! background processes). Statements are counted on the wire: the processes reach
//! PostgreSQL through a small proxy in this process that counts each frontend message that
//! runs a statement (`Execute` of the extended protocol; `Query` of the simple one, which
//! is how sqlx sends BEGIN and COMMIT), since `pg_stat_statements` needs the server to
//! preload it (it is read too when the server does).

use crate::http::{self, Expect};
use crate::process::{self, Sandbox, Server};
use crate::report::Table;
use crate::scenarios::{SEND_MESSAGE, SINGLE_POOL, fill, measure};
use crate::shared_limit::{script_calls, timed_rate};
use crate::{Args, PgProxy};
use anyhow::{Context, bail, ensure};
use sqlx::{Connection, PgConnection};
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Herald's own log filter plus the PostgreSQL store's debug lines, which are where a
/// transaction PostgreSQL aborted (deadlock, serialization) and that is run again shows.
const LOG_FILTER: &str = "info,sqlx=warn,apalis_core=warn,herald::store::postgres=debug";
/// The line the store logs for each transaction it runs again.
const RETRY_LINE: &str = "transaction contended";
/// The mock rotates its journal after its idempotency window; a day keeps every hand-over
/// of a run in one file.
const JOURNAL_WINDOW: &str = "86400";
/// Longest wait for a drained backlog's receipts (every message `read`).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(180);
/// Longest wait for a backlog to drain.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(600);

// ---------------------------------------------------------------------------------------
// pg-ingest: single sends on PostgreSQL beside the same load on SQLite

pub(crate) async fn pg_ingest(args: &Args) -> anyhow::Result<()> {
    let through_proxy = args.pg_proxy == PgProxy::On;
    let title = format!(
        "pg-ingest: POST /send-message/, {} connections, closed loop {} s after {} s warm-up, \
         herald serve --no-workers on PostgreSQL ({}), then on SQLite (order alternating by \
         run), each on a fresh database",
        args.connections,
        args.duration,
        args.warmup,
        if through_proxy {
            "through the statement-counting proxy"
        } else {
            "connected directly"
        }
    );
    let columns = [
        "pg req/s",
        "pg p50 ms",
        "pg p99 ms",
        "errors",
        "lost",
        "srv CPU%",
        "pg CPU%",
        "gen CPU%",
        "srv ms/req",
        "pg ms/req",
        "xact/req",
        "stmt/req",
        "rows/req",
        "WAL B/req",
        "DB B/req",
        "fsync/req",
        "rollbacks",
        "other xact",
        "sqlite req/s",
        "sqlite p99",
        "sqlite srv%",
        "sqlite gen%",
        "pg÷sqlite",
    ];
    let mut table = Table::new(title, &columns);
    print_statement_view(args).await?;
    let bodies = http::single_bodies(SINGLE_POOL, "normal");
    for run in 0..args.runs {
        let postgres = async || {
            with_database(args, async |db: &BenchDatabase| {
                ingest_postgres(args, db, &bodies, through_proxy).await
            })
            .await
        };
        let (pg, mut sqlite) = if run % 2 == 0 {
            let pg = postgres().await?;
            (pg, ingest_sqlite(args, &bodies).await?)
        } else {
            let sqlite = ingest_sqlite(args, &bodies).await?;
            (postgres().await?, sqlite)
        };
        let mut row = pg;
        let pg_rate = row[0];
        row.extend([
            sqlite.tally.requests_per_second(),
            sqlite.tally.latency_ms(0.99),
            sqlite.server_cpu,
            sqlite.generator_cpu,
            pg_rate / sqlite.tally.requests_per_second(),
        ]);
        table.push(row);
    }
    table.finish(&[
        (
            "≥ 10,000 req/s on PostgreSQL",
            table.median("pg req/s") >= 10_000.0,
        ),
        (
            "every 202 durable (lost = 0 after SIGKILL)",
            table.max("lost") == 0.0,
        ),
    ]);
    println!(
        "   (CPU%: of one core over the load, warm-up included; pg: PostgreSQL's backends for \
         the run's database and its background processes (WAL writer, checkpointer, \
         background writer); per req: over every request answered 202, warm-up included; \
         xact: commits in pg_stat_database; stmt: Execute + Query messages on the wire (only \
         with --pg-proxy on); rows: inserted + updated + deleted; WAL: from \
         pg_current_wal_lsn(), fsync: pg_stat_wal, both cluster-wide; DB: the database's \
         growth from empty; other xact: transactions other databases committed meanwhile, whose \
         WAL is in the WAL figures)"
    );
    Ok(())
}

/// One PostgreSQL ingest run's row: the `pg-ingest` columns up to `other xact`.
async fn ingest_postgres(
    args: &Args,
    db: &BenchDatabase,
    bodies: &Arc<Vec<hyper::body::Bytes>>,
    through_proxy: bool,
) -> anyhow::Result<Vec<f64>> {
    let proxy = if through_proxy {
        Some(StatementProxy::start(db.upstream()).await?)
    } else {
        None
    };
    let url = proxy
        .as_ref()
        .map_or_else(|| Ok(db.url()), |p| db.url_via(p.addr))?;
    let sandbox = Sandbox::new(args)?
        .with_env("HERALD__DATABASE__URL", url)
        .with_env("RUST_LOG", LOG_FILTER.to_owned());
    sandbox.migrate().await?;
    let server = sandbox.serve(false).await?;
    let mut admin = Admin::connect(args, db).await?;
    let empty = admin.size().await?;
    let before = admin.counters().await?;
    let statements_before = proxy.as_ref().map(StatementProxy::statements);
    let cpu_before = postgres_cpu();
    let target = sandbox.target();
    let load = http::closed_loop(
        &target,
        SEND_MESSAGE,
        Arc::clone(bodies),
        args.connections,
        Duration::from_secs(args.warmup),
        Duration::from_secs(args.duration),
        Expect::Single,
        args.gen_threads,
    );
    let started = Instant::now();
    // pg_stat_activity sampled while the load runs (on the administrative connection).
    let stop = tokio_util::sync::CancellationToken::new();
    let mut activity = Activity::default();
    let sampler = async {
        while !stop.is_cancelled() {
            admin.sample(&mut activity, None).await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::Ok(())
    };
    let load = async {
        let measured = measure(&server, load).await;
        stop.cancel();
        measured
    };
    let (measured, sampled) = tokio::join!(load, sampler);
    let (mut measured, ()) = (measured?, sampled?);
    let wall = started.elapsed().as_secs_f64();
    let pg_cpu = admin.cpu_since(&cpu_before, None).await?;
    let logs: Vec<PathBuf> = server.log_path().into_iter().collect();
    // As the SQLite ingest does: no drain, and every 202 must be in the database.
    server.kill()?;
    admin.wait_disconnected(None).await;
    let after = admin.counters().await?;
    let stored = db.count("SELECT COUNT(*) FROM message").await?;
    let statements = match (statements_before, &proxy) {
        (Some(before), Some(proxy)) => (proxy.statements() - before) as f64,
        _ => f64::NAN,
    };
    let accepted = measured.tally.accepted_total;
    ensure!(accepted > 0, "PostgreSQL accepted no message");
    let per = |x: f64| x / accepted as f64;
    let delta = after.minus(&before);
    LogSummary::read(&logs).print();
    activity.print();
    if let Some(proxy) = &proxy {
        proxy.print_statements(accepted as f64, "requests, warm-up included");
    }
    let server_seconds = measured.server_cpu * wall / 100.0;
    Ok(vec![
        measured.tally.requests_per_second(),
        measured.tally.latency_ms(0.50),
        measured.tally.latency_ms(0.99),
        measured.tally.errors as f64,
        accepted.saturating_sub(stored) as f64,
        measured.server_cpu,
        100.0 * pg_cpu / wall,
        measured.generator_cpu,
        1000.0 * per(server_seconds),
        1000.0 * per(pg_cpu),
        per(delta.commits),
        per(statements),
        per(delta.rows_written),
        per(delta.wal_bytes),
        per(after.size - empty),
        per(delta.wal_syncs),
        delta.rollbacks,
        delta.others,
    ])
}

/// The same load on SQLite (the harness's default database), for the same run's ratio.
async fn ingest_sqlite(
    args: &Args,
    bodies: &Arc<Vec<hyper::body::Bytes>>,
) -> anyhow::Result<crate::scenarios::Measured> {
    let sandbox = Sandbox::new(args)?;
    let server = sandbox.serve(false).await?;
    let target = sandbox.target();
    let load = http::closed_loop(
        &target,
        SEND_MESSAGE,
        Arc::clone(bodies),
        args.connections,
        Duration::from_secs(args.warmup),
        Duration::from_secs(args.duration),
        Expect::Single,
        args.gen_threads,
    );
    let measured = measure(&server, load).await?;
    server.kill()?;
    Ok(measured)
}

// ---------------------------------------------------------------------------------------
// pg-dispatch: a backlog on PostgreSQL drained by 1, 2, 3 worker processes

const DISPATCH_COLUMNS: [&str; 24] = [
    "queued",
    "msg/s",
    "steady/s",
    "total s",
    "left",
    "unsent",
    "twice",
    "busy wrk",
    "wrk CPU%",
    "pg CPU%",
    "bench CPU%",
    "wrk ms/msg",
    "pg ms/msg",
    "stmt/msg sent",
    "stmt/msg",
    "xact/msg",
    "rows/msg",
    "WAL B/msg",
    "DB B/msg",
    "fsync/msg",
    "rollbacks",
    "retries",
    "other xact",
    "redis/msg",
];

pub(crate) async fn pg_dispatch(args: &Args) -> anyhow::Result<()> {
    let through_proxy = args.pg_proxy != PgProxy::Off;
    print_statement_view(args).await?;
    let mut tables: Vec<Table> = args
        .worker_counts
        .iter()
        .map(|n| {
            Table::new(
                format!(
                    "pg-dispatch: {} messages queued on PostgreSQL by `herald serve \
                     --no-workers` (/send-bulk/), drained by {n} `herald worker` process{} \
                     through the zero-latency mock{}",
                    args.backlog,
                    if *n == 1 { "" } else { "es" },
                    if through_proxy {
                        ", the workers connected through the statement-counting proxy"
                    } else {
                        ", the workers connected directly"
                    }
                ),
                &DISPATCH_COLUMNS,
            )
        })
        .collect();
    for _ in 0..args.runs {
        for (table, workers) in tables.iter_mut().zip(&args.worker_counts) {
            let row = with_database(args, async |db: &BenchDatabase| {
                dispatch_run(args, db, *workers, through_proxy).await
            })
            .await?;
            table.push(row);
        }
    }
    for table in &tables {
        if tables.len() > 1 {
            table.reprint();
        }
        let mut goals = vec![
            (
                "≥ 8,000 messages/s queued → sent",
                table.median("msg/s") >= 8_000.0,
            ),
            (
                "each message handed over once (no second acceptance in any journal)",
                table.max("twice") == 0.0,
            ),
            (
                "all sent",
                table.max("unsent") == 0.0 && table.max("left") == 0.0,
            ),
        ];
        if through_proxy {
            goals.push((
                "≤ 0.05 PostgreSQL statements per message",
                table.median("stmt/msg") <= 0.05,
            ));
        }
        if args.dispatch_sender_limit.is_some() {
            goals.push((
                "≤ 0.02 Redis calls per message",
                table.median("redis/msg") <= 0.02,
            ));
        }
        table.finish(&goals);
    }
    println!(
        "   (msg/s: messages ÷ time from starting the workers to an empty queue (no message \
         queued or sending); steady/s: 80 % of them ÷ the time from the 10th to the 90th \
         percentile of the mocks' acceptance times; twice: second acceptances of one id over \
         all journals; busy wrk: workers whose journal has a hand-over; wrk CPU%: the workers \
         together until the queue is empty, % of one core; pg CPU%, bench CPU% (the proxy \
         and the watcher): until every message is `read`; per msg: over that whole window, \
         receipts (delivered, read) included; stmt/msg sent: statements on the wire until \
         the queue is empty; stmt: Execute + Query messages, BEGIN and COMMIT included; xact: \
         commits in pg_stat_database, less the watcher's own; rows: inserted + updated + \
         deleted; WAL: from pg_current_wal_lsn(), fsync: pg_stat_wal, both cluster-wide; DB: \
         the database's growth from empty (pg_database_size; no vacuum ran, autovacuum is \
         the server's setting); rollbacks: pg_stat_database; \
         retries: transactions the workers logged as run again; other xact: transactions \
         other databases ran meanwhile, whose WAL and background CPU are in the figures; \
         backends: pg_stat_activity sampled every 50 ms while the queue drained; redis/msg: \
         with --dispatch-sender-limit, EVAL/EVALSHA calls from INFO commandstats ÷ messages, \
         until every message is `read`)"
    );
    Ok(())
}

async fn dispatch_run(
    args: &Args,
    db: &BenchDatabase,
    workers: usize,
    through_proxy: bool,
) -> anyhow::Result<Vec<f64>> {
    let proxy = if through_proxy {
        Some(StatementProxy::start(db.upstream()).await?)
    } else {
        None
    };
    let mut sandbox = Sandbox::new(args)?
        .with_env("HERALD__DATABASE__URL", db.url())
        .with_env("RUST_LOG", LOG_FILTER.to_owned())
        .with_env(
            "HERALD__PROVIDERS__MOCK__IDEMPOTENCY_WINDOW_SECONDS",
            JOURNAL_WINDOW.to_owned(),
        );
    let mut redis = match args.dispatch_sender_limit {
        Some(limit) => {
            sandbox = sandbox
                .with_env("HERALD__REDIS__URL", args.redis_url.clone())
                .with_env(
                    "HERALD__PROVIDERS__MOCK__SENDER_PER_SECOND",
                    limit.to_string(),
                );
            let client = redis::Client::open(args.redis_url.as_str())?;
            Some(
                client
                    .get_multiplexed_async_connection()
                    .await
                    .context("Redis does not answer at --redis-url")?,
            )
        }
        None => None,
    };
    sandbox.migrate().await?;
    let mut admin = Admin::connect(args, db).await?;
    let empty = admin.size().await?;
    let server = sandbox.serve(false).await?;
    fill(&sandbox, args, "normal").await?;
    server.stop().await?;

    let mut watch = Watcher::connect(db).await?;
    let queued = watch.count(BACKLOG).await?;
    // The API process's backends have left, so their counts are in the statistics.
    admin.wait_disconnected(Some(watch.pid)).await;
    let before = admin.counters().await?;
    let cpu_before = postgres_cpu();
    let own_before = process::own_cpu_seconds();
    let wire_before = proxy.as_ref().map_or(0, StatementProxy::statements);
    let calls_before = match redis.as_mut() {
        Some(redis) => script_calls(redis).await?,
        None => f64::NAN,
    };
    let worker_url = proxy
        .as_ref()
        .map_or_else(|| Ok(db.url()), |p| db.url_via(p.addr))?;
    let journals: Vec<PathBuf> = (0..workers)
        .map(|i| sandbox.file(&format!("worker-{i}.journal")))
        .collect();
    let started = Instant::now();
    let started_ms = chrono::Utc::now().timestamp_millis();
    let servers: Vec<Server> = journals
        .iter()
        .enumerate()
        .map(|(i, journal)| {
            sandbox.worker_with(
                &format!("worker-{i}"),
                &[
                    ("HERALD__DATABASE__URL", worker_url.clone()),
                    (
                        "HERALD__PROVIDERS__MOCK__HANDOVER_LOG",
                        journal.display().to_string(),
                    ),
                ],
            )
        })
        .collect::<anyhow::Result<_>>()?;
    eprintln!(
        "   ({workers} worker(s), pids {:?}, draining {queued} messages)",
        servers.iter().map(Server::pid).collect::<Vec<_>>()
    );

    // Until the journals show every message handed over, then until the database shows the
    // queue empty: the database is asked once a second meanwhile (in case some message is
    // never handed over), and often only at the end, so the watcher costs PostgreSQL little.
    let mut tails: Vec<JournalTail> = journals.iter().map(|p| JournalTail::new(p)).collect();
    let mut handovers = Handovers::default();
    let mut asked = Instant::now();
    let mut activity = Activity::default();
    let left = loop {
        for tail in &mut tails {
            tail.read(&mut handovers)?;
        }
        admin.sample(&mut activity, Some(watch.pid)).await?;
        let all_handed = handovers.accepted.len() as u64 >= queued;
        if all_handed || asked.elapsed() >= Duration::from_secs(1) {
            asked = Instant::now();
            let left = watch.count(BACKLOG).await?;
            if left == 0 || started.elapsed() > DRAIN_TIMEOUT {
                break left;
            }
        }
        tokio::time::sleep(Duration::from_millis(if all_handed { 10 } else { 50 })).await;
    };
    let end = started.elapsed().as_secs_f64();
    let wire_sent = proxy.as_ref().map_or(0, StatementProxy::statements) - wire_before;
    let worker_cpu_drain: f64 = servers.iter().map(Server::cpu_seconds).sum();

    // The receipts (delivered, read) of the last messages are still coming: their writes
    // are part of what a message costs, so the counters are read once every message is read.
    let settle_started = Instant::now();
    // (With --no-receipts no message gets past `sent` while the run lasts.)
    while left == 0 && !args.no_receipts && watch.count(UNFINISHED).await? > 0 {
        if settle_started.elapsed() > SETTLE_TIMEOUT {
            eprintln!(
                "   WARNING: not every message reached `read` within {SETTLE_TIMEOUT:?}; costs \
                 are counted to now"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let settled = started.elapsed().as_secs_f64();
    let pg_cpu = admin.cpu_since(&cpu_before, Some(watch.pid)).await?;
    let worker_cpu: f64 = servers.iter().map(Server::cpu_seconds).sum();
    let own_cpu = process::own_cpu_seconds() - own_before;
    let unsent = watch.count(UNSENT).await?;
    let redis_calls = match redis.as_mut() {
        Some(redis) => script_calls(redis).await? - calls_before,
        None => f64::NAN,
    };
    let logs: Vec<PathBuf> = servers.iter().filter_map(Server::log_path).collect();
    for server in servers {
        server.stop().await?;
    }
    let watcher_transactions = watch.close().await?;
    admin.wait_disconnected(None).await;
    let after = admin.counters().await?;
    let wire_all = proxy.as_ref().map_or(0, StatementProxy::statements) - wire_before;
    if let Some(proxy) = &proxy {
        proxy.check()?;
    }
    for tail in &mut tails {
        tail.read(&mut handovers)?;
        ensure!(
            !tail.rotated(),
            "a mock journal rotated during the run ({}); hand-overs cannot all be counted",
            tail.path.display()
        );
    }
    let delta = after.minus(&before);
    let logs = LogSummary::read(&logs);
    logs.print();
    activity.print();
    if let Some(proxy) = &proxy {
        proxy.print_statements(queued as f64, "messages, receipts included");
    }

    let n = queued as f64;
    ensure!(n > 0.0, "nothing was queued");
    let times = &mut handovers.times;
    times.sort_unstable();
    let at = |share: f64| {
        let i = ((times.len() as f64 * share) as usize).min(times.len().saturating_sub(1));
        times
            .get(i)
            .map_or(f64::NAN, |t| (t - started_ms) as f64 / 1000.0)
    };
    let steady = 0.8 * n / (at(0.9) - at(0.1));
    let wire = |count: u64| {
        if proxy.is_some() {
            count as f64 / n
        } else {
            f64::NAN
        }
    };
    Ok(vec![
        n,
        (queued - left) as f64 / end,
        steady,
        end,
        left as f64,
        unsent as f64,
        handovers.twice() as f64,
        tails.iter().filter(|t| t.accepted > 0).count() as f64,
        100.0 * worker_cpu_drain / end,
        100.0 * pg_cpu / settled,
        100.0 * own_cpu / settled,
        1000.0 * worker_cpu / n,
        1000.0 * pg_cpu / n,
        wire(wire_sent),
        wire(wire_all),
        (delta.commits - watcher_transactions as f64) / n,
        delta.rows_written / n,
        delta.wal_bytes / n,
        (after.size - empty) / n,
        delta.wal_syncs / n,
        delta.rollbacks,
        logs.retries as f64,
        delta.others,
        redis_calls / n,
    ])
}

/// Both conditions, so the partial index `message_ready` answers it on either schema: by
/// status before the migration `receipts_update_in_place`, by billing after it.
const BACKLOG: &str = "SELECT COUNT(*) FROM message \
     WHERE status IN ('queued', 'sending') AND billing = 'reserved'";
const UNFINISHED: &str =
    "SELECT COUNT(*) FROM message WHERE status IN ('queued', 'sending', 'sent', 'delivered')";
const UNSENT: &str = "SELECT COUNT(*) FROM message \
     WHERE status IN ('failed', 'expired', 'undelivered', 'canceled')";

// ---------------------------------------------------------------------------------------
// pg-campaign: a campaign uploaded on PostgreSQL, expanded and sent by worker processes

const CAMPAIGN_COLUMNS: [&str; 8] = [
    "recipients",
    "upload s",
    "fanout s",
    "fanout/s",
    "sent s",
    "msg/s",
    "twice",
    "busy wrk",
];

pub(crate) async fn pg_campaign(args: &Args) -> anyhow::Result<()> {
    let list = crate::campaigns::List::generate(args.recipients)?;
    let mut tables: Vec<Table> = args
        .worker_counts
        .iter()
        .map(|n| {
            Table::new(
                format!(
                    "pg-campaign: {} recipients as CSV uploaded to `herald serve --no-workers` \
                     on PostgreSQL, then expanded and handed to the zero-latency mock by {n} \
                     `herald worker` process{}, connected directly",
                    list.recipients,
                    if *n == 1 { "" } else { "es" },
                ),
                &CAMPAIGN_COLUMNS,
            )
        })
        .collect();
    for _ in 0..args.runs {
        for (table, workers) in tables.iter_mut().zip(&args.worker_counts) {
            let row = with_database(args, async |db: &BenchDatabase| {
                campaign_run(args, db, &list, *workers).await
            })
            .await?;
            table.push(row);
        }
    }
    for table in &tables {
        if tables.len() > 1 {
            table.reprint();
        }
        table.finish(&[(
            "each recipient handed over once (no second acceptance in any journal)",
            table.max("twice") == 0.0,
        )]);
    }
    println!(
        "   (upload s: POST → 202, the list validated, rendered, priced and staged by the API \
         process; fanout s: workers started → every recipient a queued message; sent s: \
         workers started → no message queued or sending; fanout/s and msg/s: recipients ÷ \
         those; twice: second acceptances of one id over all journals; busy wrk: workers \
         whose journal has a hand-over)"
    );
    Ok(())
}

async fn campaign_run(
    args: &Args,
    db: &BenchDatabase,
    list: &crate::campaigns::List,
    workers: usize,
) -> anyhow::Result<Vec<f64>> {
    let sandbox = Sandbox::new(args)?
        .with_env("HERALD__DATABASE__URL", db.url())
        .with_env("RUST_LOG", LOG_FILTER.to_owned())
        .with_env(
            "HERALD__PROVIDERS__MOCK__IDEMPOTENCY_WINDOW_SECONDS",
            JOURNAL_WINDOW.to_owned(),
        );
    sandbox.migrate().await?;
    let api = sandbox.serve(false).await?;
    let uploaded = crate::campaigns::upload(&sandbox, list, "normal").await?;
    let mut watch = Watcher::connect(db).await?;
    let journals: Vec<PathBuf> = (0..workers)
        .map(|i| sandbox.file(&format!("worker-{i}.journal")))
        .collect();
    let started = Instant::now();
    let servers: Vec<Server> = journals
        .iter()
        .enumerate()
        .map(|(i, journal)| {
            sandbox.worker_with(
                &format!("worker-{i}"),
                &[(
                    "HERALD__PROVIDERS__MOCK__HANDOVER_LOG",
                    journal.display().to_string(),
                )],
            )
        })
        .collect::<anyhow::Result<_>>()?;
    let mut tails: Vec<JournalTail> = journals.iter().map(|p| JournalTail::new(p)).collect();
    let mut handovers = Handovers::default();
    let mut fanned_out = None;
    let sent = loop {
        for tail in &mut tails {
            tail.read(&mut handovers)?;
        }
        if fanned_out.is_none() && watch.count(TO_EXPAND).await? == 0 {
            fanned_out = Some(started.elapsed().as_secs_f64());
        }
        if fanned_out.is_some() && watch.count(BACKLOG).await? == 0 {
            break started.elapsed().as_secs_f64();
        }
        ensure!(
            started.elapsed() < DRAIN_TIMEOUT,
            "the campaign was not sent within {DRAIN_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for server in servers {
        server.stop().await?;
    }
    api.stop().await?;
    watch.close().await?;
    for tail in &mut tails {
        tail.read(&mut handovers)?;
    }
    let n = list.recipients as f64;
    let fanned_out = fanned_out.unwrap_or(f64::NAN);
    Ok(vec![
        n,
        uploaded.seconds,
        fanned_out,
        n / fanned_out,
        sent,
        n / sent,
        handovers.twice() as f64,
        tails.iter().filter(|t| t.accepted > 0).count() as f64,
    ])
}

/// Recipients of the run's campaign not expanded yet.
const TO_EXPAND: &str =
    "SELECT COALESCE(SUM(GREATEST(last_seq - fanned_out, 0)), 0)::bigint FROM campaign";

// ---------------------------------------------------------------------------------------
// pg-limit: one sender's limit kept through Redis by workers on one PostgreSQL queue

pub(crate) async fn pg_limit(args: &Args) -> anyhow::Result<()> {
    let window = Duration::from_secs(args.pace_duration);
    let mut table = Table::new(
        format!(
            "pg-limit: one mock sender limited to {}/s, {} `herald worker` processes on one \
             PostgreSQL queue sharing the limit through Redis ({}), {} s, timed by the mocks' \
             journals",
            args.limit,
            args.processes,
            args.redis_url,
            window.as_secs()
        ),
        &[
            "sent/s",
            "error %",
            "busiest s",
            "redis calls/msg",
            "twice",
            "busy wrk",
        ],
    );
    let mut redis = redis::Client::open(args.redis_url.as_str())?
        .get_multiplexed_async_connection()
        .await
        .context("Redis does not answer at --redis-url")?;
    for _ in 0..args.runs {
        let row = with_database(args, async |db: &BenchDatabase| {
            limit_run(args, db, &mut redis, window).await
        })
        .await?;
        table.push(row);
    }
    table.finish(&[
        (
            "within ±2 % of the limit",
            table.median("error %").abs() <= 2.0,
        ),
        (
            "each message handed over once (no second acceptance in any journal)",
            table.max("twice") == 0.0,
        ),
    ]);
    println!(
        "   (sent/s: (n − 1) ÷ the time from the first send to the last within the window, \
         over all the workers' journals; redis calls/msg: EVAL/EVALSHA calls from INFO \
         commandstats ÷ messages sent (Redis is the machine's, so other users' scripts would \
         count too))"
    );
    Ok(())
}

/// Messages per `/send-bulk/` request when queueing the limit's backlog.
const LIMIT_BATCH: usize = 100;

async fn limit_run(
    args: &Args,
    db: &BenchDatabase,
    redis: &mut redis::aio::MultiplexedConnection,
    window: Duration,
) -> anyhow::Result<Vec<f64>> {
    // Enough for the workers to outlast the window at the whole limit.
    let backlog = (args.limit as usize) * (window.as_secs() as usize + 10);
    let sandbox = Sandbox::new(args)?
        .with_env("HERALD__DATABASE__URL", db.url())
        .with_env("RUST_LOG", LOG_FILTER.to_owned())
        .with_env("HERALD__REDIS__URL", args.redis_url.clone())
        .with_env(
            "HERALD__PROVIDERS__MOCK__SENDER_PER_SECOND",
            args.limit.to_string(),
        )
        .with_env(
            "HERALD__PROVIDERS__MOCK__IDEMPOTENCY_WINDOW_SECONDS",
            JOURNAL_WINDOW.to_owned(),
        );
    sandbox.migrate().await?;
    let server = sandbox.serve(false).await?;
    let bodies = http::bulk_bodies(backlog.div_ceil(LIMIT_BATCH), LIMIT_BATCH, "normal");
    let tally = http::send_all(
        &sandbox.target(),
        "/api/messaging/send-bulk/",
        bodies,
        4,
        Expect::Bulk,
    )
    .await?;
    ensure!(tally.errors == 0, "queueing failed");
    server.stop().await?;

    let journals: Vec<PathBuf> = (0..args.processes)
        .map(|i| sandbox.file(&format!("worker-{i}.journal")))
        .collect();
    let calls_before = script_calls(redis).await?;
    let servers: Vec<Server> = journals
        .iter()
        .enumerate()
        .map(|(i, journal)| {
            sandbox.worker_with(
                &format!("worker-{i}"),
                &[(
                    "HERALD__PROVIDERS__MOCK__HANDOVER_LOG",
                    journal.display().to_string(),
                )],
            )
        })
        .collect::<anyhow::Result<_>>()?;
    // The journals time the sends; this only has to outlast the window.
    tokio::time::sleep(window + Duration::from_secs(3)).await;
    let logs: Vec<PathBuf> = servers.iter().filter_map(Server::log_path).collect();
    for server in servers {
        server.kill()?;
    }
    let calls = script_calls(redis).await? - calls_before;
    LogSummary::read(&logs).print();
    let mut handovers = Handovers::default();
    let mut busy = 0;
    for journal in &journals {
        let mut tail = JournalTail::new(journal);
        tail.read(&mut handovers)?;
        busy += usize::from(tail.accepted > 0);
    }
    let mut times = Vec::new();
    for journal in &journals {
        times.extend(crate::shared_limit::journal_times(journal)?);
    }
    let sent = times.len();
    let (rate, busiest) = timed_rate(&mut times, window)?;
    Ok(vec![
        rate,
        100.0 * (rate / f64::from(args.limit) - 1.0),
        busiest as f64,
        calls / sent.max(1) as f64,
        handovers.twice() as f64,
        busy as f64,
    ])
}

// ---------------------------------------------------------------------------------------
// The run's database, the server's counters, and PostgreSQL's CPU

/// A database of the run's own on `--postgres-url`'s server.
struct BenchDatabase {
    name: String,
    url: url::Url,
}

impl BenchDatabase {
    async fn create(admin_url: &str) -> anyhow::Result<BenchDatabase> {
        let mut admin = PgConnection::connect(admin_url)
            .await
            .with_context(|| format!("PostgreSQL does not answer at --postgres-url {admin_url}"))?;
        let name = format!(
            "herald_bench_{}",
            ulid::Ulid::new().to_string().to_lowercase()
        );
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .context("could not create the run's database")?;
        admin.close().await?;
        let mut url = url::Url::parse(admin_url).context("--postgres-url is not a URL")?;
        url.set_path(&name);
        // The proxy reads the protocol: no TLS (Herald's sqlx has none anyway).
        url.query_pairs_mut().append_pair("sslmode", "disable");
        Ok(BenchDatabase { name, url })
    }

    fn url(&self) -> String {
        self.url.to_string()
    }

    /// The database as reached through a proxy listening on `addr`.
    fn url_via(&self, addr: SocketAddr) -> anyhow::Result<String> {
        let mut url = self.url.clone();
        url.set_host(Some(&addr.ip().to_string()))
            .context("the proxy's address is not a host")?;
        url.set_port(Some(addr.port()))
            .map_err(|()| anyhow::anyhow!("the database URL cannot take a port"))?;
        Ok(url.to_string())
    }

    /// The server's address, for the proxy.
    fn upstream(&self) -> String {
        format!(
            "{}:{}",
            self.url.host_str().unwrap_or("127.0.0.1"),
            self.url.port().unwrap_or(5432)
        )
    }

    /// One count on a connection of its own (after the load: it costs nothing measured).
    async fn count(&self, sql: &'static str) -> anyhow::Result<u64> {
        let mut conn = PgConnection::connect(&self.url()).await?;
        let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut conn).await?;
        conn.close().await?;
        Ok(u64::try_from(n)?)
    }

    async fn drop_now(self, admin_url: &str) -> anyhow::Result<()> {
        let mut admin = PgConnection::connect(admin_url).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut admin)
        .await
        .with_context(|| format!("could not drop the run's database {}", self.name))?;
        Ok(())
    }
}

/// Runs `run` on a fresh database, dropped afterwards whether the run succeeded or not (its
/// processes are gone by then: `run` owns them).
async fn with_database<T>(
    args: &Args,
    run: impl AsyncFnOnce(&BenchDatabase) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let db = BenchDatabase::create(&args.postgres_url).await?;
    let result = run(&db).await;
    let dropped = db.drop_now(&args.postgres_url).await;
    let value = result?;
    dropped?;
    Ok(value)
}

/// The run's database's cumulative counters, and the cluster's WAL.
#[derive(Debug, Clone, Default)]
struct Counters {
    commits: f64,
    rollbacks: f64,
    rows_written: f64,
    wal_bytes: f64,
    wal_syncs: f64,
    /// The database's size on disk, bytes.
    size: f64,
    /// Transactions each other database committed or rolled back, by its oid.
    others: HashMap<i64, i64>,
}

/// What the counters grew by between two readings.
struct Delta {
    commits: f64,
    rollbacks: f64,
    rows_written: f64,
    wal_bytes: f64,
    wal_syncs: f64,
    /// Transactions of other databases (their WAL is in `wal_bytes`): those that existed at
    /// both readings or were created meanwhile (a database dropped meanwhile is missed).
    others: f64,
}

impl Counters {
    fn minus(&self, before: &Counters) -> Delta {
        Delta {
            commits: self.commits - before.commits,
            rollbacks: self.rollbacks - before.rollbacks,
            rows_written: self.rows_written - before.rows_written,
            wal_bytes: self.wal_bytes - before.wal_bytes,
            wal_syncs: self.wal_syncs - before.wal_syncs,
            others: self
                .others
                .iter()
                .map(|(db, n)| (n - before.others.get(db).copied().unwrap_or(0)).max(0))
                .sum::<i64>() as f64,
        }
    }
}

/// A connection to the server's administrative database, for its statistics.
struct Admin {
    conn: PgConnection,
    db: String,
}

impl Admin {
    async fn connect(args: &Args, db: &BenchDatabase) -> anyhow::Result<Admin> {
        Ok(Admin {
            conn: PgConnection::connect(&args.postgres_url).await?,
            db: db.name.clone(),
        })
    }

    async fn counters(&mut self) -> anyhow::Result<Counters> {
        // WAL bytes from the LSN (exact, everything written) rather than pg_stat_wal's
        // wal_bytes, which a backend reports only when it flushes its statistics.
        let row: (i64, i64, i64, i64, i64) = sqlx::query_as(
            "SELECT d.xact_commit, d.xact_rollback, \
                    d.tup_inserted + d.tup_updated + d.tup_deleted, \
                    (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint, \
                    w.wal_sync \
             FROM pg_stat_database AS d CROSS JOIN pg_stat_wal AS w \
             WHERE d.datname = $1",
        )
        .bind(&self.db)
        .fetch_one(&mut self.conn)
        .await
        .context("could not read pg_stat_database and pg_stat_wal")?;
        let others: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT datid::bigint, xact_commit + xact_rollback FROM pg_stat_database \
             WHERE datname IS DISTINCT FROM $1",
        )
        .bind(&self.db)
        .fetch_all(&mut self.conn)
        .await?;
        let (commits, rollbacks, rows_written, wal_bytes, wal_syncs) = row;
        Ok(Counters {
            commits: commits as f64,
            rollbacks: rollbacks as f64,
            rows_written: rows_written as f64,
            wal_bytes: wal_bytes as f64,
            wal_syncs: wal_syncs as f64,
            size: self.size().await?,
            others: others.into_iter().collect(),
        })
    }

    /// The run's database's size on disk now, bytes.
    async fn size(&mut self) -> anyhow::Result<f64> {
        let size: i64 = sqlx::query_scalar("SELECT pg_database_size($1)")
            .bind(&self.db)
            .fetch_one(&mut self.conn)
            .await?;
        Ok(size as f64)
    }

    /// Adds one look at what the run's backends (but `except`) are doing to `activity`.
    async fn sample(&mut self, activity: &mut Activity, except: Option<i32>) -> anyhow::Result<()> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT query, state || COALESCE(' ' || wait_event_type || ':' || wait_event, '') \
             FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> $2 AND state IS NOT NULL AND state <> 'idle'",
        )
        .bind(&self.db)
        .bind(except.unwrap_or(0))
        .fetch_all(&mut self.conn)
        .await?;
        activity.samples += 1;
        for (query, state) in rows {
            *activity.seen.entry((label(&query), state)).or_default() += 1;
        }
        Ok(())
    }

    /// CPU seconds PostgreSQL spent for the run since `before` (from [`postgres_cpu`]): its
    /// backends serving the run's database (but `except`, the watcher's) and its background
    /// processes. A backend that came and went meanwhile is missed.
    async fn cpu_since(
        &mut self,
        before: &HashMap<u32, f64>,
        except: Option<i32>,
    ) -> anyhow::Result<f64> {
        let pids: Vec<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity \
             WHERE (datname = $1 AND pid <> $2) \
                OR backend_type IN ('checkpointer', 'background writer', 'walwriter', \
                                    'autovacuum launcher', 'autovacuum worker')",
        )
        .bind(&self.db)
        .bind(except.unwrap_or(0))
        .fetch_all(&mut self.conn)
        .await?;
        Ok(pids
            .into_iter()
            .filter_map(|pid| u32::try_from(pid).ok())
            .map(|pid| {
                let now = process::cpu_seconds(&format!("/proc/{pid}/stat"));
                now - before.get(&pid).copied().unwrap_or(0.0)
            })
            .sum())
    }

    /// Waits (up to 30 s) until no backend serves the run's database but `except`: a backend
    /// adds its counts to the statistics when it exits, at the latest.
    async fn wait_disconnected(&mut self, except: Option<i32>) {
        let started = Instant::now();
        loop {
            let left: Result<i64, _> = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> $2",
            )
            .bind(&self.db)
            .bind(except.unwrap_or(0))
            .fetch_one(&mut self.conn)
            .await;
            match left {
                Ok(0) => return,
                Ok(_) if started.elapsed() < Duration::from_secs(30) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                _ => {
                    eprintln!(
                        "   WARNING: backends of {} still connected; its counters may miss \
                         their last second",
                        self.db
                    );
                    return;
                }
            }
        }
    }
}

/// CPU seconds of every process named `postgres` on this machine now, by pid.
fn postgres_cpu() -> HashMap<u32, f64> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return HashMap::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "postgres")
        })
        .map(|pid| (pid, process::cpu_seconds(&format!("/proc/{pid}/stat"))))
        .collect()
}

/// Says whether `pg_stat_statements` can count statements on this server (it needs to be
/// in `shared_preload_libraries`, which takes a restart: the harness never changes it).
async fn print_statement_view(args: &Args) -> anyhow::Result<()> {
    let mut admin = PgConnection::connect(&args.postgres_url)
        .await
        .with_context(|| {
            format!(
                "PostgreSQL does not answer at --postgres-url {}",
                args.postgres_url
            )
        })?;
    let preload: String = sqlx::query_scalar("SELECT current_setting('shared_preload_libraries')")
        .fetch_one(&mut admin)
        .await?;
    let version: String = sqlx::query_scalar("SELECT current_setting('server_version')")
        .fetch_one(&mut admin)
        .await?;
    admin.close().await?;
    println!(
        "postgresql {version}: pg_stat_statements {}; statements are counted on the wire by \
         the harness's proxy, transactions from pg_stat_database",
        if preload.contains("pg_stat_statements") {
            "preloaded (not read by this harness)"
        } else {
            "not in shared_preload_libraries (its view answers only after a restart)"
        }
    );
    Ok(())
}

/// The drain's own connection to the run's database; counts what it runs, so its
/// transactions can be taken out of the database's.
struct Watcher {
    conn: PgConnection,
    pid: i32,
    transactions: u64,
}

impl Watcher {
    async fn connect(db: &BenchDatabase) -> anyhow::Result<Watcher> {
        let mut conn = PgConnection::connect(&db.url()).await?;
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut conn)
            .await?;
        Ok(Watcher {
            conn,
            pid,
            transactions: 1,
        })
    }

    async fn count(&mut self, sql: &'static str) -> anyhow::Result<u64> {
        self.transactions += 1;
        let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut self.conn).await?;
        Ok(u64::try_from(n)?)
    }

    /// Closes the connection; the transactions it ran.
    async fn close(self) -> anyhow::Result<u64> {
        self.conn.close().await?;
        Ok(self.transactions)
    }
}

/// What the run's backends were seen doing, sampled from `pg_stat_activity`: a poor man's
/// profile of where PostgreSQL's time goes (running, waiting on a lock, on the WAL, or open
/// in a transaction while the client works).
#[derive(Default)]
struct Activity {
    samples: u64,
    /// Backends seen, by statement and state (with the wait event, if any).
    seen: HashMap<(String, String), u64>,
}

impl Activity {
    fn print(&self) {
        if self.samples == 0 {
            return;
        }
        let mut seen: Vec<_> = self.seen.iter().collect();
        seen.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let busy: u64 = self.seen.values().sum();
        println!(
            "   backends not idle, average over {} samples of pg_stat_activity: {:.2} in all",
            self.samples,
            busy as f64 / self.samples as f64
        );
        for ((sql, state), n) in seen.iter().take(12) {
            println!(
                "     {:>6.3}  {state:<36}  {sql}",
                **n as f64 / self.samples as f64
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Hand-overs from the mocks' journals, read as they grow

/// Acceptances by message id over one or more journals, and when each happened.
#[derive(Default)]
struct Handovers {
    accepted: HashMap<String, u32>,
    /// Acceptance times, unix ms.
    times: Vec<i64>,
}

impl Handovers {
    /// Second (and later) acceptances of an id: messages handed over more than once.
    fn twice(&self) -> u64 {
        self.accepted
            .values()
            .map(|n| u64::from(n.saturating_sub(1)))
            .sum()
    }
}

/// One worker's journal, read from where the last read stopped.
struct JournalTail {
    path: PathBuf,
    offset: u64,
    /// A last line not yet ended (the mock writes each line with one `write`, but a read may
    /// still fall between two).
    partial: Vec<u8>,
    /// Acceptances in this journal.
    accepted: u64,
}

impl JournalTail {
    fn new(path: &Path) -> JournalTail {
        JournalTail {
            path: path.to_owned(),
            offset: 0,
            partial: Vec::new(),
            accepted: 0,
        }
    }

    /// Adds the lines written since the last read (`A <id> <reference> <at_ms> …`).
    fn read(&mut self, into: &mut Handovers) -> anyhow::Result<()> {
        let mut file = match std::fs::File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).context("could not read a mock journal"),
        };
        file.seek(SeekFrom::Start(self.offset))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        self.offset += bytes.len() as u64;
        self.partial.extend_from_slice(&bytes);
        let Some(end) = self.partial.iter().rposition(|b| *b == b'\n') else {
            return Ok(());
        };
        let complete: Vec<u8> = self.partial.drain(..=end).collect();
        for line in String::from_utf8_lossy(&complete).lines() {
            let mut fields = line.split(' ');
            if let (Some("A"), Some(id), Some(_), Some(at)) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            {
                self.accepted += 1;
                *into.accepted.entry(id.to_owned()).or_default() += 1;
                if let Ok(at) = at.parse() {
                    into.times.push(at);
                }
            }
        }
        Ok(())
    }

    /// Whether the mock rotated this journal (its lines before then were not all read).
    fn rotated(&self) -> bool {
        PathBuf::from(format!("{}.1", self.path.display())).exists()
    }
}

// ---------------------------------------------------------------------------------------
// What the processes logged

/// Warnings, errors and retried transactions in the processes' logs.
#[derive(Default)]
struct LogSummary {
    warnings: u64,
    errors: u64,
    retries: u64,
    /// The first few distinct warning and error lines.
    samples: Vec<String>,
}

impl LogSummary {
    fn read(paths: &[PathBuf]) -> LogSummary {
        let mut summary = LogSummary::default();
        for path in paths {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            for line in text.lines().map(strip_ansi) {
                let (warning, error) = (line.contains(" WARN "), line.contains(" ERROR "));
                summary.warnings += u64::from(warning);
                summary.errors += u64::from(error);
                summary.retries += u64::from(line.contains(RETRY_LINE));
                // Without the timestamp, so repeats of one message count once.
                let message = line
                    .split_once(' ')
                    .map_or(line.as_str(), |(_, m)| m.trim());
                if (warning || error)
                    && summary.samples.len() < 5
                    && !summary.samples.iter().any(|s| s == message)
                {
                    summary.samples.push(message.to_owned());
                }
            }
        }
        summary
    }

    fn print(&self) {
        if self.warnings + self.errors + self.retries == 0 {
            return;
        }
        println!(
            "   logs: {} warnings, {} errors, {} transactions run again",
            self.warnings, self.errors, self.retries
        );
        for sample in &self.samples {
            println!("     {sample}");
        }
    }
}

/// A log line without its colour codes (`ESC [ … m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// The statement-counting proxy

/// A TCP proxy to PostgreSQL that counts, in what clients send, the messages that run a
/// statement: `Execute` (extended protocol: sqlx's queries) and `Query` (simple protocol:
/// sqlx's BEGIN, COMMIT and ROLLBACK), each by its SQL (from the `Parse` that prepared
/// it). What the server sends is copied unread.
struct StatementProxy {
    addr: SocketAddr,
    counts: Arc<WireCounts>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct WireCounts {
    executes: AtomicU64,
    queries: AtomicU64,
    /// Startup requests for TLS or GSS encryption: after one the stream may be unreadable.
    encryption_requests: AtomicU64,
    /// Statements run, by [`label`] of their SQL.
    by_statement: std::sync::Mutex<HashMap<String, u64>>,
}

impl WireCounts {
    fn count(&self, label: &str) {
        if let Ok(mut counts) = self.by_statement.lock() {
            *counts.entry(label.to_owned()).or_default() += 1;
        }
    }
}

impl StatementProxy {
    async fn start(upstream: String) -> anyhow::Result<StatementProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(WireCounts::default());
        let shared = Arc::clone(&counts);
        let task = tokio::spawn(async move {
            // Dropped with the task: every connection is cut when the proxy is.
            let mut connections = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, counts) = (upstream.clone(), Arc::clone(&shared));
                connections.spawn(async move {
                    // A broken connection is Herald's to notice (it reconnects).
                    let _ = relay(client, &upstream, &counts).await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Ok(StatementProxy { addr, counts, task })
    }

    /// Statements run through the proxy so far.
    fn statements(&self) -> u64 {
        self.counts.executes.load(Ordering::Relaxed) + self.counts.queries.load(Ordering::Relaxed)
    }

    fn check(&self) -> anyhow::Result<()> {
        let requests = self.counts.encryption_requests.load(Ordering::Relaxed);
        if requests > 0 {
            bail!(
                "{requests} connections asked the proxy for TLS or GSS encryption: the counts \
                 cannot be trusted (sslmode=disable should prevent it)"
            );
        }
        Ok(())
    }

    /// Prints the statements run so far, most frequent first, per 1,000 of `per`.
    fn print_statements(&self, per: f64, unit: &str) {
        let Ok(counts) = self.counts.by_statement.lock() else {
            return;
        };
        let mut counts: Vec<(&String, &u64)> = counts.iter().collect();
        counts.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        println!("   statements per 1,000 {unit} (on the wire, by SQL):");
        for (sql, n) in counts.iter().take(16) {
            println!("     {:>8.2}  {sql}", 1000.0 * **n as f64 / per);
        }
        if counts.len() > 16 {
            let rest: u64 = counts.iter().skip(16).map(|(_, n)| **n).sum();
            println!(
                "     {:>8.2}  (the {} others)",
                1000.0 * rest as f64 / per,
                counts.len() - 16
            );
        }
    }
}

impl Drop for StatementProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(client: TcpStream, upstream: &str, counts: &WireCounts) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    let server = TcpStream::connect(upstream).await?;
    server.set_nodelay(true)?;
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = async {
        let mut frames = Frames::default();
        let mut buf = vec![0_u8; 64 * 1024];
        loop {
            let n = client_read.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            frames.feed(&buf[..n], counts);
            server_write.write_all(&buf[..n]).await?;
        }
        server_write.shutdown().await
    };
    let down = async {
        tokio::io::copy(&mut server_read, &mut client_write).await?;
        client_write.shutdown().await
    };
    tokio::try_join!(up, down)?;
    Ok(())
}

/// The frontend's byte stream cut into protocol messages: first the startup packet (length
/// and protocol code, no type byte; an encryption request is followed by another), then
/// messages of a type byte and a length that counts itself.
#[derive(Default)]
struct Frames {
    started: bool,
    header: [u8; 8],
    have: usize,
    /// The current message's type, and how many bytes of its body are still to come.
    kind: u8,
    left: usize,
    /// The current message's body, kept for `Parse`, `Bind` and `Query`.
    body: Vec<u8>,
    keep: bool,
    /// This connection's prepared statements ([`label`] of their SQL, by name), and the
    /// one the last `Bind` bound.
    prepared: HashMap<String, String>,
    bound: String,
}

const SSL_REQUEST: u32 = 80_877_103;
const GSS_REQUEST: u32 = 80_877_104;

impl Frames {
    fn feed(&mut self, mut data: &[u8], counts: &WireCounts) {
        while !data.is_empty() {
            if self.left > 0 {
                let n = self.left.min(data.len());
                if self.keep {
                    self.body.extend_from_slice(&data[..n]);
                }
                self.left -= n;
                data = &data[n..];
                if self.left == 0 {
                    self.finish(counts);
                }
                continue;
            }
            let want = if self.started { 5 } else { 8 };
            let n = (want - self.have).min(data.len());
            self.header[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have < want {
                return;
            }
            self.have = 0;
            self.body.clear();
            let h = self.header;
            if self.started {
                self.kind = h[0];
                self.left =
                    (u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize).saturating_sub(4);
                self.keep = matches!(self.kind, b'P' | b'B' | b'Q');
                if self.left == 0 {
                    self.finish(counts);
                }
            } else {
                let length = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
                let code = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
                (self.kind, self.left, self.keep) = (0, length.saturating_sub(8), false);
                if code == SSL_REQUEST || code == GSS_REQUEST {
                    counts.encryption_requests.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.started = true;
                }
            }
        }
    }

    /// The current message is whole.
    fn finish(&mut self, counts: &WireCounts) {
        let mut strings = self
            .body
            .split(|b| *b == 0)
            .map(|s| String::from_utf8_lossy(s).into_owned());
        match self.kind {
            // Parse: statement name, SQL, parameter types.
            b'P' => {
                let name = strings.next().unwrap_or_default();
                let sql = strings.next().unwrap_or_default();
                self.prepared.insert(name, label(&sql));
            }
            // Bind: portal name, statement name, parameters.
            b'B' => {
                let _portal = strings.next();
                let name = strings.next().unwrap_or_default();
                self.bound = self
                    .prepared
                    .get(&name)
                    .cloned()
                    .unwrap_or_else(|| format!("(statement {name} prepared before the proxy)"));
            }
            b'E' => {
                counts.executes.fetch_add(1, Ordering::Relaxed);
                counts.count(&self.bound);
            }
            b'Q' => {
                counts.queries.fetch_add(1, Ordering::Relaxed);
                counts.count(&label(&strings.next().unwrap_or_default()));
            }
            _ => {}
        }
    }
}

/// A statement's SQL as a short label: the start of its first line that is not a comment,
/// and of its first comment.
fn label(sql: &str) -> String {
    let lines = || sql.lines().map(str::trim).filter(|l| !l.is_empty());
    let code: String = lines()
        .find(|l| !l.starts_with("--"))
        .unwrap_or("")
        .chars()
        .take(44)
        .collect();
    // Herald's query files open with a comment saying what the statement does.
    match lines().find_map(|l| l.strip_prefix("--")) {
        Some(comment) => format!(
            "{code} -- {}",
            comment.trim().chars().take(70).collect::<String>()
        ),
        None => code,
    }
}
