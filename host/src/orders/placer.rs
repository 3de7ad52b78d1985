//! The lock that makes one process the only one placing the orders of a SQLite database.
//!
//! Only the placer claims orders, so a `placing` order found when the lock is taken was left by
//! a placer that stopped, and can be marked in doubt without racing a live request. A backend
//! whose claims carry leases (PostgreSQL) needs no lock: every host places, and a claim is
//! settled by another host only once its lease ran out ([`Placer::shared`]).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// Why this process cannot become the placer.
#[derive(Debug, thiserror::Error)]
pub enum PlacerError {
    /// Another process holds the lock.
    #[error(
        "another process places the orders of this database (it holds {}): a running server \
         places paid orders itself",
        .0.display()
    )]
    Busy(PathBuf),
    /// The lock file cannot be opened or locked.
    #[error("cannot lock {}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Whether this process places orders, and the lock that says so.
#[derive(Debug)]
pub struct Placer {
    /// The file whose lock makes a process the placer; none for a store without a file, which
    /// belongs to this process alone.
    path: Option<PathBuf>,
    /// Every host places: the store's claims decide each order.
    shared: bool,
    held: Mutex<Option<Held>>,
}

/// A lock held until the process ends (or the placer is dropped).
#[derive(Debug)]
enum Held {
    /// An exclusive lock on a file beside the database.
    File {
        /// Held open for the lock.
        _file: std::fs::File,
    },
    /// A store without a file: only this process uses it; or a store whose claims expire,
    /// shared with other hosts.
    InProcess,
}

impl Placer {
    /// The placer of the database at `database`: its lock is `<database>.placer-lock`.
    pub fn for_database(database: &Path) -> Placer {
        let mut lock = database.as_os_str().to_owned();
        lock.push(".placer-lock");
        Placer {
            path: Some(PathBuf::from(lock)),
            shared: false,
            held: Mutex::new(None),
        }
    }

    /// The placer of a store this process alone uses.
    pub fn in_process() -> Placer {
        Placer {
            path: None,
            shared: false,
            held: Mutex::new(None),
        }
    }

    /// A placer among several: the store's claims, with leases, decide who places each order,
    /// so taking it never fails.
    pub fn shared() -> Placer {
        Placer {
            path: None,
            shared: true,
            held: Mutex::new(None),
        }
    }

    /// Whether other hosts place from the same database at the same time.
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// Takes the lock, if no other process holds it; taking it twice is fine.
    pub fn take(&self) -> Result<(), PlacerError> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if held.is_none() {
            *held = Some(match &self.path {
                None => Held::InProcess,
                Some(path) => Held::File {
                    _file: lock_file(path)?,
                },
            });
        }
        Ok(())
    }

    /// Whether this process holds the lock.
    pub fn is_held(&self) -> bool {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }
}

/// Takes the exclusive lock on `path`, creating it if needed, without waiting.
fn lock_file(path: &Path) -> Result<std::fs::File, PlacerError> {
    let io = |source| PlacerError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(PlacerError::Busy(path.to_owned())),
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_placer_per_database() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("orders.sqlite3");
        let first = Placer::for_database(&db);
        let second = Placer::for_database(&db);
        first.take().expect("first");
        first.take().expect("again");
        assert!(first.is_held());
        assert!(matches!(second.take(), Err(PlacerError::Busy(_))));
        assert!(!second.is_held());
        drop(first);
        second.take().expect("free once the first is gone");
        let alone = Placer::in_process();
        alone.take().expect("in process");
        assert!(alone.is_held() && !alone.is_shared());
        let (one, two) = (Placer::shared(), Placer::shared());
        one.take().expect("shared");
        two.take().expect("shared too");
        assert!(one.is_held() && two.is_held() && one.is_shared());
    }
}
