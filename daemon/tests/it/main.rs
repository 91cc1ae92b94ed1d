//! Integration tests of `runbookd` through its real binary and gRPC API.
#![allow(clippy::unwrap_used)]

mod sandbox;
