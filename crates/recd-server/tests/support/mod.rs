//! Helpers the integration tests of recd-server share.

pub mod redis;
