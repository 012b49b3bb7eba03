//! Scan results kept on disk across restarts: a [`ResultStore`] in one
//! redb file under the node's cache directory, within a size budget (the
//! oldest entries go first).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dragonfly_engine::ResultStore;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

/// Commits reach the disk at least this often; those in between are not
/// synced (results lost in a crash are scanned again).
const SYNC_EVERY: Duration = Duration::from_secs(5);

/// Key (engine and rules prefix, content digest, group) -> stored result.
const RESULTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("results");
/// Insertion number -> key, oldest first.
const ORDER: TableDefinition<u64, &[u8]> = TableDefinition::new("order");
/// `next` (insertion number) and `bytes` (keys and values kept).
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The file under the cache directory.
const FILE_NAME: &str = "scan-results.redb";

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("can not open the result store `{}`: {message}", path.display())]
pub struct StoreError {
    path: PathBuf,
    message: String,
}

/// Results on disk, at most about `budget` bytes of keys and values.
#[derive(Debug)]
pub struct DiskStore {
    db: Database,
    budget: u64,
    /// Whether a failure was logged already (one warning, then debug).
    warned: AtomicBool,
    /// When a commit last reached the disk.
    synced: Mutex<Instant>,
}

impl DiskStore {
    /// Opens (or creates) the store in `dir`. One process at a time: a
    /// second one gets an error (the file is locked).
    pub fn open(dir: &Path, budget: u64) -> Result<DiskStore, StoreError> {
        let path = dir.join(FILE_NAME);
        let fail = |message: String| StoreError { path: path.clone(), message };
        std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
        let db = Database::create(&path).map_err(|e| fail(e.to_string()))?;
        Ok(DiskStore { db, budget, warned: AtomicBool::new(false), synced: Mutex::new(Instant::now()) })
    }

    fn failed(&self, what: &str, error: impl std::fmt::Display) {
        if self.warned.swap(true, Ordering::Relaxed) {
            log::debug!("result store: can not {what}: {error}");
        } else {
            log::warn!("result store: can not {what}: {error}; those results are scanned again");
        }
    }

    fn try_load(&self, key: &[u8]) -> Result<Option<Vec<u8>>, redb::Error> {
        let read = self.db.begin_read()?;
        let table = match read.open_table(RESULTS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(table.get(key)?.map(|value| value.value().to_vec()))
    }

    /// A write transaction, synced on commit when the last sync is
    /// [`SYNC_EVERY`] old.
    fn begin(&self) -> Result<redb::WriteTransaction, redb::Error> {
        let mut write = self.db.begin_write()?;
        let mut synced = self.synced.lock().unwrap_or_else(|e| e.into_inner());
        if synced.elapsed() >= SYNC_EVERY {
            *synced = Instant::now();
        } else {
            write.set_durability(Durability::None)?;
        }
        Ok(write)
    }

    fn try_forget(&self, prefix: &[u8]) -> Result<(), redb::Error> {
        let mut write = self.db.begin_write()?;
        write.set_durability(Durability::Immediate)?;
        {
            let mut results = write.open_table(RESULTS)?;
            let mut meta = write.open_table(META)?;
            let mut bytes = meta.get("bytes")?.map_or(0, |v| v.value());
            let doomed: Vec<(Vec<u8>, u64)> = results
                .range(prefix..)?
                .map_while(|entry| {
                    let (key, value) = entry.ok()?;
                    let key = key.value().to_vec();
                    key.starts_with(prefix).then(|| {
                        let len = (key.len() + value.value().len()) as u64;
                        (key, len)
                    })
                })
                .collect();
            for (key, len) in doomed {
                results.remove(key.as_slice())?;
                bytes = bytes.saturating_sub(len);
            }
            meta.insert("bytes", bytes)?;
        }
        write.commit()?;
        Ok(())
    }

    fn try_save(&self, entries: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), redb::Error> {
        let write = self.begin()?;
        {
            let mut results = write.open_table(RESULTS)?;
            let mut order = write.open_table(ORDER)?;
            let mut meta = write.open_table(META)?;
            let mut next = meta.get("next")?.map_or(0, |v| v.value());
            let mut bytes = meta.get("bytes")?.map_or(0, |v| v.value());
            for (key, value) in entries {
                if results.get(key.as_slice())?.is_some() {
                    continue;
                }
                results.insert(key.as_slice(), value.as_slice())?;
                order.insert(next, key.as_slice())?;
                next += 1;
                bytes += (key.len() + value.len()) as u64;
            }
            while bytes > self.budget {
                let Some((_, oldest)) = order.pop_first()? else { break };
                let oldest = oldest.value().to_vec();
                if let Some(gone) = results.remove(oldest.as_slice())? {
                    bytes = bytes.saturating_sub((oldest.len() + gone.value().len()) as u64);
                }
            }
            meta.insert("next", next)?;
            meta.insert("bytes", bytes)?;
        }
        write.commit()?;
        Ok(())
    }

    /// Keys and values kept, bytes.
    pub fn bytes(&self) -> u64 {
        let read = || -> Result<u64, redb::Error> {
            let read = self.db.begin_read()?;
            let meta = match read.open_table(META) {
                Ok(meta) => meta,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
                Err(e) => return Err(e.into()),
            };
            Ok(meta.get("bytes")?.map_or(0, |v| v.value()))
        };
        read().unwrap_or(0)
    }
}

impl ResultStore for DiskStore {
    fn load(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.try_load(key).unwrap_or_else(|e| {
            self.failed("read", e);
            None
        })
    }

    fn save(&self, entries: Vec<(Vec<u8>, Vec<u8>)>) {
        if let Err(e) = self.try_save(entries) {
            self.failed("write", e);
        }
    }

    fn forget(&self, prefix: &[u8]) {
        if let Err(e) = self.try_forget(prefix) {
            self.failed("remove results", e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_survive_reopening_and_the_budget_drops_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let entry = |i: u8| (vec![i; 68], vec![i; 100]);
        {
            let store = DiskStore::open(dir.path(), 10 * 168).unwrap();
            store.save((0..8).map(entry).collect());
            assert_eq!(store.load(&[3; 68]), Some(vec![3; 100]));
            assert_eq!(store.bytes(), 8 * 168);
            // A second process is refused, not corrupted.
            assert!(DiskStore::open(dir.path(), 10 * 168).is_err());
        }
        let store = DiskStore::open(dir.path(), 10 * 168).unwrap();
        assert_eq!(store.load(&[7; 68]), Some(vec![7; 100]), "kept across reopening");
        store.save((8..12).map(entry).collect());
        assert_eq!(store.bytes(), 10 * 168);
        assert_eq!(store.load(&[0; 68]), None, "the oldest went first");
        assert_eq!(store.load(&[1; 68]), None);
        assert_eq!(store.load(&[2; 68]), Some(vec![2; 100]));
        assert_eq!(store.load(&[11; 68]), Some(vec![11; 100]));
        // Saving a key again changes nothing.
        store.save(vec![entry(11)]);
        assert_eq!(store.bytes(), 10 * 168);
        // Forgetting a prefix removes its keys only.
        store.save(vec![([&[200u8, 1][..], &[0; 66]].concat(), vec![1; 100])]);
        store.forget(&[200]);
        assert_eq!(store.load(&[&[200u8, 1][..], &[0; 66]].concat()), None);
        assert_eq!(store.load(&[11; 68]), Some(vec![11; 100]));
        assert_eq!(store.bytes(), 9 * 168);
    }

    #[test]
    fn a_directory_that_can_not_be_made_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let err = DiskStore::open(&file.join("sub"), 1 << 20).unwrap_err();
        assert!(err.to_string().contains("scan-results.redb"), "{err}");
    }
}
