//! Low-volume writes: accounts, keys, worker heartbeats and housekeeping. They go through the
//! writer like everything else so they never fight it for SQLite's lock.

use super::writer::Maintenance;
use crate::domain::Timestamp;
use crate::store::{StoreError, StoreResult};
use sqlx::sqlite::SqliteConnection;

pub(super) async fn run(conn: &mut SqliteConnection, m: Maintenance) -> StoreResult<u64> {
    let now = Timestamp::now();
    match m {
        Maintenance::CreateAccount(account, account_id) => {
            let taken = sqlx::query(include_str!("queries/find_account_by_name.sql"))
                .bind(&account.name)
                .fetch_optional(&mut *conn)
                .await?;
            if taken.is_some() {
                return Err(StoreError::AccountExists(account.name));
            }
            sqlx::query(include_str!("queries/insert_account.sql"))
                .bind(account_id.as_str())
                .bind(&account.name)
                .bind(&account.currency)
                .bind(account.balance.units())
                .bind(account.daily_limit)
                .bind(now.millis())
                .bind(crate::events::new_secret())
                .execute(&mut *conn)
                .await?;
            if account.balance.units() != 0 {
                sqlx::query(include_str!("queries/record_credit.sql"))
                    .bind(account_id.as_str())
                    .bind(account.balance.units())
                    .bind(now.millis())
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(1)
        }
        Maintenance::InsertApiKey {
            api_key_id,
            account_id,
            key_hash,
        } => {
            let done = sqlx::query(include_str!("queries/insert_api_key.sql"))
                .bind(api_key_id.as_str())
                .bind(account_id.as_str())
                .bind(&key_hash[..])
                .bind(now.millis())
                .execute(&mut *conn)
                .await?;
            Ok(done.rows_affected())
        }
        Maintenance::Heartbeat { instance_id, lease } => {
            sqlx::query(include_str!("queries/record_heartbeat.sql"))
                .bind(&instance_id)
                .bind(now.millis())
                .execute(&mut *conn)
                .await?;
            let renewed = sqlx::query(include_str!("queries/renew_leases.sql"))
                .bind(&instance_id)
                .bind(now.plus(lease).millis())
                .execute(&mut *conn)
                .await?;
            Ok(renewed.rows_affected())
        }
        Maintenance::ReleaseOrphans(stale_after) => {
            let cutoff = now.minus(stale_after).millis();
            let released = sqlx::query(include_str!("queries/release_orphans.sql"))
                .bind(cutoff)
                .bind(now.millis())
                .execute(&mut *conn)
                .await?
                .rows_affected();
            sqlx::query(include_str!("queries/forget_dead_workers.sql"))
                .bind(cutoff)
                .execute(&mut *conn)
                .await?;
            Ok(released)
        }
        Maintenance::PurgeIdempotency(max_age) => {
            let done = sqlx::query(include_str!("queries/purge_idempotency_keys.sql"))
                .bind(now.minus(max_age).millis())
                .execute(&mut *conn)
                .await?;
            Ok(done.rows_affected())
        }
        Maintenance::PurgePendingReceipts(max_age) => {
            let done = sqlx::query(include_str!("queries/purge_pending_receipts.sql"))
                .bind(now.minus(max_age).millis())
                .execute(&mut *conn)
                .await?;
            Ok(done.rows_affected())
        }
        Maintenance::FoldTallies { from, to, counts } => {
            // The cursor is the fence: a fold that lost the race adds nothing.
            let moved = sqlx::query(include_str!("queries/move_tally_cursor.sql"))
                .bind(from)
                .bind(to)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            if moved == 1 {
                sqlx::query(include_str!("queries/fold_tallies.sql"))
                    .bind(counts)
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(moved)
        }
        Maintenance::PurgeTallies(minutes_before, hours_before) => {
            let done = sqlx::query(include_str!("queries/purge_tallies.sql"))
                .bind(minutes_before)
                .bind(hours_before)
                .execute(&mut *conn)
                .await?;
            Ok(done.rows_affected())
        }
    }
}
