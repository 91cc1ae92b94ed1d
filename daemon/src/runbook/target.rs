//! Targets: named endpoints (`[targets.api]`) that steps call by name, with a base URL,
//! default headers and auth, and the policies shared by every run: timeout, retry, rate limit
//! and circuit breaker.

use std::time::Duration;

use super::RetryPolicy;

/// A `[targets.NAME]` table.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    /// The base URL; may hold templates.
    pub url: String,
    /// JSON object of default headers.
    pub headers: serde_json::Value,
    /// The auth table as the http and graphql plugins read it.
    pub auth: Option<serde_json::Value>,
    pub timeout: Option<Duration>,
    pub retry: Option<RetryPolicy>,
    pub rate_limit: Option<RateLimit>,
    pub circuit_breaker: Option<BreakerPolicy>,
}

/// A target's rate limit: a token bucket (`rate_limit = "50/s"`, with an optional `burst`) or
/// a sliding window (`rate_limit = { max = 100, window = "1m" }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    pub kind: RateKind,
    /// For display: as written for a bucket (`50/s`), `100 per 1m` for a window.
    pub text: String,
}

/// How a rate limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateKind {
    /// A steady pace of `count` per `per`, with up to `burst` at once after a quiet spell.
    Bucket {
        count: u32,
        per: Duration,
        /// Requests that may go at once after a quiet spell; defaults to 1 (a steady pace).
        burst: u32,
    },
    /// At most `max` requests in any `window`, however they bunch inside it: what an API
    /// that counts "100 calls per minute" enforces.
    Window { max: u32, window: Duration },
}

/// Most requests a sliding window may count: the limiter remembers one instant per request
/// in the window, so this bounds its memory (16 bytes each, 1.6 MB at most per target).
pub const MAX_WINDOW_REQUESTS: u32 = 100_000;

/// Longest sliding window.
pub const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);

impl RateLimit {
    /// Parses `N/s`, `N/min` or `N/h` (also `second`, `minute`, `hour`): a token bucket.
    pub fn parse(text: &str, burst: Option<u32>) -> Result<Self, String> {
        let invalid = || {
            format!(
                "invalid rate_limit `{text}`; write it like \"50/s\", \"600/min\" or \"1000/h\", or as a sliding window like {{ max = 100, window = \"1m\" }}"
            )
        };
        let (count, unit) = text.split_once('/').ok_or_else(invalid)?;
        let count: u32 = count.trim().parse().map_err(|_| invalid())?;
        if count == 0 {
            return Err("rate_limit must allow at least 1 request".into());
        }
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(invalid()),
        };
        Ok(Self {
            kind: RateKind::Bucket {
                count,
                per,
                burst: burst.unwrap_or(1),
            },
            text: text.trim().to_owned(),
        })
    }

    /// A sliding window of at most `max` requests per `window`.
    pub fn window(max: u32, window: Duration) -> Result<Self, String> {
        if max == 0 || max > MAX_WINDOW_REQUESTS {
            return Err(format!(
                "rate_limit.max must be between 1 and {MAX_WINDOW_REQUESTS}"
            ));
        }
        if window.is_zero() || window > MAX_WINDOW {
            return Err("rate_limit.window must be longer than zero and at most 24h".into());
        }
        Ok(Self {
            kind: RateKind::Window { max, window },
            text: format!("{max} per {}", humantime::format_duration(window)),
        })
    }

    /// The bucket's burst; 0 for a sliding window, which has none.
    pub fn burst(&self) -> u32 {
        match self.kind {
            RateKind::Bucket { burst, .. } => burst,
            RateKind::Window { .. } => 0,
        }
    }

    /// What kind of limit, as the API and `runbook targets --json` name it.
    pub fn kind_label(&self) -> &'static str {
        match self.kind {
            RateKind::Bucket { .. } => "token_bucket",
            RateKind::Window { .. } => "sliding_window",
        }
    }
}

/// `circuit_breaker = { failures = 5, cooldown = "30s" }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Consecutive failed attempts that open the circuit.
    pub failures: u32,
    /// How long it stays open before one probe may go.
    pub cooldown: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rates() {
        let limit = RateLimit::parse("50/s", Some(5)).expect("valid");
        assert_eq!(
            limit.kind,
            RateKind::Bucket {
                count: 50,
                per: Duration::from_secs(1),
                burst: 5
            }
        );
        assert_eq!(limit.burst(), 5);
        assert_eq!(limit.kind_label(), "token_bucket");
        assert!(RateLimit::parse("fast", None).is_err());
        assert!(RateLimit::parse("0/s", None).is_err());
        assert!(RateLimit::parse("5/day", None).is_err());
    }

    #[test]
    fn parses_windows_within_their_bounds() {
        let limit = RateLimit::window(100, Duration::from_secs(60)).expect("valid");
        assert_eq!(limit.text, "100 per 1m");
        assert_eq!(limit.burst(), 0);
        assert_eq!(limit.kind_label(), "sliding_window");
        assert!(RateLimit::window(0, Duration::from_secs(1)).is_err());
        assert!(RateLimit::window(MAX_WINDOW_REQUESTS + 1, Duration::from_secs(1)).is_err());
        assert!(RateLimit::window(1, Duration::ZERO).is_err());
        assert!(RateLimit::window(1, MAX_WINDOW + Duration::from_secs(1)).is_err());
    }
}
