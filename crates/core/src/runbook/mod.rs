//! Runbooks: compiled programs ([`program`]), the pure run state machine ([`machine`]) and the static
//! checks of `homeostat check` ([`check`]).
//!
//! The engine crate drives a [`machine::Machine`]: it journals each transition before executing the
//! effects the transition asks for, and rebuilds a machine after a restart by replaying the journal.

pub mod check;
pub mod machine;
pub mod program;

pub use machine::{Effect, Input, Machine, Record, RunEnd, Transition};
pub use program::{coerce_params, Program};

#[cfg(test)]
mod tests;
