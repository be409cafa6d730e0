//! Accepting messages: idempotency, balance reservation and the daily limit, decided inside
//! the writer's transaction so that concurrent requests cannot both spend the same money or
//! both claim the same idempotency key.

use crate::domain::{AccountId, Timestamp, WhatsappTemplate};
use crate::store::{
    AcceptOutcome, AcceptRequest, IdempotencyRecord, ItemOutcome, NewMessage, StoreError,
    StoreResult, StoredResponse,
};
use sqlx::sqlite::{Sqlite, SqliteConnection};
use sqlx::{QueryBuilder, Row};
use std::collections::HashMap;
use std::time::Duration;

/// Rows per INSERT: 16 parameters × 1,000 rows stays below SQLite's 32,766 variables.
const ROWS_PER_INSERT: usize = 1_000;

/// The column list of `insert_messages.sql`; the writer repeats its VALUES tuple per row.
fn insert_messages_prefix() -> &'static str {
    let sql = include_str!("queries/insert_messages.sql");
    sql.split("\nVALUES").next().unwrap_or(sql)
}

/// A template as stored in `message.whatsapp_template` (read back by the claim).
fn template_json(template: &WhatsappTemplate) -> String {
    // Strings only: serializing cannot fail.
    serde_json::to_string(template).unwrap_or_default()
}

/// Idempotency records are honoured for 24 hours (SPEC §1).
pub(crate) const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 60 * 60);

struct AccountState {
    available: i64,
    daily_limit: i64,
    accepted_today: i64,
    any_opt_out: bool,
    reserve: i64,
    accepted: Vec<NewMessage>,
    /// Messages this transaction accepted by other means (a campaign's fan-out inserts its
    /// own); their cost is in `reserve`.
    accepted_elsewhere: i64,
}

impl AccountState {
    /// Messages this transaction accepted for the account so far.
    fn accepted(&self) -> i64 {
        self.accepted.len() as i64 + self.accepted_elsewhere
    }
}

/// What the accepts of one transaction will write when it is flushed.
#[derive(Default)]
pub(super) struct Batch {
    accounts: HashMap<AccountId, AccountState>,
    keys: HashMap<(AccountId, String), ([u8; 32], StoredResponse, Timestamp)>,
}

impl Batch {
    pub(super) async fn add(
        &mut self,
        conn: &mut SqliteConnection,
        request: AcceptRequest,
    ) -> StoreResult<AcceptOutcome> {
        let now = Timestamp::now();
        let AcceptRequest {
            account_id,
            idempotency,
            messages,
            render,
        } = request;

        if let Some(record) = &idempotency {
            let earlier = self.find_key(conn, &account_id, &record.key, now).await?;
            if let Some((hash, response)) = earlier {
                return Ok(if hash == record.request_hash {
                    AcceptOutcome::Replayed(response)
                } else {
                    AcceptOutcome::Conflict
                });
            }
        }

        let mut outcomes = Vec::with_capacity(messages.len());
        for message in messages {
            let opted_out = self
                .opted_out(conn, &account_id, &message.phone_number)
                .await?;
            let outcome = if opted_out {
                ItemOutcome::OptedOut
            } else {
                self.offer(conn, &account_id, message).await?
            };
            outcomes.push(outcome);
        }
        let response = render(&outcomes);
        // A request that created nothing is not remembered: retried after a top-up, it
        // should be tried again, not answered with the old 402.
        let created = outcomes.contains(&ItemOutcome::Accepted);
        if let Some(record) = idempotency.filter(|_| created) {
            self.remember(account_id, record, response.clone(), now);
        }
        Ok(AcceptOutcome::Done(response))
    }

    /// The account's figures as this transaction sees them (loaded once per transaction).
    async fn account(
        &mut self,
        conn: &mut SqliteConnection,
        account_id: &AccountId,
    ) -> StoreResult<&mut AccountState> {
        if !self.accounts.contains_key(account_id) {
            let row = sqlx::query(include_str!("queries/load_account_for_accept.sql"))
                .bind(account_id.as_str())
                .bind(Timestamp::now().day())
                .fetch_optional(&mut *conn)
                .await?
                .ok_or_else(|| StoreError::NoSuchAccount(account_id.to_string()))?;
            self.accounts.insert(
                account_id.clone(),
                AccountState {
                    available: row.try_get("available")?,
                    daily_limit: row.try_get("daily_limit")?,
                    accepted_today: row.try_get("accepted_today")?,
                    any_opt_out: row.try_get("any_opt_out")?,
                    reserve: 0,
                    accepted: Vec::new(),
                    accepted_elsewhere: 0,
                },
            );
        }
        self.accounts
            .get_mut(account_id)
            .ok_or_else(|| StoreError::NoSuchAccount(account_id.to_string()))
    }

    /// What the account can still take in this transaction: (available balance, messages
    /// left today).
    pub(super) async fn headroom(
        &mut self,
        conn: &mut SqliteConnection,
        account_id: &AccountId,
    ) -> StoreResult<(i64, i64)> {
        let state = self.account(conn, account_id).await?;
        Ok((
            state.available - state.reserve,
            (state.daily_limit - state.accepted_today - state.accepted()).max(0),
        ))
    }

    /// Counts `messages` costing `cost` that the caller inserted itself against the
    /// account, so later accepts in this transaction see the money as taken and the flush
    /// reserves it. The account must have been loaded (by [`Batch::headroom`]).
    pub(super) fn reserve_elsewhere(&mut self, account_id: &AccountId, cost: i64, messages: i64) {
        if let Some(state) = self.accounts.get_mut(account_id) {
            state.reserve += cost;
            state.accepted_elsewhere += messages;
        }
    }

    /// The account just got an opt-out in this transaction: later accepts in it check for
    /// one (the cached "no opt-outs at all" no longer holds).
    pub(super) fn note_opt_out(&mut self, account_id: &AccountId) {
        if let Some(state) = self.accounts.get_mut(account_id) {
            state.any_opt_out = true;
        }
    }

    /// Keeps `response` under the idempotency key, written with the rest at flush.
    pub(super) fn remember(
        &mut self,
        account_id: AccountId,
        record: IdempotencyRecord,
        response: StoredResponse,
        at: Timestamp,
    ) {
        self.keys.insert(
            (account_id, record.key),
            (record.request_hash, response, at),
        );
    }

    /// Whether `phone_number` opted out of the account. Most accounts have no opt-out at
    /// all, and then this costs no lookup.
    pub(super) async fn opted_out(
        &mut self,
        conn: &mut SqliteConnection,
        account_id: &AccountId,
        phone_number: &str,
    ) -> StoreResult<bool> {
        if !self.account(conn, account_id).await?.any_opt_out {
            return Ok(false);
        }
        let found = sqlx::query(include_str!("queries/find_opted_out.sql"))
            .bind(account_id.as_str())
            .bind(serde_json::to_string(&[phone_number]).unwrap_or_default())
            .fetch_optional(&mut *conn)
            .await?;
        Ok(found.is_some())
    }

    /// Accepts `message` if the daily limit and the available balance (after everything
    /// this transaction already accepted) allow it.
    pub(super) async fn offer(
        &mut self,
        conn: &mut SqliteConnection,
        account_id: &AccountId,
        message: NewMessage,
    ) -> StoreResult<ItemOutcome> {
        let state = self.account(conn, account_id).await?;
        let cost = message.cost.units();
        let accepted_today = state.accepted_today + state.accepted();
        Ok(if accepted_today >= state.daily_limit {
            ItemOutcome::DailyLimitExceeded
        } else if state.available - state.reserve < cost {
            ItemOutcome::InsufficientBalance
        } else {
            state.reserve += cost;
            state.accepted.push(message);
            ItemOutcome::Accepted
        })
    }

    pub(super) async fn find_key(
        &self,
        conn: &mut SqliteConnection,
        account_id: &AccountId,
        key: &str,
        now: Timestamp,
    ) -> StoreResult<Option<([u8; 32], StoredResponse)>> {
        if let Some((hash, response, _)) = self.keys.get(&(account_id.clone(), key.to_owned())) {
            return Ok(Some((*hash, response.clone())));
        }
        let row = sqlx::query(include_str!("queries/find_idempotency_key.sql"))
            .bind(account_id.as_str())
            .bind(key)
            .bind(now.minus(IDEMPOTENCY_TTL).millis())
            .fetch_optional(&mut *conn)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let hash: Vec<u8> = row.try_get("request_hash")?;
        let status: i64 = row.try_get("response_status")?;
        let body: String = row.try_get("response_body")?;
        Ok(Some((
            hash.try_into().unwrap_or([0; 32]),
            StoredResponse {
                status: u16::try_from(status).unwrap_or(500),
                body,
            },
        )))
    }

    /// Writes everything the batch accepted. Called once, just before the commit.
    pub(super) async fn flush(self, conn: &mut SqliteConnection) -> sqlx::Result<()> {
        let now = Timestamp::now();
        let day = now.day();
        for (account_id, state) in &self.accounts {
            if state.accepted() == 0 {
                continue;
            }
            for chunk in state.accepted.chunks(ROWS_PER_INSERT) {
                let mut insert = QueryBuilder::<Sqlite>::new(insert_messages_prefix());
                insert.push_values(chunk, |mut row, m| {
                    row.push_bind(m.message_id.as_str())
                        .push_bind(account_id.as_str())
                        .push_bind(m.campaign_id.as_deref())
                        .push_bind(m.channel.as_str())
                        .push_bind(m.phone_number.as_str())
                        .push_bind(m.sender_id.as_deref())
                        .push_bind(m.body.as_str())
                        .push_bind(m.attachment_url.as_deref())
                        .push_bind(m.priority.rank())
                        .push("'queued'")
                        .push_bind(i64::from(m.segments))
                        .push_bind(m.cost.units())
                        .push("'reserved'")
                        .push_bind(m.due_at.millis())
                        .push_bind(m.expires_at.millis())
                        .push_bind(m.status_callback.as_deref())
                        .push_bind(m.metadata.as_deref())
                        .push_bind(now.millis())
                        .push_bind(now.millis())
                        .push_bind(m.whatsapp_template.as_ref().map(template_json))
                        .push_bind(m.twilio_callback_signer.as_deref());
                });
                insert.build().execute(&mut *conn).await?;
            }
            let ids: Vec<&str> = state
                .accepted
                .iter()
                .map(|m| m.message_id.as_str())
                .collect();
            insert_events(conn, "queued", &ids, now).await?;
            // Two statements, one command: one round trip to SQLite's thread, not two.
            sqlx::query(concat!(
                include_str!("queries/reserve_balance.sql"),
                include_str!("queries/count_accepted.sql"),
            ))
            .bind(account_id.as_str())
            .bind(state.reserve)
            .bind(now.millis())
            .bind(&day)
            .bind(state.accepted())
            .execute(&mut *conn)
            .await?;
        }

        for ((account_id, key), (hash, response, at)) in &self.keys {
            sqlx::query(include_str!("queries/store_idempotency_key.sql"))
                .bind(account_id.as_str())
                .bind(key.as_str())
                .bind(&hash[..])
                .bind(i64::from(response.status))
                .bind(response.body.as_str())
                .bind(at.millis())
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
}

/// Adds `status` at `at` to the history of each message in `ids`.
pub(super) async fn insert_events(
    conn: &mut SqliteConnection,
    status: &str,
    ids: &[impl AsRef<str>],
    at: Timestamp,
) -> sqlx::Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = ids.iter().map(AsRef::as_ref).collect();
    sqlx::query(include_str!("queries/insert_status_events.sql"))
        .bind(serde_json::to_string(&ids).unwrap_or_default())
        .bind(status)
        .bind(at.millis())
        .execute(&mut *conn)
        .await?;
    Ok(())
}
