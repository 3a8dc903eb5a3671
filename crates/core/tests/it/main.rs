//! homeostat-core's integration tests, one binary: `homeostat check` from fixture files.

mod check;
