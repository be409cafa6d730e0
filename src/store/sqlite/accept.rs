//! SQLite's statements for the accept rules (`store::accept`).

use super::pieces::pieces;
use crate::domain::MessageStatus;
use crate::store::accept::{AcceptSql, AccountFigures, StoredKey, template_json};
use crate::store::delivery::insert_events;
use crate::store::{NewMessage, StoredResponse};
use sqlx::QueryBuilder;
use sqlx::sqlite::{Sqlite, SqliteConnection};

/// Rows per INSERT: 21 parameters × 1,024 rows stays below SQLite's 32,766 variables.
/// Smaller batches are cut into powers of two (`pieces`).
const ROWS_PER_INSERT: usize = 1_024;

/// The column list of `insert_messages.sql`; the VALUES tuple is repeated per row.
fn insert_messages_prefix() -> &'static str {
    let sql = include_str!("queries/insert_messages.sql");
    sql.split("\nVALUES").next().unwrap_or(sql)
}

impl AcceptSql for SqliteConnection {
    async fn load_account(
        &mut self,
        account_id: &str,
        day: &str,
    ) -> sqlx::Result<Option<AccountFigures>> {
        sqlx::query_as(include_str!("queries/load_account_for_accept.sql"))
            .bind(account_id)
            .bind(day)
            .fetch_optional(self)
            .await
    }

    async fn opted_out(
        &mut self,
        account_id: &str,
        phone_numbers: String,
    ) -> sqlx::Result<Vec<String>> {
        sqlx::query_scalar(include_str!("queries/find_opted_out.sql"))
            .bind(account_id)
            .bind(phone_numbers)
            .fetch_all(self)
            .await
    }

    async fn find_key(
        &mut self,
        account_id: &str,
        key: &str,
        since: i64,
    ) -> sqlx::Result<Option<StoredKey>> {
        sqlx::query_as(include_str!("queries/find_idempotency_key.sql"))
            .bind(account_id)
            .bind(key)
            .bind(since)
            .fetch_optional(self)
            .await
    }

    async fn write_accepted(
        &mut self,
        account_id: &str,
        messages: &[NewMessage],
        now: i64,
        day: &str,
        reserve: i64,
        accepted: i64,
    ) -> sqlx::Result<()> {
        for chunk in pieces(messages, ROWS_PER_INSERT) {
            let mut insert = QueryBuilder::<Sqlite>::new(insert_messages_prefix());
            insert.push_values(chunk, |mut row, m| {
                row.push_bind(m.message_id.as_str())
                    .push_bind(account_id)
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
                    .push_bind(now)
                    .push_bind(now)
                    .push_bind(m.whatsapp_template.as_ref().map(template_json))
                    .push_bind(m.twilio_callback_signer.as_deref());
            });
            insert.build().execute(&mut *self).await?;
        }
        let history: Vec<(&str, &str, i64)> = messages
            .iter()
            .map(|m| (m.message_id.as_str(), account_id, now))
            .collect();
        insert_events(self, MessageStatus::Queued.as_str(), &history).await?;
        // Two statements, one command: one round trip to SQLite's thread, not two.
        sqlx::query(concat!(
            include_str!("queries/reserve_balance.sql"),
            include_str!("queries/count_accepted.sql"),
        ))
        .bind(account_id)
        .bind(reserve)
        .bind(now)
        .bind(day)
        .bind(accepted)
        .execute(self)
        .await?;
        Ok(())
    }

    async fn store_key(
        &mut self,
        account_id: &str,
        key: &str,
        hash: &[u8],
        response: &StoredResponse,
        at: i64,
    ) -> sqlx::Result<()> {
        sqlx::query(include_str!("queries/store_idempotency_key.sql"))
            .bind(account_id)
            .bind(key)
            .bind(hash)
            .bind(i64::from(response.status))
            .bind(response.body.as_str())
            .bind(at)
            .execute(self)
            .await?;
        Ok(())
    }
}
