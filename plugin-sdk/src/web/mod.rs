//! Building blocks for steps that speak HTTP, shared by the built-in `http` and `graphql`
//! steps and open to any plugin (enable the SDK's `web` feature).
//!
//! A step's life with these pieces:
//!
//! 1. `validate`: decode `with` with [`check::parse_config_with_hints`], then check and
//!    compile its parts into a [`check::Checks`] in [`check::Phase::Validate`], where values
//!    that are still templates are skipped: [`step::RequestFields::build`] (destination,
//!    headers, auth, timeout, idempotency key), [`request::check_method`],
//!    [`expect::Expect::compile`], [`capture::compile_captures`].
//! 2. `plan`, `execute`, `resume`: the same checks in [`check::Phase::Run`] give the base
//!    [`request::HttpRequest`] (the effective URL, a target's base URL joined with `path`;
//!    target headers, then step headers, then the [`request::IdempotencyKey`]), the
//!    [`auth::effective_auth`], the compiled expectations and captures; add the body and
//!    [`client::send`] it through a [`host::Host`] ([`host::WasmHost`] in the daemon).
//! 3. Judge the [`response::Reply`]: [`expect::Expectations::evaluate`] lists every failed
//!    expectation, [`expect::failures_error`] makes the step error (transient only for a
//!    failed status of 5xx, 429 or 408, with `Retry-After`), and
//!    [`capture::CaptureSet::evaluate`] fills `captures` of [`response::Reply::output`].
//!
//! Secrets: `{{ secrets.NAME }}` renders to a placeholder that the host replaces in the URL,
//! header values, basic credentials and body as the request leaves. Nothing here encodes or
//! hashes a value that may hold one (Basic auth goes through the request's `basic_auth`).
//!
//! [`check::StepConfig`] ties steps 1 and 2 together: a config type implements its one
//! `build` (check every part; with a context also assemble) and gets `parse`, `validate` and
//! `prepare` from it.
//!
//! [`testing::FakeHost`] scripts the host, so a plugin's whole flow runs in `cargo test`.

pub mod auth;
pub mod capture;
pub mod check;
pub mod client;
pub mod expect;
pub mod host;
pub mod jwt;
pub mod oauth2;
pub mod request;
pub mod response;
pub mod schema;
pub mod status;
pub mod step;
pub mod target;
pub mod testing;
pub mod xpath;
