//! homeostat-kubernetes' integration tests, one binary: the actions and the watch source against
//! the in-process fake API server, and the deployment files against the permissions.

mod actions;
mod deploy;
mod watch;
