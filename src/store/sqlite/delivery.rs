//! SQLite's statements for the delivery rules (`store::delivery`).

use crate::domain::MessageStatus;
use crate::store::ClaimToken;
use crate::store::delivery::{
    ClaimRow, DeliverySql, DueLanes, HeldReceipt, ReceiptMove, Retry, SentRow, UnsentRow,
    insert_events, settlements,
};
use sqlx::sqlite::SqliteConnection;

impl DeliverySql for SqliteConnection {
    async fn due_lanes(&mut self, now: i64) -> sqlx::Result<DueLanes> {
        sqlx::query_as(include_str!("queries/due_lanes.sql"))
            .bind(now)
            .fetch_one(self)
            .await
    }

    async fn claim_lane(
        &mut self,
        lease_until: i64,
        instance_id: &str,
        now: i64,
        rank: i64,
        quota: i64,
    ) -> sqlx::Result<Vec<ClaimRow>> {
        sqlx::query_as(include_str!("queries/claim_lane.sql"))
            .bind(lease_until)
            .bind(instance_id)
            .bind(now)
            .bind(rank)
            .bind(quota)
            .fetch_all(self)
            .await
    }

    async fn insert_status_events(
        &mut self,
        events: String,
        status: &'static str,
    ) -> sqlx::Result<()> {
        // The events first: each is written only where the history does not hold the status
        // yet, which the history insert then changes. Two statements, one command: one round
        // trip to SQLite's thread, not two (both read ?1 and ?2).
        sqlx::query(concat!(
            include_str!("queries/insert_message_events.sql"),
            include_str!("queries/insert_status_events.sql"),
        ))
        .bind(events)
        .bind(status)
        .execute(self)
        .await?;
        Ok(())
    }

    async fn claimed_opted_out(&mut self, ids: String) -> sqlx::Result<Vec<String>> {
        sqlx::query_scalar(include_str!("queries/claimed_opted_out.sql"))
            .bind(ids)
            .fetch_all(self)
            .await
    }

    async fn campaign_states(&mut self, ids: String) -> sqlx::Result<Vec<(String, String)>> {
        sqlx::query_as(include_str!("queries/campaign_states.sql"))
            .bind(ids)
            .fetch_all(self)
            .await
    }

    async fn park_claim(&mut self, id: &str, held: i64, now: i64) -> sqlx::Result<()> {
        sqlx::query(include_str!("queries/park_claim.sql"))
            .bind(id)
            .bind(held)
            .bind(now)
            .execute(self)
            .await?;
        Ok(())
    }

    async fn schedule_retry(
        &mut self,
        id: &str,
        claim: ClaimToken,
        retry: Retry,
        now: i64,
    ) -> sqlx::Result<()> {
        sqlx::query(include_str!("queries/schedule_retry.sql"))
            .bind(id)
            .bind(retry.due_at.millis())
            .bind(retry.error_code)
            .bind(retry.error_message)
            .bind(now)
            .bind(claim.value())
            .bind(retry.bound_to)
            .bind(retry.in_doubt_since.map(|at| at.millis()))
            .execute(self)
            .await?;
        Ok(())
    }

    async fn mark_unsent(
        &mut self,
        id: &str,
        status: &'static str,
        error_code: String,
        error_message: String,
        at: i64,
        claim: ClaimToken,
    ) -> sqlx::Result<Option<UnsentRow>> {
        sqlx::query_as(include_str!("queries/mark_unsent.sql"))
            .bind(id)
            .bind(status)
            .bind(error_code)
            .bind(error_message)
            .bind(at)
            .bind(claim.value())
            .fetch_optional(self)
            .await
    }

    async fn hold_claim(
        &mut self,
        id: &str,
        held: i64,
        now: i64,
        claim: ClaimToken,
    ) -> sqlx::Result<()> {
        sqlx::query(include_str!("queries/hold_claim.sql"))
            .bind(id)
            .bind(held)
            .bind(now)
            .bind(claim.value())
            .execute(self)
            .await?;
        Ok(())
    }

    async fn release_claim(&mut self, id: &str, now: i64, claim: ClaimToken) -> sqlx::Result<()> {
        sqlx::query(include_str!("queries/release_claim.sql"))
            .bind(id)
            .bind(now)
            .bind(claim.value())
            .execute(self)
            .await?;
        Ok(())
    }

    async fn mark_sent(&mut self, sent: String, now: i64, day: &str) -> sqlx::Result<()> {
        let rows: Vec<SentRow> = sqlx::query_as(include_str!("queries/mark_sent.sql"))
            .bind(sent)
            .fetch_all(&mut *self)
            .await?;
        let entries: Vec<_> = rows.iter().map(SentRow::history_entry).collect();
        insert_events(self, MessageStatus::Sent.as_str(), &entries).await?;
        for (account_id, charge) in settlements(&rows) {
            // Three statements, one command: one round trip to SQLite's thread, not three.
            sqlx::query(concat!(
                include_str!("queries/settle_balance.sql"),
                include_str!("queries/record_charge.sql"),
                include_str!("queries/count_sent.sql"),
            ))
            .bind(account_id)
            .bind(charge.charged)
            .bind(now)
            .bind(charge.messages)
            .bind(day)
            .execute(&mut *self)
            .await?;
        }
        Ok(())
    }

    async fn release_reservation(
        &mut self,
        account_id: &str,
        released: i64,
        now: i64,
    ) -> sqlx::Result<()> {
        sqlx::query(include_str!("queries/release_reservation.sql"))
            .bind(released)
            .bind(now)
            .bind(account_id)
            .execute(self)
            .await?;
        Ok(())
    }

    async fn take_pending_receipts(
        &mut self,
        provider: &str,
        references: String,
    ) -> sqlx::Result<Vec<HeldReceipt>> {
        sqlx::query_as(include_str!("queries/take_pending_receipts.sql"))
            .bind(provider)
            .bind(references)
            .fetch_all(self)
            .await
    }

    async fn apply_status_update(
        &mut self,
        provider: &str,
        status: &'static str,
        payload: String,
        allowed: String,
    ) -> sqlx::Result<Vec<ReceiptMove>> {
        let rows: Vec<ReceiptMove> =
            sqlx::query_as(include_str!("queries/apply_status_update.sql"))
                .bind(provider)
                .bind(status)
                .bind(payload)
                .bind(allowed)
                .fetch_all(&mut *self)
                .await?;
        let entries: Vec<_> = rows.iter().map(ReceiptMove::history_entry).collect();
        insert_events(self, status, &entries).await?;
        Ok(rows)
    }

    async fn find_by_provider_refs(
        &mut self,
        provider: &str,
        references: String,
    ) -> sqlx::Result<Vec<String>> {
        sqlx::query_scalar(include_str!("queries/find_by_provider_refs.sql"))
            .bind(provider)
            .bind(references)
            .fetch_all(self)
            .await
    }

    async fn hold_pending_receipts(
        &mut self,
        provider: &str,
        held: String,
        now: i64,
    ) -> sqlx::Result<()> {
        sqlx::query(include_str!("queries/hold_pending_receipts.sql"))
            .bind(provider)
            .bind(held)
            .bind(now)
            .execute(self)
            .await?;
        Ok(())
    }

    async fn guard_receipt_hand_over(&mut self) -> sqlx::Result<bool> {
        // One writer: nothing can commit between our look and our hold.
        Ok(false)
    }
}
