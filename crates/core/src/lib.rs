//! homeostat's pure core: the event model, config, matchers, rules, guards and the `decide` function.
//!
//! Nothing here does IO or reads the wall clock: time comes from [`clock::Clock`], and decisions are
//! returned as data for the engine to execute. That keeps detection and decisions testable as tables of
//! data, and makes dry-run and replay a matter of not executing the returned effects.

pub mod action;
pub mod anomaly;
pub mod check;
pub mod clock;
pub mod config;
pub mod decide;
pub mod event;
#[doc(hidden)]
pub mod fuzzing;
pub mod guard;
pub mod incident;
pub mod ingest;
pub mod journal;
pub mod matcher;
pub mod pipeline;
pub mod rule;
pub mod runbook;
pub mod slo;
pub mod template;

pub use event::{Event, EventKind, LabelSet, Labels, Status};
