//! Compiled code on disk, so that a restart does not recompile a plugin.
//!
//! An entry is keyed by the plugin's SHA-256 and the engine's compatibility hash (wasmtime
//! version, compiler settings, target), and holds a SHA-256 of the compiled artifact. An entry
//! that is unreadable, corrupt (checksum), foreign (wasmtime refuses it), or writable by other
//! users is ignored and rebuilt. The directory is created private to the host's user: compiled
//! code is trusted as much as the host binary itself, so keep it where only that user writes.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The first bytes of every entry.
const MAGIC: &[u8] = b"reseller-cwasm-1\n";

/// A directory of compiled components.
#[derive(Clone, Debug)]
pub struct CodeCache {
    dir: PathBuf,
}

/// What the cache did for one load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheOutcome {
    /// The compiled code came from the cache.
    Hit,
    /// Compiled and stored.
    Miss,
    /// An entry was there but was not trusted; compiled and stored anew.
    Rebuilt(String),
    /// Compiled, but the entry could not be written (the plugin still serves).
    NotStored(String),
}

/// Why a cache entry is not used, or could not be stored.
#[derive(Debug, thiserror::Error)]
enum EntryError {
    #[error("unreadable: {0}")]
    Unreadable(std::io::Error),
    #[error("{path} is writable by other users (mode {mode:o})")]
    Writable { path: PathBuf, mode: u32 },
    #[error("not a cache entry of this host")]
    Foreign,
    #[error("truncated")]
    Truncated,
    #[error("checksum mismatch: the entry is corrupt")]
    Corrupt,
    #[error("refused by wasmtime: {0}")]
    Refused(String),
    #[error("cannot serialise the compiled code: {0}")]
    Serialize(String),
    #[error(transparent)]
    Write(#[from] std::io::Error),
}

/// Feeds `Hash` output into SHA-256, for a key that is the same on every run.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(first)
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

impl CodeCache {
    /// A cache in `dir` (created on first store).
    pub fn new(dir: PathBuf) -> Self {
        CodeCache { dir }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The entry for a plugin of digest `sha256` compiled by `engine`.
    pub fn entry(&self, engine: &Engine, sha256: &str) -> PathBuf {
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        self.dir
            .join(format!("{sha256}-{:016x}.cwasm", hasher.finish()))
    }

    /// The compiled component for `bytes`: from the cache when a trusted entry exists,
    /// otherwise compiled by `compile` and stored.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        sha256: &str,
        compile: impl FnOnce() -> wasmtime::Result<Component>,
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let entry = self.entry(engine, sha256);
        let distrust = match read_trusted(engine, &entry) {
            Ok(Some(component)) => return Ok((component, CacheOutcome::Hit)),
            Ok(None) => None,
            Err(why) => {
                tracing::warn!(
                    "ignoring compiled-code cache entry {}: {why}",
                    entry.display()
                );
                Some(why.to_string())
            }
        };
        let component = compile()?;
        let outcome = match self.store(&entry, &component) {
            Ok(()) => distrust.map_or(CacheOutcome::Miss, CacheOutcome::Rebuilt),
            Err(e) => {
                tracing::warn!("cannot store compiled code in {}: {e}", self.dir.display());
                CacheOutcome::NotStored(e.to_string())
            }
        };
        Ok((component, outcome))
    }

    fn store(&self, entry: &Path, component: &Component) -> Result<(), EntryError> {
        let artifact = component
            .serialize()
            .map_err(|e| EntryError::Serialize(e.to_string()))?;
        create_private_dir(&self.dir)?;
        let tmp = entry.with_extension(format!("tmp{}", std::process::id()));
        let mut file = fs::File::create(&tmp)?;
        file.write_all(MAGIC)?;
        file.write_all(&Sha256::digest(&artifact))?;
        file.write_all(&artifact)?;
        file.sync_all()?;
        fs::rename(&tmp, entry)?;
        Ok(())
    }
}

/// Reads an entry: `None` when there is none, an error when there is one not to trust.
fn read_trusted(engine: &Engine, entry: &Path) -> Result<Option<Component>, EntryError> {
    let bytes = match fs::read(entry) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(EntryError::Unreadable(e)),
    };
    writable_only_by_owner(entry)?;
    writable_only_by_owner(entry.parent().unwrap_or(Path::new(".")))?;
    let rest = bytes.strip_prefix(MAGIC).ok_or(EntryError::Foreign)?;
    let (sum, artifact) = rest.split_at_checked(32).ok_or(EntryError::Truncated)?;
    if Sha256::digest(artifact).as_slice() != sum {
        return Err(EntryError::Corrupt);
    }
    deserialize(engine, artifact)
        .map(Some)
        .map_err(|e| EntryError::Refused(e.root_cause().to_string()))
}

/// Loads compiled code that passed the checks above.
#[expect(
    unsafe_code,
    reason = "wasmtime trusts compiled code; the entry was checksummed and is private"
)]
fn deserialize(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: the artifact was written by `CodeCache::store` from `Component::serialize`
    // (checksum verified, file and directory writable by the owner only), and wasmtime checks
    // that it was compiled by a compatible engine before using it.
    unsafe { Component::deserialize(engine, artifact) }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)
}

#[cfg(unix)]
fn writable_only_by_owner(path: &Path) -> Result<(), EntryError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path)
        .map_err(EntryError::Unreadable)?
        .permissions()
        .mode();
    if mode & 0o022 != 0 {
        return Err(EntryError::Writable {
            path: path.to_owned(),
            mode: mode & 0o777,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn writable_only_by_owner(_: &Path) -> Result<(), EntryError> {
    Ok(())
}
