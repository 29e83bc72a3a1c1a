//! How PostgreSQL puts a large write's statement in flight ([`crate::store::in_flight`]): a
//! task of its own sends the statement and waits for PostgreSQL while the caller makes the next
//! one. sqlx sends a statement and reads its answer only while its future is polled, and the
//! caller is busy making rows, not polling, so the future is not kept here as SQLite's is. A
//! writer dropped with a statement in flight leaves the task to finish it; the task then drops
//! the transaction, which rolls it back.

use sqlx::postgres::PgArguments;
use sqlx::{Execute, Postgres};

use super::PostgresStore;
use crate::store::in_flight::WriteConn;

impl WriteConn<PostgresStore> {
    /// Send `query`, whose answer is not needed: written before this returns or, when
    /// `in_flight`, written by a task of its own while the caller goes on.
    pub(super) async fn send<'q, E: Execute<'q, Postgres>>(
        &mut self,
        mut query: E,
        in_flight: bool,
    ) -> Result<(), sqlx::Error> {
        let arguments: PgArguments = query
            .take_arguments()
            .map_err(sqlx::Error::Encode)?
            .unwrap_or_default();
        let owned = sqlx::query_with::<Postgres, PgArguments>(query.sql(), arguments);
        if !in_flight {
            let tx = self.tx().await?;
            return owned.execute(&mut **tx).await.map(drop);
        }
        let mut tx = self.take().await?;
        let task = tokio::spawn(async move {
            let written = owned.execute(&mut *tx).await.map(drop);
            (tx, written)
        });
        self.in_flight(Box::pin(async move {
            match task.await {
                Ok((tx, written)) => (Some(tx), written),
                Err(failed) => (
                    None,
                    Err(sqlx::Error::Protocol(format!(
                        "a write's task failed: {failed}"
                    ))),
                ),
            }
        }));
        Ok(())
    }
}
