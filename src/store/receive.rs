//! Receiving, as rules over whatever database holds it. An inbound message is stored once (a
//! provider's retry carries the same id), in its thread, linked to the last message sent to
//! its number (whose account and campaign it then belongs to); a keyword (SPEC §7) opts the
//! number out or back in, and STOP and HELP are answered through the accept rules
//! (`store::accept`) in the transaction that stores the message. Reading the account's
//! unread messages lowers their threads' counts. Each dialect supplies the statements
//! ([`InboundSql`], one query file each) and the transaction; the decisions are made here
//! once.
//!
//! The messages waiting together are stored together: one statement each for finding whose
//! they are, inserting them, counting them in their threads and attaching them, however many
//! there are (on SQLite every statement is a hand-over between threads, and it was these
//! hand-overs, five per message, that bounded inbound). Keywords are then applied one message
//! at a time, in order.
//!
//! On a database many processes share, the unique index on the provider's id decides which
//! of two copies arriving at once is stored: the messages are inserted first (`ON CONFLICT DO
//! NOTHING`), and a copy that inserted nothing answers as a repeat and changes nothing
//! else. A keyword locks its account's row first ([`InboundSql::lock_account`]), so accepts
//! in other processes see the opt-out it records, and the answer is decided on figures no
//! other transaction is changing.

use crate::domain::{AccountId, Channel, Keyword, MessageId, ThreadId, Timestamp};
use crate::store::accept::{AcceptSql, Batch};
use crate::store::delivery::json_array;
use crate::store::inbound::{
    CampaignReply, InboundOutcome, KeywordReplies, KeywordReply, NewInbound, ThreadMessage,
    ThreadSummary,
};
use crate::store::{ItemOutcome, NewMessage, StoreError, StoreResult};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

/// An inbound message already stored under a provider's id.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct StoredInbound {
    message_id: String,
    account_id: Option<String>,
    thread_id: Option<String>,
}

/// The last message sent to the number of the `idx`-th lookup: whose it is, and what a reply
/// answers.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct LastOutbound {
    idx: i64,
    message_id: String,
    account_id: String,
    campaign_id: Option<String>,
}

/// What `last_outbound` looks up for one message: the last message sent on `channel` to
/// `phone_number` (by `account_id`, or by any account when None).
#[derive(Debug, serde::Serialize)]
struct OutboundLookup<'a> {
    phone_number: &'a str,
    channel: &'static str,
    account_id: Option<&'a str>,
}

/// An inbound message as `insert_inbound` stores it (its thread is attached after).
#[derive(Debug, serde::Serialize)]
pub(crate) struct InboundRow<'a> {
    pub message_id: &'a str,
    pub account_id: Option<&'a str>,
    pub channel: &'static str,
    pub provider: &'static str,
    pub provider_message_id: Option<&'a str>,
    pub from: &'a str,
    pub to: Option<&'a str>,
    pub body: &'a str,
    /// JSON array, or None when there are none.
    pub media_urls: Option<String>,
    pub keyword: Option<&'static str>,
    pub in_reply_to: Option<&'a str>,
    pub campaign_id: Option<&'a str>,
    pub received_at: i64,
}

/// What the inbound messages of one transaction add to a thread (made with `thread_id` if it
/// is new): their count as unread, the latest one's text and time.
#[derive(Debug, serde::Serialize)]
struct ThreadCount<'a> {
    thread_id: String,
    account_id: &'a str,
    channel: &'static str,
    phone_number: &'a str,
    last_inbound: &'a str,
    last_inbound_at: i64,
    unread: i64,
    /// When the first of them was received: a new thread's birth.
    created_at: i64,
}

/// A thread as `upsert_threads` answers it: its id and its key.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ThreadKey {
    thread_id: String,
    account_id: String,
    channel: String,
    phone_number: String,
}

/// An inbound message and the thread it goes in.
#[derive(Debug, serde::Serialize)]
struct Attachment<'a> {
    message_id: &'a str,
    thread_id: &'a str,
}

/// A thread as the list and load statements return it, with the last message sent to its
/// number.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ThreadRow {
    thread_id: String,
    channel: String,
    phone_number: String,
    last_inbound: String,
    last_inbound_at: i64,
    unread_count: i64,
    last_outbound: Option<String>,
    last_outbound_at: Option<i64>,
}

impl From<ThreadRow> for ThreadSummary {
    /// The latest message either way is the thread's last message.
    fn from(row: ThreadRow) -> Self {
        let inbound_at = Timestamp::from_millis(row.last_inbound_at);
        let (last_message, last_message_at) = match (row.last_outbound, row.last_outbound_at) {
            (Some(outbound), Some(at)) if at > row.last_inbound_at => {
                (outbound, Timestamp::from_millis(at))
            }
            _ => (row.last_inbound, inbound_at),
        };
        ThreadSummary {
            thread_id: ThreadId::from_stored(row.thread_id),
            channel: Channel::parse(&row.channel).unwrap_or(Channel::Sms),
            phone_number: row.phone_number,
            last_message,
            last_message_at,
            last_inbound_at: inbound_at,
            unread_count: row.unread_count,
        }
    }
}

/// One message of a thread as the statement returns it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ThreadMessageRow {
    message_id: String,
    direction: String,
    body: String,
    at: i64,
    status: String,
    is_read: Option<bool>,
    keyword: Option<String>,
    campaign_id: Option<String>,
}

impl From<ThreadMessageRow> for ThreadMessage {
    fn from(row: ThreadMessageRow) -> Self {
        ThreadMessage {
            message_id: row.message_id,
            direction: if row.direction == "inbound" {
                "inbound"
            } else {
                "outbound"
            },
            body: row.body,
            at: Timestamp::from_millis(row.at),
            status: row.status,
            read: row.is_read,
            keyword: row.keyword,
            campaign_id: row.campaign_id,
        }
    }
}

/// A reply to a campaign as the statement returns it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct CampaignReplyRow {
    message_id: String,
    thread_id: Option<String>,
    from_number: String,
    body: String,
    keyword: Option<String>,
    in_reply_to: Option<String>,
    received_at: i64,
}

impl From<CampaignReplyRow> for CampaignReply {
    fn from(row: CampaignReplyRow) -> Self {
        CampaignReply {
            message_id: row.message_id,
            thread_id: row.thread_id,
            phone_number: row.from_number,
            body: row.body,
            keyword: row.keyword,
            in_reply_to: row.in_reply_to,
            received_at: Timestamp::from_millis(row.received_at),
        }
    }
}

/// A keyset cursor as two binds (both NULL for the first page).
pub(crate) fn cursor_binds(cursor: Option<(Timestamp, String)>) -> (Option<i64>, Option<String>) {
    match cursor {
        Some((at, id)) => (Some(at.millis()), Some(id)),
        None => (None, None),
    }
}

/// The statements of receiving, one per query file, run inside the caller's transaction.
pub(crate) trait InboundSql: AcceptSql {
    /// The inbound message provider `provider` stored as `reference`, if any.
    fn find_inbound(
        &mut self,
        provider: &str,
        reference: &str,
    ) -> impl Future<Output = sqlx::Result<Option<StoredInbound>>> + Send;
    /// For each lookup of the JSON array `lookups` ([`OutboundLookup`]), the last message
    /// sent on its channel to its number, with the lookup's index (none where nothing was).
    fn last_outbound(
        &mut self,
        lookups: String,
    ) -> impl Future<Output = sqlx::Result<Vec<LastOutbound>>> + Send;
    /// An account's id by its id or name.
    fn find_account(
        &mut self,
        name_or_id: &str,
    ) -> impl Future<Output = sqlx::Result<Option<String>>> + Send;
    /// Stores the messages of the JSON array `rows` ([`InboundRow`]) but those whose
    /// provider's id is stored already; answers the ids of those stored.
    fn insert_inbound(
        &mut self,
        rows: String,
    ) -> impl Future<Output = sqlx::Result<Vec<String>>> + Send;
    /// Adds each count of the JSON array `counts` ([`ThreadCount`], one per thread) to its
    /// thread, made on the first message; answers each thread's id.
    fn upsert_threads(
        &mut self,
        counts: String,
    ) -> impl Future<Output = sqlx::Result<Vec<ThreadKey>>> + Send;
    /// Puts stored inbound messages in their threads (the JSON array `attachments`).
    fn attach_threads(
        &mut self,
        attachments: String,
    ) -> impl Future<Output = sqlx::Result<()>> + Send;
    /// On a shared database, locks the account's row until the transaction ends (what may
    /// be sent to it waits); nothing where one writer runs every transaction.
    fn lock_account(&mut self, account_id: &str) -> impl Future<Output = sqlx::Result<()>> + Send;
    /// Opts a number out (an existing opt-out keeps its first time and source); answers
    /// the rows written.
    fn insert_opt_out(
        &mut self,
        account_id: &str,
        phone_number: &str,
        source: &str,
        at: i64,
    ) -> impl Future<Output = sqlx::Result<u64>> + Send;
    /// Opts a number back in; answers the rows removed.
    fn delete_opt_out(
        &mut self,
        account_id: &str,
        phone_number: &str,
    ) -> impl Future<Output = sqlx::Result<u64>> + Send;
    /// The account's own answers to STOP and HELP (None: no such account).
    fn keyword_replies(
        &mut self,
        account_id: &str,
    ) -> impl Future<Output = sqlx::Result<Option<KeywordReplies>>> + Send;
    /// Marks the account's unread messages among the JSON array `ids` read at `at`;
    /// answers the thread of each one marked.
    fn mark_inbound_read(
        &mut self,
        account_id: &str,
        ids: String,
        at: i64,
    ) -> impl Future<Output = sqlx::Result<Vec<Option<String>>>> + Send;
    /// Lowers a thread's unread count by `count` (never below zero).
    fn lower_unread(
        &mut self,
        thread_id: &str,
        count: i64,
    ) -> impl Future<Output = sqlx::Result<()>> + Send;
}

/// The stored copy of `inbound`, if its provider's id was stored already.
async fn stored_copy(
    conn: &mut impl InboundSql,
    inbound: &NewInbound,
) -> StoreResult<Option<InboundOutcome>> {
    let Some(reference) = &inbound.provider_message_id else {
        return Ok(None);
    };
    let earlier = conn.find_inbound(inbound.provider, reference).await?;
    Ok(earlier.map(|row| InboundOutcome {
        message_id: MessageId::from_stored(row.message_id),
        repeat: true,
        account_id: row.account_id.map(AccountId::from_stored),
        thread_id: row.thread_id.map(ThreadId::from_stored),
        replied: false,
    }))
}

/// Stores inbound messages (each once), in their threads, with their keywords' effects, in
/// order; a reply is offered to `accepts`, which the caller flushes before it commits.
/// Answers one outcome per message, in the order given.
pub(crate) async fn record_all(
    conn: &mut impl InboundSql,
    accepts: &mut Batch,
    mut messages: Vec<NewInbound>,
) -> StoreResult<Vec<InboundOutcome>> {
    let replies: Vec<Option<KeywordReply>> = messages.iter_mut().map(|m| m.reply.take()).collect();

    // Whose each one is, and which of our messages it answers.
    let lookups: Vec<OutboundLookup> = messages
        .iter()
        .map(|m| OutboundLookup {
            phone_number: &m.from,
            channel: m.channel.as_str(),
            account_id: m.account_id.as_ref().map(AccountId::as_str),
        })
        .collect();
    let mut last: Vec<Option<LastOutbound>> = messages.iter().map(|_| None).collect();
    for found in conn.last_outbound(json_array(&lookups)).await? {
        if let Some(slot) = usize::try_from(found.idx)
            .ok()
            .and_then(|i| last.get_mut(i))
        {
            *slot = Some(found);
        }
    }
    let mut fallbacks: BTreeMap<&str, Option<AccountId>> = BTreeMap::new();
    let mut accounts = Vec::with_capacity(messages.len());
    for (message, last) in messages.iter().zip(&last) {
        accounts.push(match (&message.account_id, last) {
            (Some(given), _) => Some(given.clone()),
            (None, Some(last)) => Some(AccountId::from_stored(last.account_id.clone())),
            (None, None) => match message.fallback_account.as_deref() {
                Some(name) => match fallbacks.get(name) {
                    Some(known) => known.clone(),
                    None => {
                        let found = conn.find_account(name).await?.map(AccountId::from_stored);
                        fallbacks.insert(name, found.clone());
                        found
                    }
                },
                None => None,
            },
        });
    }

    let rows: Vec<InboundRow> = messages
        .iter()
        .zip(&accounts)
        .zip(&last)
        .map(|((inbound, account), last)| InboundRow {
            message_id: inbound.message_id.as_str(),
            account_id: account.as_ref().map(AccountId::as_str),
            channel: inbound.channel.as_str(),
            provider: inbound.provider,
            provider_message_id: inbound.provider_message_id.as_deref(),
            from: &inbound.from,
            to: inbound.to.as_deref(),
            body: &inbound.body,
            media_urls: (!inbound.media_urls.is_empty()).then(|| json_array(&inbound.media_urls)),
            keyword: inbound.keyword.map(Keyword::as_str),
            in_reply_to: last.as_ref().map(|l| l.message_id.as_str()),
            campaign_id: last.as_ref().and_then(|l| l.campaign_id.as_deref()),
            received_at: inbound.received_at.millis(),
        })
        .collect();
    // The messages first: of two copies stored at once (two processes, one provider retry,
    // or both in this group), the one the unique index lets in goes on; the other waited for
    // it and is a repeat.
    let stored: BTreeSet<String> = conn
        .insert_inbound(json_array(&rows))
        .await?
        .into_iter()
        .collect();

    // Each thread counted once, by every message it gained (in key order, so that two
    // transactions on a shared database take the thread rows in the same order).
    let mut counts: BTreeMap<(&str, &str, &str), ThreadCount> = BTreeMap::new();
    for row in rows.iter().filter(|r| stored.contains(r.message_id)) {
        let Some(account_id) = row.account_id else {
            continue;
        };
        let count = counts
            .entry((account_id, row.channel, row.from))
            .or_insert_with(|| ThreadCount {
                thread_id: ThreadId::generate().as_str().to_owned(),
                account_id,
                channel: row.channel,
                phone_number: row.from,
                last_inbound: row.body,
                last_inbound_at: row.received_at,
                unread: 0,
                created_at: row.received_at,
            });
        count.unread += 1;
        // As one message at a time would: the latest wins, the later of two at once.
        if row.received_at >= count.last_inbound_at {
            count.last_inbound = row.body;
            count.last_inbound_at = row.received_at;
        }
    }
    let keys = if counts.is_empty() {
        Vec::new()
    } else {
        let counts: Vec<&ThreadCount> = counts.values().collect();
        conn.upsert_threads(json_array(&counts)).await?
    };
    let threads: BTreeMap<(&str, &str, &str), &str> = keys
        .iter()
        .map(|k| {
            let key = (
                k.account_id.as_str(),
                k.channel.as_str(),
                k.phone_number.as_str(),
            );
            (key, k.thread_id.as_str())
        })
        .collect();
    // Each stored message's thread (a repeat's comes from its stored copy).
    let thread_ids: Vec<Option<String>> = rows
        .iter()
        .map(|row| {
            let key = (row.account_id?, row.channel, row.from);
            let thread = threads.get(&key).map(|id| (*id).to_owned());
            thread.filter(|_| stored.contains(row.message_id))
        })
        .collect();
    let attachments: Vec<Attachment> = rows
        .iter()
        .zip(&thread_ids)
        .filter_map(|(row, thread_id)| {
            Some(Attachment {
                message_id: row.message_id,
                thread_id: thread_id.as_deref()?,
            })
        })
        .collect();
    if !attachments.is_empty() {
        conn.attach_threads(json_array(&attachments)).await?;
    }

    let mut outcomes = Vec::with_capacity(messages.len());
    for (((inbound, account), thread_id), reply) in messages
        .into_iter()
        .zip(accounts)
        .zip(thread_ids)
        .zip(replies)
    {
        if !stored.contains(inbound.message_id.as_str()) {
            outcomes.push(stored_copy(conn, &inbound).await?.ok_or_else(|| {
                StoreError::Invalid(format!(
                    "inbound message {} was not stored and has no stored copy",
                    inbound.message_id
                ))
            })?);
            continue;
        }
        let replied = match &account {
            Some(account) => apply_keyword(conn, accepts, account, &inbound, reply).await?,
            None => false,
        };
        outcomes.push(InboundOutcome {
            message_id: inbound.message_id,
            repeat: false,
            account_id: account,
            thread_id: thread_id.map(ThreadId::from_stored),
            replied,
        });
    }
    Ok(outcomes)
}

/// Opts the number out or back in for a keyword, and offers its answer (past the opt-out
/// check on purpose: the one message a STOP is answered with). Answers whether the answer
/// was accepted.
async fn apply_keyword(
    conn: &mut impl InboundSql,
    accepts: &mut Batch,
    account: &AccountId,
    inbound: &NewInbound,
    reply: Option<KeywordReply>,
) -> StoreResult<bool> {
    let Some(keyword) = inbound.keyword else {
        return Ok(false);
    };
    conn.lock_account(account.as_str()).await?;
    match keyword {
        Keyword::Stop => {
            conn.insert_opt_out(
                account.as_str(),
                &inbound.from,
                inbound.channel.as_str(),
                Timestamp::now().millis(),
            )
            .await?;
            accepts.note_opt_out(account);
        }
        Keyword::Start => {
            conn.delete_opt_out(account.as_str(), &inbound.from).await?;
        }
        Keyword::Help => {}
    }
    let Some(reply) = reply else {
        return Ok(false);
    };
    let own = conn
        .keyword_replies(account.as_str())
        .await?
        .unwrap_or_default();
    let own = if keyword == Keyword::Stop {
        own.stop_reply
    } else {
        own.help_reply
    };
    Ok(match answer(reply, own) {
        Some(message) => accepts.offer(conn, account, message).await? == ItemOutcome::Accepted,
        None => false,
    })
}

/// The answer to send: the deployment's text, or the account's own in its place (priced
/// again); none when the text to send is empty.
fn answer(reply: KeywordReply, own: Option<String>) -> Option<NewMessage> {
    let mut message = reply.message;
    if let Some(text) = own {
        let segments = crate::billing::measure(message.channel, &text);
        message.segments = segments.count;
        message.cost = reply.pricing.cost(message.channel, segments);
        message.body = text;
    }
    (!message.body.is_empty()).then_some(message)
}

/// Marks the account's unread messages among `ids` read and lowers their threads' counts
/// (in thread order); answers how many went from unread to read.
pub(crate) async fn mark_read(
    conn: &mut impl InboundSql,
    account_id: &AccountId,
    ids: &[String],
) -> StoreResult<u64> {
    let threads = conn
        .mark_inbound_read(
            account_id.as_str(),
            json_array(ids),
            Timestamp::now().millis(),
        )
        .await?;
    let mut per_thread: BTreeMap<&str, i64> = BTreeMap::new();
    for thread in threads.iter().flatten() {
        *per_thread.entry(thread.as_str()).or_default() += 1;
    }
    for (thread, count) in per_thread {
        conn.lower_unread(thread, count).await?;
    }
    Ok(u64::try_from(threads.len()).unwrap_or(u64::MAX))
}
