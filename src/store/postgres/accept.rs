//! PostgreSQL's statements for the accept rules (`store::accept`).

use crate::store::accept::{AcceptSql, AccountFigures, StoredKey, template_json};
use crate::store::{NewMessage, StoredResponse};
use sqlx::postgres::PgConnection;

impl AcceptSql for PgConnection {
    async fn load_account(
        &mut self,
        account_id: &str,
        day: &str,
    ) -> sqlx::Result<Option<AccountFigures>> {
        sqlx::query_as(concat!(
            include_str!("queries/account_figures.sql"),
            "FOR UPDATE OF a\n"
        ))
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
        fn column<T>(messages: &[NewMessage], f: impl Fn(&NewMessage) -> T) -> Vec<T> {
            messages.iter().map(f).collect()
        }
        sqlx::query(include_str!("queries/insert_messages.sql"))
            .bind(column(messages, |m| m.message_id.as_str().to_owned()))
            .bind(account_id)
            .bind(column(messages, |m| m.campaign_id.clone()))
            .bind(column(messages, |m| m.channel.as_str()))
            .bind(column(messages, |m| m.phone_number.clone()))
            .bind(column(messages, |m| m.sender_id.clone()))
            .bind(column(messages, |m| m.body.clone()))
            .bind(column(messages, |m| m.attachment_url.clone()))
            .bind(column(messages, |m| m.priority.rank()))
            .bind(column(messages, |m| i64::from(m.segments)))
            .bind(column(messages, |m| m.cost.units()))
            .bind(column(messages, |m| m.due_at.millis()))
            .bind(column(messages, |m| m.expires_at.millis()))
            .bind(column(messages, |m| m.status_callback.clone()))
            .bind(column(messages, |m| m.metadata.clone()))
            .bind(now)
            .bind(column(messages, |m| {
                m.whatsapp_template.as_ref().map(template_json)
            }))
            .bind(column(messages, |m| m.twilio_callback_signer.clone()))
            .bind(day)
            .bind(reserve)
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
