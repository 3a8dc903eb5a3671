//! homeostat-kube-fake's integration tests, one binary: the fake driven by kube-rs' own client.

mod kube_client;
