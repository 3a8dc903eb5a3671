//! Runbooks: compiled programs ([`program`]) and the pure run state machine ([`machine`]); their
//! static checks for `homeostat check` are [`crate::check::runbooks`].
//!
//! The engine crate drives a [`machine::Machine`]: it journals each transition before executing the
//! effects the transition asks for, and rebuilds a machine after a restart by replaying the journal.

pub mod machine;
pub mod program;
pub mod words;

pub use machine::{Effect, Input, Machine, Record, RunEnd, Transition};
pub use program::{coerce_params, Program};

#[cfg(test)]
mod tests;
