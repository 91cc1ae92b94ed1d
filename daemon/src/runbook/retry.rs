//! A step's retry policy: how many attempts, how long to wait between them, and which
//! failures deserve another attempt.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Wait before the second attempt when the policy sets no `delay`.
pub const DEFAULT_DELAY: Duration = Duration::from_secs(1);
/// The longest wait between attempts when the policy sets no `max_delay`.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(60);

/// `retry = { attempts, backoff, delay, max_delay, jitter, on }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Every try, the first included: `attempts = 1` never retries.
    pub attempts: u32,
    pub backoff: Backoff,
    pub delay: Duration,
    pub max_delay: Duration,
    /// Spread the waits of many retrying steps so that they do not hit a target together.
    pub jitter: bool,
    pub on: Vec<RetryOn>,
    /// `if`: an expression over the failed attempt (see [`RetryPolicy::retries`]) that
    /// decides instead of `on` whether another attempt is made.
    #[serde(default, rename = "if", skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
}

/// The variables a retry policy's `if` may read: the failed attempt's `output` (`none`
/// when it left none), its `error` message, its failure `class` (`transient`, `timeout` or
/// `permanent`) and its number, `attempt`.
pub const CONDITION_VARIABLES: [&str; 4] = ["output", "error", "class", "attempt"];

/// How the wait grows from one attempt to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backoff {
    /// `delay` every time.
    Fixed,
    /// `delay`, 2 × `delay`, 3 × `delay`, ...
    Linear,
    /// `delay`, 2 × `delay`, 4 × `delay`, ...
    Exponential,
}

/// Which failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryOn {
    /// Failures the plugin calls transient (a refused connection, a 5xx, a non-zero exit).
    Transient,
    /// The step's own timeout.
    Timeout,
    /// Every failure, permanent ones included.
    Any,
}

/// What kind of failure an attempt ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    Transient,
    Timeout,
    Permanent,
}

impl FailureClass {
    /// As a retry policy's `if` reads it (`class`).
    pub fn label(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::Timeout => "timeout",
            Self::Permanent => "permanent",
        }
    }
}

impl RetryPolicy {
    /// The classes retried when `on` is not given.
    pub const DEFAULT_ON: [RetryOn; 2] = [RetryOn::Transient, RetryOn::Timeout];

    /// Whether a step whose attempt number `attempt` failed with `class` is tried again.
    pub fn allows_another(&self, attempt: u32, class: FailureClass) -> bool {
        attempt < self.attempts
            && self.on.iter().any(|on| match on {
                RetryOn::Any => true,
                RetryOn::Transient => class == FailureClass::Transient,
                RetryOn::Timeout => class == FailureClass::Timeout,
            })
    }

    /// Whether a step whose attempt number `attempt` failed (with `class`, `error` and the
    /// attempt's `output`) is tried again: never once `attempts` are spent; else the policy's
    /// `if` decides when it has one, and its `on` classes when it has not. An `if` that cannot
    /// be evaluated (it reads what the output does not have, say) retries nothing, and says
    /// why.
    pub fn retries(
        &self,
        attempt: u32,
        class: FailureClass,
        error: &str,
        output: Option<&serde_json::Value>,
    ) -> Result<bool, String> {
        let Some(condition) = &self.condition else {
            return Ok(self.allows_another(attempt, class));
        };
        if attempt >= self.attempts {
            return Ok(false);
        }
        let failed = serde_json::json!({
            "output": output,
            "error": error,
            "class": class.label(),
            "attempt": attempt,
        });
        crate::template::evaluate(condition, &crate::template::context(&failed))
            .map_err(|err| format!("retry.if `{condition}` cannot be evaluated: {err}"))
    }

    /// The wait after attempt number `attempt` failed. `retry_after` (the far end's own
    /// Retry-After, or an open circuit's cooldown) lengthens the wait, but never beyond
    /// `max_delay`: a hostile `Retry-After: 999999999` must not park a step for years.
    /// `random` in 0.0..1.0 picks the jitter.
    pub fn delay_after(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        random: f64,
    ) -> Duration {
        let factor = match self.backoff {
            Backoff::Fixed => 1,
            Backoff::Linear => attempt.max(1),
            Backoff::Exponential => 1u32
                .checked_shl(attempt.saturating_sub(1))
                .unwrap_or(u32::MAX),
        };
        let mut wait = self.delay.saturating_mul(factor).min(self.max_delay);
        if self.jitter {
            // "Equal jitter": half the wait is kept, the other half is random, so waits spread
            // out without ever collapsing to nothing.
            wait = wait / 2 + wait.mul_f64(random.clamp(0.0, 1.0) / 2.0);
        }
        retry_after.map_or(wait, |asked| wait.max(asked.min(self.max_delay)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(backoff: Backoff, jitter: bool) -> RetryPolicy {
        RetryPolicy {
            attempts: 5,
            backoff,
            delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
            jitter,
            on: RetryPolicy::DEFAULT_ON.to_vec(),
            condition: None,
        }
    }

    #[test]
    fn backoffs_grow_as_named_and_stop_at_max_delay() {
        let ms = |p: &RetryPolicy, attempt| p.delay_after(attempt, None, 0.0).as_millis();
        let fixed = policy(Backoff::Fixed, false);
        let linear = policy(Backoff::Linear, false);
        let exponential = policy(Backoff::Exponential, false);
        assert_eq!([1, 2, 3].map(|a| ms(&fixed, a)), [100, 100, 100]);
        assert_eq!([1, 2, 3, 4].map(|a| ms(&linear, a)), [100, 200, 300, 350]);
        assert_eq!(
            [1, 2, 3, 40].map(|a| ms(&exponential, a)),
            [100, 200, 350, 350]
        );
    }

    #[test]
    fn jitter_keeps_half_the_wait_and_retry_after_wins_up_to_max_delay() {
        let jittered = policy(Backoff::Fixed, true);
        assert_eq!(jittered.delay_after(1, None, 0.0).as_millis(), 50);
        assert_eq!(jittered.delay_after(1, None, 1.0).as_millis(), 100);
        let asked = Some(Duration::from_millis(300));
        assert_eq!(jittered.delay_after(1, asked, 0.5).as_millis(), 300);
        let hostile = Some(Duration::from_secs(999_999_999));
        assert_eq!(
            jittered.delay_after(1, hostile, 0.5),
            jittered.max_delay,
            "a far end cannot park a step beyond max_delay"
        );
    }

    #[test]
    fn only_listed_failures_are_retried_and_only_while_attempts_remain() {
        let p = policy(Backoff::Fixed, false);
        assert!(p.allows_another(1, FailureClass::Transient));
        assert!(p.allows_another(4, FailureClass::Timeout));
        assert!(
            !p.allows_another(5, FailureClass::Transient),
            "5 attempts in all"
        );
        assert!(!p.allows_another(1, FailureClass::Permanent));
        let any = RetryPolicy {
            on: vec![RetryOn::Any],
            ..p
        };
        assert!(any.allows_another(1, FailureClass::Permanent));
    }

    #[test]
    fn an_if_decides_instead_of_the_classes_within_the_attempts() {
        let p = RetryPolicy {
            condition: Some(
                "output.status == 409 or 'try again' in error or class == 'timeout'".into(),
            ),
            ..policy(Backoff::Fixed, false)
        };
        let conflict = serde_json::json!({ "status": 409, "body": "busy" });
        let not_found = serde_json::json!({ "status": 404 });
        let permanent = FailureClass::Permanent;
        assert_eq!(
            p.retries(1, permanent, "status 409", Some(&conflict)),
            Ok(true)
        );
        assert_eq!(
            p.retries(1, permanent, "status 404", Some(&not_found)),
            Ok(false)
        );
        assert_eq!(
            p.retries(2, permanent, "please try again", Some(&not_found)),
            Ok(true)
        );
        assert_eq!(
            p.retries(1, FailureClass::Timeout, "timed out", Some(&not_found)),
            Ok(true)
        );
        // A transient failure the `if` does not name is not retried: `on` no longer applies.
        assert_eq!(
            p.retries(1, FailureClass::Transient, "status 503", Some(&not_found)),
            Ok(false)
        );
        assert_eq!(
            p.retries(5, permanent, "status 409", Some(&conflict)),
            Ok(false),
            "5 attempts in all"
        );
    }

    #[test]
    fn an_if_that_cannot_be_evaluated_retries_nothing_and_says_why() {
        let p = RetryPolicy {
            condition: Some("output.status == 409".into()),
            ..policy(Backoff::Fixed, false)
        };
        let problem = p
            .retries(1, FailureClass::Permanent, "cannot start", None)
            .expect_err("no output to read");
        assert!(
            problem.starts_with("retry.if `output.status == 409` cannot be evaluated"),
            "{problem}"
        );
        let without_if = policy(Backoff::Fixed, false);
        assert_eq!(
            without_if.retries(1, FailureClass::Transient, "refused", None),
            Ok(true)
        );
    }
}
