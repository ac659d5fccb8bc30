//! Opening an embedded redb file so that a damaged one never stops the
//! gateway from starting.
//!
//! A disk that filled up, a copy cut short or a stray write can leave a
//! file redb cannot read. Refusing to start would turn that into a crash
//! loop under a supervisor; starting over silently would hide it. So the
//! damaged file is moved aside (`ledger.redb.corrupt-<unix seconds>`), the
//! operator is told what was wrong and where the file went, and a new one
//! is made. A file another gateway holds open is not damage: that stays an
//! error.

use redb::{Database, DatabaseError};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreFileError {
    #[error("is in use by another tollgate")]
    InUse,
    #[error("{0}")]
    Other(String),
}

/// Opens (or creates) the database at `path` and runs `init` on it (making
/// its tables). When either fails for any reason but another process
/// holding the file, the file is moved aside and a new one is made.
pub fn open(
    path: &Path,
    init: impl Fn(&Database) -> Result<(), String>,
) -> Result<Database, StoreFileError> {
    match try_open(path, &init) {
        Ok(db) => Ok(db),
        Err(StoreFileError::InUse) => Err(StoreFileError::InUse),
        Err(StoreFileError::Other(why)) if path.exists() => {
            let aside = set_aside(path).map_err(|e| {
                StoreFileError::Other(format!("{why}; and it could not be moved aside: {e}"))
            })?;
            tracing::error!(
                path = %path.display(),
                moved_to = %aside.display(),
                "the embedded store could not be read ({why}); it was moved aside and a new one started empty"
            );
            try_open(path, &init)
        }
        Err(other) => Err(other),
    }
}

fn try_open(
    path: &Path,
    init: &impl Fn(&Database) -> Result<(), String>,
) -> Result<Database, StoreFileError> {
    let db = Database::create(path).map_err(|e| match e {
        DatabaseError::DatabaseAlreadyOpen => StoreFileError::InUse,
        other => StoreFileError::Other(other.to_string()),
    })?;
    init(&db).map_err(StoreFileError::Other)?;
    Ok(db)
}

/// Renames `path` to `<path>.corrupt-<unix seconds>`.
fn set_aside(path: &Path) -> std::io::Result<PathBuf> {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".corrupt-{seconds}"));
    let aside = path.with_file_name(name);
    std::fs::rename(path, &aside)?;
    Ok(aside)
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::TableDefinition;

    const TABLE: TableDefinition<&str, u64> = TableDefinition::new("t");

    fn init(db: &Database) -> Result<(), String> {
        let txn = db.begin_write().map_err(|e| e.to_string())?;
        txn.open_table(TABLE).map_err(|e| e.to_string())?;
        txn.commit().map_err(|e| e.to_string())
    }

    fn asides(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.contains(".corrupt-"))
            .collect()
    }

    #[test]
    fn a_garbage_file_is_moved_aside_and_a_new_one_made() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        std::fs::write(&path, b"this is not a redb file, not at all").unwrap();
        let db = open(&path, init).unwrap();
        drop(db);
        assert_eq!(asides(dir.path()).len(), 1);
        // The new file opens again as it is.
        open(&path, init).unwrap();
        assert_eq!(asides(dir.path()).len(), 1);
    }

    #[test]
    fn a_truncated_file_is_moved_aside_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        drop(open(&path, init).unwrap());
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 3]).unwrap();
        drop(open(&path, init).unwrap());
        assert_eq!(asides(dir.path()).len(), 1);
    }

    #[test]
    fn a_file_in_use_is_an_error_not_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let _held = open(&path, init).unwrap();
        assert!(matches!(open(&path, init), Err(StoreFileError::InUse)));
        assert!(asides(dir.path()).is_empty());
    }
}
