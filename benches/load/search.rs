//! Message search with a large store (issue 11): `--recipients` messages (default 1,000,000)
//! queued through `/send-bulk/` over 100,000 numbers, 100 campaign ids and both channels,
//! then given a spread of statuses (80 % read, 10 % delivered, 5 % sent, 3 % failed, 2 %
//! undelivered) by one UPDATE while Herald is stopped; then `GET /messages` with each
//! filter, one request at a time, against `herald serve --no-workers`. The dashboard's
//! `GET /overview` is timed too, with the million waiting and with them finished.

use crate::Args;
use crate::http::{Client, Expect};
use crate::process::Sandbox;
use crate::report::median;
use anyhow::{Context, ensure};
use hyper::body::Bytes;
use sqlx::Connection;
use std::sync::Arc;
use std::time::Instant;

const SEND_BULK: &str = "/api/messaging/send-bulk/";
const BATCH: usize = 100;
const NUMBERS: usize = 100_000;
const CAMPAIGNS: usize = 100;
/// Requests per filter.
const REQUESTS: usize = 200;

fn number(i: usize) -> String {
    format!("+1415{:07}", 2_000_000 + i % NUMBERS)
}

fn bodies(total: usize) -> Arc<Vec<Bytes>> {
    let batches = total.div_ceil(BATCH);
    Arc::new(
        (0..batches)
            .map(|b| {
                let messages: Vec<serde_json::Value> = (0..BATCH)
                    .map(|j| {
                        let i = b * BATCH + j;
                        let channel = if i.is_multiple_of(10) {
                            "whatsapp"
                        } else {
                            "sms"
                        };
                        serde_json::json!({
                            "phone_number": number(i),
                            "message": format!("search bench {i}"),
                            // Each campaign a contiguous run, as campaigns are sent: an
                            // old one lies behind every newer message.
                            "campaign_id": format!("bench-{}", i * CAMPAIGNS / total.max(1)),
                            "channel": channel,
                        })
                    })
                    .collect();
                Bytes::from(serde_json::json!({ "messages": messages }).to_string())
            })
            .collect(),
    )
}

/// A filter's name and its query string for the i-th request.
type Filter = (&'static str, Box<dyn Fn(usize) -> String>);

/// Spreads statuses over the queued rows (the workers never ran), deterministically by rowid.
const SPREAD: &str = "UPDATE message SET status = CASE \
    WHEN rowid % 100 < 80 THEN 'read' WHEN rowid % 100 < 90 THEN 'delivered' \
    WHEN rowid % 100 < 95 THEN 'sent' WHEN rowid % 100 < 98 THEN 'failed' \
    ELSE 'undelivered' END";

/// `GET /overview` one request at a time: prints p50 and p99, returns p99 (ms).
async fn overview(sandbox: &Sandbox, store: &str) -> anyhow::Result<f64> {
    let mut client = Client::connect(sandbox.target()).await?;
    let mut latencies = Vec::with_capacity(REQUESTS);
    for _ in 0..REQUESTS {
        let sent = Instant::now();
        let (status, body) = client.get("/api/messaging/overview").await?;
        latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
        ensure!(status.is_success(), "/overview: {status} {body:?}");
    }
    latencies.sort_by(f64::total_cmp);
    let p99 = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
    println!(
        "== overview: GET /overview with {store}, {REQUESTS} requests one at a time, \
         `herald serve --no-workers`: p50 {:.2} ms, p99 {p99:.2} ms",
        median(&mut latencies.clone())
    );
    Ok(p99)
}

/// The overview's tallies at their largest for every account: every status in every minute
/// and hour kept (2 hours, 32 days). The workers never ran, so the UPDATE above left the
/// tallies counting the queue alone; the overview's cost is the number of tally rows.
const FULL_TALLIES: &str = "WITH RECURSIVE \
    k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i < 767), \
    st(status) AS (VALUES ('queued'), ('sending'), ('sent'), ('delivered'), ('read'), \
        ('failed'), ('undelivered'), ('expired'), ('canceled')), \
    now(ms) AS (SELECT CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)) \
    INSERT OR REPLACE INTO status_tally (account_id, span, bucket, status, n) \
    SELECT a.account_id, 3600000, (now.ms - now.ms % 3600000) - k.i * 3600000, st.status, 1000 \
    FROM account AS a, k, st, now \
    UNION ALL \
    SELECT a.account_id, 60000, (now.ms - now.ms % 60000) - k.i * 60000, st.status, 20 \
    FROM account AS a, k, st, now WHERE k.i < 120";

pub(crate) async fn search(args: &Args) -> anyhow::Result<()> {
    let total = args.recipients;
    let sandbox = Sandbox::new(args)?;
    let started = Instant::now();
    let server = sandbox.serve(false).await?;
    let tally = crate::http::send_all(
        &sandbox.target(),
        SEND_BULK,
        bodies(total),
        args.bulk_connections,
        Expect::Bulk,
    )
    .await?;
    ensure!(tally.errors == 0, "filling failed: {} errors", tally.errors);
    // The dashboard's overview while every one of them waits in the queue (its worst case:
    // the backlog is counted per priority).
    let backlog = overview(&sandbox, "1,000,000 waiting (the backlog counted)").await?;
    server.stop().await?;
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(sandbox.db_path());
    let mut db = sqlx::SqliteConnection::connect_with(&options).await?;
    sqlx::query(SPREAD).execute(&mut db).await?;
    sqlx::query(FULL_TALLIES).execute(&mut db).await?;
    let (first, last): (i64, i64) =
        sqlx::query_as("SELECT min(created_at), max(created_at) FROM message")
            .fetch_one(&mut db)
            .await?;
    db.close().await?;
    // One second from the middle of the fill.
    let middle = first + (last - first) / 2;
    let rfc3339 = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_default()
    };
    let window = format!(
        "created_from={}&created_to={}",
        rfc3339(middle),
        rfc3339(middle + 1000)
    );
    println!(
        "   (filled {} messages and spread their statuses in {:.0} s)",
        tally.accepted_total,
        started.elapsed().as_secs_f64()
    );

    let server = sandbox.serve(false).await?;
    let finished = overview(
        &sandbox,
        "1,000,000 finished and the tallies at their largest (32 days of hours, 2 hours of minutes)",
    )
    .await?;
    println!(
        "   goal: the overview's data under 50 ms with 1,000,000 messages in the store: {}",
        if finished.max(backlog) < 50.0 {
            "MET"
        } else if finished < 50.0 {
            "MET once they are sent (MISSED with all of them waiting)"
        } else {
            "MISSED"
        }
    );
    let mut client = Client::connect(sandbox.target()).await?;
    println!(
        "== search: GET /messages with {} messages in the store, {REQUESTS} requests per \
         filter one at a time, `herald serve --no-workers`, default page (50)",
        tally.accepted_total
    );
    println!("| filter | p50 ms | p99 ms | rows per page |\n|---|---|---|---|");
    let filters: Vec<Filter> = vec![
        ("none (newest first)", Box::new(|_| String::new())),
        (
            "phone_number",
            Box::new(|i| format!("phone_number=%2B{}", &number(i * 7919)[1..])),
        ),
        (
            "status=failed (3 %)",
            Box::new(|_| "status=failed".to_owned()),
        ),
        (
            "status=sending (none: the worst case)",
            Box::new(|_| "status=sending".to_owned()),
        ),
        ("status=read (80 %)", Box::new(|_| "status=read".to_owned())),
        (
            "campaign_id",
            Box::new(|i| format!("campaign_id=bench-{}", i % CAMPAIGNS)),
        ),
        (
            "channel=whatsapp (10 %)",
            Box::new(|_| "channel=whatsapp".to_owned()),
        ),
        (
            "campaign_id + status=undelivered",
            Box::new(|i| format!("campaign_id=bench-{}&status=undelivered", i % CAMPAIGNS)),
        ),
        (
            "created_from + created_to (one second)",
            Box::new(move |_| window.clone()),
        ),
    ];
    let mut worst: f64 = 0.0;
    for (name, query) in &filters {
        let mut latencies = Vec::with_capacity(REQUESTS);
        let mut rows = 0usize;
        for i in 0..REQUESTS {
            let path = format!("/api/messaging/messages?{}", query(i));
            let sent = Instant::now();
            let (status, body) = client.get(&path).await?;
            latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
            ensure!(status.is_success(), "{path}: {status} {body:?}");
            let page: serde_json::Value = serde_json::from_slice(&body).context("a JSON page")?;
            rows += page["messages"].as_array().map_or(0, Vec::len);
        }
        latencies.sort_by(f64::total_cmp);
        let p99 = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
        worst = worst.max(p99);
        println!(
            "| {name} | {:.2} | {p99:.2} | {:.0} |",
            median(&mut latencies.clone()),
            rows as f64 / REQUESTS as f64
        );
    }
    server.stop().await?;
    println!(
        "   goal p99 under 50 ms for each filter: {}",
        if worst < 50.0 { "MET" } else { "MISSED" }
    );
    Ok(())
}
