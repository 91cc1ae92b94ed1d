//! Compiled components cached on disk, keyed by the component's content hash and the engine's
//! compatibility hash: compiling takes tens of milliseconds, loading a cached one well under one.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Loads a component, compiling it only when no usable cached compilation exists.
pub fn load(
    engine: &Engine,
    bytes: &[u8],
    cache_dir: &Path,
) -> anyhow::Result<(Component, String)> {
    let hash = hex::encode(Sha256::digest(bytes));
    let path = cache_path(engine, &hash, cache_dir);
    if path.exists() {
        // SAFETY: the cache directory lives in the daemon's private data dir and holds only
        // files this function wrote with `precompile_component` for a compatible engine (the
        // key includes the engine's compatibility hash).
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
    std::fs::create_dir_all(cache_dir)
        .with_context(|| format!("cannot create {}", cache_dir.display()))?;
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, &compiled).with_context(|| format!("cannot write {}", temp.display()))?;
    std::fs::rename(&temp, &path).with_context(|| format!("cannot write {}", path.display()))?;
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
