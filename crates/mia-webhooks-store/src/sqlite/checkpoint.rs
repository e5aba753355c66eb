//! Background WAL checkpoints, off the write path.
//!
//! In WAL mode every commit appends pages to the write-ahead log, and a checkpoint copies them
//! back into the database file (and syncs it). Left to SQLite, the commit that crosses the
//! auto-checkpoint threshold does that work itself, so every few ingestions one of them pays
//! for a checkpoint and an fsync. Instead a task of the store runs a `PASSIVE` checkpoint on a
//! connection of its own a few times a second: it never blocks the writer or the readers, and
//! the writer's auto-checkpoint stays only as a safety net with a high threshold.
//!
//! A passive checkpoint alone never lets the log shrink under a steady write load: SQLite
//! rewinds the log only when a write begins after a checkpoint that copied *every* frame, and
//! with commits every few milliseconds a new frame always lands first (a soak of 15,000
//! attempts left a 79 MiB log beside a 3.5 MiB database). So once the log passes
//! [`TRUNCATE_PAGES`], the task runs a `TRUNCATE` checkpoint on the write connection itself:
//! queued behind the writes of the moment, it finds no writer in its way, copies the few
//! frames the passive checkpoints left, and empties the file. It waits at most
//! [`TRUNCATE_WAIT`] for readers still on old frames, then gives up until the log has grown by
//! [`TRUNCATE_PAGES`] more.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::Connection as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqlitePool};

/// How often the background task checkpoints.
const INTERVAL: Duration = Duration::from_millis(200);

/// The writer's own auto-checkpoint threshold, in pages: only reached if the task falls behind.
pub(super) const WRITER_AUTOCHECKPOINT: &str = "20000";

/// Log size, in pages (4 KiB each by default), past which the task empties the log.
const TRUNCATE_PAGES: i64 = 4096;

/// How long an emptying checkpoint waits for readers (the writer's busy timeout meanwhile).
const TRUNCATE_WAIT: &str = "100";

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

/// Starts the checkpoint task on a connection of its own; `writer` is the store's write pool,
/// used only to empty a log grown past [`TRUNCATE_PAGES`].
pub(super) fn spawn(options: SqliteConnectOptions, writer: SqlitePool, lifecycle: Weak<Lifecycle>) {
    tokio::spawn(async move {
        let mut conn = match SqliteConnection::connect_with(&options).await {
            Ok(conn) => conn,
            Err(err) => {
                tracing::warn!(error = %err, "cannot open the SQLite checkpoint connection; the writer checkpoints alone");
                return;
            }
        };
        // The log size at which the next emptying is tried: after one that readers prevented,
        // not before the log has grown by as much again, so that a reader holding an old
        // snapshot (a long listing, a backup) does not cost the writer a wait every tick.
        let mut truncate_at = TRUNCATE_PAGES;
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
            let log_pages = match sqlx::query_as::<_, (i64, i64, i64)>(
                "PRAGMA wal_checkpoint(PASSIVE)",
            )
            .fetch_one(&mut conn)
            .await
            {
                Ok((_busy, log, _copied)) => log,
                Err(err) => {
                    tracing::debug!(error = %err, "background WAL checkpoint failed; the next one retries");
                    continue;
                }
            };
            if log_pages > truncate_at {
                truncate_at = if truncate(&writer, log_pages).await {
                    TRUNCATE_PAGES
                } else {
                    log_pages.saturating_add(TRUNCATE_PAGES)
                };
            } else if log_pages < truncate_at.saturating_sub(TRUNCATE_PAGES) {
                // Emptied meanwhile (by the writer's own checkpoint, or another process).
                truncate_at = TRUNCATE_PAGES;
            }
        }
        if let Err(err) = conn.close().await {
            tracing::debug!(error = %err, "closing the SQLite checkpoint connection failed");
        }
    });
}

/// Empties the log from the write connection, waiting at most [`TRUNCATE_WAIT`] for readers;
/// whether it did.
async fn truncate(writer: &SqlitePool, log_pages: i64) -> bool {
    let result = async {
        let mut conn = writer.acquire().await?;
        sqlx::query(&format!("PRAGMA busy_timeout = {TRUNCATE_WAIT}"))
            .execute(&mut *conn)
            .await?;
        let checkpoint = sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&mut *conn)
            .await;
        // Restored whatever the checkpoint did, before the connection serves a write again;
        // a connection that cannot be restored is closed, and the pool opens a fresh one.
        let restore = sqlx::query(&format!(
            "PRAGMA busy_timeout = {}",
            super::BUSY_TIMEOUT.as_millis()
        ))
        .execute(&mut *conn)
        .await;
        if restore.is_err() {
            conn.close_on_drop();
        }
        restore?;
        checkpoint
    }
    .await;
    match result {
        Ok((0, _, _)) => {
            tracing::debug!(log_pages, "WAL emptied");
            true
        }
        Ok(_) => {
            tracing::debug!(
                log_pages,
                "WAL not emptied: readers on old frames; tried again once it has grown as much"
            );
            false
        }
        Err(err) => {
            tracing::debug!(error = %err, "emptying the WAL failed; tried again once it has grown as much");
            false
        }
    }
}

/// The lifecycle while the store is open.
fn alive(lifecycle: &Weak<Lifecycle>) -> Option<Arc<Lifecycle>> {
    lifecycle
        .upgrade()
        .filter(|l| !l.closed.load(Ordering::SeqCst))
}
