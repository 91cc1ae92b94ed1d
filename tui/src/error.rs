//! Errors the user can act on and the exit codes they map to: the one place where a gRPC status
//! or a failure becomes an exit code and an `error: ...` message.

use std::fmt;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: the run failed, was cancelled or timed out, or a generic error.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: invalid input (unknown runbook or run, bad params, invalid file).
pub const EXIT_INPUT: u8 = 2;
/// Exit code: the daemon cannot be reached.
pub const EXIT_UNREACHABLE: u8 = 3;

/// A failure that decides the exit code by itself, with a message written for users.
#[derive(Debug)]
pub enum Failure {
    /// The user gave something the client can reject without asking the daemon.
    Input(String),
    /// No daemon answers on the socket (and none could be started).
    Unreachable(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Input(message) | Self::Unreachable(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for Failure {}

impl Failure {
    /// The exit code this failure ends the process with.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Input(_) => EXIT_INPUT,
            Self::Unreachable(_) => EXIT_UNREACHABLE,
        }
    }
}

/// The exit code for a gRPC status returned by the daemon.
pub fn status_exit_code(code: tonic::Code) -> u8 {
    use tonic::Code;
    match code {
        Code::InvalidArgument | Code::NotFound | Code::FailedPrecondition | Code::AlreadyExists => {
            EXIT_INPUT
        }
        Code::Unavailable => EXIT_UNREACHABLE,
        _ => EXIT_FAILED,
    }
}

/// Whether a status means the connection broke (daemon gone or restarting) rather than the
/// daemon refusing the request: such calls are worth retrying on a new connection.
pub fn is_disconnect(status: &tonic::Status) -> bool {
    use tonic::Code;
    matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Aborted
    )
}

/// What to tell the user about `err`, and the exit code to end with; `None` as the message
/// means stay silent (stdout was closed by a pager or `head`, which is not an error).
pub fn report(err: &anyhow::Error) -> (u8, Option<String>) {
    let mut code = None;
    let mut parts = Vec::new();
    for cause in err.chain() {
        if let Some(status) = cause.downcast_ref::<tonic::Status>() {
            code.get_or_insert(status_exit_code(status.code()));
            parts.push(status_message(status));
            // What follows a status is its transport-level source, already summarised.
            break;
        }
        if let Some(failure) = cause.downcast_ref::<Failure>() {
            code.get_or_insert(failure.exit_code());
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::BrokenPipe
        {
            return (EXIT_OK, None);
        }
        parts.push(cause.to_string());
    }
    (code.unwrap_or(EXIT_FAILED), Some(parts.join(": ")))
}

/// What to show of a status: the daemon's messages are written for users, and the status code
/// is noise to them unless there is no message.
pub fn status_message(status: &tonic::Status) -> String {
    if status.message().is_empty() {
        status.code().description().to_owned()
    } else {
        status.message().to_owned()
    }
}

/// `err` and its sources on one line, for errors (like tonic's transport error) whose own
/// message says little ("transport error") without the cause.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn status_codes_map_to_exit_codes() {
        let err = anyhow::Error::new(tonic::Status::not_found("no runbook named `x`"));
        assert_eq!(
            report(&err),
            (EXIT_INPUT, Some("no runbook named `x`".into()))
        );
        let err = anyhow::Error::new(tonic::Status::unavailable("gone"));
        assert_eq!(report(&err).0, EXIT_UNREACHABLE);
        let err = anyhow::Error::new(tonic::Status::internal("boom"));
        assert_eq!(report(&err).0, EXIT_FAILED);
    }

    #[test]
    fn context_is_kept_and_failures_decide_the_code() {
        let err = Err::<(), _>(Failure::Input("bad".into()))
            .context("reading x")
            .expect_err("an error");
        assert_eq!(report(&err), (EXIT_INPUT, Some("reading x: bad".into())));
        let err = anyhow::anyhow!("plain");
        assert_eq!(report(&err), (EXIT_FAILED, Some("plain".into())));
    }
}
