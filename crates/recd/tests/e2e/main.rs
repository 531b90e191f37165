//! End-to-end tests: the real `recd` binary on a free port, driven over HTTP.
//!
//! One test binary (modules below) so the binary is started by the same helpers everywhere.

mod access;
mod api;
mod bad_input;
mod bench;
mod cache;
mod catalog;
mod cli;
mod console;
mod contract;
mod data;
mod durability;
mod everyday;
mod experiments;
mod feedback;
mod foldin;
mod learned;
mod listing;
mod monitoring;
mod newitems;
#[cfg(feature = "otel")]
mod otel;
mod prometheus;
mod redis;
mod restart;
mod security;
mod server;
mod train;
