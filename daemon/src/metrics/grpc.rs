//! A tower layer around the gRPC server that counts requests by method and status code and
//! times them to their response's headers. The code of a successful call travels in the
//! trailers at the end of the body, so the body is watched to its end; a stream the client
//! drops before its end counts as `CANCELLED`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body, Frame};

use super::Metrics;

/// Adds [`Recorded`] to a service.
#[derive(Clone)]
pub struct RecordLayer {
    metrics: Metrics,
}

impl RecordLayer {
    pub fn new(metrics: Metrics) -> Self {
        Self { metrics }
    }
}

impl<S> tower::Layer<S> for RecordLayer {
    type Service = Recorded<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Recorded {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// A service whose requests are counted and timed.
#[derive(Clone)]
pub struct Recorded<S> {
    inner: S,
    metrics: Metrics,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for Recorded<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body + Unpin,
{
    type Response = http::Response<WatchedBody<ResBody>>;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let started = Instant::now();
        let path = request.uri().path().trim_start_matches('/').to_owned();
        let metrics = self.metrics.clone();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            // A code in the headers is a call answered without a body (an error, mostly).
            let early = response
                .headers()
                .get("grpc-status")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse::<i32>().ok());
            // Methods the server does not have are one label: a client cannot make labels.
            let method = if early == Some(UNIMPLEMENTED) {
                "unknown".to_owned()
            } else {
                path
            };
            metrics.grpc_answered(&method, started.elapsed());
            let pending = match early {
                Some(code) => {
                    metrics.grpc_ended(&method, code_name(code));
                    None
                }
                None => Some(Pending { metrics, method }),
            };
            Ok(response.map(|body| WatchedBody {
                inner: body,
                pending,
            }))
        })
    }
}

const UNIMPLEMENTED: i32 = 12;

/// A call whose code is still to come.
struct Pending {
    metrics: Metrics,
    method: String,
}

/// A response body that reports the call's code when its trailers pass.
pub struct WatchedBody<B> {
    inner: B,
    pending: Option<Pending>,
}

impl<B> WatchedBody<B> {
    fn end(&mut self, code: &str) {
        if let Some(pending) = self.pending.take() {
            pending.metrics.grpc_ended(&pending.method, code);
        }
    }
}

impl<B> Drop for WatchedBody<B> {
    fn drop(&mut self) {
        // Dropped before its trailers: the client went away.
        self.end("CANCELLED");
    }
}

impl<B: Body + Unpin> Body for WatchedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = trailers
                        .get("grpc-status")
                        .and_then(|value| value.to_str().ok())
                        .and_then(|value| value.parse::<i32>().ok())
                        .unwrap_or(2);
                    self.end(code_name(code));
                }
            }
            Poll::Ready(Some(Err(_))) => self.end("INTERNAL"),
            Poll::Ready(None) => self.end("UNKNOWN"),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The status code's name as the gRPC specification writes it.
fn code_name(code: i32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|index| NAMES.get(index))
        .copied()
        .unwrap_or("UNKNOWN")
}
