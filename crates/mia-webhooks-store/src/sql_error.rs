//! Turning sqlx errors into [`StoreError`]s, for the SQL backends.
//!
//! sqlx stays private: its errors are kept as boxed sources, never as public types.

use crate::StoreError;

/// A database error: a unique violation becomes [`StoreError::Conflict`] with the database's
/// message (which names the constraint; the values are only in PostgreSQL's detail, not kept),
/// anything else [`StoreError::Database`].
pub(crate) fn database_error(err: sqlx::Error) -> StoreError {
    if let Some(db) = err.as_database_error() {
        if db.is_unique_violation() {
            return StoreError::Conflict(db.message().to_owned());
        }
    }
    StoreError::Database(Box::new(err))
}

/// A migration error.
pub(crate) fn migration_error(err: sqlx::migrate::MigrateError) -> StoreError {
    StoreError::Migration(Box::new(err))
}
