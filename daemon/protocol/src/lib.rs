//! The runbookd wire protocol: generated gRPC types, the protocol version, where the daemon's
//! socket lives, and how a client connects to it.
#![deny(missing_docs)]

mod socket;

pub use socket::{SocketPathError, connect, default_data_dir, default_socket_path};

/// Bumped on every incompatible change of the API; `Status` reports it so that a client can
/// refuse to talk to a daemon it does not understand.
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest message either side sends or accepts (tonic's default is 4 MiB). Summaries
/// and pages are built far below it: a `Run` carries at most 1 MiB of outputs inline and
/// `GetStepOutput` pages are 1 MiB.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Generated messages, client and server of package `runbook.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("runbook.v1");

    /// The encoded descriptor set of the API, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/runbook_descriptor.bin"));
}

impl v1::RunStatus {
    /// Whether a run in this status will never change again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::Cancelled | Self::TimedOut
        )
    }

    /// The lower-case name users see and type, for example `timed_out`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Waiting => "waiting",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::TimedOut => "timed_out",
        }
    }

    /// Parses a label as printed by [`Self::label`].
    pub fn from_label(label: &str) -> Option<Self> {
        Some(match label {
            "pending" => Self::Pending,
            "running" => Self::Running,
            "waiting" => Self::Waiting,
            "paused" => Self::Paused,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            "timed_out" => Self::TimedOut,
            _ => return None,
        })
    }
}

impl v1::StepStatus {
    /// Whether a step in this status will not run again on its own.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::Cancelled | Self::TimedOut | Self::Skipped
        )
    }

    /// The lower-case name users see, for example `ambiguous`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Waiting => "waiting",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::TimedOut => "timed_out",
            Self::Skipped => "skipped",
            Self::Ambiguous => "ambiguous",
        }
    }
}

impl v1::ResolveAction {
    /// Parses `retry`, `skip` or `fail`.
    pub fn from_label(label: &str) -> Option<Self> {
        Some(match label {
            "retry" => Self::Retry,
            "skip" => Self::Skip,
            "fail" => Self::Fail,
            _ => return None,
        })
    }
}
