//! The host capabilities a web step calls (`http`, `cache`, `events`, `jwt`), behind a trait so
//! that a plugin's whole request flow can be unit-tested on the host with
//! [`FakeHost`](super::testing::FakeHost).

use std::time::SystemTime;

use crate::runbook::plugin::events::{self, Level};
use crate::runbook::plugin::jwt::{self, SignRequest};
use crate::runbook::plugin::{cache, http};

/// What a web step needs from the daemon.
pub trait Host {
    /// Sends one request (`http.send`).
    fn send(&self, request: &http::Request) -> Result<http::Response, http::Error>;
    /// A cached value (`cache.get`).
    fn cache_get(&self, key: &str) -> Option<String>;
    /// Caches `value` for `ttl_ms` (`cache.set`); a TTL of 0 drops the entry.
    fn cache_set(&self, key: &str, value: &str, ttl_ms: u64);
    /// A message for whoever watches the run (`events.log`).
    fn log(&self, level: Level, message: &str);
    /// A JWT signed by the host with the key `request` names (`jwt.sign`).
    fn sign_jwt(&self, request: &SignRequest) -> Result<String, String>;
    /// The current time, for `Retry-After` dates.
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// The real host: the component's imports. Only usable inside the daemon (on the host
/// target the imports exist but cannot be called).
#[derive(Debug, Clone, Copy, Default)]
pub struct WasmHost;

impl Host for WasmHost {
    fn send(&self, request: &http::Request) -> Result<http::Response, http::Error> {
        http::send(request)
    }

    fn cache_get(&self, key: &str) -> Option<String> {
        cache::get(key)
    }

    fn cache_set(&self, key: &str, value: &str, ttl_ms: u64) {
        cache::set(key, value, ttl_ms);
    }

    fn log(&self, level: Level, message: &str) {
        events::log(level, message);
    }

    fn sign_jwt(&self, request: &SignRequest) -> Result<String, String> {
        jwt::sign(request)
    }
}
