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
//! - at most [`ConnectionSettings::max_connections`] connections are served at once, and at
//!   most [`ConnectionSettings::max_connections_per_address`] from one client address; a
//!   connection beyond either gets one `ResourceExhausted` / `request_rate_limited` answer (HTTP
//!   429, `Retry-After`) and is closed, so a client learns why instead of hanging. Refusals are
//!   counted and logged at most once a second;
//! - a request head may not exceed [`MAX_HEAD_BYTES`] (hyper answers 431, or 414 for a request
//!   line too long, and closes the connection).
//!
//! Each request carries its client's [`ClientAddress`] in its extensions, for the limits the
//! service keeps per address.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
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
use crate::metrics::Metrics;

/// Limits of the connection layer.
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    /// Connections served at once; more are answered with `request_rate_limited` and closed.
    pub max_connections: usize,
    /// The HTTP status of that answer, as for the router's ([`HttpSettings::http_status`]).
    ///
    /// [`HttpSettings::http_status`]: super::HttpSettings::http_status
    pub http_status: HttpStatus,
    /// Connections served at once for one client address (an IPv6 address counts by its /64
    /// prefix); more are answered with HTTP 429 and closed.
    pub max_connections_per_address: usize,
    /// Time a client has to send a request head (and an idle kept-alive connection to send
    /// its next one).
    pub header_read_timeout: Duration,
    /// Longest pause allowed between two chunks of a request body.
    pub body_read_timeout: Duration,
    /// Time in-flight requests get to finish after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Where refused connections are counted (`None`: metrics off).
    pub metrics: Option<Arc<Metrics>>,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        ConnectionSettings {
            max_connections: 1024,
            http_status: HttpStatus::default(),
            max_connections_per_address: 128,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            metrics: None,
        }
    }
}

/// Connections refused with an answer at once; beyond this, extra connections are dropped
/// without one, so a flood cannot turn refusals into a resource of its own.
const MAX_REFUSALS_IN_FLIGHT: usize = 256;

/// The largest request head (request line and headers) read; the contract's documented limit.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The client of a request, as the connection layer saw it: the peer's address, IPv6 reduced
/// to its /64 prefix (one host usually holds a whole /64, so a finer key would let one client
/// pose as billions). Limits kept per client use it as their key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddress(pub IpAddr);

impl ClientAddress {
    pub fn of(peer: IpAddr) -> ClientAddress {
        match peer {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientAddress(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    ClientAddress(IpAddr::V6(Ipv6Addr::from(prefix)))
                }
            },
            v4 => ClientAddress(v4),
        }
    }
}

/// Connections open per client address.
#[derive(Default)]
struct PerAddress {
    open: Mutex<HashMap<ClientAddress, usize>>,
}

impl PerAddress {
    /// Count one more connection of `client` unless it already holds `limit`.
    fn try_open(self: &Arc<Self>, client: ClientAddress, limit: usize) -> Option<AddressSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(client).or_default();
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            counts: self.clone(),
            client,
        })
    }
}

/// One open connection of a client; dropping it frees the slot.
struct AddressSlot {
    counts: Arc<PerAddress>,
    client: ClientAddress,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.counts.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.client);
            }
        }
    }
}

/// What a connection holds until it closes: its place among the served connections and its
/// address's (`slot`), or among the refused ones.
struct Held {
    _permit: OwnedSemaphorePermit,
    _slot: Option<AddressSlot>,
}

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
    // Refusals are counted as such, not as requests.
    let refusal = TowerToHyperService::new(with_envelope(
        Router::new().fallback(too_many_connections),
        settings.http_status,
        None,
    ));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_header_size(MAX_HEAD_BYTES)
        .max_buf_size(MAX_HEAD_BYTES);
    let mut refusing = http.clone();
    refusing.keep_alive(false);

    let served = Arc::new(Semaphore::new(settings.max_connections.max(1)));
    let per_address = Arc::new(PerAddress::default());
    let refused = Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT));
    let mut refusals = RefusalLog::default();
    let mut report = tokio::time::interval(Duration::from_secs(1));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = report.tick() => {
                refusals.report(&settings);
                continue;
            }
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let client = ClientAddress::of(peer.ip());
        let admitted = served.clone().try_acquire_owned().ok().and_then(|permit| {
            per_address
                .try_open(client, settings.max_connections_per_address.max(1))
                .map(|slot| Held {
                    _permit: permit,
                    _slot: Some(slot),
                })
        });
        let io = TokioIo::new(stream);
        if let Some(held) = admitted {
            let app = app.clone();
            let service = hyper::service::service_fn(move |mut request| {
                request.extensions_mut().insert(client);
                hyper::service::Service::call(&app, request)
            });
            let connection = graceful.watch(http.serve_connection(io, service));
            tokio::spawn(hold_until_done(connection, held));
            continue;
        }
        refusals.count(client);
        if let Some(metrics) = &settings.metrics {
            metrics.connection_refused();
        }
        let Ok(permit) = refused.clone().try_acquire_owned() else {
            continue;
        };
        let held = Held {
            _permit: permit,
            _slot: None,
        };
        let connection = graceful.watch(refusing.serve_connection(io, refusal.clone()));
        tokio::spawn(hold_until_done(connection, held));
    }
    drop(listener);
    if tokio::time::timeout(settings.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still open after the shutdown grace");
    }
}

/// Refused connections since the last report, logged at most once a second so that a flood
/// of connections cannot become a flood of log lines.
#[derive(Default)]
struct RefusalLog {
    refused: u64,
    /// Refusals per address since the last report (at most [`Self::ADDRESSES`] addresses).
    clients: HashMap<ClientAddress, u64>,
}

impl RefusalLog {
    /// Most addresses remembered between two reports.
    const ADDRESSES: usize = 1024;

    fn count(&mut self, client: ClientAddress) {
        self.refused += 1;
        if self.clients.len() < Self::ADDRESSES || self.clients.contains_key(&client) {
            *self.clients.entry(client).or_default() += 1;
        }
    }

    fn report(&mut self, settings: &ConnectionSettings) {
        if self.refused == 0 {
            return;
        }
        let top = self.clients.iter().max_by_key(|(_, count)| **count);
        let (top_address, top_refused) =
            top.map_or((None, 0), |(client, count)| (Some(client.0), *count));
        tracing::warn!(
            refused = self.refused,
            addresses = self.clients.len(),
            top_address = ?top_address,
            top_refused,
            max_connections = settings.max_connections,
            max_connections_per_address = settings.max_connections_per_address,
            "connection limit reached; connections refused in the last second"
        );
        self.refused = 0;
        self.clients.clear();
    }
}

async fn hold_until_done<E>(connection: impl Future<Output = Result<(), E>>, _held: Held) {
    // Errors here are the client's (reset, timeout, bad framing): nothing to report.
    let _ = connection.await;
}

async fn too_many_connections() -> ApiError {
    ApiError::too_many_connections()
}
