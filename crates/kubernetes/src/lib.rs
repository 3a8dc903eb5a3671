//! Kubernetes for homeostat: the client, the remediation actions and the watch source.
