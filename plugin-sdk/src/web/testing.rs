//! A scripted [`Host`] for unit tests of web steps: it answers requests from a queue,
//! records what was sent, keeps a cache, and collects log lines.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime};

use super::host::Host;
use crate::runbook::plugin::events::Level;
use crate::runbook::plugin::http;
use crate::runbook::plugin::jwt::SignRequest;
use crate::runbook::plugin::types::StepContext;

/// A host that answers from a script. Not thread-safe, as guests are single-threaded.
#[derive(Debug)]
pub struct FakeHost {
    answers: RefCell<VecDeque<Result<http::Response, http::Error>>>,
    /// Every request sent, in order.
    pub sent: RefCell<Vec<http::Request>>,
    /// The cache: key to value and TTL in milliseconds.
    pub cache: RefCell<BTreeMap<String, (String, u64)>>,
    /// Every log line.
    pub logs: RefCell<Vec<(Level, String)>>,
    /// Every JWT it was asked to sign; it answers [`FakeHost::signed_token`].
    pub signed: RefCell<Vec<SignRequest>>,
    /// What [`Host::now`] answers.
    pub now: SystemTime,
}

impl Default for FakeHost {
    fn default() -> Self {
        Self {
            answers: RefCell::default(),
            sent: RefCell::default(),
            cache: RefCell::default(),
            logs: RefCell::default(),
            signed: RefCell::default(),
            // A fixed instant, so that tests of HTTP dates are repeatable.
            now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        }
    }
}

impl FakeHost {
    /// A host with nothing scripted.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues a response.
    pub fn respond(&self, status: u16, headers: &[(&str, &str)], body: &str) -> &Self {
        self.answers
            .borrow_mut()
            .push_back(Ok(response(status, headers, body)));
        self
    }

    /// Queues a transport error.
    pub fn fail(&self, error: http::Error) -> &Self {
        self.answers.borrow_mut().push_back(Err(error));
        self
    }

    /// How many requests were sent.
    pub fn sent_count(&self) -> usize {
        self.sent.borrow().len()
    }

    /// The token this host answers for `request`: not a JWT, but it names what was asked.
    pub fn signed_token(request: &SignRequest) -> String {
        format!(
            "jwt({}, {}, {}, {}ms)",
            request.algorithm, request.key, request.claims, request.ttl_ms
        )
    }

    /// The `n`th request sent.
    pub fn request(&self, n: usize) -> Option<http::Request> {
        self.sent.borrow().get(n).cloned()
    }
}

/// A step context as the daemon makes one: the idempotency key is `run:step:attempt`.
pub fn step_context(run_id: &str, step_id: &str, attempt: u32) -> StepContext {
    StepContext {
        run_id: run_id.into(),
        step_id: step_id.into(),
        attempt,
        idempotency_key: format!("{run_id}:{step_id}:{attempt}"),
    }
}

/// A response as the host would return it; header names are lower-cased as the host does.
pub fn response(status: u16, headers: &[(&str, &str)], body: &str) -> http::Response {
    http::Response {
        status,
        headers: headers
            .iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), (*value).to_owned()))
            .collect(),
        body: body.as_bytes().to_vec(),
        url: String::new(),
        duration_ms: 7,
    }
}

impl Host for FakeHost {
    fn send(&self, request: &http::Request) -> Result<http::Response, http::Error> {
        self.sent.borrow_mut().push(request.clone());
        let answer = self.answers.borrow_mut().pop_front();
        let mut answer = answer.unwrap_or_else(|| {
            Err(http::Error::Connect(
                "the fake host has no answer scripted".into(),
            ))
        });
        if let Ok(response) = &mut answer
            && response.url.is_empty()
        {
            response.url = request.url.clone();
        }
        answer
    }

    fn cache_get(&self, key: &str) -> Option<String> {
        self.cache.borrow().get(key).map(|(value, _)| value.clone())
    }

    fn cache_set(&self, key: &str, value: &str, ttl_ms: u64) {
        let mut cache = self.cache.borrow_mut();
        if ttl_ms == 0 {
            cache.remove(key);
        } else {
            cache.insert(key.to_owned(), (value.to_owned(), ttl_ms));
        }
    }

    fn log(&self, level: Level, message: &str) {
        self.logs.borrow_mut().push((level, message.to_owned()));
    }

    fn sign_jwt(&self, request: &SignRequest) -> Result<String, String> {
        self.signed.borrow_mut().push(request.clone());
        Ok(Self::signed_token(request))
    }

    fn now(&self) -> SystemTime {
        self.now
    }
}
