//! Group commit for `POST /api/events`: concurrent ingestions share one store transaction.
//!
//! One transaction per request caps ingestion at the database's commit rate (a SQLite commit
//! holds the only writer; a PostgreSQL commit waits for a WAL flush). Requests hand their event
//! to a background task instead, which writes everything waiting (up to a batch, by default
//! [`DEFAULT_BATCH`] events)
//! with one [`Store::ingest`] call, so one commit, and answers each request through its own
//! channel. A request is answered only after the commit that holds its event, so a 202 still
//! means "stored with its deliveries" (the at-least-once guarantee). An idle server writes a
//! lone event at once: batching adds no wait, it only collects what queued up during the
//! previous commit.
//!
//! With idle in-process delivery workers, on SQLite (and in memory), the same transaction also
//! leases deliveries for them (`Store::ingest_then_claim`), which are handed straight over: the
//! workers start the attempts without a claim of their own. What they could not take is left
//! due, and the workers are woken to claim it.

use std::collections::HashSet;
use std::sync::Arc;

use mia_webhooks_delivery::DispatcherHandle;
use mia_webhooks_model::{EventId, Timestamp};
use mia_webhooks_store::{AnyStore, ClaimedDelivery, IngestReceipt, NewEvent, Store, StoreError};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

/// The most events written in one transaction unless configured (`ingest_batch`).
pub(crate) const DEFAULT_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<IngestReceipt, StoreError>>;

/// The sending side: cheap to clone, shared by every request handler.
#[derive(Debug, Clone)]
pub(crate) struct IngestBatcher {
    queue: mpsc::Sender<(NewEvent, Reply)>,
}

/// Why an event could not be ingested.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BatchError {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The batcher task is gone (the server is stopping).
    #[error("the ingestion task stopped")]
    Stopped,
}

impl IngestBatcher {
    /// Starts the batching task over `store`, feeding `workers` (the in-process dispatcher, if
    /// any); it ends when the last clone of the returned handle is dropped, after writing what
    /// was queued. Must be called within a Tokio runtime.
    pub(crate) fn spawn(
        store: Arc<AnyStore>,
        max_batch: usize,
        workers: Option<DispatcherHandle>,
    ) -> IngestBatcher {
        let max_batch = max_batch.max(1);
        // SQLite has one writer: a second transaction in flight would only wait for it, with
        // fewer events. PostgreSQL commits concurrent transactions in parallel (and their WAL
        // flushes together), so a few batches may be in flight there.
        let in_flight = match store.backend() {
            "postgres" => 4,
            _ => 1,
        };
        // Requests beyond a few batches wait for room (back pressure).
        let (queue, receiver) = mpsc::channel(4 * max_batch);
        tokio::spawn(run(store, receiver, max_batch, in_flight, workers));
        IngestBatcher { queue }
    }

    /// Stores `event` with its deliveries, in a transaction shared with other requests, and
    /// returns once it is committed.
    pub(crate) async fn ingest(&self, event: NewEvent) -> Result<IngestReceipt, BatchError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((event, reply))
            .await
            .map_err(|_| BatchError::Stopped)?;
        answer
            .await
            .map_err(|_| BatchError::Stopped)?
            .map_err(BatchError::from)
    }
}

async fn run(
    store: Arc<AnyStore>,
    mut receiver: mpsc::Receiver<(NewEvent, Reply)>,
    max_batch: usize,
    in_flight: usize,
    workers: Option<DispatcherHandle>,
) {
    let mut writes = JoinSet::new();
    let mut waiting = Vec::with_capacity(max_batch);
    loop {
        while writes.len() >= in_flight {
            writes.join_next().await;
        }
        if receiver.recv_many(&mut waiting, max_batch).await == 0 {
            // Every handle is gone: finish the writes in flight and stop.
            while writes.join_next().await.is_some() {}
            return;
        }
        let batch = std::mem::replace(&mut waiting, Vec::with_capacity(max_batch));
        writes.spawn(write(Arc::clone(&store), batch, workers.clone()));
    }
}

/// Writes one batch and answers its requests.
async fn write(
    store: Arc<AnyStore>,
    batch: Vec<(NewEvent, Reply)>,
    workers: Option<DispatcherHandle>,
) {
    let (events, replies): (Vec<NewEvent>, Vec<Reply>) = batch.into_iter().unzip();
    let count = events.len();
    match ingest(&store, &events, workers.as_ref()).await {
        Ok(receipts) => {
            metrics::counter!("mia_webhooks_events_ingested_total").increment(count as u64);
            for (reply, receipt) in replies.into_iter().zip(receipts) {
                // The request may be gone (client disconnected): its event is stored anyway.
                let _ = reply.send(Ok(receipt));
            }
        }
        Err(err) if count == 1 => {
            if let Some(reply) = replies.into_iter().next() {
                let _ = reply.send(Err(err));
            }
        }
        Err(StoreError::Unavailable(cause)) => {
            // The database is out of reach: every event alike, and trying each alone would only
            // wait for it once per event. Nothing is written; every request answers 503.
            let text = crate::error::ErrorChain(cause.as_ref()).to_string();
            for reply in replies {
                let _ = reply.send(Err(StoreError::Unavailable(text.clone().into())));
            }
        }
        Err(err) => {
            // Nothing of the batch is written. Each event is tried alone, so that one event's
            // failure (whatever it is) is not every request's.
            tracing::warn!(error = %crate::error::ErrorChain(&err), events = count,
                "a batch of events could not be ingested; trying them one by one");
            for (event, reply) in events.iter().zip(replies) {
                let result = store
                    .ingest(std::slice::from_ref(event), Timestamp::now())
                    .await
                    .and_then(|mut receipts| {
                        receipts
                            .pop()
                            .ok_or_else(|| StoreError::Corrupt("ingest returned no receipt".into()))
                    });
                if result.is_ok() {
                    metrics::counter!("mia_webhooks_events_ingested_total").increment(1);
                }
                let _ = reply.send(result);
            }
            if let Some(workers) = &workers {
                workers.notify();
            }
        }
    }
}

/// Ingests `events`. When `workers` have free slots, their deliveries are leased in the same
/// transaction and handed over; whatever is left due (no room, the per-webhook cap, a failed
/// claim), the workers are woken to claim.
async fn ingest(
    store: &AnyStore,
    events: &[NewEvent],
    workers: Option<&DispatcherHandle>,
) -> Result<Vec<IngestReceipt>, StoreError> {
    let now = Timestamp::now();
    let Some(workers) = workers else {
        return store.ingest(events, now).await;
    };
    let mut handed_new = 0;
    // Only where the claim costs no round trip of its own before the 202: in the ingestion's
    // transaction (SQLite), or in memory. PostgreSQL would claim in a second transaction after
    // the ingestion's, which an idle dispatcher does as fast, without delaying the answer.
    let reservation = match store.backend() {
        "sqlite" | "memory" => workers.reserve(),
        _ => None,
    };
    let receipts = match reservation {
        None => store.ingest(events, now).await?,
        Some(reservation) => {
            let (ingested, claimed) = store
                .ingest_then_claim(events, now, &reservation.request(now))
                .await;
            match claimed {
                Ok(claimed) => {
                    // The claim takes due deliveries in due order: older ones may come first.
                    let ids: HashSet<EventId> = events.iter().map(|e| e.id).collect();
                    handed_new = claimed.iter().filter(|d| ids.contains(&d.event_id)).count();
                    if let Err(back) = reservation.hand_over(claimed) {
                        handed_new = 0;
                        release(store, &back).await;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %crate::error::ErrorChain(&err),
                        "leasing deliveries with their ingestion failed; the workers will claim them");
                }
            }
            ingested?
        }
    };
    let queued: usize = receipts.iter().map(|r| r.deliveries).sum();
    if queued > handed_new {
        workers.notify();
    }
    Ok(receipts)
}

/// Gives back deliveries leased for workers that stopped meanwhile.
async fn release(store: &AnyStore, claimed: &[ClaimedDelivery]) {
    let leases: Vec<_> = claimed.iter().map(|d| (d.delivery_id, d.lease)).collect();
    if let Err(err) = store.release(&leases).await {
        tracing::warn!(error = %crate::error::ErrorChain(&err), deliveries = leases.len(),
            "deliveries leased for stopped workers could not be released; their leases will expire");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mia_webhooks_model::{
        Event, EventCatalog, EventId, EventSet, Scope, Secret, TargetUrl, Webhook, WebhookId,
    };
    use mia_webhooks_store::{MemoryStore, StoreOptions};

    fn event(catalog: &EventCatalog, n: usize) -> NewEvent {
        let body = format!(
            r#"{{"eventName":"project_deleted","eventTimestamp":{n},"payload":{{"n":{n}}}}}"#
        );
        NewEvent {
            id: EventId::new(),
            event: Event::parse(body.as_bytes(), catalog).unwrap(),
        }
    }

    #[tokio::test]
    async fn concurrent_events_are_each_answered_with_their_own_receipt() {
        let catalog = EventCatalog::with_extra(["project_deleted"]).unwrap();
        let store = Arc::new(AnyStore::Memory(MemoryStore::new(StoreOptions::default())));
        let now = Timestamp::now();
        let webhook = Webhook {
            id: WebhookId::new(),
            scope: Scope::Instance,
            target_url: TargetUrl::new("http://127.0.0.1:9/hook").unwrap(),
            secret: Secret::new("s3cret").unwrap(),
            events: EventSet::new(&["project_deleted"], &catalog).unwrap(),
            ca_certificate: None,
            proxy: None,
            description: None,
            enabled: true,
            disabled_reason: None,
            created_at: now,
            updated_at: now,
        };
        store.create_webhook(&webhook).await.unwrap();
        let batcher = IngestBatcher::spawn(Arc::clone(&store), 64, None);
        let mut tasks = JoinSet::new();
        let mut ids = Vec::new();
        for n in 0..600 {
            let new = event(&catalog, n);
            ids.push(new.id);
            let batcher = batcher.clone();
            tasks.spawn(async move { (new.id, batcher.ingest(new).await) });
        }
        let mut answered = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let (id, result) = joined.unwrap();
            let receipt = result.unwrap();
            assert_eq!(
                receipt.event_id, id,
                "each request gets its own event's receipt"
            );
            assert_eq!(receipt.deliveries, 1);
            answered.push(id);
        }
        answered.sort();
        ids.sort();
        assert_eq!(answered, ids);
        let stats = store.stats().await.unwrap();
        assert_eq!(
            stats.pending, 600,
            "every event was stored with its delivery"
        );
    }

    #[tokio::test]
    async fn a_batch_that_fails_is_retried_event_by_event_so_only_the_bad_one_errs() {
        let catalog = EventCatalog::with_extra(["project_deleted"]).unwrap();
        let store = Arc::new(AnyStore::Memory(MemoryStore::new(StoreOptions::default())));
        let stored = event(&catalog, 0);
        store
            .ingest(std::slice::from_ref(&stored), Timestamp::now())
            .await
            .unwrap();
        // The same id again makes the whole batch fail with a conflict.
        let again = NewEvent {
            id: stored.id,
            event: event(&catalog, 1).event,
        };
        let batch = vec![event(&catalog, 2), again, event(&catalog, 3)];
        let ids: Vec<EventId> = batch.iter().map(|e| e.id).collect();
        let mut answers = Vec::new();
        let mut jobs = Vec::new();
        for new in batch {
            let (reply, answer) = oneshot::channel();
            jobs.push((new, reply));
            answers.push(answer);
        }
        write(Arc::clone(&store), jobs, None).await;
        let mut results = Vec::new();
        for answer in answers {
            results.push(answer.await.unwrap());
        }
        assert_eq!(results[0].as_ref().unwrap().event_id, ids[0]);
        assert!(
            matches!(results[1], Err(StoreError::Conflict(_))),
            "{:?}",
            results[1]
        );
        assert_eq!(results[2].as_ref().unwrap().event_id, ids[2]);
        assert_eq!(
            store.stats().await.unwrap().pending,
            0,
            "no webhook, no delivery"
        );
    }

    #[tokio::test]
    async fn a_stopped_batcher_is_an_error_not_a_hang() {
        let (queue, receiver) = mpsc::channel(1);
        drop(receiver);
        let batcher = IngestBatcher { queue };
        let catalog = EventCatalog::with_extra(["project_deleted"]).unwrap();
        let result = batcher.ingest(event(&catalog, 1)).await;
        assert!(matches!(result, Err(BatchError::Stopped)), "{result:?}");
    }
}
