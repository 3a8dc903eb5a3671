//! homeostat's engine: the pipeline tasks that ingest, decide, act and record, with actions, sources
//! and metrics. The only crate that executes side effects.

pub mod action;
pub mod decider;
pub mod engine;
pub mod metrics;
pub mod runner;
pub mod secrets;
pub mod source;

pub use engine::{start, start_with_store, Engine, Handle, IngestError};
