//! `alliance`: measures the online alliance of chat-based parenting support.
//!
//! The binary in `main.rs` is a thin entry point; everything else lives in
//! this library so that tests and benchmarks use the same code.

pub mod backup;
pub mod bench;
pub mod chatwoot;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod demo;
pub mod error;
pub mod intake;
pub mod nurse_feedback;
pub mod questionnaire;
pub mod ratelimit;
pub mod report;
pub mod retention;
pub mod routes;
pub mod shutdown;
pub mod signature;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod token;
