//! The writing connection of a large write (a sync's chunks, the registration of its users),
//! which may leave one query in flight: it hands each query to SQLite's driver thread and makes
//! the next one meanwhile, rather than waiting for every query to be written before making the
//! next. The next query sent, or any use of the transaction, waits for the one in flight first,
//! so the queries run in the order sent, one at a time, and the first to fail stops the rest.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::Poll;

use sqlx::sqlite::SqliteArguments;
use sqlx::{Execute, QueryBuilder, Sqlite};

use super::SqliteStore;
use crate::store::backend::Tx;
use crate::store::{StoreError, StoreResult};

/// A query being written, which hands the transaction back with its outcome.
type Writing = Pin<Box<dyn Future<Output = (Tx<SqliteStore>, Result<(), sqlx::Error>)> + Send>>;

/// The transaction of a write, idle or with one query in flight: exactly one of the two fields
/// holds it between calls.
pub(super) struct WriteConn {
    idle: Option<Tx<SqliteStore>>,
    writing: Option<Writing>,
}

impl WriteConn {
    pub(super) fn new(tx: Tx<SqliteStore>) -> WriteConn {
        WriteConn {
            idle: Some(tx),
            writing: None,
        }
    }

    /// The transaction, once the query in flight (if any) is written; its failure is answered
    /// instead, and the transaction kept for the caller to undo the write.
    pub(super) async fn tx(&mut self) -> Result<&mut Tx<SqliteStore>, sqlx::Error> {
        self.settle().await?;
        self.idle.as_mut().ok_or_else(gone)
    }

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
        self.settle().await?;
        let mut tx = self.idle.take().ok_or_else(gone)?;
        let mut writing: Writing = Box::pin(async move {
            let written = sqlx::query_with::<Sqlite, SqliteArguments>(sql, arguments)
                .execute(&mut *tx)
                .await
                .map(drop);
            (tx, written)
        });
        // Polled once, the query reaches the driver's thread, which writes it from then on.
        match poll_fn(|cx| Poll::Ready(writing.as_mut().poll(cx))).await {
            Poll::Ready((tx, written)) => {
                self.idle = Some(tx);
                written
            }
            Poll::Pending => {
                self.writing = Some(writing);
                Ok(())
            }
        }
    }

    /// The transaction back, once the query in flight (if any) is written; when that query
    /// fails, the transaction is given up with it (rolled back as it is dropped).
    pub(super) async fn finish(mut self) -> StoreResult<Tx<SqliteStore>> {
        self.settle().await?;
        self.idle.ok_or(StoreError::BatchFailed)
    }

    /// Wait for the query in flight, if any; its failure is answered, the transaction kept.
    pub(super) async fn settle(&mut self) -> Result<(), sqlx::Error> {
        if let Some(writing) = self.writing.take() {
            let (tx, written) = writing.await;
            self.idle = Some(tx);
            written?;
        }
        Ok(())
    }
}

/// Neither idle nor in flight: only a call of this module that lost the transaction, which none
/// does, would leave it so.
fn gone() -> sqlx::Error {
    sqlx::Error::Protocol("the write's transaction is gone".into())
}
