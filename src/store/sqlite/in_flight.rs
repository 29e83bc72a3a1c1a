//! How SQLite puts a large write's query in flight ([`crate::store::in_flight`]): the query is
//! handed to SQLite's driver thread, which writes it while the caller makes the next one.

use std::future::poll_fn;
use std::task::Poll;

use sqlx::sqlite::SqliteArguments;
use sqlx::{Execute, QueryBuilder, Sqlite};

use super::SqliteStore;
use crate::store::in_flight::{WriteConn, Writing};

impl WriteConn<SqliteStore> {
    /// Send what `query` holds: written before this returns or, when `in_flight`, handed to
    /// the driver and written while the caller goes on.
    pub(super) async fn send(
        &mut self,
        query: &mut QueryBuilder<Sqlite>,
        in_flight: bool,
    ) -> Result<(), sqlx::Error> {
        if !in_flight {
            let tx = self.tx().await?;
            return query.build().execute(&mut **tx).await.map(drop);
        }
        let mut built = query.build();
        let arguments = built
            .take_arguments()
            .map_err(sqlx::Error::Encode)?
            .unwrap_or_default();
        let sql = built.sql();
        let mut tx = self.take().await?;
        let mut writing: Writing<SqliteStore> = Box::pin(async move {
            let written = sqlx::query_with::<Sqlite, SqliteArguments>(sql, arguments)
                .execute(&mut *tx)
                .await
                .map(drop);
            (Some(tx), written)
        });
        // Polled once, the query reaches the driver's thread, which writes it from then on.
        match poll_fn(|cx| Poll::Ready(writing.as_mut().poll(cx))).await {
            Poll::Ready((tx, written)) => {
                self.idle(tx);
                written
            }
            Poll::Pending => {
                self.in_flight(writing);
                Ok(())
            }
        }
    }
}
