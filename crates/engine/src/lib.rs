//! homeostat's engine: the pipeline tasks that ingest, decide, act and record, with actions, sources
//! and metrics. The only crate that executes side effects.

pub mod action;
pub mod check;
pub mod engine;
pub mod failpoint;
pub mod handle;
pub mod metrics;
pub mod prometheus;
pub mod recover;
pub mod reload;
pub mod runs;
pub mod secrets;
pub mod source;
pub mod store;
mod upkeep;
pub mod writer;

/// The cluster client lives with the actions that use it; sources and start-up reach it here too.
pub use action::kubernetes;

pub use engine::{start, start_locked, start_with_store, Engine};
pub use handle::{
    Admitted, Applied, Changes, DisabledRules, GuardStatus, Handle, IngestError, StartError, Token,
};
