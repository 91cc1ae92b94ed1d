//! Compiled components cached on disk, keyed by the component's content hash and the engine's
//! compatibility hash: compiling takes tens of milliseconds, loading a cached one well under one.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Creates the cache directory, private to this user, and refuses one that others may write
/// to: the daemon runs native code from it.
pub fn prepare_dir(cache_dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(cache_dir)
        .with_context(|| format!("cannot create {}", cache_dir.display()))?;
    let meta = std::fs::metadata(cache_dir)
        .with_context(|| format!("cannot read {}", cache_dir.display()))?;
    if meta.mode() & 0o022 != 0 || meta.uid() != rustix::process::getuid().as_raw() {
        anyhow::bail!(
            "refusing the plugin cache {}: it is writable by others or not owned by you \
             (mode {:o}); the daemon runs the code cached there. Use `chmod 700` or another --cache-dir",
            cache_dir.display(),
            meta.mode() & 0o777
        );
    }
    Ok(())
}

/// Loads a component, compiling it only when no usable cached compilation exists.
pub fn load(
    engine: &Engine,
    bytes: &[u8],
    cache_dir: &Path,
) -> anyhow::Result<(Component, String)> {
    let hash = hex::encode(Sha256::digest(bytes));
    let path = cache_path(engine, &hash, cache_dir);
    if path.exists() {
        // SAFETY: the cache directory is private to this user (`prepare_dir` refuses one that
        // others may write to) and holds only files this function wrote with
        // `precompile_component` for a compatible engine (the key includes the engine's
        // compatibility hash).
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => return Ok((component, hash)),
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "recompiling an unusable cached plugin")
            }
        }
    }
    let compiled = engine
        .precompile_component(bytes)
        .map_err(|err| anyhow::anyhow!("{err:#}"))
        .context("not a valid WebAssembly component")?;
    // Another daemon sharing the directory may write the same entry at the same moment: each
    // writes its own temporary file, and the rename makes either one whole.
    let mut temp = tempfile::NamedTempFile::new_in(cache_dir)
        .with_context(|| format!("cannot write into {}", cache_dir.display()))?;
    std::io::Write::write_all(&mut temp, &compiled)
        .with_context(|| format!("cannot write {}", temp.path().display()))?;
    temp.persist(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // SAFETY: `compiled` was produced just now by this engine's `precompile_component`.
    let component = unsafe { Component::deserialize(engine, &compiled) }
        .map_err(|err| anyhow::anyhow!("{err:#}"))?;
    Ok((component, hash))
}

fn cache_path(engine: &Engine, hash: &str, cache_dir: &Path) -> PathBuf {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    cache_dir.join(format!("{hash}-{:016x}.cwasm", hasher.finish()))
}
