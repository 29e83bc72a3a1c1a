//! The connection layer under the router: accepting TCP connections, HTTP/1.1 framing, and
//! the limits that keep one slow or greedy client from holding the server.
//!
//! `axum::serve` has no header-read timeout and no connection limit, so connections are served
//! here with hyper directly:
//! - a client gets [`ConnectionSettings::header_read_timeout`] to send each request head,
//!   including the wait for the next request on a kept-alive connection; after that the
//!   connection is closed;
//! - a request body that stalls for [`ConnectionSettings::body_read_timeout`] between two
//!   chunks fails the request (`InvalidArgument`: the body could not be read);
//! - at most [`ConnectionSettings::max_connections`] connections are served at once; a
//!   connection beyond that gets one `ResourceExhausted` / `request_rate_limited` answer (HTTP
//!   429, `Retry-After`) and is closed, so a client learns why instead of hanging.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower_http::timeout::RequestBodyTimeoutLayer;

use super::envelope::{ApiError, HttpStatus};
use super::with_envelope;

/// Limits of the connection layer.
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    /// Connections served at once; more are answered with `request_rate_limited` and closed.
    pub max_connections: usize,
    /// The HTTP status of that answer, as for the router's ([`HttpSettings::http_status`]).
    ///
    /// [`HttpSettings::http_status`]: super::HttpSettings::http_status
    pub http_status: HttpStatus,
    /// Time a client has to send a request head (and an idle kept-alive connection to send
    /// its next one).
    pub header_read_timeout: Duration,
    /// Longest pause allowed between two chunks of a request body.
    pub body_read_timeout: Duration,
    /// Time in-flight requests get to finish after a shutdown signal.
    pub shutdown_grace: Duration,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        ConnectionSettings {
            max_connections: 1024,
            http_status: HttpStatus::default(),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Connections refused with an answer at once; beyond this, extra connections are dropped
/// without one, so a flood cannot turn refusals into a resource of its own.
const MAX_REFUSALS_IN_FLIGHT: usize = 256;

/// Serve `router` on `listener` under `settings` until `shutdown` resolves, then let in-flight
/// requests finish (for at most the shutdown grace).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    settings: ConnectionSettings,
    shutdown: impl Future<Output = ()>,
) {
    let app = TowerToHyperService::new(
        router.layer(RequestBodyTimeoutLayer::new(settings.body_read_timeout)),
    );
    let refusal = TowerToHyperService::new(with_envelope(
        Router::new().fallback(too_many_connections),
        settings.http_status,
    ));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout);
    let mut refusing = http.clone();
    refusing.keep_alive(false);

    let served = Arc::new(Semaphore::new(settings.max_connections.max(1)));
    let refused = Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (builder, service, permit) = match served.clone().try_acquire_owned() {
            Ok(permit) => (&http, app.clone(), permit),
            Err(_) => match refused.clone().try_acquire_owned() {
                Ok(permit) => {
                    tracing::warn!(
                        max_connections = settings.max_connections,
                        "connection limit reached; refusing a connection"
                    );
                    (&refusing, refusal.clone(), permit)
                }
                Err(_) => continue,
            },
        };
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(hold_until_done(connection, permit));
    }
    drop(listener);
    if tokio::time::timeout(settings.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still open after the shutdown grace");
    }
}

async fn hold_until_done<E>(
    connection: impl Future<Output = Result<(), E>>,
    _permit: OwnedSemaphorePermit,
) {
    // Errors here are the client's (reset, timeout, bad framing): nothing to report.
    let _ = connection.await;
}

async fn too_many_connections() -> ApiError {
    ApiError::too_many_connections()
}
