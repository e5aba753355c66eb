//! The one error type of the store.

use std::error::Error as StdError;

/// A storage operation failed.
///
/// Database drivers' errors are kept as sources behind a box, so no driver type is part of this
/// crate's API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database URL or an option is not usable.
    #[error("invalid store configuration: {0}")]
    Config(String),
    /// The database answered with an error.
    #[error("database error")]
    Database(#[source] Box<dyn StdError + Send + Sync>),
    /// The database could not be reached, or is too busy: its connection failed, no pooled
    /// connection came in time, it is shutting down, or (SQLite) another process holds the write
    /// lock past the busy timeout. The same call may succeed later. Nothing was written, except
    /// in the rare case of a connection lost while the database was committing.
    #[error("database unavailable")]
    Unavailable(#[source] Box<dyn StdError + Send + Sync>),
    /// Migrations could not be applied.
    #[error("database migration failed")]
    Migration(#[source] Box<dyn StdError + Send + Sync>),
    /// A stored secret cannot be decrypted with the configured keys (a wrong or missing key).
    #[error("cannot decrypt a stored webhook secret: {0}")]
    SecretKey(String),
    /// A stored value no longer passes validation.
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// A write conflicts with what is stored (a duplicate id).
    #[error("conflict: {0}")]
    Conflict(String),
}
