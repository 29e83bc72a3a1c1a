//! The delivery worker (§11): finds subscriptions with undelivered events, leases them, and
//! posts each one's next batch of events, signed, to its URL.
//!
//! One dispatcher per process claims due subscriptions (a lease in the database, so that
//! processes sharing it never deliver for the same subscription at once) up to the free
//! worker slots, the one waiting longest first, and at most `workers_per_team` per team, so one
//! tenant's slow or dead receivers cannot hold every slot. Each delivery runs in its own task
//! and releases its slot when done; the dispatcher claims again when this process commits a
//! change, when a delivery ends, and every `poll` (for other processes' commits and retries
//! coming due). Nothing of this runs on the requests' path: API calls only wake the dispatcher.
//!
//! A batch holds the events after the subscription's cursor, in order, up to a count and a
//! size. Events of resources the subscription does not listen to are skipped, but still move
//! the cursor. A 2xx answer moves the cursor past the batch, in a transaction that checks the
//! lease is still held and nobody replayed meanwhile; anything else schedules a retry after
//! an exponential back-off with jitter, and once failures have lasted the retry budget the
//! subscription is paused with its last error, until a client resumes it.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, Semaphore};

use super::guard::{VettedResolver, refuse_literal};
use super::{WebhookSettings, sign};
use crate::domain::events::Event;
use crate::domain::values::EventSeq;
use crate::domain::webhooks::{DeliveryRecord, WebhookState, backoff};
use crate::service::Service;
use crate::store::webhooks::{Attempt, Claim, Claimed, Progress};

/// An event as JSON, the way the feed shows it (the HTTP layer's rendering).
pub type RenderEvent = Arc<dyn Fn(Event) -> Result<String, String> + Send + Sync>;

/// The most bytes of a receiver's answer that are read (the rest is ignored).
const MAX_ANSWER_BYTES: usize = 4096;
/// The most characters of an error kept in `last_error` and the log.
const MAX_ERROR_CHARS: usize = 300;
/// How long a lease outlives the receiver's time to answer.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// Delivers the events of every subscription, for as long as the process serves.
pub struct WebhookWorker {
    service: Arc<Service>,
    client: reqwest::Client,
    render: RenderEvent,
    /// This process's name on the leases it takes.
    owner: String,
    settings: WebhookSettings,
}

impl WebhookWorker {
    pub fn new(service: Arc<Service>, render: RenderEvent) -> Result<WebhookWorker, String> {
        // Several workers (tests) may install it; the first one wins, and all are the same.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let settings = service.settings.webhooks.clone();
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(VettedResolver {
                allow_private: settings.allow_private,
            }))
            .user_agent(concat!("contactsd-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| format!("cannot build the webhook HTTP client: {error}"))?;
        Ok(WebhookWorker {
            service,
            client,
            render,
            owner: uuid::Uuid::new_v4().to_string(),
            settings,
        })
    }

    /// Claim and deliver forever.
    pub async fn run(self) {
        let worker = Arc::new(self);
        let slots = Arc::new(Semaphore::new(worker.settings.workers.max(1)));
        let finished = Arc::new(Notify::new());
        let lease_ms = millis(worker.settings.timeout + LEASE_MARGIN);
        loop {
            // Registered before the claim: a commit during it is not missed.
            let committed = worker.service.directories.any_commit();
            let free = slots.available_permits();
            if free > 0 {
                let claimed = worker
                    .service
                    .store
                    .claim_webhooks(&Claim {
                        owner: &worker.owner,
                        now: now_ms(),
                        lease_ms,
                        limit: free as i64,
                        per_team: worker.settings.workers_per_team as i64,
                    })
                    .await;
                match claimed {
                    Ok(claimed) => {
                        for one in claimed {
                            let Ok(slot) = slots.clone().try_acquire_owned() else {
                                break;
                            };
                            let (worker, finished) = (worker.clone(), finished.clone());
                            tokio::spawn(async move {
                                worker.deliver(one).await;
                                drop(slot);
                                finished.notify_one();
                            });
                        }
                    }
                    Err(error) => tracing::warn!(%error, "claiming webhook deliveries failed"),
                }
            }
            tokio::select! {
                () = committed => {}
                () = finished.notified() => {}
                () = tokio::time::sleep(worker.settings.poll) => {}
            }
        }
    }

    /// One attempt for a leased subscription; its outcome is stored, never returned.
    async fn deliver(&self, claimed: Claimed) {
        let webhook = &claimed.webhook;
        let (progress, record) = match self.batch(&claimed).await {
            Err(NoBatch::Unread(error)) => {
                // Not the receiver's doing: try again at the next poll, as it was.
                tracing::warn!(webhook = webhook.id.get(), %error, "reading events to deliver failed");
                (self.unchanged(&claimed), None)
            }
            Err(NoBatch::Expired { last_seq }) => (self.expired(&claimed, last_seq), None),
            Ok(batch) => self.attempt(&claimed, &batch).await,
        };
        let attempt = Attempt {
            id: webhook.id,
            owner: &self.owner,
            from_seq: webhook.acked_seq,
            progress,
            record,
            keep: self.settings.keep_deliveries,
        };
        let stored = self.service.store.finish_attempt(&attempt).await;
        if let Err(error) = stored {
            tracing::warn!(webhook = webhook.id.get(), %error, "recording a webhook attempt failed");
        }
    }

    /// Post the batch, if it holds anything to post; answers where the subscription stands.
    async fn attempt(
        &self,
        claimed: &Claimed,
        batch: &Batch,
    ) -> (Progress, Option<DeliveryRecord>) {
        if batch.body.is_none() {
            // Nothing to post: only events the subscription does not listen to (or none).
            return (self.success(batch.last_seq), None);
        }
        let (record, outcome) = self.post(claimed, batch).await;
        let progress = match outcome {
            Ok(()) => self.success(batch.last_seq),
            Err(error) => self.failure(claimed, error),
        };
        (progress, Some(record))
    }

    /// The next events after the cursor, and the body to post if any of them is listened to.
    async fn batch(&self, claimed: &Claimed) -> Result<Batch, NoBatch> {
        let webhook = &claimed.webhook;
        let page = self
            .service
            .store
            .events(
                webhook.team_id,
                webhook.acked_seq,
                self.settings.batch_events,
            )
            .await
            .map_err(|error| NoBatch::Unread(error.to_string()))?
            .ok_or_else(|| NoBatch::Unread("the team no longer exists".to_owned()))?;
        if webhook.acked_seq < page.pruned_through {
            return Err(NoBatch::Expired {
                last_seq: page.last_seq,
            });
        }
        let mut batch = Batch {
            last_seq: webhook.acked_seq,
            ..Batch::default()
        };
        let mut events = String::new();
        for event in page.events {
            let (seq, time) = (event.seq, event.time);
            if webhook.listened.hears(&event.event_type) {
                let json = (self.render)(event).map_err(NoBatch::Unread)?;
                if batch.count > 0 && events.len() + json.len() > self.settings.batch_bytes {
                    break;
                }
                events.push(if batch.count == 0 { '[' } else { ',' });
                events.push_str(&json);
                batch.first_seq.get_or_insert(seq);
                batch.first_time.get_or_insert(time);
                batch.count += 1;
            }
            batch.last_seq = seq;
        }
        if batch.count > 0 {
            batch.body = Some(format!(
                "{{\"webhook_id\":{},\"team_id\":{},\"events\":{events}]}}",
                webhook.id, webhook.team_id
            ));
        }
        Ok(batch)
    }

    /// Post a batch; answers the attempt as logged, and why it failed.
    async fn post(&self, claimed: &Claimed, batch: &Batch) -> (DeliveryRecord, Result<(), String>) {
        let webhook = &claimed.webhook;
        let body = batch.body.clone().unwrap_or_default();
        let delivery_id = uuid::Uuid::new_v4().to_string();
        let timestamp = now_ms() / 1000;
        let started = Instant::now();
        let time = now_ms();
        let outcome = match url::Url::parse(&webhook.url) {
            Err(_) => Err((None, "the URL is no longer valid".to_owned())),
            Ok(url) => match refuse_literal(&url, self.settings.allow_private) {
                Some(refused) => Err((None, refused.to_owned())),
                None => {
                    self.send(url, &delivery_id, timestamp, body, &webhook.secret)
                        .await
                }
            },
        };
        let (status, error) = match &outcome {
            Ok(status) => (Some(*status), None),
            Err((status, error)) => (*status, Some(error.clone())),
        };
        if let Some(metrics) = self.service.metrics() {
            let acknowledged = outcome.is_ok().then(|| {
                let committed_ms = batch.first_time.map_or(time, |seconds| seconds * 1000);
                Duration::from_millis(u64::try_from(now_ms() - committed_ms).unwrap_or(0))
            });
            metrics.webhook_delivery(started.elapsed(), acknowledged);
        }
        let record = DeliveryRecord {
            delivery_id,
            time,
            first_seq: batch.first_seq.unwrap_or(batch.last_seq),
            last_seq: batch.last_seq,
            events: batch.count,
            status,
            latency_ms: millis(started.elapsed()),
            error,
        };
        (record, outcome.map(|_| ()).map_err(|(_, error)| error))
    }

    /// The request itself: the receiver's status on a 2xx, else the status (if any) and why.
    async fn send(
        &self,
        url: url::Url,
        delivery_id: &str,
        timestamp: i64,
        body: String,
        secret: &str,
    ) -> Result<i64, (Option<i64>, String)> {
        let signature = sign::signature(secret, timestamp, body.as_bytes());
        let sent = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("x-contactsd-delivery", delivery_id)
            .header("x-contactsd-timestamp", timestamp.to_string())
            .header("x-contactsd-signature", signature)
            .body(body)
            .send()
            .await;
        let mut answer = sent.map_err(|error| (None, describe(error.without_url())))?;
        let status = i64::from(answer.status().as_u16());
        // Read a little of the answer so that the connection can be reused; ignore the rest.
        let mut read = 0;
        while read < MAX_ANSWER_BYTES {
            match answer.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                _ => break,
            }
        }
        if answer.status().is_success() {
            Ok(status)
        } else {
            Err((Some(status), format!("the receiver answered HTTP {status}")))
        }
    }

    /// As it was, due again at the next poll.
    fn unchanged(&self, claimed: &Claimed) -> Progress {
        let webhook = &claimed.webhook;
        Progress {
            acked_seq: webhook.acked_seq,
            state: WebhookState::Active,
            attempts: webhook.attempts,
            failing_since: claimed.failing_since,
            next_attempt_at: now_ms() + millis(self.settings.poll),
            last_error: webhook.last_error.clone(),
        }
    }

    /// Paused: events after the cursor were removed by retention before they were delivered,
    /// so the receiver cannot be brought up to date by the feed. Its owner reads the directory
    /// again, then replays from the feed's end (`last_seq`) and resumes.
    fn expired(&self, claimed: &Claimed, last_seq: EventSeq) -> Progress {
        Progress {
            state: WebhookState::Paused,
            last_error: Some(format!(
                "events_expired: events after {} were removed by retention before they were \
                 delivered; read the directory again, then replay from after={last_seq} and \
                 resume",
                claimed.webhook.acked_seq
            )),
            ..self.unchanged(claimed)
        }
    }

    fn success(&self, last_seq: EventSeq) -> Progress {
        Progress {
            acked_seq: last_seq,
            state: WebhookState::Active,
            attempts: 0,
            failing_since: None,
            // Behind every subscription already waiting: round robin.
            next_attempt_at: now_ms(),
            last_error: None,
        }
    }

    fn failure(&self, claimed: &Claimed, error: String) -> Progress {
        let now = now_ms();
        let attempts = claimed.webhook.attempts + 1;
        let failing_since = claimed.failing_since.unwrap_or(now);
        let exhausted = now - failing_since >= millis(self.settings.retry_budget);
        let settings = &self.settings;
        let wait = backoff(attempts, settings.first_backoff, settings.max_backoff);
        Progress {
            acked_seq: claimed.webhook.acked_seq,
            state: if exhausted {
                WebhookState::Paused
            } else {
                WebhookState::Active
            },
            attempts,
            failing_since: Some(failing_since),
            next_attempt_at: now + jittered(millis(wait)),
            last_error: Some(error.chars().take(MAX_ERROR_CHARS).collect()),
        }
    }
}

/// Why a leased subscription gets no batch now.
enum NoBatch {
    /// The events could not be read or rendered: tried again at the next poll.
    Unread(String),
    /// Events after the cursor were removed by retention; `last_seq` is the feed's end.
    Expired { last_seq: EventSeq },
}

/// A batch to deliver.
#[derive(Debug, Default)]
struct Batch {
    /// The last event read, listened to or not: the cursor after a success.
    last_seq: EventSeq,
    first_seq: Option<EventSeq>,
    /// When the first event posted was committed (unix seconds).
    first_time: Option<i64>,
    count: i64,
    body: Option<String>,
}

/// Why a request failed, without the URL (the subscription shows it already).
fn describe(error: reqwest::Error) -> String {
    if error.is_timeout() {
        "the receiver did not answer in time".to_owned()
    } else if error.is_connect() {
        let mut cause = String::new();
        let mut source = std::error::Error::source(&error);
        while let Some(inner) = source {
            cause = inner.to_string();
            source = inner.source();
        }
        format!("cannot connect: {cause}")
    } else {
        format!("the request failed: {error}")
    }
}

/// Between half and all of `ms`, at random, so that receivers coming back are not hit by
/// every retry at once.
fn jittered(ms: i64) -> i64 {
    let mut noise = [0u8; 8];
    let fraction = match getrandom::fill(&mut noise) {
        Ok(()) => u64::from_le_bytes(noise) as f64 / u64::MAX as f64,
        Err(_) => 1.0,
    };
    ms / 2 + ((ms / 2) as f64 * fraction) as i64
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, millis)
}
