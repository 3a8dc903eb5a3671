//! Kubernetes for homeostat, on kube-rs: connecting (`client`), the remediation actions
//! (`actions`), the watch source (`watch`, with `events` turning objects into homeostat events)
//! and the API verbs each of them needs (`permissions`, which the RBAC manifests are checked
//! against).
//!
//! Its tests run against `homeostat-kube-fake`, an in-process API server, since no real one can
//! run where this is built; see docs/kubernetes.md for what that verifies and what it does not.

pub mod actions;
pub mod client;
pub mod events;
pub mod permissions;
pub mod watch;
