//! Accepting messages: idempotency, balance reservation and the daily limit, decided inside
//! one transaction so that concurrent requests cannot both spend the same money or both
//! claim the same idempotency key. The rules are here once; each dialect supplies the
//! statements ([`AcceptSql`]) and a transaction in which the account's figures cannot change
//! under it (SQLite: its single writer; PostgreSQL: the account row locked first).

use crate::domain::{AccountId, Timestamp, WhatsappTemplate};
use crate::store::delivery::{DeliverySql, json_array};
use crate::store::{
    AcceptOutcome, AcceptRequest, IdempotencyRecord, ItemOutcome, NewMessage, StoreError,
    StoreResult, StoredResponse,
};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

/// A template as stored in `message.whatsapp_template` (read back by the claim).
pub(crate) fn template_json(template: &WhatsappTemplate) -> String {
    // Strings only: serializing cannot fail.
    serde_json::to_string(template).unwrap_or_default()
}

/// An account's figures as an accept starts from them.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AccountFigures {
    available: i64,
    daily_limit: i64,
    accepted_today: i64,
    any_opt_out: bool,
}

impl AccountFigures {
    /// (available balance, messages left today), as [`Batch::headroom`] answers them for a
    /// transaction that has accepted nothing yet.
    pub(crate) fn headroom(&self) -> (i64, i64) {
        (
            self.available,
            (self.daily_limit - self.accepted_today).max(0),
        )
    }
}

/// An idempotency record as stored.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct StoredKey {
    request_hash: Vec<u8>,
    response_status: i64,
    response_body: String,
}

/// The statements of the accept path, one per query file, run inside the caller's
/// transaction.
pub(crate) trait AcceptSql: DeliverySql {
    /// The account's figures on `day`; on a shared database also the lock that keeps them
    /// until the transaction ends.
    fn load_account(
        &mut self,
        account_id: &str,
        day: &str,
    ) -> impl Future<Output = sqlx::Result<Option<AccountFigures>>> + Send;
    /// Which of the numbers in the JSON array `phone_numbers` are on the account's opt-out
    /// list.
    fn opted_out(
        &mut self,
        account_id: &str,
        phone_numbers: String,
    ) -> impl Future<Output = sqlx::Result<Vec<String>>> + Send;
    fn find_key(
        &mut self,
        account_id: &str,
        key: &str,
        since: i64,
    ) -> impl Future<Output = sqlx::Result<Option<StoredKey>>> + Send;
    /// Writes what the batch accepted for one account: inserts `messages` (none when a
    /// campaign's fan-out inserted its own) with their `queued` history and status events,
    /// reserves `reserve` of the balance and counts `accepted` messages on `day`. One
    /// statement on PostgreSQL.
    fn write_accepted(
        &mut self,
        account_id: &str,
        messages: &[NewMessage],
        now: i64,
        day: &str,
        reserve: i64,
        accepted: i64,
    ) -> impl Future<Output = sqlx::Result<()>> + Send;
    fn store_key(
        &mut self,
        account_id: &str,
        key: &str,
        hash: &[u8],
        response: &StoredResponse,
        at: i64,
    ) -> impl Future<Output = sqlx::Result<()>> + Send;
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
    /// Numbers this transaction looked up on the account's opt-out list, and whether each
    /// was on it.
    screened: BTreeMap<String, bool>,
}

impl AccountState {
    /// Messages this transaction accepted for the account so far.
    fn accepted(&self) -> i64 {
        self.accepted.len() as i64 + self.accepted_elsewhere
    }
}

/// What the accepts of one transaction will write when it is flushed.
#[derive(Default)]
pub(crate) struct Batch {
    // Ordered, so the flush visits accounts in one order in every transaction.
    accounts: BTreeMap<AccountId, AccountState>,
    keys: BTreeMap<(AccountId, String), ([u8; 32], StoredResponse, Timestamp)>,
}

impl Batch {
    pub(crate) async fn add(
        &mut self,
        conn: &mut impl AcceptSql,
        request: AcceptRequest,
    ) -> StoreResult<AcceptOutcome> {
        let now = Timestamp::now();
        let AcceptRequest {
            account_id,
            idempotency,
            messages,
            render,
        } = request;

        if let Some(record) = &idempotency
            && let Some(earlier) = self.earlier_answer(conn, &account_id, record, now).await?
        {
            return Ok(earlier);
        }

        let opted_out = self.opted_out(conn, &account_id, &messages).await?;
        let mut outcomes = Vec::with_capacity(messages.len());
        for message in messages {
            let outcome = if opted_out.contains(&message.phone_number) {
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
        conn: &mut impl AcceptSql,
        account_id: &AccountId,
    ) -> StoreResult<&mut AccountState> {
        if !self.accounts.contains_key(account_id) {
            let row = conn
                .load_account(account_id.as_str(), &Timestamp::now().day())
                .await?
                .ok_or_else(|| StoreError::NoSuchAccount(account_id.to_string()))?;
            self.accounts.insert(
                account_id.clone(),
                AccountState {
                    available: row.available,
                    daily_limit: row.daily_limit,
                    accepted_today: row.accepted_today,
                    any_opt_out: row.any_opt_out,
                    screened: BTreeMap::new(),
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

    /// Loads the account's figures before any request of the batch is looked at: on
    /// PostgreSQL this locks its row, as `lock_account.sql` would, one statement earlier. An
    /// unknown account is left for its requests to answer.
    pub(crate) async fn load_first(
        &mut self,
        conn: &mut impl AcceptSql,
        account_id: &AccountId,
    ) -> StoreResult<()> {
        match self.account(conn, account_id).await {
            Ok(_) | Err(StoreError::NoSuchAccount(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// What the account can still take in this transaction: (available balance, messages
    /// left today).
    pub(crate) async fn headroom(
        &mut self,
        conn: &mut impl AcceptSql,
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
    pub(crate) fn reserve_elsewhere(&mut self, account_id: &AccountId, cost: i64, messages: i64) {
        if let Some(state) = self.accounts.get_mut(account_id) {
            state.reserve += cost;
            state.accepted_elsewhere += messages;
        }
    }

    /// The account just got an opt-out in this transaction: later accepts in it check for
    /// one (the cached "no opt-outs at all" no longer holds).
    pub(crate) fn note_opt_out(&mut self, account_id: &AccountId) {
        if let Some(state) = self.accounts.get_mut(account_id) {
            state.any_opt_out = true;
            state.screened.clear();
        }
    }

    /// Keeps `response` under the idempotency key, written with the rest at flush.
    pub(crate) fn remember(
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

    /// Looks up ahead, in one statement per account, the numbers (with their accounts) the
    /// requests of a writer's batch are about to send to, so that their accepts find them
    /// screened (a batch of a hundred single sends is one lookup, not a hundred). An account
    /// that cannot be read here is left to its requests, which then fail on it one by one.
    pub(crate) async fn screen_ahead(
        &mut self,
        conn: &mut impl AcceptSql,
        numbers: Vec<(&AccountId, &str)>,
    ) {
        let mut by_account: BTreeMap<&AccountId, Vec<&str>> = BTreeMap::new();
        for (account_id, number) in numbers {
            by_account.entry(account_id).or_default().push(number);
        }
        for (account_id, numbers) in by_account {
            // Looked up again, and failed if it must be, by the accepts themselves.
            let _ = self.screen(conn, account_id, numbers).await;
        }
    }

    /// Looks up on the account's opt-out list the `numbers` this transaction has not looked
    /// up yet, in one statement. Most accounts have no opt-out at all, and then this costs no
    /// lookup.
    async fn screen(
        &mut self,
        conn: &mut impl AcceptSql,
        account_id: &AccountId,
        numbers: Vec<&str>,
    ) -> StoreResult<()> {
        let state = self.account(conn, account_id).await?;
        if !state.any_opt_out {
            return Ok(());
        }
        let fresh: BTreeSet<&str> = numbers
            .into_iter()
            .filter(|n| !state.screened.contains_key(*n))
            .collect();
        if fresh.is_empty() {
            return Ok(());
        }
        let fresh: Vec<&str> = fresh.into_iter().collect();
        let found: BTreeSet<String> = conn
            .opted_out(account_id.as_str(), json_array(&fresh))
            .await?
            .into_iter()
            .collect();
        for number in fresh {
            state
                .screened
                .insert(number.to_owned(), found.contains(number));
        }
        Ok(())
    }

    /// Which of the messages' numbers opted out of the account (those not screened yet
    /// looked up in one statement: a bulk request's thousand numbers are one, not a
    /// thousand).
    async fn opted_out(
        &mut self,
        conn: &mut impl AcceptSql,
        account_id: &AccountId,
        messages: &[NewMessage],
    ) -> StoreResult<BTreeSet<String>> {
        let numbers = messages.iter().map(|m| m.phone_number.as_str()).collect();
        self.screen(conn, account_id, numbers).await?;
        let state = self.account(conn, account_id).await?;
        Ok(messages
            .iter()
            .filter(|m| state.screened.get(&m.phone_number) == Some(&true))
            .map(|m| m.phone_number.clone())
            .collect())
    }

    /// Accepts `message` if the daily limit and the available balance (after everything
    /// this transaction already accepted) allow it.
    pub(crate) async fn offer(
        &mut self,
        conn: &mut impl AcceptSql,
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

    /// What a request under `record`'s key was answered within the last 24 hours: replayed
    /// if it was the same request, a conflict if another one used the key.
    pub(crate) async fn earlier_answer(
        &self,
        conn: &mut impl AcceptSql,
        account_id: &AccountId,
        record: &IdempotencyRecord,
        now: Timestamp,
    ) -> StoreResult<Option<AcceptOutcome>> {
        let earlier = self.find_key(conn, account_id, &record.key, now).await?;
        Ok(earlier.map(|(hash, response)| {
            if hash == record.request_hash {
                AcceptOutcome::Replayed(response)
            } else {
                AcceptOutcome::Conflict
            }
        }))
    }

    pub(crate) async fn find_key(
        &self,
        conn: &mut impl AcceptSql,
        account_id: &AccountId,
        key: &str,
        now: Timestamp,
    ) -> StoreResult<Option<([u8; 32], StoredResponse)>> {
        if let Some((hash, response, _)) = self.keys.get(&(account_id.clone(), key.to_owned())) {
            return Ok(Some((*hash, response.clone())));
        }
        let row = conn
            .find_key(
                account_id.as_str(),
                key,
                now.minus(IDEMPOTENCY_TTL).millis(),
            )
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some((
            row.request_hash.try_into().unwrap_or([0; 32]),
            StoredResponse {
                status: u16::try_from(row.response_status).unwrap_or(500),
                body: row.response_body,
            },
        )))
    }

    /// Writes everything the batch accepted. Called once, just before the commit.
    pub(crate) async fn flush(self, conn: &mut impl AcceptSql) -> sqlx::Result<()> {
        let now = Timestamp::now();
        let day = now.day();
        for (account_id, state) in &self.accounts {
            if state.accepted() == 0 {
                continue;
            }
            conn.write_accepted(
                account_id.as_str(),
                &state.accepted,
                now.millis(),
                &day,
                state.reserve,
                state.accepted(),
            )
            .await?;
        }

        for ((account_id, key), (hash, response, at)) in &self.keys {
            conn.store_key(account_id.as_str(), key, &hash[..], response, at.millis())
                .await?;
        }
        Ok(())
    }
}
