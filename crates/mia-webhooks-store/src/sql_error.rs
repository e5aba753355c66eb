//! Turning sqlx errors into [`StoreError`]s, for the SQL backends.
//!
//! sqlx stays private: its errors are kept as boxed sources, never as public types.

use crate::StoreError;

/// A database error: a unique violation becomes [`StoreError::Conflict`] with the database's
/// message (which names the constraint; the values are only in PostgreSQL's detail, not kept),
/// a failure to reach the database [`StoreError::Unavailable`] (see [`unreachable`]), anything
/// else [`StoreError::Database`].
pub(crate) fn database_error(err: sqlx::Error) -> StoreError {
    if let Some(db) = err.as_database_error() {
        if db.is_unique_violation() {
            return StoreError::Conflict(db.message().to_owned());
        }
    }
    if unreachable(&err) {
        return StoreError::Unavailable(Box::new(err));
    }
    StoreError::Database(Box::new(err))
}

/// Whether `err` says the database could not be reached or is too busy, rather than that it
/// refused a statement: I/O and TLS failures, pool timeouts, a closed pool or a crashed
/// connection thread, PostgreSQL's connection and shutdown errors (classes 08 and 57P), and
/// SQLite's busy or locked database (the busy timeout ran out).
pub(crate) fn unreachable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || code.starts_with("57P") || code == "5" || code == "6"
        }),
        _ => false,
    }
}

/// A migration error.
pub(crate) fn migration_error(err: sqlx::migrate::MigrateError) -> StoreError {
    StoreError::Migration(Box::new(err))
}

/// A second report of one failure, for the other part of a transaction it undid.
pub(crate) fn same_failure(err: &StoreError) -> StoreError {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    match err {
        StoreError::Unavailable(_) => StoreError::Unavailable(text.into()),
        _ => StoreError::Database(text.into()),
    }
}
