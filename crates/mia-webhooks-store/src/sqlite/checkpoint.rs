//! Background WAL checkpoints, off the write path.
//!
//! In WAL mode every commit appends pages to the write-ahead log, and a checkpoint copies them
//! back into the database file (and syncs it). Left to SQLite, the commit that crosses the
//! auto-checkpoint threshold does that work itself, so every few ingestions one of them pays
//! for a checkpoint and an fsync. Instead a task of the store runs a `PASSIVE` checkpoint on a
//! connection of its own a few times a second: it never blocks the writer or the readers, and
//! the writer's auto-checkpoint stays only as a safety net with a high threshold.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::Connection as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

/// How often the background task checkpoints.
const INTERVAL: Duration = Duration::from_millis(200);

/// The writer's own auto-checkpoint threshold, in pages: only reached if the task falls behind.
pub(super) const WRITER_AUTOCHECKPOINT: &str = "20000";

/// Shared by every clone of a store; the task stops when the last clone is dropped or the store
/// is closed.
#[derive(Debug, Default)]
pub(super) struct Lifecycle {
    closed: AtomicBool,
    /// Held by the task while it checkpoints.
    busy: tokio::sync::Mutex<()>,
}

impl Lifecycle {
    /// Stops the task and waits for a checkpoint in progress to end, so that the caller's own
    /// checkpoint (closing the store) does not find the log busy.
    pub(super) async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        drop(self.busy.lock().await);
    }
}

/// Starts the checkpoint task on a connection of its own.
pub(super) fn spawn(options: SqliteConnectOptions, lifecycle: Weak<Lifecycle>) {
    tokio::spawn(async move {
        let mut conn = match SqliteConnection::connect_with(&options).await {
            Ok(conn) => conn,
            Err(err) => {
                tracing::warn!(error = %err, "cannot open the SQLite checkpoint connection; the writer checkpoints alone");
                return;
            }
        };
        let mut ticks = tokio::time::interval(INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(current) = alive(&lifecycle) else {
                break;
            };
            let _busy = current.busy.lock().await;
            if current.closed.load(Ordering::SeqCst) {
                break;
            }
            if let Err(err) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&mut conn)
                .await
            {
                tracing::debug!(error = %err, "background WAL checkpoint failed; the next one retries");
            }
        }
        if let Err(err) = conn.close().await {
            tracing::debug!(error = %err, "closing the SQLite checkpoint connection failed");
        }
    });
}

/// The lifecycle while the store is open.
fn alive(lifecycle: &Weak<Lifecycle>) -> Option<Arc<Lifecycle>> {
    lifecycle
        .upgrade()
        .filter(|l| !l.closed.load(Ordering::SeqCst))
}
