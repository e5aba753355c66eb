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
        sqlx::Error::Database(db) => db.code().is_some_and(|code| unreachable_code(&code)),
        _ => false,
    }
}

/// Whether a database's error code says it is out of reach: SQLSTATE classes 08 (connection
/// exception) and 57P (shutting down, cannot connect now), or SQLite's busy and locked codes.
/// SQLSTATEs have five characters; SQLite's (extended) result codes are shorter numbers whose
/// low byte is the primary code: 5 busy, 6 locked.
fn unreachable_code(code: &str) -> bool {
    match code.parse::<u32>() {
        Ok(sqlite) if code.len() < 5 => matches!(sqlite & 0xff, 5 | 6),
        _ => code.starts_with("08") || code.starts_with("57P"),
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

#[cfg(test)]
mod tests {
    use super::unreachable_code;

    #[test]
    fn codes_of_a_database_out_of_reach() {
        // PostgreSQL: connection exceptions, shutdown, cannot connect now.
        for code in ["08000", "08006", "08001", "57P01", "57P03"] {
            assert!(unreachable_code(code), "{code}");
        }
        // SQLite: busy, locked, and their extended codes (busy recovery, snapshot, timeout;
        // locked shared cache).
        for code in ["5", "6", "261", "517", "773", "262"] {
            assert!(unreachable_code(code), "{code}");
        }
        // Refused statements: unique, foreign key and check violations, syntax error, SQLite's
        // constraint (19) and its unique variant (2067), I/O error (10), full disk (13).
        for code in [
            "23505", "23503", "23514", "42601", "19", "2067", "10", "13", "57014",
        ] {
            assert!(!unreachable_code(code), "{code}");
        }
    }
}
