//! The connection of a large write (a sync's chunks, SQLite's registration of its users), which
//! may leave one query in flight: the query is written while the caller makes the next one,
//! rather than the caller waiting for every query to be written before making the next. The
//! next query sent, or any use of the transaction, waits for the one in flight first, so the
//! queries run in the order sent, one at a time, and the first to fail stops the rest.
//!
//! How a query is put in flight is the backend's (`send`, in `sqlite::in_flight` and
//! `postgres::in_flight`): SQLite hands it to its driver's thread, PostgreSQL to a task of its
//! own.

use std::future::Future;
use std::pin::Pin;

use super::backend::{Backend, Tx};

/// A query being written, which hands the transaction back with its outcome (`None`: lost
/// with the task that wrote it, which failed).
pub(crate) type Writing<B> =
    Pin<Box<dyn Future<Output = (Option<Tx<B>>, Result<(), sqlx::Error>)> + Send>>;

/// The transaction of a write, idle or with one query in flight: exactly one of the two fields
/// holds it between calls.
pub(crate) struct WriteConn<B: Backend> {
    idle: Option<Tx<B>>,
    writing: Option<Writing<B>>,
}

impl<B: Backend> WriteConn<B> {
    pub(crate) fn new(tx: Tx<B>) -> WriteConn<B> {
        WriteConn {
            idle: Some(tx),
            writing: None,
        }
    }

    /// The transaction, once the query in flight (if any) is written; its failure is answered
    /// instead, and the transaction kept for the caller to undo the write.
    pub(crate) async fn tx(&mut self) -> Result<&mut Tx<B>, sqlx::Error> {
        self.settle().await?;
        self.idle.as_mut().ok_or_else(gone)
    }

    /// The transaction, taken to be put in flight ([`WriteConn::in_flight`]) or handed back
    /// ([`WriteConn::idle`]), once the query in flight (if any) is written.
    pub(crate) async fn take(&mut self) -> Result<Tx<B>, sqlx::Error> {
        self.settle().await?;
        self.idle.take().ok_or_else(gone)
    }

    /// The transaction taken is idle again (`None`: lost, as [`Writing`] says).
    pub(crate) fn idle(&mut self, tx: Option<Tx<B>>) {
        self.idle = tx;
    }

    /// The transaction taken is writing a query.
    pub(crate) fn in_flight(&mut self, writing: Writing<B>) {
        self.writing = Some(writing);
    }

    /// The transaction back, once the query in flight (if any) is written; when that query
    /// fails, the transaction is given up with it (rolled back as it is dropped).
    pub(crate) async fn finish(mut self) -> Result<Tx<B>, sqlx::Error> {
        self.take().await
    }

    /// Wait for the query in flight, if any; its failure is answered, the transaction kept.
    pub(crate) async fn settle(&mut self) -> Result<(), sqlx::Error> {
        if let Some(writing) = self.writing.take() {
            let (tx, written) = writing.await;
            self.idle(tx);
            written?;
        }
        Ok(())
    }
}

/// Neither idle nor in flight: only a task that failed while writing a query, or a call of a
/// backend's `send` that lost the transaction, which none does, would leave it so.
fn gone() -> sqlx::Error {
    sqlx::Error::Protocol("the write's transaction is gone".into())
}
