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
//! [`REWIND_PAGES`], the task runs a `RESTART` checkpoint on the write connection itself:
//! queued behind the writes of the moment, it finds no writer in its way, copies the few
//! frames the passive checkpoints left, and makes the next write start the log over from its
//! beginning. It waits at most [`REWIND_WAIT`] for readers still on old frames, then gives up
//! until the log has grown by [`REWIND_PAGES`] more.
//!
//! The file is reused, not emptied: a `TRUNCATE` checkpoint also cuts the file to nothing,
//! and on this project's machine (ext4 mounted with `discard`) that held the writer 10 to 15 ms
//! for a 6 MiB log, against about 2 ms for a `RESTART`. The file stays near [`REWIND_PAGES`];
//! the writer's `journal_size_limit` ([`LOG_LIMIT_BYTES`]) cuts it back when a rewind comes
//! late (readers held it off) and it grew beyond.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::Connection as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqlitePool};

/// How often the background task checkpoints.
const INTERVAL: Duration = Duration::from_millis(200);

/// The writer's own auto-checkpoint threshold, in pages: only reached if the task falls behind.
pub(super) const WRITER_AUTOCHECKPOINT: &str = "20000";

/// Log size, in pages (4 KiB each by default), past which the task rewinds the log.
const REWIND_PAGES: i64 = 4096;

/// How long a rewinding checkpoint waits for readers (the writer's busy timeout meanwhile).
const REWIND_WAIT: &str = "100";

/// The log file's size (`journal_size_limit`) above which the writer cuts it back when it
/// starts the log over: twice what a timely rewind leaves.
pub(super) const LOG_LIMIT_BYTES: &str = "33554432";

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
/// used only to rewind a log grown past [`REWIND_PAGES`].
pub(super) fn spawn(options: SqliteConnectOptions, writer: SqlitePool, lifecycle: Weak<Lifecycle>) {
    tokio::spawn(async move {
        let mut conn = match SqliteConnection::connect_with(&options).await {
            Ok(conn) => conn,
            Err(err) => {
                tracing::warn!(error = %err, "cannot open the SQLite checkpoint connection; the writer checkpoints alone");
                return;
            }
        };
        // The log size at which the next rewind is tried: after one that readers prevented,
        // not before the log has grown by as much again, so that a reader holding an old
        // snapshot (a long listing, a backup) does not cost the writer a wait every tick.
        let mut rewind_at = REWIND_PAGES;
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
            if log_pages > rewind_at {
                rewind_at = if rewind(&writer, log_pages).await {
                    REWIND_PAGES
                } else {
                    log_pages.saturating_add(REWIND_PAGES)
                };
            } else if log_pages < rewind_at.saturating_sub(REWIND_PAGES) {
                // Rewound meanwhile (by the writer's own checkpoint, or another process).
                rewind_at = REWIND_PAGES;
            }
        }
        if let Err(err) = conn.close().await {
            tracing::debug!(error = %err, "closing the SQLite checkpoint connection failed");
        }
    });
}

/// Makes the next write start the log over, from the write connection, waiting at most
/// [`REWIND_WAIT`] for readers; whether it did.
async fn rewind(writer: &SqlitePool, log_pages: i64) -> bool {
    let result = async {
        let mut conn = writer.acquire().await?;
        sqlx::query(&format!("PRAGMA busy_timeout = {REWIND_WAIT}"))
            .execute(&mut *conn)
            .await?;
        let checkpoint = sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(RESTART)")
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
            tracing::debug!(log_pages, "WAL rewound");
            true
        }
        Ok(_) => {
            tracing::debug!(
                log_pages,
                "WAL not rewound: readers on old frames; tried again once it has grown as much"
            );
            false
        }
        Err(err) => {
            tracing::debug!(error = %err, "rewinding the WAL failed; tried again once it has grown as much");
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
