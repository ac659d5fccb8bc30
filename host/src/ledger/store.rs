//! The embedded store: ledger counters saved in `<data>/ledger.redb`.
//!
//! redb gives crash-safe, fsynced commits from pure Rust, with no server to
//! run. The ledger saves changed scopes every half second, so a `kill -9`
//! loses at most that much counting, and a restarted gateway carries on from
//! its saved counts (a daily cap it already spent stays spent).

use super::LedgerError;
use super::plan::SavedScope;
use crate::store_file::StoreFileError;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const SCOPES: TableDefinition<&str, &[u8]> = TableDefinition::new("scopes");
pub const FILE: &str = "ledger.redb";

#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    path: PathBuf,
}

impl Store {
    /// Opens (or creates) the store in `data`. A second gateway on the same
    /// folder is refused: the file is locked while one is open.
    pub fn open(data: &Path) -> Result<Store, LedgerError> {
        let path = data.join(FILE);
        let error = |message: String| LedgerError::Store {
            path: path.display().to_string(),
            message,
        };
        std::fs::create_dir_all(data).map_err(|e| error(e.to_string()))?;
        let init = |db: &Database| {
            let txn = db.begin_write().map_err(|e| e.to_string())?;
            txn.open_table(SCOPES).map_err(|e| e.to_string())?;
            txn.commit().map_err(|e| e.to_string())
        };
        let db = crate::store_file::open(&path, init).map_err(|e| match e {
            StoreFileError::InUse => error(
                "is in use by another tollgate; give each gateway its own --data folder, \
                 or share one ledger through Redis (TOLLGATE_LEDGER=redis://…)"
                    .into(),
            ),
            StoreFileError::Other(message) => error(message),
        })?;
        Ok(Store {
            db: Arc::new(db),
            path,
        })
    }

    fn error(&self, e: impl ToString) -> LedgerError {
        LedgerError::Store {
            path: self.path.display().to_string(),
            message: e.to_string(),
        }
    }

    /// Every saved scope. One that cannot be read is skipped with a warning
    /// rather than refusing to start.
    pub fn load(&self) -> Result<HashMap<String, SavedScope>, LedgerError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = txn.open_table(SCOPES).map_err(|e| self.error(e))?;
        let mut scopes = HashMap::new();
        for entry in table.iter().map_err(|e| self.error(e))? {
            let (key, value) = entry.map_err(|e| self.error(e))?;
            match serde_json::from_slice::<SavedScope>(value.value()) {
                Ok(saved) => {
                    scopes.insert(key.value().to_owned(), saved);
                }
                Err(e) => tracing::warn!(
                    scope = key.value(),
                    "ignoring an unreadable ledger entry: {e}"
                ),
            }
        }
        Ok(scopes)
    }

    /// Writes `scopes` in one durable transaction.
    pub fn save(&self, scopes: &[(String, SavedScope)]) -> Result<(), LedgerError> {
        let txn = self.db.begin_write().map_err(|e| self.error(e))?;
        {
            let mut table = txn.open_table(SCOPES).map_err(|e| self.error(e))?;
            for (id, saved) in scopes {
                let bytes = serde_json::to_vec(saved).map_err(|e| self.error(e))?;
                table
                    .insert(id.as_str(), bytes.as_slice())
                    .map_err(|e| self.error(e))?;
            }
        }
        txn.commit().map_err(|e| self.error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::plan::Cooldown;
    use crate::ledger::window::Counter;

    #[test]
    fn saved_scopes_come_back_and_the_file_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let saved = SavedScope {
            windows: vec![(
                "rpd".into(),
                Counter::Calendar {
                    start: 0,
                    used: 42,
                    ends: None,
                },
            )],
            cooldown: Cooldown {
                until: 99,
                streak: 2,
                cause: "a 429".into(),
            },
        };
        store.save(&[("groq/*#nokey".into(), saved)]).unwrap();
        let second = Store::open(dir.path())
            .err()
            .expect("second open must fail");
        assert!(
            second.to_string().contains("in use by another tollgate"),
            "{second}"
        );
        drop(store);
        let loaded = Store::open(dir.path()).unwrap().load().unwrap();
        let back = &loaded["groq/*#nokey"];
        assert_eq!(back.cooldown.streak, 2);
        assert_eq!(back.windows[0].0, "rpd");
    }
}
