//! Keys made through `POST /admin/keys`, kept in `<data>/keys.redb` (redb,
//! like the ledger's store) so they survive a restart. Only the secret's
//! SHA-256 is written.

use super::spec::KeySpec;
use super::{Entry, KeysError, Source};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("keys");
pub const FILE: &str = "keys.redb";

#[derive(Serialize, Deserialize)]
struct Stored {
    spec: KeySpec,
    sha256: String,
}

#[derive(Clone)]
pub struct KeyStore {
    db: Arc<Database>,
}

impl KeyStore {
    pub fn open(data: &Path) -> Result<Self, KeysError> {
        let path = data.join(FILE);
        let error = |e: String| KeysError::Store(format!("{}: {e}", path.display()));
        std::fs::create_dir_all(data).map_err(|e| error(e.to_string()))?;
        let init = |db: &Database| {
            let txn = db.begin_write().map_err(|e| e.to_string())?;
            txn.open_table(KEYS).map_err(|e| e.to_string())?;
            txn.commit().map_err(|e| e.to_string())
        };
        let db = crate::store_file::open(&path, init).map_err(|e| error(e.to_string()))?;
        Ok(KeyStore { db: Arc::new(db) })
    }

    /// Every stored key. One that cannot be read is skipped with a warning.
    pub fn load(&self) -> Result<Vec<Entry>, KeysError> {
        let txn = self.db.begin_read().map_err(store)?;
        let table = txn.open_table(KEYS).map_err(store)?;
        let mut entries = Vec::new();
        for row in table.iter().map_err(store)? {
            let (name, value) = row.map_err(store)?;
            let read = serde_json::from_slice::<Stored>(value.value())
                .ok()
                .and_then(|stored| {
                    let hash = super::file::parse_digest(&stored.sha256)?;
                    let expires_at = stored.spec.check().ok()?;
                    Some(Entry {
                        spec: stored.spec,
                        hash,
                        expires_at,
                        source: Source::Api,
                    })
                });
            match read {
                Some(entry) => entries.push(entry),
                None => tracing::warn!(key = name.value(), "ignoring an unreadable stored key"),
            }
        }
        Ok(entries)
    }

    /// Writes `entry` durably.
    pub fn put(&self, entry: &Entry) -> Result<(), KeysError> {
        let stored = Stored {
            spec: entry.spec.clone(),
            sha256: entry.hash.iter().map(|b| format!("{b:02x}")).collect(),
        };
        let bytes = serde_json::to_vec(&stored).map_err(store)?;
        let txn = self.db.begin_write().map_err(store)?;
        txn.open_table(KEYS)
            .map_err(store)?
            .insert(entry.spec.name.as_str(), bytes.as_slice())
            .map_err(store)?;
        txn.commit().map_err(store)
    }

    /// Deletes the key `name`; whether there was one.
    pub fn remove(&self, name: &str) -> Result<bool, KeysError> {
        let txn = self.db.begin_write().map_err(store)?;
        let removed = txn
            .open_table(KEYS)
            .map_err(store)?
            .remove(name)
            .map_err(store)?
            .is_some();
        txn.commit().map_err(store)?;
        Ok(removed)
    }
}

fn store(e: impl ToString) -> KeysError {
    KeysError::Store(e.to_string())
}
