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

/// `rate_limit = "50/s"` with an optional `burst`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per `per`.
    pub count: u32,
    pub per: Duration,
    /// Requests that may go at once after a quiet spell; defaults to 1 (a steady pace).
    pub burst: u32,
    /// As written, for display.
    pub text: String,
}

impl RateLimit {
    /// Parses `N/s`, `N/min` or `N/h` (also `second`, `minute`, `hour`).
    pub fn parse(text: &str, burst: Option<u32>) -> Result<Self, String> {
        let invalid = || {
            format!(
                "invalid rate_limit `{text}`; write it like \"50/s\", \"600/min\" or \"1000/h\""
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
            count,
            per,
            burst: burst.unwrap_or(1),
            text: text.trim().to_owned(),
        })
    }

    /// The time between two permits at the steady rate.
    pub fn interval(&self) -> Duration {
        self.per / self.count
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
        assert_eq!(limit.count, 50);
        assert_eq!(limit.interval(), Duration::from_millis(20));
        assert_eq!(limit.burst, 5);
        assert_eq!(
            RateLimit::parse("600/min", None).expect("valid").interval(),
            Duration::from_millis(100)
        );
        assert!(RateLimit::parse("fast", None).is_err());
        assert!(RateLimit::parse("0/s", None).is_err());
        assert!(RateLimit::parse("5/day", None).is_err());
    }
}
