//! Posts events to customers' webhooks (SPEC §7): the account's URL and each message's
//! `status_callback`, signed with the account's secret (or, for a callback asked for through
//! the Twilio-compatible API, form-encoded and signed as Twilio signs: `twilio_format`).
//!
//! Events are written in the transaction of each change (the outbox). On SQLite an account's
//! webhook takes them from the event log: this loop reads the events after the webhooks'
//! cursor, posts each, and writes the delivery's row with the attempt's outcome, the cursor
//! moved in the same transaction past every event recorded. (A row per event written by the
//! event's trigger, claimed, then marked delivered cost the single writer three writes, and
//! the writer is what sends share.) A message's status_callback, and every delivery on
//! PostgreSQL, where several processes dispatch, is a row the trigger queues; this loop claims
//! due rows under a lease (the attempt count is the fencing token), posts each once, and
//! records the attempt. A 2xx delivers it; anything else is retried with backoff (never sooner
//! than the receiver's Retry-After) until `retry_for_seconds`, and an endpoint that failed
//! every attempt for `disable_after_seconds` is disabled. A crash between a post and its record
//! means the post is made again, after the lease or from the cursor: receivers drop duplicates
//! by `X-Herald-Event-Id`.
//!
//! Each account has a few posts at most outstanding (the rest wait in the table), so one slow
//! endpoint holds back only its own account (`webhook_lanes`).

use super::RetryPolicy;
use super::idle::IdlePoll;
use super::webhook_lanes::{FAST_FACTOR, Lanes, QUEUED_ROUNDS};
use crate::config::{Settings, WebhookSettings};
use crate::domain::Timestamp;
use crate::events::{self, target, twilio_format};
use crate::metrics::Metrics;
use crate::sealing::SealingKey;
use crate::store::Store;
use crate::store::events::{AttemptOutcome, DeliveryJob, NextStep, TwilioCallback};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

/// Outcomes recorded per write at most.
const RECORD_BATCH: usize = 1024;

/// Free places that make the dispatcher read the log before its next poll, when the last
/// read left events behind.
const FRESH_READ_MIN: usize = 64;

/// How long the recorder waits before writing outcomes again after a failed write.
const RECORD_RETRY: Duration = Duration::from_millis(500);

/// The reading of the event log for accounts' webhooks: how far it has read, and the events
/// read whose outcomes are not recorded yet (the cursor stays below them).
struct FreshEvents {
    read_to: i64,
    outstanding: BTreeSet<i64>,
}

impl FreshEvents {
    fn at(cursor: i64) -> Self {
        Self {
            read_to: cursor,
            outstanding: BTreeSet::new(),
        }
    }

    fn read(&mut self, jobs: &[DeliveryJob], read_to: i64) {
        self.outstanding.extend(jobs.iter().map(|j| j.event.seq));
        self.read_to = self.read_to.max(read_to);
    }

    /// Every event up to this is recorded (or went to no webhook).
    fn cursor(&self) -> i64 {
        self.outstanding
            .first()
            .map_or(self.read_to, |first| first - 1)
    }
}

/// An event from the log not posted (its account's endpoint had all it may have): its row
/// is written pending, due now, and the claims take it from there.
fn unsent(job: &DeliveryJob) -> AttemptOutcome {
    let now = Timestamp::now();
    AttemptOutcome {
        delivery_id: None,
        event_seq: job.event.seq,
        created_at: job.created_at,
        account_id: job.event.account_id.clone(),
        target: job.target,
        attempt: 0,
        at: now,
        latency: Duration::ZERO,
        response_status: None,
        error: None,
        next: NextStep::RetryAt(now),
    }
}

pub(super) struct Dispatcher {
    store: Store,
    settings: WebhookSettings,
    metrics: Metrics,
    client: reqwest::Client,
    retry: RetryPolicy,
    /// Events and finished deliveries are kept this long.
    retention: Duration,
    /// Opens the keys that sign Twilio-format status callbacks (None: no credentials.key).
    sealing: Option<SealingKey>,
}

/// How often old events and finished deliveries are purged.
const PURGE_EVERY: Duration = Duration::from_secs(600);

/// The most of a receiver's answer read to keep its connection (see [`drain`]).
const DRAIN_LIMIT: usize = 64 * 1024;

impl Dispatcher {
    /// # Errors
    /// The HTTP client cannot be built.
    pub(super) fn new(store: Store, settings: &Settings, metrics: Metrics) -> anyhow::Result<Self> {
        let retention = Duration::from_secs(settings.events.retention_hours.saturating_mul(3600));
        let sealing = SealingKey::from_config(&settings.credentials.key)?;
        let settings = settings.webhooks.clone();
        let mut client = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.timeout_ms))
            .user_agent(concat!("Herald-Webhooks/", env!("CARGO_PKG_VERSION")))
            // A redirect could lead anywhere, a private address included: not followed, and
            // counted as a failed attempt.
            .redirect(reqwest::redirect::Policy::none())
            // As many as a fast endpoint may have in flight, so none is closed after a burst
            // only to be opened again for the next.
            .pool_max_idle_per_host(
                settings
                    .per_account_in_flight
                    .max(1)
                    .saturating_mul(FAST_FACTOR),
            );
        if !settings.allow_private_targets {
            client = client.dns_resolver(Arc::new(target::PublicOnly));
        }
        let retry = RetryPolicy::new(
            u32::MAX,
            Duration::from_millis(settings.backoff_initial_ms),
            Duration::from_millis(settings.backoff_max_ms),
            settings.backoff_jitter,
        );
        Ok(Self {
            store,
            client: client.build()?,
            settings,
            metrics,
            retry,
            retention,
            sealing,
        })
    }

    /// A claim outlives the longest a claimed delivery can take: waiting behind the rest of
    /// its account's share (`QUEUED_ROUNDS` rounds of posts at most), then its own post.
    fn lease(&self) -> Duration {
        let timeout = Duration::from_millis(self.settings.timeout_ms);
        timeout.saturating_mul(QUEUED_ROUNDS + 1) + Duration::from_secs(5)
    }

    /// Runs [`Self::run_until`] on a runtime of its own, on threads of its own (as many as
    /// the machine has cores), and answers what waits for it to end.
    ///
    /// Why: at thousands of events a second the posts are thousands of tasks, and on the
    /// runtime the API shares they queue ahead of its requests and of the writer's task
    /// (tokio has no priorities), so every send waited behind them. Here the kernel shares
    /// the cores between the two runtimes instead (BENCHMARKS.md, "The webhook dispatcher on
    /// a runtime of its own"). Only for a store whose connections are not bound to the
    /// runtime that opened them ([`Store::bound_to_runtime`]).
    ///
    /// # Errors
    /// The thread cannot be started. A runtime that cannot be built is reported by the
    /// future answered, when it ends.
    pub(super) fn run_on_own_runtime(
        self,
        shutdown: CancellationToken,
    ) -> anyhow::Result<impl Future<Output = anyhow::Result<()>> + Send + 'static> {
        // Stops the dispatcher if what waits for it is dropped (its workers aborted) without
        // `shutdown` being cancelled: nothing else would end the thread.
        let stop = shutdown.child_token();
        let guard = stop.clone().drop_guard();
        let (ended_tx, ended) = tokio::sync::oneshot::channel();
        // The runtime is built and dropped on the thread: dropped here, in an async context,
        // it would panic.
        std::thread::Builder::new()
            .name("webhooks".into())
            .spawn(move || {
                let result = tokio::runtime::Builder::new_multi_thread()
                    .thread_name("webhooks")
                    .enable_all()
                    .build()
                    .map_err(anyhow::Error::from)
                    .and_then(|runtime| runtime.block_on(self.run_until(stop)));
                let _ = ended_tx.send(result);
            })?;
        Ok(async move {
            let _guard = guard;
            ended
                .await
                .map_err(|_| anyhow::anyhow!("the webhook dispatcher's thread panicked"))?
        })
    }

    /// Runs until `shutdown`; posts in flight then get one timeout to finish and be recorded.
    ///
    /// # Errors
    /// Never: database errors are logged and retried.
    pub(super) async fn run_until(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let this = Arc::new(self);
        let lanes = Arc::new(Mutex::new(Lanes::new(
            this.settings.per_account_in_flight,
            this.settings.in_flight,
        )));
        let (done_tx, done_rx) = mpsc::unbounded_channel::<AttemptOutcome>();
        // Rung as posts are answered, so claiming goes on without waiting for the next poll.
        let freed = Arc::new(Notify::new());
        let mut fresh: Option<Arc<Mutex<FreshEvents>>> = None;
        let mut recorder = None;
        let mut done_rx = Some(done_rx);
        let mut poll = IdlePoll::new(Duration::from_millis(this.settings.poll_interval_ms.max(1)));
        let mut purged = Instant::now();
        let mut read_at = Instant::now();
        let mut backlog = false;
        loop {
            tokio::select! {
                () = tokio::time::sleep(poll.wait()) => {}
                () = freed.notified() => {}
                () = shutdown.cancelled() => break,
            }
            // Recording starts once it is known where the log's reading resumes: its first
            // write may move the cursor.
            if recorder.is_none() {
                match this.store.webhook_cursor().await {
                    Ok(cursor) => {
                        fresh = cursor.map(|c| Arc::new(Mutex::new(FreshEvents::at(c))));
                        recorder = done_rx
                            .take()
                            .map(|rx| tokio::spawn(Arc::clone(&this).record(rx, fresh.clone())));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not read the webhooks' cursor");
                        continue;
                    }
                }
            }
            if purged.elapsed() >= PURGE_EVERY {
                purged = Instant::now();
                if let Some(fresh) = &fresh {
                    // The cursor moves with recorded outcomes; with none (no account has a
                    // webhook) it is moved here, or it would keep old events from the purge.
                    let cursor = lock(fresh).cursor();
                    if let Err(e) = this.store.move_webhook_cursor(cursor).await {
                        tracing::warn!(error = %e, "could not move the webhooks' cursor");
                    }
                }
                if let Err(e) = this.store.purge_events(this.retention).await {
                    tracing::warn!(error = %e, "could not purge old events");
                }
            }
            // Takes work while there is work and room: a full read or claim means more may
            // be waiting.
            let mut claim_more = false;
            loop {
                let (room, busy) = lock(&lanes).room();
                if room == 0 || shutdown.is_cancelled() {
                    break;
                }
                let mut more = false;
                // Whether this round looked for work on the poll's clock, and found some: the
                // log's read where it is read (it runs on that clock; a look for due rows runs
                // at every answered post too), else the look for due rows.
                let (mut looked, mut found) = (false, false);
                // The log is read each poll, or sooner while it holds more than the last read
                // took and a good share of the room is free: each answered post frees one
                // place, and a read per post would cost more than the posts.
                let read_now =
                    read_at.elapsed() >= poll.wait() || (backlog && room >= FRESH_READ_MIN);
                if let Some(fresh) = fresh.as_ref().filter(|_| read_now) {
                    let after = lock(fresh).read_to;
                    read_at = Instant::now();
                    match this.store.fresh_webhook_events(after, room).await {
                        Ok((jobs, read_to)) => {
                            looked = true;
                            found |= !jobs.is_empty();
                            backlog = jobs.len() >= room;
                            more = backlog;
                            lock(fresh).read(&jobs, read_to);
                            for job in jobs {
                                if busy.iter().any(|b| b == job.event.account_id.as_str()) {
                                    // Its endpoint has all it may have: queued as a row.
                                    let _ = done_tx.send(unsent(&job));
                                } else {
                                    this.spawn_post(job, &lanes, &done_tx, &freed);
                                }
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "could not read events for webhooks");
                        }
                    }
                }
                let (room, busy) = lock(&lanes).room();
                if room > 0 {
                    match if claim_more {
                        Ok(true)
                    } else {
                        this.store.webhook_work_due(Timestamp::now()).await
                    } {
                        Ok(true) => {
                            looked |= fresh.is_none();
                            found = true;
                            match this
                                .store
                                .claim_webhook_deliveries(room, this.lease(), busy)
                                .await
                            {
                                Ok(jobs) => {
                                    claim_more = jobs.len() >= room;
                                    more |= claim_more;
                                    for job in jobs {
                                        this.spawn_post(job, &lanes, &done_tx, &freed);
                                    }
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "could not claim webhook deliveries");
                                }
                            }
                        }
                        Ok(false) => {
                            looked |= fresh.is_none();
                            claim_more = false;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "could not look for due webhook deliveries");
                        }
                    }
                }
                if looked {
                    poll.found(found);
                }
                if !more {
                    break;
                }
            }
        }
        drop(done_tx);
        let grace = Duration::from_millis(this.settings.timeout_ms) + Duration::from_secs(1);
        if let Some(recorder) = recorder
            && tokio::time::timeout(grace, recorder).await.is_err()
        {
            // Unrecorded posts are made again once their lease ends, or when the log is
            // read again from the cursor.
            tracing::warn!("webhook posts still in flight at shutdown");
        }
        Ok(())
    }

    /// Posts `job` once its account has a free slot, and hands the outcome to the recorder.
    fn spawn_post(
        self: &Arc<Self>,
        job: DeliveryJob,
        lanes: &Arc<Mutex<Lanes>>,
        done: &mpsc::UnboundedSender<AttemptOutcome>,
        freed: &Arc<Notify>,
    ) {
        let slots = lock(lanes).claimed(&job.event.account_id);
        let this = Arc::clone(self);
        let done = done.clone();
        let lanes = Arc::clone(lanes);
        let freed = Arc::clone(freed);
        tokio::spawn(async move {
            // Closed never: the semaphore lives as long as its lane.
            let permit = slots.acquire_owned().await;
            let account = job.event.account_id.clone();
            let outcome = this.post(job).await;
            drop(permit);
            // Answered: its place is free (it stays claimed until recorded, so nobody posts
            // it again meanwhile).
            lock(&lanes).answered(&account, outcome.latency);
            freed.notify_one();
            let _ = done.send(outcome);
        });
    }

    /// Records outcomes in batches as they come. Outcomes of events read from the log are
    /// written until they are (the cursor cannot pass them before), others once: theirs are
    /// posted again after their lease.
    async fn record(
        self: Arc<Self>,
        mut done: mpsc::UnboundedReceiver<AttemptOutcome>,
        fresh: Option<Arc<Mutex<FreshEvents>>>,
    ) {
        let disable_after = Duration::from_secs(self.settings.disable_after_seconds);
        let mut batch = Vec::with_capacity(RECORD_BATCH);
        while done.recv_many(&mut batch, RECORD_BATCH).await > 0 {
            let outcomes = std::mem::take(&mut batch);
            for o in outcomes.iter().filter(|o| o.attempt > 0) {
                self.metrics
                    .webhook_attempt(o.target.as_str(), result_label(o.next));
            }
            let cursor = fresh.as_ref().map(|f| {
                let mut f = lock(f);
                for o in outcomes.iter().filter(|o| o.delivery_id.is_none()) {
                    f.outstanding.remove(&o.event_seq);
                }
                f.cursor()
            });
            let from_log = outcomes.iter().any(|o| o.delivery_id.is_none());
            loop {
                match self
                    .store
                    .record_webhook_attempts(outcomes.clone(), cursor, disable_after)
                    .await
                {
                    Ok(disabled) => {
                        for account in disabled {
                            tracing::warn!(
                                account = %account,
                                "an account's webhook failed for too long and was disabled"
                            );
                        }
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not record webhook attempts");
                        // Claimed deliveries stay claimed until their lease ends, then are
                        // posted again; events from the log keep the cursor behind them.
                        if !from_log {
                            break;
                        }
                        tokio::time::sleep(RECORD_RETRY).await;
                    }
                }
            }
        }
    }

    /// Makes one attempt and decides what follows.
    async fn post(&self, job: DeliveryJob) -> AttemptOutcome {
        let started = Instant::now();
        let at = Timestamp::now();
        let (response_status, error, retry_after) = match self.attempt(&job).await {
            Attempted::Answered {
                status,
                retry_after,
            } => (Some(status), None, retry_after),
            Attempted::Failed(e) => (None, Some(e), None),
            Attempted::Refused(e) => {
                return self.outcome(&job, at, started, None, Some(e), NextStep::GiveUp);
            }
        };
        let next = if response_status.is_some_and(|s| (200..300).contains(&s)) {
            NextStep::Delivered
        } else {
            let retry_for = Duration::from_secs(self.settings.retry_for_seconds);
            let attempt = u32::try_from(job.attempt).unwrap_or(u32::MAX);
            let next = at.plus(self.retry.delay(attempt, retry_after));
            // Past the retry window (counted from the event): given up, not tried again.
            if next > job.created_at.plus(retry_for) {
                NextStep::GiveUp
            } else {
                NextStep::RetryAt(next)
            }
        };
        self.outcome(&job, at, started, response_status, error, next)
    }

    fn outcome(
        &self,
        job: &DeliveryJob,
        at: Timestamp,
        started: Instant,
        response_status: Option<u16>,
        error: Option<String>,
        next: NextStep,
    ) -> AttemptOutcome {
        AttemptOutcome {
            delivery_id: job.delivery_id,
            event_seq: job.event.seq,
            created_at: job.created_at,
            account_id: job.event.account_id.clone(),
            target: job.target,
            attempt: job.attempt,
            at,
            latency: started.elapsed(),
            response_status,
            error,
            next,
        }
    }

    async fn attempt(&self, job: &DeliveryJob) -> Attempted {
        let Some(url) = job.url.as_deref() else {
            return Attempted::Refused("the endpoint was removed".to_owned());
        };
        let parsed = match target::checked(url, self.settings.allow_private_targets) {
            Ok(parsed) => parsed,
            Err(why) => return Attempted::Refused(format!("the URL {why}")),
        };
        let request = match &job.twilio {
            Some(twilio) => self.twilio_callback(url, parsed, job, twilio),
            None => self.herald_event(parsed, job),
        };
        let request = match request {
            Ok(request) => request,
            Err(refused) => return refused,
        };
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                drain(response).await;
                Attempted::Answered {
                    status,
                    retry_after,
                }
            }
            // Without the URL: it may carry a customer's token in its query.
            Err(e) => Attempted::Failed(describe(e)),
        }
    }

    /// The event as Herald's JSON, signed with the account's webhook secret (SPEC §7).
    fn herald_event(
        &self,
        url: reqwest::Url,
        job: &DeliveryJob,
    ) -> Result<reqwest::RequestBuilder, Attempted> {
        let body = serde_json::to_vec(&events::payload(&job.event))
            .map_err(|e| Attempted::Refused(format!("the event could not be encoded: {e}")))?;
        let timestamp = Timestamp::now().millis() / 1000;
        Ok(self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Herald-Event-Id", events::event_id(job.event.seq))
            .header("X-Herald-Event", job.event.kind.as_str())
            .header("X-Herald-Timestamp", timestamp.to_string())
            .header(
                "X-Herald-Signature",
                events::signature(&job.secret, timestamp, &body),
            )
            .body(body))
    }

    /// A status in Twilio's form-encoded format, signed as Twilio signs
    /// (`X-Twilio-Signature`) with the API key the message was sent with. The signature is
    /// over the URL as the message gave it; the request goes to `parsed`, the same URL.
    fn twilio_callback(
        &self,
        url: &str,
        parsed: reqwest::Url,
        job: &DeliveryJob,
        twilio: &TwilioCallback,
    ) -> Result<reqwest::RequestBuilder, Attempted> {
        let Some(sealing) = &self.sealing else {
            return Err(Attempted::Refused(
                "credentials.key is no longer set: the callback cannot be signed".to_owned(),
            ));
        };
        let token =
            twilio_format::open_signer(sealing, &twilio.sealed_signer, &job.event.message_id)
                .map_err(|e| Attempted::Refused(format!("the callback cannot be signed: {e}")))?;
        let fields = twilio_format::callback_fields(&job.event, twilio.from.as_deref());
        let signature = crate::providers::twilio::signature::sign(&token, url, &fields);
        let body = serde_urlencoded::to_string(&fields)
            .map_err(|e| Attempted::Refused(format!("the callback could not be encoded: {e}")))?;
        Ok(self
            .client
            .post(parsed)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header("X-Twilio-Signature", signature)
            .body(body))
    }
}

enum Attempted {
    Answered {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// No answer: refused connection, timeout, TLS failure.
    Failed(String),
    /// Not tried, and trying again would not help.
    Refused(String),
}

/// Reads what the receiver answered, up to `DRAIN_LIMIT` bytes, and drops it: a response
/// dropped unread closes its connection, so every post to an endpoint that answers with a
/// body (`{"ok":true}`) would open a new one, TLS handshake included. A longer answer, or one
/// that fails midway, costs just its connection.
async fn drain(mut response: reqwest::Response) {
    let mut read = 0;
    while read <= DRAIN_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => read += chunk.len(),
            Ok(None) | Err(_) => break,
        }
    }
}

fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        format!("could not connect: {e}")
    } else {
        e.to_string()
    }
}

fn result_label(next: NextStep) -> &'static str {
    match next {
        NextStep::Delivered => "delivered",
        NextStep::RetryAt(_) => "retry",
        NextStep::GiveUp => "gave_up",
    }
}

fn lock<T>(o: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    o.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
