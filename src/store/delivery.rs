//! The delivery side of the queue, as rules over whatever database holds it: claiming due
//! messages by priority lane, recording what the provider said, and applying receipts.
//! Every status change is a conditional UPDATE that names the allowed predecessors
//! (domain::status), so a move the table forbids simply matches no row. Each dialect
//! supplies the statements ([`DeliverySql`], one query file each); the decisions are made
//! here once.

use crate::domain::{
    AccountId, Channel, MessageId, MessageStatus, Money, Priority, Timestamp, WhatsappTemplate,
};
use crate::store::{
    ClaimToken, ClaimedMessage, DeliveryOutcome, DeliveryReport, HELD, StatusUpdate, UpdateResult,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

/// Which priority lanes have a claimable message, and whether any account has an opt-out.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct DueLanes {
    pub urgent: bool,
    pub high: bool,
    pub normal: bool,
    pub low: bool,
    pub any_opt_out: bool,
}

/// A claimed row as the claim statement returns it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ClaimRow {
    message_id: String,
    account_id: String,
    campaign_id: Option<String>,
    channel: String,
    phone_number: String,
    sender_id: Option<String>,
    body: String,
    attachment_url: Option<String>,
    priority: i64,
    attempts: i64,
    expires_at: i64,
    cost: i64,
    claim_seq: i64,
    provider: Option<String>,
    in_doubt_since: Option<i64>,
    whatsapp_template: Option<String>,
    /// The claim's time, never before the message's last change.
    updated_at: i64,
    /// Whether the claim statement wrote the `sending` history itself (PostgreSQL's does for
    /// messages [`screen`] could not take out; SQLite's leaves it all to [`finish_claim`]).
    #[sqlx(default)]
    recorded: bool,
}

/// A message marked sent: whose it is, what it cost, and when it changed.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SentRow {
    pub message_id: String,
    pub account_id: String,
    pub cost: i64,
    pub updated_at: i64,
}

/// A message a receipt moved.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ReceiptMove {
    pub message_id: String,
    pub account_id: String,
    pub provider_message_id: String,
    pub updated_at: i64,
}

impl SentRow {
    /// Its history entry, as [`insert_events`] takes it.
    pub(crate) fn history_entry(&self) -> (&str, &str, i64) {
        (&self.message_id, &self.account_id, self.updated_at)
    }
}

impl ReceiptMove {
    /// Its history entry, as [`insert_events`] takes it.
    pub(crate) fn history_entry(&self) -> (&str, &str, i64) {
        (&self.message_id, &self.account_id, self.updated_at)
    }
}

/// A message ended unsent: the reservation to release.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct UnsentRow {
    pub account_id: String,
    pub cost: i64,
    pub updated_at: i64,
}

/// A receipt held until the send it reports on was recorded.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct HeldReceipt {
    pub provider_message_id: String,
    pub status: String,
    pub at: i64,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
}

/// A message going back to the queue to be tried again.
pub(crate) struct Retry {
    pub due_at: Timestamp,
    pub error_code: String,
    pub error_message: String,
    pub bound_to: Option<&'static str>,
    pub in_doubt_since: Option<Timestamp>,
}

/// The statements of the delivery side, one per query file, run inside the caller's
/// transaction (PostgreSQL's claims excepted: see [`claim_lanes`]). JSON arrays carry a
/// batch in one parameter on every dialect.
pub(crate) trait DeliverySql: Send {
    fn due_lanes(&mut self, now: i64) -> impl Future<Output = sqlx::Result<DueLanes>> + Send;
    /// Claims up to `quota` messages of one lane. It may write their `sending` history too,
    /// for messages [`screen`] could not take out of the claim ([`ClaimRow::recorded`]).
    fn claim_lane(
        &mut self,
        lease_until: i64,
        instance_id: &str,
        now: i64,
        rank: i64,
        quota: i64,
    ) -> impl Future<Output = sqlx::Result<Vec<ClaimRow>>> + Send;
    /// Adds `status` to the history of the messages in `events` (made by [`status_events`])
    /// and writes a status event for each history row added; a status already in a
    /// message's history keeps its first time and gets no second event.
    fn insert_status_events(
        &mut self,
        events: String,
        status: &'static str,
    ) -> impl Future<Output = sqlx::Result<()>> + Send;
    fn claimed_opted_out(
        &mut self,
        ids: String,
    ) -> impl Future<Output = sqlx::Result<Vec<String>>> + Send;
    /// (campaign_id, status) of each campaign in the JSON array `ids`.
    fn campaign_states(
        &mut self,
        ids: String,
    ) -> impl Future<Output = sqlx::Result<Vec<(String, String)>>> + Send;
    fn park_claim(
        &mut self,
        id: &str,
        held: i64,
        now: i64,
    ) -> impl Future<Output = sqlx::Result<()>> + Send;
    fn schedule_retry(
        &mut self,
        id: &str,
        claim: ClaimToken,
        retry: Retry,
        now: i64,
    ) -> impl Future<Output = sqlx::Result<()>> + Send;
    fn mark_unsent(
        &mut self,
        id: &str,
        status: &'static str,
        error_code: String,
        error_message: String,
        at: i64,
        claim: ClaimToken,
    ) -> impl Future<Output = sqlx::Result<Option<UnsentRow>>> + Send;
    fn hold_claim(
        &mut self,
        id: &str,
        held: i64,
        now: i64,
        claim: ClaimToken,
    ) -> impl Future<Output = sqlx::Result<()>> + Send;
    fn release_claim(
        &mut self,
        id: &str,
        now: i64,
        claim: ClaimToken,
    ) -> impl Future<Output = sqlx::Result<()>> + Send;
    /// Marks messages sent, adds `sent` to their history with their status events, and
    /// settles each account's ([`settlements`]): the reservation becomes a debit, the ledger
    /// gets its charge line and `day`'s sent count grows. `sent`: a JSON array of {id, claim,
    /// provider, ref, at}. PostgreSQL does it all in one statement, which needs no
    /// transaction around it. Where other processes write too, it holds the receipt
    /// hand-over guard shared ([`DeliverySql::guard_receipt_hand_over`]) from before it
    /// marks any message to its end, so the held receipts taken after it are complete.
    fn mark_sent(
        &mut self,
        sent: String,
        now: i64,
        day: &str,
    ) -> impl Future<Output = sqlx::Result<()>> + Send;
    fn release_reservation(
        &mut self,
        account_id: &str,
        released: i64,
        now: i64,
    ) -> impl Future<Output = sqlx::Result<()>> + Send;
    fn take_pending_receipts(
        &mut self,
        provider: &str,
        references: String,
    ) -> impl Future<Output = sqlx::Result<Vec<HeldReceipt>>> + Send;
    /// Moves the messages the receipts in `payload` (JSON {ref, at, code, message}) name to
    /// `status`, from one of the `allowed` (JSON array) statuses, and adds `status` to their
    /// history with their status events (one statement on PostgreSQL); returns the moved ones.
    fn apply_status_update(
        &mut self,
        provider: &str,
        status: &'static str,
        payload: String,
        allowed: String,
    ) -> impl Future<Output = sqlx::Result<Vec<ReceiptMove>>> + Send;
    fn find_by_provider_refs(
        &mut self,
        provider: &str,
        references: String,
    ) -> impl Future<Output = sqlx::Result<Vec<String>>> + Send;
    /// Holds the receipt hand-over guard exclusive, to hold receipts that found no message,
    /// against [`DeliverySql::mark_sent`]'s shared hold while sends are recorded and their
    /// held receipts taken, where other processes write at the same time: without it, a
    /// receipt that found no message could be held just after the send it reports on was
    /// recorded and its held receipts taken, and wait forever. Answers whether the caller
    /// must look again for the messages it missed (they may have been committed while it
    /// waited); a database with one writer has no such race and answers `false` without a
    /// statement.
    fn guard_receipt_hand_over(&mut self) -> impl Future<Output = sqlx::Result<bool>> + Send;
    /// `held`: a JSON array of {ref, status, at, code, message}.
    fn hold_pending_receipts(
        &mut self,
        provider: &str,
        held: String,
        now: i64,
    ) -> impl Future<Output = sqlx::Result<()>> + Send;
}

/// Share of a claim each lower lane gets first when it has work, so a flood of urgent
/// traffic slows `low` down but never stops it (SPEC §4: no starvation).
fn floor(priority: Priority, batch: usize) -> usize {
    match priority {
        Priority::Urgent => 0,
        Priority::High => batch / 4,
        Priority::Normal => batch / 8,
        Priority::Low => (batch / 16).max(1),
    }
}

/// How many to ask of `priority`'s lane: its floor in the first pass of a fair claim, then
/// everything left, highest lane first.
fn lane_quota(pass: usize, priority: Priority, remaining: usize, batch: usize) -> usize {
    if pass == 0 {
        floor(priority, batch).min(remaining)
    } else {
        remaining
    }
}

/// Claims up to `limit` due messages by lane ([`claim_lanes`]), then screens them and
/// records their `sending` ([`finish_claim`]), in the caller's transaction.
pub(crate) async fn claim_due(
    conn: &mut impl DeliverySql,
    instance_id: &str,
    limit: usize,
    lease: Duration,
    fair: bool,
) -> sqlx::Result<Vec<ClaimedMessage>> {
    let claim = claim_lanes(conn, instance_id, limit, lease, fair).await?;
    finish_claim(conn, claim).await
}

/// A claim whose messages are leased to the worker, before [`finish_claim`].
#[derive(Clone)]
pub(crate) struct Claim {
    messages: Vec<ClaimedMessage>,
    /// Messages whose `sending` the claim statement recorded (none of them can be screened out).
    recorded: HashSet<MessageId>,
    now: Timestamp,
    any_opt_out: bool,
}

impl Claim {
    /// Whether the claim statements did all there was to do: every message recorded.
    pub(crate) fn is_finished(&self) -> bool {
        self.messages.len() == self.recorded.len()
    }

    pub(crate) fn into_messages(self) -> Vec<ClaimedMessage> {
        self.messages
    }
}

/// Claims up to `limit` due messages by lane, highest first, fair claims giving lower lanes
/// their floors first. Each lane's claim is one statement, so this needs no transaction of
/// its own: every later write about these messages is fenced by their claim tokens.
pub(crate) async fn claim_lanes(
    conn: &mut impl DeliverySql,
    instance_id: &str,
    limit: usize,
    lease: Duration,
    fair: bool,
) -> sqlx::Result<Claim> {
    let now = Timestamp::now();
    let lease_until = now.plus(lease);
    let mut claimed = Vec::with_capacity(limit);
    let mut recorded = HashSet::new();
    // One probe tells which lanes have work; asking an empty lane costs a statement (a round
    // trip) for nothing, and most traffic sits in one lane.
    let due = conn.due_lanes(now.millis()).await?;
    let mut exhausted: Vec<Priority> = [
        (Priority::Urgent, due.urgent),
        (Priority::High, due.high),
        (Priority::Normal, due.normal),
        (Priority::Low, due.low),
    ]
    .into_iter()
    .filter(|(_, has_work)| !has_work)
    .map(|(priority, _)| priority)
    .collect();
    if exhausted.len() < Priority::DESCENDING.len() {
        // A fair claim gives lower lanes their floors first; others follow priority strictly
        // (small top-ups, where a floor of one would be the whole claim, taken from urgent).
        // With a single lane due there is nothing to share.
        let single_lane = exhausted.len() + 1 == Priority::DESCENDING.len();
        let first_pass = if fair && !single_lane { 0 } else { 1 };
        for pass in first_pass..2 {
            for priority in Priority::DESCENDING {
                let remaining = limit.saturating_sub(claimed.len());
                let quota = lane_quota(pass, priority, remaining, limit);
                if quota == 0 || exhausted.contains(&priority) {
                    continue;
                }
                let rows = conn
                    .claim_lane(
                        lease_until.millis(),
                        instance_id,
                        now.millis(),
                        priority.rank(),
                        i64::try_from(quota).unwrap_or(i64::MAX),
                    )
                    .await?;
                if rows.len() < quota {
                    exhausted.push(priority);
                }
                for row in rows {
                    let is_recorded = row.recorded;
                    let message = claimed_message(row)?;
                    if is_recorded {
                        recorded.insert(message.message_id.clone());
                    }
                    claimed.push(message);
                }
            }
        }
    }
    Ok(Claim {
        messages: claimed,
        recorded,
        now,
        any_opt_out: due.any_opt_out,
    })
}

/// Screens a claim and records `sending` for the messages that stay and the claim statement
/// did not record; answers the messages to deliver.
pub(crate) async fn finish_claim(
    conn: &mut impl DeliverySql,
    claim: Claim,
) -> sqlx::Result<Vec<ClaimedMessage>> {
    if claim.is_finished() {
        return Ok(claim.messages);
    }
    let Claim {
        messages,
        recorded,
        now,
        any_opt_out,
    } = claim;
    let claimed = screen(conn, messages, now, any_opt_out).await?;
    let unrecorded: Vec<(&str, &str, i64)> = claimed
        .iter()
        .filter(|m| !recorded.contains(&m.message_id))
        .map(|m| {
            let at = m.claimed_at.millis();
            (m.message_id.as_str(), m.account_id.as_str(), at)
        })
        .collect();
    if !unrecorded.is_empty() {
        conn.insert_status_events(status_events(unrecorded), MessageStatus::Sending.as_str())
            .await?;
    }
    Ok(claimed)
}

/// A batch as one JSON parameter (strings and numbers only: encoding cannot fail).
pub(crate) fn json_array<T: serde::Serialize>(items: &[T]) -> String {
    serde_json::to_string(items).unwrap_or_default()
}

/// History rows as [`DeliverySql::insert_status_events`] takes them: a JSON array of
/// [message_id, account_id, at], each message once (its first entry, as the history keeps a
/// status's first time; a second entry would otherwise get an event of its own).
pub(crate) fn status_events<'a>(rows: impl IntoIterator<Item = (&'a str, &'a str, i64)>) -> String {
    let mut seen = HashSet::new();
    let rows: Vec<(&str, &str, i64)> = rows
        .into_iter()
        .filter(|(id, _, _)| seen.insert(*id))
        .collect();
    json_array(&rows)
}

/// Takes out of a fresh claim, before its `sending` is recorded, what must not be sent: messages
/// to numbers that opted out after they were accepted (failed, `recipient_opted_out`), and
/// messages of paused (held again) or canceled campaigns.
/// `any_opt_out`: whether any account has any opt-out (when none has, no lookup is needed).
async fn screen(
    conn: &mut impl DeliverySql,
    claimed: Vec<ClaimedMessage>,
    now: Timestamp,
    any_opt_out: bool,
) -> sqlx::Result<Vec<ClaimedMessage>> {
    if claimed.is_empty() {
        return Ok(claimed);
    }
    let mut unsent = Vec::new();
    let mut opted: HashSet<String> = HashSet::new();
    if any_opt_out {
        let ids: Vec<&str> = claimed.iter().map(|m| m.message_id.as_str()).collect();
        opted = conn
            .claimed_opted_out(json_array(&ids))
            .await?
            .into_iter()
            .collect();
    }
    let campaigns: HashSet<&str> = claimed
        .iter()
        .filter_map(|m| m.campaign_id.as_deref())
        .filter(|id| id.starts_with("cmp_"))
        .collect();
    let mut states: HashMap<String, String> = HashMap::new();
    if !campaigns.is_empty() {
        let ids: Vec<&str> = campaigns.into_iter().collect();
        states = conn
            .campaign_states(json_array(&ids))
            .await?
            .into_iter()
            .collect();
    }
    if opted.is_empty() && states.values().all(|s| s != "paused" && s != "canceled") {
        return Ok(claimed);
    }
    let mut keep = Vec::with_capacity(claimed.len());
    for mut m in claimed {
        let campaign = m
            .campaign_id
            .as_deref()
            .and_then(|id| states.get(id))
            .map(String::as_str);
        // A message in doubt may have been sent already: it must not be ended unsent here.
        // The worker asks the provider first, then applies the opt-out or the cancellation
        // (a pause only parks it, which ends nothing).
        if m.in_doubt_since.is_some() && campaign != Some("paused") {
            m.opted_out = opted.contains(m.message_id.as_str());
            keep.push(m);
            continue;
        }
        let (status, code, message) = if opted.contains(m.message_id.as_str()) {
            (
                MessageStatus::Failed,
                "recipient_opted_out",
                "the recipient opted out after the message was accepted",
            )
        } else if campaign == Some("canceled") {
            (
                MessageStatus::Canceled,
                "campaign_canceled",
                "the campaign was canceled before this message was sent",
            )
        } else if campaign == Some("paused") {
            conn.park_claim(m.message_id.as_str(), HELD, now.millis())
                .await?;
            continue;
        } else {
            keep.push(m);
            continue;
        };
        let outcome = DeliveryOutcome::Unsent {
            status,
            error_code: code.to_owned(),
            error_message: message.to_owned(),
            at: now,
        };
        unsent.push(DeliveryReport::of(&m, outcome));
    }
    record_outcomes(conn, unsent).await?;
    Ok(keep)
}

/// A stored template (JSON written by the accept path from a parsed one).
fn stored_template(json: Option<String>) -> sqlx::Result<Option<WhatsappTemplate>> {
    json.map(|j| serde_json::from_str(&j).map_err(|e| sqlx::Error::Decode(Box::new(e))))
        .transpose()
}

fn claimed_message(row: ClaimRow) -> sqlx::Result<ClaimedMessage> {
    Ok(ClaimedMessage {
        message_id: MessageId::from_stored(row.message_id),
        account_id: AccountId::from_stored(row.account_id),
        channel: Channel::parse(&row.channel).unwrap_or(Channel::Sms),
        phone_number: row.phone_number,
        sender_id: row.sender_id,
        body: row.body,
        attachment_url: row.attachment_url,
        whatsapp_template: stored_template(row.whatsapp_template)?,
        priority: Priority::from_rank(row.priority).unwrap_or(Priority::Normal),
        campaign_id: row.campaign_id,
        attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
        expires_at: Timestamp::from_millis(row.expires_at),
        cost: Money::from_units(row.cost),
        claim: ClaimToken::from_stored(row.claim_seq),
        bound_to: row.provider,
        in_doubt_since: row.in_doubt_since.map(Timestamp::from_millis),
        claimed_at: Timestamp::from_millis(row.updated_at),
        opted_out: false,
    })
}

/// What one account is charged for its messages marked sent: their cost, and how many.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Charge {
    pub charged: i64,
    pub messages: i64,
}

/// Each account's charge for `rows`, in account id order: the order accounts are locked in,
/// so concurrent batches (other processes, on a shared database) cannot deadlock on them.
pub(crate) fn settlements(rows: &[SentRow]) -> BTreeMap<&str, Charge> {
    let mut accounts: BTreeMap<&str, Charge> = BTreeMap::new();
    for row in rows {
        let charge = accounts.entry(row.account_id.as_str()).or_default();
        charge.charged += row.cost;
        charge.messages += 1;
    }
    accounts
}

/// The sends of a batch of outcomes, as [`DeliverySql::mark_sent`] and
/// [`apply_held_receipts`] take them.
#[derive(Clone, Default)]
pub(crate) struct Sends {
    /// {id, claim, provider, ref, at} per send.
    reports: Vec<serde_json::Value>,
    providers: Vec<&'static str>,
    references: Vec<String>,
}

impl Sends {
    pub(crate) fn is_empty(&self) -> bool {
        self.reports.is_empty()
    }

    /// The JSON arrays of the providers and the references of these sends.
    pub(crate) fn refs_json(&self) -> (String, String) {
        (json_array(&self.providers), json_array(&self.references))
    }
}

/// Splits a batch of outcomes into its sends and the rest.
pub(crate) fn split_sends(reports: Vec<DeliveryReport>) -> (Sends, Vec<DeliveryReport>) {
    let mut sends = Sends::default();
    let mut rest = Vec::new();
    for report in reports {
        match report.outcome {
            DeliveryOutcome::Sent {
                provider,
                provider_message_id,
                at,
            } => {
                if !sends.providers.contains(&provider) {
                    sends.providers.push(provider);
                }
                sends.reports.push(serde_json::json!({
                    "id": report.message_id.as_str(),
                    "claim": report.claim.value(),
                    "provider": provider,
                    "ref": provider_message_id,
                    "at": at.millis(),
                }));
                sends.references.push(provider_message_id);
            }
            _ => rest.push(report),
        }
    }
    (sends, rest)
}

/// Records a batch of outcomes, in the caller's transaction.
pub(crate) async fn record_outcomes(
    conn: &mut impl DeliverySql,
    reports: Vec<DeliveryReport>,
) -> sqlx::Result<()> {
    let (sends, rest) = split_sends(reports);
    record_other_outcomes(conn, rest).await?;
    record_sends(conn, &sends).await?;
    apply_held_receipts(conn, &sends).await
}

/// Marks `sends` sent and settles them ([`DeliverySql::mark_sent`]). A send whose claim
/// was lost (another worker took the message over) moves nothing and costs nothing.
pub(crate) async fn record_sends(conn: &mut impl DeliverySql, sends: &Sends) -> sqlx::Result<()> {
    if sends.is_empty() {
        return Ok(());
    }
    let now = Timestamp::now();
    conn.mark_sent(json_array(&sends.reports), now.millis(), &now.day())
        .await
}

/// Records outcomes other than sends: retries, failures (whose reservations are released,
/// accounts in id order), holds and releases.
async fn record_other_outcomes(
    conn: &mut impl DeliverySql,
    reports: Vec<DeliveryReport>,
) -> sqlx::Result<()> {
    let now = Timestamp::now();
    let mut released: BTreeMap<String, i64> = BTreeMap::new();
    for DeliveryReport {
        message_id,
        claim,
        outcome,
    } in reports
    {
        let id = message_id.as_str();
        match outcome {
            // Recorded by record_sends.
            DeliveryOutcome::Sent { .. } => {}
            DeliveryOutcome::Retry {
                due_at,
                error_code,
                error_message,
                bound_to,
                in_doubt_since,
            } => {
                let retry = Retry {
                    due_at,
                    error_code,
                    error_message,
                    bound_to,
                    in_doubt_since,
                };
                conn.schedule_retry(id, claim, retry, now.millis()).await?;
            }
            DeliveryOutcome::Unresolved {
                due_at,
                in_doubt_since,
                error_code,
                error_message,
            } => {
                // Not bound: the lookup did not say which provider has it.
                let retry = Retry {
                    due_at,
                    error_code,
                    error_message,
                    bound_to: None,
                    in_doubt_since: Some(in_doubt_since),
                };
                conn.schedule_retry(id, claim, retry, now.millis()).await?;
            }
            DeliveryOutcome::Unsent {
                status,
                error_code,
                error_message,
                at,
            } => {
                let row = conn
                    .mark_unsent(
                        id,
                        status.as_str(),
                        error_code,
                        error_message,
                        at.millis(),
                        claim,
                    )
                    .await?;
                if let Some(row) = row {
                    insert_events(
                        conn,
                        status.as_str(),
                        &[(id, row.account_id.as_str(), row.updated_at)],
                    )
                    .await?;
                    *released.entry(row.account_id).or_default() += row.cost;
                }
            }
            DeliveryOutcome::Held => {
                conn.hold_claim(id, HELD, now.millis(), claim).await?;
            }
            DeliveryOutcome::Released => {
                conn.release_claim(id, now.millis(), claim).await?;
            }
        }
    }
    for (account, amount) in released {
        if amount > 0 {
            conn.release_reservation(&account, amount, now.millis())
                .await?;
        }
    }
    Ok(())
}

/// Applies the receipts that overtook `sends` (held in `pending_receipt`), after
/// [`record_sends`] in a later statement. A provider id is unique per provider, so only the
/// providers of these sends are asked. Every send's reference is asked for, moved by
/// `record_sends` just now or not: run again after a failure, the sends are already
/// recorded, and their held receipts must still be found. (One whose claim was lost and
/// whose message is not sent is held again.)
pub(crate) async fn apply_held_receipts(
    conn: &mut impl DeliverySql,
    sends: &Sends,
) -> sqlx::Result<()> {
    if sends.is_empty() {
        return Ok(());
    }
    let references = json_array(&sends.references);
    for &provider in &sends.providers {
        let rows = conn
            .take_pending_receipts(provider, references.clone())
            .await?;
        let held: Vec<StatusUpdate> = rows
            .into_iter()
            .filter_map(|row| {
                // Only statuses a receipt can carry were ever held.
                let status = MessageStatus::parse(&row.status)?;
                Some(StatusUpdate {
                    provider,
                    provider_message_id: row.provider_message_id,
                    status,
                    at: Timestamp::from_millis(row.at),
                    error_code: row.error_code,
                    error_message: row.error_message,
                })
            })
            .collect();
        if !held.is_empty() {
            apply_status_updates(conn, held).await?;
        }
    }
    Ok(())
}

/// Adds `status` to the history of (message_id, account_id, at) `events`, with their events.
pub(crate) async fn insert_events(
    conn: &mut impl DeliverySql,
    status: &'static str,
    events: &[(&str, &str, i64)],
) -> sqlx::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    conn.insert_status_events(status_events(events.iter().copied()), status)
        .await
}

/// Applies `receipts` (JSON objects {ref, at, code, message}) of one provider and status to
/// the messages in one of `allowed`'s statuses, writes their history, and answers the
/// provider references that moved.
async fn apply_receipts(
    conn: &mut impl DeliverySql,
    provider: &str,
    status: MessageStatus,
    receipts: Vec<serde_json::Value>,
    allowed: &str,
) -> sqlx::Result<HashSet<String>> {
    let rows = conn
        .apply_status_update(
            provider,
            status.as_str(),
            serde_json::Value::Array(receipts).to_string(),
            allowed.to_owned(),
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| row.provider_message_id)
        .collect())
}

/// Which of the receipts `members` name a message this provider reference is known for.
async fn known_refs(
    conn: &mut impl DeliverySql,
    provider: &str,
    updates: &[StatusUpdate],
    members: &[usize],
) -> sqlx::Result<HashSet<String>> {
    if members.is_empty() {
        return Ok(HashSet::new());
    }
    let refs: Vec<&str> = members
        .iter()
        .filter_map(|i| updates.get(*i))
        .map(|u| u.provider_message_id.as_str())
        .collect();
    Ok(conn
        .find_by_provider_refs(provider, json_array(&refs))
        .await?
        .into_iter()
        .collect())
}

/// The receipts of `members` that `applied` does not name.
fn missed(members: &[usize], updates: &[StatusUpdate], applied: &HashSet<String>) -> Vec<usize> {
    members
        .iter()
        .copied()
        .filter(|i| {
            updates
                .get(*i)
                .is_some_and(|u| !applied.contains(&u.provider_message_id))
        })
        .collect()
}

/// A receipt as `apply_receipts` takes it.
fn receipt(u: &StatusUpdate) -> serde_json::Value {
    serde_json::json!({
        "ref": u.provider_message_id,
        "at": u.at.millis(),
        "code": u.error_code,
        "message": u.error_message,
    })
}

/// Receipts waiting for the hand-over guard: (provider, status, allowed predecessors,
/// receipts, looked at once already).
type Unknown = Vec<(&'static str, MessageStatus, String, Vec<usize>, bool)>;

/// Applies receipts; those whose message is not known yet are looked at again under the
/// hand-over guard and held durably if they still match nothing.
pub(crate) async fn apply_status_updates(
    conn: &mut impl DeliverySql,
    updates: Vec<StatusUpdate>,
) -> sqlx::Result<Vec<UpdateResult>> {
    let (mut results, unknown) = apply_known(conn, &updates).await?;
    if !unknown.is_empty() {
        hold_unknown(conn, &updates, unknown, &mut results).await?;
    }
    Ok(results)
}

/// Applies what it can of `updates` without the hand-over guard, and answers the indexes of
/// the rest: receipts whose message is not known by its reference yet, and the later
/// statuses that must wait with them. Their results are left `Held`; the caller passes
/// them to [`apply_status_updates`] later (a process whose own send is still being recorded
/// then finds it recorded, and needs no guard).
pub(crate) async fn apply_known_receipts(
    conn: &mut impl DeliverySql,
    updates: &[StatusUpdate],
) -> sqlx::Result<(Vec<UpdateResult>, Vec<usize>)> {
    let (results, unknown) = apply_known(conn, updates).await?;
    let mut waiting: Vec<usize> = unknown
        .into_iter()
        .flat_map(|(_, _, _, members, _)| members)
        .collect();
    waiting.sort_unstable();
    Ok((results, waiting))
}

async fn apply_known(
    conn: &mut impl DeliverySql,
    updates: &[StatusUpdate],
) -> sqlx::Result<(Vec<UpdateResult>, Unknown)> {
    let mut results = vec![UpdateResult::Held; updates.len()];
    // Lifecycle order, so a `delivered` and a `read` in the same batch both apply.
    let mut order: Vec<usize> = (0..updates.len()).collect();
    order.sort_by_key(|i| updates.get(*i).map(|u| (u.provider, u.status.order())));
    let mut groups: Vec<(&'static str, MessageStatus, Vec<usize>)> = Vec::new();
    for i in order {
        let Some(u) = updates.get(i) else { continue };
        match groups.last_mut() {
            Some((p, s, members)) if *p == u.provider && *s == u.status => members.push(i),
            _ => groups.push((u.provider, u.status, vec![i])),
        }
    }

    // First every group, without the hand-over guard: what applies, and what is stale (its
    // message is known by this reference, so its send is recorded: the receipt is simply
    // behind). Only receipts whose message is not known yet need the guard, which on
    // PostgreSQL excludes every worker's recording of sends while it is held: taken once,
    // at the end, and held only over what those receipts need.
    let mut unknown: Unknown = Vec::new();
    for (provider, status, members) in groups {
        let allowed = json_array(
            &status
                .predecessors()
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>(),
        );
        if !unknown.is_empty() {
            // A later status waits for the earlier ones still unknown: a `read` must not
            // apply ahead of the `delivered` that is only looked at again under the guard.
            unknown.push((provider, status, allowed, members, false));
            continue;
        }
        let payload: Vec<serde_json::Value> = members
            .iter()
            .filter_map(|i| updates.get(*i))
            .map(receipt)
            .collect();
        let mut applied = apply_receipts(conn, provider, status, payload, &allowed).await?;
        // Receipts that moved nothing: one lookup for all of them (one per receipt made a
        // writer that fell behind, and so saw many, fall further behind).
        let missed = missed(&members, updates, &applied);
        let known = known_refs(conn, provider, updates, &missed).await?;
        // A message known now may have been recorded as sent just after the first look:
        // those receipts are looked at once more (no guard needed, their send is recorded).
        let retry: Vec<serde_json::Value> = missed
            .iter()
            .filter_map(|i| updates.get(*i))
            .filter(|u| known.contains(&u.provider_message_id))
            .map(receipt)
            .collect();
        if !retry.is_empty() {
            applied.extend(apply_receipts(conn, provider, status, retry, &allowed).await?);
        }
        let mut not_yet = Vec::new();
        for i in members {
            let Some(u) = updates.get(i) else { continue };
            let result = if applied.contains(&u.provider_message_id) {
                UpdateResult::Applied
            } else if known.contains(&u.provider_message_id) {
                UpdateResult::Stale
            } else {
                not_yet.push(i);
                continue;
            };
            if let Some(slot) = results.get_mut(i) {
                *slot = result;
            }
        }
        if !not_yet.is_empty() {
            unknown.push((provider, status, allowed, not_yet, true));
        }
    }
    Ok((results, unknown))
}

/// The receipts whose message was not known: under the guard, look again (their send may
/// have committed meanwhile), and hold what still matches nothing.
async fn hold_unknown(
    conn: &mut impl DeliverySql,
    updates: &[StatusUpdate],
    unknown: Unknown,
    results: &mut [UpdateResult],
) -> sqlx::Result<()> {
    let look_again = conn.guard_receipt_hand_over().await?;
    for (provider, status, allowed, members, tried) in unknown {
        let applied = if look_again || !tried {
            let again: Vec<serde_json::Value> = members
                .iter()
                .filter_map(|i| updates.get(*i))
                .map(receipt)
                .collect();
            apply_receipts(conn, provider, status, again, &allowed).await?
        } else {
            HashSet::new()
        };
        let missed = missed(&members, updates, &applied);
        let known = known_refs(conn, provider, updates, &missed).await?;
        let mut unmatched = Vec::new();
        for i in members {
            let Some(u) = updates.get(i) else { continue };
            let result = if applied.contains(&u.provider_message_id) {
                UpdateResult::Applied
            } else if known.contains(&u.provider_message_id) {
                UpdateResult::Stale
            } else {
                unmatched.push(serde_json::json!({
                    "ref": u.provider_message_id,
                    "status": u.status.as_str(),
                    "at": u.at.millis(),
                    "code": u.error_code,
                    "message": u.error_message,
                }));
                UpdateResult::Held
            };
            if let Some(slot) = results.get_mut(i) {
                *slot = result;
            }
        }
        if !unmatched.is_empty() {
            conn.hold_pending_receipts(
                provider,
                serde_json::Value::Array(unmatched).to_string(),
                Timestamp::now().millis(),
            )
            .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_lanes_get_their_floor_first_then_the_rest_goes_top_down() {
        let batch = 256;
        assert_eq!(lane_quota(0, Priority::Urgent, batch, batch), 0);
        assert_eq!(lane_quota(0, Priority::High, batch, batch), 64);
        assert_eq!(lane_quota(0, Priority::Low, batch, batch), 16);
        assert_eq!(
            lane_quota(0, Priority::Low, 3, batch),
            3,
            "never more than what is left"
        );
        assert_eq!(lane_quota(1, Priority::Urgent, 240, batch), 240);
        assert!(
            floor(Priority::Low, 4) >= 1,
            "low keeps a slot even in tiny batches"
        );
    }
}
