//! Inbound messages and threads: the writes run in the writer's transaction (with the
//! accepts of the same batch, so a STOP's confirmation is queued with it); the reads on the
//! read pool.

use crate::domain::{AccountId, Channel, Keyword, MessageId, ThreadId, Timestamp};
use crate::store::inbound::{
    CampaignReply, InboundOutcome, KeywordReplies, KeywordReply, NewInbound, ThreadMessage,
    ThreadSummary,
};
use crate::store::{ItemOutcome, NewMessage, StoreResult};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnection, SqlitePool, SqliteRow};

/// Stores one inbound message (once), in its thread, with its keyword's effect.
pub(super) async fn record(
    conn: &mut SqliteConnection,
    accepts: &mut crate::store::accept::Batch,
    inbound: NewInbound,
) -> StoreResult<InboundOutcome> {
    if let Some(reference) = &inbound.provider_message_id {
        let earlier = sqlx::query(include_str!("queries/find_inbound_by_ref.sql"))
            .bind(inbound.provider)
            .bind(reference)
            .fetch_optional(&mut *conn)
            .await?;
        if let Some(row) = earlier {
            let account: Option<String> = row.try_get("account_id")?;
            let thread: Option<String> = row.try_get("thread_id")?;
            return Ok(InboundOutcome {
                message_id: MessageId::from_stored(row.try_get("message_id")?),
                repeat: true,
                account_id: account.map(AccountId::from_stored),
                thread_id: thread.map(ThreadId::from_stored),
                replied: false,
            });
        }
    }

    // Whose it is, and which of our messages it answers.
    let last = sqlx::query(include_str!("queries/last_outbound_to.sql"))
        .bind(&inbound.from)
        .bind(inbound.channel.as_str())
        .bind(inbound.account_id.as_ref().map(AccountId::as_str))
        .fetch_optional(&mut *conn)
        .await?;
    let (in_reply_to, campaign_id, last_account) = match &last {
        Some(row) => (
            Some(row.try_get::<String, _>("message_id")?),
            row.try_get::<Option<String>, _>("campaign_id")?,
            Some(AccountId::from_stored(row.try_get("account_id")?)),
        ),
        None => (None, None, None),
    };
    let account = match (&inbound.account_id, last_account) {
        (Some(given), _) => Some(given.clone()),
        (None, Some(last)) => Some(last),
        (None, None) => match &inbound.fallback_account {
            Some(name) => {
                sqlx::query_scalar::<_, String>(include_str!("queries/find_account_by_name.sql"))
                    .bind(name)
                    .fetch_optional(&mut *conn)
                    .await?
                    .map(AccountId::from_stored)
            }
            None => None,
        },
    };

    let now = Timestamp::now();
    let thread_id = match &account {
        Some(account) => Some(ThreadId::from_stored(
            sqlx::query_scalar::<_, String>(include_str!("queries/upsert_thread.sql"))
                .bind(ThreadId::generate().as_str())
                .bind(account.as_str())
                .bind(inbound.channel.as_str())
                .bind(&inbound.from)
                .bind(&inbound.body)
                .bind(inbound.received_at.millis())
                .fetch_one(&mut *conn)
                .await?,
        )),
        None => None,
    };
    let media = (!inbound.media_urls.is_empty())
        .then(|| serde_json::to_string(&inbound.media_urls).unwrap_or_default());
    sqlx::query(include_str!("queries/insert_inbound.sql"))
        .bind(inbound.message_id.as_str())
        .bind(account.as_ref().map(AccountId::as_str))
        .bind(thread_id.as_ref().map(ThreadId::as_str))
        .bind(inbound.channel.as_str())
        .bind(inbound.provider)
        .bind(inbound.provider_message_id.as_deref())
        .bind(&inbound.from)
        .bind(inbound.to.as_deref())
        .bind(&inbound.body)
        .bind(media)
        .bind(inbound.keyword.map(Keyword::as_str))
        .bind(in_reply_to)
        .bind(campaign_id)
        .bind(inbound.received_at.millis())
        .execute(&mut *conn)
        .await?;

    let mut replied = false;
    if let Some(account) = &account {
        match inbound.keyword {
            Some(Keyword::Stop) => {
                sqlx::query(include_str!("queries/insert_opt_out.sql"))
                    .bind(account.as_str())
                    .bind(&inbound.from)
                    .bind(inbound.channel.as_str())
                    .bind(now.millis())
                    .execute(&mut *conn)
                    .await?;
                accepts.note_opt_out(account);
            }
            Some(Keyword::Start) => {
                sqlx::query(include_str!("queries/delete_opt_out.sql"))
                    .bind(account.as_str())
                    .bind(&inbound.from)
                    .execute(&mut *conn)
                    .await?;
            }
            Some(Keyword::Help) | None => {}
        }
        // Offered past the opt-out check on purpose: the one message a STOP is answered with.
        if let Some(reply) = inbound.reply {
            let own = sqlx::query(include_str!("queries/load_keyword_replies.sql"))
                .bind(account.as_str())
                .fetch_optional(&mut *conn)
                .await?;
            let column = if inbound.keyword == Some(Keyword::Stop) {
                "stop_reply"
            } else {
                "help_reply"
            };
            let own: Option<String> = match &own {
                Some(row) => row.try_get(column)?,
                None => None,
            };
            if let Some(message) = answer(reply, own) {
                replied = accepts.offer(conn, account, message).await? == ItemOutcome::Accepted;
            }
        }
    }
    Ok(InboundOutcome {
        message_id: inbound.message_id,
        repeat: false,
        account_id: account,
        thread_id,
        replied,
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

pub(in crate::store) async fn campaign_replies(
    pool: &SqlitePool,
    account_id: &AccountId,
    campaign_id: &str,
    after: Option<(Timestamp, String)>,
    limit: usize,
) -> StoreResult<Vec<CampaignReply>> {
    let (at, id) = cursor_binds(after);
    let rows = sqlx::query(include_str!("queries/campaign_replies.sql"))
        .bind(campaign_id)
        .bind(account_id.as_str())
        .bind(at)
        .bind(id)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|row| {
            Ok(CampaignReply {
                message_id: row.try_get("message_id")?,
                thread_id: row.try_get("thread_id")?,
                phone_number: row.try_get("from_number")?,
                body: row.try_get("body")?,
                keyword: row.try_get("keyword")?,
                in_reply_to: row.try_get("in_reply_to")?,
                received_at: Timestamp::from_millis(row.try_get("received_at")?),
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

pub(in crate::store) async fn keyword_replies(
    pool: &SqlitePool,
    account_id: &AccountId,
) -> StoreResult<KeywordReplies> {
    let row = sqlx::query(include_str!("queries/load_keyword_replies.sql"))
        .bind(account_id.as_str())
        .fetch_optional(pool)
        .await?;
    Ok(match row {
        Some(row) => KeywordReplies {
            stop_reply: row.try_get("stop_reply")?,
            help_reply: row.try_get("help_reply")?,
        },
        None => KeywordReplies::default(),
    })
}

/// Marks the account's unread messages among `ids` read and lowers their threads' counts.
pub(super) async fn mark_read(
    conn: &mut SqliteConnection,
    account_id: &AccountId,
    ids: &[String],
) -> StoreResult<u64> {
    let threads: Vec<Option<String>> =
        sqlx::query_scalar(include_str!("queries/mark_inbound_read.sql"))
            .bind(account_id.as_str())
            .bind(serde_json::to_string(ids).unwrap_or_default())
            .bind(Timestamp::now().millis())
            .fetch_all(&mut *conn)
            .await?;
    let mut per_thread: std::collections::BTreeMap<String, i64> = Default::default();
    for thread in threads.iter().flatten() {
        *per_thread.entry(thread.clone()).or_default() += 1;
    }
    for (thread, count) in per_thread {
        sqlx::query(include_str!("queries/lower_unread.sql"))
            .bind(thread)
            .bind(count)
            .execute(&mut *conn)
            .await?;
    }
    Ok(u64::try_from(threads.len()).unwrap_or(u64::MAX))
}

fn summary(row: &SqliteRow) -> Result<ThreadSummary, sqlx::Error> {
    let inbound_at = Timestamp::from_millis(row.try_get("last_inbound_at")?);
    let outbound_at: Option<i64> = row.try_get("last_outbound_at")?;
    let inbound: String = row.try_get("last_inbound")?;
    let (last_message, last_message_at) = match outbound_at {
        Some(at) if at > inbound_at.millis() => {
            (row.try_get("last_outbound")?, Timestamp::from_millis(at))
        }
        _ => (inbound, inbound_at),
    };
    let channel: String = row.try_get("channel")?;
    Ok(ThreadSummary {
        thread_id: ThreadId::from_stored(row.try_get("thread_id")?),
        channel: Channel::parse(&channel).unwrap_or(Channel::Sms),
        phone_number: row.try_get("phone_number")?,
        last_message,
        last_message_at,
        last_inbound_at: inbound_at,
        unread_count: row.try_get("unread_count")?,
    })
}

/// A keyset cursor as two binds (both NULL for the first page).
fn cursor_binds(cursor: Option<(Timestamp, String)>) -> (Option<i64>, Option<String>) {
    match cursor {
        Some((at, id)) => (Some(at.millis()), Some(id)),
        None => (None, None),
    }
}

pub(in crate::store) async fn threads(
    pool: &SqlitePool,
    account_id: &AccountId,
    before: Option<(Timestamp, String)>,
    limit: usize,
) -> StoreResult<Vec<ThreadSummary>> {
    let (at, id) = cursor_binds(before);
    let rows = sqlx::query(include_str!("queries/list_threads.sql"))
        .bind(account_id.as_str())
        .bind(at)
        .bind(id)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(pool)
        .await?;
    Ok(rows.iter().map(summary).collect::<Result<_, _>>()?)
}

pub(in crate::store) async fn last_inbound_at(
    pool: &SqlitePool,
    account_id: &AccountId,
    channel: Channel,
    phone_number: &str,
) -> StoreResult<Option<Timestamp>> {
    let at: Option<i64> = sqlx::query_scalar(include_str!("queries/last_inbound_at.sql"))
        .bind(account_id.as_str())
        .bind(channel.as_str())
        .bind(phone_number)
        .fetch_optional(pool)
        .await?;
    Ok(at.map(Timestamp::from_millis))
}

pub(in crate::store) async fn thread(
    pool: &SqlitePool,
    account_id: &AccountId,
    thread_id: &ThreadId,
) -> StoreResult<Option<ThreadSummary>> {
    let row = sqlx::query(include_str!("queries/load_thread.sql"))
        .bind(account_id.as_str())
        .bind(thread_id.as_str())
        .fetch_optional(pool)
        .await?;
    Ok(row.as_ref().map(summary).transpose()?)
}

pub(in crate::store) async fn thread_messages(
    pool: &SqlitePool,
    account_id: &AccountId,
    thread: &ThreadSummary,
    after: Option<(Timestamp, String)>,
    limit: usize,
) -> StoreResult<Vec<ThreadMessage>> {
    let (at, id) = cursor_binds(after);
    let rows = sqlx::query(include_str!("queries/thread_messages.sql"))
        .bind(thread.thread_id.as_str())
        .bind(&thread.phone_number)
        .bind(thread.channel.as_str())
        .bind(account_id.as_str())
        .bind(at)
        .bind(id)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|row| {
            let direction: String = row.try_get("direction")?;
            let read: Option<bool> = row.try_get("is_read")?;
            Ok(ThreadMessage {
                message_id: row.try_get("message_id")?,
                direction: if direction == "inbound" {
                    "inbound"
                } else {
                    "outbound"
                },
                body: row.try_get("body")?,
                at: Timestamp::from_millis(row.try_get("at")?),
                status: row.try_get("status")?,
                read,
                keyword: row.try_get("keyword")?,
                campaign_id: row.try_get("campaign_id")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}
