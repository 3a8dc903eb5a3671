//! `kubernetes:`: the cluster connection, through a kubeconfig or a URL.

use super::Report;
use crate::config::{Diagnostic, Severity};

pub(crate) fn check(report: &mut Report) {
    let config = report.config;
    let Some(kubernetes) = &config.kubernetes else {
        return;
    };
    if kubernetes.url.is_some() && kubernetes.kubeconfig.is_some() {
        // Written without the file and line, as it always was.
        report.extend([Diagnostic {
            severity: Severity::Error,
            file: None,
            line: None,
            path: "kubernetes.url".into(),
            message: "both `url` and `kubeconfig` are set".into(),
            hint: Some("keep `kubeconfig`, or `url` for an unauthenticated proxy".into()),
        }]);
    }
}
