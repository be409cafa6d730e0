//! Load benchmarks for Herald: ingest, bulk ingest, dispatch, priority and keeping pace;
//! campaigns: CSV upload and fan-out, template rendering, a campaign's send rate; Twilio
//! dispatch and sender limits; inbound messages; a sender limit shared through Redis;
//! PostgreSQL as the store and queue of many processes.
//!
//! Run with `cargo bench --bench load -- <scenario> [--runs 3] [--duration 10] …`
//! (`--help` lists the options; BENCHMARKS.md holds the figures and how to read them).
//!
//! Each run starts the release `herald` binary as a child process on a fresh temporary
//! database and a free loopback port, and drives it with the light HTTP/1.1 load generator in
//! `http.rs` (raw hyper keep-alive connections on one thread, so the generator leaves most of
//! a 2-core machine to the server). Ingest figures are set beside a bare axum handler
//! (`baseline.rs`), run as its own process from this same binary and loaded the same way in
//! the same run, so a figure can be read as a ratio even when the machine's speed varies.

// A benchmark reports and stops at the first surprise; panicking helpers would be fine too,
// but errors are propagated with context anyway. Indexing into sorted latency vectors and
// result rows is checked by construction.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod baseline;
mod campaigns;
mod http;
mod inbound;
mod post_floor;
mod postgres;
mod process;
mod report;
mod scenarios;
mod search;
mod shared_limit;
mod stream;
mod sustain;
mod twilio;
mod twilio_compat;
mod webhooks;

use clap::{Parser, ValueEnum};
use std::net::SocketAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Single sends, closed loop, against the same load on the baseline handler.
    Ingest,
    /// `/send-bulk/` with batches of 100, closed loop, against the baseline.
    Bulk,
    /// A queued backlog drained by `herald worker` through the zero-latency mock.
    Dispatch,
    /// Urgent messages sent behind a draining backlog of low ones.
    Priority,
    /// A steady open-loop rate of single sends while the workers deliver.
    Pace,
    /// The five scenarios above, in that order (not the campaign ones below).
    All,
    /// A generated CSV list uploaded to `herald serve`, until every message is queued.
    CampaignUpload,
    /// One template rendered for every recipient, in-process; then the per-row pipeline.
    Render,
    /// A campaign's send rate through the zero-latency mock, alone and beside single sends.
    CampaignSend,
    /// The three campaign scenarios above, in that order.
    Campaigns,
    /// The highest rate of single sends one `herald serve` (workers on, default config, the
    /// mock's default delays) keeps pace with; set beside the bare axum handler.
    PaceMax,
    /// `--soak-rate` single sends/s for `--soak-minutes` through one `herald serve` (default
    /// config): RSS and queue depth over time.
    Soak,
    /// A backlog drained through a Twilio-shaped stub over loopback HTTP, beside the
    /// in-process mock; then the messages' signed status callbacks.
    TwilioDispatch,
    /// Three Twilio senders at 1, 10 and 80 messages/s for `--pace-duration` seconds, timed
    /// by the stub.
    SenderLimits,
    Inbound,
    /// `--rate` single sends/s through `herald serve` without and with the account's
    /// webhook pointed at a local receiver: events/s, status change → receiver, dispatch drop.
    Webhooks,
    /// Signed event posts from a client built as the dispatcher's to the webhooks receiver,
    /// no Herald: closed loop, then `--rate` posts/s; each side's CPU per post.
    PostFloor,
    /// `--clients` event-stream clients on `herald serve` while `--rate` single sends/s are
    /// offered: frames/s and status change → client.
    Stream,
    /// One mock sender limited to `--limit`/s, kept by `--processes` `herald worker`
    /// processes together through Redis (`--redis-url`) for `--pace-duration` seconds.
    SharedLimit,
    /// `GET /messages` with each filter, `--recipients` messages in the store.
    Search,
    /// Sends through the Twilio-compatible API beside Herald's own, same server and load.
    TwilioCompat,
    /// Ingest on PostgreSQL: single sends, closed loop, one `herald serve --no-workers` on a
    /// fresh database of `--postgres-url`'s server, beside the same load on SQLite.
    PgIngest,
    /// A `--backlog` queued on PostgreSQL drained by each of `--worker-counts` `herald worker`
    /// processes: msg/s, hand-overs per message, and statements, transactions, WAL and CPU
    /// per message.
    PgDispatch,
    /// One mock sender limited to `--limit`/s, `--processes` `herald worker` processes on one
    /// PostgreSQL queue sharing the limit through Redis, `--pace-duration` seconds.
    PgLimit,
    /// A `--recipients` campaign uploaded to `herald serve --no-workers` on PostgreSQL, then
    /// expanded and sent by each of `--worker-counts` `herald worker` processes.
    PgCampaign,
}

/// Whether the PostgreSQL scenarios reach the database through the harness's statement
/// counting proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum PgProxy {
    /// pg-dispatch through the proxy, pg-ingest and pg-limit directly (the proxy's own
    /// round trips would cost ingest a share of the machine).
    Auto,
    On,
    Off,
}

/// Options shared by the scenarios; the defaults are the targets.
#[derive(Debug, Clone, Parser)]
#[command(name = "load", about = "Herald load benchmarks (see BENCHMARKS.md)")]
pub(crate) struct Args {
    #[arg(value_enum, default_value = "all")]
    scenario: Scenario,
    /// Runs per scenario, each on a fresh database; tables show every run and the median.
    #[arg(long, default_value_t = 3)]
    pub(crate) runs: usize,
    /// Measured seconds of closed-loop load per run (ingest, bulk).
    #[arg(long, default_value_t = 10)]
    pub(crate) duration: u64,
    /// Seconds of load before measuring starts (connections, caches, WAL growth).
    #[arg(long, default_value_t = 1)]
    pub(crate) warmup: u64,
    /// Concurrent connections for single sends (ingest, pace, campaign-send).
    #[arg(long, default_value_t = 64)]
    pub(crate) connections: usize,
    /// Concurrent connections for bulk sends (bulk, and filling backlogs).
    #[arg(long, default_value_t = 16)]
    pub(crate) bulk_connections: usize,
    /// Numbers put on the account's opt-out list before ingest and bulk runs (none of them a
    /// recipient): an account with a list, whose every accept then looks its numbers up.
    #[arg(long, default_value_t = 0)]
    pub(crate) opt_outs: usize,
    /// Messages queued before the dispatch and priority scenarios.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) backlog: usize,
    /// Urgent probes per priority run.
    #[arg(long, default_value_t = 5)]
    pub(crate) probes: usize,
    /// Offered rate of single sends in the pace scenario, per second.
    #[arg(long, default_value_t = 2000)]
    pub(crate) rate: u64,
    /// Seconds the pace scenario offers its rate.
    #[arg(long, default_value_t = 60)]
    pub(crate) pace_duration: u64,
    /// Recipients in the campaign-upload list, and recipients rendered by render.
    #[arg(long, default_value_t = 1_000_000)]
    pub(crate) recipients: usize,
    /// Recipients in the campaign sent by campaign-send.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) campaign_size: usize,
    /// Single sends per second offered beside the campaign in campaign-send.
    #[arg(long, default_value_t = 1000)]
    pub(crate) singles_rate: u64,
    /// Run ingest and bulk against `herald serve` with its workers delivering, instead of
    /// `serve --no-workers` (API only).
    #[arg(long)]
    pub(crate) workers: bool,
    /// Skip the baseline handler (ingest, bulk): faster, but no ratio.
    #[arg(long)]
    pub(crate) no_baseline: bool,
    /// pg-dispatch: send through one mock sender limited to this many messages a second,
    /// shared by the workers through Redis at --redis-url, and count the Redis calls per
    /// message (above the dispatch rate, every permit is still granted by Redis).
    #[arg(long)]
    pub(crate) dispatch_sender_limit: Option<u32>,
    /// Diagnostic: push the mock's delivery receipts a day out, so no receipt is applied
    /// during a run and the figures show the dispatch path alone.
    #[arg(long)]
    pub(crate) no_receipts: bool,
    /// Keep the mock's default accept delay (5 ms) instead of zero: with receipts at their
    /// defaults too, `herald serve` runs exactly as a user starts it (only the API's per-key
    /// request limit, the balance and the daily limit are raised so they cap nothing).
    #[arg(long)]
    pub(crate) mock_defaults: bool,
    /// Generator threads (each its own single-threaded runtime) sharing the connections and
    /// the offered rate, for loads one thread cannot drive alone.
    #[arg(long, default_value_t = 2)]
    pub(crate) gen_threads: usize,
    /// pace-max: the first rate tried, per second.
    #[arg(long, default_value_t = 4000)]
    pub(crate) rate_from: u64,
    /// pace-max: the highest rate tried, per second.
    #[arg(long, default_value_t = 30_000)]
    pub(crate) rate_to: u64,
    /// pace-max: the search stops when kept and missed rates are this close, per second.
    #[arg(long, default_value_t = 500)]
    pub(crate) resolution: u64,
    /// pace-max: seconds of each search run (0: `--pace-duration`); the rate found is then
    /// confirmed with `--runs` runs of `--pace-duration` seconds.
    #[arg(long, default_value_t = 20)]
    pub(crate) search_duration: u64,
    /// pace-max: times to step down by `--resolution` when most confirmation runs miss.
    #[arg(long, default_value_t = 2)]
    pub(crate) confirm_retries: usize,
    /// stream: event-stream clients.
    #[arg(long, default_value_t = 100)]
    pub(crate) clients: usize,
    /// shared-limit: the sender's limit, messages per second.
    #[arg(long, default_value_t = 100)]
    pub(crate) limit: u32,
    /// shared-limit: worker processes sharing it.
    #[arg(long, default_value_t = 3)]
    pub(crate) processes: usize,
    /// shared-limit: the Redis the processes share.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub(crate) redis_url: String,
    /// PostgreSQL scenarios: a database on this server to connect to as an administrator
    /// (each run creates `herald_bench_<ulid>` there and drops it at the end).
    #[arg(long, default_value = "postgres://root@127.0.0.1:5432/postgres")]
    pub(crate) postgres_url: String,
    /// pg-dispatch: the numbers of `herald worker` processes to drain the backlog with.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub(crate) worker_counts: Vec<usize>,
    /// PostgreSQL scenarios: count statements on the wire through a proxy in this process.
    #[arg(long, value_enum, default_value = "auto")]
    pub(crate) pg_proxy: PgProxy,
    /// soak: offered rate of single sends, per second.
    #[arg(long, default_value_t = 1000)]
    pub(crate) soak_rate: u64,
    /// soak: minutes the rate is offered.
    #[arg(long, default_value_t = 30)]
    pub(crate) soak_minutes: u64,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
    /// Internal: run as the baseline server on this address (the harness starts itself so).
    #[arg(long, hide = true, value_name = "ADDR")]
    baseline_server: Option<SocketAddr>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(addr) = args.baseline_server {
        return baseline::serve(addr);
    }
    // One thread for the generator: it must stay light beside the server it loads.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    report::print_machine();
    let all = args.scenario == Scenario::All;
    if all || args.scenario == Scenario::Ingest {
        scenarios::ingest(&args).await?;
    }
    if all || args.scenario == Scenario::Bulk {
        scenarios::bulk(&args).await?;
    }
    if all || args.scenario == Scenario::Dispatch {
        scenarios::dispatch(&args).await?;
    }
    if all || args.scenario == Scenario::Priority {
        scenarios::priority(&args).await?;
    }
    if all || args.scenario == Scenario::Pace {
        scenarios::pace(&args).await?;
    }
    if args.scenario == Scenario::PaceMax {
        sustain::pace_max(&args).await?;
    }
    if args.scenario == Scenario::Soak {
        sustain::soak(&args).await?;
    }
    if args.scenario == Scenario::TwilioDispatch {
        twilio::twilio_dispatch(&args).await?;
    }
    if args.scenario == Scenario::SenderLimits {
        twilio::sender_limits(&args).await?;
    }
    if args.scenario == Scenario::Stream {
        stream::stream(&args).await?;
    }
    if args.scenario == Scenario::Webhooks {
        webhooks::webhooks(&args).await?;
    }
    if args.scenario == Scenario::PostFloor {
        post_floor::post_floor(&args).await?;
    }
    if args.scenario == Scenario::SharedLimit {
        shared_limit::shared_limit(&args).await?;
    }
    if args.scenario == Scenario::TwilioCompat {
        twilio_compat::twilio_compat(&args).await?;
    }
    if args.scenario == Scenario::PgIngest {
        postgres::pg_ingest(&args).await?;
    }
    if args.scenario == Scenario::PgDispatch {
        postgres::pg_dispatch(&args).await?;
    }
    if args.scenario == Scenario::PgLimit {
        postgres::pg_limit(&args).await?;
    }
    if args.scenario == Scenario::PgCampaign {
        postgres::pg_campaign(&args).await?;
    }
    if args.scenario == Scenario::Search {
        search::search(&args).await?;
    }
    if args.scenario == Scenario::Inbound {
        inbound::inbound(&args).await?;
    }
    let campaigns = args.scenario == Scenario::Campaigns;
    if campaigns || args.scenario == Scenario::CampaignUpload {
        campaigns::campaign_upload(&args).await?;
    }
    if campaigns || args.scenario == Scenario::Render {
        campaigns::render(&args).await?;
    }
    if campaigns || args.scenario == Scenario::CampaignSend {
        campaigns::campaign_send(&args).await?;
    }
    Ok(())
}
