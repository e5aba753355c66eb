//! The in-memory and SQLite backends under test.

use mia_webhooks_store::{MemoryStore, StoreOptions};

use crate::conformance::TestBackend;

/// The in-memory store: a fresh one each time (it is not durable).
pub struct Memory;

impl TestBackend for Memory {
    type Store = MemoryStore;

    async fn open(&self, options: StoreOptions) -> MemoryStore {
        MemoryStore::new(options)
    }
}

pub async fn memory() -> Option<Memory> {
    Some(Memory)
}

/// A SQLite file in a temporary directory of its own.
#[cfg(feature = "sqlite")]
pub struct Sqlite {
    /// Kept so the directory lives as long as the backend.
    pub _dir: tempfile::TempDir,
    pub path: std::path::PathBuf,
}

#[cfg(feature = "sqlite")]
impl TestBackend for Sqlite {
    type Store = mia_webhooks_store::SqliteStore;

    async fn open(&self, options: StoreOptions) -> mia_webhooks_store::SqliteStore {
        let location = self.path.to_str().expect("a UTF-8 temporary path");
        mia_webhooks_store::SqliteStore::open(location, options)
            .await
            .expect("open the SQLite store")
    }
}

#[cfg(feature = "sqlite")]
pub async fn sqlite() -> Option<Sqlite> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("mia-webhooks.db");
    Some(Sqlite { _dir: dir, path })
}
