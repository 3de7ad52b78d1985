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
    /// The placer of the database at `database`: its lock is `<database>.placer-lock` beside
    /// the database file itself, whichever path names it (see [`resolve`]).
    pub fn for_database(database: &Path) -> Placer {
        let mut lock = resolve(database).into_os_string();
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

/// The database file's own path: symbolic links (to the file or to a folder on the way) and
/// `.`/`..` resolved, so that every path to one database finds one lock. A database not
/// created yet has its folder resolved and its name as given.
///
/// Hard links are not resolved: SQLite keeps a database's journal beside the name it was opened
/// by, so two names of one file are two databases to it already, and unsafe to use together.
fn resolve(database: &Path) -> PathBuf {
    if let Ok(real) = std::fs::canonicalize(database) {
        return real;
    }
    let (Some(dir), Some(name)) = (database.parent(), database.file_name()) else {
        return database.to_owned();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::fs::canonicalize(dir).map_or_else(|_| database.to_owned(), |dir| dir.join(name))
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

    #[cfg(unix)]
    #[test]
    fn every_path_to_a_database_finds_its_one_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("data");
        std::fs::create_dir(&real).expect("folder");
        let db = real.join("orders.sqlite3");
        std::fs::write(&db, b"").expect("database");
        std::os::unix::fs::symlink(&db, dir.path().join("link.sqlite3")).expect("file link");
        std::os::unix::fs::symlink(&real, dir.path().join("elsewhere")).expect("folder link");
        let first = Placer::for_database(&db);
        first.take().expect("first");
        let others = [
            dir.path().join("link.sqlite3"),
            dir.path().join("elsewhere/orders.sqlite3"),
            real.join("../data/./orders.sqlite3"),
        ];
        for other in &others {
            let second = Placer::for_database(other);
            assert!(
                matches!(second.take(), Err(PlacerError::Busy(_))),
                "{} took the lock of {}",
                other.display(),
                db.display()
            );
        }
        drop(first);
        let via_link = Placer::for_database(&others[0]);
        via_link.take().expect("free once the first is gone");
        assert!(matches!(
            Placer::for_database(&db).take(),
            Err(PlacerError::Busy(_))
        ));
        // One lock file, beside the real database.
        let locks: Vec<_> = std::fs::read_dir(&real)
            .expect("list")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".placer-lock"))
            .collect();
        assert_eq!(locks.len(), 1);
        assert!(!dir.path().join("link.sqlite3.placer-lock").exists());
    }
}
