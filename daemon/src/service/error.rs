//! The one place engine errors become gRPC statuses, with messages a user can act on.

use tonic::{Code, Status};

use crate::catalog::CatalogError;
use crate::engine::EngineError;
use crate::store::StoreError;
use crate::vault::VaultError;

impl From<EngineError> for Status {
    fn from(err: EngineError) -> Self {
        let code = match &err {
            EngineError::UnknownRunbook(_) | EngineError::UnknownStep { .. } => Code::NotFound,
            EngineError::InvalidRunbook { .. }
            | EngineError::MissingPlugins { .. }
            | EngineError::MissingSecrets { .. }
            | EngineError::UnknownConnections { .. }
            | EngineError::NoCluster { .. }
            | EngineError::WrongState(_) => Code::FailedPrecondition,
            EngineError::InvalidParams(_) | EngineError::InvalidSelection(_) => {
                Code::InvalidArgument
            }
            EngineError::Store(StoreError::RunNotFound(_)) => Code::NotFound,
            EngineError::Store(StoreError::AmbiguousRunId { .. }) => Code::InvalidArgument,
            EngineError::Store(_) | EngineError::Internal(_) => Code::Internal,
        };
        if code == Code::Internal {
            tracing::error!(error = %err, "request failed");
        }
        Status::new(code, err.to_string())
    }
}

impl From<StoreError> for Status {
    fn from(err: StoreError) -> Self {
        EngineError::Store(err).into()
    }
}

impl From<CatalogError> for Status {
    fn from(err: CatalogError) -> Self {
        let code = match &err {
            CatalogError::NoHistory(_)
            | CatalogError::UnknownVersion { .. }
            | CatalogError::UnknownRunbook(_) => Code::NotFound,
            CatalogError::AmbiguousVersion { .. } => Code::InvalidArgument,
            CatalogError::AlreadyCurrent(_)
            | CatalogError::NoLongerValid { .. }
            | CatalogError::PathTaken { .. } => Code::FailedPrecondition,
            CatalogError::Conflict { .. } => Code::Aborted,
            CatalogError::Write { .. } | CatalogError::Store(_) => Code::Internal,
        };
        if code == Code::Internal {
            tracing::error!(error = %err, "request failed");
        }
        Status::new(code, err.to_string())
    }
}

impl From<VaultError> for Status {
    fn from(err: VaultError) -> Self {
        let code = match &err {
            VaultError::NotFound(_) => Code::NotFound,
            VaultError::InvalidName { .. }
            | VaultError::EmptyValue { .. }
            | VaultError::ValueTooLarge { .. } => Code::InvalidArgument,
            // The key problems stop the daemon at start; reaching one here is a bug.
            VaultError::KeyIo { .. }
            | VaultError::KeyMode { .. }
            | VaultError::KeyOwner { .. }
            | VaultError::KeyInvalid { .. }
            | VaultError::KeyLost { .. }
            | VaultError::Undecryptable { .. }
            | VaultError::Encrypt { .. }
            | VaultError::Corrupt { .. }
            | VaultError::Store(_) => Code::Internal,
        };
        // Safe to log: a vault error never holds a value.
        if code == Code::Internal {
            tracing::error!(error = %err, "request failed");
        }
        Status::new(code, err.to_string())
    }
}
